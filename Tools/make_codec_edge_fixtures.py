#!/usr/bin/env python3
"""Writes the decoding edge-case fixtures of Tests/GraftDataTests/Fixtures/images/edges.

Rerun from the repository root with a Python that has Pillow and numpy
(`python3 -m venv /tmp/pil && /tmp/pil/bin/pip install pillow numpy`):

    /tmp/pil/bin/python Tools/make_codec_edge_fixtures.py

Every image is a synthetic pattern made here (no third-party content). Expected pixels come from
Pillow's `Image.open(f).convert("RGB")`, the loader timm uses, never from Graft:

- png_wide_1000001.png, png_tall_1000001.png: a side over libpng's default user limit of
  1,000,000 pixels, which Pillow opens; the pattern is (x % 251, 7x % 253, 13x % 255) for the
  wide RGB image and y % 256 for the tall grey one, checked against Pillow here.
- pgm_maxval100.pgm (P5), pgm_plain_maxval100.pgm (P2): samples 0..100 at maxval 100, which
  Pillow scales with Python's round(v / maxval * 255) (ties to even); .rgb holds its pixels.
- ppm_maxval1000.ppm (P6, two bytes a sample): pixel i is (i, 1000 - i, 37 i % 1001) at maxval
  1000; .rgb holds Pillow's pixels.
"""

import json
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

OUT = Path("Tests/GraftDataTests/Fixtures/images/edges")


def pillow_rgb(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"generator": "Tools/make_codec_edge_fixtures.py", "pillow": PIL.__version__}

    x = np.arange(1_000_001, dtype=np.int64)
    wide = np.stack([x % 251, (7 * x) % 253, (13 * x) % 255], axis=-1).astype(np.uint8)[None]
    Image.fromarray(wide, "RGB").save(OUT / "png_wide_1000001.png", optimize=True)
    assert np.array_equal(pillow_rgb(OUT / "png_wide_1000001.png"), wide)
    tall = (x % 256).astype(np.uint8)[:, None]
    Image.fromarray(tall, "L").save(OUT / "png_tall_1000001.png", optimize=True)
    assert np.array_equal(pillow_rgb(OUT / "png_tall_1000001.png")[..., 0], tall)

    values = bytes(range(101))
    (OUT / "pgm_maxval100.pgm").write_bytes(b"P5\n101 1\n100\n" + values)
    plain = " ".join(str(v) for v in values)
    (OUT / "pgm_plain_maxval100.pgm").write_bytes(f"P2\n101 1\n100\n{plain}\n".encode())
    samples = []
    for i in range(1001):
        samples += [i, 1000 - i, (37 * i) % 1001]
    raw = b"".join(v.to_bytes(2, "big") for v in samples)
    (OUT / "ppm_maxval1000.ppm").write_bytes(b"P6\n1001 1\n1000\n" + raw)
    expected = {}
    for name in ["pgm_maxval100.pgm", "pgm_plain_maxval100.pgm", "ppm_maxval1000.ppm"]:
        rgb = pillow_rgb(OUT / name)
        (OUT / (name.rsplit(".", 1)[0] + ".rgb")).write_bytes(rgb.tobytes())
        expected[name] = {"width": rgb.shape[1], "height": rgb.shape[0]}
    manifest["pnm"] = expected
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
