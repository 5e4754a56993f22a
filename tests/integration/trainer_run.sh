#!/usr/bin/env bash
# A short real segx-train run: the loss falls, the run dir holds valid JSON with the contract's keys,
# --profile writes a Chrome trace, --export-dataset round-trips through segfolder:, and with 2 MPI
# ranks the evaluation (all-reduced sums and confusion matrix) equals the 1-rank evaluation.
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
T=$SEGX_TRAIN
json() { python3 -c "import json,sys; $1" "${@:2}"; }

# 1) cnn on 512 fashion-mnist images, 4 epochs: train loss must fall and accuracy beat chance
out=$TEST_TMP/cnn
if timeout 300 "$T" --model cnn --dataset fashion-mnist --train-limit 512 --eval-limit 256 --epochs 4 --batch-size 32 \
     --optimizer adam --lr 0.002 --threads 1 --out "$out" --profile "$TEST_TMP/trace.json" >"$TEST_TMP/cnn.log" 2>&1; then
  pass "cnn run exits 0"
else fail "cnn run" "$(tail -3 "$TEST_TMP/cnn.log")"; fi
for f in metrics.jsonl progress.json result.json env.json; do check "$f exists" test -s "$out/$f"; done
check "metrics.jsonl: 4 lines, each valid JSON with the per-epoch keys" json '
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 4, len(lines)
for i, m in enumerate(lines):
    for k in ("epoch", "step", "wall_s", "train_loss", "val_loss", "top1", "lr", "images_per_s", "epoch_s", "data_s", "compute_s", "comm_s"):
        assert k in m, k
    assert m["epoch"] == i + 1 and m["step"] == 16 * (i + 1)
' "$out/metrics.jsonl"
check "train loss falls (last epoch < 0.8 x first) and top-1 beats chance" json '
l = [json.loads(x) for x in open(sys.argv[1])]
print(l[0]["train_loss"], l[-1]["train_loss"], l[-1]["top1"])
assert l[-1]["train_loss"] < 0.8 * l[0]["train_loss"] and l[-1]["top1"] > 0.3
' "$out/metrics.jsonl"
check "result.json: completed, params, images/s, final and best top-1" json '
r = json.load(open(sys.argv[1]))
assert r["status"] == "completed" and r["params"] > 1000 and r["images_per_s"] > 0 and r["steps"] == 64
assert 0 <= r["top1"] <= r["best_top1"] <= 1 and r["wall_s"] > 0
' "$out/result.json"
check "progress.json: epoch 4 of 4, step 64 of 64" json '
p = json.load(open(sys.argv[1])); assert (p["epoch"], p["epochs"], p["step"], p["steps"]) == (4, 4, 64, 64), p
assert p["eta_s"] == 0' "$out/progress.json"
check "env.json: host, CPU, threads, ranks, library versions" json '
e = json.load(open(sys.argv[1]))
for k in ("host", "cpu_model", "threads", "ranks", "openblas", "jansson", "git_commit"): assert k in e, k
assert e["threads"] == 1 and e["ranks"] == 1' "$out/env.json"
# 1b) OMP_WAIT_POLICY: unset, segx-train sets PASSIVE and executes itself again so that libgomp (oneDNN's
# OpenMP) reads it at load; env.json records what the runtime read. A value the user set is kept.
for pol in unset active; do
  o=$TEST_TMP/omp-$pol
  if [ $pol = unset ]; then cmd=(env -u OMP_WAIT_POLICY); else cmd=(env OMP_WAIT_POLICY=$pol); fi
  "${cmd[@]}" timeout 120 "$T" --model cnn --dataset synthetic --image-size 28 --in-channels 1 --classes 10 --batch-size 8 \
    --steps 1 --threads 2 --workers 0 --eval-limit 0 --out "$o" >"$o.log" 2>&1 || fail "omp $pol run" "$(tail -3 "$o.log")"
done
check "env.json: OMP_WAIT_POLICY unset -> PASSIVE (re-executed), ACTIVE set by the user -> kept" json '
a, b = (json.load(open(p)).get("omp_wait_policy", "missing") for p in sys.argv[1:3])
assert (a, b) == ("PASSIVE", "active"), (a, b)' "$TEST_TMP/omp-unset/env.json" "$TEST_TMP/omp-active/env.json"
check "trace.json: Chrome trace with forward/backward/optimizer/data_wait/eval events" json '
t = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["name"] for e in t if e.get("ph") == "X"}
assert {"forward", "backward", "optimizer", "data_wait", "eval"} <= names, names
assert sum(1 for e in t if e["name"] == "forward") == 64 and all(e["dur"] >= 0 for e in t if e.get("ph") == "X")
' "$TEST_TMP/trace.json"
check "trace.json: every op of the model on the ops lane, with its shape, inside a forward/backward/eval phase" json '
t = json.load(open(sys.argv[1]))["traceEvents"]
ops = [e for e in t if e.get("ph") == "X" and e["cat"] == "op"]
names = {e["name"] for e in ops}
need = {"conv2d_forward", "conv2d_backward_weights", "conv2d_backward", "batchnorm_relu_forward", "batchnorm_relu_backward",
        "maxpool2x2_forward", "maxpool2x2_backward", "linear_forward", "linear_backward", "softmax_xent"}
