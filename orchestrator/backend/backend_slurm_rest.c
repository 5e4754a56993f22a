// orchestrator/backend/backend_slurm_rest.c — the `slurm-rest` backend: slurmrestd over HTTP (libcurl) with
// JSON bodies (jansson). For clusters whose Slurm release differs from the libslurm segx was built
// with, and sites that expose slurmrestd instead of shell access. Same behaviour as slurm and
// slurm-cli (the tests run all three): the job is the script's #SBATCH lines plus the JobSpec, sent as
// JSON (slurmrestd does not read #SBATCH lines); one GET /jobs per poll; DELETE /job/ID to cancel;
// submit retries with back-off on connection errors and 5xx replies and, before each retry, looks for
// a job carrying this attempt's comment, so a lost reply never submits a cell twice.
//
// Where (first found): options {"slurmrestd_url": URL}, $SEGX_SLURMRESTD_URL ("http://host:6820",
// "https://...", or "unix:/path/slurmrestd.socket"), else the local cluster's unix socket beside its
// slurm.conf (slurm/local-cluster: $SEGX_SLURM_DIR/rest/slurmrestd.socket).
// Auth: $SLURM_JWT (user: the token's "sun", else $SLURM_USER_NAME, else the login name), else a token
// from `scontrol token` (renewed before it expires), else none on a unix socket (rest_auth/local).
// API version: the newest one both sides speak (GET /openapi/v3; slurm_rest.h has the table), or
// options {"api_version": "v0.0.38"} / $SEGX_SLURMRESTD_API. libcurl's own proxy variables apply;
// $CURL_CA_BUNDLE or $SSL_CERT_FILE name a CA bundle for https.
// Options JSON: {"slurmrestd_url", "api_version", "submit_retry_s" (default 60, or
// $SEGX_SLURMRESTD_RETRY_S), "max_submitted"} — see backend_slurm.c for max_submitted.
//
// Known limit of the 22.05 slurmrestd (v0.0.37/38): its "signal" takes no B: ("Invalid SIGNAL
// specification"; "USR1@T" would go to the job's steps, not the batch shell that requeues the job), and
// no other field sets it. So for --signal=B:SIG@T the job gets SEGX_BATCH_SIGNAL="SIG LIMIT-T" in its
// environment instead and the job script signals itself that many seconds after it starts (the time
// limit is the job's own, so this is when Slurm would have sent it); the requeue then works as with the
// other backends. v0.0.39+ send it to the batch shell (kill_warning_flags BATCH_JOB).
#include "config.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/slurm_rest.h"
#include "orchestrator/backend/slurm_util.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if SEGX_HAVE_CURL
#include <curl/curl.h>
#endif

extern char **environ;

// ---------------------------------------------------------------------------------------------
// API versions

static const RestDialect dialects[] = {
    // version    env_arr wrapped warn  minmax flags  gres field       script in job
    {"v0.0.41",   1,      1,      1,    1,     1,     "tres_per_node", 1},
    {"v0.0.40",   1,      1,      1,    1,     1,     "tres_per_node", 0},
    {"v0.0.39",   1,      1,      1,    1,     1,     "tres_per_node", 0},
    {"v0.0.38",   0,      0,      0,    0,     0,     "gres",          0},
    {"v0.0.37",   0,      0,      0,    0,     0,     "gres",          0},
};
#define NDIALECTS (sizeof dialects / sizeof dialects[0])

const RestDialect *slurm_rest_dialect(const char *version)
{
    for (size_t i = 0; version && i < NDIALECTS; i++)
        if (strcmp(dialects[i].version, version) == 0) return &dialects[i];
    return NULL;
}

