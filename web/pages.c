// web/pages.c — the dashboard's HTML pages. Tables are rendered here from the reports' JSON
// (so a page shows exactly `segx report`'s numbers: rounded in the text, exact in data-v);
// charts are drawn in the browser by web/static/app.js from the /api/ JSON. Every value from
// the DB goes through web_html_escape.
#include "web/web_impl.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const states[] = {"planned", "submitted", "pending", "running", "completed", "failed",
                                     "cancelled", "timeout", "preempted", "out-of-memory", "node-fail",
                                     "unknown", NULL};

static int state_active(const char *s)
{
    return s && (strcmp(s, "submitted") == 0 || strcmp(s, "pending") == 0 || strcmp(s, "running") == 0);
}

// Percent-encodes s for a query value.
static void url_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~')
            fputc(c, f);
        else
            fprintf(f, "%%%02X", c);
    }
}

static void page_head(FILE *f, const char *title, const char *exp, const char *tab, int refresh)
{
    fputs("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
          "<meta name=viewport content=\"width=device-width, initial-scale=1\">", f);
    if (refresh) fprintf(f, "<meta http-equiv=refresh content=\"%d\">", refresh);
    fputs("<title>segx · ", f);
    web_html_escape(f, title);
    fputs("</title><link rel=stylesheet href=\"/static/style.css\"></head>\n<body><nav><a class=brand href=\"/\">segx</a>", f);
    if (exp) {
        static const char *const tabs[][2] = {{"", "cells"}, {"scaling", "scaling"}, {"accuracy", "accuracy"},
                                              {"curves", "curves"}, {"cost", "cost"}};
        fputs(" <span class=sep>›</span> <a href=\"/e/", f);
        web_html_escape(f, exp);
        fputs("\">", f);
        web_html_escape(f, exp);
        fputs("</a> <span class=tabs>", f);
        for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
            fprintf(f, "<a%s href=\"/e/", strcmp(tab, tabs[i][0]) == 0 ? " class=on" : "");
            web_html_escape(f, exp);
            fprintf(f, "%s%s\">%s</a>", tabs[i][0][0] ? "/" : "", tabs[i][0], tabs[i][1]);
        }
        fputs("</span>", f);
    }
    fprintf(f, "<a class=\"sqllink%s\" href=\"/sql\">SQL</a></nav>\n<main>", strcmp(tab, "sql") == 0 ? " on" : "");
}

static void page_foot(FILE *f, int charts)
{
    fputs("</main>\n", f);
    if (charts) fputs("<script src=\"/vendor/vega.js\"></script><script src=\"/static/app.js\"></script>\n", f);
    fputs("</body></html>\n", f);
}

static void fmt_time(FILE *f, double t)
{
    if (!(t > 0)) { fputs("—", f); return; }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    fputs(buf, f);
}

static void fmt_duration(FILE *f, double s)
{
    if (!isfinite(s) || s < 0) { fputs("—", f); return; }
    long t = lround(s);
    if (t >= 3600) fprintf(f, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) fprintf(f, "%ldm%02lds", t / 60, t % 60);
    else fprintf(f, "%lds", t);
}

// One table cell from a JSON value: numbers rounded to decimals in the text, exact in data-v.
static void json_td(FILE *f, const char *col, json_t *v, int decimals)
{
    if (json_is_integer(v) && decimals > 0) {   // a real column whose value printed as an integer ("1")
        fprintf(f, "<td class=num data-col=\"%s\" data-v=\"%lld\">%.*f</td>", col, (long long)json_integer_value(v),
                decimals, (double)json_integer_value(v));
    } else if (json_is_integer(v)) {
        fprintf(f, "<td class=num data-col=\"%s\" data-v=\"%lld\">%lld</td>", col, (long long)json_integer_value(v),
                (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        char exact[64];
        table_format_real(json_real_value(v), exact, sizeof exact);
        fprintf(f, "<td class=num data-col=\"%s\" data-v=\"%s\">%.*f</td>", col, exact, decimals, json_real_value(v));
    } else if (json_is_string(v)) {
        fprintf(f, "<td data-col=\"%s\">", col);
        web_html_escape(f, json_string_value(v));
        fputs("</td>", f);
    } else {
        fprintf(f, "<td class=null data-col=\"%s\"></td>", col);
    }
}

typedef struct {
    const char *key;
    int decimals;
    int cell_link;   // the value is a cell key: link to its page, show 12 characters
} TCol;

// A report's rows as a table with the given columns (all of a row's keys when cols is NULL).
static void report_table(FILE *f, const char *id, json_t *rows, const TCol *cols, const char *exp)
{
    fprintf(f, "<div class=scroll><table class=report id=\"%s\"><thead><tr>", id);
    json_t *first = json_array_get(rows, 0);
    if (cols) {
        for (const TCol *c = cols; c->key; c++) fprintf(f, "<th>%s</th>", c->key);
    } else if (first) {
        const char *k;
        json_t *v;
        json_object_foreach(first, k, v) {
            fputs("<th>", f);
            web_html_escape(f, k);
            fputs("</th>", f);
        }
    }
    fputs("</tr></thead><tbody>\n", f);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        fputs("<tr>", f);
        if (!cols) {
            const char *k;
            json_t *v;
            json_object_foreach(row, k, v) {
                fputs("<td>", f);
                if (json_is_string(v)) web_html_escape(f, json_string_value(v));
                else if (!json_is_null(v)) {
                    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
                    web_html_escape(f, s);
                    free(s);
                }
                fputs("</td>", f);
            }
        }
        for (const TCol *c = cols; c && c->key; c++) {
            json_t *v = json_object_get(row, c->key);
            if (c->cell_link && json_is_string(v)) {
                const char *key = json_string_value(v);
                fprintf(f, "<td data-col=\"%s\" data-v=\"", c->key);
                web_html_escape(f, key);
                fputs("\"><a href=\"/e/", f);
                web_html_escape(f, exp);
                fputs("/cell/", f);
                web_html_escape(f, key);
                fprintf(f, "\">%.12s</a></td>", key);   // keys are hex
            } else {
                json_td(f, c->key, v, c->decimals);
            }
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table></div>\n", f);
    if (json_array_size(rows) == 0) fputs("<p class=empty>No rows yet.</p>\n", f);
}

static void state_bar(FILE *f, json_t *counts, long long total)
{
    fputs("<div class=bar>", f);
    for (int i = 0; states[i]; i++) {
        json_t *n = json_object_get(counts, states[i]);
        if (!json_is_integer(n) || total <= 0) continue;
        fprintf(f, "<span class=\"st-%s\" style=\"width:%.2f%%\" title=\"%s: %lld\"></span>", states[i],
                100.0 * (double)json_integer_value(n) / (double)total, states[i], (long long)json_integer_value(n));
    }
    fputs("</div><div class=counts>", f);
    int first = 1;
    for (int i = 0; states[i]; i++) {
        json_t *n = json_object_get(counts, states[i]);
        if (!json_is_integer(n)) continue;
        fprintf(f, "%s<span class=\"dot st-%s\"></span><span data-state=\"%s\">%lld</span> %s", first ? "" : " · ",
                states[i], states[i], (long long)json_integer_value(n), states[i]);
        first = 0;
    }
    fputs("</div>", f);
}

static void page_oom(WebResponse *r) { web_error(r, 0, 500, "out of memory"); }

// ---- / ----------------------------------------------------------------------------------------

void page_experiments(sqlite3 *db, WebResponse *r)
{
    char err[1024];
    json_t *a = web_experiments_json(db, err, sizeof err);
    if (!a) { web_error(r, 0, 500, "%s", err); return; }
    Out o;
    if (out_open(&o) < 0) { json_decref(a); page_oom(r); return; }
    FILE *f = o.f;
    page_head(f, "experiments", NULL, "", 0);
    fputs("<h1>Experiments</h1>\n<div class=scroll><table class=report id=experiments><thead><tr><th>experiment</th>"
          "<th>cells</th><th>by state</th><th>GPU-hours used</th><th>planned</th><th>last change</th></tr></thead><tbody>\n", f);
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        long long cells = json_integer_value(json_object_get(e, "cells"));
        fputs("<tr><td data-col=experiment><a href=\"/e/", f);
        web_html_escape(f, name);
        fputs("\">", f);
        web_html_escape(f, name);
        fputs("</a></td>", f);
        json_td(f, "cells", json_object_get(e, "cells"), 0);
        fputs("<td class=states>", f);
        state_bar(f, json_object_get(e, "states"), cells);
        fputs("</td>", f);
        json_td(f, "gpu_hours", json_object_get(e, "gpu_hours"), 3);
        json_td(f, "est_gpu_hours", json_object_get(e, "est_gpu_hours"), 3);
        fputs("<td>", f);
        fmt_time(f, json_number_value(json_object_get(e, "last_change")));
        fputs("</td></tr>\n", f);
    }
    fputs("</tbody></table></div>\n", f);
    if (json_array_size(a) == 0)
        fputs("<p class=empty>No experiments in this database yet: <code>segx plan SPEC</code> adds one.</p>\n", f);
    json_decref(a);
    page_foot(f, 0);
    out_finish(&o, r, 200, "text/html; charset=utf-8");
}

// ---- /e/NAME: the cell grid -------------------------------------------------------------------

// The value's text for comparing with a filter (numbers as integers or shortest reals).
static void value_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) table_format_real(json_real_value(v), buf, len);
    else if (json_is_true(v) || json_is_false(v)) snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_object(v) || json_is_array(v)) {   // a structured parameter: its compact JSON
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(buf, len, "%s", s ? s : "");
        free(s);
    } else buf[0] = 0;
}

