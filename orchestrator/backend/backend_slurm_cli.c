// orchestrator/backend/backend_slurm_cli.c — the `slurm-cli` backend: sbatch --parsable, one
// `squeue -h -t all -O ...` per poll, scancel. For segx built without libslurm, or a cluster whose
// libslurm differs from the headers segx was built with. Same behaviour as the `slurm` backend: the
// job is the script's #SBATCH lines plus the JobSpec (all passed on sbatch's command line, which
// overrides the script), submit retries with back-off while slurmctld does not answer and checks for
// a job with this attempt's comment before each retry, so no cell is submitted twice.
// sacct is not used: it needs slurmdbd, which many clusters (and the local one) do not run; a job
// that slurmctld has purged comes back JOB_UNKNOWN and the caller reads the run dir's exit_code.
#include "orchestrator/util/clock.h"
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/slurm_util.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    Backend base;
    char conf[1024], host[256], user[64];
    int port;
    double retry_s;
    SlurmThrottle throttle;     // --max-submitted
    SlurmJobInfo *known;        // this user's jobs at the first submit (see cli_submit)
    size_t nknown;
    int known_loaded;
} CliBackend;

static int cli_load_jobs(const char *user, SlurmJobInfo **jobs_out, size_t *n_out, char *err, size_t errlen);

