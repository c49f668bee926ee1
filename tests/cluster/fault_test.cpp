// Faults under steady traffic: kill -9 of a node, RabbitMQ stopped and restarted, PostgreSQL
// stopped and restarted, a SIGTERM rolling restart of every node. 24 clients chat in 3 rooms
// (ChatLoad: reconnect and resume with cursors, outbox retried with the same client_msg_id) and
// the checker must find 0 acknowledged messages lost, 0 duplicates, 0 out of order.
//
// These tests stop servers every test shares (RabbitMQ, PostgreSQL) or load the machine: they
// run alone (RUN_SERIAL, see CMakeLists.txt).

#include <set>

#include "cluster/cluster_fixture.hpp"

namespace parley::cluster {
namespace {

using steady = std::chrono::steady_clock;

class ClusterFault : public ClusterTest {};

constexpr std::size_t kClients = 24;
constexpr std::size_t kRooms = 3;

LoadOptions load_options(std::vector<client::Endpoint> endpoints,
                         const std::vector<std::string>& rooms) {
  LoadOptions o;
  o.endpoints = std::move(endpoints);
  o.rooms = rooms;
  o.send_interval = 150ms;
  o.max_in_flight = 2;
  return o;
}

double sum_metric(Cluster& c, const std::string& name) {
  double sum = 0;
  for (std::size_t i = 0; i < c.size(); ++i) sum += metric(c.node(i), name);
  return sum;
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 of one of 3 nodes behind HAProxy: its clients reconnect through HAProxy and resume
//    with their cursors; unacknowledged sends are retried with the same client_msg_id.

TEST_F(ClusterFault, Kill9OfOneNodeLosesNothing) {
  auto& c = make_cluster();
  auto& h = make_haproxy("roundrobin");
  std::vector<std::string> rooms;
  auto users = make_users(kClients, kRooms, rooms);
  ChatLoad load(load_options({h.endpoint()}, rooms), users);
  load.start();
  ASSERT_TRUE(load.wait_progress(5, 60s)) << "the load did not get going";

  const std::string victim = c.node(1).node_id();
  std::set<std::size_t> on_victim;
  auto nodes = load.current_nodes();
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i] == victim) on_victim.insert(i);
  }
  ASSERT_FALSE(on_victim.empty()) << "no client is connected to " << victim;
  const auto acked_before = load.total_acked();
  c.node(1).kill9();
  const auto killed_at = steady::now();

  // Everyone, the victim's clients included, keeps chatting.
  EXPECT_TRUE(load.wait_more_acks(10, 60s)) << "some clients made no progress after the kill";
  EXPECT_TRUE(h.wait_server(victim, "DOWN", 10s)) << "HAProxy did not mark the dead node DOWN";
  EXPECT_TRUE(load.wait_more_acks(5, 60s));
  std::cout << on_victim.size() << " of " << kClients << " clients were on " << victim
            << "; acks before the kill " << acked_before << ", 10+ more each within "
            << ms_since(killed_at) << " ms" << std::endl;

  auto reports = finish_and_check(load, endpoint_of(c.node(0)), users, rooms);
  // The victim's clients reconnected through HAProxy to a live node and resumed with cursors.
  for (auto i : on_victim) {
    const auto& r = reports[i];
    bool resumed = false;
    for (const auto& k : r.connections) {
      if (k.node.empty() || k.node == victim) continue;
      std::uint64_t cursor_sum = 0;
      for (const auto& [room, seq] : k.cursors) cursor_sum += seq;
      if (cursor_sum > 0) resumed = true;
    }
    EXPECT_TRUE(resumed) << r.user << " never resumed on a live node with its cursors";
  }
}

// ---------------------------------------------------------------------------------------------
// 4. RabbitMQ stopped and restarted under traffic: sends still commit, nothing is lost, and the
//    nodes repair the gaps from the store (parley_gap_repairs_total) after reconnecting
//    (parley_bus_reconnects_total). Clients connect to the nodes directly: behind HAProxy every
//    node is DOWN while the bus is (its /readyz answers 503).

class RabbitGuard {
 public:
  explicit RabbitGuard(RabbitControl& r) : r_(r) {}
  ~RabbitGuard() {
    if (stopped_) {
      std::string why;
      r_.ctl({"start_app"}, why);
    }
  }
  bool stop(std::string& why) {
    stopped_ = true;
    return r_.ctl({"stop_app"}, why);
  }
  bool start(std::string& why) {
    bool ok = r_.ctl({"start_app"}, why);
    if (ok) stopped_ = false;
    return ok;
  }

