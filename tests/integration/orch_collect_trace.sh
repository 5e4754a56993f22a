#!/usr/bin/env bash
# segx collect reads segx-train's traces: cells with "profile": "{{run_dir}}/trace.json" (each cell
# its own file) run on the local backend with 1 and 2 ranks; collect stores one traces row per rank
# (path, steps, seconds per phase) and trace_ops rows per op, and the attempt_phases view answers
# "where did the time go per GPU count". Every number is checked against the trace files summed
# independently (python3's json); a second collect changes nothing; a malformed trace is a warning.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
# Under ASan a 2-rank mpirun currently ends with a leak report from inside Open MPI (a component it
# unloaded: "<unknown module>"; tests/integration/dist_mpi.sh fails the same way), so the SAN pass
# traces one rank only.
gpus="1, 2"
[ "${SEGX_SAN:-0}" = 1 ] && { gpus=1; skip "2 ranks under ASan: Open MPI's leak report fails the run (see dist_mpi.sh)"; }
cat >spec.json <<JSON
{"name": "tr", "trainer": {"command": "segx-train", "dataset": "synthetic", "epochs": 1, "optimizer": "sgd", "lr": 0.05,
  "args": {"train-limit": 96, "profile": "{{run_dir}}/trace.json"}},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [$gpus], "batch_per_gpu": [16], "seed": [3]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}, "eval": {"limit": 32}}
JSON
out=$("$SEGX" run spec.json --backend local --max-parallel 1 2>&1) || fail "segx run" "$(echo "$out" | tail -5)"
for g in ${gpus//,/}; do
  rd=$(sqlite3 "$SEGX_DB" "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id=a.cell_id WHERE c.gpus=$g")
  check "gpus=$g: the trace went to the cell's own run dir" test -s "$rd/trace.json"
done
q() { sqlite3 "$SEGX_DB" "$1"; }
want="1|1
2|2"; [ "$gpus" = 1 ] && want="1|1"
check_eq "one traces row per rank (1 + 2)" "$want" "$(q "SELECT c.gpus, count(*) FROM traces t JOIN attempts a ON a.id=t.attempt_id JOIN cells c ON c.id=a.cell_id GROUP BY c.gpus ORDER BY c.gpus")"

# the same sums, from the files, by python
indep() {
  python3 - "$@" <<'PY'
import json, sys
for path in sys.argv[1:]:
    ev = json.load(open(path))["traceEvents"]
    ph = {k: 0.0 for k in ("data_wait", "forward", "backward", "comm", "optimizer", "eval")}
    steps = 0; ops = {}
    for e in ev:
        if e.get("ph") != "X": continue
        s = e["dur"] * 1e-6
        if e.get("cat") == "op":
            c, t = ops.get(e["name"], (0, 0.0)); ops[e["name"]] = (c + 1, t + s); continue
        if e["name"] in ph: ph[e["name"]] += s
        steps += e["name"] == "forward"
    print("%s|%d|%.6f|%.6f|%.6f|%.6f|%.6f|%.6f" % (path, steps, ph["data_wait"], ph["forward"], ph["backward"], ph["comm"], ph["optimizer"], ph["eval"]))
    for k in sorted(ops): print("op|%s|%s|%d|%.6f" % (path, k, ops[k][0], ops[k][1]))
PY
}
files=$(q "SELECT path FROM traces ORDER BY path")
# same_sums "desc" EXPECTED ACTUAL: '|'-separated rows, numbers equal within 2e-6 s (the C and python
# sums add the same durations in another order, so the 6th decimal may round the other way)
same_sums() {
  if python3 - "$2" "$3" <<'PY'
import sys
a, b = (s.splitlines() for s in sys.argv[1:3])
def same(x, y):
    try: return abs(float(x) - float(y)) <= 2e-6
    except ValueError: return x == y
ok = len(a) == len(b) and all(len(r.split("|")) == len(q.split("|")) and all(same(x, y) for x, y in zip(r.split("|"), q.split("|"))) for r, q in zip(a, b))
sys.exit(0 if ok else 1)
PY
  then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi
}
same_sums "traces: steps and the seconds of each phase equal the files' sums (python)" \
  "$(indep $files | grep -v '^op|')" \
  "$(q "SELECT path, steps, printf('%.6f|%.6f|%.6f|%.6f|%.6f|%.6f', data_s, forward_s, backward_s, comm_s, optimizer_s, eval_s) FROM traces ORDER BY path")"
same_sums "trace_ops: calls and seconds per op equal the files' sums" \
  "$(indep $files | grep '^op|' | sort)" \
  "$(q "SELECT 'op', t.path, o.op, o.calls, printf('%.6f', o.total_s) FROM trace_ops o JOIN traces t USING (attempt_id, rank)" | sort)"
steps1=$(q "SELECT steps FROM traces t JOIN attempts a ON a.id=t.attempt_id JOIN cells c ON c.id=a.cell_id WHERE c.gpus=1")
check_eq "1 rank traced 96/16 = 6 steps" 6 "$steps1"
[ "$gpus" = 1 ] || check "2 ranks: comm time recorded on both ranks" test "$(q "SELECT count(*) FROM traces t JOIN attempts a ON a.id=t.attempt_id JOIN cells c ON c.id=a.cell_id WHERE c.gpus=2 AND comm_s > 0")" = 2
check_eq "attempt_phases: per GPU count, ranks and mean comm time per rank" \
  "$(q "SELECT c.gpus, count(*), printf('%.6f', avg(t.comm_s)) FROM traces t JOIN attempts a ON a.id=t.attempt_id JOIN cells c ON c.id=a.cell_id GROUP BY c.gpus ORDER BY c.gpus")" \
  "$(q "SELECT gpus, ranks, printf('%.6f', comm_s) FROM attempt_phases ORDER BY gpus")"
snap() { q "SELECT attempt_id, rank, path, steps, data_s, comm_s, collected_at FROM traces ORDER BY 1, 2; SELECT count(*), sum(calls) FROM trace_ops"; }
before=$(snap)
"$SEGX" collect tr >/dev/null 2>&1
check_eq "collect again: the same rows, not even re-read (collected_at kept)" "$before" "$(snap)"
"$SEGX" collect tr --force >/dev/null 2>&1
check_eq "collect --force: the same numbers" "$(echo "$before" | cut -d'|' -f1-6)" "$(snap | cut -d'|' -f1-6)"
# a damaged trace: a warning that names the file; the DB keeps the rows it had
rd=$(q "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id=a.cell_id WHERE c.gpus=1")
echo '{"traceEvents": [' >"$rd/trace.json"
out=$("$SEGX" collect tr --force 2>&1)
case $out in *"$rd/trace.json"*"not a Chrome trace"*) pass "a malformed trace is a warning naming the file";;
  *) fail "a malformed trace is a warning naming the file" "$out";; esac
