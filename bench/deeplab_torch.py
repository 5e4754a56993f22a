#!/usr/bin/python3
"""PyTorch side of bench/deeplab-seeds: deeplabv3plus_resnet18 (../shared/bench/models_ref.py) trained
on an ade20k-layout folder with segx-train's recipe, test mIoU after every epoch.

  deeplab_torch.py DATA_DIR INIT.safetensors ORDER_SEED EPOCHS NEVAL THREADS [key=value ...]

- init: INIT.safetensors, segx-train's initial weights for the seed (--steps 0 --save-weights), so
  both sides start from the same parameters
- order: segx-train's sample order for --seed ORDER_SEED (trainer/data/loader.c make_perm: Fisher-Yates
  over splitmix64 keyed by (seed, epoch)); drop-last batches
- augmentation: mmseg's pipeline as segx-train runs it (RandomResize of scale WxH x ratio in
  [0.5, 2.0] keeping the aspect ratio, bilinear image / nearest labels; RandomCrop with
  cat_max_ratio 0.75, 10 tries; flip p=0.5; normalise; pad to the crop with 0 / 255), drawn from
  torch's generator seeded with ORDER_SEED: the same distribution, not the same draws
- optimisation: SGD momentum 0.9, weight decay (coupled), lr poly 0.9 per step after a linear
  warmup, as trainer/optim/optim.c's lr_at
- evaluation: eval mode, the first NEVAL validation images each whole at its own resolution,
  confusion matrix over the 150 classes, mIoU = mean IoU over classes present in labels or
  predictions (as segx-train's confmat_miou)

keys (defaults = bench/deeplab-seeds's recipe): crop=64 scale=128x64 batch=8 lr=0.01 wd=0.0001
warmup_epochs=1 classes=150. Prints one JSON line per epoch: epoch, loss, miou, pixel_acc, wall_s."""
import glob, importlib.util, json, math, os, struct, sys, time
import numpy as np, torch, torch.nn.functional as F
import torchvision.io as tio

M64 = (1 << 64) - 1
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def segx_perm(n, seed, epoch):
    p = list(range(n))
    s = splitmix64((seed ^ splitmix64((0x9E3779B9 + epoch) & M64)) & M64)
    for i in range(n - 1, 0, -1):
        s = splitmix64(s)
        j = s % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def load_st(path):
    b = open(path, 'rb').read()
    n, = struct.unpack('<Q', b[:8])
    hdr = json.loads(b[8:8 + n])
    dt = {'F32': np.float32, 'I64': np.int64}
    return {k: torch.from_numpy(np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]],
            dt[v['dtype']]).reshape(v['shape']).copy()) for k, v in hdr.items() if k != '__metadata__'}


def read_pair(img_path, ann_path):
    img = tio.read_image(img_path, tio.ImageReadMode.RGB)          # uint8 (3, H, W)
    lab = tio.read_image(ann_path, tio.ImageReadMode.GRAY)[0].long()  # (H, W), ADE: 0 ignored
    lab = torch.where(lab == 0, torch.full_like(lab, 255), lab - 1)
    return img, lab


def keep_ratio_size(h, w, sw, sh):
    lmax, smax = max(sw, sh), min(sw, sh)
    sf = min(lmax / max(h, w), smax / min(h, w))
    return max(1, int(h * sf + 0.5)), max(1, int(w * sf + 0.5))


