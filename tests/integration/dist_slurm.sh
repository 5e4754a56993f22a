#!/usr/bin/env bash
# Launch paths of trainer/dist/README.md on the local Slurm cluster (a private slurm/local-cluster
# started for this script, like the slurm_*.sh tests): a 2-node job running mpirun inside the
# allocation, a 1-node job with srun --mpi=pmix_v4 (both must train the same parameters), and
# srun --mpi=none, which segx-train must refuse with advice instead of training two separate models.
. "$(dirname "$0")/lib.sh"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
. "$(dirname "$0")/slurm_cluster.bash"
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
A="--model cnn --dataset synthetic --steps 4 --optimizer sgd --lr 0.1 --seed 3 --threads 1 --batch-size 8 --no-batch-norm --eval-limit 0 --workers 0 --comm auto"
cat >"$TEST_TMP/multi.sh" <<JOB
#!/bin/bash
#SBATCH -N2 --ntasks-per-node=1 -t 3 -o $TEST_TMP/multi.out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np "\$SLURM_NTASKS" --bind-to none $SEGX_TRAIN $A --out $TEST_TMP/multi --save-params $TEST_TMP/multi.p
echo "rc=\$?"
JOB
cat >"$TEST_TMP/single.sh" <<JOB
#!/bin/bash
#SBATCH -N1 -n2 -t 3 -o $TEST_TMP/single.out
srun --mpi=pmix_v4 $SEGX_TRAIN $A --out $TEST_TMP/single --save-params $TEST_TMP/single.p
echo "rc=\$?"
srun --mpi=none $SEGX_TRAIN $A --out $TEST_TMP/nompi
echo "nompi rc=\$?"
JOB
( cd "$TEST_TMP" && timeout 240 sbatch --wait multi.sh >/dev/null 2>&1 ) &
( cd "$TEST_TMP" && timeout 240 sbatch --wait single.sh >/dev/null 2>&1 ) &
wait
check_eq "2 nodes, mpirun inside the allocation: exit 0" "rc=0" "$(grep -o '^rc=[0-9]*' "$TEST_TMP/multi.out" 2>/dev/null)"
check "2 nodes, mpirun: 2 ranks over mpi" grep -q "2 rank(s) x batch 8.*comm mpi" "$TEST_TMP/multi.out"
check_eq "1 node, srun --mpi=pmix_v4: exit 0" "rc=0" "$(grep -o '^rc=[0-9]*' "$TEST_TMP/single.out" 2>/dev/null)"
check "1 node, srun --mpi=pmix_v4: 2 ranks over mpi" grep -q "2 rank(s) x batch 8.*comm mpi" "$TEST_TMP/single.out"
check "both launch paths train bit-identical parameters" cmp "$TEST_TMP/multi.p" "$TEST_TMP/single.p"
check_eq "srun --mpi=none: refused (exit 2)" "nompi rc=2" "$(grep -o '^nompi rc=[0-9]*' "$TEST_TMP/single.out" 2>/dev/null)"
check "srun --mpi=none: the message says to use srun --mpi=pmix_v4" grep -q "launch with \`srun --mpi=pmix_v4\`" "$TEST_TMP/single.out"
done_testing
