#!/usr/bin/env bash
# Notifications (orchestrator/notify.c): `segx run --notify URL` and the spec's "notify" block POST
# JSON to a local HTTP listener on 127.0.0.1 — a Slack-compatible "text" plus experiment, counts by
# state, GPU-hours and (first_failure) the failed cell — once per event; a listener that answers 500
# first gets the message on a retry; an unreachable URL is logged and changes nothing else.
# (The local backend: notifications do not depend on the scheduler.)
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
cat >listen.py <<'PY'
import http.server, json, sys
fail_first = int(sys.argv[2])
seen = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen["n"] += 1
        if seen["n"] <= fail_first:
            self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers(); return
        with open(sys.argv[1] + ".bodies", "a") as f:
            f.write(json.dumps({"ctype": self.headers.get("Content-Type"), "body": json.loads(body)}) + "\n")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
PY
listen() { # NAME FAIL_FIRST -> port in NAME
  python3 listen.py "$TEST_TMP/$1" "$2" & pids+=($!)
  for _ in $(seq 1 100); do [ -s "$1" ] && break; sleep 0.1; done
}
pids=()
listen a 0
listen b 1
field() { python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; print(eval(sys.argv[2]))' "$@"; }
cat >n1.json <<'JSON'
{"name": "n1",
 "trainer": {"command": "bash -c 'exit {{fail}}' {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "fail": [0, 0, 3]},
 "resources": {"time": "00:05:00"}}
JSON
sed -i 's/"fail": \[0, 0, 3\]/"fail": [0, 3], "seed": [1, 2]/' n1.json
out=$("$SEGX" run n1.json --backend local --no-report --notify "http://127.0.0.1:$(cat a)/hook" 2>&1); rc=$?
check_eq "run exits 1 (a cell failed), not because of the notification" 1 "$rc"
check_eq "two POSTs: first_failure, then failed" "first_failure failed" "$(field a.bodies '" ".join(x["body"]["event"] for x in l)')"
check_eq "sent as application/json" "application/json" "$(field a.bodies 'l[0]["ctype"]')"
check_eq "failed: experiment, cells and counts by state" "n1 4 {'completed': 2, 'failed': 2}" \
  "$(field a.bodies 'l[1]["body"]["experiment"] + " " + str(l[1]["body"]["cells"]) + " " + str(l[1]["body"]["counts"])')"
case $(field a.bodies 'l[1]["body"]["text"]') in "segx: experiment n1 finished with failures: 4 cells: 2 completed, 2 failed; "*" GPU-hours"*)
  pass "failed: a readable text line";; *) fail "failed: a readable text line" "$(field a.bodies 'l[1]["body"]["text"]')";; esac
# (sent before collect, which may replace end - start with runs.tsv's whole seconds)
gh=$(sqlite3 "$SEGX_DB" "SELECT round(SUM((a.end_time - a.start_time) * c.gpus) / 3600.0, 6) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'n1' AND a.attempt = 1")
check_eq "gpu_hours is the sum over attempts of (end - start) x GPUs" "$gh" "$(field a.bodies 'round(l[1]["body"]["gpu_hours"], 6)')"
sqlite3 "$SEGX_DB" "SELECT c.key FROM cells c JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'n1' AND c.state = 'failed'" >failed.keys
check_eq "first_failure names a failed cell with exit code 3" "failed 3 True" \
  "$(field a.bodies 'l[0]["body"]["cell"]["state"] + " " + str(l[0]["body"]["cell"]["exit_code"]) + " " + str(l[0]["body"]["cell"]["key"] in open("failed.keys").read().split())')"
"$SEGX" status n1 >/dev/null 2>&1; "$SEGX" status n1 >/dev/null 2>&1
check_eq "status afterwards sends nothing again" 2 "$(wc -l <a.bodies)"
# a resubmit that finishes is announced again
"$SEGX" run n1.json --backend local --no-report --rerun-failed >/dev/null 2>&1
check_eq "rerun of the failed cells: one more 'failed'" "first_failure failed failed" "$(field a.bodies '" ".join(x["body"]["event"] for x in l)')"

# the spec's notify block, only "done"; the listener answers 500 first: delivered on the retry
cat >n2.json <<JSON
{"name": "n2",
 "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2]},
 "resources": {"time": "00:05:00"},
 "notify": {"url": "http://127.0.0.1:$(cat b)/x", "on": ["done"]}}
JSON
out=$("$SEGX" run n2.json --backend local --no-report 2>&1); rc=$?
check_eq "run exits 0" 0 "$rc"
check_eq "one 'done' message, received on the second try" "done {'completed': 2}" "$(field b.bodies 'l[0]["body"]["event"] + " " + str(l[0]["body"]["counts"])' 2>&1)"
check "notify.log shows the 500 and the retry" grep -q "HTTP 500 (try 1 of 4, retrying)" runs/n2/notify.log
check "notify.log shows the delivery" grep -q "delivered (HTTP 200, try 2)" runs/n2/notify.log

# nothing listens: logged, never fatal
sed -e 's/"n2"/"n3"/' -e "s|http://127.0.0.1:[0-9]*/x|http://127.0.0.1:9/x|" n2.json >n3.json
out=$("$SEGX" run n3.json --backend local --no-report 2>&1); rc=$?
check_eq "an unreachable URL: run still exits 0" 0 "$rc"
check "and notify.log says it was not delivered" grep -q "event done not delivered: POST http://127.0.0.1:9/x" runs/n3/notify.log

# bad input
printf '{"name": "n4", "trainer": {"command": "true {{run_dir}}"}, "matrix": {"model": ["m"], "batch_per_gpu": [8]},\n "notify": {"url": "slack", "on": ["done"]}}\n' >n4.json
out=$("$SEGX" plan n4.json 2>&1); rc=$?
case $out in *"n4.json:2:"*"notify.url"*"http:// or https:// URL"*) pass "spec: a bad notify.url names file:line and the key";; *) fail "spec: a bad notify.url names file:line and the key" "$out";; esac
printf '{"name": "n5", "trainer": {"command": "true {{run_dir}}"}, "matrix": {"model": ["m"], "batch_per_gpu": [8]},\n "notify": {"url": "http://example.org/hook", "on": ["finished"]}}\n' >n5.json
out=$("$SEGX" plan n5.json 2>&1)
case $out in *"notify.on"*'unknown event "finished"'*) pass "spec: an unknown event is named";; *) fail "spec: an unknown event is named" "$out";; esac
out=$("$SEGX" submit n2 --backend local --notify ftp://x 2>&1); rc=$?
check_eq "--notify ftp://x is a usage error" 2 "$rc"
kill "${pids[@]}" 2>/dev/null
done_testing
