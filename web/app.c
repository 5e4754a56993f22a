// web/app.c — the dashboard's request router, its read-only connection pool, error responses,
// escaping helpers and the chart library bundle (see web.h).
#include "web/web_impl.h"
#include "db/db.h"
#include "orchestrator/report.h"
#include <errno.h>
#include <time.h>
#include <zlib.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ---- response bodies --------------------------------------------------------------------------

int out_open(Out *o)
{
    o->buf = NULL;
    o->len = 0;
    o->f = open_memstream(&o->buf, &o->len);
    return o->f ? 0 : -1;
}

void out_finish(Out *o, WebResponse *r, int status, const char *type)
{
    fclose(o->f);
    o->f = NULL;
    r->status = status;
    r->type = type;
    r->body = o->buf;
    r->len = o->len;
    r->body_static = 0;
    o->buf = NULL;
}

void out_discard(Out *o)
{
    if (o->f) fclose(o->f);
    free(o->buf);
    o->f = NULL;
    o->buf = NULL;
}

static void set_static(WebResponse *r, int status, const char *type, const char *body, size_t len)
{
    r->status = status;
    r->type = type;
    r->body = (char *)body;
    r->len = len;
    r->body_static = 1;
}

void web_json_response(WebResponse *r, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (!s) { set_static(r, 500, "application/json", "{\"error\":\"out of memory\",\"status\":500}", 38); return; }
    r->status = status;
    r->type = "application/json";
    r->body = s;
    r->len = strlen(s);
    r->body_static = 0;
}

void web_error(WebResponse *r, int api, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (api) {
        web_json_response(r, status, json_pack("{s:s, s:i}", "error", msg, "status", status));
        return;
    }
    Out o;
    if (out_open(&o) < 0) { set_static(r, 500, "text/plain", "out of memory\n", 14); return; }
    fprintf(o.f, "<!doctype html><html><head><meta charset=utf-8><title>segx: %d</title>"
                 "<link rel=stylesheet href=\"/static/style.css\"></head><body><nav><a href=\"/\">segx</a></nav>"
                 "<main><h1>%d</h1><p class=error>", status, status);
    web_html_escape(o.f, msg);
    fputs("</p></main></body></html>\n", o.f);
    out_finish(&o, r, status, "text/html; charset=utf-8");
}

void web_response_free(WebResponse *r)
{
    if (r->shared) web_shared_release(r->shared);
    else if (!r->body_static) free(r->body);
    r->body = NULL;
    r->shared = NULL;
}

// ---- escaping and query strings ---------------------------------------------------------------

