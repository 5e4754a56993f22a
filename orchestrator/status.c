// orchestrator/status.c — what `segx status` knows (see status.h): poll the backends for the
// unsettled jobs, settle the ones the scheduler forgot from their run dirs, store, count; and the
// status table.
#include "orchestrator/status.h"
#include "orchestrator/collect.h"
#include "orchestrator/notify.h"
#include "orchestrator/plan.h"
#include "orchestrator/runfile.h"
#include "orchestrator/submit.h"
#include "orchestrator/table.h"
#include "orchestrator/util/clock.h"
#include "db/db.h"
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    long long id, cell_id;
    char backend[32], job_id[64], run_dir[PATH_MAX];
    int latest;
    int eval;          // an eval job (eval_jobs row of attempt `id`), not a train job
} Unsettled;

// ---- refresh: poll, settle from the run dirs, store, count -----------------------------------------

// The unsettled train attempts and eval jobs of the experiment, in backend order. 0, or -1 with err.
static int load_unsettled(sqlite3 *db, long long eid, Unsettled **out, size_t *n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db,
            "SELECT a.id, a.cell_id, a.backend, COALESCE(a.job_id, ''), a.run_dir, "
            "a.attempt = (SELECT max(attempt) FROM attempts WHERE cell_id = a.cell_id), 0 "
            "FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = ?1 "
            "AND a.state IN " JOB_SQL_UNSETTLED " AND a.backend <> 'unknown' "
            "UNION ALL SELECT e.attempt_id, a.cell_id, e.backend, COALESCE(e.job_id, ''), a.run_dir, 0, 1 "
            "FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id "
            "WHERE c.experiment_id = ?1 AND e.state IN " JOB_SQL_UNSETTLED " "
            "ORDER BY 3", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, eid);
    size_t cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            Unsettled *nu = realloc(*out, cap * sizeof **out);
            if (!nu) { sqlite3_finalize(st); snprintf(err, errlen, "out of memory"); return -1; }
            *out = nu;
        }
        Unsettled *x = &(*out)[(*n)++];
        x->id = sqlite3_column_int64(st, 0);
        x->cell_id = sqlite3_column_int64(st, 1);
        snprintf(x->backend, sizeof x->backend, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(x->job_id, sizeof x->job_id, "%s", (const char *)sqlite3_column_text(st, 3));
        snprintf(x->run_dir, sizeof x->run_dir, "%s", (const char *)sqlite3_column_text(st, 4));
        x->latest = sqlite3_column_int(st, 5);
        x->eval = sqlite3_column_int(st, 6);
    }
    sqlite3_finalize(st);
    return 0;
}

typedef struct {
    const Unsettled *u;
    const char **ids;
    JobStatus *js;
    StatusCounts *counts;
    const StatusRefreshOptions *o;   // its say hears of a backend that did not answer
} Poll;

// One poll per backend for all of its jobs; an unreachable scheduler keeps the stored states
// (exit_code -2 marks them), said once.
static void poll_group(Backend *b, size_t from, size_t to, const char *why, void *ctx)
{
    Poll *P = ctx;
    char e[1024];
    int ok = b && b->ops->poll(b, P->ids + from, to - from, P->js + from, e, sizeof e) == 0;
    if (ok) return;
    if (P->o->say) {
        char line[1200];
        snprintf(line, sizeof line, "%s backend: %s (states not refreshed)", P->u[from].backend, b ? e : why);
        P->o->say(P->o->say_ctx, line);
    }
    if (P->counts) P->counts->poll_failed = 1;
    for (size_t k = from; k < to; k++) P->js[k].state = JOB_SUBMITTED, P->js[k].exit_code = -2;
}