static int cmp_values(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    if (json_is_number(x) && json_is_number(y)) {
        double d = json_number_value(x) - json_number_value(y);
        return d < 0 ? -1 : d > 0;
    }
    char p[512], q[512];
    value_text(x, p, sizeof p);
    value_text(y, q, sizeof q);
    return strcmp(p, q);
}

// Distinct values of key over rows, sorted (borrowed references).
static size_t distinct(json_t *rows, const char *key, json_t **out, size_t max)
{
    size_t n = 0, i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *v = json_object_get(row, key);
        if (!v || json_is_null(v)) continue;
        size_t k;
        for (k = 0; k < n; k++)
            if (json_equal(out[k], v)) break;
        if (k == n && n < max) out[n++] = v;
    }
    qsort(out, n, sizeof *out, cmp_values);
    return n;
}

// ---- filters: one per axis of the experiment ----------------------------------------------------
// The axes are the cells' parameters (params, the planned grid: model, gpus, optimizer, lr, seed,
// whatever the spec varies) that take more than one value, and the state.
#define WEB_AXES 64
typedef struct {
    const char *name;   // borrowed from the rows' objects
    json_t *vals[256];  // distinct values, sorted (borrowed)
    size_t n;
} Axis;

// Per row of cells (the cells report), an object of the cell's parameters plus its state.
static json_t *axis_rows(sqlite3 *db, long long exp_id, json_t *cells)
{
    json_t *byk = json_object(), *out = json_array();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT key, params FROM cells WHERE experiment_id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, exp_id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0), *p = (const char *)sqlite3_column_text(st, 1);
            json_t *o = p ? json_loads(p, 0, NULL) : NULL;
            if (k && json_is_object(o)) json_object_set_new(byk, k, o);
            else json_decref(o);
        }
        sqlite3_finalize(st);
    }
    size_t i;
    json_t *row;
    json_array_foreach(cells, i, row) {
        json_t *o = json_object(), *p = json_object_get(byk, json_string_value(json_object_get(row, "cell")) ?
                                                              json_string_value(json_object_get(row, "cell")) : "");
        if (p) json_object_update(o, p);
        json_t *stv = json_object_get(row, "state");
        if (stv) json_object_set(o, "state", stv);
        json_array_append_new(out, o);
    }
    json_decref(byk);
    return out;
}

// The axes of the rows: each key with two or more values (or filtered on), state last.
static size_t find_axes(json_t *rows, const WebRequest *q, Axis *ax, size_t max)
{
    size_t n = 0, i;
    json_t *row;
    const char *state = NULL;
    json_array_foreach(rows, i, row) {
        const char *k;
        json_t *v;
        json_object_foreach(row, k, v) {
            if (strcmp(k, "state") == 0) { state = k; continue; }
            if (strcmp(k, "token") == 0 || strlen(k) > 64) continue;   // (the server's own query argument)
            size_t a;
            for (a = 0; a < n; a++)
                if (strcmp(ax[a].name, k) == 0) break;
            if (a == n && n + 1 < max) ax[n++].name = k;
        }
    }
    if (state) ax[n++].name = state;
    size_t kept = 0;
    for (size_t a = 0; a < n; a++) {
        ax[a].n = distinct(rows, ax[a].name, ax[a].vals, 256);
        const char *want = q->arg(q->ctx, ax[a].name);
        if (ax[a].n >= 2 || (want && *want)) ax[kept++] = ax[a];
    }
    return kept;
}

static int row_matches(json_t *row, const WebRequest *q, const Axis *ax, size_t nax)
{
    for (size_t a = 0; a < nax; a++) {
        const char *want = q->arg(q->ctx, ax[a].name);
        if (!want || !*want) continue;
        char have[512];
        value_text(json_object_get(row, ax[a].name), have, sizeof have);
        if (strcmp(have, want) != 0) return 0;
    }
    return 1;
}

