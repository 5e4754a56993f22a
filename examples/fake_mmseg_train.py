#!/usr/bin/env python3
"""A stand-in for an mmsegmentation training run (examples/external-trainer.json, tests).

Prints mmseg-like log lines whose numbers follow from the arguments, so tests can check what
`segx logparse` extracts:  loss = 1 / (epoch * bs/8),  mIoU = 0.1 * epoch + lr * 10.
It also writes its config to WORK_DIR/args.json. --fail-at N exits with status 3 at epoch N.
"""
import argparse, json, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--bs", type=int, required=True)
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--work-dir", required=True)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--fail-at", type=int, default=0)
p.add_argument("--tag", default="")
a = p.parse_args()
os.makedirs(a.work_dir, exist_ok=True)
with open(os.path.join(a.work_dir, "args.json"), "w") as f:
    json.dump(vars(a), f)
iters = 4
for ep in range(1, a.epochs + 1):
    if a.fail_at == ep:
        print(f"RuntimeError: CUDA out of memory (fake) at epoch {ep}", file=sys.stderr)
        sys.exit(3)
    for it in range(1, iters + 1):
        loss = 1.0 / (ep * a.bs / 8.0)
        print(f"2024-05-01 12:00:00,000 - mmseg - INFO - Epoch [{ep}][{it}/{iters}]\tlr: {a.lr:.3e}, loss: {loss:.4f}", flush=True)
        time.sleep(a.sleep)
    miou = 0.1 * ep + a.lr * 10
    print(f"2024-05-01 12:00:01,000 - mmseg - INFO - Epoch(val) [{ep}][4]\taAcc: 0.9000, mIoU: {miou:.4f}, mAcc: 0.5000", flush=True)
print("done", flush=True)
