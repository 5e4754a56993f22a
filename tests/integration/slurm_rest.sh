#!/usr/bin/env bash
# The slurm-rest backend (slurmrestd, JWT) on a real private local Slurm cluster, with the checks the
# libslurm and CLI backends pass (slurm_segx.sh, slurm_array.sh, slurm_eval.sh): cells over three GPU
# types on the right nodes with their GPUs, a failing cell with its exit code, the submitting
# environment in the job, job arrays, eval jobs held by afterok, cancel; segx run with the real
# segx-train through collect. Then what must not lose or duplicate a job: slurmrestd stopped and
# started again while submit waits (--max-submitted), and a submit whose reply is lost followed by
# 503s (a proxy). Then bad input, each a clear error naming the URL and what to do: an expired and a
# wrong token, a server of another API version, an HTML page, a cut-short reply, broken JSON, 401.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/slurm_cluster.bash"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
slurm_cluster_start || skip_all "local Slurm cluster did not start: $(tail -1 "$SLURM_CLUSTER_LOG")"
[ -S "$SEGX_SLURM_DIR/rest/slurmrestd.socket" ] ||
  skip_all "slurmrestd did not start (apt-get install slurmrestd slurm-wlm-jwt-plugin): $(tail -1 "$SLURM_CLUSTER_LOG")"
REST=http://127.0.0.1:$((SEGX_SLURM_PORT + 9))
export SEGX_SLURMRESTD_URL=$REST
tok=$(scontrol token lifespan=3600 2>&1)
export SLURM_JWT=${tok#SLURM_JWT=}
check "scontrol token gives a JWT" test "$tok" != "$SLURM_JWT"
q() { sqlite3 "$SEGX_DB" "$1"; }
exp_rows() { q "SELECT $2 FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '$1' ${3:-}"; }
wait_settled() { # EXPERIMENT
  local n
  for _ in $(seq 1 240); do
    n=$("$SEGX" status "$1" --format csv 2>/dev/null | tail -n +2 | grep -cE ',(submitted|pending|running|unknown),')
    [ "$n" = 0 ] && return 0; sleep 0.5
  done
  return 1
}

cat >where.sh <<'SH'
#!/bin/bash
# where.sh RUN_DIR FAIL SLEEP: says where each rank ran and what it got from the submitting shell
echo "rank=${SLURM_PROCID:-x} node=${SLURMD_NODENAME:-x} cvd=${CUDA_VISIBLE_DEVICES:-none} part=${SLURM_JOB_PARTITION:-x}" >>"$1/where.txt"
echo "probe=${SEGX_REST_PROBE:-unset} jwt=${SLURM_JWT:+leaked}" >"$1/env.txt"
if [ "$2" = 1 ]; then echo "failing on purpose" >&2; exit 3; fi
sleep "$3"
SH
spec() { # NAME GPU_TYPES SLEEP
  cat >"$1.json" <<JSON
{"name": "$1",
 "trainer": {"command": "bash where.sh {{run_dir}} {{fail}} {{nap}}", "launch": "per-rank"},
 "matrix": {"model": ["m"], "gpu_type": $2, "gpus": [1, 2], "batch_per_gpu": [8], "seed": [1], "fail": [0], "nap": [$3]},
 "include": [{"model": "m", "gpu_type": "v100", "gpus": 1, "batch_per_gpu": 8, "seed": 2, "fail": 1, "nap": 0}],
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
}

# --- cells over three GPU types -------------------------------------------------------------
spec rs '["v100", "a100", "rtx8000"]' 0
"$SEGX" plan rs.json >/dev/null 2>&1
out=$(SEGX_REST_PROBE=42 "$SEGX" submit rs --backend slurm-rest 2>&1); rc=$?
check_eq "submit exits 0" 0 "$rc"
case $out in *"7 submitted"*"via slurm-rest"*) pass "7 submitted via slurm-rest";; *) fail "7 submitted via slurm-rest" "$out";; esac
wait_settled rs || fail "cells settle within 120 s" "$("$SEGX" status rs 2>&1 | tail -12)"
out=$("$SEGX" status rs 2>&1)
case $out in *"7 cells: 6 completed, 1 failed"*) pass "6 completed, 1 failed";; *) fail "6 completed, 1 failed" "$out";; esac
check_eq "7 attempts with distinct Slurm job ids, backend slurm-rest" "7|7|7" \
  "$(exp_rows rs "count(*), count(a.job_id), count(DISTINCT a.job_id)" "AND a.backend = 'slurm-rest'")"
