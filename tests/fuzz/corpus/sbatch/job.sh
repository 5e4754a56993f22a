#!/usr/bin/env bash
#SBATCH --job-name=segx-ev-63644329
#SBATCH --partition=cpu
#SBATCH --time=1-02:30:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=2
#SBATCH --mem=4096M
#SBATCH --output=/r/runs/ev/6364432920ff/attempt-1/slurm-%j.out
#SBATCH --error=/r/runs/ev/6364432920ff/attempt-1/slurm-%j.err
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@10
#SBATCH --requeue
module load cuda/12.2
export OMP_NUM_THREADS=1
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${MASTER_ADDR:-}" ]; then
  segx_first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  MASTER_ADDR=$(scontrol -o show node "$segx_first" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
  export MASTER_ADDR=${MASTER_ADDR:-$segx_first} MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
fi

# segx job: experiment 'ev', cell '6364432920ff', attempt '1'
set -u
RUN_DIR='/r/runs/ev/6364432920ff/attempt-1'
GPUS='2'
# Commands run from the spec file's folder, so relative paths in trainer.command work.
cd '/work/main/tests/fuzz/corpus/spec' || { echo "segx job: cannot enter '/work/main/tests/fuzz/corpus/spec'" >&2; exit 1; }
[ -d "$RUN_DIR" ] || { echo "segx job: run dir $RUN_DIR is missing" >&2; exit 1; }
# A requeued job runs again in the same run dir. If its trainer had already finished (exit_code 0:
# the requeue came after the end), running it again would repeat the tail from the last checkpoint.
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [ "$(cat "$RUN_DIR/exit_code" 2>/dev/null)" = 0 ]; then
  echo "segx job: requeued after the trainer had finished (exit_code 0): nothing to run"; exit 0
fi
rm -f "$RUN_DIR/exit_code"
export SEGX_RUN_DIR="$RUN_DIR" SEGX_CELL_KEY='6364432920ff' SEGX_ATTEMPT='1'
echo "segx job: start $(date -u +%FT%TZ) on $(hostname) (job ${SLURM_JOB_ID:-${SEGX_JOB_ID:-local}})"
# runs.tsv: one line per run of this job (a requeue adds one): restart, job id, start and end (unix
# seconds), exit status. Slurm keeps only the last run's StartTime; this keeps every run's time.
# Bash's own clock (printf %(%s)T), no `date`: a requeue's SIGTERM to the job kills child processes.
printf -v segx_t0 '%(%s)T' -1
segx_run_done() { printf '%s\t%s\t%s\t%(%s)T\t%s\n' "${SLURM_RESTART_COUNT:-0}" "${SLURM_JOB_ID:-${SEGX_JOB_ID:-local}}" "$segx_t0" -1 "$1" >>"$RUN_DIR/runs.tsv"; }

# How the trainer is launched: one process per GPU (or CPU rank), or once for an external trainer
# that starts its own workers (trainer.launch = "once").
if [ -n "${SLURM_JOB_ID:-}" ]; then
  launch=(srun --ntasks=2 --ntasks-per-node=2 --kill-on-bad-exit=1 --mpi=pmix_v4 apptainer exec --nv /img.sif)
elif [ "$GPUS" -gt 1 ]; then
  [ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  launch=(mpirun -np "$GPUS" --oversubscribe --bind-to none apptainer exec --nv /img.sif)
else
  launch=(apptainer exec --nv /img.sif)
fi
# The image's digest goes into env.json (segx collect stores it as container_digest).
segx_image=(apptainer exec --nv /img.sif); segx_image=${segx_image[${#segx_image[@]}-1]}
export SEGX_CONTAINER_IMAGE="$segx_image"
SEGX_CONTAINER_DIGEST=sha256:$(sha256sum "$segx_image" 2>/dev/null | cut -d' ' -f1) && export SEGX_CONTAINER_DIGEST

# Slurm sends SIGUSR1 to this script (--signal=B:USR1@GRACE) before the time limit, and SIGTERM on
# scancel or preemption: both go on to the trainer, which checkpoints and exits 99. After USR1 the
# job requeues itself (below); the next run, in the same run dir, continues from the checkpoint.
segx_signal=
segx_forward() {
  segx_signal=$1
  echo "segx job: SIG$1 at $(date -u +%FT%TZ): passing it to the trainer"
  for p in $(pgrep -P $$); do kill -s "$1" "$p" 2>/dev/null; done
}
trap 'segx_forward USR1' USR1
trap 'segx_forward TERM' TERM
# The trainer runs in the background so the traps fire while it runs; wait until it has ended.
segx_wait() { while :; do wait "$1"; rc=$?; kill -0 "$1" 2>/dev/null || break; done; }

"${launch[@]}" '/work/main/build-h17b/bin/segx-train' '--dataset' 'fashion-mnist-seg' '--epochs' '3' '--optimizer' 'sgd' '--model' 'unet' '--batch-size' '8' '--lr' '0.141421356' '--seed' '1' '--eval-every' '1' '--threads' '2' '--out' '/r/runs/ev/6364432920ff/attempt-1' '--resume' '--checkpoint-every' '1' >>"$RUN_DIR/stdout.log" 2>>"$RUN_DIR/stderr.log" </dev/null &
segx_wait $!

if [ -n "${SEGX_CONTAINER_DIGEST:-}" ] && [ -f "$RUN_DIR/env.json" ] && ! grep -q '"container_digest"' "$RUN_DIR/env.json" &&
   [ "$(head -1 "$RUN_DIR/env.json")" = "{" ] && [[ $segx_image != *[\"\\]* ]]; then
  { echo "{"; echo " \"container_image\": \"$segx_image\", \"container_digest\": \"$SEGX_CONTAINER_DIGEST\","; tail -n +2 "$RUN_DIR/env.json"; } \
    >"$RUN_DIR/env.json.tmp" && mv -f "$RUN_DIR/env.json.tmp" "$RUN_DIR/env.json"
elif [ -n "${SEGX_CONTAINER_DIGEST:-}" ] && [ ! -f "$RUN_DIR/env.json" ] && [[ $segx_image != *[\"\\]* ]]; then
  echo "{\"container_image\": \"$segx_image\", \"container_digest\": \"$SEGX_CONTAINER_DIGEST\"}" >"$RUN_DIR/env.json"
fi
if [ "$rc" = 99 ] && [ "$segx_signal" = USR1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  # checkpointed before the time limit: back into the queue; no exit_code, the job is not over
  echo "segx job: checkpointed (exit 99): requeueing job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0})"
  scontrol requeue "$SLURM_JOB_ID"; segx_rq=$?
  # done, or Slurm is already ending this run for the requeue (its SIGTERM may hit scontrol itself)
  if [ "$segx_rq" = 0 ] || [ "$segx_signal" = TERM ]; then segx_run_done 99; exit 99; fi
  echo "segx job: scontrol requeue failed: the cell ends preempted (segx resubmit --failed continues it)" >&2
fi
if [ "$rc" != 0 ] && [ "$segx_signal" = TERM ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  # SIGTERM from Slurm: a cancel, or a requeue (scontrol requeue, preemption with PreemptMode=REQUEUE)
  # that has already counted the next restart. A requeued job is not over: no exit_code (it would
  # read as preempted, 99, or failed to segx while Slurm runs the job again). The trainer normally
  # checkpointed and exited 99; one killed before it handles signals (start-up) resumes from its
  # last periodic checkpoint. Exit 0 (finished as the TERM came) keeps its exit_code: the requeued
  # run then does nothing.
  segx_restarts=$(timeout 3 scontrol -o show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/.* Restarts=\([0-9]*\).*/\1/p')
  if [ -n "$segx_restarts" ] && [ "$segx_restarts" -gt "${SLURM_RESTART_COUNT:-0}" ]; then
    echo "segx job: exit $rc after SIGTERM: Slurm requeues job $SLURM_JOB_ID (restart $segx_restarts)"
    segx_run_done "$rc"; exit "$rc"
  fi
fi
echo "segx job: end $(date -u +%FT%TZ) exit $rc"
# exit_code is written last and atomically: its presence means the job is over.
segx_run_done "$rc"
echo "$rc" >"$RUN_DIR/exit_code.tmp" && mv -f "$RUN_DIR/exit_code.tmp" "$RUN_DIR/exit_code"
exit "$rc"