const RestDialect *slurm_rest_pick_version(json_t *openapi, char *err, size_t errlen)
{
    json_t *paths = json_object_get(openapi, "paths");
    if (!json_is_object(paths)) {
        snprintf(err, errlen, "the OpenAPI document has no \"paths\"");
        return NULL;
    }
    char offered[512] = "";
    const RestDialect *best = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(paths, key, v) {
        char ver[32];
        int n = 0;
        if (sscanf(key, "/slurm/%31[^/]/job/submit%n", ver, &n) != 1 || key[n]) continue;
        size_t l = strlen(offered);
        snprintf(offered + l, sizeof offered - l, "%s%s", l ? ", " : "", ver);
        const RestDialect *d = slurm_rest_dialect(ver);
        if (d && (!best || d < best)) best = d;   // the table is newest first
    }
    if (!best) {
        char speaks[128] = "";
        for (size_t i = 0; i < NDIALECTS; i++) {
            size_t l = strlen(speaks);
            snprintf(speaks + l, sizeof speaks - l, "%s%s", l ? ", " : "", dialects[i].version);
        }
        snprintf(err, errlen, "it offers API %s; segx speaks %s", offered[0] ? offered : "no job API (no /slurm/vX/job/submit)", speaks);
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// the submit body

static json_t *number(const RestDialect *d, long long v)
{
    return d->wrapped_numbers ? json_pack("{s:b,s:b,s:I}", "set", 1, "infinite", 0, "number", (json_int_t)v)
                              : json_integer(v);
}

static const char *signal_name(int sig)
{
    static const struct { int s; const char *n; } names[] = {
        {SIGUSR1, "USR1"}, {SIGUSR2, "USR2"}, {SIGTERM, "TERM"}, {SIGINT, "INT"}, {SIGHUP, "HUP"},
        {SIGKILL, "KILL"}, {SIGQUIT, "QUIT"}, {SIGCONT, "CONT"}, {SIGSTOP, "STOP"}, {0, NULL}};
    for (int i = 0; names[i].n; i++) if (names[i].s == sig) return names[i].n;
    return NULL;
}

// the job's names, paths and free-text fields, each only when set
static void body_strings(json_t *job, const SlurmOpts *o)
{
    #define STR(key, v) do { if ((v)[0]) json_object_set_new(job, key, json_string(v)); } while (0)
    STR("name", o->job_name);
    STR("partition", o->partition);
    STR("account", o->account);
    STR("qos", o->qos);
    STR("constraints", o->constraint);
    STR("dependency", o->dependency);
    STR("array", o->array);
    STR("comment", o->comment);
    STR("current_working_directory", o->chdir);
    STR("standard_output", o->output);
    STR("standard_error", o->error);
    #undef STR
}

// time limit (limit_min: 0 for none or unlimited), nodes, tasks, CPUs, memory and GPUs
static void body_resources(json_t *job, const RestDialect *d, const SlurmOpts *o, int limit_min)
{
    if (limit_min) json_object_set_new(job, "time_limit", number(d, limit_min));
    if (o->nodes) {
        if (d->nodes_minmax) {
            json_object_set_new(job, "minimum_nodes", json_integer(o->nodes));
            json_object_set_new(job, "maximum_nodes", json_integer(o->nodes));
        } else {
            json_object_set_new(job, "nodes", json_pack("[i,i]", o->nodes, o->nodes));
        }
    }
    if (o->ntasks_per_node) json_object_set_new(job, "tasks_per_node", json_integer(o->ntasks_per_node));
    int tasks = o->ntasks ? o->ntasks : o->ntasks_per_node * (o->nodes ? o->nodes : 1);
    if (tasks) json_object_set_new(job, "tasks", json_integer(tasks));
    if (o->cpus_per_task) json_object_set_new(job, "cpus_per_task", json_integer(o->cpus_per_task));
    if (o->mem_mb) json_object_set_new(job, "memory_per_node", number(d, o->mem_mb));
    if (o->gres[0]) {
        char g[160];
        snprintf(g, sizeof g, "%s%s", strcmp(d->gres_field, "gres") ? "gres/" : "", o->gres);
        json_object_set_new(job, d->gres_field, json_string(g));
    }
}

// requeue, hold, open mode and what happens on an invalid dependency
static void body_flags(json_t *job, const RestDialect *d, const SlurmOpts *o)
{
    if (o->requeue >= 0) json_object_set_new(job, "requeue", json_boolean(o->requeue));
    if (o->hold) json_object_set_new(job, "hold", json_true());
    if (o->open_append >= 0) {
        const char *m = o->open_append ? "append" : "truncate";
        json_object_set_new(job, "open_mode", d->flag_arrays ? json_pack("[s]", o->open_append ? "APPEND" : "TRUNCATE")
                                                             : json_string(m));
    }
    if (o->kill_invalid_dep >= 0) {
        if (d->flag_arrays)
            json_object_set_new(job, "flags", json_pack("[s]", o->kill_invalid_dep ? "KILL_INVALID_DEPENDENCY" : "NO_KILL_INVALID_DEPENDENCY"));
        else
            json_object_set_new(job, "kill_on_invalid_dependency", json_boolean(o->kill_invalid_dep));
    }
}

// --signal as this version takes it; where it cannot reach the batch shell, the job's own
// SEGX_BATCH_SIGNAL="SIG SECONDS" goes into batch_signal (else it stays "")
static void body_signal(json_t *job, const RestDialect *d, const SlurmOpts *o, int limit_min, char *batch_signal,
                        size_t cap)
{
    if (!o->signal_num) return;
    const char *sn = signal_name(o->signal_num);
    char sig[32];
    if (sn) snprintf(sig, sizeof sig, "%s", sn); else snprintf(sig, sizeof sig, "%d", o->signal_num);
    if (d->warn_flags) {
        json_object_set_new(job, "kill_warning_signal", json_string(sig));
        json_object_set_new(job, "kill_warning_delay", number(d, o->signal_time));
        if (o->signal_batch_only) json_object_set_new(job, "kill_warning_flags", json_pack("[s]", "BATCH_JOB"));
    } else if (!o->signal_batch_only) {
        char s[64];
        snprintf(s, sizeof s, "%s@%d", sig, o->signal_time);
        json_object_set_new(job, "signal", json_string(s));
    } else if (limit_min) {
        // B: (the batch shell) is refused by these versions: the job script signals itself instead,
        // SECONDS after it starts (templates/job.sbatch.tmpl reads SEGX_BATCH_SIGNAL="SIG SECONDS")
        snprintf(batch_signal, cap, "SEGX_BATCH_SIGNAL=%s %d", sig,
                 limit_min * 60 - o->signal_time > 0 ? limit_min * 60 - o->signal_time : 0);
    }
}

// the job's environment: env without SLURM_JWT and without an inherited SEGX_BATCH_SIGNAL, then
// batch_signal when set; ["K=V", ...] or {"K": "V"} as the version takes it
static json_t *body_environment(const RestDialect *d, char *const *env, char *batch_signal)
{
    json_t *e = d->env_array ? json_array() : json_object();
    char *const extra[] = {batch_signal[0] ? batch_signal : NULL, NULL};
    char *const *envs[] = {env, extra};
    for (int src = 0; src < 2; src++) for (char *const *p = envs[src]; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq || eq == *p || strncmp(*p, "SLURM_JWT=", 10) == 0) continue;
        if (src == 0 && strncmp(*p, "SEGX_BATCH_SIGNAL=", 18) == 0) continue;   // only what this job asks for
        if (d->env_array) json_array_append_new(e, json_string(*p));
        else {
            char k[256];
            if ((size_t)(eq - *p) >= sizeof k) continue;
            memcpy(k, *p, (size_t)(eq - *p));
            k[eq - *p] = '\0';
            json_object_set_new(e, k, json_string(eq + 1));
        }
    }
    return e;
}

json_t *slurm_rest_submit_body(const RestDialect *d, const SlurmOpts *o, const char *script, char *const *env)
{
    json_t *job = json_object();
    body_strings(job, o);
    int unl = 0, minutes = o->time[0] ? slurm_time_minutes(o->time, &unl) : -1;
    int limit_min = minutes > 0 && !unl ? minutes : 0;   // 0: no limit sent
    body_resources(job, d, o, limit_min);
    body_flags(job, d, o);
    char batch_signal[96] = "";
    body_signal(job, d, o, limit_min, batch_signal, sizeof batch_signal);
    json_object_set_new(job, "environment", body_environment(d, env, batch_signal));
    if (d->script_in_job) {
        json_object_set_new(job, "script", json_string(script));
        return json_pack("{s:o}", "job", job);
    }
    return json_pack("{s:s,s:o}", "script", script, "job", job);
}

// ---------------------------------------------------------------------------------------------
// the jobs reply

// A number, or {"set": true, "number": N} (v0.0.39+); dflt when absent, null or unset.
static double num(json_t *v, double dflt)
{
    if (json_is_number(v)) return json_number_value(v);
    if (json_is_object(v)) {
        json_t *set = json_object_get(v, "set"), *n = json_object_get(v, "number");
        if ((set && !json_is_true(set)) || json_is_true(json_object_get(v, "infinite"))) return dflt;
        if (json_is_number(n)) return json_number_value(n);
    }
    return dflt;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

// wait(2)-style status: an integer (v0.0.38), {"set": true, "number": N} (v0.0.39), or
// {"status": ..., "return_code": N, "signal": {...}} (v0.0.40+)
static int exit_status(json_t *v)
{
    if (json_is_integer(v)) return (int)json_integer_value(v);
    if (!json_is_object(v)) return -1;
    if (json_object_get(v, "number") || json_object_get(v, "set")) return (int)num(v, -1);
    json_t *sig = json_object_get(json_object_get(v, "signal"), "id");
    if (!sig) sig = json_object_get(json_object_get(v, "signal"), "signal_id");
    int s = (int)num(sig, 0);
    if (s > 0) return s & 0x7f;
    double rc = num(json_object_get(v, "return_code"), -1);
    return rc < 0 ? -1 : ((int)rc & 0xff) << 8;
}

int slurm_rest_parse_jobs(json_t *reply, const char *user, SlurmJobInfo **jobs_out, size_t *n_out, char *err, size_t errlen)
{
    *jobs_out = NULL; *n_out = 0;
    json_t *list = json_object_get(reply, "jobs");
    if (!json_is_array(list)) { snprintf(err, errlen, "the reply has no \"jobs\" list"); return -1; }
    size_t cap = json_array_size(list) ? json_array_size(list) : 1, nj = 0, i;
    SlurmJobInfo *jobs = calloc(cap, sizeof *jobs);
    if (!jobs) { snprintf(err, errlen, "out of memory"); return -1; }
    json_t *j;
    json_array_foreach(list, i, j) {
        if (user && *user && json_is_string(json_object_get(j, "user_name")) && strcmp(str(j, "user_name"), user) != 0)
            continue;
        SlurmJobInfo *x = &jobs[nj++];
        long id = (long)num(json_object_get(j, "job_id"), 0);
        long aj = (long)num(json_object_get(j, "array_job_id"), 0);
        double at = num(json_object_get(j, "array_task_id"), -1);
        const char *ats = str(j, "array_task_string");
        if (aj > 0 && at >= 0) snprintf(x->job_id, sizeof x->job_id, "%ld_%ld", aj, (long)at);
        else if (aj > 0 && *ats) snprintf(x->job_id, sizeof x->job_id, "%ld_[%s]", aj, ats);
        else snprintf(x->job_id, sizeof x->job_id, "%ld", id);
        json_t *st = json_object_get(j, "job_state");
        if (json_is_array(st)) st = json_array_get(st, 0);   // v0.0.40+: ["RUNNING", flags...]
        snprintf(x->state, sizeof x->state, "%s", json_string_value(st) ? json_string_value(st) : "");
        snprintf(x->reason, sizeof x->reason, "%s", str(j, "state_reason"));
        snprintf(x->state_desc, sizeof x->state_desc, "%s", str(j, "state_description"));
        snprintf(x->comment, sizeof x->comment, "%s", str(j, "comment"));
        snprintf(x->nodes, sizeof x->nodes, "%s", str(j, "nodes"));
        x->exit_status = exit_status(json_object_get(j, "exit_code"));
        x->restarts = (int)num(json_object_get(j, "restart_cnt"), 0);
        x->submit_time = num(json_object_get(j, "submit_time"), 0);
        x->start_time = num(json_object_get(j, "start_time"), 0);
        x->end_time = num(json_object_get(j, "end_time"), 0);
    }
    *jobs_out = jobs; *n_out = nj;
    return 0;
}

size_t slurm_rest_describe_errors(json_t *reply, char *out, size_t cap, long *max_number)
{
    size_t len = 0, i;
    json_t *e;
    *max_number = 0;
    if (cap) out[0] = '\0';
    json_array_foreach(json_object_get(reply, "errors"), i, e) {
        json_t *nv = json_object_get(e, "error_number");
        if (!nv) nv = json_object_get(e, "error_code");
        long nr = json_is_integer(nv) ? (long)json_integer_value(nv) : 0;
        if (nr > *max_number) *max_number = nr;
        const char *d = str(e, "description"), *t = str(e, "error"), *s = str(e, "source");
        if (len + 8 >= cap) continue;
        int w = snprintf(out + len, cap - len, "%s%s%s%s%s%s%s", len ? "; " : "", *d ? d : t, *d && *t && strcmp(t, "Unspecified error") ? ": " : "",
                         *d && strcmp(t, "Unspecified error") ? t : "", *s ? " (" : "", s, *s ? ")" : "");
        if (w > 0) len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
    }
    return len;
}

// ---------------------------------------------------------------------------------------------
// accounting: slurmdbd's job records (GET /slurmdb/vX/jobs) as the lines `sacct -n -P` prints

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

// a TRES list [{"type": "gres", "name": "gpu:a100", "count": 1}, ...] as sacct writes it:
// "type[/name]=count" sorted by name, memory-like counts with the unit sacct prints (mem_unit: "M"
// when counts are MB as in AllocTRES, "K" when bytes as in TRESUsageInTot)
static void tres_text(json_t *list, int bytes, char *out, size_t cap)
{
    char items[32][160];
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(list, i, t) {
        if (n == 32) break;
        double c = num(json_object_get(t, "count"), -1);
        const char *type = str(t, "type"), *name = str(t, "name");
        if (c < 0 || !*type) continue;
        char val[64];
        int memlike = strcmp(type, "mem") == 0 || strcmp(type, "vmem") == 0;
        if (memlike && bytes) snprintf(val, sizeof val, "%.0fK", c / 1024);
        else if (memlike) {   // MB, in the largest unit that divides it as sacct writes it ("1G", "500M")
            const char *u = "MGTP";
            while (c >= 1024 && fmod(c, 1024) == 0 && u[1]) c /= 1024, u++;
            snprintf(val, sizeof val, "%.0f%c", c, *u);
        }
        else snprintf(val, sizeof val, "%.0f", c);
        snprintf(items[n++], sizeof items[0], "%s%s%s=%s", type, *name ? "/" : "", name, val);
    }
    qsort(items, n, sizeof items[0], cmp_str);
    size_t len = 0;
    if (cap) out[0] = '\0';
    for (i = 0; i < n && len + 1 < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s", i ? "," : "", items[i]);
        if (w > 0) len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
    }
}

// the count of one TRES type in a list, -1 when absent
static double tres_count(json_t *list, const char *type)
{
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
        if (strcmp(str(t, "type"), type) == 0 && !*str(t, "name")) return num(json_object_get(t, "count"), -1);
    return -1;
}

// unix seconds as sacct prints them (local time), "Unknown" for 0
static void sacct_time(double t, char *out, size_t cap)
{
    if (t <= 0) { snprintf(out, cap, "Unknown"); return; }
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
}

// {"seconds": S, "microseconds": U} (v0.0.38) or a plain number of seconds
static double cpu_seconds(json_t *v)
{
    if (json_is_object(v) && json_object_get(v, "seconds"))
        return num(json_object_get(v, "seconds"), 0) + num(json_object_get(v, "microseconds"), 0) * 1e-6;
    return num(v, 0);
}

static const char *state_of(json_t *v)
{
    if (json_is_object(v)) v = json_object_get(v, "current");
    if (json_is_array(v)) v = json_array_get(v, 0);   // v0.0.40+: ["COMPLETED"]
    return json_string_value(v) ? json_string_value(v) : "";
}

int slurm_rest_sacct_lines(json_t *reply, FILE *out, char *err, size_t errlen)
{
    json_t *list = json_object_get(reply, "jobs");
    if (!json_is_array(list)) { snprintf(err, errlen, "the reply has no \"jobs\" list"); return -1; }
    size_t i, k;
    json_t *j, *s;
    int lines = 0;
    json_array_foreach(list, i, j) {
        char id[64], alloc[1024], t[4][32], rss[32] = "";
        long jid = (long)num(json_object_get(j, "job_id"), 0);
        json_t *arr = json_object_get(j, "array");
        long aj = (long)num(json_object_get(arr, "job_id"), 0);
        double at = num(json_object_get(arr, "task_id"), -1);
        if (aj > 0 && at >= 0) snprintf(id, sizeof id, "%ld_%ld", aj, (long)at);
        else snprintf(id, sizeof id, "%ld", jid);
        json_t *tm = json_object_get(j, "time"), *req = json_object_get(j, "required"), *steps = json_object_get(j, "steps");
        double total_cpu = 0;
        json_array_foreach(steps, k, s) total_cpu += cpu_seconds(json_object_get(json_object_get(s, "time"), "total"));
        if (!json_array_size(steps)) total_cpu = cpu_seconds(json_object_get(tm, "total"));
        tres_text(json_object_get(json_object_get(j, "tres"), "allocated"), 0, alloc, sizeof alloc);
        sacct_time(num(json_object_get(tm, "submission"), 0), t[0], sizeof t[0]);
        sacct_time(num(json_object_get(tm, "eligible"), 0), t[1], sizeof t[1]);
        sacct_time(num(json_object_get(tm, "start"), 0), t[2], sizeof t[2]);
        sacct_time(num(json_object_get(tm, "end"), 0), t[3], sizeof t[3]);
        // requested memory: "required": {"memory": MB} (v0.0.38), {"memory_per_node": {...}} (v0.0.40+)
        double mem = num(json_object_get(req, "memory"), -1);
        if (mem < 0) mem = num(json_object_get(req, "memory_per_node"), -1);
        if (mem < 0) mem = num(json_object_get(req, "memory_per_cpu"), -1);
        char reqmem[32] = "";
        if (mem >= 0) snprintf(reqmem, sizeof reqmem, "%.0fM", mem);
        json_t *ec = json_object_get(j, "exit_code");
        fprintf(out, "%s|%s|%.0f:0|%.0f|%s|%.3f|%s||%s|%s|%s|%s|%s|%s|%s|%s\n", id, state_of(json_object_get(j, "state")),
                num(json_object_get(ec, "return_code"), json_is_integer(ec) ? (double)(json_integer_value(ec) >> 8) : 0),
                num(json_object_get(tm, "elapsed"), 0), rss, total_cpu, alloc, str(j, "nodes"), str(j, "partition"),
                str(j, "qos"), t[0], t[1], t[2], t[3], reqmem);
        lines++;
        json_array_foreach(steps, k, s) {
            // step "batch", "extern", "0" (v0.0.38) or "123.batch" (v0.0.40+)
            json_t *sid = json_object_get(json_object_get(s, "step"), "id");
            char sname[64];
            if (json_is_string(sid)) {
                const char *dot = strrchr(json_string_value(sid), '.');
                snprintf(sname, sizeof sname, "%s", dot ? dot + 1 : json_string_value(sid));
            } else snprintf(sname, sizeof sname, "%.0f", num(sid, 0));
            // TRESUsageIn: "tres": {"requested": {"max": [...], "total": [...]}} in v0.0.38 (slurmrestd
            // 22.05 names usage "requested"); the memory counts are bytes
            json_t *use = json_object_get(json_object_get(s, "tres"), "requested");
            double maxrss = tres_count(json_object_get(use, "max"), "mem");
            char srss[32] = "", usage[1024];
            if (maxrss >= 0) snprintf(srss, sizeof srss, "%.0fK", maxrss / 1024);
            tres_text(json_object_get(use, "total"), 1, usage, sizeof usage);
            char salloc[1024], st[2][32];
            tres_text(json_object_get(json_object_get(s, "tres"), "allocated"), 0, salloc, sizeof salloc);
            json_t *stm = json_object_get(s, "time");
            sacct_time(num(json_object_get(stm, "start"), 0), st[0], sizeof st[0]);
            sacct_time(num(json_object_get(stm, "end"), 0), st[1], sizeof st[1]);
            json_t *sec = json_object_get(s, "exit_code");
            fprintf(out, "%s.%s|%s|%.0f:0|%.0f|%s|%.3f|%s|%s|%s|||%s|%s|%s|%s|\n", id, sname, state_of(json_object_get(s, "state")),
                    num(json_object_get(sec, "return_code"), 0), num(json_object_get(stm, "elapsed"), 0), srss,
                    cpu_seconds(json_object_get(stm, "total")), salloc, usage, json_is_array(json_object_get(json_object_get(s, "nodes"), "list")) ?
                    str(json_object_get(s, "nodes"), "range") : "", st[0], st[0], st[0], st[1]);
            lines++;
        }
    }
    return lines;
}

// ---------------------------------------------------------------------------------------------
// JWT

int slurm_rest_jwt_claims(const char *token, char *user, size_t userlen, double *exp)
{
    if (userlen) user[0] = '\0';
    *exp = 0;
    const char *a = token ? strchr(token, '.') : NULL, *b = a ? strchr(a + 1, '.') : NULL;
    if (!a || !b || b == a + 1) return -1;
    size_t n = (size_t)(b - a - 1);
    char *s = malloc(n + 4), *dec = malloc(n + 4);
    if (!s || !dec) { free(s); free(dec); return -1; }
    for (size_t i = 0; i < n; i++) s[i] = a[1 + i] == '-' ? '+' : a[1 + i] == '_' ? '/' : a[1 + i];
    while (n % 4) s[n++] = '=';
    s[n] = '\0';
    int len = EVP_DecodeBlock((unsigned char *)dec, (const unsigned char *)s, (int)n);
    free(s);
    if (len < 0) { free(dec); return -1; }
    while (len > 0 && dec[len - 1] == '\0') len--;   // padding decodes to NULs
    json_t *p = json_loadb(dec, (size_t)len, 0, NULL);
    free(dec);
    if (!json_is_object(p)) { json_decref(p); return -1; }
    if (json_is_string(json_object_get(p, "sun"))) snprintf(user, userlen, "%s", str(p, "sun"));
    *exp = num(json_object_get(p, "exp"), 0);
    json_decref(p);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// the backend (libcurl)

#if SEGX_HAVE_CURL

typedef struct {
    Backend base;
    CURL *curl;
    char url[1200];           // as given: "http://127.0.0.1:16826" or "unix:/path"
    char base_url[1024];      // what requests go to ("http://localhost" on a unix socket)
    char sock[1024];          // unix socket path, "" for TCP
    char user[64];
    char token[4096];
    char token_src[64];       // "SLURM_JWT", "scontrol token", "" (none)
    double token_exp;
    const RestDialect *d;
    double retry_s;
    SlurmThrottle throttle;
    SlurmJobInfo *known;
    size_t nknown;
    int known_loaded;
} RestBackend;

typedef struct { char *buf; size_t len, cap; } Buf;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    Buf *b = ud;
    size_t add = sz * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + add + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return 0;   // curl reports a write error
        b->buf = nb; b->cap = cap;
    }
    memcpy(b->buf + b->len, p, add);
    b->len += add;
    b->buf[b->len] = '\0';
    return add;
}

enum { REST_OK = 0, REST_TRANSIENT = 1, REST_FAIL = -1 };

// Renews a token from `scontrol token` a minute before it expires (one sweep can outlive a token).
static int token_from_scontrol(RestBackend *r, char *err, size_t errlen)
{
    FILE *p = popen("scontrol token lifespan=7200 2>&1", "r");
    if (!p) { snprintf(err, errlen, "cannot run scontrol token: %s", strerror(errno)); return -1; }
    char line[4096] = "", out[4096] = "";
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "SLURM_JWT=", 10) == 0) snprintf(out, sizeof out, "%s", line + 10);
        else if (!out[0]) snprintf(err, errlen, "%.300s", line);
    }
    int st = pclose(p);
    if (!out[0]) {
        char why[400];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "`scontrol token` gave no token (status %d: %s)", st, why[0] ? why : "no output");
        return -1;
    }
    snprintf(r->token, sizeof r->token, "%s", out);
    snprintf(r->token_src, sizeof r->token_src, "scontrol token");
    char u[64];
    if (slurm_rest_jwt_claims(r->token, u, sizeof u, &r->token_exp) == 0 && u[0]) snprintf(r->user, sizeof r->user, "%s", u);
    return 0;
}

