// tests/orchestrator/test_plan.c — matrix expansion counts (exclude/include), scaling rules,
// cell keys (SHA-256 of canonical params, stable across re-plans), and job scripts that are
// executed with a fake segx-train to check the flags it receives.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "db/db.h"
#include "orchestrator/plan.h"
#include "orchestrator/plan_spec.h"
#include "orchestrator/util/fileio.h"
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/segx-test-plan-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    const char *root = getenv("SEGX_ROOT");
    char t[1024];
    snprintf(t, sizeof t, "%s/templates", root && *root ? root : ".");
    setenv("SEGX_TEMPLATES", t, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static Spec *spec_ok(const char *text)
{
    Spec *s;
    char err[1024];
    if (spec_parse(text, "t.json", &s, err, sizeof err) < 0) fail_msg("spec: %s", err);
    return s;
}

static const char *BASE =
    "{\"name\": \"q\", \"trainer\": {\"dataset\": \"fashion-mnist-seg\", \"epochs\": 2, \"optimizer\": \"adam\", \"lr\": 0.001,"
    " \"args\": {\"train-limit\": 2000}},"
    " \"matrix\": {\"model\": [\"unet\", \"cnn\"], \"gpu_type\": [\"cpu\"], \"gpus\": [1, 2], \"batch_per_gpu\": [16, 32],"
    " \"seed\": [%s]%s},"
    " \"exclude\": [{\"model\": \"cnn\", \"batch_per_gpu\": 32}]%s}";

static Spec *base_spec3(const char *seeds, const char *extra_axes, const char *extra_top)
{
    char text[4096];
    snprintf(text, sizeof text, BASE, seeds, extra_axes, extra_top);
    return spec_ok(text);
}

static Spec *base_spec(const char *extra_axes, const char *extra_top)
{
    char text[4096];
    snprintf(text, sizeof text, BASE, "1, 2", extra_axes, extra_top);
    return spec_ok(text);
}

static void test_expansion_counts(void **state)
{
    (void)state;
    // reference: count the cartesian product by hand
    const char *models[] = {"unet", "cnn"};
    int gpus[] = {1, 2}, bpg[] = {16, 32}, seeds[] = {1, 2}, want = 0;
    for (int m = 0; m < 2; m++) for (int g = 0; g < 2; g++) for (int b = 0; b < 2; b++) for (int s = 0; s < 2; s++)
        if (!(strcmp(models[m], "cnn") == 0 && bpg[b] == 32)) want++;
    (void)gpus; (void)seeds;
    Spec *s = base_spec("", "");
    PlanCell *c;
    size_t n;
    char err[1024];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, (size_t)want);   // 12
    for (size_t i = 0; i < n; i++) {
        assert_false(strcmp(c[i].model, "cnn") == 0 && c[i].batch_per_gpu == 32);
        assert_int_equal(c[i].global_batch, c[i].batch_per_gpu * c[i].gpus);
    }
    plan_cells_free(c, n);
    spec_free(s);

    // include: a new model at 4 GPUs for every other axis value (2 batches x 2 seeds), plus an
    // entry that names an existing cell (deduplicated)
    s = base_spec("", ", \"include\": [{\"model\": \"deeplab\", \"gpus\": 4}, {\"model\": \"unet\", \"gpus\": 1, "
                      "\"batch_per_gpu\": 16, \"seed\": 1}, {\"model\": \"cnn\", \"batch_per_gpu\": 32, \"gpus\": 1, \"seed\": 1}]");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, (size_t)want + 4 + 1);   // include re-adds one excluded cnn/32 cell
    size_t deeplab = 0;
    for (size_t i = 0; i < n; i++) if (strcmp(c[i].model, "deeplab") == 0) { deeplab++; assert_int_equal(c[i].gpus, 4); }
    assert_int_equal(deeplab, 4);
    plan_cells_free(c, n);
    spec_free(s);

    // exclude with a list value (any of) and on a derived key
    s = base_spec("", ", \"include\": []");
    spec_free(s);
    s = spec_ok("{\"name\": \"e\", \"trainer\": {}, \"matrix\": {\"gpus\": [1, 2, 4], \"batch_per_gpu\": [8, 16]},"
                " \"exclude\": [{\"gpus\": [2, 4], \"batch_per_gpu\": 16}, {\"global_batch\": 32}]}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    // (1,8) (1,16) (2,8) (4,8)=gb32 excluded -> 3
    assert_int_equal(n, 3);
    plan_cells_free(c, n);
    spec_free(s);
}

// Issue 17: a global batch beyond int (batch_per_gpu x gpus, each in range) is an error naming
// the cell, not a wrapped-around int; gpus 2^32+1 never reaches plan (spec.c rejects it).
static void test_global_batch_overflow(void **state)
{
    (void)state;
    Spec *s = spec_ok("{\"name\": \"o\", \"trainer\": {}, \"matrix\": {\"model\": [\"unet\"], \"gpus\": [1, 4],"
                      " \"batch_per_gpu\": [1073741824]}}");
    PlanCell *c;
    size_t n;
    char err[1024];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), -1);
    if (!strstr(err, "gpus=4 batch_per_gpu=1073741824}: global batch 1073741824 x 4 = 4294967296 is more than 1073741824"))
        fail_msg("%s", err);
    spec_free(s);
    s = spec_ok("{\"name\": \"o\", \"trainer\": {}, \"matrix\": {\"model\": [\"unet\"], \"gpus\": [1, 4],"
                " \"batch_per_gpu\": [1073741824]}, \"exclude\": [{\"gpus\": 4}]}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].global_batch, 1073741824);
    plan_cells_free(c, n);
    spec_free(s);
    char e2[1024];
    Spec *bad;
    assert_int_equal(spec_parse("{\"name\": \"o\", \"trainer\": {}, \"matrix\": {\"gpus\": [4294967297], \"batch_per_gpu\": [8]}}",
                                "t.json", &bad, e2, sizeof e2), -1);
    assert_non_null(strstr(e2, "matrix.gpus[0]: expected an integer from 1 to 1048576, got 4294967297"));
}

