#!/usr/bin/env python3
"""End-to-end tests of `anvil bench serve`: against a scripted fake OpenAI server whose chunks arrive
at known times (TTFT, TPOT, failures, missing usage, chat, datasets, Ctrl-C, bad input), and against
a real `anvil serve --model dummy:tiny-llama`.

Run by CTest as: test_bench_serve.py --anvil BIN --shared-data DIR --tmp DIR

Timing checks use wide tolerances (+-40%): they confirm the clock is read at the right events, not
how fast this machine is.
"""
import argparse
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET

failures = []

RESULT_KEYS = ["concurrency", "request_rate", "num_prompts", "completed", "failed", "duration_s",
               "request_throughput", "output_throughput", "total_token_throughput", "total_input_tokens",
               "total_output_tokens", "goodput"]
for metric in ["ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"]:
    RESULT_KEYS += [f"{metric}_{s}" for s in ["mean", "median", "std", "p50", "p90", "p99"]]
JSONL_KEYS = ["concurrency", "request_index", "prompt_tokens", "output_tokens", "ttft_ms", "tpot_ms", "itl_ms",
              "e2el_ms", "success", "error", "start_offset_ms", "usage_from_server"]


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)[:2000]), flush=True)
    if not condition:
        failures.append(name)
    return condition


def near(value, expected, tolerance=0.4):
    return value is not None and abs(value - expected) <= tolerance * expected


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(anvil, *args, timeout=60):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


# ---- A scripted OpenAI-compatible server ----------------------------------------------------------

