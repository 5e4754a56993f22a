// orchestrator/experiment_lookup.c — open the DB and find the experiment (experiment_lookup.h).
#include "orchestrator/experiment_lookup.h"
#include <stdio.h>   // before submit.h, which names FILE
#include "orchestrator/submit.h"
#include "db/db.h"

int experiment_open(const char *cmd, const char *db_path, const char *name, sqlite3 **db, ExperimentRef *x)
{
    char err[2048];
    *db = NULL;
    if (db_open(db_path_default(db_path), DB_EXISTING, db, err, sizeof err) < 0) {
        fprintf(stderr, "segx %s: %s\n", cmd, err);
        *db = NULL;
        return 1;
    }
    int frc = submit_find_experiment(*db, name, &x->id, x->name, sizeof x->name, x->run_root, sizeof x->run_root,
                                     err, sizeof err);
    if (frc < 0) {
        fprintf(stderr, "segx %s: %s\n", cmd, err);
        db_close(*db);
        *db = NULL;
        return frc == -2 ? 2 : 1;
    }
    return 0;
}
