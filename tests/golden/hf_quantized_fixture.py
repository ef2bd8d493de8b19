#!/usr/bin/env python3
"""NumPy writer of quantized Hugging Face checkpoints, in the layouts vLLM's ecosystem publishes.

For anvil's quantized-checkpoint loader tests (tests/golden/test_hf_quantized.py and
tests/unit/formats/hf_quantized_test.cpp). The model is reference_model.py's "llama_gqa" case
(dim 64, FFN 128, 2 layers, 4 heads over 2 kv heads, vocab 272). Its seven linear weights per layer
are quantized the way each library quantizes (round-to-nearest with that library's scale and zero
formulas; calibration such as GPTQ's error feedback or AWQ's search does not change the storage
layout) and packed the way that library's pack() does. Each directory also holds
reference.safetensors: every tensor of the model as float32, with the linear weights replaced by
their dequantized values w = (code - zero) * scale. Anvil must reproduce those exactly.

Layouts, as read in the libraries (no code copied):
  compressed-tensors  (compressors/quantized_compressors/{naive_quantized,pack_quantized}.py,
                      quantization/utils/helpers.py calculate_qparams)
    ct_fp8_channel    float-quantized, F8_E4M3 weight, weight_scale (out, 1) F32 = absmax / 448;
                      FP8_DYNAMIC: input_activations float8 dynamic per token (no input_scale), so
                      the reference rounds each linear layer's input to E4M3 per token
    ct_fp8_tensor     float-quantized, per-tensor weight_scale (1,) BF16 (q_proj: shape () F32);
                      input_activations null (W8A16)
    (llm-compressor's static "FP8" scheme, input_activations dynamic false with an input_scale
    (1,) per layer, is the corrupt case ct_fp8_static_activations: anvil refuses it)
    ct_int8           int-quantized W8A8, I8 weight, weight_scale (out, 1) F32 = absmax / 127.5,
                      codes clamp(round(w / s), -128, 127), weight_zero_point (out, 1) I8 zeros
                      (older writers kept them); activations dynamic per token
    ct_w4a16_sym      pack-quantized, group 32, scale = absmax / 7.5 (BF16), q = clamp(round(w / s),
                      -8, 7); pack_to_int32: q + 8, eight per int32 along the input dimension,
                      element k of a word at bits 4k; weight_shape (2,) I64
    ct_w4a16_asym     pack-quantized, group 64, asymmetric: s = (max - min) / 15 over [min(x, 0),
                      max(x, 0)], zp = clamp(round(-8 - min / s), -8, 7), q = clamp(round(w / s) + zp,
                      -8, 7); weight_zero_point packed along the OUTPUT dimension (packed_dim=0):
                      (ceil(out / 8), groups) I32
    ct_w4a16_actorder ct_w4a16_asym at group 32 with actorder "group": columns quantized in a
                      permuted order (a fixed random permutation per module stands in for GPTQ's
                      decreasing Hessian diagonal), groups of 32 consecutive permuted columns,
                      codes packed in the original column order, weight_g_idx (in,) I32 the group
                      of each original column
  AutoGPTQ (nn_modules/qlinear/qlinear_cuda*.py pack(), quantization/quantizer.py)
    gptq_sym          bits 4, group 32, sym: s = 2 * absmax / 15, zero 8, q = clamp(round(w / s) + 8,
                      0, 15); qweight (in / 8, out): word [p][o] holds inputs 8p..8p+7 at bits 4k;
                      qzeros (groups, out / 8) hold zero - 1 ("v1": 7 = 0x77777777); scales (groups,
                      out) F16; g_idx = c // 32. lm_head quantized too ("lm_head": true).
    gptq_asym         group 64, sym=false: s = (xmax - xmin) / 15, zero = round(-xmin / s), qzeros
                      zero - 1; written as two shards with an index, one module split across them
    gptq_v2_channel   checkpoint_format gptq_v2 (qzeros hold the zero itself), group_size -1 (one
                      group per row), sym=false, desc_act=true with static_groups (g_idx all 0)
    gptq_act_order    gptq_sym with desc_act=true and no static groups (AutoGPTQ's default
                      act-order): the same permutation scheme as ct_w4a16_actorder, qweight in the
                      original column order, g_idx[perm[i]] = i // 32
  AutoAWQ (awq/modules/linear/gemm.py WQLinear_GEMM.from_linear, quantize/quantizer.py)
    awq_gemm          group 32, zero_point: s = (max - min) / 15, zero = clamp(-round(min / s), 0, 15),
                      q = clamp(round(w / s) + zero, 0, 15); qweight (in, out / 8) and qzeros
                      (groups, out / 8) with AWQ_ORDER [0, 2, 4, 6, 1, 3, 5, 7]: nibble i of word
                      [c][w] holds output 8w + ORDER[i]; scales (groups, out) F16

Usage:
  hf_quantized_fixture.py write OUT_DIR [LAYOUT,...]   one directory per layout (default: all)
  hf_quantized_fixture.py corrupt OUT_DIR              OUT_DIR/corrupt/CASE + OUT_DIR/corrupt/cases.json
                                                       ({case: expected error text})
"""

