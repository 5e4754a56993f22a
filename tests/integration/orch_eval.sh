#!/usr/bin/env bash
# Eval jobs (spec eval.job) on the local backend: segx plan renders eval.sh beside job.sh, segx
# submit sends it with afterok on the train job; a cell whose train job fails never runs its eval
# job (cancelled, "dependency failed"), the other's runs after its train job and segx-train
# --evaluate reproduces the train run's final evaluation; segx collect stores eval.json with the
# file's values; segx cancel cancels a cell's eval job with its train job.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
# width 0 is refused by segx-train (exit 2): that cell's train job fails
cat >ev.json <<'EOF'
{"name": "ev",
 "trainer": {"dataset": "fashion-mnist-seg", "epochs": 1, "args": {"train-limit": 96, "workers": 0}},
 "matrix": {"model": ["unet"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [16], "seed": [1], "width": [4, 0]},
 "eval": {"limit": 32, "job": {"time": "00:05:00"}},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}}
EOF
out=$("$SEGX" plan ev.json 2>&1); rc=$?
check_eq "plan exits 0" 0 "$rc"
check_eq "plan renders eval.sh beside job.sh for each cell" 2 "$(ls runs/ev/*/attempt-1/eval.sh 2>/dev/null | wc -l)"
ok_dir=$(dirname "$(grep -l "'--width' '4'" runs/ev/*/attempt-1/job.sh)")
bad_dir=$(dirname "$(grep -l "'--width' '0'" runs/ev/*/attempt-1/job.sh)")
check "the train job keeps a checkpoint for the eval job" grep -q "'--checkpoint-every' '1'" "$ok_dir/job.sh"
check "eval.sh runs segx-train --evaluate" grep -q "'--evaluate'" "$ok_dir/eval.sh"

out=$("$SEGX" submit ev --dry-run 2>&1)
case $out in *"then its eval job after it: "*"eval.sh"*"2 submitted (dry run)"*) pass "submit --dry-run lists both cells with their eval jobs";;
  *) fail "submit --dry-run lists both cells with their eval jobs" "$out";; esac
check_eq "a dry run submits nothing" "0 0" "$(q "SELECT count(*) FROM attempts") $(q "SELECT count(*) FROM eval_jobs")"
out=$("$SEGX" submit ev --backend local 2>&1); rc=$?
check_eq "submit exits 0" 0 "$rc"
case $out in *"2 submitted"*"2 eval jobs (afterok)"*"via local"*) pass "submit sends 2 train jobs and 2 eval jobs";;
  *) fail "submit sends 2 train jobs and 2 eval jobs" "$out";; esac
settled=0
for _ in $(seq 1 240); do
  "$SEGX" status ev >/dev/null 2>&1
  if [ "$(q "SELECT count(*) FROM eval_jobs WHERE state IN ('submitted','pending','running','unknown')")" = 0 ] &&
     [ "$(q "SELECT count(*) FROM attempts WHERE state IN ('submitted','pending','running','unknown')")" = 0 ]; then settled=1; break; fi
  sleep 0.5
done
check_eq "train and eval jobs settle within 120 s" 1 "$settled"
ok_att=$(q "SELECT id FROM attempts WHERE run_dir = '$PWD/$ok_dir'")
bad_att=$(q "SELECT id FROM attempts WHERE run_dir = '$PWD/$bad_dir'")
check_eq "the width-0 cell's train job failed with exit 2" "failed|2" "$(q "SELECT state, exit_code FROM attempts WHERE id = $bad_att")"
check_eq "its eval job was cancelled: dependency failed" "cancelled|1" \
  "$(q "SELECT state, reason LIKE 'dependency failed: job % ended failed (exit 2)' FROM eval_jobs WHERE attempt_id = $bad_att")"
check "its eval job never ran (no eval.out, eval_exit_code, eval.json)" \
  bash -c "! ls '$bad_dir'/eval.out '$bad_dir'/eval_exit_code '$bad_dir'/eval.json 2>/dev/null | grep -q ."
check_eq "the other cell: train completed, then its eval job completed" "completed|completed|0|1" \
  "$(q "SELECT a.state, e.state, e.exit_code, e.start_time >= a.end_time FROM attempts a JOIN eval_jobs e ON e.attempt_id = a.id WHERE a.id = $ok_att")"
check_eq "eval jobs are separate local jobs, after their train jobs" "1|1" \
  "$(q "SELECT count(DISTINCT e.job_id) = 2, min(CAST(e.job_id AS INT) > CAST(a.job_id AS INT)) FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id")"
check "the eval job's log is eval.out, the train job's job.out" grep -q "segx eval job: end .* exit 0" "$ok_dir/eval.out"
st=$("$SEGX" status ev --format csv 2>&1)
check_eq "segx status has an eval column: completed and cancelled" "cancelled
completed" "$(echo "$st" | awk -F, 'NR==1 {for (i=1;i<=NF;i++) if ($i=="eval") c=i; next} {print $c}' | sort)"

