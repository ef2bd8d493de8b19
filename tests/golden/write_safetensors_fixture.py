#!/usr/bin/env python3
"""Independent safetensors writer and checker (numpy + struct + json only), for safetensors_test.

  write_safetensors_fixture.py write OUT_DIR   -> OUT_DIR/padded.safetensors, OUT_DIR/unpadded.safetensors
  write_safetensors_fixture.py verify FILE     -> checks a file anvil wrote (exit 0 and "ok" when right)

The format is encoded here by hand from the spec, so the C++ reader and writer are checked against
code that shares nothing with them. Values are kept in sync with tests/unit/formats/safetensors_test.cpp.
"""
import json
import struct
import sys

import numpy as np


def bf16_bytes(values):
    """float32 -> bfloat16 by truncation; the fixture values are exact in bfloat16."""
    bits = np.asarray(values, dtype="<f4").view("<u4")
    assert np.all(bits & 0xFFFF == 0), "fixture values must be exact in bfloat16"
    return (bits >> 16).astype("<u2").tobytes()


def fixture_tensors():
    """(name, dtype, shape, raw bytes) in the order the data section holds them."""
    return [
        ("weight.f32", "F32", [3, 4], (np.arange(12, dtype="<f4") * 0.5 - 2.0).tobytes()),
        ("scalar.f32", "F32", [], np.array([42.0], dtype="<f4").tobytes()),
        ("weight.f16", "F16", [2, 3], ((np.arange(6) - 2) * 0.25).astype("<f2").tobytes()),
        ("weight.bf16", "BF16", [5], bf16_bytes([1.5, -2.25, 3.0, 0.0078125, -1024.0])),
        ("scale.i8", "I8", [4], np.array([-128, -1, 0, 127], dtype="i1").tobytes()),
        ("weight.fp8", "F8_E4M3", [2], bytes([0x38, 0xB8])),
        ("empty.f32", "F32", [0, 3], b""),
    ]


def encode(tensors, metadata, pad_to, data_start_remainder):
    """Builds the file bytes. The header is padded with spaces until (8 + len) % pad_to equals
    data_start_remainder, which lets the unpadded variant put the data section at an odd offset."""
    header = {}
    data = b""
    # The data section follows the list order, not the header's sorted keys, so a reader that
    # relied on key order instead of data_offsets would read the wrong bytes.
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    while (8 + len(text)) % pad_to != data_start_remainder:
        text += b" "
    return struct.pack("<Q", len(text)) + text + data


def write(out_dir):
    tensors = fixture_tensors()
    metadata = {"format": "pt", "source": "numpy"}
    with open(f"{out_dir}/padded.safetensors", "wb") as f:
        f.write(encode(tensors, metadata, 8, 0))
    with open(f"{out_dir}/unpadded.safetensors", "wb") as f:
        f.write(encode(tensors, metadata, 8, 1))


# What safetensors_test.cpp's PythonReadsAnvilOutput writes.
EXPECTED_FROM_ANVIL = {
    "a.f32": ("F32", [2, 3], np.arange(6, dtype=np.float32) * 0.25),
    "b.f16": ("F16", [3], np.array([1.0, -2.0, 0.5], dtype=np.float32)),
    "c.bf16": ("BF16", [2, 2], np.array([1.0, 2.0, 3.0, -4.0], dtype=np.float32)),
}


def decode(dtype, raw):
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4")
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if dtype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4")
    raise ValueError(f"unexpected dtype {dtype}")


def verify(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    text = blob[8 : 8 + n]
    assert (8 + n) % 8 == 0, f"data section starts at {8 + n}, not 8-aligned"
    assert text.rstrip(b" ").endswith(b"}"), "header must be JSON padded with spaces only"
    header = json.loads(text)
    assert header.pop("__metadata__") == {"format": "pt"}, "metadata"
    data = blob[8 + n :]
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    position = 0
    for begin, end in spans:
        assert begin == position, f"hole or overlap at {begin}"
        position = end
    assert position == len(data), "data section not fully indexed"
    assert set(header) == set(EXPECTED_FROM_ANVIL), f"tensor names {sorted(header)}"
    for name, (dtype, shape, values) in EXPECTED_FROM_ANVIL.items():
        entry = header[name]
        assert entry["dtype"] == dtype and entry["shape"] == shape, f"{name}: {entry}"
        begin, end = entry["data_offsets"]
        item = 4 if dtype == "F32" else 2
        assert begin % item == 0, f"{name} not aligned to its element size"
        got = decode(dtype, data[begin:end])
        assert np.array_equal(got, values), f"{name}: {got} != {values}"
    print("ok")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "verify"):
        sys.exit(__doc__)
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        verify(sys.argv[2])


if __name__ == "__main__":
    main()
