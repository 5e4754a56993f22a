#!/usr/bin/env bash
# segx doctor on a private local Slurm cluster set up wrong on purpose (PreemptMode=CANCEL,
# MaxArraySize=4) with a plan of 6 cells and a slurmrestd token about to expire: it warns about each,
# with what to do, and still passes (warnings); libslurm matches this slurmctld's release. Without
# slurmrestd where SEGX_SLURMRESTD_URL points, the slurm-rest check fails and names the URL. This
# cluster has no slurmdbd: collect says so once and succeeds; report queue says how to get accounting.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
export SEGX_SLURM_EXTRA_CONF="PreemptType=preempt/partition_prio
PreemptMode=CANCEL
MaxArraySize=4"
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
[ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ] || skip_all "slurmrestd did not start (apt-get install slurmrestd slurm-wlm-jwt-plugin)"
cat >d.json <<'JSON'
{"name": "d", "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3, 4, 5, 6]},
 "resources": {"time": "00:05:00"}, "cluster": "local"}
JSON
REST=http://127.0.0.1:$((SEGX_SLURM_PORT + 9))
tok=$(scontrol token lifespan=600)
out=$(SLURM_JWT=${tok#SLURM_JWT=} SEGX_SLURMRESTD_URL=$REST "$SEGX" doctor --spec d.json 2>&1); rc=$?
check_eq "doctor exits 0 (warnings only)" 0 "$rc"
line() { echo "$out" | grep -E "^  [a-zA-Z]+ +$1 " | head -1; }
case $(line preemption) in *warn*"PreemptMode=CANCEL"*"segx resubmit --failed"*) pass "PreemptMode=CANCEL: warns, says what to do";;
  *) fail "PreemptMode=CANCEL: warns, says what to do" "$out";; esac
case $(line arrays) in *warn*"MaxArraySize=4"*"6 cells"*"groups of at most 3"*) pass "MaxArraySize below the plan: warns with the group size";;
  *) fail "MaxArraySize below the plan: warns with the group size" "$out";; esac
case $(line slurm-rest) in *warn*"$REST, API v0.0.38"*"expires in "*" min"*"lifespan"*) pass "a token about to expire: warns";;
  *) fail "a token about to expire: warns" "$out";; esac
case $(line libslurm) in *ok*"the release slurmctld runs"*) pass "libslurm matches slurmctld's release";;
  *) fail "libslurm matches slurmctld's release" "$out";; esac
case $(line database) in *ok*"local filesystem"*) pass "the DB is on a local filesystem";; *) fail "the DB is on a local filesystem" "$out";; esac
case $out in *"ready: 0 failed, 3 warnings"*) pass "3 warnings";; *) fail "3 warnings" "$out";; esac
out=$(SEGX_SLURMRESTD_URL=http://127.0.0.1:9 "$SEGX" doctor 2>&1); rc=$?
check_eq "slurmrestd not where SEGX_SLURMRESTD_URL points: doctor exits 1" 1 "$rc"
case $(line slurm-rest) in *FAIL*"http://127.0.0.1:9/openapi/v3"*"SEGX_SLURMRESTD_URL"*) pass "and names the URL";;
  *) fail "and names the URL" "$out";; esac

# no slurmdbd: one note from collect, nothing fails
"$SEGX" plan d.json >/dev/null 2>&1
"$SEGX" submit d --backend slurm >/dev/null 2>&1
for _ in $(seq 1 240); do "$SEGX" status d 2>/dev/null | grep -q "6 cells: 6 completed" && break; sleep 0.5; done
out=$("$SEGX" collect d 2>&1); rc=$?
check_eq "collect without slurmdbd exits 0" 0 "$rc"
check_eq "and says once why accounting was not imported" 1 "$(echo "$out" | grep -c 'accounting not imported for 6 Slurm attempts (sacct: .*disabled.*): `segx report queue/usage` need slurmdbd')"
out=$("$SEGX" report queue 2>&1); rc=$?
check_eq "report queue without accounting exits 1" 1 "$rc"
case $out in *"no Slurm accounting imported yet"*"--accounting"*) pass "and says how to get it";; *) fail "and says how to get it" "$out";; esac
done_testing
