// orchestrator/backend/backend_local.c — the embedded backend: cells run as child processes of a
// detached local agent on this machine (orchestrator/backend/local_jobs.h has the design).
// Options (JSON): {"state_dir": "RUNS/.local", "max_parallel": N, "cpus": C}; state_dir defaults
// to $SEGX_LOCAL_DIR, else ./runs/.local. When either of max_parallel/cpus is given, the agent's
// slots are replaced (local_jobs.h): jobs share C cores ($SEGX_LOCAL_CPUS when set, else C, else
// when C is 0 or absent this machine's online cores), and max_parallel (0 = none) caps the jobs
// at once on top of that. Each job claims ranks x cpus-per-task cores as its script asks Slurm
// for them (#SBATCH --nodes x --ntasks-per-node x --cpus-per-task, the same CPUs the rendered
// trainer gets as --threads), else gpus x cpus_per_task from the JobSpec.
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/local_jobs.h"
#include "orchestrator/backend/slurm_util.h"
#include "orchestrator/util/units.h"
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char dir[PATH_MAX];
    int agent_checked;
} Local;

// Cores a job takes: what its script asks Slurm for, so the claim follows the trainer's --threads
// (the profile's cpus_per_gpu unless the spec overrides it); the JobSpec where the script says nothing.
static int local_job_claim(const JobSpec *job)
{
    int ranks = job->gpus > 0 ? job->gpus : 1, per_rank = job->cpus_per_task > 0 ? job->cpus_per_task : 1;
    SlurmOpts o;
    char *text = NULL, e[512];
    if (job->script_path && slurm_script_parse(job->script_path, &o, &text, e, sizeof e) == 0) {
        if (o.ntasks > 0) ranks = o.ntasks;
        else if (o.ntasks_per_node > 0) ranks = o.ntasks_per_node * (o.nodes > 0 ? o.nodes : 1);
        if (o.cpus_per_task > 0) per_rank = o.cpus_per_task;
    }
    free(text);
    long claim = (long)ranks * per_rank;
    return claim > 4096 ? 4096 : (int)claim;
}

// $SEGX_LOCAL_CPUS: the cores local jobs may share (e.g. to keep some for other work). 1 set
// (*n), 0 unset, -1 not a positive number.
static int env_cores(int *n)
{
    const char *env = getenv("SEGX_LOCAL_CPUS");
    if (!env || !*env) return 0;
    char *end;
    long v = strtol(env, &end, 10);
    if (*end || v < 1 || v > 65536) return -1;
    *n = (int)v;
    return 1;
}

// The cores jobs share: $SEGX_LOCAL_CPUS, else the caller's count, else this machine's.
static int local_cores(int given)
{
    int n;
    if (env_cores(&n) == 1) return n;
    if (given > 0) return given;
    long m = sysconf(_SC_NPROCESSORS_ONLN);
    return m > 0 ? (int)m : 1;
}

// "afterok:ID" -> *after_ok (0 for none); other dependency forms are not supported here.
static int local_dependency(const char *dep, long *after_ok, char *err, size_t errlen)
{
    *after_ok = 0;
    if (!dep || !*dep) return 0;
    char *end = NULL;
    long id = strncmp(dep, "afterok:", 8) == 0 ? strtol(dep + 8, &end, 10) : 0;
    if (id <= 0 || !end || *end) {
        snprintf(err, errlen, "dependency '%s': the local backend knows only afterok:JOBID", dep);
        return -1;
    }
    *after_ok = id;
    return 0;
}

static int local_submit(Backend *b, const JobSpec *job, char *job_id, size_t idlen, char *err, size_t errlen)
{
    Local *l = b->impl;
    LocalJob j = {0};
    snprintf(j.script, sizeof j.script, "%s", job->script_path);
    snprintf(j.run_dir, sizeof j.run_dir, "%s", job->run_dir);
    snprintf(j.name, sizeof j.name, "%s", job->job_name ? job->job_name : "");
    j.cpus = local_job_claim(job);
    if (local_dependency(job->dependency, &j.after_ok, err, errlen) < 0) return -1;
    if (job->time_limit && *job->time_limit) {   // "[D-]HH:MM:SS" as rendered by the planner
        long t = units_time_s(job->time_limit);
        if (t > 0) j.time_limit_s = t;
    }
    if (local_job_submit(l->dir, &j, err, errlen) < 0) return -1;
    snprintf(job_id, idlen, "%ld", j.id);
    if (local_agent_ensure(l->dir, err, errlen) < 0) return -1;
    return 0;
}

static JobState state_of(const char *s)
{
    JobState js;
    if (job_state_parse(s, &js) == 0) return js;
    return JOB_UNKNOWN;
}

// Appends s to out (size len), cutting it to fit.
static void append(char *out, size_t len, const char *s)
{
    size_t n = strlen(out), m = strlen(s);
    if (n + 1 >= len) return;
    if (m > len - n - 1) m = len - n - 1;
    memcpy(out + n, s, m);
    out[n + m] = 0;
}

