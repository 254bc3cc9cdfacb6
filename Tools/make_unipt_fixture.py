#!/usr/bin/env python3
"""Writes Tests/GraftTuningTests/Fixtures/unipt_reference.safetensors, the PyTorch reference that
SideTuningTests.testUniPTMatchesPyTorchReference checks `UniPT.fuse(states:final:)` against.

Rerun from the repository root with a python that has torch and safetensors:

    Tools/.venv/bin/python Tools/make_unipt_fixture.py

An independent PyTorch statement of the UniPT transformer variant (VSE-infty's
`adapter_for_transformer.py` in the official UniPT code, as `Sources/GraftTuning/UniPT.swift`
describes it), sized for
the tests' tiny ViT: D = 16, L = 2 blocks (key states H0, H1 and the final tokens F), N = 5
tokens, B = 2, reduction 2 (m = 8). Linear layers keep PyTorch's default init, drawn from seed 0
(LayerNorm affine parameters are perturbed by N(0, 0.1²) so they matter); the
parameters are stored under Graft's checkpoint names (`unipt.downsample_layers.0.0.weight`, ...),
the inputs as `input.state.<l>` and `input.final`, and the result (computed in float64, stored as
float32) as `expected.fused`.
"""

import os

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "GraftTuningTests", "Fixtures", "unipt_reference.safetensors")

B, N, D, L, R = 2, 5, 16, 2, 2
M = D // R
EPS = 1e-8


class Reference(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.downsample_layers = torch.nn.ModuleList(
            [torch.nn.Sequential(torch.nn.Linear(D, M), torch.nn.LayerNorm(M)) for _ in range(L + 1)]
        )
        self.projection_layer = torch.nn.Sequential(torch.nn.Linear(M, M), torch.nn.LayerNorm(M))
        self.upsample_layer = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(M, D))
        self.gate_layer = torch.nn.Linear(M, 1)

    def forward(self, states, final):
        anchor = self.downsample_layers[L](final)  # [B, N, m]
        anchor_mean = anchor.mean(dim=1)
        merged, confidence = [], []
        for l, h in enumerate(states):
            t = self.downsample_layers[l](h)
            scores = torch.relu(anchor @ t.transpose(1, 2))  # [B, N, N]
            weights = scores / (scores.abs().sum(dim=-1, keepdim=True) + EPS)
            weights = weights + torch.eye(N, dtype=weights.dtype)
            merged.append(weights @ t)
            confidence.append(self.gate_layer(anchor_mean * t.mean(dim=1)))  # [B, 1]
        soft = torch.softmax(torch.cat(confidence, dim=1), dim=1)  # [B, L]
        m = (torch.stack(merged, dim=1) * soft[:, :, None, None]).sum(dim=1)
        out = anchor + self.projection_layer(m)
        return final + self.upsample_layer(out)


def main():
    torch.manual_seed(0)
    model = Reference()
    # LayerNorm affine parameters away from ones and zeros, so the test exercises them.
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.add_(0.1 * torch.randn_like(mod.bias))
    states = [torch.randn(B, N, D) for _ in range(L)]
    final = torch.randn(B, N, D)
    with torch.no_grad():
        expected = model.double()(
            [s.double() for s in states], final.double()).float()
    tensors = {"unipt." + k: v.float().contiguous() for k, v in model.state_dict().items()}
    for l, s in enumerate(states):
        tensors[f"input.state.{l}"] = s.contiguous()
    tensors["input.final"] = final.contiguous()
    tensors["expected.fused"] = expected.contiguous()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT)
    print("wrote", OUT, sorted(tensors))


if __name__ == "__main__":
    main()
