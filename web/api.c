// web/api.c — the dashboard's JSON: reports (report_json, byte for byte), the experiments list,
// curves per cell group (downsampled), scaling error bars, one cell, and the SQL box.
#include "web/web_impl.h"
#include "orchestrator/report.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int web_metric_valid(const char *m)
{
    static const char *const metrics[] = {"miou", "pixel_acc", "top1", "val_loss", "train_loss", NULL};
    for (int i = 0; metrics[i]; i++)
        if (strcmp(m, metrics[i]) == 0) return 1;
    return 0;
}

// One column of a stepped statement as JSON (NULL, integer, real, text; blobs as their size).
static json_t *col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: {
        double v = sqlite3_column_double(st, i);
        return isfinite(v) ? json_real(v) : json_null();
    }
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(st, i);
        json_t *j = json_stringn(s, (size_t)sqlite3_column_bytes(st, i));
        if (j) return j;
        char *c = strdup(s);   // not UTF-8: keep the ASCII, mark the rest
        if (!c) return json_null();
        for (char *p = c; *p; p++)
            if ((unsigned char)*p >= 0x80) *p = '?';
        j = json_string(c);
        free(c);
        return j ? j : json_null();
    }
    case SQLITE_BLOB: return json_sprintf("<blob, %d bytes>", sqlite3_column_bytes(st, i));
    default: return json_null();
    }
}

// Every row of st as an object keyed by column name.
static json_t *rows_json(sqlite3 *db, sqlite3_stmt *st, char *err, size_t errlen)
{
    json_t *a = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        for (int i = 0; i < sqlite3_column_count(st); i++) json_object_set_new(o, sqlite3_column_name(st, i), col_json(st, i));
        json_array_append_new(a, o);
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *query_json(sqlite3 *db, const char *sql, long long exp_id, const char *text2, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return NULL;
    }
    sqlite3_bind_int64(st, 1, exp_id);
    if (text2) sqlite3_bind_text(st, 2, text2, -1, SQLITE_STATIC);
    json_t *a = rows_json(db, st, err, errlen);
    sqlite3_finalize(st);
    return a;
}

// ---- experiments ------------------------------------------------------------------------------

json_t *web_experiments_json(sqlite3 *db, char *err, size_t errlen)
{
    static const char sql[] =
        "SELECT x.name, x.spec_path,"
        " (SELECT COUNT(*) FROM cells c WHERE c.experiment_id = x.id) AS cells,"
        " (SELECT json_group_object(state, n) FROM (SELECT c.state, COUNT(*) AS n FROM cells c"
        "   WHERE c.experiment_id = x.id GROUP BY c.state)) AS states,"
        " MAX(x.updated_at, COALESCE((SELECT MAX(MAX(COALESCE(a.submit_time, 0), COALESCE(a.start_time, 0),"
        "   COALESCE(a.end_time, 0), COALESCE(a.collected_at, 0))) FROM attempts a JOIN cells c ON c.id = a.cell_id"
        "   WHERE c.experiment_id = x.id), 0)) AS last_change"
        " FROM experiments x ORDER BY x.name";
    json_t *a = query_json(db, sql, 0, NULL, err, errlen);
    if (!a) return NULL;
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        json_t *st = json_loads(json_string_value(json_object_get(e, "states")) ? json_string_value(json_object_get(e, "states")) : "{}", 0, NULL);
        json_object_set_new(e, "states", st ? st : json_object());
        // GPU-hours as `segx report cost` counts them: its groups summed in its order (the
        // total row of the table format).
        json_t *cost = web_report(db, "cost", json_string_value(json_object_get(e, "name")), NULL, err, errlen);
        if (!cost) { json_decref(a); return NULL; }
        double used = 0, planned = 0;
        int any_used = 0, any_planned = 0;
        size_t k;
        json_t *g;
        json_array_foreach(cost, k, g) {
            json_t *u = json_object_get(g, "gpu_hours"), *p = json_object_get(g, "est_gpu_hours");
            if (json_is_number(u)) { used += json_number_value(u); any_used = 1; }
            if (json_is_number(p)) { planned += json_number_value(p); any_planned = 1; }
        }
        json_decref(cost);
        json_object_set_new(e, "gpu_hours", any_used ? json_real(used) : json_null());
        json_object_set_new(e, "est_gpu_hours", any_planned ? json_real(planned) : json_null());
    }
    return a;
}