from __future__ import annotations

import copy
import json
import os
import struct
import zlib
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as ref  # noqa: E402

LINEAR = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
LAYOUTS = ["ct_fp8_channel", "ct_fp8_tensor", "ct_int8", "ct_w4a16_sym", "ct_w4a16_asym", "ct_w4a16_actorder",
           "gptq_sym", "gptq_asym", "gptq_v2_channel", "gptq_act_order", "awq_gemm"]
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def model_spec() -> ref.ModelSpec:
    return next(s for s in ref.cases() if s.name == "llama_gqa")


# ----------------------------------------------------------------------------------------------
# Number formats
# ----------------------------------------------------------------------------------------------


def e4m3_values() -> np.ndarray:
    """Value of every E4M3FN code (torch.float8_e4m3fn): S.EEEE.MMM, bias 7, NaN at S.1111.111."""
    codes = np.arange(256)
    e, m = (codes >> 3) & 15, codes & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    v = np.where(codes >> 7, -v, v)
    v[0x7F] = v[0xFF] = np.nan
    return v.astype(np.float32)


def to_e4m3(x: np.ndarray) -> np.ndarray:
    """float32 -> E4M3 codes: round to nearest, ties to even code, saturating at +-448."""
    table = e4m3_values()[:0x7F]  # codes 0..126 ascending, 0x7E = 448
    a = np.minimum(np.abs(x.astype(np.float64)), 448.0)
    hi = np.clip(np.searchsorted(table, a, side="left"), 0, 0x7E)
    lo = np.maximum(hi - 1, 0)
    d_hi, d_lo = table[hi] - a, a - table[lo]
    pick_lo = (d_lo < d_hi) | ((d_lo == d_hi) & (lo % 2 == 0))
    code = np.where(pick_lo, lo, hi).astype(np.uint8)
    return code | (np.signbit(x).astype(np.uint8) << 7)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even), returned as float32."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    sixteen = np.uint64(16)
    bits = (bits + np.uint64(0x7FFF) + ((bits >> sixteen) & np.uint64(1))) >> sixteen << sixteen
    return bits.astype(np.uint32).view(np.float32)


def to_f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def rne(x: np.ndarray) -> np.ndarray:
    return np.rint(x)  # round half to even, as torch.round


# Stored tensors are (safetensors dtype, numpy array in that dtype's storage).
Stored = Tuple[str, np.ndarray]


def f32(a) -> Stored:
    return ("F32", np.asarray(a, dtype="<f4"))


def f16(a) -> Stored:
    return ("F16", np.asarray(a, dtype=np.float32).astype("<f2"))


def bf16(a) -> Stored:
    a = to_bf16(np.asarray(a, dtype=np.float32))
    return ("BF16", (a.view(np.uint32) >> 16).astype("<u2"))


