// orchestrator/cmd/cmd_doctor.c — `segx doctor [--spec FILE | --cluster NAME]`: is everything a run
// needs there? Slurm reachable (both backends) and its versions; the profile's partitions and GPU
// types exist on the cluster; the container runtime and image; the trainer binary; data paths
// named in the spec readable. One line per check; exit 1 when a check failed.
// On a real cluster also: libslurm's release against slurmctld's (a mismatch: use slurm-rest or
// slurm-cli), PreemptMode and JobRequeue (will a preempted cell requeue?), MaxArraySize / MaxJobCount
// and the QOS MaxSubmitJobs against the plan's cell count, the results DB on a network filesystem
// (SQLite's WAL needs one host), slurmrestd reachable with a token that is not about to expire (and
// its slurmdb API when the cluster keeps accounting), and
// with a container runtime: one short test job (--backend) that runs `RUNTIME --version` and tests
// the image path on a compute node (--no-job skips it).
#include "orchestrator/util/clock.h"
#include "orchestrator/backend/backends.h"
#include "orchestrator/cmd/cli.h"
#include "orchestrator/util/paths.h"
#include "orchestrator/cluster.h"
#include "orchestrator/plan.h"
#include "db/db.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/backend/slurm_lib.h"
#include "orchestrator/backend/slurm_util.h"
#include "orchestrator/spec.h"
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>

typedef struct { int fails, warns; json_t *json; } Report;

static void say(Report *r, const char *level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(Report *r, const char *level, const char *what, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!strcmp(level, "FAIL")) r->fails++;
    if (!strcmp(level, "warn")) r->warns++;
    if (r->json) json_array_append_new(r->json, json_pack("{s:s,s:s,s:s}", "check", what, "level", level, "detail", msg));
    else printf("  %-4s  %-12s %s\n", level, what, msg);
}

// First line of a command's stdout (fixed argv built here, never from user input), "" on failure.
static int first_line(const char *cmd, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (!fgets(out, (int)cap, p)) out[0] = '\0';
    char rest[256];
    while (fgets(rest, sizeof rest, p)) {}
    int rc = pclose(p);
    out[strcspn(out, "\n")] = '\0';
    return rc == 0 ? 0 : -1;
}

static int on_path(const char *prog, char *found, size_t cap)
{
    const char *path = getenv("PATH");
    if (strchr(prog, '/')) { snprintf(found, cap, "%s", prog); return access(prog, X_OK) == 0; }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *d = strtok(buf, ":"); d; d = strtok(NULL, ":")) {
        snprintf(found, cap, "%s/%s", d, prog);
        if (access(found, X_OK) == 0) return 1;
    }
    return 0;
}

// Partitions and their gres, from one sinfo call: "a100|gpu:a100:2" lines.
typedef struct { char part[64], gres[256]; } PartGres;

static int load_partitions(PartGres *v, int cap)
{
    FILE *p = popen("sinfo -h -o '%R|%G' 2>/dev/null", "r");
    if (!p) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, p) && n < cap) {
        line[strcspn(line, "\n")] = '\0';
        char *bar = strchr(line, '|');
        if (!bar) continue;
        *bar = '\0';
        snprintf(v[n].part, sizeof v[n].part, "%.63s", line);
        snprintf(v[n].gres, sizeof v[n].gres, "%.255s", bar + 1);
        n++;
    }
    return pclose(p) == 0 ? n : -1;
}

static int gres_has_type(const char *gres, const char *type)
{
    // "gpu:a100:2(S:0)" or "gpu:a100:2,gpu:v100:1"
    char want[64];
    snprintf(want, sizeof want, "gpu:%s:", type);
    return strstr(gres, want) != NULL;
}

