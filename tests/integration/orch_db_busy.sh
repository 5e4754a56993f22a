#!/usr/bin/env bash
# The DB under a long write transaction (what a collect of 10,000+ cells at high load holds for
# 11-14 s): readers (status --no-poll, query, report) answer from WAL's last committed state while
# the transaction is still open; `segx status`, which also stores polled states, shows the stored
# states after a short wait instead of failing with "database is locked"; a second writer (collect)
# waits for the lock (busy timeout 60 s) and succeeds once the transaction ends, 12 s after collect
# opened the DB (past the old 10 s). No check depends on this machine's speed: the holder keeps the
# lock until the test releases it, so "did not wait" means "returned while the lock was still held".
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
python3 - "$SEGX_DB" <<'EOF' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE experiments SET updated_at = updated_at + 1")
open("locked", "w").close()
for _ in range(12000):   # until the test says so (at most 10 minutes)
    if os.path.exists("release"): break
    time.sleep(0.05)
c.execute("COMMIT")
open("committed", "w").close()
EOF
holder=$!
for _ in $(seq 1 1200); do [ -e locked ] && break; sleep 0.1; done
check_eq "a write transaction is open" yes "$([ -e locked ] && echo yes || echo no)"
held() { [ -e locked ] && [ ! -e committed ] && kill -0 "$holder" 2>/dev/null; }

# t CMD...: runs CMD (a guard of 300 s against a hang), sets out and rc
t() { out=$(timeout 300 "$@" 2>&1); rc=$?; }
t "$SEGX" status --no-poll --json
n=$(echo "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)
check_eq "status --no-poll during the write: exit 0, 4 cells" "0:4" "$rc:$n"
check "status --no-poll returned while the write transaction was still open (it did not wait)" held
t "$SEGX" query "SELECT count(*) FROM cells WHERE state = 'submitted'"
check_eq "query during the write: exit 0" 0 "$rc"
check "query returned while the write transaction was still open" held
t "$SEGX" report cells
check_eq "report during the write: exit 0" 0 "$rc"
t "$SEGX" status
check_eq "status (polls, then would store) during the write: exit 0" 0 "$rc"
case $out in *"database is busy with another writer"*"4 cells: 4 submitted"*) pass "status says the DB is busy and shows the stored states";;
  *) fail "status says the DB is busy and shows the stored states" "$out";; esac
check "status gave up its short wait while the write transaction was still open" held

# A second writer waits for the lock: collect starts now; once it has the DB open, the transaction
# stays open another $hold_s s, then commits; collect must end after the commit, with exit 0.
( timeout 300 "$SEGX" collect -q >collect.out 2>&1; echo $? >collect.rc
  if [ -e committed ]; then echo after-commit; else echo before-commit; fi >collect.order ) &
waiter=$!
opened=no
for _ in $(seq 1 1200); do
  for p in $(pgrep -f -- "$SEGX collect -q"); do
    ls -l "/proc/$p/fd" 2>/dev/null | grep -qF "$SEGX_DB" && opened=yes
  done
  [ "$opened" = yes ] && break; [ -e collect.rc ] && break; sleep 0.1
done
check_eq "collect opened the DB while the transaction was open" "yes:yes" "$opened:$(held && echo yes || echo no)"
sleep "$hold_s"   # how long the transaction outlasts collect's arrival: longer than the old 10 s busy timeout
check "collect was still waiting for the lock ${hold_s}s later" test ! -e collect.rc
touch release
wait "$holder"; check_eq "the holder committed" 0 "$?"
wait "$waiter"
check_eq "collect waiting on the write transaction: exit 0 (no 'database is locked')" "0:" "$(cat collect.rc 2>/dev/null):$(grep -i locked collect.out)"
check_eq "collect ended after the holder committed" after-commit "$(cat collect.order 2>/dev/null)"
# now unblocked, status stores what it polls (the local backend does not know these job ids)
"$SEGX" status >/dev/null 2>&1
check_eq "status stores polled states once the lock is free" 0 "$(sqlite3 "$SEGX_DB" "SELECT count(*) FROM attempts WHERE state = 'submitted'")"
done_testing
