#!/usr/bin/env bash
# segx collect / report / query through the real binary: run dirs written here as segx-train
# writes them, rows for experiments/cells/attempts inserted with the sqlite3 shell (as plan and
# submit would), then the commands' exit codes, messages and outputs.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP"
db=$TEST_TMP/r.db

# Commands other than plan refuse a missing DB and create nothing (a mistyped --db is an error).
out=$("$SEGX" query --db "$TEST_TMP/missing.db" "SELECT 1" 2>&1); rc=$?
check_eq "query on a missing DB exits 1" 1 "$rc"
case $out in *missing.db*) pass "query names the missing DB";; *) fail "query names the missing DB" "$out";; esac
for c in collect status submit cancel; do
  out=$("$SEGX" $c --db "$TEST_TMP/typo.db" 2>&1); rc=$?
  check_eq "$c on a missing DB exits 1" 1 "$rc"
  case $out in *typo.db*"segx plan"*) pass "$c names the missing DB and says to plan first";;
    *) fail "$c names the missing DB and says to plan first" "$out";; esac
done
check "no database was created by those commands" test ! -e "$TEST_TMP/typo.db"
sqlite3 "$db" <"$SEGX_ROOT/db/schema.sql"
check "collect opens a DB with the schema" "$SEGX" collect --db "$db" -q

# Experiment 'exp': weak scaling of model m on 1 and 2 GPUs, two seeds each; cell f2 fails.
runs=$TEST_TMP/runs/exp
sqlite3 "$db" <<SQL
INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at)
  VALUES (1, 'exp', '{"name":"exp","eval":{"targets":{"miou":0.5}}}', '$runs', 0, 0);
INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus, batch_per_gpu, global_batch, scaling, seed, created_at) VALUES
  (1, 1, 'a1', '{}', 'g1', 's', 'm', 'cpu', 1, 8, 8, 'weak', 1, 0),
  (2, 1, 'a2', '{}', 'g1', 's', 'm', 'cpu', 1, 8, 8, 'weak', 2, 0),
  (3, 1, 'b1', '{}', 'g2', 's', 'm', 'cpu', 2, 8, 16, 'weak', 1, 0),
  (4, 1, 'f2', '{}', 'g2', 's', 'm', 'cpu', 2, 8, 16, 'weak', 2, 0);
INSERT INTO attempts (cell_id, attempt, backend, job_id, state, start_time, end_time, run_dir) VALUES
  (1, 1, 'local', '11', 'running', 100, 160, '$runs/a1/attempt-1'),
  (2, 1, 'local', '12', 'running', 100, 160, '$runs/a2/attempt-1'),
  (3, 1, 'local', '13', 'running', 100, 130, '$runs/b1/attempt-1'),
  (4, 1, 'local', '14', 'running', 100, 110, '$runs/f2/attempt-1');
SQL
# metrics(dir, ips1, ips2, miou2): two epochs; epoch 1 is warm-up for throughput.
metrics() {
  mkdir -p "$1"
  printf '{"epoch": 1, "wall_s": 10, "images_per_s": %s, "miou": 0.2, "top1": 0.5}\n{"epoch": 2, "wall_s": 20, "images_per_s": %s, "miou": %s, "top1": 0.6, "my_key": [1, 2]}\n' "$2" "$2" "$3" >"$1/metrics.jsonl"
  echo '{"host": "h", "gpu_model": "cpu"}' >"$1/env.json"
  echo 0 >"$1/exit_code"
}
metrics "$runs/a1/attempt-1" 100 0.50
metrics "$runs/a2/attempt-1" 120 0.54
metrics "$runs/b1/attempt-1" 198 0.52
mkdir -p "$runs/f2/attempt-1"
printf '{"epoch": 1, "wall_s": 4, "images_per_s": 150}\n{"epoch": 2, "wall_s": \n{"epoch": 3, "wall_s": 9}\n' >"$runs/f2/attempt-1/metrics.jsonl"
printf 'starting\nTraceback (most recent call last):\nMemoryError: cannot allocate 4 GiB\n' >"$runs/f2/attempt-1/stderr"
echo 137 >"$runs/f2/attempt-1/exit_code"

