#!/usr/bin/env bash
# Faults around collect and status (issue 17): nothing stored is ever lost, duplicated or corrupted.
# Real runs of segx-train on the local backend, then: collect before submit (and an experiment an
# older collect broke), a scratch purge (runs/ moved away), run files that are empty, FIFOs, links
# to /dev/zero, a 300 MB file without a newline, a symlink loop and (as another user) unreadable,
# and collect killed with -9 at several points of a large ingest. Each check compares a full
# `sqlite3 .dump` before and after; every command runs under a 120 s guard (124 = it hung).
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
dump() { sqlite3 "$SEGX_DB" .dump; }
# same_dump DESC FILE: the DB holds exactly what FILE (a .dump) holds
same_dump() { if cmp -s <(dump) "$2"; then pass "$1"; else fail "$1" "$(diff "$2" <(dump) | head -8)"; fi; }
t() { out=$(timeout 120 "$@" 2>&1); rc=$?; }
# maxrss_mb CMD...: runs CMD, prints its peak RSS in MB and sets rc
maxrss_mb() {
  local r
  r=$(python3 -c 'import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open("maxrss.err", "w"), timeout=300).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, rc)' "$@")
  rc=${r#* }; echo "${r% *}"
}
wait_settled() {
  for _ in $(seq 1 1200); do
    "$SEGX" status --format csv 2>/dev/null | tail -n +2 | grep -qE ',(submitted|pending|running|unknown),' || return 0
    sleep 0.5
  done
  return 1
}

cat >spec.json <<'EOF'
{"name": "faults",
 "trainer": {"dataset": "synthetic", "epochs": 2, "optimizer": "sgd", "lr": 0.01,
             "args": {"train-limit": 32, "eval-limit": 16, "workers": 0}},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "batch_per_gpu": [16], "seed": [1, 2, 3]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}}
EOF
"$SEGX" plan spec.json -q >/dev/null || { fail "plan"; done_testing; exit; }

# --- 1. collect before submit, and an experiment an older collect broke -----------------------
t "$SEGX" collect
check_eq "collect before submit: exit 0" 0 "$rc"
check_eq "collect before submit records no attempt for planned cells" "0|3" "$(q "SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM cells WHERE state = 'planned')")"
invent() { q "INSERT INTO attempts (cell_id, attempt, backend, state, run_dir, ingest_sig)
              SELECT id, 1, 'unknown', 'unknown', '$TEST_TMP/runs/faults/' || key || '/attempt-1', 'v1' FROM cells;
              UPDATE cells SET state = 'unknown';"; }
invent
t "$SEGX" status
check_eq "status of a broken experiment: exit 0" 0 "$rc"
case $out in *"unknown backend"*) fail "status does not ask a backend 'unknown'" "$out";; *) pass "status does not ask a backend 'unknown'";; esac
case $out in *"3 cells: 3 planned"*) pass "status: the cells are planned again";; *) fail "status: the cells are planned again" "$out";; esac
invent
t "$SEGX" submit --backend local --max-parallel 1
check_eq "submit of a broken experiment: exit 0" 0 "$rc"
case $out in *"3 submitted"*) pass "submit sends the 3 cells an older collect had marked unknown";; *) fail "submit sends the 3 cells an older collect had marked unknown" "$out";; esac
wait_settled || fail "cells settle" "$("$SEGX" status 2>&1 | tail -5)"
t "$SEGX" collect
check_eq "collect after the runs: exit 0" 0 "$rc"
check_eq "3 attempts (attempt 1, local), 6 epochs, 3 results, 3 environments" "3|3|6|3|3" \
  "$(q "SELECT count(*), sum(attempt = 1 AND backend = 'local' AND state = 'completed'), (SELECT count(*) FROM epochs), (SELECT count(*) FROM results), (SELECT count(*) FROM environments) FROM attempts")"
dump >ref.sql

