#!/usr/bin/env bash
# A real container: segx-train cells inside a Charliecloud directory image (scripts/build-image:
# Debian packages via mmdebstrap, built once into a cache), run by the local backend (1 rank, and
# 2 ranks through mpirun ch-run) and on the local Slurm cluster (1 rank, and 2 ranks through
# srun --mpi=pmix_v4 ch-run per rank). The Slurm cells are requeued mid-training (scontrol
# requeue: SIGTERM, checkpoint, exit 99, the next run resumes inside the container); every
# container cell must end with byte-identical parameters (--save-params) to the same cell run
# uninterrupted outside the container, and its env.json must hold the image's digest.
# Cache: $SEGX_IMAGE_CACHE (default ~/.cache/segx); the first build takes minutes, later ones seconds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
command -v ch-run >/dev/null || skip_all "ch-run is not installed (apt-get install charliecloud)"
command -v mmdebstrap >/dev/null || skip_all "mmdebstrap is not installed (apt-get install mmdebstrap)"
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] || [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  skip_all "fashion-mnist is not installed in /usr/share/datasets/fashion-mnist"
# An ASan segx-train would need an image of its own (libasan); the optimised pass covers this.
[ "${SEGX_SAN:-0}" = 1 ] && skip_all "the container run is tested in the optimised pass (an ASan segx-train needs its own image)"
T0=$SECONDS
say() { echo "# [$((SECONDS - T0)) s] $*"; }

args=(--quiet)
[ -x "$SEGX_TRAIN" ] && args+=(--segx-train "$SEGX_TRAIN")
if ! IMG=$("$SEGX_ROOT/scripts/build-image" "${args[@]}" 2>build-image.log | tail -1) || [ ! -x "$IMG/usr/local/bin/segx-train" ]; then
  fail "scripts/build-image builds the image" "$(tail -5 build-image.log)"
  done_testing; exit 1
fi
pass "scripts/build-image: $IMG"
say "image ready"
# the image's segx-train runs on this host too (same Debian libraries): the runs outside use it
export SEGX_TRAIN=$IMG/usr/local/bin/segx-train
digest=$(cat "$IMG/etc/segx-image-digest")
check "the image digest looks like sha256:<64 hex>" grep -qE '^sha256:[0-9a-f]{64}$' "$IMG/etc/segx-image-digest"
# the host's PATH must not offer a segx-train: a container cell can only find the image's
PATH=$(echo "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/segx-train" ] || echo "$d"; done | paste -sd:)
export PATH

slurm_up=0
slurm_cluster_start && slurm_up=1
say "slurm cluster: $slurm_up"

# spec NAME GPUS CONTAINER(0/1): 2 epochs of 640 samples, checkpoints every 5 steps, params saved
# beside the spec (each experiment in its own folder)
spec() {
  mkdir -p "$1"
  local ctr=""
  [ "$3" = 1 ] && ctr=", \"container\": {\"runtime\": \"charliecloud\", \"image\": \"$IMG\", \"bind\": [\"/usr/share/datasets\"]}"
  cat >"$1/spec.json" <<JSON
{"name": "$1",
 "trainer": {"command": "segx-train", "dataset": "fashion-mnist", "epochs": 2, "optimizer": "sgd", "lr": 0.05,
             "args": {"train-limit": 640, "checkpoint-every": 5, "save-params": "params.bin", "profile": "{{run_dir}}/trace.json"}},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [$2], "batch_per_gpu": [32], "seed": [7]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1},
 "eval": {"limit": 200},
 "cluster": "local"$ctr}