typedef struct {
    char key[80];
    double frac, eta;   // progress 0..1 and seconds left, NAN if unknown
} Progress;

// Progress of the active cells: the latest attempt's progress.json (epoch/epochs, eta_s), else
// the elapsed time over the fraction done.
static size_t active_progress(sqlite3 *db, long long exp_id, Progress **out)
{
    *out = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT c.key, a.run_dir, a.start_time FROM cells c JOIN attempts a ON a.cell_id = c.id"
                               " AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE cell_id = c.id)"
                               " WHERE c.experiment_id = ?1 AND c.state IN ('submitted', 'pending', 'running')",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, exp_id);
    size_t n = 0, cap = 0;
    Progress *p = NULL;
    time_t now = time(NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            Progress *np = realloc(p, (cap = cap ? cap * 2 : 16) * sizeof *np);
            if (!np) break;
            p = np;
        }
        Progress *x = &p[n++];
        snprintf(x->key, sizeof x->key, "%s", (const char *)sqlite3_column_text(st, 0));
        x->frac = x->eta = NAN;
        const char *dir = (const char *)sqlite3_column_text(st, 1);
        char path[4200];
        snprintf(path, sizeof path, "%s/progress.json", dir ? dir : "");
        json_t *j = dir ? json_load_file(path, 0, NULL) : NULL;
        double ep = json_number_value(json_object_get(j, "epoch")), eps = json_number_value(json_object_get(j, "epochs"));
        if (eps > 0) x->frac = ep / eps;
        if (json_is_number(json_object_get(j, "eta_s"))) x->eta = json_number_value(json_object_get(j, "eta_s"));
        double start = sqlite3_column_double(st, 2);
        if (!isfinite(x->eta) && x->frac > 0 && start > 0) x->eta = ((double)now - start) * (1 - x->frac) / x->frac;
        json_decref(j);
    }
    sqlite3_finalize(st);
    *out = p;
    return n;
}

static const Progress *find_progress(const Progress *p, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, key) == 0) return &p[i];
    return NULL;
}

static void filters_form(FILE *f, const char *exp, const Axis *ax, size_t nax, const WebRequest *q)
{
    fputs("<form class=filters method=get action=\"/e/", f);
    web_html_escape(f, exp);
    fputs("\">", f);
    for (size_t a = 0; a < nax; a++) {
        const char *want = q->arg(q->ctx, ax[a].name);
        fputs("<label>", f);
        web_html_escape(f, ax[a].name);
        fputs(" <select name=\"", f);
        web_html_escape(f, ax[a].name);
        fputs("\"><option value=\"\">all</option>", f);
        for (size_t i = 0; i < ax[a].n; i++) {
            char t[512];
            value_text(ax[a].vals[i], t, sizeof t);
            fputs("<option value=\"", f);
            web_html_escape(f, t);
            fprintf(f, "\"%s>", want && strcmp(want, t) == 0 ? " selected" : "");
            web_html_escape(f, t);
            fputs("</option>", f);
        }
        fputs("</select></label> ", f);
    }
    fputs("<button>filter</button></form>\n", f);
}

// The filters set on the page other than a grid place's own keys, as "&k=v..." (malloc'd).
static char *other_filters(const Axis *ax, size_t nax, const WebRequest *q)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    for (size_t a = 0; a < nax; a++) {
        const char *want = q->arg(q->ctx, ax[a].name);
        if (!want || !*want || strcmp(ax[a].name, "model") == 0 || strcmp(ax[a].name, "gpu_type") == 0 ||
            strcmp(ax[a].name, "gpus") == 0 || strcmp(ax[a].name, "batch_per_gpu") == 0)
            continue;
        fputc('&', f);
        url_escape(f, ax[a].name);
        fputc('=', f);
        url_escape(f, want);
    }
    fclose(f);
    return buf;
}

typedef struct {
    size_t m, t, g, b, i;   // the cell's row (model, GPU type), column (GPUs, batch) and place in rows
} GridPos;

static int cmp_grid(const void *a, const void *b)
{
    const GridPos *x = a, *y = b;
    size_t kx[5] = {x->m, x->t, x->g, x->b, x->i}, ky[5] = {y->m, y->t, y->g, y->b, y->i};
    for (int k = 0; k < 5; k++)
        if (kx[k] != ky[k]) return kx[k] < ky[k] ? -1 : 1;
    return 0;
}

// The place of v (NULL: JSON null) among vals[0..n), n if absent.
static size_t index_of(json_t *const *vals, size_t n, json_t *v)
{
    for (size_t i = 0; i < n; i++)
        if (v ? json_equal(vals[i], v) : json_is_null(vals[i])) return i;
    return n;
}

static void grid_box(FILE *f, const char *exp, json_t *row, const Progress *prog, size_t nprog)
{
    const char *key = json_string_value(json_object_get(row, "cell"));
    const char *st = json_string_value(json_object_get(row, "state"));
    char seed[64];
    value_text(json_object_get(row, "seed"), seed, sizeof seed);
    const Progress *p = key ? find_progress(prog, nprog, key) : NULL;
    fputs("<a class=\"box st-", f);
    web_html_escape(f, st);
    fputs("\" href=\"/e/", f);
    web_html_escape(f, exp);
    fputs("/cell/", f);
    web_html_escape(f, key);
    fputs("\" title=\"", f);
    web_html_escape(f, key);
    fputs(" · seed ", f);
    web_html_escape(f, seed);
    fputs(" · ", f);
    web_html_escape(f, st);
    if (p && isfinite(p->frac)) fprintf(f, " · %.0f%%", 100 * p->frac);
    if (p && isfinite(p->eta)) { fputs(" · ETA ", f); fmt_duration(f, p->eta); }
    fputs("\">", f);
    web_html_escape(f, seed[0] ? seed : "·");
    if (p && isfinite(p->frac)) fprintf(f, "<i style=\"width:%.0f%%\"></i>", 100 * p->frac);
    fputs("</a>", f);
}