// A job the scheduler no longer knows (JOB_UNKNOWN): settled from what its run dir holds.
static void settle_from_files(const Unsettled *u, JobStatus *s)
{
    int code, tcode;
    if (u->eval) {
        JobState st = runfile_eval_state(u->run_dir, &code, &tcode);
        if (st == JOB_UNKNOWN) return;
        s->state = st;
        if (code >= 0 || st != JOB_CANCELLED) {
            s->exit_code = code;
            if (code != 0 && !s->reason[0]) snprintf(s->reason, sizeof s->reason, "exit code %d", code);
        } else {
            snprintf(s->reason, sizeof s->reason, "dependency failed: the train job ended with exit code %d", tcode);
        }
    } else if (runfile_read_code(u->run_dir, "exit_code", &code) == 0) {
        s->exit_code = code;
        s->state = job_state_from_exit(code);
        if (code != 0 && !s->reason[0]) snprintf(s->reason, sizeof s->reason, "exit code %d", code);
    }
}

// Writes the polled states in one transaction (waiting at most write_wait_ms for the lock when
// >= 0). 0 stored, 1 the lock stayed busy (nothing stored), -1 with err.
static int store_states(sqlite3 *db, const Unsettled *u, JobStatus *js, size_t n, int write_wait_ms, char *err, size_t errlen)
{
    sqlite3_stmt *upd = NULL, *cupd = NULL, *eupd = NULL;
    static const char set_cols[] =
        " SET state = ?2, exit_code = COALESCE(?3, exit_code), reason = COALESCE(?4, reason), "
        "start_time = COALESCE(?5, start_time), end_time = COALESCE(?6, end_time), nodes = COALESCE(?7, nodes) ";
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE attempts%sWHERE id = ?1", set_cols);
    int ok = sqlite3_prepare_v2(db, sql, -1, &upd, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "UPDATE cells SET state = ?2 WHERE id = ?1", -1, &cupd, NULL) == SQLITE_OK;
    snprintf(sql, sizeof sql, "UPDATE eval_jobs%sWHERE attempt_id = ?1", set_cols);
    ok = ok && sqlite3_prepare_v2(db, sql, -1, &eupd, NULL) == SQLITE_OK;
    int rc = -1;
    if (!ok) { snprintf(err, errlen, "database: %s", sqlite3_errmsg(db)); goto out; }
    if (write_wait_ms >= 0) sqlite3_busy_timeout(db, write_wait_ms);
    int begun = db_begin(db, err, errlen);
    if (write_wait_ms >= 0) sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
    if (begun < 0) {   // another writer holds the lock: keep the stored states this time
        if (write_wait_ms >= 0 && sqlite3_errcode(db) == SQLITE_BUSY) rc = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        JobStatus *s = &js[i];
        if (s->exit_code == -2) continue;
        if (s->state == JOB_UNKNOWN) settle_from_files(&u[i], s);
        sqlite3_stmt *w = u[i].eval ? eupd : upd;   // same columns in eval_jobs
        sqlite3_bind_int64(w, 1, u[i].id);
        sqlite3_bind_text(w, 2, job_state_name(s->state), -1, SQLITE_STATIC);
        if (s->exit_code >= 0) sqlite3_bind_int(w, 3, s->exit_code); else sqlite3_bind_null(w, 3);
        if (s->reason[0]) sqlite3_bind_text(w, 4, s->reason, -1, SQLITE_STATIC); else sqlite3_bind_null(w, 4);
        if (s->start_time > 0) sqlite3_bind_double(w, 5, s->start_time); else sqlite3_bind_null(w, 5);
        if (s->end_time > 0) sqlite3_bind_double(w, 6, s->end_time); else sqlite3_bind_null(w, 6);
        if (s->nodes[0]) sqlite3_bind_text(w, 7, s->nodes, -1, SQLITE_STATIC); else sqlite3_bind_null(w, 7);
        int bad = sqlite3_step(w) != SQLITE_DONE;
        sqlite3_reset(w);
        if (!bad && u[i].latest && !u[i].eval) {
            sqlite3_bind_int64(cupd, 1, u[i].cell_id);
            sqlite3_bind_text(cupd, 2, job_state_name(s->state), -1, SQLITE_STATIC);
            bad = sqlite3_step(cupd) != SQLITE_DONE;
            sqlite3_reset(cupd);
        }
        if (bad) { snprintf(err, errlen, "database: %s", sqlite3_errmsg(db)); db_rollback(db); goto out; }
    }
    if (db_commit(db, err, errlen) < 0) { db_rollback(db); goto out; }
    rc = 0;
out:
    sqlite3_finalize(upd);
    sqlite3_finalize(cupd);
    sqlite3_finalize(eupd);
    return rc;
}

