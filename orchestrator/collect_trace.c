// orchestrator/collect_trace.c — trace.json (Chrome trace format) -> traces, trace_ops (collect_trace.h).
#include "orchestrator/util/clock.h"
#include "orchestrator/collect_trace.h"
#include "orchestrator/render.h"
#include "orchestrator/runfile.h"
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_RANKS 4096

typedef struct {
    sqlite3 *db;
    FILE *warn;
    long *warnings;
    char *err;
    size_t errlen;
} Tc;

static void warnf(Tc *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(Tc *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("segx collect: warning: ", t->warn ? t->warn : stderr);
    vfprintf(t->warn ? t->warn : stderr, fmt, ap);
    fputc('\n', t->warn ? t->warn : stderr);
    va_end(ap);
    if (t->warnings) (*t->warnings)++;
}

static int sql_fail(Tc *t, const char *what)
{
    snprintf(t->err, t->errlen, "%s: %s", what, sqlite3_errmsg(t->db));
    return -1;
}

// The cell's "profile" flag value with its {{var}} expanded as the job script got it (plan.c),
// when it is an absolute path; else "" (the caller looks for RUN_DIR/trace.json). q: the caller's
// COLLECT_TRACE_CELL_SQL, or NULL.
static int profile_path(Tc *t, sqlite3_stmt *q, sqlite3_int64 attempt_id, const char *run_dir, char *out, size_t len)
{
    out[0] = '\0';
    sqlite3_stmt *s = q;
    if (!s && sqlite3_prepare_v2(t->db, COLLECT_TRACE_CELL_SQL, -1, &s, NULL) != SQLITE_OK)
        return sql_fail(t, "reading the cell of an attempt");
    sqlite3_bind_int64(s, 1, attempt_id);
    const char *text = sqlite3_step(s) == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    // Most cells have no "profile" key: their params need no parsing.
    json_t *params = text && strstr(text, "\"profile\"") ? json_loads(text, 0, NULL) : NULL;
    const char *v = json_string_value(json_object_get(params, "profile"));
    if (v && strstr(v, "{{")) {
        json_t *vars = json_deep_copy(params);
        json_object_set_new(vars, "run_dir", json_string(run_dir));
        json_object_set_new(vars, "cell_key", json_string((const char *)sqlite3_column_text(s, 1)));
        json_object_set_new(vars, "attempt", json_integer(sqlite3_column_int(s, 2)));
        json_object_set_new(vars, "experiment", json_string((const char *)sqlite3_column_text(s, 3)));
        char *r = NULL, e[256];
        if (render_value(v, "profile", vars, &r, e, sizeof e) == 0 && r[0] == '/') snprintf(out, len, "%s", r);
        free(r);
        json_decref(vars);
    } else if (v && v[0] == '/') {
        snprintf(out, len, "%s", v);
    }
    json_decref(params);
    if (q) sqlite3_reset(q);
    else sqlite3_finalize(s);
    return 0;
}

// 1 when the stored row for (attempt, rank) has this file's size and mtime.
static int unchanged(Tc *t, sqlite3_int64 attempt_id, int rank, const char *path, const struct stat *sb)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(t->db, "SELECT 1 FROM traces WHERE attempt_id = ?1 AND rank = ?2 AND path = ?3"
                           " AND size = ?4 AND mtime = ?5", -1, &s, NULL) != SQLITE_OK)
        return sql_fail(t, "reading traces");
    sqlite3_bind_int64(s, 1, attempt_id);
    sqlite3_bind_int(s, 2, rank);
    sqlite3_bind_text(s, 3, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)sb->st_size);
    sqlite3_bind_double(s, 5, (double)sb->st_mtim.tv_sec + sb->st_mtim.tv_nsec * 1e-9);
    int same = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return same;
}

enum { PH_DATA, PH_FORWARD, PH_BACKWARD, PH_COMM, PH_OPTIMIZER, PH_EVAL, PH_OTHER, PH_COUNT };

// One rank's sums: seconds per phase, forward passes counted as steps, and per op its calls and seconds.
typedef struct {
    double ph[PH_COUNT], ops_s;
    long steps;
    json_t *ops;   // name -> [calls, seconds]
} RankSums;

