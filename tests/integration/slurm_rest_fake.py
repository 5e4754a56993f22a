#!/usr/bin/env python3
"""A stand-in for slurmrestd on 127.0.0.1, for tests/integration/slurm_rest.sh: either a server that
answers wrong on purpose, or a proxy in front of the real slurmrestd that loses a reply.

  slurm_rest_fake.py MODE PORTFILE [UPSTREAM_PORT]

Binds a free port and writes it to PORTFILE. Modes:
  version    /openapi/v3 lists only API v0.0.99
  html       every request: 200 with an HTML login page
  truncated  every request: Content-Length 5000, 200 bytes of JSON, then the connection closes
  badjson    every request: 200 application/json with a cut-off JSON document (length correct)
  unauth     every request: 401 "Authentication failure" (text/plain), as slurmrestd without a token
  lose       proxy to UPSTREAM_PORT; the 2nd POST .../job/submit reaches slurmrestd but its reply is
             dropped (the connection closes), and the next 2 requests get a 503 HTML page

  slurm_rest_fake.py emulate PORTFILE VERSION [ALSO_OFFERED...]

A slurmrestd of a later API VERSION (v0.0.39, v0.0.40, v0.0.41: slurm_rest_versions.json beside this
file describes each): /openapi/v3 lists VERSION (and ALSO_OFFERED), ping, job/submit, jobs, job/ID.
A submit whose body has a field that version does not have, a value of the wrong type, or the script
in the wrong place is refused (HTTP 400, slurmrestd's error list) and logged "refused: ..."; an
accepted one is logged "submit: BODY". Jobs go PENDING, RUNNING, COMPLETED, one step per GET /jobs,
and are described in that version's shapes; DELETE cancels.
"""
import http.client
import http.server
import sys
import threading

mode, portfile = sys.argv[1], sys.argv[2]
upstream = int(sys.argv[3]) if len(sys.argv) > 3 and mode == "lose" else 0
version = sys.argv[3] if mode == "emulate" else ""
if mode == "emulate":
    import json
    import os
    import time
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "slurm_rest_versions.json")) as f:
        spec = json.load(f)[version]
    offered = [version] + sys.argv[4:]
    jobs = []   # {"id", "name", "comment", "state", "submit", "start", "end", "task"}


def type_ok(t, v):
    if t == "string":
        return isinstance(v, str)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "bool":
        return isinstance(v, bool)
    if t == "strings":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if t == "no_val":
        return isinstance(v, dict) and set(v) <= {"set", "infinite", "number"} and isinstance(v.get("number", 0), int)
    return False


def check_submit(body):
    """The reasons this version's slurmrestd would not take body (empty: it would)."""
    bad = []
    if not isinstance(body, dict) or not isinstance(body.get("job"), dict):
        return ["no \"job\" object"]
    job = body["job"]
    for k in body:
        if k not in ("job", "script"):
            bad.append("unknown top-level field %r" % k)
    if spec["script"] == "top" and not isinstance(body.get("script"), str):
        bad.append("no top-level \"script\"")
    if spec["script"] == "job" and ("script" in body or not isinstance(job.get("script"), str)):
        bad.append("the script belongs in job.script (the top-level one is deprecated)")
    for k, v in job.items():
        t = spec["job"].get(k)
        if t is None:
            bad.append("unknown field job.%s" % k)
        elif not type_ok(t, v):
            bad.append("job.%s: %s is not of type %s" % (k, json.dumps(v)[:60], t))
    return bad


def no_val(n):
    return {"set": True, "infinite": False, "number": n}


def describe(j, user):
    """One job of GET /jobs in this version's shapes."""
    shape = spec["jobs"]
    t = (lambda n: n) if shape["times"] == "int" else no_val
    state = j["state"]
    d = {"job_id": j["id"], "name": j["name"], "comment": j["comment"], "user_name": user, "nodes": "n1" if state != "PENDING" else "",
         "job_state": state if shape["job_state"] == "string" else [state], "state_reason": "None", "restart_cnt": 0,
         "submit_time": t(j["submit"]), "start_time": t(j["start"]), "end_time": t(j["end"]),
         "array_job_id": no_val(j["array"]), "array_task_id": no_val(j["task"]) if j["task"] is not None else {"set": False, "infinite": False, "number": 0}}
    code = 0 if state != "CANCELLED" else 15
    if shape["exit_code"] == "no_val":
        d["exit_code"] = no_val(code)
    else:
        d["exit_code"] = {"status": ["SUCCESS" if code == 0 else "SIGNALED"], "return_code": no_val(0),
                          "signal": {"id": no_val(code) if code else {"set": False, "infinite": False, "number": 0}, "name": ""}}
    return d


def tasks_of(array):
    out = []
    for part in array.split("%")[0].split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out
