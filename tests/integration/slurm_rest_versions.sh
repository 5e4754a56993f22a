#!/usr/bin/env bash
# The slurm-rest backend against the API versions of later Slurm releases (v0.0.39 23.02, v0.0.40
# 23.11, v0.0.41 24.05), each served by slurm_rest_fake.py in that version's shapes
# (slurm_rest_versions.json: the fields segx sends, their types, where the script goes, the jobs
# reply). The fake refuses any field or type its version does not have, so every submit body is
# checked against that version's description. Per version: segx picks it from /openapi/v3 (the newest
# it speaks when several are offered), submits a CPU cell and a 2-GPU cell, reads the jobs through
# pending/running/completed, and cancels. No Slurm needed.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
export SEGX_DB=$TEST_TMP/segx.db
q() { sqlite3 "$SEGX_DB" "$1"; }
b64() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1"; }
# a token the fake does not check, with the claims segx reads (user, expiry)
export SLURM_JWT="$(b64 '{"alg":"HS256","typ":"JWT"}').$(b64 "{\"exp\":$(( $(date +%s) + 3600 )),\"sun\":\"$(id -un)\"}").c2ln"
unset SLURM_CONF SEGX_SLURMRESTD_API
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
fake() { # NAME VERSION [ALSO_OFFERED...]: starts an emulating fake; its URL in $url
  local name=$1; shift
  python3 "$SEGX_ROOT/tests/integration/slurm_rest_fake.py" emulate "$TEST_TMP/$name.port" "$@" 2>"$name.log" &
  pids+=($!)
  for _ in $(seq 1 300); do [ -s "$name.port" ] && break; sleep 0.1; done
  url=http://127.0.0.1:$(cat "$name.port")
}

for v in v0.0.39 v0.0.40 v0.0.41; do
  e=e${v//./}
  extra=(); [ $v = v0.0.41 ] && extra=(v0.0.38 v0.0.99)   # several offered: the newest segx speaks
  fake "$e" "$v" "${extra[@]}"
  cat >"$e.json" <<JSON
{"name": "$e", "trainer": {"command": "true {{run_dir}}", "launch": "once"},
 "matrix": {"model": ["m"], "gpu_type": ["cpu", "a100"], "gpus": [2], "batch_per_gpu": [8]},
 "resources": {"time": "00:05:00", "mem_per_gpu": "1G"}, "eval": {"job": {"command": "true {{run_dir}}", "time": "00:02:00"}}, "cluster": "local"}
JSON
  "$SEGX" plan "$e.json" >/dev/null 2>&1
  out=$(SEGX_SLURMRESTD_URL=$url "$SEGX" submit "$e" --backend slurm-rest 2>&1); rc=$?
  check_eq "$v: submit exits 0" 0 "$rc"
  case $out in *"2 submitted"*) pass "$v: 2 cells submitted";; *) fail "$v: 2 cells submitted" "$out";; esac
  check_eq "$v: every body fits the version's description (none refused): 2 train, 2 eval jobs" "4 0" \
    "$(grep -c "submit: " "$e.log") $(grep -c "refused: " "$e.log")"
  grep "refused: " "$e.log" | head -3 | sed 's/^/# /'
  check_eq "$v: segx used /slurm/$v (offered: $v ${extra[*]})" "0" "$(grep -E '"(GET|POST) /slurm/' "$e.log" | grep -vc "/slurm/$v/")"
  gpu=$(grep 'submit: ' "$e.log" | sed 's/^.*submit: //' | python3 -c '
import json, sys
for line in sys.stdin:
    b = json.loads(line); j = b["job"]
    if j.get("partition") == "a100" and not j.get("dependency"):
        print(j.get("tres_per_node"), j.get("kill_warning_signal"), j["kill_warning_flags"][0], j["kill_warning_delay"]["number"],
              j.get("flags", ["-"])[0], j["time_limit"]["number"], j["memory_per_node"]["number"] > 0, isinstance(j["environment"], list),
              "script:" + ("job" if "script" in j else "top" if "script" in b else "none"))')
  where=top; [ $v = v0.0.41 ] && where=job
  check_eq "$v: the GPU cell as this version has it (tres_per_node, B:USR1@10 as kill_warning_*, flags, wrapped numbers, K=V list, script)" \
    "gres/gpu:a100:2 USR1 BATCH_JOB 10 - 5 True True script:$where" "$gpu"
  deps=$(grep 'submit: ' "$e.log" | sed 's/^.*submit: //' | python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)["job"]
    if j.get("dependency"): print(j["dependency"].split(":")[0], j["flags"][0])' | sort | uniq -c | awk '{print $1, $2, $3}')
  check_eq "$v: the eval jobs wait for their train jobs (afterok) and die with them (KILL_INVALID_DEPENDENCY as a job flag)" \
    "2 afterok KILL_INVALID_DEPENDENCY" "$deps"
  for _ in $(seq 1 20); do
    SEGX_SLURMRESTD_URL=$url "$SEGX" status "$e" 2>&1 | grep -q "2 cells: 2 completed" && break
  done
  out=$(SEGX_SLURMRESTD_URL=$url "$SEGX" status "$e" 2>&1)
  case $out in *"2 cells: 2 completed"*) pass "$v: the jobs reply read through pending, running, completed";;
    *) fail "$v: the jobs reply read through pending, running, completed" "$out";; esac
  check_eq "$v: start and end times and nodes from the wrapped numbers" "2" \
    "$(q "SELECT count(*) FROM attempts a JOIN cells c ON c.id = a.cell_id JOIN experiments x ON x.id = c.experiment_id
          WHERE x.name = '$e' AND a.start_time > 0 AND a.end_time >= a.start_time AND a.nodes = 'n1'")"
  # cancel: a fresh cell, still pending
  sed "s/\"name\": \"$e\"/\"name\": \"${e}c\"/; s/\"cpu\", \"a100\"/\"cpu\"/" "$e.json" >"${e}c.json"
  "$SEGX" plan "${e}c.json" >/dev/null 2>&1
  SEGX_SLURMRESTD_URL=$url "$SEGX" submit "${e}c" --backend slurm-rest >/dev/null 2>&1
  out=$(SEGX_SLURMRESTD_URL=$url "$SEGX" cancel "${e}c" 2>&1); rc=$?
  check_eq "$v: cancel exits 0" 0 "$rc"
  check "$v: the fake got the DELETE" grep -q "\"DELETE /slurm/$v/job/" "$e.log"
  check_eq "$v: the cell is cancelled" cancelled "$(q "SELECT c.state FROM cells c JOIN experiments x ON x.id = c.experiment_id WHERE x.name = '${e}c'")"
