#!/usr/bin/env bash
# Starts and stops the servers Parley's cluster uses — PostgreSQL and RabbitMQ from Debian's
# packages — on loopback ports, as their own users, in one run directory. Used by the test
# command and by the local cluster script.
#
#   deploy/servers.sh start RUN_DIR [postgres] [rabbitmq]   # prints KEY=VALUE lines (URLs)
#   deploy/servers.sh stop RUN_DIR
#   deploy/servers.sh ctl RUN_DIR ARGS...                    # rabbitmqctl ARGS against RUN_DIR's broker
#
# Ports (below the ephemeral range) can be changed with PARLEY_PG_PORT, PARLEY_AMQP_PORT,
# PARLEY_AMQP_DIST_PORT, PARLEY_EPMD_PORT.
set -euo pipefail

cmd=${1:?usage: servers.sh start|stop|ctl RUN_DIR [postgres] [rabbitmq]}
run=${2:?usage: servers.sh start|stop RUN_DIR}
shift 2
pg_port=${PARLEY_PG_PORT:-25432}
amqp_port=${PARLEY_AMQP_PORT:-25672}
dist_port=${PARLEY_AMQP_DIST_PORT:-25673}
epmd_port=${PARLEY_EPMD_PORT:-24369}
pg_bin=/usr/lib/postgresql/15/bin
# Erlang short node names allow letters, digits, - and _ only.
rabbit_node=parley-$(basename "$run" | tr -c "a-zA-Z0-9_\n" "-")@localhost

start_postgres() {
  local dir=$run/postgres
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    runuser -u postgres -- "$pg_bin/initdb" -D "$dir/data" -A trust -U parley >/dev/null
  fi
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" \
    start >/dev/null
  # The database the tests and nodes use.
  runuser -u postgres -- psql -h 127.0.0.1 -p "$pg_port" -U parley -d postgres -qAt \
    -c "SELECT 1 FROM pg_database WHERE datname = 'parley'" | grep -q 1 ||
    runuser -u postgres -- psql -h 127.0.0.1 -p "$pg_port" -U parley -d postgres -q \
      -c "CREATE DATABASE parley" >/dev/null
  echo "PARLEY_TEST_PG_URL=postgresql://parley@127.0.0.1:$pg_port/parley"
  # The store's restart test stops and starts this server with pg_ctl: its data directory and
  # start options (the same as above), quoted because scripts/test.sh sources these lines.
  echo "PARLEY_TEST_PG_DATA=$dir/data"
  echo "PARLEY_TEST_PG_OPTS='-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on'"
}

stop_postgres() {
  local dir=$run/postgres
  [ -f "$dir/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

rabbit_env() {
  local dir=$run/rabbitmq
  export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log
  export RABBITMQ_PID_FILE=$dir/pid RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_NODENAME=$rabbit_node RABBITMQ_NODE_PORT=$amqp_port
  export RABBITMQ_DIST_PORT=$dist_port RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=$epmd_port RABBITMQ_CONFIG_FILE=$dir/rabbitmq
  export HOME=$dir
}

start_rabbitmq() {
  local dir=$run/rabbitmq
  mkdir -p "$dir/mnesia" "$dir/log"
  [ -f "$dir/enabled_plugins" ] || echo "[]." >"$dir/enabled_plugins"
  # guest may only log in from loopback, which is where the nodes are.
  printf 'loopback_users.guest = true\n' >"$dir/rabbitmq.conf"
  chown -R rabbitmq:rabbitmq "$dir"
  rabbit_env
  (setsid rabbitmq-server >"$dir/log/stdout" 2>&1 &)
  # await_startup fails at once while the Erlang node is not registered yet: retry it.
  local ok=0
  for _ in $(seq 1 60); do
    if timeout 60 rabbitmqctl -n "$rabbit_node" await_startup >/dev/null 2>&1; then
      ok=1
      break
    fi
    sleep 1
  done
  if [ "$ok" != 1 ]; then
    echo "servers.sh: RabbitMQ did not start; see $dir/log" >&2
    tail -20 "$dir/log/stdout" >&2 || true
    return 1
  fi
  echo "PARLEY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$amqp_port/"
  echo "PARLEY_TEST_RABBIT_NODE=$rabbit_node"
}

stop_rabbitmq() {
  local dir=$run/rabbitmq
  [ -d "$dir" ] || return 0
  rabbit_env
  rabbitmqctl -n "$rabbit_node" stop >/dev/null 2>&1 || true
  # epmd outlives the broker: stop ours (on our port) too.
  epmd -port "$epmd_port" -kill >/dev/null 2>&1 || true
}

case $cmd in
  start)
    mkdir -p "$run"
    chmod 755 "$run"
    want=("$@")
    [ ${#want[@]} -eq 0 ] && want=(postgres rabbitmq)
    for s in "${want[@]}"; do "start_$s"; done
    ;;
  stop)
    stop_rabbitmq
    stop_postgres
    ;;
  ctl)
    # rabbitmqctl finds the broker's Erlang node only through our epmd port and node name, so it
    # must run with the environment the broker was started with (same PARLEY_*_PORT variables).
    # `ctl RUN_DIR stop_app` then `ctl RUN_DIR start_app` restarts RabbitMQ inside a live Erlang
    # node: clients lose their connections, and the node name and ports stay the same.
    [ -d "$run/rabbitmq" ] || { echo "servers.sh: no RabbitMQ under $run" >&2; exit 1; }
    rabbit_env
    exec rabbitmqctl -n "$rabbit_node" "$@"
    ;;
  *)
    echo "usage: servers.sh start|stop RUN_DIR [postgres] [rabbitmq] | ctl RUN_DIR ARGS..." >&2
    exit 2
    ;;
esac