// "exit code N: <last lines of stderr.log>" for a failed job.
static void failure_reason(const char *run_dir, int exit_code, char *out, size_t len)
{
    int n = snprintf(out, len, "exit code %d", exit_code);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/stderr.log", run_dir);
    FILE *f = fopen(p, "r");
    if (!f) return;
    char tail[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[got] = 0;
    while (got > 0 && (tail[got - 1] == '\n' || tail[got - 1] == ' ')) tail[--got] = 0;
    // last 5 lines
    char *start = tail + got;
    int lines = 0;
    while (start > tail && lines < 5) {
        start--;
        if (*start == '\n') lines++;
    }
    if (*start == '\n') start++;
    if (*start && (size_t)n < len) {
        append(out, len, ": ");
        append(out, len, start);
    }
}

// Gone, or a zombie nobody reaps (its agent, the parent, died).
static int process_gone(int pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH) return 1;
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'Z';
}

static int has_exit_code(const char *run_dir)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/exit_code", run_dir);
    return access(p, F_OK) == 0;
}

static int local_poll(Backend *b, const char *const *job_ids, size_t n, JobStatus *out, char *err, size_t errlen)
{
    Local *l = b->impl;
    int agent = local_agent_alive(l->dir), pending = 0;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    for (size_t i = 0; i < n; i++) {
        JobStatus *s = &out[i];
        memset(s, 0, sizeof *s);
        snprintf(s->job_id, sizeof s->job_id, "%s", job_ids[i]);
        s->exit_code = -1;
        char *end;
        long id = strtol(job_ids[i], &end, 10);
        LocalJob j;
        char e[512];
        if (end == job_ids[i] || *end || local_job_read(l->dir, id, &j, e, sizeof e) < 0) {
            s->state = JOB_UNKNOWN;
            continue;
        }
        s->state = state_of(j.state);
        s->exit_code = j.exit_code;
        s->submit_time = j.submit_time;
        s->start_time = j.start_time;
        s->end_time = j.end_time;
        if (j.start_time > 0) snprintf(s->nodes, sizeof s->nodes, "%s", host);
        if (s->state == JOB_RUNNING && !agent && (j.pid <= 0 || process_gone(j.pid) || has_exit_code(j.run_dir)))
            s->state = JOB_UNKNOWN;   // its agent died; the caller resolves it from exit_code
        if (s->state == JOB_PENDING) pending++;
        if (s->state == JOB_CANCELLED && j.reason[0]) snprintf(s->reason, sizeof s->reason, "%s", j.reason);
        if (s->state == JOB_FAILED || s->state == JOB_TIMEOUT) {
            failure_reason(j.run_dir, j.exit_code, s->reason, sizeof s->reason);
            if (s->state == JOB_TIMEOUT) {
                char r[sizeof s->reason] = "time limit reached; ";
                append(r, sizeof r, s->reason);
                memcpy(s->reason, r, sizeof r);
            }
        }
    }
    // Queued work needs an agent (e.g. the last one was killed with the machine's session).
    if (pending && !agent && local_agent_ensure(l->dir, err, errlen) < 0) return -1;
    return 0;
}

static int local_cancel(Backend *b, const char *job_id, char *err, size_t errlen)
{
    Local *l = b->impl;
    char *end;
    long id = strtol(job_id, &end, 10);
    if (end == job_id || *end) { snprintf(err, errlen, "'%s' is not a local job id", job_id); return -1; }
    if (local_job_cancel(l->dir, id, err, errlen) < 0) return -1;
    // A pending job with no agent to notice the marker is cancelled by a fresh agent.
    return local_agent_ensure(l->dir, err, errlen);
}

static void local_close(Backend *b)
{
    free(b->impl);
    free(b);
}

static const BackendOps local_ops = {"local", local_submit, local_poll, local_cancel, local_close};

int backend_local_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    *out = NULL;
    Local *l = calloc(1, sizeof *l);
    Backend *b = calloc(1, sizeof *b);
    if (!l || !b) { free(l); free(b); snprintf(err, errlen, "out of memory"); return -1; }
    const char *env = getenv("SEGX_LOCAL_DIR");
    snprintf(l->dir, sizeof l->dir, "%s", env && *env ? env : "runs/.local");
    int maxp = 0, cpus = 0, slots = 0;
    if (options_json && *options_json) {
        json_error_t je;
        json_t *o = json_loads(options_json, 0, &je);
        if (!json_is_object(o)) {
            json_decref(o);
            snprintf(err, errlen, "local backend options: not a JSON object: %s", je.text);
            free(l); free(b);
            return -1;
        }
        const char *d = json_string_value(json_object_get(o, "state_dir"));
        if (d && *d) snprintf(l->dir, sizeof l->dir, "%s", d);
        maxp = (int)json_integer_value(json_object_get(o, "max_parallel"));
        cpus = (int)json_integer_value(json_object_get(o, "cpus"));
        slots = json_object_get(o, "max_parallel") || json_object_get(o, "cpus");
        json_decref(o);
    }
    int ncores;
    if (env_cores(&ncores) < 0) {
        snprintf(err, errlen, "SEGX_LOCAL_CPUS='%s': expected the number of cores local jobs may share "
                 "(a whole number, 1 or more), or unset it to share all of this machine's", getenv("SEGX_LOCAL_CPUS"));
        free(l); free(b);
        return -1;
    }
    if (local_state_init(l->dir, err, errlen) < 0 ||
        (slots && local_set_slots(l->dir, maxp, local_cores(cpus), err, errlen) < 0)) {
        free(l); free(b);
        return -1;
    }
    b->ops = &local_ops;
    b->impl = l;
    *out = b;
    return 0;
}
