// tests/orchestrator/test_web.c — the dashboard's handlers (web/web.h) on hand-inserted data,
// without a socket: /api/ reports byte-identical to `segx report --format json` (cells with
// ?format=rows; its default columns hold the same values, paged), escaping of a hostile model
// name and log text, 404/405/400 answers, the SQL box's refusals, row and time limits, curve
// series and downsampling, a big study's grid by place, the experiments list's GPU-hours
// against the cost report, and
// the real libmicrohttpd server on a loopback port (token, 401, oversized request).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "config.h"
#include "db/db.h"
#include "orchestrator/report.h"
#include "tests/orchestrator/sql_helpers.h"
#include "web/web.h"

static char dbpath[256], rundir[256];
static WebApp app;
#define HOSTILE "<script>alert(1)</script>"

static int setup(void **state)
{
    snprintf(dbpath, sizeof dbpath, "/tmp/segx-test-web-%d.db", (int)getpid());
    snprintf(rundir, sizeof rundir, "/tmp/segx-test-web-%d-run", (int)getpid());
    unlink(dbpath);
    mkdir(rundir, 0755);
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, DB_CREATE, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES"
              " (1, 'scale', '{}', '/x', 0, 100), (2, 'other', '{}', '/y', 0, 50)");
    // scale: models m and HOSTILE; 1 and 4 GPUs; seeds 1, 2. images/s: warm-up 50, then X, X.
    static const double X[2][2] = {{100, 110}, {360, 370}};
    int id = 1;
    for (int m = 0; m < 2; m++)
        for (int g = 0; g < 2; g++)
            for (int s = 0; s < 2; s++, id++) {
                int gpus = g ? 4 : 1;
                // the planned parameters: the filters' axes (optimizer and lr vary with the seed here)
                char params[512];
                snprintf(params, sizeof params,
                         "{\"batch_per_gpu\": 32, \"epochs\": 3, \"gpu_type\": \"a100\", \"gpus\": %d, \"lr\": %s,"
                         " \"model\": \"%s\", \"optimizer\": \"%s\", \"seed\": %d}",
                         gpus, s ? "0.001" : "0.1", m ? HOSTILE : "m", s ? "adamw" : "sgd", s + 1);
                execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpu_type,"
                          " gpus, batch_per_gpu, global_batch, scaling, optimizer, lr, seed, state, est_gpu_hours,"
                          " created_at) VALUES (%d, 1, 'c%02dkeyabcdef', %Q, 'g%d%d', 's%d', %Q, 'a100', %d, 32, %d,"
                          " 'weak', %Q, %s, %d, 'completed', 1.5, 0)",
                      id, id, params, m, g, m, m ? HOSTILE : "m", gpus, 32 * gpus, s ? "adamw" : "sgd",
                      s ? "0.001" : "0.1", s + 1);
                execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, start_time, end_time, run_dir)"
                          " VALUES (%d, %d, 1, 'local', 'completed', 0, 36, %Q)", id, id, rundir);
                execf(db, "INSERT INTO epochs (attempt_id, line, epoch, wall_s, images_per_s, miou) VALUES"
                          " (%d, 1, 1, 10, 50, 0.1), (%d, 2, 2, 20, %.17g, 0.3), (%d, 3, 3, 30, %.17g, %.17g)",
                      id, id, X[g][s], id, X[g][s], 0.5 + 0.01 * s + 0.02 * g);
            }
    // other: one cell with a 5000-epoch curve (downsampling).
    execf(db, "INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpus, state, created_at)"
              " VALUES (99, 2, 'long0000', '{}', 'L', 'L', 'big', 1, 'running', 0)");
    execf(db, "INSERT INTO attempts (id, cell_id, attempt, backend, state, start_time, run_dir)"
              " VALUES (99, 99, 1, 'local', 'running', 1, '/nonexistent')");
    execf(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
              " INSERT INTO epochs (attempt_id, line, epoch, wall_s, miou) SELECT 99, i, i, i * 2.0, i / 5000.0 FROM n");
    db_close(db);
    char p[400];
    snprintf(p, sizeof p, "%s/stdout.log", rundir);
    FILE *f = fopen(p, "w");
    fputs("epoch 1\n<b>bold?</b> & " HOSTILE "\n", f);
    fclose(f);
    if (web_app_open(&app, dbpath, 4, err, sizeof err) < 0) fail_msg("%s", err);
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    web_app_close(&app);
    char p[400];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s/stdout.log", rundir);
    unlink(p);
    rmdir(rundir);
    return 0;
}