static void test_strong_scaling(void **state)
{
    (void)state;
    Spec *s = spec_ok("{\"name\": \"s\", \"trainer\": {}, \"scaling\": \"strong\", "
                      "\"matrix\": {\"model\": [\"unet\"], \"gpus\": [1, 2, 3], \"global_batch\": [64]}}");
    PlanCell *c;
    size_t n;
    char err[1024];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), -1);
    if (!strstr(err, "gpus=3 global_batch=64}: global_batch 64 is not divisible by gpus 3")) fail_msg("%s", err);
    assert_non_null(strstr(err, "model=unet"));
    spec_free(s);
    s = spec_ok("{\"name\": \"s\", \"trainer\": {}, \"scaling\": \"strong\", \"exclude\": [{\"gpus\": 3}],"
                "\"matrix\": {\"model\": [\"unet\"], \"gpus\": [1, 2, 3, 4], \"global_batch\": [64]}}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(c[i].batch_per_gpu * c[i].gpus, 64);
        assert_string_equal(c[i].scaling_key, c[0].scaling_key);   // one scaling group: baseline shared
    }
    assert_string_not_equal(c[0].key, c[1].key);
    plan_cells_free(c, n);
    spec_free(s);
}

// weak-data: batch per GPU kept, training set = train-limit x gpus; the 1-GPU cell is the baseline
static void test_weak_data_scaling(void **state)
{
    (void)state;
    Spec *s = spec_ok("{\"name\": \"wd\", \"trainer\": {\"args\": {\"train-limit\": 500}}, \"scaling\": \"weak-data\", "
                      "\"matrix\": {\"model\": [\"cnn\"], \"gpus\": [1, 2, 4], \"batch_per_gpu\": [32]}}");
    PlanCell *c;
    size_t n;
    char err[1024];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(json_integer_value(json_object_get(c[i].params, "train-limit")), 500 * c[i].gpus);
        assert_int_equal(json_integer_value(json_object_get(c[i].params, "train_limit_per_gpu")), 500);
        assert_int_equal(c[i].batch_per_gpu, 32);
        assert_string_equal(json_string_value(json_object_get(c[i].params, "scaling")), "weak-data");
        assert_string_equal(c[i].scaling_key, c[0].scaling_key);
    }
    plan_cells_free(c, n);
    spec_free(s);
    // without a train limit there is nothing to grow
    s = spec_ok("{\"name\": \"wd\", \"trainer\": {}, \"scaling\": \"weak-data\", "
                "\"matrix\": {\"model\": [\"cnn\"], \"gpus\": [1, 2], \"batch_per_gpu\": [32]}}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), -1);
    if (!strstr(err, "weak-data") || !strstr(err, "train-limit")) fail_msg("%s", err);
    spec_free(s);
}

static void test_lr_scaling(void **state)
{
    (void)state;
    const char *rules[] = {"linear", "sqrt"};
    for (int r = 0; r < 2; r++) {
        char text[512];
        snprintf(text, sizeof text, "{\"name\": \"l\", \"trainer\": {\"lr\": 0.1}, \"lr_scaling\": \"%s\", "
                 "\"matrix\": {\"gpus\": [1, 2, 4], \"batch_per_gpu\": [32]}}", rules[r]);
        Spec *s = spec_ok(text);
        PlanCell *c;
        size_t n;
        char err[1024];
        assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
            double k = c[i].global_batch / 32.0;
            double want = r == 0 ? 0.1 * k : 0.1 * sqrt(k);
            assert_true(fabs(c[i].lr - want) < 1e-12);
            assert_int_equal(json_integer_value(json_object_get(c[i].params, "lr_ref_batch")), 32);
            assert_true(json_real_value(json_object_get(c[i].params, "lr")) == 0.1);   // base lr kept in params
            // submit rebuilds a cell from its stored params: same key, same effective lr, even
            // under a spec whose lr rule has since changed
            char *stored = json_dumps(c[i].params, JSON_SORT_KEYS | JSON_COMPACT);
            Spec *other = spec_ok("{\"name\": \"l\", \"trainer\": {\"lr\": 0.5}, \"matrix\": {\"batch_per_gpu\": [32]}}");
            PlanCell back;
            assert_int_equal(plan_cell_from_params(other, stored, &back, err, sizeof err), 0);
            assert_string_equal(back.key, c[i].key);
            assert_string_equal(back.scaling_key, c[i].scaling_key);
            assert_true(fabs(back.lr - c[i].lr) < 1e-15);
            assert_int_equal(back.gpus, c[i].gpus);
            plan_cell_clear(&back);
            spec_free(other);
            free(stored);
        }
        plan_cells_free(c, n);
        spec_free(s);
    }
}

