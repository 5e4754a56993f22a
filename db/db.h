// db/db.h — opening the segx results database. defines: db_open, db_close, db_path_default,
// db_begin/db_commit/db_rollback.
// Contract: WAL mode, busy timeout 60 s, foreign keys on; a new file gets db/schema.sql; a file
// whose PRAGMA user_version is older is migrated in one transaction; a newer one is refused (the
// user must upgrade segx), so nothing stored is ever rewritten by an older binary. A read-write
// open also replaces views whose SQL differs from db/schema.sql (views hold no data) and adds
// the objects added to version 1 before its release (attempts.ingest_sig, targets, eval_jobs).
// A read-write connection is opened without SQLite's per-call mutex (SQLITE_OPEN_NOMUTEX): use it
// from one thread at a time (read-only ones, e.g. serve's pool, keep it).
#ifndef SEGX_DB_H
#define SEGX_DB_H
#include <sqlite3.h>
#include <stddef.h>

#define SEGX_DB_VERSION 1
// How long a writer waits for another writer's transaction (a collect of 10,000+ cells at high
// load holds it 11-14 s). Readers never wait: in WAL mode they see the last committed state.
#define DB_BUSY_TIMEOUT_MS 60000

// How db_open treats the file.
enum {
    DB_CREATE = 0,     // read-write, created (with the schema) if missing
    DB_READONLY = 1,   // read-only, must exist (query, report; plan's look-up before it writes)
    DB_EXISTING = 2,   // read-write, must exist: submit/status/collect/cancel/resubmit/run, so a
                       // mistyped --db is an error instead of a new empty database
};
// path: the DB file; mode: one of the above.
int  db_open(const char *path, int mode, sqlite3 **out, char *err, size_t errlen);
void db_close(sqlite3 *db);
// --db FILE, else $SEGX_DB, else ./segx.db.
const char *db_path_default(const char *flag_value);
// BEGIN IMMEDIATE / COMMIT / ROLLBACK; 0 or -1 with err.
int db_begin(sqlite3 *db, char *err, size_t errlen);
int db_commit(sqlite3 *db, char *err, size_t errlen);
void db_rollback(sqlite3 *db);
// The schema text compiled into the binary (db/schema.sql).
extern const char db_schema_sql[];

#endif
