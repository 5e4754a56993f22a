#!/usr/bin/env bash
# segx-train's command line: bad flags and values exit 2 naming the flag and the value, --help
# documents the exit codes, an unavailable device is refused, missing data names the file.
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
T=$SEGX_TRAIN

expect_usage() { # DESC PATTERN ARGS...: exit 2 and stderr matching PATTERN
  local d=$1 pat=$2; shift 2
  local out rc
  out=$("$T" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" = 2 ] && grep -qF -- "$pat" <<<"$out"; then pass "$d"; else fail "$d" "args: $*" "rc=$rc" "stderr: $out"; fi
}
expect_usage "non-numeric --lr names flag and value" "--lr 'fast'" --lr fast
expect_usage "unknown model lists the models" "--model 'vgg': want one of: cnn resnet18 unet" --model vgg
expect_usage "negative --batch-size" "--batch-size '-4'" --batch-size -4
expect_usage "unknown optimizer" "--optimizer 'lamb'" --optimizer lamb
expect_usage "unknown schedule" "--lr-schedule 'exp'" --lr-schedule exp
expect_usage "bad --checkpoint-every" "--checkpoint-every '3x'" --checkpoint-every 3x --out "$TEST_TMP/x"
expect_usage "missing value" "--epochs needs a value" --epochs
expect_usage "unknown flag" "unknown option '--bogus'" --bogus
expect_usage "stray argument" "unexpected argument 'oops'" oops
expect_usage "--resume without --out" "--resume needs --out" --resume
expect_usage "--device cuda without a CUDA device/backend" "--device cuda" --device cuda
expect_usage "model/dataset mismatch" "--model cnn is a classification model but --dataset fashion-mnist-seg has per-pixel labels" --model cnn --dataset fashion-mnist-seg --eval-limit 0 --steps 0

help=$("$T" --help); rc=$?
check_eq "--help exits 0" 0 "$rc"
for f in --model --dataset --epochs --batch-size --optimizer --lr --momentum --weight-decay --lr-schedule \
         --warmup-epochs --seed --width --no-batch-norm --threads --workers --train-limit --eval-limit --augment \
         --data-dir --in-channels --classes --image-size --steps --print-params --export-dataset --export-limit \
         --export-split --checkpoint-every --resume --profile --comm --sync-bn --accum-steps --bucket-mb --device --out; do
  grep -q -- "$f" <<<"$help" || missing="${missing:-} $f"
done
check_eq "--help documents every flag" "" "${missing:-}"
if grep -qE '^ *99 .*SIGTERM' <<<"$help"; then pass "--help documents exit code 99 (checkpointed, requeue)"; else fail "--help lacks exit code 99"; fi

out=$("$T" --device auto --print-params 2>&1 >/dev/null); rc=$?
if [ "$rc" = 0 ] && grep -q "using the CPU" <<<"$out"; then pass "--device auto falls back to the CPU and says so"; else fail "--device auto" "rc=$rc" "$out"; fi

out=$("$T" --data-dir "$TEST_TMP/nowhere" --steps 1 2>&1); rc=$?
if [ "$rc" = 1 ] && grep -q "$TEST_TMP/nowhere/train-images-idx3-ubyte" <<<"$out"; then pass "missing dataset file is named (exit 1)"; else fail "missing dataset" "rc=$rc" "$out"; fi

# --print-params: total equals the sum of the listed tensors
out=$("$T" --model unet --dataset synthetic --in-channels 1 --classes 11 --image-size 64 --width 8 --print-params)
sum=$(awk '$3 != "buffer" && $1 != "total" && $1 != "buffers:" {s += $2} END {print s}' <<<"$out")
tot=$(awk '/^total parameters:/ {print $3}' <<<"$out")
check_eq "--print-params total = sum of tensors ($tot)" "$tot" "$sum"
done_testing
