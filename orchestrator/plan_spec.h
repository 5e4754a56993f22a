// orchestrator/plan_spec.h — `segx plan` as a function without its output: load and check the
// spec, expand the matrix, render every cell, or one of each shape when submit is left to write the
// job scripts (an input error leaves the DB and files untouched), store new cells, write attempt 1's
// job scripts of never-submitted cells (PlanOptions.scripts). defines: PlanOutcome,
// plan_spec_run, plan_outcome_free. Contract: prints nothing; cmd/cmd_plan.c shows the outcome.
#ifndef SEGX_PLAN_SPEC_H
#define SEGX_PLAN_SPEC_H
#include "orchestrator/plan.h"
#include <limits.h>
#include <stddef.h>

typedef struct {
    Spec *spec;
    PlanCell *cells;           // every cell of the spec (is_new, next_attempt set)
    size_t n, added;           // cells, and how many of them were new to the DB
    int scripts;               // 1: attempt 1's job scripts were written (PlanOptions.scripts)
    char run_root[2 * PATH_MAX];
} PlanOutcome;

// o->format, o->quiet and o->limit are the caller's (output); the rest apply. 0 with *out (free it
// with plan_outcome_free), else the exit code (1 runtime failure, 2 bad input) with err.
int plan_spec_run(const char *spec_path, const PlanOptions *o, PlanOutcome *out, char *err, size_t errlen);
void plan_outcome_free(PlanOutcome *out);
#endif
