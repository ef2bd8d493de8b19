#!/usr/bin/env python3
"""End-to-end tests of `anvil bench kernels`: tiny shapes as JSON, CSV and Markdown, and bad input.

Machine limits come from a cache file written here (ANVIL_CACHE_DIR in the tmp directory), so
nothing is measured and the shares can be checked against known denominators.

Run by CTest as: test_bench_kernels.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys

failures = []

LIMITS = {"read_bandwidth_gbs": 10.0, "f32": 100.0, "bf16": 200.0, "int8": 400.0}
TINY = ["--shapes", "64x256,32x512", "--tokens", "1,4,16",
        "--providers", "gemv,reference", "--min-seconds", "0", "--working-set-mib", "1", "--threads", "2"]


def run(anvil, env, *args, timeout=300):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    return proc.returncode, proc.stdout, proc.stderr


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))
    if not condition:
        failures.append(name)


def expect_error(anvil, env, name, args, must_contain):
    code, out, err = run(anvil, env, *args)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("anvil: error:")]
    ok = code == 1 and len(errors) == 1 and lines[-1] == errors[0] and must_contain in errors[0]
    check("bad input: " + name, ok, f"exit {code}, stderr {err!r}")


def write_limits_cache(anvil, cache_dir, threads):
    """A cache entry for this CPU (its model name from `anvil info`) with known limits."""
    code, out, err = run(anvil, {}, "info", "--json", "--no-measure")
    if code != 0:
        return None
    cpu_model = json.loads(out)["cpu"]["model"]
    entry = {"cpu_model": cpu_model, "threads": threads, "read_bandwidth_gbs": LIMITS["read_bandwidth_gbs"],
             "bandwidth_isa": "avx2", "bandwidth_bytes": 1 << 30,
             "peak_gflops": {k: LIMITS[k] for k in ("f32", "bf16", "int8")},
             "gemm_impl": {"f32": "test", "bf16": "test", "int8": "test"},
             "gemm_shape": "test", "measured_at": "2000-01-01T00:00:00Z"}
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, "machine_limits.json"), "w") as f:
        json.dump({"version": 1, "entries": {f"{cpu_model}|threads={threads}": entry}}, f)
    return cpu_model


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def validate_rows(rows):
    """Returns a list of problems with the JSON rows."""
    problems = []
    for r in rows:
        name = f"{r.get('kernel')} {r.get('dtype')} {r.get('shape')} t{r.get('tokens')} {r.get('provider')}"
        for key in ("median_seconds", "bytes", "flops", "value", "gb_s", "gflop_s", "limit_value"):
            if not positive(r.get(key)):
                problems.append(f"{name}: {key} = {r.get(key)!r}")
        if r.get("unit") == "GB/s":
            expected_limit = LIMITS["read_bandwidth_gbs"]
            if r.get("limit") != "read bandwidth":
                problems.append(f"{name}: limit {r.get('limit')!r}")
        elif r.get("unit") == "GFLOP/s":
            expected_limit = LIMITS.get(r.get("compute"), -1)
            if r.get("limit") != f"{r.get('compute')} peak":
                problems.append(f"{name}: limit {r.get('limit')!r}")
        else:
            problems.append(f"{name}: unit {r.get('unit')!r}")
            continue
        if r.get("limit_value") != expected_limit:
            problems.append(f"{name}: limit_value {r.get('limit_value')} != {expected_limit}")
        pct = r.get("percent_of_limit")
        if not positive(pct) or abs(pct - 100.0 * r["value"] / expected_limit) > 1e-6 * pct:
            problems.append(f"{name}: percent_of_limit {pct} vs value {r.get('value')}")
        if not isinstance(r.get("repetitions"), int) or r["repetitions"] < 1:
            problems.append(f"{name}: repetitions {r.get('repetitions')!r}")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    anvil, tmp = args.anvil, args.tmp
    os.makedirs(tmp, exist_ok=True)
    cache_dir = os.path.join(tmp, "cache")
    env = {"ANVIL_CACHE_DIR": cache_dir}
    cpu_model = write_limits_cache(anvil, cache_dir, 2)
    check("anvil info --json --no-measure names the CPU", cpu_model is not None)
    if cpu_model is None:
        return 1

    # JSON: one array; every requested row present with sane figures and shares of the cached limits.
    csv_path = os.path.join(tmp, "kernels.csv")
    code, out, err = run(anvil, env, "bench", "kernels", *TINY, "--dtypes", "f32,bf16,q8_0,q4_0,q4_k", "--json",
                         "--csv", csv_path)
    check("bench kernels --json exits 0", code == 0, f"exit {code}, stderr {err[-500:]!r}")
    try:
        rows = json.loads(out)
    except json.JSONDecodeError as e:
        rows = None
        check("bench kernels --json prints one JSON array", False, f"{e}: {out[:300]!r}")
    if isinstance(rows, list):
        check("bench kernels --json prints one JSON array", True)
        by_kernel = {}
        for r in rows:
            by_kernel.setdefault(r.get("kernel"), []).append(r)
        # gemv: 2 shapes x 5 dtypes x tokens {1, 4} (16 > 8 is gemm only); gemm: 2 providers x 3 token counts.
        check("gemv rows for every shape, dtype and decode token count", len(by_kernel.get("gemv", [])) == 2 * 5 * 2,
              f"{len(by_kernel.get('gemv', []))} rows")
        check("gemm rows for every shape, dtype, provider and token count",
              len(by_kernel.get("gemm", [])) == 2 * 5 * 2 * 3, f"{len(by_kernel.get('gemm', []))} rows")
        for kernel, count in (("rmsnorm", 1), ("rope", 1), ("softmax", 1), ("attention", 2)):
            check(f"{kernel} rows", len(by_kernel.get(kernel, [])) == count, f"{len(by_kernel.get(kernel, []))} rows")
        check("gemv is GB/s of weight bytes", all(r["unit"] == "GB/s" for r in by_kernel.get("gemv", [])))
        check("gemm is GFLOP/s", all(r["unit"] == "GFLOP/s" for r in by_kernel.get("gemm", [])))
        q4 = [r for r in by_kernel.get("gemv", []) if r["dtype"] == "Q4_0" and r["shape"] == "64x256"]
        check("gemv Q4_0 64x256 counts 64 x 8 blocks of 18 bytes", bool(q4) and q4[0]["bytes"] == 64 * 8 * 18,
              repr(q4[:1]))
        problems = validate_rows(rows)
        check("every row has positive finite figures and shares of the cached limits", not problems,
              "; ".join(problems[:5]))
        try:
            with open(csv_path, newline="") as f:
                csv_rows = list(csv.DictReader(f))
            check("--csv writes the same rows", len(csv_rows) == len(rows)
                  and all(c["kernel"] == r["kernel"] and c["shape"] == r["shape"] for c, r in zip(csv_rows, rows)),
                  f"{len(csv_rows)} csv rows vs {len(rows)}")
        except OSError as e:
            check("--csv writes the same rows", False, str(e))

    # Markdown: the header names the cached limits; one table line per row.
    code, out, err = run(anvil, env, "bench", "kernels", *TINY, "--kernels", "gemv,rmsnorm", "--dtypes", "q8_0",
                         "--isa", "avx2")
    lines = out.splitlines()
    table = [l for l in lines if l.startswith("| ") and not l.startswith("| kernel")]
    check("markdown: exit 0 and one table line per row", code == 0 and len(table) == 2 * 2 + 1,
          f"exit {code}, {len(table)} rows, stderr {err[-300:]!r}")
    check("markdown header notes the cached limits", any("cached in" in l and "10.0 GB/s" in l for l in lines),
          "\n".join(lines[:3]))
    check("--isa avx2 caps the kernels' ISA", bool(table) and all("| avx2 |" in l or "| scalar |" in l for l in table), table[:1])

    # Bad input: one "anvil: error:" line, exit 1.
    expect_error(anvil, env, "unknown dtype", ["bench", "kernels", "--dtypes", "f32,q3_k", "--min-seconds", "0"],
                 "q3_k")
    expect_error(anvil, env, "bad shape", ["bench", "kernels", "--shapes", "64by256", "--min-seconds", "0"], "64by256")
    expect_error(anvil, env, "unknown provider", ["bench", "kernels", "--providers", "cublas"], "cublas")

    print(f"{len(failures)} failure(s)" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
