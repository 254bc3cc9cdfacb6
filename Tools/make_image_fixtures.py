#!/usr/bin/env python3
"""Writes the image fixtures for Tests/GraftDataTests (decoding, preprocessing).

Rerun from the repository root with a Python that has Pillow, numpy, torch, torchvision and timm
(`pip install torch torchvision timm pillow numpy`; on the project machines that is
/work/main/Tools/.venv/bin/python):

    python Tools/make_image_fixtures.py --sources DIR

DIR holds china.jpg and flower.jpg from scikit-learn (sklearn/datasets/images/, CC-BY 2.0; take
them from an installed scikit-learn or unzip a scikit-learn wheel). Without --sources the script
looks in the installed sklearn package. Only small derived crops are written; see SOURCES.md.

Expected values come from Pillow (decoding, resizing), torchvision (resized crop) and timm's own
`create_transform` (eval preprocessing), never from Graft.
"""

import argparse
import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
import timm
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision.transforms import InterpolationMode

OUT = Path(__file__).resolve().parent.parent / "Tests/GraftDataTests/Fixtures/images"

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
TV_MODE = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def source_dir(arg):
    if arg:
        return Path(arg)
    import sklearn  # only to find the bundled photos

    return Path(sklearn.__file__).parent / "datasets/images"


# MARK: hand-written PNGs (Pillow cannot write 16-bit colour or interlaced files)


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png16(samples, color_type, interlaced):
    """samples: uint16 array [H, W, C]; filter type 0 (None) on every row."""
    h, w, _ = samples.shape
    big = samples.astype(">u2")
    raw = bytearray()
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = big[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 1 if interlaced else 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + png_chunk(b"IEND", b"")
    )


# MARK: decoding fixtures


