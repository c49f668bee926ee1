#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing Parley need. Idempotent: when every
# package is already there it prints nothing and touches nothing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git
  libboost-dev libboost-system-dev libsqlite3-dev libsodium-dev libspdlog-dev libfmt-dev
  libcli11-dev libtomlplusplus-dev rapidjson-dev nlohmann-json3-dev
  libpq-dev librabbitmq-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang clang-format
  python3 sqlite3 curl procps
)
if [ "${PARLEY_SETUP_SERVERS:-0}" = 1 ]; then
  packages+=(postgresql rabbitmq-server haproxy prometheus chromium)
  # Node.js for the browser tests: Debian's, unless the machine already has a node.
  command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
if [ "$(id -u)" != 0 ]; then
  echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