static void check_slurm(Report *r, const ClusterProfile *p, int *reachable)
{
    char err[1024], conf[1024];
    *reachable = 0;
    if (slurm_locate_conf(NULL, conf, sizeof conf, err, sizeof err) < 0) {
        say(r, "warn", "slurm", "%s (the local backend still works)", err);
        return;
    }
    say(r, "ok", "slurm.conf", "%s", conf);
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "slurm" : "slurm-cli";
        Backend *b = NULL;
        if (backend_open(name, NULL, &b, err, sizeof err) == 0) {
            backend_close(b);
            *reachable = 1;
            if (k == 0) say(r, "ok", name, "libslurm %s: slurmctld answers", slurm_lib_version());
            else {
                char v[128];
                first_line("sbatch --version 2>/dev/null", v, sizeof v);
                say(r, "ok", name, "%s: slurmctld answers", v);
            }
        } else {
            say(r, k == 0 && !slurm_lib_available() ? "warn" : "FAIL", name, "%s", err);
        }
    }
    if (!*reachable) return;
    char v[256];
    if (first_line("scontrol show config 2>/dev/null | awk '$1 == \"SLURM_VERSION\" {print $3}'", v, sizeof v) == 0 && v[0])
        say(r, "ok", "slurmctld", "version %s", v);
    if (!p) return;
    PartGres parts[128];
    int np = load_partitions(parts, 128);
    if (np < 0) { say(r, "FAIL", "partitions", "sinfo failed"); return; }
    for (size_t i = 0; i < cluster_gpu_count(p); i++) {
        const ClusterGpu *g = cluster_gpu_at(p, i);
        if (!g->partition[0]) { say(r, "ok", g->gpu_type, "default partition"); continue; }
        int found = 0, typed = 0;
        for (int j = 0; j < np; j++) {
            if (strcmp(parts[j].part, g->partition) != 0) continue;
            found = 1;
            if (strcasecmp(g->gpu_type, "cpu") == 0 || gres_has_type(parts[j].gres, g->gres_type)) typed = 1;
        }
        if (!found) say(r, "FAIL", g->gpu_type, "partition '%s' of profile '%s' does not exist on this cluster", g->partition, cluster_name(p));
        else if (!typed) say(r, "FAIL", g->gpu_type, "partition '%s' has no node with gres gpu:%s", g->partition, g->gres_type);
        else if (strcasecmp(g->gpu_type, "cpu") == 0) say(r, "ok", g->gpu_type, "partition %s", g->partition);
        else say(r, "ok", g->gpu_type, "partition %s has gres gpu:%s (%d per node in the profile)", g->partition, g->gres_type, g->gpus_per_node);
    }
}

// One value of `scontrol show config` ("PreemptMode" -> "OFF"), "" when absent.
static void config_value(const char *config, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    for (const char *p = config; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, kl) != 0 || (p[kl] != ' ' && p[kl] != '=')) continue;
        const char *eq = strchr(p, '=');
        if (!eq) return;
        eq++;
        while (*eq == ' ') eq++;
        snprintf(out, cap, "%.*s", (int)strcspn(eq, "\n"), eq);
        return;
    }
}

static char *read_command(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096) { char *nb = realloc(buf, cap * 2); if (!nb) break; buf = nb; cap *= 2; }
    }
    if (pclose(p) != 0 || !buf) { free(buf); return NULL; }
    buf[len] = '\0';
    return buf;
}

