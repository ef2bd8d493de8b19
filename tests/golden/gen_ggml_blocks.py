#!/usr/bin/env python3
# Independent NumPy reference for GGML block dequantization and fp16 conversion (run by ggml_blocks_test).
#
# Written from the ggml block layouts, vectorized, sharing no code with the C++ implementation.
# For each type it writes <type>.bin (random raw blocks) and <type>.f32 (expected floats, computed
# in float32 in the same operation order as ggml so the C++ results can be compared exactly).
import argparse
import os

import numpy as np

QK_K = 256


def random_fp16(rng, n):
    """Random finite fp16 values (any bit pattern except inf/nan): zeros, subnormals, huge."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exponent = (bits >> 10) & 0x1F
    bits = np.where(exponent == 0x1F, bits & np.uint16(0x83FF), bits).astype(np.uint16)  # inf/nan -> finite
    # A few typical weight scales so most values are in a realistic range too.
    typical = np.float16(rng.normal(0, 0.02, size=n)).view(np.uint16)
    pick = rng.random(n) < 0.5
    return np.where(pick, typical, bits).astype(np.uint16)


def f16(bits):
    return bits.view(np.float16).astype(np.float32)


def dequant_q8_0(raw):
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<u2"), ("qs", "i1", 32)]))
    d = f16(blocks["d"].copy())
    return (d[:, None] * blocks["qs"].astype(np.float32)).reshape(-1)


def dequant_q4_0(raw):
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<u2"), ("qs", "u1", 16)]))
    d = f16(blocks["d"].copy())
    qs = blocks["qs"].astype(np.int32)
    q = np.concatenate([(qs & 0xF) - 8, (qs >> 4) - 8], axis=1).astype(np.float32)
    return (d[:, None] * q).reshape(-1)


def dequant_q4_k(raw):
    dt = np.dtype([("d", "<u2"), ("dmin", "<u2"), ("scales", "u1", 12), ("qs", "u1", 128)])
    blocks = np.frombuffer(raw, dtype=dt)
    nb = len(blocks)
    d = f16(blocks["d"].copy())
    dmin = f16(blocks["dmin"].copy())
    s = blocks["scales"].astype(np.int32)
    # 6-bit (scale, min) of sub-blocks 0..3 in bytes 0..3 / 4..7; sub-blocks 4..7 take their low
    # nibbles from bytes 8..11 and their top two bits from the top of bytes 0..3 / 4..7.
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    qs = blocks["qs"].astype(np.int32).reshape(nb, 4, 32)
    q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(nb, 8, 32).astype(np.float32)
    scale = d[:, None] * sc.astype(np.float32)
    offset = dmin[:, None] * mn.astype(np.float32)
    return (scale[:, :, None] * q - offset[:, :, None]).reshape(-1)


def dequant_q6_k(raw):
    dt = np.dtype([("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<u2")])
    blocks = np.frombuffer(raw, dtype=dt)
    nb = len(blocks)
    d = f16(blocks["d"].copy())
    ql = blocks["ql"].astype(np.int32).reshape(nb, 2, 64)
    qh = blocks["qh"].astype(np.int32).reshape(nb, 2, 32)
    parts = [
        (ql[:, :, 0:32] & 0xF) | (((qh >> 0) & 3) << 4),
        (ql[:, :, 32:64] & 0xF) | (((qh >> 2) & 3) << 4),
        (ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4),
        (ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4),
    ]
    q = (np.concatenate(parts, axis=2).reshape(nb, 256) - 32).astype(np.float32)
    scale = d[:, None] * blocks["scales"].astype(np.float32)  # one int8 scale per 16 elements
    return (np.repeat(scale, 16, axis=1) * q).reshape(-1)


def make_blocks(rng, name, nblocks):
    if name == "q8_0":
        dt = np.dtype([("d", "<u2"), ("qs", "u1", 32)])
    elif name == "q4_0":
        dt = np.dtype([("d", "<u2"), ("qs", "u1", 16)])
    elif name == "q4_k":
        dt = np.dtype([("d", "<u2"), ("dmin", "<u2"), ("rest", "u1", 140)])
    else:
        dt = np.dtype([("rest", "u1", 208), ("d", "<u2")])
    blocks = np.frombuffer(rng.bytes(dt.itemsize * nblocks), dtype=dt).copy()
    blocks["d"] = random_fp16(rng, nblocks)
    if name == "q4_k":
        blocks["dmin"] = random_fp16(rng, nblocks)
    return blocks.tobytes()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    for name, fn, nblocks in [("q8_0", dequant_q8_0, 97), ("q4_0", dequant_q4_0, 97),
                              ("q4_k", dequant_q4_k, 23), ("q6_k", dequant_q6_k, 23)]:
        raw = make_blocks(rng, name, nblocks)
        with np.errstate(all="ignore"):
            expected = fn(raw).astype("<f4")
        with open(os.path.join(args.out, name + ".bin"), "wb") as f:
            f.write(raw)
        with open(os.path.join(args.out, name + ".f32"), "wb") as f:
            f.write(expected.tobytes())

    # fp16 -> f32 for every half bit pattern.
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    with open(os.path.join(args.out, "fp16_to_f32.f32"), "wb") as f:
        f.write(halves.view(np.float16).astype("<f4").tobytes())

    # f32 -> fp16 (numpy rounds to nearest even): random bit patterns, plus every float near the
    # half range's edges (subnormal boundaries, overflow threshold) and exact ties.
    special = []
    for base in [0x33000000, 0x33800000, 0x38800000, 0x387FC000, 0x477FE000, 0x477FF000, 0x3F800000]:
        special.extend(range(base - 64, base + 64))
    # Odd multiples of 1 << 12 end in exactly half a half-precision ulp (normal and subnormal range).
    steps = np.arange(1, 2048, dtype=np.uint32) << 12
    ties = np.concatenate([steps | 0x3F800000, steps | 0x38000000, steps | 0x34000000])
    floats = np.concatenate([
        rng.integers(0, 1 << 32, size=200000, dtype=np.uint64).astype(np.uint32),
        np.array(special, dtype=np.uint32),
        ties,
        ties | 0x80000000,
        np.array(special, dtype=np.uint32) | 0x80000000,
    ]).astype("<u4")
    values = floats.view(np.float32)
    with np.errstate(all="ignore"):
        halves_out = values.astype(np.float16).view("<u2")
    with open(os.path.join(args.out, "f32_to_fp16.u32"), "wb") as f:
        f.write(floats.tobytes())
    with open(os.path.join(args.out, "f32_to_fp16.u16"), "wb") as f:
        f.write(halves_out.tobytes())


if __name__ == "__main__":
    main()
