#!/usr/bin/env bash
# segx plan/submit/status/cancel/resubmit on a real local Slurm cluster, with the slurm (libslurm)
# and slurm-cli backends: cells over v100 and a100 run on the right nodes with their GPUs
# (CUDA_VISIBLE_DEVICES) and one srun task per GPU; a failing cell ends failed with its exit code;
# cancel reaches Slurm; resubmit --failed makes attempt 2; the DB rows say all of it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
q() { sqlite3 "$SEGX_DB" "$1"; }

cat >where.sh <<'SH'
#!/bin/bash
# where.sh RUN_DIR FAIL SLEEP: says where each rank ran; FAIL=1 exits 3
echo "rank=${SLURM_PROCID:-x} node=${SLURMD_NODENAME:-x} cvd=${CUDA_VISIBLE_DEVICES:-none} part=${SLURM_JOB_PARTITION:-x}" >>"$1/where.txt"
echo "${MASTER_ADDR:-unset}:${MASTER_PORT:-unset}" >"$1/master.txt"
[ -n "${APPTAINER_CONTAINER:-}" ] && echo "rank=${SLURM_PROCID:-x} in $APPTAINER_CONTAINER" >>"$1/container.txt"
if [ "$2" = 1 ]; then echo "failing on purpose" >&2; exit 3; fi
sleep "$3"
SH
spec() { # NAME GPU_TYPES SLEEP
  cat >"$1.json" <<JSON
{"name": "$1",
 "trainer": {"command": "bash where.sh {{run_dir}} {{fail}} {{nap}}", "launch": "per-rank"},
 "matrix": {"model": ["m"], "gpu_type": $2, "gpus": [1, 2], "batch_per_gpu": [8], "seed": [1], "fail": [0], "nap": [$3]},
 "include": [{"model": "m", "gpu_type": "v100", "gpus": 1, "batch_per_gpu": 8, "seed": 2, "fail": 1, "nap": 0}],
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
}
wait_settled() { # EXPERIMENT
  local n
  for _ in $(seq 1 1200); do
    n=$("$SEGX" status "$1" --format csv 2>/dev/null | tail -n +2 | grep -cE ',(submitted|pending|running|unknown),')
    [ "$n" = 0 ] && return 0; sleep 0.5
  done
  return 1
}

for be in slurm slurm-cli; do
  exp=sx-$be
  # 3 GPU types x 2 GPU counts + 1 failing cell = 7 cells
  spec "$exp" '["v100", "a100", "rtx8000"]' 0
  out=$("$SEGX" plan "$exp.json" 2>&1)
  case $out in *"7 cells (7 new)"*) pass "$be: plan 7 cells";; *) fail "$be: plan 7 cells" "$out";; esac
  check "$be: job script asks for a100 GPUs by gres" grep -q '^#SBATCH --gres=gpu:a100:2$' $(grep -l 'partition=a100' runs/$exp/*/attempt-1/job.sh | head -1)
  out=$("$SEGX" submit "$exp" --backend "$be" 2>&1); rc=$?
  check_eq "$be: submit exits 0" 0 "$rc"
  case $out in *"7 submitted"*"via $be"*) pass "$be: 7 submitted via $be";; *) fail "$be: 7 submitted via $be" "$out";; esac
  wait_settled "$exp" || fail "$be: cells settle within 120 s" "$("$SEGX" status "$exp" 2>&1 | tail -12)"
  out=$("$SEGX" status "$exp" 2>&1)
  case $out in *"7 cells: 6 completed, 1 failed"*) pass "$be: 6 completed, 1 failed";; *) fail "$be: 6 completed, 1 failed" "$out";; esac
  check_eq "$be: 7 attempts with distinct Slurm job ids" "7|7|7" "$(q "SELECT count(*), count(job_id), count(DISTINCT job_id) FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp' AND a.backend='$be'")"
  # nodes per GPU type: v100 n1-n2, a100 n3-n4, rtx8000 n5 (slurm/local-cluster)
  where=$(q "SELECT c.gpu_type || ':' || a.nodes FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp'")
  check_eq "$be: every cell ran on a node of its GPU type" "7" "$(echo "$where" | grep -cE '^(v100:n[12]|a100:n[34]|rtx8000:n5)$')"
  # 2-GPU cells: two srun tasks, both GPUs visible
  two=$(q "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp' AND c.gpus=2 AND c.gpu_type='a100'")
  check_eq "$be: a100 x2 cell: ranks 0 and 1, CUDA_VISIBLE_DEVICES=0,1" "rank=0 cvd=0,1 part=a100
rank=1 cvd=0,1 part=a100" "$(sed -E 's/ node=[^ ]+//' "$two/where.txt" | sort)"
  two_job=$(q "SELECT a.job_id FROM attempts a WHERE a.run_dir='$two'")
  check_eq "$be: MASTER_ADDR is the first node's address, MASTER_PORT from the job id" "127.0.0.1:$((20000 + two_job % 20000))" "$(cat "$two/master.txt")"
  check_eq "$be: failed attempt: exit 3 with the reason" "3|1" "$(q "SELECT a.exit_code, a.reason LIKE '%exit code 3%' FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp' AND a.state='failed'")"
  check_eq "$be: times ordered" 7 "$(q "SELECT count(*) FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp' AND a.submit_time <= a.start_time + 1 AND a.start_time <= a.end_time")"

  # resubmit --failed: attempt 2 of the failed cell only, through the same backend
  out=$("$SEGX" resubmit "$exp" --failed 2>&1); rc=$?
  check_eq "$be: resubmit exits 0" 0 "$rc"
  case $out in *"1 submitted"*"via $be"*) pass "$be: resubmit sends 1 cell via $be";; *) fail "$be: resubmit sends 1 cell via $be" "$out";; esac
  wait_settled "$exp"
  check_eq "$be: attempt 2 exists, ran and failed again" "2|failed|3" "$(q "SELECT a.attempt, a.state, a.exit_code FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp' AND a.attempt=2")"

  # cancel: long cells, cancelled while running/pending
  spec "$exp-cancel" '["cpu"]' 300
  "$SEGX" plan "$exp-cancel.json" >/dev/null 2>&1
  "$SEGX" submit "$exp-cancel" --backend "$be" >/dev/null 2>&1
  for _ in $(seq 1 600); do
    [ "$("$SEGX" status "$exp-cancel" --format csv | grep -c ',running,')" -ge 1 ] && break; sleep 0.5
  done
  ids=$(q "SELECT a.job_id FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp-cancel'")
  out=$("$SEGX" cancel "$exp-cancel" 2>&1); rc=$?
  check_eq "$be: cancel exits 0" 0 "$rc"
  n=$(echo "$out" | grep -c '^cancelled ')
  check "$be: cancel names each cell it cancelled" test "$n" -ge 2
  # the 2 long cells are cancelled; the failing one is cancelled or failed, whichever came first
  check_eq "$be: DB: long cells cancelled, none left in flight" "2|0" "$(q "SELECT sum(c.state = 'cancelled' AND json_extract(c.params, '$.fail') = 0), sum(c.state NOT IN ('cancelled', 'failed')) FROM cells c JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$exp-cancel'")"
  alive_jobs() { for id in $ids; do squeue -h -j "$id" -t all -o %T 2>/dev/null; done | grep -cE 'RUNNING|PENDING'; }
  for _ in $(seq 1 240); do [ "$(alive_jobs)" = 0 ] && break; sleep 0.5; done   # Slurm ends them (at most 2 minutes)
  alive=$(alive_jobs)
  check_eq "$be: Slurm has no running or pending job of the cancelled cells" 0 "$alive"
done

# a container: srun ... apptainer exec --nv --bind ... IMAGE <command>, run through a stand-in
mkdir -p bin && ln -sf "$SEGX_ROOT/tests/integration/fake-apptainer" bin/apptainer
export PATH=$TEST_TMP/bin:$PATH FAKE_APPTAINER_LOG=$TEST_TMP/apptainer.log
head -c 4096 /dev/urandom >segx.sif
cat >sx-container.json <<JSON
{"name": "sx-container",
 "trainer": {"command": "bash where.sh {{run_dir}} 0 0", "launch": "per-rank"},
 "matrix": {"model": ["m"], "gpu_type": ["a100"], "gpus": [2], "batch_per_gpu": [8]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "container": {"runtime": "apptainer", "image": "$TEST_TMP/segx.sif", "bind": ["$TEST_TMP", "/tmp:/scratch"]},
 "cluster": "local"}
JSON
"$SEGX" plan sx-container.json >/dev/null 2>&1
script=$(ls runs/sx-container/*/attempt-1/job.sh)
check "container: job script launches through apptainer exec --nv with the binds" \
  grep -qF "apptainer exec --nv --bind $TEST_TMP,/tmp:/scratch $TEST_TMP/segx.sif" "$script"
