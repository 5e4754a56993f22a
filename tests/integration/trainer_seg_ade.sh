#!/usr/bin/env bash
# segx-train on the generated ADE20K- and Cityscapes-layout sets: --make-dataset, the crop pipeline,
# slide and whole evaluation at each image's resolution, --evaluate on the checkpoint, and bad input
# refused before training with the file named.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
T=$SEGX_TRAIN
check "--make-dataset ade20k:DIR" "$T" --make-dataset ade20k:ade
check "--make-dataset cityscapes:DIR" "$T" --make-dataset cityscapes:cs
check_eq "ade20k layout: 48 + 16 JPEG images, as many PNG annotations" "48 16 48 16" \
  "$(ls ade/images/training/*.jpg | wc -l) $(ls ade/images/validation/*.jpg | wc -l) $(ls ade/annotations/training/*.png | wc -l) $(ls ade/annotations/validation/*.png | wc -l)"

check "--make-dataset ade20k:DIR --export-limit 6" "$T" --make-dataset ade20k:ade6 --export-limit 6
check_eq "... 6 training + 2 validation images, the first ones those of the default set" "6 2 same same" \
  "$(ls ade6/images/training/*.jpg | wc -l) $(ls ade6/images/validation/*.jpg | wc -l) $(cmp -s ade6/images/training/ADE_train_00000006.jpg ade/images/training/ADE_train_00000006.jpg && echo same) $(cmp -s ade6/annotations/validation/ADE_val_00000002.png ade/annotations/validation/ADE_val_00000002.png && echo same)"

lim=16; [ "${SEGX_SAN:-0}" = 1 ] && lim=8
common=(--model unet --width 4 --crop 32 --scale 96x48 --batch-size 4 --threads 1 --train-limit $lim --eval-limit 4
        --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375)
out=$("$T" "${common[@]}" --dataset ade20k:ade --epochs 2 --eval-every 2 --eval-mode slide --eval-stride 21 \
      --photometric --checkpoint-every 1 --out run 2>&1); rc=$?
check_eq "unet trains on ade20k:DIR with the crop pipeline and slide evaluation" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -5 | sed 's/^/# /'
check_eq "epoch 1 has no evaluation, epoch 2 has mIoU over the 150 classes" "1:0 2:150" "$(python3 -c "
import json
print(' '.join('%d:%d' % (o['epoch'], len(o.get('per_class_iou', []))) for o in map(json.loads, open('run/metrics.jsonl'))))")"
check "result.json holds the final mIoU" python3 -c "
import json; r = json.load(open('run/result.json')); assert 0 <= r['miou'] <= 1, r"
out=$("$T" "${common[@]}" --dataset ade20k:ade --eval-mode slide --eval-stride 21 --evaluate --out run 2>&1); rc=$?
check_eq "--evaluate on the checkpoint, slide windows" 0 "$rc"
check_eq "eval.json: the same mIoU as the run's last epoch" "same" "$(python3 -c "
import json
a = json.load(open('run/eval.json'))['miou']; b = json.load(open('run/result.json'))['miou']
print('same' if abs(a - b) < 1e-9 else '%r != %r' % (a, b))")"
out=$("$T" "${common[@]}" --dataset cityscapes:cs --epochs 1 --eval-mode whole --out runcs 2>&1); rc=$?
check_eq "unet trains on cityscapes:DIR (labelIds mapped on val), whole-image evaluation" 0 "$rc"
check_eq "cityscapes: 19 classes" 19 "$(python3 -c "import json; print(len(json.load(open('runcs/result.json'))['per_class_iou']))")"

