#!/usr/bin/python3
"""bench/trainer_cputime.py THREADS unet|resnet18 [STEPS] — the workload and training loop of
../shared/bench/torch_peer.py (its models, SGD momentum 0.9 lr 0.01, 2 warm-up steps), reporting
process CPU time per step beside wall time. On a machine shared at load 10+, wall-clock pairs swing
by 5x; CPU time per step of a 1-thread run is what bench/trainer's segx side (bench/trainer_step.c,
cpu_ms) is compared against."""
import json, sys, time
sys.path.insert(0, "/work/shared/bench")
import torch, torch.nn.functional as F
from torch_peer import UNet, resnet18_cifar

threads, which = int(sys.argv[1]), sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else (10 if which == "unet" else 3)
torch.set_num_threads(threads); torch.manual_seed(0)
if which == "unet":
    model, x, y = UNet(1, 11, 16, 3), torch.randn(16, 1, 64, 64), torch.randint(0, 11, (16, 64, 64))
else:
    model, x, y = resnet18_cifar(), torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
model.train()
for i in range(2 + steps):
    if i == 2: t0, c0 = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward(); opt.step()
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"workload": which, "threads": threads, "batch": x.shape[0], "img_per_s": round(steps * x.shape[0] / dt, 2),
                  "step_ms": round(1000 * dt / steps, 2), "cpu_ms": round(1000 * dc / steps, 2)}), flush=True)
