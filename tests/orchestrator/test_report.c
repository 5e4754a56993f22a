// tests/orchestrator/test_report.c — segx report on hand-inserted data: every kind in every
// format, numbers read back from csv/json and checked against values computed here, the
// --target query against the time_to_target view, and the errors for bad input.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "db/db.h"
#include "tests/orchestrator/sql_helpers.h"
#include "orchestrator/report.h"

static char dbpath[256];

// Two experiments. "scale": model m, 1 GPU (seeds 1, 2) and 4 GPUs (seeds 1, 2); each cell has
// 3 lines: images_per_s 50 (warm-up), then X, X; miou 0.1, 0.3, F at wall_s 10, 20, 30.
//   1 GPU: X = 100, 110; F = 0.50, 0.54      4 GPUs: X = 360, 370; F = 0.52, 0.60
// "other": one cell, so --experiment filters are visible.
static const struct { int gpus, seed; double x, f; const char *state; } CELLS[] = {
    {1, 1, 100, 0.50, "completed"}, {1, 2, 110, 0.54, "completed"},
    {4, 1, 360, 0.52, "completed"}, {4, 2, 370, 0.60, "failed"},
};

static int setup(void **state)
{
    snprintf(dbpath, sizeof dbpath, "/tmp/segx-test-report-%d.db", (int)getpid());
    unlink(dbpath);
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, 0, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES"
              " (1, 'scale', '{}', '/x', 0, 0), (2, 'other', '{}', '/y', 0, 0)");
    for (int c = 0; c < 4; c++) {
        execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus,"
                  " batch_per_gpu, global_batch, scaling, seed, state, est_gpu_hours, created_at)"
                  " VALUES (%d, 1, 'key%d-with-a-long-hash', '{}', 'g%d', 's', 'm', 'a100', %d, 32, %d, 'weak', %d, %Q, 1, 0)",
              c + 1, c, CELLS[c].gpus, CELLS[c].gpus, 32 * CELLS[c].gpus, CELLS[c].seed, CELLS[c].state);
        execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, start_time, end_time, run_dir, reason)"
                  " VALUES (%d, %d, 1, 'local', %Q, 0, 36, '/x', %Q)", c + 1, c + 1, CELLS[c].state,
              c == 3 ? "exit code 1: loading\nRuntimeError: out of memory" : NULL);
        execf(db, "INSERT INTO epochs (attempt_id, line, epoch, wall_s, images_per_s, miou) VALUES"
                  " (%d, 1, 1, 10, 50, 0.1), (%d, 2, 2, 20, %.17g, 0.3), (%d, 3, 3, 30, %.17g, %.17g)",
              c + 1, c + 1, CELLS[c].x, c + 1, CELLS[c].x, CELLS[c].f);
    }
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpus, created_at)"
              " VALUES (9, 2, 'o', '{}', 'o', 'o', 'other-model', 1, 0)");
    *state = db;
    return 0;
}

static int teardown(void **state)
{
    db_close(*state);
    char p[300];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath); unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath); unlink(p);
    return 0;
}

// Runs a report; returns its output (caller frees) and the return code in *rc.
static char *run(sqlite3 *db, const char *kind, const char *exp, const char *target, TableFormat f, int *rc, char *err)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    ReportOptions o = {.experiment = exp, .target = target, .format = f};
    *rc = report_print(db, kind, &o, m, err, 512);
    fclose(m);
    return out;
}

static json_t *run_json(sqlite3 *db, const char *kind, const char *exp, const char *target)
{
    int rc;
    char err[512];
    char *out = run(db, kind, exp, target, TABLE_JSON, &rc, err);
    if (rc != 0) fail_msg("report %s: %s", kind, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j) fail_msg("report %s --format json is not JSON (%s):\n%s", kind, je.text, out);
    free(out);
    return j;
}

static double num(json_t *row, const char *key)
{
    json_t *v = json_object_get(row, key);
    if (!json_is_number(v)) fail_msg("%s is not a number", key);
    return json_number_value(v);
}