err=$("$SEGX" collect --db "$db" 2>&1 >/dev/null); rc=$?
check_eq "collect exits 0 despite a malformed line" 0 "$rc"
case $err in *"$runs/f2/attempt-1/metrics.jsonl:2:"*) pass "the warning names FILE:LINE";; *) fail "the warning names FILE:LINE" "$err";; esac
check_eq "the rest of the malformed file is kept" "1,3" "$(sqlite3 "$db" "SELECT group_concat(line) FROM epochs WHERE attempt_id = 4")"
check_eq "failed cell: state, exit code, stderr tail" "failed|137|exit code 137: starting
Traceback (most recent call last):
MemoryError: cannot allocate 4 GiB" "$(sqlite3 "$db" "SELECT c.state, a.exit_code, a.reason FROM attempts a JOIN cells c ON c.id = a.cell_id WHERE c.key = 'f2'")"
check_eq "completed cells from exit code 0" "3" "$(sqlite3 "$db" "SELECT count(*) FROM cells WHERE state = 'completed'")"
check_eq "unknown keys kept" '{"my_key":[1, 2]}' "$(sqlite3 "$db" "SELECT extra FROM epochs WHERE attempt_id = 1 AND line = 2")"

# Idempotent: a full dump before and after a second collect is the same.
sqlite3 "$db" .dump >before.sql
"$SEGX" collect --db "$db" -q 2>/dev/null
sqlite3 "$db" .dump >after.sql
check "second collect changes nothing (full .dump equal)" cmp -s before.sql after.sql
"$SEGX" collect exp --db "$db" --force -q 2>/dev/null
sqlite3 "$db" .dump >after.sql
check "forced re-read changes nothing either" cmp -s before.sql after.sql

# speedup: base = mean(100, 120) = 110 images/s; 2 GPUs = mean(198, 150) = 174 -> 1.5818..., eff 0.79...
csv=$("$SEGX" report speedup --db "$db" --format csv)
row=$(echo "$csv" | awk -F, 'NR > 1 && $7 == 2')
sp=$(echo "$row" | cut -d, -f11); ef=$(echo "$row" | cut -d, -f12)
check_eq "speedup from throughput" "1.58182" "$(printf '%.5f' "$sp")"
check_eq "efficiency = speedup / gpus" "0.79091" "$(printf '%.5f' "$ef")"
check_eq "speedup csv header" "experiment,model,gpu_type,scaling,batch_per_gpu,global_batch,gpus,nodes,n,images_per_s,speedup_throughput,efficiency_throughput,epoch_s,speedup_time,efficiency_time" "$(echo "$csv" | head -1)"

json=$("$SEGX" report accuracy --db "$db" --experiment exp --format json)
check_eq "accuracy json: mean/std/n of miou over seeds" "0.52 0.028284 2" \
  "$(echo "$json" | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print(round(r["miou_mean"],6), round(r["miou_std"],6), r["miou_n"])')"
table=$("$SEGX" report accuracy --db "$db")
case $table in *"0.5200 ± 0.0283"*) pass "accuracy table shows mean ± std";; *) fail "accuracy table shows mean ± std" "$table";; esac
cells=$("$SEGX" report cells --db "$db" --format markdown)
case $cells in *"| f2 |"*"failed"*"MemoryError"*) pass "cells report shows the failure reason";; *) fail "cells report shows the failure reason" "$cells";; esac
# miou 0.5 reached at wall_s 20 by a1 (0.50), a2 (0.54), b1 (0.52); f2 never.
ttt=$("$SEGX" report --target miou=0.5 --db "$db" --format csv)
check_eq "time-to-target per group (--target)" "1,20,2,2|2,20,2,1" "$(echo "$ttt" | awk -F, 'NR > 1 {printf "%s%s,%s,%s,%s", (NR > 2 ? "|" : ""), $4, $11, $9, $10}')"
check_eq "time-to-target from the spec's eval.targets" "$ttt" "$("$SEGX" report time-to-target --db "$db" --format csv)"
cost=$("$SEGX" report cost --db "$db" --format csv | awk -F, 'NR > 1 {s += $10} END {printf "%.6f", s}')
check_eq "GPU-hours: sum of (end-start)*gpus" "$(echo "scale=12; (60 + 60 + 30*2 + 10*2) / 3600" | bc -l | awk '{printf "%.6f", $1}')" "$cost"