check "container: no --containall" bash -c "! grep -q containall '$script'"
"$SEGX" submit sx-container --backend slurm >/dev/null 2>&1
wait_settled sx-container
out=$("$SEGX" status sx-container 2>&1)
case $out in *"1 cells: 1 completed"*|*"1 cell: 1 completed"*) pass "container: the cell completed";; *) fail "container: the cell completed" "$out";; esac
check_eq "container: env.json records the image's sha256" "sha256:$(sha256sum segx.sif | cut -d' ' -f1)" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["container_digest"])' "$(dirname "$script")/env.json" 2>&1)"
# the profile's setup line runs inside the container, before the command (bash -c; container.h)
check_eq "container: the stand-in ran once per rank" 2 "$(grep -c "exec --nv --bind $TEST_TMP,/tmp:/scratch $TEST_TMP/segx.sif bash -c export OMP_NUM_THREADS=1" apptainer.log)"
rd=$(dirname "$script")
check_eq "container: both ranks ran inside the image" "rank=0 in $TEST_TMP/segx.sif
rank=1 in $TEST_TMP/segx.sif" "$(sort "$rd/container.txt" 2>/dev/null)"

# checkpoint + requeue: SIGUSR1 to the batch script (what --signal=B:USR1@GRACE sends before the
# time limit) reaches the trainer through srun; it checkpoints and exits 99; the job requeues itself
# (scontrol requeue) and its next run, in the same run dir, resumes and completes.
cat >ckpt.sh <<'SH'
#!/bin/bash
# ckpt.sh RUN_DIR: counts to 25 in 0.2 s steps, keeping its place in RUN_DIR/ckpt; SIGUSR1: save, exit 99.
# At 5 it waits for RUN_DIR/go (the test makes it once the checkpoint is seen), so the signal always
# arrives mid-run, however fast or slow the machine.
d=$1; i=0
[ -f "$d/ckpt" ] && { i=$(cat "$d/ckpt"); echo "resumed at $i restart ${SLURM_RESTART_COUNT:-0}" >>"$d/trainer.log"; }
trap 'echo $i >"$d/ckpt"; echo "checkpoint at $i" >>"$d/trainer.log"; exit 99' USR1
echo "started" >>"$d/trainer.log"
while [ $i -lt 25 ]; do [ $i -ge 5 ] && [ ! -e "$d/go" ] && { sleep 0.2; continue; }; i=$((i + 1)); sleep 0.2; done
echo "done at $i" >>"$d/trainer.log"
SH
cat >sx-requeue.json <<JSON
{"name": "sx-requeue",
 "trainer": {"command": "bash ckpt.sh {{run_dir}}", "launch": "per-rank"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan sx-requeue.json >/dev/null 2>&1
"$SEGX" submit sx-requeue --backend slurm >/dev/null 2>&1
rq_dir=$(ls -d runs/sx-requeue/*/attempt-1)
rq_job=$(q "SELECT job_id FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='sx-requeue'")
for _ in $(seq 1 1200); do grep -q started "$rq_dir/trainer.log" 2>/dev/null && break; sleep 0.25; done
check "requeue: USR1 sent to the batch script" scancel --signal=USR1 --batch "$rq_job"
for _ in $(seq 1 1200); do grep -q "checkpoint at" "$rq_dir/trainer.log" 2>/dev/null && break; sleep 0.25; done
touch "$rq_dir/go"
wait_settled sx-requeue
sleep 0.5; wait_settled sx-requeue
check_eq "requeue: the cell completed in one attempt" "completed|1" "$(q "SELECT c.state, count(a.id) FROM cells c JOIN attempts a ON a.cell_id=c.id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='sx-requeue'")"
log=$(cat "$rq_dir/trainer.log" 2>/dev/null)
case $log in "started"*"checkpoint at "*"resumed at "*" restart 1"*"done at 25") pass "requeue: checkpoint, then resume in the second run, then done";;
  *) fail "requeue: checkpoint, then resume in the second run, then done" "$log" "$(cat "$rq_dir"/slurm-*.out 2>/dev/null | tail -5)";; esac
ck=$(sed -n 's/^checkpoint at //p' "$rq_dir/trainer.log"); rs=$(sed -n 's/^resumed at \([0-9]*\).*/\1/p' "$rq_dir/trainer.log")
check_eq "requeue: resumed where it checkpointed" "$ck" "$rs"
check_eq "requeue: exit_code 0 after the second run" 0 "$(cat "$rq_dir/exit_code" 2>/dev/null)"
case $(q "SELECT reason FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='sx-requeue'") in
  *"requeued 1 time"*) pass "requeue: the DB reason says requeued 1 time";; *) fail "requeue: the DB reason says requeued 1 time";; esac
check "requeue: the job log shows the forwarded signal and the requeue" grep -q "requeueing job $rq_job" "$rq_dir"/slurm-"$rq_job".out
check "requeue: the first run did not claim the requeue failed" bash -c "! grep -q 'requeue failed' '$rq_dir'/slurm-$rq_job.err"

# usage errors
out=$("$SEGX" resubmit sx-slurm 2>&1); rc=$?
check_eq "resubmit without --failed is a usage error" 2 "$rc"
out=$("$SEGX" cancel no-such-exp 2>&1); rc=$?
check_eq "cancel of an unknown experiment exits 2" 2 "$rc"
out=$("$SEGX" doctor 2>&1); rc=$?
check_eq "doctor: ready against the local cluster" 0 "$rc"
case $out in *"a100 "*"partition a100 has gres gpu:a100"*) pass "doctor checks the profile's GPU partitions";; *) fail "doctor checks the profile's GPU partitions" "$out";; esac
done_testing