// What a real cluster's settings mean for a sweep of ncells cells (0: no spec given).
// Returns 1 when the cluster keeps accounting (AccountingStorageType is not none).
static int check_cluster_settings(Report *r, size_t ncells)
{
    if (slurm_lib_available()) {
        char cv[64], e[512];
        if (slurm_lib_controller_version(cv, sizeof cv, e, sizeof e) < 0) say(r, "warn", "libslurm", "%s", e);
        else if (slurm_lib_same_release(cv)) say(r, "ok", "libslurm", "%s, the release slurmctld runs (%s)", slurm_lib_version(), cv);
        else say(r, "warn", "libslurm", "built against %s but slurmctld runs %s: libslurm's ABI changes every release; "
                 "use --backend slurm-rest or slurm-cli (--backend auto does)", slurm_lib_version(), cv);
    }
    char *conf = read_command("scontrol show config 2>/dev/null");
    if (!conf) { say(r, "warn", "config", "scontrol show config failed: cannot check PreemptMode and limits"); return 0; }
    char mode[128], rq[32], maxarr[32], maxjobs[32], acct[128];
    config_value(conf, "PreemptMode", mode, sizeof mode);
    config_value(conf, "JobRequeue", rq, sizeof rq);
    config_value(conf, "MaxArraySize", maxarr, sizeof maxarr);
    config_value(conf, "MaxJobCount", maxjobs, sizeof maxjobs);
    config_value(conf, "AccountingStorageType", acct, sizeof acct);
    free(conf);
    if (!mode[0] || strcasecmp(mode, "OFF") == 0)
        say(r, "ok", "preemption", "none (PreemptMode=%s): cells run to their end or their time limit", mode[0] ? mode : "?");
    else if (strcasestr(mode, "REQUEUE"))
        say(r, "ok", "preemption", "PreemptMode=%s: a preempted cell is requeued and resumes from its checkpoint", mode);
    else if (strcasestr(mode, "CANCEL"))
        say(r, "warn", "preemption", "PreemptMode=%s: a preempted cell is cancelled, not requeued; `segx resubmit --failed` "
            "continues it from its checkpoint (ask for PreemptMode=REQUEUE to have Slurm do it)", mode);
    else
        say(r, "warn", "preemption", "PreemptMode=%s: a preempted cell is %s, not requeued (its time keeps counting)", mode,
            strcasestr(mode, "SUSPEND") ? "suspended" : "stopped");
    if (strcmp(rq, "0") == 0)
        say(r, "ok", "requeue", "JobRequeue=0 (not by default): segx's job scripts ask --requeue for each job, which Slurm honours");
    else
        say(r, "ok", "requeue", "JobRequeue=%s: jobs may be requeued (segx's scripts ask --requeue anyway)", rq[0] ? rq : "?");
    long ma = atol(maxarr), mj = atol(maxjobs);
    if (ncells > 0 && ma > 0 && (long)ncells > ma - 1)
        say(r, "warn", "arrays", "MaxArraySize=%ld but the plan has %zu cells: `segx submit --array` needs index %zu; "
            "submit without --array, or in groups of at most %ld", ma, ncells, ncells - 1, ma - 1);
    else if (ma > 0)
        say(r, "ok", "arrays", "MaxArraySize=%ld%s", ma, ncells ? " fits the plan" : "");
    if (ncells > 0 && mj > 0 && (long)ncells > mj)
        say(r, "warn", "jobs", "MaxJobCount=%ld is below the plan's %zu cells: use `segx submit --max-submitted %ld`", mj, ncells, mj / 2);
    if (strcmp(acct, "accounting_storage/none") == 0 || !acct[0]) {
        say(r, "ok", "qos", "no accounting (%s): no QOS MaxSubmitJobs applies", acct[0] ? acct : "none");
        return 0;
    }
    // accounting reachable (segx collect imports from it), then QOS limits on submitted jobs per user
    char *probe = read_command("sacct -n -X -P --format=JobID -S now 2>&1");
    if (probe) say(r, "ok", "accounting", "%s answers: segx collect imports each attempt's sacct record", acct);
    else say(r, "warn", "accounting", "%s is configured but sacct fails: is slurmdbd up? (`segx report queue/usage` need it)", acct);
    free(probe);
    char *qos = read_command("sacctmgr -n -P show qos format=Name,MaxSubmitPU 2>/dev/null");
    if (!qos) { say(r, "warn", "qos", "sacctmgr show qos failed: cannot check MaxSubmitJobs"); return 1; }
    int any = 0;
    for (char *line = strtok(qos, "\n"); line; line = strtok(NULL, "\n")) {
        char *bar = strchr(line, '|');
        if (!bar || !bar[1]) continue;
        *bar = '\0';
        long m = atol(bar + 1);
        if (m <= 0) continue;
        any = 1;
        if (ncells > 0 && (long)ncells > m)
            say(r, "warn", "qos", "QOS %s allows %ld submitted jobs per user, the plan has %zu cells: "
                "`segx submit --max-submitted %ld` keeps under it", line, m, ncells, m);
        else say(r, "ok", "qos", "QOS %s: MaxSubmitJobs %ld per user", line, m);
    }
    if (!any) say(r, "ok", "qos", "no QOS limits submitted jobs per user");
    free(qos);
    return 1;
}