// Cells by the state of their latest attempt, and the eval jobs in flight; then the notifications.
static int count_states(sqlite3 *db, long long eid, const char *run_root, StatusCounts *counts, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c "
                           "ON c.id = a.cell_id WHERE c.experiment_id = ?1 AND e.state IN " JOB_SQL_ACTIVE,
                           -1, &st, NULL) != SQLITE_OK)
        goto sqlfail;
    sqlite3_bind_int64(st, 1, eid);
    if (sqlite3_step(st) == SQLITE_ROW) counts->evals_in_flight = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT state, count(*) FROM cells WHERE experiment_id = ?1 GROUP BY state", -1, &st, NULL) != SQLITE_OK)
        goto sqlfail;
    sqlite3_bind_int64(st, 1, eid);
    while (sqlite3_step(st) == SQLITE_ROW) {
        JobState s;
        if (job_state_parse((const char *)sqlite3_column_text(st, 0), &s) < 0) s = JOB_UNKNOWN;
        counts->by_state[s] += sqlite3_column_int(st, 1);
        counts->total += sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    notify_after_refresh(db, eid, run_root, counts);   // done / failed / first_failure, once each
    return 0;
sqlfail:
    snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
    return -1;
}

int status_refresh(sqlite3 *db, long long eid, StatusCounts *counts, char *err, size_t errlen)
{
    StatusRefreshOptions o = {.write_wait_ms = -1};
    return status_refresh_ex(db, eid, &o, counts, err, errlen);
}

int status_refresh_ex(sqlite3 *db, long long eid, const StatusRefreshOptions *o, StatusCounts *counts, char *err,
                      size_t errlen)
{
    if (counts) memset(counts, 0, sizeof *counts);
    int wait_ms = o->write_wait_ms;
    // Attempts an older collect invented for never-submitted cells (backend 'unknown'): no backend
    // to ask; they go, and their cells show as planned again.
    if (wait_ms >= 0) sqlite3_busy_timeout(db, wait_ms);
    int forgot = collect_forget_invented(db, eid, 1, err, errlen);
    if (wait_ms >= 0) sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
    if (forgot < 0 && (wait_ms < 0 || sqlite3_errcode(db) != SQLITE_BUSY)) return -1;
    char run_root[PATH_MAX] = "";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT run_root FROM experiments WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, eid);
    if (sqlite3_step(st) == SQLITE_ROW) snprintf(run_root, sizeof run_root, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    Unsettled *u;
    size_t n;
    if (load_unsettled(db, eid, &u, &n, err, errlen) < 0) return -1;
    int rc = 0;
    if (n > 0) {
        JobStatus *js = calloc(n, sizeof *js);
        const char **ids = calloc(n, sizeof *ids), **names = calloc(n, sizeof *names);
        if (!js || !ids || !names) { snprintf(err, errlen, "out of memory"); rc = -1; }
        for (size_t i = 0; rc == 0 && i < n; i++) ids[i] = u[i].job_id, names[i] = u[i].backend;
        if (rc == 0) {
            // polled before taking the write lock (a slow scheduler must not hold up other writers)
            char opts[PATH_MAX + 128];
            submit_backend_options(run_root, 0, opts, sizeof opts);
            Poll P = {.u = u, .ids = ids, .js = js, .counts = counts, .o = o};
            backend_each_group(names, n, o->open, opts, poll_group, &P);
            rc = store_states(db, u, js, n, wait_ms, err, errlen);
        }
        free(js);
        free(ids);
        free(names);
    }
    free(u);
    if (rc < 0) return -1;
    if (counts && count_states(db, eid, run_root, counts, err, errlen) < 0) return -1;
    return rc;
}