void api_experiments(sqlite3 *db, WebResponse *r)
{
    char err[1024];
    json_t *a = web_experiments_json(db, err, sizeof err);
    if (!a) { web_error(r, 1, 500, "%s", err); return; }
    web_json_response(r, 200, a);
}

// ---- curves, scaling error bars ---------------------------------------------------------------

size_t web_downsample(const double *y, size_t n, size_t max, size_t *keep)
{
    if (n <= max || max < 4) {   // (fewer than 4 allowed: the first ones; not used by the server)
        size_t k = n < max ? n : max;
        for (size_t i = 0; i < k; i++) keep[i] = i;
        return k;
    }
    // min-max decimation: the first and last points, and in each of (max - 2) / 2 equal runs of
    // the points between them the lowest and the highest (in their order), so peaks, dips and
    // the curve's extremes survive; at most max points.
    size_t nk = 0, buckets = (max - 2) / 2, inner = n - 2;
    keep[nk++] = 0;
    for (size_t b = 0; b < buckets; b++) {
        size_t lo = 1 + inner * b / buckets, hi = 1 + inner * (b + 1) / buckets;   // [lo, hi)
        if (lo >= hi) continue;
        size_t imin = lo, imax = lo;
        for (size_t i = lo; i < hi; i++) {
            if (y[i] < y[imin] || isnan(y[imin])) imin = i;
            if (y[i] > y[imax] || isnan(y[imax])) imax = i;
        }
        keep[nk++] = imin < imax ? imin : imax;
        if (imin != imax) keep[nk++] = imin < imax ? imax : imin;
    }
    keep[nk++] = n - 1;
    return nk;
}

// Appends the points of one group (pts[0..n), their means y) to out, downsampled.
static int curve_flush(json_t *out, json_t **pts, double *y, size_t n, size_t *keep)
{
    size_t k = web_downsample(y, n, WEB_CURVE_POINTS, keep);
    for (size_t i = 0; i < k; i++) json_array_append(out, pts[keep[i]]);
    for (size_t i = 0; i < n; i++) json_decref(pts[i]);
    return 0;
}

