// orchestrator/cancel.c — cancel the jobs in flight of an experiment (see cancel.h).
#include "orchestrator/cancel.h"
#include "orchestrator/submit.h"
#include "db/db.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int key_selected(const char *key, const CancelOptions *o, int *matched)
{
    if (o->ncells == 0) return 1;
    int any = 0;
    for (int i = 0; i < o->ncells; i++)
        if (strncmp(key, o->cells[i], strlen(o->cells[i])) == 0) { any = 1; if (matched) matched[i] = 1; }
    return any;
}

// The rows of sql (attempt id, cell id, key, backend, job id; bound to the experiment) whose key
// is selected. 0, or -1 (DB or memory).
static int load_jobs(sqlite3 *db, const char *sql, long long eid, const CancelOptions *o, int *matched,
                     CancelJob **out, size_t *n)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_int64(st, 1, eid);
    size_t cap = 0;
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 2);
        if (!key_selected(key, o, matched)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            CancelJob *nv = realloc(*out, cap * sizeof **out);
            if (!nv) { rc = -1; break; }
            *out = nv;
        }
        CancelJob *x = &(*out)[(*n)++];
        memset(x, 0, sizeof *x);
        x->attempt_id = sqlite3_column_int64(st, 0);
        x->cell_id = sqlite3_column_int64(st, 1);
        snprintf(x->key, sizeof x->key, "%s", key);
        snprintf(x->backend, sizeof x->backend, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(x->job_id, sizeof x->job_id, "%s", (const char *)sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    return rc;
}

typedef struct {
    sqlite3 *db;
    CancelJob *jobs;
    sqlite3_stmt *upd, *cupd;   // the attempts (or eval_jobs) row; the cells row (train jobs only)
} Group;

// One backend's jobs: cancel each, record each at once.
static void cancel_group(Backend *b, size_t from, size_t to, const char *why, void *ctx)
{
    Group *g = ctx;
    for (size_t k = from; k < to; k++) {
        CancelJob *x = &g->jobs[k];
        if (!b) { x->outcome = CANCEL_NO_BACKEND; snprintf(x->why, sizeof x->why, "%s", why); continue; }
        char err[1024];
        if (!x->job_id[0] || b->ops->cancel(b, x->job_id, err, sizeof err) < 0) {
            x->outcome = CANCEL_FAILED;
            snprintf(x->why, sizeof x->why, "%s", x->job_id[0] ? err : "no job id recorded");
            continue;
        }
        sqlite3_bind_int64(g->upd, 1, x->attempt_id);
        sqlite3_bind_double(g->upd, 2, (double)time(NULL));
        int bad = sqlite3_step(g->upd) != SQLITE_DONE;
        sqlite3_reset(g->upd);
        if (!bad && g->cupd) {
            sqlite3_bind_int64(g->cupd, 1, x->cell_id);
            bad = sqlite3_step(g->cupd) != SQLITE_DONE;
            sqlite3_reset(g->cupd);
        }
        x->outcome = bad ? CANCEL_NOT_RECORDED : CANCEL_DONE;
        if (bad) snprintf(x->why, sizeof x->why, "database: %s", sqlite3_errmsg(g->db));
    }
}

// Cancels jobs[0..n) (sorted by backend) and records them with upd (and cupd). 0, or -1 (DB).
static int cancel_jobs(sqlite3 *db, CancelJob *jobs, size_t n, const char *upd_sql, const char *cupd_sql,
                       const char *run_root, const CancelOptions *o)
{
    if (n == 0) return 0;
    if (o->dry_run) {
        for (size_t i = 0; i < n; i++) jobs[i].outcome = CANCEL_WOULD;
        return 0;
    }
    Group g = {.db = db, .jobs = jobs};
    const char **names = malloc(n * sizeof *names);
    int rc = -1;
    if (names && sqlite3_prepare_v2(db, upd_sql, -1, &g.upd, NULL) == SQLITE_OK &&
        (!cupd_sql || sqlite3_prepare_v2(db, cupd_sql, -1, &g.cupd, NULL) == SQLITE_OK)) {
        for (size_t i = 0; i < n; i++) names[i] = jobs[i].backend;
        char opts[PATH_MAX + 128];
        submit_backend_options(run_root, 0, opts, sizeof opts);
        backend_each_group(names, n, o->open, opts, cancel_group, &g);
        rc = 0;
    }
    free(names);
    sqlite3_finalize(g.upd);
    sqlite3_finalize(g.cupd);
    return rc;
}

int cancel_experiment(sqlite3 *db, long long eid, const char *run_root, const CancelOptions *o, CancelResult *r,
                      char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    // the eval jobs in flight of the selected cells, whether their train job still runs or has ended
    static const char eval_sql[] =
        "SELECT e.attempt_id, a.cell_id, c.key, e.backend, COALESCE(e.job_id, '') FROM eval_jobs e "
        "JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id "
        "WHERE c.experiment_id = ?1 AND e.state IN " JOB_SQL_UNSETTLED " ORDER BY e.backend, c.id";
    // the cells whose latest attempt is in flight
    static const char cell_sql[] =
        "SELECT a.id, c.id, c.key, a.backend, COALESCE(a.job_id, '') FROM cells c JOIN attempts a ON a.cell_id = c.id "
        "WHERE c.experiment_id = ?1 AND a.attempt = (SELECT max(attempt) FROM attempts WHERE cell_id = c.id) "
        "AND a.state IN " JOB_SQL_UNSETTLED " ORDER BY a.backend, c.id";
    if (load_jobs(db, cell_sql, eid, o, r->matched, &r->jobs, &r->njobs) < 0 ||
        load_jobs(db, eval_sql, eid, o, NULL, &r->evals, &r->nevals) < 0 ||
        cancel_jobs(db, r->evals, r->nevals,
                    "UPDATE eval_jobs SET state = 'cancelled', reason = 'cancelled by segx cancel', "
                    "end_time = COALESCE(end_time, ?2) WHERE attempt_id = ?1", NULL, run_root, o) < 0 ||
        cancel_jobs(db, r->jobs, r->njobs,
                    "UPDATE attempts SET state = 'cancelled', reason = 'cancelled by segx cancel', "
                    "end_time = COALESCE(end_time, ?2) WHERE id = ?1",
                    "UPDATE cells SET state = 'cancelled' WHERE id = ?1", run_root, o) < 0) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

void cancel_result_free(CancelResult *r)
{
    free(r->evals);
    free(r->jobs);
    memset(r, 0, sizeof *r);
}