// slurmrestd: reachable, which API, whose token and how long it lasts.
// accounting: the cluster keeps it; then slurmrestd's slurmdb API is checked too (segx collect
// imports the slurm-rest attempts through it).
static void check_rest(Report *r, int accounting)
{
    Backend *b = NULL;
    char err[2048];
    const char *url = getenv("SEGX_SLURMRESTD_URL");
    if (backend_open("slurm-rest", NULL, &b, err, sizeof err) < 0) {
        // only a failure when the user pointed segx at a slurmrestd
        say(r, url && *url ? "FAIL" : "warn", "slurm-rest", "%s", err);
        return;
    }
    char d[1600];
    double exp = 0;
    backend_slurm_rest_describe(b, d, sizeof d, &exp);
    if (accounting) {
        const char *probe[1] = {"1"};
        FILE *null = fopen("/dev/null", "w");
        char e[1024];
        if (null && backend_slurm_rest_accounting(b, probe, 1, null, e, sizeof e) >= 0)
            say(r, "ok", "slurmdb", "slurmrestd's slurmdb API answers: segx collect imports slurm-rest attempts through it");
        else
            say(r, "warn", "slurmdb", "%s: segx collect falls back to sacct for slurm-rest attempts", null ? e : "cannot open /dev/null");
        if (null) fclose(null);
    }
    backend_close(b);
    double left = exp > 0 ? exp - (double)time(NULL) : -1;
    if (exp > 0 && left < 3600)
        say(r, "warn", "slurm-rest", "%s: slurmrestd answers, but the token expires in %.0f min: get a longer one "
            "(`scontrol token lifespan=SECONDS`) before a long sweep", d, left / 60);
    else if (exp > 0)
        say(r, "ok", "slurm-rest", "%s: slurmrestd answers; the token is valid for %.1f h", d, left / 3600);
    else
        say(r, "ok", "slurm-rest", "%s: slurmrestd answers", d);
}

// SQLite's WAL needs every writer on one host: a DB on NFS/Lustre/GPFS/... shared by several is trouble.
static void check_db_fs(Report *r, const char *db_path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", db_path);
    char *slash = strrchr(dir, '/');
    if (slash) { if (slash == dir) slash[1] = '\0'; else *slash = '\0'; } else snprintf(dir, sizeof dir, ".");
    struct statfs fs;
    if (statfs(dir, &fs) != 0) { say(r, "warn", "database", "cannot stat the filesystem of %s", dir); return; }
    static const struct { unsigned long magic; const char *name; } net[] = {
        {0x6969, "NFS"}, {0xFF534D42, "CIFS"}, {0xFE534D42, "SMB2"}, {0x517B, "SMB"}, {0x0BD00BD0, "Lustre"},
        {0x47504653, "GPFS"}, {0x19830326, "BeeGFS"}, {0x65735546, "FUSE"}, {0x6B414653, "AFS"}, {0x00C36400, "CephFS"}, {0, NULL}};
    for (int i = 0; net[i].name; i++)
        if ((unsigned long)fs.f_type == net[i].magic) {
            say(r, "warn", "database", "%s is on %s: SQLite's WAL needs all its writers on one host; run segx status/collect "
                "from one machine, or keep the DB on a local disk (--db) while run dirs stay shared", db_path, net[i].name);
            return;
        }
    say(r, "ok", "database", "%s on a local filesystem", db_path);
}

