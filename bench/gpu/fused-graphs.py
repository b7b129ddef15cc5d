"""Writes the ONNX models of bench/gpu/fused-steps.mjs: k power-iteration steps v <- A^T A v / ||A^T A v|| unrolled
in ONE graph, for one 3x3 stride-1 convolution A (C -> C channels on H x W, pads 1, random weights), so that one
onnxruntime `run` does k steps. Outputs: the last v and the k norms. Also times the same k steps in PyTorch (CUDA when
present, else CPU) for the floor. Usage: python3 fused-graphs.py OUTDIR  (needs numpy, onnx; torch for the floor)."""
import json
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONFIGS = [(64, 56), (256, 14), (512, 7)]
KS = [1, 8, 32]


def model(c, hw, k, w):
    nodes, norms = [], []
    v = "v0"
    for s in range(k):
        a, b, n, nv = f"a{s}", f"b{s}", f"n{s}", f"v{s + 1}"
        nodes.append(helper.make_node("Conv", [v, "W"], [a], pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
        nodes.append(helper.make_node("ConvTranspose", [a, "W"], [b], pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
        nodes.append(helper.make_node("ReduceL2", [b], [n], keepdims=1))
        nodes.append(helper.make_node("Div", [b, n], [nv]))
        norms.append(n)
        v = nv
    nodes.append(helper.make_node("Concat", norms, ["norms"], axis=0))
    nodes.append(helper.make_node("Identity", [v], ["v_out"]))
    g = helper.make_graph(
        nodes, f"fused_c{c}_hw{hw}_k{k}",
        [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, c, hw, hw]),
         helper.make_tensor_value_info("norms", TensorProto.FLOAT, [k, 1, 1, 1])],
        [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def torch_floor(c, hw, w, steps=200):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    out = {}
    devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devs:
        wt = torch.from_numpy(w).to(dev)
        v = torch.randn(1, c, hw, hw, device=dev)
        def step(v):
            b = F.conv_transpose2d(F.conv2d(v, wt, padding=1), wt, padding=1)
            return b / b.norm()
        for _ in range(10):
            v = step(v)
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            v = step(v)
        if dev == "cuda":
            torch.cuda.synchronize()
        out[dev] = (time.perf_counter() - t0) * 1000 / steps
    return out


if __name__ == "__main__":
    outdir = sys.argv[1]
    rng = np.random.default_rng(0)
    index = []
    for c, hw in CONFIGS:
        w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
        for k in KS:
            path = f"{outdir}/fused_c{c}_hw{hw}_k{k}.onnx"
            onnx.save(model(c, hw, k, w), path)
            index.append({"c": c, "hw": hw, "k": k, "path": path})
        floor = torch_floor(c, hw, w)
        index.append({"c": c, "hw": hw, "torchMsPerStep": floor})
        print(json.dumps(index[-1]), flush=True)
    json.dump(index, open(f"{outdir}/index.json", "w"), indent=1)
