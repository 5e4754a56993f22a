#!/usr/bin/env bash
# eval.every in a spec renders --eval-every N: segx-train evaluates after every N-th epoch and the
# last; metrics.jsonl has mIoU on those lines only, each with wall_s, and segx collect stores them so
# mIoU against time is one query on cell_curve.
. "$(dirname "$0")/lib.sh"
cd "$TEST_TMP" || exit 1
if [ ! -x "$SEGX_TRAIN" ]; then skip "segx-train is not built"; done_testing; exit $?; fi
cat >spec.json <<EOF2
{"name": "seg-eval-every",
 "trainer": {"model": "unet", "dataset": "fashion-mnist-seg", "epochs": 3, "optimizer": "adam", "lr": 0.001,
             "args": {"train-limit": 32, "width": 4}},
 "eval": {"every": 2, "limit": 16},
 "matrix": {"gpu_type": ["cpu"], "gpus": [1], "batch_per_gpu": [8], "seed": [1]},
 "resources": {"time": "00:10:00", "cpus_per_gpu": 1}}
EOF2
q() { sqlite3 segx.db "$1"; }
out=$(nice "$SEGX" run spec.json --backend local --db segx.db --max-parallel 1 --no-report 2>&1); rc=$?
check_eq "segx run exits 0 with eval.every" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -20 | sed 's/^/# /'
rd=$(q "SELECT run_dir FROM attempts LIMIT 1")
check "the job ran segx-train with --eval-every 2" grep -q -- "'--eval-every' '2'" "$rd/job.sh"
check_eq "metrics.jsonl: 3 epoch lines, mIoU after epochs 2 and 3" "1:0 2:1 3:1" \
  "$(python3 -c "
import json,sys
print(' '.join('%d:%d' % (o['epoch'], 'miou' in o) for o in map(json.loads, open('$rd/metrics.jsonl'))))")"
check_eq "collect: mIoU against the cell's clock at epochs 2 and 3" "2|1|1
3|1|1" "$(q 'SELECT epoch, miou BETWEEN 0 AND 1, cell_wall_s > 0 FROM cell_curve WHERE miou IS NOT NULL ORDER BY epoch')"
check_eq "collect: the clock grows along the curve" 1 \
  "$(q 'SELECT MIN(b.cell_wall_s > a.cell_wall_s) FROM cell_curve a JOIN cell_curve b ON b.epoch = a.epoch + 1')"
done_testing
