#!/usr/bin/env bash
# Runs the benchmark series of docs/benchmarks.md against a release parleyd on this machine and
# appends one JSON line per run to OUTDIR/results.jsonl; tools/bench/summarize.py turns that
# into the results table (medians over the runs).
#
#   tools/bench/bench_all.sh PARLEYD PARLEY_BENCH OUTDIR [RUNS]
#
# Environment:
#   STORE_DIR   where the servers' SQLite files live (the disk under test; default /var/tmp)
#   SERIES      which groups to run (default "fanout fanout100 ingest connect idle")
#   FANOUT_RATES  messages/s for fanout to 1,000 members (default "250 500 1000 2000")
#   INGEST_RATES  sends/s for ingest (default "1000 5000 20000 50000"), then a --max search
#   DURATION WARMUP  seconds per run (default 10 and 2)
#   IDLE_CONNECTIONS  (default 19000)  IDLE_DURATION (default 30)
#   THREADS     parleyd --threads (default nproc)
#
# Every server runs with the per-user send limit raised (--send-rate 1000000 --send-burst
# 1000000), as every benchmark must, and with ulimit -n 20000 (the hard limit here). The users
# are registered once; later servers start from a copy of that database, so that tokens stay
# valid and no run pays for Argon2.
set -euo pipefail

PARLEYD=$(realpath "${1:?usage: bench_all.sh PARLEYD PARLEY_BENCH OUTDIR [RUNS]}")
BENCH=$(realpath "${2:?usage: bench_all.sh PARLEYD PARLEY_BENCH OUTDIR [RUNS]}")
OUT=${3:?usage: bench_all.sh PARLEYD PARLEY_BENCH OUTDIR [RUNS]}
RUNS=${4:-3}
STORE_DIR=${STORE_DIR:-/var/tmp}
SERIES=${SERIES:-"fanout fanout100 ingest connect idle"}
FANOUT_RATES=${FANOUT_RATES:-"250 500 1000 2000"}
INGEST_RATES=${INGEST_RATES:-"1000 5000 20000 50000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-19000}
IDLE_DURATION=${IDLE_DURATION:-30}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-$((20000 + RANDOM % 10000))}

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
RESULTS=$OUT/results.jsonl
TOKENS=$OUT/tokens
TEMPLATE=$OUT/template
ulimit -n 20000

{
  echo "date: $(date -u +%FT%TZ)"
  echo "parleyd: $PARLEYD ($(sha256sum "$PARLEYD" | cut -c1-16))"
  echo "git: $(git -C "$(dirname "$0")" log -1 --format='%h %s' 2>/dev/null || echo '?')"
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -r)"
  echo "ulimit -n: $(ulimit -n)"
  lscpu
} >"$OUT/machine.txt"

server_pid=""
server_dir=""
start_server() {  # fresh data directory (from the template when there is one)
  server_dir=$(mktemp -d "$STORE_DIR/parley-bench-srv-XXXXXX")
  if [[ -d "$TEMPLATE" ]]; then cp "$TEMPLATE"/parley.db* "$server_dir/"; fi
  "$PARLEYD" --listen "127.0.0.1:$PORT" --store "sqlite:$server_dir/parley.db" --bus inproc \
    --threads "$THREADS" --log-level warn --send-rate 1000000 --send-burst 1000000 \
    --register-burst-per-ip 0 >"$server_dir/parleyd.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "parleyd did not start; log:" >&2
  cat "$server_dir/parleyd.log" >&2
  exit 1
}
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
drop_server() {
  stop_server
  rm -rf "$server_dir"
}
trap '[[ -n "$server_pid" ]] && kill -KILL "$server_pid" 2>/dev/null; true' EXIT

bench() {  # bench LABEL ARGS...
  local label=$1
  shift
  echo "== $label: parley-bench $*" >&2
  "$BENCH" "$@" --url "http://127.0.0.1:$PORT" --token-file "$TOKENS" --label "$label" -q \
    --server-pid "$server_pid" >"$OUT/last.txt" || { cat "$OUT/last.txt" >&2; return 1; }
  grep -E '^ +[0-9]|deliveries/s|latency|handshakes|RSS|idle CPU|opened' "$OUT/last.txt" >&2 || true
  tail -n 1 "$OUT/last.txt" >>"$RESULTS"
}

# Register the users once and keep the database as the template of every later server.
if [[ ! -d "$TEMPLATE" ]]; then
  rm -f "$TOKENS"
  start_server
  "$BENCH" idle --url "http://127.0.0.1:$PORT" --token-file "$TOKENS" -n 1000 -u 1000 -d 0.1 --settle 0 -q >/dev/null
  stop_server
  mkdir -p "$TEMPLATE"
  cp "$server_dir"/parley.db* "$TEMPLATE/"
  rm -rf "$server_dir"
fi

for group in $SERIES; do
  case $group in
    fanout)
      start_server
      for run in $(seq 1 "$RUNS"); do
        for rate in $FANOUT_RATES; do
          bench "fanout1000-r$rate" fanout -n 1000 -u 1000 -s 10 -r "$rate" -b 100 -d "$DURATION" -w "$WARMUP"
        done
      done
      drop_server
      ;;
    fanout100)
      start_server
      for run in $(seq 1 "$RUNS"); do
        bench "fanout100-r5000" fanout -n 100 -u 100 -s 10 -r 5000 -b 100 -d "$DURATION" -w "$WARMUP"
      done
      drop_server
      ;;
    ingest)
      start_server
      for run in $(seq 1 "$RUNS"); do
        for rate in $INGEST_RATES; do
          bench "ingest-r$rate" ingest -s 100 -r "$rate" -b 100 -d "$DURATION" -w "$WARMUP"
        done
      done
      for run in $(seq 1 "$RUNS"); do
        bench "ingest-max-p99-10ms" ingest -s 100 -r 1000 -b 100 -d 5 -w 1 --max --max-steps 7 --max-p99-ms 10
      done
      drop_server
      ;;
    connect)
      start_server
      for run in $(seq 1 "$RUNS"); do
        bench "connect-c64" connect -c 64 -u 1000 -d "$DURATION" -w "$WARMUP"
      done
      drop_server
      ;;
    idle)
      for run in $(seq 1 "$RUNS"); do
        start_server  # a fresh process each time: RSS per connection is measured from its baseline
        bench "idle-$IDLE_CONNECTIONS" idle -n "$IDLE_CONNECTIONS" -u 1000 -d "$IDLE_DURATION" --ping-interval 30
        drop_server
      done
      ;;
    *)
      echo "unknown series group $group" >&2
      exit 2
      ;;
  esac
done
echo "results: $RESULTS (summarize with tools/bench/summarize.py $RESULTS)" >&2