json_t *web_curves_json(sqlite3 *db, long long exp_id, const char *metric, const char *model, char *err,
                        size_t errlen)
{
    if (!web_metric_valid(metric)) {
        snprintf(err, errlen, "metric '%s': expected miou, pixel_acc, top1, val_loss or train_loss", metric);
        return NULL;
    }
    // metric is one of a fixed list (checked above), so naming its column is not user text in SQL.
    char sql[2048];
    snprintf(sql, sizeof sql,
             "WITH k AS (SELECT id, group_key, model, gpu_type, gpus, batch_per_gpu, global_batch FROM cells"
             "   WHERE experiment_id = ?1 AND (?2 IS NULL OR model = ?2)),"
             " c AS (SELECT k.*, COALESCE(e.epoch, e.line) AS epoch, t.offset_s + e.wall_s AS cell_wall_s,"
             "   e.%s AS v FROM k JOIN attempt_times t ON t.cell_id = k.id JOIN epochs e ON e.attempt_id = t.attempt_id"
             "   WHERE e.%s IS NOT NULL)"
             // the group's parameters ride along (MIN), so no join back to cells (it ran as a nested scan)
             " SELECT MIN(model) AS model, MIN(gpu_type) AS gpu_type, MIN(gpus) AS gpus,"
             "   MIN(batch_per_gpu) AS batch_per_gpu, MIN(global_batch) AS global_batch, group_key, epoch,"
             "   AVG(cell_wall_s) AS wall_s, AVG(v) AS mean, MIN(v) AS lo, MAX(v) AS hi, COUNT(*) AS n"
             " FROM c GROUP BY group_key, epoch"
             " ORDER BY model, gpu_type, gpus, batch_per_gpu, global_batch, group_key, epoch",
             metric, metric);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        return NULL;
    }
    sqlite3_bind_int64(st, 1, exp_id);
    if (model) sqlite3_bind_text(st, 2, model, -1, SQLITE_STATIC);
    // One group's rows at a time (ordered by group), then its downsampled points.
    json_t *out = json_array(), **pts = NULL;
    double *y = NULL;
    size_t *keep = NULL, n = 0, cap = 0;
    char group[256] = "";
    int rc, ncols = sqlite3_column_count(st), oom = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *g = (const char *)sqlite3_column_text(st, 5);
        if (n > 0 && strcmp(group, g ? g : "") != 0) {
            curve_flush(out, pts, y, n, keep);
            n = 0;
        }
        snprintf(group, sizeof group, "%s", g ? g : "");
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            json_t **np = realloc(pts, nc * sizeof *np);
            if (np) pts = np;
            double *ny = np ? realloc(y, nc * sizeof *ny) : NULL;
            if (ny) y = ny;
            size_t *nkp = ny ? realloc(keep, nc * sizeof *nkp) : NULL;
            if (nkp) keep = nkp;
            if (!nkp) { oom = 1; break; }
            cap = nc;
        }
        json_t *o = json_object();
        for (int i = 0; i < ncols; i++) json_object_set_new(o, sqlite3_column_name(st, i), col_json(st, i));
        y[n] = sqlite3_column_double(st, 8);
        pts[n++] = o;
    }
    if (!oom && n > 0) curve_flush(out, pts, y, n, keep);
    else for (size_t i = 0; i < n; i++) json_decref(pts[i]);
    free(pts);
    free(y);
    free(keep);
    if (oom || rc != SQLITE_DONE) {
        if (oom) snprintf(err, errlen, "out of memory");
        else snprintf(err, errlen, "database: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        json_decref(out);
        return NULL;
    }
    sqlite3_finalize(st);
    json_t *target = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM targets WHERE experiment_id = ?1 AND metric = ?2", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, exp_id);
        sqlite3_bind_text(st, 2, metric, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) target = json_real(sqlite3_column_double(st, 0));
        sqlite3_finalize(st);
    }
    return json_pack("{s:s, s:o, s:o, s:i}", "metric", metric, "target", target ? target : json_null(), "points", out,
                     "max_points_per_series", WEB_CURVE_POINTS);
}

// ---- compact answers: columns instead of one object per row ------------------------------------

// Writes j as compact JSON, each real in its shortest exact form (table_format_real, as
// `segx report --format json` writes them; jansson's %.17g is up to twice as long).
static void json_write(FILE *f, json_t *j)
{
    if (json_is_real(j)) {
        char b[64];
        if (!isfinite(json_real_value(j))) { fputs("null", f); return; }
        table_format_real(json_real_value(j), b, sizeof b);
        fputs(b, f);
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        fputc('[', f);
        json_array_foreach(j, i, v) {
            if (i) fputc(',', f);
            json_write(f, v);
        }
        fputc(']', f);
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        int first = 1;
        fputc('{', f);
        json_object_foreach(j, k, v) {
            if (!first) fputc(',', f);
            first = 0;
            json_t *ks = json_string(k);
            json_dumpf(ks, f, JSON_ENCODE_ANY);
            json_decref(ks);
            fputc(':', f);
            json_write(f, v);
        }
        fputc('}', f);
    } else {
        json_dumpf(j, f, JSON_ENCODE_ANY);
    }
}

// j (stolen) as a 200 JSON answer written by json_write.
static void json_answer(WebResponse *r, json_t *j)
{
    Out o;
    if (!j || out_open(&o) < 0) { json_decref(j); web_error(r, 1, 500, "out of memory"); return; }
    json_write(o.f, j);
    json_decref(j);
    out_finish(&o, r, 200, "application/json");
}

