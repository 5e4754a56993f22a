// tests/orchestrator/test_views.c — the DB views on known data: rows inserted by hand, every
// expected number computed here independently (plain loops, two-pass std) and compared.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "db/db.h"
#include "tests/orchestrator/sql_helpers.h"

static char dbpath[256];

#define assert_close(a, b) do { double _a = (a), _b = (b); \
    if (!(fabs(_a - _b) <= 1e-9 + 1e-9 * fabs(_b))) fail_msg("%s = %.17g, expected %.17g", #a, _a, _b); } while (0)

static double mean_of(const double *x, int n) { double s = 0; for (int i = 0; i < n; i++) s += x[i]; return s / n; }
static double std_of(const double *x, int n)
{
    double m = mean_of(x, n), s = 0;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (n - 1));
}

// ---- the known data ---------------------------------------------------------------------------
// Weak scaling group "W" (unet, a100, batch_per_gpu 32): gpus 1 (seeds 1,2,3), 2 (seeds 1,2),
// 4 (seeds 1,2). Each cell: one attempt, 4 metrics lines. images_per_s of line i:
// ips(g, s, i) = 100*g*eff(g) + 3*s + i, and line 1 is a slow warm-up (minus 40).
// epoch_s(g, s, i) = 60 / (g*eff(g)) + 0.1*s (+5 on line 1). miou on line i = 0.1*i + 0.01*s*g.
// Strong group "S" (resnet, v100, global_batch 256): gpus 1 and 8, one seed each, epoch_s only.
// Group "N" (cnn, cpu, gpus 2 and 4): no 1-GPU cell.
static const int W_GPUS[] = {1, 1, 1, 2, 2, 4, 4};
static const int W_SEED[] = {1, 2, 3, 1, 2, 1, 2};
#define W_N 7
static double eff(int g) { return g == 1 ? 1.0 : g == 2 ? 0.9 : 0.8; }
static double ips(int g, int s, int i) { return 100.0 * g * eff(g) + 3 * s + i - (i == 1 ? 40 : 0); }
static double eps(int g, int s, int i) { return 60.0 / (g * eff(g)) + 0.1 * s + (i == 1 ? 5 : 0); }
static double miou(int g, int s, int i) { return 0.1 * i + 0.01 * s * g; }

static long add_cell(sqlite3 *db, const char *key, const char *group, const char *skey, const char *model,
                     const char *gpu, int gpus, int bpg, int gb, const char *scaling, int seed)
{
    execf(db, "INSERT INTO cells (experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus,"
              " batch_per_gpu, global_batch, scaling, seed, est_gpu_hours, created_at)"
              " VALUES (1, %Q, '{}', %Q, %Q, %Q, %Q, %d, %d, %d, %Q, %d, %d, 0)",
          key, group, skey, model, gpu, gpus, bpg, gb, scaling, seed, gpus * 2);
    return (long)sqlite3_last_insert_rowid(db);
}

static long add_attempt(sqlite3 *db, long cell, int n, const char *state, double start, double end)
{
    if (end > 0)
        execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, start_time, end_time, run_dir)"
                  " VALUES (%ld, %d, 'local', %Q, %.17g, %.17g, '/nonexistent')", cell, n, state, start, end);
    else
        execf(db, "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir)"
                  " VALUES (%ld, %d, 'local', %Q, '/nonexistent')", cell, n, state);
    return (long)sqlite3_last_insert_rowid(db);
}

