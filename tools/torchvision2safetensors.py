#!/usr/bin/python3
"""A torchvision ResNet checkpoint as safetensors for segx-train's --init (deeplabv3plus's backbone:
`--init OUT.safetensors --init-prefix backbone.`; fc.* are reported unexpected and not loaded).

    torchvision2safetensors.py IN.pth OUT.safetensors
        a state_dict saved by PyTorch (torch.save(model.state_dict()), e.g. torchvision's
        resnet50-11ad3fa6.pth = ResNet50_Weights.IMAGENET1K_V2, resnet50-0676ba61.pth = V1),
        or a dict holding one under 'state_dict' / 'model'
    torchvision2safetensors.py --random resnet18|resnet50|resnet101 SEED OUT.safetensors
        a randomly initialised ResNet (torch.manual_seed(SEED); BN running statistics drawn too, so
        they are not all 0 / 1) with torchvision's state_dict names: torchvision.models.resnetNN()
        when torchvision is installed, else the same names and shapes built from
        ../shared/bench/models_ref.py's ResNetOS16 plus fc (1000 classes)

Writes every tensor of the state_dict (F32 parameters and running statistics, I64
num_batches_tracked) and prints one JSON line: {"out", "tensors", "parameters", "source"}.
Needs /usr/bin/python3 with torch (Debian's python3-torch)."""
import importlib.util, json, os, struct, sys
import torch, torch.nn as nn


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        dtype = {torch.float32: 'F32', torch.int64: 'I64', torch.float16: 'F16'}[t.dtype]
        b = t.numpy().tobytes()
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def random_resnet(arch):
    depth = {'resnet18': 18, 'resnet50': 50, 'resnet101': 101}.get(arch)
    if depth is None:
        sys.exit(f'torchvision2safetensors.py: --random {arch!r}: want resnet18, resnet50 or resnet101')
    try:
        import torchvision
        return getattr(torchvision.models, arch)(), 'torchvision.models.' + arch
    except ImportError:
        pass
    ref = os.environ.get('SEGX_MODELS_REF') or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             '..', '..', 'shared', 'bench', 'models_ref.py')
    if not os.path.exists(ref):
        sys.exit(f'torchvision2safetensors.py: no torchvision and no {ref} (set SEGX_MODELS_REF)')
    spec = importlib.util.spec_from_file_location('models_ref', ref)
    mr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mr)
    block, layers = {18: (mr.BasicBlock, [2, 2, 2, 2]), 50: (mr.Bottleneck, [3, 4, 6, 3]),
                     101: (mr.Bottleneck, [3, 4, 23, 3])}[depth]
    m = mr.ResNetOS16(block, layers)   # dilation changes no parameter name or shape
    m.fc = nn.Linear(512 * block.expansion, 1000)
    return m, 'models_ref.py ResNetOS16 + fc'


def main(argv):
    if len(argv) == 5 and argv[1] == '--random':
        try:
            seed = int(argv[3])
        except ValueError:
            sys.exit(f'torchvision2safetensors.py: --random {argv[2]} {argv[3]!r}: the seed is not an integer')
        torch.manual_seed(seed)
        m, source = random_resnet(argv[2])
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.1, 0.1)
        sd, out = m.state_dict(), argv[4]
    elif len(argv) == 3 and not argv[1].startswith('-'):
        try:
            obj = torch.load(argv[1], map_location='cpu')
        except Exception as e:   # noqa: BLE001 - any unreadable file is reported the same way
            sys.exit(f'torchvision2safetensors.py: {argv[1]}: not a PyTorch checkpoint ({e})')
        for k in ('state_dict', 'model'):
            if isinstance(obj, dict) and isinstance(obj.get(k), dict):
                obj = obj[k]
        if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
            sys.exit(f'torchvision2safetensors.py: {argv[1]}: holds no state_dict (a dict of tensors)')
        sd, out, source = obj, argv[2], argv[1]
    else:
        sys.exit(__doc__)
    save_safetensors(out, sd)
    print(json.dumps({'out': out, 'tensors': len(sd), 'source': source,
                      'parameters': sum(v.numel() for k, v in sd.items() if v.dtype.is_floating_point
                                        and 'running_' not in k)}))


if __name__ == '__main__':
    main(sys.argv)
