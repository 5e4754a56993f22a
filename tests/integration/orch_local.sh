#!/usr/bin/env bash
# segx plan + submit + status + collect with the local backend and a real (fake mmseg) external
# trainer: DB rows after a real run, idempotent plan/submit, --rerun-failed, metrics from the log,
# a hostile matrix value that must stay inert, and usage errors.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
cp "$SEGX_ROOT/examples/fake_mmseg_train.py" .
hostile="x'; touch $TEST_TMP/pwned; echo '"
cat >spec.json <<EOF
{"name": "orch-local",
 "trainer": {"command": "python3 fake_mmseg_train.py cfg.py --bs {{batch_per_gpu}} --lr {{lr}} --epochs {{epochs}} --seed {{seed}} --tag {{tag}} --fail-at {{fail_at}} --work-dir {{run_dir}}",
             "epochs": 2, "lr": 0.01,
             "metrics": {"epoch": "Epoch \\\\[(\\\\d+)\\\\]", "train_loss": "loss: ([0-9.]+)", "miou": "mIoU: ([0-9.]+)"}},
 "matrix": {"model": ["fcn"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2],
            "tag": ["plain", $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$hostile")], "fail_at": [0]},
 "include": [{"batch_per_gpu": 4, "seed": 1, "tag": "plain", "fail_at": 1}],
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1}}
EOF
q() { sqlite3 "$SEGX_DB" "$1"; }

# --- help and usage errors
check "segx --help exits 0" "$SEGX" --help
check "segx plan --help exits 0" "$SEGX" plan --help
out=$("$SEGX" plan spec.json --dry-rn 2>&1); rc=$?
check_eq "unknown option exits 2" 2 "$rc"
case $out in *"did you mean '--dry-run'"*) pass "unknown option suggests --dry-run";; *) fail "unknown option suggests --dry-run" "$out";; esac
sed 's/"matrix"/"matirx"/' spec.json >typo.json
out=$("$SEGX" plan typo.json 2>&1); rc=$?
check_eq "misspelt key exits 2" 2 "$rc"
case $out in *"typo.json:5:2: matirx: unknown key 'matirx' (did you mean 'matrix'?)"*) pass "misspelt key: file:line:col and suggestion";;
  *) fail "misspelt key: file:line:col and suggestion" "$out";; esac
check_eq "a bad spec writes no DB" "no" "$([ -e "$SEGX_DB" ] && echo yes || echo no)"
# An error found only when rendering (a cell that does not fit the cluster profile: the local
# profile's cpu nodes have 4 ranks) is bad input too: no DB file, no run dirs.
sed 's/"gpu_type": \["cpu"\],/"gpu_type": ["cpu"], "gpus": [64],/' spec.json >toobig.json
out=$("$SEGX" plan toobig.json 2>&1); rc=$?
check_eq "a cell too big for the profile exits 2" 2 "$rc"
case $out in *"64 cpu GPUs per node requested but its nodes have 4"*) pass "render error names the cell and the profile";;
  *) fail "render error names the cell and the profile" "$out";; esac
check_eq "a render-time error creates no DB and no run dir" "no:no" "$([ -e "$SEGX_DB" ] && echo yes || echo no):$([ -e runs ] && echo yes || echo no)"
# ... also when plan leaves the job scripts to submit (it renders one cell of each shape)
out=$("$SEGX" plan toobig.json --scripts none 2>&1); rc=$?
case $rc:$out in 2:*"64 cpu GPUs per node requested but its nodes have 4"*) pass "--scripts none: the render error, exit 2";;
  *) fail "--scripts none: the render error, exit 2" "$rc: $out";; esac
check_eq "--scripts none: no DB, no run dir" "no:no" "$([ -e "$SEGX_DB" ] && echo yes || echo no):$([ -e runs ] && echo yes || echo no)"
out=$("$SEGX" plan spec.json --scripts some 2>&1); rc=$?
case $rc:$out in 2:*"--scripts 'some': expected all, none or auto"*) pass "a bad --scripts exits 2 and names it";;
  *) fail "a bad --scripts exits 2 and names it" "$rc: $out";; esac

