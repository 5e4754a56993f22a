// tests/orchestrator/test_collect.c — segx collect on real run dirs written by the test:
// idempotence (full table dumps compared), malformed lines, unknown keys, failure reasons from
// stderr, exit codes -> states, requeued attempt dirs found on disk, targets from the spec.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "db/db.h"
#include "tests/orchestrator/sql_helpers.h"
#include "orchestrator/collect.h"
#include "orchestrator/backend/jobstate.h"
#include "orchestrator/runfile.h"
#include <jansson.h>

typedef struct {
    char root[256];   // temp dir: segx.db and runs/
    char runs[300];
    sqlite3 *db;
} Fixture;

// Text of one value (caller frees); NULL for NULL.
static char *qs(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("prepare: %s\n%s", sqlite3_errmsg(db), sql);
    char *v = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
    mkdir(tmp, 0755);
}

// Every row sql returns into f, a line each, columns ended by '|' (NULL as "NULL").
static void write_rows(FILE *f, sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++)
            fprintf(f, "%s|", sqlite3_column_type(st, i) == SQLITE_NULL ? "NULL" : (const char *)sqlite3_column_text(st, i));
        fputc('\n', f);
    }
    sqlite3_finalize(st);
}

// Every row of every table, in a stable order, as one string: the idempotence oracle.
static char *dump_all(sqlite3 *db)
{
    static const char *const tables[] = {"experiments", "cells", "attempts", "epochs", "class_iou",
                                         "results", "environments", "targets", NULL};
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    for (int t = 0; tables[t]; t++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY 1, 2", tables[t]);
        fprintf(f, "== %s\n", tables[t]);
        write_rows(f, db, sql);
    }
    fclose(f);
    return out;
}

// Cells: c1 completed with 3 good lines, a malformed line and unknown keys; c2 failed (exit 3,
// stderr); c3 preempted (exit 99) on attempt 1 with attempt-2 on disk but not in the DB;
// c4 planned, no run dir. A second experiment whose attempt must not be touched by collect e1.
static int setup(void **state)
{
    Fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->root, sizeof fx->root, "/tmp/segx-test-collect-XXXXXX");
    if (!mkdtemp(fx->root)) fail_msg("mkdtemp");
    snprintf(fx->runs, sizeof fx->runs, "%s/runs/e1", fx->root);
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/segx.db", fx->root);
    if (db_open(path, 0, &fx->db, err, sizeof err) < 0) fail_msg("%s", err);
    sqlite3 *db = fx->db;
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES"
              " (1, 'e1', '{\"name\":\"e1\",\"eval\":{\"targets\":{\"miou\":0.3,\"top1\":0.9}}}', %Q, 1, 1),"
              " (2, 'e2', '{}', '%q/runs/e2', 1, 1)", fx->runs, fx->root);
    const char *keys[] = {"c1", "c2", "c3", "c4"};
    for (int i = 0; i < 4; i++)
        execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, gpus, created_at)"
                  " VALUES (%d, 1, %Q, '{}', 'g', 's', 2, 1)", i + 1, keys[i]);
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, created_at)"
              " VALUES (5, 2, 'x1', '{}', 'g', 's', 1)");
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s/attempt-1", fx->runs, keys[i]);
        mkdirs(path);
        execf(db, "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir) VALUES (%d, 1, 'slurm', '10%d', 'running', %Q)",
              i + 1, i, path);
    }
    snprintf(path, sizeof path, "%s/runs/e2/x1/attempt-1", fx->root);
    mkdirs(path);
    execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir) VALUES (5, 1, 'local', 'running', %Q)", path);
    write_file(strcat(path, "/exit_code"), "0\n");

    // c1: lines 1, 2 good; 3 malformed; 4 good with unknown keys and per-class IoU; 5 not an object.
    snprintf(path, sizeof path, "%s/c1/attempt-1/metrics.jsonl", fx->runs);
    write_file(path,
               "{\"epoch\": 1, \"step\": 10, \"wall_s\": 5.5, \"train_loss\": 1.25, \"miou\": 0.2, \"images_per_s\": 100}\n"
               "{\"epoch\": 2, \"step\": 20, \"wall_s\": 11.0, \"train_loss\": 0.75, \"miou\": 0.31, \"images_per_s\": 120}\n"
               "{\"epoch\": 3, \"step\": 30, \"wall_s\": 16.5, \"miou\": 0.3\n"
               "{\"epoch\": 4, \"wall_s\": 22.0, \"miou\": 0.35, \"grad_norm\": 1.5, \"tag\": \"ok\", \"per_class_iou\": [0.5, null, 0.25]}\n"
               "[1, 2]\n");
    snprintf(path, sizeof path, "%s/c1/attempt-1/result.json", fx->runs);
    write_file(path, "{\"images_per_s\": 110, \"wall_s\": 23.0, \"miou\": 0.35}\n");
    snprintf(path, sizeof path, "%s/c1/attempt-1/env.json", fx->runs);
    write_file(path, "{\"host\": \"n1\", \"gpu_model\": \"A100-SXM4-80GB\", \"cuda\": 13.0, \"git_commit\": \"abc123\"}\n");
    snprintf(path, sizeof path, "%s/c1/attempt-1/exit_code", fx->runs);
    write_file(path, "0\n");

    // c2: one line, then a crash.
    snprintf(path, sizeof path, "%s/c2/attempt-1/metrics.jsonl", fx->runs);
    write_file(path, "{\"epoch\": 1, \"wall_s\": 3.0, \"train_loss\": 2.0}\n");
    snprintf(path, sizeof path, "%s/c2/attempt-1/slurm-102.err", fx->runs);
    write_file(path, "line 1\nline 2\nline 3\nloading data\n\nepoch 1 done\nepoch 2\nTraceback: boom\n"
                     "CUDA error: out of memory\nsegx-train: fatal: giving up\n\n");
    snprintf(path, sizeof path, "%s/c2/attempt-1/exit_code", fx->runs);
    write_file(path, "3");

    // c3: preempted after a checkpoint; Slurm requeued it into attempt-2 (no row yet), which finished.
    snprintf(path, sizeof path, "%s/c3/attempt-1/exit_code", fx->runs);
    write_file(path, "99\n");
    snprintf(path, sizeof path, "%s/c3/attempt-1/metrics.jsonl", fx->runs);
    write_file(path, "{\"epoch\": 1, \"wall_s\": 10, \"miou\": 0.1}\n");
    snprintf(path, sizeof path, "%s/c3/attempt-2", fx->runs);
    mkdirs(path);
    snprintf(path, sizeof path, "%s/c3/attempt-2/metrics.jsonl", fx->runs);
    write_file(path, "{\"epoch\": 2, \"wall_s\": 10, \"miou\": 0.4}\n");
    snprintf(path, sizeof path, "%s/c3/attempt-2/exit_code", fx->runs);
    write_file(path, "0\n");
    snprintf(path, sizeof path, "%s/c3/not-an-attempt", fx->runs);
    mkdirs(path);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    Fixture *fx = *state;
    db_close(fx->db);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fx->root);
    free(fx);
    return 0;
}