// ?offset= and ?limit= (a count, or "all"; def when absent). 0, or -1 with err.
static int page_args(const WebRequest *q, size_t def, size_t *off, size_t *lim, char *err, size_t errlen)
{
    const char *o = q->arg(q->ctx, "offset"), *l = q->arg(q->ctx, "limit");
    *off = 0;
    *lim = def;
    char *end;
    if (o && *o) {
        unsigned long long v = strtoull(o, &end, 10);
        if (*end || o[0] == '-' || o[0] == '+') { snprintf(err, errlen, "offset '%.40s': expected a count from 0", o); return -1; }
        *off = (size_t)v;
    }
    if (l && *l && strcmp(l, "all") == 0) *lim = SIZE_MAX;
    else if (l && *l) {
        unsigned long long v = strtoull(l, &end, 10);
        if (*end || v == 0 || l[0] == '-' || l[0] == '+') {
            snprintf(err, errlen, "limit '%.40s': expected a count from 1, or all", l);
            return -1;
        }
        *lim = (size_t)v;
    }
    return 0;
}

// {"total", "offset", "limit" (null: all), "count"} of a page of total items.
static json_t *page_head_json(size_t total, size_t off, size_t lim, size_t count)
{
    return json_pack("{s:I, s:I, s:o, s:I}", "total", (json_int_t)total, "offset", (json_int_t)off, "limit",
                     lim == SIZE_MAX ? json_null() : json_integer((json_int_t)lim), "count", (json_int_t)count);
}

// The column names of ?columns= (comma-separated) that rows' first object has, in the
// report's order; all its keys when absent. NULL with err for an unknown name.
static json_t *pick_columns(json_t *rows, const char *want, char *err, size_t errlen)
{
    json_t *first = json_array_get(rows, 0), *names = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(first, k, v) {
        size_t n = strlen(k);
        int in = !want || !*want;
        for (const char *p = want; !in && p && *p;) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            in = len == n && strncmp(p, k, n) == 0;
            p = c ? c + 1 : NULL;
        }
        if (in) json_array_append_new(names, json_string(k));
    }
    for (const char *p = first && want ? want : NULL; p && *p;) {   // each name asked for must exist
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)(len < 79 ? len : 79), p);
        if (!json_object_get(first, name)) {
            snprintf(err, errlen, "columns: no column '%s' in the cells report", name);
            json_decref(names);
            return NULL;
        }
        p = c ? c + 1 : NULL;
    }
    return names;
}

json_t *web_cells_columns(json_t *rows, const char *columns, const char *model, size_t off, size_t lim, char *err,
                          size_t errlen)
{
    json_t *names = pick_columns(rows, columns, err, errlen);
    if (!names) return NULL;
    json_t *cols = json_object(), *name;
    size_t i, c, total = 0, count = 0;
    json_array_foreach(names, c, name) json_object_set_new(cols, json_string_value(name), json_array());
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *m = json_string_value(json_object_get(row, "model"));
        if (model && (!m || strcmp(m, model) != 0)) continue;
        if (total++ < off || count >= lim) continue;
        count++;
        json_array_foreach(names, c, name) {
            json_t *v = json_object_get(row, json_string_value(name));
            json_array_append(json_object_get(cols, json_string_value(name)), v ? v : json_null());
        }
    }
    json_decref(names);
    json_t *out = page_head_json(total, off, lim, count);
    json_object_set_new(out, "columns", cols);
    return out;
}

// The per-group keys of a curve point that its series carries once, and those it keeps per point.
static const char *const series_keys[] = {"model", "gpu_type", "gpus", "batch_per_gpu", "global_batch", "group_key",
                                          NULL};
static const char *const point_keys[] = {"epoch", "wall_s", "mean", "lo", "hi", "n", NULL};

json_t *web_curves_series(json_t *curves, size_t off, size_t lim)
{
    json_t *series = json_array(), *cur = NULL, *p;
    size_t i, total = 0;
    const char *group = NULL;
    json_array_foreach(json_object_get(curves, "points"), i, p) {
        const char *g = json_string_value(json_object_get(p, "group_key"));
        if (!group || !g || strcmp(g, group) != 0) {   // a new group (the points come ordered by group)
            group = g;
            cur = NULL;
            if (total++ < off || json_array_size(series) >= lim) continue;
            cur = json_object();
            for (int k = 0; series_keys[k]; k++) json_object_set(cur, series_keys[k], json_object_get(p, series_keys[k]));
            for (int k = 0; point_keys[k]; k++) json_object_set_new(cur, point_keys[k], json_array());
            json_array_append_new(series, cur);
        }
        for (int k = 0; cur && point_keys[k]; k++) {
            json_t *v = json_object_get(p, point_keys[k]);
            json_array_append(json_object_get(cur, point_keys[k]), v ? v : json_null());
        }
    }
    json_t *out = page_head_json(total, off, lim, json_array_size(series));
    json_object_set(out, "metric", json_object_get(curves, "metric"));
    json_object_set(out, "target", json_object_get(curves, "target"));
    json_object_set(out, "max_points_per_series", json_object_get(curves, "max_points_per_series"));
    json_object_set_new(out, "series", series);
    return out;
}

