// orchestrator/cmd/cmd_cancel.c — `segx cancel [EXPERIMENT] [--cell KEY]...`: options and output;
// the cancelling is cancel_experiment (orchestrator/cancel.h).
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/cancel.h"
#include "orchestrator/experiment_lookup.h"
#include "db/db.h"
#include <stdio.h>
#include <string.h>

// --cell KEY[,KEY...] -> sel (pointers into buf). 0, or 2 after a usage error (said).
static int parse_cells(const char *csv, char *buf, size_t len, const char **sel, int *nsel)
{
    *nsel = 0;
    if (!csv) return 0;
    snprintf(buf, len, "%s", csv);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*nsel == CANCEL_MAX_CELLS) { fprintf(stderr, "segx cancel: --cell: at most %d keys\n", CANCEL_MAX_CELLS); return 2; }
        if (*tok) sel[(*nsel)++] = tok;
    }
    if (*nsel == 0) { fprintf(stderr, "segx cancel: --cell '%s' names no cell\n", csv); return 2; }
    return 0;
}

// One line per job (stdout for what was done, stderr for what was not); a backend that could not
// be opened is said once for its group. Returns how many were done (or would be).
static size_t print_jobs(const CancelJob *v, size_t n, int eval, size_t *nfailed)
{
    size_t done = 0;
    const char *what = eval ? " eval job" : "";
    for (size_t i = 0; i < n; i++) {
        const CancelJob *x = &v[i];
        switch (x->outcome) {
        case CANCEL_DONE: printf("cancelled %s%s (%s job %s)\n", x->key, what, x->backend, x->job_id); done++; break;
        case CANCEL_WOULD: printf("would cancel %s%s (%s job %s)\n", x->key, what, x->backend, x->job_id); done++; break;
        case CANCEL_NO_BACKEND:
            if (i == 0 || v[i - 1].outcome != CANCEL_NO_BACKEND || strcmp(v[i - 1].backend, x->backend) != 0) {
                size_t j = i;
                while (j < n && v[j].outcome == CANCEL_NO_BACKEND && strcmp(v[j].backend, x->backend) == 0) j++;
                if (eval) fprintf(stderr, "segx cancel: %s backend: %s\n", x->backend, x->why);
                else fprintf(stderr, "segx cancel: %s backend: %s (%zu cells not cancelled)\n", x->backend, x->why, j - i);
            }
            if (!eval) (*nfailed)++;
            break;
        case CANCEL_FAILED:
            fprintf(stderr, "segx cancel: cell %s:%s%s %s\n", x->key, what, eval ? ":" : "", x->why);
            if (!eval) (*nfailed)++;
            break;
        case CANCEL_NOT_RECORDED:
            fprintf(stderr, "segx cancel: %s (%sjob %s was cancelled)\n", x->why, eval ? "eval " : "", x->job_id);
            if (!eval) (*nfailed)++;
            break;
        }
    }
    return done;
}

int cmd_cancel(int argc, char **argv)
{
    const char *db_path = NULL, *cells_csv = NULL;
    int dry_run = 0;
    const CliOption opts[] = {
        {"db", 0, CLI_STRING, &db_path, "FILE", "results database (default ./segx.db or $SEGX_DB)"},
        {"cell", 'c', CLI_STRING, &cells_csv, "KEY[,KEY...]", "only these cells (a key prefix is enough)"},
        {"dry-run", 'n', CLI_FLAG, &dry_run, NULL, "list what would be cancelled"},
        {0}};
    const CliCommand cmd = {
        "segx cancel [EXPERIMENT] [options]",
        "Cancels the submitted, pending and running jobs of an experiment (or of the cells named by\n"
        "--cell) through the backend that submitted them, and records them as cancelled. Cells that\n"
        "already ended are left alone; `segx resubmit --failed` submits cancelled cells again.",
        opts, 0, 1, "examples:\n  segx cancel scaling-study\n  segx cancel --cell 3fa9c2,77b1e0"};
    CliArgs a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_CONTINUE) return rc;
    const char *sel[CANCEL_MAX_CELLS];
    char cells_buf[4096];
    int nsel;
    if ((rc = parse_cells(cells_csv, cells_buf, sizeof cells_buf, sel, &nsel)) != 0) return rc;

    sqlite3 *db;
    ExperimentRef ex;
    char err[2048];
    if ((rc = experiment_open(db_path, a.npos ? a.pos[0] : NULL, &db, &ex, err, sizeof err)) != 0) {
        fprintf(stderr, "segx cancel: %s\n", err);
        return rc;
    }
    CancelOptions o = {.cells = sel, .ncells = nsel, .dry_run = dry_run};
    CancelResult r;
    int crc = cancel_experiment(db, ex.id, ex.run_root, &o, &r, err, sizeof err);
    for (int i = 0; i < nsel; i++)
        if (!r.matched[i]) fprintf(stderr, "segx cancel: no submitted, pending or running cell of '%s' matches '%s'\n", ex.name, sel[i]);
    size_t nfailed = 0, nev = print_jobs(r.evals, r.nevals, 1, &nfailed);
    size_t ndone = print_jobs(r.jobs, r.njobs, 0, &nfailed);
    if (crc < 0) {
        fprintf(stderr, "segx cancel: %s\n", err);
        rc = 1;
    } else if (r.njobs == 0) {
        if (nev == 0) printf("%s: nothing to cancel\n", ex.name);
        rc = nsel && nev == 0 ? 2 : 0;
    } else if (dry_run) {
        rc = 0;
    } else {
        printf("%s: %zu cancelled%s", ex.name, ndone, nfailed ? ", " : "\n");
        if (nfailed) printf("%zu not cancelled\n", nfailed);
        rc = nfailed ? 1 : 0;
    }
    cancel_result_free(&r);
    db_close(db);
    return rc;
}
