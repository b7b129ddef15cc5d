"""The same iterations in PyTorch, for comparison with lipcheck's norm phase (bench/floor.ts --torch).

Reads the JSON written by floor.ts: every Lanczos-measured operator of a model (its linear prims with shapes) and the
Lanczos steps lipcheck used on it. Weights are random of the same shapes: only the timing matters. For each operator,
times (1) that many power-iteration steps v <- A^T A v / ||A^T A v|| in float32 (A^T A v by one forward and one
backward pass), and (2) Lanczos with full reorthogonalisation against a float64 basis, as lipcheck does it.
Prints one Markdown fragment. Usage: python3 bench/torch-power.py SPEC.json [threads]
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def build(nodes):
    """A function x -> A x for a chain of prims, or None when the region is not a chain of supported prims."""
    steps = []
    for n in nodes:
        op = n["op"]
        if op == "conv":
            w = torch.randn(*n["weight"]) * 0.05
            r = len(n["strides"])
            pads = n["pads"]
            sym = all(pads[i] == pads[i + r] for i in range(r))
            pad_arg = []
            for i in reversed(range(r)):
                pad_arg += [pads[i], pads[i + r]]
            conv = F.conv2d if r == 2 else F.conv1d

            def f(x, w=w, n=n, sym=sym, pad_arg=pad_arg, conv=conv, r=r):
                if not sym:
                    x = F.pad(x, pad_arg)
                return conv(x, w, stride=n["strides"], padding=n["pads"][:r] if sym else 0, dilation=n["dilations"], groups=n["group"])
            steps.append(f)
        elif op == "scale":
            s = torch.ones(*n["factor"]) if n["factor"] else torch.ones(())
            steps.append(lambda x, s=s: x * s)
        elif op == "reshape":
            steps.append(lambda x, shape=n["outShape"]: x.reshape(shape))
        elif op == "transpose":
            steps.append(lambda x, perm=n["perm"]: x.permute(perm))
        elif op == "reduce":
            steps.append(lambda x, axes=n["axes"], mean=n["mean"]: x.mean(dim=axes, keepdim=True) if mean else x.sum(dim=axes, keepdim=True))
        elif op == "matmul" and len(n["weight"]) == 2:
            w = torch.randn(*n["weight"]) * 0.05
            steps.append((lambda x, w=w: x @ w) if n["side"] == "right" else (lambda x, w=w: w @ x))
        elif op == "pad":
            p = n["pads"]
            r = len(p) // 2
            arg = []
            for i in reversed(range(r)):
                arg += [p[i], p[i + r]]
            steps.append(lambda x, arg=arg: F.pad(x, arg))
        else:
            return None

    def apply(x):
        for s in steps:
            x = s(x)
        return x
    return apply


def gram(f, v):
    """A^T A v by one forward and one backward (data gradient only) pass."""
    v = v.detach().requires_grad_(True)
    y = f(v)
    (g,) = torch.autograd.grad(y, v, grad_outputs=y)
    return g


def main():
    spec = json.load(open(sys.argv[1]))
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    power = lanczos = 0.0
    measured = skipped = 0
    for region in spec["regions"]:
        f = build(region["nodes"])
        if f is None:
            skipped += 1
            continue
        measured += 1
        k = region["steps"]
        v = torch.randn(*region["inShape"])
        gram(f, v)
        t = time.perf_counter()
        for _ in range(k):
            g = gram(f, v)
            v = g / g.norm()
        power += time.perf_counter() - t
        shape = region["inShape"]
        n = v.numel()
        q = torch.empty(k + 1, n, dtype=torch.float64)
        x = torch.randn(n, dtype=torch.float64)
        q[0] = x / x.norm()
        beta = 0.0
        t = time.perf_counter()
        for j in range(k):
            w = gram(f, q[j].to(torch.float32).reshape(shape)).reshape(-1).to(torch.float64)
            a = torch.dot(w, q[j])
            w -= a * q[j]
            if j > 0:
                w -= beta * q[j - 1]
            h = q[: j + 1] @ w
            w -= q[: j + 1].T @ h
            beta = float(w.norm())
            q[j + 1] = w / beta
        lanczos += time.perf_counter() - t
    note = f", {skipped} operators not chains of supported prims skipped" if skipped else ""
    print(f"PyTorch {torch.__version__} CPU, {threads} threads, {measured} operators{note}: power iteration {power:.2f} s, Lanczos with float64 full reorthogonalisation {lanczos:.2f} s")


main()