def augment(img, lab, cfg, g):
    r = 0.5 + 1.5 * torch.rand(1, generator=g).item()
    oh, ow = keep_ratio_size(img.shape[1], img.shape[2], cfg['scale_w'] * r, cfg['scale_h'] * r)
    x = F.interpolate(img[None].float(), size=(oh, ow), mode='bilinear', align_corners=False)[0].round().clamp(0, 255)
    y = F.interpolate(lab[None, None].float(), size=(oh, ow), mode='nearest')[0, 0].long()
    c = cfg['crop']
    ch, cw = min(c, oh), min(c, ow)
    for t in range(10):
        y0 = int(torch.randint(0, oh - ch + 1, (1,), generator=g)); x0 = int(torch.randint(0, ow - cw + 1, (1,), generator=g))
        win = y[y0:y0 + ch, x0:x0 + cw]
        v = win[win != 255]
        if v.numel():
            cnt = torch.bincount(v)
            if (cnt > 0).sum() > 1 and cnt.max().item() / v.numel() < 0.75:
                break
    x, y = x[:, y0:y0 + ch, x0:x0 + cw], y[y0:y0 + ch, x0:x0 + cw]
    if torch.rand(1, generator=g).item() < 0.5:
        x, y = x.flip(2), y.flip(1)
    x = (x - MEAN) / STD
    xp = torch.zeros(3, c, c); yp = torch.full((c, c), 255, dtype=torch.long)
    xp[:, :ch, :cw] = x; yp[:ch, :cw] = y
    return xp, yp


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    data, init, seed, epochs, neval, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        int(sys.argv[5]), int(sys.argv[6])
    cfg = {'crop': 64, 'scale': '128x64', 'batch': 8, 'lr': 0.01, 'wd': 0.0001, 'warmup_epochs': 1.0, 'classes': 150}
    for kv in sys.argv[7:]:
        k, v = kv.split('=', 1)
        cfg[k] = type(cfg[k])(v) if k in cfg else sys.exit(f'unknown key {k}')
    cfg['scale_w'], cfg['scale_h'] = map(int, cfg['scale'].split('x'))
    torch.set_num_threads(threads)
    peer = os.environ.get('SEGX_TORCH_PEER_DIR', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                                              'shared', 'bench'))
    spec = importlib.util.spec_from_file_location('models_ref', os.path.join(peer, 'models_ref.py'))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    K = cfg['classes']
    m = ref.DeepLabV3Plus(18, 3, K)
    missing, unexpected = m.load_state_dict(load_st(init), strict=False)
    if unexpected or any(not k.endswith('num_batches_tracked') for k in missing):
        sys.exit(f'{init}: missing {missing[:3]}, unexpected {unexpected[:3]}')
    tr_img = sorted(glob.glob(f'{data}/images/training/*.jpg'))
    va_img = sorted(glob.glob(f'{data}/images/validation/*.jpg'))[:neval]
    ann = lambda p: p.replace('/images/', '/annotations/')[:-4] + '.png'
    train = [read_pair(p, ann(p)) for p in tr_img]
    val = [read_pair(p, ann(p)) for p in va_img]
    n, bs = len(train), cfg['batch']
    steps_per_epoch = n // bs
    total, warm = steps_per_epoch * epochs, int(round(cfg['warmup_epochs'] * steps_per_epoch))
    opt = torch.optim.SGD(m.parameters(), lr=cfg['lr'], momentum=0.9, weight_decay=cfg['wd'])
    g = torch.Generator().manual_seed(seed)
    t_start, step = time.time(), 0
    for ep in range(epochs):
        m.train()
        perm, tot = segx_perm(n, seed, ep), 0.0
        for b in range(steps_per_epoch):
            if step < warm:
                lr = cfg['lr'] * (step + 1) / warm
            else:
                t = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
                lr = cfg['lr'] * (1 - t) ** 0.9
            for pg in opt.param_groups:
                pg['lr'] = lr
            xs, ys = zip(*(augment(*train[i], cfg, g) for i in perm[b * bs:(b + 1) * bs]))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(torch.stack(xs)), torch.stack(ys), ignore_index=255)
            loss.backward()
            opt.step()
            tot += loss.item()
            step += 1
        m.eval()
        cm = torch.zeros(K, K, dtype=torch.long)
        with torch.no_grad():
            for img, lab in val:
                p = m(((img.float() - MEAN) / STD)[None])[0].argmax(0)
                keep = lab != 255
                cm += torch.bincount(lab[keep] * K + p[keep], minlength=K * K).view(K, K)
        inter = cm.diag().double(); union = cm.sum(0).double() + cm.sum(1).double() - inter
        iou = inter[union > 0] / union[union > 0]
        print(json.dumps({'epoch': ep + 1, 'loss': round(tot / steps_per_epoch, 4), 'miou': round(iou.mean().item(), 5),
                          'pixel_acc': round((inter.sum() / cm.sum()).item(), 5),
                          'wall_s': round(time.time() - t_start, 1)}), flush=True)


if __name__ == '__main__':
    main()