check_eq "every cell ran on a node of its GPU type" 7 "$(exp_rows rs "c.gpu_type || ':' || a.nodes" | grep -cE '^(v100:n[12]|a100:n[34]|rtx8000:n5)$')"
two=$(exp_rows rs "a.run_dir" "AND c.gpus = 2 AND c.gpu_type = 'a100'")
check_eq "a100 x2 cell: ranks 0 and 1, CUDA_VISIBLE_DEVICES=0,1" "rank=0 cvd=0,1 part=a100
rank=1 cvd=0,1 part=a100" "$(sed -E 's/ node=[^ ]+//' "$two/where.txt" | sort)"
check_eq "the job got the submitting environment, not the token" "probe=42 jwt=" "$(cat "$two/env.txt")"
check_eq "failed attempt: exit 3 with the reason" "3|1" "$(exp_rows rs "a.exit_code, a.reason LIKE '%exit code 3%'" "AND a.state = 'failed'")"
check_eq "times ordered" 7 "$(exp_rows rs "count(*)" "AND a.submit_time <= a.start_time + 1 AND a.start_time <= a.end_time")"
check_eq "Slurm's comment carries each cell's key" 7 \
  "$(exp_rows rs "a.job_id || ' segx:rs/' || c.key || '/1'" | while read -r id want; do [ "$(squeue -h -j "$id" -t all -o %k)" = "$want" ] && echo ok; done | grep -c ok)"
out=$("$SEGX" resubmit rs --failed 2>&1)
case $out in *"1 submitted"*"via slurm-rest"*) pass "resubmit --failed goes through slurm-rest";; *) fail "resubmit --failed goes through slurm-rest" "$out";; esac
wait_settled rs
check_eq "attempt 2 ran and failed again" "2|failed|3" "$(exp_rows rs "a.attempt, a.state, a.exit_code" "AND a.attempt = 2")"

# --- job arrays ------------------------------------------------------------------------------
cat >nap.sh <<'SH'
#!/bin/bash
echo "${SLURM_ARRAY_JOB_ID:-none}_${SLURM_ARRAY_TASK_ID:-none} ${SLURM_JOB_PARTITION:-x}" >"$1/task.txt"
sleep "$2"
SH
cat >ra.json <<JSON
{"name": "ra",
 "trainer": {"command": "bash nap.sh {{run_dir}} 1", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3, 4]},
 "include": [{"model": "m", "gpu_type": "a100", "batch_per_gpu": 8, "seed": 9}],
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan ra.json >/dev/null 2>&1
out=$("$SEGX" submit ra --backend slurm-rest --array --array-throttle 2 2>&1); rc=$?
check_eq "submit --array exits 0" 0 "$rc"
case $out in *"submitted job array "*": 4 cells, throttled"*"submitted job array "*": 1 cells"*"5 submitted"*) pass "two arrays: 4 cpu cells, 1 a100 cell";;
  *) fail "two arrays: 4 cpu cells, 1 a100 cell" "$out";; esac
ids=$(exp_rows ra "a.job_id" "AND c.gpu_type = 'cpu' ORDER BY a.job_id")
arr=$(echo "$ids" | head -1 | cut -d_ -f1)
check_eq "the cpu cells are tasks 0-3 of one array" "${arr}_0 ${arr}_1 ${arr}_2 ${arr}_3" "$(echo $ids)"
check "Slurm has the array with throttle 2" bash -c "scontrol -o show job '$arr' | grep -q 'ArrayTaskThrottle=2'"
wait_settled ra
case $("$SEGX" status ra 2>&1) in *"5 cells: 5 completed"*) pass "all 5 array cells completed";; *) fail "all 5 array cells completed" "$("$SEGX" status ra 2>&1)";; esac
bad=0
while IFS='|' read -r job dir; do
  [ "$(cut -d' ' -f1 "$dir/task.txt" 2>/dev/null)" = "$job" ] && [ "$(cat "$dir/exit_code" 2>/dev/null)" = 0 ] || bad=$((bad + 1))
done < <(exp_rows ra "a.job_id || '|' || a.run_dir")
check_eq "every cell ran as its recorded array task, exit 0" 0 "$bad"
check_eq "the a100 cell ran in partition a100" a100 "$(cut -d' ' -f2 "$(exp_rows ra "a.run_dir" "AND c.gpu_type = 'a100'")/task.txt")"