# query: read-only, formats.
out=$("$SEGX" query --db "$db" "DELETE FROM cells" 2>&1); rc=$?
check_eq "query refuses a write with exit 2" 2 "$rc"
case $out in *"refusing"*"DELETE FROM cells"*) pass "the refusal names the statement";; *) fail "the refusal names the statement" "$out";; esac
check_eq "nothing was deleted" 4 "$(sqlite3 "$db" "SELECT count(*) FROM cells")"
out=$("$SEGX" query --db "$db" "SELECT 1; CREATE TABLE t(x)" 2>&1); rc=$?
check_eq "a write after a read is refused too" 2 "$rc"
check_eq "no table created" 0 "$(sqlite3 "$db" "SELECT count(*) FROM sqlite_master WHERE name = 't'")"
check_eq "query csv quotes commas and quotes" '"a,""b"""' "$("$SEGX" query --db "$db" --format csv "SELECT 'a,\"b\"' AS v" | tail -1)"
check "query json is valid JSON" sh -c "'$SEGX' query --db '$db' --format json 'SELECT key, gpus, state FROM cells' | python3 -m json.tool"
# several statements with --format json: one document, an array holding each statement's rows
got=$("$SEGX" query --db "$db" --format json "SELECT key FROM cells ORDER BY key LIMIT 2; SELECT 1 AS one; SELECT 2 WHERE 0" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d), [r["key"] for r in d[0]], d[1], d[2])' 2>&1)
check_eq "query json, 3 statements: one JSON array of 3 result arrays" "3 ['a1', 'a2'] [{'one': 1}] []" "$got"
check_eq "query json, 1 statement: the rows' array itself" "[{'one': 1}]" \
  "$("$SEGX" query --db "$db" --format json "SELECT 1 AS one;" | python3 -c 'import json,sys; print(json.load(sys.stdin))' 2>&1)"
# several statements with --format csv: an error naming the flag, and no output at all
out=$("$SEGX" query --db "$db" --format csv "SELECT 1 AS one; SELECT 2 AS two" 2>err.txt); rc=$?
check_eq "query csv, 2 statements: exit 2 and nothing on stdout" "2:" "$rc:$out"
case $(cat err.txt) in *"--format csv prints one table, but the SQL has 2 statements: pass one statement"*) pass "the csv error names the flag and says to pass one statement";;
  *) fail "the csv error names the flag and says to pass one statement" "$(cat err.txt)";; esac
check_eq "query csv, 1 statement and a trailing ';': fine" "one
1" "$("$SEGX" query --db "$db" --format csv "SELECT 1 AS one; -- done" 2>&1)"
out=$("$SEGX" query --db "$db" --format json "SELECT 1 AS one; DELETE FROM cells" 2>/dev/null); rc=$?
check_eq "a refused write in statement 2 prints nothing (exit 2)" "2:" "$rc:$out"
out=$("$SEGX" query --db "$db" "SELEC 1" 2>&1); rc=$?
check_eq "bad SQL exits 2" 2 "$rc"
SEGX_DB=$db check "SEGX_DB is the default DB" "$SEGX" query "SELECT count(*) FROM scaling"

# Bad input: exit 2 with the value named.
out=$("$SEGX" report speedups --db "$db" 2>&1); rc=$?
check_eq "unknown report kind exits 2" 2 "$rc"
out=$("$SEGX" report --target accuracy=1 --db "$db" 2>&1); rc=$?
check_eq "unknown target metric exits 2" 2 "$rc"
case $out in *accuracy*) pass "the message names the metric";; *) fail "the message names the metric" "$out";; esac
out=$("$SEGX" collect nope --db "$db" 2>&1); rc=$?
check_eq "collect of an unknown experiment exits 2" 2 "$rc"
out=$("$SEGX" report cells --format xml --db "$db" 2>&1); rc=$?
check_eq "unknown format exits 2" 2 "$rc"
done_testing
