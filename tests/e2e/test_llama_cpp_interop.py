#!/usr/bin/env python3
"""GGUF files written by `anvil convert` load and run in llama.cpp, with the same greedy tokens as anvil.

Run by CTest as: test_llama_cpp_interop.py --anvil BIN --shared-data DIR --tmp DIR

llama.cpp comes from npm: the pinned node-llama-cpp and its prebuilt CPU binaries (no llama.cpp CLI ships
there; llama_cpp_greedy.mjs beside this file drives the library through node-llama-cpp's API). They are
installed once into TMP/../npm-cache/ with scripts disabled, so nothing is downloaded or compiled at run
time. If node, npm or the registry is unavailable the test fails; ANVIL_SKIP_NPM_TESTS=1 skips it.

For every converted model:
  * llama.cpp loads it (checkTensors on) and decodes greedily from the same prompt ids as anvil;
  * both score the same sequence (prompt + anvil's tokens): their logits must agree within a tolerance for
    the weight type (llama.cpp rounds activations to F16/BF16/Q8 in its dot products, anvil does not);
  * F32: identical greedy ids. Other types: ids may part only where the two top logits are a near tie.

Not covered: stories260K (a llama2.c checkpoint, no vocabulary; anvil writes tokenizer.ggml.model =
"no_vocab"). libllama loads and runs such a file, but node-llama-cpp tokenizes a test string right after
loading and llama.cpp aborts (GGML_ASSERT "Tokenizer not initialized") for a no_vocab model.
"""
import argparse
import array
import json
import os
import platform
import shutil
import subprocess
import sys
import time

NODE_LLAMA_CPP_VERSION = "3.22.1"
PROMPT = [1, 70, 80, 90]
N_PREDICT = 16

# Largest |logit difference| allowed, anvil vs llama.cpp, on the same tokens; RMS bound for quantized types.
# Observed (small-llama, tiny-*): F32 1e-5; F16 0.007; BF16 0.07; Q8_0 0.24 (rms 0.05); Q4_0/Q4_K/Q6_K
# 0.19-0.27 (rms 0.04-0.06), against 0.5 rms of Q4 weight error: a block decoded differently fails.
MAX_DIFF = {"f32": 1e-3, "f16": 0.05, "bf16": 0.25, "q8_0": 0.6, "q4_0": 0.6, "q4_k": 0.6, "q6_k": 0.6}
RMS_DIFF = {"f32": 1e-4, "f16": 0.01, "bf16": 0.05, "q8_0": 0.12, "q4_0": 0.12, "q4_k": 0.12, "q6_k": 0.12}

# (preset, types). tiny-* rows of 64 are too short for the 256-element K-quant blocks.
MODELS = [
    ("tiny-llama", ["f32", "f16", "bf16", "q8_0", "q4_0"]),
    ("tiny-qwen2", ["f32", "f16", "q8_0"]),
    ("tiny-llama3", ["f32", "f16", "q8_0"]),
    ("tiny-mistral", ["f32", "f16", "q8_0"]),
    ("small-llama", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"]),
]
# llama.cpp's "llama" architecture ignores llama.attention.sliding_window (Mistral v0.1 runs with full
# attention there), so compare only positions inside the window.
SLIDING_WINDOW = {"tiny-mistral": 16}

PREBUILT = {("linux", "x86_64"): "linux-x64", ("linux", "amd64"): "linux-x64", ("linux", "aarch64"): "linux-arm64",
            ("darwin", "arm64"): "mac-arm64-metal", ("darwin", "x86_64"): "mac-x64"}

failures = []


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail), flush=True)
    if not condition:
        failures.append(name)