// Sets up c for one request to url (headers, body, timeouts, CA bundle); the body goes into b. Returns
// the header list, which the caller frees after the request.
static struct curl_slist *rest_prepare(RestBackend *r, const char *method, const char *url, const char *body, Buf *b)
{
    CURL *c = r->curl;
    curl_easy_reset(c);
    char hu[128], ht[4200];
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (body) h = curl_slist_append(h, "Content-Type: application/json");
    if (r->token[0]) {
        snprintf(hu, sizeof hu, "X-SLURM-USER-NAME: %s", r->user);
        snprintf(ht, sizeof ht, "X-SLURM-USER-TOKEN: %s", r->token);
        h = curl_slist_append(curl_slist_append(h, hu), ht);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (r->sock[0]) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, r->sock);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);   // slurmrestd waits ~10 s for an absent slurmctld
    const char *ca = getenv("CURL_CA_BUNDLE");
    if (!ca || !*ca) ca = getenv("SSL_CERT_FILE");
    if (ca && *ca) curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    return h;
}

// A request that got no complete HTTP reply (got: the bytes that came): REST_TRANSIENT or REST_FAIL, with why.
static int curl_failure(CURLcode cc, const char *method, const char *shown, size_t got, char *err, size_t errlen)
{
    int transient = cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SEND_ERROR ||
                    cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE;
    if (cc == CURLE_PARTIAL_FILE)
        snprintf(err, errlen, "%s %s: the reply was cut short after %zu bytes (slurmrestd or a proxy closed the "
                 "connection early)", method, shown, got);
    else if (cc == CURLE_SSL_CACERT || cc == CURLE_PEER_FAILED_VERIFICATION)
        snprintf(err, errlen, "%s %s: %s: name the site's CA bundle in CURL_CA_BUNDLE", method, shown, curl_easy_strerror(cc));
    else
        snprintf(err, errlen, "%s %s: %s%s", method, shown, curl_easy_strerror(cc),
                 transient ? " (is slurmrestd running? check SEGX_SLURMRESTD_URL)" : "");
    return transient ? REST_TRANSIENT : REST_FAIL;
}