// Runs collect on e1 with warnings captured; returns them (caller frees).
static char *collect(Fixture *fx, int force, CollectStats *cs)
{
    char *warn = NULL;
    size_t len = 0;
    FILE *w = open_memstream(&warn, &len);
    CollectOptions o = {.warn = w, .force = force};
    char err[512];
    int rc = collect_run(fx->db, "e1", &o, cs, err, sizeof err);
    fclose(w);
    if (rc != 0) fail_msg("collect_run: %s", err);
    return warn;
}

static void test_ingest_and_malformed_lines(void **state)
{
    Fixture *fx = *state;
    CollectStats cs;
    char *warn = collect(fx, 0, &cs);
    sqlite3 *db = fx->db;
    // Lines 1, 2 and 4 kept, 3 and 5 skipped with FILE:LINE warnings.
    assert_int_equal((int)qd(db, "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 1"), 3);
    char *lines = qs(db, "SELECT group_concat(line) FROM (SELECT line FROM epochs e JOIN attempts a ON a.id = e.attempt_id"
                         " WHERE a.cell_id = 1 ORDER BY line)");
    assert_string_equal(lines, "1,2,4");
    free(lines);
    char want[600];
    snprintf(want, sizeof want, "%s/c1/attempt-1/metrics.jsonl:3: ", fx->runs);
    if (!strstr(warn, want)) fail_msg("no warning naming %s in:\n%s", want, warn);
    snprintf(want, sizeof want, "%s/c1/attempt-1/metrics.jsonl:5: not a JSON object", fx->runs);
    if (!strstr(warn, want)) fail_msg("no warning naming %s in:\n%s", want, warn);
    assert_int_equal(cs.lines_skipped, 2);
    assert_int_equal(cs.epochs, 3 + 1 + 1 + 1);
    // Values, unknown keys and per-class IoU.
    assert_true(qd(db, "SELECT train_loss FROM epochs WHERE attempt_id = 1 AND line = 2") == 0.75);
    assert_true(qd(db, "SELECT step FROM epochs WHERE attempt_id = 1 AND line = 2") == 20);
    char *extra = qs(db, "SELECT extra FROM epochs WHERE attempt_id = 1 AND line = 4");
    assert_non_null(extra);
    assert_string_equal(extra, "{\"grad_norm\":1.5,\"tag\":\"ok\"}");
    free(extra);
    assert_null(qs(db, "SELECT extra FROM epochs WHERE attempt_id = 1 AND line = 1"));
    assert_int_equal((int)qd(db, "SELECT count(*) FROM class_iou"), 3);
    assert_true(qd(db, "SELECT iou FROM class_iou WHERE class = 2") == 0.25);
    assert_true(isnan(qd(db, "SELECT iou FROM class_iou WHERE class = 1")));
    // result.json, env.json.
    assert_true(qd(db, "SELECT images_per_s FROM results WHERE attempt_id = 1") == 110);
    char *gpu = qs(db, "SELECT gpu_model || ' ' || cuda || ' ' || git_commit FROM environments WHERE attempt_id = 1");
    assert_string_equal(gpu, "A100-SXM4-80GB 13.0 abc123");
    free(gpu);
    // attempts.last_epoch (status's progress of a collected attempt): the epoch of the last stored
    // line that has one, for every ingested attempt.
    assert_int_equal((int)qd(db, "SELECT count(*) FROM attempts a WHERE a.ingest_sig IS NOT NULL AND a.last_epoch IS NOT"
                                 " (SELECT epoch FROM epochs e WHERE e.attempt_id = a.id AND epoch IS NOT NULL ORDER BY line DESC LIMIT 1)"), 0);
    assert_true(qd(db, "SELECT count(*) FROM attempts WHERE last_epoch IS NOT NULL") > 0);
    // States: exit 0 -> completed.
    char *st = qs(db, "SELECT state FROM attempts WHERE id = 1");
    assert_string_equal(st, "completed");
    free(st);
    st = qs(db, "SELECT state FROM cells WHERE id = 1");
    assert_string_equal(st, "completed");
    free(st);
    // The other experiment is untouched.
    st = qs(db, "SELECT state FROM attempts WHERE cell_id = 5");
    assert_string_equal(st, "running");
    free(st);
    free(warn);
}

static void test_failed_cell_reason_from_stderr(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char *st = qs(db, "SELECT state FROM attempts WHERE cell_id = 2");
    assert_string_equal(st, "failed");
    free(st);
    assert_int_equal((int)qd(db, "SELECT exit_code FROM attempts WHERE cell_id = 2"), 3);
    char *reason = qs(db, "SELECT reason FROM attempts WHERE cell_id = 2");
    assert_string_equal(reason, "exit code 3: epoch 1 done\nepoch 2\nTraceback: boom\nCUDA error: out of memory\n"
                                "segx-train: fatal: giving up");
    free(reason);
    st = qs(db, "SELECT state FROM cells WHERE id = 2");
    assert_string_equal(st, "failed");
    free(st);
}

