#!/usr/bin/env python3
"""Generates the orchestrator benchmark's input: a results DB with one experiment of N cells
(5 models x 4 GPU types x 5 GPU counts x B batch sizes x seeds), one attempt row per cell, and
each attempt's run dir with E epochs of metrics.jsonl, result.json, env.json and exit_code
(as segx-train writes them). 2% of the cells were preempted (exit 99) and requeued: their
attempt-2 dir exists on disk without an attempts row, as after a Slurm requeue.

usage: orchestrator_gen.py DB RUN_ROOT [--cells 10000] [--epochs 50] [--pool K]
The DB must already have the segx schema (segx creates it on first open)."""
import argparse, json, os, random, sqlite3

ap = argparse.ArgumentParser()
ap.add_argument("db")
ap.add_argument("run_root")
ap.add_argument("--cells", type=int, default=10000)
ap.add_argument("--epochs", type=int, default=50)
ap.add_argument("--pool", type=int, default=0,
                help="write the files of only this many run dirs and hard-link the others' to them (the same "
                     "bytes for collect to read; 100,000 cells generate in minutes instead of most of an hour)")
a = ap.parse_args()
pool = {}   # (dir kind, epochs range) -> the dir whose files later dirs link to

models = ["unet", "resnet18", "deeplabv3p", "cnn5", "vit_s"]
gpus_types = ["a100", "h100", "v100", "l40s"]
counts = [1, 2, 4, 8, 16]
seeds_per = 10
nbatch = max(1, a.cells // (len(models) * len(gpus_types) * len(counts) * seeds_per))
batches = [16 * (i + 1) for i in range(nbatch)]
rng = random.Random(1)
db = sqlite3.connect(a.db)
db.execute("PRAGMA journal_mode=WAL")
db.execute("BEGIN")
db.execute("INSERT INTO experiments (name, spec_text, run_root, created_at, updated_at) VALUES (?,?,?,?,?)",
           ("bench", json.dumps({"name": "bench", "eval": {"targets": {"miou": 0.6}}}), a.run_root, 0, 0))
exp = db.execute("SELECT id FROM experiments WHERE name='bench'").fetchone()[0]
n = 0
for m in models:
    for gt in gpus_types:
        for b in batches:
            for g in counts:
                for s in range(seeds_per):
                    if n >= a.cells:
                        break
                    key = "%016x" % rng.getrandbits(64)
                    # "epochs" as segx plan stores it for a segx-train spec, canonical text (status reads progress
                    # "epoch x/y" of a collected attempt from the DB with it)
                    params = {"model": m, "gpu_type": gt, "gpus": g, "batch_per_gpu": b, "seed": s, "epochs": a.epochs}
                    db.execute("INSERT INTO cells (experiment_id, key, params, group_key, scaling_key, model, gpu_type,"
                               " gpus, nodes, batch_per_gpu, global_batch, scaling, seed, est_gpu_hours, state, created_at)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               (exp, key, json.dumps(params, sort_keys=True, separators=(",", ":")), f"{m}|{gt}|{g}|{b}", f"{m}|{gt}|{b}",
                                m, gt, g, max(1, g // 8), b, b * g, "weak", s, g * 2.0, "submitted", 0))
                    cell = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    d = os.path.join(a.run_root, key, "attempt-1")
                    os.makedirs(d, exist_ok=True)
                    requeued = rng.random() < 0.02
                    db.execute("INSERT INTO attempts (cell_id, attempt, backend, job_id, state, submit_time, start_time,"
                               " end_time, run_dir) VALUES (?,?,?,?,?,?,?,?,?)",
                               (cell, 1, "slurm", str(1000 + n), "unknown", 0, 10, 10 + 60.0 * a.epochs, d))
                    ips0 = 800.0 * g * (0.97 ** (g.bit_length() - 1)) * (1 + 0.02 * rng.random())
                    dirs = [(d, 1, a.epochs // 2 if requeued else a.epochs, 99 if requeued else 0)]
                    if requeued:
                        dirs.append((os.path.join(a.run_root, key, "attempt-2"), a.epochs // 2 + 1, a.epochs, 0))
                    for dd, e0, e1, code in dirs:
                        os.makedirs(dd, exist_ok=True)
                        slot = (n % a.pool, e0, e1, code) if a.pool > 0 else None
                        if slot in pool:
                            for f in ("metrics.jsonl", "result.json", "env.json", "exit_code", "stdout"):
                                os.link(os.path.join(pool[slot], f), os.path.join(dd, f))
                            continue
                        if slot is not None:
                            pool[slot] = dd
                        lines, wall = [], 0.0
                        for e in range(e0, e1 + 1):
                            ips = ips0 * (0.6 if e == e0 else 1.0) * (1 + 0.01 * rng.random())
                            eps = 50000.0 / ips
                            wall += eps
                            rec = {"epoch": e, "step": e * 100, "wall_s": round(wall, 3),
                                   "train_loss": round(2.0 / e + 0.01 * s, 6), "val_loss": round(2.2 / e, 6),
                                   "miou": round(0.75 * (1 - 0.9 ** e), 6), "pixel_acc": round(0.95 * (1 - 0.8 ** e), 6),
                                   "lr": 0.1, "images_per_s": round(ips, 3), "epoch_s": round(eps, 4),
                                   "data_s": round(0.1 * eps, 4), "compute_s": round(0.8 * eps, 4),
                                   "comm_s": round(0.1 * eps, 4), "grad_norm": round(1.0 / e, 5)}
                            if e == e1:
                                rec["per_class_iou"] = [round(0.5 + 0.05 * k, 3) for k in range(10)]
                            lines.append(json.dumps(rec))
                        with open(os.path.join(dd, "metrics.jsonl"), "w") as f:
                            f.write("\n".join(lines) + "\n")
                        with open(os.path.join(dd, "result.json"), "w") as f:
                            json.dump({"images_per_s": ips0, "wall_s": wall, "miou": rec["miou"], "epochs": e1}, f)
                        with open(os.path.join(dd, "env.json"), "w") as f:
                            json.dump({"host": "node%02d" % (n % 32), "gpu_model": gt.upper(), "driver": "580.65",
                                       "cuda": "13.0", "cudnn": "9.10", "nccl": "2.27.3", "git_commit": "0123abcd"}, f)
                        with open(os.path.join(dd, "exit_code"), "w") as f:
                            f.write("%d\n" % code)
                        with open(os.path.join(dd, "stdout"), "w") as f:
                            f.write("done\n")
                    n += 1
db.execute("COMMIT")
print(f"generated {n} cells x {a.epochs} epochs under {a.run_root}")