lock = threading.Lock()
state = {"submits": 0, "fail_next": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake %s: %s\n" % (mode, fmt % args))

    def send(self, code, ctype, body, length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if mode == "emulate":
            return self.emulate(body)
        if mode == "version":
            if self.path == "/openapi/v3":
                return self.send(200, "application/json", b'{"openapi": "3.0.2", "paths": {"/slurm/v0.0.99/job/submit": {}, "/slurm/v0.0.99/jobs": {}}}')
            return self.send(404, "text/plain", b"Unable find requested URL. Please view /openapi/v3 for API reference.")
        if mode == "html":
            return self.send(200, "text/html; charset=utf-8", b"<!DOCTYPE html><html><head><title>Sign in - Example SSO</title></head><body>Please sign in</body></html>")
        if mode == "truncated":
            self.close_connection = True
            return self.send(200, "application/json", (b'{"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "paths": {' + b" " * 200)[:200], length=5000)
        if mode == "badjson":
            return self.send(200, "application/json", b'{"openapi": "3.0.2", "paths": {"/slurm/v0.0.38/job/submit": {}, "/slurm/v0.0.38/jo')
        if mode == "unauth":
            return self.send(401, "text/plain", b"Authentication failure")
        # lose: a proxy in front of the real slurmrestd
        with lock:
            if state["fail_next"] > 0:
                state["fail_next"] -= 1
                return self.send(503, "text/html", b"<html><body><h1>503 Service Unavailable</h1></body></html>")
            lose = False
            if self.command == "POST" and self.path.endswith("/job/submit"):
                state["submits"] += 1
                lose = state["submits"] == 2
        c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        c.request(self.command, self.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        if lose:
            with lock:
                state["fail_next"] = 2
            sys.stderr.write("fake lose: dropped the reply to submit #2: %s\n" % data[-120:])
            self.close_connection = True
            return
        self.send(r.status, r.getheader("Content-Type") or "application/json", data)

    def reply(self, code, obj):
        obj.setdefault("errors", [])
        obj.setdefault("warnings", [])
        obj["meta"] = {"plugin": {"type": "openapi/slurmctld", "data_parser": "data_parser/" + version},
                       "slurm": {"release": spec["release"] + ".0"}}
        self.send(code, "application/json", json.dumps(obj).encode())

    def emulate(self, body):
        p = "/slurm/" + version
        now = int(time.time())
        if self.path == "/openapi/v3":
            paths = {}
            for v in offered:
                for x in ("ping", "jobs", "job/submit", "job/{job_id}"):
                    paths["/slurm/%s/%s" % (v, x)] = {}
            return self.send(200, "application/json", json.dumps({"openapi": "3.0.3", "paths": paths}).encode())
        if self.path == p + "/ping" and self.command == "GET":
            return self.reply(200, {"pings": [{"hostname": "fake", "pinged": "UP", "latency": 1, "mode": "primary"}]})
        if self.path == p + "/job/submit" and self.command == "POST":
            try:
                req = json.loads(body or b"")
            except ValueError as e:
                req, bad = None, ["not JSON: %s" % e]
            else:
                bad = check_submit(req)
            if bad:
                sys.stderr.write("fake emulate %s: refused: %s\n" % (version, "; ".join(bad)))
                return self.reply(400, {"errors": [{"description": b, "error_number": 9001, "error": "Failure during parsing",
                                                    "source": "#/job"} for b in bad]})
            sys.stderr.write("fake emulate %s: submit: %s\n" % (version, json.dumps(req)))
            job = req["job"]
            with lock:
                first = len(jobs) + 100
                tasks = tasks_of(job["array"]) if job.get("array") else [None]
                for i, task in enumerate(tasks):
                    jobs.append({"id": first + i, "array": first if task is not None else 0, "task": task, "name": job.get("name", ""),
                                 "comment": job.get("comment", ""), "state": "PENDING", "submit": now, "start": 0, "end": 0})
            return self.reply(200, {"job_id": first, "step_id": "batch", "job_submit_user_msg": ""})
        if self.path == p + "/jobs" and self.command == "GET":
            user = self.headers.get("X-SLURM-USER-NAME", "")
            with lock:
                for j in jobs:
                    if j["state"] == "PENDING":
                        j["state"], j["start"] = "RUNNING", now
                    elif j["state"] == "RUNNING":
                        j["state"], j["end"] = "COMPLETED", now
                out = [describe(j, user) for j in jobs]
            return self.reply(200, {"jobs": out, "last_backfill": no_val(now), "last_update": no_val(now)})
        if self.path.startswith(p + "/job/") and self.command == "DELETE":
            jid = self.path.rsplit("/", 1)[1]
            with lock:
                hit = [j for j in jobs if str(j["id"]) == jid or "%d_%s" % (j["array"], j["task"]) == jid]
                for j in hit:
                    if j["state"] in ("PENDING", "RUNNING"):
                        j["state"], j["end"] = "CANCELLED", now
            if hit:
                return self.reply(200, {})
            return self.reply(404, {"errors": [{"description": "Job %s not found" % jid, "error_number": 2017, "error": "Invalid job id specified"}]})
        return self.send(404, "text/plain", b"Unable find requested URL. Please view /openapi/v3 for API reference.")

    do_GET = do_POST = do_DELETE = handle_any


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402  (rename last: the test waits for the file)
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
