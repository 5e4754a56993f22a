// tests/orchestrator/test_db.c — opening the results DB: a new file gets the schema, a second
// open changes nothing (PRAGMA schema_version), an older version-1 file (no views, no targets
// table, no attempts.ingest_sig) is brought up to date without touching its rows, a stale view
// is replaced, read-only opens write nothing, newer schemas are refused, the path defaults.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "db/db.h"

static char path[256];

static int q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("prepare: %s: %s", sqlite3_errmsg(db), sql);
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", msg, sql);
}

static void cleanup(void)
{
    char p[300];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path); unlink(p);
    snprintf(p, sizeof p, "%s-shm", path); unlink(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/segx-test-db-%d.db", (int)getpid());
    cleanup();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cleanup();
    return 0;
}

static sqlite3 *open_rw(void)
{
    sqlite3 *db;
    char err[512];
    if (db_open(path, 0, &db, err, sizeof err) < 0) fail_msg("db_open: %s", err);
    return db;
}

static const char *const VIEWS[] = {"attempt_times", "cell_curve", "attempt_steady", "cell_throughput", "cell_metrics",
                                    "group_metrics", "scaling", "time_to_target", "group_time_to_target", NULL};

static void test_new_file_and_reopen(void **state)
{
    (void)state;
    sqlite3 *db = open_rw();
    assert_int_equal(q_int(db, "PRAGMA user_version"), SEGX_DB_VERSION);
    for (int i = 0; VIEWS[i]; i++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = '%s'", VIEWS[i]);
        if (q_int(db, sql) != 1) fail_msg("view %s missing", VIEWS[i]);
    }
    int version = q_int(db, "PRAGMA schema_version");
    db_close(db);
    db = open_rw();  // the compiled views match the stored ones: nothing is rewritten
    assert_int_equal(q_int(db, "PRAGMA schema_version"), version);
    assert_string_equal(sqlite3_db_filename(db, "main"), path);
    assert_int_equal(q_int(db, "PRAGMA journal_mode = WAL") >= 0, 1);
    db_close(db);
    cleanup();
}

static void test_old_v1_file_brought_up_to_date(void **state)
{
    (void)state;
    // Build the version-1 file of this morning: the tables without the additions, no views.
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    exec_ok(raw, "CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, spec_path TEXT,"
                 " spec_text TEXT NOT NULL, run_root TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);"
                 "CREATE TABLE cells (id INTEGER PRIMARY KEY, experiment_id INTEGER NOT NULL, key TEXT NOT NULL,"
                 " params TEXT NOT NULL, group_key TEXT NOT NULL, scaling_key TEXT NOT NULL, model TEXT, gpu_type TEXT,"
                 " gpus INTEGER NOT NULL DEFAULT 1, nodes INTEGER NOT NULL DEFAULT 1, batch_per_gpu INTEGER,"
                 " global_batch INTEGER, scaling TEXT NOT NULL DEFAULT 'weak', optimizer TEXT, lr REAL, seed INTEGER,"
                 " time_limit_s INTEGER, est_gpu_hours REAL, state TEXT NOT NULL DEFAULT 'planned', created_at REAL NOT NULL);"
                 "CREATE TABLE attempts (id INTEGER PRIMARY KEY, cell_id INTEGER NOT NULL, attempt INTEGER NOT NULL,"
                 " backend TEXT NOT NULL, job_id TEXT, state TEXT NOT NULL, reason TEXT, exit_code INTEGER,"
                 " submit_time REAL, start_time REAL, end_time REAL, nodes TEXT, run_dir TEXT NOT NULL, collected_at REAL,"
                 " UNIQUE (cell_id, attempt));"
                 "CREATE TABLE epochs (id INTEGER PRIMARY KEY, attempt_id INTEGER NOT NULL, line INTEGER NOT NULL,"
                 " epoch INTEGER, step INTEGER, wall_s REAL, train_loss REAL, val_loss REAL, miou REAL, pixel_acc REAL,"
                 " top1 REAL, lr REAL, images_per_s REAL, epoch_s REAL, data_s REAL, compute_s REAL, comm_s REAL,"
                 " extra TEXT, UNIQUE (attempt_id, line));"
                 "CREATE TABLE class_iou (epoch_id INTEGER NOT NULL, class INTEGER NOT NULL, iou REAL, PRIMARY KEY (epoch_id, class));"
                 "CREATE TABLE results (attempt_id INTEGER PRIMARY KEY, images_per_s REAL, wall_s REAL, miou REAL,"
                 " pixel_acc REAL, top1 REAL, val_loss REAL, json TEXT NOT NULL);"
                 "CREATE TABLE environments (attempt_id INTEGER PRIMARY KEY, host TEXT, gpu_model TEXT, driver TEXT,"
                 " cuda TEXT, cudnn TEXT, nccl TEXT, container_digest TEXT, git_commit TEXT, json TEXT NOT NULL);"
                 "INSERT INTO experiments VALUES (1, 'old', NULL, '{}', '/r', 0, 0);"
                 "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, gpus, created_at) VALUES (1, 1, 'k', '{}', 'g', 's', 1, 0);"
                 "INSERT INTO attempts (id, cell_id, attempt, backend, state, run_dir, start_time, end_time) VALUES (1, 1, 1, 'local', 'completed', '/r/k', 0, 7200);"
                 "INSERT INTO epochs (attempt_id, line, epoch, miou) VALUES (1, 1, 1, 0.25);"
                 "PRAGMA user_version = 1;");
    sqlite3_close(raw);
    sqlite3 *db = open_rw();
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('attempts') WHERE name = 'ingest_sig'"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM targets"), 0);
    // eval_jobs came with the eval jobs (spec eval.job): same columns as db/schema.sql's
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('eval_jobs')"), 19);
    exec_ok(db, "INSERT INTO eval_jobs (attempt_id, backend, job_id, state) VALUES (1, 'local', '9', 'submitted')");
    assert_int_equal(q_int(db, "SELECT count(*) FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id"), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"), 10);
    // traces and trace_ops came with segx collect's trace summary: same columns as db/schema.sql's
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('traces')"), 15);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('trace_ops')"), 5);
    exec_ok(db, "INSERT INTO traces (attempt_id, rank, path, steps, comm_s) VALUES (1, 0, '/r/k/trace.json', 4, 0.5)");
    exec_ok(db, "INSERT INTO trace_ops (attempt_id, rank, op, calls, total_s) VALUES (1, 0, 'conv2d_forward', 8, 0.25)");
    assert_int_equal(q_int(db, "SELECT ranks * 100 + steps FROM attempt_phases WHERE attempt_id = 1"), 104);
    // The rows are intact and the views work on them.
    assert_int_equal(q_int(db, "SELECT round(miou * 100) FROM cell_metrics WHERE key = 'k'"), 25);
    assert_int_equal(q_int(db, "SELECT round(gpu_hours) FROM cell_metrics WHERE key = 'k'"), 2);
    db_close(db);
    cleanup();
}

