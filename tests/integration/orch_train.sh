#!/usr/bin/env bash
# `segx run` end to end with the real segx-train on the local backend: a 1-rank and a 2-rank
# (mpirun) cell on a small slice of fashion-mnist (cnn); checks exit status, states, DB rows
# from collect, and the run-dir files the trainer contract promises.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
limit=256; [ "${SEGX_SAN:-0}" = 1 ] && limit=64
cat >spec.json <<EOF
{"name": "orch-train",
 "trainer": {"dataset": "fashion-mnist", "epochs": 1, "optimizer": "adam", "lr": 0.001,
             "args": {"train-limit": $limit}},
 "eval": {"limit": 64},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1, 2], "batch_per_gpu": [8], "seed": [1]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}}
EOF
q() { sqlite3 segx.db "$1"; }
out=$(nice "$SEGX" run spec.json --backend local --db segx.db --max-parallel 1 --no-report 2>&1); rc=$?
check_eq "segx run exits 0" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -20 | sed 's/^/# /'
check_eq "both cells completed" "completed|2" "$(q 'SELECT state, count(*) FROM cells GROUP BY state')"
check_eq "attempts exit 0 on the local backend" "local|0|2" "$(q 'SELECT backend, exit_code, count(*) FROM attempts GROUP BY 1, 2')"
for g in 1 2; do
  rd=$(q "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.gpus = $g")
  for f in metrics.jsonl result.json progress.json env.json exit_code stderr.log job.out; do   # segx-train logs to stderr
    [ -s "$rd/$f" ] || { fail "gpus=$g: $f written" "missing or empty in $rd"; continue 2; }
  done
  [ -e "$rd/stdout.log" ] || { fail "gpus=$g: stdout.log written" "missing in $rd"; continue; }
  pass "gpus=$g: run dir holds metrics.jsonl result.json progress.json env.json exit_code logs"
done
check_eq "collect stored one epoch per cell" 2 "$(q 'SELECT count(*) FROM epochs')"
ranks=$(q "SELECT json_extract(e.json, '\$.ranks') FROM environments e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id WHERE c.gpus = 2")
check_eq "the 2-GPU cell ran 2 ranks" 2 "$ranks"
done_testing
