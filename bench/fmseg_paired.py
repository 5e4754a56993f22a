#!/usr/bin/python3
"""PyTorch side of bench/fmseg: ../shared/bench/fmseg_torch.py's training loop (same data, UNet,
Adam lr 1e-3, batch 32, drop-last, eval in eval mode on the 2,500 test canvases, its mIoU), run

  own    SEED          with torch's own init and order (torch.manual_seed(SEED)); SEED 0 is exactly
                       fmseg_torch.py 15000 EPOCHS W
  paired SEGX_DIR      from segx-train's initial parameters (SEGX_DIR/p0.bin, SEGX_DIR/tensors.txt
                       from --save-params / --print-params) and in segx-train's sample order for
                       --seed S (the loader's Fisher-Yates over a splitmix64 stream keyed by
                       (seed, epoch), reimplemented here from trainer/data/loader.c)

  fmseg_paired.py own|paired SEED|SEGX_DIR NTRAIN EPOCHS WIDTH [SEED_FOR_ORDER] [THREADS]

Prints one JSON line per epoch like fmseg_torch.py. Needs /usr/bin/python3 with torch."""
import importlib.util, json, os, sys, time
import numpy as np, torch, torch.nn.functional as F

PEER = os.environ.get('SEGX_TORCH_PEER_DIR', '/work/shared/bench')
sys.path.insert(0, PEER)
from torch_peer import UNet  # noqa: E402
_spec = importlib.util.spec_from_file_location('fmseg_torch', PEER + '/fmseg_torch.py')
fm = importlib.util.module_from_spec(_spec)
_argv, sys.argv = sys.argv, ['fmseg_torch.py', 'none']   # import without running its __main__ parts
_spec.loader.exec_module(fm)
sys.argv = _argv
M64 = (1 << 64) - 1


def segx_perm(n, seed, epoch):
    """segx-train's epoch permutation (trainer/data/loader.c make_perm)."""
    p = np.arange(n, dtype=np.int64)
    s = fm.mix((seed ^ fm.mix((0x9E3779B9 + epoch) & M64)) & M64)
    for i in range(n - 1, 0, -1):
        s = fm.mix(s)
        j = s % (i + 1)
        p[i], p[j] = p[j], p[i]
    return torch.from_numpy(p)


def load_segx_params(m, d):
    offs = [(f[0], int(f[1]), int(f[-1][1:])) for f in (l.split() for l in open(d + '/tensors.txt'))
            if f and f[-1].startswith('@')]
    p0 = np.fromfile(d + '/p0.bin', np.float32)
    sd = dict(m.named_parameters())
    if len(offs) != len(sd):
        sys.exit(f'{d}/tensors.txt names {len(offs)} tensors, the torch UNet has {len(sd)}')
    with torch.no_grad():
        for name, n, off in offs:
            sd[name].copy_(torch.from_numpy(p0[off:off + n]).view_as(sd[name]))


def main():
    if len(sys.argv) < 6 or sys.argv[1] not in ('own', 'paired'):
        sys.exit(__doc__)
    mode, arg = sys.argv[1], sys.argv[2]
    ntrain, epochs, w = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    order_seed = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else 2)
    torch.manual_seed(int(arg) if mode == 'own' else 0)
    Xtr, Ytr = fm.make('train', ntrain)
    Xte, Yte = fm.make('t10k', 2500)
    m = UNet(1, 11, w, 3)
    if mode == 'paired':
        load_segx_params(m, arg)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    bs = 32
    for ep in range(epochs):
        m.train()
        perm = torch.randperm(ntrain) if mode == 'own' else segx_perm(ntrain, order_seed, ep)
        t0, tot = time.time(), 0
        for b in range(0, ntrain - bs + 1, bs):
            ix = perm[b:b + bs]
            opt.zero_grad()
            loss = F.cross_entropy(m(Xtr[ix]), Ytr[ix])
            loss.backward()
            opt.step()
            tot += loss.item()
        dt = time.time() - t0
        m.eval()
        with torch.no_grad():
            pred = torch.cat([m(Xte[i:i + 250]).argmax(1) for i in range(0, 2500, 250)])
        mi, pa = fm.miou(pred, Yte)
        print(json.dumps({"epoch": ep + 1, "loss": round(tot / (ntrain // bs), 4), "miou": round(mi, 4),
                          "pixel_acc": round(pa, 4), "img_per_s": round(ntrain / dt, 1)}), flush=True)


if __name__ == '__main__':
    main()
