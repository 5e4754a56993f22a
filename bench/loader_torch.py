#!/usr/bin/python3
"""The PyTorch side of bench/loader: a DataLoader worker doing what segx-train's loader threads do —
decode an ADE20K-layout JPEG and its PNG label map (torchvision.io, libjpeg-turbo/libpng), mmseg's
RandomResize(scale, ratio 0.5-2.0, keep_ratio) with bilinear (image, no antialias) and nearest (labels)
resizes, RandomCrop(crop, cat_max_ratio=0.75), RandomFlip(0.5), normalisation with ImageNet's
mean/std, padding to the crop (0 / 255) — and the images/s it delivers.

    loader_torch.py make DIR N              # N ADE-sized images (about 512 x 683, mixed) in DIR
    loader_torch.py run DIR WORKERS BATCH CROP SCALE_W SCALE_H EPOCHS
        # prints {"img_per_s": X, "images": N, "seconds": S}; epoch 0 (worker start, page cache) untimed
"""
import glob, json, os, random, sys, time
import torch
import torchvision.transforms.functional as TF
from torchvision.io import decode_jpeg, decode_png, encode_jpeg, encode_png, read_file
from torchvision.transforms import InterpolationMode

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def make(d, n):
    g = torch.Generator().manual_seed(0)
    for split in ("training", "validation"):
        os.makedirs(f"{d}/images/{split}", exist_ok=True)
        os.makedirs(f"{d}/annotations/{split}", exist_ok=True)
    for i in range(n):
        h = 384 + int(torch.randint(0, 257, (1,), generator=g))
        w = 512 + int(torch.randint(0, 257, (1,), generator=g))
        # smooth colour field plus texture, and a label map of ~12 regions (nearest of random seeds)
        low = torch.rand(3, 6, 8, generator=g)
        img = torch.nn.functional.interpolate(low[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        img = (img * 200 + torch.rand(3, h, w, generator=g) * 55).clamp(0, 255).to(torch.uint8)
        seeds = torch.rand(12, 2, generator=g) * torch.tensor([h, w])
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        dist = (ys[None] - seeds[:, 0, None, None]) ** 2 + (xs[None] - seeds[:, 1, None, None]) ** 2
        lab = (dist.argmin(0) * 11 + 1).to(torch.uint8)   # ADE labels 1..122
        lab[:2] = 0
        name = f"ADE_train_{i + 1:08d}"
        with open(f"{d}/images/training/{name}.jpg", "wb") as f:
            f.write(encode_jpeg(img, quality=90).numpy().tobytes())
        with open(f"{d}/annotations/training/{name}.png", "wb") as f:
            f.write(encode_png(lab[None]).numpy().tobytes())


def keep_ratio(h, w, sw, sh):
    lmax, smax = max(sw, sh), min(sw, sh)
    sf = min(lmax / max(h, w), smax / min(h, w))
    return int(h * sf + 0.5), int(w * sf + 0.5)


class ADE(torch.utils.data.Dataset):
    def __init__(self, d, crop, sw, sh):
        self.imgs = sorted(glob.glob(f"{d}/images/training/*.jpg"))
        self.d, self.crop, self.sw, self.sh = d, crop, sw, sh

    def __len__(self):
        return len(self.imgs)

    def bbox(self, h, w):
        return random.randint(0, max(h - self.crop, 0)), random.randint(0, max(w - self.crop, 0))

    def __getitem__(self, i):
        p = self.imgs[i]
        m = p.replace("/images/", "/annotations/").replace(".jpg", ".png")
        img = decode_jpeg(read_file(p))
        lab = decode_png(read_file(m))[0].long()
        lab = torch.where(lab == 0, torch.full_like(lab, 255), lab - 1)   # reduce_zero_label
        r = random.uniform(0.5, 2.0)
        nh, nw = keep_ratio(img.shape[1], img.shape[2], self.sw * r, self.sh * r)
        img = TF.resize(img, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=False)
        lab = TF.resize(lab[None], [nh, nw], interpolation=InterpolationMode.NEAREST)[0]
        c = self.crop
        y0, x0 = self.bbox(nh, nw)
        for _ in range(10):   # mmseg RandomCrop's cat_max_ratio
            seg = lab[y0:y0 + c, x0:x0 + c]
            u, cnt = torch.unique(seg, return_counts=True)
            cnt = cnt[u != 255]
            if len(cnt) > 1 and cnt.max().item() / cnt.sum().item() < 0.75:
                break
            y0, x0 = self.bbox(nh, nw)
        img, lab = img[:, y0:y0 + c, x0:x0 + c], lab[y0:y0 + c, x0:x0 + c]
        if random.random() < 0.5:
            img, lab = img.flip(-1), lab.flip(-1)
        x = (img.float() - MEAN) / STD
        ph, pw = c - x.shape[1], c - x.shape[2]
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=0.0)
        lab = torch.nn.functional.pad(lab, (0, pw, 0, ph), value=255)
        return x, lab


def run(d, workers, batch, crop, sw, sh, epochs):
    torch.set_num_threads(1)
    ds = ADE(d, crop, sw, sh)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0)
    images, t0 = 0, 0.0
    for e in range(epochs + 1):
        if e == 1:
            t0 = time.perf_counter()
        for x, y in dl:
            if e > 0:
                images += x.shape[0]
    s = time.perf_counter() - t0
    print(json.dumps({"img_per_s": images / s, "images": images, "seconds": s}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    else:
        a = sys.argv[2:]
        run(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]))