# --- 2. scratch purge ----------------------------------------------------------------------------
mv runs runs.bak
t "$SEGX" collect
check_eq "purge: collect exits 0" 0 "$rc"
check_eq "purge: a warning names each of the 3 run dirs" 3 "$(echo "$out" | grep -c "$TEST_TMP/runs/faults/.*/attempt-1: run dir not found")"
same_dump "purge: nothing stored was lost or changed" ref.sql
t "$SEGX" report accuracy
check_eq "purge: report still answers from the DB" 0 "$rc"
mv runs.bak runs
t "$SEGX" collect
same_dump "purge undone: collect finds nothing changed" ref.sql

# --- 3. empty, special and unreadable files ------------------------------------------------------
A=$(q "SELECT run_dir FROM attempts ORDER BY id LIMIT 1")
cp -a "$A" A.bak
: >"$A/result.json"
t "$SEGX" collect
case $out in *"$A/result.json:1:0: "*"the row stored before is kept"*) pass "empty result.json: a warning naming it";; *) fail "empty result.json: a warning naming it" "$out";; esac
same_dump "empty result.json: the stored result stays" ref.sql
for f in metrics.jsonl progress.json exit_code env.json; do rm -f "$A/$f"; mkfifo "$A/$f"; done
t "$SEGX" collect
check_eq "FIFOs: collect returns (exit 0, no hang)" 0 "$rc"
case $out in *"$A/metrics.jsonl: not a regular file (a fifo)"*) pass "FIFO: a warning naming it";; *) fail "FIFO: a warning naming it" "$out";; esac
same_dump "FIFOs: nothing stored changed" ref.sql
t "$SEGX" status
check_eq "FIFOs: status returns (exit 0, no hang)" 0 "$rc"
t "$SEGX" plan spec.json -q
check_eq "FIFOs: a plan right after is not locked out" 0 "$rc"
dump >ref.sql   # (plan updates experiments.updated_at)
for f in metrics.jsonl progress.json exit_code env.json; do rm -f "$A/$f"; ln -s /dev/zero "$A/$f"; done
mb=$(maxrss_mb "$SEGX" collect)
check_eq "/dev/zero links: collect exits 0" 0 "$rc"
check "/dev/zero links: collect's peak memory stays small (${mb} MB < 100 MB)" test "$mb" -lt 100
check "/dev/zero links: a warning names the character device" grep -q "$A/metrics.jsonl: not a regular file (a character device)" maxrss.err
same_dump "/dev/zero links: nothing stored changed" ref.sql
t timeout 60 "$SEGX" status
check_eq "/dev/zero links: status returns" 0 "$rc"
rm -f "$A/metrics.jsonl" "$A/progress.json" "$A/exit_code" "$A/env.json"
cp -a A.bak/exit_code A.bak/env.json "$A/"
truncate -s 300M "$A/metrics.jsonl"   # 300 MB, no newline
mb=$(maxrss_mb "$SEGX" collect)
check_eq "300 MB line: collect exits 0" 0 "$rc"
check "300 MB line: collect's peak memory stays small (${mb} MB < 100 MB)" test "$mb" -lt 100
check "300 MB line: skipped with FILE:LINE" grep -q "$A/metrics.jsonl:1: line longer than" maxrss.err
same_dump "300 MB line: nothing stored changed" ref.sql
rm -f "$A/env.json"; ln -s env.json "$A/env.json"
t "$SEGX" collect
case $out in *"$A/env.json: cannot open: Too many levels of symbolic links"*) pass "symlink loop: a warning naming it";; *) fail "symlink loop: a warning naming it" "$out";; esac
same_dump "symlink loop: nothing stored changed" ref.sql
rm -f "$A/env.json" "$A/metrics.jsonl"; cp -a A.bak/env.json A.bak/metrics.jsonl "$A/"
# unreadable for the user who collects: as root, collect runs as nobody on files root keeps to itself
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chown -R 65534 "$TEST_TMP"; chmod 755 "$TEST_TMP"
  chown 0 "$A/metrics.jsonl" "$A/result.json"; chmod 600 "$A/metrics.jsonl" "$A/result.json"
  t setpriv --reuid=65534 --regid=65534 --clear-groups "$SEGX" collect --force
  chown -R 0 "$TEST_TMP"
