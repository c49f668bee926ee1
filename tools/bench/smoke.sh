#!/usr/bin/env bash
# Smoke test of parley-bench (CTest `bench_smoke`, label `bench`): starts a real parleyd on a
# free loopback port with a temporary data directory, runs every scenario for about a second
# with small numbers, and checks only that each runs and counts correctly (exit status 0, the
# last stdout line is JSON, every expected delivery and ack arrived, nothing failed). It never
# asserts on timing.
#
#   tools/bench/smoke.sh PATH/TO/parleyd PATH/TO/parley-bench
set -euo pipefail

PARLEYD=${1:?usage: smoke.sh PARLEYD PARLEY_BENCH}
BENCH=${2:?usage: smoke.sh PARLEYD PARLEY_BENCH}
PYTHON=${PYTHON:-python3}

dir=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench-smoke-XXXXXX")
pid=""
cleanup() {
  local rc=$?
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    echo "---- parleyd log (last 40 lines) ----" >&2
    tail -n 40 "$dir/parleyd.log" >&2 || true
  fi
  rm -rf "$dir"
  exit $rc
}
trap cleanup EXIT

healthy() {  # GET /healthz over bash's /dev/tcp, so that the test needs no curl
  local port=$1
  exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  local line
  IFS= read -r -t 2 line <&3 || true
  exec 3>&- 3<&-
  [[ "$line" == *" 200"* ]]
}

# A free port below the ephemeral range; a clash (another test took it) is retried.
port=""
for _ in $(seq 1 20); do
  p=$((20000 + RANDOM % 12000))
  # The per-user send limit and the per-address registration limit are raised, as every
  # benchmark must; cheap Argon2 keeps the registrations of the smoke users fast (the password
  # hash is not what is measured).
  "$PARLEYD" --listen "127.0.0.1:$p" --store "sqlite:$dir/parley.db" --bus inproc --threads 2 \
    --web-root "$dir" --log-level warn --send-rate 1000000 --send-burst 1000000 \
    --register-burst-per-ip 0 --argon2-opslimit 1 --argon2-memlimit-kib 64 \
    >>"$dir/parleyd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if healthy "$p"; then port=$p; break; fi
    sleep 0.1
  done
  [[ -n "$port" ]] && break
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
[[ -n "$port" ]] || { echo "smoke: could not start parleyd" >&2; exit 1; }
url="http://127.0.0.1:$port"
common=(--url "$url" --token-file "$dir/tokens" --user-prefix smoke -q)
echo "smoke: parleyd pid $pid on $url"

# run NAME CHECK ARGS...: runs parley-bench ARGS, then evaluates the Python expression CHECK
# with `j` bound to the JSON line and `r` to j["result"].
run() {
  local name=$1 check=$2
  shift 2
  local out="$dir/$name.out"
  echo "smoke: $name: parley-bench $*"
  if ! "$BENCH" "$@" >"$out"; then
    echo "smoke: $name: parley-bench exited non-zero" >&2
    cat "$out" >&2
    exit 1
  fi
  tail -n 1 "$out" | "$PYTHON" -c '
import json, sys
name, check = sys.argv[1], sys.argv[2]
j = json.loads(sys.stdin.read())
r = j["result"]
if not eval(check):
    print("smoke: %s: check failed: %s" % (name, check), file=sys.stderr)
    print(json.dumps(j, indent=1), file=sys.stderr)
    sys.exit(1)
print("smoke: %s: ok" % name)
' "$name" "$check" || { cat "$out" >&2; exit 1; }
}

exact_traffic='r["sent"] > 0 and r["expected_deliveries"] == r["sent"] * j["params"]["room_size"]
  and r["delivered"] == r["expected_deliveries"] and r["delivery_ratio"] == 1.0
  and r["acked"] == r["sent"] and r["errors"] == 0 and r["closes"] == 0 and r["gaps"] == 0
  and r["rate_limited"] == 0 and j["open"]["failed"] == 0 and j["cleanup"]["left"] > 0'
exact_traffic=${exact_traffic//$'\n'/ }

run fanout "$exact_traffic and r[\"e2e\"][\"count\"] == r[\"delivered\"]" \
  fanout "${common[@]}" -n 20 -u 8 -s 2 -r 40 -d 1 -w 0.3 --drain 5
run fanout-2threads "$exact_traffic" \
  fanout "${common[@]}" --threads 2 -n 16 -u 8 -s 3 -r 30 -d 1 -w 0.3 --drain 5
run rooms "$exact_traffic and j[\"params\"][\"rooms\"] == 3" \
  rooms "${common[@]}" --rooms 3 --room-size 4 -r 30 -d 1 -w 0.3 --drain 5
run ingest "$exact_traffic and r[\"ack\"][\"count\"] == r[\"sent\"]" \
  ingest "${common[@]}" -s 4 -r 40 -d 1 -w 0.3 --drain 5
run fanout-max 'len(j["trials"]) == 2 and j["best_rate"] > 0 and all(t["delivery_ratio"] == 1.0 for t in j["trials"])' \
  fanout "${common[@]}" -n 10 -u 5 -s 1 -r 20 -d 0.5 -w 0.2 --drain 5 --max --max-steps 2 --max-p99-ms 100000
run idle 'r["live"] == 30 and r["closes"] == 0 and r["pings"] > 0 and r["pongs"] == r["pings"] and j["open"]["failed"] == 0' \
  idle "${common[@]}" -n 30 -u 5 -d 1 --ping-interval 0.25 --settle 0.2
run connect 'r["handshakes"] > 0 and r["failed"] == 0 and r["latency"]["count"] == r["handshakes"]' \
  connect "${common[@]}" -u 5 -c 4 -d 1 -w 0.2
run disk 'r["append"]["count"] == 20 and r["overwrite"]["count"] == 20 and r["overwrite"]["max_ms"] > 0' \
  disk --dir "$dir" -n 20
echo "smoke: all scenarios ran and counted correctly"
