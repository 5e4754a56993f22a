#!/usr/bin/env bash
# The data-parallel strategies (--reducer bucket | fused | per-tensor) and the engine's allreduce
# algorithm (--allreduce-algo) in the real segx-train, over real MPI with 2 ranks:
# - each reducer, 2 ranks x B/2, reaches the parameters of 1 rank with --accum-steps 2 of B/2 within
#   1e-5 relative (no BN), with Open MPI forced to another allreduce algorithm for each one; the log
#   and result.json name the reducer and the algorithm Open MPI reports in effect (MPI_T), and the
#   per-epoch metrics count the allreduced bytes;
# - fused allreduces after backward, so all its communication is exposed; bucket and per-tensor
#   start during backward (their exposed time is at most their communication time);
# - test_comm_mpi (every reducer == accumulation on a real model, in-process) with rabenseifner;
# - an algorithm the engine does not offer (tree with MPI) is refused before training, naming it;
# - a CIFAR network trains on fashion-mnist padded to 32x32 with the augmentation, 2 ranks, fused;
# - over NCCL (2 GPUs): fused and per-tensor with NCCL_ALGO tree == 1 GPU accumulating; skips here.
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
K=4; B=16; h=$((B / 2))
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
if ! command -v mpirun >/dev/null; then skip "mpirun not installed"; done_testing; exit; fi
T=$SEGX_TRAIN

common=(--model cnn --dataset synthetic --steps $K --optimizer sgd --lr 0.1 --seed 3 --threads 1 --workers 1
        --no-batch-norm --batch-size $h --eval-limit 0)
train() { # NAME RANKS EXTRA...: params to $TEST_TMP/NAME.params, log to NAME.log
  local name=$1 k=$2; shift 2
  local cmd=("$T" "${common[@]}" --out "$TEST_TMP/$name" --save-params "$TEST_TMP/$name.params" "$@")
  if [ "$k" -gt 1 ]; then cmd=(mpirun -np "$k" --bind-to none "${cmd[@]}"); fi
  if ! timeout 300 "${cmd[@]}" >"$TEST_TMP/$name.log" 2>&1; then
    fail "$name: segx-train failed" "command: ${cmd[*]}" "$(tail -5 "$TEST_TMP/$name.log")"; return 1
  fi
}
compare() { # DESC A B: float32 dumps equal within 1e-5 relative (+1e-7 absolute)
  local out
  if out=$(python3 - "$2" "$3" <<'PY'
import array, sys
a, b = array.array('f'), array.array('f')
a.frombytes(open(sys.argv[1], 'rb').read()); b.frombytes(open(sys.argv[2], 'rb').read())
if len(a) != len(b) or not a: print(f"sizes differ: {len(a)} vs {len(b)}"); sys.exit(1)
bad = [i for i in range(len(a)) if abs(a[i] - b[i]) > 1e-5 * abs(b[i]) + 1e-7]
worst = max(abs(a[i] - b[i]) / (abs(b[i]) + 1e-7) for i in range(len(a)))
print(f"{len(a)} params, {len(bad)} beyond 1e-5, worst relative difference {worst:.2g}")
sys.exit(1 if bad else 0)
PY
  ); then pass "$1: $out"; else fail "$1" "$out"; fi
}

train accum 1 --accum-steps 2 --comm none || { done_testing; exit; }
# reducer : algorithm forced for it : allreduces per step expected from the log (cnn: 8 tensors; fused
# at 0.05 MB = 13107 floats packs them into fewer buffers than tensors; bucket 0.05 MB slices)
for spec in "bucket:recursive-doubling" "fused:ring" "per-tensor:rabenseifner"; do
  red=${spec%%:*} algo=${spec#*:}
  train "r-$red" 2 --reducer "$red" --allreduce-algo "$algo" --bucket-mb 0.05 --fusion-mb 0.05 || continue
  compare "--reducer $red, Open MPI $algo: 2 ranks x B/2 == 1 rank, 2 accumulation steps of B/2 (K=$K)" \
    "$TEST_TMP/r-$red.params" "$TEST_TMP/accum.params"
  check "--reducer $red: the log names the reducer and the algorithm Open MPI reports" \
    grep -q "reducer $red: [0-9]* allreduce(s) per step, allreduce algorithm $algo" "$TEST_TMP/r-$red.log"
  check_eq "--reducer $red: result.json reducer, allreduce_algo, ranks" "$red $algo 2" \
    "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["reducer"], r["allreduce_algo"], r["ranks"])' "$TEST_TMP/r-$red/result.json" 2>&1)"
  # bytes moved = parameters x 4 x steps, whatever the strategy; fused: exposed == in flight
  check "--reducer $red: metrics count every gradient byte once per step; exposed vs in-flight time fits the strategy" \
    python3 - "$TEST_TMP/r-$red" "$red" "$K" <<'PY'
import json, sys
d, red, K = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(d + "/result.json")); m = [json.loads(l) for l in open(d + "/metrics.jsonl")][-1]
assert m["allreduce_bytes"] == r["params"] * 4 * K, (m["allreduce_bytes"], r["params"])
assert m["comm_exposed_s"] > 0 and m["comm_total_s"] > 0, m
if red == "fused":   # nothing in flight before ddp_finish: the whole communication is exposed
    assert m["comm_exposed_s"] >= m["comm_total_s"], m
