"""bench/gpu/check.sh helper. `export OUT.onnx`: a torchvision ResNet-50 (random weights, seed 0, eval mode) as ONNX
opset 17. `power REPORT.json`: PyTorch power iteration v <- A^T A v / ||A^T A v|| on every Conv2d and the Linear of
the same ResNet-50, with as many steps in all as lipcheck's report used Lanczos steps (spread evenly over the layers),
on the CPU (all cores) and on CUDA; prints one JSON line per device."""
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def net():
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


def export(path):
    m = net()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(m, x, path, opset_version=17, input_names=["input"], output_names=["logits"], dynamo=False)


def layers(m):
    shapes = []
    hooks = [mod.register_forward_hook(lambda mod, i, o, s=shapes: s.append((mod, tuple(i[0].shape))))
             for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        m(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    return shapes


def power(report_path):
    report = json.load(open(report_path))
    total = sum(l.get("iterations") or 0 for l in report["layers"])
    m = net()
    ls = layers(m)
    per = max(1, round(total / len(ls)))
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        steps = []
        for mod, shape in ls:
            mod = mod.to(dev)
            if isinstance(mod, torch.nn.Conv2d):
                w, s, p, d, g = mod.weight.detach(), mod.stride, mod.padding, mod.dilation, mod.groups
                def fwd(v, w=w, s=s, p=p, d=d, g=g): return F.conv2d(v, w, stride=s, padding=p, dilation=d, groups=g)
                out = fwd(torch.zeros(shape, device=dev))
                def adj(u, w=w, s=s, p=p, d=d, g=g, shape=shape):
                    op = [shape[2 + i] - ((u.shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (w.shape[2 + i] - 1) + 1) for i in range(2)]
                    return F.conv_transpose2d(u, w, stride=s, padding=p, output_padding=op, groups=g, dilation=d)
            else:
                w = mod.weight.detach()
                def fwd(v, w=w): return v @ w.t()
                def adj(u, w=w): return u @ w
            steps.append((fwd, adj, shape))
        with torch.no_grad():
            for fwd, adj, shape in steps:  # warm-up
                v = torch.randn(shape, device=dev)
                adj(fwd(v))
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for fwd, adj, shape in steps:
                v = torch.randn(shape, device=dev)
                for _ in range(per):
                    b = adj(fwd(v))
                    v = b / b.norm()
            if dev == "cuda":
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) * 1000
        print(json.dumps({"device": dev, "threads": torch.get_num_threads(), "layers": len(ls), "stepsPerLayer": per,
                          "lipcheckSteps": total, "ms": round(ms, 1), "msPerLayerStep": round(ms / (per * len(ls)), 4)}), flush=True)


if __name__ == "__main__":
    {"export": export, "power": power}[sys.argv[1]](sys.argv[2])