# --export-dataset writes the ade20k samples (mixed sizes, mapped labels) as a segfolder, which trains with --crop
check "--export-dataset from ade20k:DIR" "$T" --dataset ade20k:ade --export-dataset exp --export-limit 4
check_eq "... 4 image/mask pairs, the labels mapped (ADE 1 -> 0, 0 -> 255)" "4 4 ok" "$(ls exp/images | wc -l) $(ls exp/masks | wc -l) $(python3 -c "
import struct, zlib
def png(p):   # 8-bit gray PNG -> rows of bytes (the five PNG filters undone)
    b = open(p, 'rb').read(); w, h = struct.unpack('>II', b[16:24]); i, d = 8, b''
    while i < len(b):
        n, = struct.unpack('>I', b[i:i + 4]); t = b[i + 4:i + 8]
        if t == b'IDAT': d += b[i + 8:i + 8 + n]
        i += 12 + n
    raw, rows, prev = zlib.decompress(d), [], bytes(w)
    for y in range(h):
        f, r = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = r[x - 1] if x else 0; up = prev[x]; c = prev[x - 1] if x else 0
            pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
            r[x] = (r[x] + (0, a, up, (a + up) // 2, a if pa <= pb and pa <= pc else up if pb <= pc else c)[f]) & 255
        rows.append(bytes(r)); prev = r
    return rows
m, a = png('exp/masks/000000.png'), png('ade/annotations/training/ADE_train_00000001.png')
print('ok' if all(mv == (255 if av == 0 else av - 1) for mr, ar in zip(m, a) for mv, av in zip(mr, ar)) else 'mismatch')")"
out=$("$T" "${common[@]}" --dataset segfolder:exp --epochs 1 --eval-limit 2 --out runsf 2>&1); rc=$?
check_eq "segfolder:DIR of mixed sizes trains with --crop" 0 "$rc"

# 2 ranks evaluate strided shares of the validation images; their sums and confusion matrices add up
# to the 1-rank figures (no BN, lr 0: both evaluate the initial model)
if command -v mpirun >/dev/null && [ "${SEGX_SAN:-0}" != 1 ]; then
  a=(--model unet --width 4 --no-batch-norm --lr 0 --dataset ade20k:ade --crop 32 --batch-size 4 --threads 1 --epochs 1
     --eval-mode slide --workers 1 --train-limit 8)
  timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 "$T" "${a[@]}" --out run2 >run2.log 2>&1
  "$T" "${a[@]}" --out run1 >run1.log 2>&1
  check_eq "2-rank evaluation = 1-rank evaluation (val_loss, pixel_acc, per-class IoU)" same "$(python3 -c "
import json
a, b = (json.loads(open(d + '/metrics.jsonl').readline()) for d in ('run1', 'run2'))
k = ('val_loss', 'pixel_acc', 'per_class_iou')
print('same' if all(a[x] == b[x] for x in k) else [(a[x], b[x]) for x in k[:2]])" 2>&1)"
else
  skip "2-rank evaluation (no mpirun, or a sanitizer build)"
fi

# bad input: refused before training (no metrics line), naming the file or flag
mkdir -p bad && cp -r ade bad/nosplit && rm -r bad/nosplit/annotations/validation
out=$("$T" "${common[@]}" --dataset ade20k:bad/nosplit --out runbad 2>&1); rc=$?
check_eq "missing split folder: exit 1" 1 "$rc"
check "... naming the folder" grep -q "missing split folder bad/nosplit/annotations/validation" <<<"$out"
check_eq "... before any epoch" "" "$(cat runbad/metrics.jsonl 2>/dev/null)"
cp -r ade bad/label
python3 - <<'PY'
import struct, zlib
# the first training annotation, rewritten at its own size with label 200 everywhere
p = "bad/label/annotations/training/ADE_train_00000001.png"
w, h = struct.unpack(">II", open(p, "rb").read()[16:24])
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + bytes([200] * w) for _ in range(h))
open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
out=$("$T" "${common[@]}" --dataset ade20k:bad/label --check-data --out runbad2 2>&1); rc=$?
check_eq "label outside the classes with --check-data: exit 1" 1 "$rc"
check "... naming the file and the label" grep -q "ADE_train_00000001.png: label 200 at pixel (0, 0) is outside the classes" <<<"$out"
check_eq "... before any epoch" "" "$(cat runbad2/metrics.jsonl 2>/dev/null)"
out=$("$T" --model unet --width 4 --dataset ade20k:ade --out runbad3 2>&1); rc=$?
check_eq "mixed sizes without --crop: exit 2" 2 "$rc"
check "... saying to give --crop" grep -q "images of different sizes: give --crop" <<<"$out"
out=$("$T" "${common[@]}" --dataset ade20k:ade --eval-crop 48 --out runbad4 2>&1); rc=$?
check_eq "--eval-crop other than the crop: exit 2" 2 "$rc"
done_testing