// The container runtime and image a run uses: the spec's, else the profile's ("" when none).
static void container_of(const ClusterProfile *p, const json_t *spec_container, const char **runtime, const char **image)
{
    *runtime = p ? cluster_container_runtime(p) : "";
    *image = p ? cluster_container_image(p) : "";
    if (json_is_object(spec_container)) {
        *runtime = json_string_value(json_object_get(spec_container, "runtime"));
        *image = json_string_value(json_object_get(spec_container, "image"));
    } else if (json_is_string(spec_container)) {
        *image = json_string_value(spec_container);
        if (!*runtime || !**runtime) *runtime = "apptainer";
    }
    if (!*runtime) *runtime = "";
    if (!*image) *image = "";
}

static void check_container(Report *r, const ClusterProfile *p, const json_t *spec_container)
{
    const char *runtime, *image;
    container_of(p, spec_container, &runtime, &image);
    if (!*runtime) { say(r, "ok", "container", "none (the trainer runs on the host)"); return; }
    char found[4096];
    // the program each runtime needs where jobs run (Pyxis is srun's plugin: srun is checked above)
    const char *prog = !strcmp(runtime, "charliecloud") ? "ch-run" : !strcmp(runtime, "enroot") ? "srun" : runtime;
    if (on_path(prog, found, sizeof found)) say(r, "ok", "container", "%s: %s at %s", runtime, prog, found);
    else say(r, "FAIL", "container", "runtime '%s': %s is not on PATH (install it, or module load it in the profile's modules)", runtime, prog);
    if (image && *image && strcmp(runtime, "enroot") && strcmp(runtime, "podman")) {   // those take registry references too
        if (access(image, R_OK) == 0) say(r, "ok", "image", "%s readable", image);
        else say(r, "FAIL", "image", "%s is not readable from here", image);
    }
}

// 'text' for a shell script
static void shell_quote(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    if (cap < 3) { if (cap) out[0] = '\0'; return; }
    out[k++] = '\'';
    for (const char *c = in; *c && k + 6 < cap; c++) {
        if (*c == '\'') { memcpy(out + k, "'\\''", 4); k += 4; } else out[k++] = *c;
    }
    out[k++] = '\'';
    out[k] = '\0';
}

// The node check's test job: what it runs, where its files are, and how it went.
typedef struct {
    const char *prog, *image;   // the runtime's program, its image ("" none)
    char cwd[PATH_MAX], dir[PATH_MAX + 32], script[PATH_MAX + 64];
    char job_id[64];            // "" until submitted
    Backend *b;
    JobStatus st;
} NodeJob;

// The test job's script: its node, the runtime's first line of `--version` (enroot: `version`), and
// with image_is_path whether the image is readable there. 0, or -1 when it cannot be written.
static int write_node_script(const NodeJob *nj, const char *vflag, int image_is_path)
{
    char qprog[256], qimg[PATH_MAX * 4 + 8];
    shell_quote(nj->prog, qprog, sizeof qprog);
    shell_quote(nj->image, qimg, sizeof qimg);
    FILE *f = fopen(nj->script, "w");
    if (!f) return -1;
    fprintf(f, "#!/bin/bash\n#SBATCH --ntasks=1\n# segx doctor: is the container runtime and image there on a compute node?\n"
               "export USER=\"${USER:-$(id -un)}\"   # ch-run needs it\necho \"node=$(hostname)\"\n"
               "if command -v %s >/dev/null 2>&1; then echo \"runtime=$(%s %s 2>&1 | head -n 1)\"; else echo runtime=missing; fi\n",
            qprog, qprog, vflag);
    if (image_is_path) fprintf(f, "if [ -r %s ]; then echo image=ok; else echo image=missing; fi\n", qimg);
    fclose(f);
    return 0;
}

