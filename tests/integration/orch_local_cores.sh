#!/usr/bin/env bash
# The local backend shares the machine's cores among jobs: each job claims ranks x cpus-per-task
# cores (its script's #SBATCH lines), a queued job starts only when its claim fits in the cores
# left, a job larger than the machine runs alone, and --max-parallel caps the jobs at once on top.
# Checked from the start/end times segx stores, with sleeping external-trainer cells on 2 shared
# cores (SEGX_LOCAL_CPUS=2, whatever this machine has). Then `segx report speedup` warns about
# the cells that ran side by side, and not about cells that ran one at a time.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db SEGX_LOCAL_CPUS=2
q() { sqlite3 "$SEGX_DB" "$1"; }

# gpus listed 2, 1, 4: cells are queued in that order, seeds 1 and 2 each.
# images/s = 100 per rank, so the speedup report has numbers to show.
# In "shared" the two 1-rank cells meet before they sleep (each waits, at most 5 minutes, until both
# have started), so that when the scheduler runs them side by side their times overlap on any machine,
# however slowly it starts processes; if it ran them one after the other they would not overlap.
spec() { # NAME GPUS-LIST
  local meet=""
  [ "$1" = shared ] && meet="if [ {{gpus}} = 1 ]; then for i in \$(seq 3000); do [ -e $TEST_TMP/on.1.1 ] && [ -e $TEST_TMP/on.1.2 ] && break; sleep 0.1; done; fi; "
  cat >"$1.json" <<EOF
{"name": "$1",
 "trainer": {"command": "touch $TEST_TMP/on.{{gpus}}.{{seed}}; ${meet}sleep 1.5; echo 'Epoch [1] ips: {{gpus}}00'", "epochs": 1,
             "metrics": {"epoch": "Epoch \\\\[(\\\\d+)\\\\]", "images_per_s": "ips: ([0-9.]+)"}},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "gpus": $2, "batch_per_gpu": [8], "seed": [1, 2]},
 "scaling": "weak", "resources": {"time": "00:05:00", "cpus_per_gpu": 1}, "cluster": "local"}
EOF
}
wait_settled() { # EXPERIMENT
  for _ in $(seq 1 2400); do
    [ "$("$SEGX" status "$1" --format csv | tail -n +2 | grep -cE ',(submitted|pending|running),')" = 0 ] && return 0
    sleep 0.25
  done
  return 1
}
# Pairs of attempts of experiment $1 whose times overlap, as "gpusA+gpusB" lines (sorted).
overlaps() {
  q "SELECT a.g || '+' || b.g FROM
       (SELECT a.id, c.gpus AS g, a.start_time AS s, a.end_time AS e FROM attempts a JOIN cells c ON c.id = a.cell_id
        JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$1') a,
       (SELECT a.id, c.gpus AS g, a.start_time AS s, a.end_time AS e FROM attempts a JOIN cells c ON c.id = a.cell_id
        JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$1') b
     WHERE a.id < b.id AND a.s < b.e AND b.s < a.e ORDER BY 1"
}

# --- bad input
spec shared '[2, 1, 4]'
check "plan exits 0" "$SEGX" plan shared.json
out=$(SEGX_LOCAL_CPUS=two "$SEGX" submit shared --backend local 2>&1); rc=$?
check_eq "SEGX_LOCAL_CPUS=two: submit fails" 1 "$rc"
case $out in *"SEGX_LOCAL_CPUS='two'"*"whole number"*) pass "the error names SEGX_LOCAL_CPUS and what it wants";;
  *) fail "the error names SEGX_LOCAL_CPUS and what it wants" "$out";; esac
check_eq "nothing submitted" 0 "$(q 'SELECT count(*) FROM attempts')"

# --- claims: 2+2 do not fit in 2 cores, 1+1 do, 4 is larger than the machine and runs alone
t0=$(date +%s.%N)
out=$("$SEGX" submit shared --backend local 2>&1); rc=$?
check_eq "submit exits 0" 0 "$rc"
check "all cells settle" wait_settled shared
t1=$(date +%s.%N)
check_eq "6 cells completed" 6 "$(q "SELECT count(*) FROM attempts WHERE state = 'completed'")"
check_eq "job files record the claims (ranks x cpus-per-task)" "1 1 2 2 4 4" \
  "$(python3 -c 'import json,glob; print(*sorted(json.load(open(p))["cpus"] for p in glob.glob("runs/.local/jobs/*.json")))')"
check_eq "stored times: only the two 1-rank cells overlapped" "1+1" "$(overlaps shared)"
check_eq "every stored start and end is known" 6 "$(q 'SELECT count(*) FROM attempts WHERE start_time > 0 AND end_time >= start_time')"
# 2, 2, 1+1, 4, 4: five rounds of 1.5 s; had 1+1 not shared the cores it would take six
echo "# wall: $(python3 -c "print(round($t1 - $t0, 1))") s for 6 cells of 1.5 s on 2 cores"

# --- --max-parallel 1: cells that fit the cores still run one at a time
spec capped '[1]'
check "plan capped" "$SEGX" plan capped.json
check "submit capped --max-parallel 1" "$SEGX" submit capped --backend local --max-parallel 1
check "capped cells settle" wait_settled capped
check_eq "capped: 2 cells completed" 2 "$(q "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'capped' AND a.state = 'completed'")"
check_eq "capped: no overlap" "" "$(overlaps capped)"

# --- the speedup report warns about the contended cells, not about the capped ones
check "collect" "$SEGX" collect shared
check "collect capped" "$SEGX" collect capped
"$SEGX" report speedup -e shared --format csv >report.csv 2>warn.txt; rc=$?
sed "s/^/# /" warn.txt
check_eq "report speedup exits 0" 0 "$rc"
check_eq "the csv has the 1, 2 and 4 GPU rows and no warning text" "3:0" \
  "$(tail -n +2 report.csv | grep -c '^shared,'):$(grep -c warning report.csv)"
case $(cat warn.txt) in
  *"warning: shared: m on cpu (weak, batch_per_gpu 8): 2 of 6 measured attempts ran beside other local jobs on"*"1 GPU, beside cell"*"1 GPU"*"--max-parallel 1"*)
    pass "speedup warns: the two 1-rank cells ran side by side";;
  *) fail "speedup warns: the two 1-rank cells ran side by side" "$(cat warn.txt)";; esac
"$SEGX" report speedup -e capped >/dev/null 2>warn2.txt
check_eq "no warning for cells run one at a time" "" "$(cat warn2.txt)"

# --- the agent does not outlive its work
for _ in $(seq 1 600); do [ -e runs/.local/agent.pid ] || break; sleep 0.1; done
check_eq "agent exited when idle" no "$([ -e runs/.local/agent.pid ] && echo yes || echo no)"
done_testing
