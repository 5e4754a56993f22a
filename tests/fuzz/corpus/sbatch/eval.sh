#!/usr/bin/env bash
#SBATCH --job-name=segx-ev-63644329-eval
#SBATCH --partition=cpu
#SBATCH --time=00:20:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=2048M
#SBATCH --output=/r/runs/ev/6364432920ff/attempt-1/eval-%j.out
#SBATCH --error=/r/runs/ev/6364432920ff/attempt-1/eval-%j.err
#SBATCH --open-mode=append
#SBATCH --no-requeue
#SBATCH --kill-on-invalid-dep=yes
module load cuda/12.2
export OMP_NUM_THREADS=1
if [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${MASTER_ADDR:-}" ]; then
  segx_first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  MASTER_ADDR=$(scontrol -o show node "$segx_first" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
  export MASTER_ADDR=${MASTER_ADDR:-$segx_first} MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
fi

# segx eval job: experiment 'ev', cell '6364432920ff', attempt '1'
set -u
RUN_DIR='/r/runs/ev/6364432920ff/attempt-1'
cd '/work/main/tests/fuzz/corpus/spec' || { echo "segx eval job: cannot enter '/work/main/tests/fuzz/corpus/spec'" >&2; exit 1; }
[ -d "$RUN_DIR" ] || { echo "segx eval job: run dir $RUN_DIR is missing" >&2; exit 1; }
rm -f "$RUN_DIR/eval_exit_code"
export SEGX_RUN_DIR="$RUN_DIR" SEGX_CELL_KEY='6364432920ff' SEGX_ATTEMPT='1' SEGX_EVAL=1
echo "segx eval job: start $(date -u +%FT%TZ) on $(hostname) (job ${SLURM_JOB_ID:-${SEGX_JOB_ID:-local}})"
segx_done() {
  echo "segx eval job: end $(date -u +%FT%TZ) exit $1"
  echo "$1" >"$RUN_DIR/eval_exit_code.tmp" && mv -f "$RUN_DIR/eval_exit_code.tmp" "$RUN_DIR/eval_exit_code"
  exit "$1"
}
# The scheduler started this job because the train job succeeded; the run dir must agree (a job
# submitted by hand without the dependency must not evaluate a half-trained checkpoint).
if [ "$(cat "$RUN_DIR/exit_code" 2>/dev/null)" != 0 ]; then
  echo "segx eval job: the train job has not ended with exit 0 ($RUN_DIR/exit_code: $(cat "$RUN_DIR/exit_code" 2>/dev/null || echo missing)): nothing to evaluate" >&2
  segx_done 3
fi

# scancel and time limits send SIGTERM to this script: pass it on to the evaluator.
segx_forward() { for p in $(pgrep -P $$); do kill -s "$1" "$p" 2>/dev/null; done; }
trap 'segx_forward TERM' TERM
launch=(apptainer exec --nv /img.sif)
"${launch[@]}" '/work/main/build-h17b/bin/segx-train' '--dataset' 'fashion-mnist-seg' '--epochs' '3' '--optimizer' 'sgd' '--model' 'unet' '--batch-size' '8' '--lr' '0.141421356' '--seed' '1' '--eval-every' '1' '--threads' '2' '--out' '/r/runs/ev/6364432920ff/attempt-1' '--evaluate' >"$RUN_DIR/eval.stdout.log" 2>"$RUN_DIR/eval.stderr.log" </dev/null &
segx_pid=$!
while :; do wait "$segx_pid"; rc=$?; kill -0 "$segx_pid" 2>/dev/null || break; done
segx_done "$rc"
