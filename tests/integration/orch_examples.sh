#!/usr/bin/env bash
# Every spec in examples/ plans (--dry-run) to the number of cells computed by hand below, with
# the parameters the study means (batch rule, lr scaling, optimizer/lr pairing); the segx-train
# examples' job scripts ask Slurm for as many CPUs as the trainer's --threads, and their trainer
# command lines are accepted by segx-train (--print-params parses every flag and exits).
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
ex=$SEGX_ROOT/examples

# Cell counts, by hand:
#   quickstart                   model 2 x dataset 2 x gpus 2 x batch 2 x seed 2 = 32; the excludes
#                                keep 2 (model, dataset) pairs of 4 -> 16, then drop cnn at batch 32
#                                (1 pair x 2 gpus x 1 batch x 2 seeds = 4) -> 12
#   external-trainer             batch_per_gpu 2 x seed 1 = 2
#   resnet18-ddp-scaling         weak: gpu_type 2 (v100, a100) x gpus 3 (1, 2, 4)
#                                x batch_per_gpu 5 (32 ... 8192) x seed 1 = 30
#   resnet18-ddp-scaling-strong  strong: gpu_type 2 x gpus 3 x global_batch 5 (32 ... 8192) = 30
#                                (every global batch divides by 1, 2 and 4: 32/4 = 8 per GPU)
#   unet-dp-scaling              gpu_type 2 x gpus 3 x batch_per_gpu 2 (16, 64) x seed 2 = 24
#   optimizers-ablation          optimizer 4 x lr 2 x lr_schedule 2 (cosine, poly) x seed 3 = 48;
#                                each optimizer keeps only its own lr (sgd/sgdw 0.05, adam/adamw
#                                0.001) -> 4 x 1 x 2 x 3 = 24
#   five-cnns                    model 5 x gpus 2 (1, 2) x reducer 2 (bucket, fused) x seed 3 = 60
#   unet-dp-strategies           gpus 3 (1, 2, 4) x reducer 3 (bucket, fused, per-tensor) x seed 2 = 18
#   deeplabv3plus-ade20k         strong: global_batch 2 (16, 32) x lr_schedule 2 (poly, cosine)
#                                x optimizer 2 (sgd, sgdw) x sync_bn 2 x init 3 (none, v1, v2) x seed 3 = 144
declare -A want=([quickstart]=12 [external-trainer]=2 [resnet18-ddp-scaling]=30
                 [resnet18-ddp-scaling-strong]=30 [unet-dp-scaling]=24 [optimizers-ablation]=24)
want+=([five-cnns]=60 [unet-dp-strategies]=18 [deeplabv3plus-ade20k]=144)
check_eq "every example has an expected count" \
  "$(printf '%s\n' "${!want[@]}" | sort | tr '\n' ' ')" "$(ls "$ex"/*.json | xargs -n1 basename | sed 's/\.json$//' | sort | tr '\n' ' ')"
for name in "${!want[@]}"; do
  out=$("$SEGX" plan "$ex/$name.json" --dry-run --format json 2>/dev/null); rc=$?
  n=$(echo "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>&1)
  check_eq "$name: --dry-run exits 0 with ${want[$name]} cells" "0:${want[$name]}" "$rc:$n"
  echo "$out" >"$name.cells.json"
  case $(grep -c "\`$name.json\`" "$ex/README.md") in 0) fail "$name is described in examples/README.md";; *) pass "$name is described in examples/README.md";; esac
done
check_eq "the dry runs wrote nothing" "no:no" "$([ -e "$SEGX_DB" ] && echo yes || echo no):$([ -e runs ] && echo yes || echo no)"