#define assert_close(a, b) do { double _a = (a), _b = (b); \
    if (!(fabs(_a - _b) <= 1e-9 + 1e-9 * fabs(_b))) fail_msg("%s = %.17g, expected %.17g", #a, _a, _b); } while (0)

static void test_speedup_json(void **state)
{
    json_t *j = run_json(*state, "speedup", "scale", NULL);
    assert_int_equal(json_array_size(j), 2);
    json_t *one = json_array_get(j, 0), *four = json_array_get(j, 1);
    assert_close(num(one, "gpus"), 1);
    // Steady throughput: the warm-up line (50) is left out, so cells are X; groups mean over seeds.
    double base = (100 + 110) / 2.0, x4 = (360 + 370) / 2.0;
    assert_close(num(one, "images_per_s"), base);
    assert_close(num(four, "images_per_s"), x4);
    assert_close(num(four, "speedup_throughput"), x4 / base);
    assert_close(num(four, "efficiency_throughput"), x4 / base / 4);
    assert_string_equal(json_string_value(json_object_get(four, "scaling")), "weak");
    json_decref(j);
}

static void test_accuracy_formats(void **state)
{
    sqlite3 *db = *state;
    json_t *j = run_json(db, "accuracy", "scale", NULL);
    json_t *four = json_array_get(j, 1);
    double m = (0.52 + 0.60) / 2, sd = sqrt(((0.52 - m) * (0.52 - m) + (0.60 - m) * (0.60 - m)) / 1);
    assert_close(num(four, "miou_mean"), m);
    assert_close(num(four, "miou_std"), sd);
    assert_close(num(four, "miou_n"), 2);
    assert_true(json_is_null(json_object_get(four, "top1_mean")));
    json_decref(j);
    // People get mean ± std in one column, rounded to 4 places.
    int rc;
    char err[512];
    char *out = run(db, "accuracy", "scale", NULL, TABLE_TEXT, &rc, err);
    assert_int_equal(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "%.4f ± %.4f", m, sd);
    if (!strstr(out, want)) fail_msg("no '%s' in:\n%s", want, out);
    free(out);
    out = run(db, "accuracy", NULL, NULL, TABLE_MARKDOWN, &rc, err);
    assert_non_null(strstr(out, "| experiment | model |"));
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "| other |"));  // no --experiment: every experiment
    free(out);
    // csv: header then one line per group, numbers apart.
    out = run(db, "accuracy", "scale", NULL, TABLE_CSV, &rc, err);
    assert_non_null(strstr(out, "miou_mean,miou_std,miou_n"));
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 3);
    free(out);
}

static void test_cells_and_cost(void **state)
{
    sqlite3 *db = *state;
    json_t *j = run_json(db, "cells", "scale", NULL);
    assert_int_equal(json_array_size(j), 4);
    json_t *failed = NULL;
    for (size_t i = 0; i < 4; i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(j, i), "state")), "failed") == 0) failed = json_array_get(j, i);
    assert_non_null(failed);
    assert_string_equal(json_string_value(json_object_get(failed, "reason")), "exit code 1: loading\nRuntimeError: out of memory");
    assert_string_equal(json_string_value(json_object_get(failed, "cell")), "key3-with-a-long-hash");
    assert_close(num(failed, "miou"), 0.60);
    assert_close(num(failed, "wall_s"), 30);
    assert_close(num(failed, "gpu_hours"), 36.0 * 4 / 3600);
    json_decref(j);
    int rc;
    char err[512];
    char *out = run(db, "cells", "scale", NULL, TABLE_TEXT, &rc, err);
    assert_non_null(strstr(out, "key3-with-a- "));  // keys cut to 12 characters for people
    assert_null(strstr(out, "key3-with-a-l"));
    assert_non_null(strstr(out, "exit code 1: RuntimeError: out of memory"));  // reason: code + last line
    free(out);
    // cost: per group, and a total row for people only.
    j = run_json(db, "cost", "scale", NULL);
    assert_close(num(json_array_get(j, 0), "gpu_hours"), 2 * 36.0 / 3600);
    assert_close(num(json_array_get(j, 1), "gpu_hours"), 2 * 36.0 * 4 / 3600);
    assert_close(num(json_array_get(j, 1), "est_gpu_hours"), 2);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    out = run(db, "cost", "scale", NULL, TABLE_TEXT, &rc, err);
    char want[32];
    snprintf(want, sizeof want, "%.3f", 10 * 36.0 / 3600);
    assert_non_null(strstr(out, "total"));
    if (!strstr(out, want)) fail_msg("no total %s in:\n%s", want, out);
    free(out);
}