static int setup(void **state)
{
    snprintf(dbpath, sizeof dbpath, "/tmp/segx-test-views-%d.db", (int)getpid());
    unlink(dbpath);
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, 0, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "BEGIN; INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at)"
              " VALUES (1, 'e1', '{}', '/nonexistent', 0, 0)");
    for (int c = 0; c < W_N; c++) {
        char key[32], group[32];
        int g = W_GPUS[c], s = W_SEED[c];
        snprintf(key, sizeof key, "w%d-s%d", g, s);
        snprintf(group, sizeof group, "W%d", g);
        long cell = add_cell(db, key, group, "W", "unet", "a100", g, 32, 32 * g, "weak", s);
        long a = add_attempt(db, cell, 1, "completed", 1000, 1000 + 300 + 10 * c);
        for (int i = 1; i <= 4; i++)
            execf(db, "INSERT INTO epochs (attempt_id, line, epoch, wall_s, images_per_s, epoch_s, miou, val_loss)"
                      " VALUES (%ld, %d, %d, %d, %.17g, %.17g, %.17g, %.17g)",
                  a, i, i, 70 * i + c, ips(g, s, i), eps(g, s, i), miou(g, s, i), 1.0 / i);
    }
    // Strong scaling: epoch_s 100 on 1 GPU, 20 on 8 GPUs (a warm-up line first in each).
    long s1 = add_cell(db, "s1", "S1", "S", "resnet", "v100", 1, 256, 256, "strong", 1);
    long s8 = add_cell(db, "s8", "S8", "S", "resnet", "v100", 8, 32, 256, "strong", 1);
    long a1 = add_attempt(db, s1, 1, "completed", 0, 500), a8 = add_attempt(db, s8, 1, "completed", 0, 100);
    execf(db, "INSERT INTO epochs (attempt_id, line, epoch, epoch_s) VALUES (%ld,1,1,150),(%ld,2,2,100),(%ld,3,3,100),"
              "(%ld,1,1,90),(%ld,2,2,19),(%ld,3,3,21)", a1, a1, a1, a8, a8, a8);
    // No baseline.
    long n2 = add_cell(db, "n2", "N2", "N", "cnn", "cpu", 2, 8, 16, "weak", 1);
    long an = add_attempt(db, n2, 1, "completed", 0, 10);
    execf(db, "INSERT INTO epochs (attempt_id, line, epoch, images_per_s) VALUES (%ld,1,1,50),(%ld,2,2,60)", an, an);
    // A resumed cell: attempt 1 ran 100 s (start/end known), attempt 2 has no times but a
    // result.json wall_s of 65. miou 0.2 0.4 | 0.55 0.6 at wall_s 40 80 | 30 60.
    long r = add_cell(db, "r", "R", "RS", "unet", "h100", 2, 16, 32, "weak", 7);
    long r1 = add_attempt(db, r, 1, "preempted", 1000, 1100), r2 = add_attempt(db, r, 2, "completed", 0, 0);
    execf(db, "INSERT INTO epochs (attempt_id, line, epoch, wall_s, miou, top1) VALUES"
              " (%ld,1,1,40,0.2,0.5),(%ld,2,2,80,0.4,NULL),(%ld,1,3,30,0.55,0.7),(%ld,2,4,60,0.6,NULL)", r1, r1, r2, r2);
    execf(db, "INSERT INTO results (attempt_id, wall_s, json) VALUES (%ld, 65, '{}')", r2);
    execf(db, "COMMIT");
    *state = db;
    return 0;
}

static int teardown(void **state)
{
    db_close(*state);
    unlink(dbpath);
    char p[300];
    snprintf(p, sizeof p, "%s-wal", dbpath); unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath); unlink(p);
    return 0;
}

// Steady-state throughput of a weak cell: lines 2..4 (line 1 is warm-up).
static double cell_ips(int g, int s) { double x = 0; for (int i = 2; i <= 4; i++) x += ips(g, s, i); return x / 3; }
static double cell_eps(int g, int s) { double x = 0; for (int i = 2; i <= 4; i++) x += eps(g, s, i); return x / 3; }
static double group_ips(int g)
{
    double v[W_N]; int n = 0;
    for (int c = 0; c < W_N; c++) if (W_GPUS[c] == g) v[n++] = cell_ips(g, W_SEED[c]);
    return mean_of(v, n);
}
static double group_eps(int g)
{
    double v[W_N]; int n = 0;
    for (int c = 0; c < W_N; c++) if (W_GPUS[c] == g) v[n++] = cell_eps(g, W_SEED[c]);
    return mean_of(v, n);
}

static void test_cell_steady_throughput(void **state)
{
    sqlite3 *db = *state;
    for (int c = 0; c < W_N; c++) {
        int g = W_GPUS[c], s = W_SEED[c];
        assert_close(qd(db, "SELECT images_per_s FROM cell_metrics WHERE key = 'w%d-s%d'", g, s), cell_ips(g, s));
        assert_close(qd(db, "SELECT epoch_s FROM cell_metrics WHERE key = 'w%d-s%d'", g, s), cell_eps(g, s));
    }
}