// ---- requests without a server ----------------------------------------------------------------

static const char *qarg(void *ctx, const char *key)
{
    static char bufs[8][4096];   // several arguments of one request stay valid, as with libmicrohttpd
    static int next;
    char *buf = bufs[next++ % 8];
    return web_query_arg(ctx, key, buf, sizeof bufs[0]);
}

static WebResponse get(const char *method, const char *path, const char *query)
{
    WebRequest q = {.method = method, .path = path, .arg = qarg, .ctx = (void *)query, .query = query};
    WebResponse r;
    web_handle(&app, &q, &r);
    return r;
}

static char *body(WebResponse *r)
{
    char *s = malloc(r->len + 1);
    memcpy(s, r->body, r->len);
    s[r->len] = 0;
    web_response_free(r);
    return s;
}

static char *report_bytes(const char *kind, const char *exp)
{
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, DB_READONLY, &db, err, sizeof err) < 0) fail_msg("%s", err);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    FILE *null = fopen("/dev/null", "w");
    ReportOptions o = {.experiment = exp, .format = TABLE_JSON, .warn = null};
    if (report_print(db, kind, &o, f, err, sizeof err) < 0) fail_msg("%s", err);
    fclose(f);
    fclose(null);
    db_close(db);
    return buf;
}

static void test_api_reports_equal_segx_report(void **state)
{
    static const char *const kinds[] = {"cells", "accuracy", "speedup", "cost"};
    for (int k = 0; k < 4; k++) {
        char path[64];
        snprintf(path, sizeof path, "/api/e/scale/%s", kinds[k]);
        WebResponse r = get("GET", path, k == 0 ? "format=rows" : "");   // cells: columns unless ?format=rows
        assert_int_equal(r.status, 200);
        assert_string_equal(r.type, "application/json");
        char *got = body(&r), *want = report_bytes(kinds[k], "scale");
        assert_string_equal(got, want);
        free(got);
        free(want);
    }
    // time-to-target with ?target=, as --target
    WebResponse r = get("GET", "/api/e/scale/time-to-target", "target=miou%3D0.3");
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 4);
    assert_true(json_number_value(json_object_get(json_array_get(j, 0), "wall_s_mean")) == 20.0);
    json_decref(j);
    web_response_free(&r);
}

// /api/e/NAME/cells answers columns: the same values as the report's rows (each number the
// same double), a page of ?offset= / ?limit= rows, ?columns= a subset in the report's order.
static void test_cells_columns(void **state)
{
    char *want = report_bytes("cells", "scale");
    json_t *rows = json_loads(want, 0, NULL);
    free(want);
    WebResponse r = get("GET", "/api/e/scale/cells", "");
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 8);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 8);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), WEB_CELLS_LIMIT);
    json_t *cols = json_object_get(j, "columns");
    assert_int_equal(json_object_size(cols), json_object_size(json_array_get(rows, 0)));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *k;
        json_t *v;
        json_object_foreach(row, k, v) {
            json_t *got = json_array_get(json_object_get(cols, k), i);
            if (json_is_number(v)) assert_true(json_is_number(got) && json_number_value(got) == json_number_value(v));
            else if (!json_equal(got, v)) fail_msg("row %zu %s differs", i, k);
        }
    }
    json_decref(j);
    r = get("GET", "/api/e/scale/cells", "offset=6&limit=5&columns=state,cell");   // rows 6 and 7
    j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
    cols = json_object_get(j, "columns");
    assert_int_equal(json_object_size(cols), 2);
    assert_string_equal(json_object_iter_key(json_object_iter(cols)), "cell");   // the report's order
    assert_true(json_equal(json_array_get(json_object_get(cols, "cell"), 1),
                           json_object_get(json_array_get(rows, 7), "cell")));
    json_decref(j);
    r = get("GET", "/api/e/scale/cells", "limit=all&model=m");
    j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 4);
    assert_true(json_is_null(json_object_get(j, "limit")));
    json_decref(j);
    json_decref(rows);
    static const char *const bad[] = {"limit=0", "limit=-1", "offset=x", "columns=cell,nope", "format=csv"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        r = get("GET", "/api/e/scale/cells", bad[k]);
        if (r.status != 400) fail_msg("%s: %d, expected 400", bad[k], r.status);
        web_response_free(&r);
    }
}