static void test_time_to_target(void **state)
{
    sqlite3 *db = *state;
    // miou >= 0.3 at line 2 (wall 20 s) in every cell; >= 0.53 only where F >= 0.53 (wall 30 s).
    json_t *j = run_json(db, "time-to-target", "scale", "miou=0.53");
    json_t *one = json_array_get(j, 0), *four = json_array_get(j, 1);
    assert_close(num(one, "reached"), 1);
    assert_close(num(one, "cells"), 2);
    assert_close(num(four, "reached"), 1);
    assert_close(num(four, "wall_s_mean"), 30);
    assert_true(json_is_null(json_object_get(four, "wall_s_std")));
    json_decref(j);
    j = run_json(db, "time-to-target", "scale", "miou=0.3");
    assert_close(num(json_array_get(j, 0), "wall_s_mean"), 20);
    assert_close(num(json_array_get(j, 0), "reached"), 2);
    json_decref(j);
    // The same numbers from the targets table (the spec's eval.targets) via the views.
    execf(db, "INSERT INTO targets (experiment_id, metric, value) VALUES (1, 'miou', 0.53)");
    json_t *a = run_json(db, "time-to-target", "scale", NULL), *b = run_json(db, "time-to-target", "scale", "miou=0.53");
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    execf(db, "DELETE FROM targets");
    // Loss targets are reached from above.
    j = run_json(db, "time-to-target", "scale", "val_loss=1");
    assert_close(num(json_array_get(j, 0), "reached"), 0);
    json_decref(j);
}

static void test_bad_input(void **state)
{
    sqlite3 *db = *state;
    int rc;
    char err[512];
    free(run(db, "speedups", NULL, NULL, TABLE_CSV, &rc, err));
    assert_int_equal(rc, -2);
    assert_non_null(strstr(err, "'speedups'"));
    free(run(db, "speedup", "nope", NULL, TABLE_CSV, &rc, err));
    assert_int_equal(rc, -2);
    assert_non_null(strstr(err, "'nope'"));
    free(run(db, "speedup", NULL, "miou=0.5", TABLE_CSV, &rc, err));
    assert_int_equal(rc, -2);
    free(run(db, "time-to-target", NULL, NULL, TABLE_CSV, &rc, err));  // no --target, no targets rows
    assert_int_equal(rc, -2);
    assert_non_null(strstr(err, "--target"));
    char metric[32];
    double v;
    assert_int_equal(report_parse_target("miou=0.5", metric, sizeof metric, &v, err, sizeof err), 0);
    assert_string_equal(metric, "miou");
    assert_true(v == 0.5);
    assert_int_equal(report_parse_target("accuracy=0.5", metric, sizeof metric, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "'accuracy'"));
    assert_int_equal(report_parse_target("miou=high", metric, sizeof metric, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "'high'"));
    assert_int_equal(report_parse_target("miou", metric, sizeof metric, &v, err, sizeof err), -1);
}

