#!/usr/bin/env python3
"""bench/web_chrome.py — time a page's charts in real headless Chromium (used by bench/web).

Drives `chromium --headless --remote-debugging-pipe` over the DevTools protocol (no virtual
time: --virtual-time-budget stops the page clock while fetches are pending, so it hides the
network part). For each URL, RUNS times in a fresh tab (the browser's cache off): loads it and
polls until app.js marks every chart drawn (<html data-charts-ms>, performance.now() since
navigation start) or failed, and reads the page's load event time, and the CPU time all of
Chromium's processes used meanwhile (/proc: a figure the machine's load does not inflate the way
it does wall time; the polling adds a little). Prints one line per URL:
  URL charts_ms=a,b,c load_ms=a,b,c chromium_cpu_ms=a,b,c points=N errors=K
With --warm, each URL is loaded once more first, untimed (the server computes the answers the
page fetches; later runs measure the browser with the server's cache warm).
usage: bench/web_chrome.py [--runs N] [--warm] URL...
"""
import json, os, subprocess, sys, tempfile, time

def tree_cpu_ms(root):
    """CPU time (user + system, ms) of root and all its descendants, from /proc."""
    kids, stat = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try:
            with open("/proc/%s/stat" % d) as f: s = f.read()
        except OSError: continue
        f = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(f[1]), []).append(int(d))
        stat[int(d)] = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])   # with reaped children
    tot, todo = 0, [root]
    while todo:
        p = todo.pop()
        tot += stat.get(p, 0)
        todo.extend(kids.get(p, []))
    return tot * 1000.0 / os.sysconf("SC_CLK_TCK")

def main():
    args = sys.argv[1:]
    runs = 3
    warm = 0
    while args[:1] in (["--runs"], ["--warm"]):
        if args[0] == "--warm": warm = 1; args = args[1:]
        else: runs = int(args[1]); args = args[2:]
    prof = tempfile.mkdtemp(prefix="segx-chrome-")
    r_ours, w_chrome = os.pipe()   # chrome writes fd 4, we read
    r_chrome, w_ours = os.pipe()   # we write, chrome reads fd 3
    def fds():   # in the child: its ends as fds 3 (reads) and 4 (writes)
        a, b = os.dup(r_chrome), os.dup(w_chrome)
        a, b = os.dup2(a, 100), os.dup2(b, 101)
        os.dup2(100, 3); os.dup2(101, 4)
    p = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          "--user-data-dir=" + prof, "--remote-debugging-pipe", "about:blank"],
                         preexec_fn=fds, close_fds=False,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(prof, "stderr.log"), "w"))
    os.close(r_chrome); os.close(w_chrome)
    rf = os.fdopen(r_ours, "rb", buffering=0)
    buf = b""
    seq = [0]
    def send(method, params=None, session=None):
        seq[0] += 1
        m = {"id": seq[0], "method": method, "params": params or {}}
        if session: m["sessionId"] = session
        os.write(w_ours, json.dumps(m).encode() + b"\0")
        return seq[0]
    def call(method, params=None, session=None, timeout=300):
        nonlocal buf
        i = send(method, params, session)
        end = time.time() + timeout
        while time.time() < end:
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if m.get("id") == i:
                    if "error" in m: raise RuntimeError("%s: %s" % (method, m["error"]))
                    return m["result"]
            chunk = rf.read(1 << 16)
            if not chunk: raise RuntimeError("chromium closed the pipe")
            buf += chunk
        raise RuntimeError(method + ": no answer")
    try:
        for url in args:
            charts, loads, cpus, points, errors = [], [], [], "", 0
            for run in range(runs + warm):
                t = call("Target.createTarget", {"url": "about:blank"})["targetId"]
                s = call("Target.attachToTarget", {"targetId": t, "flatten": True})["sessionId"]
                call("Network.enable", {}, s)
                call("Network.setCacheDisabled", {"cacheDisabled": True}, s)
                cpu0 = tree_cpu_ms(p.pid)
                call("Page.navigate", {"url": url}, s)
                end = time.time() + 300
                res = None
                while time.time() < end:
                    res = call("Runtime.evaluate", {"returnByValue": True, "expression":
                        "(function(){var d=document.documentElement, c=document.querySelectorAll('div.chart');"
                        "var n=performance.getEntriesByType('navigation')[0];"
                        "return {ready: document.readyState, ms: d.dataset.chartsMs || null, charts: c.length,"
                        " load: n && n.loadEventEnd > 0 ? n.loadEventEnd : null,"
                        " points: Array.prototype.map.call(c, function(x){return x.dataset.points || ''}).join('+'),"
                        " marks: performance.getEntriesByType('mark').map(function(m){return m.name.replace('segx-','')+'@'+Math.round(m.startTime)}).join(' ')"
                        "  + ' | ' + performance.getEntriesByType('resource').map(function(r){return r.name.replace(/^.*\\/\\/[^/]*/,'')+'@'+Math.round(r.startTime)+'-'+Math.round(r.responseEnd)}).join(' '),"
                        " errors: Array.prototype.filter.call(c, function(x){return x.dataset.error}).length};})()"}, s)["result"].get("value")
                    if res and res["ready"] == "complete" and res["load"] and (res["charts"] == 0 or res["ms"]):
                        break
                    time.sleep(0.02)
                if run < warm:   # untimed
                    call("Target.closeTarget", {"targetId": t})
                    continue
                cpus.append(str(round(tree_cpu_ms(p.pid) - cpu0)))
                res = res or {"ms": None, "load": None, "points": "", "errors": 0}
                charts.append(res["ms"] or "-")
                loads.append(str(round(res["load"])) if res["load"] else "-")
                points, errors = res["points"], errors + res["errors"]
                if os.environ.get("SEGX_CHROME_MARKS"): print("  marks:", res.get("marks"), file=sys.stderr)
                call("Target.closeTarget", {"targetId": t})
            print("%s charts_ms=%s load_ms=%s chromium_cpu_ms=%s points=%s errors=%d" % (
                url, ",".join(charts), ",".join(loads), ",".join(cpus), points or "-", errors))
            sys.stdout.flush()
    finally:
        try: call("Browser.close", timeout=10)
        except Exception: pass
        p.wait(timeout=30)
        subprocess.run(["rm", "-rf", prof])

main()