// A reply whose body is not JSON (ct: its Content-Type, je: the parse error when it had a body): not
// slurmrestd's JSON: an HTML error or login page of a proxy, a truncated body, an empty reply.
// REST_TRANSIENT or REST_FAIL, with why.
static int not_json(const RestBackend *r, const char *method, const char *shown, long status, const char *ct,
                    const Buf *b, const json_error_t *je, char *err, size_t errlen)
{
    char excerpt[121] = "";
    size_t k = 0;
    for (size_t i = 0; b->buf && i < b->len && k < sizeof excerpt - 1; i++)
        excerpt[k++] = isprint((unsigned char)b->buf[i]) ? b->buf[i] : ' ';
    excerpt[k] = '\0';
    int html = (ct && strstr(ct, "html")) || (b->buf && strstr(b->buf, "<html")) || (b->buf && strstr(b->buf, "<HTML"));
    if (html)
        snprintf(err, errlen, "%s %s: HTTP %ld with an HTML page (\"%.80s\"), not slurmrestd's JSON: is the URL "
                 "slurmrestd itself and not a proxy or login page? (check SEGX_SLURMRESTD_URL)", method, shown, status, excerpt);
    else if (b->len && ct && strstr(ct, "json"))
        snprintf(err, errlen, "%s %s: HTTP %ld with %zu bytes of broken JSON (%s at byte %d: truncated?); "
                 "try again, and look at slurmrestd's log if it persists", method, shown, status, b->len, je->text, je->position);
    else if (status == 401 || status == 403)
        snprintf(err, errlen, "%s %s: HTTP %ld \"%.80s\": slurmrestd refused the credentials%s%s: get a new token "
                 "(`scontrol token`) and export SLURM_JWT", method, shown, status, excerpt,
                 r->token_src[0] ? " from " : "", r->token_src);
    else if (status == 404)
        snprintf(err, errlen, "%s %s: HTTP 404 \"%.80s\": this slurmrestd does not serve %s (it lists its API "
                 "versions at /openapi/v3; set SEGX_SLURMRESTD_API to one of them)", method, shown, excerpt,
                 r->d ? r->d->version : "it");
    else
        snprintf(err, errlen, "%s %s: HTTP %ld with %zu bytes that are not JSON (\"%.80s\")%s", method, shown, status,
                 b->len, excerpt, b->len && !(ct && strstr(ct, "json")) ? ": check SEGX_SLURMRESTD_URL" : "");
    return status >= 500 || (ct && strstr(ct, "json") && b->len) ? REST_TRANSIENT : REST_FAIL;
}