static void sha_prefix(const char *text, char *out)
{
    unsigned char md[64];
    unsigned int len;
    EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 6; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

static size_t count_cells(sqlite3 *db)
{
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM cells", -1, &st, NULL);
    sqlite3_step(st);
    size_t n = (size_t)sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

// group_key and scaling_key are cut from the canonical text (plan.c hash_without); they must be
// SHA-256 of what jansson writes for the params without the dropped keys, whatever the values
// hold (quotes, backslashes, UTF-8, nested objects, keys that sort next to the dropped ones).
static void key_without(json_t *params, const char *const *drop, char *out)
{
    json_t *c = json_deep_copy(params);
    for (const char *const *d = drop; *d; d++) json_object_del(c, *d);
    char *text = json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT);
    sha_prefix(text, out);
    free(text);
    json_decref(c);
}

static void test_group_keys_match_jansson(void **state)
{
    (void)state;
    static const char *const specs[] = {
        "{\"name\": \"k\", \"trainer\": {\"note\": \"a \\\"q\\\" \\\\ b, c:d}\", \"seeds\": 3, \"seed_x\": \"\u00e9\u4e2d\","
        " \"args\": {\"gpus_note\": \"{[,]}\"}}, \"eval\": {\"every\": 1, \"limit\": 20},"
        " \"matrix\": {\"model\": [\"u,n\\\"et\", \"cnn\"], \"gpus\": [1, 2], \"batch_per_gpu\": [8], \"seed\": [1, 2],"
        " \"lr\": [0.1, 1e-05], \"flag\": [true, false]}}",
        "{\"name\": \"k\", \"trainer\": {\"aaa\": false}, \"scaling\": \"strong\", \"lr_scaling\": \"sqrt\","
        " \"matrix\": {\"gpus\": [1, 2, 4], \"nodes\": [1], \"global_batch\": [64], \"lr\": [0.5], \"zzz\": [\"}\"]}}"};
    static const char *const no_seed[] = {"seed", NULL};
    static const char *const weak_drop[] = {"seed", "gpus", "nodes", "global_batch", NULL};
    static const char *const strong_drop[] = {"seed", "gpus", "nodes", "batch_per_gpu", NULL};
    for (size_t k = 0; k < 2; k++) {
        Spec *s = spec_ok(specs[k]);
        PlanCell *c;
        size_t n;
        char err[1024], want[16];
        if (plan_expand(s, &c, &n, err, sizeof err) < 0) fail_msg("%s", err);
        assert_true(n >= 3);
        for (size_t i = 0; i < n; i++) {
            key_without(c[i].params, no_seed, want);
            assert_string_equal(c[i].group_key, want);
            key_without(c[i].params, k ? strong_drop : weak_drop, want);
            assert_string_equal(c[i].scaling_key, want);
            sha_prefix(c[i].canon, want);
            assert_string_equal(c[i].key, want);
            PlanCell again;   // rebuilt from the stored params (submit does this): the same keys
            if (plan_cell_from_params(s, c[i].canon, &again, err, sizeof err) < 0) fail_msg("%s", err);
            assert_string_equal(again.group_key, c[i].group_key);
            assert_string_equal(again.scaling_key, c[i].scaling_key);
            plan_cell_clear(&again);
        }
        plan_cells_free(c, n);
        spec_free(s);
    }
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *t = calloc(1, 1 << 16);
    size_t n = fread(t, 1, (1 << 16) - 1, f);
    t[n] = 0;
    fclose(f);
    return t;
}

// The spec of 300 cells (2 GPU counts x 3 batches x 50 seeds) with an eval job, written to tmpdir/NAME.
static void write_budget_spec(const char *spec)
{
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fputs("{\"name\": \"b\", \"trainer\": {\"dataset\": \"synthetic\", \"epochs\": 1}, \"matrix\": {\"model\": [\"cnn\"],"
          " \"gpu_type\": [\"cpu\"], \"gpus\": [1, 2], \"batch_per_gpu\": [4, 8, 16], \"seed\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
          " 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,"
          " 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]},"
          " \"eval\": {\"job\": {\"time\": \"00:05:00\"}}}", f);
    fclose(f);
}

// Every *.sh under a/b/ equals the same file under b/b/ (with b's dir written as a's: the scripts
// name their own run dir); the number of files compared.
static int same_scripts(const char *a_dir, const char *b_dir)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cd '%s/b' && find . -name '*.sh' | sort", a_dir);
    FILE *l = popen(cmd, "r");
    char rel[512];
    int files = 0;
    while (fgets(rel, sizeof rel, l)) {
        rel[strcspn(rel, "\n")] = 0;
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/b/%s", a_dir, rel + 2);
        snprintf(b, sizeof b, "%s/b/%s", b_dir, rel + 2);
        char *ta = read_all(a), *tb = read_all(b);
        assert_non_null(ta);
        if (!tb) fail_msg("%s missing", b);
        assert_non_null(strstr(tb, b_dir));
        static char fixed[1 << 16];
        size_t out = 0;
        for (const char *p = tb; *p;) {
            if (strncmp(p, b_dir, strlen(b_dir)) == 0) { out += (size_t)snprintf(fixed + out, sizeof fixed - out, "%s", a_dir); p += strlen(b_dir); }
            else fixed[out++] = *p++;
        }
        fixed[out] = 0;
        assert_string_equal(ta, fixed);
        free(ta);
        free(tb);
        files++;
    }
    pclose(l);
    return files;
}

// segx plan keeps at most SEGX_PLAN_SCRIPT_BUDGET bytes of rendered scripts between checking and
// writing (a 100,000-cell plan held ~700 MB); the ones it dropped are rendered again: every job.sh
// and eval.sh must be the same as with all of them kept.
static void test_plan_script_budget(void **state)
{
    (void)state;
    char spec[512], dir[2][512];
    snprintf(spec, sizeof spec, "%s/budget.json", tmpdir);
    write_budget_spec(spec);
    for (int k = 0; k < 2; k++) {
        char db[1100];
        snprintf(dir[k], sizeof dir[k], "%s/budget%d", tmpdir, k);
        snprintf(db, sizeof db, "%s.db", dir[k]);
        if (k) setenv("SEGX_PLAN_SCRIPT_BUDGET", "1", 1);   // keeps none: every script rendered again
        PlanOptions o = {.db_path = db, .runs_dir = dir[k], .quiet = 1};
        PlanOutcome out;
        char err[1024];
        assert_int_equal(plan_spec_run(spec, &o, &out, err, sizeof err), 0);
        assert_int_equal(out.scripts, 1);   // 300 cells: auto writes them
        plan_outcome_free(&out);
        unsetenv("SEGX_PLAN_SCRIPT_BUDGET");
    }
    assert_int_equal(same_scripts(dir[0], dir[1]), 600);   // 300 cells (two render/write threads) x (job.sh + eval.sh)
}

