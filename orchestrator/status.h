// orchestrator/status.h — what `segx status`, `segx run` and `segx resubmit` know about an
// experiment's jobs (status.c). defines: StatusCounts, StatusRefreshOptions, status_refresh,
// status_refresh_ex, status_print, status_summary.
// Contract: the refresh polls each backend once for all its unsettled jobs (train attempts and
// eval jobs), settles jobs the scheduler forgot from their run dirs (exit_code, eval_exit_code:
// job_state_from_exit, job_eval_state), stores the states in one transaction and counts cells.
// Prints nothing (status_print writes to the FILE it is given); a backend that does not answer is
// said through StatusRefreshOptions.say and its jobs keep their stored states.
#ifndef SEGX_STATUS_H
#define SEGX_STATUS_H
#include "orchestrator/backend/backend.h"
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    long total;
    long by_state[JOB_UNKNOWN + 1];   // cells by the state of their latest attempt
    long evals_in_flight;             // eval jobs submitted, pending or running
    int poll_failed;                  // a backend did not answer this refresh (states not refreshed)
} StatusCounts;

// Polls the backend(s) once for every unsettled attempt of the experiment, writes the new
// states (exit_code in the run dir settles jobs the scheduler forgot) and counts cells. With the
// default options: waits for the write lock as for any writer, says nothing (a backend that did
// not answer shows only as counts->poll_failed). 0, or -1 with err.
int status_refresh(sqlite3 *db, long long experiment_id, StatusCounts *counts, char *err, size_t errlen);
// Prints the status table (format: table|csv|json|markdown) and the summary line.
int status_print(sqlite3 *db, long long experiment_id, const char *format, FILE *out, char *err, size_t errlen);
typedef struct {
    // >= 0: wait at most this many ms for the write lock (a long `segx collect` holds it), and
    // return 1 when it stayed busy and the polled states were not stored (counts are the stored
    // ones), so an interactive `segx status` shows the last stored states instead of hanging.
    // -1: wait as long as for any writer.
    int write_wait_ms;
    BackendOpenFn open;    // NULL: backend_open (the unit tests pass a fake BackendOps here)
    // A backend that did not answer: say(say_ctx, "NAME backend: WHY (states not refreshed)"), no
    // newline (`segx status` prints it on stderr after "segx status: "). NULL: not said.
    void (*say)(void *ctx, const char *line);
    void *say_ctx;
} StatusRefreshOptions;
int status_refresh_ex(sqlite3 *db, long long experiment_id, const StatusRefreshOptions *o, StatusCounts *counts,
                      char *err, size_t errlen);
// "12 cells: 3 completed, 1 running, 8 planned"
void status_summary(const StatusCounts *c, char *out, size_t len);

#endif