# The parameters each study is about (params: every parameter, canonical JSON).
cells() { python3 -c 'import json,sys
cells=[json.loads(c["params"]) | {"lr_scaled": c["lr"]} for c in json.load(open(sys.argv[1]))]
exec(sys.argv[2])' "$1.cells.json" "$2"; }
check_eq "resnet18 weak: global = per-GPU batch x gpus; lr 0.05 x sqrt(global / 32)" "30 ok" "$(cells resnet18-ddp-scaling '
bad=[c for c in cells if c["global_batch"] != c["batch_per_gpu"] * c["gpus"] or abs(c["lr_scaled"] - 0.05 * (c["global_batch"] / 32) ** 0.5) > 1e-9]
assert {c["batch_per_gpu"] for c in cells} == {32, 128, 512, 2048, 8192}, "batches"
print(len(cells), "ok" if not bad else bad[0])')"
check_eq "resnet18 strong: per-GPU batch = global / gpus; CIFAR-shaped synthetic data" "30 ok" "$(cells resnet18-ddp-scaling-strong '
bad=[c for c in cells if c["batch_per_gpu"] * c["gpus"] != c["global_batch"] or c["scaling"] != "strong"
     or (c["model"], c["dataset"], c["in-channels"], c["image-size"], c["classes"]) != ("resnet18", "synthetic", 3, 32, 10)]
assert {c["global_batch"] for c in cells} == {32, 128, 512, 2048, 8192} and {c["gpus"] for c in cells} == {1, 2, 4}
print(len(cells), "ok" if not bad else bad[0])')"
check_eq "unet: gpus 1/2/4 on fashion-mnist-seg, each with a 1-GPU baseline of its batch" "24 ok" "$(cells unet-dp-scaling '
groups={(c["gpu_type"], c["batch_per_gpu"], c["seed"]): set() for c in cells}
for c in cells: groups[(c["gpu_type"], c["batch_per_gpu"], c["seed"])].add(c["gpus"])
ok=all(g == {1, 2, 4} for g in groups.values()) and {c["dataset"] for c in cells} == {"fashion-mnist-seg"}
print(len(cells), "ok" if ok else groups)')"
check_eq "ablation: optimizer x schedule x seeds 1..3, lr follows the optimizer" "24 ok" "$(cells optimizers-ablation '
lr={"sgd": 0.05, "sgdw": 0.05, "adam": 0.001, "adamw": 0.001}
seen={(c["optimizer"], c["lr_schedule"], c["seed"]) for c in cells if c["lr"] == lr[c["optimizer"]]}
ok=len(seen) == 24 and {c["seed"] for c in cells} == {1, 2, 3} and {c["lr_schedule"] for c in cells} == {"cosine", "poly"}
print(len(cells), "ok" if ok else sorted(seen))')"
check_eq "ablation and unet: eval.targets miou (time-to-target)" "0.7 0.7" \
  "$(for n in optimizers-ablation unet-dp-scaling; do python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eval"]["targets"]["miou"])' "$ex/$n.json"; done | tr '\n' ' ' | sed 's/ $//')"

check_eq "five-cnns: 5 models x 1/2 GPUs x reducer bucket/fused x seeds 1..3; Adadelta 0.1, batch 128, 20 epochs, 2 workers" "60 ok" "$(cells five-cnns '
seen={(c["model"], c["gpus"], c["reducer"], c["seed"]) for c in cells}
fixed={(c["optimizer"], c["lr"], c["batch_per_gpu"], c["epochs"], c["workers"], c["pad-to"]) for c in cells}
ok=len(seen) == 60 and fixed == {("adadelta", 0.1, 128, 20, 2, 32)} and {c["model"] for c in cells} == {"vgg16", "mobilenet_v2", "shufflenet_v2", "densenet121", "resnet18"}
print(len(cells), "ok" if ok else (fixed, sorted(seen)[:3]))')"
check_eq "deeplabv3plus-ade20k: every ablation axis crossed, lr 0.01 x global / 16 (linear), miou target" "144 ok 0.3" "$(cells deeplabv3plus-ade20k '
seen={(c["global_batch"], c["lr_schedule"], c["optimizer"], c["sync_bn"], c["init"].rsplit("/", 1)[-1], c["seed"]) for c in cells}
ok=(len(seen) == 144 and {c["init"].rsplit("/", 1)[-1] for c in cells} == {"none", "v1.safetensors", "v2.safetensors"}
    and {c["lr_schedule"] for c in cells} == {"poly", "cosine"} and {c["optimizer"] for c in cells} == {"sgd", "sgdw"}
    and {c["sync_bn"] for c in cells} == {True, False} and {c["seed"] for c in cells} == {1, 2, 3}
    and all(abs(c["lr_scaled"] - 0.01 * c["global_batch"] / 16) < 1e-12 and c["batch_per_gpu"] * c["gpus"] == c["global_batch"] for c in cells)
    and {(c["model"], c["backbone"], c["init-prefix"]) for c in cells} == {("deeplabv3plus", "resnet18", "backbone.")}
    and all(c["warmup-epochs"] > 0 for c in cells))
print(len(cells), "ok" if ok else sorted(seen)[:3])') $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eval"]["targets"]["miou"])' "$ex/deeplabv3plus-ade20k.json")"
check_eq "unet-dp-strategies: per-GPU batch 16, every reducer on 1/2/4 GPUs, miou target" "18 ok 0.7" "$(cells unet-dp-strategies '
seen={(c["gpus"], c["reducer"], c["seed"]) for c in cells}
ok=len(seen) == 18 and {c["batch_per_gpu"] for c in cells} == {16} and {c["reducer"] for c in cells} == {"bucket", "fused", "per-tensor"}
print(len(cells), "ok" if ok else sorted(seen))') $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eval"]["targets"]["miou"])' "$ex/unet-dp-strategies.json")"

# Planned for real (into this test's dir): Slurm CPUs = trainer threads, and segx-train accepts
# each example's command line. five-cnns only once segx-train has its five models.
accepts=(resnet18-ddp-scaling resnet18-ddp-scaling-strong unet-dp-scaling optimizers-ablation unet-dp-strategies
         deeplabv3plus-ade20k)
