#!/usr/bin/env python3
"""End-to-end tests of `anvil bench quant`: the table, JSON report and plots for dummy:tiny-llama
(random weights: KLD and top-1 only), the real stories260K model on text sampled from itself (PPL
and ΔPPL meaningful), the calibrated schemes, Ctrl-C, and clear errors for bad input.

Run by CTest as: test_bench_quant.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import unittest

ARGS = None
TINY = "dummy:tiny-llama"


def run(*args, timeout=120):
    proc = subprocess.run([ARGS.anvil, "bench", "quant", *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def data(*parts):
    return os.path.join(ARGS.shared_data, *parts)


def tmp(name):
    return os.path.join(ARGS.tmp, name)


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def sampled_stories_tokens():
    """Token ids sampled from stories260K itself (temperature 1, one sequence per seed, each
    starting at BOS), so its perplexity is in-distribution and meaningful."""
    path = tmp("stories_sampled.ids")
    if os.path.exists(path):
        return path
    ids = []
    for seed in range(1, 9):
        proc = subprocess.run([ARGS.anvil, "run", "--model", data("models", "stories260K.bin"), "--prompt-tokens", "1",
                               "-n", "255", "--temperature", "1", "--seed", str(seed), "--ignore-eos",
                               "--print-token-ids", "--threads", "2"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        ids += [1] + [int(t) for t in proc.stdout.strip().split(",")]
    with open(path, "w") as f:
        f.write(" ".join(map(str, ids)))
    return path


class BenchQuantTest(unittest.TestCase):
    def expect_error(self, args, must_contain):
        code, _, err = run(*args)
        lines = [l for l in err.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("anvil: error:")]
        self.assertEqual(code, 1, err[-600:])
        self.assertEqual(len(errors), 1, err[-600:])
        self.assertEqual(lines[-1], errors[0])
        self.assertIn(must_contain, errors[0])

    def test_tiny_llama_report_and_plots(self):
        report, plots = tmp("tiny.json"), tmp("tiny-plots")
        code, out, err = run("--model", TINY, "--schemes", "q8_0,fp8,w8a8,w4a16-rtn", "--file",
                             data("text", "wikitext-2-test.txt"), "--ctx", "64", "--chunks", "2", "-p", "16", "-n", "8",
                             "-r", "1", "--threads", "2", "--output-json", report, "--plot", plots)
        self.assertEqual(code, 0, err[-1500:])
        with open(report) as f:
            r = json.load(f)
        self.assertEqual(r["bench"], "quant")
        self.assertEqual(r["schema_version"], 1)
        self.assertEqual(r["model"]["spec"], TINY)
        self.assertEqual(r["config"]["schemes"], ["q8_0", "fp8", "w8a8", "w4a16-rtn"])
        self.assertEqual((r["config"]["ctx"], r["config"]["n_chunks"], r["config"]["n_tokens_scored"]), (64, 2, 62))
        self.assertFalse(r["config"]["ppl_meaningful"])
        self.assertFalse(r["interrupted"])
        results = {x["scheme"]: x for x in r["results"]}
        self.assertEqual(list(results), ["q8_0", "fp8", "w8a8", "w4a16-rtn"])
        for name, x in results.items():
            with self.subTest(scheme=name):
                self.assertTrue(finite(x["kld_mean"]) and x["kld_mean"] >= 0, x["kld_mean"])
                self.assertTrue(finite(x["kld_p99"]) and x["kld_p99"] >= x["kld_mean"] * 0, x["kld_p99"])
                self.assertTrue(0 <= x["top1_agreement"] <= 1, x["top1_agreement"])
                self.assertIsNone(x["ppl"])  # random weights: not meaningful
                self.assertTrue(finite(x["kl_divergence"]["ppl"]))  # ... but measured
                self.assertTrue(x["pp_tok_s"] > 0 and x["tg_tok_s"] > 0)
                self.assertAlmostEqual(x["tg_gb_s"], x["tg_tok_s"] * x["decode_bytes_per_token"] / 1e9, delta=1e-9)
                self.assertEqual(x["weight_bytes"], round(x["weight_gib"] * 2**30))
        base = r["base"]
        self.assertEqual(base["kld_mean"], 0)
        self.assertEqual(base["top1_agreement"], 1)
        bits = {name: x["bits_per_weight"] for name, x in results.items()}
        self.assertAlmostEqual(bits["q8_0"], 8.5)
        self.assertLess(bits["w4a16-rtn"], bits["w8a8"])
        self.assertAlmostEqual(bits["w8a8"], bits["fp8"], delta=0.01)
        self.assertLess(bits["fp8"], base["bits_per_weight"])
        self.assertEqual(base["bits_per_weight"], 32)
        # w4a16-rtn's default group 128 does not divide tiny-llama's rows: smaller groups, noted.
        self.assertEqual(results["w4a16-rtn"]["weight_types"], {"I4 g32": 2, "I4 g64": 12})
        self.assertTrue(any("use group 64" in n for n in r["notes"]), r["notes"])
        self.assertTrue(any("random weights" in n for n in r["notes"]), r["notes"])
        # The table: a header and one row per scheme plus the base, PPL "n/a".
        rows = [l for l in out.splitlines() if l.startswith("| ")]
        self.assertEqual(len(rows), 6, out)
        self.assertTrue(rows[0].startswith("| scheme | bits/weight | weight GiB | PPL | ΔPPL % | KLD mean"), rows[0])
        self.assertTrue(rows[1].startswith("| base (F32) | 32.00 |"), rows[1])
        self.assertIn("| n/a | n/a |", rows[2])
        for ext in ("svg", "png"):
            path = os.path.join(plots, "quant." + ext)
            self.assertTrue(os.path.getsize(path) > 1000, path)
        with open(os.path.join(plots, "quant.svg")) as f:
            svg = f.read()
        for name in results:
            self.assertIn(f'data-name="{name}"', svg)
        self.assertIn("KL divergence from the base", svg)
        self.assertIn("Decode speed", svg)
        self.assertIn("[5/5] w4a16-rtn: mean KLD", err)  # one progress line per phase

    def test_stories260k_sampled_text(self):
        report = tmp("stories.json")
        code, out, err = run("--model", data("models", "stories260K.bin"), "--schemes", "q8_0,w4a16-rtn",
                             "--tokens-file", sampled_stories_tokens(), "--ctx", "128", "-p", "32", "-n", "16", "-r",
                             "1", "--threads", "2", "--output-json", report)
        self.assertEqual(code, 0, err[-1500:])
        with open(report) as f:
            r = json.load(f)
        self.assertTrue(r["config"]["ppl_meaningful"])
        self.assertEqual(r["config"]["n_chunks"], 2048 // 128)
        base = r["base"]
        self.assertTrue(finite(base["ppl"]) and base["ppl"] > 1, base["ppl"])
        self.assertEqual(base["delta_ppl_percent"], 0)
        for x in r["results"]:
            with self.subTest(scheme=x["scheme"]):
                self.assertTrue(finite(x["ppl"]) and x["ppl"] > 1, x["ppl"])
                self.assertTrue(finite(x["delta_ppl_percent"]), x["delta_ppl_percent"])
                self.assertAlmostEqual(x["delta_ppl_percent"], 100 * (x["ppl"] / base["ppl"] - 1), delta=1e-6)
                self.assertTrue(finite(x["delta_ppl_percent_stderr"]) and x["delta_ppl_percent_stderr"] >= 0)
                self.assertAlmostEqual(x["kl_divergence"]["ppl_base"], base["ppl"], delta=1e-9 * base["ppl"])
                self.assertGreater(x["kld_mean"], 0)
                # ffn_down's rows of 172 fit no block or group: kept F32, as llama.cpp falls back.
                self.assertEqual(x["weight_types"].get("F32"), 5, x["weight_types"])
        q8 = r["results"][0]
        self.assertLess(q8["kld_mean"], r["results"][1]["kld_mean"])  # 8 bits move the model less than 4
        rows = [l for l in out.splitlines() if l.startswith("| q8_0 ")]
        self.assertEqual(len(rows), 1, out)
        self.assertNotIn("n/a", rows[0])

    def test_calibrated_schemes(self):
        report = tmp("calibrated.json")
        code, out, err = run("--model", TINY, "--schemes", "w4a16-rtn:g32,w4a16-gptq:g32,w8a8-smoothquant", "--calib",
                             data("text", "wikitext-2-valid.txt"), "--calib-samples", "4", "--calib-seq-len", "64",
                             "--file", data("text", "wikitext-2-test.txt"), "--ctx", "64", "--chunks", "4", "-p", "0",
                             "-n", "0", "--threads", "2", "--output-json", report)
        self.assertEqual(code, 0, err[-1500:])
        with open(report) as f:
            r = json.load(f)
        self.assertEqual([x["scheme"] for x in r["results"]], ["w4a16-rtn:g32", "w4a16-gptq:g32", "w8a8-smoothquant"])
        for x in r["results"]:
            self.assertTrue(finite(x["kld_mean"]) and x["kld_mean"] >= 0)
            self.assertIsNone(x["tg_tok_s"])  # -p 0 -n 0: no speed phase
        self.assertTrue(any("calibrated on 4 samples x 64 tokens" in n for n in r["notes"]), r["notes"])

    def test_ctrl_c_reports_what_is_done(self):
        report = tmp("interrupted.json")
        proc = subprocess.Popen([ARGS.anvil, "bench", "quant", "--model", TINY, "--schemes", "q8_0,q4_0,fp8", "--file",
                                 data("text", "wikitext-2-test.txt"), "--ctx", "64", "--chunks", "3000", "-p", "0",
                                 "-n", "0", "--threads", "2", "--output-json", report],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err = ""
        for line in proc.stderr:  # the run starts (and Ctrl-C is handled) after this line
            err += line
            if "schemes + base" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
        err += rest
        self.assertEqual(proc.returncode, 130, err[-800:])
        self.assertIn("interrupted", out)
        self.assertIn("| base (F32) |", out)
        with open(report) as f:
            r = json.load(f)
        self.assertTrue(r["interrupted"])
        self.assertLess(len(r["results"]), 3)

    def test_bad_input(self):
        wiki = data("text", "wikitext-2-test.txt")
        common = ["--file", wiki, "--ctx", "64", "--chunks", "2"]
        self.expect_error(["--model", TINY, "--schemes", "q8_0,q3_k", *common], "unknown scheme 'q3_k'")
        self.expect_error(["--model", TINY, "--schemes", "w4a16-gptq", *common],
                          "w4a16-gptq needs calibration data: give --calib FILE")
        self.expect_error(["--model", TINY, "--schemes", "w8a8-smoothquant", *common], "needs calibration data")
        self.expect_error(["--model", TINY, "--schemes", "q8_0", "--calib", wiki, *common],
                          "none of --schemes takes calibration data")
        self.expect_error(["--model", TINY, "--schemes", "q8_0", "--group", "32", *common], "--group applies to")
        self.expect_error(["--model", TINY, "--schemes", "q8_0,q8_0", *common], "listed twice")
        self.expect_error(["--model", TINY, "--schemes", "q8_0"], "give the evaluation text")
        self.expect_error(["--model", TINY, "--schemes", "q8_0", "--file", tmp("missing.txt")], "cannot open")
        self.expect_error(["--model", TINY, "--schemes", "q8_0", "--file", wiki, "--ctx", "512"],
                          "larger than the model's context length of 256")
        self.expect_error(["--model", data("models", "stories260K.bin"), "--schemes", "q8_0", *common],
                          "carries no tokenizer; give token ids with --tokens-file")
        self.expect_error(["--model", data("models", "stories260K.bin"), "--schemes", "w4a16-gptq:g32", "--calib-tokens",
                           sampled_stories_tokens(), "--tokens-file", sampled_stories_tokens(), "--ctx", "64"],
                          "without fallbacks")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.tmp, exist_ok=True)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