// One place of a big grid (its cells rows[pos[0..n).i]): a bar of its cells by state, the
// count, and a link to the page filtered to it (there, one box per cell). filt: the page's
// other filters as "&k=v..." (URL-escaped), kept in the link.
static void grid_place(FILE *f, const char *exp, const char *filt, json_t *rows, const GridPos *pos, size_t n,
                       json_t *const place[4], const Progress *prog, size_t nprog)
{
    static const char *const keys[] = {"model", "gpu_type", "gpus", "batch_per_gpu"};
    size_t counts[sizeof states / sizeof states[0]] = {0}, nprogress = 0;
    double frac = 0;
    for (size_t k = 0; k < n; k++) {
        json_t *row = json_array_get(rows, pos[k].i);
        const char *st = json_string_value(json_object_get(row, "state"));
        for (size_t s = 0; st && states[s]; s++)
            if (strcmp(st, states[s]) == 0) counts[s]++;
        const char *key = json_string_value(json_object_get(row, "cell"));
        const Progress *p = key ? find_progress(prog, nprog, key) : NULL;
        if (p && isfinite(p->frac)) { frac += p->frac; nprogress++; }
    }
    fputs("<a class=place href=\"/e/", f);
    web_html_escape(f, exp);
    for (int a = 0; a < 4; a++) {
        if (!place[a] || json_is_null(place[a])) continue;
        char t[512];
        value_text(place[a], t, sizeof t);
        fprintf(f, "%s%s=", a ? "&amp;" : "?", keys[a]);
        url_escape(f, t);
    }
    web_html_escape(f, filt);
    fprintf(f, "\" title=\"%zu cell%s:", n, n == 1 ? "" : "s");
    for (size_t s = 0; states[s]; s++)
        if (counts[s]) fprintf(f, " %zu %s", counts[s], states[s]);
    if (nprogress) fprintf(f, ", mean progress of the running %.0f%%", 100 * frac / (double)nprogress);
    fputs("\">", f);
    for (size_t s = 0; states[s]; s++)
        if (counts[s]) fprintf(f, "<i class=st-%s style=\"flex:%zu\"></i>", states[s], counts[s]);
    fprintf(f, "<b>%zu</b></a>", n);
}

static void cell_grid(FILE *f, const char *exp, const char *filt, json_t *rows, const Progress *prog, size_t nprog)
{
    // Rows: (model, GPU type); columns: (GPUs, batch per GPU); boxes: the cells (seeds, ...).
    // Each cell's place is found once and the cells sorted by it (a 10,000-cell study's grid
    // was seconds of nested scans).
    json_t *models[256], *types[256], *gpus[256], *batches[256];
    size_t nm = distinct(rows, "model", models, 256), nt = distinct(rows, "gpu_type", types, 256);
    size_t ng = distinct(rows, "gpus", gpus, 256), nb = distinct(rows, "batch_per_gpu", batches, 256);
    int no_batch = nb == 0;
    if (no_batch) batches[nb++] = json_null();
    GridPos *pos = malloc((json_array_size(rows) + 1) * sizeof *pos);
    size_t np = 0, i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        if (!pos) break;
        json_t *bv = json_object_get(row, "batch_per_gpu");
        GridPos p = {index_of(models, nm, json_object_get(row, "model")),
                     index_of(types, nt, json_object_get(row, "gpu_type")),
                     index_of(gpus, ng, json_object_get(row, "gpus")),
                     no_batch ? 0 : index_of(batches, nb, bv && !json_is_null(bv) ? bv : NULL), i};
        if (p.m < nm && p.t < nt && p.g < ng && p.b < nb) pos[np++] = p;   // (no model / GPU type: not in the grid)
    }
    if (pos) qsort(pos, np, sizeof *pos, cmp_grid);
    if (np > WEB_GRID_BOXES)
        fprintf(f, "<p class=note>%zu cells: each place shows its cells by state (hover for the counts); "
                   "click one, or filter, to see a box per cell (up to %d).</p>\n", np, WEB_GRID_BOXES);
    fprintf(f, "<div class=scroll><table class=\"grid%s\" id=grid><thead><tr><th>model</th><th>GPU type</th>",
            np > WEB_GRID_BOXES ? " places" : "");
    for (size_t g = 0; g < ng; g++)
        for (size_t b = 0; b < nb; b++) {
            fprintf(f, "<th>%lld GPU%s", (long long)json_integer_value(gpus[g]), json_integer_value(gpus[g]) == 1 ? "" : "s");
            if (!json_is_null(batches[b])) fprintf(f, "<br><small>batch/GPU %lld</small>", (long long)json_integer_value(batches[b]));
            fputs("</th>", f);
        }
    fputs("</tr></thead><tbody>\n", f);
    for (size_t k = 0; k < np;) {   // one table row per (model, GPU type) that has cells
        size_t m = pos[k].m, t = pos[k].t;
        fputs("<tr><th>", f);
        web_html_escape(f, json_string_value(models[m]));
        fputs("</th><th>", f);
        web_html_escape(f, json_string_value(types[t]));
        fputs("</th>", f);
        for (size_t g = 0; g < ng; g++)
            for (size_t b = 0; b < nb; b++) {
                fputs("<td>", f);
                size_t k0 = k;
                while (k < np && pos[k].m == m && pos[k].t == t && pos[k].g == g && pos[k].b == b) k++;
                json_t *place[4] = {models[m], types[t], gpus[g], batches[b]};
                if (np > WEB_GRID_BOXES && k > k0) grid_place(f, exp, filt, rows, pos + k0, k - k0, place, prog, nprog);
                for (size_t j = k0; np <= WEB_GRID_BOXES && j < k; j++)
                    grid_box(f, exp, json_array_get(rows, pos[j].i), prog, nprog);
                fputs("</td>", f);
            }
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table></div>\n", f);
    free(pos);
}

static const TCol cells_cols[] = {
    {"cell", 0, 1}, {"model", 0, 0}, {"gpu_type", 0, 0}, {"gpus", 0, 0}, {"nodes", 0, 0}, {"batch_per_gpu", 0, 0},
    {"global_batch", 0, 0}, {"seed", 0, 0}, {"state", 0, 0}, {"attempts", 0, 0}, {"epoch", 0, 0},
    {"miou", 4, 0}, {"pixel_acc", 4, 0}, {"top1", 4, 0}, {"val_loss", 4, 0}, {"images_per_s", 1, 0},
    {"wall_s", 1, 0}, {"gpu_hours", 3, 0}, {"reason", 0, 0}, {NULL, 0, 0}};