void status_summary(const StatusCounts *c, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "%ld cells", c->total);
    const char *sep = ": ";
    for (int s = 0; s <= JOB_UNKNOWN && n < len; s++) {
        if (!c->by_state[s]) continue;
        n += (size_t)snprintf(out + n, len - n, "%s%ld %s", sep, c->by_state[s], job_state_name((JobState)s));
        sep = ", ";
    }
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || !isfinite(s)) { snprintf(buf, len, "-"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%lds", t);
}

// progress.json (written by the trainer: epoch, epochs and optionally eta_s / step / steps).
static int read_progress(const char *run_dir, double *frac, char *label, size_t len, double *eta)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/progress.json", run_dir);
    char *text, why[PATH_MAX + 128];
    size_t n;
    if (runfile_read(p, RUNFILE_MAX_JSON, &text, &n, why, sizeof why) != 0) return -1;
    json_t *o = json_loadb(text, n, 0, NULL);
    free(text);
    if (!o) return -1;
    double ep = json_number_value(json_object_get(o, "epoch")), eps = json_number_value(json_object_get(o, "epochs"));
    double step = json_number_value(json_object_get(o, "step")), steps = json_number_value(json_object_get(o, "steps"));
    json_t *e = json_object_get(o, "eta_s");
    *eta = json_is_number(e) ? json_number_value(e) : NAN;
    *frac = NAN;
    if (eps > 0) {
        snprintf(label, len, "epoch %g/%g", ep, eps);
        *frac = ep / eps;
        if (steps > 0 && step > 0 && ep >= 1) *frac = ((ep - 1) + step / steps) / eps;
    } else label[0] = 0;
    json_decref(o);
    return 0;
}

// Without progress.json (external trainers): the last epoch in metrics.jsonl over params.epochs.
static int progress_from_metrics(const char *run_dir, const json_t *params, double *frac, char *label, size_t len)
{
    json_t *eps = json_object_get(params, "epochs");
    if (!json_is_integer(eps) || json_integer_value(eps) < 1) return -1;
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
    RunLines *r;
    char err[PATH_MAX + 128];
    if (runfile_lines_open(p, RUNFILE_MAX_LINE, &r, err, sizeof err) != 0) return -1;
    const char *line;
    size_t n;
    int too_long, no_nl;
    long lineno, epoch = -1;
    while (runfile_lines_next(r, &line, &n, &too_long, &no_nl, &lineno, err, sizeof err) == 1) {
        if (too_long) continue;
        json_t *o = json_loadb(line, n, 0, NULL);
        json_t *e = json_object_get(o, "epoch");
        if (json_is_integer(e)) epoch = (long)json_integer_value(e);
        json_decref(o);
    }
    runfile_lines_close(r);
    if (epoch < 0) return -1;
    snprintf(label, len, "epoch %ld/%ld", epoch, (long)json_integer_value(eps));
    *frac = (double)epoch / (double)json_integer_value(eps);
    return 0;
}

// ---- cell parameters straight from their canonical text ---------------------------------------
// status shows the parameters that vary; parsing 100,000 params objects with jansson took most of
// its time, so the stored canonical text (plan.h PlanMember) is compared and converted in place.

#define STATUS_MAX_MEMBERS 128

// The stored params as canonical text (copied); text that is not (an old or hand-edited row) is
// put in canonical form through jansson.
static char *canonical_params(const char *text)
{
    PlanMember m[STATUS_MAX_MEMBERS];
    if (text && plan_canon_members(text, m, STATUS_MAX_MEMBERS) >= 0) return strdup(text);
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    char *c = json_is_object(o) ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(o);
    if (c && plan_canon_members(c, m, STATUS_MAX_MEMBERS) >= 0) return c;
    free(c);
    return strdup("{}");
}

static const PlanMember *member_named(const PlanMember *m, long n, const char *key, size_t klen, long hint)
{
    if (hint >= 0 && hint < n && m[hint].klen == klen && memcmp(m[hint].key, key, klen) == 0) return &m[hint];
    for (long i = 0; i < n; i++)
        if (m[i].klen == klen && memcmp(m[i].key, key, klen) == 0) return &m[i];
    return NULL;
}

static int same_value(const PlanMember *a, const PlanMember *b)
{
    return a && b && a->vlen == b->vlen && memcmp(a->val, b->val, a->vlen) == 0;
}

