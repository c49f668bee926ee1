// The admin flag and the dashboard's API (issue 4): `parleyd admin grant|revoke USER --store URL`
// against a running node's SQLite store; GET /api/v1/admin/nodes answers 401 without a valid
// token, 403 for a non-admin and 200 with this node's figures for an admin, and those figures
// follow the traffic. In a cluster (PostgreSQL + RabbitMQ: PARLEY_TEST_PG_URL and
// PARLEY_TEST_AMQP_URL must be set; missing is a failure) each node also answers with the other
// node's figures, carried in its heartbeats, and drops a node that stopped.

#include <cstdlib>

#include "fixture.hpp"
#include "support/test_servers.hpp"

namespace parley::test {
namespace {

// The entries of GET /api/v1/admin/nodes on `s`, by node id; throws unless 200.
std::map<std::string, json> all_stats(const ServerProcess& s, const std::string& token) {
  auto res = s.http().get("/api/v1/admin/nodes", token);
  if (res.status != 200) {
    throw std::runtime_error("admin/nodes answered " + std::to_string(res.status) + ": " +
                             res.body);
  }
  std::map<std::string, json> out;
  const json body = json::parse(res.body);  // named: a range-for over a temporary's member dangles
  for (const auto& n : body.at("nodes")) out[n.at("node").get<std::string>()] = n;
  return out;
}

// This node's entry of GET /api/v1/admin/nodes; throws unless 200.
json own_stats(const ServerProcess& s, const std::string& token) {
  auto all = all_stats(s, token);
  auto it = all.find(s.node_id());
  if (it == all.end()) throw std::runtime_error("admin/nodes has no entry for " + s.node_id());
  return it->second;
}

class Admin : public IntegrationTest {};

TEST_F(Admin, CommandGrantsAndRevokesAndReportsErrors) {
  auto& s = own();
  auto u = register_user(s, "adm");
  auto ok = run_parleyd_admin(s, {"grant", u.name});
  EXPECT_EQ(ok.code, 0) << ok.output;
  EXPECT_NE(ok.output.find(u.name), std::string::npos) << ok.output;

  auto missing = run_parleyd_admin(s, {"grant", "nobody-here"});
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no user nobody-here"), std::string::npos) << missing.output;

  auto usage = run_parleyd_admin(s, {"promote", u.name});
  EXPECT_EQ(usage.code, 1);
  EXPECT_NE(usage.output.find("usage"), std::string::npos) << usage.output;

  auto bad_store = run_parleyd_admin(s, {"grant", u.name, "--store", "mysql://x"}, false);
  EXPECT_EQ(bad_store.code, 1);
  EXPECT_NE(bad_store.output.find("cannot open the store"), std::string::npos) << bad_store.output;

  auto revoke = run_parleyd_admin(s, {"revoke", u.name});
  EXPECT_EQ(revoke.code, 0) << revoke.output;
}

TEST_F(Admin, NodesEndpointRefusesAndThenReportsMovingFigures) {
  auto& s = own();
  auto admin = register_user(s, "adm");
  auto plain = register_user(s, "usr");

  EXPECT_EQ(s.http().get("/api/v1/admin/nodes").status, 401u);
  EXPECT_EQ(s.http().get("/api/v1/admin/nodes", "not-a-token").status, 401u);
  auto refused = s.http().get("/api/v1/admin/nodes", plain.token);
  EXPECT_EQ(refused.status, 403u);
  EXPECT_EQ(json::parse(refused.body)["error"]["code"], "forbidden");
  EXPECT_EQ(s.http().get("/api/v1/admin/nodes", admin.token).status, 403u);

  // The grant takes effect at once, for a token issued before it.
  ASSERT_EQ(run_parleyd_admin(s, {"grant", admin.name}).code, 0);
  const json before = own_stats(s, admin.token);
  for (const char* k :
       {"ts", "connections", "sessions", "messages_received", "messages_delivered", "send_to_ack",
        "bus_queue_depth", "store_append_p99", "cpu_seconds", "rss_bytes"}) {
    EXPECT_TRUE(before.contains(k)) << k << " missing in " << before.dump();
  }
  EXPECT_GT(before["rss_bytes"].get<double>(), 0);
  EXPECT_EQ(s.http().get("/api/v1/admin/nodes", plain.token).status, 403u);

  // Two sessions in one room, 20 messages from one to the other.
  Session sa(s, admin);
  Session sb(s, plain);
  const std::string room = unique_name("admroom");
  sa.create(room);
  sb.join(room);
  constexpr int kN = 20;
  for (int i = 0; i < kN; ++i) sa.send_message(room, "m" + std::to_string(i));
  for (int i = 0; i < kN; ++i) {
    sb.wait_for([&](const json& j) { return is_message(j, room); }, 10s, "a message");
  }
  json after;
  ASSERT_TRUE(eventually([&] {
    after = own_stats(s, admin.token);
    return after["messages_delivered"].get<double>() >=
           before["messages_delivered"].get<double>() + 2 * kN;
  }));
  EXPECT_EQ(after["connections"].get<double>(), before["connections"].get<double>() + 2);
  EXPECT_EQ(after["sessions"].get<double>(), before["sessions"].get<double>() + 2);
  EXPECT_EQ(after["messages_received"].get<double>(),
            before["messages_received"].get<double>() + kN);
  EXPECT_GE(after["send_to_ack"]["count"].get<double>(),
            before["send_to_ack"]["count"].get<double>() + kN);
  EXPECT_TRUE(after["send_to_ack"]["p50"].is_number()) << after.dump();
  EXPECT_TRUE(after["send_to_ack"]["p99"].is_number()) << after.dump();
  EXPECT_TRUE(after["store_append_p99"].is_number()) << after.dump();
  EXPECT_GT(after["ts"].get<double>(), before["ts"].get<double>());

  // Revoked: refused again.
  ASSERT_EQ(run_parleyd_admin(s, {"revoke", admin.name}).code, 0);
  EXPECT_EQ(s.http().get("/api/v1/admin/nodes", admin.token).status, 403u);
}

// Two nodes on one PostgreSQL and RabbitMQ: an account deleted through node A is dead on node B
// at once, although B had its token cached and a socket open.
TEST_F(Admin, AccountDeletionReachesEveryNode) {
  TestDatabase db;
  auto args = [&](const std::string& id) {
    auto a = default_server_args();
    for (auto& x : bus_args(db)) a.push_back(x);
    for (std::string x : {std::string("--store"), db.url(), std::string("--node-id"), id}) {
      a.push_back(x);
    }
    return a;
  };
  auto& na = own(args(unique_name("dela")));
  auto& nb = own(args(unique_name("delb")));
  auto u = register_user(na, "del");
  ASSERT_EQ(nb.http().get("/api/v1/rooms", u.token).status, 200u);  // B caches the token
  Session on_b(nb, u);
  auto res =
      na.http().request("DELETE", "/api/v1/users/me", json{{"password", u.password}}, u.token);
  ASSERT_EQ(res.status, 204u) << res.body;
  auto closed = on_b.wait_closed(5s);
  EXPECT_EQ(closed.kind, client::WsEvent::Kind::closed) << "B's socket stayed open";
  EXPECT_EQ(closed.close_code, 1008);
  EXPECT_EQ(closed.close_reason, "account deleted");
  EXPECT_EQ(nb.http().get("/api/v1/rooms", u.token).status, 401u);
}

TEST_F(Admin, EachNodeReportsItsPeersFromTheirHeartbeats) {
  TestDatabase db;
  auto args = [&](const std::string& id) {
    auto a = default_server_args();
    for (auto& x : bus_args(db)) a.push_back(x);
    for (std::string x : {std::string("--store"), db.url(), std::string("--node-id"), id,
                          std::string("--heartbeat-ms"), std::string("200"),
                          std::string("--node-timeout-ms"), std::string("1500")}) {
      a.push_back(x);
    }
    return a;
  };
  auto& na = own(args(unique_name("adma")));
  auto& nb = own(args(unique_name("admb")));
  auto admin = register_user(na, "adm");
  ASSERT_EQ(std::system(("timeout 30 '" + parleyd_path() + "' admin grant " + admin.name +
                         " --store '" + db.url() + "' >/dev/null 2>&1")
                            .c_str()),
            0);

  // Both nodes list both, whichever is asked.
  ASSERT_TRUE(eventually(
      [&] {
        auto a = all_stats(na, admin.token);
        auto b = all_stats(nb, admin.token);
        return a.count(nb.node_id()) == 1 && b.count(na.node_id()) == 1 && a.size() == 2 &&
               b.size() == 2;
      },
      10s));
  const json b0 = all_stats(na, admin.token).at(nb.node_id());

  // Traffic on B only: A reports B's figures moving (within a heartbeat or two).
  auto plain = register_user(nb, "usr");
  Session sb(nb, plain);
  const std::string room = unique_name("admroom");
  sb.create(room);
  constexpr int kN = 10;
  for (int i = 0; i < kN; ++i) sb.send_message(room, "m" + std::to_string(i));
  json b1;
  ASSERT_TRUE(eventually(
      [&] {
        b1 = all_stats(na, admin.token).at(nb.node_id());
        return b1["messages_received"].get<double>() >=
                   b0["messages_received"].get<double>() + kN &&
               b1["connections"].get<double>() >= b0["connections"].get<double>() + 1;
      },
      5s))
      << b1.dump();
  EXPECT_GT(b1["ts"].get<double>(), b0["ts"].get<double>());
  EXPECT_GT(b1["rss_bytes"].get<double>(), 0);

  // B stops: A drops it once it is silent for the node timeout.
  nb.terminate();
  EXPECT_TRUE(eventually([&] { return all_stats(na, admin.token).count(nb.node_id()) == 0; }, 8s));
  EXPECT_EQ(all_stats(na, admin.token).size(), 1u);
}

}  // namespace
}  // namespace parley::test
