#!/usr/bin/env bash
# segx-train --device cuda|auto and --precision. Here (no GPU): --device cuda exits 2 naming why
# (no driver / CUDA_VISIBLE_DEVICES empty or malformed), --device auto trains on the CPU, says so and
# gives the same bytes as --device cpu, bf16/fp16 are refused on the CPU. On a GPU node: a short
# fashion-mnist-seg training on the GPU (GPU keys in env.json/metrics.jsonl, the loss falls), close to
# the CPU's first-epoch loss, and a CPU checkpoint resumed on the GPU and a GPU checkpoint on the CPU.
# The GPU cases SKIP with the reason where no GPU is usable (never counted as passed).
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
T=$SEGX_TRAIN
small=(--model unet --width 4 --dataset fashion-mnist-seg --train-limit 64 --eval-limit 16 --batch-size 8 --seed 5
       --threads 1 --workers 1)

expect2() { # DESC PATTERN ENV-ASSIGNMENTS... -- ARGS...: exit 2 and stderr matching PATTERN (grep -E)
  local d=$1 pat=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local out rc
  out=$(env "${envs[@]}" "$T" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" = 2 ] && grep -qE -- "$pat" <<<"$out"; then pass "$d"; else fail "$d" "args: $*" "rc=$rc" "stderr: $out"; fi
}

gpu_why=$("$T" --device cuda --dataset synthetic --eval-limit 0 --print-params 2>&1 >/dev/null); have_gpu=$?
if [ "$have_gpu" = 0 ]; then
  pass "--device cuda opens a GPU here"
else
  expect2 "--device cuda without a GPU exits 2 and says why" "--device cuda: no usable CUDA device: .+" -- --device cuda --steps 1
  expect2 "CUDA_VISIBLE_DEVICES empty is named" 'CUDA_VISIBLE_DEVICES is "": no GPU is assigned' CUDA_VISIBLE_DEVICES= -- --device cuda --steps 1
  expect2 "CUDA_VISIBLE_DEVICES=NoDevFiles is named" 'CUDA_VISIBLE_DEVICES is "NoDevFiles"' CUDA_VISIBLE_DEVICES=NoDevFiles -- --device cuda --steps 1
  expect2 "a malformed CUDA_VISIBLE_DEVICES is named" 'CUDA_VISIBLE_DEVICES="gpu0" is not a list' CUDA_VISIBLE_DEVICES=gpu0 -- --device cuda --steps 1
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
    expect2 "no driver: names libcuda.so.1" "no NVIDIA driver: libcuda.so.1 cannot be loaded" CUDA_VISIBLE_DEVICES=0 -- --device cuda --steps 1
  fi
  # --device auto: CPU, says so, and trains exactly as --device cpu
  "$T" "${small[@]}" --steps 4 --device auto --save-params "$TEST_TMP/auto.params" --out "$TEST_TMP/auto" >"$TEST_TMP/auto.log" 2>&1; rc=$?
  "$T" "${small[@]}" --steps 4 --device cpu --save-params "$TEST_TMP/cpu.params" >/dev/null 2>&1; rc2=$?
  if [ "$rc" = 0 ] && [ "$rc2" = 0 ] && grep -q -- "--device auto: using the CPU (.\+)" "$TEST_TMP/auto.log"; then
    pass "--device auto falls back to the CPU, says why, trains (exit 0)"
  else fail "--device auto" "rc=$rc/$rc2" "$(tail -3 "$TEST_TMP/auto.log")"; fi
  check "--device auto on the CPU == --device cpu, bytewise" cmp "$TEST_TMP/auto.params" "$TEST_TMP/cpu.params"
  check "a CPU run's env.json does not claim a GPU" bash -c "! grep -q '\"gpu_model\"' '$TEST_TMP/auto/env.json'"
fi
expect2 "--precision bf16 on the CPU is refused" "--precision bf16 needs --device cuda" -- --device cpu --precision bf16 --steps 1
expect2 "--precision fp16 on the CPU is refused" "--precision fp16 needs --device cuda" -- --precision fp16 --steps 1
expect2 "--precision with a bad value" "--precision 'fp8': want one of: fp32 bf16 fp16" -- --precision fp8
check "--help documents --precision" bash -c "'$T' --help | grep -q -- '--precision fp32|bf16|fp16'"

if [ "$have_gpu" != 0 ]; then
  reason=$(sed -n 's/.*no usable CUDA device: //p' <<<"$gpu_why" | head -1)
  for c in "GPU training of fashion-mnist-seg (env.json, metrics, telemetry)" "GPU first-epoch loss close to the CPU's" \
           "--precision bf16 and fp16 train on the GPU" "CPU checkpoint resumes on the GPU" "GPU checkpoint resumes on the CPU"; do
    skip "$c: no GPU: ${reason:-$gpu_why}"
  done
  done_testing; exit
fi

# --- on a GPU node -------------------------------------------------------------------------------
seg=(--model unet --width 8 --dataset fashion-mnist-seg --train-limit 512 --eval-limit 128 --batch-size 16 --seed 5
     --optimizer adam --lr 0.002 --threads 2)
"$T" "${seg[@]}" --epochs 2 --device cuda --out "$TEST_TMP/g" >"$TEST_TMP/g.log" 2>&1; rc=$?
check_eq "GPU run exits 0" 0 "$rc"
check "env.json names the GPU model and cuDNN" python3 -c "
import json; e = json.load(open('$TEST_TMP/g/env.json')); g = e['gpu']
assert e['device'] == 'cuda' and g['gpu_model'] and g['cudnn'] != '0.0.0' and g['nccl'] != '0.0.0', e"
check "metrics: GPU keys, the train loss falls, mIoU is a number" python3 -c "
import json; m = [json.loads(l) for l in open('$TEST_TMP/g/metrics.jsonl')]
assert len(m) == 2 and m[1]['train_loss'] < m[0]['train_loss'] and 0 <= m[1]['miou'] <= 1, m
assert m[0]['precision'] == 'fp32' and m[0]['gpu_arena_mib'] > 0, m[0]"
if [ -s "$TEST_TMP/g/gpu_telemetry.jsonl" ]; then pass "gpu_telemetry.jsonl has samples"
else skip "no NVML samples: $(grep -m1 'telemetry off' "$TEST_TMP/g.log")"; fi
"$T" "${seg[@]}" --epochs 1 --device cpu --out "$TEST_TMP/c" >/dev/null 2>&1
check "GPU first-epoch loss within 2% of the CPU's" python3 -c "
import json; g = json.loads(open('$TEST_TMP/g/metrics.jsonl').readline()); c = json.loads(open('$TEST_TMP/c/metrics.jsonl').readline())
assert abs(g['train_loss'] - c['train_loss']) <= 0.02 * c['train_loss'], (g['train_loss'], c['train_loss'])"
ok=1
for p in bf16 fp16; do
  "$T" "${seg[@]}" --steps 20 --device cuda --precision $p --out "$TEST_TMP/$p" >"$TEST_TMP/$p.log" 2>&1 || { ok=0; tail -3 "$TEST_TMP/$p.log"; }
done
[ $ok = 1 ] && pass "--precision bf16 and fp16 train on the GPU" || fail "--precision bf16/fp16 on the GPU"
# checkpoints cross backends: same file format, same tag
"$T" "${seg[@]}" --epochs 1 --device cpu --checkpoint-every 1 --out "$TEST_TMP/x1" >/dev/null 2>&1
"$T" "${seg[@]}" --epochs 2 --device cuda --resume --out "$TEST_TMP/x1" >"$TEST_TMP/x1.log" 2>&1; rc=$?
if [ "$rc" = 0 ] && grep -q "resuming from" "$TEST_TMP/x1.log"; then pass "CPU checkpoint resumes on the GPU"; else fail "CPU->GPU resume" "rc=$rc"; fi
"$T" "${seg[@]}" --epochs 1 --device cuda --checkpoint-every 1 --out "$TEST_TMP/x2" >/dev/null 2>&1
"$T" "${seg[@]}" --epochs 2 --device cpu --resume --out "$TEST_TMP/x2" >"$TEST_TMP/x2.log" 2>&1; rc=$?
if [ "$rc" = 0 ] && grep -q "resuming from" "$TEST_TMP/x2.log"; then pass "GPU checkpoint resumes on the CPU"; else fail "GPU->CPU resume" "rc=$rc"; fi
done_testing
