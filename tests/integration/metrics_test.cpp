// Observability (issue 4): /metrics of every node passes `promtool check metrics` with no lint
// warning, and its figures are exact: the connection gauge equals the sockets the test holds
// open, message counters move by exactly what the test sent and what was delivered. Against
// SQLite + in-process bus, and against PostgreSQL + RabbitMQ with two nodes
// (PARLEY_TEST_PG_URL and PARLEY_TEST_AMQP_URL must be set: missing is a failure). A real
// Prometheus (/usr/bin/prometheus) scrapes a node and the figures are read back through its
// query API. With a node's bus consumer slowed its queue depth rises; with the store
// slowed (a PostgreSQL table lock) the store-latency histogram shows it.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <libpq-fe.h>

#include "fixture.hpp"
#include "support/test_servers.hpp"

namespace parley::test {
namespace {

// ---- helpers ---------------------------------------------------------------------------------

std::string scrape(const ServerProcess& s) {
  auto res = s.http().get("/metrics");
  if (res.status != 200) {
    throw std::runtime_error("GET /metrics answered " + std::to_string(res.status));
  }
  return res.body;
}

// The value of one series, written exactly as the exposition writes it (name and labels), e.g.
// `parley_requests_rejected_total{reason="forbidden"}`. nullopt when absent.
std::optional<double> sample(const std::string& body, const std::string& series) {
  std::istringstream lines(body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return std::nullopt;
}

double value(const std::string& body, const std::string& series) {
  auto v = sample(body, series);
  if (!v) throw std::runtime_error("series " + series + " missing from /metrics");
  return *v;
}

double value_of(const ServerProcess& s, const std::string& series) {
  return value(scrape(s), series);
}

// promtool check metrics: exit 0 and nothing printed (a lint problem prints a line and, in
// Debian 12's promtool, exits 3).
::testing::AssertionResult promtool_clean(const std::string& body, const std::string& node) {
  auto r = run_shell("/usr/bin/promtool check metrics", body);
  if (r.code != 0 || !r.output.empty()) {
    return ::testing::AssertionFailure()
           << "promtool check metrics on node " << node << ": exit " << r.code << ", output:\n"
           << r.output;
  }
  return ::testing::AssertionSuccess();
}

// A node of the test cluster on `db` (PostgreSQL + RabbitMQ, the cluster's own exchange).
std::vector<std::string> cluster_args(const TestDatabase& db, const std::string& node_id) {
  auto args = default_server_args();
  for (std::string a : {std::string("--store"), db.url(), std::string("--node-id"), node_id}) {
    args.push_back(a);
  }
  for (auto& a : bus_args(db)) args.push_back(a);
  return args;
}

// Registers two users on `sa` / `sb`, puts both in a fresh room and returns their sessions.
struct Pair {
  User a, b;
  std::string room;
  std::unique_ptr<Session> sa, sb;
};
Pair make_pair(const ServerProcess& server_a, const ServerProcess& server_b) {
  Pair p;
  p.a = register_user(server_a, "ma");
  p.b = register_user(server_b, "mb");
  p.room = unique_name("mroom");
  p.sa = std::make_unique<Session>(server_a, p.a);
  p.sa->create(p.room);
  p.sb = std::make_unique<Session>(server_b, p.b);
  p.sb->join(p.room);
  p.sa->barrier();
  p.sb->barrier();
  return p;
}

// Sends `n` messages from `from` and waits until `to` has received every one of them.
void exchange(Pair& p, int n) {
  for (int i = 0; i < n; ++i) p.sa->send_message(p.room, "metrics " + std::to_string(i));
  int got = 0;
  while (got < n) {
    p.sb->wait_for([&](const json& j) { return is_message(j, p.room); }, 10s, "a message");
    ++got;
  }
}

// Waits until `series` on `s` equals `want`; returns the last value seen.
double settle(const ServerProcess& s, const std::string& series, double want,
              std::chrono::milliseconds timeout = 5s) {
  double last = -1;
  eventually([&] { return (last = value_of(s, series)) == want; }, timeout);
  return last;
}

class Metrics : public IntegrationTest {};

// ---- 1. promtool and exact counters --------------------------------------------------------

TEST_F(Metrics, SqlitePromtoolCleanAndCountersExact) {
  auto& s = own();
  ASSERT_TRUE(promtool_clean(scrape(s), s.node_id())) << "before any traffic";

  const auto before = scrape(s);
  const double rx0 = value(before, "parley_messages_received_total");
  const double tx0 = value(before, "parley_messages_delivered_total");
  ASSERT_EQ(value(before, "parley_websocket_connections"), 0);

  auto p = make_pair(s, s);
  // Three more sockets that never authenticate: open connections, not sessions.
  std::vector<std::unique_ptr<client::WsClient>> raw;
  for (int i = 0; i < 3; ++i) raw.push_back(s.connect_ws());
  EXPECT_EQ(settle(s, "parley_websocket_connections", 5), 5);
  EXPECT_EQ(settle(s, "parley_sessions_authenticated", 2), 2);

  constexpr int kN = 25;
  exchange(p, kN);
  p.sa->barrier();
  p.sb->barrier();
  // Every message goes to both members (the sender's own copy included): 2 deliveries each.
  EXPECT_EQ(settle(s, "parley_messages_received_total", rx0 + kN), rx0 + kN);
  EXPECT_EQ(settle(s, "parley_messages_delivered_total", tx0 + 2 * kN), tx0 + 2 * kN);
  // And no more than that, a while later.
  std::this_thread::sleep_for(300ms);
  const auto after = scrape(s);
  EXPECT_EQ(value(after, "parley_messages_received_total"), rx0 + kN);
  EXPECT_EQ(value(after, "parley_messages_delivered_total"), tx0 + 2 * kN);
  EXPECT_GE(value(after, "parley_send_to_ack_seconds_count"), kN);
  EXPECT_GE(value(after, R"(parley_store_query_seconds_count{op="append"})"), kN);
  EXPECT_GT(value(after, "process_resident_memory_bytes"), 0);
  EXPECT_GT(value(after, "process_open_fds"), 0);
  EXPECT_NE(after.find("parley_build_info{version=\""), std::string::npos);
  EXPECT_NE(after.find("\",node=\"" + s.node_id() + "\"} 1\n"), std::string::npos);
  EXPECT_TRUE(promtool_clean(after, s.node_id())) << "after traffic";

  raw.clear();
  p.sa.reset();
  EXPECT_EQ(settle(s, "parley_websocket_connections", 1), 1);
  EXPECT_EQ(settle(s, "parley_sessions_authenticated", 1), 1);
  p.sb.reset();
  EXPECT_EQ(settle(s, "parley_websocket_connections", 0), 0);
  EXPECT_EQ(settle(s, "parley_sessions_authenticated", 0), 0);
}

TEST_F(Metrics, PostgresRabbitmqPromtoolCleanOnEveryNodeAndCountersExact) {
  TestDatabase db;
  auto& na = own(cluster_args(db, unique_name("obsa")));
  auto& nb = own(cluster_args(db, unique_name("obsb")));
  ASSERT_TRUE(eventually(
      [&] {
        return value_of(na, "parley_bus_connected") == 1 &&
               value_of(nb, "parley_bus_connected") == 1;
      },
      10s));

  auto p = make_pair(na, nb);
  // B's queue is bound to the room's topic asynchronously after the join; a message published
  // before that reaches B only through gap repair from the store (delivery on the bus is at
  // most once). Wait until a message arrives at B over the bus, so that every message below
  // does and the bus counters are exact.
  bool bound = false;
  for (int i = 0; i < 50 && !bound; ++i) {
    p.sa->send_message(p.room, "warm-up " + std::to_string(i));
    try {
      p.sb->wait_for([&](const json& j) { return is_message(j, p.room); }, 500ms, "a warm-up");
      bound = true;
    } catch (const std::runtime_error&) {
    }
  }
  ASSERT_TRUE(bound) << "no message reached B over the bus";
  p.sa->barrier();
  p.sb->barrier();
  const double rxa0 = value_of(na, "parley_messages_received_total");
  const double rxb0 = value_of(nb, "parley_messages_received_total");
  const double consumed_b0 = value_of(nb, "parley_bus_consumed_total");
  const double published_a0 = value_of(na, "parley_bus_published_total");
  // Delivered counts may still move for the warm-up's repaired messages: wait until they settle.
  double txa0 = -1, txb0 = -1;
  ASSERT_TRUE(eventually(
      [&] {
        const double a = value_of(na, "parley_messages_delivered_total");
        const double b = value_of(nb, "parley_messages_delivered_total");
        const bool same = a == txa0 && b == txb0;
        txa0 = a;
        txb0 = b;
        return same;
      },
      5s));

  auto extra = na.connect_ws();
  EXPECT_EQ(settle(na, "parley_websocket_connections", 2), 2);
  EXPECT_EQ(settle(nb, "parley_websocket_connections", 1), 1);

  constexpr int kN = 20;
  exchange(p, kN);
  p.sa->barrier();
  // Sent on A only; each node delivers to its own member of the room.
  EXPECT_EQ(settle(na, "parley_messages_received_total", rxa0 + kN), rxa0 + kN);
  EXPECT_EQ(settle(nb, "parley_messages_received_total", rxb0), rxb0);
  EXPECT_EQ(settle(na, "parley_messages_delivered_total", txa0 + kN), txa0 + kN);
  EXPECT_EQ(settle(nb, "parley_messages_delivered_total", txb0 + kN), txb0 + kN);
  std::this_thread::sleep_for(300ms);
  for (auto* n : {&na, &nb}) {
    const auto body = scrape(*n);
    EXPECT_TRUE(promtool_clean(body, n->node_id()));
    EXPECT_EQ(value(body, "parley_bus_connected"), 1);
    EXPECT_EQ(value(body, "parley_store_ready"), 1);
    EXPECT_TRUE(sample(body, "parley_bus_queue_depth").has_value());
  }
  EXPECT_EQ(value_of(na, "parley_messages_delivered_total"), txa0 + kN);
  EXPECT_EQ(value_of(nb, "parley_messages_delivered_total"), txb0 + kN);
  // Heartbeats travel on the bus too, so these may exceed kN, never fall short of it.
  EXPECT_GE(value_of(nb, "parley_bus_consumed_total") - consumed_b0, kN);
  EXPECT_GE(value_of(na, "parley_bus_published_total") - published_a0, kN);
}

// ---- 2. real Prometheus ----------------------------------------------------------------------

// Debian's Prometheus on a free loopback port below 32768, scraping `targets` every second, with
// a temporary TSDB. Killed on destruction.
class Prometheus {
 public:
  explicit Prometheus(const std::vector<std::string>& targets) {
    port_ = static_cast<std::uint16_t>(20000 + (::getpid() * 7 + 13) % 9000);
    std::string t;
    for (const auto& x : targets) t += (t.empty() ? "'" : ", '") + x + "'";
    {
      std::ofstream cfg(dir_.path() / "prometheus.yml");
      cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          << "scrape_configs:\n  - job_name: parleyd\n    static_configs:\n      - targets: [" << t
          << "]\n";
    }
    log_ = dir_.path() / "prometheus.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string cfg = "--config.file=" + (dir_.path() / "prometheus.yml").string();
      const std::string tsdb = "--storage.tsdb.path=" + (dir_.path() / "tsdb").string();
      const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
      std::FILE* f = std::fopen(log_.c_str(), "w");
      if (f) {
        ::dup2(fileno(f), 1);
        ::dup2(fileno(f), 2);
      }
      ::execl("/usr/bin/prometheus", "prometheus", cfg.c_str(), tsdb.c_str(), listen.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const bool ready = eventually(
        [&] {
          try {
            return http().get("/-/ready").status == 200;
          } catch (const std::exception&) {
            return false;  // not listening yet
          }
        },
        20s);
    if (!ready) {
      const auto l = log();
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      throw std::runtime_error("prometheus did not become ready:\n" + l);
    }
  }
  ~Prometheus() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  client::HttpClient http() const { return client::HttpClient("127.0.0.1", port_, 5s); }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  // The value of an instant query returning one series, or nullopt (no data yet).
  std::optional<double> query(const std::string& promql) {
    std::string enc;
    for (unsigned char c : promql) {
      if (std::isalnum(c) || c == '_' || c == '.' || c == '-') {
        enc += static_cast<char>(c);
      } else {
        char b[4];
        std::snprintf(b, sizeof b, "%%%02X", c);
        enc += b;
      }
    }
    auto res = http().get("/api/v1/query?query=" + enc);
    if (res.status != 200) return std::nullopt;
    auto j = res.json();
    if (j.value("status", "") != "success") return std::nullopt;
    const auto& r = j["data"]["result"];
    if (!r.is_array() || r.size() != 1) return std::nullopt;
    return std::stod(r[0]["value"][1].get<std::string>());
  }
  // Waits until `promql` evaluates to `want`; returns the last value (NaN when none).
  double await(const std::string& promql, double want, std::chrono::milliseconds t = 15s) {
    double last = std::nan("");
    eventually(
        [&] {
          auto v = query(promql);
          if (v) last = *v;
          return v && *v == want;
        },
        t);
    return last;
  }

 private:
  TempDir dir_;
  std::filesystem::path log_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(Metrics, PrometheusQueryApiSeesExactConnectionsAndMessages) {
  auto& s = own();
  const std::string target = s.host() + ":" + std::to_string(s.port());
  Prometheus prom({target});
  const std::string sel = "{instance=\"" + target + "\"}";
  ASSERT_EQ(prom.await("up" + sel, 1), 1) << prom.log();
  ASSERT_EQ(prom.await("parley_websocket_connections" + sel, 0), 0);
  const double rx0 = value_of(s, "parley_messages_received_total");
  const double tx0 = value_of(s, "parley_messages_delivered_total");
  ASSERT_EQ(prom.await("parley_messages_received_total" + sel, rx0), rx0);
  ASSERT_EQ(prom.await("parley_messages_delivered_total" + sel, tx0), tx0);

  auto p = make_pair(s, s);
  std::vector<std::unique_ptr<client::WsClient>> raw;
  for (int i = 0; i < 4; ++i) raw.push_back(s.connect_ws());
  EXPECT_EQ(prom.await("parley_websocket_connections" + sel, 6), 6);
  EXPECT_EQ(prom.await("parley_sessions_authenticated" + sel, 2), 2);

  constexpr int kN = 17;
  exchange(p, kN);
  EXPECT_EQ(prom.await("parley_messages_received_total" + sel, rx0 + kN), rx0 + kN);
  EXPECT_EQ(prom.await("parley_messages_delivered_total" + sel, tx0 + 2 * kN), tx0 + 2 * kN);

  raw.resize(1);
  EXPECT_EQ(prom.await("parley_websocket_connections" + sel, 3), 3);
}

// ---- 3. queue depth and store latency --------------------------------------------------------

// B's consumer is slowed (--bus-consume-delay-ms: its bus thread sleeps per AMQP message) while
// A publishes one typing event per round trip into B's queue: past the 256 messages the broker
// pushes ahead (prefetch), they wait in the queue, and B, still serving HTTP, reports them.
// (An earlier version SIGSTOPped B: a stopped process cannot be scraped, and a pause longer than
// the AMQP heartbeat timeout makes the broker close B's connection and delete its exclusive
// queue, backlog included, so B came back with a depth of 0.)
TEST_F(Metrics, QueueDepthRisesWhileANodesConsumerIsSlowed) {
  TestDatabase db;
  // A publishes the typing events: their rate limit is raised.
  auto fast_args = cluster_args(db, unique_name("obsqa"));
  fast_args.insert(fast_args.end(), {"--typing-rate", "1000000", "--typing-burst", "1000000"});
  auto& na = own(fast_args);
  auto slow_args = cluster_args(db, unique_name("obsqb"));
  slow_args.insert(slow_args.end(), {"--bus-consume-delay-ms", "5"});
  auto& nb = own(slow_args);
  ASSERT_TRUE(eventually(
      [&] {
        return value_of(na, "parley_bus_connected") == 1 &&
               value_of(nb, "parley_bus_connected") == 1;
      },
      10s));
  auto p = make_pair(na, nb);  // B's session subscribes B's queue to the room
  std::vector<std::string> rooms{p.room};
  for (int i = 1; i < 20; ++i) {
    rooms.push_back(unique_name("mqroom"));
    p.sa->create(rooms.back());
    p.sb->join(rooms.back());
  }
  p.sa->barrier();
  p.sb->barrier();
  // Idle: nothing waits in B's queue.
  EXPECT_TRUE(eventually([&] { return value_of(nb, "parley_bus_queue_depth") == 0; }, 10s));

  // Publish for up to 6 s, stopping once B reports a backlog of 50 (B takes in at most 200
  // messages a second); B is scraped meanwhile from another thread.
  std::atomic<bool> done{false};
  std::atomic<double> max_depth{0};
  std::thread watcher([&] {
    while (!done.load()) {
      const double d = value_of(nb, "parley_bus_queue_depth");
      if (d > max_depth.load()) max_depth.store(d);
      std::this_thread::sleep_for(20ms);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  int rounds = 0;
  while (max_depth.load() < 50 && std::chrono::steady_clock::now() - t0 < 6s) {
    // One typing event per room, 20 rooms per round trip: A's bus thread packs the events it
    // has queued for one routing key into one AMQP message, so events of one room sent together
    // would make few messages; events of different rooms never share one. Paced by the clock at
    // 1,000 events (so about 1,000 AMQP messages) a second, five times what B takes in, so that
    // a slow build (ASan) keeps the pace and the backlog passes 50 within a second or two and,
    // once the gauge (polled once a second) has shown it, still drains in seconds.
    for (const auto& r : rooms) p.sa->send({{"type", "typing"}, {"room", r}});
    p.sa->barrier();
    rounds += static_cast<int>(rooms.size());
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(rounds));
  }
  // The gauge is polled once a second: give it one more check.
  eventually([&] { return max_depth.load() >= 50; }, 2500ms);
  done.store(true);
  watcher.join();
  EXPECT_GE(max_depth.load(), 50) << rounds << " typing events published";
  // And B drains it.
  double last = -1;
  EXPECT_TRUE(eventually([&] { return (last = value_of(nb, "parley_bus_queue_depth")) == 0; }, 60s))
      << "depth still " << last;
}

TEST_F(Metrics, StoreLatencyHistogramShowsASlowStore) {
  TestDatabase db;
  auto& n = own(cluster_args(db, unique_name("obss")));
  auto p = make_pair(n, n);
  const std::string over = R"(parley_store_query_seconds_bucket{op="append",le="0.5"})";
  const std::string count = R"(parley_store_query_seconds_count{op="append"})";
  p.sa->send_message(p.room, "fast");
  auto body = scrape(n);
  ASSERT_EQ(value(body, count) - value(body, over), 0) << "no append took 0.5 s yet";

  // Lock the rooms table on a connection of the test's own, and release it only once the
  // node's append has been seen waiting for it (pg_stat_activity) and 0.6 s more have passed:
  // the append then takes at least 0.6 s however slow the machine is, with no guess of how long
  // the send needs to reach the database.
  PGconn* locker = PQconnectdb(db.url().c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK) << PQerrorMessage(locker);
  auto exec = [&](const char* sql) {
    PGresult* r = PQexec(locker, sql);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    std::string first = ok && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    EXPECT_TRUE(ok) << sql << ": " << PQerrorMessage(locker);
    return first;
  };
  exec("BEGIN");
  exec("LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE");
  std::thread sender([&] { p.sa->send_message(p.room, "slow"); });
  // Bounded by the test's timeout; one poll per 20 ms.
  while (exec("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
              "AND datname = current_database() AND pid <> pg_backend_pid()") == "0") {
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(600ms);
  exec("COMMIT");
  sender.join();
  PQfinish(locker);
  body = scrape(n);
  EXPECT_GE(value(body, count) - value(body, over), 1)
      << "the slow append is not in a bucket above 0.5 s";
  EXPECT_GE(value(body, R"(parley_store_query_seconds_sum{op="append"})"), 0.5);
  EXPECT_TRUE(promtool_clean(body, n.node_id()));
}

}  // namespace
}  // namespace parley::test
