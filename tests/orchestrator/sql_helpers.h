// tests/orchestrator/sql_helpers.h — SQL helpers shared by the DB-backed unit tests (collect,
// views, report). Include after <cmocka.h>: failures go through cmocka's fail_msg.
#ifndef SEGX_TEST_SQL_HELPERS_H
#define SEGX_TEST_SQL_HELPERS_H
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>

// Runs printf-formatted SQL (sqlite3 %q/%Q work); fails the test on error.
static inline void execf(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("SQL failed: %s\n%s", msg, sql);
    sqlite3_free(sql);
}

// One double from a query (NAN for NULL or no row).
static inline double qd(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("prepare: %s\n%s", sqlite3_errmsg(db), sql);
    double v = NAN;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}
#endif
