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
"""
import http.client
import http.server
import sys
import threading

mode, portfile = sys.argv[1], sys.argv[2]
upstream = int(sys.argv[3]) if len(sys.argv) > 3 else 0
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

    do_GET = do_POST = do_DELETE = handle_any


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402  (rename last: the test waits for the file)
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