static void test_unknown_and_malformed(void **state)
{
    WebResponse r = get("GET", "/api/e/nosuch/speedup", "");
    assert_int_equal(r.status, 404);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "no experiment named 'nosuch' in the database");
    json_decref(j);
    web_response_free(&r);
    static const struct { const char *method, *path; int status; } cases[] = {
        {"GET", "/e/nosuch", 404}, {"GET", "/e/../../etc/passwd", 404}, {"GET", "/static/../web.h", 404},
        {"GET", "/static/", 404}, {"GET", "/e/scale/nonsense", 404}, {"GET", "/api/e/scale/nonsense", 404},
        {"GET", "/api/e/scale/cell/zz", 404}, {"GET", "/api/e/scale/cell/nosuchkey", 404},
        {"POST", "/api/sql", 405}, {"DELETE", "/", 405}, {"GET", "/nope", 404},
        {"GET", "/e/scale/curves", 200}, {"GET", "/api/e/scale/curves", 200},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = get(cases[i].method, cases[i].path, "");
        if (r.status != cases[i].status) fail_msg("%s %s: %d, expected %d", cases[i].method, cases[i].path, r.status, cases[i].status);
        web_response_free(&r);
    }
    r = get("GET", "/api/e/scale/curves", "metric=miou);drop");
    assert_int_equal(r.status, 400);
    web_response_free(&r);
    r = get("GET", "/api/e/scale/time-to-target", "target=bogus");
    assert_int_equal(r.status, 400);
    web_response_free(&r);
    r = get("GET", "/e/scale/cost", "target=abc");
    assert_int_equal(r.status, 400);
    web_response_free(&r);
    char *longp = malloc(WEB_URL_MAX + 20);
    memset(longp, 'a', WEB_URL_MAX + 10);
    longp[0] = '/';
    longp[WEB_URL_MAX + 10] = 0;
    r = get("GET", longp, "");
    assert_int_equal(r.status, 414);
    web_response_free(&r);
    free(longp);
}

static void test_pages_escape_db_values(void **state)
{
    static const char *const pages[] = {"/", "/e/scale", "/e/scale/scaling", "/e/scale/accuracy", "/e/scale/cost",
                                        "/e/scale/curves", "/e/scale/cell/c05keyabcdef", "/sql"};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        WebResponse r = get("GET", pages[i], i == 7 ? "q=SELECT%20model%20FROM%20cells" : "");
        assert_int_equal(r.status, 200);
        char *s = body(&r);
        if (strstr(s, "<script>alert")) fail_msg("%s: the model name reached the page unescaped", pages[i]);
        if (i >= 1 && i != 5 && !strstr(s, "&lt;script&gt;alert(1)&lt;/script&gt;"))
            fail_msg("%s: the model name is missing (escaped)", pages[i]);
        if (i == 6 && !strstr(s, "&lt;b&gt;bold?&lt;/b&gt; &amp; &lt;script&gt;"))
            fail_msg("cell page: the stdout tail is missing or unescaped");
        free(s);
    }
}

static void test_page_numbers_are_the_report(void **state)
{
    // The speedup page's table: data-v of each speedup_throughput equals the report's value.
    WebResponse r = get("GET", "/e/scale/scaling", "");
    char *s = body(&r);
    char *want = report_bytes("speedup", "scale");
    json_t *rows = json_loads(want, 0, NULL);
    const char *p = s;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        p = strstr(p, "data-col=\"speedup_throughput\" data-v=\"");
        assert_non_null(p);
        p += strlen("data-col=\"speedup_throughput\" data-v=\"");
        assert_true(strtod(p, NULL) == json_number_value(json_object_get(row, "speedup_throughput")));
    }
    assert_true(fabs(json_number_value(json_object_get(json_array_get(rows, 1), "speedup_throughput")) - 365.0 / 105.0) < 1e-12);
    json_decref(rows);
    free(want);
    free(s);
}

