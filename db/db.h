// db/db.h — opening the segx results database. defines: db_open, db_close, db_path_default,
// db_begin/db_commit/db_rollback.
// Contract: WAL mode, busy timeout 10 s, foreign keys on; a new file gets db/schema.sql; a file
// whose PRAGMA user_version is older is migrated in one transaction; a newer one is refused (the
// user must upgrade segx), so nothing stored is ever rewritten by an older binary. A read-write
// open also replaces views whose SQL differs from db/schema.sql (views hold no data) and adds
// the objects added to version 1 before its release (attempts.ingest_sig, targets).
#ifndef SEGX_DB_H
#define SEGX_DB_H
#include <sqlite3.h>
#include <stddef.h>

#define SEGX_DB_VERSION 1

// path: the DB file; readonly=1 opens it read-only (segx query) and fails if it does not exist.
int  db_open(const char *path, int readonly, sqlite3 **out, char *err, size_t errlen);
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
