#!/usr/bin/python3
"""PyTorch peer on one GPU for bench/gpu: the models of /work/shared/bench/torch_peer.py (unet w16 64x64,
resnet18 CIFAR) trained with SGD momentum at one batch size, on CUDA. Prints one JSON line:
{"workload", "batch", "precision", "img_per_s", "step_ms", "max_mem_mib"}.
Usage: gpu_torch.py unet|resnet18 BATCH STEPS [fp32|bf16|fp16]"""
import importlib.util, json, os, sys, time

def load_peer():
    path = os.environ.get("TORCH_PEER") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "..", "shared", "bench", "torch_peer.py")
    if not os.path.exists(path):
        path = "/work/shared/bench/torch_peer.py"
    spec = importlib.util.spec_from_file_location("torch_peer", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def main():
    import torch, torch.nn.functional as F
    which, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prec = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    if not torch.cuda.is_available():
        print(json.dumps({"workload": which, "error": "torch.cuda.is_available() is False"})); return 2
    peer = load_peer(); dev = torch.device("cuda"); torch.manual_seed(0)
    if which == "unet":
        model = peer.UNet(1, 11, 16, 3); x = torch.randn(batch, 1, 64, 64); y = torch.randint(0, 11, (batch, 64, 64))
    else:
        model = peer.resnet18_cifar(); x = torch.randn(batch, 3, 32, 32); y = torch.randint(0, 10, (batch,))
    model, x, y = model.to(dev), x.to(dev), y.to(dev)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False   # fp32 = fp32, as segx
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    scaler = torch.cuda.amp.GradScaler(enabled=prec == "fp16")
    model.train(); warm = 3
    for i in range(warm + steps):
        if i == warm:
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
    torch.cuda.synchronize(); dt = time.perf_counter() - t0
    print(json.dumps({"workload": which, "batch": batch, "precision": prec, "img_per_s": round(steps * batch / dt, 1),
                      "step_ms": round(1000 * dt / steps, 2),
                      "max_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}), flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