// The trace at path parsed, or NULL (read error or malformed file: warned, the stored rows stay).
// *events is its event array, owned by the returned root.
static json_t *load_trace(Tc *t, const char *path, json_t **events)
{
    // Read like every other run file (runfile.h): a FIFO or device is refused without waiting on
    // it, and a file over RUNFILE_MAX_TRACE is not loaded; either is a warning, the rows stay.
    char *text, rerr[4400];
    size_t len;
    int rr = runfile_read(path, RUNFILE_MAX_TRACE, &text, &len, rerr, sizeof rerr);
    if (rr != 0) {
        if (rr < 0) warnf(t, "%s; the stored trace rows are kept", rerr);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    json_t *ev = json_is_object(root) ? json_object_get(root, "traceEvents") : root;
    if (!json_is_array(ev)) {
        warnf(t, "%s:%d:%d: not a Chrome trace (%s); skipped", path, je.line, je.column,
              root ? "no traceEvents array" : je.text);
        json_decref(root);
        return NULL;
    }
    *events = ev;
    return root;
}

// Adds the complete ("X") events of ev to sums: the "op" category per op name, the rest per phase.
static void sum_events(json_t *ev, RankSums *sums)
{
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        const char *type = json_string_value(json_object_get(e, "ph"));
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *cat = json_string_value(json_object_get(e, "cat"));
        json_t *dur = json_object_get(e, "dur");
        if (!type || strcmp(type, "X") || !name || !json_is_number(dur)) continue;
        double s = json_number_value(dur) * 1e-6;   // Chrome traces count microseconds
        if (cat && !strcmp(cat, "op")) {
            json_t *o = json_object_get(sums->ops, name);
            if (!o) json_object_set_new(sums->ops, name, o = json_pack("[i,f]", 0, 0.0));
            json_array_set_new(o, 0, json_integer(json_integer_value(json_array_get(o, 0)) + 1));
            json_array_set_new(o, 1, json_real(json_real_value(json_array_get(o, 1)) + s));
            sums->ops_s += s;
            continue;
        }
        int k = !strcmp(name, "data_wait") || !strcmp(name, "data") ? PH_DATA
              : !strcmp(name, "forward") ? PH_FORWARD : !strcmp(name, "backward") ? PH_BACKWARD
              : !strcmp(name, "comm") ? PH_COMM : !strcmp(name, "optimizer") ? PH_OPTIMIZER
              : !strcmp(name, "eval") ? PH_EVAL : PH_OTHER;
        sums->ph[k] += s;
        sums->steps += k == PH_FORWARD;
    }
}

// Deletes the rank's trace_ops rows (the new ones replace them). 0, or -1 DB error.
static int delete_rank_ops(Tc *t, sqlite3_int64 attempt_id, int rank)
{
    int rc = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->db, "DELETE FROM trace_ops WHERE attempt_id = ?1 AND rank = ?2", -1, &s, NULL) != SQLITE_OK)
        rc = sql_fail(t, "writing trace_ops");
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, attempt_id);
        sqlite3_bind_int(s, 2, rank);
        if (sqlite3_step(s) != SQLITE_DONE) rc = sql_fail(t, "writing trace_ops");
    }
    sqlite3_finalize(s);
    return rc;
}

