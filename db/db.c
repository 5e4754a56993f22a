// db/db.c — open/migrate the results database (see db.h for the contract).
#include "db/db.h"
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

// ---- keeping derived objects current within a schema version --------------------------------
// Views are derived (they hold no data), and columns/tables were added to version 1 while it was
// unreleased. So a read-write open brings any version-1 file up to the compiled schema: missing
// additive objects are created and every view whose SQL differs from db/schema.sql's is
// replaced, in one transaction. Nothing stored is touched.

static int has_column(sqlite3 *db, const char *table, const char *column)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return found;
}

// The stored SQL of a view (malloc'd), or NULL.
static char *view_sql(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    char *sql = NULL;
    if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            sql = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return sql;
}

// Calls fn for each "CREATE VIEW name AS ...;" between the VIEWS markers of the compiled schema,
// with the statement text as SQLite stores it (no trailing ';'). Comment lines are skipped.
static int each_view(int (*fn)(sqlite3 *, const char *name, const char *sql, int *changed, char *, size_t),
                     sqlite3 *db, int *changed, char *e, size_t el)
{
    const char *begin = strstr(db_schema_sql, "-- VIEWS-BEGIN"), *end = strstr(db_schema_sql, "-- VIEWS-END");
    if (!begin || !end) return 0;
    size_t cap = (size_t)(end - begin) + 1, len = 0;
    char *stmt = malloc(cap);
    if (!stmt) { snprintf(e, el, "out of memory"); return -1; }
    int rc = 0;
    for (const char *p = begin; p < end && rc == 0;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        if (!(n >= 2 && p[0] == '-' && p[1] == '-') && !(len == 0 && n == 1)) {
            memcpy(stmt + len, p, n);
            len += n;
            stmt[len] = 0;
            if (sqlite3_complete(stmt)) {
                while (len > 0 && (stmt[len - 1] == '\n' || stmt[len - 1] == ';' || stmt[len - 1] == ' ')) stmt[--len] = 0;
                char name[128];
                if (sscanf(stmt, "CREATE VIEW %127s AS", name) == 1) rc = fn(db, name, stmt, changed, e, el);
                len = 0;
            }
        }
        p += n;
    }
    free(stmt);
    return rc;
}

static int replace_view_if_stale(sqlite3 *db, const char *name, const char *sql, int *changed, char *e, size_t el)
{
    char *old = view_sql(db, name);
    int same = old && strcmp(old, sql) == 0;
    free(old);
    if (same) return 0;
    char drop[200];
    snprintf(drop, sizeof drop, "DROP VIEW IF EXISTS %s", name);
    if (exec(db, drop, e, el) < 0 || exec(db, sql, e, el) < 0) return -1;
    (*changed)++;
    return 0;
}

static int count_stale_view(sqlite3 *db, const char *name, const char *sql, int *changed, char *e, size_t el)
{
    (void)e; (void)el;
    char *old = view_sql(db, name);
    if (!old || strcmp(old, sql) != 0) (*changed)++;
    free(old);
    return 0;
}

// eval_jobs as in db/schema.sql, for files created before it existed.
static const char EVAL_JOBS_SQL[] =
    "CREATE TABLE IF NOT EXISTS eval_jobs ( attempt_id INTEGER PRIMARY KEY REFERENCES attempts(id) ON DELETE CASCADE, "
    "backend TEXT NOT NULL, job_id TEXT, state TEXT NOT NULL, reason TEXT, exit_code INTEGER, "
    "submit_time REAL, start_time REAL, end_time REAL, nodes TEXT, miou REAL, pixel_acc REAL, "
    "top1 REAL, loss REAL, images INTEGER, seconds REAL, images_per_s REAL, json TEXT, "
    "collected_at REAL )";

// traces and trace_ops as in db/schema.sql, for files created before they existed.
static const char TRACES_SQL[] =
    "CREATE TABLE IF NOT EXISTS traces ( attempt_id INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE, "
    "rank INTEGER NOT NULL, path TEXT NOT NULL, steps INTEGER, data_s REAL, forward_s REAL, backward_s REAL, "
    "comm_s REAL, optimizer_s REAL, eval_s REAL, other_s REAL, ops_s REAL, size INTEGER, mtime REAL, "
    "collected_at REAL, PRIMARY KEY (attempt_id, rank) ); "
    "CREATE TABLE IF NOT EXISTS trace_ops ( attempt_id INTEGER NOT NULL, rank INTEGER NOT NULL, op TEXT NOT NULL, "
    "calls INTEGER NOT NULL, total_s REAL NOT NULL, PRIMARY KEY (attempt_id, rank, op), "
    "FOREIGN KEY (attempt_id, rank) REFERENCES traces(attempt_id, rank) ON DELETE CASCADE )";