# the evaluator reproduces the train run's last evaluation (same checkpoint, same 32 test images)
same=$(python3 - "$ok_dir" <<'PY'
import json, sys
d = sys.argv[1]
ev = json.load(open(d + "/eval.json"))
last = [json.loads(l) for l in open(d + "/metrics.jsonl")][-1]
ok = ev["images"] == 32 and abs(ev["miou"] - last["miou"]) < 1e-9 and abs(ev["loss"] - last["val_loss"]) < 1e-6 \
     and abs(ev["pixel_acc"] - last["pixel_acc"]) < 1e-9 and ev["step"] == last["step"]
print("same" if ok else "differ: %s vs %s" % (ev, last))
PY
)
check_eq "eval.json equals the final epoch's evaluation in metrics.jsonl" same "$same"

out=$("$SEGX" collect ev 2>&1); rc=$?
check_eq "collect exits 0" 0 "$rc"
stored=$(q "SELECT miou, pixel_acc, loss, images, json FROM eval_jobs WHERE attempt_id = $ok_att" | head -1)
want=$(python3 - "$ok_dir" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1] + "/eval.json"))
print("%r|%r|%r|%d" % (ev["miou"], ev["pixel_acc"], ev["loss"], ev["images"]))
PY
)
got=$(q "SELECT miou, pixel_acc, loss, images FROM eval_jobs WHERE attempt_id = $ok_att" | python3 -c 'import sys; m, p, l, n = sys.stdin.read().strip().split("|"); print("%r|%r|%r|%d" % (float(m), float(p), float(l), int(n)))')
check_eq "collect stores eval.json's values in eval_jobs" "$want" "$got"
check_eq "and the file whole" "$(cat "$ok_dir/eval.json")" "$(q "SELECT json FROM eval_jobs WHERE attempt_id = $ok_att")"
check_eq "no eval.json for the cancelled eval job" "" "$(q "SELECT json FROM eval_jobs WHERE attempt_id = $bad_att")"
before=$(q "SELECT collected_at FROM eval_jobs WHERE attempt_id = $ok_att")
"$SEGX" collect ev >/dev/null 2>&1
check_eq "collect again changes nothing" "$before" "$(q "SELECT collected_at FROM eval_jobs WHERE attempt_id = $ok_att")"
: "$stored"

# segx cancel: a long train job and its waiting eval job are cancelled together
cat >slow.sh <<'SH'
#!/bin/bash
sleep 60
SH
cat >cancel.json <<'EOF'
{"name": "evc",
 "trainer": {"command": "bash slow.sh {{run_dir}}"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]},
 "eval": {"job": {"command": "touch {{run_dir}}/evaluated"}},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}}
EOF
"$SEGX" plan cancel.json >/dev/null 2>&1
"$SEGX" submit evc --backend local >/dev/null 2>&1
for _ in $(seq 1 600); do
  [ "$(q "SELECT a.state FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'evc'")" = running ] && break
  "$SEGX" status evc >/dev/null 2>&1; sleep 0.5
done
out=$("$SEGX" cancel evc 2>&1); rc=$?
check_eq "cancel exits 0" 0 "$rc"
case $out in *"eval job"*"cancelled "*) pass "cancel names the eval job and the train job";; *) fail "cancel names the eval job and the train job" "$out";; esac
evc_states() { q "SELECT a.state, e.state, e.reason FROM attempts a JOIN eval_jobs e ON e.attempt_id = a.id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'evc'"; }
for _ in $(seq 1 600); do   # until status has stored both cancellations (at most 5 minutes)
  "$SEGX" status evc >/dev/null 2>&1
  [ "$(evc_states)" = "cancelled|cancelled|cancelled by segx cancel" ] && break; sleep 0.5
done
check_eq "DB: train job and eval job cancelled" "cancelled|cancelled|cancelled by segx cancel" \
  "$(q "SELECT a.state, e.state, e.reason FROM attempts a JOIN eval_jobs e ON e.attempt_id = a.id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'evc'")"
evc_dir=$(q "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'evc'")
check "the cancelled cell's evaluator never ran" test ! -e "$evc_dir/evaluated"
eval_id=$(q "SELECT e.job_id FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'evc'")
check_eq "the local scheduler has the eval job cancelled" cancelled \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "runs/.local/jobs/$eval_id.json" 2>&1)"
# segx run waits for the eval jobs too: when it returns, they have ended and eval.json is collected.
cat >runev.json <<'EOF'
{"name": "runev",
 "trainer": {"command": "bash tr.sh {{run_dir}}"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]},
 "eval": {"job": {"command": "bash ev.sh {{run_dir}}"}},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}}
EOF
printf '%s\n' 'sleep 1' >tr.sh
printf '%s\n' 'sleep 3' 'printf "{\"miou\": 0.625}\n" >"$1/eval.json"' >ev.sh
out=$("$SEGX" run runev.json --backend local --no-report 2>&1); rc=$?
check_eq "segx run with an eval job exits 0" 0 "$rc"
check_eq "when segx run returns, the eval job has completed and its eval.json is in the DB" "completed|0.625" \
  "$(q "SELECT e.state, e.miou FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'runev'")"
done_testing
