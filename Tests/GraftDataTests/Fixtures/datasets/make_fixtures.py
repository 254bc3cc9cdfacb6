#!/usr/bin/env python3
"""Writes the gzip fixtures of Tests/GraftDataTests (DatasetTests) with Python's own gzip module,
so the Swift reader is checked against an independent gzip writer.

Rerun from this folder with any Python 3 (standard library only, no torch needed):
    python3 make_fixtures.py

Contents, known by construction (the tests assert these values):
- tiny-images-idx3-ubyte.gz: IDX magic 00 00 08 03, 3 images of 2 rows x 3 columns; pixel p
  (row-major, 0..5) of image k is 10*k + p. The gzip header carries a file name (FNAME), as the
  `gzip` tool writes it.
- tiny-labels-idx1-ubyte.gz: IDX magic 00 00 08 01, labels [2, 0, 1].
- two-member-labels-idx1-ubyte.gz: the same labels file split into two concatenated gzip members
  (header + first label, then the other two), which readers must join.
- pixels.csv.gz: 2x2 grey images, label last, values 0..4 (maxValue 4):
      0,1,2,4,3
      4,4,0,0,1
"""
import gzip
import io
import struct

images = struct.pack(">IIII", 0x803, 3, 2, 3) + bytes(10 * k + p for k in range(3) for p in range(6))
labels = struct.pack(">II", 0x801, 3) + bytes([2, 0, 1])


def gz(data, name=""):
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


files = {
    "tiny-images-idx3-ubyte.gz": gz(images, "tiny-images-idx3-ubyte"),
    "tiny-labels-idx1-ubyte.gz": gz(labels),
    "two-member-labels-idx1-ubyte.gz": gz(labels[:9]) + gz(labels[9:]),
    "pixels.csv.gz": gz(b"0,1,2,4,3\n4,4,0,0,1\n"),
}
assert gzip.decompress(files["two-member-labels-idx1-ubyte.gz"]) == labels
for name, data in files.items():
    with open(name, "wb") as f:
        f.write(data)