 private:
  RabbitControl& r_;
  bool stopped_ = false;
};

TEST_F(ClusterFault, RabbitmqRestartLosesNothingAndRepairsGaps) {
  std::unique_ptr<RabbitControl> rabbit;
  ASSERT_NO_THROW(rabbit = std::make_unique<RabbitControl>());
  auto& c = make_cluster();
  std::vector<std::string> rooms;
  auto users = make_users(kClients, kRooms, rooms);
  ChatLoad load(load_options(c.endpoints(), rooms), users);
  load.start();
  ASSERT_TRUE(load.wait_progress(5, 60s)) << "the load did not get going";

  const double repairs_before = sum_metric(c, "parley_gap_repairs_total");
  std::vector<double> reconnects_before;
  for (std::size_t i = 0; i < c.size(); ++i) {
    reconnects_before.push_back(metric(c.node(i), "parley_bus_reconnects_total"));
  }
  RabbitGuard guard(*rabbit);
  std::string why;
  ASSERT_TRUE(guard.stop(why)) << why;
  const auto stopped_at = steady::now();
  // The bus is down: /readyz turns 503 and sends still commit and are acknowledged.
  for (std::size_t i = 0; i < c.size(); ++i) {
    EXPECT_TRUE(test::eventually(
        [&] {
          try {
            return c.node(i).http(2s).get("/readyz").status == 503;
          } catch (const std::exception&) {
            return false;
          }
        },
        10s))
        << c.node(i).node_id() << " still answers /readyz 200 with RabbitMQ stopped";
  }
  EXPECT_TRUE(load.wait_more_acks(5, 30s)) << "sends are not acknowledged while the bus is down";
  // Keep it down a while: many messages commit without reaching the other nodes.
  while (ms_since(stopped_at) < 3000) std::this_thread::sleep_for(50ms);
  std::cout << "RabbitMQ down for " << ms_since(stopped_at) << " ms; " << load.total_acked()
            << " acks so far" << std::endl;
  ASSERT_TRUE(guard.start(why)) << why;
  for (std::size_t i = 0; i < c.size(); ++i) {
    EXPECT_TRUE(wait_ready(c.node(i), 60s))
        << c.node(i).node_id() << " is not ready 60 s after RabbitMQ came back";
  }
  EXPECT_TRUE(load.wait_more_acks(5, 60s));

  finish_and_check(load, endpoint_of(c.node(0)), users, rooms);
  const double repairs_after = sum_metric(c, "parley_gap_repairs_total");
  std::cout << "parley_gap_repairs_total (all nodes): " << repairs_before << " -> " << repairs_after
            << std::endl;
  EXPECT_GT(repairs_after, repairs_before)
      << "messages committed while the bus was down must reach the other nodes' clients by gap "
         "repair from the store";
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double after = metric(c.node(i), "parley_bus_reconnects_total");
    std::cout << c.node(i).node_id() << " parley_bus_reconnects_total: " << reconnects_before[i]
              << " -> " << after << std::endl;
    EXPECT_GT(after, reconnects_before[i]) << c.node(i).node_id() << " did not count its reconnect";
  }
}

// ---------------------------------------------------------------------------------------------
// 5. PostgreSQL stopped under traffic: sends answer `unavailable`, the clients' retries with the
//    same client_msg_id succeed once it is back, nothing is lost or duplicated. Clients connect
//    to the nodes directly (behind HAProxy every node is DOWN while the store is).

class PgGuard {
 public:
  explicit PgGuard(PgControl& pg) : pg_(pg) {}
  ~PgGuard() {
    if (stopped_) {
      std::string why;
      pg_.start(why);
    }
  }
  bool stop(std::string& why) {
    stopped_ = true;
    return pg_.stop(why);
  }
  bool start(std::string& why) {
    bool ok = pg_.start(why);
    if (ok) stopped_ = false;
    return ok;
  }

 private:
  PgControl& pg_;
  bool stopped_ = false;
};

