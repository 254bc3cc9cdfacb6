#!/usr/bin/env python3
"""Parity fixtures for Graft's VisionTransformer and timm model-folder loader.

Writes Tests/GraftModelsTests/Fixtures/vit/:

* one folder per model family (augreg ViT, DeiT, distilled DeiT, DeiT-III, DINOv2 with and
  without registers, CLIP and CLIP-QuickGELU towers, MAE), each a TINY model built by
  `timm.create_model(<real architecture name>, pretrained=False, **overrides)` (width 32, depth 2,
  2 heads, 32x32 or 28x28/42x42 inputs), its weights perturbed with a fixed seed so biases,
  norms, LayerScale and tokens are non-trivial, and saved by timm's own `save_for_hf` (the same
  `config.json` + `model.safetensors` a hub folder has, `model_args` included). Next to them,
  `io.safetensors` holds the input pixels, the embedded tokens, every block's output, the final
  tokens, the pre-logits features and the logits, all from timm; its metadata lists the state-dict
  keys in timm's order. Two families also hold the gradients of a cross-entropy loss with respect
  to the input and to every parameter, and the DINOv2-with-registers model (dynamic_img_size) is
  also run on a non-square input;
* `architectures.json`: for every timm architecture name the loader claims to support, the
  `config.json` timm writes for it (built on the meta device, no weights) and what timm builds
  (widths, flags, eps, activation, and a hash of the state-dict names and shapes); plus the
  timm names in the same families that Graft must refuse;
* `resample.safetensors`: timm's `resample_abs_pos_embed` (bicubic, antialiased) on a few grids.

Rerun from the repository root (needs `pip install torch timm safetensors huggingface_hub`):

    /work/main/Tools/.venv/bin/python Tools/make_vit_fixtures.py

Everything is seeded, so a rerun with the same torch/timm versions rewrites identical numbers.
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import timm
from safetensors.torch import save_file
from timm.layers import LayerScale, resample_abs_pos_embed
from timm.models._hub import save_config_for_hf, save_for_hf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "GraftModelsTests" / "Fixtures" / "vit"

TINY = dict(embed_dim=32, depth=2, num_heads=2)
TINY16 = dict(TINY, img_size=32, patch_size=8)

# (folder, architecture with tag, overrides, gradient?, dynamic input size or None)
FAMILIES = [
    ("vit_augreg", "vit_small_patch16_224.augreg_in21k_ft_in1k", dict(TINY16, num_classes=10), True, None),
    ("deit", "deit_tiny_patch16_224.fb_in1k", dict(TINY16, num_classes=6), False, None),
    ("deit_distilled", "deit_tiny_distilled_patch16_224.fb_in1k", dict(TINY16, num_classes=6), False, None),
    ("deit3", "deit3_small_patch16_224.fb_in1k", dict(TINY16, num_classes=6, qkv_bias=False), False, None),
    ("dinov2", "vit_small_patch14_dinov2.lvd142m", dict(TINY, img_size=28, num_classes=0), False, None),
    ("dinov2_reg", "vit_small_patch14_reg4_dinov2.lvd142m",
     dict(TINY, img_size=42, num_classes=5, dynamic_img_size=True), True, (28, 56)),
    ("clip", "vit_base_patch16_clip_224.openai", dict(TINY16, num_classes=16), False, None),
    ("clip_quickgelu", "vit_base_patch16_clip_quickgelu_224.openai", dict(TINY16, num_classes=8), False, None),
    ("mae", "vit_base_patch16_224.mae", dict(TINY16, num_classes=7, global_pool="avg"), False, None),
]

# The architecture names Graft resolves (mirrors TimmArchitecture in ViTConfig.swift).
SUPPORTED = [
    r"vit_(tiny|small|base|large|huge|giant|gigantic)_patch\d+_\d+",
    r"deit_(tiny|small|base)(_distilled)?_patch16_\d+",
    r"deit3_(small|medium|base|large|huge)_patch\d+_\d+",
    r"vit_(small|base|large)_patch14(_reg\d+)?_dinov2",
    r"vit_(xsmall|medium|betwixt|base|large|huge|giant|gigantic)_patch\d+_clip(_quickgelu)?_\d+",
]


def perturb(model, seed):
    """Replaces timm's init (tiny LayerScale, zero biases, unit norms) by values that exercise
    every term: linear weights N(0, (1.5/sqrt(fan_in))^2), biases N(0, 0.1^2), norm weights
    1 + N(0, 0.2^2), LayerScale U(0.5, 1.5), tokens and position embedding N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "reg_token", "dist_token", "pos_embed"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith(".gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(1.5 / fan_in ** 0.5 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def run(model, x):
    """Embedded tokens, every block's output, final tokens, features, logits (timm's own path)."""
    m = model
    t = m.patch_embed(x)
    t = m._pos_embed(t)
    t = m.patch_drop(t)
    t = m.norm_pre(t)
    embedded = t
    hidden = []
    for blk in m.blocks:
        t = blk(t)
        hidden.append(t)
    tokens = m.norm(t)
    features = m.forward_head(tokens, pre_logits=True)
    logits = m.forward_head(tokens)
    ref = m(x)
    assert torch.equal(ref, logits), "manual path differs from model(x)"
    assert torch.equal(m.forward_features(x), tokens)
    return embedded, hidden, tokens, features, logits


def make_family(folder, arch, overrides, grads, dynamic, seed):
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, **overrides).eval()
    perturb(model, seed + 1000)
    path = OUT / folder
    if path.exists():
        shutil.rmtree(path)
    save_for_hf(model, path, safe_serialization=True)

    g = torch.Generator().manual_seed(seed + 2000)
    h, w = model.patch_embed.img_size
    x = torch.randn(2, 3, h, w, generator=g)
    io = {"input": x}
    with torch.no_grad():
        embedded, hidden, tokens, features, logits = run(model, x)
    io["embedded"] = embedded
    for i, t in enumerate(hidden):
        io[f"hidden.{i}"] = t
    io.update(tokens=tokens, features=features, logits=logits)
    meta = {"architecture": arch, "overrides": overrides, "keys": list(model.state_dict().keys())}
    if grads:
        labels = torch.tensor([1, 3])
        xg = x.clone().requires_grad_(True)
        model.zero_grad()
        loss = F.cross_entropy(model(xg), labels)
        loss.backward()
        io["grad.input"] = xg.grad
        for name, p in model.named_parameters():
            io[f"grad.{name}"] = p.grad
        io["loss"] = loss.detach().reshape(1)
        meta["labels"] = labels.tolist()
    if dynamic is not None:
        xd = torch.randn(2, 3, *dynamic, generator=g)
        with torch.no_grad():
            embedded, hidden, tokens, features, logits = run(model, xd)
        io["dyn.input"] = xd
        io["dyn.embedded"] = embedded
        for i, t in enumerate(hidden):
            io[f"dyn.hidden.{i}"] = t
        io.update({"dyn.tokens": tokens, "dyn.features": features, "dyn.logits": logits})
    # One metadata entry: safetensors writes several in hash order, which would change every run.
    save_file(
        {k: v.detach().clone().contiguous() for k, v in io.items()}, path / "io.safetensors",
        metadata={"fixture": json.dumps(meta, sort_keys=True)})
    return path


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def describe(m):
    b = m.blocks[0]
    state = [(k, list(v.shape)) for k, v in m.state_dict().items()]
    lines = "".join(f"{k}:{','.join(map(str, s))}\n" for k, s in state)
    return dict(
        embed_dim=m.embed_dim, depth=len(m.blocks), num_heads=b.attn.num_heads,
        mlp_hidden=b.mlp.fc1.out_features, qkv_bias=b.attn.qkv.bias is not None,
        patch_size=list(m.patch_embed.patch_size), img_size=list(m.patch_embed.img_size),
        in_chans=m.patch_embed.proj.in_channels, patch_bias=m.patch_embed.proj.bias is not None,
        class_token=m.cls_token is not None, reg_tokens=m.num_reg_tokens,
        no_embed_class=m.no_embed_class, pre_norm=not isinstance(m.norm_pre, nn.Identity),
        norm=not isinstance(m.norm, nn.Identity), fc_norm=not isinstance(m.fc_norm, nn.Identity),
        global_pool=m.global_pool, num_classes=m.num_classes,
        init_values=float(b.ls1.init_values) if isinstance(b.ls1, LayerScale) else None,
        act=type(b.mlp.act).__name__, eps=b.norm1.eps, distilled=hasattr(m, "dist_token"),
        dynamic_img_size=m.dynamic_img_size, state_count=len(state), state_hash=fnv1a64(lines),
    )


