#!/usr/bin/env python3
"""Golden test: `anvil perplexity` against an independent NumPy computation (docs/EVAL.md).

1. stories260K (the real llama2.c model in ../shared/data) is read here by a reader of its own and
   run by reference_model.forward_hf (float64) over token ids, with llama.cpp's chunking done in
   NumPy: chunks of n_ctx, each chunk's first id replaced by BOS (1), logits of positions
   n_ctx/2 .. n_ctx-2 scoring the next token. anvil's PPL must match within 1e-3 relative (it is
   float32; expect ~1e-6), the scored-token count exactly, the standard error within 1e-2.
2. The base log-probability file anvil writes (--kl-divergence-base) is parsed by this script
   from the format in docs/EVAL.md: its tokens are the evaluated chunks and its rows are the
   reference log-softmax within 1e-5 normalized error (max abs error / max |log-prob|).
3. KL divergence: base files of dummy:tiny-llama:f32 and :q8_0 are both written by plain
   perplexity runs, then KL(f32 || q8_0), its quantiles, top-1 agreement and the PPL ratio are
   computed here from the two files and must equal what `--kl-divergence` reports.

The token ids are tinyshakespeare's bytes as byte-fallback ids (3 + byte), a valid encoding in
the 512-token llama2.c vocabulary (whose tokenizer file is not available).

Usage:
  /usr/bin/python3 tests/golden/test_perplexity.py --anvil build/anvil --shared-data ../shared/data --tmp /tmp/ppl
  /usr/bin/python3 tests/golden/test_perplexity.py --shared-data ../shared/data --self-check
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as ref  # noqa: E402

PPL_RTOL = 1e-3
ROW_TOL = 1e-5      # max |anvil - NumPy| / max |NumPy| over a chunk's log-prob rows
STORIES_GOLDEN = [461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452,
                  288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431]
BOS = 1

failures: list = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(("  ok   " if ok else "  FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)
    return ok


# ----------------------------------------------------------------------------------------------
# stories260K in NumPy
# ----------------------------------------------------------------------------------------------


def load_llama2c(path: str):
    """(config dict for reference_model.forward_hf, HF-named float32 weights)."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = n_kv * head
    floats = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = floats[pos:pos + n].reshape(shape)
        pos += n
        return out

    emb = take(vocab, dim)
    att_norm = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, dim)
    ffn_norm = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    final_norm = take(dim)
    take(seq_len, head // 2)  # RoPE tables (unused: recomputed)
    take(seq_len, head // 2)
    wcls = None if shared else take(vocab, dim)
    assert pos == floats.size, f"{path}: {floats.size - pos} floats left over"

    w = {"model.embed_tokens.weight": emb, "model.norm.weight": final_norm}
    for l in range(n_layers):
        p = f"model.layers.{l}."
        # llama2.c keeps Meta's adjacent-pair q/k rows; forward_hf rotates halves (HF order).
        w[p + "self_attn.q_proj.weight"] = ref.unpermute_qk(wq[l], n_heads)
        w[p + "self_attn.k_proj.weight"] = ref.unpermute_qk(wk[l], n_kv)
        w[p + "self_attn.v_proj.weight"] = wv[l]
        w[p + "self_attn.o_proj.weight"] = wo[l]
        w[p + "input_layernorm.weight"] = att_norm[l]
        w[p + "post_attention_layernorm.weight"] = ffn_norm[l]
        w[p + "mlp.gate_proj.weight"] = w1[l]
        w[p + "mlp.down_proj.weight"] = w2[l]
        w[p + "mlp.up_proj.weight"] = w3[l]
    if wcls is not None:
        w["lm_head.weight"] = wcls
    config = {"model_type": "llama", "hidden_size": dim, "intermediate_size": hidden, "num_hidden_layers": n_layers,
              "num_attention_heads": n_heads, "num_key_value_heads": n_kv, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "vocab_size": vocab, "max_position_embeddings": seq_len}
    return config, w


def log_softmax(rows: np.ndarray) -> np.ndarray:
    m = rows.max(axis=-1, keepdims=True)
    return rows - m - np.log(np.exp(rows - m).sum(axis=-1, keepdims=True))


def chunks_of(tokens, n_ctx: int, n_chunks: int, bos):
    out = []
    for c in range(n_chunks):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        out.append(chunk)
    return out


def reference_ppl(config, weights, tokens, n_ctx: int, max_chunks: int, bos=BOS):
    """llama.cpp's perplexity in float64: (ppl, ppl_stderr, n_scored, chunks, per-chunk log-prob rows)."""
    assert len(tokens) >= 2 * n_ctx
    n_chunks = min(len(tokens) // n_ctx, max_chunks) if max_chunks > 0 else len(tokens) // n_ctx
    first = n_ctx // 2
    nll, rows = [], []
    chunks = chunks_of(tokens, n_ctx, n_chunks, bos)
    for chunk in chunks:
        lp = log_softmax(ref.forward_hf(config, weights, chunk))[first:n_ctx - 1]
        rows.append(lp)
        nll.extend(-lp[r, chunk[first + r + 1]] for r in range(n_ctx - 1 - first))
    nll = np.array(nll)
    mean = nll.mean()
    se = np.sqrt(max(np.mean(nll * nll) - mean * mean, 0.0) / (len(nll) - 1))
    return float(np.exp(mean)), float(np.exp(mean) * se), len(nll), chunks, rows


# ----------------------------------------------------------------------------------------------
# The base log-probability file (docs/EVAL.md)
# ----------------------------------------------------------------------------------------------


def read_base_file(path: str):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"ANVILLP1", data[:8]
    version, dtype, vocab, n_ctx, n_chunks, first, fingerprint, label_len = struct.unpack_from("<6IQI", data, 8)
    assert version == 1 and dtype in (0, 1) and first == n_ctx // 2
    pos = 8 + 6 * 4 + 8 + 4
    label = data[pos:pos + label_len].decode("utf-8")
    pos += label_len
    tokens = np.frombuffer(data, dtype="<i4", count=n_chunks * n_ctx, offset=pos).reshape(n_chunks, n_ctx)
    pos += 4 * n_chunks * n_ctx
    scored = n_ctx - 1 - first
    np_dtype = "<f4" if dtype == 0 else "<f2"
    rows = np.frombuffer(data, dtype=np_dtype, count=n_chunks * scored * vocab, offset=pos)
    assert pos + rows.nbytes == len(data), "trailing bytes"
    return {"vocab": vocab, "n_ctx": n_ctx, "n_chunks": n_chunks, "first": first, "label": label,
            "fingerprint": fingerprint, "tokens": tokens,
            "rows": rows.astype(np.float64).reshape(n_chunks, scored, vocab)}


def kl_from_files(base, model):
    """KL(base || model) statistics from two base files over the same tokens."""
    assert np.array_equal(base["tokens"], model["tokens"])
    first = base["first"]
    p_log, q_log = base["rows"], model["rows"]
    p = np.exp(p_log)
    kld = np.sum(np.where(p > 0, p * (p_log - q_log), 0.0), axis=-1).ravel()
    targets = base["tokens"][:, first + 1:]
    nll_p = -np.take_along_axis(p_log, targets[..., None], axis=-1).ravel()
    nll_q = -np.take_along_axis(q_log, targets[..., None], axis=-1).ravel()
    top1 = np.argmax(p_log, axis=-1) == np.argmax(q_log, axis=-1)
    return {"kld_mean": kld.mean(), "kld_max": kld.max(), "kld_p99": np.percentile(kld, 99),
            "kld_median": np.median(kld), "top1_agreement": top1.mean(), "ppl": np.exp(nll_q.mean()),
            "ppl_base": np.exp(nll_p.mean()), "ppl_ratio": np.exp(nll_q.mean() - nll_p.mean()),
            "dp_mean": np.mean(np.exp(-nll_q) - np.exp(-nll_p)), "n": kld.size}


# ----------------------------------------------------------------------------------------------
# anvil
# ----------------------------------------------------------------------------------------------


def run_anvil(anvil: str, *args, timeout=300):
    cmd = [anvil, "perplexity", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return None, f"exit {p.returncode}: {' '.join(cmd)}\n      {p.stderr.strip()[-600:]}"
    try:
        return json.loads(p.stdout), None
    except json.JSONDecodeError:
        return None, f"stdout is not JSON: {p.stdout[:300]!r}"


def write_ids(path: str, ids) -> str:
    with open(path, "w") as f:
        f.write(" ".join(str(int(t)) for t in ids) + "\n")
    return path


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anvil")
    ap.add_argument("--shared-data", required=True)
    ap.add_argument("--tmp")
    ap.add_argument("--self-check", action="store_true", help="check the NumPy side only")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    tmp = args.tmp or tempfile.mkdtemp(prefix="anvil_ppl_golden_")
    os.makedirs(tmp, exist_ok=True)

    stories = os.path.join(args.shared_data, "models", "stories260K.bin")
    config, weights = load_llama2c(stories)
    with open(os.path.join(args.shared_data, "text", "tinyshakespeare.txt"), "rb") as f:
        text = f.read(1100)
    tokens = [3 + b for b in text]  # byte-fallback ids <0x00>.. at 3..258

    print("[golden] reference self-check (stories260K in NumPy)")
    seq = [BOS]
    for _ in range(len(STORIES_GOLDEN)):
        seq.append(int(np.argmax(ref.forward_hf(config, weights, seq)[-1])))
    check("NumPy stories260K greedy from BOS = published ids", seq[1:] == STORIES_GOLDEN, f"{seq[1:]}")
    # The adjacent-pair (Meta) convention run directly must agree with the unpermuted HF run.
    meta_tensors = {"token_embd.weight": weights["model.embed_tokens.weight"],
                    "output_norm.weight": weights["model.norm.weight"]}
    for l in range(config["num_hidden_layers"]):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        meta_tensors[b + "attn_q.weight"] = ref.permute_qk(weights[p + "self_attn.q_proj.weight"],
                                                           config["num_attention_heads"])
        meta_tensors[b + "attn_k.weight"] = ref.permute_qk(weights[p + "self_attn.k_proj.weight"],
                                                           config["num_key_value_heads"])
        for src, dst in (("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                         ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                         ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")):
            meta_tensors[b + dst + ".weight"] = weights[p + src + ".weight"]
    meta = {"general.architecture": "llama", "llama.block_count": config["num_hidden_layers"],
            "llama.attention.head_count": config["num_attention_heads"],
            "llama.attention.head_count_kv": config["num_key_value_heads"],
            "llama.embedding_length": config["hidden_size"], "llama.rope.dimension_count": 8,
            "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 10000.0}
    g_logits, _ = ref.forward_gguf(meta, meta_tensors, tokens[:12])
    err = float(np.max(np.abs(g_logits - ref.forward_hf(config, weights, tokens[:12]))))
    check("adjacent-pair and rotate-half forwards agree", err < 1e-9, f"max err {err:.3g}")
    # The test must be sensitive to the method: BOS replacement changes the result.
    ppl_bos = reference_ppl(config, weights, tokens, 128, 2)[0]
    ppl_raw = reference_ppl(config, weights, tokens, 128, 2, bos=None)[0]
    check(f"reference: BOS replacement matters (PPL {ppl_bos:.4f} vs {ppl_raw:.4f} without)",
          rel(ppl_bos, ppl_raw) > 10 * PPL_RTOL)
    if args.self_check or not args.anvil:
        print(f"[golden] self-check {'PASSED' if not failures else 'FAILED'} ({time.time() - t0:.1f}s)")
        return 1 if failures else 0

    threads = str(args.threads)
    ids_path = write_ids(os.path.join(tmp, "stories_ids.txt"), tokens)
    print("[golden] anvil perplexity vs NumPy on stories260K")
    for n_ctx, max_chunks in ((128, 3), (512, 0)):
        want_ppl, want_se, want_n, chunks, rows = reference_ppl(config, weights, tokens, n_ctx, max_chunks)
        base_path = os.path.join(tmp, f"stories_ctx{n_ctx}.kld")
        extra = ["--chunks", str(max_chunks)] if max_chunks else []
        got, err = run_anvil(args.anvil, "--model", stories, "--tokens-file", ids_path, "--ctx", str(n_ctx), *extra,
                             "--threads", threads, "--json", "--kl-divergence-base", base_path)
        label = f"ctx {n_ctx}, {len(chunks)} chunks"
        if not check(f"{label}: anvil ran", got is not None, err or ""):
            continue
        check(f"{label}: PPL {got['ppl']:.6f} vs NumPy {want_ppl:.6f} (rel {rel(got['ppl'], want_ppl):.2e})",
              rel(got["ppl"], want_ppl) < PPL_RTOL)
        check(f"{label}: ppl_stderr {got['ppl_stderr']:.6f} vs {want_se:.6f}", rel(got["ppl_stderr"], want_se) < 1e-2)
        check(f"{label}: n_tokens_scored {got['n_tokens_scored']} == {want_n}",
              got["n_tokens_scored"] == want_n and got["n_chunks"] == len(chunks) and got["ctx"] == n_ctx)
        base = read_base_file(base_path)
        check(f"{label}: base file tokens are the evaluated chunks (BOS first)",
              np.array_equal(base["tokens"], np.array(chunks)) and base["vocab"] == 512 and base["fingerprint"] == 0)
        want_rows = np.stack(rows)
        row_err = float(np.max(np.abs(base["rows"] - want_rows)) / np.max(np.abs(want_rows)))
        check(f"{label}: base file rows = NumPy log-softmax (normalized err {row_err:.2e})", row_err < ROW_TOL)
        if n_ctx == 128:
            same, err = run_anvil(args.anvil, "--model", stories, "--kl-divergence", "--kl-divergence-base", base_path,
                                  "--tokens-file", ids_path, "--threads", threads, "--json")
            if check("stories260K against its own base file: ran", same is not None, err or ""):
                check(f"self KLD {same['kld_mean']:.3g} == 0, top-1 {same['top1_agreement']} == 1",
                      same["kld_mean"] == 0.0 and same["top1_agreement"] == 1.0 and same["ppl_base"] == got["ppl"])

    print("[golden] KL divergence vs NumPy from two base files (dummy:tiny-llama f32 vs q8_0)")
    dummy_ids = write_ids(os.path.join(tmp, "dummy_ids.txt"), tokens[:400])
    files = {}
    for dtype in ("f32", "q8_0"):
        files[dtype] = os.path.join(tmp, f"tiny_{dtype}.kld")
        got, err = run_anvil(args.anvil, "--model", f"dummy:tiny-llama:{dtype}", "--tokens-file", dummy_ids, "--ctx",
                             "64", "--threads", threads, "--json", "--kl-divergence-base", files[dtype])
        check(f"tiny-llama:{dtype} base run", got is not None, err or "")
    kl, err = run_anvil(args.anvil, "--model", "dummy:tiny-llama:q8_0", "--kl-divergence", "--kl-divergence-base",
                        files["f32"], "--threads", threads, "--json")
    if check("tiny-llama:q8_0 --kl-divergence against the f32 base", kl is not None, err or ""):
        want = kl_from_files(read_base_file(files["f32"]), read_base_file(files["q8_0"]))
        check(f"n_tokens_scored {kl['n_tokens_scored']} == {want['n']}", kl["n_tokens_scored"] == want["n"])
        check(f"kld_mean {kl['kld_mean']:.6g} > 0", kl["kld_mean"] > 0)
        for key in ("kld_mean", "kld_max", "kld_p99", "kld_median", "ppl", "ppl_base", "ppl_ratio"):
            check(f"{key}: anvil {kl[key]:.8g} vs NumPy {want[key]:.8g}", rel(kl[key], want[key]) < 1e-4)
        check(f"dp_mean: anvil {kl['dp_mean']:.3g} vs NumPy {want['dp_mean']:.3g}",
              abs(kl["dp_mean"] - want["dp_mean"]) < 1e-6)
        check(f"top1_agreement: anvil {kl['top1_agreement']} vs NumPy {want['top1_agreement']}",
              abs(kl["top1_agreement"] - want["top1_agreement"]) < 1e-12)

    print(f"[golden] {'PASSED' if not failures else 'FAILED: ' + ', '.join(failures)} ({time.time() - t0:.1f}s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