void web_html_escape(FILE *f, const char *s)
{
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

void web_json_for_script(FILE *f, const char *json)
{
    for (; *json; json++) {
        if (*json == '<' || *json == '>' || *json == '&') fprintf(f, "\\u%04x", (unsigned char)*json);
        else fputc(*json, f);
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *web_query_arg(const char *query, const char *key, char *buf, size_t buflen)
{
    size_t klen = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == klen && strncmp(p, key, klen) == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : end; v < end && n + 1 < buflen; v++) {
                if (*v == '+') buf[n++] = ' ';
                else if (*v == '%' && v + 2 < end && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    buf[n++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                } else buf[n++] = *v;
            }
            buf[n] = 0;
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

// ---- the connection pool ----------------------------------------------------------------------

static int open_ro(const char *path, sqlite3 **db, char *err, size_t errlen)
{
    if (db_open(path, DB_READONLY, db, err, errlen) < 0) return -1;
    char *e = NULL;
    if (sqlite3_exec(*db, "PRAGMA query_only = 1", NULL, NULL, &e) != SQLITE_OK) {
        snprintf(err, errlen, "%s: PRAGMA query_only: %s", path, e ? e : "failed");
        sqlite3_free(e);
        db_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

sqlite3 *web_db_get(WebApp *app)
{
    pthread_mutex_lock(&app->mu);
    while (app->nidle == 0 && app->nopen >= app->max) pthread_cond_wait(&app->cv, &app->mu);
    sqlite3 *db = NULL;
    if (app->nidle > 0) {
        db = app->idle[--app->nidle];
        pthread_mutex_unlock(&app->mu);
        return db;
    }
    app->nopen++;
    pthread_mutex_unlock(&app->mu);
    char err[512];
    if (open_ro(app->db_path, &db, err, sizeof err) < 0) {
        pthread_mutex_lock(&app->mu);
        app->nopen--;
        pthread_cond_signal(&app->cv);
        pthread_mutex_unlock(&app->mu);
        return NULL;
    }
    return db;
}

void web_db_put(WebApp *app, sqlite3 *db)
{
    if (!db) return;
    pthread_mutex_lock(&app->mu);
    app->idle[app->nidle++] = db;
    pthread_cond_signal(&app->cv);
    pthread_mutex_unlock(&app->mu);
}

// ---- the answer cache ---------------------------------------------------------------------------
// Answers are kept until the DB changes (PRAGMA data_version of the watch connection moves). A
// request that misses claims its key while it computes; others asking for the same key wait for
// that answer instead of computing it again (a big study's report takes seconds, and 50 clients
// asking at once would otherwise each run it). Keys of HTTP answers are "PATH?QUERY"; internal
// entries (a report's JSON shared by the pages and /api/) start with '\x01'. Big HTTP answers
// are also kept gzip-compressed for clients that accept it.

struct WebShared {
    int refs;   // __atomic
    size_t len;
    char data[];
};

void web_shared_release(WebShared *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) free(s);
}

static WebShared *shared_ref(WebShared *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
    return s;
}

static WebShared *shared_copy(const char *data, size_t len)
{
    WebShared *b = malloc(sizeof *b + len);
    if (!b) return NULL;
    b->refs = 1;
    b->len = len;
    memcpy(b->data, data, len);
    return b;
}

#define WEB_GZIP_MIN 1024   // smaller answers are sent as they are

// data gzip-compressed (level 1: a 12 MB answer in well under a second), or NULL.
static WebShared *shared_gzip(const char *data, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    WebShared *b = malloc(sizeof *b + cap);
    if (!b) { deflateEnd(&z); return NULL; }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)b->data;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t out = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || out >= len) { free(b); return NULL; }   // not worth it
    b->refs = 1;
    b->len = out;
    return b;
}

typedef struct WebCached {
    char *key;
    unsigned long generation;
    double expires;       // monotonic seconds; 0: until the DB changes
    unsigned long used;   // LRU clock
    int status;
    const char *type;
    WebShared *body, *gz;   // gz: the body gzip-compressed, NULL if not kept
    char disposition[160];
} WebCached;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t cached_bytes(const WebCached *c) { return c->body->len + (c->gz ? c->gz->len : 0); }

// Moves app->generation when another connection committed since the last look. Caller holds mu.
static void cache_check_db(WebApp *app)
{
    long long v = -1;
    if (app->watch_st) {
        if (sqlite3_step(app->watch_st) == SQLITE_ROW) v = sqlite3_column_int64(app->watch_st, 0);
        sqlite3_reset(app->watch_st);
    }
    if (v != app->data_version || v < 0) {   // v < 0: cannot tell, treat as a change
        app->data_version = v;
        app->generation++;
    }
}

static void cache_drop(WebApp *app, int i)
{
    app->cache_bytes -= cached_bytes(&app->cache[i]);
    free(app->cache[i].key);
    web_shared_release(app->cache[i].body);
    web_shared_release(app->cache[i].gz);
    app->cache[i] = app->cache[--app->ncache];
}

static char *cache_key(const WebRequest *q)
{
    size_t n = strlen(q->path) + (q->query ? strlen(q->query) : 0) + 2;
    char *k = malloc(n);
    if (k) snprintf(k, n, "%s?%s", q->path, q->query ? q->query : "");
    return k;
}

static int inflight_find(WebApp *app, const char *key)
{
    for (int i = 0; i < app->ninflight; i++)
        if (app->inflight_gen[i] == app->generation && strcmp(app->inflight[i], key) == 0) return i;
    return -1;
}

// 1 and the cached answer in r (a reference; gzip-compressed when gzip is set and kept so), or
// 0: not cached, and then, when claim is set, the caller computes it and must call cache_put or
// cache_unclaim with the same key. *gen: the DB generation the answer belongs to.
static int cache_get(WebApp *app, const char *key, int gzip, int claim, WebResponse *r, unsigned long *gen)
{
    pthread_mutex_lock(&app->mu);
    for (;;) {
        cache_check_db(app);
        *gen = app->generation;
        double now = now_s();
        for (int i = 0; i < app->ncache; i++) {
            WebCached *c = &app->cache[i];
            if (c->generation != app->generation || (c->expires > 0 && now >= c->expires)) { cache_drop(app, i--); continue; }
            if (strcmp(c->key, key) != 0) continue;
            WebShared *b = gzip && c->gz ? c->gz : c->body;
            r->status = c->status;
            r->type = c->type;
            r->body = b->data;
            r->len = b->len;
            r->body_static = 0;
            r->shared = shared_ref(b);
            r->encoding = b == c->gz ? "gzip" : NULL;
            memcpy(r->disposition, c->disposition, sizeof r->disposition);
            c->used = ++app->clock;
            pthread_mutex_unlock(&app->mu);
            return 1;
        }
        if (!claim || inflight_find(app, key) < 0) break;
        pthread_cond_wait(&app->cache_cv, &app->mu);   // another request computes it: wait, look again
    }
    if (claim && app->ninflight < WEB_POOL_MAX) {
        char *k = strdup(key);
        if (k) {
            app->inflight[app->ninflight] = k;
            app->inflight_gen[app->ninflight++] = app->generation;
        }
    }
    pthread_mutex_unlock(&app->mu);
    return 0;
}

// Ends the claim on key (caller holds mu) and wakes those waiting for it.
static void inflight_end(WebApp *app, const char *key, unsigned long gen)
{
    for (int i = 0; i < app->ninflight; i++)
        if (app->inflight_gen[i] == gen && strcmp(app->inflight[i], key) == 0) {
            free(app->inflight[i]);
            app->inflight[i] = app->inflight[--app->ninflight];
            app->inflight_gen[i] = app->inflight_gen[app->ninflight];
            break;
        }
    pthread_cond_broadcast(&app->cache_cv);
}

static void cache_unclaim(WebApp *app, const char *key, unsigned long gen)
{
    pthread_mutex_lock(&app->mu);
    inflight_end(app, key, gen);
    pthread_mutex_unlock(&app->mu);
}

// Keeps r (status 200) as the answer for key (taking key), ends the claim. r->shared is
// referenced, not copied.
static void cache_put(WebApp *app, char *key, const WebResponse *r, unsigned long gen)
{
    WebShared *b = NULL, *gz = NULL;
    if (r->len <= WEB_CACHE_BYTES / 4) {
        b = r->shared ? shared_ref(r->shared) : shared_copy(r->body, r->len);
        if (b && key[0] != '\x01' && r->len >= WEB_GZIP_MIN) gz = shared_gzip(b->data, b->len);
    }
    pthread_mutex_lock(&app->mu);
    inflight_end(app, key, gen);
    if (!b || gen != app->generation) {   // too big, out of memory, or the DB changed meanwhile
        pthread_mutex_unlock(&app->mu);
        free(key);
        web_shared_release(b);
        web_shared_release(gz);
        return;
    }
    for (int i = 0; i < app->ncache; i++)
        if (strcmp(app->cache[i].key, key) == 0) cache_drop(app, i--);
    size_t add = b->len + (gz ? gz->len : 0);
    while (app->ncache > 0 && (app->ncache >= WEB_CACHE_ENTRIES || app->cache_bytes + add > WEB_CACHE_BYTES)) {
        int lru = 0;
        for (int i = 1; i < app->ncache; i++)
            if (app->cache[i].used < app->cache[lru].used) lru = i;
        cache_drop(app, lru);
    }
    WebCached *c = &app->cache[app->ncache++];
    memset(c, 0, sizeof *c);
    c->key = key;
    c->generation = gen;
    c->expires = r->no_cache ? now_s() + WEB_FRESH_MS / 1000.0 : 0;
    c->used = ++app->clock;
    c->status = r->status;
    c->type = r->type;
    c->body = b;
    c->gz = gz;
    memcpy(c->disposition, r->disposition, sizeof c->disposition);
    app->cache_bytes += add;
    pthread_mutex_unlock(&app->mu);
}

// The request being answered on this thread (route), so that reports computed deep inside a
// page (web_report) share the cache; NULL outside the server (segx plot, report --format html).
static _Thread_local WebApp *current_app;

// report_json of (kind, experiment, target) through the cache: *out references the bytes
// (release with web_shared_release). 0, or -1/-2 (as report_json) with err.
static int report_shared(WebApp *app, sqlite3 *db, const char *kind, const char *experiment, const char *target,
                         WebShared **out, char *err, size_t errlen)
{
    *out = NULL;
    char *key = NULL;
    size_t klen = 0;
    FILE *kf = open_memstream(&key, &klen);
    if (!kf) { snprintf(err, errlen, "out of memory"); return -1; }
    fprintf(kf, "\x01report\x01%s\x01%s\x01%s", kind, experiment, target ? target : "\x02");
    fclose(kf);
    WebResponse r;
    memset(&r, 0, sizeof r);
    unsigned long gen;
    if (app && cache_get(app, key, 0, 1, &r, &gen)) {
        free(key);
        *out = r.shared;
        return 0;
    }
    ReportOptions ro = {.experiment = experiment, .target = target};
    FILE *null = fopen("/dev/null", "w");   // speedup's contention warnings belong to the CLI
    ro.warn = null;
    char *s;
    size_t n;
    int rc = report_json(db, kind, &ro, &s, &n, err, errlen);
    if (null) fclose(null);
    WebShared *b = rc < 0 ? NULL : shared_copy(s, n);
    if (rc >= 0) free(s);
    if (rc >= 0 && !b) { snprintf(err, errlen, "out of memory"); rc = -1; }
    if (!app) { free(key); *out = b; return rc < 0 ? rc : 0; }
    if (rc < 0) { cache_unclaim(app, key, gen); free(key); return rc; }
    r.status = 200;
    r.type = "application/json";
    r.body = b->data;
    r.len = b->len;
    r.shared = b;
    cache_put(app, key, &r, gen);   // takes key, references b
    *out = b;
    return 0;
}

int web_app_open(WebApp *app, const char *db_path, int pool, char *err, size_t errlen)
{
    memset(app, 0, sizeof *app);
    if (snprintf(app->db_path, sizeof app->db_path, "%s", db_path) >= (int)sizeof app->db_path) {
        snprintf(err, errlen, "%s: path too long", db_path);
        return -1;
    }
    app->max = pool < 1 ? 1 : pool > WEB_POOL_MAX ? WEB_POOL_MAX : pool;
    sqlite3 *db;
    if (open_ro(db_path, &db, err, errlen) < 0) return -1;
    pthread_mutex_init(&app->mu, NULL);
    pthread_cond_init(&app->cv, NULL);
    pthread_cond_init(&app->cache_cv, NULL);
    app->idle[app->nidle++] = db;
    app->nopen = 1;
    app->cache = calloc(WEB_CACHE_ENTRIES, sizeof *app->cache);
    int oom = !app->cache;
    if (oom || open_ro(db_path, &app->watch, err, errlen) < 0) {
        web_app_close(app);
        if (oom) snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (sqlite3_prepare_v2(app->watch, "PRAGMA data_version", -1, &app->watch_st, NULL) != SQLITE_OK)
        app->watch_st = NULL;   // then every request counts as after a change
    cache_check_db(app);
    const char *dir = getenv("SEGX_VEGA_DIR");
    if (web_vega_bundle(dir && *dir ? dir : WEB_VEGA_DIR, &app->vega, &app->vega_len, app->vega_err,
                        sizeof app->vega_err) < 0)
        app->vega = NULL;
    return 0;
}

void web_app_close(WebApp *app)
{
    while (app->ncache > 0) cache_drop(app, 0);
    free(app->cache);
    app->cache = NULL;
    for (int i = 0; i < app->ninflight; i++) free(app->inflight[i]);
    app->ninflight = 0;
    sqlite3_finalize(app->watch_st);
    app->watch_st = NULL;
    db_close(app->watch);
    app->watch = NULL;
    for (int i = 0; i < app->nidle; i++) db_close(app->idle[i]);
    app->nidle = app->nopen = 0;
    free(app->vega);
    app->vega = NULL;
    pthread_mutex_destroy(&app->mu);
    pthread_cond_destroy(&app->cv);
    pthread_cond_destroy(&app->cache_cv);
}

long long web_experiment_id(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT id FROM experiments WHERE name = ?1", -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    long long id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return id;
}

json_t *web_report(sqlite3 *db, const char *kind, const char *experiment, const char *target, char *err,
                   size_t errlen)
{
    WebShared *b;
    if (report_shared(current_app, db, kind, experiment, target, &b, err, errlen) < 0) return NULL;
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, 0, &je);
    if (!j) snprintf(err, errlen, "report %s: unreadable JSON: %s", kind, je.text);
    web_shared_release(b);
    return j;
}

int web_report_answer(sqlite3 *db, const char *kind, const char *experiment, const char *target, WebResponse *r,
                      char *err, size_t errlen)
{
    WebShared *b;
    int rc = report_shared(current_app, db, kind, experiment, target, &b, err, errlen);
    if (rc < 0) return rc;
    r->status = 200;
    r->type = "application/json";
    r->body = b->data;
    r->len = b->len;
    r->body_static = 0;
    r->shared = b;
    return 0;
}

// ---- the chart library ------------------------------------------------------------------------

// Dependency order: each module after the ones its define() names.
static const char *const vega_modules[] = {
    "util", "event-selector", "expression", "time", "format", "loader", "dataflow", "statistics", "scale",
    "canvas", "scenegraph", "selection", "functions", "runtime", "view", "parser", "transforms",
    "view-transforms", "encode", NULL};

int web_vega_bundle(const char *dir, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    Out o;
    if (out_open(&o) < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    fputs("/* vega from Debian's libjs-vega, bundled by segx serve (web/app.c) */\n(function () {\n"
          "var mods = {}, cur = null;\n"
          "function define(deps, factory) {\n"
          "  var exp = {};\n"
          "  factory.apply(null, deps.map(function (d) {\n"
          "    if (d === 'exports') return exp;\n"
          "    var m = mods[d === 'vega-selections' ? 'vega-selection' : d];\n"
          "    if (!m) throw new Error('vega bundle: ' + cur + ' needs ' + d);\n"
          "    return m;\n"
          "  }));\n"
          "  mods[cur] = exp;\n"
          "}\n"
          "define.amd = true;\n", o.f);
    for (int i = 0; vega_modules[i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/vega-%s.min.js", dir, vega_modules[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(err, errlen, "%s: %s (install Debian's libjs-vega: scripts/install-deps)", path, strerror(errno));
            out_discard(&o);
            return -1;
        }
        fprintf(o.f, "cur = 'vega-%s';\n", vega_modules[i]);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, o.f);
        fclose(f);
        fputs("\n", o.f);
    }
    fputs("var v = {};\n"
          "Object.keys(mods).forEach(function (k) { Object.assign(v, mods[k]); });\n"
          "v.extend(v.transforms, mods['vega-transforms'], mods['vega-view-transforms'], mods['vega-encode']);\n"
          "window.vega = v;\n"
          "})();\n", o.f);
    fclose(o.f);
    o.f = NULL;
    *out = o.buf;
    *len = o.len;
    return 0;
}

// ---- routing ----------------------------------------------------------------------------------

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 255) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

// Splits "NAME[/WHAT[/REST]]" into parts (copied into the buffers). 0, or -1 if malformed.
static int split_experiment_path(const char *p, char *name, size_t nlen, char *what, size_t wlen, char *rest,
                                 size_t rlen)
{
    const char *s1 = strchr(p, '/');
    size_t n = s1 ? (size_t)(s1 - p) : strlen(p);
    if (n >= nlen) return -1;
    memcpy(name, p, n);
    name[n] = 0;
    what[0] = rest[0] = 0;
    if (!s1 || !s1[1]) return 0;
    const char *s2 = strchr(s1 + 1, '/');
    size_t w = s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1);
    if (w >= wlen) return -1;
    memcpy(what, s1 + 1, w);
    what[w] = 0;
    if (s2 && s2[1]) {
        if (strchr(s2 + 1, '/') || strlen(s2 + 1) >= rlen) return -1;
        snprintf(rest, rlen, "%s", s2 + 1);
    }
    return 0;
}

static const struct { const char *path, *type, *body; } static_files[] = {
    {"/static/app.js", "text/javascript; charset=utf-8", web_static_app_js},
    {"/static/style.css", "text/css; charset=utf-8", web_static_style_css},
};

static void route(WebApp *app, const WebRequest *q, WebResponse *r, const char *path, int api);

void web_handle(WebApp *app, const WebRequest *q, WebResponse *r)
{
    memset(r, 0, sizeof *r);
    const char *path = q->path ? q->path : "";
    int api = strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0;
    if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0) {
        web_error(r, api, 405, "method %.16s not allowed: the dashboard is read-only (GET)", q->method);
        return;
    }
    if (strlen(path) > WEB_URL_MAX) { web_error(r, api, 414, "URL too long"); return; }
    for (size_t i = 0; i < sizeof static_files / sizeof static_files[0]; i++)
        if (strcmp(path, static_files[i].path) == 0) {
            set_static(r, 200, static_files[i].type, static_files[i].body, strlen(static_files[i].body));
            r->cacheable = 1;
            return;
        }
    if (strcmp(path, "/vendor/vega.js") == 0) {
        if (!app->vega) { web_error(r, 0, 404, "chart library missing: %s", app->vega_err); return; }
        set_static(r, 200, "text/javascript; charset=utf-8", app->vega, app->vega_len);
        r->cacheable = 1;
        return;
    }
    if (strcmp(path, "/favicon.ico") == 0) { set_static(r, 204, "image/x-icon", "", 0); return; }
    // The SQL box is not cached: a query can be anything (and must meet its time limit).
    int cacheable = strcmp(path, "/sql") != 0 && strcmp(path, "/api/sql") != 0;
    char *key = cacheable ? cache_key(q) : NULL;
    unsigned long gen = 0;
    if (key && cache_get(app, key, q->accept_gzip, 1, r, &gen)) { free(key); r->vary = 1; return; }
    current_app = app;
    route(app, q, r, path, api);
    current_app = NULL;
    if (!key) return;
    if (r->status != 200 || r->body_static) { cache_unclaim(app, key, gen); free(key); return; }
    char *again = strdup(key);
    cache_put(app, key, r, gen);
    // answer from the cache entry just made (its gzip copy for a client that takes it)
    WebResponse c;
    memset(&c, 0, sizeof c);
    unsigned long g2;
    if (again && cache_get(app, again, q->accept_gzip, 0, &c, &g2)) {
        web_response_free(r);
        *r = c;
    }
    r->vary = 1;
    free(again);
}

static void route(WebApp *app, const WebRequest *q, WebResponse *r, const char *path, int api)
{
    sqlite3 *db = web_db_get(app);
    if (!db) { web_error(r, api, 503, "cannot open the database %s read-only", app->db_path); return; }
    char name[256], what[64], rest[256];
    if (strcmp(path, "/") == 0) {
        page_experiments(db, r);
    } else if (strcmp(path, "/sql") == 0) {
        page_sql(db, q, r);
    } else if (strcmp(path, "/api/experiments") == 0) {
        api_experiments(db, r);
    } else if (strcmp(path, "/api/sql") == 0) {
        api_sql(db, q, r);
    } else if (strncmp(path, "/api/e/", 7) == 0 || strncmp(path, "/e/", 3) == 0) {
        const char *p = path + (api ? 7 : 3);
        if (split_experiment_path(p, name, sizeof name, what, sizeof what, rest, sizeof rest) < 0 ||
            !valid_name(name, strlen(name))) {
            web_error(r, api, 404, "no such page: experiment names hold letters, digits, '.', '_' and '-'");
        } else {
            long long id = web_experiment_id(db, name);
            if (id < 0) web_error(r, api, 500, "database: %s", sqlite3_errmsg(db));
            else if (id == 0) web_error(r, api, 404, "no experiment named '%s' in the database", name);
            else if (api) api_experiment(db, name, what, rest, q, r);
            else page_experiment(db, name, what, rest, q, r);
        }
    } else {
        web_error(r, api, 404, "no such page: %.200s", path);
    }
    web_db_put(app, db);
}
