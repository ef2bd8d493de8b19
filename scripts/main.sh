#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, generate text with the
# built-in default model (Llama 3.2 1B shape, random weights: the text is meaningless by design,
# the speed is real), then the latency-vs-batch table through the batching engine on the small
# demo preset (about two minutes on 2 cores), with its plot. No download.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/anvil info
build/anvil run --model dummy:llama-3.2-1b --prompt "The quick brown fox" -n 32 --seed 1
build/anvil bench latency --model dummy:small-llama --input-len 128 --output-len 128 \
  --batch-sizes 1,2,4,8,16,32 --num-iters-warmup 1 --num-iters 3 \
  --output-json build/bench-latency.json --plot build/bench-latency.svg
