#!/usr/bin/env bash
# A real segx-train cell, through real Slurm (private local cluster), interrupted twice mid-training:
#   1. `scancel --signal=USR1 --batch JOB` (what --signal=B:USR1@GRACE sends before the time limit):
#      the job script forwards USR1, the trainer checkpoints and exits 99, the script requeues;
#   2. `scontrol requeue JOB` (preemption): slurmd sends SIGTERM to every process of the job, the
#      trainer checkpoints and exits 99 within KillWait, Slurm requeues the job itself.
# Each run resumes from checkpoint.bin in the same run dir; between runs the run dir has no
# exit_code, so segx collect/status keep B open. The same cell run uninterrupted (experiment A)
# must end with byte-identical parameters (--save-params) and the same metrics; segx stitches B's
# runs into one logical run: one curve with each epoch once, the restarts in the DB, each run's
# time in runs.tsv, GPU-hours summed over the runs (segx collect reads runs.tsv).
# A is then requeued after it finished: its script must not train again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] || [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  skip_all "fashion-mnist is not installed in /usr/share/datasets/fashion-mnist"
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
q() { sqlite3 "$SEGX_DB" "$1"; }
cell_q() { # EXPERIMENT SQL_COLUMNS: one row of the experiment's single cell and attempt
  q "SELECT $2 FROM cells c JOIN attempts a ON a.cell_id=c.id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='$1'"
}
T0=$SECONDS
say() { echo "# [$((SECONDS - T0)) s] $*"; }
# The run is long enough (4 epochs of 93 steps, 2-6 s each on one core) to be interrupted twice
# mid-training (progress.json, polled for the step, is rewritten every 2 s). The sanitizer build
# trains at about the same speed here; its waits are longer all the same.
limit=3000
EPOCHS=4

# Two experiments whose single cells have identical parameters; each spec sits in its own folder,
# so the relative --save-params file lands beside it (A/params.bin, B/params.bin).
for e in A B; do
  mkdir -p "$e"
  cat >"$e/spec.json" <<JSON
{"name": "rq-$e",
 "trainer": {"command": "segx-train", "dataset": "fashion-mnist", "epochs": $EPOCHS, "optimizer": "sgd", "lr": 0.05,
             "args": {"train-limit": $limit, "checkpoint-every": "25s", "save-params": "params.bin"}},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [32], "seed": [7]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1},
 "eval": {"limit": 500},
 "cluster": "local"}
JSON
  out=$("$SEGX" plan "$e/spec.json" 2>&1) || fail "plan rq-$e" "$out"
done
check_eq "A and B have the same cell key (identical parameters)" \
  "$(q "SELECT c.key FROM cells c JOIN experiments e ON e.id=c.experiment_id WHERE e.name='rq-A'")" \
  "$(q "SELECT c.key FROM cells c JOIN experiments e ON e.id=c.experiment_id WHERE e.name='rq-B'")"
rdA=$(ls -d "$TEST_TMP"/runs/rq-A/*/attempt-1); rdB=$(ls -d "$TEST_TMP"/runs/rq-B/*/attempt-1)
check "the job script runs segx-train with --checkpoint-every and --resume" grep -q -- "'--checkpoint-every' '25s'.*'--out' '$rdB' '--resume'" "$rdB/job.sh"

# A through the sbatch/squeue backend, B through libslurm (the backend does not touch training)
for e in A:slurm-cli B:slurm; do
  out=$("$SEGX" submit "rq-${e%%:*}" --backend "${e#*:}" 2>&1)
  case $out in *"1 submitted"*"via ${e#*:}"*) ;; *) fail "submit rq-${e%%:*} via ${e#*:}" "$out";; esac
done
jobA=$(q "SELECT a.job_id FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='rq-A'")
jobB=$(q "SELECT a.job_id FROM attempts a JOIN cells c ON c.id=a.cell_id JOIN experiments e ON e.id=c.experiment_id WHERE e.name='rq-B'")
check_eq "both jobs are in Slurm, A via slurm-cli, B via slurm" "slurm-cli slurm" "$(cell_q rq-A a.backend) $(cell_q rq-B a.backend)"
say "A is job $jobA, B is job $jobB"

