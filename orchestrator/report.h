// orchestrator/report.h — the standard result tables (segx report), read from the DB views.
// defines: ReportOptions, report_print, report_json, report_kind_valid, report_parse_target.
// Kinds:
//  cells           every cell: parameters, state, attempts, final metrics, wall-clock, GPU-hours
//  accuracy        per cell group (cells differing only by seed): n, mean ± std (sample) of the
//                  final miou, pixel_acc, top1, val_loss
//  speedup         per scaling group: gpus, images/s, speedup and efficiency against the 1-GPU
//                  group of the same scaling_key, from throughput and from time per epoch;
//                  the scaling rule (weak / strong) is a column; warns (ReportOptions.warn)
//                  where measured attempts ran at the same time as other local-backend jobs
//                  on the same host, so their throughput was measured on shared cores
//  cost            GPU-hours per cell group (sum over attempts of (end-start)*gpus) and planned
//  time-to-target  per cell group: first stitched wall-clock second at which the metric reached
//                  the target (--target METRIC=VALUE, else the spec's eval.targets)
// Human formats (table, markdown) join mean ± std into one column; csv/json keep numbers apart.
#ifndef SEGX_REPORT_H
#define SEGX_REPORT_H
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include "orchestrator/table.h"

typedef struct {
    const char *experiment;  // NULL = every experiment
    const char *target;      // "miou=0.5" (time-to-target), NULL = the targets table
    TableFormat format;
    FILE *warn;              // speedup: warnings about attempts that ran beside other local
                             // jobs on one host (contended throughput); NULL: stderr
} ReportOptions;

int report_kind_valid(const char *kind);
// "METRIC=VALUE" with METRIC one of miou pixel_acc top1 val_loss train_loss. 0 or -1 with err.
int report_parse_target(const char *s, char *metric, size_t mlen, double *value, char *err, size_t errlen);
// 0 printed (an empty table is fine); -2 with err for bad input (kind, target, unknown
// experiment); -1 with err for a runtime failure (SQL, output).
int report_print(sqlite3 *db, const char *kind, const ReportOptions *opts, FILE *out, char *err, size_t errlen);
// The same report as `--format json` (opts->format is ignored), returned as a malloc'd string in
// *json (the caller frees it; *len its length): the dashboard (web/) serves exactly these bytes.
// Return codes as report_print.
int report_json(sqlite3 *db, const char *kind, const ReportOptions *opts, char **json, size_t *len, char *err,
                size_t errlen);

#endif
