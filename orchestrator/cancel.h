// orchestrator/cancel.h — what `segx cancel` does, as a function: the jobs of the cells whose
// latest attempt is still submitted, pending, running or unknown (and their eval jobs, spec
// eval.job) are cancelled through the backend that took each, one backend_open per backend, and
// recorded cancelled at once (an interrupted cancel leaves the DB true to what was done).
// defines: CancelOptions, CancelJob, CancelResult, cancel_experiment, cancel_result_free.
// Contract: prints nothing; every job's outcome comes back in CancelResult for the caller to show.
#ifndef SEGX_CANCEL_H
#define SEGX_CANCEL_H
#include "orchestrator/backend/backend.h"
#include <sqlite3.h>
#include <stddef.h>

#define CANCEL_MAX_CELLS 64   // --cell keys at most

typedef struct {
    const char *const *cells;  // key prefixes (like a git hash; as segx status prints them); none: all
    int ncells;                // at most CANCEL_MAX_CELLS
    int dry_run;               // only list what would be cancelled
    BackendOpenFn open;        // NULL: backend_open
} CancelOptions;

typedef enum {
    CANCEL_DONE,               // cancelled and recorded
    CANCEL_WOULD,              // dry run
    CANCEL_NO_BACKEND,         // its backend could not be opened (why, the same for its group)
    CANCEL_FAILED,             // the backend refused, or no job id was recorded (why)
    CANCEL_NOT_RECORDED,       // cancelled, but the DB write failed (why)
} CancelOutcome;

typedef struct {
    long long attempt_id, cell_id;
    char key[80], backend[32], job_id[64];
    CancelOutcome outcome;
    char why[1100];
} CancelJob;

typedef struct {
    CancelJob *evals, *jobs;   // eval jobs (first, as they are cancelled first), then train jobs;
    size_t nevals, njobs;      // each in backend order
    int matched[CANCEL_MAX_CELLS];   // cells[i] named at least one cell with a job in flight
} CancelResult;

// 0 with *r filled (free it with cancel_result_free), or -1 with err ("database: ...") when the DB
// cannot be read; jobs cancelled before a DB failure stay in *r.
int cancel_experiment(sqlite3 *db, long long experiment_id, const char *run_root, const CancelOptions *o,
                      CancelResult *r, char *err, size_t errlen);
void cancel_result_free(CancelResult *r);
#endif
