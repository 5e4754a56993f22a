#!/usr/bin/env bash
# Container renderings for runtimes not installable here (Apptainer/Singularity, Enroot/Pyxis,
# Podman): `segx plan` renders each cell's job.sh, the test runs it as the local backend does (no
# Slurm) and as Slurm does (SLURM_JOB_ID set, srun = a Pyxis-aware stand-in), with stand-in runtimes
# (tests/integration/fake-*) that log the exact argv they receive and then run the command on the
# host. Asserted: the whole command inside the container (a compound command through bash -c with
# its quoting), the profile's setup lines inside it, --nv only for GPU cells, overlays, binds (the
# spec's and the run/spec dirs), the trainer's path inside the image, {{run_dir}} in a segx-train
# flag value, the Slurm variables and CUDA_VISIBLE_DEVICES reaching the trainer, the image digest.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
T=$TEST_TMP
export SEGX_DB=$T/segx.db FAKE_ARGV_LOG=$T/argv.log
mkdir -p bin data sub
for rt in apptainer singularity; do ln -s "$SEGX_ROOT/tests/integration/fake-apptainer" "bin/$rt"; done
for rt in podman enroot srun; do ln -s "$SEGX_ROOT/tests/integration/fake-$rt" "bin/$rt"; done
printf '#!/bin/sh\nexit 0\n' >bin/scontrol; chmod +x bin/scontrol
# the stand-in trainer: one line per rank in RUN_DIR/trainer.txt with what it saw
cat >bin/segx-train <<'SH'
#!/bin/bash
out=; prev=
for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
{ printf 'rank=%s setup=%s cvd=%s cwd=%s args=' "${SLURM_PROCID:-x}" "${SEGX_TEST_SETUP:-none}" "${CUDA_VISIBLE_DEVICES:-none}" "$PWD"
  printf '<%s>' "$@"; echo; } >>"$out/trainer.txt"
SH
cp bin/segx-train bin/segx-train-in-image
chmod +x bin/*
export PATH=$T/bin:$PATH
head -c 4096 /dev/urandom >img.sif
head -c 1024 /dev/urandom >env.ext3
cat >sub/where.sh <<'SH'
echo "where rank=${SLURM_PROCID:-x} setup=${SEGX_TEST_SETUP:-none} cwd=$PWD args=$*" >>"$1/where.txt"
SH

# spec NAME GPU_TYPE GPUS CONTAINER_JSON [TRAINER_JSON]
spec() {
  local tr=${5:-}
  [ -n "$tr" ] || tr='{"command": "segx-train", "dataset": "synthetic", "epochs": 1, "args": {"profile": "{{run_dir}}/trace.json"}}'
  cat >"$1.json" <<JSON
{"name": "$1",
 "trainer": $tr,
 "matrix": {"model": ["cnn"], "gpu_type": ["$2"], "gpus": [$3], "batch_per_gpu": [8]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "container": $4,
 "cluster": {"base": "local", "setup": ["export SEGX_TEST_SETUP=inside"]}${6:-}}
JSON
  out=$("$SEGX" plan "$1.json" 2>&1) || fail "plan $1" "$out"
  rd=$(ls -d "$T/runs/$1"/*/attempt-1)
}
# run_job [slurm]: runs the cell's job.sh as the local backend (or as Slurm would) and resets the log
run_job() {
  : >"$FAKE_ARGV_LOG"
  if [ "${1:-}" = slurm ]; then
    env SLURM_JOB_ID=4242 SLURM_JOB_NODELIST=n1 CUDA_VISIBLE_DEVICES=0,1 bash "$rd/job.sh" >"$T/job.out" 2>&1
  else
    env -u SLURM_JOB_ID CUDA_VISIBLE_DEVICES=0 bash "$rd/job.sh" >"$T/job.out" 2>&1
  fi
  echo $?
}
q="'\\''"   # a ' inside the bash -c script, as the log shows it

# --- apptainer, GPU cell, local backend: the whole segx-train command and the setup in the image --
spec ct-app a100 1 "{\"runtime\": \"apptainer\", \"image\": \"$T/img.sif\", \"bind\": [\"$T/data:/data:ro\"], \"overlay\": [\"env.ext3:ro\"]}"
check_eq "apptainer: the job ran (exit 0)" 0 "$(run_job)"
argv=$(cat argv.log)
check_eq "apptainer: prefix with --nv, the spec's bind + the spec dir (which holds the run dir), the overlay, the image" \
  "<apptainer><exec><--nv><--bind><$T/data:/data:ro,$T><--overlay><env.ext3:ro><$T/img.sif><bash><-c>" "${argv%%<export*}"
check_eq "apptainer: bash -c runs the setup line, then execs segx-train (image PATH) with every flag" \
  "<export SEGX_TEST_SETUP=inside