// The rows of a DB's cells as one text (all but created_at), for comparing two plans.
static char *cells_text(const char *dbp)
{
    sqlite3 *db;
    char err[512];
    if (db_open(dbp, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT group_concat(x, char(10)) FROM (SELECT quote(key) || quote(params) || "
                                        "quote(group_key) || quote(scaling_key) || quote(model) || quote(gpu_type) || quote(gpus) "
                                        "|| quote(nodes) || quote(batch_per_gpu) || quote(global_batch) || quote(scaling) || "
                                        "quote(optimizer) || quote(lr) || quote(seed) || quote(time_limit_s) || "
                                        "quote(est_gpu_hours) || quote(state) AS x FROM cells ORDER BY id)", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *t = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    db_close(db);
    return t;
}

// --scripts none: plan stores the same rows and writes no file; what submit then renders from the
// stored params (plan_cell_from_params + plan_render_job, as submit.c's render_missing does) is
// byte for byte what plan would have written.
static void test_plan_scripts_left_to_submit(void **state)
{
    (void)state;
    char spec[512], dir[2][512], db[2][1100], err[1024];
    snprintf(spec, sizeof spec, "%s/deferred.json", tmpdir);
    write_budget_spec(spec);
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/deferred%d", tmpdir, k);
        snprintf(db[k], sizeof db[k], "%s.db", dir[k]);
        PlanOptions o = {.db_path = db[k], .runs_dir = dir[k], .quiet = 1, .scripts = k ? PLAN_SCRIPTS_NONE : PLAN_SCRIPTS_ALL};
        PlanOutcome out;
        assert_int_equal(plan_spec_run(spec, &o, &out, err, sizeof err), 0);
        assert_int_equal(out.scripts, !k);
        assert_int_equal(out.added, 300);
        plan_outcome_free(&out);
    }
    struct stat sb;
    assert_int_equal(stat(dir[1], &sb), -1);   // not even the run root
    char *a = cells_text(db[0]), *b = cells_text(db[1]);
    assert_string_equal(a, b);
    free(a);
    free(b);
    Spec *s;
    assert_int_equal(spec_load(spec, &s, err, sizeof err), 0);
    PlanRenderer *r;
    char root[600];
    snprintf(root, sizeof root, "%s/b", dir[1]);
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), root, &r, err, sizeof err) < 0) fail_msg("%s", err);
    sqlite3 *d;
    assert_int_equal(db_open(db[1], DB_EXISTING, &d, err, sizeof err), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(d, "SELECT params FROM cells ORDER BY id", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        PlanCell c;
        char path[1400], rd[1400], *text;
        if (plan_cell_from_params(s, (const char *)sqlite3_column_text(st, 0), &c, err, sizeof err) < 0) fail_msg("%s", err);
        if (plan_render_job(r, &c, 1, path, sizeof path, rd, sizeof rd, err, sizeof err) < 0) fail_msg("%s", err);
        if (plan_render_eval_text(r, &c, 1, rd, &text, err, sizeof err) < 0) fail_msg("%s", err);
        if (plan_write_eval(rd, text, path, sizeof path, err, sizeof err) < 0) fail_msg("%s", err);
        free(text);
        plan_cell_clear(&c);
    }
    sqlite3_finalize(st);
    db_close(d);
    plan_renderer_close(r);
    spec_free(s);
    assert_int_equal(same_scripts(dir[0], dir[1]), 600);
}

// Without scripts, plan renders one cell of each shape: a cell that cannot render is still found
// before anything is written (no DB file), with the message a full render gives; auto leaves the
// scripts to submit beyond PLAN_SCRIPTS_AUTO_MAX cells.
static void test_plan_shapes_checked(void **state)
{
    (void)state;
    char spec[512], db[600], runs[600], err[2][1024];
    snprintf(spec, sizeof spec, "%s/shapes.json", tmpdir);
    snprintf(db, sizeof db, "%s/shapes.db", tmpdir);
    snprintf(runs, sizeof runs, "%s/shapes-runs", tmpdir);
    FILE *f = fopen(spec, "w");
    fputs("{\"name\": \"s\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"cpu\"], \"gpus\": [1, 2, 64], \"batch_per_gpu\": [8], \"seed\": [1, 2, 3]}}", f);
    fclose(f);
    for (int k = 0; k < 2; k++) {
        PlanOptions o = {.db_path = db, .runs_dir = runs, .scripts = k ? PLAN_SCRIPTS_NONE : PLAN_SCRIPTS_ALL};
        PlanOutcome out;
        assert_int_equal(plan_spec_run(spec, &o, &out, err[k], sizeof err[k]), 2);
        plan_outcome_free(&out);
    }
    if (!strstr(err[1], "64 cpu GPUs per node requested but its nodes have 4")) fail_msg("%s", err[1]);
    assert_string_equal(err[0], err[1]);
    struct stat sb;
    assert_int_equal(stat(db, &sb), -1);
    // 10,001 cells: over the limit, so auto writes no script
    f = fopen(spec, "w");
    fputs("{\"name\": \"big\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"cpu\"], \"batch_per_gpu\": [8], \"seed\": [", f);
    for (int i = 0; i <= PLAN_SCRIPTS_AUTO_MAX; i++) fprintf(f, "%s%d", i ? ", " : "", i);
    fputs("]}}", f);
    fclose(f);
    PlanOptions o = {.db_path = db, .runs_dir = runs};
    PlanOutcome out;
    assert_int_equal(plan_spec_run(spec, &o, &out, err[0], sizeof err[0]), 0);
    assert_int_equal(out.n, PLAN_SCRIPTS_AUTO_MAX + 1);
    assert_int_equal(out.added, PLAN_SCRIPTS_AUTO_MAX + 1);
    assert_int_equal(out.scripts, 0);
    plan_outcome_free(&out);
    assert_int_equal(stat(runs, &sb), -1);
}