static int bring_up_to_date(sqlite3 *db, char *e, size_t el)
{
    int stale = 0;
    if (each_view(count_stale_view, db, &stale, e, el) < 0) return -1;
    int need_sig = !has_column(db, "attempts", "ingest_sig"), need_targets = !has_column(db, "targets", "metric");
    int need_eval = !has_column(db, "eval_jobs", "attempt_id"), need_run_s = !has_column(db, "attempts", "run_s");
    int need_traces = !has_column(db, "trace_ops", "attempt_id");
    int need_last_epoch = !has_column(db, "attempts", "last_epoch");
    if (!stale && !need_sig && !need_targets && !need_eval && !need_run_s && !need_traces && !need_last_epoch) return 0;
    if (exec(db, "BEGIN IMMEDIATE", e, el) < 0) return -1;
    int changed = 0;
    if ((need_sig && exec(db, "ALTER TABLE attempts ADD COLUMN ingest_sig TEXT", e, el) < 0) ||
        (need_targets && exec(db, "CREATE TABLE IF NOT EXISTS targets ("
                                  " experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,"
                                  " metric TEXT NOT NULL CHECK (metric IN ('miou','pixel_acc','top1','val_loss','train_loss')),"
                                  " value REAL NOT NULL, PRIMARY KEY (experiment_id, metric))", e, el) < 0) ||
        (need_eval && exec(db, EVAL_JOBS_SQL, e, el) < 0) ||
        (need_run_s && exec(db, "ALTER TABLE attempts ADD COLUMN run_s REAL", e, el) < 0) ||
        (need_traces && exec(db, TRACES_SQL, e, el) < 0) ||
        (need_last_epoch && exec(db, "ALTER TABLE attempts ADD COLUMN last_epoch INTEGER", e, el) < 0) ||
        each_view(replace_view_if_stale, db, &changed, e, el) < 0) {
        db_rollback(db);
        return -1;
    }
    return exec(db, "COMMIT", e, el);
}

// ---- read-only files and folders ------------------------------------------------------------
// A WAL database is read through PATH-shm (and PATH-wal) beside it, which SQLite creates on open:
// in a folder the user cannot write, even a read-only open fails with SQLITE_CANTOPEN. When there is
// no unsaved log (PATH-wal absent or empty) the file alone holds everything, and it can be read as
// immutable (no locks, no -shm). Writers get a message that says which file or folder is the cause.

static void folder_of(const char *path, char *dir, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, len, "%s", dirname(tmp));
}

// 1 when PATH-wal holds frames that are not in the main file yet.
static int has_pending_wal(const char *path)
{
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    return stat(wal, &sb) == 0 && sb.st_size > 0;
}

// "file:PATH?immutable=1" with PATH percent-encoded where URIs need it.
static void immutable_uri(const char *path, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < len; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p < 0x21 || *p >= 0x7f) n += (size_t)snprintf(out + n, len - n, "%%%02X", *p);
        else out[n++] = (char)*p;
    }
    snprintf(out + n, len - n, "?immutable=1");
}

// Why a read-write open of PATH cannot write, or NULL when it can (as far as permissions say).
static const char *why_not_writable(const char *path, char *buf, size_t len)
{
    char dir[4096];
    folder_of(path, dir, sizeof dir);
    if (access(path, W_OK) != 0 && errno != ENOENT) {
        snprintf(buf, len, "the database file is read-only for you (%s)", strerror(errno));
        return buf;
    }
    if (access(dir, W_OK) != 0) {
        snprintf(buf, len, "its folder %s is not writable for you (%s), and SQLite writes %s-wal and %s-shm beside "
                 "the database", dir, strerror(errno), path, path);
        return buf;
    }
    return NULL;
}

// A read-write connection belongs to one single-threaded command (plan, submit, status, collect, ...;
// `segx serve`'s threads open read-only ones): it takes no mutex per call, and SQLite keeps no
// memory statistics (a global mutex per allocation), asked for before SQLite's first use in the
// process (later it is refused, harmlessly). 10% of a 500,000-line collect's CPU time.
static void single_thread_sqlite(void)
{
    static int done;
    if (!done) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    done = 1;
}

