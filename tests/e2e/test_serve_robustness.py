#!/usr/bin/env python3
"""`anvil serve` under load and misbehaving clients: 64 concurrent greedy streams identical to the same
requests served alone; a client that disconnects mid-stream has its request cancelled and its KV blocks
freed; a full waiting queue answers 429 with Retry-After; SIGTERM lets requests in flight finish (or
cancels them once the grace period is over) and exits 0.

Run by CTest as: test_serve_robustness.py --anvil BIN --shared-data DIR --tmp DIR
"""
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_serve import Server, check, finish, parse_args, stream_text  # noqa: E402

LOAD_CLIENTS = 64
LOAD_SECONDS = 6.0


class OpenStream:
    """A streaming request read event by event, so a test can stop reading or hang up mid-stream."""

    def __init__(self, server, path, body):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("POST", path, body=json.dumps({**body, "stream": True}), headers=server.headers())
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next_event(self):
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line.startswith("data: "):
                payload = line[len("data: "):]
                return "[DONE]" if payload == "[DONE]" else json.loads(payload)

    def first_text_event(self):
        while True:
            event = self.next_event()
            if event is None or event == "[DONE]":
                return event
            choice = event["choices"][0] if event["choices"] else {}
            if choice.get("text") or choice.get("delta", {}).get("content"):
                return event

    def rest(self):
        events = []
        while True:
            event = self.next_event()
            if event is None:
                return events
            events.append(event)
            if event == "[DONE]":
                return events

    def hang_up(self):
        """Closes the socket without reading the rest, as a client that goes away does."""
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def wait_for(predicate, timeout=15.0, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


# ---- 64 concurrent streams --------------------------------------------------------------------------

def load_requests():
    """16 greedy requests: completions with token-id prompts of varied lengths, and chats."""
    requests = []
    for i in range(12):
        prompt = [1] + [3 + (i * 37 + j * 11) % 500 for j in range(4 + i * 5)]
        requests.append(("/v1/completions", {"prompt": prompt, "max_tokens": 16 + 3 * i}))
    for i in range(4):
        messages = [{"role": "user", "content": f"Tell me about the number {i * 7}."}]
        requests.append(("/v1/chat/completions", {"messages": messages, "max_tokens": 20 + 5 * i}))
    common = {"temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True}}
    return [(path, {**body, **common}) for path, body in requests]


def test_concurrent_streams(args):
    server = Server(args.anvil, ["--model", "dummy:tiny-llama", "--chat-template", "chatml", "--max-num-seqs", "64",
                                 "--kv-cache-memory", "64MiB", "--no-access-log"],
                    os.path.join(args.tmp, "serve-load.log"))
    try:
        server.wait_ready()
        requests = load_requests()
        alone = []
        for path, body in requests:
            status, events, _ = server.stream(path, {**body, "stream": True})
            text, reason = stream_text(events, chat=path.endswith("chat/completions"))
            alone.append((status, text, reason, events[-2].get("usage") if len(events) >= 2 else None))
        check("each load request alone: 200, finish_reason length, usage",
              all(a[0] == 200 and a[2] == "length" and a[3] for a in alone), alone[:2])

        errors, done = [], [0]
        lock = threading.Lock()
        max_running = [0]
        stop_sampling = threading.Event()

        def sample_running():
            while not stop_sampling.is_set():
                try:
                    running = server.metrics().get("anvil_num_requests_running", 0)
                    max_running[0] = max(max_running[0], running)
                except OSError:
                    pass
                time.sleep(0.05)

        def client(k):
            deadline = time.time() + LOAD_SECONDS
            i = k
            while time.time() < deadline:
                path, body = requests[i % len(requests)]
                expected = alone[i % len(requests)]
                i += 7
                try:
                    status, events, _ = server.stream(path, {**body, "stream": True}, timeout=60)
                    text, reason = stream_text(events, chat=path.endswith("chat/completions"))
                    usage = events[-2].get("usage") if len(events) >= 2 else None
                    ok = status == 200 and events[-1] == "[DONE]" and reason == "length"
                    ok = ok and text == expected[1] and usage is not None
                    ok = ok and usage["completion_tokens"] == expected[3]["completion_tokens"]
                    if not ok:
                        with lock:
                            errors.append(f"client {k}: {path} status {status}, finish {reason}, "
                                          f"text {text[:40]!r} vs alone {expected[1][:40]!r}")
                except Exception as e:  # noqa: BLE001 - every failure is a finding here
                    with lock:
                        errors.append(f"client {k}: {type(e).__name__}: {e}")
                with lock:
                    done[0] += 1

        sampler = threading.Thread(target=sample_running)
        sampler.start()
        start = time.time()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(LOAD_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=LOAD_SECONDS + 60)
        elapsed = time.time() - start
        stop_sampling.set()
        sampler.join()
        hung = sum(t.is_alive() for t in threads)
        print(f"# {done[0]} streams from {LOAD_CLIENTS} clients in {elapsed:.1f} s; "
              f"up to {max_running[0]:.0f} running at once", flush=True)
        check(f"{LOAD_CLIENTS} concurrent streaming clients for {LOAD_SECONDS:.0f} s: no client hung", hung == 0, hung)
        check(f"{LOAD_CLIENTS} concurrent streaming clients: zero errors, every stream complete and identical "
              f"to the same request alone ({done[0]} streams)", not errors and done[0] >= LOAD_CLIENTS,
              "; ".join(errors[:5]))
        check("the engine batched the streams (many running at once)", max_running[0] >= 8, max_running[0])
        after = server.metrics()
        check("after the load: nothing running, no KV block held, no 5xx",
              after["anvil_num_requests_running"] == 0 and after["anvil_kv_cache_blocks_used"] == 0
              and not any(k.startswith("anvil_http_requests_total{route=\"/v1/") and 'status="5' in k for k in after),
              after)
    finally:
        check("load server exits 0 on SIGTERM", server.stop() == 0, server.log_tail())


# ---- Disconnects and the waiting queue --------------------------------------------------------------

LONG = {"prompt": [1, 5, 6, 7], "max_tokens": 1500, "ignore_eos": True, "temperature": 0}


def test_disconnect_and_429(args):
    # small-llama decodes slowly enough (~100-200 tok/s on 2 cores) that 1500 tokens take many seconds.
    server = Server(args.anvil, ["--model", "dummy:small-llama", "--kv-cache-memory", "64MiB", "--max-num-seqs", "1",
                                 "--max-waiting", "1", "--chat-template", "chatml"],
                    os.path.join(args.tmp, "serve-disconnect.log"))
    try:
        server.wait_ready()
        stream = OpenStream(server, "/v1/completions", LONG)
        first = stream.first_text_event()
        during = server.metrics()
        check("a long stream is running and holds KV blocks",
              stream.status == 200 and first not in (None, "[DONE]") and during["anvil_num_requests_running"] == 1
              and during["anvil_kv_cache_blocks_used"] > 0, during)
        started = time.time()
        stream.hang_up()
        freed = wait_for(lambda: (lambda m: m if m["anvil_num_requests_running"] == 0
                                  and m["anvil_kv_cache_blocks_used"] == 0 else None)(server.metrics()))
        check("client disconnect mid-stream: the request is cancelled and its KV blocks freed",
              freed is not None and freed.get('anvil_request_success_total{finished_reason="abort"}') == 1,
              f"after {time.time() - started:.1f} s: {freed or server.metrics()}")

        # The same for a non-streaming request: nothing is written until the end, so the server must
        # notice the hang-up on its own (it probes the connection while it waits).
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/v1/completions", body=json.dumps({**LONG, "stream": False}), headers=server.headers())
        running = wait_for(lambda: server.metrics()["anvil_num_requests_running"] == 1)
        started = time.time()
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        freed = wait_for(lambda: (lambda m: m if m["anvil_num_requests_running"] == 0
                                  and m["anvil_kv_cache_blocks_used"] == 0 else None)(server.metrics()))
        check("client disconnect while waiting for a non-streaming answer: cancelled within a second, blocks freed",
              running and freed is not None and time.time() - started < 3.0
              and freed.get('anvil_request_success_total{finished_reason="abort"}') == 2,
              f"after {time.time() - started:.1f} s: {freed or server.metrics()}")

        # Queue: one request runs (max-num-seqs 1), one waits (max-waiting 1), the next gets 429.
        running = OpenStream(server, "/v1/completions", LONG)
        running.first_text_event()
        waiting_result = {}

        def waiting_client():
            waiting_result["answer"] = server.post("/v1/completions", {"prompt": "wait", "max_tokens": 3})

        waiter = threading.Thread(target=waiting_client)
        waiter.start()
        queued = wait_for(lambda: server.metrics().get("anvil_num_requests_admitted_waiting") == 1)
        check("the second request waits for the engine", queued)
        status, error, headers = server.post("/v1/completions", {"prompt": "one too many", "max_tokens": 3})
        check("full waiting queue: 429 with Retry-After and an OpenAI error object",
              status == 429 and headers.get("retry-after") == "1" and error["error"]["code"] == "rate_limit_exceeded"
              and error["error"]["message"], (status, error, headers))
        status, error, _ = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
        check("full waiting queue: chat gets 429 too", status == 429, (status, error))
        running.hang_up()
        waiter.join(timeout=30)
        status, body, _ = waiting_result.get("answer", (None, None, None))
        check("the waiting request runs once the running one is gone", status == 200, body)
        status, _, _ = server.post("/v1/completions", {"prompt": "room again", "max_tokens": 2})
        check("after the queue drains, requests are admitted again", status == 200)
        m = server.metrics()
        check("/metrics counts the 429s", m.get('anvil_http_requests_total{route="/v1/completions",status="429"}') == 1,
              m)
    finally:
        check("disconnect/429 server exits 0 on SIGTERM", server.stop() == 0, server.log_tail())


# ---- SIGTERM -----------------------------------------------------------------------------------------

def test_sigterm(args):
    # A grace period far beyond the stream's length, so that the check is of the semantics and
    # not of the build's speed (the default 10 s is about what 120 tokens take under ASan).
    server = Server(args.anvil, ["--model", "dummy:small-llama", "--kv-cache-memory", "64MiB", "--shutdown-grace", "120"],
                    os.path.join(args.tmp, "serve-sigterm.log"))
    try:
        server.wait_ready()
        request = {"prompt": [1, 9, 8], "max_tokens": 120, "ignore_eos": True, "temperature": 0,
                   "stream_options": {"include_usage": True}}
        stream = OpenStream(server, "/v1/completions", request)
        stream.first_text_event()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        check("SIGTERM: no new connections", refused)
        events = stream.rest()
        usage = events[-2].get("usage") if len(events) >= 2 else None
        reasons = [e["choices"][0]["finish_reason"] for e in events if e != "[DONE]" and e["choices"]]
        check("SIGTERM: the stream in flight finishes (finish_reason length, all its tokens, [DONE])",
              events and events[-1] == "[DONE]" and reasons[-1:] == ["length"] and usage
              and usage["completion_tokens"] == 120, events[-2:])
        try:
            code = server.proc.wait(timeout=120)
        except Exception:  # noqa: BLE001
            code = None
        check("SIGTERM: exit code 0 after the requests in flight", code == 0, server.log_tail())
    finally:
        server.kill()

    # A request longer than the grace period is cancelled when it ends; the exit is still clean.
    server = Server(args.anvil, ["--model", "dummy:small-llama", "--kv-cache-memory", "64MiB", "--shutdown-grace", "1"],
                    os.path.join(args.tmp, "serve-grace.log"))
    try:
        server.wait_ready()
        stream = OpenStream(server, "/v1/completions", LONG)
        stream.first_text_event()
        sent = time.time()
        server.proc.send_signal(signal.SIGINT)
        events = stream.rest()
        elapsed = time.time() - sent
        reasons = [e["choices"][0]["finish_reason"] for e in events if e != "[DONE]" and e["choices"]]
        check("SIGINT with --shutdown-grace 1: the long stream ends with finish_reason abort and [DONE]",
              events and events[-1] == "[DONE]" and reasons[-1:] == ["abort"] and elapsed < 10,
              f"{elapsed:.1f} s, {events[-2:]}")
        try:
            code = server.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            code = None
        check("SIGINT after the grace period: exit code 0", code == 0, server.log_tail())
    finally:
        server.kill()


def main():
    args = parse_args()
    for test in (test_concurrent_streams, test_disconnect_and_429, test_sigterm):
        try:
            test(args)
        except Exception as e:  # noqa: BLE001 - a server crash shows up as a connection error
            check(f"{test.__name__} ran without an exception", False, f"{type(e).__name__}: {e}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
