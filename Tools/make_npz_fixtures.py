#!/usr/bin/env python3
"""Writes the NumPy archive fixtures that Tests/GraftModelsTests/{NumpyArchiveTests,
GoogleViTCheckpointTests}.swift read.

Rerun from the repository root (needs numpy, torch, timm and safetensors, i.e.
`pip install numpy torch timm safetensors`; the project venv has them):

    /work/main/Tools/.venv/bin/python Tools/make_npz_fixtures.py

Outputs, in Tests/GraftModelsTests/Fixtures/npz/:

  google_vit.npz               a tiny timm ViT (width 32, depth 2, 2 heads, 32x32 images, 8x8
                               patches, 5 classes, random weights) written in the layout of
                               Google's original ViT checkpoints (`Transformer/encoderblock_N/
                               MultiHeadDotProductAttention_1/query/kernel`, ...) with
                               `np.savez` (stored members), plus an unused `pre_logits` layer
                               as in the in21k checkpoints.
  google_vit_reference.safetensors
                               that model's timm state dict, the expected result of mapping the
                               npz to timm names.
  google_vit_grid3x6_reference.safetensors
                               `pos_embed` of a timm model for 24x48 images (a 3x6 patch grid)
                               after timm's own `_load_weights` read google_vit.npz into it: the
                               expected result of resampling the 4x4 position grid.
  bigvision_vit.npz            a tiny timm ViT with a MAP (attention-pool) head, no class token
                               and no classifier (width 16, depth 3, 2 heads), in big_vision's
                               layout (`params/` prefix, blocks scanned into one stacked array
                               per parameter, `params/pos_embedding`, `MlpBlock_0`, ...),
                               written with `np.savez_compressed` (deflated members).
  bigvision_vit_reference.safetensors
                               that model's timm state dict.
  dtypes_zip64.npz             small arrays of many dtypes (little- and big-endian, Fortran
                               order, a scalar, an empty array, .npy format versions 1, 2 and 3)
                               written with zipfile's ZIP64 limit lowered to 0, so that every
                               size and offset goes through ZIP64 extra fields and the archive
                               ends in ZIP64 end-of-central-directory records.
  dtypes_zip64.json            what each member of dtypes_zip64.npz must read as: descr, shape,
                               fortran_order, and the C-order values as float32 bit patterns
                               ("bits") or integers ("ints").

Before writing, the script checks with timm's own npz loader
(`timm.models.vision_transformer._load_weights`) that a fresh model loads each Google-layout
archive back to exactly the original weights and outputs; it fails loudly otherwise. Reruns
write the same values (fixed seeds); zip timestamps may differ.
"""

import io
import json
import os
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer, _load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "GraftModelsTests", "Fixtures", "npz")


