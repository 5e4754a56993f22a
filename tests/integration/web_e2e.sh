#!/usr/bin/env bash
# The dashboard end to end in a real headless Chromium (Debian's chromium): a real local-backend
# run (an external trainer that finishes in a moment, 8 cells, one model named
# <script>alert(1)</script>) into a DB, `segx serve` on a random loopback port, every page loaded
# with --dump-dom and --screenshot. Checks: each chart is drawn with one point mark per data
# point and titled axes, the numbers in the page's tables equal `segx report --format json`
# (exactly, through data-v), the hostile model name stays text, the SQL box refuses a write; then
# `segx plot` and `segx report --format html` on the same DB. SEGX_WEB_SHOTS=DIR keeps the
# screenshots.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if ! command -v chromium >/dev/null; then skip "chromium is not installed (Debian package chromium: scripts/install-deps)"; done_testing; exit $?; fi
have_vega=1; [ -r /usr/share/javascript/vega/vega-view.min.js ] || have_vega=0
cat >tiny_train.py <<'EOF'
# A trainer that ends at once: 3 epochs of deterministic numbers from its GPUs, batch and seed.
import sys
gpus, bs, seed, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for ep in range(1, epochs + 1):
    ips = 100.0 * gpus ** 0.9 * (1 + 0.01 * seed)
    print(f"epoch {ep} loss {1.0 / ep:.4f} miou {0.2 + 0.1 * ep + 0.01 * seed - 0.002 * bs:.4f} ips {ips:.3f} epoch_s {1000.0 / ips:.4f}", flush=True)
EOF
cat >spec.json <<EOF
{"name": "web-e2e",
 "trainer": {"command": "python3 $TEST_TMP/tiny_train.py {{gpus}} {{batch_per_gpu}} {{seed}} {{epochs}}", "epochs": 3,
   "metrics": {"epoch": "epoch (\\\\d+)", "train_loss": "loss ([0-9.]+)", "miou": "miou ([0-9.]+)",
               "images_per_s": "ips ([0-9.]+)", "epoch_s": "epoch_s ([0-9.]+)"}},
 "matrix": {"model": ["fcn", "<script>alert(1)</script>"], "gpu_type": ["cpu"], "gpus": [1, 2], "batch_per_gpu": [4], "seed": [1, 2]},
 "eval": {"targets": {"miou": 0.5}},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}}
EOF
out=$(nice "$SEGX" run spec.json --backend local --db segx.db --max-parallel 2 --no-report 2>&1); rc=$?
check_eq "segx run: 8 cells of the tiny trainer" "0 completed|8" "$rc $(sqlite3 segx.db 'SELECT state, count(*) FROM cells GROUP BY state')"
[ "$rc" = 0 ] || echo "$out" | tail -20 | sed 's/^/# /'
for k in cells accuracy speedup cost; do "$SEGX" report "$k" -e web-e2e --db segx.db --format json >"report-$k.json" 2>/dev/null; done

# --- serve on a random loopback port
"$SEGX" serve --db segx.db --port 0 2>serve.log &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
port=
for _ in $(seq 1 300); do
  port=$(grep -o '127\.0\.0\.1:[0-9]*' serve.log | head -1 | cut -d: -f2)
  [ -n "$port" ] && break
  kill -0 $serve_pid 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then fail "segx serve prints its URL" "$(cat serve.log)"; done_testing; exit $?; fi
pass "segx serve listens on 127.0.0.1:$port"
base=http://127.0.0.1:$port

# Chromium: --dump-dom (after scripts ran and charts were drawn) and --screenshot in one run.
# Charts are drawn after their fetches: a page whose chart divs are not all marked drawn
# (data-points) or failed (data-error) when the DOM is dumped is loaded again with more time.
browse() { # NAME URL
  local prof budget
  for budget in 15000 60000 180000; do
    prof=$(mktemp -d "$TEST_TMP/chrome.XXXXXX")
    timeout 300 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$prof" \
      --hide-scrollbars --window-size=1280,1000 --virtual-time-budget=$budget \
      --screenshot="$TEST_TMP/$1.png" --dump-dom "$2" >"$1.html" 2>"$1.chrome.log"
    [ "$(grep -o '<div class="chart"' "$1.html" | wc -l)" -le "$(grep -oE 'data-(points|error)=' "$1.html" | wc -l)" ] && break
  done
  [ -n "${SEGX_WEB_SHOTS:-}" ] && mkdir -p "$SEGX_WEB_SHOTS" && cp "$TEST_TMP/$1.png" "$SEGX_WEB_SHOTS/"
  [ -s "$1.html" ] && [ -s "$TEST_TMP/$1.png" ]
}
key=$(sqlite3 segx.db "SELECT key FROM cells WHERE model LIKE '<script>%' ORDER BY key LIMIT 1")
pages="experiments:/ grid:/e/web-e2e scaling:/e/web-e2e/scaling accuracy:/e/web-e2e/accuracy curves:/e/web-e2e/curves
       cost:/e/web-e2e/cost cell:/e/web-e2e/cell/$key sql:/sql?q=SELECT%20model%2C%20count(*)%20AS%20n%20FROM%20cells%20GROUP%20BY%201"
