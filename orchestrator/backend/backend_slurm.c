// orchestrator/backend/backend_slurm.c — the `slurm` backend: libslurm (slurm_submit_batch_job, one
// slurm_load_job_user per poll, slurm_kill_job2), through slurm_lib.c, which is compiled against the
// cluster's own headers (SEGX_HAVE_LIBSLURM). Without libslurm, open says so and `--backend auto`
// moves on to slurm-cli.
//
// Same behaviour as slurm-cli (the tests run both): the job is the script's #SBATCH lines (parsed as
// sbatch would, slurm_util.c) plus the JobSpec; submit retries with back-off while slurmctld does not
// answer (options {"submit_retry_s": N}, default 60), and before each retry looks for a job carrying
// this attempt's comment, so a lost reply never submits a cell twice.
// Options JSON: {"slurm_conf": PATH, "submit_retry_s": N, "max_submitted": N}; max_submitted (or
// $SEGX_MAX_SUBMITTED) makes submit wait while N of its jobs are still queued or running.
#include "orchestrator/backend/backends.h"
#include "orchestrator/backend/slurm_lib.h"
#include "orchestrator/backend/slurm_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Backend base;
    char conf[1024], host[256];
    int port;
    double retry_s;
    SlurmThrottle throttle;     // --max-submitted
    SlurmJobInfo *known;        // this user's jobs at the first submit (see sl_submit)
    size_t nknown;
    int known_loaded;
} SlurmBackend;

typedef struct { const SlurmOpts *o; const char *text, *path; } SubmitCtx;

static int try_submit(void *ctx, char *job_id, size_t idlen, int *transient, char *err, size_t errlen)
{
    SubmitCtx *c = ctx;
    return slurm_lib_submit(c->o, c->text, c->path, job_id, idlen, transient, err, errlen);
}

static int find_job(void *ctx, const char *comment, char *job_id, size_t idlen)
{
    (void)ctx;
    SlurmJobInfo *jobs;
    size_t n;
    char err[256];
    if (slurm_lib_load(&jobs, &n, err, sizeof err)) return -1;
    int found = slurm_find_comment(jobs, n, comment, 0, job_id, idlen);
    free(jobs);
    return found;
}

static int sl_submit(Backend *b, const JobSpec *job, char *job_id, size_t idlen, char *err, size_t errlen)
{
    SlurmBackend *s = (SlurmBackend *)b;
    SlurmOpts o;
    char *text = NULL;
    if (!job->script_path) { snprintf(err, errlen, "no job script given"); return -1; }
    if (slurm_script_parse(job->script_path, &o, &text, err, errlen)) return -1;
    slurm_opts_apply_job(&o, job);
    // A segx killed between submitting and recording a job must not get it twice on the next run:
    // an attempt whose job is still queued or running in slurmctld is not submitted again (one
    // load per backend session; best effort when it fails).
    if (!s->known_loaded) {
        char e[256];
        s->known_loaded = 1;
        // (not while the controller is away: libslurm and squeue would retry for many seconds)
        if (slurm_probe_controller(s->host, s->port, 800, e, sizeof e) == 0 &&
            slurm_lib_load(&s->known, &s->nknown, e, sizeof e)) s->known = NULL, s->nknown = 0;
    }
    if (slurm_find_comment(s->known, s->nknown, o.comment, 1, job_id, idlen)) { free(text); return 0; }
    if (slurm_throttle_wait(&s->throttle, b, err, errlen)) { free(text); return -1; }
    SubmitCtx ctx = {&o, text, job->script_path};
    int rc = slurm_submit_with_retry(s->host, s->port, s->retry_s, o.job_name[0] ? o.job_name : job->script_path,
                                     o.comment, try_submit, find_job, &ctx, job_id, idlen, err, errlen);
    free(text);
    if (rc == 0) slurm_throttle_add(&s->throttle, job_id);
    return rc;
}

static int sl_poll(Backend *b, const char *const *job_ids, size_t n, JobStatus *out, char *err, size_t errlen)
{
    (void)b;
    SlurmJobInfo *jobs = NULL;
    size_t nj = 0;
    if (n && slurm_lib_load(&jobs, &nj, err, errlen)) return -1;   // one RPC for all of them
    int rc = slurm_match_jobs(jobs, nj, job_ids, n, out, err, errlen);
    free(jobs);
    return rc;
}

static int sl_cancel(Backend *b, const char *job_id, char *err, size_t errlen)
{
    (void)b;
    return slurm_lib_cancel(job_id, err, errlen);
}

static void sl_close(Backend *b)
{
    slurm_throttle_free(&((SlurmBackend *)b)->throttle);
    free(((SlurmBackend *)b)->known);
    free(b);
}

static const BackendOps slurm_ops = {"slurm", sl_submit, sl_poll, sl_cancel, sl_close};

int backend_slurm_open(const char *options_json, Backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!slurm_lib_available()) {
        snprintf(err, errlen, "segx was built without libslurm (install libslurm-dev, then make config); "
                 "use --backend slurm-cli");
        return -1;
    }
    SlurmBackend *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return -1; }
    // slurm.conf and the controller first: slurm_init() exits the process when the config is missing,
    // and a dead controller must be reported within a second, not after libslurm's own retries
    if (slurm_locate_conf(options_json, s->conf, sizeof s->conf, err, errlen) ||
        slurm_conf_controller(s->conf, s->host, sizeof s->host, &s->port, err, errlen) ||
        slurm_probe_controller(s->host, s->port, 800, err, errlen)) {
        free(s);
        return -1;
    }
    slurm_lib_init();
    s->retry_s = slurm_option_number(options_json, "submit_retry_s", 60);
    s->throttle.max = slurm_max_submitted(options_json);
    s->base.ops = &slurm_ops;
    s->base.impl = s;
    *out = &s->base;
    return 0;
}
