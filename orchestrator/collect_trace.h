// orchestrator/collect_trace.h — segx collect's reading of segx-train's Chrome traces (--profile).
// For one attempt it finds the trace (the cell's "profile" value with its {{var}} expanded, else
// RUN_DIR/trace.json; rank r > 0 wrote PATH.rank<r> beside it), sums each rank's phases (the
// "phases" lane: data_wait, forward, backward, comm, optimizer, eval) and ops (the "ops" lane: calls
// and time per op name) and stores them in the traces and trace_ops tables (db/schema.sql), so
// "where did the time go per GPU count" is a query (view attempt_phases). A file whose size and
// mtime match the stored row is not read again; a malformed trace is a warning, never an error.
// defines: collect_trace_attempt.
#ifndef SEGX_COLLECT_TRACE_H
#define SEGX_COLLECT_TRACE_H
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

// Inside the caller's transaction. force: read even unchanged files. Warnings go to warn (NULL:
// stderr), each adds one to *warnings. 0, or -1 with err on a database error.
int collect_trace_attempt(sqlite3 *db, sqlite3_int64 attempt_id, const char *run_dir, int force, FILE *warn,
                          long *warnings, char *err, size_t errlen);
#endif