static void test_weak_speedup_efficiency(void **state)
{
    sqlite3 *db = *state;
    for (int g = 1; g <= 4; g *= 2) {
        double sp = group_ips(g) / group_ips(1), st = group_eps(1) / group_eps(g);
        assert_close(qd(db, "SELECT images_per_s FROM scaling WHERE group_key = 'W%d'", g), group_ips(g));
        assert_close(qd(db, "SELECT speedup_throughput FROM scaling WHERE group_key = 'W%d'", g), sp);
        assert_close(qd(db, "SELECT efficiency_throughput FROM scaling WHERE group_key = 'W%d'", g), sp / g);
        assert_close(qd(db, "SELECT speedup_time FROM scaling WHERE group_key = 'W%d'", g), st);
        assert_close(qd(db, "SELECT efficiency_time FROM scaling WHERE group_key = 'W%d'", g), st / g);
        assert_close(qd(db, "SELECT n FROM scaling WHERE group_key = 'W%d'", g), g == 1 ? 3 : 2);
    }
    // Scale check by hand: (320 + 4.5 + 3) / (100 + 6 + 3) / 4 = 0.7511...
    assert_close(qd(db, "SELECT efficiency_throughput FROM scaling WHERE group_key = 'W4'"), 327.5 / 109.0 / 4);
}

static void test_strong_speedup_from_time(void **state)
{
    sqlite3 *db = *state;
    // Warm-up lines (150 and 90) left out: 100 / 20 = 5x on 8 GPUs, efficiency 0.625.
    assert_close(qd(db, "SELECT speedup_time FROM scaling WHERE group_key = 'S8'"), 5.0);
    assert_close(qd(db, "SELECT efficiency_time FROM scaling WHERE group_key = 'S8'"), 0.625);
    assert_close(qd(db, "SELECT speedup_time FROM scaling WHERE group_key = 'S1'"), 1.0);
    assert_true(isnan(qd(db, "SELECT speedup_throughput FROM scaling WHERE group_key = 'S8'")));
    assert_close(qd(db, "SELECT count(*) FROM scaling WHERE scaling = 'strong'"), 2);
}

static void test_no_baseline_gives_null(void **state)
{
    sqlite3 *db = *state;
    assert_true(isnan(qd(db, "SELECT speedup_throughput FROM scaling WHERE group_key = 'N2'")));
    assert_true(isnan(qd(db, "SELECT efficiency_time FROM scaling WHERE group_key = 'N2'")));
    assert_close(qd(db, "SELECT images_per_s FROM scaling WHERE group_key = 'N2'"), 60.0);  // one line: no warm-up cut
}

static void test_seed_mean_std(void **state)
{
    sqlite3 *db = *state;
    for (int g = 1; g <= 4; g *= 2) {
        double v[W_N]; int n = 0;
        for (int c = 0; c < W_N; c++) if (W_GPUS[c] == g) v[n++] = miou(g, W_SEED[c], 4);  // final = line 4
        assert_close(qd(db, "SELECT miou_mean FROM group_metrics WHERE group_key = 'W%d'", g), mean_of(v, n));
        assert_close(qd(db, "SELECT miou_std FROM group_metrics WHERE group_key = 'W%d'", g), std_of(v, n));
        assert_close(qd(db, "SELECT miou_n FROM group_metrics WHERE group_key = 'W%d'", g), n);
        assert_close(qd(db, "SELECT val_loss_mean FROM group_metrics WHERE group_key = 'W%d'", g), 0.25);
        assert_close(qd(db, "SELECT val_loss_std FROM group_metrics WHERE group_key = 'W%d'", g), 0.0);
    }
    // The 1-GPU seeds 1,2,3 give final miou 0.41 0.42 0.43: mean 0.42, sample std 0.01.
    assert_close(qd(db, "SELECT miou_mean FROM group_metrics WHERE group_key = 'W1'"), 0.42);
    assert_close(qd(db, "SELECT miou_std FROM group_metrics WHERE group_key = 'W1'"), 0.01);
    // A single seed has no std.
    assert_true(isnan(qd(db, "SELECT miou_std FROM group_metrics WHERE group_key = 'R'")));
}

static void test_stitched_curve_and_final(void **state)
{
    sqlite3 *db = *state;
    // attempt 2 starts after attempt 1's 100 s (end - start), not after its last line (80 s).
    const double want[] = {40, 80, 130, 160};
    for (int i = 0; i < 4; i++)
        assert_close(qd(db, "SELECT cell_wall_s FROM cell_curve cc JOIN cells c ON c.id = cc.cell_id WHERE c.key = 'r'"
                            " ORDER BY cc.attempt, cc.line LIMIT 1 OFFSET %d", i), want[i]);
    assert_close(qd(db, "SELECT wall_s FROM cell_metrics WHERE key = 'r'"), 160);
    assert_close(qd(db, "SELECT epoch FROM cell_metrics WHERE key = 'r'"), 4);
    assert_close(qd(db, "SELECT miou FROM cell_metrics WHERE key = 'r'"), 0.6);
    // top1 is NULL on the last line: the final top1 is the last reported one (0.7, attempt 2 line 1).
    assert_close(qd(db, "SELECT top1 FROM cell_metrics WHERE key = 'r'"), 0.7);
    assert_close(qd(db, "SELECT attempts FROM cell_metrics WHERE key = 'r'"), 2);
}