// The names of the members whose value differs between rows, as plan_varying_keys gives them for
// the parsed objects: row 0's keys in its order, then keys row 0 lacks in order of appearance.
// Names are malloc'd.
static size_t varying_members(char *const *texts, size_t n, char **keys, size_t max)
{
    PlanMember m0[STATUS_MAX_MEMBERS], mi[STATUS_MAX_MEMBERS];
    if (n == 0) return 0;
    long n0 = plan_canon_members(texts[0], m0, STATUS_MAX_MEMBERS);
    int vary[STATUS_MAX_MEMBERS] = {0};
    char *extra[STATUS_MAX_MEMBERS];
    size_t nextra = 0;
    for (size_t i = 1; i < n; i++) {
        long ni = plan_canon_members(texts[i], mi, STATUS_MAX_MEMBERS);
        for (long j = 0; j < n0; j++)
            if (!vary[j] && !same_value(&m0[j], member_named(mi, ni, m0[j].key, m0[j].klen, j))) vary[j] = 1;
        for (long j = 0; j < ni && nextra < STATUS_MAX_MEMBERS; j++) {
            if (member_named(m0, n0, mi[j].key, mi[j].klen, j)) continue;
            int seen = 0;
            for (size_t e = 0; e < nextra && !seen; e++) seen = strlen(extra[e]) == mi[j].klen && !memcmp(extra[e], mi[j].key, mi[j].klen);
            if (!seen) extra[nextra++] = strndup(mi[j].key, mi[j].klen);
        }
    }
    size_t m = 0;
    for (long j = 0; j < n0 && m < max; j++)
        if (vary[j]) keys[m++] = strndup(m0[j].key, m0[j].klen);
    for (size_t e = 0; e < nextra; e++) {
        if (m < max) keys[m++] = extra[e];
        else free(extra[e]);
    }
    return m;
}

// Adds one raw JSON value to the table as the parsed value would be (json_is_integer: table_int,
// real: table_real, string: its text, anything else: its compact JSON).
static void table_raw_value(Table *t, const PlanMember *v)
{
    if (!v) { table_null(t); return; }
    char buf[512];
    if (v->val[0] == '"' && !memchr(v->val, '\\', v->vlen) && v->vlen - 2 < sizeof buf) {
        memcpy(buf, v->val + 1, v->vlen - 2);
        buf[v->vlen - 2] = 0;
        table_text(t, buf);
        return;
    }
    if ((v->val[0] == '-' || (v->val[0] >= '0' && v->val[0] <= '9')) && v->vlen < 64) {
        // a number as jansson reads it: no '.', 'e' or 'E' is an integer (18 digits stay exact), else strtod
        memcpy(buf, v->val, v->vlen);
        buf[v->vlen] = 0;
        if (!strpbrk(buf, ".eE") && v->vlen <= 18) { table_int(t, strtoll(buf, NULL, 10)); return; }
        if (strpbrk(buf, ".eE")) { table_real(t, strtod(buf, NULL)); return; }
    }
    json_t *x = json_loadb(v->val, v->vlen, JSON_DECODE_ANY, NULL);
    if (json_is_integer(x)) table_int(t, json_integer_value(x));
    else if (json_is_real(x)) table_real(t, json_real_value(x));
    else if (json_is_string(x)) table_text(t, json_string_value(x));
    else if (x) { char *d = json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT); table_text(t, d ? d : ""); free(d); }
    else table_null(t);
    json_decref(x);
}

static int row_by_id(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;   // status_print's Row starts with its id
    return x < y ? -1 : x > y;
}

// One cell's row of the status table (run_dir and params are malloc'd: a PATH_MAX array per row
// was 4 KB x 100,000 cells).
typedef struct { long long id;   // first: row_by_id compares it
                 char key[16], state[24], job[64], reason[160], eval[24]; char *run_dir; double start, end; int attempt;
                 long long last_epoch; char *params; } Row;

