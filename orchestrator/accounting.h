// orchestrator/accounting.h — what Slurm's accounting (slurmdbd, through `sacct` or slurmrestd) says each attempt
// really used, imported by `segx collect`, and the reports on it (`segx report queue|usage`).
// defines: accounting_import, accounting_report, accounting_kind_valid.
//
// Table slurm_accounting (created by the first import; one row per attempt of a Slurm backend):
//   attempt_id, job_id, state, exit_code, elapsed_s, total_cpu_s, max_rss_mb (largest step),
//   req_mem_mb, alloc_cpus, alloc_gpus, alloc_tres, tres_usage (the batch step's TRESUsageInTot:
//   gres/gpuutil and gres/gpumem where the cluster gathers them), gpu_util, gpu_mem_mb, nodelist,
//   partition, qos, submit_time, eligible_time, start_time, end_time (unix s), imported_at.
// View accounting_cells: those rows with the cell's gpu_type/gpus and the derived queue_wait_s
//   (start - eligible), cpu_efficiency (total_cpu_s / (elapsed_s x alloc_cpus)) and mem_headroom
//   (1 - max_rss_mb / req_mem_mb).
// Reports: queue  median and p90 queue wait per GPU type and partition (which type to ask for);
//          usage  per GPU type: jobs, elapsed and GPU hours, mean CPU efficiency, MaxRSS and headroom.
#ifndef SEGX_ACCOUNTING_H
#define SEGX_ACCOUNTING_H
#include "orchestrator/table.h"
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

// Imports the ended attempts of experiment_id (0: every experiment) that ran through a Slurm backend
// and have no final accounting row yet, with one `sacct` per 400 jobs; those of slurm-rest through
// slurmrestd's slurmdb API (GET /slurmdb/vX/jobs, one per 400 jobs; sacct when that fails). Without accounting
// (no slurmdbd, sacct missing) writes one note to `note` (may be NULL) and returns 0: nothing fails.
// Returns the number of attempts imported, or -1 on a database error (note says it).
int accounting_import(sqlite3 *db, long long experiment_id, FILE *note);
int accounting_kind_valid(const char *kind);   // "queue", "usage"
// 0 printed; -2 unknown kind; -1 with err (no accounting data yet says how to get it).
int accounting_report(sqlite3 *db, const char *kind, const char *experiment, TableFormat fmt, FILE *out,
                      char *err, size_t errlen);
#endif
