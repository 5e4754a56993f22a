// orchestrator/cmd/cmd_resubmit.c — `segx resubmit [EXPERIMENT] --failed`: refreshes the states
// once (so a job that just failed counts), then submits every cell whose latest attempt ended
// failed, timeout, out-of-memory, node-fail, preempted, cancelled or unknown as a new attempt,
// through the backend the experiment used last unless --backend says otherwise. Completed and
// in-flight cells are never submitted again (submit_experiment's invariant).
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/experiment_lookup.h"
#include "orchestrator/submit.h"
#include "db/db.h"
#include <stdio.h>
#include <string.h>

int cmd_resubmit(int argc, char **argv)
{
    const char *db_path = NULL, *backend = NULL;
    int failed = 0, dry_run = 0, quiet = 0, max_parallel = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"failed", 0, CLI_FLAG, &failed, NULL, "resubmit cells that ended failed/timeout/out-of-memory/node-fail/preempted/cancelled"},
        {"backend", 'b', CLI_STRING, &backend, "NAME", "backend (default: the one the experiment used last)"},
        {"max-parallel", 'j', CLI_INT, &max_parallel, "N", "local backend: at most N jobs at once (jobs also share the cores)"},
        {"dry-run", 'n', CLI_FLAG, &dry_run, NULL, "list what would be submitted"},
        {"quiet", 'q', CLI_FLAG, &quiet, NULL, "only the summary line"},
        {0}};
    const CliCommand cmd = {
        "segx resubmit [EXPERIMENT] --failed [options]",
        "Submits the cells whose last attempt did not complete again, each as a new attempt (its own\n"
        "run dir attempt-N). States are refreshed from the scheduler first.",
        opts, 0, 1, "examples:\n  segx resubmit scaling-study --failed\n  segx resubmit --failed --backend slurm-cli"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    if (!failed) {
        fprintf(stderr, "segx resubmit: say which cells: --failed (every cell whose last attempt did not complete)\n");
        return 2;
    }
    if (max_parallel < 0) { fprintf(stderr, "segx resubmit: --max-parallel must be >= 1\n"); return 2; }

    char err[2048], last_backend[32] = "";
    sqlite3 *db;
    ExperimentRef ex;
    if ((rc = experiment_open(db_path, a.npos ? a.pos[0] : NULL, &db, &ex, err, sizeof err)) != 0) {
        fprintf(stderr, "segx resubmit: %s\n", err);
        return rc;
    }
    const long long eid = ex.id;
    StatusCounts counts;
    const StatusRefreshOptions so = {.write_wait_ms = -1, .say = cmd_status_say};
    if (status_refresh_ex(db, eid, &so, &counts, err, sizeof err) < 0)
        fprintf(stderr, "segx resubmit: states not refreshed: %s\n", err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT a.backend FROM attempts a JOIN cells c ON c.id = a.cell_id "
                               "WHERE c.experiment_id = ?1 ORDER BY a.submit_time DESC, a.id DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, eid);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(last_backend, sizeof last_backend, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    db_close(db);   // submit_experiment opens its own connection and transaction

    SubmitOptions o = {
        .db_path = db_path, .experiment = ex.name, .backend = backend ? backend : (last_backend[0] ? last_backend : NULL),
        .max_parallel = max_parallel, .rerun_failed = 1, .dry_run = dry_run, .quiet = quiet, .say = cmd_submit_say,
    };
    return submit_experiment(&o, NULL);
}