assert need <= names, need - names
assert all(e["tid"] == 2 and e["args"]["shape"] and e["dur"] >= 0 for e in ops)
first = [e["args"]["shape"] for e in ops if e["name"] == "conv2d_forward"][0]
assert first.startswith("B=32 1x28x28->"), first
phases = sorted((e["ts"], e["ts"] + e["dur"]) for e in t if e.get("ph") == "X" and e["name"] in ("forward", "backward", "eval"))
import bisect
starts = [p[0] for p in phases]
def inside(e):
    i = bisect.bisect_right(starts, e["ts"] + 1e-3) - 1
    return i >= 0 and e["ts"] + e["dur"] <= phases[i][1] + 1.0   # microseconds, rounding of %.3f
bad = [e for e in ops if not inside(e)]
assert not bad, bad[:3]
# within the forward + backward phases of a step the ops take most, and never more, of the time
step = 20
fb = [(e["ts"], e["ts"] + e["dur"]) for e in t if e.get("ph") == "X" and e["name"] in ("forward", "backward") and e["args"]["step"] == step]
assert len(fb) == 2, fb
in_fb = sum(e["dur"] for e in ops if any(a <= e["ts"] + 1e-3 and e["ts"] + e["dur"] <= b + 1.0 for a, b in fb))
total = sum(b - a for a, b in fb)
assert 0.5 * total <= in_fb <= total + 1.0, (in_fb, total)
' "$TEST_TMP/trace.json"

# 2) export fashion-mnist-seg and train unet on the exported folder (segmentation metrics)
if "$T" --dataset fashion-mnist-seg --export-dataset "$TEST_TMP/seg" --export-limit 24 --export-split test >"$TEST_TMP/exp.log" 2>&1; then
  pass "--export-dataset exits 0"; else fail "--export-dataset" "$(cat "$TEST_TMP/exp.log")"; fi
check_eq "24 images and 24 masks exported" "24 24" "$(ls "$TEST_TMP/seg/images" | wc -l) $(ls "$TEST_TMP/seg/masks" | wc -l)"
check "000000.png is a 64x64 8-bit PNG" bash -c "file '$TEST_TMP/seg/masks/000000.png' | grep -q '64 x 64, 8-bit grayscale'"
if timeout 300 "$T" --model unet --width 4 --dataset "segfolder:$TEST_TMP/seg" --classes 11 --epochs 1 --batch-size 8 \
     --optimizer adam --lr 0.003 --threads 1 --augment --out "$TEST_TMP/unet" >"$TEST_TMP/unet.log" 2>&1; then
  pass "unet on segfolder exits 0"; else fail "unet on segfolder" "$(tail -3 "$TEST_TMP/unet.log")"; fi
check "segmentation metrics: miou, pixel_acc, 11 per-class IoUs" json '
m = json.loads(open(sys.argv[1]).readline())
assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_acc"] <= 1 and len(m["per_class_iou"]) == 11, m' "$TEST_TMP/unet/metrics.jsonl"

# 3) synthetic with --steps stops after exactly N steps
"$T" --model cnn --dataset synthetic --in-channels 3 --classes 5 --image-size 16 --batch-size 4 --steps 5 --eval-limit 0 \
  --threads 1 --out "$TEST_TMP/syn" >"$TEST_TMP/syn.log" 2>&1
check "synthetic --steps 5: result.json says 5 steps" json 'assert json.load(open(sys.argv[1]))["steps"] == 5' "$TEST_TMP/syn/result.json"

# 4) data parallel evaluation: 2 ranks (each half the test split) == 1 rank, same parameters (lr 0, no BN)
if [ "${SEGX_SAN:-0}" = 1 ] || ! command -v mpirun >/dev/null; then
  skip "2-rank evaluation (needs mpirun; skipped under sanitizers)"
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  ev=(--model unet --width 4 --dataset fashion-mnist-seg --train-limit 64 --eval-limit 40 --batch-size 8 --epochs 1 --lr 0 --no-batch-norm --threads 1)
  "$T" "${ev[@]}" --out "$TEST_TMP/ev1" >"$TEST_TMP/ev1.log" 2>&1
  timeout 120 mpirun -np 2 --bind-to none "$T" "${ev[@]}" --comm auto --out "$TEST_TMP/ev2" >"$TEST_TMP/ev2.log" 2>&1
  check "2-rank mIoU/pixel acc/val loss == 1-rank (confusion matrix all-reduced, not averaged)" json '
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
print(a["miou"], b["miou"], a["val_loss"], b["val_loss"])
assert abs(a["miou"] - b["miou"]) < 1e-9 and abs(a["pixel_acc"] - b["pixel_acc"]) < 1e-9
assert abs(a["val_loss"] - b["val_loss"]) < 1e-5 * abs(a["val_loss"])
for k in ("comm_s", "comm_exposed_s", "comm_total_s", "allreduce_gbps"): assert k in b, k
e = json.load(open(sys.argv[3])); assert e["ranks"] == 2, e
' "$TEST_TMP/ev1/metrics.jsonl" "$TEST_TMP/ev2/metrics.jsonl" "$TEST_TMP/ev2/env.json"
fi
done_testing
