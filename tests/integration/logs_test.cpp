// Structured logs (issue 4): with --log-format json every line parleyd writes to stderr is one
// JSON object, whatever the logged text holds; start-up, shutdown and rejected connections each
// get a line; no token, password or message body ever appears.

#include <sstream>

#include "fixture.hpp"

namespace parley::test {
namespace {

class Logs : public IntegrationTest {};

TEST_F(Logs, JsonFormatWritesOneValidObjectPerLineAndNoSecrets) {
  auto args = default_server_args();
  args.insert(args.end(), {"--log-format", "json"});
  auto& s = own(args);

  auto u = register_user(s, "lg");
  const std::string body = "secret body \"quoted\" \\ " + unique_name("b");
  {
    Session session(s, u);
    const auto room = unique_name("lgroom");
    session.create(room);
    session.send_message(room, body);
  }
  auto http = s.http();
  // A failed login, a rejected token and a refused origin: each logged, none leaking secrets.
  const std::string wrong_password = "wrong \"pass\"\n word " + unique_name("p");
  EXPECT_EQ(http.post("/api/v1/login", {{"username", u.name}, {"password", wrong_password}}).status,
            401);
  const std::string bad_token = "bogus-token-" + unique_name("t");
  {
    auto ws = s.connect_ws();
    ws->send_json({{"type", "auth"}, {"token", bad_token}});
    for (int i = 0; i < 5; ++i) {
      auto ev = ws->receive(2s);
      if (!ev.is_text()) break;
    }
  }
  // A quote and a control byte in a logged field (the Origin header) must still give JSON.
  http.request_raw("GET", "/ws", "", "",
                   {{"Upgrade", "websocket"},
                    {"Connection", "Upgrade"},
                    {"Sec-WebSocket-Version", "13"},
                    {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                    {"Origin", "http://evil\"\x01\xff.example"}});
  EXPECT_EQ(s.terminate(), 0);

  std::istringstream lines(s.log());
  std::string line;
  int objects = 0;
  bool started = false, stopped = false, rejected = false;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("===== test harness", 0) == 0) continue;
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    ASSERT_TRUE(j.is_object()) << line;
    for (const char* k : {"ts", "level", "node", "msg"}) {
      ASSERT_TRUE(j.contains(k) && j[k].is_string()) << "no string '" << k << "': " << line;
    }
    EXPECT_EQ(j["node"], s.node_id());
    const auto msg = j["msg"].get<std::string>();
    started |= msg.find("listening on") != std::string::npos;
    stopped |= msg.find("parleyd stopped") != std::string::npos;
    rejected |= msg.find("rejected token") != std::string::npos;
    for (const auto& secret : {u.password, u.token, body, wrong_password, bad_token}) {
      EXPECT_EQ(line.find(secret), std::string::npos) << "a secret leaked: " << line;
    }
    ++objects;
  }
  EXPECT_GT(objects, 3);
  EXPECT_TRUE(started) << "no start-up line";
  EXPECT_TRUE(stopped) << "no shutdown line";
  EXPECT_TRUE(rejected) << "no line for the rejected connection";
}

}  // namespace
}  // namespace parley::test