# --- eval jobs: afterok on the train job ----------------------------------------------------------
cat >re.json <<JSON
{"name": "re",
 "trainer": {"command": "bash where.sh {{run_dir}} {{fail}} 1", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["a100"], "batch_per_gpu": [8], "fail": [0, 1]},
 "eval": {"job": {"command": "touch {{run_dir}}/evaluated", "time": "00:02:00"}},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan re.json >/dev/null 2>&1
out=$("$SEGX" submit re --backend slurm-rest 2>&1)
case $out in *"2 submitted"*"2 eval jobs (afterok)"*"via slurm-rest"*) pass "2 train jobs and 2 eval jobs submitted";; *) fail "2 train jobs and 2 eval jobs submitted" "$out";; esac
read -r t e < <(exp_rows re "a.job_id || ' ' || (SELECT job_id FROM eval_jobs WHERE attempt_id = a.id)" "AND json_extract(c.params, '$.fail') = 0")
check "Slurm holds the eval job with afterok on its train job" bash -c "scontrol -o show job '$e' | grep -qE 'Dependency=afterok:$t(\(unfulfilled\))? |JobState=(RUNNING|COMPLETED)'"
settled=0
for _ in $(seq 1 360); do
  "$SEGX" status re >/dev/null 2>&1
  [ "$(exp_rows re "count(*)" "AND (a.state IN ('submitted','pending','running','unknown') OR EXISTS (SELECT 1 FROM eval_jobs e WHERE e.attempt_id = a.id AND e.state IN ('submitted','pending','running','unknown')))")" = 0 ] && { settled=1; break; }
  sleep 0.5
done
check_eq "train and eval jobs settle" 1 "$settled"
ok_dir=$(exp_rows re "a.run_dir" "AND json_extract(c.params, '$.fail') = 0")
bad_dir=$(exp_rows re "a.run_dir" "AND json_extract(c.params, '$.fail') = 1")
check_eq "the good cell's eval job completed after its train job ended" "completed|completed|1" \
  "$(q "SELECT a.state || '|' || e.state || '|' || (e.start_time >= a.end_time) FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id WHERE a.run_dir = '$ok_dir'")"
st=$(q "SELECT e.state FROM eval_jobs e JOIN attempts a ON a.id = e.attempt_id WHERE a.run_dir = '$bad_dir'")
check_eq "the failed cell's eval job was cancelled for its dependency" cancelled "$st"
check "only the good cell was evaluated" bash -c "[ -e '$ok_dir/evaluated' ] && [ ! -e '$bad_dir/evaluated' ]"

# --- cancel ---------------------------------------------------------------------------------
spec rc '["cpu"]' 300
"$SEGX" plan rc.json >/dev/null 2>&1
"$SEGX" submit rc --backend slurm-rest >/dev/null 2>&1
for _ in $(seq 1 60); do [ "$("$SEGX" status rc --format csv | grep -c ',running,')" -ge 1 ] && break; sleep 0.5; done
ids=$(exp_rows rc "a.job_id")
out=$("$SEGX" cancel rc 2>&1); rc=$?
check_eq "cancel exits 0" 0 "$rc"
check_eq "DB: long cells cancelled, none left in flight" "2|0" \
  "$(q "SELECT sum(c.state = 'cancelled' AND json_extract(c.params, '$.fail') = 0), sum(c.state NOT IN ('cancelled', 'failed')) FROM cells c JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'rc'")"
alive=0
for _ in $(seq 1 20); do
  alive=$(for id in $ids; do squeue -h -j "$id" -t all -o %T 2>/dev/null; done | grep -cE 'RUNNING|PENDING')
  [ "$alive" = 0 ] && break; sleep 0.5
done
check_eq "Slurm has no running or pending job of the cancelled cells" 0 "$alive"

# --- slurmrestd stopped and started again while submit waits (--max-submitted 2) --------------
cat >rk.json <<JSON
{"name": "rk",
 "trainer": {"command": "bash nap.sh {{run_dir}} 2", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3, 4, 5, 6]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan rk.json >/dev/null 2>&1
"$SEGX" submit rk --backend slurm-rest --max-submitted 2 >rk.out 2>&1 &
subpid=$!
for _ in $(seq 1 120); do [ "$(squeue -h -t all -o %k | grep -c '^segx:rk/')" -ge 2 ] && break; sleep 0.25; done
restd=$(cat "$SEGX_SLURM_DIR/run/slurmrestd.pid")
kill "$restd"
for _ in $(seq 1 100); do kill -0 "$restd" 2>/dev/null || break; sleep 0.1; done
check "slurmrestd stopped while submit was waiting" bash -c "! kill -0 $restd 2>/dev/null"
"$SEGX_ROOT/slurm/local-cluster" start >>"$SLURM_CLUSTER_LOG" 2>&1
wait "$subpid"; rc=$?
check_eq "submit exits 0 across the restart" 0 "$rc"
case $(cat rk.out) in *"6 submitted"*) pass "all 6 cells submitted";; *) fail "all 6 cells submitted" "$(cat rk.out)";; esac
check_eq "Slurm has exactly one job per cell" "6 6" "$(squeue -h -t all -o %k | grep '^segx:rk/' | wc -l) $(squeue -h -t all -o %k | grep '^segx:rk/' | sort -u | wc -l)"
wait_settled rk
case $("$SEGX" status rk 2>&1) in *"6 cells: 6 completed"*) pass "all 6 completed";; *) fail "all 6 completed" "$("$SEGX" status rk 2>&1)";; esac

