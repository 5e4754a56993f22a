#!/usr/bin/env bash
# The results DB where it cannot be written (issue 17): a read-only DB in a folder the user cannot
# write still answers `segx query` and `segx report` (and leaves no -wal/-shm behind), while every
# command that writes names the cause instead of "not a SQLite database or unreadable"; and a full
# disk (a 4 MB tmpfs, when this user may mount one) makes collect fail cleanly with nothing stored
# lost or half-written. Each check compares a full `sqlite3 .dump` before and after.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
t() { out=$(timeout 120 "$@" 2>&1); rc=$?; }
same() { if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(diff "$2" "$3" | head -8)"; fi; }

# An experiment with stored results: 2 cells, metrics and results written by hand, collected.
cat >spec.json <<'EOF'
{"name": "ro", "trainer": {"command": "true {{seed}}"},
 "matrix": {"gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2]}}
EOF
"$SEGX" plan spec.json -q >/dev/null || { fail "plan"; done_testing; exit; }
q "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir)
   SELECT c.id, 1, 'local', 'x' || c.id, 'running', e.run_root || '/' || c.key || '/attempt-1'
   FROM cells c JOIN experiments e ON e.id = c.experiment_id"
for d in $(q "SELECT run_dir FROM attempts"); do
  printf '{"epoch": 1, "miou": 0.25, "images_per_s": 100}\n{"epoch": 2, "miou": 0.5, "images_per_s": 110}\n' >"$d/metrics.jsonl"
  echo '{"miou": 0.5, "images_per_s": 105, "wall_s": 3}' >"$d/result.json"
  echo 0 >"$d/exit_code"
done
t "$SEGX" collect
check_eq "collect: exit 0, 4 epochs" "0|4" "$rc|$(q 'SELECT count(*) FROM epochs')"

# --- a read-only DB in a folder the user cannot write -------------------------------------------
mkdir ro
sqlite3 "$SEGX_DB" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
cp "$SEGX_DB" ro/segx.db
sqlite3 ro/segx.db .dump >ro-before.sql
AS=()   # runs a command as a user that file modes apply to (root ignores them)
if [ "$(id -u)" = 0 ]; then
  if command -v setpriv >/dev/null; then AS=(setpriv --reuid=65534 --regid=65534 --clear-groups); chmod 755 "$TEST_TMP"
  else AS=(false); fi
fi
chmod 555 ro; chmod 444 ro/segx.db
t "${AS[@]}" "$SEGX" query "SELECT count(*) FROM epochs" --db ro/segx.db
if [ "${AS[0]:-}" = false ]; then
  skip "read-only DB: running as root without setpriv (root ignores file modes)"
else
  check_eq "query on a read-only DB in a read-only folder: exit 0, the stored rows" "0|4" "$rc|$(echo "$out" | tail -1 | tr -d ' ')"
  t "${AS[@]}" "$SEGX" report accuracy --db ro/segx.db
  check_eq "report on it: exit 0" 0 "$rc"
  case $out in *0.5*) pass "report shows the stored mIoU";; *) fail "report shows the stored mIoU" "$out";; esac
  for cmd in collect status "submit --backend local" "plan spec.json"; do
    t "${AS[@]}" "$SEGX" $cmd --db ro/segx.db
    case "$rc:$out" in
      1:*"cannot open for writing: the database file is read-only for you"*"segx query"*) pass "$cmd on it: exit 1, says the file is read-only and what can read it";;
      *) fail "$cmd on it: exit 1, says the file is read-only and what can read it" "rc=$rc $out";;
    esac
    case $out in *"not a SQLite database"*) fail "$cmd: no 'not a SQLite database'" "$out";; esac
  done
  # writable file, folder not writable: SQLite cannot create segx.db-wal beside it
  chmod 644 ro/segx.db; [ "$(id -u)" = 0 ] && chown 65534 ro/segx.db
  t "${AS[@]}" "$SEGX" collect --db ro/segx.db
  case "$rc:$out" in
    1:*"its folder ro is not writable"*"ro/segx.db-wal"*) pass "collect in a read-only folder: names the folder and the -wal file";;
    *) fail "collect in a read-only folder: names the folder and the -wal file" "rc=$rc $out";;
  esac
  t "${AS[@]}" "$SEGX" query "SELECT count(*) FROM results" --db ro/segx.db
  check_eq "query with a writable file in a read-only folder: exit 0" 0 "$rc"
  check_eq "no -wal or -shm was left in the read-only folder" "segx.db" "$(ls ro | tr '\n' ' ' | sed 's/ $//')"
  same "the read-only DB is unchanged (full dump)" ro-before.sql <(sqlite3 ro/segx.db .dump)