// Submits the test job through nj->b (on the partition of the profile's first GPU type, without
// GPUs) and waits for its end, at most timeout_s: 0 ended (nj->st), -1 not submitted or cancelled (warned).
static int run_node_job(Report *r, NodeJob *nj, const ClusterProfile *p, int timeout_s)
{
    char key[64], err[2048];
    const char *part = NULL;
    for (size_t i = 0; p && i < cluster_gpu_count(p) && !part; i++)
        if (cluster_gpu_at(p, i)->partition[0]) part = cluster_gpu_at(p, i)->partition;
    snprintf(key, sizeof key, "node-check-%ld-%ld", (long)getpid(), (long)time(NULL));
    JobSpec js = {.experiment = "doctor", .cell_key = key, .run_dir = nj->dir, .script_path = nj->script,
                  .job_name = "segx-doctor", .attempt = 1, .gpus = 0, .nodes = 1, .cpus_per_task = 1, .gpu_type = "cpu",
                  .partition = part, .time_limit = "00:02:00"};
    Backend *b = nj->b;
    if (b->ops->submit(b, &js, nj->job_id, sizeof nj->job_id, err, sizeof err) < 0) {
        say(r, "warn", "node-check", "the test job was not submitted through %s: %s", b->ops->name, err);
        return -1;
    }
    double t0 = mono_s(), wait = 0.5;
    for (;;) {
        const char *ids[1] = {nj->job_id};
        if (b->ops->poll(b, ids, 1, &nj->st, err, sizeof err) < 0) nj->st.state = JOB_SUBMITTED;   // not answering now: try again
        if (nj->st.state == JOB_UNKNOWN || job_state_is_final(nj->st.state)) return 0;
        if (mono_s() - t0 > timeout_s) {
            b->ops->cancel(b, nj->job_id, err, sizeof err);
            say(r, "warn", "node-check", "test job %s did not end within %d s (%s%s%s): cancelled; the runtime on the compute "
                "nodes is not checked (--job-timeout SECONDS waits longer)", nj->job_id, timeout_s,
                job_state_name(nj->st.state), nj->st.reason[0] ? ": " : "", nj->st.reason);
            return -1;
        }
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        if (wait < 5) wait *= 2;
    }
}

// What the ended test job wrote (DIR/slurm-ID.out): the runtime and the image on its node.
static void report_node_output(Report *r, const NodeJob *nj)
{
    char out[PATH_MAX + 128], line[1024], node[256] = "", rt[512] = "", img[32] = "";
    const char *id = nj->job_id, *state = job_state_name(nj->st.state), *via = nj->b->ops->name;
    snprintf(out, sizeof out, "%s/slurm-%s.out", nj->dir, id);
    FILE *o = fopen(out, "r");
    if (!o) {
        say(r, "FAIL", "node-check", "test job %s ended %s but wrote no %s: do the compute nodes see %s? (run dirs must be "
            "shared the same way)", id, state, out, nj->cwd);
        return;
    }
    while (fgets(line, sizeof line, o)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "node=", 5)) snprintf(node, sizeof node, "%.255s", line + 5);
        else if (!strncmp(line, "runtime=", 8)) snprintf(rt, sizeof rt, "%.511s", line + 8);
        else if (!strncmp(line, "image=", 6)) snprintf(img, sizeof img, "%.31s", line + 6);
    }
    fclose(o);
    if (!rt[0]) say(r, "FAIL", "node-check", "test job %s on %s ended %s without an answer (see its output %s)", id,
                    node[0] ? node : "?", state, out);
    else if (!strcmp(rt, "missing"))
        say(r, "FAIL", "node-check", "%s is not on PATH on compute node %s (test job %s via %s): install it there, or load "
            "it with the profile's modules", nj->prog, node, id, via);
    else say(r, "ok", "node-check", "%s on compute node %s: %s (test job %s via %s)", nj->prog, node, rt, id, via);
    if (!strcmp(img, "missing"))
        say(r, "FAIL", "node-image", "%s is not readable on compute node %s (test job %s): put the image where the nodes "
            "see it", nj->image, node, id);
    else if (!strcmp(img, "ok")) say(r, "ok", "node-image", "%s readable on compute node %s", nj->image, node);
}