static void test_stale_view_replaced(void **state)
{
    (void)state;
    sqlite3 *db = open_rw();
    exec_ok(db, "DROP VIEW scaling; CREATE VIEW scaling AS SELECT 1 AS old_definition");
    db_close(db);
    db = open_rw();
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('scaling') WHERE name = 'speedup_throughput'"), 1);
    db_close(db);
    // A read-only open never rewrites: make it stale again and look.
    db = open_rw();
    exec_ok(db, "DROP VIEW scaling; CREATE VIEW scaling AS SELECT 1 AS old_definition");
    db_close(db);
    char err[512];
    assert_int_equal(db_open(path, 1, &db, err, sizeof err), 0);
    assert_int_equal(q_int(db, "SELECT count(*) FROM pragma_table_info('scaling') WHERE name = 'old_definition'"), 1);
    db_close(db);
    cleanup();
}

static void test_refusals_and_paths(void **state)
{
    (void)state;
    sqlite3 *db;
    char err[512];
    // Read-only on a missing file fails and names it.
    assert_int_equal(db_open(path, 1, &db, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    // DB_EXISTING (submit, status, collect, ...) on a missing file fails, names it and creates nothing:
    // a mistyped --db must not leave an empty database behind.
    assert_int_equal(db_open(path, DB_EXISTING, &db, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "segx plan"));
    assert_int_equal(access(path, F_OK), -1);
    // ... and on an existing empty file it refuses without writing the schema into it.
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(db_open(path, DB_EXISTING, &db, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a segx database"));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    cleanup();
    // A planned database opens read-write with DB_EXISTING.
    db = open_rw();
    db_close(db);
    assert_int_equal(db_open(path, DB_EXISTING, &db, err, sizeof err), 0);
    db_close(db);
    // A newer schema is refused.
    db = open_rw();
    exec_ok(db, "PRAGMA user_version = 99");
    db_close(db);
    assert_int_equal(db_open(path, 0, &db, err, sizeof err), -1);
    assert_non_null(strstr(err, "newer"));
    cleanup();
    // A file with unrelated tables is not taken over.
    sqlite3 *raw;
    sqlite3_open(path, &raw);
    exec_ok(raw, "CREATE TABLE mine (x)");
    sqlite3_close(raw);
    assert_int_equal(db_open(path, 0, &db, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a segx database"));
    cleanup();
    // --db, then $SEGX_DB, then ./segx.db.
    setenv("SEGX_DB", "/tmp/env.db", 1);
    assert_string_equal(db_path_default("/tmp/flag.db"), "/tmp/flag.db");
    assert_string_equal(db_path_default(NULL), "/tmp/env.db");
    unsetenv("SEGX_DB");
    assert_string_equal(db_path_default(NULL), "segx.db");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_file_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_v1_file_brought_up_to_date, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_view_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_and_paths, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
