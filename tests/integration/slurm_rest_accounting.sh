#!/usr/bin/env bash
# Slurm accounting on a private local cluster started with --accounting (MariaDB + slurmdbd,
# jobacct_gather/linux): segx collect imports, per attempt, what sacct says a real job used; MaxRSS
# of a job that holds 120 MiB is at least that and within its memory request; Elapsed is the job's
# end - start as segx recorded it from the scheduler; GPUs allocated, partition, QOS; segx report
# queue/usage summarise it per GPU type. Collect again imports nothing twice. segx doctor sees the
# accounting and a QOS whose MaxSubmitJobs is below the plan. Then the same through slurm-rest, with
# accounting from slurmrestd's slurmdb API instead of sacct: MaxRSS, Elapsed, ReqMem and AllocTRES of the
# real jobs equal sacct's for them; a slurmrestd without the slurmdb API: sacct fills the rows instead.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null || skip_all "slurmdbd or mariadb-server not installed (scripts/install-deps)"
export SEGX_SLURM_DIR=$TEST_TMP/slurm SEGX_SLURM_PORT=$((24000 + (RANDOM % 800) * 10)) SLURM_CONF=$TEST_TMP/slurm/etc/slurm.conf
SLURM_CLUSTER_LOG=$TEST_TMP/local-cluster.log
trap 'slurm_cluster_stop; rm -rf "$TEST_TMP"' EXIT
"$SEGX_ROOT/slurm/local-cluster" start --accounting >"$SLURM_CLUSTER_LOG" 2>&1 || skip_all "cluster with accounting did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
q() { sqlite3 "$SEGX_DB" "$1"; }
cat >mem.sh <<'SH'
#!/bin/bash
# mem.sh RUN_DIR MB SECONDS: holds MB MiB of memory for SECONDS
python3 -c "import time; x = bytearray($2 * 1024 * 1024); time.sleep($3)"
SH
cat >acc.json <<'JSON'
{"name": "acc", "trainer": {"command": "bash mem.sh {{run_dir}} 120 3", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu", "a100"], "batch_per_gpu": [8]},
 "resources": {"time": "00:05:00", "mem_per_gpu": "1G"}, "cluster": "local"}
JSON
"$SEGX" plan acc.json >/dev/null 2>&1
out=$("$SEGX" submit acc --backend slurm 2>&1) || fail "submit" "$out"
for _ in $(seq 1 240); do "$SEGX" status acc 2>/dev/null | grep -q "2 cells: 2 completed" && break; sleep 0.5; done
out=$("$SEGX" collect acc 2>&1); rc=$?
check_eq "collect exits 0" 0 "$rc"
check "collect gives no accounting note when slurmdbd answers" bash -c "! echo '$out' | grep -q 'accounting not imported'"
check_eq "one accounting row per attempt" 2 "$(q "SELECT count(*) FROM slurm_accounting")"
rows=$(q "SELECT c.gpu_type, s.state, s.max_rss_mb >= 120 AND s.max_rss_mb <= s.req_mem_mb, s.elapsed_s = a.end_time - a.start_time,
               s.elapsed_s >= 3, s.alloc_gpus, s.partition, s.qos, s.nodelist = a.nodes, s.job_id = a.job_id
          FROM slurm_accounting s JOIN attempts a ON a.id = s.attempt_id JOIN cells c ON c.id = a.cell_id ORDER BY c.gpu_type")
check_eq "MaxRSS >= the 120 MiB held and within the request; Elapsed = end - start; GPUs, partition, QOS, nodes" \
"a100|COMPLETED|1|1|1|1|a100|normal|1|1
cpu|COMPLETED|1|1|1|0|cpu|normal|1|1" "$rows"
[ "$(echo "$rows" | head -1)" = "a100|COMPLETED|1|1|1|1|a100|normal|1|1" ] || q "SELECT * FROM accounting_cells" | sed 's/^/# /'
check_eq "queue wait = start - eligible, CPU efficiency in (0, 1], memory headroom in [0, 1)" 2 \
  "$(q "SELECT count(*) FROM accounting_cells WHERE queue_wait_s >= 0 AND cpu_efficiency > 0 AND cpu_efficiency <= 1 AND mem_headroom >= 0 AND mem_headroom < 1")"
out=$("$SEGX" report queue 2>&1); rc=$?
check_eq "report queue exits 0" 0 "$rc"
check_eq "report queue: one row per GPU type and partition, jobs 1 each" "a100 a100 1
cpu cpu 1" "$(echo "$out" | awk 'NR > 1 {print $1, $2, $3}')"
out=$("$SEGX" report usage --format csv 2>&1)
gpu_h=$(q "SELECT round(elapsed_s / 3600.0, 3) FROM slurm_accounting WHERE partition = 'a100'")
check_eq "report usage: the a100 row's GPU-hours are its Elapsed x 1 GPU" "a100,1,$gpu_h" \
  "$(echo "$out" | awk -F, '$1 == "a100" {print $1 "," $2 "," $4}' | sed 's/,0*\([0-9]\)/,\1/g')"
"$SEGX" collect acc >/dev/null 2>&1
check_eq "collect again: nothing imported twice" 2 "$(q "SELECT count(*) FROM slurm_accounting")"

# The same through slurm-rest: accounting comes from slurmrestd's slurmdb API (GET /slurmdb/v0.0.38/jobs),
# not sacct (a sacct that fails is first on PATH), and says what sacct says for the same jobs.
if [ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ]; then
  sed 's/"name": "acc"/"name": "accr"/' acc.json >accr.json
  "$SEGX" plan accr.json >/dev/null 2>&1
  out=$("$SEGX" submit accr --backend slurm-rest 2>&1) || fail "submit through slurm-rest" "$out"
  for _ in $(seq 1 600); do "$SEGX" status accr 2>/dev/null | grep -q "2 cells: 2 completed" && break; sleep 0.5; done
  mkdir -p nosacct && printf '#!/bin/sh\necho "sacct: error: not here" >&2; exit 1\n' >nosacct/sacct && chmod +x nosacct/sacct
  out=$(PATH=$TEST_TMP/nosacct:$PATH "$SEGX" collect accr 2>&1); rc=$?
  check_eq "slurm-rest: collect exits 0" 0 "$rc"
  check "slurm-rest: no accounting note (slurmrestd answered; sacct was not needed)" bash -c "! echo '$out' | grep -q 'accounting not imported'"
  sel="FROM slurm_accounting s JOIN attempts a ON a.id = s.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'accr'"
  check_eq "slurm-rest: one accounting row per attempt" 2 "$(q "SELECT count(*) $sel AND a.backend = 'slurm-rest'")"
  rows=$(q "SELECT c.gpu_type, s.state, s.max_rss_mb >= 120 AND s.max_rss_mb <= s.req_mem_mb, s.elapsed_s = a.end_time - a.start_time,
                 s.elapsed_s >= 3, s.alloc_gpus, s.partition, s.qos, s.nodelist = a.nodes, s.job_id = a.job_id $sel ORDER BY c.gpu_type")
  check_eq "slurm-rest: MaxRSS >= 120 MiB and within the request; Elapsed = end - start; GPUs, partition, QOS, nodes" \
"a100|COMPLETED|1|1|1|1|a100|normal|1|1
cpu|COMPLETED|1|1|1|0|cpu|normal|1|1" "$rows"
  # what sacct says for the same jobs: Elapsed, MaxRSS (largest step, MB), TotalCPU (s), ReqMem, AllocTRES
  mismatch=""
  while IFS='|' read -r jid el rss cpu req alloc; do
    s_el=$(sacct -n -P -X -j "$jid" --format=ElapsedRaw)
    s_rss=$(sacct -n -P -j "$jid" --format=MaxRSS | sed -n 's/K$//p' | sort -n | tail -1)
    s_req=$(sacct -n -P -X -j "$jid" --format=ReqMem)
    s_alloc=$(sacct -n -P -X -j "$jid" --format=AllocTRES)
    [ "$el" = "$s_el" ] || mismatch+=" job $jid Elapsed $el vs sacct $s_el;"
    [ "$(awk -v a="$rss" -v b="$s_rss" 'BEGIN {print (a * 1024 == b) ? 1 : 0}')" = 1 ] || mismatch+=" job $jid MaxRSS ${rss} MB vs sacct ${s_rss}K;"
    [ "$req" = "$(echo "$s_req" | awk '{v = $0 + 0; u = substr($0, length($0)); if (u == "G") v *= 1024; if (u == "T") v *= 1048576; print v}')" ] ||
      mismatch+=" job $jid ReqMem ${req}M vs sacct $s_req;"
    [ "$alloc" = "$s_alloc" ] || mismatch+=" job $jid AllocTRES $alloc vs sacct $s_alloc;"
  done < <(q "SELECT s.job_id, CAST(s.elapsed_s AS INTEGER), s.max_rss_mb, s.total_cpu_s, CAST(s.req_mem_mb AS INTEGER), s.alloc_tres $sel")
  check_eq "slurm-rest: Elapsed, MaxRSS, ReqMem and AllocTRES equal sacct's for the same jobs" "" "$mismatch"
  cpu_rest=$(q "SELECT group_concat(printf('%.2f', s.total_cpu_s)) $sel ORDER BY c.gpu_type")
  check "slurm-rest: TotalCPU > 0 for a job that allocated 120 MiB ($cpu_rest)" bash -c "echo '$cpu_rest' | tr , '\n' | awk '\$1 <= 0 {bad = 1} END {exit bad}'"
  # a slurmrestd without the slurmdb API (no openapi/dbv plugin: the fake serves only /slurm/...): sacct instead
  python3 "$SEGX_ROOT/tests/integration/slurm_rest_fake.py" emulate "$TEST_TMP/nodb.port" v0.0.41 2>nodb.log &
  fakepid=$!
  for _ in $(seq 1 300); do [ -s nodb.port ] && break; sleep 0.1; done
  sed 's/"name": "acc"/"name": "accf"/; s/"cpu", "a100"/"cpu"/' acc.json >accf.json
  "$SEGX" plan accf.json >/dev/null 2>&1
  "$SEGX" submit accf --backend slurm-rest >/dev/null 2>&1
  for _ in $(seq 1 600); do "$SEGX" status accf 2>/dev/null | grep -q "1 cells: 1 completed" && break; sleep 0.5; done
  out=$(SEGX_SLURMRESTD_URL=http://127.0.0.1:$(cat nodb.port) "$SEGX" collect accf 2>&1); rc=$?
  check_eq "slurmrestd without /slurmdb: collect exits 0" 0 "$rc"
  check "it was asked (GET /slurmdb/v0.0.41/jobs, 404)" grep -q '"GET /slurmdb/v0.0.41/jobs?step=[0-9]* HTTP/1.1" 404' nodb.log
  check_eq "and sacct filled the row instead (MaxRSS >= 120 MiB)" "1|1" \
    "$(q "SELECT count(*), max(s.max_rss_mb >= 120) FROM slurm_accounting s JOIN attempts a ON a.id = s.attempt_id JOIN cells c ON c.id = a.cell_id JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'accf'")"
  kill "$fakepid" 2>/dev/null
else
  skip "slurm-rest accounting: slurmrestd not installed"
fi

sacctmgr -i modify qos normal set MaxSubmitJobsPerUser=1 >/dev/null 2>&1
out=$("$SEGX" doctor --spec acc.json 2>&1)
case $out in *"accounting   accounting_storage/slurmdbd answers"*) pass "doctor: accounting answers";; *) fail "doctor: accounting answers" "$out";; esac
if [ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ]; then
  case $out in *"ok    slurmdb      slurmrestd's slurmdb API answers"*) pass "doctor: slurmrestd's slurmdb API answers";;
    *) fail "doctor: slurmrestd's slurmdb API answers" "$out";; esac
fi
case $out in *"warn  qos          QOS normal allows 1 submitted jobs per user, the plan has 2 cells"*"--max-submitted 1"*) pass "doctor: QOS MaxSubmitJobs below the plan, with the way out";;
  *) fail "doctor: QOS MaxSubmitJobs below the plan, with the way out" "$out";; esac
done_testing