static void test_requeued_attempt_found_on_disk(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char *st = qs(db, "SELECT state FROM attempts WHERE cell_id = 3 AND attempt = 1");
    assert_string_equal(st, "preempted");
    free(st);
    st = qs(db, "SELECT state || ' ' || backend FROM attempts WHERE cell_id = 3 AND attempt = 2");
    assert_non_null(st);
    assert_string_equal(st, "completed slurm");
    free(st);
    st = qs(db, "SELECT state FROM cells WHERE id = 3");
    assert_string_equal(st, "completed");
    free(st);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM attempts WHERE cell_id = 3"), 2);
    // c4 had no run dir: still planned, no attempt invented.
    st = qs(db, "SELECT state FROM cells WHERE id = 4");
    assert_string_equal(st, "planned");
    free(st);
    // Targets from the spec.
    assert_true(qd(db, "SELECT value FROM targets WHERE experiment_id = 1 AND metric = 'miou'") == 0.3);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM targets"), 2);
}

static void test_idempotent(void **state)
{
    Fixture *fx = *state;
    char *before = dump_all(fx->db);
    CollectStats cs;
    char *warn = collect(fx, 0, &cs);
    char *after = dump_all(fx->db);
    assert_string_equal(before, after);
    assert_int_equal(cs.attempts_ingested, 0);  // nothing changed on disk
    assert_int_equal(cs.attempts_new, 0);
    free(warn);
    free(after);
    // Forced: every file re-read and rewritten, still the same rows, ids and timestamps.
    warn = collect(fx, 1, &cs);
    after = dump_all(fx->db);
    assert_string_equal(before, after);
    assert_int_equal(cs.attempts_ingested, cs.attempts_seen);
    assert_true(cs.attempts_seen == 4);
    free(warn);
    free(after);
    free(before);
}

static void test_changed_file_is_reingested(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char path[600];
    snprintf(path, sizeof path, "%s/c2/attempt-1/metrics.jsonl", fx->runs);
    // Rewrite with 2 lines (a different size, so the fingerprint changes even within one mtime tick).
    write_file(path, "{\"epoch\": 1, \"wall_s\": 3.0, \"train_loss\": 2.0}\n{\"epoch\": 2, \"wall_s\": 6.0, \"train_loss\": 1.5}\n");
    CollectStats cs;
    free(collect(fx, 0, &cs));
    assert_int_equal(cs.attempts_ingested, 1);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2"), 2);
    // per_class_iou grows, shrinks and goes: class rows follow, with no stale classes left.
    const char *const ious[] = {"[0.1, 0.2, 0.3]", "[0.5]", NULL};
    const int nclass[] = {3, 1, 0};
    for (int k = 0; k < 3; k++) {
        char text[300];
        snprintf(text, sizeof text, "{\"epoch\": 1, \"wall_s\": 3.0}\n{\"epoch\": 2%s%s%s}\n%*s\n",
                 ious[k] ? ", \"per_class_iou\": " : "", ious[k] ? ious[k] : "", "", k + 1, "");  // sizes differ
        write_file(path, text);
        free(collect(fx, 0, &cs));
        assert_int_equal(cs.attempts_ingested, 1);
        assert_int_equal((int)qd(db, "SELECT count(*) FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id"
                                     " JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2"), nclass[k]);
    }
    // Shrunk to nothing (truncated, or rewritten by a run that has not got as far yet): the stored
    // rows are newer complete data than nothing, so they stay, with a warning naming the file.
    write_file(path, "");
    char *warn = collect(fx, 0, &cs);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2"), 2);
    char want[700];
    snprintf(want, sizeof want, "%s: 0 line(s), but the DB holds rows up to line 2", path);
    if (!strstr(warn, want)) fail_msg("no warning '%s' in:\n%s", want, warn);
    free(warn);
    // Line 1 rewritten, line 2 now malformed (being written): line 1 replaced, line 2 kept as stored.
    write_file(path, "{\"epoch\": 1, \"wall_s\": 4.0}\n{\"epoch\": 2, \"wa");
    free(collect(fx, 0, &cs));
    assert_true(qd(db, "SELECT wall_s FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2 AND line = 1") == 4.0);
    assert_true(qd(db, "SELECT epoch FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2 AND line = 2") == 2);
    write_file(path, "{\"epoch\": 1, \"wall_s\": 3.0, \"train_loss\": 2.0}\n{\"epoch\": 2, \"wall_s\": 6.0, \"train_loss\": 1.5}\n");
    free(collect(fx, 0, &cs));
}

