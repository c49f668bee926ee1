// The process as operators see it: kill -9 loses no acknowledged message, SIGTERM drains
// (clients get 1001 "going away") and exits 0, a restart keeps users, rooms and messages, and
// bad start-up arguments (a bad exchange name included) fail fast with a clear line.

#include <cstdio>
#include <fstream>
#include <set>

#include "fixture.hpp"

namespace parley::test {
namespace {

class Lifecycle : public IntegrationTest {};

TEST_F(Lifecycle, EveryAcknowledgedMessageSurvivesKill9) {
  auto& srv = own();
  auto alice = register_user(srv, "alice");
  auto room = unique_name("crash");
  constexpr int total = 300;
  std::map<std::string, json> acked;  // client_msg_id -> ack
  {
    Session a(srv, alice);
    a.create(room);
    // All sends at once; the server dies while they are being committed.
    for (int i = 0; i < total; ++i) {
      auto id = "k" + std::to_string(i);
      a.send({{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", "body " + id}});
    }
    bool killed = false;
    for (;;) {
      auto ev = a.ws().receive(10s);
      if (!ev.is_text()) break;  // the connection died with the server
      auto j = ev.json();
      if (j.value("type", "") == "ack") {
        acked[j.value("client_msg_id", "")] = j;
        if (acked.size() == total / 2 && !killed) {
          srv.kill9();
          killed = true;
        }
      }
    }
    ASSERT_TRUE(killed) << "only " << acked.size() << " acks arrived";
  }
  srv.restart();
  auto token = login_token(srv, alice);
  auto stored = all_messages_http(srv, token, room);
  std::map<std::string, json> by_id;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].value("seq", 0ULL), i + 1) << "seqs stay gapless across the crash";
    by_id[stored[i].value("client_msg_id", "")] = stored[i];
  }
  for (const auto& [id, ack] : acked) {
    auto it = by_id.find(id);
    ASSERT_NE(it, by_id.end()) << "acknowledged message " << id << " (seq " << ack["seq"]
                               << ") was lost";
    EXPECT_EQ(it->second.value("seq", 0), ack.value("seq", -1)) << id;
    EXPECT_EQ(it->second.value("ts", 0LL), ack.value("ts", -1LL)) << id;
    EXPECT_EQ(it->second.value("body", ""), "body " + id);
  }
  // The client retries everything it has no ack for, with the same ids: afterwards each
  // message exists exactly once, acked ones keep their seq, and no seq is reused.
  Session a(srv, token);
  for (int i = 0; i < total; ++i) {
    auto id = "k" + std::to_string(i);
    auto ack = a.send_message(room, "body " + id, id);
    if (acked.count(id)) {
      EXPECT_EQ(ack.value("seq", 0), acked[id].value("seq", -1)) << "retry of acked " << id;
      EXPECT_EQ(ack.value("ts", 0LL), acked[id].value("ts", -1LL)) << "retry of acked " << id;
    }
  }
  stored = all_messages_http(srv, token, room);
  ASSERT_EQ(stored.size(), static_cast<std::size_t>(total));
  std::set<std::string> ids;
  for (std::size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].value("seq", 0ULL), i + 1);
    EXPECT_TRUE(ids.insert(stored[i].value("client_msg_id", "")).second) << stored[i].dump();
  }
  EXPECT_EQ(a.send_message(room, "after").value("seq", 0), total + 1);
}

TEST_F(Lifecycle, SigtermClosesSockets1001AndExitsZeroAndRestartKeepsEverything) {
  auto& srv = own();
  auto alice = register_user(srv, "alice");
  auto room = unique_name("term");
  Session a(srv, alice);
  a.create(room, /*is_private=*/true);
  a.send_message(room, "kept");
  EXPECT_EQ(srv.http().get("/readyz").status, 200);

  int status = srv.terminate(15s);
  EXPECT_EQ(status, 0) << "SIGTERM drains and exits 0";
  auto closed = a.wait_closed(5s);
  ASSERT_TRUE(closed.is_closed()) << closed.describe();
  EXPECT_EQ(closed.close_code, 1001) << closed.describe();
  EXPECT_EQ(closed.close_reason, "going away") << closed.describe();

  srv.restart();
  auto token = login_token(srv, alice);  // the account survived
  auto rooms = rooms_of(srv, token);
  ASSERT_EQ(rooms.count(room), 1u);
  EXPECT_EQ(rooms[room].value("kind", ""), "private");
  EXPECT_EQ(rooms[room].value("last_seq", 0), 1);
  auto stored = all_messages_http(srv, token, room);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].value("body", ""), "kept");
  // The client resumes on the restarted node from its cursor.
  Session again(srv, token, {{room, 0}});
  ASSERT_EQ(again.replayed().size(), 1u);
  EXPECT_EQ(again.replayed()[0].value("body", ""), "kept");
}

