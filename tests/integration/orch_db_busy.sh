#!/usr/bin/env bash
# The DB under a long write transaction (what a collect of 10,000+ cells at high load holds for
# 11-14 s): readers (status --no-poll, query, report) answer at once from WAL's last committed
# state; `segx status`, which also stores polled states, shows the stored states after a short
# wait instead of failing with "database is locked"; a second writer (collect) waits for the lock
# (busy timeout 60 s) and succeeds once the transaction ends 12 s later (past the old 10 s).
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
cat >spec.json <<'EOF'
{"name": "busy", "trainer": {"command": "true {{batch_per_gpu}}"},
 "matrix": {"gpu_type": ["cpu"], "batch_per_gpu": [8, 16], "seed": [1, 2]}}
EOF
"$SEGX" plan spec.json -q >/dev/null 2>&1 || { fail "plan"; done_testing; exit; }
# Cells in flight (job ids the local backend does not know), so status has states to store.
sqlite3 "$SEGX_DB" "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir)
                    SELECT id, 1, 'local', '9' || id, 'submitted', '$TEST_TMP/none/' || id FROM cells;
                    UPDATE cells SET state = 'submitted';"

hold_s=12
python3 - "$SEGX_DB" "$hold_s" <<'EOF' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE experiments SET updated_at = updated_at + 1")
open("locked", "w").close()
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
EOF
holder=$!
for _ in $(seq 1 100); do [ -e locked ] && break; sleep 0.1; done
check_eq "a write transaction is open" yes "$([ -e locked ] && echo yes || echo no)"
t0=$(date +%s.%N)

# timed CMD...: runs CMD, sets out, rc and secs
timed() { local a; a=$(date +%s.%N); out=$("$@" 2>&1); rc=$?; secs=$(echo "$(date +%s.%N) - $a" | bc); }
lt() { [ "$(echo "$1 < $2" | bc)" = 1 ]; }

timed "$SEGX" status --no-poll --json
n=$(echo "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)
check_eq "status --no-poll during the write: exit 0, 4 cells" "0:4" "$rc:$n"
lt "$secs" 2 && pass "status --no-poll did not wait (${secs}s)" || fail "status --no-poll did not wait" "took ${secs}s"
timed "$SEGX" query "SELECT count(*) FROM cells WHERE state = 'submitted'"
check_eq "query during the write: exit 0" 0 "$rc"
lt "$secs" 2 && pass "query did not wait (${secs}s)" || fail "query did not wait" "took ${secs}s"
timed "$SEGX" report cells
check_eq "report during the write: exit 0" 0 "$rc"
timed "$SEGX" status
check_eq "status (polls, then would store) during the write: exit 0" 0 "$rc"
case $out in *"database is busy with another writer"*"4 cells: 4 submitted"*) pass "status says the DB is busy and shows the stored states";;
  *) fail "status says the DB is busy and shows the stored states" "$out";; esac
lt "$secs" 6 && pass "status gave up waiting for the lock after its short wait (${secs}s)" || fail "status gave up waiting" "took ${secs}s"
check "the write transaction was still open" kill -0 "$holder"

# A second writer waits for the lock: collect starts now and finishes after the holder commits.
timed "$SEGX" collect -q
waited=$(echo "$(date +%s.%N) - $t0" | bc)
check_eq "collect waiting on a ${hold_s}s write transaction: exit 0 (no 'database is locked')" "0:" "$rc:$(echo "$out" | grep -i locked)"
lt $((hold_s - 2)) "$waited" && pass "collect waited for the lock (${waited}s after the transaction began)" ||
  fail "collect waited for the lock" "finished ${waited}s after the transaction began"
wait "$holder"; check_eq "the holder committed" 0 "$?"
# now unblocked, status stores what it polls (the local backend does not know these job ids)
"$SEGX" status >/dev/null 2>&1
check_eq "status stores polled states once the lock is free" 0 "$(sqlite3 "$SEGX_DB" "SELECT count(*) FROM attempts WHERE state = 'submitted'")"
done_testing
