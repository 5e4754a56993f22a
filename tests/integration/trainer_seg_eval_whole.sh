#!/usr/bin/env bash
# Whole-image evaluation at each image's own resolution: deeplabv3plus trained (2 steps) on 48x48
# crops, then evaluated on two validation images of other sizes (45x67, 71x38). eval.json counts
# every labelled pixel of the originals (H x W minus the ignored frame), and its loss, pixel
# accuracy and mIoU are PyTorch's (../shared/bench/models_ref.py with the run's --save-weights)
# running each full image through the model: not the image resized to the crop.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
PY=/usr/bin/python3
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
if ! $PY -c 'import torch, numpy' 2>/dev/null; then skip "needs $PY with torch and numpy (python3-torch)"; done_testing; exit $?; fi
REF=${SEGX_MODELS_REF:-$SEGX_ROOT/../shared/bench/models_ref.py}
if [ ! -f "$REF" ]; then skip "no $REF"; done_testing; exit $?; fi
T=$SEGX_TRAIN

# A segfolder set: 6 training and 2 validation PNG pairs of mixed sizes, 4 classes, 255 on a frame.
check "write the segfolder set" $PY - <<'PY'
import os, struct, zlib, numpy as np
def png(path, a):
    h, w = a.shape[:2]; c = 1 if a.ndim == 2 else a.shape[2]
    raw = b''.join(b'\0' + a[y].tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, {1: 0, 3: 2}[c], 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
rng = np.random.default_rng(7)
def sample(h, w):
    lab = np.zeros((h, w), np.uint8)
    for k in (1, 2, 3):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        lab[y:y + rng.integers(8, h - y + 1), x:x + rng.integers(8, w - x + 1)] = k
    img = np.clip(np.array([[40, 40, 40], [200, 60, 60], [60, 200, 60], [60, 60, 200]])[lab] + rng.integers(-30, 31, (h, w, 3)), 0, 255).astype(np.uint8)
    lab[0, :] = lab[-1, :] = lab[:, 0] = lab[:, -1] = 255
    return img, lab
for split, sizes in (('train', [(50, 60), (64, 40), (48, 48), (40, 72), (56, 56), (60, 44)]), ('val', [(45, 67), (71, 38)])):
    for d in ('images', 'masks'): os.makedirs(f'sf/{split}/{d}', exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        img, lab = sample(h, w)
        png(f'sf/{split}/images/{i:03d}.png', img); png(f'sf/{split}/masks/{i:03d}.png', lab)
        if split == 'val': np.save(f'val{i}.img.npy', img); np.save(f'val{i}.lab.npy', lab)
PY

common=(--model deeplabv3plus --backbone resnet18 --dataset segfolder:sf --classes 4 --crop 48 --threads 1 --workers 0
        --eval-limit 2)
out=$("$T" "${common[@]}" --batch-size 2 --steps 2 --lr 0.05 --checkpoint-every 2s --save-weights w.safetensors --out run 2>&1); rc=$?
check_eq "deeplabv3plus trains 2 steps on 48x48 crops" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -5 | sed 's/^/# /'
out=$("$T" "${common[@]}" --eval-mode whole --evaluate --out run 2>&1); rc=$?
check_eq "--evaluate --eval-mode whole" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -5 | sed 's/^/# /'
cp run/eval.json whole.json 2>/dev/null

cmp=$($PY - "$REF" <<'PY' 2>&1
import importlib.util, json, struct, sys, numpy as np, torch, torch.nn.functional as F
spec = importlib.util.spec_from_file_location('models_ref', sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
def load_st(path):
    b = open(path, 'rb').read(); n, = struct.unpack('<Q', b[:8]); hdr = json.loads(b[8:8 + n])
    dt = {'F32': np.float32, 'I64': np.int64}
    return {k: torch.from_numpy(np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]],
            dt[v['dtype']]).reshape(v['shape']).copy()) for k, v in hdr.items() if k != '__metadata__'}
m = ref.DeepLabV3Plus(18, 3, 4)
sd = load_st('w.safetensors')
missing, unexpected = m.load_state_dict(sd, strict=False)
assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing), (missing, unexpected)
m.eval()
K, cm, loss, n = 4, np.zeros((4, 4), np.int64), 0.0, 0
with torch.no_grad():
    for i in range(2):
        img, lab = np.load(f'val{i}.img.npy'), np.load(f'val{i}.lab.npy')
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        y = m(x)[0]
        assert y.shape[1:] == lab.shape
        t = torch.from_numpy(lab.astype(np.int64)); keep = t != 255
        loss += F.cross_entropy(y[None], t[None], ignore_index=255, reduction='sum').item(); n += int(keep.sum())
        p = y.argmax(0)
        np.add.at(cm, (t[keep].numpy(), p[keep].numpy()), 1)
iou = [cm[k, k] / (cm[k].sum() + cm[:, k].sum() - cm[k, k]) for k in range(K) if cm[k].sum() + cm[:, k].sum() > 0]
e = json.load(open('whole.json'))
want = {'pixels': n, 'loss': loss / n, 'pixel_acc': np.trace(cm) / cm.sum(), 'miou': float(np.mean(iou))}
print('pixels', e['pixels'], n, 'HxW', sum(np.load(f'val{i}.lab.npy').size for i in range(2)))
bad = [f"{k}: segx {e[k]!r} torch {want[k]!r}" for k, tol in (('loss', 1e-3), ('pixel_acc', 2e-3), ('miou', 5e-3))
       if abs(e[k] - want[k]) > tol * max(1, abs(want[k]))]
print('match' if not bad else '; '.join(bad))
PY
)
check_eq "whole: eval.json counts H x W minus the ignored frame of each original (45x67 + 71x38)" \
  "$(python3 -c 'print((45*67 - 2*(45+67) + 4) + (71*38 - 2*(71+38) + 4))')" "$(echo "$cmp" | awk '/^pixels/ {print $2}')"
check_eq "whole: loss, pixel accuracy and mIoU equal PyTorch's full-image forward" match "$(echo "$cmp" | tail -1)"
[ "$(echo "$cmp" | tail -1)" = match ] || echo "$cmp" | tail -5 | sed 's/^/# /'

out=$("$T" "${common[@]}" --eval-mode slide --eval-stride 32 --evaluate --out run 2>&1); rc=$?
check_eq "slide: the same pixels counted" "0 $(python3 -c 'import json; print(json.load(open("whole.json"))["pixels"])' 2>&1)" \
  "$rc $(python3 -c 'import json; print(json.load(open("run/eval.json"))["pixels"])' 2>&1)"
done_testing