class FakeHandler(http.server.BaseHTTPRequestHandler):
    """Streams max_tokens one-token chunks: the first `ttft` s after the request, then one every `itl` s."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "no route " + self.path}})

    def event(self, payload):
        data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        start = time.monotonic()
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        with server.lock:
            server.count += 1
            number = server.count
            server.bodies.append(body)
            server.auth.append(self.headers.get("Authorization"))
        if body.get("model") != "fake-model":
            return self.send_json(404, {"error": {"message": f"The model '{body.get('model')}' does not exist"}})
        if server.fail_every and number % server.fail_every == 0:
            return self.send_json(500, {"error": {"message": "fake overload"}})
        chat = self.path.endswith("chat/completions")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if chat:  # the role announcement comes at once and is no token
                self.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            n = int(body.get("max_tokens", 1))
            for i in range(n):
                time.sleep(max(0.0, start + server.ttft + i * server.itl - time.monotonic()))
                text = "tok "
                choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
                choice["finish_reason"] = "length" if i == n - 1 else None
                self.event({"choices": [choice]})
            if server.usage:
                prompt = body.get("prompt") if not chat else body["messages"][0]["content"].split()
                self.event({"choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": n,
                                                     "total_tokens": len(prompt) + n}})
            self.event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (Ctrl-C)


class FakeServer:
    def __init__(self, ttft=0.1, itl=0.02, fail_every=0, usage=True):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
        self.httpd.daemon_threads = True
        self.httpd.ttft, self.httpd.itl, self.httpd.fail_every, self.httpd.usage = ttft, itl, fail_every, usage
        self.httpd.lock = threading.Lock()
        self.httpd.count = 0
        self.httpd.bodies = []
        self.httpd.auth = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def bodies(self):
        return self.httpd.bodies

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- Tests against the fake server --------------------------------------------------------------

def test_timing_and_outputs(args):
    fake = FakeServer(ttft=0.1, itl=0.02)
    out_json = os.path.join(args.tmp, "fake.json")
    out_jsonl = os.path.join(args.tmp, "fake.jsonl")
    plot_dir = os.path.join(args.tmp, "plots")
    try:
        code, out, err = run(args.anvil, "bench", "serve", "--base-url", fake.url, "--concurrency", "1,2",
                             "--num-prompts", "4", "--input-len", "8", "--output-len", "6", "--api-key", "sk-test",
                             "--slo", "ttft:1000,tpot:200", "--output-json", out_json, "--jsonl", out_jsonl,
                             "--plot", plot_dir)
    finally:
        fake.close()
    if not check("fake: exit 0", code == 0, f"exit {code}: {err}"):
        return
    report = load_json(out_json)
    check("fake: report head", report.get("bench") == "serve" and report.get("schema_version") == 1
          and "machine" in report and report.get("interrupted") is False, str(report)[:500])
    config = report.get("config", {})
    check("fake: config names the model and base_url",
          config.get("model") == "fake-model" and config.get("base_url") == fake.url, str(config))
    results = report.get("results", [])
    check("fake: one result per concurrency", [r.get("concurrency") for r in results] == [1, 2], str(results)[:500])
    for r in results:
        c = r.get("concurrency")
        missing = [k for k in RESULT_KEYS if k not in r]
        check(f"fake c={c}: documented keys present", not missing, str(missing))
        check(f"fake c={c}: 4 completed, 0 failed", r.get("completed") == 4 and r.get("failed") == 0, str(r)[:300])
        check(f"fake c={c}: output tokens from usage", r.get("total_output_tokens") == 24
              and r.get("total_input_tokens") == 32 and r.get("usage_from_server") is True, str(r)[:300])
        check(f"fake c={c}: TTFT ~100 ms", near(r.get("ttft_ms_mean"), 100.0), r.get("ttft_ms_mean"))
        check(f"fake c={c}: TPOT ~20 ms", near(r.get("tpot_ms_mean"), 20.0), r.get("tpot_ms_mean"))
        check(f"fake c={c}: ITL ~20 ms", near(r.get("itl_ms_median"), 20.0), r.get("itl_ms_median"))
        check(f"fake c={c}: E2EL ~200 ms", near(r.get("e2el_ms_mean"), 200.0), r.get("e2el_ms_mean"))
        check(f"fake c={c}: goodput = completed / duration under a loose SLO",
              abs(r.get("goodput", 0) - 4 / r["duration_s"]) < 1e-6, str(r.get("goodput")))
    if len(results) == 2:
        # 4 requests of ~200 ms: one at a time ~0.8 s, two at a time ~0.4 s.
        check("fake: concurrency 2 doubles request throughput",
              1.4 < results[1]["request_throughput"] / results[0]["request_throughput"] < 2.6,
              f"{results[0]['request_throughput']} vs {results[1]['request_throughput']}")
    records = read_jsonl(out_jsonl)
    check("fake: JSONL has one line per timed request", len(records) == 8, len(records))
    check("fake: JSONL fields", all(all(k in rec for k in JSONL_KEYS) for rec in records),
          str(records[:1]))
    check("fake: JSONL ITLs (5 per request)", all(len(rec["itl_ms"]) == 5 for rec in records),
          str([len(rec.get("itl_ms", [])) for rec in records]))
    # 1 test request + 8 timed; every body asks for a stream with usage, ignore_eos and max_tokens.
    bodies = fake.bodies
    check("fake: test request + 8 timed requests sent", len(bodies) == 9, len(bodies))
    check("fake: request bodies", all(b.get("stream") is True and b.get("stream_options") == {"include_usage": True}
                                      and b.get("ignore_eos") is True and b.get("max_tokens") == 6
                                      and isinstance(b.get("prompt"), list) and len(b["prompt"]) == 8
                                      for b in bodies), str(bodies[:1]))
    check("fake: timed prompts differ between levels", bodies[1]["prompt"] != bodies[5]["prompt"])
    check("fake: Authorization: Bearer", set(fake.httpd.auth) == {"Bearer sk-test"}, str(set(fake.httpd.auth)))
    check("fake: Markdown table on stdout", "| concurrency |" in out and "\n| 2 | 4 | 0 |" in out, out)
    for name in ["throughput.svg", "latency.svg", "distribution.svg"]:
        png = os.path.join(plot_dir, name[:-4] + ".png")
        check(f"fake: --plot writes {name[:-4]}.png", os.path.isfile(png) and os.path.getsize(png) > 1000, png)
        path = os.path.join(plot_dir, name)
        try:
            ET.parse(path)
            ok = True
        except (OSError, ET.ParseError) as e:
            ok = str(e)
        check(f"fake: plot {name} is SVG", ok is True, ok)


def test_failures_counted(args):
    fake = FakeServer(ttft=0.01, itl=0.005, fail_every=3)  # requests 3, 6 fail (1 is the test request)
    out_json = os.path.join(args.tmp, "fail.json")
    out_jsonl = os.path.join(args.tmp, "fail.jsonl")
    try:
        code, out, err = run(args.anvil, "bench", "serve", "--base-url", fake.url, "--num-prompts", "6",
                             "--output-len", "3", "--input-len", "4", "--output-json", out_json, "--jsonl", out_jsonl)
    finally:
        fake.close()
    r = (load_json(out_json).get("results") or [{}])[0]
    check("failures: exit 0 (later failures are counted, not fatal)", code == 0, f"exit {code}: {err}")
    check("failures: 2 failed, 4 completed", r.get("failed") == 2 and r.get("completed") == 4, str(r)[:300])
    check("failures: the server's message recorded",
          r.get("errors") == [{"error": "HTTP 500: fake overload", "count": 2}], str(r.get("errors")))
    records = read_jsonl(out_jsonl)
    failed = [rec for rec in records if not rec.get("success")]
    check("failures: JSONL records the errors", len(records) == 6 and len(failed) == 2
          and all(rec["error"] == "HTTP 500: fake overload" and rec["ttft_ms"] is None for rec in failed), str(failed))
    check("failures: stderr lists them", "2 request(s) failed: HTTP 500: fake overload" in err, err)


def test_no_usage_and_chat(args):
    fake = FakeServer(ttft=0.1, itl=0.02, usage=False)
    out_json = os.path.join(args.tmp, "chat.json")
    try:
        code, out, err = run(args.anvil, "bench", "serve", "--base-url", fake.url, "--endpoint",
                             "/v1/chat/completions", "--num-prompts", "2", "--input-len", "5", "--output-len", "4",
                             "--no-ignore-eos", "--output-json", out_json)
    finally:
        fake.close()
    r = (load_json(out_json).get("results") or [{}])[0]
    check("chat without usage: exit 0", code == 0, f"exit {code}: {err}")
    check("chat without usage: output tokens counted from chunks",
          r.get("total_output_tokens") == 8 and r.get("usage_from_server") is False, str(r)[:300])
    check("chat: the role chunk is not the first token (TTFT ~100 ms)", near(r.get("ttft_ms_mean"), 100.0),
          r.get("ttft_ms_mean"))
    bodies = fake.bodies
    check("chat: messages with 5 random words, no ignore_eos",
          all(len(b["messages"][0]["content"].split()) == 5 and "ignore_eos" not in b and "prompt" not in b
              for b in bodies), str(bodies[:1]))
    check("chat without usage: stderr notes the fallback", "no usage" in err, err)


def test_dataset(args):
    fake = FakeServer(ttft=0.001, itl=0.001)
    dataset = os.path.join(args.tmp, "prompts.jsonl")
    with open(dataset, "w") as f:
        f.write(json.dumps({"prompt": "first prompt", "output_len": 2}) + "\n")
        f.write(json.dumps({"prompt": [5, 6, 7]}) + "\n")
    text = os.path.join(args.tmp, "prompts.txt")
    with open(text, "w") as f:
        f.write("a text prompt\n\nanother one\n")
    try:
        code, _, err = run(args.anvil, "bench", "serve", "--base-url", fake.url, "--model", "fake-model",
                           "--dataset", dataset, "--num-prompts", "3", "--output-len", "4")
        jsonl_bodies = list(fake.bodies)
        code2, _, err2 = run(args.anvil, "bench", "serve", "--base-url", fake.url, "--model", "fake-model",
                             "--dataset", text, "--num-prompts", "2", "--output-len", "3")
        text_bodies = fake.bodies[len(jsonl_bodies):]
    finally:
        fake.close()
    check("dataset jsonl: exit 0", code == 0, err)
    timed = jsonl_bodies[1:]
    check("dataset jsonl: prompts in order with their output_len",
          [(b["prompt"], b["max_tokens"]) for b in timed] == [("first prompt", 2), ([5, 6, 7], 4), ("first prompt", 2)],
          str([(b["prompt"], b["max_tokens"]) for b in timed]))
    check("dataset text: exit 0", code2 == 0, err2)
    check("dataset text: one prompt per line", [b["prompt"] for b in text_bodies[1:]] == ["a text prompt", "another one"],
          str([b["prompt"] for b in text_bodies]))


def test_interrupt(args):
    fake = FakeServer(ttft=0.05, itl=0.05)  # each request ~0.4 s
    out_json = os.path.join(args.tmp, "interrupted.json")
    proc = subprocess.Popen([args.anvil, "bench", "serve", "--base-url", fake.url, "--concurrency", "2",
                             "--num-prompts", "200", "--output-len", "8", "--output-json", out_json],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = proc.communicate(timeout=20)
        waited = time.monotonic() - start
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        waited = None
    finally:
        fake.close()
    check("Ctrl-C: exit 130", proc.returncode == 130, f"exit {proc.returncode}: {err}")
    check("Ctrl-C: stops within the grace period", waited is not None and waited < 6, waited)
    report = load_json(out_json)
    r = (report.get("results") or [{}])[0]
    check("Ctrl-C: partial results written", report.get("interrupted") is True and r.get("interrupted") is True
          and 0 < r.get("completed", 0) < 200 and r.get("failed") == 0, str(r)[:300])
    check("Ctrl-C: table printed", "(partial)" in out, out)


def expect_error(args, name, extra, must_contain):
    code, out, err = run(args.anvil, "bench", "serve", *extra, timeout=30)
    lines = [l for l in err.splitlines() if l.strip()]
    ok = code == 1 and len(lines) >= 1 and lines[-1].startswith("anvil: error:") and must_contain in lines[-1]
    check("error: " + name, ok, f"exit {code}, stderr {err!r}")


def test_errors(args):
    port = free_port()  # nothing listens there
    expect_error(args, "connection refused names the URL", ["--base-url", f"http://127.0.0.1:{port}"],
                 f"http://127.0.0.1:{port}")
    expect_error(args, "connection refused with --model", ["--base-url", f"http://127.0.0.1:{port}", "--model", "m"],
                 "cannot connect")
    fake = FakeServer(ttft=0.001, itl=0.001)
    try:
        expect_error(args, "first request fails with the server's message",
                     ["--base-url", fake.url, "--model", "wrong"], "The model 'wrong' does not exist")
        base = ["--base-url", fake.url]
        expect_error(args, "bad concurrency", [*base, "--concurrency", "1,x"], "--concurrency")
        expect_error(args, "bad slo", [*base, "--slo", "ttft:fast"], "--slo")
        expect_error(args, "bad request rate", [*base, "--request-rate", "0"], "--request-rate")
        expect_error(args, "bad percentiles", [*base, "--percentiles", "50,200"], "--percentiles")
        expect_error(args, "missing dataset", [*base, "--dataset", "/nonexistent.txt"], "/nonexistent.txt")
        expect_error(args, "bad extra body", [*base, "--extra-body", "[1]"], "--extra-body")
        expect_error(args, "bad endpoint", [*base, "--endpoint", "v1/completions"], "--endpoint")
        expect_error(args, "token ids on chat", [*base, "--endpoint", "/v1/chat/completions", "--dataset",
                                                 os.path.join(args.tmp, "prompts.jsonl")], "token ids")
        expect_error(args, "bad scheme", ["--base-url", "ftp://127.0.0.1:1"], "http://")
    finally:
        fake.close()


# ---- Against a real anvil serve -----------------------------------------------------------------

def test_anvil_serve(args):
    port = free_port()
    log = open(os.path.join(args.tmp, "serve.log"), "w")
    server = subprocess.Popen([args.anvil, "serve", "--host", "127.0.0.1", "--port", str(port), "--model",
                               "dummy:tiny-llama", "--kv-cache-memory", "64MiB"], stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        out_json = os.path.join(args.tmp, "anvil.json")
        code, out, err = run(args.anvil, "bench", "serve", "--base-url", f"http://127.0.0.1:{port}", "--concurrency",
                             "1,4", "--num-prompts", "8", "--input-len", "16", "--output-len", "8", "--warmup", "2",
                             "--output-json", out_json, timeout=120)
        check("anvil serve: exit 0", code == 0, f"exit {code}: {err}")
        report = load_json(out_json)
        results = report.get("results", [])
        check("anvil serve: model discovered", report.get("config", {}).get("model") == "dummy:tiny-llama",
              str(report.get("config")))
        check("anvil serve: two levels", [r.get("concurrency") for r in results] == [1, 4], str(results)[:300])
        for r in results:
            c = r.get("concurrency")
            check(f"anvil serve c={c}: 8 completed, 0 failed", r.get("completed") == 8 and r.get("failed") == 0,
                  str(r.get("errors")))
            check(f"anvil serve c={c}: 64 output tokens from usage",
                  r.get("total_output_tokens") == 64 and r.get("usage_from_server") is True
                  and r.get("total_input_tokens") == 128, str(r)[:300])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    args.anvil = os.path.abspath(args.anvil)
    args.tmp = os.path.abspath(args.tmp)
    os.makedirs(args.tmp, exist_ok=True)
    start = time.monotonic()
    test_timing_and_outputs(args)
    test_failures_counted(args)
    test_no_usage_and_chat(args)
    test_dataset(args)
    test_errors(args)
    test_interrupt(args)
    test_anvil_serve(args)
    print(f"{time.monotonic() - start:.1f} s")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