PY
done
n_fused=$(sed -n 's/.*reducer fused: \([0-9]*\) allreduce.*/\1/p' "$TEST_TMP/r-fused.log")
n_tensor=$(sed -n 's/.*reducer per-tensor: \([0-9]*\) allreduce.*/\1/p' "$TEST_TMP/r-per-tensor.log")
n_params=$("$T" "${common[@]}" --print-params 2>/dev/null | grep -c '@')
check_eq "per-tensor: one allreduce per parameter tensor ($n_params); fused packs them into fewer" "$n_params yes" \
  "$n_tensor $([ -n "$n_fused" ] && [ "$n_fused" -ge 1 ] && [ "$n_fused" -lt "$n_params" ] && echo yes || echo "no ($n_fused)")"

# the unit-level reducers over 2 ranks with Open MPI's Rabenseifner allreduce
M=""
for d in "$(dirname "${SEGX_BIN:-$SEGX_ROOT/bin}")" "$SEGX_ROOT/build$([ "${SEGX_SAN:-0}" = 1 ] && echo -san)"; do
  [ -x "$d/tests/trainer/test_comm_mpi" ] && { M=$d/tests/trainer/test_comm_mpi; break; }
done
if [ -n "$M" ]; then
  if SEGX_TEST_ALLREDUCE_ALGO=rabenseifner timeout 300 mpirun -np 2 --bind-to none "$M" >"$TEST_TMP/unit.log" 2>&1; then
    pass "test_comm_mpi over 2 ranks with rabenseifner: $(grep -c 'reducer .*vs accumulation' "$TEST_TMP/unit.log") reducer comparisons passed"
  else
    fail "test_comm_mpi over 2 ranks with rabenseifner" "$(grep -E 'FAIL|error|differ' "$TEST_TMP/unit.log" | head -5)"
  fi
else
  fail "test_comm_mpi not built (make tests)"
fi

# tree is NCCL's: refused before any training, exit 2, naming what MPI offers
out=$(timeout 120 mpirun -np 2 --bind-to none "$T" "${common[@]}" --allreduce-algo tree 2>&1); rc=$?
check "--allreduce-algo tree with MPI: refused, naming MPI's algorithms" grep -q "with --comm mpi use ring, recursive-doubling or rabenseifner" <<<"$out"
[ "$rc" != 0 ] && pass "--allreduce-algo tree with MPI: non-zero exit ($rc)" || fail "--allreduce-algo tree with MPI: exit 0"
out=$("$T" "${common[@]}" --reducer horovod 2>&1); rc=$?
check_eq "--reducer horovod: exit 2" 2 "$rc"
check "--reducer horovod: names the reducers" grep -q "want one of: bucket fused per-tensor" <<<"$out"

# A CIFAR network on real data here: mobilenet_v2 on fashion-mnist padded to 32x32 (--pad-to) with
# CIFAR's augmentation, 2 ranks, fused reducer. 2,236,106 parameters = models_ref.py's 2,236,682 for
# 3 input channels minus the stem's 2 x 32 x 3 x 3 = 576 weights for the 2 channels it does not have.
if "$T" --help 2>/dev/null | grep -q mobilenet_v2; then
  cifar=(--model mobilenet_v2 --dataset fashion-mnist --pad-to 32 --augment --train-limit 32 --eval-limit 32 --batch-size 8
         --optimizer adadelta --lr 0.1 --threads 1 --workers 2 --reducer fused --seed 1)
  if timeout 600 mpirun -np 2 --bind-to none "$T" "${cifar[@]}" --out "$TEST_TMP/mbv2" >"$TEST_TMP/mbv2.log" 2>&1; then
    check_eq "mobilenet_v2 on fashion-mnist --pad-to 32 --augment, 2 ranks, fused: params, reducer, ranks, steps, top1 reported" \
      "2236106 fused 2 2 yes" "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["params"], r["reducer"], r["ranks"], r["steps"], "yes" if 0 <= r["top1"] <= 1 else r["top1"])' "$TEST_TMP/mbv2/result.json" 2>&1)"
  else
    fail "mobilenet_v2 on fashion-mnist --pad-to 32, 2 ranks: segx-train failed" "$(tail -5 "$TEST_TMP/mbv2.log")"
  fi
else
  skip "segx-train has no mobilenet_v2"
fi

# --- over NCCL: 2 GPUs --------------------------------------------------------------------------------
nccl_case="NCCL (NCCL_ALGO tree): fused and per-tensor, 2 GPUs x B/2 == 1 GPU accumulating"
gpu_why=$("$T" --device cuda --dataset synthetic --eval-limit 0 --print-params 2>&1 >/dev/null) && ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') || ngpu=0
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [ "$ngpu" -gt 0 ]; then ngpu=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .); fi
if [ "$ngpu" -lt 2 ]; then
  skip "$nccl_case: needs 2 GPUs ($ngpu usable: $(sed -n 's/.*no usable CUDA device: //p' <<<"$gpu_why" | head -1))"
else
  train g-acc 1 --device cuda --accum-steps 2 --comm none &&
  for red in fused per-tensor; do
    train "g-$red" 2 --device cuda --reducer "$red" --allreduce-algo tree --fusion-mb 0.05 || continue
    check "$nccl_case: --reducer $red over nccl" grep -q "reducer $red: .*allreduce algorithm tree" "$TEST_TMP/g-$red.log"
    # GPU kernels sum in other orders for other batch splits: 1e-4 as in dist_gpu.sh
    python3 - "$TEST_TMP/g-$red.params" "$TEST_TMP/g-acc.params" <<'PY' && pass "$nccl_case: $red within 1e-4" || fail "$nccl_case: $red beyond 1e-4"
import array, sys
a, b = array.array('f'), array.array('f')
a.frombytes(open(sys.argv[1], 'rb').read()); b.frombytes(open(sys.argv[2], 'rb').read())
sys.exit(0 if len(a) == len(b) and a and all(abs(x - y) <= 1e-4 * abs(y) + 1e-6 for x, y in zip(a, b)) else 1)
PY
  done
fi
done_testing
