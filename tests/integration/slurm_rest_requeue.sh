#!/usr/bin/env bash
# Requeue before the time limit through slurm-rest on the 22.05 slurmrestd, which refuses
# --signal=B:USR1@GRACE: the backend hands the job SEGX_BATCH_SIGNAL and the job script signals
# itself at the time limit less the grace (local profile: 10 s), as Slurm does for the other
# backends. A cell whose trainer runs in the batch shell (launch once: no job step a step signal
# could reach) gets USR1 before its 1-minute limit, "checkpoints" and exits 99; the script requeues
# the job; the second run finishes. Nothing times out; the cell completes with one restart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
[ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ] ||
  skip_all "slurmrestd did not start (apt-get install slurmrestd slurm-wlm-jwt-plugin): $(tail -1 "$SLURM_CLUSTER_LOG")"
cat >ck.sh <<'SH'
#!/bin/bash
# ck.sh RUN_DIR: the first run waits for USR1 (the time-limit warning), "checkpoints" and exits 99;
# a requeued run finishes at once
echo "run restart=${SLURM_RESTART_COUNT:-0}" >>"$1/ran.txt"
[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && exit 0
trap 'echo "usr1 after $SECONDS s" >>"$1/ran.txt"; exit 99' USR1
for _ in $(seq 1 3000); do sleep 0.2; done   # far past the 1-minute limit
exit 1
SH
cat >rq.json <<JSON
{"name": "rq", "trainer": {"command": "bash $TEST_TMP/ck.sh {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]},
 "resources": {"time": "00:01:00"}, "cluster": "local"}
JSON
"$SEGX" plan rq.json >/dev/null 2>&1
rd=$(ls -d "$TEST_TMP"/runs/rq/*/attempt-1)
check "the job script asks for --signal=B:USR1@10" grep -q -- '--signal=B:USR1@10' "$rd/job.sh"
out=$("$SEGX" submit rq --backend slurm-rest 2>&1)
case $out in *"1 submitted"*"slurm-rest"*) pass "submitted through slurm-rest";; *) fail "submitted through slurm-rest" "$out";; esac
job=$(sqlite3 "$SEGX_DB" "SELECT job_id FROM attempts")
for _ in $(seq 1 1200); do
  st=$("$SEGX" status rq --format csv 2>/dev/null | tail -n +2)
  case $st in *,completed,*|*,failed,*|*,timeout,*|*,preempted,*|*,cancelled,*) break;; esac
  sleep 0.5
done
check_eq "the cell completed (not timeout)" "completed" "$(sqlite3 "$SEGX_DB" "SELECT state FROM cells")"
check_eq "the trainer got USR1 before the limit and the requeued run finished" "run restart=0
usr1
run restart=1" "$(sed 's/^usr1 after .*/usr1/' "$rd/ran.txt" 2>/dev/null)"
# When: from the job log's own clock lines (the script starts its timer after logging "start"), so
# the check holds on a machine of any speed: USR1 came no sooner than the limit less the grace (50 s).
gap=$(python3 -c 'import sys, re, datetime
t = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
start = sig = None
for l in open(sys.argv[1], errors="replace"):
    m = re.match(r"segx job: (start|SIGUSR1 at) (\S+Z)", l)
    if m and m.group(1) == "start" and start is None: start = t(m.group(2))
    elif m and m.group(1) != "start" and sig is None: sig = t(m.group(2))
print(int(sig - start) if start is not None and sig is not None else "none")' "$rd/slurm-$job.out" 2>&1)
check "USR1 came at the limit less the grace, not at once (${gap} s after the job script started; 50 s asked)" test "$gap" -ge 50 2>/dev/null
check_eq "Slurm: the job completed after one restart" "COMPLETED 1" \
  "$(scontrol -o show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z]*\).* Restarts=\([0-9]*\).*/\1 \2/p')"
check_eq "runs.tsv: two runs of the job, the first ended 99" "0 99
1 0" "$(awk -F'\t' '{print $1, $5}' "$rd/runs.tsv" 2>/dev/null)"
done_testing
