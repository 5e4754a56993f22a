// orchestrator/experiment_lookup.c — open the DB and find the experiment (experiment_lookup.h).
#include "orchestrator/experiment_lookup.h"
#include "db/db.h"
#include <stdio.h>
#include <string.h>

int experiment_find(sqlite3 *db, const char *name, ExperimentRef *x, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    const char *sql = name ? "SELECT id, name, run_root FROM experiments WHERE name = ?1"
                           : "SELECT id, name, run_root FROM experiments ORDER BY updated_at DESC";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (name) sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int n = 0;
    char names[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == 0) {
            x->id = sqlite3_column_int64(st, 0);
            snprintf(x->name, sizeof x->name, "%s", (const char *)sqlite3_column_text(st, 1));
            snprintf(x->run_root, sizeof x->run_root, "%s", (const char *)sqlite3_column_text(st, 2));
        }
        size_t l = strlen(names);
        if (l < sizeof names - 80)
            snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", (const char *)sqlite3_column_text(st, 1));
        n++;
    }
    sqlite3_finalize(st);
    if (n == 0) {
        if (name) snprintf(err, errlen, "no experiment named '%s' in the database (run `segx plan SPEC` first)", name);
        else snprintf(err, errlen, "the database has no experiments yet: run `segx plan SPEC` first");
        return -2;
    }
    if (!name && n > 1) {
        snprintf(err, errlen, "the database holds %d experiments (%s): name one", n, names);
        return -2;
    }
    return 0;
}

int experiment_open(const char *db_path, const char *name, sqlite3 **db, ExperimentRef *x, char *err, size_t errlen)
{
    *db = NULL;
    if (db_open(db_path_default(db_path), DB_EXISTING, db, err, errlen) < 0) {
        *db = NULL;
        return 1;
    }
    int frc = experiment_find(*db, name, x, err, errlen);
    if (frc < 0) {
        db_close(*db);
        *db = NULL;
        return frc == -2 ? 2 : 1;
    }
    return 0;
}