static void test_gpu_hours(void **state)
{
    sqlite3 *db = *state;
    // Resumed cell: (100 s + 65 s from result.json) * 2 GPUs.
    assert_close(qd(db, "SELECT gpu_hours FROM cell_metrics WHERE key = 'r'"), 165.0 * 2 / 3600);
    double want = 0;
    for (int c = 0; c < W_N; c++) if (W_GPUS[c] == 4) want += (300 + 10 * c) * 4 / 3600.0;
    assert_close(qd(db, "SELECT gpu_hours FROM group_metrics WHERE group_key = 'W4'"), want);
    assert_close(qd(db, "SELECT est_gpu_hours FROM group_metrics WHERE group_key = 'W4'"), 16);
}

static void test_time_to_target(void **state)
{
    sqlite3 *db = *state;
    execf(db, "INSERT INTO targets (experiment_id, metric, value) VALUES (1, 'miou', 0.425), (1, 'val_loss', 0.3)");
    // Resumed cell reaches miou 0.425 on attempt 2's first line (0.55): 100 + 30 s.
    assert_close(qd(db, "SELECT wall_s FROM time_to_target t JOIN cells c ON c.id = t.cell_id"
                        " WHERE c.key = 'r' AND t.metric = 'miou'"), 130);
    // Weak cells (line i at wall_s 70 i + c): miou(g,s,i) = 0.1 i + 0.01 s g >= 0.425 first at
    // some line or never; val_loss = 1/i <= 0.3 first at i = 4.
    for (int g = 1; g <= 4; g *= 2) {
        double v[W_N], w[W_N]; int n = 0, nw = 0, cells = 0;
        for (int c = 0; c < W_N; c++) {
            if (W_GPUS[c] != g) continue;
            cells++;
            for (int i = 1; i <= 4; i++)
                if (miou(g, W_SEED[c], i) >= 0.425) { v[n++] = 70.0 * i + c; break; }
            w[nw++] = 70.0 * 4 + c;
        }
        assert_close(qd(db, "SELECT cells FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'miou'", g), cells);
        assert_close(qd(db, "SELECT reached FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'miou'", g), n);
        double m = qd(db, "SELECT wall_s_mean FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'miou'", g);
        if (n > 0) assert_close(m, mean_of(v, n)); else assert_true(isnan(m));
        double sd = qd(db, "SELECT wall_s_std FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'miou'", g);
        if (n > 1) assert_close(sd, std_of(v, n)); else assert_true(isnan(sd));
        assert_close(qd(db, "SELECT wall_s_mean FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'val_loss'", g), mean_of(w, nw));
        assert_close(qd(db, "SELECT wall_s_std FROM group_time_to_target WHERE group_key = 'W%d' AND metric = 'val_loss'", g), std_of(w, nw));
    }
    // Reached by some seeds only: 1-GPU seed 3 (0.43), 2-GPU seed 2 (0.44), both 4-GPU seeds.
    assert_close(qd(db, "SELECT sum(reached) FROM group_time_to_target WHERE group_key LIKE 'W%%' AND metric = 'miou'"), 4);
    // Never reached: NULL time, counted as not reached.
    assert_true(isnan(qd(db, "SELECT wall_s FROM time_to_target t JOIN cells c ON c.id = t.cell_id"
                             " WHERE c.key = 's1' AND t.metric = 'miou'")));
    assert_close(qd(db, "SELECT reached FROM group_time_to_target WHERE group_key = 'S1' AND metric = 'miou'"), 0);
    execf(db, "DELETE FROM targets");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cell_steady_throughput),
        cmocka_unit_test(test_weak_speedup_efficiency),
        cmocka_unit_test(test_strong_speedup_from_time),
        cmocka_unit_test(test_no_baseline_gives_null),
        cmocka_unit_test(test_seed_mean_std),
        cmocka_unit_test(test_stitched_curve_and_final),
        cmocka_unit_test(test_gpu_hours),
        cmocka_unit_test(test_time_to_target),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
