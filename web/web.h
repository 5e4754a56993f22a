// web/web.h — the `segx serve` dashboard: request handlers that need no HTTP server (tests call
// them directly) and the libmicrohttpd server around them (web_serve).
// defines: WebApp, WebRequest, WebResponse, web_app_open, web_app_close, web_handle,
//          web_response_free, web_query_arg, web_html_escape, web_json_for_script, web_vega_bundle,
//          web_report, web_curves_json, web_curves_series, web_cells_columns, web_scaling_errors_json,
//          web_plot, web_report_html, web_serve, WebServeOptions.
// Contract:
//  * The DB is opened read-only (SQLITE_OPEN_READONLY + PRAGMA query_only), one connection per
//    concurrent request from a pool; nothing here writes, and WAL readers see each committed
//    state while `segx collect` writes.
//  * /api/e/NAME/{cells,accuracy,speedup,cost,time-to-target} answer the exact bytes of
//    `segx report KIND --experiment NAME --format json` (report_json); pages render their tables
//    from that same JSON, each number's exact value in the cell's data-v attribute.
//  * Every value from the DB is HTML-escaped; static files come from a table compiled into the
//    binary and the chart library from a fixed list of Debian's files, so no request path ever
//    names a file. Unknown experiment or cell: 404 (JSON on /api/); bad parameters 400; a
//    method other than GET/HEAD 405; an over-long URL 414.
//  * The SQL box runs one read-only statement, at most WEB_SQL_ROWS rows and WEB_SQL_MS of
//    SQLite work (sqlite3_progress_handler); writes are refused before they run.
#ifndef SEGX_WEB_H
#define SEGX_WEB_H
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>

#define WEB_POOL_MAX 64
#define WEB_SQL_ROWS 1000      // rows shown / downloaded by the SQL box
#define WEB_SQL_MS 2000        // its time limit
#define WEB_CURVE_POINTS 2000  // curves: points per series at most (downsampled server-side)
#define WEB_CELLS_LIMIT 1000   // /api/e/NAME/cells: rows per answer unless ?limit= (a count or all)
#define WEB_SERIES_LIMIT 100   // /api/e/NAME/curves: series per answer unless ?limit=
#define WEB_COST_COLUMNS "cell,model,gpu_type,gpus,seed,gpu_hours"   // the cost chart's (app.js), + the metric
#define WEB_GRID_BOXES 1000    // the grid page: one box per cell up to this many shown, else counts per place
#define WEB_TABLE_ROWS 200     // the grid page's cells table: rows at most (a big study: filter, or /api/)
#define WEB_URL_MAX 8192       // longer URLs get 414
#define WEB_CACHE_ENTRIES 128  // cached answers at most ...
#define WEB_CACHE_BYTES (128u << 20)   // ... and their bytes at most
#define WEB_FRESH_MS 1000      // an answer that reads run-dir files (logs, progress) is reused this long
// Where Debian's libjs-vega installs the chart library (overridable for tests: SEGX_VEGA_DIR).
#define WEB_VEGA_DIR "/usr/share/javascript/vega"

typedef struct {
    char db_path[4096];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sqlite3 *idle[WEB_POOL_MAX];
    int nidle, nopen, max;
    char *vega;           // the chart library as one script (web_vega_bundle), NULL if absent
    size_t vega_len;
    char vega_err[512];   // why it is absent
    // Answers cached until the DB changes (PRAGMA data_version of the watch connection moves),
    // so a big study's reports are computed once per `segx collect`, not once per request.
    sqlite3 *watch;
    sqlite3_stmt *watch_st;   // PRAGMA data_version on watch, prepared once
    long long data_version;
    unsigned long generation;
    struct WebCached *cache;
    int ncache;
    size_t cache_bytes;
    unsigned long clock;      // LRU
    // Answers being computed (key, generation): a second request for one waits on cache_cv.
    pthread_cond_t cache_cv;
    char *inflight[WEB_POOL_MAX];
    unsigned long inflight_gen[WEB_POOL_MAX];
    int ninflight;
} WebApp;

typedef struct {
    const char *method;   // "GET", "HEAD", ...
    const char *path;     // URL path, percent-decoded, without the query
    // Query argument (decoded) or NULL; ctx is passed back.
    const char *(*arg)(void *ctx, const char *key);
    void *ctx;
    const char *query;    // the query arguments as one string (a cache key), NULL: none
    int accept_gzip;      // the client accepts Content-Encoding: gzip
} WebRequest;

// A cached body shared by the answers that send it (reference counted).
typedef struct WebShared WebShared;
void web_shared_release(WebShared *s);

typedef struct {
    int status;
    const char *type;          // Content-Type
    char *body;                // malloc'd unless body_static or shared
    WebShared *shared;         // non-NULL: body lies in it; web_response_free releases it
    size_t len;
    int body_static;
    int cacheable;             // static assets: may be cached by the browser
    char disposition[160];     // Content-Disposition header, "" for none
    int no_cache;              // depends on more than the DB (run-dir files, the clock): kept
                               // WEB_FRESH_MS only
    const char *encoding;      // Content-Encoding ("gzip") or NULL
    int vary;                  // the body depends on Accept-Encoding (send Vary)
} WebResponse;

