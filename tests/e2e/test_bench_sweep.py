#!/usr/bin/env python3
"""End-to-end tests of `anvil bench sweep` on dummy:tiny-llama: an in-process sweep (2 KV dtypes x
2 thread counts, batch sizes 1 and 2) writes report.md / report.json / pareto.svg and names the three
recommendations; a re-run skips every run; YAML and JSON configs expand to the same runs; axes that
do not exist yet and other bad input fail with one clear error; a server-template sweep runs
`anvil serve` per configuration (skipped when `anvil bench serve` is not in this build).

Run by CTest as: test_bench_sweep.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET

ARGS = None
WORKLOAD = {"input_len": 8, "output_len": 4, "batch_sizes": [1, 2], "num_iters": 1, "num_iters_warmup": 0}


def run(*args, timeout=120):
    proc = subprocess.run([ARGS.anvil, *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def tmp_path(name):
    return os.path.join(ARGS.tmp, name)


def write(name, text):
    path = tmp_path(name)
    with open(path, "w") as f:
        f.write(text)
    return path


def fresh_dir(name):
    path = tmp_path(name)
    shutil.rmtree(path, ignore_errors=True)
    return path


IN_PROCESS_YAML = """\
name: e2e-tiny
models: [dummy:tiny-llama]
kv_dtypes: [f16, bf16]
threads: [1, 2]
workload: {input_len: 8, output_len: 4, batch_sizes: [1, 2], num_iters: 1, num_iters_warmup: 0}
instances: {small: 0.17, large: 1.55}
configs:
  - {name: small, instance: small, threads: [1]}
  - {name: large, instance: large, threads: [2]}