// Upserts the rank's traces row: its phase sums and the file's size and mtime. 0, or -1 DB error.
static int upsert_rank(Tc *t, sqlite3_int64 attempt_id, int rank, const char *path, const struct stat *sb,
                       const RankSums *sums, double now)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(t->db,
            "INSERT INTO traces (attempt_id, rank, path, steps, data_s, forward_s, backward_s, comm_s, optimizer_s,"
            " eval_s, other_s, ops_s, size, mtime, collected_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"
            " ON CONFLICT (attempt_id, rank) DO UPDATE SET path=excluded.path, steps=excluded.steps,"
            " data_s=excluded.data_s, forward_s=excluded.forward_s, backward_s=excluded.backward_s, comm_s=excluded.comm_s,"
            " optimizer_s=excluded.optimizer_s, eval_s=excluded.eval_s, other_s=excluded.other_s, ops_s=excluded.ops_s,"
            " size=excluded.size, mtime=excluded.mtime, collected_at=excluded.collected_at", -1, &s, NULL) != SQLITE_OK)
        return sql_fail(t, "writing traces");
    sqlite3_bind_int64(s, 1, attempt_id);
    sqlite3_bind_int(s, 2, rank);
    sqlite3_bind_text(s, 3, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, sums->steps);
    for (int k = 0; k < PH_COUNT; k++) sqlite3_bind_double(s, 5 + k, sums->ph[k]);
    sqlite3_bind_double(s, 12, sums->ops_s);
    sqlite3_bind_int64(s, 13, (sqlite3_int64)sb->st_size);
    sqlite3_bind_double(s, 14, (double)sb->st_mtim.tv_sec + sb->st_mtim.tv_nsec * 1e-9);
    sqlite3_bind_double(s, 15, now);
    int rc = sqlite3_step(s) != SQLITE_DONE ? sql_fail(t, "writing traces") : 0;
    sqlite3_finalize(s);
    return rc;
}

// Inserts one trace_ops row per op of ops (name -> [calls, seconds]). 0, or -1 DB error.
static int insert_rank_ops(Tc *t, sqlite3_int64 attempt_id, int rank, json_t *ops)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(t->db, "INSERT INTO trace_ops (attempt_id, rank, op, calls, total_s) VALUES (?1,?2,?3,?4,?5)",
                           -1, &s, NULL) != SQLITE_OK)
        return sql_fail(t, "writing trace_ops");
    int rc = 0;
    const char *k;
    json_t *o;
    json_object_foreach(ops, k, o) {
        sqlite3_bind_int64(s, 1, attempt_id);
        sqlite3_bind_int(s, 2, rank);
        sqlite3_bind_text(s, 3, k, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, json_integer_value(json_array_get(o, 0)));
        sqlite3_bind_double(s, 5, json_real_value(json_array_get(o, 1)));
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        if (r != SQLITE_DONE) { rc = sql_fail(t, "writing trace_ops"); break; }
    }
    sqlite3_finalize(s);
    return rc;
}

// Reads one rank's trace and replaces its rows. 0 (also for a malformed file: warned), -1 DB error.
static int store_rank(Tc *t, sqlite3_int64 attempt_id, int rank, const char *path, const struct stat *sb, double now)
{
    json_t *ev;
    json_t *root = load_trace(t, path, &ev);
    if (!root) return 0;
    RankSums sums = {.ops = json_object()};
    sum_events(ev, &sums);
    json_decref(root);
    int rc = delete_rank_ops(t, attempt_id, rank);
    if (rc == 0) rc = upsert_rank(t, attempt_id, rank, path, sb, &sums, now);
    if (rc == 0) rc = insert_rank_ops(t, attempt_id, rank, sums.ops);
    json_decref(sums.ops);
    return rc;
}

int collect_trace_attempt(sqlite3 *db, sqlite3_stmt *cell_q, sqlite3_int64 attempt_id, const char *run_dir, int force,
                          FILE *warn, long *warnings, char *err, size_t errlen)
{
    Tc t = {.db = db, .warn = warn, .warnings = warnings, .err = err, .errlen = errlen};
    char base[4096], path[4200];
    struct stat sb;
    snprintf(base, sizeof base, "%s/trace.json", run_dir);
    if (stat(base, &sb) != 0) {   // not in the run dir: where the cell's --profile pointed
        if (profile_path(&t, cell_q, attempt_id, run_dir, base, sizeof base) < 0) return -1;
        if (!base[0] || stat(base, &sb) != 0) return 0;
    }
    double now = now_s();
    for (int rank = 0; rank < MAX_RANKS; rank++) {
        if (rank == 0) snprintf(path, sizeof path, "%s", base);
        else snprintf(path, sizeof path, "%s.rank%d", base, rank);
        if (stat(path, &sb) != 0) break;   // not a regular file: store_rank warns and skips it
        int same = force ? 0 : unchanged(&t, attempt_id, rank, path, &sb);
        if (same < 0) return -1;
        if (!same && store_rank(&t, attempt_id, rank, path, &sb, now) < 0) return -1;
    }
    return 0;
}
