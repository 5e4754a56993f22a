#!/usr/bin/env bash
# Checkpoint/resume with the real segx-train is bit-exact on CPU: (a) 2 epochs straight vs 1 epoch,
# then --resume for the 2nd; (b) a run stopped by SIGTERM (exit 99 = checkpointed, requeue me) and
# resumed vs the uninterrupted run. Final parameters compared bytewise (--save-params).
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
# unet on fashion-mnist-seg: BN buffers, Adam state and augmentation all have to survive the restart
common=(--model unet --width 4 --dataset fashion-mnist-seg --train-limit 96 --eval-limit 16 --batch-size 8
        --optimizer adam --lr 0.002 --lr-schedule cosine --warmup-epochs 0.5 --augment --seed 11 --threads 1 --workers 2)
run() { # NAME ARGS...: run, log in $TEST_TMP/NAME.log, rc in $rc
  local name=$1; shift
  timeout 300 "$SEGX_TRAIN" "${common[@]}" "$@" >"$TEST_TMP/$name.log" 2>&1; rc=$?
}

# (a) --epochs sets the length of the lr schedule, so this case uses a constant lr: the first run
# is told --epochs 1 and the resumed one --epochs 2.
const=(--lr-schedule constant --warmup-epochs 0)
run fullc --epochs 2 "${const[@]}" --out "$TEST_TMP/fullc" --save-params "$TEST_TMP/fullc.params"
check_eq "uninterrupted 2-epoch run exits 0" 0 "$rc"
run half --epochs 1 "${const[@]}" --checkpoint-every 1 --out "$TEST_TMP/half"
check_eq "1-epoch run with --checkpoint-every 1 exits 0" 0 "$rc"
check "checkpoint.bin written" test -s "$TEST_TMP/half/checkpoint.bin"
check "no temp file left behind" test ! -e "$TEST_TMP/half/checkpoint.bin.tmp"
run half2 --epochs 2 "${const[@]}" --resume --out "$TEST_TMP/half" --save-params "$TEST_TMP/half.params"
check_eq "--resume run exits 0" 0 "$rc"
check "resume says where it continues" grep -q "resuming from $TEST_TMP/half/checkpoint.bin: epoch 2, batch 0" "$TEST_TMP/half2.log"
check "1 epoch + resume 1 epoch == 2 epochs, bytewise" cmp "$TEST_TMP/fullc.params" "$TEST_TMP/half.params"
check_eq "metrics.jsonl of the resumed run has both epochs" 2 "$(wc -l <"$TEST_TMP/half/metrics.jsonl")"
check "parameters differ from a run with another seed (the comparison can fail)" bash -c \
  "'$SEGX_TRAIN' ${common[*]} ${const[*]} --seed 12 --epochs 2 --save-params '$TEST_TMP/other.params' >/dev/null 2>&1 && ! cmp -s '$TEST_TMP/fullc.params' '$TEST_TMP/other.params'"

# (b) SIGTERM mid-epoch (cosine schedule with warmup, same flags before and after)
run full --epochs 2 --out "$TEST_TMP/full" --save-params "$TEST_TMP/full.params"
check_eq "uninterrupted 2-epoch cosine run exits 0" 0 "$rc"
: step-boundary checkpoint, exit 99, resume to the same bytes
"$SEGX_TRAIN" "${common[@]}" --epochs 2 --out "$TEST_TMP/sig" --save-params "$TEST_TMP/sig.params" >"$TEST_TMP/sig.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do  # until the first step is done (progress.json) or the run ends
  [ -s "$TEST_TMP/sig/progress.json" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05
done
sleep 0.3
kill -TERM $pid 2>/dev/null
wait $pid; rc=$?
if [ "$rc" = 0 ]; then
  skip "run finished before SIGTERM arrived (machine too fast for this timing)"
else
  check_eq "SIGTERM: exit code 99 (checkpointed, requeue me)" 99 "$rc"
  check "SIGTERM: checkpoint written" test -s "$TEST_TMP/sig/checkpoint.bin"
  check "SIGTERM: no result.json for an unfinished run" test ! -e "$TEST_TMP/sig/result.json"
  run sig2 --epochs 2 --resume --out "$TEST_TMP/sig" --save-params "$TEST_TMP/sig.params"
  check_eq "resume after SIGTERM exits 0" 0 "$rc"
  check "SIGTERM + resume == uninterrupted, bytewise" cmp "$TEST_TMP/full.params" "$TEST_TMP/sig.params"
  check "result.json after the resumed run" test -s "$TEST_TMP/sig/result.json"
fi
# (c) 2 MPI ranks: mpirun forwards SIGUSR1; every rank stops at the same step, exit 99, resume -> same bytes
if [ "${SEGX_SAN:-0}" = 1 ] || ! command -v mpirun >/dev/null; then
  skip "2-rank SIGUSR1 requeue (needs mpirun; skipped under sanitizers)"
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  d=(--model cnn --dataset synthetic --in-channels 1 --image-size 16 --classes 4 --batch-size 8 --steps 300
     --threads 1 --eval-limit 0 --seed 5)
  mpirun -np 2 --bind-to none "$SEGX_TRAIN" "${d[@]}" --out "$TEST_TMP/dfull" --save-params "$TEST_TMP/dfull.params" >"$TEST_TMP/dfull.log" 2>&1
  check_eq "2-rank uninterrupted run exits 0" 0 "$?"
  mpirun -np 2 --bind-to none "$SEGX_TRAIN" "${d[@]}" --out "$TEST_TMP/dsig" --save-params "$TEST_TMP/dsig.params" >"$TEST_TMP/dsig.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do [ -s "$TEST_TMP/dsig/progress.json" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  kill -USR1 $pid 2>/dev/null
  wait $pid; rc=$?
  if [ "$rc" = 0 ]; then skip "2-rank run finished before SIGUSR1 arrived"; else
    check_eq "2 ranks, SIGUSR1 to mpirun: exit 99" 99 "$rc"
    mpirun -np 2 --bind-to none "$SEGX_TRAIN" "${d[@]}" --resume --out "$TEST_TMP/dsig" --save-params "$TEST_TMP/dsig.params" >"$TEST_TMP/dsig2.log" 2>&1
    check_eq "2-rank resume exits 0" 0 "$?"
    check "2 ranks: SIGUSR1 + resume == uninterrupted, bytewise" cmp "$TEST_TMP/dfull.params" "$TEST_TMP/dsig.params"
    check "2 ranks: resumed train_loss equals the uninterrupted one (partial sums of both ranks kept)" python3 -c "
import json, sys
a, b = (json.loads(open(p).readlines()[-1])['train_loss'] for p in sys.argv[1:3])
assert abs(a - b) <= 1e-6 * abs(a), (a, b)" "$TEST_TMP/dfull/metrics.jsonl" "$TEST_TMP/dsig/metrics.jsonl"
  fi
fi
# a checkpoint from another configuration is refused, naming the file
run wrong --epochs 2 --batch-size 4 --resume --out "$TEST_TMP/half"
if [ "$rc" = 1 ] && grep -q "$TEST_TMP/half/checkpoint.bin: checkpoint is for" "$TEST_TMP/wrong.log"; then
  pass "resume with different flags is refused"; else fail "resume with different flags" "rc=$rc" "$(tail -2 "$TEST_TMP/wrong.log")"; fi
done_testing