// A Slurm job requeued twice ran three times in one attempt: its time (and GPU-hours) is the sum of
// the runs in runs.tsv, not the last run's Slurm start/end; a malformed line is named and left out.
static void test_runs_tsv_sums_requeued_runs(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char path[600];
    snprintf(path, sizeof path, "%s/c1/attempt-1/runs.tsv", fx->runs);
    write_file(path, "0\t101\t1000\t1010\t99\n"
                     "1\t101\t1030\t1050\t143\n"
                     "garbage line\n"
                     "2\t101\t1070\t1077\t0\n");
    // Slurm knows only the last run: start 1070, end 1077.
    execf(db, "UPDATE attempts SET start_time = 1070, end_time = 1077 WHERE cell_id = 1");
    CollectStats cs;
    char *warn = collect(fx, 0, &cs);
    assert_non_null(strstr(warn, "runs.tsv:3: not a run line"));
    free(warn);
    assert_int_equal((int)qd(db, "SELECT run_s FROM attempts WHERE cell_id = 1"), 37);
    assert_int_equal((int)qd(db, "SELECT duration_s FROM attempt_times t JOIN attempts a ON a.id = t.attempt_id WHERE a.cell_id = 1"), 37);
    // gpus = 2: 37 s x 2 GPUs
    assert_true(fabs(qd(db, "SELECT gpu_hours FROM attempt_times t JOIN attempts a ON a.id = t.attempt_id WHERE a.cell_id = 1") - 74.0 / 3600) < 1e-12);
    // runs.tsv gone (a scratch purge): the stored time stays, with a warning naming the file.
    unlink(path);
    warn = collect(fx, 0, &cs);
    char want[700];
    snprintf(want, sizeof want, "%s: gone (run dir moved or purged?); keeping the run time stored before", path);
    if (!strstr(warn, want)) fail_msg("no warning '%s' in:\n%s", want, warn);
    free(warn);
    assert_int_equal((int)qd(db, "SELECT run_s FROM attempts WHERE cell_id = 1"), 37);
    // A job script from before runs.tsv existed never wrote one: the Slurm times count.
    execf(db, "UPDATE attempts SET start_time = 1070, end_time = 1077 WHERE cell_id = 2");
    free(collect(fx, 0, &cs));
    assert_int_equal((int)qd(db, "SELECT run_s IS NULL FROM attempts WHERE cell_id = 2"), 1);
    assert_int_equal((int)qd(db, "SELECT duration_s FROM attempt_times t JOIN attempts a ON a.id = t.attempt_id WHERE a.cell_id = 2"), 7);
    // Until runs.tsv is back, every collect looks at c1 again (and says so again).
    warn = collect(fx, 0, &cs);
    assert_int_equal(cs.attempts_ingested, 1);
    assert_non_null(strstr(warn, "keeping the run time stored before"));
    free(warn);
    write_file(path, "0\t101\t1000\t1037\t0\n");
    free(collect(fx, 0, &cs));
    assert_int_equal((int)qd(db, "SELECT run_s FROM attempts WHERE cell_id = 1"), 37);
    execf(db, "UPDATE attempts SET start_time = NULL, end_time = NULL WHERE cell_id IN (1, 2)");   // as the other tests expect
}

static void test_backend_state_kept(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    // The backend said timeout; the run dir's exit code is recorded but does not overwrite it.
    execf(db, "UPDATE attempts SET state = 'timeout', reason = NULL WHERE cell_id = 1");
    char path[600];
    snprintf(path, sizeof path, "%s/c1/attempt-1/exit_code", fx->runs);
    write_file(path, "143\n");
    free(collect(fx, 0, NULL));
    char *st = qs(db, "SELECT state || ' ' || exit_code FROM attempts WHERE cell_id = 1");
    assert_string_equal(st, "timeout 143");
    free(st);
    st = qs(db, "SELECT reason FROM attempts WHERE cell_id = 1");
    assert_string_equal(st, "exit code 143");  // no stderr file in c1
    free(st);
}

static void test_unknown_experiment(void **state)
{
    Fixture *fx = *state;
    char err[512];
    assert_int_equal(collect_run(fx->db, "nope", NULL, NULL, err, sizeof err), -2);
    assert_non_null(strstr(err, "'nope'"));
    // the state collect gives an attempt from its run dir's exit code: the job-state table's
    assert_string_equal(job_state_name(job_state_from_exit(0)), "completed");
    assert_string_equal(job_state_name(job_state_from_exit(99)), "preempted");
    assert_string_equal(job_state_name(job_state_from_exit(1)), "failed");
}

// ---- the in-place scanner against jansson ---------------------------------------------------
// 3000 generated lines (numbers of every JSON shape, unicode, nesting, escapes, invalid lines)
// are collected; each line's stored row must equal what jansson reads from the same text:
// rejected lines absent, numbers bit-equal, unknown keys equal as JSON.

static unsigned rnd_state = 42;
static unsigned rnd(unsigned n) { rnd_state = rnd_state * 1103515245u + 12345u; return (rnd_state >> 8) % n; }

static void gen_number(char *b, size_t len)
{
    size_t n = 0;
    if (rnd(3) == 0) b[n++] = '-';
    int idigits = 1 + (int)rnd(rnd(4) == 0 ? 22 : 4);
    if (rnd(4) == 0) idigits = 1, b[n++] = '0';
    else for (int i = 0; i < idigits; i++) b[n++] = (char)('0' + (i == 0 ? 1 + rnd(9) : rnd(10)));
    if (rnd(2)) { b[n++] = '.'; int f = 1 + (int)rnd(rnd(3) == 0 ? 25 : 6); for (int i = 0; i < f; i++) b[n++] = (char)('0' + rnd(10)); }
    if (rnd(4) == 0) {
        b[n++] = rnd(2) ? 'e' : 'E';
        if (rnd(2)) b[n++] = rnd(2) ? '-' : '+';
        n += (size_t)snprintf(b + n, len - n, "%u", rnd(rnd(5) == 0 ? 450 : 25));
    }
    b[n] = 0;
}

static const char *const invalid_lines[] = {
    "{\"epoch\": 1,}", "{\"epoch\": 01}", "{\"epoch\": 1.}", "{\"miou\": .5}", "{\"miou\": +1}",
    "{\"miou\": NaN}", "{\"tag\": \"unterminated}", "{\"tag\": \"bad \xC3\x28 utf8\"}", "{\"tag\": \"ctl \x01\"}",
    "{\"epoch\": 1} trailing", "[1]", "{\"epoch\" 1}", "{epoch: 1}", "{\"x\": [1, 2,]}", "{\"x\": tru}",
    "{\"step\": 123456789012345678901234}", "{\"miou\": 1e999}", "{\"tag\": \"\xED\xA0\x80\"}", "\"text\"", "{",
};

