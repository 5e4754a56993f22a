#!/usr/bin/env bash
# A 2-rank segx-train run must end, with a failure status and in bounded time, when one rank is
# killed (SIGKILL) or stops (SIGSTOP: alive but silent, so only the communication timeout can
# notice). Measures what actually happens under OpenMPI's mpirun.
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built ($SEGX_TRAIN)"; done_testing; exit; fi
if ! command -v mpirun >/dev/null; then skip "mpirun not installed"; done_testing; exit; fi

# start a long 2-rank run in the background; sets $mp (mpirun pid) and $victim (rank 1 pid)
start() { # NAME
  setsid mpirun -np 2 --bind-to none "$SEGX_TRAIN" --model cnn --dataset synthetic --steps 100000 --batch-size 8 \
    --threads 1 --workers 0 --eval-limit 0 --comm auto --out "$TEST_TMP/$1" >"$TEST_TMP/$1.log" 2>&1 &
  mp=$!
  victim=""
  for _ in $(seq 1200); do   # wait until both ranks train (rank 0 appends progress), at most 120 s
    victim=$(pgrep -f -P "$mp" -- "--out $TEST_TMP/$1" | sort -n | tail -1)
    [ -n "$victim" ] && [ "$(pgrep -f -P "$mp" -- "--out $TEST_TMP/$1" | wc -l)" = 2 ] && grep -q "segx-train:" "$TEST_TMP/$1.log" && break
    sleep 0.1
  done
  sleep 1
}
# waits for mpirun at most LIMIT seconds (a guard against a hang, not a speed goal); sets rc and dt
finish() { # LIMIT
  local t0=$SECONDS
  while kill -0 "$mp" 2>/dev/null && [ $((SECONDS - t0)) -lt "$1" ]; do sleep 0.1; done
  if kill -0 "$mp" 2>/dev/null; then kill -KILL -- -"$mp" 2>/dev/null; rc=124; else wait "$mp"; rc=$?; fi
  dt=$((SECONDS - t0))
}

start killed
if [ -z "$victim" ]; then fail "killed: could not find rank 1's process" "$(tail -5 "$TEST_TMP/killed.log")"
else
  kill -KILL "$victim"
  finish 600
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then pass "rank 1 SIGKILLed: job ends with status $rc after ${dt}s (guard 600 s)"
  else fail "rank 1 SIGKILLed: status $rc after ${dt}s" "$(tail -8 "$TEST_TMP/killed.log")"; fi
  check "rank 1 SIGKILLed: mpirun reports the dead rank" grep -q "signal 9" "$TEST_TMP/killed.log"
fi

export SEGX_COMM_TIMEOUT=3
start stopped
if [ -z "$victim" ]; then fail "stopped: could not find rank 1's process" "$(tail -5 "$TEST_TMP/stopped.log")"
else
  kill -STOP "$victim"
  finish 600
  kill -KILL "$victim" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then pass "rank 1 SIGSTOPped: job ends with status $rc after ${dt}s (comm timeout 3 s)"
  else fail "rank 1 SIGSTOPped: status $rc after ${dt}s" "$(tail -8 "$TEST_TMP/stopped.log")"; fi
  check "rank 1 SIGSTOPped: rank 0 names the timeout" grep -q "timed out after 3 s on rank 0 of 2" "$TEST_TMP/stopped.log"
fi
done_testing