"""


class InProcessSweep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = write("sweep.yaml", IN_PROCESS_YAML)
        cls.out = fresh_dir("sweep-out")
        cls.code, cls.stdout, cls.stderr = run("bench", "sweep", "--config", cls.config, "--output-dir", cls.out)
        try:
            with open(os.path.join(cls.out, "report.json")) as f:
                cls.report = json.load(f)
        except (OSError, ValueError):
            cls.report = {}

    def test_completes(self):
        self.assertEqual(self.code, 0, self.stderr)
        for line in ["[1/4]", "[4/4]"]:
            self.assertIn(line, self.stderr)

    def test_writes_every_file(self):
        for name in ["report.md", "report.json", "pareto.svg", "pareto.png", "runs.jsonl"]:
            self.assertTrue(os.path.isfile(os.path.join(self.out, name)), name)
        records = [f for f in os.listdir(os.path.join(self.out, "runs")) if f.endswith(".json")]
        self.assertEqual(len(records), 4, records)
        with open(os.path.join(self.out, "runs.jsonl")) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        self.assertEqual(len(lines), 4)
        self.assertTrue(all(l["status"] == "ok" and "raw" not in l for l in lines))

    def test_report_json_has_every_run_with_points_and_cost(self):
        r = self.report
        self.assertEqual(r.get("bench"), "sweep")
        self.assertRegex(str(r.get("date")), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        runs = r.get("runs", [])
        self.assertEqual(len(runs), 4)
        self.assertEqual({(x["run"]["kv_dtype"], x["run"]["threads"]) for x in runs},
                         {("f16", 1), ("bf16", 1), ("f16", 2), ("bf16", 2)})
        for x in runs:
            self.assertEqual(x["status"], "ok")
            self.assertEqual([p["load"] for p in x["points"]], [1, 2])
            self.assertTrue(all(p["output_tok_s"] > 0 and p["per_user_tok_s"] > 0 for p in x["points"]))
            self.assertGreater(x["ms_per_token_1_user"], 0)
            # Costs are quoted at the highest measured batch by default.
            self.assertEqual(x["cost"]["load"], 2)
            expected = x["usd_per_hour"] / (x["cost"]["output_tok_s"] * 3600) * 1e6
            self.assertAlmostEqual(x["cost"]["usd_per_million_output_tokens"], expected, delta=expected * 1e-9)
            self.assertEqual(x["usd_per_hour"], 0.17 if x["group"] == "small" else 1.55)

    def test_names_the_three_recommendations(self):
        recs = self.report.get("recommendations", {})
        ids = {x["run_id"] for x in self.report.get("runs", [])}
        for key in ["most_cost_effective", "highest_throughput", "lowest_latency"]:
            self.assertIsNotNone(recs.get(key), key)
            self.assertIn(recs[key]["run_id"], ids)
        cheapest = min(self.report["runs"], key=lambda x: x["cost"]["usd_per_million_output_tokens"])
        self.assertEqual(recs["most_cost_effective"]["run_id"], cheapest["run_id"])
        fastest = max(self.report["runs"], key=lambda x: x["peak"]["output_tok_s"])
        self.assertEqual(recs["highest_throughput"]["run_id"], fastest["run_id"])
        quickest = min(self.report["runs"], key=lambda x: x["ms_per_token_1_user"])
        self.assertEqual(recs["lowest_latency"]["run_id"], quickest["run_id"])
        for heading in ["**Most cost-effective**", "**Highest throughput**", "**Lowest latency**"]:
            self.assertIn(heading, self.stdout)
        self.assertIn("per 1M output tokens", self.stdout)

    def test_pareto_front_and_plot(self):
        front = self.report.get("pareto_front", [])
        self.assertGreaterEqual(len(front), 1)
        points = [(p["output_tok_s"], p["per_user_tok_s"]) for x in self.report["runs"] for p in x["points"]]
        for f in front:  # nothing beats a front point on both axes
            beaten = [p for p in points if p[0] >= f["throughput_per_device"] and p[1] >= f["per_user_tok_s"]
                      and (p[0] > f["throughput_per_device"] or p[1] > f["per_user_tok_s"])]
            self.assertEqual(beaten, [], f)
        root = ET.parse(os.path.join(self.out, "pareto.svg")).getroot()
        names = {g.get("data-name") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-name")}
        self.assertIn("Pareto front", names)
        with open(os.path.join(self.out, "report.md")) as f:
            md = f.read()
        self.assertIn("## Pareto front", md)
        self.assertIn("$/1M output tokens", md)

    def test_rerun_skips_every_finished_run(self):
        code, out, err = run("bench", "sweep", "--config", self.config, "--output-dir", self.out)
        self.assertEqual(code, 0, err)
        self.assertIn("skipping 4 finished runs", err)
        self.assertNotIn("[1/", err)
        self.assertIn("**Most cost-effective**", out)
        with open(os.path.join(self.out, "runs.jsonl")) as f:
            self.assertEqual(len([l for l in f if l.strip()]), 4)

    def test_json_config_expands_to_the_same_runs(self):
        doc = {"name": "e2e-tiny", "models": ["dummy:tiny-llama"], "kv_dtypes": ["f16", "bf16"], "threads": [1, 2],
               "workload": WORKLOAD, "instances": {"small": 0.17, "large": 1.55},
               "configs": [{"name": "small", "instance": "small", "threads": [1]},
                           {"name": "large", "instance": "large", "threads": [2]}]}
        path = write("sweep.json", json.dumps(doc))
        code, out, err = run("bench", "sweep", "--config", path, "--output-dir", self.out, "--dry-run")
        self.assertEqual(code, 0, err)
        ids = set(re.findall(r"\| ([0-9a-f]{16}) \|", out))
        self.assertEqual(ids, {x["run_id"] for x in self.report["runs"]})
        self.assertIn("4 runs, 4 finished", out)


class BadInput(unittest.TestCase):
    def expect_error(self, yaml, must_contain):
        path = write("bad.yaml", yaml)
        code, out, err = run("bench", "sweep", "--config", path, "--output-dir", tmp_path("bad-out"))
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(code, 1, err)
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("anvil: error: "), err)
        self.assertIn(must_contain, lines[0])

    def test_tensor_parallel_is_not_available_yet(self):
        self.expect_error("models: [dummy:tiny-llama]\ntensor_parallel: [1, 2]\n", "tensor parallelism is not available yet")

    def test_gemm_tuning_does_not_exist_yet(self):
        self.expect_error("models: [dummy:tiny-llama]\ngemm_tuning: [true]\n", "no GEMM tuner yet")

    def test_unknown_key(self):
        self.expect_error("models: [dummy:tiny-llama]\nbatch_sizes: [1]\n", "unknown key 'batch_sizes'")

    def test_unknown_preset(self):
        self.expect_error("models: [dummy:no-such-model]\n", "unknown preset 'no-such-model'")

    def test_gguf_of_another_type(self):
        gguf = tmp_path("tiny-f32.gguf")
        code, _, err = run("convert", "--model", "dummy:tiny-llama", "--out", gguf)
        self.assertEqual(code, 0, err)
        self.expect_error(f"models: [{gguf}]\nweight_schemes: [q8_0]\n", "anvil convert --model")

    def test_missing_config(self):
        code, _, err = run("bench", "sweep", "--config", tmp_path("nope.yaml"))
        self.assertEqual(code, 1)
        self.assertIn("cannot open", err)


class ServerSweep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        code, _, _ = run("bench", "serve", "--help")
        if code != 0:
            raise unittest.SkipTest("`anvil bench serve` is not available in this build yet")

    def test_server_template_sweep(self):
        config = write("server.yaml", """\
