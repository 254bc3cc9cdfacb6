#!/usr/bin/env python3
"""Writes Tests/GraftTuningTests/Fixtures/mp_head.safetensors: PyTorch reference logits of the
Moment Probing head (`mp`), which Tests/GraftTuningTests/MomentProbingTests.swift compares with
Graft's `MomentProbing.logits` (≤ 1e-4 relative).

Run from the repository root with the project's venv (torch and safetensors):

    Tools/.venv/bin/python Tools/make_mp_fixture.py

The head below follows the ops of the official `Moment_Probing_ViT`
(mingzeG/Moment-Probing, models/representation/MP.py), written out here:
  - the patch tokens are every row after the class token (`x[:, 1:]`), projected by `proj`;
  - the projection is reshaped to [B, N, heads, P/heads] and split into heads;
  - every head goes through the one shared LayerNorm(P/heads) (eps 1e-5);
  - the mean is removed as `Covariance._remove_mean` does: transpose to [B, h, N] and
    `adaptive_avg_pool2d(., (1, 1))`, which on a 3-D tensor averages over the last two axes:
    one scalar per sample, not one per channel;
  - the cross-covariance is (1/N)·X_iᵀ·X_j via bmm;
  - `near` and `n/2` L2-normalise each matrix with F.normalize(dim=2) on [B, 1, h, h]; the
    `cn2` branch of the official code does not normalise;
  - the matrices are concatenated as channels, then Conv2d(3×3, stride 2, no pad, no bias),
    GELU (exact), Conv2d, flatten, classifier2; logits = (classifier1(cls) + classifier2(.)) / 2.
The official code hard-codes 3 → 3 convolutions and a 2883-wide classifier2, so only `near` with
4 heads and P = 512 runs there: case `near` is exactly that configuration. Cases `cn2` and `n2`
(`n/2`) use K → K convolutions (K = number of head pairs), as Graft does.

Tensors are named `<case>.<official state-dict name>` (`near.head.proj.weight`,
`near.head.downblocks.0.0.weight`, …) plus `<case>.tokens` [B, 1 + N, D] (the final normed
tokens; the class token is row 0 and is also the first-order input, fc_norm being Identity for
token pooling) and `<case>.logits` [B, C]. Weights are random and larger than the reference init
(LayerNorm affine too), so the mean removal and every branch matter; the script checks that
per-channel mean removal or normalising along the other axis would change the logits.
Logits are computed in float64 and stored as float32.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "GraftTuningTests", "Fixtures", "mp_head.safetensors")

# name: (cross, D, P, heads, classes, batch, patches)
CASES = {
    "near": ("near", 12, 512, 4, 5, 2, 6),
    "cn2": ("cn2", 12, 56, 4, 3, 2, 5),
    "n2": ("n/2", 10, 64, 4, 3, 3, 4),
}


def pairs(cross, heads):
    if cross == "near":
        return [(i, i + 1) for i in range(heads - 1)]
    if cross == "n/2":
        return [(i, i + heads // 2) for i in range(heads // 2)]
    return [(i, j) for i in range(heads - 1) for j in range(i + 1, heads)]


def side(h):
    once = (h - 3) // 2 + 1
    return (once - 3) // 2 + 1


def make_weights(gen, d, p, heads, classes, k, feature):
    h = p // heads

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    return {
        "head.classifier1.weight": randn(classes, d, std=0.3),
        "head.classifier1.bias": randn(classes, std=0.1),
        "head.proj.weight": randn(p, d, std=0.3),
        "head.proj.bias": randn(p, std=0.2),
        "head.ln.weight": 1 + randn(h, std=0.3),
        "head.ln.bias": randn(h, std=0.5),
        "head.downblocks.0.0.weight": randn(k, k, 3, 3, std=0.3),
        "head.downblocks.0.2.weight": randn(k, k, 3, 3, std=0.3),
        "head.classifier2.weight": randn(classes, feature, std=0.3),
        "head.classifier2.bias": randn(classes, std=0.1),
    }


def remove_mean(x, per_channel=False):
    """Covariance._remove_mean: x [B, N, h] -> transpose -> adaptive_avg_pool2d on a 3-D tensor."""
    if per_channel:  # the wrong reading, for the discrimination check only
        return x - x.mean(dim=1, keepdim=True)
    t = x.transpose(-1, -2)
    t = t - F.adaptive_avg_pool2d(t, (1, 1))
    return t.transpose(-1, -2)


def mp_head(w, tokens, cross, heads, per_channel_mean=False, norm_dim=2):
    x = F.linear(tokens[:, 1:, :], w["head.proj.weight"], w["head.proj.bias"])
    b, n, p = x.shape
    h = p // heads
    groups = x.reshape(b, n, heads, h).permute(2, 0, 1, 3)

    def ln(t):
        return F.layer_norm(t, (h,), w["head.ln.weight"], w["head.ln.bias"], eps=1e-5)

    channels = []
    for i, j in pairs(cross, heads):
        xi = remove_mean(ln(groups[i]), per_channel_mean)
        xj = remove_mean(ln(groups[j]), per_channel_mean)
        cov = (1.0 / n) * xi.transpose(1, 2).bmm(xj)  # [B, h, h]
        cov = cov.unsqueeze(1)
        if cross != "cn2":
            cov = F.normalize(cov, dim=norm_dim)
        channels.append(cov)
    stacked = torch.cat(channels, dim=1)
    y = F.conv2d(stacked, w["head.downblocks.0.0.weight"], stride=2)
    y = F.gelu(y)
    y = F.conv2d(y, w["head.downblocks.0.2.weight"], stride=2)
    flat = y.reshape(b, -1)
    first = F.linear(tokens[:, 0], w["head.classifier1.weight"], w["head.classifier1.bias"])
    second = F.linear(flat, w["head.classifier2.weight"], w["head.classifier2.bias"])
    return (first + second) / 2


def main():
    gen = torch.Generator().manual_seed(20231002)
    out = {}
    for name, (cross, d, p, heads, classes, batch, patches) in CASES.items():
        k = len(pairs(cross, heads))
        feature = k * side(p // heads) ** 2
        if name == "near":
            assert feature == 2883, feature
        w = make_weights(gen, d, p, heads, classes, k, feature)
        tokens = torch.randn(batch, 1 + patches, d, generator=gen, dtype=torch.float64)
        tokens = tokens.float().double()  # the values Graft reads back
        w = {key: v.float().double() for key, v in w.items()}
        logits = mp_head(w, tokens, cross, heads)
        assert logits.shape == (batch, classes)
        # The fixture must tell the subtleties apart.
        wrong_mean = mp_head(w, tokens, cross, heads, per_channel_mean=True)
        assert (wrong_mean - logits).abs().max() > 1e-3 * logits.abs().max(), name
        if cross != "cn2":
            wrong_axis = mp_head(w, tokens, cross, heads, norm_dim=3)
            assert (wrong_axis - logits).abs().max() > 1e-3 * logits.abs().max(), name
        for key, v in w.items():
            out[f"{name}.{key}"] = v.float().contiguous()
        out[f"{name}.tokens"] = tokens.float().contiguous()
        out[f"{name}.logits"] = logits.float().contiguous()
        print(name, "feature", feature, "logits", logits.flatten()[:4].tolist())
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata={"generated_by": "Tools/make_mp_fixture.py"})
    print(OUT, os.path.getsize(OUT))


if __name__ == "__main__":
    main()
