// db/db.c — open/migrate the results database (see db.h for the contract).
#include "db/db.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int db_open(const char *path, int readonly, sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open database: %s%s", path, db ? sqlite3_errmsg(db) : "out of memory",
                 readonly ? " (run `segx plan` first, or pass --db FILE)" : "");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    char e[512];
    if (exec(db, "PRAGMA foreign_keys = ON", e, sizeof e) < 0) goto fail;
    int v = user_version(db);
    if (v < 0) { snprintf(e, sizeof e, "not a SQLite database or unreadable"); goto fail; }
    if (v > SEGX_DB_VERSION) {
        snprintf(e, sizeof e, "schema version %d is newer than this segx understands (%d): upgrade segx",
                 v, SEGX_DB_VERSION);
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
