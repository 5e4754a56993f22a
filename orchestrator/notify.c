// orchestrator/notify.c — notifications by JSON POST through libcurl (see notify.h).
#include "config.h"
#include "orchestrator/notify.h"
#include "orchestrator/backend/jobstate.h"
#include "orchestrator/util/fileio.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if SEGX_HAVE_CURL
#include <curl/curl.h>
#endif

static const char *const EVENTS[] = {"done", "failed", "first_failure", NULL};

static int is_http_url(const char *u)
{
    return u && (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) && strlen(u) > 8;
}

int notify_spec_check(json_t *n, const char **keypath, char *err, size_t errlen)
{
    *keypath = "notify";
    if (!json_is_object(n)) {
        snprintf(err, errlen, "expected {\"url\": \"https://...\", \"on\": [\"done\", \"failed\", \"first_failure\"]}");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(n, k, v) {
        if (strcmp(k, "url") && strcmp(k, "on")) {
            snprintf(err, errlen, "unknown key '%s' (expected url, on)", k);
            return -1;
        }
    }
    json_t *url = json_object_get(n, "url");
    if (!is_http_url(json_string_value(url))) {
        *keypath = "notify.url";
        snprintf(err, errlen, "expected an http:// or https:// URL (e.g. a Slack or Mattermost incoming webhook)");
        return -1;
    }
    json_t *on = json_object_get(n, "on");
    if (on) {
        size_t i;
        json_t *e;
        *keypath = "notify.on";
        if (!json_is_array(on) || json_array_size(on) == 0) {
            snprintf(err, errlen, "expected a list of events: done, failed, first_failure");
            return -1;
        }
        json_array_foreach(on, i, e) {
            int ok = 0;
            for (int j = 0; EVENTS[j]; j++) ok |= json_is_string(e) && strcmp(json_string_value(e), EVENTS[j]) == 0;
            if (!ok) {
                char *s = json_dumps(e, JSON_ENCODE_ANY);
                snprintf(err, errlen, "unknown event %s (expected done, failed or first_failure)", s ? s : "?");
                free(s);
                return -1;
            }
        }
    }
    return 0;
}

// RUN_ROOT/name, or -1 when it does not fit
static int path_in(char *out, size_t cap, const char *run_root, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", run_root, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int write_json_atomic(const char *path, json_t *o)
{
    char *text = json_dumps(o, JSON_INDENT(1)), e[PATH_MAX + 128];
    int rc = text ? file_write_atomic(path, text, strlen(text), 0644, e, sizeof e) : -1;
    free(text);
    return rc;
}

int notify_set_url(const char *run_root, const char *url, char *err, size_t errlen)
{
    if (!is_http_url(url)) {
        snprintf(err, errlen, "--notify '%s': expected an http:// or https:// URL (e.g. a Slack or Mattermost incoming webhook)", url);
        return -1;
    }
    char path[PATH_MAX];
    if (path_in(path, sizeof path, run_root, "notify.json")) { snprintf(err, errlen, "run root path too long"); return -1; }
    json_t *o = json_pack("{s:s,s:[sss]}", "url", url, "on", "done", "failed", "first_failure");
    int rc = write_json_atomic(path, o);
    json_decref(o);
    if (rc) snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return rc;
}

// The experiment's notify settings: --notify's file, else the spec's block. New reference or NULL.
static json_t *load_config(sqlite3 *db, long long eid, const char *run_root)
{
    char path[PATH_MAX];
    if (path_in(path, sizeof path, run_root, "notify.json") == 0) {
        json_t *o = json_load_file(path, 0, NULL);
        if (json_is_string(json_object_get(o, "url"))) return o;
        json_decref(o);
    }
    sqlite3_stmt *st;
    json_t *n = NULL;
    if (sqlite3_prepare_v2(db, "SELECT spec_text FROM experiments WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_int64(st, 1, eid);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        json_t *spec = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        n = json_incref(json_object_get(spec, "notify"));
        json_decref(spec);
    }
    sqlite3_finalize(st);
    const char *kp;
    char e[256];
    if (n && notify_spec_check(n, &kp, e, sizeof e) < 0) { json_decref(n); return NULL; }
    return n;
}

static int wants(json_t *cfg, const char *event)
{
    json_t *on = json_object_get(cfg, "on"), *e;
    size_t i;
    if (!on) return 1;
    json_array_foreach(on, i, e) if (json_is_string(e) && strcmp(json_string_value(e), event) == 0) return 1;
    return 0;
}

static double one_double(sqlite3 *db, const char *sql, long long eid)
{
    sqlite3_stmt *st;
    double v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return 0;
    sqlite3_bind_int64(st, 1, eid);
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

json_t *notify_payload(sqlite3 *db, long long eid, const char *event, const StatusCounts *c)
{
    char name[256] = "?";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT name FROM experiments WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, eid);
        if (sqlite3_step(st) == SQLITE_ROW) snprintf(name, sizeof name, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    json_t *counts = json_object();
    for (int s = 0; s <= JOB_UNKNOWN; s++)
        if (c->by_state[s]) json_object_set_new(counts, job_state_name((JobState)s), json_integer(c->by_state[s]));
    double gpu_h = one_double(db, "SELECT COALESCE(SUM(t.gpu_hours), 0) FROM attempt_times t JOIN cells c ON c.id = t.cell_id "
                                  "WHERE c.experiment_id = ?1", eid);
    // headline: the best final accuracy of a cell (miou for segmentation, else top1)
    char headline[300] = "";
    if (sqlite3_prepare_v2(db, "SELECT key, gpu_type, gpus, miou, top1 FROM cell_metrics WHERE experiment_id = ?1 "
                               "AND COALESCE(miou, top1) IS NOT NULL ORDER BY COALESCE(miou, top1) DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, eid);
        if (sqlite3_step(st) == SQLITE_ROW) {
            int seg = sqlite3_column_type(st, 3) != SQLITE_NULL;
            snprintf(headline, sizeof headline, "best %s %.4f: cell %.8s (%s x%d)", seg ? "mIoU" : "top-1",
                     sqlite3_column_double(st, seg ? 3 : 4), (const char *)sqlite3_column_text(st, 0),
                     sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "?", sqlite3_column_int(st, 2));
        }
        sqlite3_finalize(st);
    }
    char sum[512];
    status_summary(c, sum, sizeof sum);
    char text[1200];
    json_t *o = json_pack("{s:s,s:s,s:I,s:o,s:f}", "event", event, "experiment", name, "cells", (json_int_t)c->total,
                          "counts", counts, "gpu_hours", gpu_h);
    if (headline[0]) json_object_set_new(o, "headline", json_string(headline));
    if (strcmp(event, "first_failure") == 0) {
        // the cell that failed first (earliest end), with its reason
        if (sqlite3_prepare_v2(db, "SELECT c.key, a.attempt, a.state, COALESCE(a.exit_code, -1), COALESCE(a.reason, ''), "
                                   "COALESCE(a.job_id, '') FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.experiment_id = ?1 "
                                   "AND a.state IN " JOB_SQL_FAILED " "
                                   "ORDER BY COALESCE(a.end_time, 1e18), a.id LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, eid);
            if (sqlite3_step(st) == SQLITE_ROW) {
                json_object_set_new(o, "cell", json_pack("{s:s,s:i,s:s,s:i,s:s,s:s}", "key", (const char *)sqlite3_column_text(st, 0),
                                                         "attempt", sqlite3_column_int(st, 1), "state", (const char *)sqlite3_column_text(st, 2),
                                                         "exit_code", sqlite3_column_int(st, 3), "reason", (const char *)sqlite3_column_text(st, 4),
                                                         "job_id", (const char *)sqlite3_column_text(st, 5)));
                snprintf(text, sizeof text, "segx: experiment %s: cell %.12s %s (%.200s); %s", name,
                         (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 2),
                         (const char *)sqlite3_column_text(st, 4), sum);
            } else {
                snprintf(text, sizeof text, "segx: experiment %s: a cell failed; %s", name, sum);
            }
            sqlite3_finalize(st);
        } else {
            snprintf(text, sizeof text, "segx: experiment %s: a cell failed; %s", name, sum);
        }
    } else {
        snprintf(text, sizeof text, "segx: experiment %s %s: %s; %.2f GPU-hours%s%s", name,
                 strcmp(event, "done") == 0 ? "finished" : "finished with failures", sum, gpu_h,
                 headline[0] ? "; " : "", headline);
    }
    json_object_set_new(o, "text", json_string(text));
    return o;
}

static void log_line(const char *log_path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(const char *log_path, const char *fmt, ...)
{
    if (!log_path) return;
    FILE *f = fopen(log_path, "a");
    if (!f) return;
    char ts[32];
    time_t t = time(NULL);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime(&t));
    fprintf(f, "%s ", ts);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

#if SEGX_HAVE_CURL
static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p; (void)ud;
    return sz * n;
}

int notify_post(const char *url, const char *body, const char *log_path, int tries, char *err, size_t errlen)
{
    static int ready;
    if (!ready) { curl_global_init(CURL_GLOBAL_DEFAULT); ready = 1; }
    CURL *c = curl_easy_init();
    if (!c) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = -1;
    for (int t = 0; t < tries; t++) {
        if (t > 0) {
            double s = 0.5 * (1 << (t - 1));   // 0.5 s, 1 s, 2 s
            struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
            while (nanosleep(&ts, &ts) && errno == EINTR) {}
        }
        curl_easy_reset(c);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
        CURLcode cc = curl_easy_perform(c);
        curl_slist_free_all(h);
        long status = 0;
        if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_OK && status >= 200 && status < 300) {
            log_line(log_path, "POST %s: delivered (HTTP %ld, try %d)", url, status, t + 1);
            rc = 0;
            break;
        }
        if (cc != CURLE_OK) snprintf(err, errlen, "POST %s: %s", url, curl_easy_strerror(cc));
        else snprintf(err, errlen, "POST %s: HTTP %ld", url, status);
        int retry = cc != CURLE_OK || status == 429 || status >= 500;
        log_line(log_path, "%s (try %d of %d%s)", err, t + 1, tries, retry && t + 1 < tries ? ", retrying" : "");
        if (!retry) break;
    }
    curl_easy_cleanup(c);
    return rc;
}
#else
int notify_post(const char *url, const char *body, const char *log_path, int tries, char *err, size_t errlen)
{
    (void)body; (void)tries;
    snprintf(err, errlen, "POST %s: segx was built without libcurl (install libcurl4-openssl-dev, make config)", url);
    log_line(log_path, "%s", err);
    return -1;
}
#endif

void notify_after_refresh(sqlite3 *db, long long eid, const char *run_root, const StatusCounts *c)
{
    if (!run_root || !*run_root || !c || c->total == 0) return;
    json_t *cfg = load_config(db, eid, run_root);
    if (!cfg) return;
    const char *url = json_string_value(json_object_get(cfg, "url"));
    char sent_path[PATH_MAX], log_path[PATH_MAX];
    if (path_in(sent_path, sizeof sent_path, run_root, "notify-sent.json") ||
        path_in(log_path, sizeof log_path, run_root, "notify.log")) { json_decref(cfg); return; }
    // decide and record under a lock (segx run and a status --watch may refresh at once), send after
    char lock_path[PATH_MAX + 8];
    snprintf(lock_path, sizeof lock_path, "%s.lock", sent_path);
    int lk = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lk >= 0) while (flock(lk, LOCK_EX) < 0 && errno == EINTR) {}
    json_t *sent = json_load_file(sent_path, 0, NULL);
    if (!json_is_object(sent)) { json_decref(sent); sent = json_object(); }
    long failed = c->by_state[JOB_FAILED] + c->by_state[JOB_TIMEOUT] + c->by_state[JOB_OUT_OF_MEMORY] + c->by_state[JOB_NODE_FAIL];
    long open_n = c->by_state[JOB_PLANNED] + c->by_state[JOB_SUBMITTED] + c->by_state[JOB_PENDING] + c->by_state[JOB_RUNNING] +
                  c->by_state[JOB_UNKNOWN] + c->evals_in_flight;
    // a finish is announced once per number of attempts: a resubmit that finishes is news again
    long long attempts = (long long)one_double(db, "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id "
                                                   "WHERE c.experiment_id = ?1", eid);
    const char *due[2] = {NULL, NULL};
    int nd = 0;
    if (failed > 0 && !json_object_get(sent, "first_failure")) due[nd++] = "first_failure";
    json_t *fin = json_object_get(sent, "finished_at_attempts");
    if (open_n == 0 && (!json_is_integer(fin) || json_integer_value(fin) != attempts))
        due[nd++] = c->by_state[JOB_COMPLETED] == c->total ? "done" : "failed";
    // recorded before sending: a failed delivery is logged once, not retried at every refresh
    for (int i = 0; i < nd; i++) {
        if (strcmp(due[i], "first_failure") == 0) json_object_set_new(sent, "first_failure", json_integer((json_int_t)time(NULL)));
        else json_object_set_new(sent, "finished_at_attempts", json_integer(attempts));
    }
    if (nd) write_json_atomic(sent_path, sent);
    json_decref(sent);
    if (lk >= 0) close(lk);
    for (int i = 0; i < nd; i++) {
        const char *ev = due[i];
        if (!wants(cfg, ev)) continue;
        json_t *p = notify_payload(db, eid, ev, c);
        char *body = json_dumps(p, JSON_COMPACT);
        json_decref(p);
        char err[512];
        if (body && notify_post(url, body, log_path, 4, err, sizeof err) < 0)
            log_line(log_path, "event %s not delivered: %s (segx carries on)", ev, err);
        else if (body)
            log_line(log_path, "event %s sent", ev);
        free(body);
    }
    json_decref(cfg);
}
