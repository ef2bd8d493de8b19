#!/usr/bin/env bash
# All tests on a fresh Debian 12 machine: install dependencies, build, run every CTest test
# (unit, ops, golden NumPy references, end-to-end CLI, llama.cpp interop), fuzz the GGUF parser
# for 30 s, then run the unit tests and the CLI tests (bad input included) again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --parallel 2 --timeout 900

echo "== GGUF parser fuzzing (libFuzzer, 30 s) =="
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DANVIL_BUILD_FUZZERS=ON \
  -DANVIL_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --target gguf_fuzzer
mkdir -p build-fuzz/corpus
build-fuzz/tests/fuzz/gguf_fuzzer -max_total_time=30 -max_len=65536 -dict=tests/fuzz/gguf.dict build-fuzz/corpus \
  2>&1 | tail -2

echo "== unit, ops and CLI tests under ASan/UBSan =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DANVIL_SANITIZE=ON >/dev/null
cmake --build build-asan --parallel "$(nproc)" --target anvil anvil_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
  ctest --test-dir build-asan --output-on-failure --parallel 2 -L "unit|e2e" -E llama_cpp_interop --timeout 900
