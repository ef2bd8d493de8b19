#!/usr/bin/env python3
"""End-to-end tests of `anvil perplexity`: a PPL run over WikiText-2, the KL-divergence base/compare
flow (f32 base vs q8_0, and the base against itself), and clear errors for bad input.

Run by CTest as: test_perplexity.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

failures = []


def run(anvil, *args, timeout=120):
    proc = subprocess.run([anvil, "perplexity", *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))
    if not condition:
        failures.append(name)
    return condition


def run_json(anvil, name, *args):
    code, out, err = run(anvil, *args, "--json")
    if not check(name + ": exit 0", code == 0, f"exit {code}, stderr {err[-800:]!r}"):
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        check(name + ": stdout is one JSON object", False, repr(out[:300]))
        return None


def expect_error(anvil, name, args, must_contain):
    code, out, err = run(anvil, *args)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("anvil: error:")]
    ok = code == 1 and len(errors) == 1 and lines[-1] == errors[0] and must_contain in errors[0]
    check("bad input: " + name, ok, f"exit {code}, stderr {err[-600:]!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    anvil, tmp = args.anvil, args.tmp
    os.makedirs(tmp, exist_ok=True)
    t0 = time.time()
    wiki = os.path.join(args.shared_data, "text", "wikitext-2-test.txt")
    shakespeare = os.path.join(args.shared_data, "text", "tinyshakespeare.txt")
    common = ["--ctx", "64", "--chunks", "3", "--threads", "2"]

    # 1. Perplexity over WikiText-2.
    r = run_json(anvil, "wikitext ppl", "--model", "dummy:tiny-llama", "--file", wiki, *common)
    if r:
        check(f"wikitext ppl is finite and positive ({r['ppl']:.3f})", math.isfinite(r["ppl"]) and r["ppl"] > 1)
        check("wikitext: 3 chunks of 64, 31 scored each",
              r["n_chunks"] == 3 and r["ctx"] == 64 and r["n_tokens_scored"] == 93, json.dumps(r))
        check("wikitext: ppl_stderr is finite and positive", math.isfinite(r["ppl_stderr"]) and r["ppl_stderr"] > 0)
    code, out, err = run(anvil, "--model", "dummy:tiny-llama", "--file", wiki, *common)
    check("text output: 'Final estimate: PPL = x +/- y'", code == 0 and out.startswith("Final estimate: PPL = "),
          repr(out))
    check("running estimate per chunk on stderr", "[3/3] PPL" in err, err[-400:])

    # 2. KL divergence: f32 base, q8_0 compared, and the base against itself.
    base = os.path.join(tmp, "tiny_f32.kld")
    if os.path.exists(base):
        os.remove(base)
    b = run_json(anvil, "f32 base run", "--model", "dummy:tiny-llama:f32", "--file", wiki, *common,
                 "--kl-divergence-base", base)
    check("base file written", os.path.exists(base) and os.path.getsize(base) > 0)
    q = run_json(anvil, "q8_0 vs f32 base", "--model", "dummy:tiny-llama:q8_0", "--kl-divergence",
                 "--kl-divergence-base", base, "--file", wiki, "--threads", "2")
    if b and q:
        check(f"q8_0: kld_mean small positive ({q['kld_mean']:.3g})", 0 < q["kld_mean"] < 0.01)
        check(f"q8_0: top1_agreement high ({q['top1_agreement']:.3f})", q["top1_agreement"] > 0.9)
        check("q8_0: kld_max >= kld_p99 >= kld_mean >= 0",
              q["kld_max"] >= q["kld_p99"] and q["kld_p99"] >= q["kld_median"] >= 0)
        check("q8_0: ppl_base is the base run's ppl", abs(q["ppl_base"] - b["ppl"]) <= 1e-9 * b["ppl"])
        check(f"q8_0: ppl_ratio near 1 ({q['ppl_ratio']:.5f})", abs(q["ppl_ratio"] - 1) < 0.05)
        check("q8_0: same chunks as the base", q["n_chunks"] == 3 and q["ctx"] == 64 and q["n_tokens_scored"] == 93)
    s = run_json(anvil, "f32 vs its own base (no --file: tokens from the file)", "--model", "dummy:tiny-llama:f32",
                 "--kl-divergence", "--kl-divergence-base", base, "--threads", "2")
    if s:
        check(f"self: kld_mean ~ 0 ({s['kld_mean']:.3g})", abs(s["kld_mean"]) < 1e-6)
        check("self: top1_agreement = 1", s["top1_agreement"] == 1.0)
        check("self: ppl_ratio = 1", abs(s["ppl_ratio"] - 1) < 1e-9)
    code, out, err = run(anvil, "--model", "dummy:tiny-llama:q8_0", "--kl-divergence", "--kl-divergence-base", base)
    check("text output: KL divergence statistics", code == 0 and "Mean    KLD:" in out and "Same top p:" in out,
          out[-400:])

    # 3. Bad input: one clear error line, exit 1.
    expect_error(anvil, "missing text file",
                 ["--model", "dummy:tiny-llama", "--file", os.path.join(tmp, "no-such.txt")], "cannot open the text file")
    expect_error(anvil, "ctx larger than the model's context",
                 ["--model", "dummy:tiny-llama", "--file", wiki, "--ctx", "512"], "larger than the model's context length of 256")
    short = os.path.join(tmp, "short.txt")
    with open(short, "w") as f:
        f.write("Too short for two chunks of 64 tokens.\n")
    expect_error(anvil, "text too short", ["--model", "dummy:tiny-llama", "--file", short, "--ctx", "64"],
                 "needs at least 128")
    expect_error(anvil, "no text", ["--model", "dummy:tiny-llama"], "give the text with -f/--file")
    expect_error(anvil, "--kl-divergence without a base file", ["--model", "dummy:tiny-llama", "--kl-divergence"],
                 "needs --kl-divergence-base")
    expect_error(anvil, "missing base file", ["--model", "dummy:tiny-llama", "--kl-divergence", "--kl-divergence-base",
                                              os.path.join(tmp, "no-such.kld")], "no-such.kld")
    expect_error(anvil, "foreign base file", ["--model", "dummy:tiny-llama", "--kl-divergence", "--kl-divergence-base",
                                              short], "not an anvil base log-probability file")
    expect_error(anvil, "base file with another ctx",
                 ["--model", "dummy:tiny-llama", "--kl-divergence", "--kl-divergence-base", base, "--ctx", "32"],
                 "scored with --ctx 64, not 32")
    expect_error(anvil, "base file of another text",
                 ["--model", "dummy:tiny-llama", "--kl-divergence", "--kl-divergence-base", base, "--file", shakespeare],
                 "differs from the tokens in")
    truncated = os.path.join(tmp, "truncated.kld")
    with open(base, "rb") as src, open(truncated, "wb") as dst:
        data = src.read()
        dst.write(data[:len(data) - 100])
    expect_error(anvil, "truncated base file",
                 ["--model", "dummy:tiny-llama", "--kl-divergence", "--kl-divergence-base", truncated], "truncated")
    ids = os.path.join(tmp, "ids.txt")
    with open(ids, "w") as f:
        f.write("1 2 3 x4\n")
    expect_error(anvil, "bad token id file", ["--model", "dummy:tiny-llama", "--tokens-file", ids, "--ctx", "64"],
                 "'x4'")
    with open(ids, "w") as f:
        f.write(" ".join(["7"] * 200) + " 9999\n")
    expect_error(anvil, "token id outside the vocabulary",
                 ["--model", "dummy:tiny-llama", "--tokens-file", ids, "--ctx", "64"], "outside the model's vocabulary of 512")
    stories = os.path.join(args.shared_data, "models", "stories260K.bin")
    expect_error(anvil, "model without a tokenizer given text", ["--model", stories, "--file", wiki],
                 "carries no tokenizer; give token ids with --tokens-file")
    expect_error(anvil, "bad --kl-base-dtype",
                 ["--model", "dummy:tiny-llama", "--file", wiki, "--kl-divergence-base", base, "--kl-base-dtype", "q4_0"],
                 "f32 or f16")

    print(f"{'PASSED' if not failures else 'FAILED: ' + ', '.join(failures)} ({time.time() - t0:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
