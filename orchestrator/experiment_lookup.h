// orchestrator/experiment_lookup.h — what commands that act on one planned experiment do first:
// open the results DB (it must exist: a mistyped --db is an error, not a new empty file) and find
// the experiment by name, or the only one when none is named. defines: ExperimentRef,
// experiment_find, experiment_open.
#ifndef SEGX_EXPERIMENT_LOOKUP_H
#define SEGX_EXPERIMENT_LOOKUP_H
#include <sqlite3.h>
#include <stddef.h>

typedef struct {
    long long id;
    char name[256];
    char run_root[4096];   // runs/<experiment> (absolute)
} ExperimentRef;

// Finds the experiment row: name NULL picks the only one (else an error listing them). 0, -1
// runtime error, -2 bad input (unknown/ambiguous name), with err. Prints nothing.
int experiment_find(sqlite3 *db, const char *name, ExperimentRef *x, char *err, size_t errlen);

// db_path NULL: db_path_default; name NULL: the only experiment. 0 with *db open (the caller
// closes it); else leaves *db NULL, puts why into err (the command prints "segx CMD: <why>") and
// returns the exit code: 1 the DB cannot be opened or read, 2 no such experiment / several and
// none named. Prints nothing.
int experiment_open(const char *db_path, const char *name, sqlite3 **db, ExperimentRef *x, char *err, size_t errlen);

#endif