// Runs argv (no shell) with stdin /dev/null; collects stdout and stderr (malloc'd, NUL-terminated).
// Kills it after timeout_s. Returns the exit status (0..255), 128+signal, or -1 when it cannot run.
static int run_capture(char *const argv[], double timeout_s, char **out, char **errout)
{
    *out = *errout = NULL;
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC)) return -1;
    if (pipe2(pe, O_CLOEXEC)) { close(po[0]); close(po[1]); return -1; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]); close(pe[1]);
    if (rc) { close(po[0]); close(pe[0]); errno = rc; return -1; }
    struct { int fd; char *buf; size_t len, cap; } s[2] = {{po[0], NULL, 0, 0}, {pe[0], NULL, 0, 0}};
    double deadline = mono_s() + timeout_s;
    int open_n = 2, killed = 0;
    while (open_n > 0) {
        struct pollfd p[2];
        int np = 0, map[2];
        for (int i = 0; i < 2; i++) if (s[i].fd >= 0) { p[np] = (struct pollfd){s[i].fd, POLLIN, 0}; map[np++] = i; }
        int left = (int)((deadline - mono_s()) * 1000);
        if (left <= 0) { if (!killed) { kill(pid, SIGKILL); killed = 1; } left = 1000; }
        int r = poll(p, (nfds_t)np, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        for (int k = 0; k < np; k++) {
            if (!p[k].revents) continue;
            int i = map[k];
            if (s[i].cap - s[i].len < 4096) {
                size_t cap = s[i].cap ? s[i].cap * 2 : 8192;
                char *nb = realloc(s[i].buf, cap);
                if (!nb) { close(s[i].fd); s[i].fd = -1; open_n--; continue; }
                s[i].buf = nb; s[i].cap = cap;
            }
            ssize_t n = read(s[i].fd, s[i].buf + s[i].len, s[i].cap - s[i].len - 1);
            if (n > 0) s[i].len += (size_t)n;
            else if (n == 0 || errno != EINTR) { close(s[i].fd); s[i].fd = -1; open_n--; }
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    for (int i = 0; i < 2; i++) {
        if (!s[i].buf) s[i].buf = calloc(1, 1);
        else s[i].buf[s[i].len] = '\0';
    }
    *out = s[0].buf; *errout = s[1].buf;
    if (killed) return 124;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void last_line(const char *text, char *out, size_t cap)
{
    size_t n = text ? strlen(text) : 0;
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
    size_t b = n;
    while (b && text[b - 1] != '\n') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), text ? text + b : "");
}

static int transient_text(const char *e)
{
    return strstr(e, "Unable to contact slurm controller") || strstr(e, "Socket timed out") ||
           strstr(e, "Connection refused") || strstr(e, "Zero Bytes were transmitted") ||
           strstr(e, "Resource temporarily unavailable") || strstr(e, "Communication connection failure");
}

// ---------------------------------------------------------------------------------------------

// "2026-11-21T23:28:50" (local time) -> unix seconds; "N/A", "Unknown", "None" -> 0
static double parse_time(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    tm.tm_isdst = -1;
    return (double)mktime(&tm);
}

typedef struct { char *v[64]; int n; char store[64][1200]; } Argv;
static void arg(Argv *a, const char *fmt, const char *v)
{
    if (a->n >= 62) return;
    snprintf(a->store[a->n], sizeof a->store[0], fmt, v);
    a->v[a->n] = a->store[a->n];
    a->n++;
    a->v[a->n] = NULL;
}
static void arg_int(Argv *a, const char *fmt, int v)
{
    char s[32];
    snprintf(s, sizeof s, "%d", v);
    arg(a, fmt, s);
}


typedef struct { Argv *a; const char *script_path; const char *user; } CliTry;

static int cli_try_submit(void *ctx, char *job_id, size_t idlen, int *transient, char *err, size_t errlen)
{
    CliTry *t = ctx;
    char *out, *eout;
    *transient = 0;
    int rc = run_capture(t->a->v, 60, &out, &eout);
    if (rc < 0) { snprintf(err, errlen, "cannot run sbatch: %s", strerror(errno)); return -1; }
    if (rc == 0) {
        out[strcspn(out, ";\n")] = '\0';      // "123" or "123;cluster"
        int ok = out[0] != '\0';
        for (char *p = out; *p; p++) ok &= (*p >= '0' && *p <= '9');
        if (ok) snprintf(job_id, idlen, "%s", out);
        else snprintf(err, errlen, "sbatch printed '%s', not a job id", out);
        free(out); free(eout);
        return ok ? 0 : -1;
    }
    last_line(eout, err, errlen);
    *transient = transient_text(eout) || rc == 124;
    free(out); free(eout);
    return -1;
}

static int cli_find(void *ctx, const char *comment, char *job_id, size_t idlen)
{
    CliTry *t = ctx;
    SlurmJobInfo *jobs;
    size_t n;
    char err[256];
    if (cli_load_jobs(t->user, &jobs, &n, err, sizeof err)) return -1;
    int found = slurm_find_comment(jobs, n, comment, 0, job_id, idlen);
    free(jobs);
    return found;
}

static int cli_submit(Backend *b, const JobSpec *job, char *job_id, size_t idlen, char *err, size_t errlen)
{
    CliBackend *c = (CliBackend *)b;
    SlurmOpts o;
    char *text = NULL;
    if (!job->script_path) { snprintf(err, errlen, "no job script given"); return -1; }
    if (slurm_script_parse(job->script_path, &o, &text, err, errlen)) return -1;
    free(text);
    slurm_opts_apply_job(&o, job);
    Argv a = {.n = 0};
    arg(&a, "%s", "sbatch");
    arg(&a, "%s", "--parsable");
    arg(&a, "%s", "--export=ALL");
    if (o.job_name[0]) arg(&a, "--job-name=%s", o.job_name);
    if (o.partition[0]) arg(&a, "--partition=%s", o.partition);
    if (o.account[0]) arg(&a, "--account=%s", o.account);
    if (o.qos[0]) arg(&a, "--qos=%s", o.qos);
    if (o.constraint[0]) arg(&a, "--constraint=%s", o.constraint);
    if (o.dependency[0]) arg(&a, "--dependency=%s", o.dependency);
    if (o.array[0]) arg(&a, "--array=%s", o.array);
    if (o.comment[0]) arg(&a, "--comment=%s", o.comment);
    if (o.chdir[0]) arg(&a, "--chdir=%s", o.chdir);
    if (o.output[0]) arg(&a, "--output=%s", o.output);
    if (o.error[0]) arg(&a, "--error=%s", o.error);
    if (o.time[0]) arg(&a, "--time=%s", o.time);
    if (o.nodes) arg_int(&a, "--nodes=%s", o.nodes);
    if (o.ntasks_per_node) arg_int(&a, "--ntasks-per-node=%s", o.ntasks_per_node);
    if (o.ntasks_per_node && !o.ntasks) arg_int(&a, "--ntasks=%s", o.ntasks_per_node * (o.nodes ? o.nodes : 1));
    if (o.ntasks) arg_int(&a, "--ntasks=%s", o.ntasks);
    if (o.cpus_per_task) arg_int(&a, "--cpus-per-task=%s", o.cpus_per_task);
    if (o.mem_mb) { char m[32]; snprintf(m, sizeof m, "%ldM", o.mem_mb); arg(&a, "--mem=%s", m); }
    if (o.gres[0]) arg(&a, "--gres=%s", o.gres);
    if (o.requeue == 1) arg(&a, "%s", "--requeue");
    if (o.requeue == 0) arg(&a, "%s", "--no-requeue");
    if (o.hold) arg(&a, "%s", "--hold");
    if (o.open_append >= 0) arg(&a, "--open-mode=%s", o.open_append ? "append" : "truncate");
    if (o.kill_invalid_dep >= 0) arg(&a, "--kill-on-invalid-dep=%s", o.kill_invalid_dep ? "yes" : "no");
    if (o.signal_num) {
        char sg[64];
        snprintf(sg, sizeof sg, "%s%d@%d", o.signal_batch_only ? "B:" : "", o.signal_num, o.signal_time);
        arg(&a, "--signal=%s", sg);
    }
    arg(&a, "%s", job->script_path);

    // as in the slurm backend: an attempt whose job slurmctld still queues or runs is not submitted twice
    if (!c->known_loaded) {
        char e[256];
        c->known_loaded = 1;
        // (not while the controller is away: libslurm and squeue would retry for many seconds)
        if (slurm_probe_controller(c->host, c->port, 800, e, sizeof e) == 0 &&
            cli_load_jobs(c->user, &c->known, &c->nknown, e, sizeof e)) c->known = NULL, c->nknown = 0;
    }
    if (slurm_find_comment(c->known, c->nknown, o.comment, 1, job_id, idlen)) return 0;
    if (slurm_throttle_wait(&c->throttle, b, err, errlen)) return -1;
    CliTry ctx = {&a, job->script_path, c->user};
    int rc = slurm_submit_with_retry(c->host, c->port, c->retry_s, o.job_name[0] ? o.job_name : job->script_path,
                                     o.comment, cli_try_submit, cli_find, &ctx, job_id, idlen, err, errlen);
    if (rc == 0) slurm_throttle_add(&c->throttle, job_id);
    return rc;
}


// Every job of this user that slurmctld still holds, from one squeue (not --jobs=: it fails on an id
// slurmctld has purged). *jobs is malloc'd.
static int cli_load_jobs(const char *user, SlurmJobInfo **jobs_out, size_t *n_out, char *err, size_t errlen)
{
    *jobs_out = NULL; *n_out = 0;
    // -r: one line per array task (segx records a task as ARRAYID_TASK), pending ones included
    char *argv[] = {"squeue", "-h", "-r", "-t", "all", "-u", (char *)user, "-O",
                    "JobID:|,State:|,Reason:|,exit_code:|,SubmitTime:|,StartTime:|,EndTime:|,NodeList:|,RestartCnt:|,Comment:|,"
                    "ArrayJobID:|,ArrayTaskID:|",
                    NULL};
    enum { NF = 12 };
    char *sout, *serr;
    int rc = run_capture(argv, 60, &sout, &serr);
    if (rc != 0) {
        char l[400];
        last_line(serr, l, sizeof l);
        snprintf(err, errlen, "squeue failed (status %d): %s", rc, rc < 0 ? strerror(errno) : l);
        free(sout); free(serr);
        return -1;
    }
    size_t cap = 256, nj = 0;
    SlurmJobInfo *jobs = calloc(cap, sizeof *jobs);
    for (char *line = sout, *next; jobs && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *f[NF] = {0};
        char *p = line;
        int nf = 0;
        for (; nf < NF && p; nf++) {
            f[nf] = p;
            char *bar = strchr(p, '|');
            if (bar) { *bar = '\0'; p = bar + 1; } else p = NULL;
        }
        if (nf < NF) continue;
        for (int k = 0; k < NF; k++) {   // squeue pads fields with spaces
            char *e = f[k] + strlen(f[k]);
            while (e > f[k] && e[-1] == ' ') *--e = '\0';
        }
        if (nj == cap) {
            SlurmJobInfo *nb = realloc(jobs, 2 * cap * sizeof *jobs);
            if (!nb) { free(jobs); jobs = NULL; break; }
            jobs = nb; cap *= 2;
        }
        SlurmJobInfo *j = &jobs[nj++];
        memset(j, 0, sizeof *j);
        char *e1, *e2;
        long aj = strtol(f[10], &e1, 10), at = strtol(f[11], &e2, 10);
        if (aj > 0 && !*e1 && e2 != f[11] && !*e2) snprintf(j->job_id, sizeof j->job_id, "%ld_%ld", aj, at);
        else snprintf(j->job_id, sizeof j->job_id, "%s", f[0]);
        snprintf(j->state, sizeof j->state, "%s", f[1]);
        snprintf(j->reason, sizeof j->reason, "%s", f[2]);
        j->exit_status = f[3][0] ? atoi(f[3]) : -1;
        j->submit_time = parse_time(f[4]);
        j->start_time = parse_time(f[5]);
        j->end_time = parse_time(f[6]);
        snprintf(j->nodes, sizeof j->nodes, "%s", f[7]);
        j->restarts = atoi(f[8]);
        snprintf(j->comment, sizeof j->comment, "%s", strcmp(f[9], "(null)") ? f[9] : "");
    }
    free(sout); free(serr);
    if (!jobs) { snprintf(err, errlen, "out of memory"); return -1; }
    *jobs_out = jobs; *n_out = nj;
    return 0;
}

static int cli_poll(Backend *b, const char *const *job_ids, size_t n, JobStatus *out, char *err, size_t errlen)
{
    CliBackend *c = (CliBackend *)b;
    SlurmJobInfo *jobs = NULL;
    size_t nj = 0;
    if (n && cli_load_jobs(c->user, &jobs, &nj, err, errlen)) return -1;   // one squeue for all
    int rc = slurm_match_jobs(jobs, nj, job_ids, n, out, err, errlen);
    free(jobs);
    return rc;
}

static int cli_cancel(Backend *b, const char *job_id, char *err, size_t errlen)
{
    (void)b;
    char *argv[] = {"scancel", "--verbose", (char *)job_id, NULL};
    char *out, *eout;
    int rc = run_capture(argv, 60, &out, &eout);
    // scancel exits 0 even for an id slurmctld does not know; with --verbose its stderr says so
    if (eout && strstr(eout, "already completing or completed")) rc = 0;
    else if (rc == 0 && eout && strstr(eout, "error:")) rc = 1;
    if (rc) {
        char l[400];
        const char *e = eout ? strstr(eout, "error:") : NULL;
        snprintf(l, sizeof l, "%.*s", e ? (int)strcspn(e, "\n") : 0, e ? e : "");
        if (!e) last_line(eout, l, sizeof l);
        snprintf(err, errlen, "scancel %s failed: %s", job_id, rc < 0 ? strerror(errno) : l);
    }
    free(out); free(eout);
    return rc ? -1 : 0;
}

static void cli_close(Backend *b)
{
    slurm_throttle_free(&((CliBackend *)b)->throttle);
    free(((CliBackend *)b)->known);
    free(b);
}

static const BackendOps cli_ops = {"slurm-cli", cli_submit, cli_poll, cli_cancel, cli_close};

int backend_slurm_cli_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    *out = NULL;
    CliBackend *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory"); return -1; }
    if (slurm_locate_conf(options_json, c->conf, sizeof c->conf, err, errlen) ||
        slurm_conf_controller(c->conf, c->host, sizeof c->host, &c->port, err, errlen) ||
        slurm_probe_controller(c->host, c->port, 800, err, errlen)) {
        free(c);
        return -1;
    }
    char *argv[] = {"sbatch", "--version", NULL};
    char *o, *e;
    int rc = run_capture(argv, 10, &o, &e);
    free(o); free(e);
    if (rc != 0) {
        snprintf(err, errlen, "sbatch is not on PATH (status %d): install slurm-client or use --backend slurm", rc);
        free(c);
        return -1;
    }
    snprintf(c->user, sizeof c->user, "%u", (unsigned)getuid());
    c->retry_s = slurm_option_number(options_json, "submit_retry_s", 60);
    c->throttle.max = slurm_max_submitted(options_json);
    c->base.ops = &cli_ops;
    c->base.impl = c;
    *out = &c->base;
    return 0;
}
