#!/usr/bin/env python3
"""End-to-end tests of `anvil serve` over loopback HTTP: the OpenAI routes (streaming and not), greedy
output equal to `anvil run`, usage equal to /tokenize, every error path, API keys, /metrics, /health
while loading.

Run by CTest as: test_serve.py --anvil BIN --shared-data DIR --tmp DIR

Python's standard library only (http.client). The other test_serve_*.py files import the helpers
below (Server, check, ...); run as a script, this file runs its own tests.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

failures = []


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)[:2000]), flush=True)
    if not condition:
        failures.append(name)
    return condition


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    args = parser.parse_args()
    args.anvil = os.path.abspath(args.anvil)
    args.tmp = os.path.abspath(args.tmp)
    os.makedirs(args.tmp, exist_ok=True)
    return args


def finish():
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all passed")
    return 0


class Server:
    """`anvil serve` on a free loopback port, its stderr in a log file."""

    def __init__(self, anvil, args, log_path, api_key=None):
        self.port = free_port()
        self.api_key = api_key
        self.log_path = log_path
        self.log = open(log_path, "w")
        command = [anvil, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        if api_key:
            command += ["--api-key", api_key]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=self.log)

    def log_tail(self, n=3000):
        try:
            with open(self.log_path) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def wait_ready(self, timeout=60):
        """Polls /health until 200; returns the statuses seen (None: connection refused)."""
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _, _ = self.request("GET", "/health", timeout=5)
            except OSError:
                status = None
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.002)
        raise RuntimeError(f"anvil serve not ready after {timeout} s: {self.log_tail()}")

    def headers(self, extra=None):
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None, timeout=120):
        """(status, headers, body bytes). body: a dict (sent as JSON), bytes/str (sent as is) or None."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body) if isinstance(body, (dict, list)) else body
            conn.request(method, path, body=data, headers=self.headers(headers))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def post(self, path, body, headers=None, timeout=120):
        status, hdrs, data = self.request("POST", path, body, headers, timeout)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        return status, parsed, hdrs

    def get_json(self, path):
        status, _, data = self.request("GET", path)
        return status, json.loads(data)

    def stream(self, path, body, headers=None, timeout=120):
        """Streams an SSE response: (status, events, content_type). events: parsed JSON payloads,
        and the string "[DONE]" for the terminator."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body), headers=self.headers(headers))
            resp = conn.getresponse()
            content_type = resp.getheader("Content-Type", "")
            if resp.status != 200:
                return resp.status, [json.loads(resp.read())], content_type
            events = []
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line.startswith("data: "):
                    payload = line[len("data: "):]
                    events.append("[DONE]" if payload == "[DONE]" else json.loads(payload))
            return resp.status, events, content_type
        finally:
            conn.close()

    def metrics(self):
        """{'name{labels}': value} from /metrics."""
        status, _, data = self.request("GET", "/metrics")
        values = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` and waits; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def stream_text(events, chat=False):
    """The concatenated text of choice 0 and its finish_reason."""
    text, finish = "", None
    for e in events:
        if e == "[DONE]" or not e.get("choices"):
            continue
        c = e["choices"][0]
        text += (c["delta"].get("content") or "") if chat else c["text"]
        finish = c.get("finish_reason") or finish
    return text, finish


def run_anvil(anvil, *args, timeout=120):
    proc = subprocess.run([anvil, *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


# ---- The tests of this file ---------------------------------------------------------------------

MODEL = "dummy:tiny-llama"
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]


def test_models_and_health(server):
    status, models = server.get_json("/v1/models")
    check("GET /v1/models lists the served model",
          status == 200 and models["object"] == "list" and models["data"][0]["id"] == MODEL
          and models["data"][0]["max_model_len"] == 256, models)
    status, card = server.get_json("/v1/models/" + MODEL)
    check("GET /v1/models/{id}", status == 200 and card["id"] == MODEL, card)
    status, _, _ = server.request("GET", "/v1/models/nope")
    check("GET /v1/models/{unknown} is 404", status == 404)
    status, health = server.get_json("/health")
    check("GET /health is 200 once loaded", status == 200 and health["status"] == "ok", health)


def test_greedy_equals_anvil_run(server, anvil):
    prompt = "The quick brown fox"
    code, out, err = run_anvil(anvil, "run", "--model", MODEL, "--prompt", prompt, "--temperature", "0", "-n", "24",
                               "--ignore-eos")
    status, body, _ = server.post("/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 24,
                                                      "temperature": 0, "ignore_eos": True})
    text = body["choices"][0]["text"] if status == 200 else None
    check("greedy text prompt: server text == `anvil run` text", code == 0 and out == prompt + str(text) + "\n",
          f"run exit {code}: {out!r} vs server {status} {text!r}")

    ids = [1, 70, 80, 90]
    code, out, err = run_anvil(anvil, "run", "--model", MODEL, "--prompt-tokens", ",".join(map(str, ids)),
                               "--temperature", "0", "-n", "32", "--ignore-eos")
    status, body, _ = server.post("/v1/completions", {"prompt": ids, "max_tokens": 32, "temperature": 0,
                                                      "ignore_eos": True})
    text = body["choices"][0]["text"] if status == 200 else None
    check("greedy token-id prompt: server text == `anvil run` text", code == 0 and out == str(text) + "\n",
          f"run exit {code}: {out!r} vs server {status} {text!r}")
    status, events, _ = server.stream("/v1/completions", {"prompt": ids, "max_tokens": 32, "temperature": 0,
                                                          "ignore_eos": True, "stream": True})
    streamed, finish = stream_text(events)
    check("greedy streamed text == `anvil run` text", status == 200 and out == streamed + "\n" and finish == "length",
          f"{streamed!r} finish {finish}")


def test_completions(server):
    status, body, hdrs = server.post("/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 5,
                                                         "ignore_eos": True, "seed": 1})
    ok = status == 200 and body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    ok = ok and isinstance(body["created"], int) and body["model"] == MODEL and len(body["choices"]) == 1
    c = body["choices"][0] if ok else {}
    ok = ok and c["index"] == 0 and isinstance(c["text"], str) and c["finish_reason"] == "length"
    ok = ok and c["logprobs"] is None and body["usage"]["completion_tokens"] == 5
    ok = ok and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    check("completion body: OpenAI shape, usage, finish_reason length", ok, body)
    check("completion answers application/json", hdrs.get("content-type", "").startswith("application/json"), hdrs)

    # Same seed, same text; sampling is on by default (temperature 1).
    a = server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 12, "seed": 7, "ignore_eos": True})[1]
    b = server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 12, "seed": 7, "ignore_eos": True})[1]
    check("same seed, same sampled text", a["choices"][0]["text"] == b["choices"][0]["text"])

    # Streaming with usage: chunks, the finish chunk, a usage-only chunk, [DONE].
    request = {"prompt": "Hello", "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    whole = server.post("/v1/completions", request)[1]
    status, events, content_type = server.stream("/v1/completions", {**request, "stream": True,
                                                                      "stream_options": {"include_usage": True}})
    text, finish = stream_text(events)
    ok = status == 200 and content_type.startswith("text/event-stream") and events[-1] == "[DONE]"
    ok = ok and all(e["object"] == "text_completion" for e in events[:-1])
    ok = ok and len({e["id"] for e in events[:-1]}) == 1
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    ok = ok and events[-2]["choices"] == [] and all(events[-2]["usage"][k] == whole["usage"][k] for k in counts)
    check("streamed completion: same text as the body, usage chunk, [DONE]",
          ok and text == whole["choices"][0]["text"] and finish == "length", events[-3:])
    status, events, _ = server.stream("/v1/completions", {**request, "stream": True})
    check("streamed completion without include_usage has no usage chunk",
          status == 200 and all("usage" not in e for e in events[:-1]), events[-2:])

    # n and a list of prompts: prompts x n choices; a prompt's tokens count once.
    status, body, _ = server.post("/v1/completions", {"prompt": ["a b", "c"], "n": 2, "max_tokens": 3,
                                                      "ignore_eos": True})
    counts = [server.post("/tokenize", {"prompt": p})[1]["count"] for p in ("a b", "c")]
    check("prompt list x n: 4 choices indexed 0..3, usage counts each prompt once",
          status == 200 and [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
          and body["usage"]["prompt_tokens"] == sum(counts) and body["usage"]["completion_tokens"] == 12, body)

    # Logprobs (completions shape).
    status, body, _ = server.post("/v1/completions", {"prompt": "Hello", "max_tokens": 4, "logprobs": 3,
                                                      "ignore_eos": True})
    lp = body["choices"][0]["logprobs"] if status == 200 else {}
    check("completions logprobs: tokens, token_logprobs, top_logprobs, text_offset",
          status == 200 and len(lp["tokens"]) == 4 and len(lp["token_logprobs"]) == 4
          and len(lp["top_logprobs"]) == 4 and len(lp["text_offset"]) == 4
          and all(v <= 0 for v in lp["token_logprobs"]) and len(lp["top_logprobs"][0]) >= 3, body)

    # Stop strings end with finish_reason stop and are not shown.
    full = server.post("/v1/completions", {"prompt": [1, 70, 80], "max_tokens": 30, "temperature": 0,
                                           "ignore_eos": True})[1]["choices"][0]["text"]
    stop = full[5:8]
    body = server.post("/v1/completions", {"prompt": [1, 70, 80], "max_tokens": 30, "temperature": 0,
                                           "ignore_eos": True, "stop": [stop]})[1]
    c = body["choices"][0]
    check("stop string: finish_reason stop, text cut before it",
          c["finish_reason"] == "stop" and c["text"] == full[:full.find(stop)], (stop, c))

    # echo puts the prompt first.
    body = server.post("/v1/completions", {"prompt": "Echo me", "max_tokens": 3, "echo": True, "ignore_eos": True})[1]
    check("echo: the text starts with the prompt", body["choices"][0]["text"].startswith("Echo me"), body)


def test_chat(server):
    request = {"model": MODEL, "messages": CHAT, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    status, body, _ = server.post("/v1/chat/completions", request)
    ok = status == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    msg = body["choices"][0]["message"] if ok else {}
    ok = ok and msg["role"] == "assistant" and isinstance(msg["content"], str)
    ok = ok and body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 8
    check("chat completion body: OpenAI shape", ok, body)
    tokenized = server.post("/tokenize", {"messages": CHAT})[1]
    check("chat usage.prompt_tokens == /tokenize count of the messages",
          ok and body["usage"]["prompt_tokens"] == tokenized["count"], (body.get("usage"), tokenized))

    status, events, content_type = server.stream("/v1/chat/completions", {**request, "stream": True,
                                                                          "stream_options": {"include_usage": True}})
    text, finish = stream_text(events, chat=True)
    first = events[0]["choices"][0] if events else {}
    ok = status == 200 and content_type.startswith("text/event-stream") and events[-1] == "[DONE]"
    ok = ok and all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    ok = ok and first.get("delta", {}).get("role") == "assistant"
    # Token counts agree; cached_tokens may differ (the second request finds the prompt cached).
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    ok = ok and events[-2]["choices"] == [] and all(events[-2]["usage"][k] == body["usage"][k] for k in counts)
    check("streamed chat: role delta first, same content as the body, usage chunk, [DONE]",
          ok and text == msg.get("content") and finish == "length", events[:2] + events[-3:])

    # Content as a list of text parts; chat logprobs.
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name a"}, {"type": "text", "text": "colour."}]}]
    status, body, _ = server.post("/v1/chat/completions", {"messages": parts, "max_tokens": 3, "logprobs": True,
                                                           "top_logprobs": 2, "ignore_eos": True})
    content = body["choices"][0]["logprobs"]["content"] if status == 200 else []
    check("chat with content parts and logprobs (token, logprob, bytes, top_logprobs)",
          status == 200 and len(content) == 3 and len(content[0]["top_logprobs"]) == 2
          and isinstance(content[0]["bytes"], list), body)


def test_tokenize(server):
    status, body, _ = server.post("/tokenize", {"prompt": "Hello world"})
    check("/tokenize: tokens, count, max_model_len",
          status == 200 and body["count"] == len(body["tokens"]) and body["max_model_len"] == 256, body)
    completion = server.post("/v1/completions", {"prompt": "Hello world", "max_tokens": 1})[1]
    check("completion usage.prompt_tokens == /tokenize count", completion["usage"]["prompt_tokens"] == body["count"])
    status, text, _ = server.post("/detokenize", {"tokens": body["tokens"]})
    check("/detokenize gives the text back", status == 200 and text["prompt"] == "Hello world", text)


def test_errors(server):
    long_text = " ".join(["word"] * 400)
    cases = [
        # (name, path, body, status, param)
        ("malformed JSON", "/v1/completions", b'{"prompt": "x", ', 400, None),
        ("empty body", "/v1/completions", b"", 400, None),
        ("body is not an object", "/v1/completions", b"[1, 2]", 400, None),
        ("prompt of the wrong type", "/v1/completions", {"prompt": 5}, 400, "prompt"),
        ("missing prompt", "/v1/completions", {"max_tokens": 5}, 400, "prompt"),
        ("empty prompt", "/v1/completions", {"prompt": ""}, 400, "prompt"),
        ("negative token id", "/v1/completions", {"prompt": [1, -5]}, 400, "prompt"),
        ("token id outside the vocabulary", "/v1/completions", {"prompt": [1, 100000]}, 400, "prompt"),
        ("max_tokens as a string", "/v1/completions", {"prompt": "x", "max_tokens": "10"}, 400, "max_tokens"),
        ("negative max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ("zero max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("huge max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": 10 ** 9}, 400, "max_tokens"),
        ("max_tokens beyond 64 bits", "/v1/completions", {"prompt": "x", "max_tokens": 10 ** 30}, 400, "max_tokens"),
        ("fractional max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": 2.5}, 400, "max_tokens"),
        ("prompt over the context length", "/v1/completions", {"prompt": long_text}, 400, "prompt"),
        ("token prompt over the context length", "/v1/completions", {"prompt": [5] * 300}, 400, "prompt"),
        ("temperature above 2", "/v1/completions", {"prompt": "x", "temperature": 3}, 400, "temperature"),
        ("negative temperature", "/v1/completions", {"prompt": "x", "temperature": -1}, 400, "temperature"),
        ("temperature as a string", "/v1/completions", {"prompt": "x", "temperature": "hot"}, 400, "temperature"),
        ("top_p 0", "/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p"),
        ("n 0", "/v1/completions", {"prompt": "x", "n": 0}, 400, "n"),
        ("logprobs 30", "/v1/completions", {"prompt": "x", "logprobs": 30}, 400, "logprobs"),
        ("stream as a string", "/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream"),
        ("stop of the wrong type", "/v1/completions", {"prompt": "x", "stop": 5}, 400, "stop"),
        ("stream_options without stream", "/v1/completions", {"prompt": "x", "stream_options": {}}, 400,
         "stream_options"),
        ("unsupported suffix", "/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "suffix"),
        ("messages as a string", "/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
        ("empty messages", "/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("unknown role", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
        ("image content", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
         "messages"),
        ("chat over the context length", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": long_text}]}, 400, "messages"),
        ("top_logprobs without logprobs", "/v1/chat/completions",
         {"messages": CHAT, "top_logprobs": 2}, 400, "top_logprobs"),
        ("/tokenize without prompt", "/tokenize", {}, 400, None),
        ("/detokenize with bad ids", "/detokenize", {"tokens": ["a"]}, 400, "tokens"),
    ]
    for name, path, body, want_status, want_param in cases:
        status, error, _ = server.post(path, body)
        e = (error or {}).get("error", {})
        ok = status == want_status and isinstance(e.get("message"), str) and e.get("message")
        ok = ok and e.get("type") == "invalid_request_error" and "code" in e and "param" in e
        ok = ok and (want_param is None or e.get("param") == want_param)
        check(f"400: {name}", ok, f"{status} {error}")

    status, error, _ = server.post("/v1/completions", {"model": "gpt-4", "prompt": "x"})
    check("unknown model: 404 model_not_found", status == 404 and error["error"]["code"] == "model_not_found", error)
    status, error, _ = server.post("/v1/chat/completions", {"model": "gpt-4", "messages": CHAT})
    check("unknown model (chat): 404", status == 404, error)
    status, _, data = server.request("GET", "/v1/nothing-here")
    check("unknown route: 404 with an error object", status == 404 and "error" in json.loads(data), data)
    status, _, data = server.request("GET", "/v1/completions")
    check("GET on a POST route: 405 with an error object", status == 405 and "error" in json.loads(data), data)

    # Invalid UTF-8 in the body is a 400 (the JSON parser rejects it), never a crash.
    status, error, _ = server.post("/v1/completions", b'{"prompt": "\xff\xfe"}')
    check("invalid UTF-8 in the body: 400", status == 400, error)
    # Deep nesting: a 400 (or a successful parse and a type error), never a stack overflow.
    status, error, _ = server.post("/v1/completions", b'{"prompt": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    check("100000 nested arrays: 400", status == 400, error)

    status, health = server.get_json("/health")
    check("the server is healthy after every bad request", status == 200 and server.proc.poll() is None)


def test_metrics(server):
    before = server.metrics()
    server.post("/v1/completions", {"prompt": "count me", "max_tokens": 7, "ignore_eos": True})
    # The same 40-token prompt twice: the second finds its full blocks in the prefix cache.
    prompt = list(range(3, 43))
    server.post("/v1/completions", {"prompt": prompt, "max_tokens": 1})
    server.post("/v1/completions", {"prompt": prompt, "max_tokens": 1})
    status, hdrs, data = server.request("GET", "/metrics")
    after = server.metrics()
    check("/metrics is Prometheus text 0.0.4", status == 200 and "version=0.0.4" in hdrs.get("content-type", ""),
          hdrs)
    text = data.decode()
    for family in ("anvil_http_requests_total", "anvil_request_success_total", "anvil_prompt_tokens_total",
                   "anvil_generation_tokens_total", "anvil_time_to_first_token_seconds",
                   "anvil_time_per_output_token_seconds", "anvil_e2e_request_latency_seconds",
                   "anvil_num_requests_running", "anvil_num_requests_waiting", "anvil_kv_cache_usage_perc",
                   "anvil_prefix_cache_hit_rate", "anvil_prefix_cache_hits_total", "anvil_prefix_cache_queries_total"):
        check(f"/metrics has {family}", f"# TYPE {family} " in text)
    gen = after["anvil_generation_tokens_total"] - before["anvil_generation_tokens_total"]
    check("generation token counter grew by the completions' tokens", gen == 7 + 1 + 1, gen)
    check("requests by status: 200s and 400s counted",
          after.get('anvil_http_requests_total{route="/v1/completions",status="200"}', 0) >= 3
          and after.get('anvil_http_requests_total{route="/v1/completions",status="400"}', 0) >= 1)
    check("TTFT histogram counts requests",
          after['anvil_time_to_first_token_seconds_count'] - before['anvil_time_to_first_token_seconds_count'] == 3
          and after['anvil_time_to_first_token_seconds_bucket{le="+Inf"}']
          == after['anvil_time_to_first_token_seconds_count'])
    hits = after["anvil_prefix_cache_hits_total"] - before["anvil_prefix_cache_hits_total"]
    check("a repeated prompt hits the prefix cache", hits >= 32 and 0 < after["anvil_prefix_cache_hit_rate"] <= 1,
          hits)
    check("idle: nothing running, no KV block held",
          after["anvil_num_requests_running"] == 0 and after["anvil_kv_cache_blocks_used"] == 0, after)


def test_access_log(server):
    lines = [l for l in server.log_tail(200000).splitlines() if l.startswith("{")]
    records = [json.loads(l) for l in lines]
    completions = [r for r in records if r.get("path") == "/v1/completions" and r.get("status") == 200]
    r = completions[-1] if completions else {}
    check("access log: one JSON line per request with id, status, tokens, TTFT, total time",
          r.get("id", "").startswith("cmpl-") and "prompt_tokens" in r and "completion_tokens" in r
          and "ttft_ms" in r and "total_ms" in r, r)
    check("access log: errors carry their status and message",
          any(x.get("status") == 400 and x.get("error") for x in records))


def test_startup_errors(server, anvil):
    code, _, err = run_anvil(anvil, "serve", "--model", MODEL, "--port", str(server.port), timeout=30)
    check("a port in use: exit 1 with a clear error (no silent SO_REUSEPORT sharing)",
          code == 1 and "cannot listen" in err, f"exit {code}: {err[-500:]}")
    code, _, err = run_anvil(anvil, "serve", "--model", "dummy:no-such-preset", "--port", "0", timeout=30)
    check("an unknown model: exit 1 with a clear error", code == 1 and "unknown preset" in err, err[-500:])
    code, _, err = run_anvil(anvil, "serve", "--model", MODEL, "--port", "0", "--kv-dtype", "q4_0", timeout=30)
    check("a bad engine option fails before loading", code == 1 and "--kv-dtype" in err, err[-500:])


def test_api_key(args):
    server = Server(args.anvil, ["--model", MODEL, "--no-access-log"], os.path.join(args.tmp, "serve-key.log"),
                    api_key="sekrit")
    try:
        server.wait_ready()
        for path in ("/v1/models",):
            status, _, data = server.request("GET", path, headers={"Authorization": ""})
            check(f"--api-key: {path} without a key is 401", status == 401 and "error" in json.loads(data), data)
        status, _, data = server.request("POST", "/v1/completions", body={"prompt": "x"},
                                         headers={"Authorization": "Bearer wrong"})
        check("--api-key: a wrong key is 401", status == 401 and json.loads(data)["error"]["code"] == "invalid_api_key",
              data)
        status, _, _ = server.request("POST", "/v1/completions", body={"prompt": "x", "max_tokens": 2})
        check("--api-key: the right key passes", status == 200)
        for path in ("/health", "/metrics"):
            status, _, _ = server.request("GET", path, headers={"Authorization": ""})
            check(f"--api-key: {path} stays open", status == 200)
    finally:
        check("--api-key server exits 0 on SIGTERM", server.stop() == 0, server.log_tail())


def test_health_while_loading(args):
    # small-llama's random weights take a moment to create: /health must answer 503 meanwhile.
    server = Server(args.anvil, ["--model", "dummy:small-llama", "--kv-cache-memory", "64MiB", "--no-access-log"],
                    os.path.join(args.tmp, "serve-loading.log"))
    try:
        seen = server.wait_ready()
        answered = [s for s in seen if s is not None]
        check("/health: 503 while the model loads, then 200", answered[:1] == [503] and answered[-1] == 200, seen)
    finally:
        server.stop()


def main():
    args = parse_args()
    server = Server(args.anvil, ["--model", MODEL, "--chat-template", "chatml", "--kv-cache-memory", "64MiB"],
                    os.path.join(args.tmp, "serve.log"))
    try:
        server.wait_ready()
        test_models_and_health(server)
        test_greedy_equals_anvil_run(server, args.anvil)
        test_completions(server)
        test_chat(server)
        test_tokenize(server)
        test_errors(server)
        test_metrics(server)
        test_access_log(server)
        test_startup_errors(server, args.anvil)
        code = server.stop()
        check("SIGTERM: exit code 0", code == 0, f"exit {code}: {server.log_tail()}")
    except Exception as e:  # a crash of the server shows as a connection error here
        check("no exception", False, f"{type(e).__name__}: {e}; server log: {server.log_tail()}")
        server.kill()
    test_api_key(args)
    test_health_while_loading(args)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