static void test_experiments_list(void **state)
{
    WebResponse r = get("GET", "/api/experiments", "");
    assert_int_equal(r.status, 200);
    json_t *a = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_array_size(a), 2);
    json_t *e = json_array_get(a, 1);   // by name: other, scale
    assert_string_equal(json_string_value(json_object_get(e, "name")), "scale");
    assert_int_equal(json_integer_value(json_object_get(e, "cells")), 8);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "states"), "completed")), 8);
    // GPU-hours: 8 attempts of 36 s on 1 or 4 GPUs = (4*1 + 4*4) * 36 / 3600 = 0.2; planned 8 * 1.5
    assert_true(fabs(json_real_value(json_object_get(e, "gpu_hours")) - 0.2) < 1e-12);
    assert_true(json_real_value(json_object_get(e, "est_gpu_hours")) == 12.0);
    assert_true(json_real_value(json_object_get(e, "last_change")) == 100.0);
    json_decref(a);
    r = get("GET", "/api/e/other", "");
    assert_int_equal(r.status, 200);
    a = json_loadb(r.body, r.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "states"), "running")), 1);
    json_decref(a);
    web_response_free(&r);
    // an active cell: the grid page refreshes itself
    r = get("GET", "/e/other", "");
    char *s = body(&r);
    assert_non_null(strstr(s, "<meta http-equiv=refresh"));
    free(s);
    r = get("GET", "/e/scale", "");
    s = body(&r);
    assert_null(strstr(s, "http-equiv=refresh"));
    free(s);
}

static void test_grid_filters(void **state)
{
    WebResponse r = get("GET", "/e/scale", "gpus=4&seed=2");
    char *s = body(&r);
    assert_non_null(strstr(s, "2 of 8 cells shown."));
    assert_non_null(strstr(s, "c04keyabcdef"));   // m, 4 GPUs, seed 2
    assert_non_null(strstr(s, "c08keyabcdef"));   // hostile, 4 GPUs, seed 2
    assert_null(strstr(s, "c03keyabcdef"));
    // the axes come from the cells' parameters: optimizer and lr are offered, epochs (one value) not
    const char *opt = strstr(s, "<select name=\"optimizer\">");
    assert_non_null(opt);
    assert_non_null(strstr(opt, "<option value=\"adamw\">adamw</option><option value=\"sgd\">sgd</option>"));
    assert_non_null(strstr(s, "<select name=\"lr\">"));
    assert_non_null(strstr(s, "<option value=\"0.001\">0.001</option>"));
    assert_null(strstr(s, "<select name=\"epochs\">"));
    assert_null(strstr(s, "<select name=\"state\">"));   // every cell completed: one value, no filter
    free(s);
    r = get("GET", "/e/scale", "optimizer=sgd&lr=0.1");   // seed 1's cells: c01 c03 c05 c07
    s = body(&r);
    assert_non_null(strstr(s, "4 of 8 cells shown."));
    assert_non_null(strstr(s, "<option value=\"sgd\" selected>sgd</option>"));
    assert_non_null(strstr(s, "c01keyabcdef"));
    assert_non_null(strstr(s, "c07keyabcdef"));
    assert_null(strstr(s, "c02keyabcdef"));
    free(s);
    r = get("GET", "/e/scale", "optimizer=adamw&lr=0.1");   // no cell has both
    s = body(&r);
    assert_non_null(strstr(s, "0 of 8 cells shown."));
    free(s);
}