// Cells that differ only in the words substituted share a shape; GPUs, GPU type and a value's kind
// or truth (what a template section tests) make another.
static void test_shape_signature(void **state)
{
    (void)state;
    Spec *s = spec_ok("{\"name\": \"g\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"cpu\"], \"gpus\": [1, 2], "
                      "\"batch_per_gpu\": [8], \"tag\": [\"a\", \"b\", \"\"], \"w\": [0.1, 0.2, 0], \"seed\": [1, 2]}}");
    PlanCell *c;
    size_t n;
    char err[512];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, 36);
    size_t distinct = 0;
    char sig[36][2048];
    for (size_t i = 0; i < n; i++) {
        plan_shape_signature(&c[i], sig[i], sizeof sig[i]);
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(sig[i], sig[j]) == 0;
        distinct += !seen;
    }
    // gpus {1, 2} x tag {non-empty, empty} x w {non-zero, zero}
    assert_int_equal(distinct, 8);
    assert_non_null(strstr(sig[0], "cpu|1|1|"));
    assert_non_null(strstr(sig[0], "\"tag\"S"));
    assert_non_null(strstr(sig[n - 1], "\"tag\"s"));
    plan_cells_free(c, n);
    spec_free(s);
}

static void test_keys_stable_across_replans(void **state)
{
    (void)state;
    char dbp[512], err[1024];
    snprintf(dbp, sizeof dbp, "%s/keys.db", tmpdir);
    sqlite3 *db;
    assert_int_equal(db_open(dbp, 0, &db, err, sizeof err), 0);
    Spec *s = base_spec("", "");
    PlanCell *c;
    size_t n, added;
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(plan_store(db, s, "/x/t.json", "/x/runs/q", c, n, &added, err, sizeof err), 0);
    assert_int_equal(added, n);
    plan_cells_free(c, n);
    // the same spec again: nothing new
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(plan_store(db, s, "/x/t.json", "/x/runs/q", c, n, &added, err, sizeof err), 0);
    assert_int_equal(added, 0);
    assert_int_equal(count_cells(db), 12);
    for (size_t i = 0; i < n; i++) assert_false(c[i].is_new);
    plan_cells_free(c, n);
    spec_free(s);
    // an edited spec (a third seed): only the new cells are added; old keys are unchanged
    s = base_spec3("1, 2, 3", "", "");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    assert_int_equal(plan_store(db, s, "/x/t.json", "/x/runs/q", c, n, &added, err, sizeof err), 0);
    assert_int_equal(n, 18);
    assert_int_equal(added, 6);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(c[i].is_new, json_integer_value(json_object_get(c[i].params, "seed")) == 3);
    plan_cells_free(c, n);
    spec_free(s);
    // every stored key is SHA-256 of the stored canonical params; seeds share group_key;
    // weak scaling: gpus share scaling_key
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT key, params, group_key, scaling_key FROM cells", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char want[16];
        sha_prefix((const char *)sqlite3_column_text(st, 1), want);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
    }
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "SELECT count(DISTINCT group_key), count(DISTINCT scaling_key) FROM cells", -1, &st, NULL);
    sqlite3_step(st);
    assert_int_equal(sqlite3_column_int(st, 0), 6);   // 18 cells / 3 seeds
    assert_int_equal(sqlite3_column_int(st, 1), 3);   // (unet,16) (unet,32) (cnn,16) over gpus and seeds
    sqlite3_finalize(st);
    db_close(db);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int run_script(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        execl("/bin/bash", "bash", path, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// Renders a cell's job script, runs it with a fake segx-train that records its argv one per line
// and checks the flags and that a hostile spec value stays one inert argument.
static void test_job_script_executes_with_flags(void **state)
{
    (void)state;
    char fake[512], pwned[512], args[512];
    snprintf(fake, sizeof fake, "%s/fake-train.sh", tmpdir);
    snprintf(pwned, sizeof pwned, "%s/pwned", tmpdir);
    snprintf(args, sizeof args, "%s/args.txt", tmpdir);
    FILE *f = fopen(fake, "w");
    fprintf(f, "#!/bin/bash\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\necho trained\necho warn >&2\nexit 0\n", args);
    fclose(f);
    chmod(fake, 0755);
    setenv("SEGX_TRAIN", fake, 1);
    char text[2048];
    snprintf(text, sizeof text,
             "{\"name\": \"x\", \"trainer\": {\"dataset\": \"fashion-mnist-seg\", \"epochs\": 1, \"lr\": 0.01,"
             " \"args\": {\"note\": \"x; touch %s\", \"amp\": true, \"skip\": false}}, \"eval\": {\"limit\": 500},"
             " \"matrix\": {\"model\": [\"unet\"], \"gpus\": [1], \"batch_per_gpu\": [16], \"seed\": [7], \"workers\": [2]},"
             " \"resources\": {\"cpus_per_gpu\": 3, \"time\": \"00:10:00\"}}", pwned);
    Spec *s = spec_ok(text);
    PlanCell *c;
    size_t n;
    char err[1024], run_root[512], path[1024], rd[1024];
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    snprintf(run_root, sizeof run_root, "%s/runs/x", tmpdir);
    PlanRenderer *r;
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), run_root, &r, err, sizeof err) < 0) fail_msg("%s", err);
    if (plan_render_job(r, &c[0], 1, path, sizeof path, rd, sizeof rd, err, sizeof err) < 0) fail_msg("%s", err);
    char *script = slurp(path);
    assert_non_null(strstr(script, "#SBATCH --time=00:10:00"));
    assert_non_null(strstr(script, "#SBATCH --ntasks-per-node=1"));
    assert_int_equal(run_script(path), 0);
    assert_int_equal(access(pwned, F_OK), -1);
    char ec[2048];
    snprintf(ec, sizeof ec, "%s/exit_code", rd);
    assert_string_equal(slurp(ec), "0\n");
    snprintf(ec, sizeof ec, "%s/stdout.log", rd);
    assert_string_equal(slurp(ec), "trained\n");
    snprintf(ec, sizeof ec, "%s/stderr.log", rd);
    assert_string_equal(slurp(ec), "warn\n");
    char *got = slurp(args);
    char want[4096];
    snprintf(want, sizeof want,
             "--amp\n--dataset\nfashion-mnist-seg\n--epochs\n1\n--model\nunet\n--note\nx; touch %s\n--optimizer\nsgd\n", pwned);
    (void)want;
    // order-independent checks of each flag/value pair (argv order follows the params' keys)
    const char *pairs[][2] = {{"--dataset", "fashion-mnist-seg"}, {"--epochs", "1"}, {"--model", "unet"},
                              {"--batch-size", "16"}, {"--lr", "0.01"}, {"--seed", "7"}, {"--workers", "2"},
                              {"--eval-limit", "500"}, {"--threads", "3"}, {"--out", rd}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char pat[2048];
        snprintf(pat, sizeof pat, "%s\n%s\n", pairs[i][0], pairs[i][1]);
        if (!strstr(got, pat)) fail_msg("argv lacks '%s %s':\n%s", pairs[i][0], pairs[i][1], got);
    }
    char note[1024];
    snprintf(note, sizeof note, "--note\nx; touch %s\n", pwned);
    assert_non_null(strstr(got, note));
    assert_non_null(strstr(got, "--amp\n"));
    assert_non_null(strstr(got, "--resume\n"));
    assert_null(strstr(got, "--skip"));
    assert_null(strstr(got, "--gpus"));
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
    unsetenv("SEGX_TRAIN");
}

