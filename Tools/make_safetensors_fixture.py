#!/usr/bin/env python3
"""Writes the safetensors fixtures that Tests/GraftTensorTests/SafetensorsTests.swift reads.

Rerun (from the repository root; needs numpy and the `safetensors` package, e.g. the system
python3 or Tools/.venv once it has them):

    python3 Tools/make_safetensors_fixture.py

Outputs, in Tests/GraftTensorTests/Fixtures/:

  python_tensors.safetensors   F32/F16/BF16/F64/I64/I32 tensors of ranks 0-4 (one empty) and
                               metadata, written by the Python `safetensors` package; it orders
                               the data by dtype alignment, not by name, so the reader must follow
                               the offsets.
  python_tensors.json          what each tensor must read as: dtype, shape and the values as
                               float32 bit patterns ("bits", exact incl. -0, inf, subnormals) for
                               floating dtypes, or plain integers ("ints") for integer dtypes.
  python_writer_{f32,f16,bf16}.safetensors
                               the same three float32 inputs (listed as bits in
                               python_tensors.json under "writer_inputs") saved by the Python
                               package as F32, F16 and BF16; Graft's writer must produce these
                               exact bytes.

BF16: the `safetensors.numpy` API has no bfloat16 and torch is not required here, so bfloat16
bytes are made by hand with numpy (round to nearest even on the float32 bit pattern, as torch
does) and handed to the package's own `serialize_file` as dtype "bfloat16". When torch is
importable the hand-made bits are checked against torch's conversion.

Rerunning rewrites identical files, except that the package writes the two metadata keys of
python_tensors.safetensors in hash order, which may differ from run to run (readers don't care).
"""

import json
import os

import numpy as np
from safetensors import TensorSpec, serialize_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "GraftTensorTests", "Fixtures")

NUMPY_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "I64": "int64",
    "I32": "int32",
}


def bf16_bits(x):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even, NaN kept quiet."""
    x = np.array(x, dtype=np.float32, order="C")
    flat = x.reshape(-1)
    bits = flat.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(flat)
    rounded[nan] = ((bits[nan] >> 16).astype(np.uint16)) | 0x0040
    return rounded.reshape(x.shape)


def check_against_torch(x, bits):
    try:
        import torch
    except ImportError:
        print("torch not importable: BF16 bits made by hand with numpy, not cross-checked")
        return
    t = torch.from_numpy(np.array(x, dtype=np.float32, order="C")).to(torch.bfloat16)
    expected = t.view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(expected, bits), "hand-made bfloat16 bits differ from torch's"
    print("BF16 bits match torch")


def spec(array, dtype_name):
    """A TensorSpec over `array`'s bytes (the array must stay alive until the file is written)."""
    assert array.flags.c_contiguous
    return TensorSpec(
        dtype=dtype_name,
        shape=list(array.shape),
        data_ptr=array.ctypes.data,
        data_len=array.nbytes,
    )