// The cells of the experiment with their latest attempt, in plan order. 0, or -1 with err.
static int load_rows(sqlite3 *db, long long eid, Row **out, size_t *n, int *any_eval, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
            "SELECT c.key, c.params, c.state, a.job_id, a.start_time, a.end_time, a.run_dir, a.attempt, a.reason, ev.state, "
            // the last epoch collect stored: progress of a settled, collected attempt without
            // opening its run files (100,000 cells: 100,000 progress.json reads)
            // (attempts.last_epoch, kept by collect; looked up in epochs for attempts collected before it)
            "CASE WHEN a.ingest_sig IS NOT NULL THEN COALESCE(a.last_epoch, (SELECT epoch FROM epochs WHERE attempt_id = a.id "
            "AND epoch IS NOT NULL ORDER BY line DESC LIMIT 1)) END, c.id "
            "FROM cells c LEFT JOIN attempts a ON a.cell_id = c.id AND a.attempt = "
            "(SELECT max(attempt) FROM attempts WHERE cell_id = c.id) LEFT JOIN eval_jobs ev ON ev.attempt_id = a.id "
            // no ORDER BY: the index on experiment_id does not give id order, and sorting 100,000
            // rows with their params in SQLite's temp B-tree cost more than qsort below
            "WHERE c.experiment_id = ?1",
            -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, eid);
    Row *rows = NULL;
    size_t cap = 0;
    *n = 0;
    *any_eval = 0;   // the experiment has eval jobs: one more column, their state
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            rows = realloc(rows, cap * sizeof *rows);
        }
        Row *r = &rows[*n];
        memset(r, 0, sizeof *r);
        snprintf(r->key, sizeof r->key, "%s", (const char *)sqlite3_column_text(st, 0));
        r->params = canonical_params((const char *)sqlite3_column_text(st, 1));
        snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(st, 2));
        if (sqlite3_column_text(st, 3)) snprintf(r->job, sizeof r->job, "%s", (const char *)sqlite3_column_text(st, 3));
        r->start = sqlite3_column_double(st, 4);
        r->end = sqlite3_column_double(st, 5);
        if (sqlite3_column_text(st, 6)) r->run_dir = strdup((const char *)sqlite3_column_text(st, 6));
        r->last_epoch = sqlite3_column_type(st, 10) == SQLITE_INTEGER ? sqlite3_column_int64(st, 10) : -1;
        r->id = sqlite3_column_int64(st, 11);
        r->attempt = sqlite3_column_int(st, 7);
        if (sqlite3_column_text(st, 8)) {
            snprintf(r->reason, sizeof r->reason, "%s", (const char *)sqlite3_column_text(st, 8));
            for (char *c = r->reason; *c; c++) if (*c == '\n') *c = ' ';
        }
        if (sqlite3_column_text(st, 9)) { snprintf(r->eval, sizeof r->eval, "%s", (const char *)sqlite3_column_text(st, 9)); *any_eval = 1; }
        (*n)++;
    }
    sqlite3_finalize(st);
    if (*n > 1) qsort(rows, *n, sizeof *rows, row_by_id);   // cells in plan order
    *out = rows;
    return 0;
}

// progress, eta and elapsed of one row (empty when unknown).
static void row_progress(const Row *r, JobState js, const PlanMember *pm, long np, double now, char *prog, size_t plen,
                         char *eta_s, size_t elen, char *el, size_t ellen)
{
    double frac = NAN, eta = NAN;
    int running = js == JOB_RUNNING;
    const PlanMember *ep = member_named(pm, np, "epochs", 6, -1);
    long long epochs = -1;
    if (ep && ep->vlen < 19 && strspn(ep->val, "0123456789") == ep->vlen) epochs = strtoll(ep->val, NULL, 10);
    int have = 0;
    if (job_state_is_final(js) && r->last_epoch >= 0 && epochs > 0) {
        // settled and collected: what the run files would say, from the DB
        snprintf(prog, plen, "epoch %lld/%lld", r->last_epoch, epochs);
        frac = (double)r->last_epoch / (double)epochs;
        have = 1;
    } else if (r->run_dir && *r->run_dir) {
        have = read_progress(r->run_dir, &frac, prog, plen, &eta) == 0;
        if (!have) {
            json_t *o = json_loads(r->params, 0, NULL);
            have = progress_from_metrics(r->run_dir, o, &frac, prog, plen) == 0;
            json_decref(o);
        }
    }
    if (have && running && !isfinite(eta) && isfinite(frac) && frac > 0 && r->start > 0)
        eta = (now - r->start) * (1 - frac) / frac;
    if (js == JOB_COMPLETED && !prog[0]) snprintf(prog, plen, "done");
    if (running && isfinite(eta)) fmt_duration(eta, eta_s, elen);
    if (r->start > 0) fmt_duration((r->end > 0 ? r->end : now) - r->start, el, ellen);
}