static void page_cells(FILE *f, sqlite3 *db, const char *exp, const WebRequest *q, json_t *cells, int *refresh)
{
    long long id = web_experiment_id(db, exp);
    Progress *prog;
    size_t nprog = active_progress(db, id, &prog);
    json_t *shown = json_array(), *axrows = axis_rows(db, id, cells);
    Axis *ax = calloc(WEB_AXES, sizeof *ax);
    size_t nax = ax ? find_axes(axrows, q, ax, WEB_AXES) : 0;
    size_t i;
    json_t *row;
    long long total = (long long)json_array_size(cells), done = 0;
    json_t *counts = json_object();
    json_array_foreach(cells, i, row) {
        const char *st = json_string_value(json_object_get(row, "state"));
        if (st) {
            json_t *c = json_object_get(counts, st);
            json_object_set_new(counts, st, json_integer(c ? json_integer_value(c) + 1 : 1));
            if (strcmp(st, "completed") == 0) done++;
            if (state_active(st)) *refresh = 10;
        }
        if (row_matches(json_array_get(axrows, i), q, ax, nax)) json_array_append(shown, row);
    }
    double eta = NAN;
    for (size_t k = 0; k < nprog; k++)
        if (isfinite(prog[k].eta) && !(prog[k].eta <= eta)) eta = prog[k].eta;
    fputs("<h1>", f);
    web_html_escape(f, exp);
    fprintf(f, "</h1>\n<div class=summary><div><b data-v=\"%lld\" id=ncells>%lld</b> cells</div><div class=states>", total, total);
    state_bar(f, counts, total);
    fprintf(f, "</div><div>progress <b id=progress>%.0f%%</b> completed", total ? 100.0 * (double)done / (double)total : 0.0);
    if (isfinite(eta)) { fputs(" · ETA <b>", f); fmt_duration(f, eta); fputs("</b>", f); }
    if (*refresh) fputs(" · <span class=live>refreshing every 10 s while cells run</span>", f);
    fputs("</div></div>\n", f);
    json_decref(counts);
    filters_form(f, exp, ax, nax, q);
    char *filt = other_filters(ax, nax, q);   // (before axrows goes: the axes' names are its keys)
    json_decref(axrows);
    fprintf(f, "<p class=note>%zu of %lld cells shown.</p>\n", json_array_size(shown), total);
    cell_grid(f, exp, filt ? filt : "", shown, prog, nprog);
    free(filt);
    fputs("<h2>Cells</h2>\n", f);
    if (json_array_size(shown) > WEB_TABLE_ROWS) {   // a 10,000-cell table is megabytes: filter to see the rest
        fprintf(f, "<p class=note>The first %d of %zu cells; filter above, or see /api/e/NAME/cells.</p>\n",
                WEB_TABLE_ROWS, json_array_size(shown));
        while (json_array_size(shown) > WEB_TABLE_ROWS) json_array_remove(shown, json_array_size(shown) - 1);
    }
    report_table(f, "report-cells", shown, cells_cols, exp);
    json_decref(shown);
    free(ax);
    free(prog);
}

// ---- /e/NAME/{scaling,accuracy,curves,cost} ---------------------------------------------------

static const TCol speedup_cols[] = {
    {"model", 0, 0}, {"gpu_type", 0, 0}, {"scaling", 0, 0}, {"batch_per_gpu", 0, 0}, {"global_batch", 0, 0},
    {"gpus", 0, 0}, {"nodes", 0, 0}, {"n", 0, 0}, {"images_per_s", 1, 0}, {"speedup_throughput", 2, 0},
    {"efficiency_throughput", 3, 0}, {"epoch_s", 2, 0}, {"speedup_time", 2, 0}, {"efficiency_time", 3, 0},
    {NULL, 0, 0}};
static const TCol accuracy_cols[] = {
    {"model", 0, 0}, {"gpu_type", 0, 0}, {"gpus", 0, 0}, {"nodes", 0, 0}, {"batch_per_gpu", 0, 0},
    {"global_batch", 0, 0}, {"optimizer", 0, 0}, {"lr", 5, 0}, {"cells", 0, 0}, {"n", 0, 0},
    {"miou_mean", 4, 0}, {"miou_std", 4, 0}, {"miou_n", 0, 0}, {"pixel_acc_mean", 4, 0}, {"pixel_acc_std", 4, 0},
    {"pixel_acc_n", 0, 0}, {"top1_mean", 4, 0}, {"top1_std", 4, 0}, {"top1_n", 0, 0}, {"val_loss_mean", 4, 0},
    {"val_loss_std", 4, 0}, {"val_loss_n", 0, 0}, {NULL, 0, 0}};
static const TCol cost_cols[] = {
    {"model", 0, 0}, {"gpu_type", 0, 0}, {"gpus", 0, 0}, {"batch_per_gpu", 0, 0}, {"global_batch", 0, 0},
    {"cells", 0, 0}, {"completed", 0, 0}, {"attempts", 0, 0}, {"gpu_hours", 3, 0}, {"est_gpu_hours", 3, 0},
    {NULL, 0, 0}};

// The metric the charts show: ?metric= if valid, else the first of miou, top1, pixel_acc,
// val_loss that has a value in the report rows (key suffix: "" for cells, "_mean" for groups).
static const char *pick_metric(const WebRequest *q, json_t *rows, const char *suffix)
{
    const char *m = q->arg(q->ctx, "metric");
    if (m && web_metric_valid(m)) return m;
    static const char *const order[] = {"miou", "top1", "pixel_acc", "val_loss", NULL};
    for (int k = 0; order[k]; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", order[k], suffix);
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) if (json_is_number(json_object_get(row, key))) return order[k];
    }
    return "miou";
}

static void metric_links(FILE *f, const char *exp, const char *tab, const char *metric)
{
    static const char *const ms[] = {"miou", "top1", "pixel_acc", "val_loss", "train_loss", NULL};
    fputs("<p class=metrics>metric:", f);
    for (int k = 0; ms[k]; k++) {
        if (strcmp(tab, "curves") != 0 && strcmp(ms[k], "train_loss") == 0) continue;
        fprintf(f, " <a%s href=\"/e/", strcmp(ms[k], metric) == 0 ? " class=on" : "");
        web_html_escape(f, exp);
        fprintf(f, "/%s?metric=%s\">%s</a>", tab, ms[k], ms[k]);
    }
    fputs("</p>\n", f);
}

static void chart_div(FILE *f, const char *kind, const char *exp, const char *metric, const char *extra)
{
    fprintf(f, "<div class=chart id=\"chart-%s\" data-kind=\"%s\" data-experiment=\"", kind, kind);
    web_html_escape(f, exp);
    fputs("\"", f);
    if (metric) fprintf(f, " data-metric=\"%s\"", metric);   // from a fixed list
    if (extra) fputs(extra, f);
    fputs("><p class=loading>drawing…</p></div>\n", f);
}

// A big study's scaling and curves pages show one model at a time (?model=, else the first):
// hundreds of series make one unreadable chart and a slow page. Returns the model (in rows) and
// keeps only its rows, or NULL (all shown) for a study with at most WEB_MODEL_ROWS rows.
#define WEB_MODEL_ROWS 200
static const char *one_model(json_t *rows, const WebRequest *q, FILE *f, const char *exp, const char *tab)
{
    const char *want = q->arg(q->ctx, "model");
    if (json_array_size(rows) <= WEB_MODEL_ROWS && !(want && *want)) return NULL;
    json_t *models[256];
    size_t n = distinct(rows, "model", models, 256);
    if (n == 0) return NULL;
    const char *m = json_string_value(models[0]);
    for (size_t i = 0; want && i < n; i++)
        if (json_is_string(models[i]) && strcmp(json_string_value(models[i]), want) == 0) m = want;
    fprintf(f, "<p class=note>%zu rows: showing model <b>", json_array_size(rows));
    web_html_escape(f, m);
    fputs("</b>; others:", f);
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(models[i]) || strcmp(json_string_value(models[i]), m) == 0) continue;
        fputs(" <a href=\"/e/", f);
        web_html_escape(f, exp);
        fprintf(f, "/%s?model=", tab);
        url_escape(f, json_string_value(models[i]));
        fputs("\">", f);
        web_html_escape(f, json_string_value(models[i]));
        fputs("</a>", f);
    }
    fputs("</p>\n", f);
    return m;
}