// A JSON reply with a status outside 2xx: REST_TRANSIENT or REST_FAIL, with slurmrestd's errors as why.
static int error_reply(json_t *j, const char *method, const char *shown, long status, char *err, size_t errlen)
{
    char es[600];
    long maxnr;
    slurm_rest_describe_errors(j, es, sizeof es, &maxnr);
    if (status == 401 || status == 403) {
        snprintf(err, errlen, "%s %s: HTTP %ld: slurmrestd refused the credentials (%s): get a new token (`scontrol token`) "
                 "and export SLURM_JWT", method, shown, status, es[0] ? es : "no details");
        return REST_FAIL;
    }
    snprintf(err, errlen, "%s %s: HTTP %ld: %s", method, shown, status, es[0] ? es : "no error details");
    // Slurm's own rejections (ESLURM_*, 2000-4999) are final; -1 and the communication errors
    // (1000-1999, 5000+) mean slurmctld was not reached: retry
    return (status >= 500 && !(maxnr >= 2000 && maxnr < 5000)) ? REST_TRANSIENT : REST_FAIL;
}

// One request. *reply gets the parsed JSON body (also for 4xx/5xx that carry one). REST_TRANSIENT:
// worth retrying (no connection, a cut-short reply, 5xx, slurmctld unreachable behind slurmrestd).
static int rest_call(RestBackend *r, const char *method, const char *path, const char *body, long *status,
                     json_t **reply, char *err, size_t errlen)
{
    *reply = NULL;
    *status = 0;
    char url[1400];
    snprintf(url, sizeof url, "%s%s", r->base_url, path);
    const char *shown = r->sock[0] ? r->url : url;   // messages name what the user configured
    char shown_url[1400];
    if (r->sock[0]) { snprintf(shown_url, sizeof shown_url, "%s%s", shown, path); shown = shown_url; }
    if (strcmp(r->token_src, "scontrol token") == 0 && r->token_exp > 0 && r->token_exp - (double)time(NULL) < 60)
        if (token_from_scontrol(r, err, errlen)) return REST_FAIL;
    Buf b = {0};
    struct curl_slist *h = rest_prepare(r, method, url, body, &b);
    CURLcode cc = curl_easy_perform(r->curl);
    curl_slist_free_all(h);
    if (cc != CURLE_OK) {
        int rc = curl_failure(cc, method, shown, b.len, err, errlen);
        free(b.buf);
        return rc;
    }
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, status);
    char *ct = NULL;
    curl_easy_getinfo(r->curl, CURLINFO_CONTENT_TYPE, &ct);
    json_error_t je;
    json_t *j = b.len ? json_loadb(b.buf, b.len, 0, &je) : NULL;
    if (!j) {
        int rc = not_json(r, method, shown, *status, ct, &b, &je, err, errlen);
        free(b.buf);
        return rc;
    }
    free(b.buf);
    *reply = j;
    if (*status >= 200 && *status < 300) return REST_OK;
    return error_reply(j, method, shown, *status, err, errlen);
}