TEST_F(Lifecycle, ConfigFileKeysAreTheFlagNames) {
  TempDir scratch;
  auto config = scratch.path() / "parleyd.toml";
  std::ofstream(config) << "# a burst of 2 and a slow refill\nsend-burst = 2\nsend-rate = 0.1\n";
  auto& srv = own({"--config", config.string()});
  auto u = register_user(srv, "cfg");
  Session s(srv, u);
  auto room = unique_name("cfg");
  s.create(room);
  EXPECT_EQ(s.send_message(room, "one").value("type", ""), "ack");
  EXPECT_EQ(s.send_message(room, "two").value("type", ""), "ack");
  auto third =
      s.request({{"type", "send"}, {"room", room}, {"client_msg_id", "three"}, {"body", "3"}});
  EXPECT_TRUE(is_ws_error(third, "rate_limited"))
      << "send-burst = 2 from the config file: " << third.dump();
}

TEST_F(Lifecycle, BadStartupArgumentsExitNonZeroWithAClearLine) {
  const auto bin = parleyd_path();
  ASSERT_FALSE(bin.empty()) << "no parleyd binary configured";
  TempDir scratch;
  const auto dir = scratch.path().string();
  {
    auto [code, out] = run_shell("timeout 10 " + bin + " --no-such-flag");
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(code, 124) << "it hung instead of refusing the flag";
    EXPECT_NE(out.find("no-such-flag"), std::string::npos)
        << "the message names the bad flag: " << out;
  }
  {
    // A path below a regular file can never be opened, whatever the server creates.
    std::FILE* f = std::fopen((dir + "/plain-file").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
    auto [code, out] = run_shell(
        "timeout 10 " + bin + " --listen 127.0.0.1:1 --store sqlite:" + dir + "/plain-file/x.db");
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(code, 124) << "it hung instead of failing on the store";
    EXPECT_FALSE(out.empty());
  }
  {
    std::string config = dir + "/bad.toml";
    std::FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("listen = [this is not toml\n", f);
    std::fclose(f);
    auto [code, out] = run_shell("timeout 10 " + bin + " --config " + config);
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(code, 124) << "it hung instead of refusing the config file";
    EXPECT_FALSE(out.empty());
  }
  {
    auto [code, out] = run_shell("timeout 10 " + bin + " --help");
    EXPECT_EQ(code, 0) << out;
    for (const char* flag : {"--listen", "--store", "--bus", "--bus-exchange", "--node-id",
                             "--threads", "--web-root", "--config", "--send-rate", "--send-burst",
                             "--max-frame-bytes", "--write-queue-bytes", "--auth-timeout-ms"}) {
      EXPECT_NE(out.find(flag), std::string::npos) << "--help does not list " << flag;
    }
  }
}

// --bus-exchange is checked while the flags are parsed, whatever --bus says: a name the broker
// would refuse, or one of its reserved amq.* names, is a bad flag value like any other (exit
// status 2 and one line on stderr naming the flag, the rule and the value), instead of a node that
// retries a doomed exchange.declare forever, or one that accepts the name with --bus inproc. No
// broker is needed: the AMQP URL points at a closed port.
TEST_F(Lifecycle, BadBusExchangeNameExitsNonZeroWithAClearLineOnStderr) {
  const auto bin = parleyd_path();
  ASSERT_FALSE(bin.empty()) << "no parleyd binary configured";
  TempDir scratch;
  // Only stderr is captured: inside the braces it goes to the pipe and stdout to /dev/null.
  auto start = [&](const std::string& bus, const std::string& exchange, int seconds) {
    return run_shell("{ timeout " + std::to_string(seconds) + " '" + bin +
                     "' --listen 127.0.0.1:0 --store 'sqlite:" + scratch.path().string() +
                     "/p.db' --bus " + bus + " --bus-exchange '" + exchange +
                     "' 2>&1 >/dev/null; }");
  };
  for (const std::string bus : {"amqp://guest:guest@127.0.0.1:1/", "inproc"}) {
    for (const std::string& name :
         {std::string(), std::string("amq.parley"), std::string("parley events"),
          std::string("parley/events"), std::string("parley\xc3\xa9"), std::string(256, 'x')}) {
      SCOPED_TRACE("--bus " + bus + " --bus-exchange '" + name + "'");
      auto [code, err] = start(bus, name, 10);
      EXPECT_EQ(code, 2) << "a bad flag value exits 2 (docs/operations.md): " << err;
      EXPECT_EQ(err,
                "parleyd: --bus-exchange expects 1 to 255 letters, digits, '-', '_', '.' or ':', "
                "not starting with 'amq.', got '" +
                    name + "'\n")
          << "one line naming the flag, the rule and the bad value";
    }
    // The same command with a good name keeps running (with amqp it retries the closed port with
    // backoff), so the name alone is what stopped it above.
    SCOPED_TRACE("--bus " + bus);
    auto [code, err] = start(bus, "parley.events-test_1:a", 2);
    EXPECT_EQ(code, 124) << "a valid name is accepted: " << err;
  }
}

}  // namespace
}  // namespace parley::test