static void test_multi_rank_and_bad_gpu_type(void **state)
{
    (void)state;
    Spec *s = spec_ok("{\"name\": \"m\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"cpu\", \"h100\"], \"gpus\": [2], \"batch_per_gpu\": [8]}}");
    PlanCell *c;
    size_t n;
    char err[1024], *text;
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    PlanRenderer *r;
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(plan_render_text(r, &c[0], 1, "/tmp/none/m/k/attempt-1", &text, err, sizeof err), 0);
    assert_non_null(strstr(text, "launch=(mpirun -np \"$GPUS\" --oversubscribe"));
    assert_non_null(strstr(text, "GPUS='2'"));
    assert_non_null(strstr(text, "launch=(srun --ntasks=2"));
    free(text);
    assert_int_equal(plan_render_text(r, &c[1], 1, "/tmp/none/m/k/attempt-1", &text, err, sizeof err), -1);
    if (!strstr(err, "gpu_type 'h100' is not in cluster profile 'local'")) fail_msg("%s", err);
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
}

// Renders one cell of spec text and returns its script (malloc'd); -1 tests get err instead.
static int render_cell(const char *text, size_t cell, char **script, char *err, size_t errlen)
{
    Spec *s = spec_ok(text);
    PlanCell *c;
    size_t n;
    PlanRenderer *r;
    *script = NULL;
    if (plan_expand(s, &c, &n, err, errlen) < 0) fail_msg("%s", err);
    assert_true(cell < n);
    int rc = plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, errlen);
    if (rc == 0) rc = plan_render_text(r, &c[cell], 1, "/tmp/none/m/k/attempt-1", script, err, errlen);
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
    return rc;
}

// resources.mem_per_gpu overrides the cluster profile's --mem: one size for every GPU type, or
// per GPU type (the others keep the profile's); --mem = the size x GPUs per node of the cell.
static void test_mem_per_gpu_overrides_profile(void **state)
{
    (void)state;
    char err[1024], *t;
    // local profile: 256M per GPU; a100 x2 on one node, v100 x4 over 2 nodes (2 per node)
    const char *fmt = "{\"name\": \"m\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"a100\", \"v100\"], "
                      "\"gpus\": [%d], \"nodes\": [%d], \"batch_per_gpu\": [8]}%s}";
    char text[1024];
    snprintf(text, sizeof text, fmt, 2, 1, "");
    assert_int_equal(render_cell(text, 0, &t, err, sizeof err), 0);
    assert_non_null(strstr(t, "\n#SBATCH --mem=512M\n"));            // the profile's 256M x 2
    free(t);
    snprintf(text, sizeof text, fmt, 2, 1, ", \"resources\": {\"mem_per_gpu\": \"3G\"}");
    assert_int_equal(render_cell(text, 0, &t, err, sizeof err), 0);
    assert_non_null(strstr(t, "\n#SBATCH --mem=6144M\n"));           // 3G x 2 GPUs per node
    assert_null(strstr(t, "--mem=512M"));
    free(t);
    snprintf(text, sizeof text, fmt, 4, 2, ", \"resources\": {\"mem_per_gpu\": {\"V100\": \"1500M\"}}");
    assert_int_equal(render_cell(text, 1, &t, err, sizeof err), 0);   // v100: the spec's, per node
    assert_non_null(strstr(t, "\n#SBATCH --nodes=2\n"));
    assert_non_null(strstr(t, "\n#SBATCH --mem=3000M\n"));
    free(t);
    assert_int_equal(render_cell(text, 0, &t, err, sizeof err), 0);   // a100 is not named: the profile's
    assert_non_null(strstr(t, "\n#SBATCH --mem=512M\n"));
    free(t);
    // a GPU type the profile does not have is an input error naming the key path, line and column (of its value)
    snprintf(text, sizeof text, fmt, 2, 1, ",\n \"resources\": {\"mem_per_gpu\": {\"h100\": \"80G\"}}");
    assert_int_equal(render_cell(text, 0, &t, err, sizeof err), -1);
    assert_null(t);
    if (!strstr(err, "t.json:2:40: resources.mem_per_gpu.h100: gpu_type 'h100' is not in cluster profile 'local' "
                     "(its GPU types: v100, a100, rtx8000, cpu)"))
        fail_msg("%s", err);
}

