#!/usr/bin/python3
"""PyTorch side of bench/cnns-accuracy (issue 14): one epoch of fashion-mnist padded to 32x32 for one of
../shared/bench/models_ref.py's CIFAR networks, Adadelta lr 0.1, batch 128, drop-last, from segx-train's
initial weights (W0.safetensors, written by `segx-train --steps 0 --save-weights`, PyTorch names) and in
segx-train's sample order for --seed SEED (trainer/data/loader.c's Fisher-Yates over a splitmix64 stream
keyed by (seed, epoch), reimplemented in bench/fmseg_paired.py). Images are u8 / 255, zero-padded centred
to 32x32 (trainer/data/pad.c), first NTRAIN of the train set, test top-1 in eval mode on the first NTEST of
t10k. Prints one JSON line.

  cnns_accuracy_torch.py MODEL W0.safetensors NTRAIN NTEST SEED THREADS"""
import json, os, sys, time
import numpy as np, torch, torch.nn.functional as F

PEER = os.environ.get('SEGX_TORCH_PEER_DIR', '/work/shared/bench')
sys.path.insert(0, PEER); sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref, torch_peer  # noqa: E402
from fmseg_paired import segx_perm, fm  # noqa: E402  (fm: fmseg_torch.py, its idx reader)


def load_st(path):
    """safetensors reader (F32/I64) without the safetensors package."""
    b = open(path, 'rb').read(); n = int.from_bytes(b[:8], 'little'); hdr = json.loads(b[8:8 + n]); base = 8 + n
    dt = {'F32': np.float32, 'I64': np.int64, 'F64': np.float64}
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(b, dt[v['dtype']], (e - s) // np.dtype(dt[v['dtype']]).itemsize,
                                                base + s).reshape(v['shape']).copy())
    return out


def data(split, n):
    X = fm.idx(fm.D + f'{split}-images-idx3-ubyte.gz')[:n]; Y = fm.idx(fm.D + f'{split}-labels-idx1-ubyte.gz')[:n]
    P = np.zeros((len(X), 1, 32, 32), np.float32); P[:, 0, 2:30, 2:30] = X / np.float32(255.0)
    return torch.from_numpy(P), torch.from_numpy(Y.astype(np.int64))


def main():
    if len(sys.argv) != 7: sys.exit(__doc__)
    name, w0 = sys.argv[1], sys.argv[2]
    ntrain, ntest, seed, threads = (int(a) for a in sys.argv[3:7])
    torch.set_num_threads(threads); torch.manual_seed(0)
    if name == 'resnet18':   # torch_peer.py's resnet18_cifar with a 1-channel stem (segx's --in-channels 1)
        m = torch_peer.resnet18_cifar(10); m.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    else:
        m = models_ref.MODELS[name](1, 10)
    sd = load_st(w0); own = m.state_dict()
    miss = [k for k in own if k not in sd]; extra = [k for k in sd if k not in own]
    if miss or extra: sys.exit(f'{w0}: missing {miss[:5]}, unexpected {extra[:5]}')
    m.load_state_dict({k: sd[k].to(own[k].dtype).view_as(own[k]) for k in own})
    Xtr, Ytr = data('train', ntrain); Xte, Yte = data('t10k', ntest)
    opt = torch.optim.Adadelta(m.parameters(), lr=0.1)
    bs = 128; perm = segx_perm(ntrain, seed, 0); m.train(); tot = 0.0; nb = 0
    t0, c0 = time.time(), time.process_time()
    for b in range(0, ntrain - bs + 1, bs):
        ix = perm[b:b + bs]; opt.zero_grad()
        loss = F.cross_entropy(m(Xtr[ix]), Ytr[ix]); loss.backward(); opt.step(); tot += loss.item(); nb += 1
    dt, dc = time.time() - t0, time.process_time() - c0
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m(Xte[i:i + 250]).argmax(1) for i in range(0, len(Xte), 250)])
    print(json.dumps({'model': name, 'threads': threads, 'steps': nb, 'train_loss': round(tot / max(nb, 1), 4),
                      'top1': round((pred == Yte).double().mean().item(), 4), 'train_wall_s': round(dt, 1),
                      'train_cpu_s': round(dc, 1)}), flush=True)


if __name__ == '__main__':
    main()
