#!/usr/bin/env bash
# segx collect's sacct import (orchestrator/accounting.c) goes a page of 400 attempts at a time:
# one sacct call and one short write per page, so memory does not grow with the attempts (issue 17).
# A fake sacct on PATH answers for 1,000 ended Slurm attempts: every attempt is imported once,
# with the values of its own line, each sacct call names at most 400 jobs and no job twice; when
# sacct fails on the second page, the first page's rows stay and the note counts the 600 left;
# a second collect then imports exactly those 600.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
mkdir bin
cat >bin/sacct <<'SH'
#!/usr/bin/env bash
# fake sacct: one line per job of -j (JobID|State|ExitCode|ElapsedRaw|MaxRSS|TotalCPU|AllocTRES|...)
ids=
while [ $# -gt 0 ]; do [ "$1" = -j ] && { ids=$2; shift; }; shift; done
n=$(cat "$FAKE_SACCT_DIR/calls" 2>/dev/null || echo 0); n=$((n + 1)); echo $n >"$FAKE_SACCT_DIR/calls"
echo "$ids" | tr , '\n' >>"$FAKE_SACCT_DIR/asked"
echo "$ids" | tr , '\n' | wc -l >>"$FAKE_SACCT_DIR/sizes"
if [ -n "${FAKE_SACCT_FAIL_AT:-}" ] && [ "$n" -ge "$FAKE_SACCT_FAIL_AT" ]; then echo "sacct: error: slurmdbd down"; exit 1; fi
for id in $(echo "$ids" | tr , ' '); do
  echo "$id|COMPLETED|0:0|$((id % 1000))|$((id % 100))M|00:01:00|billing=1,cpu=2,gres/gpu=1,mem=1G,node=1||node1|gpu|normal|2026-12-07T01:00:00|2026-12-07T01:00:01|2026-12-07T01:00:05|2026-12-07T01:10:00|1G"
  echo "$id.batch|COMPLETED|0:0|$((id % 1000))|$((id % 100 + 1))M|00:01:00||cpu=00:01:00,gres/gpuutil=50|node1|||2026-12-07T01:00:00|2026-12-07T01:00:01|2026-12-07T01:00:05|2026-12-07T01:10:00|"
done
SH
chmod +x bin/sacct
export PATH=$TEST_TMP/bin:$PATH FAKE_SACCT_DIR=$TEST_TMP
cat >spec.json <<'JSON'
{"name": "acc", "trainer": {"command": "true {{seed}}"},
 "matrix": {"gpu_type": ["cpu"], "batch_per_gpu": [8, 16, 24, 32, 40, 48, 56, 64, 72, 80], "seed": [SEEDS]}}
JSON
sed -i "s/SEEDS/$(seq -s, 1 100)/" spec.json
"$SEGX" plan spec.json -q >/dev/null 2>&1 || { fail "plan"; done_testing; exit; }
# 1,000 ended Slurm attempts (job ids 5001..6000); their run dirs hold an exit code of 0
q "INSERT INTO attempts (cell_id, attempt, backend, job_id, state, run_dir)
   SELECT c.id, 1, 'slurm', 5000 + c.id, 'completed', e.run_root || '/' || c.key || '/attempt-1'
   FROM cells c JOIN experiments e ON e.id = c.experiment_id"
for d in $(q "SELECT run_dir FROM attempts"); do echo 0 >"$d/exit_code"; done
check_eq "1,000 ended Slurm attempts" 1000 "$(q "SELECT count(*) FROM attempts")"

rm -f calls asked sizes
out=$(FAKE_SACCT_FAIL_AT=2 timeout 300 "$SEGX" collect acc 2>&1); rc=$?
check_eq "sacct failing on the second page: collect exit 0" 0 "$rc"
case $out in *"accounting not imported for 600 Slurm attempts"*"slurmdbd down"*) pass "the note counts the 600 attempts left and says why";;
  *) fail "the note counts the 600 attempts left and says why" "$out";; esac
check_eq "the first page (400 attempts) is imported" 400 "$(q "SELECT count(*) FROM slurm_accounting")"
check_eq "the first page is the 400 lowest attempt ids" 400 "$(q "SELECT count(*) FROM slurm_accounting s WHERE s.attempt_id IN (SELECT id FROM attempts ORDER BY id LIMIT 400)")"

rm -f calls asked sizes
out=$(timeout 300 "$SEGX" collect acc 2>&1); rc=$?
check_eq "sacct back: collect exit 0" 0 "$rc"
check_eq "every attempt imported once" "1000|1000" "$(q "SELECT count(*), count(DISTINCT attempt_id) FROM slurm_accounting")"
check_eq "the second collect asked sacct only for the 600 left, each once" "600|600" "$(sort asked | wc -l)|$(sort -u asked | wc -l)"
check_eq "no sacct call names more than 400 jobs (2 calls: 400 + 200)" "400 200" "$(tr '\n' ' ' <sizes | sed 's/ $//')"
check_eq "each row holds its own job's values (elapsed = id mod 1000, MaxRSS the larger step's)" 0 \
  "$(q "SELECT count(*) FROM slurm_accounting WHERE elapsed_s <> CAST(job_id AS INTEGER) % 1000 OR max_rss_mb <> CAST(job_id AS INTEGER) % 100 + 1 OR alloc_gpus <> 1 OR gpu_util <> 50")"
check_eq "job ids match their attempts" 0 "$(q "SELECT count(*) FROM slurm_accounting s JOIN attempts a ON a.id = s.attempt_id WHERE s.job_id <> a.job_id")"
rm -f calls asked sizes
"$SEGX" collect acc >/dev/null 2>&1
check_eq "a third collect runs no sacct (nothing left to import)" no "$([ -e calls ] && echo yes || echo no)"
done_testing