// rows without those of other models than m (m NULL: unchanged). m must not point into rows.
static void keep_model(json_t *rows, const char *m)
{
    for (size_t i = json_array_size(rows); m && i-- > 0;) {
        const char *v = json_string_value(json_object_get(json_array_get(rows, i), "model"));
        if (!v || strcmp(v, m) != 0) json_array_remove(rows, i);
    }
}

static void model_attr(char *buf, size_t len, const char *m)
{
    buf[0] = 0;
    if (!m) return;
    char *t = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&t, &n);
    if (!f) return;
    fputs(" data-model=\"", f);
    web_html_escape(f, m);
    fputs("\"", f);
    fclose(f);
    if (n < len) snprintf(buf, len, "%s", t);
    free(t);
}

// /e/NAME/cost after the page's head: the chart (cells' GPU-hours against the metric, the
// target ringed) and the cost report's table. 0, or -1 with the error answer in r.
static int page_cost(FILE *f, sqlite3 *db, long long id, const char *exp, const WebRequest *q, json_t *rows,
                     WebResponse *r)
{
    char err[1024];
    const char *metric = pick_metric(q, rows, "");
    json_t *cost = web_report(db, "cost", exp, NULL, err, sizeof err);
    if (!cost) { web_error(r, 0, 500, "%s", err); return -1; }
    char extra[160] = "";
    const char *tv = q->arg(q->ctx, "target");
    double target = NAN;
    if (tv && *tv) {
        char *end;
        target = strtod(tv, &end);
        if (end == tv || *end || !isfinite(target)) {
            json_decref(cost);
            web_error(r, 0, 400, "target '%.40s': expected a number, e.g. ?target=0.5", tv);
            return -1;
        }
    } else {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT value FROM targets WHERE experiment_id = ?1 AND metric = ?2", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_text(st, 2, metric, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) target = sqlite3_column_double(st, 0);
            sqlite3_finalize(st);
        }
    }
    if (isfinite(target)) {
        char t[48];
        table_format_real(target, t, sizeof t);
        snprintf(extra, sizeof extra, " data-target=\"%s\"", t);
    }
    page_head(f, "cost", exp, "cost", 0);
    fputs("<h1>Cost</h1>", f);
    metric_links(f, exp, "cost", metric);
    fprintf(f, "<p class=note>One point per cell: GPU-hours used against its final %s. ", metric);
    if (extra[0]) fputs("The cheapest cell that reached the target is ringed.</p>\n", f);
    else fputs("Add <code>?target=VALUE</code> (or eval.targets in the spec) to ring the cheapest cell that "
               "reaches it.</p>\n", f);
    chart_div(f, "cost", exp, metric, extra);
    fputs("<h2>segx report cost</h2>\n", f);
    if (json_array_size(cost) > WEB_TABLE_ROWS) {   // a big study's table took longer than its chart
        fprintf(f, "<p class=note>The first %d of %zu rows; all of them: <code>segx report cost</code> or "
                   "<a href=\"/api/e/", WEB_TABLE_ROWS, json_array_size(cost));
        web_html_escape(f, exp);
        fputs("/cost\">its JSON</a>.</p>\n", f);
        while (json_array_size(cost) > WEB_TABLE_ROWS) json_array_remove(cost, json_array_size(cost) - 1);
    }
    report_table(f, "report-cost", cost, cost_cols, exp);
    json_decref(cost);
    return 0;
}

