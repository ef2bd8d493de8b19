#!/usr/bin/env bash
# All tests on a fresh Debian 12 machine: install dependencies, build, run every CTest test
# (unit, ops, golden NumPy references, end-to-end CLI), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --parallel 2 --timeout 900

echo "== unit and ops tests under ASan/UBSan =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DANVIL_SANITIZE=ON >/dev/null
cmake --build build-asan --parallel "$(nproc)" --target anvil anvil_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure --parallel 2 -L "unit|e2e" --timeout 900