static void test_scanner_matches_jansson(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/runs/e3/k/attempt-1", fx->root);
    mkdirs(dir);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES (3, 'e3', '{}', '%q/runs/e3', 1, 1)", fx->root);
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, created_at) VALUES (30, 3, 'k', '{}', 'g', 's', 1)");
    execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, run_dir) VALUES (300, 30, 1, 'local', 'running', %Q)", dir);
    enum { N = 3000 };
    static char lines[N][512];
    for (int i = 0; i < N; i++) {
        char a[80], b[80], c[80];
        gen_number(a, sizeof a); gen_number(b, sizeof b); gen_number(c, sizeof c);
        int kind = (int)rnd(20);
        const char *ws = rnd(4) == 0 ? " \t " : "";
        if (kind == 0) snprintf(lines[i], sizeof lines[i], "%s", invalid_lines[rnd(sizeof invalid_lines / sizeof *invalid_lines)]);
        else if (kind == 1)  // escapes: the jansson path
            snprintf(lines[i], sizeof lines[i], "{\"epoch\": %d, \"miou\": %s, \"note\": \"tab\\there \\u00e9\\\"q\\\"\", \"\\u0065x\": 1}", i, a);
        else if (kind == 2)  // nested values, unicode, literals
            snprintf(lines[i], sizeof lines[i], "{%s\"epoch\"%s:%s%d, \"lr\": %s, \"cfg\": {\"a\": [1, {\"b\": null}], \"c\": \"μσ ✓\"},"
                     " \"ok\": true, \"off\": false, \"val_loss\": null, \"per_class_iou\": [%s, null, %s]}%s", ws, ws, ws, i, a, b, c, ws);
        else if (kind == 3)  // known keys with wrong types
            snprintf(lines[i], sizeof lines[i], "{\"epoch\": %s, \"miou\": \"high\", \"top1\": [1], \"per_class_iou\": 3, \"step\": %d}", a, i);
        else
            snprintf(lines[i], sizeof lines[i], "{\"epoch\": %d, \"step\": %d, \"wall_s\": %s, \"miou\": %s, \"lr\": %s, \"x_%d\": %s}",
                     i, i * 10, a, b, c, i % 7, a);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < N; i++) fprintf(f, "%s%s", lines[i], i % 11 == 0 ? "\r\n" : "\n");
    fclose(f);

    char *warn = NULL, err[512];
    size_t wl = 0;
    FILE *w = open_memstream(&warn, &wl);
    CollectOptions o = {.warn = w};
    assert_int_equal(collect_run(db, "e3", &o, NULL, err, sizeof err), 0);
    fclose(w);
    free(warn);

    static const char *const reals[] = {"wall_s", "train_loss", "val_loss", "miou", "pixel_acc", "top1", "lr",
                                        "images_per_s", "epoch_s", "data_s", "compute_s", "comm_s", NULL};
    int checked = 0, rejected = 0, via_columns = 0;
    for (int i = 0; i < N; i++) {
        json_error_t je;
        json_t *j = json_loads(lines[i], 0, &je);
        int row = (int)qd(db, "SELECT count(*) FROM epochs WHERE attempt_id = 300 AND line = %d", i + 1);
        if (!j || !json_is_object(j)) {
            if (row != 0) fail_msg("line %d stored but jansson rejects it: %s", i + 1, lines[i]);
            rejected++;
            json_decref(j);
            continue;
        }
        if (row != 1) fail_msg("line %d not stored but jansson accepts it: %s", i + 1, lines[i]);
        json_t *extra = json_object();
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
            int is_real = 0;
            for (int k = 0; reals[k]; k++) is_real |= strcmp(reals[k], key) == 0;
            int is_int = strcmp(key, "epoch") == 0 || strcmp(key, "step") == 0;
            if ((is_real || is_int) && json_is_null(v)) continue;
            if (is_real && json_is_number(v)) {
                double got = qd(db, "SELECT %s FROM epochs WHERE attempt_id = 300 AND line = %d", key, i + 1);
                if (!(got == json_number_value(v))) fail_msg("line %d %s: stored %.17g, jansson %.17g: %s", i + 1, key, got, json_number_value(v), lines[i]);
                via_columns++;
            } else if (is_int && json_is_number(v) && json_number_value(v) == floor(json_number_value(v)) &&
                       fabs(json_number_value(v)) <= 9e15) {
                double got = qd(db, "SELECT %s FROM epochs WHERE attempt_id = 300 AND line = %d", key, i + 1);
                assert_true(got == json_number_value(v));
            } else if (strcmp(key, "per_class_iou") == 0 && json_is_array(v)) {
                for (size_t k = 0; k < json_array_size(v); k++) {
                    json_t *x = json_array_get(v, k);
                    double got = qd(db, "SELECT iou FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id"
                                        " WHERE e.attempt_id = 300 AND e.line = %d AND ci.class = %d", i + 1, (int)k);
                    if (json_is_number(x)) assert_true(got == json_number_value(x));
                    else assert_true(isnan(got));
                }
            } else {
                json_object_set(extra, key, v);
            }
        }
        char *stored = qs(db, "SELECT extra FROM epochs WHERE attempt_id = 300 AND line = %d", i + 1);
        json_t *got = stored ? json_loads(stored, 0, &je) : json_object();
        if (!got || !json_equal(got, extra)) {
            char *want = json_dumps(extra, JSON_COMPACT);
            fail_msg("line %d extra: stored %s, expected %s: %s", i + 1, stored ? stored : "NULL", want, lines[i]);
        }
        json_decref(got);
        free(stored);
        json_decref(extra);
        json_decref(j);
        checked++;
    }
    assert_true(rejected > 50 && checked > 2500 && via_columns > 5000);
}

static void test_reason_from_job_err_when_trainer_stderr_empty(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/runs/e4/k/attempt-1", fx->root);
    mkdirs(dir);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES (4, 'e4', '{}', '%q/runs/e4', 1, 1)", fx->root);
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, created_at) VALUES (40, 4, 'k', '{}', 'g', 's', 1)");
    execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir) VALUES (40, 1, 'slurm', 'unknown', %Q)", dir);
    snprintf(path, sizeof path, "%s/stderr.log", dir);
    write_file(path, "");  // the trainer never started
    snprintf(path, sizeof path, "%s/slurm-77.err", dir);
    write_file(path, "srun: error: Unable to create step for job 77: Invalid generic resource (gres) specification\n");
    snprintf(path, sizeof path, "%s/exit_code", dir);
    write_file(path, "1\n");
    char err[512];
    CollectOptions o = {.warn = stderr};
    assert_int_equal(collect_run(db, "e4", &o, NULL, err, sizeof err), 0);
    char *r = qs(db, "SELECT state || ' | ' || reason FROM attempts WHERE cell_id = 40");
    assert_string_equal(r, "failed | exit code 1: srun: error: Unable to create step for job 77: Invalid generic resource (gres) specification");
    free(r);
}