void page_experiment(sqlite3 *db, const char *exp, const char *what, const char *rest, const WebRequest *q,
                     WebResponse *r)
{
    char err[1024];
    long long id = web_experiment_id(db, exp);
    const char *kind = !*what ? "cells" : strcmp(what, "scaling") == 0 ? "speedup"
                       : strcmp(what, "accuracy") == 0 ? "accuracy" : strcmp(what, "cost") == 0 ? "cells"
                       : strcmp(what, "curves") == 0 ? "accuracy" : NULL;
    if (strcmp(what, "cell") == 0) {
        json_t *c = web_cell_json(db, id, rest, err, sizeof err);
        if (!c) { web_error(r, 0, strstr(err, "database:") ? 500 : 404, "%s", err); return; }
        Out o;
        if (out_open(&o) < 0) { json_decref(c); page_oom(r); return; }
        FILE *f = o.f;
        page_head(f, json_string_value(json_object_get(c, "key")), exp, "cell", 0);
        fputs("<h1>cell <code>", f);
        web_html_escape(f, json_string_value(json_object_get(c, "key")));
        fputs("</code></h1>\n<h2>Parameters</h2><table class=kv id=params><tbody>", f);
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(c, "params"), k, v) {
            fputs("<tr><th>", f);
            web_html_escape(f, k);
            fputs("</th>", f);
            if (json_is_string(v) || json_is_number(v) || json_is_null(v)) json_td(f, "value", v, json_is_integer(v) ? 0 : 6);
            else {
                char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                fputs("<td>", f);
                web_html_escape(f, s);
                fputs("</td>", f);
                free(s);
            }
            fputs("</tr>", f);
        }
        fputs("<tr><th>state</th><td>", f);
        web_html_escape(f, json_string_value(json_object_get(c, "state")));
        fputs("</td></tr></tbody></table>\n<h2>Attempts</h2>\n", f);
        report_table(f, "attempts", json_object_get(c, "attempts"), NULL, exp);
        if (json_array_size(json_object_get(c, "eval_jobs"))) {
            fputs("<h2>Eval job</h2>\n", f);
            report_table(f, "eval-jobs", json_object_get(c, "eval_jobs"), NULL, exp);
        }
        fputs("<h2>Environment (env.json)</h2>\n", f);
        report_table(f, "environments", json_object_get(c, "environments"), NULL, exp);
        fputs("<h2>Logs of the latest attempt</h2>\n", f);
        json_object_foreach(json_object_get(c, "logs"), k, v) {
            fputs("<h3>", f);
            web_html_escape(f, k);
            fputs("</h3><pre class=log>", f);
            web_html_escape(f, json_string_value(v));
            fputs("</pre>\n", f);
        }
        json_decref(c);
        page_foot(f, 0);
        out_finish(&o, r, 200, "text/html; charset=utf-8");
        r->no_cache = 1;   // the logs change without the DB
        return;
    }
    if (!kind || *rest) { web_error(r, 0, 404, "no such page: /e/%s/%s", exp, what); return; }
    json_t *rows = web_report(db, kind, exp, NULL, err, sizeof err);
    if (!rows) { web_error(r, 0, 500, "%s", err); return; }
    Out o;
    if (out_open(&o) < 0) { json_decref(rows); page_oom(r); return; }
    FILE *f = o.f;
    int refresh = 0, charts = 1;
    if (!*what) {
        // The refresh tag must be in <head>: render the body first, then the page around it.
        Out body;
        if (out_open(&body) < 0) { out_discard(&o); json_decref(rows); page_oom(r); return; }
        page_cells(body.f, db, exp, q, rows, &refresh);
        fclose(body.f);
        body.f = NULL;
        page_head(f, exp, exp, "", refresh);
        fwrite(body.buf, 1, body.len, f);
        out_discard(&body);
        charts = 0;
    } else if (strcmp(what, "scaling") == 0) {
        page_head(f, "scaling", exp, "scaling", 0);
        fputs("<h1>Scaling</h1><p class=note>Speedup and efficiency against the 1-GPU group of the same model, GPU "
              "type and batch rule (weak: batch per GPU kept; strong: global batch kept); error bars: ± std over "
              "seeds; dashed: ideal.</p>\n", f);
        char mbuf[512], attr[1200];
        const char *m = one_model(rows, q, f, exp, "scaling");
        fputs("<div class=charts>", f);
        if (m) { snprintf(mbuf, sizeof mbuf, "%s", m); m = mbuf; }
        model_attr(attr, sizeof attr, m);
        keep_model(rows, m);
        chart_div(f, "speedup", exp, NULL, attr);
        chart_div(f, "efficiency", exp, NULL, attr);
        fputs("</div>\n<h2>segx report speedup</h2>\n", f);
        report_table(f, "report-speedup", rows, speedup_cols, exp);
    } else if (strcmp(what, "accuracy") == 0) {
        const char *metric = pick_metric(q, rows, "_mean");
        page_head(f, "accuracy", exp, "accuracy", 0);
        fputs("<h1>Accuracy</h1>", f);
        metric_links(f, exp, "accuracy", metric);
        fputs("<p class=note>Final value, mean ± std over seeds per cell group, against the global batch.</p>\n", f);
        char mbuf[512], attr[1200];
        const char *m = one_model(rows, q, f, exp, "accuracy");
        if (m) { snprintf(mbuf, sizeof mbuf, "%s", m); m = mbuf; }
        model_attr(attr, sizeof attr, m);
        keep_model(rows, m);
        chart_div(f, "accuracy", exp, metric, attr);
        fputs("<h2>segx report accuracy</h2>\n", f);
        report_table(f, "report-accuracy", rows, accuracy_cols, exp);
    } else if (strcmp(what, "curves") == 0) {
        const char *metric = pick_metric(q, rows, "_mean");
        if (q->arg(q->ctx, "metric") && !web_metric_valid(q->arg(q->ctx, "metric"))) {
            out_discard(&o);
            json_decref(rows);
            web_error(r, 0, 400, "metric '%.40s': expected miou, pixel_acc, top1, val_loss or train_loss",
                      q->arg(q->ctx, "metric"));
            return;
        }
        page_head(f, "curves", exp, "curves", 0);
        fputs("<h1>Curves</h1>", f);
        metric_links(f, exp, "curves", metric);
        fprintf(f, "<p class=note>Per cell group: the mean over seeds per epoch, the band from the lowest to the "
                   "highest seed; requeued attempts stitched on one clock; at most %d points per line "
                   "(downsampled by the server). A dotted line marks the spec's target.</p>\n",
                WEB_CURVE_POINTS);
        char mbuf[512], attr[1200];
        const char *m = one_model(rows, q, f, exp, "curves");
        fputs("<div class=charts>", f);
        if (m) { snprintf(mbuf, sizeof mbuf, "%s", m); m = mbuf; }
        model_attr(attr, sizeof attr, m);
        chart_div(f, "curve-epoch", exp, metric, attr);
        chart_div(f, "curve-wall", exp, metric, attr);
        fputs("</div>\n", f);
    } else if (page_cost(f, db, id, exp, q, rows, r) < 0) {   // cost
        out_discard(&o);
        json_decref(rows);
        return;
    }
    json_decref(rows);
    page_foot(f, charts);
    out_finish(&o, r, 200, "text/html; charset=utf-8");
    r->no_cache = refresh != 0;   // progress and ETA come from run dirs and the clock
}

// ---- /sql -------------------------------------------------------------------------------------

void page_sql(sqlite3 *db, const WebRequest *q, WebResponse *r)
{
    const char *sql = q->arg(q->ctx, "q");
    Out o;
    if (out_open(&o) < 0) { page_oom(r); return; }
    FILE *f = o.f;
    int status = 200;
    page_head(f, "SQL", NULL, "sql", 0);
    fprintf(f, "<h1>SQL</h1><p class=note>One read-only statement over the results database (its schema: "
               "<code>db/schema.sql</code>; the views cell_metrics, group_metrics, scaling, time_to_target do the "
               "science). At most %d rows and %d s; writes, ATTACH and PRAGMA are refused.</p>\n"
               "<form method=get action=\"/sql\"><textarea name=q rows=6 cols=100 spellcheck=false>",
            WEB_SQL_ROWS, WEB_SQL_MS / 1000);
    web_html_escape(f, sql ? sql : "SELECT model, gpus, state, miou, gpu_hours FROM cell_metrics LIMIT 20");
    fputs("</textarea><br><button>run</button></form>\n", f);
    if (sql && *sql) {
        Table *t;
        int truncated, st;
        char err[1024];
        if (web_sql_run(db, sql, &t, &truncated, err, sizeof err, &st) < 0) {
            status = st;
            fputs("<p class=error id=sql-error>", f);
            web_html_escape(f, err);
            fputs("</p>\n", f);
        } else {
            char *js = NULL;
            size_t jn = 0;
            FILE *jf = open_memstream(&js, &jn);
            if (jf) { table_print(t, TABLE_JSON, jf); fclose(jf); }
            json_t *rows = js ? json_loadb(js, jn, JSON_PRESERVE_ORDER, NULL) : NULL;
            free(js);
            fprintf(f, "<p class=note>%zu row%s%s · <a href=\"/api/sql?format=csv&amp;q=", table_nrows(t),
                    table_nrows(t) == 1 ? "" : "s", truncated ? " (stopped at the row limit)" : "");
            url_escape(f, sql);
            fputs("\">download CSV</a></p>\n", f);
            if (!rows) rows = json_array();
            report_table(f, "sql-result", rows, NULL, NULL);
            json_decref(rows);
            table_free(t);
        }
    }
    page_foot(f, 0);
    out_finish(&o, r, status, "text/html; charset=utf-8");
}

