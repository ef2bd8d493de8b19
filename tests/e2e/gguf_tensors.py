"""A minimal GGUF v3 reader/writer over raw tensor bytes (any type), and NumPy dequantization of
Anvil's scaled weight types (docs/FORMATS.md), written from the format description, independent of
the C++ code. Used by test_quantize.py.
"""
import struct

import numpy as np

ALIGNMENT_KEY = "general.alignment"

# ggml type id -> (name, elements per block, bytes per block)
TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2),
    8: ("Q8_0", 32, 34), 2: ("Q4_0", 32, 18), 12: ("Q4_K", 256, 144), 14: ("Q6_K", 256, 210),
    24: ("I8", 1, 1), 0x414E0001: ("F8_E4M3", 1, 1), 0x414E0002: ("I4", 2, 1),
}
TYPE_IDS = {name: tid for tid, (name, _, _) in TYPES.items()}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
           12: "<d"}
T_STRING, T_ARRAY = 8, 9


class Tensor:
    def __init__(self, name, type_id, shape, raw):
        self.name, self.type_id, self.shape, self.raw = name, type_id, tuple(shape), raw

    @property
    def type_name(self):
        return TYPES[self.type_id][0]

    def floats(self):
        assert self.type_id == 0, self.name
        return np.frombuffer(self.raw, dtype="<f4").reshape(self.shape)


class GgufFile:
    """metadata: key -> (value type, value); tensors: name -> Tensor, in file order."""

    def __init__(self, metadata, tensors):
        self.metadata, self.tensors = metadata, tensors

    def value(self, key, default=None):
        return self.metadata[key][1] if key in self.metadata else default


def _nbytes(type_id, shape):
    _, block, block_bytes = TYPES[type_id]
    n = int(np.prod(shape))
    assert shape[-1] % block == 0
    return n // block * block_bytes


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def rstr():
        nonlocal pos
        n = rd("<Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def rval(vt):
        if vt == T_STRING:
            return rstr()
        if vt == T_ARRAY:
            et, n = rd("<I"), rd("<Q")
            return (et, [rval(et) for _ in range(n)])
        return rd(_SCALAR[vt])

    assert data[:4] == b"GGUF", "bad magic"
    pos = 4
    assert rd("<I") == 3
    n_tensors, n_kv = rd("<Q"), rd("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = rstr()
        vt = rd("<I")
        metadata[key] = (vt, rval(vt))
    infos = []
    for _ in range(n_tensors):
        name = rstr()
        ne = [rd("<Q") for _ in range(rd("<I"))]
        infos.append((name, list(reversed(ne)), rd("<I"), rd("<Q")))
    align = metadata.get(ALIGNMENT_KEY, (4, 32))[1]
    start = pos + (-pos) % align
    tensors = {}
    for name, shape, type_id, offset in infos:
        begin = start + offset
        tensors[name] = Tensor(name, type_id, shape, data[begin:begin + _nbytes(type_id, shape)])
    return GgufFile(metadata, tensors)


def write(path, gguf):
    """Writes metadata and tensors (raw bytes as given: shapes are not re-checked against data)."""
    out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, len(gguf.tensors), len(gguf.metadata))

    def wstr(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def wval(vt, v):
        if vt == T_STRING:
            return wstr(v)
        if vt == T_ARRAY:
            et, items = v
            return struct.pack("<IQ", et, len(items)) + b"".join(wval(et, x) for x in items)
        return struct.pack(_SCALAR[vt], v)

    for key, (vt, v) in gguf.metadata.items():
        out += wstr(key) + struct.pack("<I", vt) + wval(vt, v)
    align = gguf.value(ALIGNMENT_KEY, 32)
    offset, blobs = 0, []
    for t in gguf.tensors.values():
        out += wstr(t.name) + struct.pack("<I", len(t.shape))
        for n in reversed(t.shape):
            out += struct.pack("<Q", n)
        out += struct.pack("<IQ", t.type_id, offset)
        pad = (-len(t.raw)) % align
        blobs.append(t.raw + b"\0" * pad)
        offset += len(t.raw) + pad
    out += b"\0" * ((-len(out)) % align)
    with open(path, "wb") as f:
        f.write(out)
        for b in blobs:
            f.write(b)


def e4m3_table():
    """OCP E4M3FN: bias 7, subnormals m * 2^-9, S.1111.111 is NaN."""
    table = np.zeros(256, dtype=np.float64)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e, m = (code >> 3) & 15, code & 7
        if e == 15 and m == 7:
            table[code] = np.nan
        elif e == 0:
            table[code] = sign * m * 2.0 ** -9
        else:
            table[code] = sign * (1 + m / 8) * 2.0 ** (e - 7)
    return table


def codes(t):
    """The tensor's codes as float64, (rows, cols): E4M3 values, int8 values, or unsigned int4."""
    rows, cols = t.shape
    raw = np.frombuffer(t.raw, dtype=np.uint8)
    if t.type_name == "F8_E4M3":
        return e4m3_table()[raw].reshape(rows, cols)
    if t.type_name == "I8":
        return raw.view(np.int8).astype(np.float64).reshape(rows, cols)
    if t.type_name == "I4":
        out = np.empty(rows * cols, dtype=np.float64)
        out[0::2] = raw & 0x0F  # element 2j: low nibble of byte j
        out[1::2] = raw >> 4
        return out.reshape(rows, cols)
    raise ValueError(t.type_name)


def dequantize(gguf, name):
    """(weight, per-element scale) of a scaled weight: w = (code - zero) * scale, columns in input
    order (an I4 weight with NAME_order stores column j for input column order[j])."""
    t = gguf.tensors[name]
    rows, cols = t.shape
    scale = gguf.tensors[name + "_scale"].floats().astype(np.float64)
    assert scale.shape[0] == rows and cols % scale.shape[1] == 0, (name, scale.shape)
    group = cols // scale.shape[1]
    if name + "_zero" in gguf.tensors:
        zero = gguf.tensors[name + "_zero"].floats().astype(np.float64)
    else:
        zero = np.full_like(scale, 8.0 if t.type_name == "I4" else 0.0)
    s = np.repeat(scale, group, axis=1)
    z = np.repeat(zero, group, axis=1)
    w = (codes(t) - z) * s
    if name + "_order" in gguf.tensors:
        order = gguf.tensors[name + "_order"].floats().astype(np.int64)
        w_in, s_in = np.empty_like(w), np.empty_like(s)
        w_in[:, order], s_in[:, order] = w, s
        return w_in, s_in
    return w, s