else
  chmod 000 "$A/metrics.jsonl" "$A/result.json"
  t "$SEGX" collect --force
  chmod 644 "$A/metrics.jsonl" "$A/result.json"
fi
case $out in *"$A/metrics.jsonl: cannot open: Permission denied"*) pass "unreadable: a warning naming it";; *) fail "unreadable: a warning naming it" "$out";; esac
same_dump "unreadable files: nothing stored changed" ref.sql
rm -rf "$A"; cp -a A.bak "$A"
t "$SEGX" collect
same_dump "files back: the same rows" ref.sql
check_eq "integrity_check" ok "$(q 'PRAGMA integrity_check')"

# --- 4. kill -9 of collect at several points of a large ingest ---------------------------------
# A second experiment: attempts whose run dirs hold long metrics files, collected in short
# transactions of a batch of attempts each (files read before each one); killed when it has read
# 0%, 30% and 70% of them (/proc/PID/io), each attempt must be all or nothing: as before (no rows,
# no fingerprint, still running) or complete (every line and class IoU, fingerprint, completed);
# then a full collect stores everything once.
cells=20 lines=1500; [ "${SEGX_SAN:-0}" = 1 ] && cells=10 lines=1000
big_attempts="SELECT a.id FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'big'"
# attempts of big that are neither as before nor complete
partial() { q "SELECT count(*) FROM attempts a WHERE a.id IN ($big_attempts) AND NOT (
  (a.ingest_sig IS NULL AND a.state = 'running' AND a.exit_code IS NULL AND NOT EXISTS (SELECT 1 FROM epochs e WHERE e.attempt_id = a.id))
  OR (a.ingest_sig IS NOT NULL AND a.state = 'completed' AND a.exit_code = 0
      AND (SELECT count(*) FROM epochs e WHERE e.attempt_id = a.id) = $lines
      AND (SELECT count(*) FROM class_iou i JOIN epochs e ON e.id = i.epoch_id WHERE e.attempt_id = a.id) = $((lines * 4))))"; }