// eval.job: plan renders eval.sh beside job.sh: the profile's #SBATCH lines with the eval job's own
// name, time and GPUs, one task, no requeue, --kill-on-invalid-dep; the train command keeps a
// checkpoint; executed, eval.sh refuses to evaluate before the train job ended with exit 0, then
// runs `segx-train --evaluate` with the cell's model and data flags.
static void test_eval_job_script(void **state)
{
    (void)state;
    char fake[512], args[600];
    snprintf(fake, sizeof fake, "%s/fake-eval.sh", tmpdir);
    snprintf(args, sizeof args, "%s/eval-args.txt", tmpdir);
    FILE *f = fopen(fake, "w");
    fprintf(f, "#!/bin/bash\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\necho evaluated\nexit 0\n", args);
    fclose(f);
    chmod(fake, 0755);
    setenv("SEGX_TRAIN", fake, 1);
    const char *text =
        "{\"name\": \"e\", \"trainer\": {\"dataset\": \"fashion-mnist-seg\", \"epochs\": 2},"
        " \"matrix\": {\"model\": [\"unet\"], \"gpu_type\": [\"a100\"], \"gpus\": [2], \"batch_per_gpu\": [8], \"seed\": [3]},"
        " \"resources\": {\"time\": \"01:00:00\", \"cpus_per_gpu\": 2, \"mem_per_gpu\": \"1G\"},"
        " \"eval\": {\"limit\": 64, \"job\": {\"time\": \"00:20:00\", \"gpus\": 1}}}";
    Spec *s = spec_ok(text);
    PlanCell *c;
    size_t n;
    char err[1024], run_root[512], path[1024], rd[1024], *ev;
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    snprintf(run_root, sizeof run_root, "%s/runs/e", tmpdir);
    PlanRenderer *r;
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), run_root, &r, err, sizeof err) < 0) fail_msg("%s", err);
    assert_true(plan_has_eval(r));
    if (plan_render_job(r, &c[0], 1, path, sizeof path, rd, sizeof rd, err, sizeof err) < 0) fail_msg("%s", err);
    char *job = strdup(slurp(path));
    assert_non_null(strstr(job, "'--checkpoint-every' '1'"));
    assert_non_null(strstr(job, "#SBATCH --gres=gpu:a100:2\n"));
    if (plan_render_eval_text(r, &c[0], 1, rd, &ev, err, sizeof err) < 0) fail_msg("%s", err);
    char want[1400];
    const char *lines[] = {"#SBATCH --job-name=segx-e-%.8s-eval\n", "#SBATCH --partition=a100\n", "#SBATCH --time=00:20:00\n",
                           "#SBATCH --nodes=1\n", "#SBATCH --ntasks-per-node=1\n", "#SBATCH --cpus-per-task=2\n",
                           "#SBATCH --gres=gpu:a100:1\n", "#SBATCH --mem=1024M\n", "#SBATCH --output=%s/eval-%%j.out\n",
                           "#SBATCH --error=%s/eval-%%j.err\n", "#SBATCH --no-requeue\n", "#SBATCH --kill-on-invalid-dep=yes\n"};
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        snprintf(want, sizeof want, lines[i], i == 0 ? c[0].key : rd);
        if (!strstr(ev, want)) fail_msg("eval.sh lacks '%s':\n%s", want, ev);
    }
    assert_null(strstr(ev, "--requeue\n#"));
    assert_null(strstr(ev, "--signal"));
    char epath[1100];
    assert_int_equal(plan_write_eval(rd, ev, epath, sizeof epath, err, sizeof err), 0);
    free(ev);
    // no exit_code from the train job yet: nothing is evaluated, eval_exit_code says 3
    unlink(args);
    assert_int_equal(run_script(epath), 3);
    assert_int_equal(access(args, F_OK), -1);
    char p2[1200];
    snprintf(p2, sizeof p2, "%s/eval_exit_code", rd);
    assert_string_equal(slurp(p2), "3\n");
    // after a successful train job it runs the evaluator with the cell's flags
    snprintf(p2, sizeof p2, "%s/exit_code", rd);
    f = fopen(p2, "w");
    fputs("0\n", f);
    fclose(f);
    assert_int_equal(run_script(epath), 0);
    snprintf(p2, sizeof p2, "%s/eval_exit_code", rd);
    assert_string_equal(slurp(p2), "0\n");
    snprintf(p2, sizeof p2, "%s/eval.stdout.log", rd);
    assert_string_equal(slurp(p2), "evaluated\n");
    char *got = slurp(args);
    const char *pairs[][2] = {{"--model", "unet"}, {"--dataset", "fashion-mnist-seg"}, {"--batch-size", "8"},
                              {"--seed", "3"}, {"--eval-limit", "64"}, {"--threads", "2"}, {"--out", rd}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        snprintf(want, sizeof want, "%s\n%s\n", pairs[i][0], pairs[i][1]);
        if (!strstr(got, want)) fail_msg("evaluator argv lacks '%s %s':\n%s", pairs[i][0], pairs[i][1], got);
    }
    assert_non_null(strstr(got, "--evaluate\n"));
    assert_null(strstr(got, "--resume"));
    assert_null(strstr(got, "--eval-job"));
    // eval.job is not a cell parameter: the same cells with or without it
    Spec *s2 = spec_ok("{\"name\": \"e\", \"trainer\": {\"dataset\": \"fashion-mnist-seg\", \"epochs\": 2},"
        " \"matrix\": {\"model\": [\"unet\"], \"gpu_type\": [\"a100\"], \"gpus\": [2], \"batch_per_gpu\": [8], \"seed\": [3]},"
        " \"eval\": {\"limit\": 64}}");
    PlanCell *c2;
    size_t n2;
    assert_int_equal(plan_expand(s2, &c2, &n2, err, sizeof err), 0);
    assert_string_equal(c2[0].key, c[0].key);
    plan_cells_free(c2, n2);
    spec_free(s2);
    free(job);
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
    unsetenv("SEGX_TRAIN");
    // an eval job larger than a node, and an external evaluator's command template
    char *t;
    assert_int_equal(render_cell("{\"name\": \"m\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"v100\"], \"batch_per_gpu\": [8]},\n"
                                 " \"eval\": {\"job\": {\"gpus\": 3}}}", 0, &t, err, sizeof err), 0);
    free(t);
    s = spec_ok("{\"name\": \"m\", \"trainer\": {}, \"matrix\": {\"gpu_type\": [\"v100\"], \"batch_per_gpu\": [8]},\n"
                " \"eval\": {\"job\": {\"gpus\": 3}}}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(plan_render_eval_text(r, &c[0], 1, "/tmp/none/m/k/attempt-1", &ev, err, sizeof err), -1);
    if (!strstr(err, "t.json:2:27: eval.job.gpus: 3 GPUs: the eval job runs on one node, and v100 nodes of cluster 'local' have 2"))
        fail_msg("%s", err);
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
    s = spec_ok("{\"name\": \"m\", \"trainer\": {\"command\": \"t.sh {{run_dir}}\"}, \"matrix\": {\"gpu_type\": [\"cpu\"], "
                "\"batch_per_gpu\": [8]}, \"eval\": {\"job\": {\"command\": \"ev.sh --run {{run_dir}} --gpus {{eval_gpus}}\"}}}");
    assert_int_equal(plan_expand(s, &c, &n, err, sizeof err), 0);
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(plan_render_eval_text(r, &c[0], 1, "/tmp/none/m/k/attempt-1", &ev, err, sizeof err), 0);
    assert_non_null(strstr(ev, "ev.sh --run '/tmp/none/m/k/attempt-1' --gpus '1' >\"$RUN_DIR/eval.stdout.log\""));
    assert_null(strstr(ev, "--gres"));
    free(ev);
    plan_renderer_close(r);
    plan_cells_free(c, n);
    spec_free(s);
}