int db_open(const char *path, int mode, sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    sqlite3 *db = NULL;
    int readonly = mode == DB_READONLY;
    int flags = readonly ? SQLITE_OPEN_READONLY
                : mode == DB_EXISTING ? SQLITE_OPEN_READWRITE : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!readonly) {
        flags |= SQLITE_OPEN_NOMUTEX;
        single_thread_sqlite();
    }
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open database: %s%s", path, db ? sqlite3_errmsg(db) : "out of memory",
                 mode != DB_CREATE ? " (run `segx plan` first, or pass --db FILE)" : "");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
    char e[20000];   // messages name the file, its folder and the -wal/-shm files
    if (exec(db, "PRAGMA foreign_keys = ON", e, sizeof e) < 0) goto fail;
    int v = user_version(db);
    int code = sqlite3_errcode(db);
    if (v < 0 && readonly && (code == SQLITE_CANTOPEN || code == SQLITE_READONLY)) {
        char dir[4096], uri[8400];
        folder_of(path, dir, sizeof dir);
        if (access(dir, W_OK) != 0 && !has_pending_wal(path)) {
            sqlite3_close(db);
            db = NULL;
            immutable_uri(path, uri, sizeof uri);
            if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
                snprintf(e, sizeof e, "cannot open database: %s", db ? sqlite3_errmsg(db) : "out of memory");
                goto fail;
            }
            v = user_version(db);
        } else if (access(dir, W_OK) != 0) {
            snprintf(e, sizeof e, "cannot read: %s-wal holds changes not yet in the database file, and reading them "
                     "needs %s-shm, which cannot be created in the read-only folder %s; open it once where the folder "
                     "is writable (any segx command does), or copy the three files elsewhere", path, path, dir);
            goto fail;
        }
    }
    if (v < 0) {
        char why[4600], dir[4096];
        int notadb = sqlite3_errcode(db) == SQLITE_NOTADB;
        const char *w = notadb ? NULL : why_not_writable(path, why, sizeof why);
        struct statvfs fs;
        folder_of(path, dir, sizeof dir);
        if (notadb) snprintf(e, sizeof e, "not a SQLite database (%s)", sqlite3_errmsg(db));
        else if (w && readonly) snprintf(e, sizeof e, "cannot read: %s", w);
        else if (w) snprintf(e, sizeof e, "cannot open for writing: %s; `segx query` and `segx report` can read it as it "
                             "is; for this command make it writable or copy it to a writable folder", w);
        else if (statvfs(dir, &fs) == 0 && fs.f_bavail == 0)
            snprintf(e, sizeof e, "cannot open: %s: the file system holding it is full (SQLite needs room for %s-shm "
                     "and %s-wal); nothing stored is lost: free some space and run the command again",
                     sqlite3_errmsg(db), path, path);
        else if (access(path, R_OK) != 0) snprintf(e, sizeof e, "cannot read: %s", strerror(errno));
        else snprintf(e, sizeof e, "cannot read the database: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (!readonly && sqlite3_db_readonly(db, "main") == 1) {
        char why[4600];
        const char *w = why_not_writable(path, why, sizeof why);
        snprintf(e, sizeof e, "cannot open for writing: %s; `segx query` and `segx report` can read it as it is; for "
                 "this command make it writable or copy it to a writable folder", w ? w : "the file system is read-only");
        goto fail;
    }
    if (v > SEGX_DB_VERSION) {
        snprintf(e, sizeof e, "schema version %d is newer than this segx understands (%d): upgrade segx",
                 v, SEGX_DB_VERSION);
        goto fail;
    }
    if (mode == DB_EXISTING && v == 0) {
        snprintf(e, sizeof e, "not a segx database (no schema); run `segx plan` first, or pass --db FILE");
        goto fail;
    }
    if (!readonly) {
        if (exec(db, "PRAGMA journal_mode = WAL", e, sizeof e) < 0) goto fail;
        if (exec(db, "PRAGMA synchronous = NORMAL", e, sizeof e) < 0) goto fail;
        if (v == 0) {
            // A new (or empty) file: refuse a file that has unrelated tables.
            sqlite3_stmt *st;
            int ntables = 0;
            if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) == SQLITE_OK) {
                if (sqlite3_step(st) == SQLITE_ROW) ntables = sqlite3_column_int(st, 0);
                sqlite3_finalize(st);
            }
            if (ntables > 0) {
                snprintf(e, sizeof e, "has tables but no segx schema version: not a segx database");
                goto fail;
            }
            if (exec(db, "BEGIN IMMEDIATE", e, sizeof e) < 0) goto fail;
            if (exec(db, db_schema_sql, e, sizeof e) < 0) { db_rollback(db); goto fail; }
            if (exec(db, "COMMIT", e, sizeof e) < 0) { db_rollback(db); goto fail; }
        }
        // Migrations from older versions go here, each in one transaction.
        if (bring_up_to_date(db, e, sizeof e) < 0) goto fail;
    } else if (v == 0) {
        snprintf(e, sizeof e, "not a segx database (no schema); run `segx plan` first");
        goto fail;
    }
    *out = db;
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, e);
    sqlite3_close(db);
    return -1;
}

void db_close(sqlite3 *db)
{
    if (db) sqlite3_close(db);
}

const char *db_path_default(const char *flag_value)
{
    if (flag_value && *flag_value) return flag_value;
    const char *env = getenv("SEGX_DB");
    if (env && *env) return env;
    return "segx.db";
}

int db_begin(sqlite3 *db, char *err, size_t errlen) { return exec(db, "BEGIN IMMEDIATE", err, errlen); }
int db_commit(sqlite3 *db, char *err, size_t errlen) { return exec(db, "COMMIT", err, errlen); }
void db_rollback(sqlite3 *db)
{
    char e[64];
    exec(db, "ROLLBACK", e, sizeof e);
}