// The warnings `segx report speedup` writes for experiment exp (the table goes elsewhere).
static char *speedup_warnings(sqlite3 *db, const char *exp)
{
    char *out = NULL, *warn = NULL, err[512];
    size_t len = 0, wlen = 0;
    FILE *m = open_memstream(&out, &len), *w = open_memstream(&warn, &wlen);
    ReportOptions o = {.experiment = exp, .format = TABLE_CSV, .warn = w};
    int rc = report_print(db, "speedup", &o, m, err, sizeof err);
    fclose(m);
    fclose(w);
    if (rc != 0) fail_msg("report speedup: %s", err);
    if (!strstr(out, "speedup_throughput")) fail_msg("no speedup table:\n%s", out);
    free(out);
    return warn;
}

static void expect_warning(sqlite3 *db, const char *exp, const char *what, const char *want)
{
    char *w = speedup_warnings(db, exp);
    if (want ? !strstr(w, want) : *w != 0) fail_msg("%s: expected %s%s%s, got:\n%s", what, want ? "'" : "no warning",
                                                    want ? want : "", want ? "'" : "", w);
    free(w);
}

// Attempts of a scaling group that ran at the same time as other local jobs on one host get a
// warning; back to back, on other hosts, under Slurm, or overlapping by < 1 s they do not.
static void test_speedup_contention(void **state)
{
    sqlite3 *db = *state;
    execf(db, "UPDATE attempts SET nodes = 'h1', start_time = 100 + 36 * (id - 1), end_time = 136 + 36 * (id - 1)");
    expect_warning(db, "scale", "back to back", NULL);
    execf(db, "UPDATE attempts SET start_time = 120, end_time = 156 WHERE id = 2");   // 16 s beside attempt 1
    expect_warning(db, "scale", "overlap", "warning: scale: m on a100 (weak, batch_per_gpu 32): 2 of 4 measured attempts "
                   "ran beside other local jobs on h1 (longest: cell key0-wit, 1 GPU, beside cell key1-wit, 1 GPU, for 16.0 s)");
    expect_warning(db, "scale", "advice", "--max-parallel 1");
    expect_warning(db, "other", "another experiment's report", NULL);
    execf(db, "UPDATE attempts SET nodes = 'h2' WHERE id = 2");
    expect_warning(db, "scale", "other host", NULL);
    execf(db, "UPDATE attempts SET nodes = 'h1', backend = 'slurm' WHERE id = 2");
    expect_warning(db, "scale", "slurm backend", NULL);
    execf(db, "UPDATE attempts SET backend = 'local', start_time = 135.5, end_time = 171.5 WHERE id = 2");
    expect_warning(db, "scale", "0.5 s jitter", NULL);
    // a job of another experiment (no metrics of its own) that ran across all four
    execf(db, "UPDATE attempts SET start_time = 136, end_time = 172 WHERE id = 2");   // back to back again
    execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, start_time, end_time, nodes, run_dir)"
              " VALUES (9, 9, 1, 'local', 'completed', 90, 300, 'h1', '/y')");
    expect_warning(db, NULL, "overlap with another experiment", "4 of 4 measured attempts ran beside other local jobs on h1");
    execf(db, "DELETE FROM attempts WHERE id = 9");
    // an eval job (of cell 1) that ran beside cell 2's training
    execf(db, "INSERT INTO eval_jobs (attempt_id, backend, job_id, state, start_time, end_time, nodes)"
              " VALUES (1, 'local', '7', 'completed', 180, 190, 'h1')");
    expect_warning(db, "scale", "beside an eval job", "1 of 4 measured attempts ran beside other local jobs on h1 "
                   "(longest: cell key2-wit, 4 GPUs, beside the eval job of cell key0-wit, for 10.0 s)");
    execf(db, "DELETE FROM eval_jobs");
    execf(db, "UPDATE attempts SET nodes = NULL, start_time = 0, end_time = 36");
    expect_warning(db, NULL, "restored", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_speedup_json),
        cmocka_unit_test(test_accuracy_formats),
        cmocka_unit_test(test_cells_and_cost),
        cmocka_unit_test(test_time_to_target),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_speedup_contention),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