TEST_F(ClusterFault, PostgresqlStopAnswersUnavailableAndRetriesSucceed) {
  std::unique_ptr<PgControl> pg;
  ASSERT_NO_THROW(pg = std::make_unique<PgControl>());
  auto& c = make_cluster();
  std::vector<std::string> rooms;
  auto users = make_users(kClients, kRooms, rooms);
  ChatLoad load(load_options(c.endpoints(), rooms), users);
  load.start();
  ASSERT_TRUE(load.wait_progress(5, 60s)) << "the load did not get going";

  PgGuard guard(*pg);
  std::string why;
  ASSERT_TRUE(guard.stop(why)) << "pg_ctl stop failed: " << why;
  const auto stopped_at = steady::now();
  EXPECT_TRUE(test::eventually([&] { return load.total_unavailable() >= kClients; }, 20s))
      << "sends were not answered `unavailable` while PostgreSQL was down (got "
      << load.total_unavailable() << ")";
  while (ms_since(stopped_at) < 3000) std::this_thread::sleep_for(50ms);
  const auto acked_while_down = load.total_acked();
  std::cout << "PostgreSQL down for " << ms_since(stopped_at) << " ms; " << load.total_unavailable()
            << " unavailable answers" << std::endl;
  ASSERT_TRUE(guard.start(why)) << "pg_ctl start failed: " << why;
  for (std::size_t i = 0; i < c.size(); ++i) {
    EXPECT_TRUE(wait_ready(c.node(i), 60s))
        << c.node(i).node_id() << " is not ready 60 s after PostgreSQL came back";
  }
  EXPECT_TRUE(load.wait_more_acks(5, 60s)) << "sends did not succeed after PostgreSQL came back";
  EXPECT_GT(load.total_acked(), acked_while_down);

  auto reports = finish_and_check(load, endpoint_of(c.node(0)), users, rooms);
  std::uint64_t retried_ok = 0;
  for (const auto& r : reports) {
    for (const auto& g : r.generated) {
      if (g.saw_unavailable && g.acked) ++retried_ok;
    }
  }
  EXPECT_GT(retried_ok, 0u)
      << "no message answered `unavailable` was later acknowledged on a retry";
}

// ---------------------------------------------------------------------------------------------
// 6. SIGTERM rolling restart of all 3 nodes behind HAProxy under traffic: each node drains
//    (1001 closes), exits 0 and comes back on the same port; nothing is lost.

TEST_F(ClusterFault, RollingRestartWithSigtermLosesNothing) {
  auto& c = make_cluster();
  auto& h = make_haproxy("roundrobin");
  std::vector<std::string> rooms;
  auto users = make_users(kClients, kRooms, rooms);
  ChatLoad load(load_options({h.endpoint()}, rooms), users);
  load.start();
  ASSERT_TRUE(load.wait_progress(5, 60s)) << "the load did not get going";

  // Which clients each node had when it was told to stop.
  std::vector<std::set<std::size_t>> had(c.size());
  for (std::size_t n = 0; n < c.size(); ++n) {
    auto& node = c.node(n);
    auto nodes = load.current_nodes();
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] == node.node_id()) had[n].insert(i);
    }
    const auto t0 = steady::now();
    int status = -1;
    ASSERT_NO_THROW(status = node.terminate(30s)) << node.log_tail(30);
    EXPECT_EQ(status, 0) << node.node_id() << " did not exit 0 after SIGTERM";
    const auto drained_ms = ms_since(t0);
    node.restart();
    ASSERT_TRUE(wait_ready(node, 30s)) << node.node_id() << " not ready after its restart";
    ASSERT_TRUE(h.wait_server(node.node_id(), "UP", 20s))
        << "HAProxy does not see " << node.node_id() << " UP again";
    std::cout << node.node_id() << ": " << had[n].size() << " clients, drained and exited in "
              << drained_ms << " ms, back UP after " << ms_since(t0) << " ms" << std::endl;
    EXPECT_TRUE(load.wait_more_acks(3, 60s))
        << "clients stalled after restarting " << node.node_id();
  }

  auto reports = finish_and_check(load, endpoint_of(c.node(0)), users, rooms);
  std::uint64_t going_away = 0;
  for (std::size_t n = 0; n < c.size(); ++n) {
    for (auto i : had[n]) {
      bool saw = false;
      for (const auto& k : reports[i].connections) {
        if (k.node == c.node(n).node_id() && k.close_code == 1001) saw = true;
      }
      if (saw) ++going_away;
      EXPECT_TRUE(saw) << reports[i].user << " was on " << c.node(n).node_id()
                       << " when it got SIGTERM but saw no 1001 close from it";
      if (!saw) {
        for (const auto& e : reports[i].events) std::cerr << "  " << e << "\n";
      }
    }
  }
  EXPECT_GT(going_away, 0u);
}

}  // namespace
}  // namespace parley::cluster
