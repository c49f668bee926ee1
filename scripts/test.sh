#!/usr/bin/env bash
# Builds everything and runs every test. Installs missing Debian packages first, starts the
# servers the tests need (PostgreSQL and RabbitMQ on loopback, in a temporary directory) and
# stops them on exit, whatever happens.
#   0. every C++ file is clang-formatted (scripts/check_format.sh);
#   1. release build: unit, integration (SQLite, PostgreSQL, RabbitMQ), cluster, fuzz-corpus
#      replay and tool smoke tests;
#   2. ASan+UBSan build: unit and integration tests;
#   3. browser tests (headless Chromium) when tests/e2e exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PARLEY_SETUP_SERVERS=1 bash scripts/setup.sh

jobs=$(nproc)
run_dir=$(mktemp -d /tmp/parley-test.XXXXXX)
chmod 755 "$run_dir"
cleanup() { bash deploy/servers.sh stop "$run_dir" || true; rm -rf "$run_dir"; }
trap cleanup EXIT

# Test servers get their own ports, so that a local cluster may run beside the tests.
export PARLEY_PG_PORT=${PARLEY_PG_PORT:-25442} PARLEY_AMQP_PORT=${PARLEY_AMQP_PORT:-25692}
export PARLEY_AMQP_DIST_PORT=${PARLEY_AMQP_DIST_PORT:-25693} PARLEY_EPMD_PORT=${PARLEY_EPMD_PORT:-24389}
echo "== starting PostgreSQL and RabbitMQ in $run_dir"
bash deploy/servers.sh start "$run_dir" >"$run_dir/servers.env"
set -a
# shellcheck disable=SC1091
. "$run_dir/servers.env"
set +a
export PARLEY_TEST_SERVERS_DIR=$run_dir

echo "== format check (.clang-format)"
bash scripts/check_format.sh

echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
echo "== release tests"
ctest --preset release -j "$jobs" --timeout 600

echo "== asan build"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
echo "== asan tests (unit, integration)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset asan -j "$jobs" --timeout 900 -L 'unit|integration'

if [ -x tests/e2e/run.sh ]; then
  echo "== browser tests"
  # PARLEY_SCREENSHOT=1 also refreshes docs/screenshot-chat.png (the README's picture).
  PARLEYD=$PWD/build/release/src/app/parleyd PARLEY_SCREENSHOT=${PARLEY_SCREENSHOT:-0} \
    bash tests/e2e/run.sh
fi
