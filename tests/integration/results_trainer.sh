#!/usr/bin/env bash
# The run-dir contract end to end: segx-train writes a real run dir (2 tiny epochs on
# fashion-mnist-seg, then a resumed attempt), the job's exit code goes beside it, and segx
# collect/report read it: one stitched curve, per-class IoU, result, environment, a failed
# attempt's stderr as its reason.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP"
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train not built"; done_testing; exit; fi
if [ ! -d /usr/share/datasets/fashion-mnist ]; then skip "no fashion-mnist"; done_testing; exit; fi
db=$TEST_TMP/t.db
runs=$TEST_TMP/runs/tr
sqlite3 "$db" <"$SEGX_ROOT/db/schema.sql"   # the schema segx plan would create
sqlite3 "$db" <<SQL
INSERT INTO experiments (id, name, spec_text, run_root, created_at, updated_at) VALUES (1, 'tr', '{}', '$runs', 0, 0);
INSERT INTO cells (id, experiment_id, key, params, group_key, scaling_key, model, gpu_type, gpus, batch_per_gpu, global_batch, seed, created_at)
  VALUES (1, 1, 'k1', '{}', 'g', 's', 'cnn', 'cpu', 1, 16, 16, 1, 0), (2, 1, 'k2', '{}', 'g2', 's', 'cnn', 'cpu', 1, 16, 16, 1, 0);
INSERT INTO attempts (cell_id, attempt, backend, state, run_dir) VALUES
  (1, 1, 'local', 'running', '$runs/k1/attempt-1'), (2, 1, 'local', 'running', '$runs/k2/attempt-1');
SQL
train() { # DIR EPOCHS [extra args]: runs segx-train as a job script would, exit code beside it
  local dir=$1 epochs=$2; shift 2
  mkdir -p "$dir"
  "$SEGX_TRAIN" --model unet --width 4 --dataset fashion-mnist-seg --epochs "$epochs" --batch-size 16 \
    --train-limit 64 --eval-limit 32 --threads 1 --seed 1 --out "$dir" "$@" >"$dir/stdout.log" 2>"$dir/stderr.log"
  echo $? >"$dir/exit_code"
}
train "$runs/k1/attempt-1" 1 --checkpoint-every 1e
# Requeued after a checkpoint: attempt-2 resumes from attempt-1's checkpoint and finishes epoch 2;
# segx collect finds the attempt-2 dir (no row yet) by itself.
mkdir -p "$runs/k1/attempt-2"
cp "$runs/k1/attempt-1/checkpoint.bin" "$runs/k1/attempt-2/"
train "$runs/k1/attempt-2" 2 --resume --checkpoint-every 1e
# A run that fails: an unknown model.
train "$runs/k2/attempt-1" 1 --model nosuchmodel

check "collect reads the trainer's run dirs" "$SEGX" collect --db "$db" -q
check_eq "attempt 1 completed (exit 0)" "completed|0" "$(sqlite3 "$db" "SELECT state, exit_code FROM attempts WHERE cell_id = 1 AND attempt = 1")"
check_eq "attempt 2 found on disk and completed" "completed" "$(sqlite3 "$db" "SELECT state FROM attempts WHERE cell_id = 1 AND attempt = 2")"
check_eq "one line per epoch: epoch 1 in attempt 1, epoch 2 in the resumed attempt 2" "1:1 2:2" \
  "$(sqlite3 "$db" "SELECT group_concat(a.attempt || ':' || e.epoch, ' ') FROM (SELECT * FROM epochs ORDER BY attempt_id, line) e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 1")"
n=$(sqlite3 "$db" "SELECT count(*) FROM epochs e JOIN attempts a ON a.id = e.attempt_id WHERE a.cell_id = 1 AND e.miou IS NOT NULL AND e.pixel_acc IS NOT NULL AND e.images_per_s > 0 AND e.wall_s > 0")
[ "$n" -ge 2 ] && pass "metrics columns filled from segx-train's keys ($n lines)" || fail "metrics columns filled" "$n lines"
k=$(head -1 "$runs/k1/attempt-1/metrics.jsonl" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["per_class_iou"]))')
check_eq "per-class IoU: one row per class of the line ($k)" "$k" "$(sqlite3 "$db" "SELECT count(*) FROM class_iou ci JOIN epochs e ON e.id = ci.epoch_id WHERE e.attempt_id = 1")"
check_eq "result.json and env.json stored" "1|1" "$(sqlite3 "$db" "SELECT (SELECT count(*) FROM results WHERE attempt_id = 1), (SELECT count(*) FROM environments WHERE attempt_id = 1 AND host IS NOT NULL)")"
# The stitched curve: attempt 2's lines come after attempt 1's duration.
ok=$(sqlite3 "$db" "SELECT min(cc.cell_wall_s) >= (SELECT duration_s FROM attempt_times WHERE cell_id = 1 AND attempt = 1)
                    FROM cell_curve cc WHERE cc.cell_id = 1 AND cc.attempt = 2")
check_eq "attempt 2 continues the cell's clock" 1 "$ok"
check_eq "the cell's final epoch is 2" 2 "$(sqlite3 "$db" "SELECT epoch FROM cell_metrics WHERE key = 'k1'")"
st=$(sqlite3 "$db" "SELECT state || ' ' || reason FROM attempts WHERE cell_id = 2")
case $st in "failed exit code "[1-9]*nosuchmodel*) pass "failed run: exit code and stderr in the reason";;
  *) fail "failed run: exit code and stderr in the reason" "$st";; esac
csv=$("$SEGX" report cells --db "$db" --format csv)
case $csv in *k1*completed*) pass "report cells lists the trained cell";; *) fail "report cells lists the trained cell" "$csv";; esac
done_testing