static void test_downsample_keeps_ends_and_extremes(void **state)
{
    enum { N = 5003 };
    static double y[N];
    static size_t keep[N];
    for (int i = 0; i < N; i++) y[i] = sin(i / 300.0);
    y[2345] = 5.0;    // a spike
    y[3001] = -4.0;   // a dip
    y[2346] = NAN;    // a gap beside it is no extreme
    size_t n = web_downsample(y, N, WEB_CURVE_POINTS, keep);
    assert_true(n <= WEB_CURVE_POINTS && n >= WEB_CURVE_POINTS / 2);
    assert_int_equal(keep[0], 0);
    assert_int_equal(keep[n - 1], N - 1);
    int spike = 0, dip = 0, gap = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) assert_true(keep[i] > keep[i - 1]);   // ascending, no repeats
        spike |= keep[i] == 2345;
        dip |= keep[i] == 3001;
        gap |= keep[i] == 2346;
    }
    assert_true(spike && dip && !gap);
    // the curve's own highest and lowest points (sin's crests) are among those kept
    double hi = -10, lo = 10, khi = -10, klo = 10;
    for (int i = 0; i < N; i++)
        if (i != 2345 && i != 3001 && !isnan(y[i])) { hi = fmax(hi, y[i]); lo = fmin(lo, y[i]); }
    for (size_t i = 0; i < n; i++)
        if (keep[i] != 2345 && keep[i] != 3001 && !isnan(y[keep[i]])) { khi = fmax(khi, y[keep[i]]); klo = fmin(klo, y[keep[i]]); }
    assert_true(khi == hi && klo == lo);
    // at most max: everything, in order
    assert_int_equal(web_downsample(y, 10, WEB_CURVE_POINTS, keep), 10);
    assert_int_equal(keep[9], 9);
    assert_int_equal(web_downsample(y, WEB_CURVE_POINTS + 1, WEB_CURVE_POINTS, keep) <= WEB_CURVE_POINTS, 1);
}

static void test_curves_downsampled(void **state)
{
    WebResponse r = get("GET", "/api/e/other/curves", "metric=miou");
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_array_size(json_object_get(j, "series")), 1);
    json_t *g = json_array_get(json_object_get(j, "series"), 0);
    json_t *ep = json_object_get(g, "epoch");
    size_t n = json_array_size(ep);
    assert_true(n <= WEB_CURVE_POINTS && n >= WEB_CURVE_POINTS / 2);
    assert_int_equal(json_array_size(json_object_get(g, "mean")), n);
    assert_int_equal(json_integer_value(json_array_get(ep, 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(ep, n - 1)), 5000);
    assert_true(json_number_value(json_array_get(json_object_get(g, "wall_s"), n - 1)) == 10000.0);
    json_decref(j);
    // scale: 2 seeds per group, mean/lo/hi over them; one series per group
    r = get("GET", "/api/e/scale/curves", "metric=miou&model=m");
    j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);   // 2 groups x 3 epochs
    g = json_array_get(json_object_get(j, "series"), 0);                     // 1 GPU
    assert_int_equal(json_integer_value(json_object_get(g, "gpus")), 1);
    assert_int_equal(json_array_size(json_object_get(g, "epoch")), 3);
    // epoch 3: 0.50 and 0.51
    assert_true(fabs(json_number_value(json_array_get(json_object_get(g, "mean"), 2)) - 0.505) < 1e-12);
    assert_true(json_number_value(json_array_get(json_object_get(g, "lo"), 2)) == 0.5);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(g, "n"), 2)), 2);
    json_decref(j);
    // pages of series: ?offset=1&limit=1 is the second group (4 GPUs)
    r = get("GET", "/api/e/scale/curves", "metric=miou&model=m&offset=1&limit=1");
    j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 2);
    assert_int_equal(json_array_size(json_object_get(j, "series")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(j, "series"), 0), "gpus")), 4);
    json_decref(j);
    r = get("GET", "/api/e/scale/curves", "metric=miou&limit=none");
    assert_int_equal(r.status, 400);
    web_response_free(&r);
}

