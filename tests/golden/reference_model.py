"""Independent NumPy reference for Anvil's decoder-only model families, plus model file writers.

Nothing here is shared with the C++ code: it is a second implementation written from the
published model definitions, used to check Anvil's forward pass and its GGUF/safetensors loaders.

Families (pre-norm decoder, SwiGLU MLP, RMSNorm, RoPE, causal GQA attention):
  llama   - Llama 2/3 (optionally Llama 3.1 "llama3" RoPE scaling), untied or tied embeddings.
  mistral - Llama plus a sliding attention window W: the query at position i attends to keys j
            with i - W < j <= i (the last W positions, itself included). This is Hugging Face's
            definition (transformers masking_utils.sliding_window_overlay: kv_idx > q_idx - W,
            and'ed with kv_idx <= q_idx) and llama.cpp's (masked when p_q - p_k >= n_swa).
  qwen2   - Llama plus biases on q/k/v projections (no sliding window: use_sliding_window=false).

Two forward passes are implemented, deliberately in different styles, so they check each other:
  forward_hf()   reads Hugging Face tensors/config; whole sequence at once; rotate-half RoPE
                 (pairs (i, i + d/2)); HF's _compute_llama3_parameters for rope scaling; the
                 sliding window as a boolean mask matrix.
  forward_gguf() reads GGUF tensors/metadata; one token at a time with a KV cache; RoPE as a
                 complex multiplication on adjacent pairs (2i, 2i+1) for arch "llama" (whose q/k
                 rows are permuted as convert_hf_to_gguf.py does) or on halves for "qwen2";
                 llama3 scaling only through the rope_freqs.weight divisors stored in the file.
All arithmetic is float64 on the float32 values that are written to the files.

Only the Python standard library and NumPy are used.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

# ----------------------------------------------------------------------------------------------
# Model description and random weights
# ----------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    name: str
    model_type: str              # "llama", "mistral", "qwen2" (config.json model_type)
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None  # HF dict, e.g. {"rope_type": "llama3", ...}
    tie_word_embeddings: bool = False
    sliding_window: Optional[int] = None
    qkv_bias: bool = False
    max_position_embeddings: int = 128
    resid_gain: float = 1.0      # scale of o_proj/down_proj (tied models need larger block outputs
                                 # or greedy just repeats the input token)
    seed: int = 0
    prompt: List[int] = field(default_factory=list)
    n_generate: int = 8

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def gguf_arch(self) -> str:
        return "qwen2" if self.model_type == "qwen2" else "llama"


BOS_ID = 1
EOS_ID = 2


def make_weights(spec: ModelSpec) -> Dict[str, np.ndarray]:
    """Random float32 weights with Hugging Face names and PyTorch (out, in) shapes.

    Scaled so activations stay O(1) and logits are clearly non-uniform: projections are
    normal / sqrt(fan_in) (q and k a little larger so attention is peaked enough for RoPE and
    masking errors to show), norms 1 + small noise, embeddings standard normal.
    """
    rng = np.random.default_rng(spec.seed)
    d, hd, nh, nkv, ff, V = (spec.hidden_size, spec.head_dim, spec.num_heads, spec.num_kv_heads,
                             spec.intermediate_size, spec.vocab_size)

    def lin(out_f, in_f, gain=1.0):
        return (rng.standard_normal((out_f, in_f)) * gain / math.sqrt(in_f)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w: Dict[str, np.ndarray] = {}
    w["model.embed_tokens.weight"] = rng.standard_normal((V, d)).astype(np.float32)
    for l in range(spec.num_layers):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "self_attn.q_proj.weight"] = lin(nh * hd, d, 1.5)
        w[p + "self_attn.k_proj.weight"] = lin(nkv * hd, d, 1.5)
        w[p + "self_attn.v_proj.weight"] = lin(nkv * hd, d)
        if spec.qkv_bias:
            w[p + "self_attn.q_proj.bias"] = (0.5 * rng.standard_normal(nh * hd)).astype(np.float32)
            w[p + "self_attn.k_proj.bias"] = (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32)
            w[p + "self_attn.v_proj.bias"] = (0.5 * rng.standard_normal(nkv * hd)).astype(np.float32)
        w[p + "self_attn.o_proj.weight"] = lin(d, nh * hd, spec.resid_gain)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        w[p + "mlp.gate_proj.weight"] = lin(ff, d)
        w[p + "mlp.up_proj.weight"] = lin(ff, d)
        w[p + "mlp.down_proj.weight"] = lin(d, ff, spec.resid_gain)
    w["model.norm.weight"] = norm(d)
    if not spec.tie_word_embeddings:
        w["lm_head.weight"] = lin(V, d, 2.0)
    return w


# ----------------------------------------------------------------------------------------------
# Hugging Face style forward pass (rotate-half RoPE, whole sequence)
# ----------------------------------------------------------------------------------------------


def hf_inv_freq(config: dict) -> np.ndarray:
    """inv_freq as transformers computes it (default, or _compute_llama3_parameters)."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    base = float(config.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    rs = config.get("rope_scaling")
    if rs:
        rope_type = rs.get("rope_type", rs.get("type"))
        if rope_type == "llama3":
            factor = float(rs["factor"])
            low_freq_factor = float(rs["low_freq_factor"])
            high_freq_factor = float(rs["high_freq_factor"])
            old_context_len = float(rs["original_max_position_embeddings"])
            low_freq_wavelen = old_context_len / low_freq_factor
            high_freq_wavelen = old_context_len / high_freq_factor
            wavelen = 2 * math.pi / inv_freq
            inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
            smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
            is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
            inv_freq = np.where(is_medium, smoothed, inv_freq_llama)
        elif rope_type in ("default", None):
            pass
        else:
            raise ValueError(f"reference: unsupported rope_scaling {rs}")
    return inv_freq


def _rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rotate_half(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def hf_sliding_window(config: dict) -> Optional[int]:
    mt = config.get("model_type")
    if mt == "mistral":
        return config.get("sliding_window")
    if mt == "qwen2":
        return config.get("sliding_window") if config.get("use_sliding_window") else None
    return None


def forward_hf(config: dict, weights: Dict[str, np.ndarray], tokens, _gqa_modulo: bool = False) -> np.ndarray:
    """Logits (T, vocab) at every position, float64. (_gqa_modulo: the WRONG kv-head mapping
    h % n_kv_heads, only for the self-check's sensitivity test.)"""
    W = {k: v.astype(np.float64) for k, v in weights.items()}
    tokens = np.asarray(tokens, dtype=np.int64)
    T = len(tokens)
    nh = config["num_attention_heads"]
    nkv = config["num_key_value_heads"]
    hd = config.get("head_dim") or config["hidden_size"] // nh
    eps = float(config["rms_norm_eps"])
    group = nh // nkv

    inv_freq = hf_inv_freq(config)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]
    emb = np.concatenate([ang, ang], axis=-1)  # (T, hd)
    cos, sin = np.cos(emb), np.sin(emb)

    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    allowed = j <= i
    sw = hf_sliding_window(config)
    if sw is not None:
        allowed &= j > i - sw

    x = W["model.embed_tokens.weight"][tokens]
    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = _rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T
        k = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in W:
            q = q + W[p + "self_attn.q_proj.bias"]
            k = k + W[p + "self_attn.k_proj.bias"]
            v = v + W[p + "self_attn.v_proj.bias"]
        q = q.reshape(T, nh, hd).transpose(1, 0, 2)
        k = k.reshape(T, nkv, hd).transpose(1, 0, 2)
        v = v.reshape(T, nkv, hd).transpose(1, 0, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if _gqa_modulo:
            k, v = np.tile(k, (group, 1, 1)), np.tile(v, (group, 1, 1))
        else:
            k = np.repeat(k, group, axis=0)  # head h uses kv head h // group
            v = np.repeat(v, group, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.where(allowed[None], s, -np.inf)
        s = s - s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        o = (pr @ v).transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = _rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        m = _silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + m @ W[p + "mlp.down_proj.weight"].T
    x = _rmsnorm(x, W["model.norm.weight"], eps)
    out = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return x @ out.T


def argmax_lowest(v: np.ndarray) -> int:
    """Argmax, lowest index on ties (np.argmax already returns the first maximum)."""
    return int(np.argmax(v))


def greedy_hf(config: dict, weights, prompt, n: int):
    """Greedy ids, recomputing the whole sequence each step. Returns (ids, margins) where
    margins[t] = (top1 - top2) / max|logits| at step t (how safe the argmax is)."""
    seq = list(prompt)
    ids, margins = [], []
    for _ in range(n):
        logits = forward_hf(config, weights, seq)[-1]
        nxt = argmax_lowest(logits)
        top2 = np.sort(logits)[-2:]
        margins.append(float((top2[1] - top2[0]) / np.max(np.abs(logits))))
        ids.append(nxt)
        seq.append(nxt)
    return ids, margins


# ----------------------------------------------------------------------------------------------
# GGUF style forward pass (adjacent-pair or NeoX RoPE via complex numbers, incremental)
# ----------------------------------------------------------------------------------------------


class GGUFStyleModel:
    """Token-at-a-time decoder over GGUF tensors (numpy shape = reversed ne) and metadata."""

    def __init__(self, meta: dict, tensors: Dict[str, np.ndarray]):
        arch = meta["general.architecture"]
        g = lambda key: meta[f"{arch}.{key}"]  # noqa: E731
        self.arch = arch
        self.t = {k: v.astype(np.float64) for k, v in tensors.items()}
        self.n_layer = int(g("block_count"))
        self.n_head = int(g("attention.head_count"))
        self.n_head_kv = int(g("attention.head_count_kv"))
        self.n_embd = int(g("embedding_length"))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(g("rope.dimension_count"))
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.n_swa = int(meta.get(f"{arch}.attention.sliding_window", 0))
        base = float(g("rope.freq_base"))
        theta = base ** (-np.arange(0, self.n_rot, 2, dtype=np.float64) / self.n_rot)
        if "rope_freqs.weight" in self.t:
            theta = theta / self.t["rope_freqs.weight"]
        self.freqs = theta
        self.neox = arch in ("qwen2",)  # llama.cpp: LLAMA_ROPE_TYPE_NEOX for qwen2
        self.cache_k: List[List[np.ndarray]] = [[] for _ in range(self.n_layer)]
        self.cache_v: List[List[np.ndarray]] = [[] for _ in range(self.n_layer)]
        self.pos = 0

    def _rope(self, vec: np.ndarray, pos: int) -> np.ndarray:
        """Rotate one head vector (head_dim,) at position pos."""
        out = vec.copy()
        r = self.n_rot
        rot = np.exp(1j * pos * self.freqs)
        if self.neox:
            z = vec[: r // 2] + 1j * vec[r // 2: r]
            z = z * rot
            out[: r // 2], out[r // 2: r] = z.real, z.imag
        else:
            z = vec[0:r:2] + 1j * vec[1:r:2]
            z = z * rot
            out[0:r:2], out[1:r:2] = z.real, z.imag
        return out

    @staticmethod
    def _norm(x, w, eps):
        return w * x / math.sqrt(float(np.dot(x, x)) / x.size + eps)

    def step(self, token: int) -> np.ndarray:
        t = self.t
        x = t["token_embd.weight"][token].copy()
        pos = self.pos
        hd = self.head_dim
        for l in range(self.n_layer):
            b = f"blk.{l}."
            h = self._norm(x, t[b + "attn_norm.weight"], self.eps)
            q = t[b + "attn_q.weight"] @ h
            k = t[b + "attn_k.weight"] @ h
            v = t[b + "attn_v.weight"] @ h
            if b + "attn_q.bias" in t:
                q += t[b + "attn_q.bias"]
                k += t[b + "attn_k.bias"]
                v += t[b + "attn_v.bias"]
            q = np.stack([self._rope(q[i * hd:(i + 1) * hd], pos) for i in range(self.n_head)])
            k = np.stack([self._rope(k[i * hd:(i + 1) * hd], pos) for i in range(self.n_head_kv)])
            v = v.reshape(self.n_head_kv, hd)
            self.cache_k[l].append(k)
            self.cache_v[l].append(v)
            heads_per_kv = self.n_head // self.n_head_kv
            attn_out = np.zeros(self.n_head * hd)
            for hq in range(self.n_head):
                kvh = hq // heads_per_kv
                scores = []
                vals = []
                for p_k in range(pos + 1):
                    if self.n_swa > 0 and pos - p_k >= self.n_swa:
                        continue
                    scores.append(float(np.dot(q[hq], self.cache_k[l][p_k][kvh])) / math.sqrt(hd))
                    vals.append(self.cache_v[l][p_k][kvh])
                sc = np.array(scores)
                e = np.exp(sc - sc.max())
                attn_out[hq * hd:(hq + 1) * hd] = (e / e.sum()) @ np.array(vals)
            x = x + t[b + "attn_output.weight"] @ attn_out
            h = self._norm(x, t[b + "ffn_norm.weight"], self.eps)
            g_ = t[b + "ffn_gate.weight"] @ h
            u = t[b + "ffn_up.weight"] @ h
            x = x + t[b + "ffn_down.weight"] @ (g_ / (1.0 + np.exp(-g_)) * u)
        x = self._norm(x, t["output_norm.weight"], self.eps)
        out = t["output.weight"] if "output.weight" in t else t["token_embd.weight"]
        self.pos += 1
        return out @ x


def forward_gguf(meta, tensors, prompt, n_generate=0):
    """(prompt logits (T, vocab), greedy ids) with a KV cache, GGUF conventions."""
    m = GGUFStyleModel(meta, tensors)
    rows = [m.step(int(tok)) for tok in prompt]
    ids = []
    last = rows[-1]
    for _ in range(n_generate):
        nxt = argmax_lowest(last)
        ids.append(nxt)
        last = m.step(nxt)
    return np.stack(rows), ids


# ----------------------------------------------------------------------------------------------
# HF -> GGUF conversion (what llama.cpp's convert_hf_to_gguf.py does for these tensors)
# ----------------------------------------------------------------------------------------------


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: rotate-half row order -> adjacent-pair order."""
    out = w.shape[0]
    return (w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    out = w.shape[0]
    return (w.reshape(n_head, out // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def llama3_rope_divisors(spec: ModelSpec) -> np.ndarray:
    """rope_freqs.weight as convert_hf_to_gguf.py writes it (one divisor per frequency)."""
    rs = spec.rope_scaling
    base = spec.rope_theta
    dim = spec.head_dim
    factor = rs.get("factor", 8.0)
    low_freq_factor = rs.get("low_freq_factor", 1.0)
    high_freq_factor = rs.get("high_freq_factor", 4.0)
    old_context_len = rs.get("original_max_position_embeddings", 8192)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    factors = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def hf_to_gguf_tensors(spec: ModelSpec, w: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    permute = spec.gguf_arch == "llama"
    t: Dict[str, np.ndarray] = {}
    t["token_embd.weight"] = w["model.embed_tokens.weight"]
    if spec.rope_scaling and spec.rope_scaling.get("rope_type", spec.rope_scaling.get("type")) == "llama3":
        t["rope_freqs.weight"] = llama3_rope_divisors(spec)
    for l in range(spec.num_layers):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        t[b + "attn_norm.weight"] = w[p + "input_layernorm.weight"]
        q = w[p + "self_attn.q_proj.weight"]
        k = w[p + "self_attn.k_proj.weight"]
        if permute:
            q = permute_qk(q, spec.num_heads)
            k = permute_qk(k, spec.num_kv_heads)
        t[b + "attn_q.weight"] = np.ascontiguousarray(q)
        t[b + "attn_k.weight"] = np.ascontiguousarray(k)
        t[b + "attn_v.weight"] = w[p + "self_attn.v_proj.weight"]
        if spec.qkv_bias:
            qb = w[p + "self_attn.q_proj.bias"]
            kb = w[p + "self_attn.k_proj.bias"]
            if permute:
                qb = permute_qk(qb, spec.num_heads)
                kb = permute_qk(kb, spec.num_kv_heads)
            t[b + "attn_q.bias"] = np.ascontiguousarray(qb)
            t[b + "attn_k.bias"] = np.ascontiguousarray(kb)
            t[b + "attn_v.bias"] = w[p + "self_attn.v_proj.bias"]
        t[b + "attn_output.weight"] = w[p + "self_attn.o_proj.weight"]
        t[b + "ffn_norm.weight"] = w[p + "post_attention_layernorm.weight"]
        t[b + "ffn_gate.weight"] = w[p + "mlp.gate_proj.weight"]
        t[b + "ffn_up.weight"] = w[p + "mlp.up_proj.weight"]
        t[b + "ffn_down.weight"] = w[p + "mlp.down_proj.weight"]
    t["output_norm.weight"] = w["model.norm.weight"]
    if not spec.tie_word_embeddings:
        t["output.weight"] = w["lm_head.weight"]
    return t


# ----------------------------------------------------------------------------------------------
# Hugging Face directory writer (config.json + model.safetensors)
# ----------------------------------------------------------------------------------------------


def hf_config(spec: ModelSpec) -> dict:
    arch_class = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM"}[spec.model_type]
    cfg = {
        "architectures": [arch_class],
        "model_type": spec.model_type,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "rope_scaling": spec.rope_scaling,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "sliding_window": spec.sliding_window,
        "vocab_size": spec.vocab_size,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "attention_bias": False,
    }
    if spec.model_type == "qwen2":
        # Real Qwen2 configs carry a sliding_window value but disable it.
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = 32768
        cfg["max_window_layers"] = spec.num_layers
        del cfg["attention_bias"]
    return cfg


def write_safetensors(path: str, tensors: Dict[str, np.ndarray]) -> None:
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b: base + e], dtype="<f4").reshape(info["shape"])
    return out


def write_hf_dir(directory: str, spec: ModelSpec, weights: Dict[str, np.ndarray]) -> dict:
    os.makedirs(directory, exist_ok=True)
    cfg = hf_config(spec)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(directory, "model.safetensors"), weights)
    return cfg


# ----------------------------------------------------------------------------------------------
# GGUF v3 writer / reader
# ----------------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_ALIGNMENT = 32
# gguf_type codes
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)
_SCALAR_FMT = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
               T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
               T_FLOAT64: "<d"}
GGML_TYPE_F32 = 0


class GVal:
    """A typed GGUF metadata value; arrays as GVal(T_ARRAY, list, elem_type)."""

    def __init__(self, vtype: int, value, elem_type: Optional[int] = None):
        self.vtype, self.value, self.elem_type = vtype, value, elem_type


def _gstr(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _gval(vtype: int, value) -> bytes:
    if vtype == T_STRING:
        return _gstr(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


def write_gguf(path: str, kvs: Dict[str, GVal], tensors: Dict[str, np.ndarray],
               alignment: int = GGUF_ALIGNMENT) -> None:
    out = bytearray()
    out += GGUF_MAGIC
    out += struct.pack("<I", 3)
    out += struct.pack("<Q", len(tensors))
    out += struct.pack("<Q", len(kvs))
    for key, gv in kvs.items():
        out += _gstr(key)
        out += struct.pack("<I", gv.vtype)
        if gv.vtype == T_ARRAY:
            out += struct.pack("<I", gv.elem_type)
            out += struct.pack("<Q", len(gv.value))
            if gv.elem_type == T_STRING:
                for s in gv.value:
                    out += _gstr(s)
            else:
                out += np.asarray(gv.value, dtype=np.dtype(_SCALAR_FMT[gv.elem_type])).tobytes()
        else:
            out += _gval(gv.vtype, gv.value)
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        ne = list(reversed(a.shape))
        out += _gstr(name)
        out += struct.pack("<I", len(ne))
        for n in ne:
            out += struct.pack("<Q", n)
        out += struct.pack("<I", GGML_TYPE_F32)
        out += struct.pack("<Q", offset)
        raw = a.tobytes()
        pad = (-len(raw)) % alignment
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    out += b"\0" * ((-len(out)) % alignment)
    with open(path, "wb") as f:
        f.write(out)
        for raw in blobs:
            f.write(raw)


def read_gguf(path: str):
    """Minimal GGUF reader (F32 tensors only): (metadata dict, tensors dict)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

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
            et = rd("<I")
            n = rd("<Q")
            return [rval(et) for _ in range(n)]
        return rd(_SCALAR_FMT[vt])

    assert data[:4] == GGUF_MAGIC, "bad magic"
    pos = 4
    version = rd("<I")
    assert version == 3, version
    n_tensors = rd("<Q")
    n_kv = rd("<Q")
    meta = {}
    for _ in range(n_kv):
        key = rstr()
        vt = rd("<I")
        meta[key] = rval(vt)
    infos = []
    for _ in range(n_tensors):
        name = rstr()
        nd = rd("<I")
        ne = [rd("<Q") for _ in range(nd)]
        ty = rd("<I")
        off = rd("<Q")
        infos.append((name, ne, ty, off))
    align = int(meta.get("general.alignment", 32))
    data_start = pos + ((-pos) % align)
    tensors = {}
    for name, ne, ty, off in infos:
        assert ty == GGML_TYPE_F32, (name, ty)
        assert off % align == 0, (name, off)
        count = int(np.prod(ne)) if ne else 1
        start = data_start + off
        tensors[name] = np.frombuffer(data[start:start + 4 * count], dtype="<f4").reshape(list(reversed(ne)))
    return meta, tensors


def spm_vocab(vocab_size: int):
    """A small, well-formed SentencePiece-style token table (<unk>, <s>, </s>, 256 byte
    tokens, then plain pieces), so loaders that want tokenizer metadata find one."""
    assert vocab_size >= 259
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    extra = vocab_size - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(extra)]
    types += [1] * extra
    scores = [0.0] * 259 + [-float(i + 1) for i in range(extra)]
    return tokens, scores, types


def gguf_metadata(spec: ModelSpec, with_tokenizer: bool = True) -> Dict[str, GVal]:
    a = spec.gguf_arch
    kv: Dict[str, GVal] = {
        "general.architecture": GVal(T_STRING, a),
        "general.name": GVal(T_STRING, f"anvil-golden-{spec.name}"),
        "general.alignment": GVal(T_UINT32, GGUF_ALIGNMENT),
        "general.file_type": GVal(T_UINT32, 0),
        f"{a}.context_length": GVal(T_UINT32, spec.max_position_embeddings),
        f"{a}.embedding_length": GVal(T_UINT32, spec.hidden_size),
        f"{a}.feed_forward_length": GVal(T_UINT32, spec.intermediate_size),
        f"{a}.block_count": GVal(T_UINT32, spec.num_layers),
        f"{a}.attention.head_count": GVal(T_UINT32, spec.num_heads),
        f"{a}.attention.head_count_kv": GVal(T_UINT32, spec.num_kv_heads),
        f"{a}.attention.layer_norm_rms_epsilon": GVal(T_FLOAT32, spec.rms_norm_eps),
        f"{a}.rope.freq_base": GVal(T_FLOAT32, spec.rope_theta),
        f"{a}.rope.dimension_count": GVal(T_UINT32, spec.head_dim),
        f"{a}.vocab_size": GVal(T_UINT32, spec.vocab_size),
    }
    if spec.model_type == "mistral" and spec.sliding_window:
        kv[f"{a}.attention.sliding_window"] = GVal(T_UINT32, spec.sliding_window)
    if with_tokenizer:
        tokens, scores, types = spm_vocab(spec.vocab_size)
        kv["tokenizer.ggml.model"] = GVal(T_STRING, "llama")
        kv["tokenizer.ggml.tokens"] = GVal(T_ARRAY, tokens, T_STRING)
        kv["tokenizer.ggml.scores"] = GVal(T_ARRAY, scores, T_FLOAT32)
        kv["tokenizer.ggml.token_type"] = GVal(T_ARRAY, types, T_INT32)
        kv["tokenizer.ggml.bos_token_id"] = GVal(T_UINT32, BOS_ID)
        kv["tokenizer.ggml.eos_token_id"] = GVal(T_UINT32, EOS_ID)
        kv["tokenizer.ggml.unknown_token_id"] = GVal(T_UINT32, 0)
        kv["tokenizer.ggml.add_bos_token"] = GVal(T_BOOL, False)
    return kv


def write_gguf_model(path: str, spec: ModelSpec, weights: Dict[str, np.ndarray],
                     with_tokenizer: bool = True) -> Dict[str, np.ndarray]:
    tensors = hf_to_gguf_tensors(spec, weights)
    write_gguf(path, gguf_metadata(spec, with_tokenizer), tensors)
    return tensors


# ----------------------------------------------------------------------------------------------
# Test cases
# ----------------------------------------------------------------------------------------------


def _prompt(seed: int, n: int, vocab: int) -> List[int]:
    rng = np.random.default_rng(1000 + seed)
    # Avoid the special ids 0..2 so no loader/driver treats them specially.
    return [int(x) for x in rng.integers(3, vocab, size=n)]


def cases() -> List[ModelSpec]:
    out = [
        # (1) Llama, GQA (4 query heads over 2 kv heads), separate lm_head.
        ModelSpec(name="llama_gqa", model_type="llama", vocab_size=272, hidden_size=64,
                  intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                  rms_norm_eps=1e-5, rope_theta=10000.0, seed=11),
        # (2) Llama 3.1 rope scaling + tied embeddings. head_dim 16, theta 1e4, original context 32,
        # low/high freq factors 1/4 -> wavelengths 6.3 (< 8: kept), 19.9 (8..32: smoothed),
        # 62.8.. (> 32: divided by 8), so all three bands of the scaling are exercised.
        ModelSpec(name="llama3_rope_tied", model_type="llama", vocab_size=260, hidden_size=64,
                  intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=4,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                  max_position_embeddings=256, resid_gain=8.0, seed=26),
        # (3) Mistral, sliding window 6 over a 20-token prompt (+8 generated), 3 layers.
        ModelSpec(name="mistral_swa", model_type="mistral", vocab_size=288, hidden_size=48,
                  intermediate_size=96, num_layers=3, num_heads=4, num_kv_heads=2,
                  rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=6, seed=40),
        # (4) Qwen2: q/k/v biases, tied embeddings, eps 1e-6, theta 1e6.
        ModelSpec(name="qwen2_bias_tied", model_type="qwen2", vocab_size=300, hidden_size=32,
                  intermediate_size=64, num_layers=3, num_heads=4, num_kv_heads=2,
                  rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True, qkv_bias=True,
                  resid_gain=8.0, seed=49),
    ]
    prompt_len = {"llama_gqa": 12, "llama3_rope_tied": 24, "mistral_swa": 20, "qwen2_bias_tied": 14}
    for s in out:
        s.prompt = _prompt(s.seed, prompt_len[s.name], s.vocab_size)
    return out