def randomize(model, seed):
    """Every parameter random (unit-scale normal), so that no swap of two tensors or of two
    layouts can go unnoticed (LayerNorm's ones and zeros would hide many)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def np32(t):
    return t.detach().cpu().numpy().astype(np.float32)


def attention_arrays(prefix, qkv_w, qkv_b, proj_w, proj_b, heads, split_qkv=True):
    """Flax MultiHeadDotProductAttention parameters from timm's fused layout.

    query/key/value kernels are [D_in, heads, head_dim] (Dense kernels are [in, out]); their
    biases [heads, head_dim]; the out kernel is [heads, head_dim, D_out]."""
    out = {}
    names = ("query", "key", "value") if split_qkv else ()
    d_in = qkv_w.shape[1]
    if split_qkv:
        ws = np.split(qkv_w, 3, axis=0)
        bs = np.split(qkv_b, 3, axis=0)
        for n, w, b in zip(names, ws, bs):
            hd = w.shape[0] // heads
            out[f"{prefix}{n}/kernel"] = w.T.reshape(d_in, heads, hd)
            out[f"{prefix}{n}/bias"] = b.reshape(heads, hd)
    d_out = proj_w.shape[0]
    hd = proj_w.shape[1] // heads
    out[f"{prefix}out/kernel"] = proj_w.T.reshape(heads, hd, d_out)
    out[f"{prefix}out/bias"] = proj_b
    return out


def google_layout(model, heads, extra_pre_logits=None):
    """The original Google ViT checkpoint naming for a timm ViT (the inverse of timm's loader)."""
    sd = {k: np32(v) for k, v in model.state_dict().items()}
    w = {}
    w["embedding/kernel"] = sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
    w["embedding/bias"] = sd["patch_embed.proj.bias"]
    w["cls"] = sd["cls_token"]
    w["Transformer/posembed_input/pos_embedding"] = sd["pos_embed"]
    depth = len(model.blocks)
    for i in range(depth):
        b = f"blocks.{i}."
        p = f"Transformer/encoderblock_{i}/"
        w[p + "LayerNorm_0/scale"] = sd[b + "norm1.weight"]
        w[p + "LayerNorm_0/bias"] = sd[b + "norm1.bias"]
        w.update(attention_arrays(
            p + "MultiHeadDotProductAttention_1/", sd[b + "attn.qkv.weight"],
            sd[b + "attn.qkv.bias"], sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"], heads))
        w[p + "LayerNorm_2/scale"] = sd[b + "norm2.weight"]
        w[p + "LayerNorm_2/bias"] = sd[b + "norm2.bias"]
        for r in range(2):
            w[p + f"MlpBlock_3/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            w[p + f"MlpBlock_3/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
    w["Transformer/encoder_norm/scale"] = sd["norm.weight"]
    w["Transformer/encoder_norm/bias"] = sd["norm.bias"]
    w["head/kernel"] = sd["head.weight"].T
    w["head/bias"] = sd["head.bias"]
    if extra_pre_logits is not None:
        w["pre_logits/kernel"], w["pre_logits/bias"] = extra_pre_logits
    return {k: np.ascontiguousarray(v) for k, v in w.items()}


def big_vision_layout(model, heads):
    """big_vision's naming (SigLIP-style ViT with a MAP head): `params/` prefix, scanned blocks
    stacked on a leading depth axis, `pos_embedding` at the top level."""
    sd = {k: np32(v) for k, v in model.state_dict().items()}
    P = "params/"
    w = {}
    w[P + "embedding/kernel"] = sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
    w[P + "embedding/bias"] = sd["patch_embed.proj.bias"]
    w[P + "pos_embedding"] = sd["pos_embed"]
    depth = len(model.blocks)
    per_block = []
    for i in range(depth):
        b = f"blocks.{i}."
        blk = {
            "LayerNorm_0/scale": sd[b + "norm1.weight"], "LayerNorm_0/bias": sd[b + "norm1.bias"],
            "LayerNorm_1/scale": sd[b + "norm2.weight"], "LayerNorm_1/bias": sd[b + "norm2.bias"],
        }
        blk.update(attention_arrays(
            "MultiHeadDotProductAttention_0/", sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"],
            sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"], heads))
        for r in range(2):
            blk[f"MlpBlock_0/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            blk[f"MlpBlock_0/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
        per_block.append(blk)
    for k in per_block[0]:
        w[P + "Transformer/encoderblock/" + k] = np.stack([blk[k] for blk in per_block])
    w[P + "Transformer/encoder_norm/scale"] = sd["norm.weight"]
    w[P + "Transformer/encoder_norm/bias"] = sd["norm.bias"]
    # MAP head: latent probe, attention with separate q and fused kv in timm.
    M = P + "MAPHead_0/"
    w[M + "probe"] = sd["attn_pool.latent"]
    d = sd["attn_pool.q.weight"].shape[1]
    hd = d // heads
    mha = M + "MultiHeadDotProductAttention_0/"
    kv_w = np.split(sd["attn_pool.kv.weight"], 2, axis=0)
    kv_b = np.split(sd["attn_pool.kv.bias"], 2, axis=0)
    for n, wt, bias in (("query", sd["attn_pool.q.weight"], sd["attn_pool.q.bias"]),
                        ("key", kv_w[0], kv_b[0]), ("value", kv_w[1], kv_b[1])):
        w[mha + f"{n}/kernel"] = wt.T.reshape(d, heads, hd)
        w[mha + f"{n}/bias"] = bias.reshape(heads, hd)
    w[mha + "out/kernel"] = sd["attn_pool.proj.weight"].T.reshape(heads, hd, d)
    w[mha + "out/bias"] = sd["attn_pool.proj.bias"]
    w[M + "LayerNorm_0/scale"] = sd["attn_pool.norm.weight"]
    w[M + "LayerNorm_0/bias"] = sd["attn_pool.norm.bias"]
    for r in range(2):
        w[M + f"MlpBlock_0/Dense_{r}/kernel"] = sd[f"attn_pool.mlp.fc{r + 1}.weight"].T
        w[M + f"MlpBlock_0/Dense_{r}/bias"] = sd[f"attn_pool.mlp.fc{r + 1}.bias"]
    return {k: np.ascontiguousarray(v) for k, v in w.items()}


def check_roundtrip(make_model, original, path, image_shape):
    """timm's own loader must read `path` into a fresh model exactly as `original`."""
    fresh = randomize(make_model(), seed=999)
    _load_weights(fresh, path)
    a, b = original.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys(), (a.keys() ^ b.keys())
    for k in a:
        assert torch.equal(a[k], b[k]), f"{path}: timm loaded {k} differently"
    x = torch.randn(image_shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(original(x), fresh(x)), f"{path}: outputs differ after timm's load"


def save_reference(model, path):
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"format": "pt"})


def google_fixture():
    def make(img_size=32):
        return VisionTransformer(img_size=img_size, patch_size=8, embed_dim=32, depth=2,
                                 num_heads=2, num_classes=5)
    model = randomize(make(), seed=1)
    rng = np.random.default_rng(2)
    pre_logits = (rng.standard_normal((32, 32)).astype(np.float32),
                  rng.standard_normal(32).astype(np.float32))
    arrays = google_layout(model, heads=2, extra_pre_logits=pre_logits)
    path = os.path.join(OUT, "google_vit.npz")
    np.savez(path, **arrays)
    check_roundtrip(make, model, path, (2, 3, 32, 32))
    save_reference(model, os.path.join(OUT, "google_vit_reference.safetensors"))

    # A different patch grid: timm resamples the position table (bilinear, no antialias).
    wide = randomize(make(img_size=(24, 48)), seed=3)
    _load_weights(wide, path)
    assert wide.pos_embed.shape == (1, 1 + 3 * 6, 32)
    assert torch.equal(wide.pos_embed[:, :1], model.pos_embed[:, :1])
    save_file({"pos_embed": wide.pos_embed.detach().contiguous()},
              os.path.join(OUT, "google_vit_grid3x6_reference.safetensors"),
              metadata={"format": "pt"})


def big_vision_fixture():
    def make():
        return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2,
                                 num_classes=0, class_token=False, global_pool="map")
    model = randomize(make(), seed=4)
    arrays = big_vision_layout(model, heads=2)
    path = os.path.join(OUT, "bigvision_vit.npz")
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    check_roundtrip(make, model, path, (2, 3, 32, 32))
    save_reference(model, os.path.join(OUT, "bigvision_vit_reference.safetensors"))


def dtype_fixture():
    base = np.array([0.0, -0.0, 1.5, -2.25, 1e-3, 65504.0, 3.0e38, np.inf, -np.inf, 7.0],
                    dtype=np.float64)
    ar12 = np.arange(12)
    members = {
        # name: (array, npy format version)
        "f4": ((ar12.reshape(3, 4) * 0.75 - 4).astype("<f4"), (1, 0)),
        "f8": (base.reshape(2, 5).astype("<f8"), (1, 0)),
        "f2": (np.array([0.5, -1.0, 65504.0, 6.1035156e-05, 5.9604645e-08, 0.0],
                        dtype="<f2").reshape(3, 2), (1, 0)),
        "f4_big_endian": ((ar12.reshape(2, 6) - 5.5).astype(">f4"), (1, 0)),
        "f8_big_endian": (base[:4].astype(">f8"), (1, 0)),
        "f4_fortran": (np.asfortranarray((np.arange(24).reshape(2, 3, 4) * 0.5).astype("<f4")),
                       (1, 0)),
        "i8": (np.array([[-3, 0, 5], [2**40, -(2**40), 7]], dtype="<i8"), (1, 0)),
        "i4": (np.array([-2147483648, 2147483647, 0, 42], dtype="<i4"), (1, 0)),
        "i4_big_endian": (np.array([1, -2, 300000], dtype=">i4"), (1, 0)),
        "i2": (np.array([-32768, 32767, 5], dtype="<i2"), (1, 0)),
        "i1": (np.array([-128, 127, 0], dtype="|i1"), (1, 0)),
        "u1": (np.array([[0, 1, 255], [128, 7, 9]], dtype="|u1"), (1, 0)),
        "u2": (np.array([0, 65535], dtype="<u2"), (1, 0)),
        "u4": (np.array([0, 4294967295], dtype="<u4"), (1, 0)),
        "u8": (np.array([0, 2**53], dtype="<u8"), (1, 0)),
        "b1": (np.array([True, False, True, True], dtype="|b1"), (1, 0)),
        "scalar_f4": (np.array(2.5, dtype="<f4"), (1, 0)),
        "empty_f4": (np.zeros((0, 3), dtype="<f4"), (1, 0)),
        "f4_v2": ((np.arange(6).reshape(1, 2, 3) + 0.25).astype("<f4"), (2, 0)),
        "f4_v3": ((np.arange(5) - 0.5).astype("<f4"), (3, 0)),
        "complex_unsupported": (np.array([1 + 2j], dtype="<c8"), (1, 0)),
        "nested/name/f4": (np.array([[1.0], [2.0]], dtype="<f4"), (1, 0)),
    }
    path = os.path.join(OUT, "dtypes_zip64.npz")
    saved_limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 0  # every size and offset written as ZIP64
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, (arr, version) in members.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, arr, version=version)
    finally:
        zipfile.ZIP64_LIMIT = saved_limit
    raw = open(path, "rb").read()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw, "no ZIP64 end records written"

    expect = {}
    with np.load(path) as loaded:
        for name, (arr, version) in members.items():
            got = loaded[name]
            assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)
            entry = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "shape": list(arr.shape),
                     "fortran_order": bool(arr.flags.f_contiguous and not arr.flags.c_contiguous),
                     "version": list(version)}
            flat = np.ascontiguousarray(arr).reshape(-1)
            if arr.dtype.kind == "f":
                entry["bits"] = [int(b) for b in flat.astype(np.float32).view(np.uint32)]
            elif arr.dtype.kind in "iub":
                entry["ints"] = [int(v) for v in flat]
            expect[name] = entry
    with open(os.path.join(OUT, "dtypes_zip64.json"), "w") as f:
        json.dump({"members": expect}, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    google_fixture()
    big_vision_fixture()
    dtype_fixture()
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):8d}  {name}")


if __name__ == "__main__":
    main()