for p in $pages; do
  name=${p%%:*}; path=${p#*:}
  check "chromium loads $name ($path): DOM and screenshot" browse "$name" "$base$path"
done

# --- what the pages hold (python3's html.parser on the dumped DOM)
cat >check.py <<'EOF'
import json, sys
from html.parser import HTMLParser
class Dom(HTMLParser):
    # div/g elements on a stack, each with its kind: chart, points (vega's point marks), axistitle, other
    def __init__(s):
        super().__init__(); s.stack = []; s.charts = {}; s.tds = []; s.scripts = []; s.text = []; s.boxes = 0; s.table = None
    def chart(s):
        return next((e[1] for e in reversed(s.stack) if e[0] == 'chart'), None)
    def handle_starttag(s, tag, attrs):
        a = dict(attrs); cls = (a.get('class') or '').split()
        if tag in ('div', 'g'):
            kind = 'other'
            if tag == 'div' and 'chart' in cls:
                kind = 'chart'
                s.charts[a.get('data-kind')] = {'points': a.get('data-points'), 'error': a.get('data-error'), 'marks': 0, 'axis_titles': []}
            elif 'mark-symbol' in cls and 'points' in cls: kind = 'points'
            elif 'role-axis-title' in cls: kind = 'axistitle'
            s.stack.append((kind, a.get('data-kind') if kind == 'chart' else None))
        elif tag == 'path' and any(e[0] == 'points' for e in s.stack) and s.chart():
            s.charts[s.chart()]['marks'] += 1
        elif tag == 'td' and 'data-v' in a:
            s.tds.append((a.get('data-col'), a['data-v'], s.table))
        elif tag == 'table':
            s.table = a.get('id')
        elif tag == 'script':
            s.scripts.append(a.get('src'))
        elif tag == 'a' and 'box' in cls:
            s.boxes += 1
    def handle_endtag(s, tag):
        if tag in ('div', 'g') and s.stack: s.stack.pop()
    def handle_data(s, d):
        if any(e[0] == 'axistitle' for e in s.stack) and s.chart():
            s.charts[s.chart()]['axis_titles'].append(d)
        s.text.append(d)
d = Dom(); d.feed(open(sys.argv[1]).read())
json.dump({'charts': d.charts, 'tds': d.tds, 'scripts': d.scripts, 'text': ''.join(d.text), 'boxes': d.boxes}, sys.stdout)
EOF
parse() { python3 check.py "$1.html"; }
hostile='<script>alert(1)</script>'

# Escaping: on every page the name is text (the DOM serialises it as &lt;script&gt;), never an element.
bad=""
for p in $pages; do
  name=${p%%:*}
  grep -q '<script>alert(1)' "$name.html" && bad="$bad $name"
  [ "$(parse "$name" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for s in d["scripts"] if s is None))')" = 0 ] || bad="$bad $name(inline-script)"
done
check_eq "the hostile model name is never an element (no inline script on any page)" "" "$bad"
for p in grid scaling cell sql; do
  case $(parse $p | python3 -c 'import json,sys; print(sys.argv[1] in json.load(sys.stdin)["text"])' "$hostile") in
    True) pass "$p: the model name is shown as text";; *) fail "$p: the model name is shown as text";; esac
done

