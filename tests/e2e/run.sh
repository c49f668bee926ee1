#!/usr/bin/env bash
# Browser tests of the Parley web client: headless Debian chromium driven by playwright-core
# (from npm, no browser download) and Node's built-in test runner. Each test file starts its
# own parleyd (env PARLEYD, default build/release/src/app/parleyd) on a free port with a
# temporary SQLite file, and stops it.
#
#   PARLEYD=/path/to/parleyd tests/e2e/run.sh [test files…]
#
# Env: PARLEYD, E2E_TIMEOUT (whole run, seconds; default 300), PARLEY_SCREENSHOT=0 (do not
# rewrite docs/screenshot-chat.png). Screenshots for review land in tests/e2e/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
total_timeout=${E2E_TIMEOUT:-300}

fail() {
  echo "e2e: $*" >&2
  exit 1
}

command -v node >/dev/null || fail "node not found (apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "node >= 20 needed, found $(node --version)"
[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium not found: install Debian's chromium package (apt-get install chromium)"

export PARLEYD=${PARLEYD:-$here/../../build/release/src/app/parleyd}
[ -x "$PARLEYD" ] || fail "parleyd not found at $PARLEYD (build it first, or set PARLEYD)"

# Install playwright-core exactly as locked, when missing or when the lock file changed.
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.parley-lock-sha256
if [ ! -f node_modules/playwright-core/package.json ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || fail "npm not found (apt-get install npm)"
  echo "e2e: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(./*.test.mjs)
fi

echo "e2e: $("/usr/bin/chromium" --version 2>/dev/null | head -1), parleyd $PARLEYD, ${#files[@]} files"
start=$(date +%s)
set +e
timeout --kill-after=15 "$total_timeout" \
  node --test --test-reporter=tap --test-concurrency=1 --test-timeout=120000 "${files[@]}"
rc=$?
set -e
echo "e2e: finished in $(($(date +%s) - start)) s (exit $rc)"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "e2e: the whole run took longer than ${total_timeout}s and was stopped" >&2
  echo "# fail 1"
fi
exit "$rc"