static void text_or_null(Table *t, const char *s) { if (s[0]) table_text(t, s); else table_null(t); }

static void add_status_row(Table *t, const Row *r, JobState js, TableFormat f, char *const *vary, size_t nv,
                           int any_eval, double now)
{
    table_row(t);
    table_text(t, f == TABLE_TEXT ? (char[9]){r->key[0], r->key[1], r->key[2], r->key[3], r->key[4], r->key[5], r->key[6], r->key[7], 0} : r->key);
    PlanMember pm[STATUS_MAX_MEMBERS];
    long np = plan_canon_members(r->params, pm, STATUS_MAX_MEMBERS);
    for (size_t j = 0; j < nv; j++) table_raw_value(t, member_named(pm, np, vary[j], strlen(vary[j]), -1));
    table_text(t, r->state);
    if (r->attempt) table_int(t, r->attempt); else table_null(t);
    char prog[64] = "", eta_s[32] = "", el[32] = "";
    row_progress(r, js, pm, np, now, prog, sizeof prog, eta_s, sizeof eta_s, el, sizeof el);
    text_or_null(t, prog);
    text_or_null(t, eta_s);
    text_or_null(t, el);
    text_or_null(t, r->job);
    if (r->reason[0] && js != JOB_COMPLETED) table_text(t, r->reason); else table_null(t);
    if (any_eval) text_or_null(t, r->eval);
}

int status_print(sqlite3 *db, long long eid, const char *format, FILE *out, char *err, size_t errlen)
{
    TableFormat f = TABLE_AUTO;
    if (format && table_format_parse(format, &f) < 0) {
        snprintf(err, errlen, "--format '%s': expected table, csv, json or markdown", format);
        return -2;
    }
    f = table_format_resolve(f, out);
    Row *rows;
    size_t n;
    int any_eval;
    if (load_rows(db, eid, &rows, &n, &any_eval, err, errlen) < 0) return -1;
    char **params = malloc((n ? n : 1) * sizeof *params);   // canonical params text per row
    for (size_t i = 0; i < n; i++) params[i] = rows[i].params;
    char *vary[24];
    size_t nv = varying_members(params, n, vary, 24);
    const char *headers[40];
    size_t nh = 0;
    headers[nh++] = "key";
    for (size_t i = 0; i < nv; i++) headers[nh++] = vary[i];
    const char *tail[] = {"state", "attempt", "progress", "eta", "elapsed", "job", "reason"};
    for (size_t i = 0; i < 7; i++) headers[nh++] = tail[i];
    if (any_eval) headers[nh++] = "eval";
    Table *t = table_new(nh, headers);
    double now = now_s();
    StatusCounts counts = {0};
    for (size_t i = 0; i < n; i++) {
        JobState js;
        if (job_state_parse(rows[i].state, &js) < 0) js = JOB_UNKNOWN;
        counts.by_state[js]++;
        counts.total++;
        add_status_row(t, &rows[i], js, f, vary, nv, any_eval, now);
    }
    int rc = table_print(t, f, out);
    table_free(t);
    for (size_t i = 0; i < n; i++) { free(rows[i].params); free(rows[i].run_dir); }
    for (size_t j = 0; j < nv; j++) free(vary[j]);
    free(params);
    free(rows);
    if (f == TABLE_TEXT) {
        char sum[512];
        status_summary(&counts, sum, sizeof sum);
        fprintf(out, "%s\n", sum);
    }
    if (rc < 0) { snprintf(err, errlen, "write error"); return -1; }
    return 0;
}

