#!/usr/bin/env bash
# segx submit --array [--array-throttle N] on a real local Slurm cluster (libslurm and slurm-cli):
# cells whose job scripts share their #SBATCH lines go into one job array (a100 cells and cpu cells
# make two arrays), each cell's attempt records ARRAYID_TASK, status maps the tasks back to their
# cells, %N holds the running tasks to N, and every cell completes in its own run dir.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
q() { sqlite3 "$SEGX_DB" "$1"; }
cat >nap.sh <<'SH'
#!/bin/bash
# nap.sh RUN_DIR SECONDS: records its job id and sleeps
echo "${SLURM_ARRAY_JOB_ID:-none}_${SLURM_ARRAY_TASK_ID:-none} ${SLURM_JOB_PARTITION:-x}" >"$1/task.txt"
sleep "$2"
SH
spec() { # NAME
  cat >"$1.json" <<JSON
{"name": "$1",
 "trainer": {"command": "bash nap.sh {{run_dir}} {{nap}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3, 4, 5], "nap": [4]},
 "include": [{"model": "m", "gpu_type": "a100", "batch_per_gpu": 8, "seed": 9, "nap": 1}],
 "eval": {"job": {"command": "touch {{run_dir}}/evaluated", "time": "00:02:00"}},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
}
exp_rows() { q "SELECT $2 FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$1' ${3:-}"; }

for be in slurm slurm-cli; do
  exp=sa-$be
  spec "$exp"
  "$SEGX" plan "$exp.json" >/dev/null 2>&1
  out=$("$SEGX" submit "$exp" --backend "$be" --array --array-throttle 2 2>&1); rc=$?
  check_eq "$be: submit --array exits 0" 0 "$rc"
  case $out in *"submitted job array "*": 5 cells, throttled"*"submitted job array "*": 1 cells"*"6 submitted"*) pass "$be: two arrays: 5 cpu cells, 1 a100 cell";;
    *) fail "$be: two arrays: 5 cpu cells, 1 a100 cell" "$out";; esac
  ids=$(exp_rows "$exp" "a.job_id" "AND c.gpu_type = 'cpu' ORDER BY a.job_id")
  arr=$(echo "$ids" | head -1 | cut -d_ -f1)
  check_eq "$be: the cpu cells are tasks 0-4 of one array" "${arr}_0 ${arr}_1 ${arr}_2 ${arr}_3 ${arr}_4" "$(echo $ids)"
  check "$be: Slurm has the array with throttle 2" bash -c "scontrol -o show job '$arr' | grep -q 'ArrayTaskThrottle=2'"
  # while it runs: never more than 2 of its tasks running, and segx status maps them to cells
  max=0 seen_pending=0
  for _ in $(seq 1 120); do
    n=$(squeue -h -r -j "$arr" -t RUNNING -o %i 2>/dev/null | wc -l)
    [ "$n" -gt "$max" ] && max=$n
    st=$("$SEGX" status "$exp" --format csv 2>/dev/null)
    echo "$st" | grep -q ',pending,' && seen_pending=1
    [ "$(echo "$st" | tail -n +2 | grep -cE ',(submitted|pending|running|unknown),')" = 0 ] && break
    sleep 0.5
  done
  check_eq "$be: at most 2 array tasks ran at once, and 2 did" 2 "$max"
  check_eq "$be: tasks waiting behind the throttle show as pending cells" 1 "$seen_pending"
  out=$("$SEGX" status "$exp" 2>&1)
  case $out in *"6 cells: 6 completed"*) pass "$be: all 6 cells completed";; *) fail "$be: all 6 cells completed" "$out";; esac
  # each task ran its own cell's job script: the run dir's task.txt names that cell's array task
  bad=0
  while IFS='|' read -r job dir; do
    got=$(cut -d' ' -f1 "$dir/task.txt" 2>/dev/null)
    [ "$got" = "$job" ] && [ "$(cat "$dir/exit_code" 2>/dev/null)" = 0 ] || { bad=$((bad + 1)); echo "# $dir: task $got, job $job"; }
  done < <(exp_rows "$exp" "a.job_id || '|' || a.run_dir")
  check_eq "$be: every cell ran as its recorded array task, in its own run dir, exit 0" 0 "$bad"
  for _ in $(seq 1 600); do
    [ "$(exp_rows "$exp" "count(*)" "AND EXISTS (SELECT 1 FROM eval_jobs e WHERE e.attempt_id = a.id AND e.state = 'completed')")" = 6 ] && break
    "$SEGX" status "$exp" >/dev/null 2>&1; sleep 0.5
  done
  check_eq "$be: each cell's eval job ran after its array task ended (afterok:ARRAYID_i)" "6|6" \
    "$(q "SELECT count(*), sum(e.start_time >= a.end_time) FROM attempts a JOIN eval_jobs e ON e.attempt_id = a.id
          JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$exp' AND e.state = 'completed'")"
  check_eq "$be: every cell's evaluator ran in its run dir" 6 "$(ls runs/$exp/*/attempt-1/evaluated 2>/dev/null | wc -l)"
  check_eq "$be: the a100 cell ran in partition a100" a100 "$(cut -d' ' -f2 "$(exp_rows "$exp" "a.run_dir" "AND c.gpu_type = 'a100'")/task.txt")"