exec 'segx-train' '--dataset' 'synthetic' '--epochs' '1'" "$(sed -n 's/.*<-c>\(<export[^>]*\)/\1/p;/^exec/p' argv.log | sed 's/ .--profile.*//' | head -2)"
check_eq "apptainer: the trainer saw the setup, the job's folder and {{run_dir}} expanded in --profile" \
  "rank=x setup=inside cvd=0 cwd=$T profile=$rd/trace.json" \
  "$(sed -E 's/ args=.*<--profile><([^>]*)>.*/ profile=\1/' "$rd/trainer.txt")"
check "apptainer: the trainer got --out RUN_DIR --resume" grep -qF "<--out><$rd><--resume>" "$rd/trainer.txt"
check_eq "apptainer: env.json records the image's sha256" "sha256:$(sha256sum img.sif | cut -d' ' -f1)" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["container_digest"])' "$rd/env.json" 2>&1)"
check "apptainer: no setup line left on the host (the #SBATCH block)" bash -c "! grep -q '^export SEGX_TEST_SETUP' '$rd/job.sh'"

# --- singularity, CPU cell, an external compound command with a path inside the image ------------
spec ct-sing cpu 1 "{\"runtime\": \"singularity\", \"image\": \"$T/img.sif\", \"trainer\": \"/opt/segx/bin/segx-train\"}" \
  '{"command": "cd sub && bash where.sh {{run_dir}} \"it'"'"'s {{model}}\""}'
check_eq "singularity: the job ran (exit 0)" 0 "$(run_job)"
check_eq "singularity: CPU cell: no --nv; the compound command whole in bash -c, quoting kept" \
  "<singularity><exec><--bind><$T><$T/img.sif><bash><-c><export SEGX_TEST_SETUP=inside
cd sub && bash where.sh '$rd' \"it's 'cnn'\">" "$(cat argv.log)"
check_eq "singularity: the compound command ran inside: cd, then the script with its arguments" \
  "where rank=x setup=inside cwd=$T/sub args=$rd it's 'cnn'" "$(cat "$rd/where.txt" 2>&1)"

# the trainer path inside the image replaces segx-train
spec ct-path cpu 1 "{\"runtime\": \"apptainer\", \"image\": \"$T/img.sif\", \"trainer\": \"$T/bin/segx-train-in-image\"}"
check "trainer path inside the image: job.sh runs it" grep -qF "exec '\\''$T/bin/segx-train-in-image'\\'' '\\''--dataset" "$rd/job.sh"
check_eq "trainer path inside the image: the job ran it (exit 0)" 0 "$(run_job)"
check "trainer path inside the image: it wrote its line" test -s "$rd/trainer.txt"

# --- podman under Slurm (2 ranks): srun runs podman per rank; only the named variables go in ----
spec ct-podman a100 2 "{\"runtime\": \"podman\", \"image\": \"localhost/segx:1\", \"bind\": [\"$T/data:/data:ro\"]}"
check_eq "podman/slurm: the job ran (exit 0)" 0 "$(run_job slurm)"
envs="<--env=SLURM_*><--env=SEGX_*><--env=CUDA_VISIBLE_DEVICES><--env=NVIDIA_VISIBLE_DEVICES><--env=OMPI_*><--env=PMIX_*><--env=PMI_*><--env=MASTER_ADDR><--env=MASTER_PORT><--env=NCCL_*><--env=OMP_NUM_THREADS>"
check_eq "podman/slurm: srun per rank, then podman with the GPU device, volumes, variables, workdir" \
  "<srun><--ntasks=2><--ntasks-per-node=2><--kill-on-bad-exit=1><--mpi=pmix_v4><podman><run><--rm><--network=host><--ipc=host><--device=nvidia.com/gpu=all><-v><$T/data:/data:ro><-v><$T:$T>$envs<--workdir=$T><localhost/segx:1><bash><-c>" \
  "$(head -1 argv.log | sed 's/<export.*//')"
check_eq "podman/slurm: each rank ran podman once" 2 "$(grep -c '^<podman><run>' argv.log)"
check_eq "podman/slurm: both ranks saw SLURM_PROCID, CUDA_VISIBLE_DEVICES and the setup inside" \
  "rank=0 setup=inside cvd=0,1 cwd=$T
rank=1 setup=inside cvd=0,1 cwd=$T" "$(sed 's/ args=.*//' "$rd/trainer.txt" | sort)"