// ---- nothing stored is ever lost (issue 17) ---------------------------------------------------

// Collects e1 and checks nothing in the DB changed; returns the warnings (caller frees).
static char *collect_expect_unchanged(Fixture *fx, CollectStats *cs)
{
    char *before = dump_all(fx->db);
    char *warn = collect(fx, 0, cs);
    char *after = dump_all(fx->db);
    if (strcmp(before, after) != 0) fail_msg("collect changed the DB:\n--- before\n%s\n--- after\n%s\nwarnings:\n%s", before, after, warn);
    free(before);
    free(after);
    return warn;
}

static void expect_warning(const char *warn, const char *fmt, ...)
{
    char want[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    if (!strstr(warn, want)) fail_msg("no warning '%s' in:\n%s", want, warn);
}

// Every row a query returns, as one string (caller frees).
static char *dump_rows(sqlite3 *db, const char *sql)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    write_rows(f, db, sql);
    fclose(f);
    return out;
}

// An attempt's first ingest inserts its lines several to a statement: the rows (ids, values,
// extra), their class_iou rows (rowids too) and the warnings are those of one upsert per line,
// across batch boundaries, lines with per_class_iou, lines read by jansson, skipped lines.
static void test_first_ingest_in_batches_same_rows(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/runs/e42/k/attempt-1", fx->root);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES (42, 'e42', '{}', '%q/runs/e42', 1, 1)", fx->root);
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, created_at) VALUES (4200, 42, 'k', '{}', 'g', 's', 1)");
    execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, run_dir) VALUES (42000, 4200, 1, 'local', 'running', %Q)", dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int nious = 0;
    for (int i = 1; i <= 150; i++) {
        if (i == 50) fprintf(f, "\n");                                          // blank: no row
        else if (i == 51) fprintf(f, "{\"epoch\": 51, \"wall_s\": \n");          // malformed: skipped
        else if (i == 4 || i == 120) fprintf(f, "{\"epoch\": %d, \"note\": \"esc\\\"aped\", \"miou\": 0.%d}\n", i, i);  // jansson
        else if (i == 64) fprintf(f, "{\"epoch\": %d, \"miou\": \"high\", \"step\": 1.5}\n", i);  // kept in extra
        else {
            fprintf(f, "{\"epoch\": %d, \"step\": %d, \"wall_s\": %d.25, \"miou\": 0.%03d%s", i, 10 * i, i, i,
                    i % 3 ? ", \"grad_norm\": 0.5" : "");
            int ncls = i == 77 ? 150 : i == 17 || i == 32 || i == 33 || i == 102 || i == 136 ? 3 : i % 5 == 0 ? 21 : 0;
            for (int k = 0; k < ncls; k++) fprintf(f, "%s%s", k ? ", " : ", \"per_class_iou\": [", k % 4 == 1 ? "null" : "0.5");
            fprintf(f, "%s}\n", ncls ? "]" : "");
            nious += ncls;
        }
    }
    fclose(f);
    const char *const epochs_sql = "SELECT * FROM epochs WHERE attempt_id = 42000 ORDER BY id";
    const char *const ious_sql = "SELECT ci.rowid, ci.* FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id"
                                 " WHERE e.attempt_id = 42000 ORDER BY ci.rowid";
    // One line first, then all of them: the later lines are upserted one at a time.
    char *nl = strchr(text, '\n');
    write_file(path, "");
    f = fopen(path, "w");
    fwrite(text, 1, (size_t)(nl + 1 - text), f);
    fclose(f);
    char *warn = NULL, *warn1 = NULL, err[512];
    size_t wl = 0;
    FILE *w = open_memstream(&warn1, &wl);
    CollectOptions o = {.warn = w};
    assert_int_equal(collect_run(db, "e42", &o, NULL, err, sizeof err), 0);
    write_file(path, text);
    fclose(w);
    free(warn1);
    w = open_memstream(&warn1, &wl);
    o.warn = w;
    assert_int_equal(collect_run(db, "e42", &o, NULL, err, sizeof err), 0);
    fclose(w);
    char *one_by_one = dump_rows(db, epochs_sql), *ious_one = dump_rows(db, ious_sql);
    // The same file as the attempt's first ingest (its rows were the newest: the ids come again).
    execf(db, "DELETE FROM epochs WHERE attempt_id = 42000; UPDATE attempts SET ingest_sig = NULL WHERE id = 42000");
    w = open_memstream(&warn, &wl);
    o.warn = w;
    assert_int_equal(collect_run(db, "e42", &o, NULL, err, sizeof err), 0);
    fclose(w);
    char *batched = dump_rows(db, epochs_sql), *ious_batched = dump_rows(db, ious_sql);
    assert_string_equal(batched, one_by_one);
    assert_string_equal(ious_batched, ious_one);
    assert_string_equal(warn, warn1);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM epochs WHERE attempt_id = 42000"), 148);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id"
                                 " WHERE e.attempt_id = 42000"), nious);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id"
                                 " WHERE e.attempt_id = 42000 AND e.line = 77 AND (ci.class %% 4 = 1) = (ci.iou IS NULL)"), 150);
    assert_int_equal((int)qd(db, "SELECT max(id) - min(id) FROM epochs WHERE attempt_id = 42000"), 147);
    expect_warning(warn, "%s:51: ", path);
    expect_warning(warn, "%s:64: key 'miou' is not a number; kept in epochs.extra", path);
    free(one_by_one); free(ious_one); free(batched); free(ious_batched); free(warn); free(warn1); free(text);
}