// ---- segx report --format html ----------------------------------------------------------------

// Writes text inside a <script> or <style> element so that it cannot end the element early:
// "</script" and "</style" (any case) become "<\/script", "<\/style" (the same text to JS and CSS
// strings; neither library has them outside strings).
static void write_raw_element_text(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<' && i + 1 < n && s[i + 1] == '/' &&
            ((n - i >= 8 && strncasecmp(s + i + 2, "script", 6) == 0) || (n - i >= 7 && strncasecmp(s + i + 2, "style", 5) == 0))) {
            fputs("<\\/", f);
            i++;
        } else {
            fputc(s[i], f);
        }
    }
}

static int embed(json_t *data, const char *exp, const char *what, json_t *j)
{
    if (!j) return -1;
    char key[512];
    snprintf(key, sizeof key, "/api/e/%s/%s", exp, what);
    json_object_set_new(data, key, j);
    return 0;
}

// The answers app.js asks for, keyed by their /api/ paths and queries (the report's charts
// read them offline). Takes errs and curves.
static json_t *embedded_answers(const char *exp, const char *metric, json_t *cells, json_t *acc, json_t *sp,
                                json_t *errs, json_t *curves, char *err, size_t errlen)
{
    json_t *data = json_object();
    char cw[128], cols[96];
    snprintf(cols, sizeof cols, WEB_COST_COLUMNS ",%s", metric);
    snprintf(cw, sizeof cw, "cells?columns=%s&limit=all", cols);
    embed(data, exp, cw, web_cells_columns(cells, cols, NULL, 0, SIZE_MAX, err, errlen));
    embed(data, exp, "accuracy", json_incref(acc));
    embed(data, exp, "speedup", json_incref(sp));
    embed(data, exp, "scaling-errors", errs);
    snprintf(cw, sizeof cw, "curves?metric=%s&limit=all", metric);
    embed(data, exp, cw, web_curves_series(curves, 0, SIZE_MAX));
    json_decref(curves);
    return data;
}

int web_report_html(sqlite3 *db, const char *exp, FILE *out, char *err, size_t errlen)
{
    long long id = web_experiment_id(db, exp);
    if (id <= 0) {
        snprintf(err, errlen, id == 0 ? "--experiment '%s': no such experiment in the database" : "database: %s",
                 id == 0 ? exp : sqlite3_errmsg(db));
        return id == 0 ? -2 : -1;
    }
    json_t *cells = web_report(db, "cells", exp, NULL, err, errlen);
    json_t *acc = cells ? web_report(db, "accuracy", exp, NULL, err, errlen) : NULL;
    json_t *sp = acc ? web_report(db, "speedup", exp, NULL, err, errlen) : NULL;
    json_t *cost = sp ? web_report(db, "cost", exp, NULL, err, errlen) : NULL;
    json_t *errs = cost ? web_scaling_errors_json(db, id, err, errlen) : NULL;
    static const char *const order[] = {"miou", "top1", "pixel_acc", "val_loss", NULL};
    const char *metric = "miou";
    for (int k = 0; acc && order[k]; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s_mean", order[k]);
        int found = 0;
        size_t i;
        json_t *row;
        json_array_foreach(acc, i, row) if (json_is_number(json_object_get(row, key))) found = 1;
        if (found) { metric = order[k]; break; }
    }
    json_t *curves = errs ? web_curves_json(db, id, metric, NULL, err, errlen) : NULL;
    if (!curves) {
        json_decref(cells); json_decref(acc); json_decref(sp); json_decref(cost); json_decref(errs);
        return -1;
    }
    json_t *data = embedded_answers(exp, metric, cells, acc, sp, errs, curves, err, errlen);   // (takes errs, curves)
    char *vega = NULL, *djs = NULL;
    size_t vlen = 0;
    char verr[512];
    const char *dir = getenv("SEGX_VEGA_DIR");
    int have_vega = web_vega_bundle(dir && *dir ? dir : WEB_VEGA_DIR, &vega, &vlen, verr, sizeof verr) == 0;
    time_t now = time(NULL);
    fputs("<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>segx report · ", out);
    web_html_escape(out, exp);
    fputs("</title><style>\n", out);
    write_raw_element_text(out, web_static_style_css, strlen(web_static_style_css));
    fputs("</style></head>\n<body><main><h1>", out);
    web_html_escape(out, exp);
    fputs("</h1><p class=note>segx report, written ", out);
    fmt_time(out, (double)now);
    fputs(". Numbers as in <code>segx report --format json</code>; the exact value of each number is in its "
          "cell's data-v attribute.</p>\n", out);
    if (!have_vega) {
        fputs("<p class=error>No charts: ", out);
        web_html_escape(out, verr);
        fputs("</p>\n", out);
    }
    fputs("<h2>Scaling</h2><div class=charts>", out);
    chart_div(out, "speedup", exp, NULL, NULL);
    chart_div(out, "efficiency", exp, NULL, NULL);
    fputs("</div>\n", out);
    report_table(out, "report-speedup", sp, speedup_cols, exp);
    fputs("<h2>Accuracy</h2>\n", out);
    chart_div(out, "accuracy", exp, metric, NULL);
    report_table(out, "report-accuracy", acc, accuracy_cols, exp);
    fputs("<h2>Curves</h2><div class=charts>", out);
    chart_div(out, "curve-epoch", exp, metric, NULL);
    chart_div(out, "curve-wall", exp, metric, NULL);
    fputs("</div>\n<h2>Cost</h2>\n", out);
    chart_div(out, "cost", exp, metric, NULL);
    report_table(out, "report-cost", cost, cost_cols, exp);
    fputs("<h2>Cells</h2>\n", out);
    report_table(out, "report-cells", cells, cells_cols, exp);
    fputs("</main>\n<script type=\"application/json\" id=segx-data>", out);
    djs = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (djs) web_json_for_script(out, djs);
    fputs("</script>\n", out);
    if (have_vega) {
        fputs("<script>", out);
        write_raw_element_text(out, vega, vlen);
        fputs("</script>\n<script>", out);
        write_raw_element_text(out, web_static_app_js, strlen(web_static_app_js));
        fputs("</script>\n", out);
    }
    fputs("</body></html>\n", out);
    free(djs);
    free(vega);
    json_decref(data);
    json_decref(cells);
    json_decref(acc);
    json_decref(sp);
    json_decref(cost);
    if (ferror(out)) { snprintf(err, errlen, "writing the report failed"); return -1; }
    return 0;
}
