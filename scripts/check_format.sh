#!/usr/bin/env bash
# Fails when a tracked C++ file differs from what clang-format makes of it with the checked-in
# .clang-format. Fix with: scripts/check_format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}" 2>"${TMPDIR:-/tmp}/parley-format.txt"; then
  grep -E '^[^ ].*: (error|warning):' "${TMPDIR:-/tmp}/parley-format.txt" | cut -d: -f1 | sort -u |
    sed 's/^/format: not clang-formatted: /' >&2
  echo "format: run scripts/check_format.sh --fix" >&2
  exit 1
fi