done
# cancel: a running task and the tasks still waiting behind the throttle, through libslurm
sed -e 's/"nap": \[4\]/"nap": [300]/' -e 's/"seed": 9, "nap": 1/"seed": 9, "nap": 300/' sa-slurm.json | sed 's/"sa-slurm"/"sa-cancel"/' >sa-cancel.json
"$SEGX" plan sa-cancel.json >/dev/null 2>&1
"$SEGX" submit sa-cancel --backend slurm --array --array-throttle 1 >/dev/null 2>&1
arr=$(exp_rows sa-cancel "a.job_id" "AND c.gpu_type = 'cpu' LIMIT 1" | cut -d_ -f1)
for _ in $(seq 1 600); do [ "$(squeue -h -r -j "$arr" -t RUNNING -o %i | wc -l)" -ge 1 ] && break; sleep 0.5; done
out=$("$SEGX" cancel sa-cancel 2>&1); rc=$?
check_eq "cancel of array tasks exits 0" 0 "$rc"
check_eq "cancel names all 6 cells and their 6 eval jobs" "6|6" "$(echo "$out" | grep '^cancelled ' | grep -vc 'eval job')|$(echo "$out" | grep -c '^cancelled .* eval job')"
left_tasks() { for id in $(exp_rows sa-cancel "DISTINCT substr(a.job_id, 1, instr(a.job_id, '_') - 1)"); do squeue -h -r -j "$id" -t PENDING,RUNNING -o %i; done | wc -l; }
for _ in $(seq 1 240); do [ "$(left_tasks)" = 0 ] && break; sleep 0.5; done   # Slurm ends them (at most 2 minutes)
check_eq "Slurm has no task of the arrays left running or pending" 0 "$(left_tasks)"
check_eq "DB: all 6 cells cancelled" "6" "$(exp_rows sa-cancel "count(*)" "AND a.state = 'cancelled'")"
out=$("$SEGX" submit sa-slurm --backend local --array --rerun-failed 2>&1); rc=$?
check_eq "--array with the local backend is a usage error" 2 "$rc"
case $out in *"--array: job arrays are a Slurm feature"*) pass "it says arrays are a Slurm feature";; *) fail "it says arrays are a Slurm feature" "$out";; esac
out=$("$SEGX" submit sa-slurm --array-throttle 2 2>&1); rc=$?
check_eq "--array-throttle without --array is a usage error" "2|1" "$rc|$(echo "$out" | grep -c 'needs --array')"
done_testing