static void test_sql_box(void **state)
{
    static const struct { const char *q; int status; const char *msg; } cases[] = {
        {"q=DELETE%20FROM%20cells", 403, "read-only"},
        {"q=UPDATE%20cells%20SET%20state%3D'x'", 403, "read-only"},
        {"q=ATTACH%20'%2Ftmp%2Fx.db'%20AS%20x", 400, "not allowed"},
        {"q=PRAGMA%20query_only%3D0", 400, "not allowed"},
        {"q=SELECT%201%3B%20DELETE%20FROM%20cells", 400, "one statement"},
        {"q=SELEC%20nonsense", 400, "syntax error"},
        {"", 400, "no SQL"},
        {"q=SELECT%201&format=xml", 400, "expected json or csv"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        WebResponse r = get("GET", "/api/sql", cases[i].q);
        char *s = body(&r);
        if (r.status != cases[i].status || !strstr(s, cases[i].msg))
            fail_msg("%s: %d %s (expected %d, '%s')", cases[i].q, r.status, s, cases[i].status, cases[i].msg);
        free(s);
    }
    // rows past the limit are cut
    WebResponse r = get("GET", "/api/sql", "q=WITH%20RECURSIVE%20n(i)%20AS%20(SELECT%201%20UNION%20ALL%20SELECT%20i%2B1"
                                          "%20FROM%20n%20WHERE%20i%3C5000)%20SELECT%20i%20FROM%20n");
    if (r.status != 200) fail_msg("%d %.*s", r.status, (int)r.len, r.body);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_int_equal(json_array_size(j), WEB_SQL_ROWS);
    json_decref(j);
    web_response_free(&r);
    // a query that would run for minutes is stopped by the time limit
    r = get("GET", "/api/sql", "q=WITH%20RECURSIVE%20n(i)%20AS%20(SELECT%201%20UNION%20ALL%20SELECT%20i%2B1%20FROM%20n)"
                               "%20SELECT%20count(*)%20FROM%20n");
    char *s = body(&r);
    if (r.status != 422 || !strstr(s, "stopped after 2000 ms")) fail_msg("endless query: %d %s", r.status, s);
    free(s);
    // CSV download, quoted per RFC 4180, the hostile name as data
    r = get("GET", "/api/sql", "format=csv&q=SELECT%20DISTINCT%20model%20FROM%20cells%20WHERE%20gpus%3D4%20ORDER%20BY%201");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.disposition, "attachment"));
    s = body(&r);
    assert_string_equal(s, "model\n" HOSTILE "\nm\n");
    free(s);
    // the connection still answers after the interrupted query, and nothing was written
    r = get("GET", "/api/sql", "q=SELECT%20count(*)%20AS%20n%20FROM%20cells");
    s = body(&r);
    assert_string_equal(s, "[\n {\"n\": 9}\n]\n");
    free(s);
}

// Answers are cached until the DB changes: a commit by another connection (segx collect) shows
// in the next answer.
static void test_cache_follows_db(void **state)
{
    WebResponse r = get("GET", "/api/e/other/cost", "");
    char *a = body(&r);
    r = get("GET", "/api/e/other/cost", "");
    char *b = body(&r);
    assert_string_equal(a, b);
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "UPDATE cells SET est_gpu_hours = 7.25 WHERE id = 99");
    db_close(db);
    r = get("GET", "/api/e/other/cost", "");
    char *c = body(&r), *want = report_bytes("cost", "other");
    assert_string_equal(c, want);
    assert_non_null(strstr(c, "\"est_gpu_hours\": 7.25"));
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
    free(want);
}

// One model at a time (a big study's pages): ?model= filters the rows and the page names it.
static void test_model_filter(void **state)
{
    WebResponse r = get("GET", "/api/e/scale/speedup", "model=m");
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "model")), "m");
    json_decref(j);
    r = get("GET", "/api/e/scale/scaling-errors", "model=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    j = json_loadb(r.body, r.len, 0, NULL);
    web_response_free(&r);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "model")), HOSTILE);
    json_decref(j);
    r = get("GET", "/e/scale/scaling", "model=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    char *s = body(&r);
    assert_null(strstr(s, "<script>alert"));
    assert_non_null(strstr(s, "data-model=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert_non_null(strstr(s, "/e/scale/scaling?model=m\">m</a>"));
    free(s);
}