// plan_write_job replaces job.sh through a temporary file and a rename (util/fileio): a script
// already there is replaced whole, the new one has mode 0755, no temporary file stays, and a
// failed write says "<path>: cannot write the job script: <why>". plan_renderer_warning says
// what plan used to print itself when no segx-train is found (the library prints nothing).
static void test_write_job_atomic_and_warning(void **state)
{
    (void)state;
    char rd[512], path[1024], err[1024];
    snprintf(rd, sizeof rd, "%s/w/k1/attempt-1", tmpdir);
    assert_int_equal(plan_write_job(rd, "#!/bin/sh\necho long old script\n", path, sizeof path, err, sizeof err), 0);
    assert_int_equal(plan_write_job(rd, "#!/bin/sh\n", path, sizeof path, err, sizeof err), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 10);
    assert_int_equal(sb.st_mode & 07777, 0755);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = job.sh", rd);
    assert_int_equal(system(cmd), 0);
    snprintf(rd, sizeof rd, "%s/w/k2/attempt-1/job.sh", tmpdir);   // job.sh is a folder: the rename fails
    assert_int_equal(file_mkdir_p(rd, 0755), 0);
    *strrchr(rd, '/') = 0;
    assert_int_equal(plan_write_job(rd, "x", path, sizeof path, err, sizeof err), -1);
    char want[1200];
    snprintf(want, sizeof want, "%s/job.sh: cannot write the job script: Is a directory", rd);
    assert_string_equal(err, want);

    Spec *s = base_spec("", "");
    PlanRenderer *r;
    setenv("SEGX_TRAIN", "segx-train-nowhere", 1);
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, sizeof err) < 0) fail_msg("%s", err);
    char w[8192];
    assert_int_equal(plan_renderer_warning(r, w, sizeof w), 1);
    assert_non_null(strstr(w, "(build it with `make`, or set SEGX_TRAIN); job scripts will look for 'segx-train-nowhere' in PATH"));
    plan_renderer_close(r);
    setenv("SEGX_TRAIN", "/opt/segx/bin/segx-train", 1);
    if (plan_renderer_open(s, getenv("SEGX_TEMPLATES"), "/tmp/none/m", &r, err, sizeof err) < 0) fail_msg("%s", err);
    assert_int_equal(plan_renderer_warning(r, w, sizeof w), 0);
    plan_renderer_close(r);
    unsetenv("SEGX_TRAIN");
    spec_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion_counts),
        cmocka_unit_test(test_strong_scaling),
        cmocka_unit_test(test_global_batch_overflow),
        cmocka_unit_test(test_weak_data_scaling),
        cmocka_unit_test(test_lr_scaling),
        cmocka_unit_test(test_keys_stable_across_replans),
        cmocka_unit_test(test_group_keys_match_jansson),
        cmocka_unit_test(test_plan_script_budget),
        cmocka_unit_test(test_plan_scripts_left_to_submit),
        cmocka_unit_test(test_plan_shapes_checked),
        cmocka_unit_test(test_shape_signature),
        cmocka_unit_test(test_job_script_executes_with_flags),
        cmocka_unit_test(test_multi_rank_and_bad_gpu_type),
        cmocka_unit_test(test_mem_per_gpu_overrides_profile),
        cmocka_unit_test(test_eval_job_script),
        cmocka_unit_test(test_write_job_atomic_and_warning),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
