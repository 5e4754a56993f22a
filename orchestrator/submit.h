// orchestrator/submit.h — the steps behind `segx submit`, `segx status` and `segx run`, as
// functions so `run` chains them (submit.c; status: status.h). defines: SubmitOptions,
// submit_experiment, submit_find_experiment, submit_backend_options.
// Invariants: one attempts row per submission (attempt numbers grow), cells.state mirrors the
// latest attempt; a completed cell is never submitted again; failed/cancelled/timeout/... cells
// only with rerun_failed.
// Contract: submit_experiment prints nothing itself: every line it has to say (a job sent, the
// summary, a problem) goes to the caller's SubmitSay, which decides where it is shown.
#ifndef SEGX_SUBMIT_H
#define SEGX_SUBMIT_H
#include "orchestrator/backend/backend.h"
#include "orchestrator/status.h"   // (status_* were declared here; kept for the includers)
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *db_path;      // NULL: db_path_default
    const char *experiment;   // NULL: the only experiment in the DB
    const char *backend;      // NULL: "auto"
    int max_parallel;         // local backend: jobs at once; 0: as many as fit the cores
    int max_submitted;        // Slurm backends: at most this many of our jobs queued or running
                              // (QOS MaxSubmitJobs); 0: no limit ($SEGX_MAX_SUBMITTED still applies)
    int rerun_failed;
    int array;                // Slurm backends: cells with the same #SBATCH lines go into one job array
    int array_throttle;       // with array: at most this many tasks running (--array=0-K%N); 0: no limit
    int dry_run;              // say what would be submitted
    int quiet;
    const char *notify_url;   // --notify: POST when the experiment finishes or a cell fails (notify.h)
    // Where its lines go: say(ctx, 0, line) for progress and the summary (what `segx submit`
    // prints on stdout), say(ctx, 1, line) for a problem (stderr, after "segx submit: "),
    // say(ctx, 2, line) for a warning from the job-script renderer (plan_renderer_warning:
    // stderr, after "segx: warning: "). Lines have no newline. NULL: nothing is said.
    void (*say)(void *ctx, int problem, const char *line);
    void *say_ctx;
    BackendOpenFn open;       // NULL: backend_open (the unit tests pass a fake BackendOps here)
    const char *templates_dir;   // NULL: paths_templates_dir()
} SubmitOptions;

// Returns the exit code (0, 1, 2). *submitted gets the number of jobs sent (may be NULL).
int submit_experiment(const SubmitOptions *o, size_t *submitted);

// Finds the experiment row: name NULL picks the only one (else an error listing them).
// 0, -1 runtime error, -2 bad input (unknown/ambiguous name), with err.
int submit_find_experiment(sqlite3 *db, const char *name, long long *id, char *name_out, size_t namelen,
                           char *run_root, size_t rrlen, char *err, size_t errlen);
// {"state_dir": "<dirname(run_root)>/.local", ...} for backend_open: the local jobs always share
// this machine's cores (each claims ranks x cpus-per-task, as its script asks Slurm);
// max_parallel > 0 also caps the jobs at once, SUBMIT_SLOTS_CORES sets no cap, 0 leaves the
// local agent's settings as they are (status, cancel).
#define SUBMIT_SLOTS_CORES (-1)
void submit_backend_options(const char *run_root, int max_parallel, char *out, size_t len);

#endif