# job_field ID KEY: a field of `scontrol -o show job` (JobState, Restarts, ...)
job_field() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# progress_step DIR: the step in the trainer's progress.json (written every 2 s), or 0
progress_step() { sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$1/progress.json" 2>/dev/null | head -1 | grep . || echo 0; }
# wait_for SECONDS DESCRIPTION CMD...: polls CMD every 0.25 s; on timeout records a failure. After
# one timeout the run has gone wrong: later waits get 5 s, so the test ends soon with every failure.
stuck=0
wait_for() {
  local n=$(($1 * 4)) d=$2; shift 2
  [ "$stuck" = 1 ] && n=20
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.25; done
  stuck=1
  fail "$d (within $((n / 4)) s)" "job $jobB: $(scontrol -o show job "$jobB" 2>&1 | grep -oE 'JobState=[^ ]+|Restarts=[^ ]+|Reason=[^ ]+' | tr '\n' ' ')" \
    "progress: $(cat "$rdB/progress.json" 2>/dev/null)" "$(tail -3 "$rdB/stderr.log" 2>/dev/null)"
  return 1
}
running_restart() { [ "$(job_field "$jobB" JobState)" = RUNNING ] && [ "$(job_field "$jobB" Restarts)" = "$1" ]; }
past_step() { [ "$(progress_step "$rdB")" -ge "$1" ]; }
spe=$(( (limit + 31) / 32 ))   # steps per epoch
# Generous limits: these wait for states, and a loaded machine (CI beside other work) is slow.
wait_s=300; [ "$SEGX_SAN" = 1 ] && wait_s=600

# PENDING again: the requeued run's processes have all ended (COMPLETING until then)
requeued_pending() { [ "$(job_field "$jobB" JobState)" = PENDING ] && [ "$(job_field "$jobB" Restarts)" = "$1" ]; }

# --- interruption 1: USR1 to the batch script, as before a time limit ---------------------------
if wait_for "$wait_s" "B run 1 reaches step $((spe / 2))" past_step $((spe / 2)); then
  check "USR1 sent to B's batch script" scancel --signal=USR1 --batch "$jobB"
  say "USR1 sent at progress step $(progress_step "$rdB")"
fi
if wait_for "$wait_s" "B's run 1 ends and B is pending again after its own requeue" requeued_pending 1; then
  check "requeued by the job script: no exit_code in B's run dir between the runs" test ! -e "$rdB/exit_code"
fi
wait_for "$wait_s" "B is requeued by its job script and runs again (Restarts=1)" running_restart 1
say "B run 2 is running"

# --- interruption 2: scontrol requeue, as a preemption (SIGTERM to the whole job, KillWait=5) ---
if wait_for "$wait_s" "B run 2 reaches step $((spe + spe / 2))" past_step $((spe + spe / 2)); then
  check "scontrol requeue of the running B" scontrol requeue "$jobB"
  say "requeue at progress step $(progress_step "$rdB")"
fi
# Between the runs (the requeued job waits ~10 s for its begin time) the run dir must not say the
# job is over: an exit_code would make segx settle B as preempted while Slurm still runs it.
if wait_for "$wait_s" "B's run 2 ends and B is pending again after the requeue" requeued_pending 2; then
  check "requeued by Slurm: no exit_code in B's run dir between the runs" test ! -e "$rdB/exit_code"
  "$SEGX" collect rq-B >/dev/null 2>&1; "$SEGX" status rq-B >/dev/null 2>&1
  st=$(cell_q rq-B a.state)
  case $st in pending|submitted|running) pass "collect + status between the runs leave B open ($st)";;
    *) fail "collect + status between the runs leave B open" "state: $st" "$(job_field "$jobB" JobState)";; esac
fi
wait_for "$wait_s" "B is requeued by Slurm and runs again (Restarts=2)" running_restart 2
say "B run 3 is running"