json_t *web_scaling_errors_json(sqlite3 *db, long long exp_id, char *err, size_t errlen)
{
    // The std over seeds of each group's images/s (cell_throughput), as speedup (over the same
    // 1-GPU base the scaling view uses), for error bars.
    static const char sql[] =
        "WITH t AS (SELECT c.group_key, ct.images_per_s, AVG(ct.images_per_s) OVER (PARTITION BY c.group_key) AS mean"
        "   FROM cells c JOIN cell_throughput ct ON ct.cell_id = c.id WHERE c.experiment_id = ?1),"
        " d AS MATERIALIZED (SELECT group_key, sqrt(SUM((images_per_s - mean) * (images_per_s - mean))"
        "   / (COUNT(images_per_s) - 1)) AS ips_std FROM t GROUP BY group_key)"
        " SELECT s.model, s.gpu_type, s.scaling, s.batch_per_gpu, s.global_batch, s.gpus, s.nodes,"
        " d.ips_std / s.base_images_per_s AS speedup_std, d.ips_std / s.base_images_per_s / s.gpus AS efficiency_std"
        " FROM scaling s LEFT JOIN d ON d.group_key = s.group_key WHERE s.experiment_id = ?1";
    return query_json(db, sql, exp_id, NULL, err, errlen);
}

// ---- one cell ---------------------------------------------------------------------------------

char *web_file_tail(const char *dir, const char *name, size_t max)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    long start = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > (long)max) start = size - (long)max;
    }
    fseek(f, start, SEEK_SET);
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    char *p = buf;
    if (start > 0) {   // begin at a whole line
        char *nl = strchr(buf, '\n');
        if (nl) p = nl + 1;
    }
    memmove(buf, p, strlen(p) + 1);
    return buf;
}