def pillow_rgb(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def pillow_fails(data):
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB")
    except Exception as error:  # noqa: BLE001 - any refusal counts
        return type(error).__name__
    return None


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_decode_fixtures(china):
    # A 41x29 photo crop: odd sides exercise partial JPEG MCUs and chroma upsampling at edges.
    base = china.crop((180, 90, 426, 264)).resize((41, 29), Image.Resampling.LANCZOS)
    rgb = np.asarray(base)
    h, w, _ = rgb.shape
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = ((xx * 7 + yy * 11) % 256).astype(np.uint8)

    # CMYK with real black: k from the brightest channel, inks from the rest.
    k = 255 - rgb.max(axis=2).astype(np.int32)
    denom = np.maximum(255 - k, 1)
    cmy = ((255 - rgb.astype(np.int32) - k[..., None]) * 255 // denom[..., None]).clip(0, 255)
    cmyk = np.dstack([cmy, k]).astype(np.uint8)

    # Low bytes that differ from the high ones, in a pattern that still compresses.
    low = ((xx * 37 + yy * 91)[..., None] + np.arange(4) * 64) % 256
    rgba16 = (np.dstack([rgb, alpha]).astype(np.int32) * 256 + low).astype(np.uint16)
    grey16 = (np.asarray(base.convert("L")).astype(np.int32) * 256 + low[..., 0]).astype(np.uint16)

    palette16 = base.quantize(colors=16)
    palette64 = base.quantize(colors=64)
    palette64.info["transparency"] = bytes([0, 128] + [255] * 62)

    files = {
        "jpeg_baseline.jpg": encoded(base, "JPEG", quality=90),
        "jpeg_444.jpg": encoded(base, "JPEG", quality=85, subsampling=0),
        "jpeg_progressive.jpg": encoded(base, "JPEG", quality=90, progressive=True),
        "jpeg_grey.jpg": encoded(base.convert("L"), "JPEG", quality=90),
        "jpeg_cmyk.jpg": encoded(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=90),
        "png_rgb.png": encoded(base, "PNG"),
        "png_rgba.png": encoded(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG"),
        "png_grey.png": encoded(base.convert("L"), "PNG"),
        "png_grey_alpha.png": encoded(base.convert("LA"), "PNG"),
        "png_1bit.png": encoded(base.convert("1"), "PNG"),
        "png_palette4.png": encoded(palette16, "PNG"),
        "png_palette_trns.png": encoded(palette64, "PNG", transparency=palette64.info["transparency"]),
        "png_rgb16_interlaced.png": write_png16(rgba16[..., :3], 2, interlaced=True),
        "png_rgba16.png": write_png16(rgba16, 6, interlaced=False),
        "png_grey16.png": encoded(Image.fromarray(grey16), "PNG"),
    }
    decoded = []
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        entry = {"file": name, "expected": name.rsplit(".", 1)[0] + ".rgb"}
        if name == "png_grey16.png":
            # Pillow clips 16-bit grey ("I;16") to 255 in convert("RGB"), whitening the image;
            # Graft keeps the high byte like Pillow does for every other 16-bit PNG.
            clipped = pillow_rgb(data)
            assert clipped.max() == 255 and (clipped[..., 0] == np.minimum(grey16, 255)).all()
            expected = np.repeat((grey16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
            entry["reference"] = "high byte of each 16-bit sample (numpy); Pillow clips instead"
        else:
            expected = pillow_rgb(data)
            entry["reference"] = f"Pillow {PIL.__version__} Image.open().convert('RGB')"
        if name.endswith("16_interlaced.png") or name == "png_rgba16.png":
            assert (expected == (rgba16[..., :3] >> 8)).all(), "Pillow keeps the high byte"
        assert expected.shape == (h, w, 3)
        entry["width"], entry["height"] = w, h
        (OUT / entry["expected"]).write_bytes(expected.astype(np.uint8).tobytes())
        decoded.append(entry)

    # Broken files: each must also be refused by Pillow.
    baseline = files["jpeg_baseline.jpg"]
    progressive = files["jpeg_progressive.jpg"]
    png = files["png_rgb.png"]
    bad_huffman = bytearray(baseline)
    dht = bad_huffman.index(b"\xff\xc4")
    bad_huffman[dht + 5 : dht + 21] = b"\xff" * 16  # code counts summing past 256
    bad_crc = bytearray(png)
    idat = bad_crc.index(b"IDAT")
    bad_crc[idat + 40] ^= 0x5A
    gif = encoded(Image.new("RGB", (2, 2), (10, 20, 30)), "GIF")
    errors = {
        "truncated.jpg": (baseline[: len(baseline) * 6 // 10], "truncated"),
        "truncated_progressive.jpg": (progressive[: len(progressive) * 7 // 10], "truncated"),
        "truncated.png": (png[: len(png) * 6 // 10], "truncated"),
        "corrupt.jpg": (bytes(bad_huffman), "corrupt"),
        "corrupt.png": (bytes(bad_crc), "corrupt"),
        "not_an_image.txt": (b"just some text, no image here\n", "unknownFormat"),
        "tiny.gif": (gif, "unsupported"),
    }
    failing = []
    for name, (data, kind) in errors.items():
        refusal = pillow_fails(data) if kind != "unsupported" else "not decoded by Graft"
        assert refusal, f"Pillow decodes {name}, so it is no error fixture"
        (OUT / name).write_bytes(data)
        failing.append({"file": name, "kind": kind, "pillow": refusal})
    return {"decoded": decoded, "errors": failing}


# MARK: preprocessing fixtures


def timm_eval(cfg, image):
    config = resolve_data_config(pretrained_cfg=cfg)
    transform = create_transform(**config, is_training=False)
    return transform(image).numpy().astype(np.float32), config


def make_preprocess_fixtures(flower, china):
    src = flower.crop((100, 80, 484, 368)).resize((96, 72), Image.Resampling.LANCZOS)
    (OUT / "resize_src.png").write_bytes(encoded(src, "PNG"))
    portrait = src.transpose(Image.Transpose.TRANSPOSE)  # 72 wide, 96 high

    resizes = []
    cases = [
        ("bicubic", 53, 40, None),
        ("bilinear", 36, 27, None),
        ("bicubic", 48, 20, (0, 0, 48, 36)),  # vertical pass only
        ("bilinear", 30, 36, (20, 30, 68, 66)),  # horizontal pass only
        ("lanczos", 30, 23, None),
        ("hamming", 30, 23, None),
        ("box", 24, 18, None),
        ("bicubic", 45, 33, (10, 8, 40, 30)),  # upscaling a crop
    ]
    for i, (mode, w, h, box) in enumerate(cases):
        image = src.crop(box) if box else src
        out = np.asarray(image.resize((w, h), RESAMPLE[mode]))
        name = f"resize_{i}_{mode}_{w}x{h}.rgb"
        (OUT / name).write_bytes(out.tobytes())
        resizes.append(
            {"interpolation": mode, "width": w, "height": h, "crop": box, "expected": name}
        )

    crops = []
    for i, (top, left, h, w, mode) in enumerate([(5, 9, 20, 30, "bicubic"), (0, 20, 70, 60, "bilinear")]):
        out = np.asarray(TF.resized_crop(src, top, left, h, w, [32, 32], TV_MODE[mode]))
        name = f"resized_crop_{i}.rgb"
        (OUT / name).write_bytes(out.tobytes())
        crops.append(
            {"top": top, "left": left, "height": h, "width": w, "size": 32,
             "interpolation": mode, "expected": name}
        )

    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    clip = {"mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}
    evals = []
    eval_cases = [
        ("landscape", {"input_size": (3, 24, 24), "interpolation": "bicubic", "crop_pct": 0.875, **imagenet}),
        ("portrait", {"input_size": (3, 24, 24), "interpolation": "bicubic", "crop_pct": 0.95, **imagenet}),
        ("landscape", {"input_size": (3, 20, 28), "interpolation": "bilinear", "crop_pct": 0.9,
                       "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}),
        ("landscape", {"input_size": (3, 24, 24), "interpolation": "bicubic", "crop_pct": 1.0,
                       "crop_mode": "squash", **clip}),
        ("landscape", {"input_size": (3, 24, 24), "interpolation": "bicubic", "crop_pct": 0.875,
                       "crop_mode": "border", **imagenet}),
        ("portrait", {"input_size": (3, 20, 28), "interpolation": "bicubic", "crop_pct": 0.9,
                      "crop_mode": "border", **clip}),
    ]
    for i, (orientation, cfg) in enumerate(eval_cases):
        image = portrait if orientation == "portrait" else src
        tensor, resolved = timm_eval(cfg, image)
        name = f"eval_{i}.f32"
        (OUT / name).write_bytes(tensor.astype("<f4").tobytes())
        evals.append(
            {"source": orientation, "pretrained_cfg": cfg, "shape": list(tensor.shape),
             "expected": name, "resolved": resolved}
        )

    # Full size: a real model's config on a 320x240 JPEG; a sample of values keeps this small.
    photo = china.crop((40, 20, 600, 440)).resize((320, 240), Image.Resampling.LANCZOS)
    photo_bytes = encoded(photo, "JPEG", quality=70)
    (OUT / "photo_320x240.jpg").write_bytes(photo_bytes)
    vit_cfg = timm.models.get_pretrained_cfg("vit_base_patch16_224.augreg2_in21k_ft_in1k").to_dict()
    decoded = Image.open(io.BytesIO(photo_bytes)).convert("RGB")
    tensor, resolved = timm_eval(vit_cfg, decoded)
    flat = tensor.reshape(-1)
    picks = np.random.default_rng(3).choice(flat.size, size=200, replace=False)
    full = {
        "source": "photo_320x240.jpg",
        "model": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "shape": list(tensor.shape),
        "indices": picks.tolist(),
        "values": [float(flat[i]) for i in picks],
        "channel_sums": [float(tensor[c].astype(np.float64).sum()) for c in range(3)],
    }

    configs = []
    for model in [
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "resnet50.a1_in1k",
        "vit_base_patch16_clip_224.openai_ft_in1k",
        "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
    ]:
        cfg = timm.models.get_pretrained_cfg(model).to_dict()
        configs.append(
            {"model": model, "pretrained_cfg": cfg,
             "resolved": resolve_data_config(pretrained_cfg=cfg),
             "resolved_test_size": resolve_data_config(pretrained_cfg=cfg, use_test_size=True)}
        )
    configs.append({"model": "(empty)", "pretrained_cfg": {},
                    "resolved": resolve_data_config(pretrained_cfg={"x": 1}),
                    "resolved_test_size": resolve_data_config(pretrained_cfg={"x": 1}, use_test_size=True)})
    return {"source": "resize_src.png", "resize": resizes, "resized_crop": crops, "eval": evals,
            "full_size": full, "configs": configs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", help="folder with scikit-learn's china.jpg and flower.jpg")
    args = parser.parse_args()
    folder = source_dir(args.sources)
    china = Image.open(folder / "china.jpg").convert("RGB")
    flower = Image.open(folder / "flower.jpg").convert("RGB")
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "Tools/make_image_fixtures.py",
        "versions": {"pillow": PIL.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "timm": timm.__version__},
        **make_decode_fixtures(china),
        "preprocess": make_preprocess_fixtures(flower, china),
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1024:.1f} KiB, to {OUT}")


if __name__ == "__main__":
    main()