check_eq "the malformed trace's stored row stays" 1 "$(q "SELECT count(*) FROM traces WHERE path = '$rd/trace.json'")"
# a FIFO and an oversized trace (issue 17): read like the other run files, so a warning naming the
# file, nothing waits on the FIFO, and the stored rows (traces and trace_ops) stay as they were
kept=$(q "SELECT t.steps, t.forward_s, t.collected_at, (SELECT count(*) FROM trace_ops o WHERE o.attempt_id = t.attempt_id AND o.rank = t.rank) FROM traces t WHERE path = '$rd/trace.json'")
rm -f "$rd/trace.json"; mkfifo "$rd/trace.json"
rc=0; out=$(timeout 300 "$SEGX" collect tr --force 2>&1) || rc=$?
check_eq "a FIFO trace.json: collect finishes without waiting on it" 0 "$rc"
case $out in *"$rd/trace.json: not a regular file (a fifo)"*) pass "a FIFO trace.json is a warning naming the file";;
  *) fail "a FIFO trace.json is a warning naming the file" "$out";; esac
check_eq "a FIFO trace.json: the stored rows stay" "$kept" "$(q "SELECT t.steps, t.forward_s, t.collected_at, (SELECT count(*) FROM trace_ops o WHERE o.attempt_id = t.attempt_id AND o.rank = t.rank) FROM traces t WHERE path = '$rd/trace.json'")"
check "the FIFO is left in place" test -p "$rd/trace.json"
rm -f "$rd/trace.json"; truncate -s 300M "$rd/trace.json"   # sparse: over the 256 MiB bound
rc=0; out=$(timeout 300 "$SEGX" collect tr --force 2>&1) || rc=$?
check_eq "a 300 MB trace.json: collect finishes" 0 "$rc"
case $out in *"$rd/trace.json: larger than"*"not read"*) pass "a trace over the size bound is a warning naming the file";;
  *) fail "a trace over the size bound is a warning naming the file" "$out";; esac
check_eq "an oversized trace.json: the stored rows stay" "$kept" "$(q "SELECT t.steps, t.forward_s, t.collected_at, (SELECT count(*) FROM trace_ops o WHERE o.attempt_id = t.attempt_id AND o.rank = t.rank) FROM traces t WHERE path = '$rd/trace.json'")"
check "the oversized file is left in place" test -s "$rd/trace.json"
done_testing