# Numbers: every data-v in a report table equals the report's JSON, row by row.
cmp_tables() { # PAGE TABLE_ID REPORT_JSON
  parse "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin); rows = json.load(open(sys.argv[2])); tid = sys.argv[1]
tds = [t for t in d["tds"] if t[2] == tid]
cols = []
for c, _, _ in tds:
    if c in cols: break
    cols.append(c)
if not rows or not cols or len(tds) != len(rows) * len(cols): sys.exit("%d values for %d rows x %d columns" % (len(tds), len(rows), len(cols)))
for i, (c, v, _) in enumerate(tds):
    want = rows[i // len(cols)][c]
    got = v if isinstance(want, str) else float(v)
    if got != want: sys.exit("row %d %s: page %r, report %r" % (i // len(cols), c, got, want))
print("ok %d" % len(tds))' "$2" "$3"
}
for t in grid:report-cells:cells scaling:report-speedup:speedup accuracy:report-accuracy:accuracy cost:report-cost:cost; do
  IFS=: read -r page tid kind <<<"$t"
  out=$(cmp_tables "$page" "$tid" "report-$kind.json" 2>&1)
  case $out in ok*) pass "$page: table numbers equal segx report $kind --format json ($out values)";; *) fail "$page: table numbers equal segx report $kind" "$out";; esac
done
out=$(parse experiments | python3 -c '
import json, sys
d = json.load(sys.stdin); cost = json.load(open(sys.argv[1]))
v = {c: x for c, x, _ in d["tds"]}
used = 0.0
for r in cost: used += r["gpu_hours"]
planned = 0.0
for r in cost: planned += r["est_gpu_hours"]
print(int(v["cells"]), float(v["gpu_hours"]) == used, float(v["est_gpu_hours"]) == planned)' report-cost.json)
check_eq "experiments page: 8 cells, GPU-hours used and planned = segx report cost summed" "8 True True" "$out"
check_eq "grid: one box per cell" 8 "$(parse grid | python3 -c 'import json,sys; print(json.load(sys.stdin)["boxes"])')"
# Filters: one per parameter of the cells that varies (from their params), none for one that does not.
axes=$(grep -o '<select name="[^"]*"' grid.html | cut -d'"' -f2 | sort | tr '\n' ' ')
check_eq "grid filters: gpus, model and seed vary (offered); epochs and gpu_type do not (not offered)" "yes yes yes no no" \
  "$(for a in gpus model seed epochs gpu_type; do case " $axes" in *" $a "*) printf 'yes ';; *) printf 'no ';; esac; done | sed 's/ $//')"
check "chromium loads the grid filtered by two parameters" browse grid-filtered "$base/e/web-e2e?gpus=2&seed=2"
check_eq "grid filtered by gpus=2 and seed=2: one box per model" 2 \
  "$(parse grid-filtered | python3 -c 'import json,sys; print(json.load(sys.stdin)["boxes"])')"

# Charts: drawn, one point mark per data point, both axes titled.
if [ "$have_vega" = 0 ]; then
  skip "charts: Debian's libjs-vega is not installed"
else
  n_speed=$(python3 -c 'import json; print(sum(1 for r in json.load(open("report-speedup.json")) if r["speedup_throughput"] is not None))')
  n_acc=$(python3 -c 'import json; print(sum(1 for r in json.load(open("report-accuracy.json")) if r["miou_mean"] is not None))')
  n_cost=$(python3 -c 'import json; print(sum(1 for r in json.load(open("report-cells.json")) if r["miou"] is not None and r["gpu_hours"] is not None))')
  n_curve=$(sqlite3 segx.db "SELECT count(*) FROM (SELECT DISTINCT group_key, e.epoch FROM cells c JOIN attempts a ON a.cell_id = c.id JOIN epochs e ON e.attempt_id = a.id WHERE e.miou IS NOT NULL)")
  for t in scaling:speedup:$n_speed scaling:efficiency:$n_speed accuracy:accuracy:$n_acc curves:curve-epoch:$n_curve curves:curve-wall:$n_curve cost:cost:$n_cost; do
    IFS=: read -r page kind n <<<"$t"
    out=$(parse "$page" | python3 -c '
import json, sys
c = json.load(sys.stdin)["charts"].get(sys.argv[1])
if not c: sys.exit("no chart div")
if c["error"]: sys.exit("error: " + c["error"])
titles = [t for t in c["axis_titles"] if t.strip()]
print(c["points"], c["marks"], len(titles))' "$kind" 2>&1)
    check_eq "$page: chart $kind drawn with one point mark per data point ($n) and 2 axis titles" "$n $n 2" "$out"
  done
  check_eq "the test data: 4 speedup rows, 4 groups x 3 epochs of curve" "4 12" "$n_speed $n_curve"
  cheapest=$(grep -o 'data-cheapest="[0-9a-f]*"' cost.html | cut -d'"' -f2)
  want=$(python3 -c 'import json; r=[x for x in json.load(open("report-cells.json")) if x["miou"] is not None and x["miou"] >= 0.5]; print(min(r, key=lambda x: x["gpu_hours"])["cell"])')
  check_eq "cost: the cheapest cell reaching the spec's target (miou 0.5) is ringed" "$want" "$cheapest"
fi

# The SQL box shows the rows, refuses writes.
grep -q '<td>fcn</td><td>4</td>' sql.html && pass "sql page: result table holds fcn | 4" || fail "sql page: result table holds fcn | 4" "$(grep -o '<table.*</table>' sql.html | head -c 400)"
code=$(curl -s -o write.json -w '%{http_code}' "$base/api/sql?q=DELETE%20FROM%20cells")
check_eq "the SQL box refuses a write (403)" 403 "$code"
check_eq "... and nothing was deleted" 8 "$(sqlite3 segx.db 'SELECT count(*) FROM cells')"
check_eq "unknown experiment: 404 JSON" "404 no experiment named 'nope' in the database" \
  "$(curl -s -w ' %{http_code}' "$base/api/e/nope/speedup" | python3 -c 'import json,sys; t=sys.stdin.read(); j,c=t.rsplit(" ",1); print(c, json.loads(j)["error"])')"
check_eq "/api/e/NAME/speedup is segx report speedup --format json, byte for byte" "$(cat report-speedup.json)" "$(curl -s "$base/api/e/web-e2e/speedup")"
check_eq "/api/e/NAME/cells?format=rows is segx report cells --format json, byte for byte" "$(cat report-cells.json)" \
  "$(curl -s "$base/api/e/web-e2e/cells?format=rows")"
check_eq "/api/e/NAME/cells (columns) holds the report's numbers" "ok 8" "$(curl -s "$base/api/e/web-e2e/cells" | python3 -c '
import json, sys
c = json.load(sys.stdin); rows = json.load(open(sys.argv[1]))
bad = [(i, k) for i, r in enumerate(rows) for k, v in r.items() if c["columns"][k][i] != v]
print("bad %r" % bad[:3] if bad or c["total"] != len(rows) else "ok %d" % c["count"])' report-cells.json)"

kill $serve_pid; wait $serve_pid 2>/dev/null
check_eq "segx serve stops on SIGTERM" "segx serve: stopped" "$(tail -1 serve.log)"

# --- segx plot and segx report --format html on the same DB
if command -v gnuplot >/dev/null; then
  mkdir fig
  out=$("$SEGX" plot speedup -e web-e2e --db segx.db --out fig/speedup.svg 2>&1); rc=$?
  check_eq "segx plot speedup writes an SVG" "0 yes" "$rc $(grep -q '<svg' fig/speedup.svg 2>/dev/null && echo yes)"
  check_eq "beside it: the gnuplot script and 2 series x 2 points of data" "yes 4" \
    "$([ -s fig/speedup.gp ] && echo yes) $(grep -cE '^[0-9]' fig/speedup.tsv)"
  check "the .gp re-runs by hand" bash -c "cd fig && gnuplot speedup.gp"
  out=$("$SEGX" plot curves -e web-e2e --db segx.db --out fig/curves.png 2>&1); rc=$?
  check_eq "segx plot curves writes a PNG" "0 PNG" "$rc $(head -c 4 fig/curves.png 2>/dev/null | tail -c 3)"
else
  skip "segx plot: gnuplot is not installed (Debian gnuplot-nox)"
fi
"$SEGX" report -e web-e2e --format html --db segx.db >report.html; rc=$?
check_eq "segx report --format html exits 0" 0 "$rc"
check_eq "the HTML report loads nothing from elsewhere" 0 "$(grep -cE '(src|href)="(https?:)?//' report.html)"
if [ "$have_vega" = 1 ]; then
  check "chromium opens the HTML report from a file" browse report-view "file://$TEST_TMP/report.html"
  out=$(parse report-view | python3 -c '
import json, sys
ch = json.load(sys.stdin)["charts"]
print(" ".join("%s=%s" % (k, ch[k]["points"] if not ch[k]["error"] else ch[k]["error"]) for k in sorted(ch)))')
  check_eq "HTML report: its 6 charts drawn offline" "accuracy=$n_acc cost=$n_cost curve-epoch=$n_curve curve-wall=$n_curve efficiency=$n_speed speedup=$n_speed" "$out"
fi
done_testing