static void test_query_arg_and_escape(void **state)
{
    char buf[64];
    assert_string_equal(web_query_arg("a=1&b=x%20y+z&c", "b", buf, sizeof buf), "x y z");
    assert_string_equal(web_query_arg("a=1&b=x%20y+z&c", "c", buf, sizeof buf), "");
    assert_null(web_query_arg("a=1&bb=2", "b", buf, sizeof buf));
    assert_string_equal(web_query_arg("q=%3c%2", "q", buf, sizeof buf), "<%2");
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    web_html_escape(f, "<a href=\"x\">'&'</a>");
    fputc('|', f);
    web_json_for_script(f, "{\"s\":\"</script><!--\"}");
    fclose(f);
    assert_string_equal(out, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;|{\"s\":\"\\u003c/script\\u003e\\u003c!--\"}");
    free(out);
}

static void test_vega_bundle(void **state)
{
    char *js;
    size_t n;
    char err[512];
    assert_int_equal(web_vega_bundle("/nonexistent-dir", &js, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "libjs-vega"));
    if (access(WEB_VEGA_DIR "/vega-view.min.js", R_OK) != 0) { skip(); return; }
    assert_int_equal(web_vega_bundle(WEB_VEGA_DIR, &js, &n, err, sizeof err), 0);
    assert_non_null(strstr(js, "cur = 'vega-view';"));
    assert_non_null(strstr(js, "window.vega = v;"));
    free(js);
    WebResponse r = get("GET", "/vendor/vega.js", "");
    assert_int_equal(r.status, 200);
    assert_true(r.len > 100000);
    web_response_free(&r);
}

// ---- the real server ----------------------------------------------------------------------------

static int http(int port, const char *req, char *resp, size_t len)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { close(s); return -1; }
    size_t off = 0, rl = strlen(req);
    while (off < rl) {
        ssize_t w = send(s, req + off, rl - off, MSG_NOSIGNAL);
        if (w <= 0) break;   // the server may answer and close before reading it all
        off += (size_t)w;
    }
    size_t got = 0;
    ssize_t k;
    while (got + 1 < len && (k = recv(s, resp + got, len - 1 - got, 0)) > 0) got += (size_t)k;
    resp[got] = 0;
    close(s);
    return (int)got;
}