JSON
  out=$("$SEGX" plan "$1/spec.json" 2>&1) || fail "plan $1" "$out"
}
rd_of() { ls -d "$TEST_TMP/runs/$1"/*/attempt-1; }
run_local() { # EXPERIMENT: its job script as the local backend runs it
  env -u SLURM_JOB_ID bash "$(rd_of "$1")/job.sh" >"$(rd_of "$1")/job.out" 2>&1
  echo "$?"
}

# --- outside the container, uninterrupted: the references ---------------------------------------
for g in 1 2; do
  spec "out$g" "$g" 0
  check_eq "outside, $g rank(s): the job ran (exit 0)" 0 "$(run_local "out$g")"
  check "outside, $g rank(s): params saved" test -s "out$g/params.bin"
done
say "outside runs done"

# --- in the container, local backend ------------------------------------------------------------
for g in 1 2; do
  e=loc$g
  spec "$e" "$g" 1
  rd=$(rd_of "$e")
  check "local $g: job.sh launches through ch-run with the data bind" grep -qF "ch-run --bind=/usr/share/datasets --cd=$TEST_TMP/$e $IMG --" "$rd/job.sh"
  check_eq "local $g rank(s) in the container: the job ran (exit 0)" 0 "$(run_local "$e")"
  check_eq "local $g rank(s) in the container: the same parameters as outside" \
    "$(sha256sum <"out$g/params.bin")" "$(sha256sum <"$e/params.bin" 2>&1)"
  check_eq "local $g: env.json records the image digest" "$digest" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("container_digest"))' "$rd/env.json" 2>&1)"
  check "local $g: --profile {{run_dir}}/trace.json wrote the trace into the run dir" test -s "$rd/trace.json"
done
say "local container runs done"

# proof that a cell runs in the image: ch-run sets CH_RUNNING; the host has no such variable
mkdir -p probe && cat >probe/spec.json <<JSON
{"name": "probe", "trainer": {"launch": "per-rank", "command": "bash -c 'echo \"ch=\$CH_RUNNING rank=\$SLURM_PROCID cvd=\${CUDA_VISIBLE_DEVICES:-none} os=\$(. /etc/os-release; echo \$ID) train=\$(command -v segx-train)\" >>{{run_dir}}/probe.txt'"},
 "matrix": {"model": ["m"], "gpu_type": ["v100"], "gpus": [2], "batch_per_gpu": [1]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}, "cluster": "local",
 "container": {"runtime": "charliecloud", "image": "$IMG"}}
JSON
out=$("$SEGX" plan probe/spec.json 2>&1) || fail "plan probe" "$out"

if [ "$slurm_up" = 0 ]; then
  skip "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
  done_testing; exit $?
fi

# --- in the container on Slurm: 1 and 2 ranks, each requeued mid-training ----------------------
out=$("$SEGX" submit probe --backend slurm 2>&1) || fail "submit probe" "$out"
for g in 1 2; do
  spec "slu$g" "$g" 1
  out=$("$SEGX" submit "slu$g" --backend slurm 2>&1) || fail "submit slu$g" "$out"
done
job_of() { sqlite3 "$SEGX_DB" "SELECT a.job_id FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$1'"; }
job_field() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
progress_step() { sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$1/progress.json" 2>/dev/null | head -1 | grep . || echo 0; }
wait_s=300
wait_for() { # SECONDS DESCRIPTION CMD...
  local n=$(($1 * 4)) d=$2; shift 2
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.25; done
  fail "$d (within $((n / 4)) s)"; return 1
}
past_step() { [ "$(progress_step "$1")" -ge "$2" ]; }
done_ok() { [ "$(cat "$1/exit_code" 2>/dev/null)" = 0 ]; }
for g in 1 2; do
  rd=$(rd_of "slu$g"); job=$(job_of "slu$g")
  if wait_for "$wait_s" "slurm $g: the trainer passes step 3" past_step "$rd" 3; then
    if done_ok "$rd"; then fail "slurm $g: still training when requeued" "it had finished: make the run longer"
    else check "slurm $g: scontrol requeue mid-training (step $(progress_step "$rd"))" scontrol requeue "$job"; fi
  fi
done
pd=$(rd_of probe)
wait_for "$wait_s" "probe: done" done_ok "$pd"
check_eq "probe: both ranks ran in the image (CH_RUNNING, its os-release, its segx-train) with their Slurm rank and the GPUs Slurm gave the job" \
  "ch=Weird Al Yankovic rank=0 cvd=0,1 os=debian train=/usr/local/bin/segx-train
ch=Weird Al Yankovic rank=1 cvd=0,1 os=debian train=/usr/local/bin/segx-train" "$(sort "$pd/probe.txt" 2>&1)"
for g in 1 2; do
  e=slu$g rd=$(rd_of "slu$g") job=$(job_of "slu$g")
  wait_for "$wait_s" "slurm $g: the requeued job completes" done_ok "$rd"
  check_eq "slurm $g: Slurm ran the job twice (Restarts=1)" 1 "$(job_field "$job" Restarts)"
  check "slurm $g: the second run resumed from the checkpoint" grep -q "resuming from $rd/checkpoint.bin" "$rd/stderr.log"
  check_eq "slurm $g rank(s), requeued in the container: the same parameters as uninterrupted outside" \
    "$(sha256sum <"out$g/params.bin")" "$(sha256sum <"$e/params.bin" 2>&1)"
  check_eq "slurm $g: env.json records the image digest" "$digest" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("container_digest"))' "$rd/env.json" 2>&1)"
done
"$SEGX" collect slu2 >/dev/null 2>&1
check_eq "collect: the environments table holds the digest" "$digest" \
  "$(sqlite3 "$SEGX_DB" "SELECT v.container_digest FROM environments v JOIN attempts a ON a.id=v.attempt_id JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='slu2'")"
say "done"
done_testing