missing=$(for m in vgg16 mobilenet_v2 shufflenet_v2 densenet121 resnet18; do "$SEGX_TRAIN" --help 2>/dev/null | grep -q -- "$m" || echo -n " $m"; done)
if [ -z "$missing" ]; then accepts+=(five-cnns); else skip "five-cnns: segx-train lacks --model$missing"; fi
for name in "${accepts[@]}"; do
  "$SEGX" plan "$ex/$name.json" -q >/dev/null 2>&1 || { fail "$name: plan"; continue; }
  exp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$ex/$name.json")
  mism=0
  for js in runs/"$exp"/*/attempt-1/job.sh; do
    # with a container the command is quoted once more inside bash -c: '\''--threads'\'' '\''4'\''
    c=$(sed -n 's/^#SBATCH --cpus-per-task=//p' "$js"); t=$(sed "s/'\\\\''/'/g" "$js" | grep -o "'--threads' '[0-9]*'" | grep -o "[0-9]*")
    [ -n "$c" ] && [ "$c" = "$t" ] || mism=$((mism + 1))
  done
  check_eq "$name: --cpus-per-task = --threads in every job script" 0 "$mism"
  js=$(ls runs/"$exp"/*/attempt-1/job.sh | head -1)
  # the trainer's command: after "${launch[@]}" up to the redirections (a container's bash -c
  # script spans lines: the profile's setup lines, then `exec segx-train ...`)
  # (the local profile's command is one line: awk ends the range on its first line too, where sed's would not)
  cmd=$(awk '/^"\$\{launch\[@\]\}" /{on=1} on{print; if (/ >>"\$RUN_DIR\/stdout\.log"/) exit}' "$js" |
        sed '1s/^"${launch\[@\]}" //; $s/ >>"$RUN_DIR\/stdout.log".*//')
  eval "args=($cmd)"
  if [ "${args[0]}" = bash ] && [ "${args[1]}" = -c ]; then eval "args=(${args[2]##*exec })"; fi
  [ "${args[0]}" = segx-train ] && args[0]=$SEGX_TRAIN   # the image's segx-train: this build's stands in
  if [ "$name" = deeplabv3plus-ade20k ]; then   # its data (examples/deeplabv3plus-ade20k.prepare): a generated set here
    [ -d ade-ex ] || "$SEGX_TRAIN" --make-dataset ade20k:ade-ex >/dev/null 2>&1
    # and a torchvision-named resnet18 for the init axis (tools/torchvision2safetensors.py), or no init without torch
    [ -f v.safetensors ] || /usr/bin/python3 "$SEGX_ROOT/tools/torchvision2safetensors.py" --random resnet18 1 v.safetensors >/dev/null 2>&1
    for i in "${!args[@]}"; do case ${args[$i]} in
      ade20k:*) args[$i]=ade20k:$PWD/ade-ex;;
      */v[12].safetensors) if [ -f v.safetensors ]; then args[$i]=$PWD/v.safetensors; else args[$i]=none; fi;;
    esac; done
  fi
  out=$(timeout 60 "${args[@]}" --print-params 2>&1); rc=$?
  check_eq "$name: segx-train accepts the job's command line" 0 "$rc"
  [ "$rc" = 0 ] || echo "$out" | tail -3 | sed 's/^/# /'
done
# the reducer axis reaches every rank's command line as --reducer VALUE (6 cells each)
check_eq "unet-dp-strategies: job scripts pass --reducer from the matrix" "6 bucket 6 fused 6 per-tensor" \
  "$(for js in runs/unet-dp-strategies/*/attempt-1/job.sh; do sed -n "s/.*--reducer[^a-z]*\([a-z-]*\).*/\1/p" "$js" | head -1; done | sort | uniq -c | awk '{print $1, $2}' | tr '\n' ' ' | sed 's/ $//')"
# deeplabv3plus-ade20k: sync_bn true -> --sync-bn, false -> no flag; init none -> --init none; the
# {{spec_dir}} paths rendered absolute (72 cells each way; 48 per init value)
check_eq "deeplabv3plus-ade20k: --sync-bn in the 72 sync_bn cells only; --init none / v1 / v2 in 48 cells each" \
  "72 48 48 48" "$(js=(runs/deeplabv3plus-ade20k/*/attempt-1/job.sh); echo "$(grep -l "'--sync-bn'" "${js[@]}" | wc -l) \
$(grep -l "'--init' 'none'" "${js[@]}" | wc -l) $(grep -l "'--init' '$ex/deeplabv3plus-ade20k.data/v1.safetensors'" "${js[@]}" | wc -l) \
$(grep -l "'--init' '$ex/deeplabv3plus-ade20k.data/v2.safetensors'" "${js[@]}" | wc -l)")"
# resources.cpus_per_gpu overrides the profile's CPUs per GPU, in both places
sed -e 's/"name": "unet-dp-scaling"/"name": "unet-cpus4"/' -e 's/"resources": {/"resources": {"cpus_per_gpu": 4, /' "$ex/unet-dp-scaling.json" >cpus4.json
"$SEGX" plan cpus4.json -q >/dev/null 2>&1
js=$(ls runs/unet-cpus4/*/attempt-1/job.sh | head -1)
check_eq "resources.cpus_per_gpu 4: --cpus-per-task=4 and --threads 4" "4:4" \
  "$(sed -n 's/^#SBATCH --cpus-per-task=//p' "$js"):$(sed "s/'\\\\''/'/g" "$js" | grep -o "'--threads' '[0-9]*'" | grep -o "[0-9]*")"
done_testing
