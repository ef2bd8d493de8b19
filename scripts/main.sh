#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build, and generate text
# with the built-in default model (Llama 3.2 1B shape, random weights: the text is meaningless
# by design, the speed is real). No download.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/anvil info
build/anvil run --model dummy:llama-3.2-1b --prompt "The quick brown fox" -n 32 --seed 1
