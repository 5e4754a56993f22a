#!/usr/bin/env bash
# Faults around submit (issue 17): a throttled submit (--max-submitted) on a real local Slurm
# cluster commits each job id as soon as slurmctld accepts it, so `kill -9` at several points and a
# second submit never run a cell twice (each cell's job appends to ran.txt: one line per run);
# an attempt dir that already holds an unrecorded run is recorded, not run again; two submits of
# one experiment do not interleave. DB contents are compared with a full `sqlite3 .dump`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
t() { out=$(timeout 300 "$@" 2>&1); rc=$?; }
wait_settled() { # EXPERIMENT
  for _ in $(seq 1 1200); do
    "$SEGX" status "$1" --format csv 2>/dev/null | tail -n +2 | grep -qE ',(submitted|pending|running|unknown),' || return 0
    sleep 0.5
  done
  return 1
}
cat >ran.sh <<'SH'
#!/bin/bash
echo "run ${SLURM_JOB_ID:-local}" >>"$1/ran.txt"
echo '{"epoch": 1, "miou": 0.5}' >>"$1/metrics.jsonl"
sleep "${2:-0}"
SH
spec() { # NAME CELLS NAP
  cat >"$1.json" <<EOF
{"name": "$1", "trainer": {"command": "bash $TEST_TMP/ran.sh {{run_dir}} {{nap}}", "launch": "once"},
 "matrix": {"gpu_type": ["cpu"], "batch_per_gpu": [8], "nap": [$3], "seed": [$(seq -s, 1 "$2")]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}}
EOF
}
# runs_per_cell EXPERIMENT: "lines of ran.txt" for every cell, sorted (0 when it never ran)
runs_per_cell() {
  local root; root=$(q "SELECT run_root FROM experiments WHERE name = '$1'")
  for k in $(q "SELECT key FROM cells c JOIN experiments e ON e.id = c.experiment_id WHERE e.name = '$1'"); do
    cat "$root/$k"/attempt-*/ran.txt 2>/dev/null | wc -l
  done | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ' | sed 's/ $//'
}

# --- an attempt dir holding a run the DB never heard of (local backend) ------------------------
spec lo 2 0
"$SEGX" plan lo.json -q >/dev/null || fail "plan lo"
d1=$(q "SELECT e.run_root || '/' || c.key || '/attempt-1' FROM cells c JOIN experiments e ON e.id = c.experiment_id ORDER BY c.id LIMIT 1")
echo "run before-the-kill" >"$d1/ran.txt"; echo '{"epoch": 1, "miou": 0.5}' >"$d1/metrics.jsonl"; echo 0 >"$d1/exit_code"
t "$SEGX" submit lo --backend local
check_eq "submit with an unrecorded run on disk: exit 0" 0 "$rc"
case $out in *"already holds the output of a run that was never recorded"*"1 submitted"*) pass "submit says so and sends only the other cell";;
  *) fail "submit says so and sends only the other cell" "$out";; esac
wait_settled lo || fail "lo settles"
t "$SEGX" collect lo
check_eq "each cell ran once" "1x2" "$(runs_per_cell lo)"
check_eq "both attempts completed, attempt 1 each" "completed|1|2" "$(q "SELECT a.state, max(a.attempt), count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'lo' GROUP BY a.state")"

# --- two submits of one experiment do not interleave ---------------------------------------------
spec lk 2 0
"$SEGX" plan lk.json -q >/dev/null || fail "plan lk"
if command -v flock >/dev/null; then
  root=$(q "SELECT run_root FROM experiments WHERE name = 'lk'")
  flock "$root/.submit.lock" -c "touch locked; while [ ! -e release ]; do sleep 0.05; done" &
  lk=$!
  for _ in $(seq 1 1200); do [ -e locked ] && break; sleep 0.05; done
  "$SEGX" submit lk --backend local >lk.out 2>&1 &
  sub=$!
  for _ in $(seq 1 1200); do grep -q "another segx submit of 'lk' is running" lk.out && break; sleep 0.05; done
  check "a second submit waits for the first (says so)" grep -q "another segx submit of 'lk' is running: waiting" lk.out
  check_eq "nothing submitted while it waits" 0 "$(q "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'lk'")"
  touch release; wait "$lk"; wait "$sub"
  check "then it submits" grep -q "lk: 2 submitted" lk.out
  wait_settled lk
else
  skip "flock(1) not installed"
fi

# --- a throttled submit killed with -9, on real Slurm ------------------------------------------
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
ncells=5
for kill_at in 1 3; do
  exp=th$kill_at
  spec "$exp" $ncells 1
  "$SEGX" plan "$exp.json" -q >/dev/null || fail "plan $exp"
  "$SEGX" submit "$exp" --backend slurm-cli --max-submitted 1 >"$exp.out" 2>&1 &
  pid=$!
  ids=0
  for _ in $(seq 1 2400); do
    ids=$(q "SELECT count(job_id) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = '$exp'" 2>/dev/null)
    [ "${ids:-0}" -ge "$kill_at" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    pass "$exp: $ids job id(s) committed while the throttled submit still runs"
  else
    fail "$exp: $ids job id(s) committed while the throttled submit still runs" "$(cat "$exp.out")"
  fi
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  sqlite3 "$SEGX_DB" .dump >"$exp-killed.sql"
  # let every job it sent end (a finished one must not run again)
  for _ in $(seq 1 1200); do squeue -h -o '%j' 2>/dev/null | grep -q "^segx-$exp-" || break; sleep 0.25; done
  t "$SEGX" submit "$exp" --backend slurm-cli
  check_eq "$exp: submit again after kill -9 at $kill_at: exit 0" 0 "$rc"
  sqlite3 "$SEGX_DB" .dump >"$exp-after.sql"
  check_eq "$exp: every row stored before the second submit is still there, unchanged" 0 \
    "$(grep -E '^INSERT INTO (attempts|cells|experiments)' "$exp-killed.sql" | grep -vxFf "$exp-after.sql" | grep -vc '^INSERT INTO cells')"
  wait_settled "$exp" || fail "$exp settles" "$("$SEGX" status "$exp" 2>&1 | tail -8)"
  check_eq "$exp: each of the $ncells cells ran exactly once" "1x$ncells" "$(runs_per_cell "$exp")"
  check_eq "$exp: one attempt per cell (attempt 1), distinct job ids, all completed" "$ncells|$ncells|1|$ncells" \
    "$(q "SELECT count(*), count(DISTINCT a.job_id), max(a.attempt), sum(a.state = 'completed') FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = '$exp'")"
  t "$SEGX" collect "$exp"
  check_eq "$exp: one metrics row per cell" "$ncells" "$(q "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$exp'")"
done
done_testing