def make_architectures():
    names = timm.list_models(["vit_*", "deit*"])
    supported = [n for n in names if any(re.fullmatch(p, n) for p in SUPPORTED)]
    refused = [n for n in names if n not in supported]
    out = {"supported": {}, "refused": refused}
    with tempfile.TemporaryDirectory() as tmp:
        for n in supported:
            with torch.device("meta"):
                m = timm.create_model(n, pretrained=False)
            cfg_path = Path(tmp) / "config.json"
            save_config_for_hf(m, cfg_path)
            out["supported"][n] = {"config": json.loads(cfg_path.read_text()), "timm": describe(m)}
    (OUT / "architectures.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return len(supported), len(refused)


def make_resample():
    g = torch.Generator().manual_seed(7)
    cases = [((4, 4), (3, 5), 1), ((3, 3), (7, 2), 0), ((6, 5), (2, 2), 2), ((2, 3), (5, 3), 1)]
    tensors, meta = {}, []
    for i, (old, new, prefix) in enumerate(cases):
        pe = torch.randn(1, prefix + old[0] * old[1], 3, generator=g)
        tensors[f"{i}.input"] = pe
        tensors[f"{i}.output"] = resample_abs_pos_embed(pe, new_size=new, old_size=old, num_prefix_tokens=prefix).contiguous()
        meta.append(dict(old=old, new=new, prefix=prefix))
    save_file(tensors, OUT / "resample.safetensors", metadata={"cases": json.dumps(meta)})


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (folder, arch, overrides, grads, dynamic) in enumerate(FAMILIES):
        make_family(folder, arch, overrides, grads, dynamic, seed=100 + i)
        print("wrote", folder)
    print("architectures: %d supported, %d refused" % make_architectures())
    make_resample()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
