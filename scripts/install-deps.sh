#!/usr/bin/env bash
# Installs Anvil's build and test dependencies from Debian 12 packages. Idempotent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev libopenblas-dev
  libopenmpi-dev openmpi-bin
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev libpcre2-dev
  libyaml-cpp-dev  # anvil bench sweep's YAML configs
  librsvg2-dev  # benchmark plots: SVG rendered to PNG
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy
  sentencepiece  # spm_train/spm_encode: the tokenizer.model tests compare against them
  clang
)

# Node.js + npm run the llama.cpp interoperability test (npm's node-llama-cpp bundles llama.cpp).
# Checked by command, not package: a NodeSource nodejs already ships npm and conflicts with
# Debian's npm package.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi
