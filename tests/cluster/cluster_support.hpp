#pragma once
// What the cluster tests need beyond tests/support: the shared PostgreSQL and RabbitMQ that the
// test command starts (a fresh database per test, stopping and starting either server), a
// cluster of real parleyd nodes sharing them, HAProxy in front of it (from deploy/haproxy.cfg.in),
// and small HTTP helpers (/readyz, /metrics, store history).
//
// Environment (exported by scripts/test.sh, which runs deploy/servers.sh start):
//   PARLEY_TEST_PG_URL       libpq URL of the test PostgreSQL (each test creates its own database)
//   PARLEY_TEST_AMQP_URL     AMQP URL of the test RabbitMQ
//   PARLEY_TEST_RABBIT_NODE  the broker's Erlang node name (RabbitMQ restart test)
//   PARLEY_TEST_SERVERS_DIR  the run directory given to deploy/servers.sh (RabbitMQ control with
//                            `deploy/servers.sh ctl`, PostgreSQL data in postgres/data)
//   PARLEY_TEST_PG_DATA, PARLEY_TEST_PG_OPTS  optional: PostgreSQL's data directory and pg_ctl -o
//                            options (else derived from PARLEY_TEST_SERVERS_DIR / postmaster.opts)
// A missing variable fails the test with a message saying how to run it; nothing is skipped.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/http_client.hpp"
#include "support/server_process.hpp"
#include "support/test_servers.hpp"
#include "support/test_util.hpp"

namespace parley::cluster {

using json = nlohmann::json;
using namespace std::chrono_literals;
using test::ServerProcess;

inline constexpr const char* kHowToRun =
    "the cluster tests need the PostgreSQL and RabbitMQ that scripts/test.sh starts; run them "
    "with scripts/test.sh, or start the servers with `deploy/servers.sh start DIR`, export the "
    "lines it prints and PARLEY_TEST_SERVERS_DIR=DIR (and the same PARLEY_*_PORT variables), "
    "then run ctest -L cluster";

using test::require_env;
using test::TestDatabase;
std::string env_or(const char* name, const std::string& fallback);

// The source tree (for deploy/).
std::filesystem::path source_dir();

// Runs argv (no shell), output (stdout and stderr) captured; kills it after `timeout`.
// Returns the exit status, or -1 when it could not run or timed out.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr,
                std::chrono::seconds timeout = 120s);

// A random loopback port in [20000, 32767] that is free right now.
std::uint16_t pick_free_port();

// ---------------------------------------------------------------------------------------------
// PostgreSQL

// Stops and starts the shared test PostgreSQL with pg_ctl as the postgres user.
class PgControl {
 public:
  PgControl();  // throws when the environment does not say where the server is
  // pg_ctl stop -m fast; returns false (and `why`) on failure.
  bool stop(std::string& why);
  bool start(std::string& why);
  const std::string& data_dir() const { return data_; }

 private:
  std::string data_;
  std::string opts_;
  std::string bin_;
};

// rabbitmqctl against the shared test RabbitMQ, through `deploy/servers.sh ctl`.
class RabbitControl {
 public:
  RabbitControl();  // throws when PARLEY_TEST_SERVERS_DIR is not set
  // Runs `deploy/servers.sh ctl DIR args...`; returns false and the output in `why` on failure.
  bool ctl(const std::vector<std::string>& args, std::string& why);

 private:
  std::string run_dir_;
};

// ---------------------------------------------------------------------------------------------
// Nodes

struct ClusterOptions {
  int nodes = 3;
  // Flags for every node, after the ones Cluster sets (store, bus, node id, rates, drain window).
  std::vector<std::string> extra_args;
};

// N parleyd nodes on one fresh database and the shared RabbitMQ. Nodes are started from the
// calling thread (ServerProcess children die with the thread that forked them): call start()
// and restart() from the test's main thread.
class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();

  // Starts every node and waits until each answers /readyz 200 (store and bus usable).
  void start();
  std::size_t size() const { return nodes_.size(); }
  ServerProcess& node(std::size_t i) { return *nodes_.at(i); }
  const std::string& database_url() const { return db_->url(); }
  // "http://…" of each node.
  std::vector<client::Endpoint> endpoints() const;
  // The node whose --node-id is `id`, or -1.
  int index_of(const std::string& node_id) const;
  // The end of every node's log, for failure reports.
  std::string logs(std::size_t lines = 80) const;

 private:
  std::unique_ptr<TestDatabase> db_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
};

// GET /readyz answers 200 within `timeout`.
bool wait_ready(const ServerProcess& node, std::chrono::milliseconds timeout);
// The sum of every series of metric `name` in GET /metrics (0 when absent); throws when the
// node does not answer.
double metric(const ServerProcess& node, const std::string& name);

// ---------------------------------------------------------------------------------------------
// HAProxy

// HAProxy started by the test from deploy/haproxy.cfg.in (`haproxy -f cfg -db` as a child),
// on ports of its own; killed on destruction.
class Haproxy {
 public:
  struct Server {
    std::string name;
    std::uint16_t port;
  };
  Haproxy(std::string balance, std::vector<Server> servers);
  ~Haproxy();
  Haproxy(const Haproxy&) = delete;
  Haproxy& operator=(const Haproxy&) = delete;

  // Starts it and waits until its stats page answers. Throws on failure.
  void start();
  void stop();
  std::uint16_t port() const { return port_; }
  std::uint16_t stats_port() const { return stats_port_; }
  client::Endpoint endpoint() const { return {"127.0.0.1", port_}; }

  // One row per backend server of the stats CSV: svname -> {column -> value}.
  std::map<std::string, std::map<std::string, std::string>> stats();
  // Waits until every backend server's status is `status` ("UP", "DOWN").
  bool wait_all(const std::string& status, std::chrono::milliseconds timeout);
  bool wait_server(const std::string& name, const std::string& status,
                   std::chrono::milliseconds timeout);
  std::string log_tail(std::size_t lines = 60) const;
  const std::filesystem::path& config_path() const { return cfg_; }

 private:
  std::string balance_;
  std::vector<Server> servers_;
  test::TempDir dir_;
  std::filesystem::path cfg_;
  std::filesystem::path log_;
  std::uint16_t port_ = 0;
  std::uint16_t stats_port_ = 0;
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------------
// HTTP helpers against any endpoint (a node or HAProxy).

// Registers a user (password derived from the name); returns its token.
std::string register_user(const client::Endpoint& at, const std::string& name);
// Every message of `room` (HTTP messages API, paged), ascending.
std::vector<json> room_history(const client::Endpoint& at, const std::string& token,
                               const std::string& room);
// GET /api/v1/rooms: room -> last_seq.
std::map<std::string, std::uint64_t> room_last_seqs(const client::Endpoint& at,
                                                    const std::string& token);

inline client::Endpoint endpoint_of(const ServerProcess& s) {
  return {s.host(), s.port()};
}

inline std::int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

}  // namespace parley::cluster