def f32_bits(values):
    return [int(b) for b in np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def main():
    rng = np.random.default_rng(20240611)
    keep = []  # arrays whose memory the TensorSpecs point at

    def add(arrays, name, array, dtype_name):
        # np.ascontiguousarray would turn a 0-d array into shape (1,).
        keep.append(np.array(array, order="C", copy=True))
        arrays[name] = spec(keep[-1], dtype_name)

    tensors = {}
    expected = {}

    # F32 of ranks 0-4, including one empty tensor.
    f32 = {
        "f32_scalar": np.array(-2.75, dtype=np.float32),
        "f32_vector": np.array([0.0, -0.0, 1.5, -3.25e-3, 1e-40, 3.0e38], dtype=np.float32),
        "f32_matrix": rng.standard_normal((3, 4)).astype(np.float32),
        "f32_rank3": rng.standard_normal((2, 3, 2)).astype(np.float32),
        "f32_rank4": rng.standard_normal((1, 2, 2, 2)).astype(np.float32),
        "f32_empty": np.zeros((0, 3), dtype=np.float32),
    }
    for name, a in f32.items():
        add(tensors, name, a, "float32")
        expected[name] = {"dtype": "F32", "shape": list(a.shape), "bits": f32_bits(a)}

    # F16: exact halves incl. subnormal, max, -0 and inf; read back they are exact float32s.
    f16 = np.array(
        [[1.0, -0.5, 65504.0, 2.0**-24], [-0.0, np.inf, 0.0999755859375, -1024.5]],
        dtype=np.float16,
    )
    add(tensors, "f16_matrix", f16, "float16")
    expected["f16_matrix"] = {
        "dtype": "F16",
        "shape": list(f16.shape),
        "bits": f32_bits(f16.astype(np.float32)),
    }

    # BF16: float32 inputs rounded by hand; the expected values are the rounded ones.
    bf16_source = np.concatenate(
        [rng.standard_normal(4).astype(np.float32), np.array([1.0, -7.5], dtype=np.float32)]
    ).reshape(2, 3)
    bf16 = bf16_bits(bf16_source)
    check_against_torch(bf16_source, bf16)
    add(tensors, "bf16_matrix", bf16, "bfloat16")
    expected["bf16_matrix"] = {
        "dtype": "BF16",
        "shape": list(bf16.shape),
        "bits": [int(b) << 16 for b in bf16.reshape(-1)],
    }

    # F64, converted to float32 on reading (numpy rounds to nearest even, as Swift does).
    f64 = np.array([1.0 / 3.0, -2.5, 1e-3], dtype=np.float64)
    add(tensors, "f64_vector", f64, "float64")
    expected["f64_vector"] = {
        "dtype": "F64",
        "shape": list(f64.shape),
        "bits": f32_bits(f64.astype(np.float32)),
    }

    # Index tensors.
    i64 = np.array([0, 7, -3, 2**40], dtype=np.int64)
    i32 = np.array([[5, -1], [2147483647, 0]], dtype=np.int32)
    i64_scalar = np.array(42, dtype=np.int64)
    for name, a, dt in [
        ("i64_vector", i64, "I64"),
        ("i32_matrix", i32, "I32"),
        ("i64_scalar", i64_scalar, "I64"),
    ]:
        add(tensors, name, a, NUMPY_DTYPE_NAMES[dt])
        expected[name] = {
            "dtype": dt,
            "shape": list(a.shape),
            "ints": [int(v) for v in a.reshape(-1)],
        }

    metadata = {"format": "pt", "note": "Graft fixture \u00e9\u2713"}
    serialize_file(tensors, os.path.join(OUT, "python_tensors.safetensors"), metadata=metadata)

    # Inputs for the byte-for-byte writer comparison. Values chosen to exercise F16 and BF16
    # rounding (ties, overflow to inf, subnormals); one metadata key because the package writes
    # several keys in hash order.
    writer_inputs = {
        "weight": np.array(
            [[1.0, -2.0, 0.1, 1.00390625], [1.01171875, 70000.0, -1e-6, 3.4028235e38]],
            dtype=np.float32,
        ),
        "bias": np.array([0.5, -0.333333343, 6.1e-5], dtype=np.float32),
        "a.scalar": np.array(-0.0, dtype=np.float32),
        "z_empty": np.zeros((2, 0), dtype=np.float32),
    }
    writer_metadata = {"graft": "writer test"}
    np.seterr(over="ignore")
    for dtype_name, convert in [
        ("f32", lambda a: (a, "float32")),
        # 70000 overflows to inf in F16 on purpose.
        ("f16", lambda a: (a.astype(np.float16), "float16")),
        ("bf16", lambda a: (bf16_bits(a), "bfloat16")),
    ]:
        specs = {}
        for name, a in writer_inputs.items():
            converted, numpy_name = convert(a)
            add(specs, name, converted, numpy_name)
        serialize_file(
            specs,
            os.path.join(OUT, f"python_writer_{dtype_name}.safetensors"),
            metadata=writer_metadata,
        )

    document = {
        "generated_by": "Tools/make_safetensors_fixture.py",
        "metadata": metadata,
        "tensors": expected,
        "writer_metadata": writer_metadata,
        "writer_inputs": {
            name: {"shape": list(a.shape), "bits": f32_bits(a)} for name, a in writer_inputs.items()
        },
    }
    with open(os.path.join(OUT, "python_tensors.json"), "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