# --- a requeue after the end: A has finished; Slurm runs its script again, which must not retrain
a_done() { [ "$(cat "$rdA/exit_code" 2>/dev/null)" = 0 ] && [ "$(job_field "$jobA" JobState)" = COMPLETED ]; }
if wait_for "$wait_s" "A completes" a_done; then
  cp "$rdA/result.json" resultA.before; cp "$rdA/metrics.jsonl" metricsA.before; cp A/params.bin paramsA.before
  check "scontrol requeue of the finished A" scontrol requeue "$jobA"
fi
a_rerun() { [ "$(job_field "$jobA" JobState)" = COMPLETED ] && [ "$(job_field "$jobA" Restarts)" = 1 ]; }

# --- both end -----------------------------------------------------------------------------------
settled() {
  local e n
  for e in rq-A rq-B; do
    n=$("$SEGX" status "$e" --format csv 2>/dev/null | tail -n +2 | grep -cE ',(completed|failed|cancelled|timeout|preempted|out-of-memory|node-fail),')
    [ "$n" = 1 ] || return 1
  done
}
wait_for "$wait_s" "A and B settle" settled
wait_for "$wait_s" "A's requeued run ends" a_rerun
say "settled"
for e in rq-A rq-B; do out=$("$SEGX" collect "$e" 2>&1) || fail "collect $e" "$out"; done
logB=$(cat "$rdB/slurm-$jobB.out" 2>/dev/null)
echo "$logB" | sed 's/^/# B job log: /'

check_eq "A and B completed, one attempt each, exit code 0" "completed|completed|0|1
completed|completed|0|1" "$(for e in rq-A rq-B; do cell_q "$e" "c.state, a.state, a.exit_code, (SELECT count(*) FROM attempts x WHERE x.cell_id=c.id)"; done)"
check_eq "B ran three times (Slurm Restarts=2)" 2 "$(job_field "$jobB" Restarts)"
case $(cell_q rq-B a.reason) in *"requeued 2 times"*) pass "the DB says B was requeued 2 times";;
  *) fail "the DB says B was requeued 2 times" "reason: $(cell_q rq-B a.reason)";; esac
check_eq "B's job log: 3 starts, USR1 requeued by the script, TERM requeued by Slurm, one end" \
  "start|SIGUSR1|requeueing job $jobB (restart 0)|start|SIGTERM|Slurm requeues job $jobB (restart 2)|start|end exit 0" \
  "$(echo "$logB" | sed -nE 's/^segx job: end .* (exit [0-9]+)$/end \1/p; s/^segx job: (start|SIGUSR1|SIGTERM) .*/\1/p; s/^segx job: (checkpointed \(exit 99\)|exit 99 after SIGTERM): (.*)$/\2/p' | paste -sd'|' |
     sed -E 's/(requeueing job [0-9]+ \(restart 0\))\|SIGTERM\|/\1|/')"   # the script's own requeue may TERM it too

# The trainer's log (stderr.log, appended by each run): each stop checkpointed mid-epoch at step N,
# and the next run resumed at exactly that step.
ck=$(sed -nE 's/.*stop requested by signal: checkpointed at step ([0-9]+) .*/\1/p' "$rdB/stderr.log" | paste -sd' ')
rs=$(sed -nE 's/.*resuming from .*, step ([0-9]+), trainer clock .*/\1/p' "$rdB/stderr.log" | paste -sd' ')
# The trainer's clock (seconds, as stored in each checkpoint): where each stop left it, where each run resumed
ckw=$(sed -nE 's/.*stop requested by signal: checkpointed at step [0-9]+ \(trainer clock ([0-9.]+) s\).*/\1/p' "$rdB/stderr.log" | paste -sd' ')
rsw=$(sed -nE 's/.*resuming from .*, trainer clock ([0-9.]+) s$/\1/p' "$rdB/stderr.log" | paste -sd' ')
say "checkpointed at steps: $ck; resumed at steps: $rs"
check "two signal checkpoints (USR1, TERM), mid-training" bash -c "set -- $ck; [ \$# = 2 ] && [ \$1 -gt 0 ] && [ \$1 -lt \$2 ] && [ \$2 -lt $((EPOCHS * spe)) ]"
check_eq "each run resumed from the step the previous one checkpointed" "$ck" "$rs"

