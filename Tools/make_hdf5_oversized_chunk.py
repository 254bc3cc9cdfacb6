#!/usr/bin/env python3
"""Writes Tests/GraftPointsTests/Fixtures/hdf5/oversized-chunk.h5, which HDF5Tests reads.

A valid HDF5 file (written by h5py) whose whole cost is libhdf5's: `data` is one cloud of 16
points, [1, 16, 3] float32, extendible along its first axis and stored in gzip-compressed
chunks of [2**21, 16, 3] (402,653,184 bytes each; the file holds one, mostly fill value, so it
compresses to a few hundred KB). Reading the 192 bytes of `data` makes libhdf5 inflate the whole
chunk, so the reading process needs about 400 MB for 192 bytes of data: more than the reading
child's memory limit allows (256 MB beyond its start and twice the data), which the test
expects to see named in the error.

Rerun from the repository root (needs h5py and numpy: `pip install h5py numpy`):

    python3 Tools/make_hdf5_oversized_chunk.py
"""

import os

import h5py
import numpy as np

out = os.path.join("Tests", "GraftPointsTests", "Fixtures", "hdf5", "oversized-chunk.h5")
os.makedirs(os.path.dirname(out), exist_ok=True)
points = (np.arange(48, dtype=np.float32) / 8 - 3).reshape(1, 16, 3)
with h5py.File(out, "w", libver="earliest") as f:
    f.create_dataset(
        "data", data=points, maxshape=(None, 16, 3), chunks=(2**21, 16, 3),
        compression="gzip", compression_opts=9)
    f.create_dataset("label", data=np.array([[4]], dtype=np.uint8))
print(out, os.path.getsize(out), "bytes")
