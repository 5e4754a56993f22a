#!/usr/bin/env bash
# A torchvision ResNet checkpoint starts deeplabv3plus's backbone: tools/torchvision2safetensors.py
# writes a randomly initialised resnet18 / resnet50 state_dict (torchvision's, or the same names from
# models_ref.py without torchvision) as safetensors; `--init F --init-prefix backbone.` loads it:
# every backbone tensor matched (parameters, running stats, num_batches_tracked), fc.* unexpected,
# nothing under backbone. missing; --save-weights after 0 steps holds the file's tensors exactly
# under backbone. and the seeded initialisation everywhere else (ASPP, decoder, head); and the
# eval-mode logits of those weights (--infer) are PyTorch's (models_ref.py) within 1e-4 x max|logit|.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
PY=/usr/bin/python3
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
if ! $PY -c 'import torch, numpy' 2>/dev/null; then skip "needs $PY with torch and numpy (python3-torch)"; done_testing; exit $?; fi
REF=${SEGX_MODELS_REF:-$SEGX_ROOT/../shared/bench/models_ref.py}
if [ ! -f "$REF" ]; then skip "no $REF"; done_testing; exit $?; fi
export SEGX_MODELS_REF=$REF
T=$SEGX_TRAIN
CONV=$SEGX_ROOT/tools/torchvision2safetensors.py
backbones=(resnet18 resnet50); [ "${SEGX_SAN:-0}" = 1 ] && backbones=(resnet18)

# compare.py A.safetensors B.safetensors C.safetensors: A (saved after --init) against the converted
# file B under backbone. and against C (saved without --init, same seed) elsewhere
cat >compare.py <<'PY'
import json, struct, sys, numpy as np
def load(p):
    b = open(p, 'rb').read(); n, = struct.unpack('<Q', b[:8]); h = json.loads(b[8:8 + n])
    dt = {'F32': np.float32, 'I64': np.int64}
    return {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dt[v['dtype']]).reshape(v['shape'])
            for k, v in h.items() if k != '__metadata__'}
a, tv, fresh = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
bb = [k for k in a if k.startswith('backbone.')]
rest = [k for k in a if not k.startswith('backbone.')]
bad = [k for k in bb if not np.array_equal(a[k].astype(np.float64), tv[k[9:]].astype(np.float64))]
bad += [k for k in rest if not np.array_equal(a[k], fresh[k])]
differs = sum(not np.array_equal(a[k], fresh[k]) for k in bb if a[k].dtype == np.float32 and 'running' not in k
              and a[k].size > 1)
print(len(bb), len(rest), 'equal' if not bad else 'differ: ' + ' '.join(bad[:4]), differs)
PY