def i32(a) -> Stored:
    """int32 storage; uint32 words keep their bit pattern."""
    a = np.asarray(a)
    return ("I32", a.astype("<u4").view("<i4") if a.dtype == np.uint32 else a.astype("<i4"))


def write_safetensors(path: str, tensors: Dict[str, Stored]) -> None:
    """Widest elements first so every tensor is aligned to its element size."""
    order = sorted(tensors, key=lambda n: -tensors[n][1].dtype.itemsize)
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in order:
        dtype, arr = tensors[name]
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for raw in blobs:
            f.write(raw)


# ----------------------------------------------------------------------------------------------
# Quantizers and packers, one per library. Each returns (stored tensors by suffix, dequantized).
# ----------------------------------------------------------------------------------------------


def pack_int32_along_last(u: np.ndarray, bits: int) -> np.ndarray:
    """compressed-tensors pack_to_int32 on unsigned codes: element k of each run of 32 / bits at
    bits * k, zero padding at the end of the row."""
    per = 32 // bits
    rows, cols = u.shape
    padded = np.zeros((rows, -(-cols // per) * per), dtype=np.uint64)
    padded[:, :cols] = u
    words = np.zeros((rows, padded.shape[1] // per), dtype=np.uint64)
    for k in range(per):
        words |= padded[:, k::per] << np.uint64(bits * k)
    return words.astype(np.uint32)


def ct_fp8(w: np.ndarray, per_tensor: bool, scale_dtype: str, scalar_shape: bool = False):
    absmax = np.max(np.abs(w)) if per_tensor else np.max(np.abs(w), axis=1, keepdims=True)
    scale = np.asarray(absmax / np.float32(448.0), dtype=np.float32)
    scale = to_bf16(scale) if scale_dtype == "BF16" else scale
    codes = to_e4m3(np.clip(w / scale, -448, 448))
    deq = e4m3_values()[codes] * scale
    stored_scale = scale.reshape(() if scalar_shape else (1,)) if per_tensor else scale
    out = {"weight": ("F8_E4M3", codes),
           "weight_scale": bf16(stored_scale) if scale_dtype == "BF16" else f32(stored_scale)}
    return out, deq.astype(np.float32)


def ct_int8(w: np.ndarray):
    scale = (np.max(np.abs(w), axis=1, keepdims=True) / np.float32(127.5)).astype(np.float32)
    q = np.clip(rne(w / scale), -128, 127).astype(np.int8)
    out = {"weight": ("I8", q), "weight_scale": f32(scale),
           "weight_zero_point": ("I8", np.zeros(scale.shape, dtype=np.int8))}
    return out, (q.astype(np.float32) * scale).astype(np.float32)


def act_order_permutation(module: str, cols: int) -> np.ndarray:
    """The order act-order quantizes a module's columns in: GPTQ sorts them by decreasing Hessian
    diagonal; any fixed permutation exercises the same layout. Modules that read the same input
    (q/k/v, gate/up) share one Hessian and so one order, as in a real checkpoint."""
    site = module.replace("k_proj", "q_proj").replace("v_proj", "q_proj").replace("up_proj", "gate_proj")
    return np.random.default_rng(zlib.crc32(site.encode())).permutation(cols)


def in_original_order(permuted: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Columns computed for w[:, perm], put back where they came from."""
    out = np.empty_like(permuted)
    out[:, perm] = permuted
    return out


def group_of_column(perm: np.ndarray, group: int) -> np.ndarray:
    """g_idx: the group of each original column when groups are runs of permuted columns."""
    g_idx = np.empty(len(perm), dtype=np.int64)
    g_idx[perm] = np.arange(len(perm)) // group
    return g_idx


def ct_int4_pack(w: np.ndarray, group: int, symmetric: bool, scale_dtype: str, perm=None):
    rows, cols = w.shape
    if perm is not None:
        w = w[:, perm]
    g = w.reshape(rows, cols // group, group)
    if symmetric:
        scale = (np.max(np.abs(g), axis=2) / np.float32(7.5)).astype(np.float32)
        zp = np.zeros_like(scale, dtype=np.int64)
    else:
        lo, hi = np.minimum(g.min(axis=2), 0), np.maximum(g.max(axis=2), 0)
        scale = ((hi - lo) / np.float32(15.0)).astype(np.float32)
    scale = to_bf16(scale) if scale_dtype == "BF16" else scale
    if not symmetric:
        zp = np.clip(rne(-8 - lo / scale), -8, 7).astype(np.int64)
    q = np.clip(rne(g / scale[:, :, None]) + zp[:, :, None], -8, 7).astype(np.int64).reshape(rows, cols)
    deq = ((q.reshape(rows, cols // group, group) - zp[:, :, None]).astype(np.float32)
           * scale[:, :, None]).reshape(rows, cols)
    if perm is not None:
        q, deq = in_original_order(q, perm), in_original_order(deq, perm)
    out = {"weight_packed": i32(pack_int32_along_last(q + 8, 4)),
           "weight_scale": bf16(scale) if scale_dtype == "BF16" else f32(scale),
           "weight_shape": ("I64", np.array([rows, cols], dtype="<i8"))}
    if not symmetric:  # pack_to_int32(zero_point, packed_dim=0): along the output rows
        out["weight_zero_point"] = i32(pack_int32_along_last((zp + 8).T, 4).T)
    if perm is not None:
        out["weight_g_idx"] = i32(group_of_column(perm, group))
    return out, deq.astype(np.float32)


def gptq_quantize(w: np.ndarray, group: int, sym: bool):
    """AutoGPTQ Quantizer.find_params per (output, group), scales rounded to fp16 as stored.
    Returns codes (rows, cols) in 0..15, zeros (rows, groups), scales (rows, groups)."""
    rows, cols = w.shape
    group = cols if group == -1 else group
    g = w.reshape(rows, cols // group, group)
    xmin, xmax = np.minimum(g.min(axis=2), 0), np.maximum(g.max(axis=2), 0)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    scale = to_f16((xmax - xmin) / np.float32(15.0))
    zero = np.full_like(scale, 8.0) if sym else rne(-xmin / scale)
    q = np.clip(rne(g / scale[:, :, None]) + zero[:, :, None], 0, 15)
    deq = ((q - zero[:, :, None]).astype(np.float32) * scale[:, :, None]).reshape(rows, cols)
    return q.reshape(rows, cols).astype(np.uint32), zero.astype(np.int64), scale, deq.astype(np.float32)


def gptq_pack(w: np.ndarray, group: int, sym: bool, v1: bool, g_idx=None, perm=None):
    rows, cols = w.shape
    if perm is None:
        q, zero, scale, deq = gptq_quantize(w, group, sym)
    else:  # act-order: groups of consecutive permuted columns, stored in the original order
        q, zero, scale, deq = gptq_quantize(w[:, perm], group, sym)
        q, deq = in_original_order(q, perm), in_original_order(deq, perm)
        g_idx = group_of_column(perm, group)
    # QuantLinear.pack: intweight is (in, out); word [p][o] |= intweight[8p + k][o] << 4k.
    intweight = q.T
    qweight = np.zeros((cols // 8, rows), dtype=np.uint64)
    for k in range(8):
        qweight |= intweight[k::8].astype(np.uint64) << np.uint64(4 * k)
    stored_zero = (zero - 1) if v1 else zero  # zeros -= 1 (v1)
    assert stored_zero.min() >= 0 and stored_zero.max() <= 15, "v1 cannot store zero 0"
    qzeros = pack_int32_along_last(stored_zero.T.astype(np.uint32), 4)  # (groups, out / 8)
    groups = scale.shape[1]
    gsize = cols // groups
    out = {"qweight": i32(qweight.astype(np.uint32)), "qzeros": i32(qzeros), "scales": f16(scale.T),
           "g_idx": i32(np.arange(cols) // gsize if g_idx is None else g_idx)}
    return out, deq


def awq_pack(w: np.ndarray, group: int):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group, group)
    mx, mn = g.max(axis=2), g.min(axis=2)
    scale = to_f16(np.maximum(mx - mn, 1e-5) / np.float32(15.0))
    zero = np.clip(-rne(mn / scale), 0, 15)
    q = np.clip(rne(g / scale[:, :, None]) + zero[:, :, None], 0, 15).reshape(rows, cols).astype(np.uint64)
    deq = ((q.reshape(rows, cols // group, group) - zero[:, :, None]).astype(np.float32)
           * scale[:, :, None]).reshape(rows, cols)

    def pack_awq(values_by_out: np.ndarray) -> np.ndarray:  # (n, out) -> (n, out / 8)
        words = np.zeros((values_by_out.shape[0], values_by_out.shape[1] // 8), dtype=np.uint64)
        for i in range(8):
            words |= values_by_out[:, AWQ_ORDER[i]::8].astype(np.uint64) << np.uint64(4 * i)
        return words.astype(np.uint32)

    out = {"qweight": i32(pack_awq(q.T)), "qzeros": i32(pack_awq(zero.T.astype(np.uint64))),
           "scales": f16(scale.T)}
    return out, deq.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Layouts: configs and per-module quantization
# ----------------------------------------------------------------------------------------------


def ct_config(fmt: str, weights: dict, input_activations=None, kv=None) -> dict:
    return {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": input_activations, "output_activations": None}},
            "ignore": ["lm_head"], "kv_cache_scheme": kv, "sparsity_config": {}, "version": "0.9.0"}


def ct_weights(num_bits, type_, strategy, group_size=None, symmetric=True, actorder=None):
    return {"num_bits": num_bits, "type": type_, "strategy": strategy, "group_size": group_size,
            "symmetric": symmetric, "dynamic": False, "actorder": actorder, "observer": "minmax",
            "block_structure": None}


def gptq_config(group, sym, desc_act=False, fmt="gptq", lm_head=False, static_groups=False) -> dict:
    return {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": desc_act, "sym": sym,
            "static_groups": static_groups, "true_sequential": True, "damp_percent": 0.01,
            "checkpoint_format": fmt, "lm_head": lm_head, "model_name_or_path": None,
            "model_file_base_name": "model"}


def layout_plan(layout: str):
    """(quantization_config, quantize(module_name, w) -> (stored by suffix, dequantized),
    quantize lm_head?)."""
    if layout == "ct_fp8_channel":
        cfg = ct_config("float-quantized", ct_weights(8, "float", "channel"),
                        {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True, "symmetric": True})
        return cfg, lambda name, w: ct_fp8(w, False, "F32"), False
    if layout == "ct_fp8_tensor":
        cfg = ct_config("float-quantized", ct_weights(8, "float", "tensor"))

        def q(name, w):
            scalar = name.endswith("q_proj")
            return ct_fp8(w, True, "F32" if scalar else "BF16", scalar_shape=scalar)
        return cfg, q, False
    if layout == "ct_int8":
        cfg = ct_config("int-quantized", ct_weights(8, "int", "channel"),
                        {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True, "symmetric": True})
        return cfg, lambda name, w: ct_int8(w), False
    if layout == "ct_w4a16_sym":
        cfg = ct_config("pack-quantized", ct_weights(4, "int", "group", 32, True))
        return cfg, lambda name, w: ct_int4_pack(w, 32, True, "BF16"), False
    if layout == "ct_w4a16_asym":
        cfg = ct_config("pack-quantized", ct_weights(4, "int", "group", 64, False))
        return cfg, lambda name, w: ct_int4_pack(w, 64, False, "F32"), False
    if layout == "ct_w4a16_actorder":
        cfg = ct_config("pack-quantized", ct_weights(4, "int", "group", 32, False, actorder="group"))
        return cfg, lambda name, w: ct_int4_pack(w, 32, False, "F32", act_order_permutation(name, w.shape[1])), False
    if layout == "gptq_sym":
        return gptq_config(32, True, lm_head=True), lambda name, w: gptq_pack(w, 32, True, True), True
    if layout == "gptq_asym":
        return gptq_config(64, False), lambda name, w: gptq_pack(w, 64, False, True), False
    if layout == "gptq_v2_channel":
        cfg = gptq_config(-1, False, desc_act=True, fmt="gptq_v2", static_groups=True)
        return cfg, lambda name, w: gptq_pack(w, -1, False, False), False
    if layout == "gptq_act_order":
        cfg = gptq_config(32, True, desc_act=True)
        return cfg, lambda name, w: gptq_pack(w, 32, True, True, perm=act_order_permutation(name, w.shape[1])), False
    if layout == "awq_gemm":
        cfg = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm",
               "modules_to_not_convert": None}
        return cfg, lambda name, w: awq_pack(w, 32), False
    raise ValueError(f"unknown layout {layout}")


def build(layout: str):
    """(config dict, stored tensors by full name, dequantized float32 weights by HF name)."""
    spec = model_spec()
    weights = ref.make_weights(spec)
    qcfg, quantize, with_lm_head = layout_plan(layout)
    config = ref.hf_config(spec)
    config["quantization_config"] = qcfg
    stored: Dict[str, Stored] = {}
    reference: Dict[str, np.ndarray] = {}
    for name, w in weights.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        quantized = module is not None and (any(module.endswith(m) for m in LINEAR) or
                                            (with_lm_head and module == "lm_head"))
        if not quantized:
            stored[name] = f32(w)
            reference[name] = w
            continue
        parts, deq = quantize(module, w)
        for suffix, t in parts.items():
            stored[f"{module}.{suffix}"] = t
        reference[name] = deq
    return config, stored, reference


def write_dir(directory: str, config: dict, stored: Dict[str, Stored], reference=None, shards: int = 1) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(directory, "model.safetensors"), stored)
    else:
        # Alternate tensors between shards, so one module's qweight and scales land apart.
        names = sorted(stored)
        files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
        weight_map = {n: files[i % shards] for i, n in enumerate(names)}
        for i, file in enumerate(files):
            write_safetensors(os.path.join(directory, file), {n: stored[n] for n in names if weight_map[n] == file})
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    if reference is not None:
        ref.write_safetensors(os.path.join(directory, "reference.safetensors"), reference)


def write_layouts(out_dir: str, layouts: List[str]) -> None:
    for layout in layouts:
        config, stored, reference = build(layout)
        write_dir(os.path.join(out_dir, layout), config, stored, reference, shards=2 if layout == "gptq_asym" else 1)


# ----------------------------------------------------------------------------------------------
# Corrupt variants: each a valid layout with one thing broken, and the text anvil's error must hold
# ----------------------------------------------------------------------------------------------

Q = "model.layers.0.self_attn.q_proj"
DOWN = "model.layers.1.mlp.down_proj"


def _set(stored, name, value):
    stored[name] = value


def corrupt_cases() -> Dict[str, Tuple[str, Callable, str]]:
    """case -> (base layout, mutate(config, stored), expected error substring)."""

    def drop(name):
        return lambda c, s: s.pop(name)

    def cfg(path, value):
        def f(c, s):
            node = c["quantization_config"]
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        return f

    def uneven_g_idx(c, s):
        c["quantization_config"]["desc_act"] = True
        cols = 64
        s[Q + ".g_idx"] = i32((np.arange(cols) % 4 != 0).astype(np.int64))  # groups of 16 and 48 columns

    def v2_as_v1(c, s):  # sym zeros stored as 8 (v2) in a checkpoint that says v1
        rows = s[Q + ".scales"][1].shape[1]
        s[Q + ".qzeros"] = i32(np.full((2, rows // 8), 0x88888888, dtype=np.uint32))

    def v1_zero_16(c, s):  # asymmetric v1 nibble 15 -> zero point 16
        z = s[Q + ".qzeros"][1].view(np.uint32).copy()
        z[0, 0] |= np.uint32(0xF)
        s[Q + ".qzeros"] = i32(z)

    def int8_nonzero_zp(c, s):
        zp = np.zeros((64, 1), dtype=np.int8)
        zp[5, 0] = 3
        s[Q + ".weight_zero_point"] = ("I8", zp)

    def ct_group16(c, s):
        c["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 16
        s[Q + ".weight_scale"] = f32(np.ones((64, 4), dtype=np.float32))

    def qweight_no_config(c, s):
        del c["quantization_config"]

    def static_fp8_activations(c, s):  # llm-compressor "FP8": static per-tensor input scales
        c["quantization_config"]["config_groups"]["group_0"]["input_activations"] = {
            "num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True,
            "observer": "minmax"}
        for name in [n for n in s if n.endswith(".weight_scale")]:
            s[name[: -len("weight_scale")] + "input_scale"] = f32(np.array([0.0125], dtype=np.float32))

    def plain_with_gptq_config(c, s):
        spec = model_spec()
        for name in list(s):
            del s[name]
        for name, w in ref.make_weights(spec).items():
            s[name] = f32(w)

    return {
        "ct_missing_scale": ("ct_fp8_channel", drop(Q + ".weight_scale"),
                             "missing tensor model.layers.0.self_attn.q_proj.weight_scale"),
        "ct_fp8_scale_shape": ("ct_fp8_channel", lambda c, s: _set(s, Q + ".weight_scale", f32(np.ones((32, 1)))),
                               "has shape (32, 1); a (64, 64) F8_E4M3 weight takes one scale"),
        "ct_fp8_block": ("ct_fp8_channel",
                         cfg(["config_groups", "group_0", "weights", "strategy"], "block"),
                         "block-wise scales (strategy 'block') are not supported"),
        "ct_int8_asym_config": ("ct_int8", cfg(["config_groups", "group_0", "weights", "symmetric"], False),
                                "asymmetric int8 weights (symmetric: false) are not supported"),
        "ct_int8_nonzero_zp": ("ct_int8", int8_nonzero_zp, "holds zero point 3 (row 5): asymmetric 8-bit weights"),
        "ct_w4_group_not_dividing": ("ct_w4a16_sym",
                                     cfg(["config_groups", "group_0", "weights", "group_size"], 48),
                                     "group_size 48 of config group 'group_0' (int4 group 48) does not divide"),
        "ct_w4_group16": ("ct_w4a16_sym", ct_group16, "group size 16 over rows of 64 columns is not supported"),
        "ct_w4_scale_shape": ("ct_w4a16_sym", lambda c, s: _set(s, Q + ".weight_scale", f32(np.ones((64, 3)))),
                              "weight_scale has shape (64, 3); it needs (64, 2)"),
        "ct_w4_weight_shape": ("ct_w4a16_sym",
                               lambda c, s: _set(s, Q + ".weight_shape", ("I64", np.array([64, 128], dtype="<i8"))),
                               "weight_shape says the weight is (64, 128)"),
        "ct_w4_packed_shape": ("ct_w4a16_sym",
                               lambda c, s: _set(s, Q + ".weight_packed", i32(np.zeros((64, 9), dtype=np.int32))),
                               "weight_packed has shape (64, 9)"),
        "ct_w4_missing_zero_point": ("ct_w4a16_asym", drop(Q + ".weight_zero_point"),
                                     "missing tensor model.layers.0.self_attn.q_proj.weight_zero_point"),
        "ct_format_mismatch": ("ct_fp8_channel", cfg(["format"], "int-quantized"),
                               "is stored as F8_E4M3 weight, but quantization_config.format is 'int-quantized'"),
        "ct_sparse": ("ct_fp8_channel", cfg(["sparsity_config"], {"format": "sparse-24-bitmask"}),
                      "sparse checkpoints"),
        "ct_fp8_static_activations": ("ct_fp8_tensor", static_fp8_activations,
                                      "model.layers.0.self_attn.q_proj: config group 'group_0' declares "
                                      "input_activations float8 strategy tensor, dynamic false: static activation "
                                      "scales (model.layers.0.self_attn.q_proj.input_scale) are not supported"),
        "ct_fp8_dynamic_per_tensor": ("ct_fp8_channel",
                                      cfg(["config_groups", "group_0", "input_activations", "strategy"], "tensor"),
                                      "declares input_activations float8 strategy tensor, dynamic true, which anvil "
                                      "does not run"),
        "gptq_bits8": ("gptq_sym", cfg(["bits"], 8), "GPTQ with bits 8 is not supported"),
        "gptq_qweight_shape": ("gptq_sym",
                               lambda c, s: _set(s, Q + ".qweight", i32(np.zeros((9, 64), dtype=np.int32))),
                               "qweight has shape (9, 64); a (64, 64) layer in 4-bit GPTQ"),
        "gptq_scales_shape": ("gptq_sym", lambda c, s: _set(s, Q + ".scales", f16(np.ones((3, 64)))),
                              "scales has shape (3, 64); group_size 32"),
        "gptq_missing_qzeros": ("gptq_sym", drop(Q + ".qzeros"),
                                "missing tensor model.layers.0.self_attn.q_proj.qzeros"),
        "gptq_act_order_uneven": ("gptq_sym", uneven_g_idx,
                                  "model.layers.0.self_attn.q_proj: act-order (g_idx) group 0 holds 16 columns"),
        "gptq_sym_zeros_v2_as_v1": ("gptq_sym", v2_as_v1, "gives zero point 9 (group 0, output 0), but sym=true"),
        "gptq_v1_zero_16": ("gptq_asym", v1_zero_16, "gives zero point 16"),
        "gptq_group_not_dividing": ("gptq_asym", cfg(["group_size"], 48), "group_size 48 does not divide"),
        "gptq_marlin": ("gptq_sym", cfg(["checkpoint_format"], "marlin"), "checkpoint_format 'marlin' is not supported"),
        "awq_gemv": ("awq_gemm", cfg(["version"], "gemv"), "AWQ version 'gemv' is not supported"),
        "awq_qzeros_shape": ("awq_gemm", lambda c, s: _set(s, Q + ".qzeros", i32(np.zeros((2, 4), dtype=np.int32))),
                             "qzeros has shape (2, 4)"),
        "awq_bits3": ("awq_gemm", cfg(["bits"], 3), "AWQ with bits 3 is not supported"),
        "unknown_method": ("gptq_sym", cfg(["quant_method"], "bitsandbytes"), "quant_method 'bitsandbytes' is not"),
        "quantized_without_config": ("gptq_sym", qweight_no_config,
                                     "belongs to a quantized layout, but config.json has no quantization_config"),
        "config_without_quantized_tensors": ("gptq_sym", plain_with_gptq_config,
                                             "declares a quantized checkpoint, but no linear layer"),
    }


def write_corrupt(out_dir: str) -> None:
    root = os.path.join(out_dir, "corrupt")
    expected = {}
    built = {}
    for case, (layout, mutate, text) in corrupt_cases().items():
        if layout not in built:
            built[layout] = build(layout)
        config, stored, _ = copy.deepcopy(built[layout])
        mutate(config, stored)
        write_dir(os.path.join(root, case), config, stored)
        expected[case] = text
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(expected, f, indent=2)


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in ("write", "corrupt"):
        print(__doc__)
        return 2
    if sys.argv[1] == "write":
        layouts = sys.argv[3].split(",") if len(sys.argv) > 3 else LAYOUTS
        unknown = set(layouts) - set(LAYOUTS)
        if unknown:
            print(f"unknown layouts {sorted(unknown)}; have {LAYOUTS}")
            return 2
        write_layouts(sys.argv[2], layouts)
    else:
        write_corrupt(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
