#!/usr/bin/env bash
# segx-train's weights flags end to end: --infer with PyTorch-written weights (tests/fixtures/unet_w8.*,
# from tools/fixtures/gen_safetensors.py) reproduces PyTorch's logits; --save-weights after training
# and --init of that file give the same logits as the trained model; --init-skip keeps a tensor's
# initialisation; a shape mismatch and a truncated file exit 2/1 with the key / byte offset named.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
FX=$SEGX_ROOT/tests/fixtures
# max |a-b| / max |b| of tensor 'logits' in two files, with python3's standard library only
rel() { python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); t = h['logits']
    s, e = t['data_offsets']; d = b[8 + n + s:8 + n + e]
    return struct.unpack('<%df' % (len(d) // 4), d)
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b), (len(a), len(b))
print('%.3g' % (max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)))
PY
}
out=$("$SEGX_TRAIN" --model unet --width 8 --init "$FX/unet_w8.safetensors" --infer "$FX/unet_w8.in.safetensors" \
      --infer-out got.safetensors 2>&1); rc=$?
check_eq "--infer with PyTorch's unet weights exits 0" 0 "$rc"
case $out in *"92 tensors matched, 0 missing, 0 unexpected"*) pass "--init reports 92 matched, 0 missing";;
  *) fail "--init reports matched/missing" "$out";; esac
r=$(rel got.safetensors "$FX/unet_w8.out.safetensors")
check "unet logits within 1e-4 x max|logit| of PyTorch's (rel $r)" python3 -c "import sys; sys.exit(not float('$r') <= 1e-4)"

common=(--model cnn --dataset synthetic --in-channels 1 --classes 10 --image-size 12 --batch-size 8 --threads 1 --workers 0 --eval-limit 0)
check "train 3 steps, --save-weights" "$SEGX_TRAIN" "${common[@]}" --steps 3 --save-weights trained.safetensors
python3 -c "
import struct, random; random.seed(1)
x = [random.uniform(-1, 1) for _ in range(2 * 12 * 12)]
h = b'{\"input\":{\"dtype\":\"F32\",\"shape\":[2,1,12,12],\"data_offsets\":[0,%d]}}' % (4 * len(x)); h += b' ' * (-len(h) % 8)
open('in.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + struct.pack('<%df' % len(x), *x))"
check "--infer from the saved weights" "$SEGX_TRAIN" --model cnn --init trained.safetensors --infer in.safetensors --infer-out a.safetensors
# a fresh run (other seed) started from the saved weights, 0 steps, saved again: the same logits
check "--init then --steps 0 --save-weights" "$SEGX_TRAIN" "${common[@]}" --seed 5 --steps 0 --init trained.safetensors --save-weights again.safetensors
check "--infer from the re-saved weights" "$SEGX_TRAIN" --model cnn --init again.safetensors --infer in.safetensors --infer-out b.safetensors
check_eq "weights survive --init -> --save-weights exactly" 0 "$(rel b.safetensors a.safetensors)"
out=$("$SEGX_TRAIN" "${common[@]}" --seed 5 --steps 0 --init trained.safetensors --init-skip '^fc\.' --save-weights skip.safetensors 2>&1)
case $out in *"18 tensors matched"*"2 skipped"*) pass "--init-skip '^fc\\.' skips the classifier";; *) fail "--init-skip" "$out";; esac
out=$("$SEGX_TRAIN" "${common[@]}" --classes 7 --steps 0 --init trained.safetensors 2>&1); rc=$?
check_eq "a shape mismatch exits 2" 2 "$rc"
case $out in *"'fc.weight' has shape (10, 1152)"*"is (7, 1152)"*) pass "the mismatch names the key and both shapes";;
  *) fail "the mismatch names the key and both shapes" "$out";; esac
head -c 1000 trained.safetensors >cut.safetensors
out=$("$SEGX_TRAIN" --model cnn --init cut.safetensors --infer in.safetensors --infer-out c.safetensors 2>&1); rc=$?
check_eq "a truncated weights file exits 1" 1 "$rc"
case $out in *"cut.safetensors: byte "*) pass "the error names the file and byte offset";; *) fail "truncated file error" "$out";; esac
done_testing
