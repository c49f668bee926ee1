#!/usr/bin/env bash
# Builds everything and runs every test: the release build (unit, integration, tools), then the
# ASan+UBSan build (unit and integration). Installs missing Debian packages first. Exits non-zero
# on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=$(nproc)
echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
echo "== release tests"
ctest --preset release -j "$jobs" --timeout 300

echo "== asan build"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
echo "== asan tests (unit, integration)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset asan -j "$jobs" --timeout 600 -L 'unit|integration'