done

# status --watch --poll-interval: one GET /jobs per refresh for all the jobs, until they settle
log=e${v//./}.log   # the v0.0.41 fake's
sed 's/"name": "ev0041"/"name": "w"/' ev0041.json | sed 's/"gpus": \[2\]/"gpus": [1], "seed": [1, 2, 3]/' >w.json
"$SEGX" plan w.json >/dev/null 2>&1
SEGX_SLURMRESTD_URL=$url "$SEGX" submit w --backend slurm-rest >/dev/null 2>&1
g0=$(grep -c "\"GET /slurm/v0.0.41/jobs" "$log")
out=$(SEGX_SLURMRESTD_URL=$url timeout 300 "$SEGX" status w --watch --poll-interval 0.2 2>&1); rc=$?
g1=$(grep -c "\"GET /slurm/v0.0.41/jobs" "$log")
refreshes=$(echo "$out" | grep -c '^6 cells: ')
check_eq "status --watch --poll-interval 0.2 ends once all settled" "0 6 cells: 6 completed" "$rc $(echo "$out" | grep '^6 cells: ' | tail -1)"
check_eq "one GET /jobs per refresh for all 12 jobs ($refreshes refreshes)" "$refreshes" "$((g1 - g0))"
check "more than one refresh (the jobs went pending, running, completed)" test "$refreshes" -ge 2
out=$("$SEGX" status w --watch --poll-interval 0 2>&1); rc=$?
check_eq "--poll-interval 0: exit 2" 2 "$rc"
case $out in *"--poll-interval 0: give a number of seconds above 0"*) pass "and names the flag and value";; *) fail "and names the flag and value" "$out";; esac

# the emulator refuses what its version does not have: a v0.0.38 body sent to v0.0.41
fake old v0.0.41
code=$(curl -s -o old.out -w '%{http_code}' -X POST -H 'Content-Type: application/json' "$url/slurm/v0.0.41/job/submit" \
  -d '{"script": "#!/bin/sh\ntrue\n", "job": {"gres": "gpu:a100:2", "kill_on_invalid_dependency": true, "time_limit": 5, "environment": {"A": "b"}}}')
check_eq "a v0.0.38-shaped body to the v0.0.41 emulator: HTTP 400" 400 "$code"
for want in "unknown field job.gres" "unknown field job.kill_on_invalid_dependency" "job.time_limit: 5 is not of type no_val" \
            "job.environment" "the script belongs in job.script"; do
  check "  naming: $want" grep -q "$want" old.out
done
done_testing