fi
chmod 755 ro

# --- a full disk -----------------------------------------------------------------------------------
mkdir small
if ! mount -t tmpfs -o size=4m segx-faults "$TEST_TMP/small" 2>/dev/null; then
  skip "full disk: cannot mount a 4 MB tmpfs as this user (needs root or CAP_SYS_ADMIN)"
  done_testing; exit $?
fi
trap 'umount "$TEST_TMP/small" 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
cd small || exit 1
export SEGX_DB=$TEST_TMP/small/segx.db
cp ../spec.json .
"$SEGX" plan spec.json -q >/dev/null 2>&1 || fail "plan on the small disk"
q "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir)
   SELECT c.id, 1, 'local', 'x' || c.id, 'running', e.run_root || '/' || c.key || '/attempt-1'
   FROM cells c JOIN experiments e ON e.id = c.experiment_id"
# 2 x 4000 lines (about 0.7 MB): more than the free space left below
for d in $(q "SELECT run_dir FROM attempts"); do
  python3 -c 'import sys
with open(sys.argv[1] + "/metrics.jsonl", "w") as f:
    for i in range(4000): f.write("{\"epoch\": %d, \"train_loss\": %.6f, \"miou\": %.6f, \"per_class_iou\": [0.1, 0.2]}\n" % (i + 1, 1.0 / (i + 1), i / 4000.0))' "$d"
done
sqlite3 "$SEGX_DB" .dump >../full-before.sql
dd if=/dev/zero of=filler bs=64k 2>/dev/null   # until ENOSPC
# (a) no other connection: SQLite cannot even create segx.db-shm to open the DB
t "$SEGX" collect
check_eq "full disk (a): collect fails (exit 1)" 1 "$rc"
case $out in *"the file system holding it is full"*"nothing stored is lost"*) pass "full disk (a): the error says the disk is full";;
  *) fail "full disk (a): the error says the disk is full" "$out";; esac
# (b) a reader holds the DB open (as `segx serve` would), so collect opens it and runs out of room
# half-way through its transaction
rm -f filler
python3 - "$SEGX_DB" "$TEST_TMP" <<'PY' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
c.execute("SELECT count(*) FROM cells").fetchall()
open(sys.argv[2] + "/holding", "w").close()
for _ in range(12000):
    if os.path.exists(sys.argv[2] + "/release"): break
    time.sleep(0.05)
PY
holder=$!
for _ in $(seq 1 1200); do [ -e "$TEST_TMP/holding" ] && break; sleep 0.05; done
dd if=/dev/zero of=filler bs=64k 2>/dev/null
t "$SEGX" collect
check_eq "full disk (b): collect fails (exit 1)" 1 "$rc"
case $out in *"disk is full"*) pass "full disk (b): the error says the disk is full";; *) fail "full disk (b): the error says the disk is full" "$out";; esac
t "$SEGX" status --no-poll
check_eq "full disk (b): status --no-poll still answers" 0 "$rc"
touch "$TEST_TMP/release"; wait "$holder"
rm -f filler
same "full disk: nothing stored was lost or half-written (full dump)" ../full-before.sql <(sqlite3 "$SEGX_DB" .dump)
check_eq "full disk: integrity_check" ok "$(q 'PRAGMA integrity_check')"
t "$SEGX" collect
check_eq "space again: collect exits 0 and stores every line once" "0|8000" "$rc|$(q 'SELECT count(*) FROM epochs')"
cd "$TEST_TMP" && umount "$TEST_TMP/small"
done_testing