// Closes the backend and removes the test job's folder with what it wrote there.
static void remove_node_job(NodeJob *nj)
{
    backend_close(nj->b);
    char path[PATH_MAX + 128];   // dir, "/slurm-", the job id, ".err"
    snprintf(path, sizeof path, "%s/slurm-%s.out", nj->dir, nj->job_id);
    if (nj->job_id[0]) unlink(path);
    snprintf(path, sizeof path, "%s/slurm-%s.err", nj->dir, nj->job_id);
    if (nj->job_id[0]) unlink(path);
    unlink(nj->script);
    rmdir(nj->dir);
}

// The container runtime and image where jobs run: one short job through the backend (on the
// partition of the profile's first GPU type, without GPUs) runs `RUNTIME --version` and tests the
// image path on its compute node; its output comes back through a folder under the current one,
// which the nodes must see (as they must see the run dirs).
static void check_nodes(Report *r, const ClusterProfile *p, const json_t *spec_container, const char *backend_name, int timeout_s)
{
    const char *runtime, *image;
    container_of(p, spec_container, &runtime, &image);
    if (!*runtime) return;
    NodeJob nj = {.prog = !strcmp(runtime, "charliecloud") ? "ch-run" : runtime, .image = image, .st.state = JOB_UNKNOWN};
    const char *vflag = !strcmp(runtime, "enroot") ? "version" : "--version";
    int image_is_path = *image && strcmp(runtime, "enroot") && strcmp(runtime, "podman") && !strstr(image, "://");
    char err[2048];
    if (!getcwd(nj.cwd, sizeof nj.cwd)) { say(r, "warn", "node-check", "no current directory: test job skipped"); return; }
    snprintf(nj.dir, sizeof nj.dir, "%s/.segx-doctor-XXXXXX", nj.cwd);
    if (!mkdtemp(nj.dir)) { say(r, "warn", "node-check", "cannot create a folder in %s for the test job: skipped", nj.cwd); return; }
    snprintf(nj.script, sizeof nj.script, "%s/check.sh", nj.dir);
    if (write_node_script(&nj, vflag, image_is_path) < 0) {
        say(r, "warn", "node-check", "cannot write %s: test job skipped", nj.script);
        rmdir(nj.dir);
        return;
    }
    if (backend_open(backend_name, NULL, &nj.b, err, sizeof err) < 0)
        say(r, "warn", "node-check", "backend %s: %s: the runtime on the compute nodes is not checked", backend_name, err);
    else if (run_node_job(r, &nj, p, timeout_s) == 0)
        report_node_output(r, &nj);
    remove_node_job(&nj);
}

// Any trainer value that names an absolute path, or a key that says it is one.
static void check_paths(Report *r, const json_t *obj, const char *prefix, int *n)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, k);
        if (json_is_object(v)) { check_paths(r, v, "trainer.args.", n); continue; }
        if (!json_is_string(v)) continue;
        const char *s = json_string_value(v);
        int looks = s[0] == '/' || strstr(k, "dir") || strstr(k, "path") || strstr(k, "data_root");
        if (!looks || !strcmp(k, "command")) continue;
        (*n)++;
        if (access(s, R_OK) == 0) say(r, "ok", "data", "%s = %s readable", key, s);
        else say(r, "FAIL", "data", "%s = %s is not readable", key, s);
    }
}

// The closing lines: with --json every check and the counts as one document (r->json is consumed),
// else the summary line.
static void print_report(Report *r)
{
    if (r->json) {
        json_t *o = json_pack("{s:o,s:i,s:i}", "checks", r->json, "failed", r->fails, "warnings", r->warns);
        char *txt = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        printf("%s: %d failed, %d warning%s\n", r->fails ? "problems" : "ready", r->fails, r->warns, r->warns == 1 ? "" : "s");
    }
}

