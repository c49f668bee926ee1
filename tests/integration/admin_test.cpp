// The admin flag and the dashboard's API (issue 4): `parleyd admin grant|revoke USER --store URL`
// against a running node's SQLite store; GET /api/v1/admin/nodes answers 401 without a valid
// token, 403 for a non-admin and 200 with this node's figures for an admin, and those figures
// follow the traffic.

#include <sys/wait.h>

#include <cstdio>

#include "fixture.hpp"

namespace parley::test {
namespace {

struct CmdResult {
  int code = -1;
  std::string output;  // stdout and stderr
};

CmdResult run_admin(const ServerProcess& s, const std::vector<std::string>& args,
                    bool with_store = true) {
  std::string cmd = "timeout 30 '" + parleyd_path() + "' admin";
  for (const auto& a : args) cmd += " '" + a + "'";
  if (with_store) cmd += " --store 'sqlite:" + (s.data_dir() / "parley.db").string() + "'";
  CmdResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return r;
}

// This node's entry of GET /api/v1/admin/nodes; throws unless 200.
json own_stats(const ServerProcess& s, const std::string& token) {
  auto res = s.http().get("/api/v1/admin/nodes", token);
  if (res.status != 200) {
    throw std::runtime_error("admin/nodes answered " + std::to_string(res.status) + ": " + res.body);
  }
  auto body = json::parse(res.body);
  for (const auto& n : body.at("nodes")) {
    if (n.at("node") == s.node_id()) return n;
  }
  throw std::runtime_error("admin/nodes has no entry for " + s.node_id() + ": " + res.body);
}

class Admin : public IntegrationTest {};

TEST_F(Admin, CommandGrantsAndRevokesAndReportsErrors) {
  auto& s = own();
  auto u = register_user(s, "adm");
  auto ok = run_admin(s, {"grant", u.name});
  EXPECT_EQ(ok.code, 0) << ok.output;
  EXPECT_NE(ok.output.find(u.name), std::string::npos) << ok.output;

  auto missing = run_admin(s, {"grant", "nobody-here"});
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no user nobody-here"), std::string::npos) << missing.output;

  auto usage = run_admin(s, {"promote", u.name});
  EXPECT_EQ(usage.code, 1);
  EXPECT_NE(usage.output.find("usage"), std::string::npos) << usage.output;

  auto bad_store = run_admin(s, {"grant", u.name, "--store", "mysql://x"}, false);
  EXPECT_EQ(bad_store.code, 1);
  EXPECT_NE(bad_store.output.find("cannot open the store"), std::string::npos) << bad_store.output;

  auto revoke = run_admin(s, {"revoke", u.name});
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
  ASSERT_EQ(run_admin(s, {"grant", admin.name}).code, 0);
  const json before = own_stats(s, admin.token);
  for (const char* k : {"ts", "connections", "sessions", "messages_received",
                        "messages_delivered", "send_to_ack", "bus_queue_depth",
                        "store_append_p99", "cpu_seconds", "rss_bytes"}) {
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
  ASSERT_EQ(run_admin(s, {"revoke", admin.name}).code, 0);
  EXPECT_EQ(s.http().get("/api/v1/admin/nodes", admin.token).status, 403u);
}

}  // namespace
}  // namespace parley::test
