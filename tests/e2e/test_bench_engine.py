#!/usr/bin/env python3
"""End-to-end tests of `anvil bench latency`, `bench throughput` and `bench compare` on dummy:tiny-llama:
JSON reports (fields from docs/BENCHMARKS.md), the SVG and PNG plots, comparison, Ctrl-C, and bad input.

Run by CTest as: test_bench_engine.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

failures = []
MODEL = ["--model", "dummy:tiny-llama", "--threads", "2"]
LATENCY_KEYS = ["batch_size", "avg_latency_s", "std_latency_s", "p50_latency_s", "p90_latency_s", "p99_latency_s",
                "output_tok_s", "ttft_ms_mean", "tpot_ms_mean"]
THROUGHPUT_KEYS = ["scenario", "input_len", "output_len", "num_prompts", "completed", "requests_per_s", "total_tok_s",
                   "output_tok_s", "preemptions", "prefix_hit_rate"]


def run(anvil, *args, timeout=120):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))
    if not condition:
        failures.append(name)


def expect_error(anvil, name, args, must_contain):
    code, out, err = run(anvil, *args)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("anvil: error:")]
    ok = code == 1 and len(errors) == 1 and lines[-1] == errors[0] and must_contain in errors[0]
    check("bad input: " + name, ok, f"exit {code}, stderr {err!r}")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def check_head(name, report, bench, version):
    check(f"{name}: bench is {bench}", report.get("bench") == bench, str(report.get("bench")))
    check(f"{name}: anvil_version matches --version", report.get("anvil_version") == version,
          f"{report.get('anvil_version')!r} vs {version!r}")
    check(f"{name}: date is ISO-8601 UTC",
          re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(report.get("date"))) is not None, str(report.get("date")))
    machine = report.get("machine", {})
    check(f"{name}: machine info", bool(machine.get("cpu_model")) and machine.get("threads") == 2
          and machine.get("isa") in ("scalar", "avx2", "avx512") and "limits" in machine, str(machine)[:300])
    model = report.get("model", {})
    check(f"{name}: model info", model.get("spec") == "dummy:tiny-llama" and model.get("context_length") == 256,
          str(model)[:300])
    check(f"{name}: engine config recorded", "max_num_seqs" in report.get("config", {}).get("engine", {}),
          str(report.get("config"))[:300])


def finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    anvil, tmp = args.anvil, args.tmp
    os.makedirs(tmp, exist_ok=True)
    version = run(anvil, "--version")[1].strip().replace("anvil ", "")

    # ---- latency: table, JSON, plot into a directory ----
    lat_a, lat_b = os.path.join(tmp, "latency_a.json"), os.path.join(tmp, "latency_b.json")
    plot_dir = os.path.join(tmp, "plots")
    tiny = ["--input-len", "8", "--output-len", "4", "--num-iters-warmup", "1", "--num-iters", "2"]
    code, out, err = run(anvil, "bench", "latency", *MODEL, *tiny, "--batch-sizes", "1,2,4",
                         "--output-json", lat_a, "--plot", plot_dir)
    check("latency runs", code == 0, f"exit {code}, stderr {err[-500:]!r}")
    check("latency prints a Markdown table", "| batch | avg latency (s) |" in out and "\n| 4 | " in out, out)
    check("latency reports progress per batch size on stderr", "batch size 4:" in err, err)
    report = load_json(lat_a)
    check_head("latency", report, "latency", version)
    results = report.get("results", [])
    check("latency: one result per batch size", [r.get("batch_size") for r in results] == [1, 2, 4], str(results)[:300])
    check("latency: every documented field", all(all(k in r for k in LATENCY_KEYS) for r in results),
          str(results)[:500])
    check("latency: figures are positive and ordered",
          all(finite_positive(r["avg_latency_s"]) and finite_positive(r["output_tok_s"]) and
              finite_positive(r["ttft_ms_mean"]) and finite_positive(r["tpot_ms_mean"]) and
              r["p50_latency_s"] <= r["p90_latency_s"] <= r["p99_latency_s"] and len(r.get("latencies_s", [])) == 2
              for r in results), str(results)[:500])
    check("latency: output tok/s = B * output_len / avg latency",
          all(abs(r["output_tok_s"] - r["batch_size"] * 4 / r["avg_latency_s"]) < 1e-6 * r["output_tok_s"]
              for r in results), str(results)[:300])
    check("latency: config", report.get("config", {}).get("input_len") == 8 and
          report.get("config", {}).get("batch_sizes") == [1, 2, 4] and report.get("interrupted") is False,
          str(report.get("config")))
    svg_path = os.path.join(plot_dir, "latency.svg")
    check("latency: --plot DIR writes DIR/latency.svg and names it", os.path.isfile(svg_path) and svg_path in out, out)
    png_path = os.path.join(plot_dir, "latency.png")
    with open(png_path, "rb") if os.path.isfile(png_path) else open(os.devnull, "rb") as f:
        png_head = f.read(8)
    check("latency: --plot DIR also writes DIR/latency.png (a PNG) and names it",
          png_head == b"\x89PNG\r\n\x1a\n" and png_path in out, out)
    try:
        root = ET.parse(svg_path).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        series = [g for g in root.iter(ns + "g") if g.get("class") == "series"]
        names = [g.get("data-name") for g in series]
        check("latency: the SVG parses and has its series", root.tag == ns + "svg" and
              names == ["avg", "p50", "p90", "p99", "output tok/s", "TTFT mean", "TPOT mean"], str(names))
        points = [len(g.find(ns + "polyline").get("points").split()) for g in series]
        check("latency: each series has a point per batch size", points == [3] * 7, str(points))
    except (ET.ParseError, OSError, AttributeError) as e:
        check("latency: the SVG parses", False, str(e))

    # Second report (with a price, plot to a file name) for compare.
    svg_file = os.path.join(tmp, "lat.svg")
    code, out, err = run(anvil, "bench", "latency", *MODEL, *tiny, "--batch-sizes", "2,4,8",
                         "--price-per-hour", "1.55", "--output-json", lat_b, "--plot", svg_file)
    check("latency with a price runs", code == 0 and os.path.isfile(svg_file), f"exit {code}, stderr {err[-500:]!r}")
    rb = load_json(lat_b).get("results", [])
    check("latency: $/1M output tokens from --price-per-hour",
          len(rb) == 3 and all(abs(r["usd_per_million_output_tokens"] - 1.55 / (r["output_tok_s"] * 3600) * 1e6)
                               < 1e-6 * r["usd_per_million_output_tokens"] for r in rb), str(rb)[:300])
    check("latency: price column in the table", "$/1M output tokens" in out, out)

    # ---- compare ----
    code, out, err = run(anvil, "bench", "compare", lat_a, lat_b)
    check("compare runs", code == 0, f"exit {code}, stderr {err!r}")
    check("compare pairs the shared batch sizes only",
          "batch_size=2" in out and "batch_size=4" in out and "batch_size=1 " not in out and
          "batch_size=8" not in out and "| avg_latency_s |" in out and "B/A" in out, out)

    # ---- throughput: explicit lengths, a scenario, a dataset ----
    thr = os.path.join(tmp, "throughput.json")
    code, out, err = run(anvil, "bench", "throughput", *MODEL, "--input-len", "8", "--output-len", "4",
                         "--num-prompts", "6", "--max-num-seqs", "4", "--output-json", thr)
    check("throughput runs", code == 0, f"exit {code}, stderr {err[-500:]!r}")
    check("throughput prints a Markdown table", "| scenario | input/output |" in out and "| custom | 8/4 | 6 |" in out, out)
    report = load_json(thr)
    check_head("throughput", report, "throughput", version)
    results = report.get("results", [])
    check("throughput: every documented field", len(results) == 1 and all(k in results[0] for k in THROUGHPUT_KEYS),
          str(results)[:500])
    if results:
        r = results[0]
        check("throughput: token accounting", r["completed"] == 6 and r["output_tokens"] == 24 and
              r["prompt_tokens"] == 48 and finite_positive(r["requests_per_s"]) and
              abs(r["total_tok_s"] - 72 / r["elapsed_s"]) < 1e-6 * r["total_tok_s"], str(r))
    check("throughput: engine options recorded", report.get("config", {}).get("engine", {}).get("max_num_seqs") == 4,
          str(report.get("config")))

    code, out, err = run(anvil, "bench", "throughput", *MODEL, "--scenario", "chat", "--num-prompts", "2",
                         "--kv-dtype", "bf16", "--no-prefix-caching")
    check("throughput --scenario chat (128/128) runs", code == 0 and "| chat | 128/128 | 2 |" in out,
          f"exit {code}, out {out!r}, stderr {err[-300:]!r}")

    dataset = os.path.join(tmp, "prompts.txt")
    with open(dataset, "w") as f:
        f.write("Once upon a time there was a little robot.\n\nThe sky was blue and the sun was warm.\n")
    thr_ds = os.path.join(tmp, "throughput_dataset.json")
    code, out, err = run(anvil, "bench", "throughput", *MODEL, "--dataset", dataset, "--output-len", "3",
                         "--num-prompts", "3", "--output-json", thr_ds)
    rd = load_json(thr_ds).get("results", [{}])[0]
    check("throughput --dataset runs", code == 0 and rd.get("scenario") == "dataset:prompts.txt" and
          rd.get("completed") == 3 and rd.get("output_tokens") == 9, f"exit {code}, {rd}, stderr {err[-300:]!r}")

    code, out, err = run(anvil, "bench", "compare", thr, thr)
    check("compare throughput reports: ratios of 1", code == 0 and "scenario=custom" in out and "1.000" in out, out)

    # ---- Ctrl-C: partial results, non-zero exit ----
    lat_int = os.path.join(tmp, "latency_interrupted.json")
    proc = subprocess.Popen([anvil, "bench", "latency", *MODEL, "--input-len", "16", "--output-len", "200",
                             "--batch-sizes", "1,128,256", "--num-iters", "5", "--output-json", lat_int],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if "batch size 1:" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    partial = load_json(lat_int)
    check("Ctrl-C: non-zero exit with partial results", proc.returncode == 130 and "interrupted" in out and
          "\n| 1 | " in out and partial.get("interrupted") is True and
          [r.get("batch_size") for r in partial.get("results", [])] == [1],
          f"exit {proc.returncode}, out {out!r}, stderr {seen + err!r}")

    # ---- bad input ----
    expect_error(anvil, "unknown scenario", ["bench", "throughput", *MODEL, "--scenario", "poetry"], "unknown scenario")
    expect_error(anvil, "scenario over the context", ["bench", "throughput", *MODEL, "--scenario", "summarization"],
                 "exceed the model's context length of 256")
    expect_error(anvil, "latency over the context",
                 ["bench", "latency", *MODEL, "--input-len", "250", "--output-len", "10"],
                 "exceed the model's context length of 256")
    expect_error(anvil, "scenario and lengths together",
                 ["bench", "throughput", *MODEL, "--scenario", "chat", "--input-len", "8"], "not both")
    expect_error(anvil, "bad batch sizes", ["bench", "latency", *MODEL, "--batch-sizes", "1,x"], "--batch-sizes")
    expect_error(anvil, "batch over --max-num-seqs",
                 ["bench", "latency", *MODEL, "--batch-sizes", "8", "--max-num-seqs", "4"], "--max-num-seqs 4")
    expect_error(anvil, "bad KV dtype", ["bench", "latency", *MODEL, "--kv-dtype", "q4_0"], "--kv-dtype")
    expect_error(anvil, "bad KV memory", ["bench", "latency", *MODEL, "--kv-cache-memory", "lots"], "--kv-cache-memory")
    expect_error(anvil, "missing dataset", ["bench", "throughput", *MODEL, "--dataset", os.path.join(tmp, "nope.txt")],
                 "nope.txt")
    expect_error(anvil, "compare different benches", ["bench", "compare", lat_a, thr], "different benchmarks")
    expect_error(anvil, "compare a file that is not a report", ["bench", "compare", lat_a, dataset], "not valid JSON")

    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all bench engine checks passed")


if __name__ == "__main__":
    main()
