#!/usr/bin/env bash
# Eval jobs (spec eval.job) on a real local Slurm cluster, with the slurm (libslurm) and slurm-cli
# backends: 2 segx-train cells with an eval job each; one train job fails (segx-train refuses
# --width 0), so its eval job (afterok, --kill-on-invalid-dep=yes) is cancelled by Slurm and never
# runs; the other's eval job starts after its train job ended, on an a100 node, and segx collect
# stores its eval.json with the file's values.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
q() { sqlite3 "$SEGX_DB" "$1"; }
spec() { # NAME
  cat >"$1.json" <<JSON
{"name": "$1",
 "trainer": {"dataset": "fashion-mnist-seg", "epochs": 1, "args": {"train-limit": 96, "workers": 0, "comm": "none"}},
 "matrix": {"model": ["unet"], "gpu_type": ["a100"], "gpus": [1], "batch_per_gpu": [16], "seed": [1], "width": [4, 0]},
 "eval": {"limit": 32, "job": {"time": "00:05:00", "gpus": 1}},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
}
exp_q() { # EXPERIMENT SQL-with-alias-a-and-e: rows of the experiment's attempts joined to their eval jobs
  q "SELECT $2 FROM attempts a JOIN eval_jobs e ON e.attempt_id = a.id JOIN cells c ON c.id = a.cell_id
     JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$1' ${3:-}"
}

for be in slurm slurm-cli; do
  exp=se-$be
  spec "$exp"
  out=$("$SEGX" plan "$exp.json" 2>&1)
  case $out in *"2 cells (2 new)"*) pass "$be: plan 2 cells";; *) fail "$be: plan 2 cells" "$out";; esac
  ev=$(ls runs/$exp/*/attempt-1/eval.sh | head -1)
  check "$be: eval.sh asks Slurm to cancel it when its dependency fails" grep -q '^#SBATCH --kill-on-invalid-dep=yes$' "$ev"
  check "$be: eval.sh asks for one a100" grep -q '^#SBATCH --gres=gpu:a100:1$' "$ev"
  out=$("$SEGX" submit "$exp" --backend "$be" 2>&1); rc=$?
  check_eq "$be: submit exits 0" 0 "$rc"
  case $out in *"2 submitted"*"2 eval jobs (afterok)"*"via $be"*) pass "$be: 2 train jobs and 2 eval jobs submitted";;
    *) fail "$be: 2 train jobs and 2 eval jobs submitted" "$out";; esac
  # Slurm holds the dependency: the eval job of the cell that trains (for seconds) waits on its job
  read -r t e < <(exp_q "$exp" "a.job_id || ' ' || e.job_id" "AND json_extract(c.params, '$.width') = 4")
  dep=$(scontrol -o show job "$e" 2>&1 | grep -oE "Dependency=[^ ]+")
  check_eq "$be: Slurm holds the eval job with afterok on its train job" "Dependency=afterok:$t(unfulfilled)" "$dep"
  settled=0
  for _ in $(seq 1 360); do
    "$SEGX" status "$exp" >/dev/null 2>&1
    if [ "$(exp_q "$exp" "count(*)" "AND (a.state IN ('submitted','pending','running','unknown') OR e.state IN ('submitted','pending','running','unknown'))")" = 0 ]; then
      settled=1; break
    fi
    sleep 0.5
  done
  check_eq "$be: train and eval jobs settle within 180 s" 1 "$settled"
  [ "$settled" = 1 ] || { "$SEGX" status "$exp" 2>&1 | sed 's/^/# /'; q "SELECT * FROM eval_jobs" | sed 's/^/# /'; }
  bad_dir=$(exp_q "$exp" "a.run_dir" "AND json_extract(c.params, '$.width') = 0")
  ok_dir=$(exp_q "$exp" "a.run_dir" "AND json_extract(c.params, '$.width') = 4")
  check_eq "$be: the width-0 cell's train job failed with exit 2" "failed|2" \
    "$(exp_q "$exp" "a.state || '|' || a.exit_code" "AND a.run_dir = '$bad_dir'")"
  st=$(exp_q "$exp" "e.state || '|' || COALESCE(e.reason, '')" "AND a.run_dir = '$bad_dir'")
  case $st in cancelled\|*Dependency*|cancelled\|*dependency*) pass "$be: its eval job was cancelled for its dependency ($st)";;
    *) fail "$be: its eval job was cancelled for its dependency" "$st";; esac
  check "$be: that eval job never ran (no eval-*.out, eval_exit_code or eval.json)" \
    bash -c "! ls '$bad_dir'/eval-*.out '$bad_dir'/eval_exit_code '$bad_dir'/eval.json 2>/dev/null | grep -q ."
  check_eq "$be: the other cell's eval job completed, started after its train job ended" "completed|completed|0|1" \
    "$(exp_q "$exp" "a.state || '|' || e.state || '|' || e.exit_code || '|' || (e.start_time >= a.end_time)" "AND a.run_dir = '$ok_dir'")"
  check_eq "$be: it ran on an a100 node" 1 "$(exp_q "$exp" "e.nodes IN ('n3', 'n4')" "AND a.run_dir = '$ok_dir'")"
  check "$be: Slurm wrote its log as eval-<job id>.out in the run dir" \
    grep -q "segx eval job: end .* exit 0" "$ok_dir/eval-$(exp_q "$exp" "e.job_id" "AND a.run_dir = '$ok_dir'").out"
  out=$("$SEGX" collect "$exp" 2>&1); rc=$?
  check_eq "$be: collect exits 0" 0 "$rc"
  want=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]+"/eval.json")); print("%r|%r|%r|%d" % (e["miou"], e["pixel_acc"], e["loss"], e["images"]))' "$ok_dir" 2>&1)
  got=$(exp_q "$exp" "e.miou || '|' || e.pixel_acc || '|' || e.loss || '|' || e.images" "AND a.run_dir = '$ok_dir'" |
        python3 -c 'import sys; m, p, l, n = sys.stdin.read().strip().split("|"); print("%r|%r|%r|%d" % (float(m), float(p), float(l), int(n)))' 2>&1)
  check_eq "$be: eval_jobs holds eval.json's mIoU, pixel acc, loss and images" "$want" "$got"
  check_eq "$be: and the file whole" "$(cat "$ok_dir/eval.json")" "$(exp_q "$exp" "e.json" "AND a.run_dir = '$ok_dir'")"
done
done_testing
