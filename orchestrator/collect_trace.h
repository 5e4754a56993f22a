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

// The look-up of an attempt's cell (params, key, attempt, experiment name; ?1 the attempt id) that
// finds a trace outside the run dir. A caller that collects many attempts prepares it once.
#define COLLECT_TRACE_CELL_SQL \
    "SELECT c.params, c.key, a.attempt, e.name FROM attempts a JOIN cells c ON c.id = a.cell_id" \
    " JOIN experiments e ON e.id = c.experiment_id WHERE a.id = ?1"

// Inside the caller's transaction. cell_q: COLLECT_TRACE_CELL_SQL prepared on db (reset after use),
// or NULL to prepare it here. force: read even unchanged files. Warnings go to warn (NULL:
// stderr), each adds one to *warnings. 0, or -1 with err on a database error.
int collect_trace_attempt(sqlite3 *db, sqlite3_stmt *cell_q, sqlite3_int64 attempt_id, const char *run_dir, int force,
                          FILE *warn, long *warnings, char *err, size_t errlen);
#endif