static int rest_load_jobs(RestBackend *r, SlurmJobInfo **jobs, size_t *n, int *transient, char *err, size_t errlen)
{
    char path[64];
    long status;
    json_t *j;
    snprintf(path, sizeof path, "/slurm/%s/jobs", r->d->version);
    int rc = rest_call(r, "GET", path, NULL, &status, &j, err, errlen);
    if (transient) *transient = rc == REST_TRANSIENT;
    if (rc != REST_OK) { json_decref(j); return -1; }
    char e[200];
    if (slurm_rest_parse_jobs(j, r->user, jobs, n, e, sizeof e)) {
        snprintf(err, errlen, "GET %s%s: %s", r->url, path, e);
        json_decref(j);
        return -1;
    }
    json_decref(j);
    return 0;
}

// GET /jobs with retries while slurmrestd or slurmctld is away (polls must survive a restart).
static int rest_load_jobs_retry(RestBackend *r, double budget_s, SlurmJobInfo **jobs, size_t *n, char *err, size_t errlen)
{
    double t0 = mono_s();
    for (int attempt = 0;; attempt++) {
        int transient = 0;
        if (rest_load_jobs(r, jobs, n, &transient, err, errlen) == 0) return 0;
        if (!transient || mono_s() - t0 >= budget_s) return -1;
        slurm_backoff_sleep(attempt);
    }
}

static int find_comment_now(RestBackend *r, const char *comment, char *job_id, size_t idlen)
{
    SlurmJobInfo *jobs;
    size_t n;
    char e[512];
    if (rest_load_jobs(r, &jobs, &n, NULL, e, sizeof e)) return -1;
    int f = slurm_find_comment(jobs, n, comment, 0, job_id, idlen);
    free(jobs);
    return f;
}

static int rest_submit(Backend *b, const JobSpec *job, char *job_id, size_t idlen, char *err, size_t errlen)
{
    RestBackend *r = (RestBackend *)b;
    SlurmOpts o;
    char *text = NULL;
    if (!job->script_path) { snprintf(err, errlen, "no job script given"); return -1; }
    if (slurm_script_parse(job->script_path, &o, &text, err, errlen)) return -1;
    slurm_opts_apply_job(&o, job);
    if (!r->known_loaded) {   // as in the other backends: an attempt still queued or running is not sent twice
        char e[512];
        r->known_loaded = 1;
        if (rest_load_jobs(r, &r->known, &r->nknown, NULL, e, sizeof e)) r->known = NULL, r->nknown = 0;
    }
    if (slurm_find_comment(r->known, r->nknown, o.comment, 1, job_id, idlen)) { free(text); return 0; }
    if (slurm_throttle_wait(&r->throttle, b, err, errlen)) { free(text); return -1; }
    json_t *body = slurm_rest_submit_body(r->d, &o, text, environ);
    free(text);
    char *bs = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!bs) { snprintf(err, errlen, "out of memory"); return -1; }
    char path[64], last[1024] = "";
    snprintf(path, sizeof path, "/slurm/%s/job/submit", r->d->version);
    const char *name = o.job_name[0] ? o.job_name : job->script_path;
    double t0 = mono_s();
    int tried = 0, rc = -1;
    for (int attempt = 0;; attempt++) {
        if (attempt > 0) {
            if (mono_s() - t0 >= r->retry_s) {
                snprintf(err, errlen, "slurmrestd did not accept job '%s' for %.0f s (last error: %s); it was not "
                         "submitted: run submit again once slurmrestd and slurmctld answer", name, r->retry_s, last);
                break;
            }
            slurm_backoff_sleep(attempt - 1);
        }
        if (tried) {
            // the last POST may have created the job and lost only its reply
            int f = find_comment_now(r, o.comment, job_id, idlen);
            if (f == 1) { rc = 0; break; }
            if (f < 0) { snprintf(last + strlen(last), sizeof last - strlen(last), "%s", strlen(last) ? "" : "cannot list jobs"); continue; }
        }
        tried = 1;
        long status;
        json_t *j;
        int cr = rest_call(r, "POST", path, bs, &status, &j, last, sizeof last);
        if (cr == REST_OK) {
            double id = num(json_object_get(j, "job_id"), 0);
            if (id > 0) {
                snprintf(job_id, idlen, "%.0f", id);
                rc = 0;
            } else {
                snprintf(err, errlen, "POST %s%s answered without a job id: %.300s", r->url, path, last);
            }
            json_decref(j);
            break;
        }
        json_decref(j);
        if (cr == REST_FAIL) {
            snprintf(err, errlen, "Slurm rejected job '%s': %s", name, last);
            break;
        }
    }
    free(bs);
    if (rc == 0) slurm_throttle_add(&r->throttle, job_id);
    return rc;
}

static int rest_poll(Backend *b, const char *const *job_ids, size_t n, JobStatus *out, char *err, size_t errlen)
{
    RestBackend *r = (RestBackend *)b;
    SlurmJobInfo *jobs = NULL;
    size_t nj = 0;
    if (n && rest_load_jobs_retry(r, r->retry_s < 30 ? r->retry_s : 30, &jobs, &nj, err, errlen)) return -1;   // one GET for all
    int rc = slurm_match_jobs(jobs, nj, job_ids, n, out, err, errlen);
    free(jobs);
    return rc;
}

