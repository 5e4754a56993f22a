// orchestrator/collect.h — ingest run dirs into the results DB (segx collect). defines:
// CollectOptions, CollectStats, collect_run, collect_forget_invented.
// Contract:
//  * For each attempt of the experiment(s) (attempts.run_dir), and each attempt-<n>/ dir with a
//    run's output found under the dir (runs/<experiment>/<cell-key>/) of a cell submitted at least
//    once, without an attempts row yet (Slurm requeues), reads metrics.jsonl, result.json,
//    env.json, exit_code and the stderr tail. Never-submitted cells get no attempts.
//  * Nothing stored is deleted: rows are only replaced by complete newer data. A gone run dir or
//    file, an unreadable, empty, truncated or non-regular file (FIFO, device: never opened for
//    reading, so never waited on) is a warning naming the path, and the stored rows stay; such an
//    attempt's fingerprint is not updated, so the next collect looks again. Reads are bounded
//    (orchestrator/runfile.h): metrics lines up to 1 MiB, other files up to 16 MiB.
//  * Memory does not grow with the number of cells: attempts are read a page at a time, and their
//    files a batch (16 MiB) at a time.
//  * Files are read with no transaction open; each batch is then written in one short write
//    transaction, so readers and other writers (plan, status, submit) wait at most for one batch,
//    never for a slow file system. A run-dir file over 64 MiB (metrics.jsonl, runs.tsv) is
//    streamed from disk while its batch is written, and trace.json files are read there too.
//  * Idempotent: an attempt whose files are unchanged since its last ingest (attempts.ingest_sig)
//    is skipped; a changed one is rewritten with upserts keyed by (attempt, line), so re-ingesting
//    the same files leaves every row, id and timestamp as it was.
//  * Each attempt's rows and its fingerprint commit together: a collect killed half-way leaves
//    every attempt either as it was or fully ingested, and the next collect goes on from there.
//  * A malformed metrics line is skipped with a warning "FILE:LINE: ..." on opts->warn; the rest
//    is kept. Unknown keys go to epochs.extra (a JSON object).
//  * attempts.state comes from exit_code while the state is not final (planned, submitted,
//    pending, running, unknown): 0 completed, 99 preempted (checkpointed, requeue), else failed
//    with reason "exit code N: <last stderr lines>". cells.state = state of the latest attempt.
//  * eval.targets of the experiment's spec fill the targets table (metric -> value).
#ifndef SEGX_COLLECT_H
#define SEGX_COLLECT_H
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *warn;          // warnings (malformed lines, unreadable files); NULL = stderr
    int force;           // re-read attempts whose files look unchanged
    int stderr_lines;    // lines of stderr kept in a failure reason; 0 = 5
} CollectOptions;

typedef struct {
    long attempts_seen;      // attempts looked at
    long attempts_ingested;  // attempts whose files were (re)read
    long attempts_new;       // attempts rows created for dirs found on disk
    long epochs;             // metrics lines stored
    long lines_skipped;      // malformed metrics lines
    long warnings;
    long attempts_missing;   // attempts whose run dir is gone (warned; their rows kept)
    long attempts_forgotten; // rows an older collect invented for never-submitted cells, removed
} CollectStats;

// experiment: its name, or NULL for every experiment. opts/stats may be NULL.
// 0 success (warnings allowed); -1 with err (the batches before the failure stay committed,
// each complete; nothing of the failed one is written); -2 with err for bad input
// (no such experiment).
int collect_run(sqlite3 *db, const char *experiment, const CollectOptions *opts, CollectStats *stats,
                char *err, size_t errlen);

// Removes the attempts rows that older versions of collect invented for cells never
// submitted (backend and state 'unknown', nothing stored under them; see collect.c), and sets such
// cells back to 'planned', so submit sends them and status does not ask a backend 'unknown'.
// experiment_id <= 0: all experiments. own_transaction: wrap the writes in BEGIN IMMEDIATE/COMMIT
// (no write lock is taken when there is nothing to remove); else the caller's transaction.
// Returns the number of rows removed, or -1 with err.
int collect_forget_invented(sqlite3 *db, long long experiment_id, int own_transaction, char *err, size_t errlen);

#endif
