#!/usr/bin/env python3
"""`anvil serve` with the official OpenAI Node SDK (npm package `openai`) as the client: completions and
chat, streaming and not, usage consistent with /tokenize, and the SDK's error classes for 400/404/401.

Run by CTest as: test_serve_openai_sdk.py --anvil BIN --shared-data DIR --tmp DIR

The pinned `openai` package is installed once into TMP/../npm-cache/ (scripts disabled, no peer
dependencies); serve_openai_sdk.mjs beside this file drives it. If node, npm or the registry is
unavailable the test fails; ANVIL_SKIP_NPM_TESTS=1 skips it, as does a Node.js older than 20.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_serve import Server, check, finish, parse_args  # noqa: E402

# 6.x is the newest line that runs on Node.js 20 (7.x needs 22).
OPENAI_VERSION = "6.30.1"
MODEL = "served-tiny"
API_KEY = "sdk-test-key"


def node_major_version():
    if shutil.which("node") is None:
        return None
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def install_openai(cache_root):
    """The openai package in cache_root/openai-<pin>/node_modules: (dir, None) or (None, error)."""
    if shutil.which("npm") is None:
        return None, "`npm` not found on PATH (needed to install the OpenAI SDK)"
    target = os.path.join(cache_root, f"openai-{OPENAI_VERSION}")
    if os.path.exists(os.path.join(target, ".installed")):
        return target, None
    staging = target + f".partial.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    with open(os.path.join(staging, "package.json"), "w") as f:
        json.dump({"private": True, "dependencies": {"openai": OPENAI_VERSION}}, f)
    # --legacy-peer-deps: not zod/ws (optional helpers the tests do not use).
    command = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--legacy-peer-deps",
               "--no-package-lock", "--loglevel=error"]
    start = time.time()
    try:
        proc = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "npm install timed out after 300 s (registry unreachable?)"
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return None, f"`{' '.join(command)}` failed (exit {proc.returncode}): " + " | ".join(lines[:6])[:800]
    if not os.path.exists(os.path.join(staging, "node_modules", "openai", "package.json")):
        return None, "npm install finished but openai is missing"
    open(os.path.join(staging, ".installed"), "w").write(OPENAI_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    print(f"# installed openai@{OPENAI_VERSION} in {time.time() - start:.0f} s into {target}", flush=True)
    return target, None


def main():
    args = parse_args()
    if os.environ.get("ANVIL_SKIP_NPM_TESTS") == "1":
        print("skip OpenAI SDK test: ANVIL_SKIP_NPM_TESTS=1")
        return 0
    major = node_major_version()
    if major is None or major < 20:
        print(f"skip OpenAI SDK test: needs Node.js >= 20, this machine has {major or 'none'}")
        return 0
    modules, error = install_openai(os.path.join(os.path.dirname(args.tmp), "npm-cache"))
    if not check(f"install openai@{OPENAI_VERSION} from npm", modules is not None, error):
        return finish()

    server = Server(args.anvil, ["--model", "dummy:tiny-llama", "--served-model-name", MODEL, "--chat-template",
                                 "chatml", "--kv-cache-memory", "64MiB"], os.path.join(args.tmp, "serve-sdk.log"),
                    api_key=API_KEY)
    try:
        server.wait_ready()
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_openai_sdk.mjs")
        proc = subprocess.run(["node", helper, "--modules", modules, f"http://127.0.0.1:{server.port}/v1", API_KEY,
                               MODEL], capture_output=True, text=True, timeout=120)
        check("the SDK script runs", proc.returncode == 0, proc.stderr[-2000:])
        out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        results, errors = out.get("results", {}), out.get("errors", {})
        check("no fatal SDK error", "fatal" not in results, results.get("fatal"))

        # What raw HTTP says for the same greedy requests.
        greedy = {"temperature": 0, "max_tokens": 12, "ignore_eos": True}
        raw_completion = server.post("/v1/completions", {"model": MODEL, "prompt": "Hello world", **greedy})[1]
        raw_ids = server.post("/v1/completions", {"model": MODEL, "prompt": [1, 70, 80, 90], **greedy})[1]
        messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
        raw_chat = server.post("/v1/chat/completions", {"model": MODEL, "messages": messages, **greedy})[1]
        prompt_count = server.post("/tokenize", {"prompt": "Hello world"})[1]["count"]
        chat_count = server.post("/tokenize", {"messages": messages})[1]["count"]

        check("SDK models.list", results.get("models") == [MODEL], results.get("models"))
        c = results.get("completion", {})
        check("SDK completions.create: greedy text as over raw HTTP, finish_reason length",
              c.get("text") == raw_completion["choices"][0]["text"] and c.get("finish") == "length"
              and c.get("object") == "text_completion", c)
        check("SDK completion usage: prompt_tokens == /tokenize count, completion_tokens 12",
              c.get("usage", {}).get("prompt_tokens") == prompt_count
              and c.get("usage", {}).get("completion_tokens") == 12, (c.get("usage"), prompt_count))
        check("SDK completions.create with token ids",
              results.get("completion_ids", {}).get("text") == raw_ids["choices"][0]["text"])
        s = results.get("completion_stream", {})
        check("SDK streamed completion: same text, finish_reason, usage chunk",
              s.get("text") == c.get("text") and s.get("finish") == "length"
              and s.get("usage", {}).get("prompt_tokens") == prompt_count
              and s.get("usage", {}).get("completion_tokens") == 12 and s.get("chunks", 0) > 2, s)
        ch = results.get("chat", {})
        check("SDK chat.completions.create: assistant message, greedy text as over raw HTTP",
              ch.get("role") == "assistant" and ch.get("text") == raw_chat["choices"][0]["message"]["content"]
              and ch.get("finish") == "length" and ch.get("object") == "chat.completion", ch)
        check("SDK chat usage: prompt_tokens == /tokenize count of the messages",
              ch.get("usage", {}).get("prompt_tokens") == chat_count, (ch.get("usage"), chat_count))
        cs = results.get("chat_stream", {})
        check("SDK streamed chat: role first, same text, usage chunk",
              cs.get("firstRole") == "assistant" and cs.get("text") == ch.get("text") and cs.get("finish") == "length"
              and cs.get("usage", {}).get("prompt_tokens") == chat_count, cs)
        lp = results.get("chat_logprobs") or {}
        check("SDK chat logprobs", len(lp.get("content", [])) == 3
              and len(lp["content"][0].get("top_logprobs", [])) == 2, lp)

        e = errors.get("bad_max_tokens", {})
        check("SDK: negative max_tokens raises BadRequestError (400, param max_tokens)",
              e.get("class") == "BadRequestError" and e.get("status") == 400 and e.get("param") == "max_tokens", e)
        e = errors.get("unknown_model", {})
        check("SDK: unknown model raises NotFoundError (404, model_not_found)",
              e.get("class") == "NotFoundError" and e.get("status") == 404 and e.get("code") == "model_not_found", e)
        e = errors.get("too_long", {})
        check("SDK: a prompt over the context length raises BadRequestError (400)",
              e.get("class") == "BadRequestError" and e.get("status") == 400, e)
        e = errors.get("wrong_key", {})
        check("SDK: a wrong API key raises AuthenticationError (401)",
              e.get("class") == "AuthenticationError" and e.get("status") == 401, e)
    except Exception as e:  # noqa: BLE001
        check("no exception", False, f"{type(e).__name__}: {e}; server log: {server.log_tail()}")
    finally:
        check("server exits 0 on SIGTERM", server.stop() == 0, server.log_tail())
    return finish()


if __name__ == "__main__":
    sys.exit(main())