# --- plan (twice: the second adds nothing)
out=$("$SEGX" plan spec.json --dry-run 2>&1)
check_eq "dry run writes nothing" "no:no" "$([ -e "$SEGX_DB" ] && echo yes || echo no):$([ -e runs ] && echo yes || echo no)"
out=$("$SEGX" plan spec.json 2>&1); rc=$?
check_eq "plan exits 0" 0 "$rc"
case $out in *"5 cells (5 new)"*) pass "plan: 5 cells, 5 new";; *) fail "plan: 5 cells, 5 new" "$out";; esac
check_eq "5 cells in the DB" 5 "$(q 'SELECT count(*) FROM cells')"
check_eq "5 job scripts" 5 "$(ls runs/orch-local/*/attempt-1/job.sh | wc -l)"
out=$("$SEGX" plan spec.json 2>&1)
case $out in *"5 cells (0 new)"*) pass "re-plan adds 0 cells";; *) fail "re-plan adds 0 cells" "$out";; esac
# ... and with a DB already there, it changes nothing stored (the file and its content, WAL included)
cp "$SEGX_DB" before.db; sqlite3 "$SEGX_DB" .dump >before.sql
out=$("$SEGX" plan toobig.json 2>&1); rc=$?
check_eq "render error with an existing DB exits 2" 2 "$rc"
check "render error: DB file byte-identical" cmp "$SEGX_DB" before.db
check "render error: DB content unchanged" cmp <(sqlite3 "$SEGX_DB" .dump) before.sql
check_eq "still 5 cells" 5 "$(q 'SELECT count(*) FROM cells')"
out=$("$SEGX" status --json)
check_eq "status before submit: 5 planned" 5 "$(echo "$out" | python3 -c 'import json,sys; print(sum(r["state"]=="planned" for r in json.load(sys.stdin)))')"

# --- submit, wait, check DB rows and files
out=$("$SEGX" submit orch-local --backend local --max-parallel 2 2>&1); rc=$?
check_eq "submit exits 0" 0 "$rc"
case $out in *"5 submitted"*) pass "5 jobs submitted";; *) fail "5 jobs submitted" "$out";; esac
out=$("$SEGX" submit --backend local 2>&1)
case $out in *"0 submitted"*) pass "submit again submits nothing";; *) fail "submit again submits nothing" "$out";; esac
for _ in $(seq 1 1200); do
  st=$("$SEGX" status --format csv | tail -n +2 | grep -cE ',(submitted|pending|running),')
  [ "$st" = 0 ] && break; sleep 0.5
done
out=$("$SEGX" status 2>&1)
case $out in *"5 cells: 4 completed, 1 failed"*) pass "status summary: 4 completed, 1 failed";; *) fail "status summary: 4 completed, 1 failed" "$out";; esac
check_eq "attempts: 5 local rows with job ids" "5|5|5" "$(q "SELECT count(*), count(job_id), count(DISTINCT job_id) FROM attempts WHERE backend='local'")"
check_eq "attempt times ordered" 5 "$(q 'SELECT count(*) FROM attempts WHERE submit_time <= start_time + 1 AND start_time <= end_time')"
check_eq "exit codes" "0|4
3|1" "$(q 'SELECT exit_code, count(*) FROM attempts GROUP BY exit_code ORDER BY exit_code')"
reason=$(q "SELECT reason FROM attempts WHERE state='failed'")
case $reason in "exit code 3: "*"CUDA out of memory (fake) at epoch 1"*) pass "failure reason: exit code + stderr tail";; *) fail "failure reason: exit code + stderr tail" "$reason";; esac
check_eq "cells.state follows attempts" "completed|4
failed|1" "$(q 'SELECT state, count(*) FROM cells GROUP BY state ORDER BY state')"
check_eq "every run dir has exit_code" 5 "$(ls runs/orch-local/*/attempt-1/exit_code | wc -l)"
# metrics from the log: loss = 1/(epoch*bs/8), mIoU = 0.1*epoch + 10*lr
rd=$(q "SELECT a.run_dir FROM attempts a JOIN cells c ON c.id=a.cell_id WHERE c.seed=2 AND a.state='completed' LIMIT 1")
check_eq "metrics.jsonl has 2 epochs" 2 "$(wc -l <"$rd/metrics.jsonl")"
check_eq "parsed epoch 2 values" "2 0.5 0.3" "$(tail -1 "$rd/metrics.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["epoch"], r["train_loss"], r["miou"])')"
check_eq "stdout.log kept" 11 "$(wc -l <"$rd/stdout.log")"
check_eq "status --json: progress from metrics.jsonl" "epoch 2/2:4" "$("$SEGX" status --json | python3 -c 'import json,sys
rows=json.load(sys.stdin); p=[r["progress"] for r in rows if r["state"]=="completed"]; print("%s:%d" % (p[0], p.count(p[0])))')"
check_eq "status --watch returns once all settled" 0 "$(timeout 10 "$SEGX" status --watch >/dev/null 2>&1; echo $?)"

# --- the hostile tag reached the trainer as one argument and ran nothing
check_eq "no injected command ran" "no" "$([ -e "$TEST_TMP/pwned" ] && echo yes || echo no)"
got=$(cat runs/orch-local/*/attempt-1/args.json | python3 -c 'import json,sys
for l in sys.stdin.read().replace("}{","}\n{").splitlines(): print(json.loads(l)["tag"])' | grep -c "touch")
check_eq "hostile tag arrived verbatim" 2 "$got"

# --- collect (h2) and rerun-failed
if "$SEGX" collect orch-local >/dev/null 2>&1; then
  check_eq "collect: 8 epoch rows" 8 "$(q 'SELECT count(*) FROM epochs')"
else skip "segx collect not available"; fi
out=$("$SEGX" submit --backend local --rerun-failed 2>&1)
case $out in *"1 submitted"*) pass "--rerun-failed submits the failed cell";; *) fail "--rerun-failed submits the failed cell" "$out";; esac
check_eq "second attempt recorded" "2|submitted" "$(q "SELECT attempt, state FROM attempts WHERE attempt=2")"
check_eq "attempt-2 job script rendered" yes "$(ls runs/orch-local/*/attempt-2/job.sh >/dev/null 2>&1 && echo yes || echo no)"
for _ in $(seq 1 600); do
  "$SEGX" status >/dev/null   # polls the backend and stores the state
  [ "$(q "SELECT state FROM attempts WHERE attempt=2")" = failed ] && break; sleep 0.5
done
check_eq "attempt 2 failed again" failed "$(q "SELECT state FROM attempts WHERE attempt=2")"

# --- segx logparse on its own: no epoch rule = one record per matching line; bad rules exit 2
got=$(printf 'a\nval mIoU: 0.5 top1: 7\nnoise\nval mIoU: 0.25\n' | "$SEGX" logparse --rules '{"miou": "mIoU: ([0-9.]+)", "top1": "top1: (\\d+)"}' |
  python3 -c 'import json,sys; print(";".join("%s/%s" % (r["miou"], r.get("top1")) for r in map(json.loads, sys.stdin)))')
check_eq "logparse: one record per matching line" "0.5/7;0.25/None" "$got"
check_eq "logparse: a rule without a group exits 2" 2 "$(echo x | "$SEGX" logparse --rules '{"miou": "mIoU"}' >/dev/null 2>&1; echo $?)"

# --- the agent does not outlive its work
for _ in $(seq 1 600); do [ -e runs/.local/agent.pid ] || break; sleep 0.1; done
check_eq "local agent exited when idle" no "$([ -e runs/.local/agent.pid ] && echo yes || echo no)"
# --- a job outlives a killed agent: status settles it from the run dir's exit_code
cat >agentkill.json <<'EOF2'
{"name": "agent-kill", "trainer": {"command": "python3 fake_mmseg_train.py cfg.py --bs {{batch_per_gpu}} --epochs 1 --sleep 0.5 --work-dir {{run_dir}}"},
 "matrix": {"batch_per_gpu": [8]}, "resources": {"time": "00:05:00"}}
EOF2
# (planned with --scripts none: submit writes the job script when it sends the cell)
out=$("$SEGX" plan agentkill.json --scripts none 2>&1)
case $out in *"job scripts are written when cells are submitted (--scripts none"*) pass "plan --scripts none says who writes the scripts";;
  *) fail "plan --scripts none says who writes the scripts" "$out";; esac