json_t *web_cell_json(sqlite3 *db, long long exp_id, const char *key, char *err, size_t errlen)
{
    static const char cell_sql[] =
        "SELECT id, key, params, group_key, scaling_key, model, gpu_type, gpus, nodes, batch_per_gpu, global_batch,"
        " scaling, optimizer, lr, seed, time_limit_s, est_gpu_hours, state FROM cells"
        // a key prefix as a range, so the (experiment_id, key) index finds it
        " WHERE experiment_id = ?1 AND key >= ?2 AND key < ?2 || char(1114111) ORDER BY key LIMIT 2";
    if (strlen(key) < 4) { snprintf(err, errlen, "cell '%s': give at least 4 characters of its key", key); return NULL; }
    json_t *cells = query_json(db, cell_sql, exp_id, key, err, errlen);
    if (!cells) return NULL;
    if (json_array_size(cells) != 1) {
        snprintf(err, errlen, json_array_size(cells) ? "cell '%s' is ambiguous: give more of its key"
                                                     : "no cell with key '%s' in this experiment", key);
        json_decref(cells);
        return NULL;
    }
    json_t *cell = json_incref(json_array_get(cells, 0));
    json_decref(cells);
    long long cell_id = json_integer_value(json_object_get(cell, "id"));
    json_t *params = json_loads(json_string_value(json_object_get(cell, "params")), 0, NULL);
    json_object_set_new(cell, "params", params ? params : json_null());
    static const char att_sql[] =
        "SELECT a.attempt, a.backend, a.job_id, a.state, a.reason, a.exit_code, a.submit_time, a.start_time,"
        " a.end_time, a.run_s, a.nodes, a.run_dir,"
        " (SELECT COUNT(*) FROM epochs e WHERE e.attempt_id = a.id) AS metric_lines"
        " FROM attempts a WHERE a.cell_id = ?1 ORDER BY a.attempt";   // (attempt_times would compute every attempt)
    static const char eval_sql[] =
        "SELECT a.attempt, v.backend, v.job_id, v.state, v.reason, v.exit_code, v.start_time, v.end_time, v.miou,"
        " v.pixel_acc, v.top1, v.loss, v.images, v.seconds FROM eval_jobs v JOIN attempts a ON a.id = v.attempt_id"
        " WHERE a.cell_id = ?1 ORDER BY a.attempt";
    static const char env_sql[] =
        "SELECT a.attempt, n.host, n.gpu_model, n.driver, n.cuda, n.cudnn, n.nccl, n.container_digest, n.git_commit"
        " FROM environments n JOIN attempts a ON a.id = n.attempt_id WHERE a.cell_id = ?1 ORDER BY a.attempt";
    json_t *att = query_json(db, att_sql, cell_id, NULL, err, errlen);
    json_t *ev = att ? query_json(db, eval_sql, cell_id, NULL, err, errlen) : NULL;
    json_t *env = ev ? query_json(db, env_sql, cell_id, NULL, err, errlen) : NULL;
    if (!env) { json_decref(att); json_decref(ev); json_decref(cell); return NULL; }
    json_object_set_new(cell, "attempts", att);
    json_object_set_new(cell, "eval_jobs", ev);
    json_object_set_new(cell, "environments", env);
    json_object_del(cell, "id");
    // The latest attempt's logs, last 8 KiB each.
    json_t *logs = json_object();
    json_t *last = json_array_get(att, json_array_size(att) - 1);
    const char *dir = last ? json_string_value(json_object_get(last, "run_dir")) : NULL;
    static const char *const files[] = {"stdout.log", "stderr.log", "job.out", NULL};
    for (int i = 0; dir && files[i]; i++) {
        char *t = web_file_tail(dir, files[i], 8192);
        if (!t) continue;
        json_t *s = json_string(t);
        if (!s) {   // not UTF-8
            for (char *p = t; *p; p++)
                if ((unsigned char)*p >= 0x80) *p = '?';
            s = json_string(t);
        }
        json_object_set_new(logs, files[i], s ? s : json_null());
        free(t);
    }
    json_object_set_new(cell, "logs", logs);
    return cell;
}

// ---- the SQL box ------------------------------------------------------------------------------

typedef struct {
    struct timespec deadline;
    int expired;
} SqlClock;

static int sql_progress(void *p)
{
    SqlClock *c = p;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > c->deadline.tv_sec || (now.tv_sec == c->deadline.tv_sec && now.tv_nsec >= c->deadline.tv_nsec))
        c->expired = 1;
    return c->expired;
}

// Refuses what reads beyond the results DB or changes the connection: ATTACH, DETACH, PRAGMA
// (except the table-valued pragma functions' read-only ones), and functions that are not SQL's.
static int sql_authorizer(void *p, int action, const char *a, const char *b, const char *c, const char *d)
{
    switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
    case SQLITE_PRAGMA:
        return SQLITE_DENY;
    case SQLITE_FUNCTION:
        if (b && (strcmp(b, "load_extension") == 0 || strcmp(b, "readfile") == 0 || strcmp(b, "writefile") == 0))
            return SQLITE_DENY;
        return SQLITE_OK;
    default:
        return SQLITE_OK;
    }
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';') return 0;
    return 1;
}