name: e2e-served
models: [dummy:tiny-llama]
kv_dtypes: [f16, bf16]
price_per_hour: 1.55
server:
  command: "{anvil} serve --model {model} --port {port} --kv-dtype {kv_dtype} --threads {threads} --max-num-seqs {max_batch}"
  startup_timeout_s: 60
  stop_grace_s: 5
threads: [2]
workload: {input_len: 8, output_len: 4, concurrency: [1, 2], num_prompts: 4, num_iters_warmup: 0}
""")
        out = fresh_dir("server-out")
        code, stdout, err = run("bench", "sweep", "--config", config, "--output-dir", out, "--cost-at-concurrency", "2",
                                timeout=300)
        self.assertEqual(code, 0, err)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(len(report["runs"]), 2)
        for x in report["runs"]:
            self.assertEqual(x["status"], "ok", x.get("error"))
            self.assertEqual(x["kind"], "server")
            self.assertEqual([p["load"] for p in x["points"]], [1, 2])
            self.assertEqual(x["cost"]["load"], 2)
            log = os.path.join(out, "runs", x["run_id"] + ".server.log")
            self.assertTrue(os.path.isfile(log), log)
        self.assertEqual(report["cost_at_concurrency"], 2)
        for key in ["most_cost_effective", "highest_throughput", "lowest_latency"]:
            self.assertIsNotNone(report["recommendations"][key], key)
        self.assertIn("2 users", stdout)

    def test_scaled_weight_schemes_in_process_and_served(self):
        # fp8 / w4a16 quantize the loaded model (in-process) or reach the server as -q {quantization}.
        config = write("scaled.yaml", """\
name: e2e-scaled
models: [dummy:tiny-llama]
weight_schemes: [native, fp8, "w4a16-rtn:g32"]
threads: [2]
price_per_hour: 0.5
workload: {input_len: 8, output_len: 4, batch_sizes: [1, 2], concurrency: [1, 2], num_prompts: 4,
           num_iters: 1, num_iters_warmup: 0}
configs:
  - {name: in-process}
  - name: served
    server:
      command: "{anvil} serve --model {model} --port {port} --threads {threads} -q {quantization}"
      startup_timeout_s: 60
""")
        out = fresh_dir("scaled-out")
        code, _, err = run("bench", "sweep", "--config", config, "--output-dir", out, timeout=300)
        self.assertEqual(code, 0, err)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(len(report["runs"]), 6)
        for x in report["runs"]:
            self.assertEqual(x["status"], "ok", x.get("error"))
        served_logs = [open(os.path.join(out, "runs", x["run_id"] + ".server.log")).read()
                       for x in report["runs"] if x["kind"] == "server"]
        self.assertEqual(sum("quantized 14 linear weights to fp8" in log for log in served_logs), 1, served_logs)
        self.assertEqual(sum("quantized 14 linear weights to w4a16-rtn" in log for log in served_logs), 1)

    def test_server_that_fails_to_start(self):
        config = write("server-fail.yaml", """\
models: [dummy:tiny-llama]
server: {command: "{anvil} serve --model dummy:no-such-model --port {port}", startup_timeout_s: 60}
workload: {input_len: 8, output_len: 4, concurrency: [1], num_prompts: 2}
""")
        out = fresh_dir("server-fail-out")
        code, stdout, err = run("bench", "sweep", "--config", config, "--output-dir", out, timeout=120)
        self.assertEqual(code, 1, err)
        self.assertIn("exited with code", err)
        self.assertIn("no-such-model", err)  # the server's own message, from its log
        self.assertIn("failed", stdout)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.tmp, exist_ok=True)
    result = unittest.main(argv=[sys.argv[0], "-v"] + rest, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