# --- a submit whose reply is lost, then two 503 pages (a proxy in front of slurmrestd) ----------
python3 "$SEGX_ROOT/tests/integration/slurm_rest_fake.py" lose "$TEST_TMP/lose.port" $((SEGX_SLURM_PORT + 9)) 2>lose.log &
fakes=($!)
for _ in $(seq 1 100); do [ -s lose.port ] && break; sleep 0.1; done
cat >rl.json <<JSON
{"name": "rl",
 "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8], "seed": [1, 2, 3]},
 "resources": {"time": "00:05:00", "cpus_per_gpu": 1},
 "cluster": "local"}
JSON
"$SEGX" plan rl.json >/dev/null 2>&1
out=$(SEGX_SLURMRESTD_URL=http://127.0.0.1:$(cat lose.port) "$SEGX" submit rl --backend slurm-rest 2>&1); rc=$?
check_eq "submit through the lossy proxy exits 0" 0 "$rc"
check "the proxy did drop a reply" grep -q "dropped the reply to submit #2" lose.log
check "and answered 503 after it" grep -q '" 503 ' lose.log
check_eq "3 submitted, 3 jobs in Slurm, one per cell" "3|3 3" \
  "$(exp_rows rl "count(DISTINCT a.job_id)")|$(squeue -h -t all -o %k | grep -c '^segx:rl/') $(squeue -h -t all -o %k | grep '^segx:rl/' | sort -u | wc -l)"
check_eq "the recorded job ids are the ones Slurm holds" 3 \
  "$(exp_rows rl "a.job_id || ' segx:rl/' || c.key || '/1'" | while read -r id want; do [ "$(squeue -h -j "$id" -t all -o %k)" = "$want" ] && echo ok; done | grep -c ok)"

# --- the unix socket (no URL) and API v0.0.37 ---------------------------------------------------
cat >ru.json <<JSON
{"name": "ru", "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]}, "resources": {"time": "00:05:00"}, "cluster": "local"}
JSON
"$SEGX" plan ru.json >/dev/null 2>&1
out=$(env -u SEGX_SLURMRESTD_URL SEGX_SLURMRESTD_API=v0.0.37 "$SEGX" submit ru --backend slurm-rest 2>&1); rc=$?
check_eq "through the local cluster's unix socket with API v0.0.37: submit exits 0" 0 "$rc"
for _ in $(seq 1 120); do env -u SEGX_SLURMRESTD_URL "$SEGX" status ru 2>&1 | grep -q "1 completed" && break; sleep 0.5; done
case $(env -u SEGX_SLURMRESTD_URL "$SEGX" status ru 2>&1) in *"1 completed"*) pass "and the cell completed";; *) fail "and the cell completed";; esac

