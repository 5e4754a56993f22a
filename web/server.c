// web/server.c — `segx serve`'s HTTP server: libmicrohttpd with its own thread pool, calling
// web_handle for each request (see web.h). Binds 127.0.0.1 unless told otherwise; any other
// address needs a token (Authorization: Bearer T, the segx_token cookie, or ?token=T once,
// which sets the cookie).
#include "web/web_impl.h"
#include "config.h"
#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef SEGX_HAVE_MICROHTTPD
#include <microhttpd.h>

typedef struct {
    WebApp app;
    const char *token;
} Server;

typedef struct {
    struct MHD_Connection *c;
} ArgCtx;

static const char *mhd_arg(void *ctx, const char *key)
{
    return MHD_lookup_connection_value(((ArgCtx *)ctx)->c, MHD_GET_ARGUMENT_KIND, key);
}

// Compares in time independent of where the strings differ.
static int token_equal(const char *a, const char *b)
{
    if (!a || !b) return 0;
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

// The query arguments, in order, as "k=v&..." with '&' and '=' inside them kept apart by \x01
// (a cache key, never parsed back). The token is left out.
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    if (strcmp(key, "token") != 0) fprintf(cls, "%s\x01%s\x02", key, value ? value : "");
    return MHD_YES;
}

// Whether an Accept-Encoding value allows gzip: "gzip" listed without q=0 (nor "*" with it).
static int accepts_gzip(const char *v)
{
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *semi = memchr(p, ';', n);
        size_t name = semi ? (size_t)(semi - p) : n;
        while (name > 0 && p[name - 1] == ' ') name--;
        int q0 = 0;
        if (semi) {
            const char *q = strstr(semi, "q=");
            if (q && q < p + n) q0 = strtod(q + 2, NULL) <= 0;
        }
        if (((name == 4 && strncasecmp(p, "gzip", 4) == 0) || (name == 1 && *p == '*')) && !q0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static void release_shared(void *cls) { web_shared_release(cls); }

static enum MHD_Result send_response(struct MHD_Connection *c, WebResponse *r, const char *set_cookie)
{
    struct MHD_Response *resp;
    if (r->shared) {   // a cached body: the response holds a reference until it is sent
        resp = MHD_create_response_from_buffer_with_free_callback_cls(r->len, r->body, release_shared, r->shared);
        if (resp) r->shared = NULL, r->body = NULL;   // the response owns the reference now
    } else if (r->body_static) {
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (resp) r->body = NULL;   // owned by the response now
    }
    if (!resp) { web_response_free(r); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type ? r->type : "application/octet-stream");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    // vega compiles its expressions with Function(): 'unsafe-eval'; inline scripts stay blocked.
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY,
                            "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
                            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, r->cacheable ? "max-age=3600" : "no-store");
    if (r->encoding) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, r->encoding);
    if (r->vary) MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    if (r->disposition[0]) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, r->disposition);
    if (set_cookie) MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, set_cookie);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    web_response_free(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    Server *s = cls;
    WebResponse r;
    memset(&r, 0, sizeof r);
    // A GET or HEAD without a body is answered on the second call, once MHD has the whole
    // request: libmicrohttpd closes the connection after an answer queued on the first call, and
    // a new TCP connection per request (what keep-alive clients then get) costs more than the
    // answer. Anything with a body is answered at once without reading it (the dashboard reads
    // no request bodies), and its connection is closed.
    if (*con_cls == NULL) {
        *con_cls = c;
        int bodyless = (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
                       !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
                       !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (bodyless) return MHD_YES;
    } else if (*con_cls == (void *)s) {   // answered already: drop what is left of the body
        *upload_size = 0;
        return MHD_YES;
    } else if (*upload_size != 0) {   // a body after all
        *upload_size = 0;
        return MHD_YES;
    }
    *con_cls = s;
    char cookie[600] = "";
    const char *set_cookie = NULL;
    if (s->token) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        const char *ck = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "segx_token");
        const char *qt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
        int ok = (auth && strncmp(auth, "Bearer ", 7) == 0 && token_equal(auth + 7, s->token)) ||
                 token_equal(ck, s->token);
        if (!ok && token_equal(qt, s->token)) {
            ok = 1;
            snprintf(cookie, sizeof cookie, "segx_token=%s; Path=/; HttpOnly; SameSite=Strict", s->token);
            set_cookie = cookie;
        }
        if (!ok) {
            web_error(&r, strncmp(url, "/api/", 5) == 0, 401,
                      "this server needs its token: open the URL with ?token=TOKEN once, or send "
                      "'Authorization: Bearer TOKEN'");
            return send_response(c, &r, NULL);
        }
    }
    ArgCtx ctx = {c};
    char *query = NULL;
    size_t qlen = 0;
    FILE *qf = open_memstream(&query, &qlen);
    if (qf) {
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, qf);
        fclose(qf);
    }
    WebRequest q = {.method = method, .path = url, .arg = mhd_arg, .ctx = &ctx, .query = query,
                    .accept_gzip = accepts_gzip(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                                            MHD_HTTP_HEADER_ACCEPT_ENCODING))};
    web_handle(&s->app, &q, &r);
    free(query);
    return send_response(c, &r, set_cookie);
}

