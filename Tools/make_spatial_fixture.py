"""Writes Tests/GraftTensorTests/Fixtures/spatial.json: PyTorch reference values for Graft's
conv2d, pooling, adaptive pooling and resize ops (forward outputs and input gradients).

Run with the project's venv: Tools/.venv/bin/python Tools/make_spatial_fixture.py
Each case stores its inputs, its parameters and PyTorch's output. The upstream gradient is not
stored: both sides build it as gy[i] = sin(0.37·i + 0.1) over the output's flat index, and the
case stores PyTorch's gradient for every input.
"""

import json
import math
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(0)
OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests/GraftTensorTests/Fixtures/spatial.json"


def rounded(t, digits):
    return [float(f"{v:.{digits}g}") for v in t.detach().reshape(-1).tolist()]


def tensor(shape, distinct=False):
    """Random input rounded to 3 significant digits, so the JSON text is the exact test input."""
    if distinct:  # no ties for max pooling: a shuffled ramp
        n = math.prod(shape)
        t = (torch.randperm(n).float() / n - 0.5).reshape(shape)
    else:
        t = torch.randn(shape)
    return torch.tensor(rounded(t, 3), dtype=torch.float32).reshape(shape)


def encode(t):
    return {"shape": list(t.shape), "data": rounded(t, 5)}


def upstream(y):
    n = y.numel()
    return torch.sin(0.37 * torch.arange(n, dtype=torch.float64) + 0.1).float().reshape(y.shape)


cases = []


def add(op, name, inputs, f, **params):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = f(**leaves)
    y.backward(upstream(y))
    cases.append({
        "op": op,
        "name": name,
        "params": params,
        "inputs": {k: encode(v) for k, v in inputs.items()},
        "output": encode(y),
        "grads": {k: encode(v.grad) for k, v in leaves.items()},
    })


def conv(name, xs, ws, bias, stride, padding, dilation, groups):
    inputs = {"x": tensor(xs), "w": tensor(ws)}
    if bias:
        inputs["b"] = tensor([ws[0]])
    add("conv2d", name, inputs,
        lambda x, w, b=None: F.conv2d(x, w, b, stride, padding, dilation, groups),
        stride=list(stride), padding=list(padding), dilation=list(dilation), groups=groups)


conv("plain 3x3 pad 1", [2, 2, 4, 5], [3, 2, 3, 3], True, (1, 1), (1, 1), (1, 1), 1)
conv("stride, pad, dilation, groups 2", [1, 4, 6, 5], [4, 2, 3, 2], True, (2, 1), (1, 2), (2, 1), 2)
conv("depthwise multiplier 2", [1, 2, 5, 5], [4, 1, 3, 3], True, (2, 2), (1, 1), (1, 1), 2)
conv("depthwise dilated", [1, 2, 6, 5], [2, 1, 2, 3], False, (1, 2), (2, 0), (3, 2), 2)
conv("patchify with leftover", [2, 2, 6, 7], [3, 2, 3, 3], True, (3, 3), (0, 0), (1, 1), 1)
conv("pointwise groups 2", [1, 4, 3, 3], [6, 2, 1, 1], False, (1, 1), (0, 0), (1, 1), 2)


def maxpool(name, xs, kernel, stride, padding, dilation, ceil):
    add("maxPool2d", name, {"x": tensor(xs, distinct=True)},
        lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil),
        kernel=list(kernel), stride=list(stride), padding=list(padding),
        dilation=list(dilation), ceilMode=ceil)


maxpool("3x3 stride 2 pad 1", [1, 2, 7, 6], (3, 3), (2, 2), (1, 1), (1, 1), False)
maxpool("dilated ceil", [1, 1, 6, 7], (2, 3), (1, 2), (1, 1), (2, 1), True)
maxpool("ceil partial windows", [1, 1, 6, 6], (3, 3), (2, 2), (0, 0), (1, 1), True)
maxpool("rank 3", [2, 4, 5], (2, 2), (2, 2), (0, 0), (1, 1), False)


def avgpool(name, xs, kernel, stride, padding, include, ceil):
    add("avgPool2d", name, {"x": tensor(xs)},
        lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil,
                               count_include_pad=include),
        kernel=list(kernel), stride=list(stride), padding=list(padding),
        countIncludePad=include, ceilMode=ceil)


avgpool("3x3 stride 2 pad 1", [1, 2, 7, 6], (3, 3), (2, 2), (1, 1), True, False)
avgpool("exclude pad", [1, 2, 7, 6], (3, 3), (2, 2), (1, 1), False, False)
avgpool("ceil include pad, clipped last window", [1, 1, 6, 7], (3, 3), (2, 2), (1, 1), True, True)
avgpool("ceil exclude pad", [1, 1, 5, 7], (3, 2), (2, 3), (1, 1), False, True)


def adaptive(name, xs, size):
    fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(size)]
    add(f"adaptiveAvgPool{len(size)}d", name, {"x": tensor(xs)}, lambda x: fn(x, size),
        outputSize=list(size))


adaptive("1d down", [2, 3, 7], [3])
adaptive("1d up, rank 2", [3, 5], [8])
adaptive("2d uneven", [1, 1, 7, 5], [3, 2])
adaptive("2d rank 3 up", [2, 5, 3], [4, 4])
adaptive("3d", [1, 1, 5, 4, 6], [2, 3, 4])


def resize(name, xs, mode, size=None, scale=None):
    params = {"mode": mode}
    if size is not None:
        params["size"] = list(size)
    else:
        params["scaleFactor"] = list(scale)
    add("resize", name, {"x": tensor(xs)},
        lambda x: F.interpolate(x, size=size, scale_factor=scale, mode=mode,
                                align_corners=False),
        **params)


resize("bilinear up", [1, 1, 3, 4], "bilinear", size=(7, 5))
resize("bilinear down", [1, 1, 9, 8], "bilinear", size=(4, 3))
resize("bicubic up", [1, 1, 4, 3], "bicubic", size=(7, 8))
resize("bicubic down", [1, 1, 8, 9], "bicubic", size=(3, 5))
resize("bicubic mixed", [1, 1, 5, 5], "bicubic", size=(9, 3))
resize("bilinear scale factor", [1, 1, 5, 4], "bilinear", scale=(1.7, 0.6))
resize("bicubic scale factor", [1, 1, 5, 4], "bicubic", scale=(1.7, 2.5))

OUT.write_text(json.dumps({"torch": torch.__version__, "cases": cases}, separators=(",", ":")))
print(f"wrote {len(cases)} cases, {OUT.stat().st_size} bytes to {OUT}")