# --- segx run with the real segx-train: plan, submit, wait, collect ------------------------------
if [ -x "$SEGX_TRAIN" ]; then
  cat >rt.json <<JSON
{"name": "rt", "trainer": {"dataset": "fashion-mnist", "epochs": 1, "optimizer": "adam", "lr": 0.001, "args": {"train-limit": 64}},
 "eval": {"limit": 32},
 "matrix": {"model": ["cnn"], "gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}, "cluster": "local"}
JSON
  out=$("$SEGX" run rt.json --backend slurm-rest --no-report 2>&1); rc=$?
  check_eq "segx run --backend slurm-rest exits 0" 0 "$rc"
  [ "$rc" = 0 ] || echo "$out" | tail -12 | sed 's/^/# /'
  check_eq "the cell completed through slurm-rest and collect stored its epoch" "completed|slurm-rest|1" \
    "$(q "SELECT c.state || '|' || a.backend || '|' || (SELECT count(*) FROM epochs) FROM cells c JOIN attempts a ON a.cell_id = c.id JOIN experiments x ON x.id = c.experiment_id WHERE x.name = 'rt'")"
else
  skip "segx-train is not built"
fi

# --- bad input: each error names the URL and what to do -------------------------------------------
"$SEGX" plan rl.json >/dev/null 2>&1
cat >rb.json <<JSON
{"name": "rb", "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu"], "batch_per_gpu": [8]}, "resources": {"time": "00:05:00"}, "cluster": "local"}
JSON
"$SEGX" plan rb.json >/dev/null 2>&1
bad() { # DESC EXPECTED-PATTERNS... -- ENV...: segx submit rb must fail with every pattern in its message
  local desc=$1; shift
  local pats=()
  while [ "$1" != -- ]; do pats+=("$1"); shift; done
  shift
  local out rc p
  out=$(env "$@" SEGX_SLURMRESTD_RETRY_S=2 "$SEGX" submit rb --backend slurm-rest 2>&1); rc=$?
  for p in "${pats[@]}"; do
    case $out in *"$p"*) ;; *) fail "$desc" "missing: $p" "rc $rc: $out"; return;; esac
  done
  [ "$rc" = 1 ] && pass "$desc" || fail "$desc" "exit $rc, not 1: $out"
}
b64() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1"; }
hdr=$(b64 '{"alg":"HS256","typ":"JWT"}')
expired="$hdr.$(b64 "{\"exp\":$(( $(date +%s) - 3600 )),\"iat\":$(( $(date +%s) - 7200 )),\"sun\":\"$(id -un)\"}").c2lnbmF0dXJl"
wrong="$hdr.$(b64 "{\"exp\":$(( $(date +%s) + 3600 )),\"iat\":$(date +%s),\"sun\":\"$(id -un)\"}").c2lnbmF0dXJl"
bad "expired token: says when, and how to get a new one" "SLURM_JWT expired at" "scontrol token" -- SLURM_JWT="$expired"
bad "wrong token: names the URL, the user and the way out" "$REST/slurm/v0.0.38/ping" "HTTP 500" "is wrong or expired" "SLURM_JWT" -- SLURM_JWT="$wrong"
bad "a URL that is not one" "not http://HOST:PORT" -- SEGX_SLURMRESTD_URL=ftp://example
bad "nothing listening: names the URL and the variable" "http://127.0.0.1:9/openapi/v3" "SEGX_SLURMRESTD_URL" -- SEGX_SLURMRESTD_URL=http://127.0.0.1:9
for mode in version html truncated badjson unauth; do
  rm -f "$mode.port"
  python3 "$SEGX_ROOT/tests/integration/slurm_rest_fake.py" "$mode" "$TEST_TMP/$mode.port" 2>"$mode.log" &
  fakes+=($!)
  for _ in $(seq 1 100); do [ -s "$mode.port" ] && break; sleep 0.1; done
done
U() { echo "http://127.0.0.1:$(cat "$1.port")"; }
bad "another API version: names what it offers and what segx speaks" "$(U version)" "offers API v0.0.99" "segx speaks v0.0.41" "slurm-cli" -- SEGX_SLURMRESTD_URL="$(U version)"
bad "an HTML page instead of JSON" "$(U html)/openapi/v3" "HTML page" "Sign in" "SEGX_SLURMRESTD_URL" -- SEGX_SLURMRESTD_URL="$(U html)"
bad "a reply cut short" "$(U truncated)/openapi/v3" "cut short after 200 bytes" -- SEGX_SLURMRESTD_URL="$(U truncated)"
bad "broken JSON" "$(U badjson)/openapi/v3" "broken JSON" "truncated?" -- SEGX_SLURMRESTD_URL="$(U badjson)"
bad "401: refused credentials, get a token" "$(U unauth)/openapi/v3" "HTTP 401" "refused the credentials" "export SLURM_JWT" -- SEGX_SLURMRESTD_URL="$(U unauth)"
bad "API version segx does not speak, asked for" "v0.0.12" "segx speaks" -- SEGX_SLURMRESTD_API=v0.0.12
check_eq "nothing of rb reached Slurm" 0 "$(squeue -h -t all -o %k | grep -c '^segx:rb/')"
check_eq "rb stays planned" planned "$(q "SELECT c.state FROM cells c JOIN experiments e ON e.id = c.experiment_id WHERE e.name = 'rb'")"
kill "${fakes[@]}" 2>/dev/null
done_testing