// A scratch purge: runs/ moved away. collect keeps every row, says which run dirs are gone, and
// when they are back finds nothing changed.
static void test_purged_run_dirs_keep_everything(void **state)
{
    Fixture *fx = *state;
    CollectStats cs;
    free(collect(fx, 0, &cs));   // settled
    char moved[400];
    snprintf(moved, sizeof moved, "%s.bak", fx->runs);
    assert_int_equal(rename(fx->runs, moved), 0);
    assert_true(qd(fx->db, "SELECT count(*) FROM epochs") > 0 && qd(fx->db, "SELECT count(*) FROM results") > 0);
    char *warn = collect_expect_unchanged(fx, &cs);
    expect_warning(warn, "%s/c1/attempt-1: run dir not found (moved away or purged?); keeping what the DB holds", fx->runs);
    expect_warning(warn, "%s/c3/attempt-2: run dir not found", fx->runs);
    assert_int_equal(cs.attempts_missing, 4);
    free(warn);
    assert_int_equal(rename(moved, fx->runs), 0);
    warn = collect_expect_unchanged(fx, &cs);
    assert_int_equal(cs.attempts_ingested, 0);
    assert_int_equal(cs.attempts_missing, 0);
    free(warn);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot read %s", path);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

// result.json empty, env.json a symlink loop, metrics.jsonl a FIFO, then a link to /dev/zero, then a
// directory (and unreadable, when not root): each is a warning naming the path, nothing is waited
// on, and every stored row stays. With the files back, nothing changed.
static void test_unreadable_and_special_files_keep_rows(void **state)
{
    Fixture *fx = *state;
    CollectStats cs;
    free(collect(fx, 0, &cs));
    char dir[400], res[500], env[500], met[500];
    snprintf(dir, sizeof dir, "%s/c1/attempt-1", fx->runs);
    snprintf(res, sizeof res, "%s/result.json", dir);
    snprintf(env, sizeof env, "%s/env.json", dir);
    snprintf(met, sizeof met, "%s/metrics.jsonl", dir);
    char *res_text = slurp(res), *env_text = slurp(env), *met_text = slurp(met);
    long rows = (long)qd(fx->db, "SELECT count(*) FROM epochs WHERE attempt_id = 1");
    assert_true(rows > 0);

    write_file(res, "");
    unlink(env);
    assert_int_equal(symlink("env.json", env), 0);   // ELOOP, even for root
    unlink(met);
    assert_int_equal(mkfifo(met, 0644), 0);          // no writer: a blocking open would hang
    char *warn = collect_expect_unchanged(fx, &cs);
    expect_warning(warn, "%s:1:0: ", res);
    expect_warning(warn, "the row stored before is kept");
    expect_warning(warn, "%s: cannot open: Too many levels of symbolic links", env);
    expect_warning(warn, "%s: not a regular file (a fifo); not read; the metric rows stored before are kept", met);
    free(warn);

    unlink(met);
    assert_int_equal(symlink("/dev/zero", met), 0);   // would grow a buffer without end
    warn = collect_expect_unchanged(fx, &cs);
    expect_warning(warn, "%s: not a regular file (a character device)", met);
    free(warn);

    unlink(met);
    assert_int_equal(mkdir(met, 0755), 0);
    warn = collect_expect_unchanged(fx, &cs);
    expect_warning(warn, "%s: not a regular file (a directory)", met);
    free(warn);
    rmdir(met);

    if (geteuid() != 0) {
        write_file(met, met_text);
        chmod(met, 0);
        warn = collect_expect_unchanged(fx, &cs);
        expect_warning(warn, "%s: cannot open: Permission denied", met);
        free(warn);
        unlink(met);
    }
    // Files back: the same rows as before (re-read, so the fingerprint is stored again).
    write_file(met, met_text);
    write_file(res, res_text);
    unlink(env);
    write_file(env, env_text);
    free(collect(fx, 0, &cs));
    assert_int_equal((long)qd(fx->db, "SELECT count(*) FROM epochs WHERE attempt_id = 1"), rows);
    assert_true(qd(fx->db, "SELECT images_per_s FROM results WHERE attempt_id = 1") == 110);
    free(res_text);
    free(env_text);
    free(met_text);
}

// A line longer than the per-line limit is skipped with FILE:LINE; the lines around it are kept.
static void test_overlong_metrics_line_skipped(void **state)
{
    Fixture *fx = *state;
    char path[500];
    snprintf(path, sizeof path, "%s/c2/attempt-1/metrics.jsonl", fx->runs);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"epoch\": 1, \"wall_s\": 3.0, \"train_loss\": 2.0}\n{\"epoch\": 2, \"tag\": \"", f);
    for (int i = 0; i < 3 << 20; i++) fputc('x', f);
    fputs("\"}\n{\"epoch\": 3, \"wall_s\": 9.0, \"train_loss\": 1.0}\n", f);
    fclose(f);
    CollectStats cs;
    char *warn = collect(fx, 0, &cs);
    expect_warning(warn, "%s:2: line longer than %u bytes; line skipped", path, RUNFILE_MAX_LINE);
    free(warn);
    assert_true(qd(fx->db, "SELECT train_loss FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2 AND line = 3") == 1.0);
    assert_true(qd(fx->db, "SELECT train_loss FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2 AND line = 1") == 2.0);
    // The line stored before as line 2 is kept (newer data for it was not complete).
    assert_true(qd(fx->db, "SELECT epoch FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 2 AND line = 2") == 2);
    write_file(path, "{\"epoch\": 1, \"wall_s\": 3.0, \"train_loss\": 2.0}\n{\"epoch\": 2, \"wall_s\": 6.0, \"train_loss\": 1.5}\n");
    free(collect(fx, 0, &cs));
}

