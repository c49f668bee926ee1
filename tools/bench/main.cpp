// parley-bench: the load generator for Parley. See docs/benchmarks.md for the method and the
// exact commands; `parley-bench <scenario> --help` for every option.
//
// The server's per-user send limit must be raised for benchmarks:
//   parleyd --send-rate 1000000 --send-burst 1000000 --register-burst-per-ip 0

#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "bench/scenarios.hpp"

using namespace parley::bench;

namespace {

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void add_common(CLI::App* app, CommonOptions& c) {
  app->add_option("--url", c.url, "server (a node or HAProxy): http://host:port")
      ->capture_default_str();
  app->add_option("--threads", c.threads, "generator event-loop threads")->capture_default_str();
  app->add_option("-d,--duration", c.duration_s, "measurement window, seconds")
      ->capture_default_str();
  app->add_option("-w,--warmup", c.warmup_s, "warm-up before the window, seconds")
      ->capture_default_str();
  app->add_option("--drain", c.drain_s,
                  "after the window, wait at most this long for replies, seconds")
      ->capture_default_str();
  app->add_option("--user-prefix", c.user_prefix, "benchmark users are <prefix>0, <prefix>1, ...")
      ->capture_default_str();
  app->add_option("--password", c.password, "password of the benchmark users")
      ->capture_default_str();
  app->add_option("--token-file", c.token_file,
                  "token cache (default $TMPDIR/parley-bench-<host>-<port>-<prefix>.tokens)");
  app->add_option("--register-concurrency", c.register_concurrency, "parallel registrations")
      ->capture_default_str();
  app->add_option(
      "--metrics-url", c.metrics_urls,
      "node(s) whose /metrics give server CPU and RSS (default: --url; repeat for a cluster)");
  app->add_option("--server-pid", c.server_pids,
                  "read server CPU and RSS from /proc/<pid> (repeatable)");
  app->add_flag("--no-metrics", c.no_metrics, "do not scrape /metrics");
  app->add_option("--source-ips", c.source_ips,
                  "spread connections over 127.0.0.1..127.0.0.N (0: one per 10,000 connections)")
      ->capture_default_str();
  app->add_option("--open-concurrency", c.open_concurrency,
                  "handshakes in flight while opening connections")
      ->capture_default_str();
  app->add_option("--label", c.label, "free text copied to the JSON line");
  app->add_flag("-q,--quiet", c.quiet, "no progress on stderr");
}

void add_traffic(CLI::App* app, TrafficOptions& t, bool fanout, bool rooms) {
  if (fanout)
    app->add_option("-n,--connections", t.connections, "connections in the room")
        ->capture_default_str();
  if (rooms) {
    app->add_option("--rooms", t.rooms, "rooms (default 10)");
    app->add_option("--room-size", t.room_size, "connections per room (default 100)");
  }
  app->add_option("-u,--users", t.users,
                  fanout ? "users the connections are spread over (default min(N, 1000))"
                         : "users (default: one per connection)");
  app->add_option("-s,--senders", t.senders,
                  fanout  ? "sending connections (default 10)"
                  : rooms ? "sending connections, spread over the rooms (default: one per room)"
                          : "senders, each alone in its own room (default 100)");
  app->add_option("-r,--rate", t.rate,
                  "total messages per second, open loop (default fanout/rooms 1000, ingest 10000); "
                  "the start rate for --max");
  app->add_option("-b,--size", t.body_bytes, "message body bytes")->capture_default_str();
  app->add_option("--tick-us", t.tick_us, "pacing timer period, microseconds")
      ->capture_default_str();
  app->add_flag("--max", t.max, "search for the highest rate meeting --max-p99-ms and --min-ratio");
  app->add_option(
      "--max-p99-ms", t.max_p99_ms,
      "latency bound for --max: p99 end-to-end (ingest: p99 ack); default 50 (ingest 10)");
  app->add_option("--min-ratio", t.min_ratio, "delivery ratio bound for --max")
      ->capture_default_str();
  app->add_option("--max-steps", t.max_steps, "trials of the --max search")->capture_default_str();
  app->add_option("--max-factor", t.max_factor,
                  "rate multiplier while the --max search still passes")
      ->capture_default_str();
  app->add_flag("!--no-cleanup", t.cleanup, "keep the benchmark rooms' memberships at the end");
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  CLI::App app{
      "parley-bench: load generator for Parley (raw WebSocket over epoll).\n"
      "Raise the server's limits first: parleyd --send-rate 1000000 --send-burst 1000000 "
      "--register-burst-per-ip 0",
      "parley-bench"};
  app.require_subcommand(1);

  CommonOptions fan_c, rooms_c, ingest_c, idle_c, conn_c;
  TrafficOptions fan_t, rooms_t, ingest_t;
  IdleOptions idle_o;
  ConnectOptions conn_o;

  auto* fan =
      app.add_subcommand("fanout", "N connections in one room, S senders at a fixed total rate");
  add_common(fan, fan_c);
  add_traffic(fan, fan_t, true, false);

  auto* rooms =
      app.add_subcommand("rooms", "R rooms of K connections, senders spread over the rooms");
  add_common(rooms, rooms_c);
  add_traffic(rooms, rooms_t, false, true);

  auto* ingest = app.add_subcommand(
      "ingest", "committed sends per second and ack latency (each sender in its own room)");
  add_common(ingest, ingest_c);
  add_traffic(ingest, ingest_t, false, false);

  auto* idle = app.add_subcommand(
      "idle", "N authenticated connections held with pings: server RSS per connection, idle CPU");
  add_common(idle, idle_c);
  idle->add_option("-n,--connections", idle_o.connections, "connections")->capture_default_str();
  idle->add_option("-u,--users", idle_o.users,
                   "users the connections are spread over (default min(N, 1000))");
  idle->add_option("--ping-interval", idle_o.ping_interval_s,
                   "seconds between pings per connection")
      ->capture_default_str();
  idle->add_option("--settle", idle_o.settle_s, "seconds to wait after opening before measuring")
      ->capture_default_str();

  auto* conn = app.add_subcommand(
      "connect", "handshakes + auth per second (TCP, upgrade, auth by token, welcome)");
  add_common(conn, conn_c);
  conn->add_option("-c,--concurrency", conn_o.concurrency, "connections in flight")
      ->capture_default_str();
  conn->add_option("-u,--users", conn_o.users, "users whose tokens are cycled")
      ->capture_default_str();

  DiskOptions disk_o;
  auto* disk = app.add_subcommand(
      "disk", "the disk's fdatasync latency, the floor under every durable ack (no server)");
  disk->add_option("--dir", disk_o.dir, "directory on the store's disk")->capture_default_str();
  disk->add_option("-n,--writes", disk_o.writes, "durable writes per phase")->capture_default_str();
  disk->add_option("--size", disk_o.size, "bytes per write")->capture_default_str();
  disk->add_option("--label", disk_o.label, "free text copied to the JSON line");

  CLI11_PARSE(app, argc, argv);
  try {
    if (fan->parsed()) return run_traffic("fanout", fan_c, fan_t);
    if (rooms->parsed()) return run_traffic("rooms", rooms_c, rooms_t);
    if (ingest->parsed()) return run_traffic("ingest", ingest_c, ingest_t);
    if (idle->parsed()) return run_idle(idle_c, idle_o);
    if (conn->parsed()) return run_connect(conn_c, conn_o);
    if (disk->parsed()) return run_disk(disk_o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parley-bench: %s\n", e.what());
    return 1;
  }
  return 2;
}