int web_sql_run(sqlite3 *db, const char *sql, Table **out, int *truncated, char *err, size_t errlen, int *status)
{
    *out = NULL;
    *truncated = 0;
    *status = 400;
    if (!sql || is_blank(sql)) { snprintf(err, errlen, "no SQL given"); return -1; }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    sqlite3_set_authorizer(db, sql_authorizer, NULL);
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
    sqlite3_set_authorizer(db, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s%s", sqlite3_errmsg(db),
                 rc == SQLITE_AUTH ? " (ATTACH, DETACH and PRAGMA are not allowed here)" : "");
        sqlite3_finalize(st);
        return -1;
    }
    if (!st) { snprintf(err, errlen, "no SQL statement given"); return -1; }
    if (tail && !is_blank(tail)) {
        snprintf(err, errlen, "one statement at a time: found more after the first ('%.40s')", tail);
        sqlite3_finalize(st);
        return -1;
    }
    if (!sqlite3_stmt_readonly(st)) {
        snprintf(err, errlen, "refused: the dashboard's database connection is read-only (SELECT and WITH only)");
        sqlite3_finalize(st);
        *status = 403;
        return -1;
    }
    int ncols = sqlite3_column_count(st);
    const char *heads[256];
    if (ncols == 0 || ncols > 256) {
        snprintf(err, errlen, ncols ? "too many result columns (%d; at most 256)" : "the statement returns no rows",
                 ncols);
        sqlite3_finalize(st);
        return -1;
    }
    for (int i = 0; i < ncols; i++) heads[i] = sqlite3_column_name(st, i);
    Table *t = table_new((size_t)ncols, heads);
    if (!t) { sqlite3_finalize(st); snprintf(err, errlen, "out of memory"); *status = 500; return -1; }
    SqlClock clk = {0};
    clock_gettime(CLOCK_MONOTONIC, &clk.deadline);
    clk.deadline.tv_sec += WEB_SQL_MS / 1000;
    clk.deadline.tv_nsec += (WEB_SQL_MS % 1000) * 1000000L;
    if (clk.deadline.tv_nsec >= 1000000000L) { clk.deadline.tv_sec++; clk.deadline.tv_nsec -= 1000000000L; }
    sqlite3_progress_handler(db, 1000, sql_progress, &clk);
    int n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == WEB_SQL_ROWS) { *truncated = 1; break; }
        table_row(t);
        for (int i = 0; i < ncols; i++) table_sqlite(t, st, i);
        n++;
    }
    sqlite3_progress_handler(db, 0, NULL, NULL);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        if (clk.expired)
            snprintf(err, errlen, "stopped after %d ms (the SQL box's limit): narrow the query or add a LIMIT",
                     WEB_SQL_MS);
        else
            snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        *status = clk.expired ? 422 : 400;
        sqlite3_finalize(st);
        table_free(t);
        return -1;
    }
    sqlite3_finalize(st);
    *out = t;
    return 0;
}

void api_sql(sqlite3 *db, const WebRequest *q, WebResponse *r)
{
    const char *sql = q->arg(q->ctx, "q");
    const char *fmt = q->arg(q->ctx, "format");
    int csv = fmt && strcmp(fmt, "csv") == 0;
    if (fmt && !csv && strcmp(fmt, "json") != 0) {
        web_error(r, 1, 400, "format '%.20s': expected json or csv", fmt);
        return;
    }
    Table *t;
    int truncated, status;
    char err[1024];
    if (web_sql_run(db, sql, &t, &truncated, err, sizeof err, &status) < 0) {
        web_error(r, 1, status, "%s", err);
        return;
    }
    Out o;
    if (out_open(&o) < 0) { table_free(t); web_error(r, 1, 500, "out of memory"); return; }
    table_print(t, csv ? TABLE_CSV : TABLE_JSON, o.f);
    table_free(t);
    out_finish(&o, r, 200, csv ? "text/csv; charset=utf-8" : "application/json");
    if (csv) snprintf(r->disposition, sizeof r->disposition, "attachment; filename=\"segx-query.csv\"");
}

// ---- /api/e/NAME/... --------------------------------------------------------------------------

// /api/e/NAME/cells (the cells report as columns) and /api/e/NAME/curves (one series per cell
// group), a page of ?offset= / ?limit= rows or series; web/README.md has the format.
static void api_columns(sqlite3 *db, const char *name, long long id, const char *what, const WebRequest *q,
                        WebResponse *r)
{
    char err[1024] = "";
    size_t off, lim;
    int cells = strcmp(what, "cells") == 0;
    if (page_args(q, cells ? WEB_CELLS_LIMIT : WEB_SERIES_LIMIT, &off, &lim, err, sizeof err) < 0) {
        web_error(r, 1, 400, "%s", err);
        return;
    }
    const char *model = q->arg(q->ctx, "model");
    json_t *j;
    if (cells) {
        json_t *rows = web_report(db, "cells", name, NULL, err, sizeof err);
        if (!rows) { web_error(r, 1, 500, "%s", err); return; }
        j = web_cells_columns(rows, q->arg(q->ctx, "columns"), model, off, lim, err, sizeof err);
        json_decref(rows);
        if (!j) { web_error(r, 1, 400, "%s", err); return; }
    } else {
        const char *m = q->arg(q->ctx, "metric");
        json_t *c = web_curves_json(db, id, m ? m : "miou", model, err, sizeof err);
        if (!c) { web_error(r, 1, strstr(err, "metric '") == err ? 400 : 500, "%s", err); return; }
        j = web_curves_series(c, off, lim);
        json_decref(c);
    }
    json_answer(r, j);
}