static int rest_cancel(Backend *b, const char *job_id, char *err, size_t errlen)
{
    RestBackend *r = (RestBackend *)b;
    char path[160], e[1024];
    snprintf(path, sizeof path, "/slurm/%s/job/%s", r->d->version, job_id);
    double t0 = mono_s();
    for (int attempt = 0;; attempt++) {
        long status;
        json_t *j;
        int cr = rest_call(r, "DELETE", path, NULL, &status, &j, e, sizeof e);
        json_decref(j);
        if (cr == REST_OK || strstr(e, "already completing or completed")) return 0;
        if (cr == REST_FAIL || mono_s() - t0 >= r->retry_s) {
            snprintf(err, errlen, "cancel of job %s failed: %s", job_id, e);
            return -1;
        }
        slurm_backoff_sleep(attempt);
    }
}

static void rest_close(Backend *b)
{
    RestBackend *r = (RestBackend *)b;
    slurm_throttle_free(&r->throttle);
    free(r->known);
    if (r->curl) curl_easy_cleanup(r->curl);
    free(r);
}

static const BackendOps rest_ops = {"slurm-rest", rest_submit, rest_poll, rest_cancel, rest_close};

// What an earlier open in this process learnt (segx status --watch and segx run open the backend for
// every refresh): the API version, the token from `scontrol token` and when slurmctld last answered a
// ping, per URL. A refresh then costs one GET /jobs instead of GET /openapi/v3 + GET /ping +
// `scontrol token` (an RPC to slurmctld) + GET /jobs.
static struct {
    char url[1200];
    const RestDialect *d;
    char token[4096], token_src[64], user[64];
    double token_exp, ping_at;
} reopen;

static void option_string(const char *options_json, const char *key, const char *env, char *out, size_t cap)
{
    out[0] = '\0';
    if (options_json && *options_json) {
        json_t *o = json_loads(options_json, 0, NULL);
        const char *v = json_string_value(json_object_get(o, key));
        if (v) snprintf(out, cap, "%s", v);
        json_decref(o);
    }
    if (!out[0] && env && getenv(env)) snprintf(out, cap, "%s", getenv(env));
}

// The local cluster's slurmrestd: slurm/local-cluster puts its socket beside etc/slurm.conf. "unix:PATH"
// into url when that socket exists, else url is left as it is.
static void local_socket(const char *options_json, char *url, size_t cap)
{
    char conf[1024], e[256], sock[1100];
    if (slurm_locate_conf(options_json, conf, sizeof conf, e, sizeof e) != 0) return;
    char *slash = strrchr(conf, '/');
    if (slash) *slash = '\0';
    slash = strrchr(conf, '/');
    if (slash) *slash = '\0';
    snprintf(sock, sizeof sock, "%s/rest/slurmrestd.socket", conf);
    struct stat sb;
    if (stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode)) snprintf(url, cap, "unix:%s", sock);
}

// Where requests go: r->url (option, $SEGX_SLURMRESTD_URL or the local socket) and from it r->base_url and
// r->sock. 0, or -1 with err.
static int rest_where(RestBackend *r, const char *options_json, char *err, size_t errlen)
{
    option_string(options_json, "slurmrestd_url", "SEGX_SLURMRESTD_URL", r->url, sizeof r->url);
    if (!r->url[0]) local_socket(options_json, r->url, sizeof r->url);
    if (!r->url[0]) {
        snprintf(err, errlen, "no slurmrestd to talk to: set SEGX_SLURMRESTD_URL (http://HOST:6820 or unix:/path/slurmrestd.socket), "
                 "or use --backend slurm-cli");
        return -1;
    }
    size_t ul = strlen(r->url);
    while (ul > 1 && r->url[ul - 1] == '/') r->url[--ul] = '\0';
    if (strncmp(r->url, "unix:", 5) == 0) {
        snprintf(r->sock, sizeof r->sock, "%s", r->url + 5);
        snprintf(r->base_url, sizeof r->base_url, "http://localhost");
    } else if (strncmp(r->url, "http://", 7) == 0 || strncmp(r->url, "https://", 8) == 0) {
        snprintf(r->base_url, sizeof r->base_url, "%s", r->url);
    } else {
        snprintf(err, errlen, "slurmrestd URL '%s' is not http://HOST:PORT, https://HOST:PORT or unix:/PATH", r->url);
        return -1;
    }
    return 0;
}

// The token and user: $SLURM_JWT, else this process's earlier `scontrol token` while still good, else a
// new one (none on a unix socket is fine); the user, when no token names one, from $SLURM_USER_NAME or
// the login name. 0, or -1 with err.
static int rest_credentials(RestBackend *r, char *err, size_t errlen)
{
    const char *jwt = getenv("SLURM_JWT");
    if (jwt && *jwt) {
        snprintf(r->token, sizeof r->token, "%s", jwt);
        snprintf(r->token_src, sizeof r->token_src, "SLURM_JWT");
        char u[64];
        if (slurm_rest_jwt_claims(jwt, u, sizeof u, &r->token_exp) == 0 && u[0]) snprintf(r->user, sizeof r->user, "%s", u);
        if (r->token_exp > 0 && r->token_exp < (double)time(NULL)) {
            char when[64];
            time_t t = (time_t)r->token_exp;
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
            snprintf(err, errlen, "the token in SLURM_JWT expired at %s: get a new one (`scontrol token lifespan=SECONDS`, "
                     "or from your site) and export SLURM_JWT", when);
            return -1;
        }
    } else if (strcmp(reopen.url, r->url) == 0 && reopen.token[0] && reopen.token_exp - (double)time(NULL) > 120) {
        snprintf(r->token, sizeof r->token, "%s", reopen.token);   // this process's `scontrol token`, still good
        snprintf(r->token_src, sizeof r->token_src, "%s", reopen.token_src);
        snprintf(r->user, sizeof r->user, "%s", reopen.user);
        r->token_exp = reopen.token_exp;
    } else {
        char e[600];
        if (token_from_scontrol(r, e, sizeof e) && !r->sock[0]) {
            snprintf(err, errlen, "no token for slurmrestd at %s: SLURM_JWT is not set and %s; export SLURM_JWT=<token>", r->url, e);
            return -1;
        }
    }
    if (!r->user[0]) {
        const char *u = getenv("SLURM_USER_NAME");
        struct passwd *pw = getpwuid(getuid());
        snprintf(r->user, sizeof r->user, "%s", u && *u ? u : pw ? pw->pw_name : "");
    }
    return 0;
}

// The API version into r->d: asked for, else what an earlier open learnt, else the newest both sides
// speak (GET /openapi/v3). 0, or -1 with err.
static int rest_version(RestBackend *r, const char *options_json, char *err, size_t errlen)
{
    char ver[32], e[1024];
    option_string(options_json, "api_version", "SEGX_SLURMRESTD_API", ver, sizeof ver);
    if (ver[0]) {
        if (!(r->d = slurm_rest_dialect(ver))) {
            snprintf(err, errlen, "API version '%s' (SEGX_SLURMRESTD_API): segx speaks v0.0.37 to v0.0.41", ver);
            return -1;
        }
        return 0;
    }
    if (strcmp(reopen.url, r->url) == 0 && reopen.d) {
        r->d = reopen.d;
        return 0;
    }
    long status;
    json_t *j = NULL;
    if (rest_call(r, "GET", "/openapi/v3", NULL, &status, &j, e, sizeof e) != REST_OK) {
        snprintf(err, errlen, "cannot ask slurmrestd for its API versions: %s", e);
        json_decref(j);
        return -1;
    }
    r->d = slurm_rest_pick_version(j, e, sizeof e);
    json_decref(j);
    if (!r->d) {
        snprintf(err, errlen, "slurmrestd at %s speaks no API version segx knows: %s; use --backend slurm-cli, or "
                 "a segx that knows this Slurm release", r->url, e);
        return -1;
    }
    return 0;
}