static void test_server(void **state)
{
#ifndef SEGX_HAVE_MICROHTTPD
    skip();
#else
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        FILE *log = fdopen(fds[1], "w");
        WebServeOptions o = {.db_path = dbpath, .bind = "127.0.0.1", .token = "s3cret", .port = 0, .threads = 2, .log = log};
        _exit(web_serve(&o));
    }
    close(fds[1]);
    FILE *log = fdopen(fds[0], "r");
    char line[512] = "";
    assert_non_null(fgets(line, sizeof line, log));
    char *p = strstr(line, "127.0.0.1:");
    assert_non_null(p);
    int port = atoi(p + 10);
    assert_true(port > 0);
    static char resp[1 << 20];
    // no token: 401 JSON on /api/
    http(port, "GET /api/experiments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 401"));
    assert_non_null(strstr(resp, "needs its token"));
    // wrong token
    http(port, "GET /api/experiments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 401"));
    // bearer token: the answer, with the security headers
    http(port, "GET /api/e/scale/speedup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, "X-Content-Type-Options: nosniff"));
    char *want = report_bytes("speedup", "scale");
    assert_non_null(strstr(resp, want));
    // again: now from the cache (a shared body), the same bytes
    http(port, "GET /api/e/scale/speedup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, want));
    free(want);
    // ?token= sets the cookie
    http(port, "GET /?token=s3cret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, "Set-Cookie: segx_token=s3cret;"));
    http(port, "GET /e/scale HTTP/1.1\r\nHost: x\r\nCookie: segx_token=s3cret\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    // a request whose headers exceed the connection's memory: 4xx, and the server lives on
    size_t big = 200 * 1024;
    char *req = malloc(big + 200);
    int n = snprintf(req, 200, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', big);
    strcpy(req + n + big, "\r\nConnection: close\r\n\r\n");
    http(port, req, resp, sizeof resp);
    free(req);
    assert_true(strncmp(resp, "HTTP/1.1 4", 10) == 0 || resp[0] == 0);
    http(port, "garbage\r\n\r\n", resp, sizeof resp);
    assert_true(strncmp(resp, "HTTP/1.1 4", 10) == 0 || resp[0] == 0);
    http(port, "GET /api/e/scale/cost HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fclose(log);
#endif
}

static void test_serve_refuses_open_bind_without_token(void **state)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    WebServeOptions o = {.db_path = dbpath, .bind = "0.0.0.0", .port = 0, .threads = 1, .log = f};
    int rc = web_serve(&o);
    fclose(f);
#ifdef SEGX_HAVE_MICROHTTPD
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "without --token"));
#else
    assert_int_equal(rc, 1);
#endif
    free(out);
    f = open_memstream(&out, &n);
    o.log = f;
    o.bind = "not-an-address";
    rc = web_serve(&o);
    fclose(f);
#ifdef SEGX_HAVE_MICROHTTPD
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--bind 'not-an-address'"));
#endif
    free(out);
}

// A study of more than WEB_GRID_BOXES cells: the grid shows each place's cells by state and
// links to the page filtered to it, which shows a box per cell (with the page's other filters).
static void test_big_grid_groups_places(void **state)
{
    sqlite3 *db;
    char err[512];
    if (db_open(dbpath, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES"
              " (3, 'big', '{}', '/z', 0, 10)");
    // 1200 cells: 2 models x 3 GPU counts x 200 seeds; seed 7's cells failed
    execf(db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1199)"
              " INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus,"
              " batch_per_gpu, seed, state, created_at)"
              " SELECT 1000 + i, 3, printf('big%%05d', i), json_object('model', 'm' || (i %% 2), 'gpus', 1 << (i / 2 %% 3),"
              " 'seed', i / 6), 'g', 's', 'm' || (i %% 2), 'a100', 1 << (i / 2 %% 3), 8, i / 6,"
              " CASE WHEN i / 6 = 7 THEN 'failed' ELSE 'completed' END, 0 FROM n");
    db_close(db);
    WebResponse r = get("GET", "/e/big", "");
    assert_int_equal(r.status, 200);
    char *s = body(&r);
    assert_null(strstr(s, "class=\"box"));
    assert_non_null(strstr(s, "<a class=place href=\"/e/big?model=m0&amp;gpu_type=a100&amp;gpus=2&amp;batch_per_gpu=8\""
                              " title=\"200 cells: 199 completed 1 failed\">"));
    free(s);
    r = get("GET", "/e/big", "state=failed");   // 6 cells: boxes
    s = body(&r);
    assert_non_null(strstr(s, "6 of 1200 cells shown."));
    assert_non_null(strstr(s, "class=\"box st-failed"));
    free(s);
    r = get("GET", "/e/big", "model=m0&gpu_type=a100&gpus=2&batch_per_gpu=8&seed=7");   // a place, kept filters
    s = body(&r);
    assert_non_null(strstr(s, "1 of 1200 cells shown."));
    free(s);
    if (db_open(dbpath, DB_EXISTING, &db, err, sizeof err) < 0) fail_msg("%s", err);
    execf(db, "DELETE FROM cells WHERE experiment_id = 3");
    execf(db, "DELETE FROM experiments WHERE id = 3");
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_reports_equal_segx_report),
        cmocka_unit_test(test_cells_columns),
        cmocka_unit_test(test_unknown_and_malformed),
        cmocka_unit_test(test_pages_escape_db_values),
        cmocka_unit_test(test_page_numbers_are_the_report),
        cmocka_unit_test(test_experiments_list),
        cmocka_unit_test(test_grid_filters),
        cmocka_unit_test(test_curves_downsampled),
        cmocka_unit_test(test_downsample_keeps_ends_and_extremes),
        cmocka_unit_test(test_sql_box),
        cmocka_unit_test(test_cache_follows_db),
        cmocka_unit_test(test_model_filter),
        cmocka_unit_test(test_query_arg_and_escape),
        cmocka_unit_test(test_vega_bundle),
        cmocka_unit_test(test_big_grid_groups_places),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_serve_refuses_open_bind_without_token),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
