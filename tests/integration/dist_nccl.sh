#!/usr/bin/env bash
# --comm nccl on a machine without a usable GPU: segx-train (alone and as 2 ranks under mpirun)
# must stop at once with a message that says what is missing and what to use instead.
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
args=(--model cnn --dataset synthetic --steps 2 --batch-size 8 --threads 1 --workers 0 --eval-limit 0 --comm nccl)
why='no CUDA device|NVIDIA driver is missing|built without CUDA'

# an empty CUDA_VISIBLE_DEVICES (a job without --gres) is named, GPU or not
out=$(CUDA_VISIBLE_DEVICES= timeout 60 "$SEGX_TRAIN" "${args[@]}" --out "$TEST_TMP/empty" 2>&1); rc=$?
check_eq "empty CUDA_VISIBLE_DEVICES: exit status 2" 2 "$rc"
# (a build without CUDA says that first: there is no device to look for)
empty_why="CUDA_VISIBLE_DEVICES is empty"
grep -q '^SEGX_HAVE_CUDA := 1' "$SEGX_BUILD/config.mk" 2>/dev/null || empty_why="built without CUDA"
if grep -q "$empty_why" <<<"$out" && grep -q -- "--comm mpi" <<<"$out"; then pass "empty CUDA_VISIBLE_DEVICES: '$empty_why' named, with the alternative"
else fail "empty CUDA_VISIBLE_DEVICES: message names '$empty_why' and --comm mpi" "$out"; fi

if nvidia-smi -L >/dev/null 2>&1; then skip "a GPU is present: the no-GPU messages cannot be checked here"; done_testing; exit; fi
out=$(timeout 60 "$SEGX_TRAIN" "${args[@]}" --out "$TEST_TMP/one" 2>&1); rc=$?
check_eq "no GPU, 1 rank: exit status 2" 2 "$rc"
if grep -qE "$why" <<<"$out"; then pass "no GPU, 1 rank: $(grep -oE "$why" <<<"$out" | head -1)"; else fail "no GPU, 1 rank: message" "$out"; fi
if command -v mpirun >/dev/null; then
  t0=$SECONDS   # the timeout guards against a hang; ending by itself with a failure is the check
  out=$(timeout 600 mpirun -np 2 --bind-to none "$SEGX_TRAIN" "${args[@]}" --out "$TEST_TMP/two" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then pass "no GPU, 2 ranks: job fails by itself in $((SECONDS - t0)) s (status $rc)"
  else fail "no GPU, 2 ranks: status $rc after $((SECONDS - t0)) s" "$(tail -5 <<<"$out")"; fi
  if grep -qE "$why" <<<"$out"; then pass "no GPU, 2 ranks: the reason is printed"; else fail "no GPU, 2 ranks: message" "$out"; fi
else
  skip "mpirun not installed"
fi
done_testing
