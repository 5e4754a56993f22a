// orchestrator/cmd/cmd_cancel.c — `segx cancel [EXPERIMENT] [--cell KEY]...`: cancels the jobs of the
// cells whose latest attempt is still submitted, pending, running or unknown, through the backend
// that submitted each (one backend_open per backend), and records them cancelled.
#include "orchestrator/cmd/cli.h"
#include "orchestrator/cmd/commands.h"
#include "orchestrator/experiment_lookup.h"
#include "orchestrator/submit.h"
#include "db/db.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    long long attempt_id, cell_id;
    char key[80], backend[32], job_id[64];
} Active;

// KEY may be a prefix of a cell key (as printed by segx status), like a git hash.
static int key_selected(const char *key, char **sel, int nsel)
{
    if (nsel == 0) return 1;
    for (int i = 0; i < nsel; i++)
        if (strncmp(key, sel[i], strlen(sel[i])) == 0) return 1;
    return 0;
}

// The eval jobs in flight of the selected cells (spec eval.job), whether their train job still
// runs or has ended: cancelled through their backend and recorded. Returns how many, -1 on a DB error.
static long cancel_eval_jobs(sqlite3 *db, long long eid, const char *run_root, char **sel, int nsel, int dry_run)
{
    sqlite3_stmt *st, *upd = NULL;
    if (sqlite3_prepare_v2(db,
            "SELECT e.attempt_id, c.key, e.backend, COALESCE(e.job_id, '') FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id "
            "JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = ?1 AND e.state IN ('submitted', 'pending', 'running', 'unknown') "
            "ORDER BY e.backend, c.id", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE eval_jobs SET state = 'cancelled', reason = 'cancelled by segx cancel', "
                           "end_time = COALESCE(end_time, ?2) WHERE attempt_id = ?1", -1, &upd, NULL) != SQLITE_OK) {
        fprintf(stderr, "segx cancel: database: %s\n", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_bind_int64(st, 1, eid);
    long n = 0;
    Backend *b = NULL;
    char open_name[32] = "", err[1024];
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 1), *be = (const char *)sqlite3_column_text(st, 2);
        const char *job = (const char *)sqlite3_column_text(st, 3);
        if (!key_selected(key, sel, nsel)) continue;
        if (dry_run) { printf("would cancel %s eval job (%s job %s)\n", key, be, job); n++; continue; }
        if (strcmp(open_name, be) != 0) {
            char bopts[PATH_MAX + 128];
            backend_close(b);
            b = NULL;
            snprintf(open_name, sizeof open_name, "%s", be);
            submit_backend_options(run_root, 0, bopts, sizeof bopts);
            if (backend_open(be, bopts, &b, err, sizeof err) < 0) { b = NULL; fprintf(stderr, "segx cancel: %s backend: %s\n", be, err); }
        }
        if (!b || !*job || b->ops->cancel(b, job, err, sizeof err) < 0) {
            if (b) fprintf(stderr, "segx cancel: cell %s: eval job: %s\n", key, *job ? err : "no job id recorded");
            continue;
        }
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(st, 0));
        sqlite3_bind_double(upd, 2, (double)time(NULL));
        int bad = sqlite3_step(upd) != SQLITE_DONE;
        sqlite3_reset(upd);
        if (bad) { fprintf(stderr, "segx cancel: database: %s (eval job %s was cancelled)\n", sqlite3_errmsg(db), job); continue; }
        printf("cancelled %s eval job (%s job %s)\n", key, be, job);
        n++;
    }
    backend_close(b);
    sqlite3_finalize(st);
    sqlite3_finalize(upd);
    return n;
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

    char *sel[64];
    int nsel = 0;
    char cells_buf[4096] = "";
    if (cells_csv) {
        snprintf(cells_buf, sizeof cells_buf, "%s", cells_csv);
        for (char *tok = strtok(cells_buf, ","); tok; tok = strtok(NULL, ",")) {
            if (nsel == 64) { fprintf(stderr, "segx cancel: --cell: at most 64 keys\n"); return 2; }
            if (!*tok) continue;
            sel[nsel++] = tok;
        }
        if (nsel == 0) { fprintf(stderr, "segx cancel: --cell '%s' names no cell\n", cells_csv); return 2; }
    }

    char err[2048];
    sqlite3 *db;
    ExperimentRef ex;
    if ((rc = experiment_open("cancel", db_path, a.npos ? a.pos[0] : NULL, &db, &ex)) != 0) return rc;
    const long long eid = ex.id;
    const char *name = ex.name, *run_root = ex.run_root;
    sqlite3_stmt *st = NULL, *upd = NULL, *cupd = NULL;
    Active *v = NULL;
    size_t n = 0, cap = 0;
    int matched[64] = {0};
    rc = 1;
    if (sqlite3_prepare_v2(db,
            "SELECT a.id, c.id, c.key, a.backend, COALESCE(a.job_id, '') FROM cells c JOIN attempts a ON a.cell_id = c.id "
            "WHERE c.experiment_id = ?1 AND a.attempt = (SELECT max(attempt) FROM attempts WHERE cell_id = c.id) "
            "AND a.state IN ('submitted', 'pending', 'running', 'unknown') ORDER BY a.backend, c.id",
            -1, &st, NULL) != SQLITE_OK)
        goto sqlfail;
    sqlite3_bind_int64(st, 1, eid);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 2);
        if (!key_selected(key, sel, nsel)) continue;
        for (int i = 0; i < nsel; i++) if (strncmp(key, sel[i], strlen(sel[i])) == 0) matched[i] = 1;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            Active *nv = realloc(v, cap * sizeof *v);
            if (!nv) { fprintf(stderr, "segx cancel: out of memory\n"); goto out; }
            v = nv;
        }
        Active *x = &v[n++];
        x->attempt_id = sqlite3_column_int64(st, 0);
        x->cell_id = sqlite3_column_int64(st, 1);
        snprintf(x->key, sizeof x->key, "%s", key);
        snprintf(x->backend, sizeof x->backend, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(x->job_id, sizeof x->job_id, "%s", (const char *)sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    st = NULL;
    for (int i = 0; i < nsel; i++)
        if (!matched[i]) fprintf(stderr, "segx cancel: no submitted, pending or running cell of '%s' matches '%s'\n", name, sel[i]);
    long nev = cancel_eval_jobs(db, eid, run_root, sel, nsel, dry_run);   // eval jobs go with their cells
    if (nev < 0) goto out;
    if (n == 0) {
        if (nev == 0) printf("%s: nothing to cancel\n", name);
        rc = nsel && nev == 0 ? 2 : 0;
        goto out;
    }
    if (dry_run) {
        for (size_t i = 0; i < n; i++) printf("would cancel %s (%s job %s)\n", v[i].key, v[i].backend, v[i].job_id);
        rc = 0;
        goto out;
    }
    if (sqlite3_prepare_v2(db,
            "UPDATE attempts SET state = 'cancelled', reason = 'cancelled by segx cancel', "
            "end_time = COALESCE(end_time, ?2) WHERE id = ?1", -1, &upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE cells SET state = 'cancelled' WHERE id = ?1", -1, &cupd, NULL) != SQLITE_OK)
        goto sqlfail;
    size_t ncancelled = 0, nfailed = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(v[j].backend, v[i].backend) == 0) j++;
        Backend *b = NULL;
        char bopts[PATH_MAX + 128];
        submit_backend_options(run_root, 0, bopts, sizeof bopts);
        if (backend_open(v[i].backend, bopts, &b, err, sizeof err) < 0) {
            fprintf(stderr, "segx cancel: %s backend: %s (%zu cells not cancelled)\n", v[i].backend, err, j - i);
            nfailed += j - i;
            i = j;
            continue;
        }
        for (size_t k = i; k < j; k++) {
            if (!v[k].job_id[0] || b->ops->cancel(b, v[k].job_id, err, sizeof err) < 0) {
                fprintf(stderr, "segx cancel: cell %s: %s\n", v[k].key, v[k].job_id[0] ? err : "no job id recorded");
                nfailed++;
                continue;
            }
            // recorded at once, so an interrupted cancel leaves the DB true to what was done
            sqlite3_bind_int64(upd, 1, v[k].attempt_id);
            sqlite3_bind_double(upd, 2, (double)time(NULL));
            sqlite3_bind_int64(cupd, 1, v[k].cell_id);
            int bad = sqlite3_step(upd) != SQLITE_DONE || sqlite3_step(cupd) != SQLITE_DONE;
            sqlite3_reset(upd);
            sqlite3_reset(cupd);
            if (bad) {
                fprintf(stderr, "segx cancel: database: %s (job %s was cancelled)\n", sqlite3_errmsg(db), v[k].job_id);
                nfailed++;
                continue;
            }
            printf("cancelled %s (%s job %s)\n", v[k].key, v[k].backend, v[k].job_id);
            ncancelled++;
        }
        backend_close(b);
        i = j;
    }
    printf("%s: %zu cancelled%s", name, ncancelled, nfailed ? ", " : "\n");
    if (nfailed) printf("%zu not cancelled\n", nfailed);
    rc = nfailed ? 1 : 0;
    goto out;
sqlfail:
    fprintf(stderr, "segx cancel: database: %s\n", sqlite3_errmsg(db));
    rc = 1;
out:
    sqlite3_finalize(st);
    sqlite3_finalize(upd);
    sqlite3_finalize(cupd);
    free(v);
    db_close(db);
    return rc;
}