def install_llama_cpp(cache_root):
    """node-llama-cpp and its prebuilt binary in cache_root/<pin>/node_modules; (dir, None) or (None, error)."""
    key = (platform.system().lower(), platform.machine().lower())
    if key not in PREBUILT:
        return None, f"no prebuilt node-llama-cpp binary for {key[0]}/{key[1]}"
    packages = {"node-llama-cpp": NODE_LLAMA_CPP_VERSION, f"@node-llama-cpp/{PREBUILT[key]}": NODE_LLAMA_CPP_VERSION}
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return None, f"`{tool}` not found on PATH (needed to install llama.cpp from npm)"
    target = os.path.join(cache_root, f"node-llama-cpp-{NODE_LLAMA_CPP_VERSION}-{PREBUILT[key]}")
    marker = os.path.join(target, ".installed")
    if os.path.exists(marker):
        return target, None
    staging = target + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(staging)
    with open(os.path.join(staging, "package.json"), "w") as f:
        json.dump({"private": True, "dependencies": packages}, f)
    env = dict(os.environ, NODE_LLAMA_CPP_SKIP_DOWNLOAD="true", NODE_LLAMA_CPP_POSTINSTALL="skip")
    # --ignore-scripts: no postinstall (it would download or build llama.cpp); --omit=optional: only the
    # one prebuilt package named above, not the CUDA/Vulkan ones for every platform (700 MB).
    command = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=optional",
               "--no-package-lock", "--loglevel=error"]
    start = time.time()
    try:
        proc = subprocess.run(command, cwd=staging, env=env, capture_output=True, text=True, timeout=480)
    except subprocess.TimeoutExpired:
        return None, "npm install timed out after 480 s (registry unreachable?)"
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return None, (f"`{' '.join(command)}` failed (exit {proc.returncode}; registry unreachable?): "
                      + " | ".join(lines[:6])[:800])
    for name in packages:
        if not os.path.exists(os.path.join(staging, "node_modules", name, "package.json")):
            return None, f"npm install finished but {name} is missing"
    open(os.path.join(staging, ".installed"), "w").write(json.dumps(packages) + "\n")
    os.replace(staging, target)
    print(f"# installed {', '.join(f'{k}@{v}' for k, v in packages.items())} in {time.time() - start:.0f} s "
          f"into {target}", flush=True)
    return target, None


def run_anvil(anvil, *args):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def load_floats(path):
    values = array.array("f")
    with open(path, "rb") as f:
        values.frombytes(f.read())
    if sys.byteorder != "little":
        values.byteswap()
    return values


