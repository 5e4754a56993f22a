// orchestrator/notify.h — notifications: a JSON POST (Slack/Mattermost-compatible "text" plus
// structured fields) when an experiment finishes or its first cell fails.
// defines: notify_spec_check, notify_set_url, notify_after_refresh, notify_payload, notify_post.
//
// Where the URL comes from: `segx run/submit --notify URL` (kept in RUN_ROOT/notify.json, every
// event), else the spec's "notify": {"url": URL, "on": ["done", "failed", "first_failure"]}
// (default on: all three). Events, each sent once (RUN_ROOT/notify-sent.json remembers them):
//   first_failure  the first cell that ends failed, timeout, out-of-memory or node-fail
//   done / failed  no cell planned or in flight, no eval job in flight: "done" when every cell
//                  completed, else "failed"; announced again after a resubmit finishes
// Checked after every status refresh (segx status, status --watch, run), so a `segx submit
// --notify` is announced by whichever of them runs next. Delivery: up to 4 tries with back-off on
// connection errors, 429 and 5xx; each try is logged in RUN_ROOT/notify.log; a failed delivery is
// logged and never fails the command.
#ifndef SEGX_NOTIFY_H
#define SEGX_NOTIFY_H
#include "orchestrator/submit.h"
#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

// Checks a spec's "notify" value. 0, or -1 with err and *keypath ("notify", "notify.url", ...).
int notify_spec_check(json_t *notify, const char **keypath, char *err, size_t errlen);
// --notify URL: checks it (http:// or https://) and stores it for the experiment in run_root.
int notify_set_url(const char *run_root, const char *url, char *err, size_t errlen);
// After a status refresh with its counts: sends the events that became due. Never fails.
void notify_after_refresh(sqlite3 *db, long long experiment_id, const char *run_root, const StatusCounts *c);
// The message for event of the experiment (new reference): text, event, experiment, cells,
// counts by state, gpu_hours, headline (best final metric), and for first_failure the cell.
json_t *notify_payload(sqlite3 *db, long long experiment_id, const char *event, const StatusCounts *c);
// POSTs body (JSON) to url, retrying; appends one line per try to log_path (may be NULL).
// 0 delivered (2xx), -1 with err.
int notify_post(const char *url, const char *body, const char *log_path, int tries, char *err, size_t errlen);
#endif
