#!/usr/bin/env python3
"""Prints the (relative path, label) order torchvision's ImageFolder gives for the tree that
DatasetTests.testImageFolderMatchesTorchvisionOrder builds, and the class list; the test asserts
that order.

Rerun (needs torch + torchvision: `pip install torch torchvision`):
    /work/main/Tools/.venv/bin/python imagefolder_order.py
"""
import os
import tempfile

from torchvision.datasets import ImageFolder

FILES = [
    "cat/B.ppm", "cat/a.ppm", "cat/z.JPG", "cat/notes.txt", "cat/sub/c.ppm", "cat/sub-x/d.ppm",
    "cat/sub/deeper/e.ppm", "Dog/y.png", "éclair/w.ppm", "éclair/v.pgm",
]

with tempfile.TemporaryDirectory() as root:
    for f in FILES:
        os.makedirs(os.path.dirname(os.path.join(root, f)), exist_ok=True)
        open(os.path.join(root, f), "wb").close()
    ds = ImageFolder(root, loader=lambda p: p)
    print(ds.classes)
    for path, label in ds.samples:
        print(os.path.relpath(path, root), label)
