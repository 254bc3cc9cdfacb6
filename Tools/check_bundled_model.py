#!/usr/bin/env python3
"""Checks a Graft-pretrained model folder with timm, independently of Graft.

    Tools/.venv/bin/python Tools/check_bundled_model.py Models/vit-nano-fmnist [--fixture OUT]

1. Loads the folder the way a timm user loads a local model folder
   (`timm.create_model("local-dir:<folder>", pretrained=True)`: timm reads config.json's
   architecture, model_args and pretrained_cfg, then model.safetensors), so it proves timm reads it.
2. Evaluates top-1 on the Fashion-MNIST test set (Debian's dataset-fashion-mnist IDX files),
   preprocessed as the folder's pretrained_cfg says (28×28 input: the image as it is, grey copied
   to RGB, normalised with the config's mean and std), and prints it: the figure the model card
   states is measured by timm, not only by Graft.
3. With --fixture, writes the pixels and timm's logits for the first 8 test images to a
   safetensors file; Graft's BundledModelTests compare against it.
"""
import argparse
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import torch
import timm
from safetensors.torch import save_file

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--fixture")
    args = ap.parse_args()
    folder = Path(args.folder)
    cfg = json.loads((folder / "config.json").read_text())
    model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True)
    model.eval()
    pc = cfg["pretrained_cfg"]
    assert pc["input_size"] == [3, 28, 28], "this check assumes the 28×28 bundled input"
    mean = torch.tensor(pc["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pc["std"]).view(1, 3, 1, 1)
    images = idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    labels = idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).repeat(1, 3, 1, 1)
    x = (x - mean) / std
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            logits = model(x[start:start + 500])
            correct += (logits.argmax(1).numpy() == labels[start:start + 500]).sum()
        first = model(x[:8])
    print(json.dumps({"timm_test_top1": correct / len(x), "test_images": len(x),
                      "timm_version": timm.__version__}))
    if args.fixture:
        save_file({"pixels": x[:8].contiguous(), "logits": first.contiguous(),
                   "labels": torch.from_numpy(labels[:8].astype(np.int64))}, args.fixture)


if __name__ == "__main__":
    main()
