// web/web_impl.h — what the dashboard's files share (not a public interface; see web.h).
// defines: Out (a response body being written), out_*, web_db_get/put, web_experiment_id,
//          the api_* and page_* handlers, web_static_* (generated from web/static/).
#ifndef SEGX_WEB_IMPL_H
#define SEGX_WEB_IMPL_H
#include "web/web.h"
#include "orchestrator/table.h"
#include <jansson.h>

// A response body written through a memory stream.
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} Out;
int  out_open(Out *o);
// Closes the stream and moves the body into r (status, type as given).
void out_finish(Out *o, WebResponse *r, int status, const char *type);
void out_discard(Out *o);

// Error responses: JSON {"error": msg, "status": N} on /api/, an HTML page elsewhere.
void web_error(WebResponse *r, int api, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void web_json_response(WebResponse *r, int status, json_t *j);   // steals j

sqlite3 *web_db_get(WebApp *app);
// `segx report KIND --format json`'s bytes as the answer r (shared through the answer cache
// while a request is being answered). 0, or -1 (500) / -2 (400) with err.
int web_report_answer(sqlite3 *db, const char *kind, const char *experiment, const char *target, WebResponse *r,
                      char *err, size_t errlen);
void     web_db_put(WebApp *app, sqlite3 *db);


// /api/... (path after "/api/"); pages (path after "/").
void api_experiments(sqlite3 *db, WebResponse *r);
void api_experiment(sqlite3 *db, const char *name, const char *what, const char *rest, const WebRequest *q,
                    WebResponse *r);
void api_sql(sqlite3 *db, const WebRequest *q, WebResponse *r);
json_t *web_experiments_json(sqlite3 *db, char *err, size_t errlen);
json_t *web_cell_json(sqlite3 *db, long long exp_id, const char *key, char *err, size_t errlen);
// The SQL box: runs one read-only statement with the row and time limits. 0, or -1 with err
// (the message to show) and *status the HTTP status to answer.
int web_sql_run(sqlite3 *db, const char *sql, Table **out, int *truncated, char *err, size_t errlen, int *status);
// A cell's run-dir file tail (at most max bytes, from a line start), malloc'd, NULL if unreadable.
char *web_file_tail(const char *dir, const char *name, size_t max);

void page_experiments(sqlite3 *db, WebResponse *r);
void page_experiment(sqlite3 *db, const char *name, const char *what, const char *rest, const WebRequest *q,
                     WebResponse *r);
void page_sql(sqlite3 *db, const WebRequest *q, WebResponse *r);

extern const char web_static_app_js[];
extern const char web_static_style_css[];

#endif
