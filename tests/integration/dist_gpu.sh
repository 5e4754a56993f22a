#!/usr/bin/env bash
# GPU data parallel and fp16 checkpoints with the real segx-train. Needs GPUs: where none (or only
# one, for the 2-rank case) is usable, each case SKIPs with the reason and is not counted as passed.
# - 2 ranks on 2 GPUs (mpirun, --device cuda, --comm auto picks nccl), the bucketed reducer with small
#   buckets, x B/2 == 1 GPU with --accum-steps 2 of B/2 within 1e-4 relative (GPU kernels sum in
#   other orders for other batch splits, so not the CPU's 1e-5); the comm stats are in metrics.jsonl.
# - --precision fp16 on 1 GPU: checkpoint.bin holds the loss scale and skipped-step count that the
#   run's last metrics line reports, and --resume continues from them (its log says so).
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
T=$SEGX_TRAIN
ddp_case="2 GPUs x B/2 over NCCL (bucketed reducer) == 1 GPU, 2 accumulation steps"
fp16_case="fp16 loss scale and skipped steps saved in the checkpoint and restored by --resume"

gpu_why=$("$T" --device cuda --dataset synthetic --eval-limit 0 --print-params 2>&1 >/dev/null); have_gpu=$?
if [ "$have_gpu" != 0 ]; then
  reason=$(sed -n 's/.*no usable CUDA device: //p' <<<"$gpu_why" | head -1)
  skip "$ddp_case: no GPU: ${reason:-$gpu_why}"
  skip "$fp16_case: no GPU: ${reason:-$gpu_why}"
  done_testing; exit
fi
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then ngpu=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
else ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); fi

# --- fp16 loss scaler through a checkpoint (1 GPU) ------------------------------------------------
f16=(--device cuda --precision fp16 --model cnn --dataset synthetic --batch-size 8 --train-limit 128 --eval-limit 16
     --optimizer sgd --lr 0.05 --seed 2 --threads 1 --workers 1)
if timeout 300 "$T" "${f16[@]}" --epochs 1 --checkpoint-every 1 --out "$TEST_TMP/f16" >"$TEST_TMP/f16.log" 2>&1 &&
   timeout 300 "$T" "${f16[@]}" --epochs 2 --resume --out "$TEST_TMP/f16" >"$TEST_TMP/f16r.log" 2>&1; then
  out=$(python3 - "$TEST_TMP/f16" <<'PY'
import json, struct, sys
d = sys.argv[1]
b = open(d + '/checkpoint.bin', 'rb').read()
m = [json.loads(l) for l in open(d + '/metrics.jsonl')]
ver, = struct.unpack_from('<I', b, 8)
print(ver, m[0]['loss_scale'], m[0]['skipped_steps'])
PY
  )
  read -r ver scale skipped <<<"$out"
  check_eq "$fp16_case: checkpoint version" 2 "$ver"
  # the epoch-1 checkpoint (the resumed run writes none: no --checkpoint-every) holds epoch 1's scaler
  hdr=$(python3 -c "
import struct; b = open('$TEST_TMP/f16/checkpoint.bin', 'rb').read()
s, g, k = struct.unpack_from('<dqq', b, 16 + 368); print('%g %d' % (s, k))")
  check_eq "$fp16_case: header == epoch 1's metrics (loss_scale skipped_steps)" "$(python3 -c "print('%g %d' % ($scale, $skipped))")" "$hdr"
  if grep -q "fp16 loss scale ${hdr% *} from the checkpoint (${hdr#* } steps skipped so far)" "$TEST_TMP/f16r.log"; then
    pass "$fp16_case: --resume continues at loss scale ${hdr% *}"
  else
    fail "$fp16_case: resume log" "$(grep -i 'resum\|scale' "$TEST_TMP/f16r.log" | head -3)"
  fi
else
  fail "$fp16_case: segx-train failed" "$(tail -3 "$TEST_TMP/f16.log" "$TEST_TMP/f16r.log" 2>/dev/null)"
fi

# --- 2 ranks over NCCL ------------------------------------------------------------------------------
if [ "$ngpu" -lt 2 ]; then
  skip "$ddp_case: needs 2 GPUs, $ngpu visible (NCCL refuses two ranks on one GPU)"
  done_testing; exit
fi
if ! command -v mpirun >/dev/null; then skip "$ddp_case: mpirun not installed"; done_testing; exit; fi
common=(--device cuda --model cnn --dataset synthetic --steps 4 --optimizer sgd --lr 0.1 --seed 3 --threads 1
        --no-batch-norm --batch-size 8 --eval-limit 16)
if timeout 300 mpirun -np 2 --bind-to none "$T" "${common[@]}" --bucket-mb 0.05 --out "$TEST_TMP/ddp" \
     --save-params "$TEST_TMP/ddp.params" >"$TEST_TMP/ddp.log" 2>&1 &&
   timeout 300 "$T" "${common[@]}" --accum-steps 2 --comm none --out "$TEST_TMP/acc" \
     --save-params "$TEST_TMP/acc.params" >"$TEST_TMP/acc.log" 2>&1; then
  check "$ddp_case: env.json says nccl" grep -q '"nccl"' "$TEST_TMP/ddp/env.json"
  check "$ddp_case: gradients were allreduced (metrics.jsonl)" python3 -c "
import json; m = json.loads(open('$TEST_TMP/ddp/metrics.jsonl').readline()); assert m['allreduce_bytes'] > 0, m"
  if out=$(python3 - "$TEST_TMP/ddp.params" "$TEST_TMP/acc.params" <<'PY'
import array, sys
a, b = array.array('f'), array.array('f')
a.frombytes(open(sys.argv[1], 'rb').read()); b.frombytes(open(sys.argv[2], 'rb').read())
if len(a) != len(b) or not a: print(f"sizes {len(a)} vs {len(b)}"); sys.exit(1)
bad = [i for i in range(len(a)) if abs(a[i] - b[i]) > 1e-4 * abs(b[i]) + 1e-6]
worst = max(abs(a[i] - b[i]) / (abs(b[i]) + 1e-7) for i in range(len(a)))
print(f"{len(a)} params, {len(bad)} beyond 1e-4, worst relative difference {worst:.2g}")
sys.exit(1 if bad else 0)
PY
  ); then pass "$ddp_case: $out"; else fail "$ddp_case" "$out"; fi
else
  fail "$ddp_case: segx-train failed" "$(tail -5 "$TEST_TMP/ddp.log" "$TEST_TMP/acc.log" 2>/dev/null)"
fi
done_testing