int web_serve(const WebServeOptions *o)
{
    FILE *log = o->log ? o->log : stderr;
    const char *bind = o->bind ? o->bind : "127.0.0.1";
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *addr;
    int v6 = strchr(bind, ':') != NULL;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (v6) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, bind, &a6.sin6_addr) != 1) {
            fprintf(log, "segx serve: --bind '%s': not an IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1)\n", bind);
            return 2;
        }
        addr = (struct sockaddr *)&a6;
    } else {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, bind, &a4.sin_addr) != 1) {
            fprintf(log, "segx serve: --bind '%s': not an IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1)\n", bind);
            return 2;
        }
        addr = (struct sockaddr *)&a4;
    }
    int loopback = v6 ? IN6_IS_ADDR_LOOPBACK(&a6.sin6_addr) : (ntohl(a4.sin_addr.s_addr) >> 24) == 127;
    if (!loopback && !(o->token && *o->token)) {
        fprintf(log, "segx serve: refusing to serve on %s without --token: anyone who can reach this address "
                     "could read the results database. Pass --token SECRET (then open the URL with "
                     "?token=SECRET), or keep the default --bind 127.0.0.1 and use an SSH tunnel.\n", bind);
        return 2;
    }
    if (o->token && strlen(o->token) > 256) { fprintf(log, "segx serve: --token: at most 256 characters\n"); return 2; }
    for (const char *p = o->token; p && *p; p++)
        if (*p <= ' ' || *p == ';' || *p == ',' || *p == '"' || *p == '\\' || (unsigned char)*p >= 0x7f) {
            fprintf(log, "segx serve: --token: use letters, digits and punctuation other than ; , \" \\ (it goes "
                         "into a cookie)\n");
            return 2;
        }
    Server *s = calloc(1, sizeof *s);
    if (!s) { fprintf(log, "segx serve: out of memory\n"); return 1; }
    char err[1024];
    // 8 threads by default: on the 2-core test machine under load 24-28 from other work, 8 gave
    // lower 50-client p99s than 2 (one per core): more threads, more of the loaded CPU's share
    // (bench/RESULTS-web.md). Each thread owns its connections.
    int threads = o->threads > 0 ? o->threads : 8;
    if (web_app_open(&s->app, o->db_path, threads + 2, err, sizeof err) < 0) {
        fprintf(log, "segx serve: %s\n", err);
        free(s);
        return 1;
    }
    if (!s->app.vega) fprintf(log, "segx serve: warning: no charts: %s\n", s->app.vega_err);
    s->token = o->token && *o->token ? o->token : NULL;
    // SIGINT/SIGTERM are taken by sigwait below: block them before MHD starts its threads.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | (v6 ? MHD_USE_IPv6 : 0), (uint16_t)o->port, NULL, NULL,
        on_request, s, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
    if (!d) {
        fprintf(log, "segx serve: cannot listen on %s port %d (in use? try --port 0 for any free port)\n", bind, o->port);
        web_app_close(&s->app);
        free(s);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : o->port;
    fprintf(log, "segx serve: http://%s%s%s:%d/%s%s  (database %s, read-only; %d threads; Ctrl-C stops)\n",
            v6 ? "[" : "", bind, v6 ? "]" : "", port, s->token ? "?token=" : "", s->token ? "TOKEN" : "",
            o->db_path, threads);
    fflush(log);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    web_app_close(&s->app);
    free(s);
    fprintf(log, "segx serve: stopped\n");
    return 0;
}

#else

int web_serve(const WebServeOptions *o)
{
    fprintf(o->log ? o->log : stderr, "segx serve: this segx was built without libmicrohttpd: run "
                                      "scripts/install-deps (Debian libmicrohttpd-dev), then make\n");
    return 1;
}

#endif