def first_divergence(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def node_major_version():
    """The installed Node.js major version, or None when node is missing or unreadable."""
    if shutil.which("node") is None:
        return None
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    if os.environ.get("ANVIL_SKIP_NPM_TESTS") == "1":
        print("skip llama.cpp interop: ANVIL_SKIP_NPM_TESTS=1")
        return 0
    # node-llama-cpp needs Node.js >= 20; Debian 12's own nodejs is 18. That is a missing
    # prerequisite of this machine, not a fault of anvil: say so and skip.
    node_major = node_major_version()
    if node_major is not None and node_major < 20:
        print(f"skip llama.cpp interop: node-llama-cpp {NODE_LLAMA_CPP_VERSION} needs Node.js >= 20, "
              f"this machine has {node_major}")
        return 0
    anvil, tmp = os.path.abspath(args.anvil), os.path.abspath(args.tmp)
    os.makedirs(tmp, exist_ok=True)

    modules, error = install_llama_cpp(os.path.join(os.path.dirname(tmp), "npm-cache"))
    check(f"install llama.cpp (node-llama-cpp {NODE_LLAMA_CPP_VERSION}, prebuilt CPU binary) from npm",
          modules is not None, str(error))
    if modules is None:
        return 1

    # Convert every model; anvil's greedy ids and its logits on prompt + those ids (teacher forcing).
    cases = []
    for preset, types in MODELS:
        for dtype in types:
            name = f"{preset}.{dtype}"
            gguf = os.path.join(tmp, name + ".gguf")
            convert = ["convert", "--model", "dummy:" + preset, "--out", gguf]
            if dtype != "f32":
                convert += ["--type", dtype]
            code, _, err = run_anvil(anvil, *convert)
            if code != 0 or not os.path.exists(gguf):
                check(f"convert {name}", False, err[-300:])
                continue
            common = ["--model", gguf, "--temperature", "0", "--print-token-ids", "--ignore-eos"]
            code, out, err = run_anvil(anvil, "run", *common, "--prompt-tokens", ",".join(map(str, PROMPT)),
                                       "-n", str(N_PREDICT))
            lines = [l for l in out.splitlines() if l.strip()]
            if code != 0 or not lines:
                check(f"anvil runs {name}", False, f"exit {code}: {err[-300:]}")
                continue
            ids = [int(x) for x in lines[-1].split(",")]
            scored = PROMPT + ids[:-1]
            anvil_logits = os.path.join(tmp, name + ".anvil-logits.bin")
            code, _, err = run_anvil(anvil, "run", *common, "--prompt-tokens", ",".join(map(str, scored)),
                                     "-n", "0", "--logits-out", anvil_logits)
            if code != 0:
                check(f"anvil scores {name}", False, f"exit {code}: {err[-300:]}")
                continue
            cases.append({"name": name, "preset": preset, "dtype": dtype, "gguf": gguf, "ids": ids, "scored": scored,
                          "anvil_logits": anvil_logits, "llama_logits": os.path.join(tmp, name + ".llama-logits.bin")})

    # One node process runs llama.cpp on all of them.
    jobs_file = os.path.join(tmp, "jobs.json")
    with open(jobs_file, "w") as f:
        json.dump({"threads": 1, "jobs": [{"model": c["gguf"], "prompt": PROMPT, "n": N_PREDICT, "score": c["scored"],
                                           "logitsOut": c["llama_logits"]} for c in cases]}, f)
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_cpp_greedy.mjs")
    env = dict(os.environ, NODE_LLAMA_CPP_SKIP_DOWNLOAD="true", NODE_LLAMA_CPP_GPU="false")
    start = time.time()
    try:
        proc = subprocess.run(["node", helper, "--modules", modules, jobs_file], capture_output=True, text=True,
                              env=env, timeout=300)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, code = (e.stdout or b"").decode(), (e.stderr or b"").decode(), "timeout"
    results = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["model"]] = r
    banner = next((l for l in stderr.splitlines() if l.startswith("llama.cpp:")), "llama.cpp: (no banner)")
    print(f"# {banner}; {len(cases)} models in {time.time() - start:.1f} s", flush=True)
    check("llama.cpp helper exits cleanly", code == 0, f"exit {code}, stderr tail: {stderr[-1500:]!r}")

    for c in cases:
        name, dtype = c["name"], c["dtype"]
        r = results.get(c["gguf"])
        if r is None:
            check(f"llama.cpp loads {name}", False, "no result (llama.cpp aborted or hung on this file?)")
            continue
        check(f"llama.cpp loads {name}", r["ok"], f"{r.get('error')}; log: {' | '.join(r.get('log', []))[-1500:]}")
        if not r["ok"]:
            continue
        window = SLIDING_WINDOW.get(c["preset"])
        # ids[k] comes from the logits at position len(PROMPT) - 1 + k.
        n_ids = N_PREDICT if window is None else min(N_PREDICT, window - len(PROMPT) + 1)
        n_rows = len(c["scored"]) if window is None else min(len(c["scored"]), window)
        anvil_ids, llama_ids = c["ids"][:n_ids], r["ids"][:n_ids]
        la, lb = load_floats(c["anvil_logits"]), load_floats(c["llama_logits"])
        if len(la) != len(lb) or len(la) % len(c["scored"]):
            check(f"{name}: logits shapes", False, f"anvil {len(la)} floats, llama.cpp {len(lb)}")
            continue
        vocab = len(la) // len(c["scored"])
        diffs = [abs(x - y) for x, y in zip(la[:n_rows * vocab], lb[:n_rows * vocab])]
        max_diff = max(diffs)
        rms = (sum(d * d for d in diffs) / len(diffs)) ** 0.5
        check(f"{name}: logits agree (max |diff| {max_diff:.2g} <= {MAX_DIFF[dtype]}, rms {rms:.2g} <= "
              f"{RMS_DIFF[dtype]}, {n_rows} positions)", max_diff <= MAX_DIFF[dtype] and rms <= RMS_DIFF[dtype],
              f"max {max_diff}, rms {rms}")
        k = first_divergence(anvil_ids, llama_ids)
        detail = f"anvil {anvil_ids}, llama.cpp {llama_ids}"
        if dtype == "f32":
            check(f"{name}: same {n_ids} greedy ids", k is None, f"first divergence at {k}: {detail}")
            continue
        if k is None:
            check(f"{name}: same {n_ids} greedy ids", True)
            continue
        # Where they part, llama.cpp (scoring anvil's tokens) must see anvil's pick as a near tie with its own.
        row = lb[(len(PROMPT) - 1 + k) * vocab:(len(PROMPT) + k) * vocab]
        gap = row[llama_ids[k]] - row[anvil_ids[k]]
        tie = 2 * MAX_DIFF[dtype]
        check(f"{name}: greedy ids agree until a near tie (first divergence at {k}, llama.cpp logit gap {gap:.3f})",
              abs(gap) <= tie, f"|gap| {gap} > {tie} at {k}: {detail}")

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