// Opens the DB read-only (checking it is a segx DB) and builds the chart bundle. pool: the most
// connections open at once (1..WEB_POOL_MAX). 0, or -1 with err.
int  web_app_open(WebApp *app, const char *db_path, int pool, char *err, size_t errlen);
void web_app_close(WebApp *app);
// Answers one request; never fails (errors are responses). Free with web_response_free.
void web_handle(WebApp *app, const WebRequest *req, WebResponse *resp);
void web_response_free(WebResponse *resp);

// The value of key in a raw query string "a=1&b=x%20y" (decoded into buf) or NULL.
const char *web_query_arg(const char *query, const char *key, char *buf, size_t buflen);
// Writes s with & < > " ' escaped; NULL writes nothing.
void web_html_escape(FILE *f, const char *s);
// Writes JSON text so it is inert inside <script type="application/json">: '<' '>' '&' as \u00XX.
void web_json_for_script(FILE *f, const char *json);
// The Debian libjs-vega modules (dir: WEB_VEGA_DIR) joined into one script that defines
// window.vega; Debian ships no single-file build, and its modules' browser-global fallback
// replaces window.vega each time, so a small AMD define() ties them together. 0 or -1 with err.
int  web_vega_bundle(const char *dir, char **out, size_t *len, char *err, size_t errlen);

// ---- the data behind the charts, shared by the pages, `segx plot` and the HTML report -------
// Each returns new JSON, or NULL with err.
// A report of one experiment (report_json), parsed.
json_t *web_report(sqlite3 *db, const char *kind, const char *experiment, const char *target, char *err,
                   size_t errlen);
// {"metric", "target" (the spec's, or null), "points": [{model, gpu_type, gpus, batch_per_gpu,
// global_batch, group_key, epoch, wall_s, mean, lo, hi, n}]}: per cell group and epoch, the mean /
// min / max over the n seeds with a value, wall_s on the stitched clock (their mean); at most
// WEB_CURVE_POINTS per group (web_downsample of the means).
json_t *web_curves_json(sqlite3 *db, long long exp_id, const char *metric, const char *model, char *err,
                        size_t errlen);
// The curves (web_curves_json) as one object per cell group: its model, gpu_type, gpus,
// batch_per_gpu, global_batch, group_key, and arrays epoch, wall_s, mean, lo, hi, n (a point
// each); series [off, off + lim) of them, under {"total", "offset", "limit", "count", "metric",
// "target", "max_points_per_series", "series"}. lim SIZE_MAX: all.
json_t *web_curves_series(json_t *curves, size_t off, size_t lim);
// The cells report's rows as {"total", "offset", "limit", "count", "columns": {NAME: [values]}}:
// the columns named in columns (comma-separated; NULL: all, in the report's order), the rows of
// model (NULL: all) from off, at most lim. NULL with err for an unknown column.
json_t *web_cells_columns(json_t *rows, const char *columns, const char *model, size_t off, size_t lim, char *err,
                          size_t errlen);
// Picks at most max of n points to draw a curve y[0..n) (max >= 4): all when n <= max, else the
// first, the last, and the lowest and highest of each of (max - 2) / 2 equal runs between them.
// Writes their indices, ascending, to keep (room for n) and returns how many.
size_t web_downsample(const double *y, size_t n, size_t max, size_t *keep);
// Per scaling row: speedup_std and efficiency_std over seeds (from the cells' images/s).
json_t *web_scaling_errors_json(sqlite3 *db, long long exp_id, char *err, size_t errlen);
// The experiment's id, 0 if there is none by that name, -1 on an SQL error.
long long web_experiment_id(sqlite3 *db, const char *name);
// Metrics the charts offer: miou pixel_acc top1 val_loss train_loss.
int web_metric_valid(const char *m);

// `segx plot`: KIND (speedup efficiency accuracy curves curves-wall cost) of one experiment as
// OUT (.svg .pdf .png) through gnuplot, beside OUT's .gp script and .tsv data (editable; rerun
// with `gnuplot NAME.gp` in that folder). metric NULL: the first with data. 0, -2 bad input,
// -1 runtime failure, with err.
int web_plot(sqlite3 *db, const char *kind, const char *experiment, const char *metric, const char *out, char *err,
             size_t errlen);
// `segx report --format html`: one self-contained HTML file (tables, charts, the chart library
// inline) of an experiment. 0, -2 bad input, -1 runtime failure, with err.
int web_report_html(sqlite3 *db, const char *experiment, FILE *out, char *err, size_t errlen);

typedef struct {
    const char *db_path, *bind, *token;
    int port;        // 0: any free port (printed)
    int threads;     // libmicrohttpd thread pool size (0: 8)
    FILE *log;       // the "listening on" line and errors
} WebServeOptions;
// Runs the server until SIGINT/SIGTERM. Exit code as a command: 0, 1 runtime failure, 2 bad input.
int  web_serve(const WebServeOptions *o);

#endif
