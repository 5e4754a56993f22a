#!/usr/bin/env bash
# slurmctld stopped while a slurm-rest submit is under way and started again (slurm/local-cluster
# start, with the caller's SLURM_JWT in the environment as a slurm-rest user has it): the submit
# (--max-submitted 2, so it is waiting and polling through slurmrestd when slurmctld goes) keeps
# retrying while slurmrestd answers 5xx, then goes on: every cell submitted exactly once, all
# complete. `segx status` during the outage keeps the stored states and says why.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
[ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ] ||
  skip_all "slurmrestd did not start (apt-get install slurmrestd slurm-wlm-jwt-plugin): $(tail -1 "$SLURM_CLUSTER_LOG")"
export SEGX_SLURMRESTD_URL=http://127.0.0.1:$((SEGX_SLURM_PORT + 9))
tok=$(scontrol token lifespan=3600 2>&1)
export SLURM_JWT=${tok#SLURM_JWT=}
export SEGX_SLURMRESTD_RETRY_S=300   # the outage is as long as the machine makes it: wait generously
restlog=$SEGX_SLURM_DIR/log/slurmrestd.log
cat >nap.sh <<'SH'
#!/bin/bash
echo "run ${SLURM_JOB_ID:-x}" >>"$1/ran.txt"
sleep "$2"
SH
cat >ck.json <<JSON
{"name": "ck",
 "trainer": {"command": "bash nap.sh {{run_dir}} 2", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3, 4, 5, 6]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan ck.json >/dev/null 2>&1
"$SEGX" submit ck --backend slurm-rest --max-submitted 2 >ck.out 2>&1 &
subpid=$!
for _ in $(seq 1 600); do [ "$(squeue -h -t all -o %k | grep -c '^segx:ck/')" -ge 2 ] && break; sleep 0.25; done
ctld=$(cat "$SEGX_SLURM_DIR/run/slurmctld.pid")
kill "$ctld"
for _ in $(seq 1 600); do kill -0 "$ctld" 2>/dev/null || break; sleep 0.1; done
check "slurmctld stopped while submit was under way" bash -c "! kill -0 $ctld 2>/dev/null"
# the submit must meet the outage: wait until slurmrestd has answered it at least twice more
seen=$(grep -c 'operations_router' "$restlog")
for _ in $(seq 1 600); do [ $(($(grep -c 'operations_router' "$restlog") - seen)) -ge 2 ] && break; sleep 0.25; done
check "submit kept asking slurmrestd while slurmctld was down" test $(($(grep -c 'operations_router' "$restlog") - seen)) -ge 2
check "submit still running (retrying), not failed" kill -0 "$subpid"
out=$("$SEGX" status ck 2>&1)
case $out in *"slurm-rest backend:"*"(states not refreshed)"*) pass "status during the outage: stored states, says why";;
  *) fail "status during the outage: stored states, says why" "$out";; esac
"$SEGX_ROOT/slurm/local-cluster" start >>"$SLURM_CLUSTER_LOG" 2>&1
check "slurmctld started again with the same configuration (SLURM_JWT in the caller's environment)" \
  bash -c "scontrol ping | grep -q 'is UP'"
[ "$(scontrol ping 2>&1 | grep -c 'is UP')" = 1 ] || tail -3 "$SEGX_SLURM_DIR/log/slurmctld.log" | sed 's/^/# /'
wait "$subpid"; rc=$?
check_eq "submit exits 0 across the slurmctld restart" 0 "$rc"
case $(cat ck.out) in *"6 submitted"*) pass "all 6 cells submitted";; *) fail "all 6 cells submitted" "$(cat ck.out)";; esac
check_eq "Slurm has exactly one job per cell" "6 6" \
  "$(squeue -h -t all -o %k | grep -c '^segx:ck/') $(squeue -h -t all -o %k | grep '^segx:ck/' | sort -u | wc -l)"
check_eq "one attempt per cell in the DB, each with its own job id" "6|6" \
  "$(sqlite3 "$SEGX_DB" "SELECT count(*), count(DISTINCT job_id) FROM attempts")"
for _ in $(seq 1 1200); do "$SEGX" status ck 2>/dev/null | grep -q "6 cells: 6 completed" && break; sleep 0.5; done
case $("$SEGX" status ck 2>&1) in *"6 cells: 6 completed"*) pass "all 6 completed";; *) fail "all 6 completed" "$("$SEGX" status ck 2>&1)";; esac
check_eq "each cell ran exactly once" "6" "$(cat runs/ck/*/attempt-1/ran.txt 2>/dev/null | wc -l)"
done_testing