// An experiment e6 of n planned cells (each with attempt-1/job.sh, as plan renders it) and, with
// invented = 1, the 'unknown' attempts an older collect recorded for them.
static void add_planned_experiment(Fixture *fx, int id, int n, int invented)
{
    sqlite3 *db = fx->db;
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES (%d, 'e%d', '{}', '%q/runs/e%d', 1, 1)",
          id, id, fx->root, id);
    execf(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        char dir[600], path[700];
        snprintf(dir, sizeof dir, "%s/runs/e%d/k%d/attempt-1", fx->root, id, i);
        mkdirs(dir);
        snprintf(path, sizeof path, "%s/job.sh", dir);
        write_file(path, "#!/bin/bash\n");
        execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, created_at) VALUES (%d, %d, 'k%d', '{}', 'g', 's', 1)",
              id * 100000 + i, id, i);
        if (invented) {
            execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir, ingest_sig) VALUES (%d, 1, 'unknown', 'unknown', %Q, 'v1')",
                  id * 100000 + i, dir);
            execf(db, "UPDATE cells SET state = 'unknown' WHERE id = %d", id * 100000 + i);
        }
    }
    execf(db, "COMMIT");
}

// collect before submit: planned cells get no attempts (submit would skip them as failed and
// status would ask a backend 'unknown'); the rows an older collect invented are removed.
static void test_collect_before_submit_invents_nothing(void **state)
{
    Fixture *fx = *state;
    sqlite3 *db = fx->db;
    add_planned_experiment(fx, 6, 3, 0);
    add_planned_experiment(fx, 7, 2, 1);
    char err[512];
    CollectStats cs;
    CollectOptions o = {.warn = stderr};
    assert_int_equal(collect_run(db, "e6", &o, &cs, err, sizeof err), 0);
    assert_int_equal(cs.attempts_new, 0);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = 6"), 0);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM cells WHERE experiment_id = 6 AND state = 'planned'"), 3);
    // An experiment broken by an older collect recovers.
    assert_int_equal(collect_run(db, "e7", &o, &cs, err, sizeof err), 0);
    assert_int_equal(cs.attempts_forgotten, 2);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = 7"), 0);
    assert_int_equal((int)qd(db, "SELECT count(*) FROM cells WHERE experiment_id = 7 AND state = 'planned'"), 2);
    // A row with anything under it (here an exit code) is a real attempt: kept.
    execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir, exit_code) VALUES (700000, 1, 'unknown', 'unknown', '/nonexistent', 1)");
    assert_int_equal(collect_forget_invented(db, 7, 1, err, sizeof err), 0);
    execf(db, "DELETE FROM attempts WHERE cell_id = 700000");
}

static int count_steps(void *p) { (*(long *)p)++; return 0; }

// SQLite VM steps of one collect of experiment `id` (deterministic, unlike time).
static long collect_steps(Fixture *fx, const char *name)
{
    long steps = 0;
    sqlite3_progress_handler(fx->db, 100, count_steps, &steps);
    char err[512];
    CollectOptions o = {.warn = stderr};
    int rc = collect_run(fx->db, name, &o, NULL, err, sizeof err);
    sqlite3_progress_handler(fx->db, 0, NULL, NULL);
    if (rc != 0) fail_msg("collect_run: %s", err);
    return steps;
}

// Work grows linearly with the cells found on disk: 4x the cells, at most ~6x the SQLite steps
// (a quadratic look-up per found dir gave 16x).
static void test_discovery_is_linear(void **state)
{
    Fixture *fx = *state;
    add_planned_experiment(fx, 8, 100, 0);
    add_planned_experiment(fx, 9, 400, 0);
    // half of each also ran once and requeued itself into attempt-2 (no row yet)
    for (int id = 8; id <= 9; id++) {
        int n = id == 8 ? 100 : 400;
        execf(fx->db, "BEGIN");
        for (int i = 0; i < n; i += 2) {
            char dir[600], path[700];
            snprintf(dir, sizeof dir, "%s/runs/e%d/k%d/attempt-1", fx->root, id, i);
            execf(fx->db, "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir) VALUES (%d, 1, 'slurm', '1', 'preempted', %Q)",
                  id * 100000 + i, dir);
            snprintf(dir, sizeof dir, "%s/runs/e%d/k%d/attempt-2", fx->root, id, i);
            mkdirs(dir);
            snprintf(path, sizeof path, "%s/exit_code", dir);
            write_file(path, "0\n");
        }
        execf(fx->db, "COMMIT");
    }
    long small = collect_steps(fx, "e8"), big = collect_steps(fx, "e9");
    fprintf(stderr, "collect: 100 cells %ld x100 SQLite steps, 400 cells %ld\n", small, big);
    if (big > 6 * small) fail_msg("collect of 400 cells took %ld x100 SQLite steps, of 100 cells %ld: not linear", big, small);
    assert_int_equal((int)qd(fx->db, "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = 9 AND a.attempt = 2 AND a.state = 'completed' AND a.backend = 'slurm'"), 200);
    assert_int_equal((int)qd(fx->db, "SELECT count(*) FROM cells WHERE experiment_id = 9 AND state = 'planned'"), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_and_malformed_lines),
        cmocka_unit_test(test_runs_tsv_sums_requeued_runs),
        cmocka_unit_test(test_failed_cell_reason_from_stderr),
        cmocka_unit_test(test_requeued_attempt_found_on_disk),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_changed_file_is_reingested),
        cmocka_unit_test(test_backend_state_kept),
        cmocka_unit_test(test_unknown_experiment),
        cmocka_unit_test(test_scanner_matches_jansson),
        cmocka_unit_test(test_first_ingest_in_batches_same_rows),
        cmocka_unit_test(test_reason_from_job_err_when_trainer_stderr_empty),
        cmocka_unit_test(test_purged_run_dirs_keep_everything),
        cmocka_unit_test(test_unreadable_and_special_files_keep_rows),
        cmocka_unit_test(test_overlong_metrics_line_skipped),
        cmocka_unit_test(test_collect_before_submit_invents_nothing),
        cmocka_unit_test(test_discovery_is_linear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