check_eq "plan --scripts none writes no job script" no "$(ls runs/agent-kill/*/attempt-1/job.sh >/dev/null 2>&1 && echo yes || echo no)"
"$SEGX" submit agent-kill --backend local >/dev/null
check_eq "submit wrote the job script" yes "$(ls runs/agent-kill/*/attempt-1/job.sh >/dev/null 2>&1 && echo yes || echo no)"
for _ in $(seq 1 3000); do [ "$(q "SELECT a.state FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='agent-kill'")" = running ] && break; "$SEGX" status agent-kill >/dev/null; sleep 0.1; done
apid=$(cat runs/.local/agent.pid 2>/dev/null)
[ -n "$apid" ] && kill -9 "$apid"
for _ in $(seq 1 3000); do [ -e runs/agent-kill/*/attempt-1/exit_code ] && break; sleep 0.1; done
"$SEGX" status agent-kill >/dev/null
check_eq "killed agent: job settled from exit_code" "completed|0" "$(q "SELECT a.state, a.exit_code FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='agent-kill'")"

check_eq "unknown experiment exits 2" 2 "$("$SEGX" status nope >/dev/null 2>&1; echo $?)"

# --- cancel and resubmit on the local backend: a running job cancelled, then submitted again
cat >cancel.json <<'EOF2'
{"name": "cancel-me", "trainer": {"command": "python3 fake_mmseg_train.py cfg.py --bs {{batch_per_gpu}} --epochs 1 --sleep 30 --work-dir {{run_dir}}"},
 "matrix": {"batch_per_gpu": [8]}, "resources": {"time": "00:05:00"}}
EOF2
cq() { q "SELECT a.attempt || ':' || a.state FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='cancel-me' ORDER BY a.attempt"; }
"$SEGX" plan cancel.json >/dev/null && "$SEGX" submit cancel-me --backend local >/dev/null
for _ in $(seq 1 3000); do "$SEGX" status cancel-me >/dev/null; [ "$(cq)" = 1:running ] && break; sleep 0.1; done
out=$("$SEGX" cancel cancel-me 2>&1); rc=$?
check_eq "cancel exits 0" 0 "$rc"
case $out in *"cancel-me: 1 cancelled"*) pass "cancel reports 1 cancelled";; *) fail "cancel reports 1 cancelled" "$out";; esac
check_eq "cancelled attempt recorded" "1:cancelled" "$(cq)"
out=$("$SEGX" resubmit cancel-me --failed --dry-run 2>&1); rc=$?
check_eq "resubmit --dry-run exits 0 and submits nothing" "0:1:cancelled" "$rc:$(cq)"
out=$("$SEGX" resubmit cancel-me --failed 2>&1); rc=$?
check_eq "resubmit exits 0" 0 "$rc"
check_eq "resubmit: attempt 2 via the local backend" "2|local" "$(q "SELECT max(a.attempt), a.backend FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='cancel-me'")"
"$SEGX" cancel cancel-me >/dev/null 2>&1
for c in cancel resubmit; do
  extra=; [ $c = resubmit ] && extra=--failed
  out=$("$SEGX" $c nope $extra 2>&1); rc=$?
  check_eq "$c: unknown experiment exits 2" 2 "$rc"
  case $out in *"segx $c: no experiment named 'nope'"*) pass "$c names the unknown experiment";; *) fail "$c names the unknown experiment" "$out";; esac
  out=$("$SEGX" $c --db "$TEST_TMP/missing.db" $extra 2>&1); rc=$?
  check_eq "$c: a missing DB exits 1" 1 "$rc"
  case $out in *"segx $c: "*missing.db*) pass "$c names the missing DB";; *) fail "$c names the missing DB" "$out";; esac
done
check_eq "submit --max-submitted -1 is bad input (exit 2)" 2 "$("$SEGX" submit --max-submitted -1 >/dev/null 2>&1; echo $?)"
check "submit --help documents --max-submitted" sh -c "'$SEGX' submit --help | grep -q -- '--max-submitted N'"
done_testing