void api_experiment(sqlite3 *db, const char *name, const char *what, const char *rest, const WebRequest *q,
                    WebResponse *r)
{
    char err[1024] = "";
    long long id = web_experiment_id(db, name);
    if (!*what) {   // the experiment as the list shows it
        json_t *all = web_experiments_json(db, err, sizeof err);
        if (!all) { web_error(r, 1, 500, "%s", err); return; }
        size_t i;
        json_t *e;
        json_array_foreach(all, i, e) if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0) {
            json_t *one = json_incref(e);
            json_decref(all);
            web_json_response(r, 200, one);
            return;
        }
        json_decref(all);
        web_error(r, 1, 404, "no experiment named '%s' in the database", name);
        return;
    }
    if (*rest && strcmp(what, "cell") != 0) { web_error(r, 1, 404, "no such endpoint: %s/%s", what, rest); return; }
    if (strcmp(what, "cells") == 0 || strcmp(what, "curves") == 0) {
        const char *fmt = q->arg(q->ctx, "format");
        if (fmt && strcmp(fmt, "rows") != 0 && strcmp(fmt, "columns") != 0) {
            web_error(r, 1, 400, "format '%.40s': expected columns (the default) or rows", fmt);
            return;
        }
        if (strcmp(what, "curves") == 0 || !fmt || strcmp(fmt, "columns") == 0) {
            api_columns(db, name, id, what, q, r);
            return;
        }
    }
    if (report_kind_valid(what)) {
        const char *target = q->arg(q->ctx, "target");
        const char *model = q->arg(q->ctx, "model");
        int rc = web_report_answer(db, what, name, target, r, err, sizeof err);   // the CLI's bytes
        if (rc < 0) { web_error(r, 1, rc == -2 ? 400 : 500, "%s", err); return; }
        if (!model) return;
        // the rows of one model (a big study's page); not the CLI's bytes then
        json_t *rows = json_loadb(r->body, r->len, 0, NULL);
        web_response_free(r);
        if (!rows) { web_error(r, 1, 500, "report %s: unreadable JSON", what); return; }
        for (size_t i = json_array_size(rows); i-- > 0;) {
            const char *v = json_string_value(json_object_get(json_array_get(rows, i), "model"));
            if (!v || strcmp(v, model) != 0) json_array_remove(rows, i);
        }
        web_json_response(r, 200, rows);
        return;
    }
    json_t *j = NULL;
    int bad = 400;
    if (strcmp(what, "scaling-errors") == 0) {
        j = web_scaling_errors_json(db, id, err, sizeof err);
        const char *model = q->arg(q->ctx, "model");
        for (size_t i = json_array_size(j); model && i-- > 0;) {
            const char *v = json_string_value(json_object_get(json_array_get(j, i), "model"));
            if (!v || strcmp(v, model) != 0) json_array_remove(j, i);
        }
        bad = 500;
    } else if (strcmp(what, "cell") == 0) {
        j = web_cell_json(db, id, rest, err, sizeof err);
        bad = strstr(err, "database:") ? 500 : 404;
    } else {
        web_error(r, 1, 404, "no such endpoint: /api/e/%s/%s (expected cells, accuracy, speedup, cost, "
                             "time-to-target, curves, scaling-errors or cell/KEY)", name, what);
        return;
    }
    if (!j) { web_error(r, 1, bad, "%s", err); return; }
    web_json_response(r, 200, j);
    r->no_cache = strcmp(what, "cell") == 0;   // its logs change without the DB
}