# Same result as the uninterrupted run
check "final parameters of A and B are byte-identical (--save-params)" cmp A/params.bin B/params.bin
fin() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join("%s=%r" % (k, r.get(k)) for k in ("status","epochs","steps","train_loss","val_loss","top1")))' "$1"; }
check_eq "result.json: the same final metrics" "$(fin "$rdA/result.json")" "$(fin "$rdB/result.json")"
curve() { python3 -c 'import json,sys
for l in open(sys.argv[1]): r=json.loads(l); print(r["epoch"], r["step"], repr(r["train_loss"]), repr(r["val_loss"]), repr(r["top1"]))' "$1"; }
check_eq "metrics.jsonl: B has epochs 1..$EPOCHS once each, values equal to A's" "$(curve "$rdA/metrics.jsonl")" "$(curve "$rdB/metrics.jsonl")"
dbcurve() { cell_q "$1" "(SELECT group_concat(epoch || ':' || train_loss || ':' || val_loss || ':' || top1, ' ') FROM (SELECT * FROM cell_curve cc WHERE cc.cell_id=c.id ORDER BY cc.cell_wall_s))"; }
check_eq "DB cell_curve: B's stitched curve is A's (epoch:train_loss:val_loss:top1)" "$(dbcurve rq-A)" "$(dbcurve rq-B)"
check_eq "DB cell_curve: B has $EPOCHS points, epochs 1..$EPOCHS in time order" "$(seq -s, 1 $EPOCHS)" \
  "$(cell_q rq-B "(SELECT group_concat(epoch) FROM (SELECT epoch FROM cell_curve cc WHERE cc.cell_id=c.id ORDER BY cc.cell_wall_s))")"
check_eq "DB cell_metrics: B's final top1, val_loss, train_loss equal A's" \
  "$(cell_q rq-A "(SELECT top1 || '|' || val_loss || '|' || train_loss FROM cell_metrics m WHERE m.cell_id=c.id)")" \
  "$(cell_q rq-B "(SELECT top1 || '|' || val_loss || '|' || train_loss FROM cell_metrics m WHERE m.cell_id=c.id)")"

# GPU-hours: the runs' start and end times from the job log (second resolution), against the DB
runs=$(echo "$logB" | python3 -c 'import sys, re, datetime
t = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
start = None
for l in sys.stdin:
    m = re.match(r"segx job: (start|SIGUSR1 at|SIGTERM at|end) (\S+Z)", l)
    if not m: continue
    if m.group(1) == "start": start = t(m.group(2))
    elif start is not None: print("%d %d" % (start, t(m.group(2)))); start = None')
sum_runs=0; while read -r s0 s1; do sum_runs=$((sum_runs + s1 - s0)); done <<<"$runs"
read -r prev_end last_start last_end <<<"$(echo "$runs" | tail -2 | tr '\n' ' ' | awk '{print $2, $3, $4}')"
read -r db_start db_end slurm_s <<<"$(cell_q rq-B "CAST(a.start_time AS INT), CAST(a.end_time AS INT), CAST(a.end_time - a.start_time AS INT)" | tr '|' ' ')"
gpu_s=$(cell_q rq-B "(SELECT CAST(round(gpu_hours * 3600) AS INT) FROM cell_metrics m WHERE m.cell_id=c.id)")
say "B's runs (start end): $(echo $runs), $sum_runs s in all; DB: Slurm start $db_start end $db_end ($slurm_s s), gpu_hours*3600 $gpu_s s"
check_eq "B ran 3 times (job log)" 3 "$(echo "$runs" | grep -c .)"
# runs.tsv (restart, job, start, end, exit per run, written by the job script) says the same
check_eq "runs.tsv: B's 3 runs (restart, job, exit)" "0 $jobB 99
1 $jobB 99
2 $jobB 0" "$(awk -F'\t' '{print $1, $2, $5}' "$rdB/runs.tsv" 2>&1)"
# runs.tsv against the job log and the DB by order only (no margin that a slow machine can exceed).
# The job script logs "start" before it takes runs.tsv's start, logs a signal or "end" before it writes
# runs.tsv's end, and exits after that; the next run starts after this one ended; Slurm starts a run
# before its script and ends it after the script exits. All are whole unix seconds, truncated alike.
tsv=$(cut -f3,4 "$rdB/runs.tsv" | tr '\t' ' ')
check "runs.tsv: each run lies inside the job log's (start <= run start, signal or end <= run end <= next start)" \
  python3 -c 'import sys
log = [tuple(map(int, l.split())) for l in sys.argv[1].splitlines() if l.strip()]
tsv = [tuple(map(int, l.split())) for l in sys.argv[2].splitlines() if l.strip()]
assert len(log) == len(tsv) == 3, (log, tsv)
for i, ((ls, le), (ts, te)) in enumerate(zip(log, tsv)):
    assert ls <= ts <= le <= te, ("run", i, log[i], tsv[i])
    if i + 1 < len(log): assert te <= log[i + 1][0], ("run", i, "ends after the next starts", tsv[i], log[i + 1])' "$runs" "$tsv"
read -r tsv_prev_end tsv_last_start tsv_last_end <<<"$(echo "$tsv" | tail -2 | tr '\n' ' ' | awk '{print $2, $3, $4}')"
check "Slurm's start/end in the DB is B's last run (start between run 2's end and run 3's script start, end after run 3's end, before now)" \
  test "${db_start:-0}" -ge "${tsv_prev_end:-1}" -a "${db_start:-0}" -le "${tsv_last_start:-0}" -a "${db_end:-0}" -ge "${tsv_last_end:-1}" -a "${db_end:-0}" -le "$(date +%s)"
sum_tsv=0; while read -r s0 s1; do sum_tsv=$((sum_tsv + s1 - s0)); done <<<"$tsv"
# gpu_hours is the sum of runs.tsv's runs (1 GPU); rounding to whole seconds in the query is the only slack
check_eq "B's gpu_hours are the sum of its runs in runs.tsv ($sum_tsv s; the job log's runs: $sum_runs s)" "$sum_tsv" "${gpu_s:-none}"

# B's trainer clock continues across runs, checked without any assumption about the machine's speed:
# each run resumes at exactly the clock its predecessor checkpointed, each run adds time, and the final
# wall_s is the last resumed clock plus no more than the last run lasted (runs.tsv, whole seconds, +1).
wall_b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wall_s"])' "$rdB/result.json")
say "trainer clock at the stops: $ckw; at the resumes: $rsw; result.json wall_s $wall_b"
check_eq "each run resumes at the trainer clock its predecessor checkpointed" "$ckw" "$rsw"
check "B's trainer clock grows in every run and ends at the last resume + at most its last run ($((last_end - last_start)) s +1)" \
  python3 -c 'import sys
ck = [float(x) for x in sys.argv[1].split()]; rs = [float(x) for x in sys.argv[2].split()]
final, last_run = float(sys.argv[3]), int(sys.argv[4])
assert len(ck) == 2 and len(rs) == 2, (ck, rs)
assert 0 < ck[0] < ck[1], ck          # run 2 started at ck[0] and stopped later
assert rs[1] < final <= rs[1] + last_run + 1, (rs, final, last_run)' "$ckw" "$rsw" "$wall_b" "$((last_end - last_start))"

# A's requeue after its end ran nothing
check_eq "A's requeued run found exit_code 0 and ran nothing" 1 "$(grep -c 'requeued after the trainer had finished' "$rdA/slurm-$jobA.out")"
check "A's result.json, metrics.jsonl and params.bin are unchanged by the requeue" \
  bash -c "cmp resultA.before '$rdA/result.json' && cmp metricsA.before '$rdA/metrics.jsonl' && cmp paramsA.before A/params.bin"
check_eq "A's exit_code is still 0" 0 "$(cat "$rdA/exit_code" 2>/dev/null)"
say "total $((SECONDS - T0)) s"
done_testing
