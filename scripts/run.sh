#!/usr/bin/env bash
# Builds parleyd (installing any missing Debian packages first) and runs it. With no arguments it
# serves http://127.0.0.1:8080 with a SQLite file under ./data/ and the in-process bus; any
# arguments are passed to parleyd (see `scripts/run.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target parleyd parley
exec build/release/src/app/parleyd "$@"
