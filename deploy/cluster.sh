#!/usr/bin/env bash
# A local Parley cluster in one command: PostgreSQL and RabbitMQ (deploy/servers.sh), N parleyd
# nodes sharing them, and HAProxy in front — all from Debian packages, on loopback.
#
#   deploy/cluster.sh start [--nodes N] [--balance roundrobin|leastconn|source] [--port P]
#                           [--run-dir DIR] [--prometheus] [-- extra parleyd flags]
#   deploy/cluster.sh stop [--run-dir DIR]
#
# `start` prints the URL; `stop` stops exactly what `start` started (it reads the run dir).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cmd=${1:-}
[ -n "$cmd" ] && shift
nodes=3
balance=roundrobin
port=8090
stats_port=8091
prom_port=9090
run_dir=${PARLEY_CLUSTER_DIR:-/tmp/parley-cluster}
prometheus=0
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --balance) balance=$2; shift 2 ;;
    --port) port=$2; stats_port=$((port + 1)); shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    --prometheus) prometheus=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "cluster.sh: unknown option $1 (see the header of deploy/cluster.sh)" >&2; exit 2 ;;
  esac
done
case $balance in roundrobin|leastconn|source) ;; *)
  echo "cluster.sh: --balance must be roundrobin, leastconn or source" >&2; exit 2 ;;
esac

node_port() { echo $((port + 10 + $1)); }

stop_pidfile() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

start() {
  if [ -f "$run_dir/cluster.env" ]; then
    echo "cluster.sh: a cluster is running from $run_dir; stop it first" >&2
    exit 1
  fi
  PARLEY_SETUP_SERVERS=1 bash scripts/setup.sh
  local parleyd=${PARLEYD:-$root/build/release/src/app/parleyd}
  if [ -z "${PARLEYD:-}" ]; then
    cmake --preset release >/dev/null
    cmake --build --preset release --target parleyd >/dev/null
  fi
  mkdir -p "$run_dir"
  bash deploy/servers.sh start "$run_dir" >"$run_dir/servers.env"
  # shellcheck disable=SC1091
  . "$run_dir/servers.env"
  local servers=""
  for i in $(seq 1 "$nodes"); do
    local p
    p=$(node_port "$i")
    "$parleyd" --listen "127.0.0.1:$p" --node-id "node-$i" --store "$PARLEY_TEST_PG_URL" \
      --bus "$PARLEY_TEST_AMQP_URL" --web-root "$root/web" --trusted-proxies 127.0.0.1 \
      "${extra[@]}" \
      >"$run_dir/node-$i.log" 2>&1 &
    echo $! >"$run_dir/node-$i.pid"
    servers+="    server node-$i 127.0.0.1:$p check"$'\n'
  done
  sed -e "s|@BIND@|127.0.0.1:$port|" -e "s|@STATS_BIND@|127.0.0.1:$stats_port|" \
      -e "s|@BALANCE@|$balance|" deploy/haproxy.cfg.in |
    awk -v servers="$servers" '{ if ($0 == "@SERVERS@") printf "%s", servers; else print }' \
      >"$run_dir/haproxy.cfg"
  haproxy -c -q -f "$run_dir/haproxy.cfg"
  haproxy -f "$run_dir/haproxy.cfg" -D -p "$run_dir/haproxy.pid" 2>"$run_dir/haproxy.log"
  if [ "$prometheus" = 1 ]; then
    local targets=""
    for i in $(seq 1 "$nodes"); do targets+="'127.0.0.1:$(node_port "$i")',"; done
    sed -e "s|@NODES@|${targets%,}|" -e "s|@HAPROXY@|'127.0.0.1:$stats_port'|" \
      deploy/prometheus.yml.in >"$run_dir/prometheus.yml"
    prometheus --config.file="$run_dir/prometheus.yml" --storage.tsdb.path="$run_dir/prometheus" \
      --web.listen-address="127.0.0.1:$prom_port" >"$run_dir/prometheus.log" 2>&1 &
    echo $! >"$run_dir/prometheus.pid"
  fi
  # Wait until every node answers /readyz (the bus and store are up).
  for i in $(seq 1 "$nodes"); do
    local ok=0
    for _ in $(seq 1 100); do
      if curl -sf "http://127.0.0.1:$(node_port "$i")/readyz" >/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    if [ "$ok" != 1 ]; then
      echo "cluster.sh: node-$i is not ready; see $run_dir/node-$i.log" >&2
      tail -5 "$run_dir/node-$i.log" >&2
    fi
  done
  {
    echo "PARLEY_CLUSTER_URL=http://127.0.0.1:$port"
    echo "PARLEY_CLUSTER_STATS=http://127.0.0.1:$stats_port/"
    echo "PARLEY_CLUSTER_NODES=$nodes"
    for i in $(seq 1 "$nodes"); do echo "PARLEY_NODE_${i}_URL=http://127.0.0.1:$(node_port "$i")"; done
    [ "$prometheus" = 1 ] && echo "PARLEY_PROMETHEUS_URL=http://127.0.0.1:$prom_port"
    cat "$run_dir/servers.env"
  } >"$run_dir/cluster.env"
  cat "$run_dir/cluster.env"
  echo "Parley cluster of $nodes nodes ($balance) at http://127.0.0.1:$port" >&2
}

stop() {
  stop_pidfile "$run_dir/prometheus.pid"
  stop_pidfile "$run_dir/haproxy.pid"
  for f in "$run_dir"/node-*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  bash deploy/servers.sh stop "$run_dir"
  rm -f "$run_dir/cluster.env"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: deploy/cluster.sh start|stop [options] (see the header of the script)" >&2; exit 2 ;;
esac