for bbn in "${backbones[@]}"; do
  out=$($PY "$CONV" --random "$bbn" 3 "$bbn.safetensors" 2>&1); rc=$?
  check_eq "$bbn: tools/torchvision2safetensors.py --random writes the state_dict" 0 "$rc"
  [ "$rc" = 0 ] || { echo "$out" | tail -3 | sed 's/^/# /'; continue; }
  # what PyTorch says: the checkpoint's keys, the backbone's keys and the rest of the model's
  want=$($PY - "$REF" "$bbn" "$bbn.safetensors" <<'PY'
import importlib.util, json, struct, sys
spec = importlib.util.spec_from_file_location('models_ref', sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
b = open(sys.argv[3], 'rb').read(); n, = struct.unpack('<Q', b[:8]); keys = set(json.loads(b[8:8 + n])) - {'__metadata__'}
sd = ref.DeepLabV3Plus(int(sys.argv[2][6:]), 3, 19).state_dict()
bb = {k[9:] for k in sd if k.startswith('backbone.')}
print(len(keys & bb), len(bb - keys), ' '.join(sorted(keys - bb)), len(sd) - len(bb))
PY
)
  read -r matched missing rest <<<"$(echo "$want" | awk '{print $1, $2, $NF}')"
  common=(--model deeplabv3plus --backbone "$bbn" --dataset synthetic --in-channels 3 --classes 19 --image-size 64
          --batch-size 2 --threads 1 --workers 0 --eval-limit 0 --steps 0 --seed 9)
  out=$("$T" "${common[@]}" --init "$bbn.safetensors" --init-prefix backbone. --save-weights "$bbn-init.safetensors" 2>&1); rc=$?
  check_eq "$bbn: --init with --init-prefix backbone. exits 0" 0 "$rc"
  got=$(echo "$out" | sed -n 's/.*: \([0-9]*\) tensors matched, \([0-9]*\) missing, \([0-9]*\) unexpected.*/\1 \2 \3/p')
  check_eq "$bbn: matched / missing / unexpected as PyTorch's backbone.load_state_dict (fc.* unexpected)" \
    "$matched $missing 2" "$got"
  check_eq "$bbn: the unexpected keys are fc.weight and fc.bias" "fc.bias fc.weight" \
    "$(echo "$out" | sed -n 's/.*unexpected (ignored) (2): //p' | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
  check "$bbn: the same seed without --init" "$T" "${common[@]}" --save-weights "$bbn-fresh.safetensors"
  if [ "$bbn" = resnet18 ]; then
    check "--init none: the seeded init only" "$T" "${common[@]}" --init none --save-weights none.safetensors
    check_eq "--init none saves what no --init saves" same "$(cmp -s none.safetensors "$bbn-fresh.safetensors" && echo same)"
  fi
  cmp=$($PY compare.py "$bbn-init.safetensors" "$bbn.safetensors" "$bbn-fresh.safetensors" 2>&1)
  check_eq "$bbn: saved weights = the file's under backbone. ($matched), the seeded init elsewhere ($rest: ASPP, decoder, head)" \
    "$matched $rest equal" "$(echo "$cmp" | awk '{print $1, $2, $3}')"
  n_diff=$(echo "$cmp" | awk '{print $4}')
  check "$bbn: the file's backbone is not the seeded one (the comparison can fail): $n_diff tensors differ" \
    test "${n_diff:-0}" -gt 10
done

# eval-mode logits of the loaded model against PyTorch's with the same weights
$PY -c "
import struct, json, torch
torch.manual_seed(5); x = torch.randn(2, 3, 64, 80).contiguous()
h = json.dumps({'input': {'dtype': 'F32', 'shape': list(x.shape), 'data_offsets': [0, 4 * x.numel()]}}).encode(); h += b' ' * (-len(h) % 8)
open('in.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + x.numpy().tobytes())"
out=$("$T" --model deeplabv3plus --backbone resnet18 --classes 19 --threads 1 --init resnet18-init.safetensors \
      --infer in.safetensors --infer-out logits.safetensors 2>&1); rc=$?
check_eq "--infer with the saved weights (backbone from the converted checkpoint)" 0 "$rc"
rel=$($PY - "$REF" <<'PY' 2>&1
import importlib.util, json, struct, sys, numpy as np, torch
spec = importlib.util.spec_from_file_location('models_ref', sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
def load(p):
    b = open(p, 'rb').read(); n, = struct.unpack('<Q', b[:8]); h = json.loads(b[8:8 + n])
    dt = {'F32': np.float32, 'I64': np.int64}
    return {k: torch.from_numpy(np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], dt[v['dtype']]).reshape(v['shape']).copy())
            for k, v in h.items() if k != '__metadata__'}
m = ref.DeepLabV3Plus(18, 3, 19)
w = load('resnet18-init.safetensors'); tv = load('resnet18.safetensors')
w.update({'backbone.' + k: v for k, v in tv.items() if not k.startswith('fc.')})   # the backbone straight from the checkpoint
missing, unexpected = m.load_state_dict(w, strict=False)
assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing), (missing, unexpected)
m.eval()
with torch.no_grad(): y = m(load('in.safetensors')['input']).numpy()
g = load('logits.safetensors')['logits'].numpy()
print('%.3g' % (np.abs(g - y).max() / np.abs(y).max()))
PY
)
check "logits within 1e-4 x max|logit| of PyTorch's with the checkpoint's backbone (rel $rel)" \
  $PY -c "import sys; sys.exit(not float('$rel') <= 1e-4)"
done_testing
