#!/usr/bin/env bash
# Slurm accounting on a private local cluster started with --accounting (MariaDB + slurmdbd,
# jobacct_gather/linux): segx collect imports, per attempt, what sacct says a real job used; MaxRSS
# of a job that holds 120 MiB is at least that and within its memory request; Elapsed is the job's
# end - start as segx recorded it from the scheduler; GPUs allocated, partition, QOS; segx report
# queue/usage summarise it per GPU type. Collect again imports nothing twice. segx doctor sees the
# accounting and a QOS whose MaxSubmitJobs is below the plan.
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
sacctmgr -i modify qos normal set MaxSubmitJobsPerUser=1 >/dev/null 2>&1
out=$("$SEGX" doctor --spec acc.json 2>&1)
case $out in *"accounting   accounting_storage/slurmdbd answers"*) pass "doctor: accounting answers";; *) fail "doctor: accounting answers" "$out";; esac
case $out in *"warn  qos          QOS normal allows 1 submitted jobs per user, the plan has 2 cells"*"--max-submitted 1"*) pass "doctor: QOS MaxSubmitJobs below the plan, with the way out";;
  *) fail "doctor: QOS MaxSubmitJobs below the plan, with the way out" "$out";; esac
done_testing