int cmd_doctor(int argc, char **argv)
{
    const char *spec_path = NULL, *cluster = NULL, *backend = "auto";
    int as_json = 0, no_job = 0, job_timeout = 300;
    const CliOption opts[] = {
        {"spec", 's', CLI_STRING, &spec_path, "FILE", "check what this spec needs (its cluster, container, data)"},
        {"cluster", 0, CLI_STRING, &cluster, "NAME", "cluster profile to check (default: the spec's, else local)"},
        {"json", 0, CLI_FLAG, &as_json, NULL, "machine-readable output"},
        {"backend", 0, CLI_STRING, &backend, "NAME", "the backend of the test job on a compute node (default auto)"},
        {"no-job", 0, CLI_FLAG, &no_job, NULL, "do not submit the test job (container runtime and image on a node)"},
        {"job-timeout", 0, CLI_INT, &job_timeout, "SECONDS", "how long to wait for the test job (default 300)"},
        {0}};
    const CliCommand cmd = {
        "segx doctor [--spec FILE] [--cluster NAME] [--json]",
        "Checks that Slurm answers (libslurm and CLI backends) and its version, that the cluster\n"
        "profile's partitions and GPU types exist, that the container runtime and image are there,\n"
        "and that the spec's data paths are readable. On a cluster also: libslurm against slurmctld's\n"
        "release, PreemptMode/JobRequeue, MaxArraySize/MaxJobCount/QOS MaxSubmitJobs against the plan,\n"
        "slurmrestd and its token (SEGX_SLURMRESTD_URL, SLURM_JWT), the DB on a network filesystem, and\n"
        "with a container: one short test job (--backend) that looks for the runtime and image on a node.\n"
        "Exit 1 when a check fails.",
        opts, 0, 0, "examples:\n  segx doctor --spec examples/quickstart.json\n  segx doctor --cluster university-example"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;

    Report r = {0, 0, as_json ? json_array() : NULL};
    char err[2048];
    Spec *s = NULL;
    if (spec_path) {
        if (spec_load(spec_path, &s, err, sizeof err) < 0) {
            fprintf(stderr, "segx doctor: %s\n", err);
            json_decref(r.json);
            return 2;
        }
        say(&r, "ok", "spec", "%s (experiment %s)", spec_path, s->name);
    }
    json_t *cl = cluster ? json_string(cluster) : (s && s->cluster ? json_incref(s->cluster) : json_string("local"));
    ClusterProfile *p = NULL;
    if (cluster_load(cl, paths_templates_dir(), &p, err, sizeof err) < 0) say(&r, "FAIL", "profile", "%s", err);
    else say(&r, "ok", "profile", "%s (%s), %zu GPU types", cluster_name(p), cluster_path(p)[0] ? cluster_path(p) : "inline",
             cluster_gpu_count(p));
    json_decref(cl);

    int reachable;
    check_slurm(&r, p, &reachable);
    if (reachable) {
        size_t ncells = 0;
        PlanCell *cells = NULL;
        if (s && plan_expand(s, &cells, &ncells, err, sizeof err) == 0) plan_cells_free(cells, ncells);
        int accounting = check_cluster_settings(&r, ncells);
        check_rest(&r, accounting);
    }
    check_db_fs(&r, db_path_default(NULL));
    check_container(&r, p, s ? s->container : NULL);
    if (reachable && !no_job) check_nodes(&r, p, s ? s->container : NULL, backend, job_timeout > 0 ? job_timeout : 300);

    if (!s || !s->external) {
        const char *t = paths_trainer_path();
        char found[4096];
        if (on_path(t, found, sizeof found)) say(&r, "ok", "trainer", "%s", found);
        else say(&r, "FAIL", "trainer", "segx-train not found (%s): build it with make, or set SEGX_TRAIN", t);
    }
    if (s && s->trainer) {
        int n = 0;
        check_paths(&r, s->trainer, "trainer.", &n);
        if (n == 0) say(&r, "ok", "data", "the spec names no data path");
    }
    print_report(&r);
    cluster_free(p);
    spec_free(s);
    return r.fails ? 1 : 0;
}
