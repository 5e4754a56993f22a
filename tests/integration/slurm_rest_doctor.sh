#!/usr/bin/env bash
# segx doctor on a private local Slurm cluster set up wrong on purpose (PreemptMode=CANCEL,
# MaxArraySize=4) with a plan of 6 cells and a slurmrestd token about to expire: it warns about each,
# with what to do, and still passes (warnings); libslurm matches this slurmctld's release. Without
# slurmrestd where SEGX_SLURMRESTD_URL points, the slurm-rest check fails and names the URL. This
# cluster has no slurmdbd: collect says so once and succeeds; report queue says how to get accounting.
# With a container in the spec, a short test job (through slurm-rest, and the default backend) looks for
# the runtime and image on a compute node: found, a runtime missing, an image missing.
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

# the container runtime and image on a compute node: one short test job through slurm-rest
mkdir -p img
mk() { # NAME RUNTIME IMAGE
  cat >"$1.json" <<JSON
{"name": "$1", "trainer": {"command": "true {{run_dir}}", "launch": "once"}, "container": {"runtime": "$2", "image": "$3"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]}, "resources": {"time": "00:05:00"}, "cluster": "local"}
JSON
}
mk cg charliecloud "$TEST_TMP/img"
tok=$(scontrol token lifespan=7200)
out=$(SLURM_JWT=${tok#SLURM_JWT=} SEGX_SLURMRESTD_URL=$REST "$SEGX" doctor --spec cg.json --backend slurm-rest 2>&1); rc=$?
check_eq "runtime and image present on the node: doctor exits 0" 0 "$rc"
case $(line node-check) in *ok*"ch-run on compute node $(hostname): "*"(test job "*" via slurm-rest)"*) pass "the test job ran ch-run --version on a compute node";;
  *) fail "the test job ran ch-run --version on a compute node" "$out";; esac
case $(line node-image) in *ok*"$TEST_TMP/img readable on compute node"*) pass "and found the image there";; *) fail "and found the image there" "$out";; esac
# wrong on purpose: a runtime the nodes do not have, an image that is not there
mk cb apptainer "$TEST_TMP/no-such-image.sif"
command -v apptainer >/dev/null && skip "apptainer is installed here: no missing runtime to find" || {
  out=$(SLURM_JWT=${tok#SLURM_JWT=} SEGX_SLURMRESTD_URL=$REST "$SEGX" doctor --spec cb.json --backend slurm-rest 2>&1); rc=$?
  check_eq "runtime and image missing: doctor exits 1" 1 "$rc"
  case $(line node-check) in *FAIL*"apptainer is not on PATH on compute node $(hostname) (test job "*"via slurm-rest)"*"modules"*)
    pass "the node's missing runtime named, with the node, the job and what to do";; *) fail "the node's missing runtime named" "$out";; esac
}
mk ci charliecloud "$TEST_TMP/no-such-image"
out=$("$SEGX" doctor --spec ci.json 2>&1); rc=$?
check_eq "image missing: doctor exits 1" 1 "$rc"
case $(line node-image) in *FAIL*"$TEST_TMP/no-such-image is not readable on compute node"*"put the image where the nodes see it"*)
  pass "the image missing on the node, through the default backend";; *) fail "the image missing on the node" "$out";; esac
out=$("$SEGX" doctor --spec ci.json --no-job 2>&1)
check_eq "--no-job: no test job" "" "$(echo "$out" | grep -E '^  [a-zA-Z]+ +node-')"
check_eq "the test jobs' folders are gone" "" "$(ls -d .segx-doctor-* 2>/dev/null)"
check_eq "no test job left pending or running" 0 "$(squeue -h -t PD,R -n segx-doctor | wc -l)"

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
