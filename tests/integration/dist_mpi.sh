#!/usr/bin/env bash
# Multi-rank communicator: runs tests/trainer/test_comm_mpi under `mpirun -np 2` (allreduce and
# broadcast results, DDP mean, bucket order on both ranks, bandwidth stats), then the failure
# modes: a rank killed mid-run and a rank that stops communicating must end the job in bounded time.
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# the test binary lives beside the build's bin/ (BUILD=dir) or in build/ (default build, bin/ at the root)
test_bin() {
  local d
  for d in "$(dirname "$SEGX_BIN")" "$SEGX_ROOT/build$([ "${SEGX_SAN:-0}" = 1 ] && echo -san)"; do
    [ -x "$d/tests/trainer/$1" ] && { echo "$d/tests/trainer/$1"; return 0; }
  done
  return 1
}
if ! command -v mpirun >/dev/null; then skip "mpirun not installed"; done_testing; exit; fi
if ! T=$(test_bin test_comm_mpi); then fail "test_comm_mpi not built (make tests)"; done_testing; exit; fi
out=$TEST_TMP/rank

# --- correctness on 2 ranks
CMOCKA_MESSAGE_OUTPUT=tap SEGX_TEST_RANK_OUT=$out timeout 120 mpirun -np 2 "$T" >"$TEST_TMP/mpirun.log" 2>&1
rc=$?
check_eq "mpirun -np 2 test_comm_mpi exits 0" 0 "$rc"
for r in 0 1; do
  check_eq "rank $r sees world 2" "# rank $r of 2, local rank $r" "$(grep '^# rank' "$out.$r" 2>/dev/null)"
  check_eq "rank $r: all 10 unit tests pass (incl. DDP == accumulation, sync-BN DDP == full batch, backend scale, every --reducer == accumulation)" "10 0" "$(grep -c '^ok ' "$out.$r" 2>/dev/null) $(grep -c '^not ok' "$out.$r" 2>/dev/null)"
done
bw=$(sed -n 's/^# allreduce 16 MB x 2 ranks: \([0-9]*\) MB\/s/\1/p' "$out.0")
if [ -n "$bw" ] && [ "$bw" -gt 0 ]; then pass "allreduce bandwidth reported: $bw MB/s"; else fail "no bandwidth line" "$(cat "$out.0")"; fi
grep -E "^# (ddp|params|BN)" "$out.0"
[ "$rc" = 0 ] || sed 's/^/# /' "$TEST_TMP/mpirun.log" "$out".* | head -40

# --- a rank killed mid-run: mpirun must end the whole job, promptly and with a failure status
# "Promptly" without a clock: the comm timeout is far away (600 s), so a job that ends by itself
# (not by our 900 s timeout) with no timeout message was ended by mpirun noticing the dead rank.
t0=$(date +%s.%N)
SEGX_COMM_TIMEOUT=600 timeout 900 mpirun -np 2 "$T" crash-peer >"$TEST_TMP/crash.log" 2>&1
rc=$?; dt=$(echo "$(date +%s.%N) - $t0" | bc)
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then pass "killed rank: job fails (status $rc, after ${dt}s)"; else fail "killed rank: status $rc" "$(tail -5 "$TEST_TMP/crash.log")"; fi
check "killed rank: mpirun ended the job, not the comm timeout" bash -c "! grep -q 'timed out' '$TEST_TMP/crash.log'"
check "killed rank: mpirun names the dead rank" grep -q "rank 1 .*signal 9" "$TEST_TMP/crash.log"

# --- a rank that stops communicating but stays alive: the comm timeout ends the job
t0=$(date +%s.%N)
# The job ends by itself (the outer timeout is only a guard against a hang) and says why below.
SEGX_COMM_TIMEOUT=2 timeout 600 mpirun -np 2 "$T" stuck-peer >"$TEST_TMP/stuck.log" 2>&1
rc=$?; dt=$(echo "$(date +%s.%N) - $t0" | bc)
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then pass "stuck rank: job fails by itself (status $rc, after ${dt}s, comm timeout 2 s)"; else fail "stuck rank: status $rc" "$(tail -5 "$TEST_TMP/stuck.log")"; fi
check "stuck rank: rank 0 reports the timeout" grep -q "rank 0: error: MPI allreduce timed out after 2 s on rank 0 of 2: a peer rank is lost or stuck" "$TEST_TMP/stuck.log"
done_testing