# --- enroot: Pyxis options on srun under Slurm; enroot start (and a cd to the job's folder) without
spec ct-enroot v100 2 "{\"runtime\": \"enroot\", \"image\": \"nvcr.io#nvidia/pytorch:24.01-py3\", \"bind\": [\"$T/data:/data:ro\"]}"
check_eq "enroot/slurm: the job ran (exit 0)" 0 "$(run_job slurm)"
check_eq "enroot/slurm: srun carries --container-image/-mounts/-workdir; the command cds first" \
  "<srun><--ntasks=2><--ntasks-per-node=2><--kill-on-bad-exit=1><--mpi=pmix_v4><--container-image=nvcr.io#nvidia/pytorch:24.01-py3><--container-mounts=$T/data:/data:ro,$T:$T><--container-workdir=$T><bash><-c><cd '$T' || exit 1
export SEGX_TEST_SETUP=inside
exec 'segx-train' '--dataset' 'synthetic'" "$(sed 's/ .--epochs.*//' argv.log)"
check_eq "enroot/slurm: both ranks ran in the job's folder" "rank=0 setup=inside cvd=0,1 cwd=$T
rank=1 setup=inside cvd=0,1 cwd=$T" "$(sed 's/ args=.*//' "$rd/trainer.txt" | sort)"
spec ct-enroot1 v100 1 "{\"runtime\": \"enroot\", \"image\": \"$T/img.sif\"}"
check_eq "enroot/local: the job ran (exit 0)" 0 "$(run_job)"
check_eq "enroot/local: enroot start with the mounts; the command goes to the job's folder itself" \
  "<enroot><start><--mount><$T:$T><$T/img.sif><bash><-c><cd '$T' || exit 1" "$(head -1 argv.log)"
check_eq "enroot/local: the trainer ran in the job's folder" "rank=x setup=inside cvd=0 cwd=$T" "$(sed 's/ args=.*//' "$rd/trainer.txt")"

# --- a launch-once external trainer under Slurm with Pyxis: one srun step of one task ------------
spec ct-once a100 2 "{\"runtime\": \"enroot\", \"image\": \"$T/img.sif\"}" '{"command": "bash sub/where.sh {{run_dir}}", "launch": "once"}'
check_eq "enroot/once: the job ran (exit 0)" 0 "$(run_job slurm)"
check_eq "enroot/once: one task, in the container" \
  "<srun><--ntasks=1><--ntasks-per-node=1><--kill-on-bad-exit=1><--container-image=$T/img.sif><--container-mounts=$T:$T><--container-workdir=$T><bash><-c><cd '$T' || exit 1
export SEGX_TEST_SETUP=inside
exec bash sub/where.sh '$rd'>" "$(cat argv.log)"

# --- the eval job runs in the same container: segx-train --evaluate, setup inside, one process ---
spec ct-eval a100 2 "{\"runtime\": \"apptainer\", \"image\": \"$T/img.sif\"}" "" ', "eval": {"job": {"gpus": 1}}'
check_eq "eval: the train job ran (exit 0)" 0 "$(run_job)"
: >"$FAKE_ARGV_LOG"
env -u SLURM_JOB_ID bash "$rd/eval.sh" >"$T/eval.out" 2>&1
check_eq "eval: eval.sh ran (eval_exit_code 0)" 0 "$(cat "$rd/eval_exit_code" 2>&1)"
check_eq "eval: apptainer exec --nv, then bash -c with the setup line and exec segx-train ... --evaluate" \
  "<apptainer><exec><--nv><--bind><$T><$T/img.sif><bash><-c><export SEGX_TEST_SETUP=inside
exec 'segx-train' '--dataset' 'synthetic'" "$(sed 's/ .--epochs.*//' argv.log)"
check "eval: the evaluator got --evaluate" grep -q "<--evaluate>" "$rd/trainer.txt"

# --- bad containers are plan errors that name the problem ---------------------------------------
cat >bad.json <<JSON
{"name": "ct-bad", "trainer": {"command": "segx-train", "dataset": "synthetic"},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8]},
 "container": {"runtime": "charliecloud", "image": "/img", "overlay": ["env.ext3:ro"]}}
JSON
out=$("$SEGX" plan bad.json 2>&1); rc=$?
check_eq "overlay with charliecloud: exit 2" 2 "$rc"
case $out in *"bad.json"*"charliecloud has no overlay"*) pass "overlay with charliecloud: the error names the spec and the reason";;
  *) fail "overlay with charliecloud: the error names the spec and the reason" "$out";; esac
cat >bad.json <<'JSON'
{"name": "ct-bad", "trainer": {"command": "segx-train", "dataset": "synthetic", "args": {"profile": "{{rundir}}/t.json"}},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8]}}
JSON
out=$("$SEGX" plan bad.json 2>&1); rc=$?
case $rc:$out in 2:*"unknown variable 'rundir'"*) pass "a misspelt {{var}} in a segx-train flag value is a plan error";;
  *) fail "a misspelt {{var}} in a segx-train flag value is a plan error" "rc $rc: $out";; esac
done_testing