// One ping: the token and slurmctld, before anything is submitted (not again within a minute for the
// same URL, version and token). 0, or -1 with err.
static int rest_ping(RestBackend *r, char *err, size_t errlen)
{
    char path[64], e[1024];
    snprintf(path, sizeof path, "/slurm/%s/ping", r->d->version);
    int same = strcmp(reopen.url, r->url) == 0 && reopen.d == r->d && strcmp(reopen.token, r->token) == 0;
    if (same && mono_s() - reopen.ping_at <= 60) return 0;
    long status;
    json_t *j = NULL;
    int pr = rest_call(r, "GET", path, NULL, &status, &j, e, sizeof e);
    json_decref(j);
    if (pr == REST_OK) {
        reopen.ping_at = mono_s();
        return 0;
    }
    if (status >= 500)
        snprintf(err, errlen, "%s — slurmrestd could not reach slurmctld as user '%s': the token%s%s is wrong or expired "
                 "(get one: `scontrol token`, export SLURM_JWT=...), or slurmctld is down (slurmrestd's log says which)",
                 e, r->user, r->token_src[0] ? " from " : "", r->token_src);
    else
        snprintf(err, errlen, "%s", e);
    return -1;
}

// what the next open in this process may reuse (see reopen)
static void remember(const RestBackend *r)
{
    snprintf(reopen.url, sizeof reopen.url, "%s", r->url);
    reopen.d = r->d;
    snprintf(reopen.token, sizeof reopen.token, "%s", r->token);
    snprintf(reopen.token_src, sizeof reopen.token_src, "%s", r->token_src);
    snprintf(reopen.user, sizeof reopen.user, "%s", r->user);
    reopen.token_exp = r->token_exp;
}

int backend_slurm_rest_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    *out = NULL;
    static int curl_ready;
    if (!curl_ready) { curl_global_init(CURL_GLOBAL_DEFAULT); curl_ready = 1; }
    RestBackend *r = calloc(1, sizeof *r);
    if (!r || !(r->curl = curl_easy_init())) { free(r); snprintf(err, errlen, "out of memory"); return -1; }
    r->base.ops = &rest_ops;
    r->base.impl = r;
    if (rest_where(r, options_json, err, errlen) || rest_credentials(r, err, errlen)) {
        rest_close(&r->base);
        return -1;
    }
    double rs = slurm_option_number(options_json, "submit_retry_s", -1);
    if (rs < 0) { const char *e = getenv("SEGX_SLURMRESTD_RETRY_S"); rs = e && *e ? atof(e) : 60; }
    r->retry_s = rs;
    r->throttle.max = slurm_max_submitted(options_json);
    if (rest_version(r, options_json, err, errlen) || rest_ping(r, err, errlen)) {
        rest_close(&r->base);
        return -1;
    }
    remember(r);
    *out = &r->base;
    return 0;
}

// For accounting: slurmdbd's records of job_ids (GET /slurmdb/vX/jobs?step=ID,ID,...: the job-id
// filter `sacct -j` uses) written to out as `sacct -n -P` lines (slurm_rest_sacct_lines). Retries
// for up to 30 s while slurmrestd or slurmdbd does not answer. Lines written, or -1 with err.
int backend_slurm_rest_accounting(Backend *b, const char *const *job_ids, size_t n, FILE *out, char *err, size_t errlen)
{
    if (!b || b->ops != &rest_ops) { snprintf(err, errlen, "not a slurm-rest backend"); return -1; }
    RestBackend *r = (RestBackend *)b;
    size_t cap = 64 + n * 70, len;
    char *path = malloc(cap);
    if (!path) { snprintf(err, errlen, "out of memory"); return -1; }
    len = (size_t)snprintf(path, cap, "/slurmdb/%s/jobs?step=", r->d->version);
    for (size_t i = 0; i < n && len < cap; i++) {
        char *esc = curl_easy_escape(r->curl, job_ids[i], 0);   // "," as %2C: slurmrestd 22.05 refuses a bare one
        len += (size_t)snprintf(path + len, cap - len, "%s%s", i ? "%2C" : "", esc ? esc : "");
        curl_free(esc);
    }
    double t0 = mono_s();
    int rc = -1;
    for (int attempt = 0;; attempt++) {
        long status;
        json_t *j;
        char e[1024];
        int cr = rest_call(r, "GET", path, NULL, &status, &j, e, sizeof e);
        if (cr == REST_OK) {
            char pe[256];
            rc = slurm_rest_sacct_lines(j, out, pe, sizeof pe);
            if (rc < 0) snprintf(err, errlen, "GET %s/slurmdb/%s/jobs: %s", r->url, r->d->version, pe);
            json_decref(j);
            break;
        }
        json_decref(j);
        if (cr == REST_FAIL || mono_s() - t0 >= 30) {
            if (status == 404)
                snprintf(err, errlen, "slurmrestd at %s serves no /slurmdb/%s (start it with the openapi/dbv%s plugin: -s ...,openapi/dbv%s)",
                         r->url, r->d->version, r->d->version + 1, r->d->version + 1);
            else
                snprintf(err, errlen, "%s", e);
            break;
        }
        slurm_backoff_sleep(attempt);
    }
    free(path);
    return rc;
}

// For `segx doctor`: the URL, API version, user and token expiry of an open slurm-rest backend.
int backend_slurm_rest_describe(Backend *b, char *out, size_t cap, double *token_exp)
{
    if (!b || b->ops != &rest_ops) return -1;
    RestBackend *r = (RestBackend *)b;
    snprintf(out, cap, "%s, API %s, user %s, token %s", r->url, r->d->version, r->user[0] ? r->user : "?",
             r->token_src[0] ? r->token_src : "none (unix socket, rest_auth/local)");
    *token_exp = r->token_exp;
    return 0;
}

#else   // no libcurl

int backend_slurm_rest_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    (void)options_json;
    *out = NULL;
    snprintf(err, errlen, "segx was built without libcurl (install libcurl4-openssl-dev, then make config); use --backend slurm-cli");
    return -1;
}

int backend_slurm_rest_describe(Backend *b, char *out, size_t cap, double *token_exp)
{
    (void)b; (void)out; (void)cap; (void)token_exp;
    return -1;
}

int backend_slurm_rest_accounting(Backend *b, const char *const *job_ids, size_t n, FILE *out, char *err, size_t errlen)
{
    (void)b; (void)job_ids; (void)n; (void)out;
    snprintf(err, errlen, "segx was built without libcurl");
    return -1;
}
#endif