cat >big.json <<EOF
{"name": "big", "trainer": {"command": "true {{seed}}"},
 "matrix": {"gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [$(seq -s, 1 $cells)]}}
EOF
"$SEGX" plan big.json -q >/dev/null || fail "plan big"
q "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir)
   SELECT c.id, 1, 'local', 'x' || c.id, 'running', e.run_root || '/' || c.key || '/attempt-1'
   FROM cells c JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'big';
   UPDATE cells SET state = 'running' WHERE experiment_id = (SELECT id FROM experiments WHERE name = 'big');"
q "SELECT run_dir FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'big'" >big.dirs
python3 - "$lines" big.dirs <<'EOF'
import sys
n = int(sys.argv[1])
for d in open(sys.argv[2]).read().split():
    with open(d + "/metrics.jsonl", "w") as f:
        for i in range(n):
            f.write('{"epoch": %d, "step": %d, "wall_s": %.3f, "train_loss": %.6f, "miou": %.6f, "lr": 0.01, "images_per_s": 1234.5, "per_class_iou": [0.1, 0.2, 0.3, 0.4]}\n'
                    % (i + 1, 10 * (i + 1), 1.5 * i, 1.0 / (i + 1), i / n))
    open(d + "/exit_code", "w").write("0\n")
EOF
sqlite3 "$SEGX_DB" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
dump >big-before.sql
total=$(cat $(sed 's|$|/metrics.jsonl|' big.dirs) | wc -c)
big_lines() { q "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'big'"; }
for pct in 0 30 70; do
  # a write transaction per attempt here (each one's file is 1 / $cells of the bytes)
  SEGX_COLLECT_BATCH_BYTES=1 "$SEGX" collect big >kill.out 2>&1 &
  pid=$!
  for _ in $(seq 1 12000); do
    r=$(awk '/^rchar/ {print $2}' "/proc/$pid/io" 2>/dev/null) || break
    [ -n "$r" ] && [ "$r" -ge $((total * pct / 100)) ] && break
    sleep 0.01
  done
  kill -9 "$pid" 2>/dev/null; wait "$pid"; krc=$?
  # each attempt all or nothing; killed before its first commit, the DB is exactly as before
  if cmp -s <(dump) big-before.sql; then
    check_eq "collect killed -9 after reading ${pct}% of the files: the DB is exactly as before" 137 "$krc"
  else
    done_n=$(q "SELECT count(*) FROM attempts WHERE id IN ($big_attempts) AND ingest_sig IS NOT NULL")
    check_eq "collect killed (exit $krc) after reading ${pct}% of the files: $done_n of $cells attempts complete, none half-written" 0 "$(partial)"
    check_eq "after the kill at ${pct}%: every stored line once" "$((done_n * lines))" "$(big_lines)"
    check_eq "after the kill at ${pct}%: the first experiment's rows unchanged" 0 \
      "$(grep -E '^INSERT INTO (experiments|cells|epochs|class_iou|results|environments)' ref.sql | grep -cvxFf <(dump))"
    sqlite3 "$SEGX_DB" "PRAGMA foreign_keys = ON; DELETE FROM epochs WHERE attempt_id IN ($big_attempts)"
    sqlite3 "$SEGX_DB" "UPDATE attempts SET ingest_sig = NULL, state = 'running', exit_code = NULL, collected_at = NULL, run_s = NULL WHERE id IN ($big_attempts);
                        UPDATE cells SET state = 'running' WHERE experiment_id = (SELECT id FROM experiments WHERE name = 'big')"
  fi
  check_eq "after the kill at ${pct}%: integrity_check" ok "$(q 'PRAGMA integrity_check')"
done
t "$SEGX" collect big
check_eq "collect after the kills: exit 0" 0 "$rc"
check_eq "every metrics line stored once, with its 4 class IoUs" "$((cells * lines))|$((cells * lines * 4))|$cells" \
  "$(q "SELECT count(*), (SELECT count(*) FROM class_iou), count(DISTINCT e.attempt_id) FROM epochs e JOIN attempts a ON a.id = e.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'big'")"
dump >final.sql
check_eq "every row of the first experiment is still there, unchanged" 0 \
  "$(grep -E '^INSERT INTO (experiments|cells|epochs|class_iou|results|environments)' ref.sql | grep -cvxFf final.sql)"

# --- 5. collect reads run files without holding the write lock ---------------------------------
# Another writer holds the DB's write lock. collect --force reads the big experiment's files
# (90% of their bytes, /proc/PID/io) while the lock is still held, i.e. before it needs the lock;
# then it waits for the lock and stores the same rows once. (It used to take the lock first and
# read every file inside its transaction, holding up plan, submit and status meanwhile.)
rm -f locked release committed
python3 - "$SEGX_DB" <<'PY' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE experiments SET updated_at = updated_at")
open("locked", "w").close()
for _ in range(6000):   # until the test says so (at most 5 minutes)
    if os.path.exists("release"): break
    time.sleep(0.05)
c.execute("COMMIT")
open("committed", "w").close()
PY
holder=$!
for _ in $(seq 1 3000); do [ -e locked ] && break; sleep 0.1; done
check "another writer holds the write lock" test -e locked
"$SEGX" collect big --force >force.out 2>&1 &
pid=$!
r=0
for _ in $(seq 1 3000); do   # 300 s at most
  r=$(awk '/^rchar/ {print $2}' "/proc/$pid/io" 2>/dev/null) || break
  [ -n "$r" ] && [ "$r" -ge $((total * 9 / 10)) ] && break
  sleep 0.1
done
check "collect read 90% of the run files' bytes while the other writer held the lock (rchar ${r:-?} of $total)" \
  test "${r:-0}" -ge $((total * 9 / 10)) -a ! -e committed
check "collect is still running, waiting for the lock" kill -0 "$pid"
touch release
wait "$holder"
wait "$pid"; frc=$?
check_eq "collect --force after the lock was released: exit 0" 0 "$frc"
check_eq "the same rows once, every attempt complete" "$((cells * lines))|0" "$(big_lines)|$(partial)"
done_testing
