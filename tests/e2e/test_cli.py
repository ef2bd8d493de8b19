#!/usr/bin/env python3
"""End-to-end tests of the anvil CLI: generation, conversion round trips and bad input.

Run by CTest as: test_cli.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import os
import subprocess
import sys

STORIES_GOLDEN = ("461,461,401,401,401,461,378,455,473,456,435,299,362,409,283,264,283,452,288,13,"
                  "431,431,431,431,431,431,431,431,431,431,431,431")

failures = []


def run(anvil, *args, timeout=300, env=None):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    return proc.returncode, proc.stdout, proc.stderr


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))
    if not condition:
        failures.append(name)


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def expect_error(anvil, name, args, must_contain):
    code, out, err = run(anvil, *args)
    # Progress lines may come first; the error is exactly one line, the last one.
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("anvil: error:")]
    ok = code == 1 and len(errors) == 1 and lines[-1] == errors[0] and must_contain in errors[0]
    check("bad input: " + name, ok, f"exit {code}, stderr {err!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    anvil, tmp = args.anvil, args.tmp
    os.makedirs(tmp, exist_ok=True)
    stories = os.path.join(args.shared_data, "models", "stories260K.bin")

    # Golden generation through the CLI, 1 and 2 threads.
    for threads in ("1", "2"):
        code, out, err = run(anvil, "run", "--model", stories, "--prompt-tokens", "1", "-n", "32",
                             "--temperature", "0", "--print-token-ids", "--threads", threads)
        check(f"stories260K greedy ids (threads {threads})", code == 0 and last_line(out) == STORIES_GOLDEN,
              f"exit {code}, got {last_line(out)!r}, stderr {err[-300:]!r}")
    check("run reports prompt and decode tok/s on stderr", "tok/s" in err and "peak RSS" in err, err)

    # Every kernel path (ANVIL_ISA caps the ISA) and every GEMM provider gives the golden ids.
    for isa in ("scalar", "avx2", "avx512"):
        code, out, err = run(anvil, "run", "--model", stories, "--prompt-tokens", "1", "-n", "32",
                             "--temperature", "0", "--print-token-ids", env={"ANVIL_ISA": isa})
        check(f"stories260K greedy ids with ANVIL_ISA={isa}", code == 0 and last_line(out) == STORIES_GOLDEN,
              f"exit {code}, got {last_line(out)!r}")
    for provider in ("reference", "gemv", "onednn"):
        code, out, err = run(anvil, "run", "--model", stories, "--prompt-tokens", "1,400,300,200", "-n", "16",
                             "--temperature", "0", "--print-token-ids", env={"ANVIL_GEMM": provider})
        ids = last_line(out)
        if provider == "reference":
            reference_ids = ids
        check(f"ANVIL_GEMM={provider} gives the reference's greedy ids", code == 0 and ids == reference_ids,
              f"{ids!r} vs {reference_ids!r}")

    # Same seed, same sampled output; different seed, different output.
    def sampled(seed):
        return run(anvil, "run", "--model", stories, "--prompt-tokens", "1", "-n", "24", "--temperature", "1.0",
                   "--seed", seed, "--print-token-ids")[1]
    check("same seed gives same tokens", last_line(sampled("7")) == last_line(sampled("7")))
    check("different seeds differ", last_line(sampled("7")) != last_line(sampled("8")))

    # Text in, text out on a preset with its synthetic tokenizer; stop strings end generation.
    code, out, err = run(anvil, "run", "--model", "dummy:tiny-llama", "--prompt", "Hello", "-n", "16", "--seed", "3")
    check("text prompt on a preset streams text", code == 0 and out.startswith("Hello"), f"exit {code} {err!r}")

    # 1-byte KV caches (fp8 E4M3 / int8 codes, a scale per token and KV head): text from a preset, and
    # greedy ids from stories260K that every kernel path agrees on.
    for kv in ("fp8", "int8"):
        code, out, err = run(anvil, "run", "--model", "dummy:tiny-llama", "--prompt", "Hello", "-n", "16", "--seed", "3",
                             "--kv-dtype", kv)
        check(f"run --kv-dtype {kv} streams text", code == 0 and out.startswith("Hello") and len(out) > len("Hello"),
              f"exit {code} {err[-300:]!r}")
        per_isa = {}
        for isa in ("scalar", "avx2", "avx512"):
            code, out, err = run(anvil, "run", "--model", stories, "--prompt-tokens", "1", "-n", "32", "--temperature",
                                 "0", "--print-token-ids", "--kv-dtype", kv, env={"ANVIL_ISA": isa})
            per_isa[isa] = last_line(out) if code == 0 else f"exit {code}: {err[-300:]}"
        ids = per_isa["scalar"].split(",")
        check(f"run --kv-dtype {kv}: 32 greedy ids, the same on every ISA path", len(ids) == 32
              and len(set(per_isa.values())) == 1, repr(per_isa))
        same = sum(a == b for a, b in zip(ids, STORIES_GOLDEN.split(",")))
        print(f"  (stories260K, {kv} KV: {same} of 32 greedy ids equal the f32 cache's)")
    expect_error(anvil, "unknown KV dtype", ["run", "--model", "dummy:tiny-llama", "--prompt-tokens", "1",
                                             "--kv-dtype", "q4_0"], "--kv-dtype 'q4_0'")

    # Conversion round trips: every source to GGUF and back gives the same greedy tokens.
    sources = [stories, "dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-mistral", "dummy:tiny-llama3"]
    for source in sources:
        gguf = os.path.join(tmp, os.path.basename(source).replace(":", "_") + ".gguf")
        code, _, err = run(anvil, "convert", "--model", source, "--out", gguf)
        check(f"convert {source}", code == 0 and os.path.exists(gguf), err)
        ids, logits = [], []
        for i, model in enumerate((source, gguf)):
            logits_path = gguf + f".logits{i}"
            code, out, err = run(anvil, "run", "--model", model, "--prompt-tokens", "1,70,80,90", "-n", "12",
                                 "--temperature", "0", "--print-token-ids", "--logits-out", logits_path)
            ids.append(last_line(out) if code == 0 else "exit %d: %s" % (code, err))
            logits.append(open(logits_path, "rb").read() if code == 0 else b"")
        check(f"{source} and its GGUF generate the same ids", ids[0] == ids[1], repr(ids))
        check(f"{source} and its GGUF give bit-identical prompt logits", logits[0] == logits[1] and logits[0],
              f"{len(logits[0])} vs {len(logits[1])} bytes")

    # Quantizing conversion: the converted model still runs and stays close (same first token).
    q8 = os.path.join(tmp, "tiny-llama-q8_0.gguf")
    code, _, err = run(anvil, "convert", "--model", "dummy:tiny-llama", "--out", q8, "--type", "q8_0")
    check("convert --type q8_0", code == 0, err)
    code, out, err = run(anvil, "info", "--model", q8, "--json")
    check("info reports Q8_0 weights", code == 0 and '"Q8_0"' in out, out + err)

    # bench model: llama-bench's pp/tg as JSON.
    code, out, err = run(anvil, "bench", "model", "--model", "dummy:tiny-llama", "-p", "32", "-n", "8", "-r", "2",
                         "-d", "16", "--json")
    try:
        bench = json.loads(out)
        bench_ok = (code == 0 and bench["pp_tok_s"] > 0 and bench["tg_tok_s"] > 0 and bench["n_prompt"] == 32
                    and bench["n_depth"] == 16 and bench["kv_dtype"] == "f32")  # auto: f32 weights
    except (ValueError, KeyError):
        bench_ok = False
    check("bench model --json reports pp_tok_s and tg_tok_s", bench_ok, out + err)

    # Bad input: one clear line on stderr, exit code 1, no crash.
    garbage = os.path.join(tmp, "garbage.bin")
    with open(garbage, "wb") as f:
        f.write(b"\x07" * 100)
    bad_gguf = os.path.join(tmp, "bad.gguf")
    with open(bad_gguf, "wb") as f:
        f.write(b"GGUX" + b"\0" * 60)
    truncated = os.path.join(tmp, "truncated.gguf")
    with open(os.path.join(tmp, "dummy_tiny-llama.gguf"), "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    expect_error(anvil, "missing file", ["run", "--model", os.path.join(tmp, "nope.gguf"), "--prompt-tokens", "1"],
                 "no such file")
    expect_error(anvil, "unknown preset", ["run", "--model", "dummy:gpt-5", "--prompt-tokens", "1"], "unknown preset")
    expect_error(anvil, "unknown --quantization scheme",
                 ["run", "--model", "dummy:tiny-llama", "--prompt-tokens", "1", "-q", "int3"], "unknown scheme 'int3'")
    expect_error(anvil, "--quantization group that does not divide the rows",
                 ["run", "--model", "dummy:tiny-llama", "--prompt-tokens", "1", "-q", "w4a16-rtn:g128"], "--group 32")
    expect_error(anvil, "serve --quantization checked before listening",
                 ["serve", "--model", "dummy:tiny-llama", "--port", "0", "-q", "fp9"], "unknown scheme 'fp9'")

    # Online quantization (vLLM's --quantization): the linear layers are quantized at load.
    for scheme in ("fp8", "w8a8", "w4a16-rtn:g32,asym", "q8_0"):
        code, out, err = run(anvil, "run", "--model", "dummy:tiny-llama", "--prompt-tokens", "1,2,3", "-n", "4",
                             "--temperature", "0", "--print-token-ids", "-q", scheme)
        ids = last_line(out).split(",")
        check(f"run -q {scheme}: quantizes at load and generates", code == 0 and len(ids) == 4
              and "anvil: quantized 14 linear weights" in err, f"exit {code}, out {out!r}, stderr {err[-400:]!r}")
    expect_error(anvil, "garbage file", ["run", "--model", garbage, "--prompt-tokens", "1"], garbage)
    expect_error(anvil, "wrong magic", ["run", "--model", bad_gguf, "--prompt-tokens", "1"], "bad.gguf")
    expect_error(anvil, "truncated gguf", ["run", "--model", truncated, "--prompt-tokens", "1"], "truncated.gguf")
    expect_error(anvil, "token id out of range", ["run", "--model", stories, "--prompt-tokens", "1,512"], "512")
    expect_error(anvil, "malformed token ids", ["run", "--model", stories, "--prompt-tokens", "1,x"], "'x'")
    expect_error(anvil, "text prompt without tokenizer", ["run", "--model", stories, "--prompt", "hi"],
                 "--prompt-tokens")
    long_prompt = ",".join(["5"] * 600)
    expect_error(anvil, "prompt longer than context", ["run", "--model", stories, "--prompt-tokens", long_prompt],
                 "context length")
    expect_error(anvil, "too big for memory", ["run", "--model", "dummy:llama-3.1-405b", "--prompt-tokens", "1"],
                 "GiB")
    expect_error(anvil, "convert to unknown type", ["convert", "--model", stories, "--out",
                                                    os.path.join(tmp, "x.gguf"), "--type", "q5_1"], "q5_1")
    expect_error(anvil, "negative temperature", ["run", "--model", stories, "--prompt-tokens", "1",
                                                 "--temperature", "-1"], "temperature")

    # Context is never overflowed: generation ends with finish "length" at the context limit.
    code, out, err = run(anvil, "run", "--model", stories, "--prompt-tokens", ",".join(["5"] * 500), "-n", "50",
                         "--temperature", "0", "--print-token-ids")
    check("generation stops at the context length", code == 0 and len(last_line(out).split(",")) == 12, err)

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
