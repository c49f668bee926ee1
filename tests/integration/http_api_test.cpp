// HTTP API of PROTOCOL.md: register, login, logout, rooms, messages, probes, static files.

#include <string>

#include "fixture.hpp"

namespace parley::test {
namespace {

class HttpApi : public IntegrationTest {};

TEST_F(HttpApi, RegisterAnswers201WithUserTokenAndExpiry) {
  auto http = server().http();
  auto name = unique_name("reg");
  const auto before = now_ms() / 1000;
  auto res = http.post("/api/v1/register", {{"username", name}, {"password", "correct horse"}});
  ASSERT_EQ(res.status, 201) << res.body;
  EXPECT_NE(res.content_type.find("application/json"), std::string::npos) << res.content_type;
  auto j = res.json();
  ASSERT_TRUE(j.is_object()) << res.body;
  EXPECT_EQ(j.value("user", ""), name);
  ASSERT_TRUE(j["token"].is_string()) << res.body;
  EXPECT_GE(j["token"].get<std::string>().size(), 16u) << "a token should carry real entropy";
  ASSERT_TRUE(j["expires_at"].is_number_integer()) << res.body;
  EXPECT_GT(j["expires_at"].get<std::int64_t>(), before)
      << "expires_at is unix seconds in the future";
  EXPECT_LT(j["expires_at"].get<std::int64_t>(), before + 10LL * 365 * 86400);
  // The token is usable right away.
  EXPECT_EQ(http.get("/api/v1/rooms", j["token"].get<std::string>()).status, 200);
}

TEST_F(HttpApi, RegisterRejectsInvalidUsernamesWith400) {
  auto http = server().http();
  const std::vector<std::string> bad = {"",       repeat("a", 33), "Alice",
                                        "al ice", "al/ice",        "al:ice",
                                        "al+ice", "\xc3\xa9lise",  "al\nice"};
  for (const auto& name : bad) {
    auto res = http.post("/api/v1/register", {{"username", name}, {"password", "long enough"}});
    EXPECT_TRUE(is_http_error(res, 400, "bad_request")) << "username " << json(name).dump();
  }
  // Missing or mistyped fields and bodies that are not JSON are invalid too.
  EXPECT_TRUE(is_http_error(http.post("/api/v1/register", {{"password", "long enough"}}), 400,
                            "bad_request"));
  EXPECT_TRUE(
      is_http_error(http.post("/api/v1/register", {{"username", 42}, {"password", "long enough"}}),
                    400, "bad_request"));
  EXPECT_TRUE(is_http_error(
      http.request_raw("POST", "/api/v1/register", "{not json", "application/json", {}), 400,
      "bad_request"));
  // A 32-character name of every allowed character class is valid.
  auto longest = unique_name("x.-") + repeat("9", 32);
  longest = longest.substr(0, 32);
  auto ok = http.post("/api/v1/register", {{"username", longest}, {"password", "long enough"}});
  EXPECT_EQ(ok.status, 201) << longest << ": " << ok.body;
}

TEST_F(HttpApi, RegisterCountsPasswordLengthInBytes) {
  auto http = server().http();
  auto post = [&](const std::string& password) {
    return http.post("/api/v1/register", {{"username", unique_name("pw")}, {"password", password}});
  };
  EXPECT_TRUE(is_http_error(post("1234567"), 400, "bad_request")) << "7 bytes";
  EXPECT_TRUE(is_http_error(post(repeat("a", 257)), 400, "bad_request")) << "257 bytes";
  // 129 two-byte characters: 258 bytes (too long) though only 129 code points.
  EXPECT_TRUE(is_http_error(post(repeat("\xc3\xa9", 129)), 400, "bad_request")) << "258 bytes";
  EXPECT_TRUE(is_http_error(post(""), 400, "bad_request"));
  // 4 two-byte characters: 8 bytes (valid) though only 4 code points.
  auto eight = post(repeat("\xc3\xa9", 4));
  EXPECT_EQ(eight.status, 201) << "8 bytes: " << eight.body;
  auto max = post(repeat("p", 256));
  EXPECT_EQ(max.status, 201) << "256 bytes: " << max.body;
}

TEST_F(HttpApi, RegisterTakenNameIs409) {
  auto http = server().http();
  auto u = register_user(server(), "taken");
  auto res =
      http.post("/api/v1/register", {{"username", u.name}, {"password", "another password"}});
  EXPECT_TRUE(is_http_error(res, 409, "conflict"));
  // The original account is untouched: its password still logs in.
  EXPECT_EQ(http.post("/api/v1/login", {{"username", u.name}, {"password", u.password}}).status,
            200);
}

TEST_F(HttpApi, LoginAnswers200WithAFreshWorkingToken) {
  auto http = server().http();
  auto u = register_user(server(), "login");
  auto res = http.post("/api/v1/login", {{"username", u.name}, {"password", u.password}});
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = res.json();
  EXPECT_EQ(j.value("user", ""), u.name);
  ASSERT_TRUE(j["token"].is_string());
  ASSERT_TRUE(j["expires_at"].is_number_integer());
  EXPECT_GT(j["expires_at"].get<std::int64_t>(), now_ms() / 1000);
  auto token = j["token"].get<std::string>();
  EXPECT_NE(token, u.token) << "each login opens its own session";
  EXPECT_EQ(http.get("/api/v1/rooms", token).status, 200);
  EXPECT_EQ(http.get("/api/v1/rooms", u.token).status, 200) << "the first session still works";
}

TEST_F(HttpApi, LoginGivesTheSameAnswerForUnknownUserAndWrongPassword) {
  auto http = server().http();
  auto u = register_user(server(), "login");
  auto wrong = http.post("/api/v1/login", {{"username", u.name}, {"password", "not the password"}});
  auto unknown = http.post("/api/v1/login",
                           {{"username", unique_name("ghost")}, {"password", "not the password"}});
  EXPECT_TRUE(is_http_error(wrong, 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(unknown, 401, "unauthorized"));
  EXPECT_EQ(wrong.json(), unknown.json()) << "the answer must not reveal whether the user exists";
}

TEST_F(HttpApi, LogoutAnswers204AndKillsTheTokenOnly) {
  auto http = server().http();
  auto u = register_user(server(), "logout");
  auto other_token = login_token(server(), u);
  auto res = http.request("POST", "/api/v1/logout", std::nullopt, u.token);
  EXPECT_EQ(res.status, 204) << res.body;
  EXPECT_TRUE(res.body.empty()) << "204 has no body: " << res.body;
  EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms", u.token), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.request("POST", "/api/v1/logout", std::nullopt, u.token), 401,
                            "unauthorized"))
      << "a dead token cannot log out again";
  // The WebSocket refuses it too.
  auto ws = server().connect_ws();
  ws->send_json({{"type", "auth"}, {"token", u.token}});
  auto ev = ws->receive(5s);
  ASSERT_TRUE(ev.is_text()) << ev.describe();
  EXPECT_TRUE(is_ws_error(ev.json(), "unauthorized"));
  auto closed = ws->receive(5s);
  EXPECT_TRUE(closed.is_closed() && closed.close_code == 1008) << closed.describe();
  // The user's other session is not affected.
  EXPECT_EQ(http.get("/api/v1/rooms", other_token).status, 200);
}

TEST_F(HttpApi, LogoutClosesTheTokensSocketsWith1008WithinOneSecond) {
  auto u = register_user(server(), "logout");
  auto other_token = login_token(server(), u);
  Session a(server(), u.token);
  Session b(server(), u.token);
  Session other(server(), other_token);
  auto res = server().http().request("POST", "/api/v1/logout", std::nullopt, u.token);
  ASSERT_EQ(res.status, 204) << res.body;
  const auto t0 = std::chrono::steady_clock::now();
  auto ca = a.wait_closed(1000ms);
  auto cb = b.wait_closed(1000ms);
  auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_TRUE(ca.is_closed() && ca.close_code == 1008) << "first socket: " << ca.describe();
  EXPECT_TRUE(cb.is_closed() && cb.close_code == 1008) << "second socket: " << cb.describe();
  EXPECT_LE(elapsed.count(), 1000);
  // A socket of another session of the same user stays open.
  EXPECT_NO_THROW(other.barrier());
  EXPECT_TRUE(other.ws().is_open());
}

TEST_F(HttpApi, LogoutWithoutAValidTokenIs401) {
  auto http = server().http();
  EXPECT_TRUE(is_http_error(http.request("POST", "/api/v1/logout"), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.request("POST", "/api/v1/logout", std::nullopt, "bogus-token"),
                            401, "unauthorized"));
}

TEST_F(HttpApi, RoomsRequiresAValidBearerToken) {
  auto http = server().http();
  EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms"), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms", "not-a-token"), 401, "unauthorized"));
  auto u = register_user(server(), "rooms");
  // The token must come as a Bearer credential.
  EXPECT_TRUE(is_http_error(
      http.request_raw("GET", "/api/v1/rooms", "", "", {{"Authorization", "Basic " + u.token}}),
      401, "unauthorized"));
  EXPECT_TRUE(
      is_http_error(http.request_raw("GET", "/api/v1/rooms", "", "", {{"Authorization", u.token}}),
                    401, "unauthorized"));
}

TEST_F(HttpApi, RoomsListsKindsLastSeqAndUnreadAndFollowsReads) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  Session a(server(), alice);
  Session b(server(), bob);
  auto pub = unique_name("pub");
  auto priv = unique_name("priv");
  a.create(pub);
  a.create(priv, /*is_private=*/true);
  auto dm = a.request({{"type", "dm"}, {"user", bob.name}});
  ASSERT_EQ(dm.value("type", ""), "joined") << dm.dump();
  auto dm_room = dm["room"].get<std::string>();
  b.join(pub);
  for (int i = 1; i <= 3; ++i) b.send_message(pub, "hello " + std::to_string(i));

  auto rooms = rooms_of(server(), alice.token);
  ASSERT_TRUE(rooms.count(pub) && rooms.count(priv) && rooms.count(dm_room)) << json(rooms).dump();
  EXPECT_EQ(rooms[pub].value("kind", ""), "public");
  EXPECT_EQ(rooms[priv].value("kind", ""), "private");
  EXPECT_EQ(rooms[dm_room].value("kind", ""), "dm");
  EXPECT_EQ(rooms[pub].value("last_seq", -1), 3);
  EXPECT_EQ(rooms[pub].value("read_seq", -1), 0);
  EXPECT_EQ(rooms[pub].value("unread", -1), 3);
  EXPECT_EQ(rooms[priv].value("last_seq", -1), 0);
  EXPECT_EQ(rooms[priv].value("unread", -1), 0);

  // A read marker moves read_seq and unread; the reply-less frame is applied asynchronously,
  // so the listing is polled.
  a.send({{"type", "read"}, {"room", pub}, {"seq", 2}});
  json entry;
  EXPECT_TRUE(eventually([&] {
    entry = rooms_of(server(), alice.token)[pub];
    return entry.value("read_seq", -1) == 2;
  })) << entry.dump();
  EXPECT_EQ(entry.value("unread", -1), 1);
  EXPECT_EQ(entry.value("last_seq", -1), 3);
  // Bob is not in the private room and sees exactly his two rooms.
  auto bobs = rooms_of(server(), bob.token);
  EXPECT_EQ(bobs.size(), 2u) << json(bobs).dump();
  EXPECT_TRUE(bobs.count(pub) && bobs.count(dm_room));
}

TEST_F(HttpApi, MessagesRequiresAuthMembershipAndAnExistingRoom) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  Session a(server(), alice);
  auto pub = unique_name("pub");
  auto priv = unique_name("priv");
  a.create(pub);
  a.create(priv, true);
  a.send_message(pub, "secret-ish");
  auto http = server().http();
  auto path = [](const std::string& room) { return "/api/v1/rooms/" + room + "/messages"; };
  EXPECT_TRUE(is_http_error(http.get(path(pub)), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.get(path(pub), "bogus"), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.get(path(pub), bob.token), 403, "forbidden"))
      << "public but not joined: not a member";
  EXPECT_TRUE(is_http_error(http.get(path(priv), bob.token), 403, "forbidden"));
  EXPECT_TRUE(is_http_error(http.get(path(unique_name("nosuch")), alice.token), 404, "not_found"));
  auto ok = http.get(path(pub), alice.token);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json().value("room", ""), pub);
}

TEST_F(HttpApi, MessagesPagesWithBeforeLimitAndHasMore) {
  auto alice = register_user(server(), "alice");
  Session a(server(), alice);
  auto room = unique_name("page");
  a.create(room);
  std::vector<json> acks;
  for (int i = 1; i <= 5; ++i)
    acks.push_back(a.send_message(room, "m" + std::to_string(i), "id-" + std::to_string(i)));
  auto http = server().http();
  auto get = [&](const std::string& query) {
    return http.get("/api/v1/rooms/" + room + "/messages" + query, alice.token);
  };
  auto seqs = [](const json& page) {
    std::vector<int> out;
    for (const auto& m : page.at("messages")) out.push_back(m.at("seq").get<int>());
    return out;
  };
  auto newest = get("?limit=2");
  ASSERT_EQ(newest.status, 200) << newest.body;
  auto j = newest.json();
  EXPECT_EQ(seqs(j), (std::vector<int>{4, 5}));
  EXPECT_EQ(j.value("has_more", false), true);
  j = get("?before=4&limit=2").json();
  EXPECT_EQ(seqs(j), (std::vector<int>{2, 3}));
  EXPECT_EQ(j.value("has_more", false), true);
  j = get("?before=2&limit=2").json();
  EXPECT_EQ(seqs(j), (std::vector<int>{1}));
  EXPECT_EQ(j.value("has_more", true), false);
  j = get("?before=3&limit=200").json();
  EXPECT_EQ(seqs(j), (std::vector<int>{1, 2}));
  EXPECT_EQ(j.value("has_more", true), false);
  auto zero = get("?before=0");
  ASSERT_EQ(zero.status, 200) << "before=0 is an empty page, as on the WebSocket: " << zero.body;
  EXPECT_EQ(seqs(zero.json()), std::vector<int>{});
  EXPECT_EQ(zero.json().value("has_more", true), false);
  j = get("").json();
  EXPECT_EQ(seqs(j), (std::vector<int>{1, 2, 3, 4, 5})) << "no parameters: the newest page";
  EXPECT_EQ(j.value("has_more", true), false);

  // Each message has the shape of the WebSocket "message" frame.
  const auto& m = j.at("messages").at(2);
  EXPECT_EQ(m.value("type", ""), "message");
  EXPECT_EQ(m.value("room", ""), room);
  EXPECT_EQ(m.value("seq", 0), 3);
  EXPECT_EQ(m.value("from", ""), alice.name);
  EXPECT_EQ(m.value("body", ""), "m3");
  EXPECT_EQ(m.value("client_msg_id", ""), "id-3");
  EXPECT_EQ(m.value("ts", std::int64_t{0}), acks[2].value("ts", std::int64_t{-1}));

  EXPECT_TRUE(is_http_error(get("?limit=0"), 400, "bad_request"));
  EXPECT_TRUE(is_http_error(get("?limit=201"), 400, "bad_request"));
  EXPECT_TRUE(is_http_error(get("?limit=abc"), 400, "bad_request"));
  EXPECT_TRUE(is_http_error(get("?before=xyz"), 400, "bad_request"));
  EXPECT_TRUE(is_http_error(get("?before=-1"), 400, "bad_request"));
}

TEST_F(HttpApi, ProbesAnswer) {
  auto http = server().http();
  EXPECT_EQ(http.get("/healthz").status, 200);
  EXPECT_EQ(http.get("/readyz").status, 200);
  auto metrics = http.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.content_type.find("text/plain"), std::string::npos) << metrics.content_type;
  EXPECT_NE(metrics.content_type.find("version=0.0.4"), std::string::npos) << metrics.content_type;
  EXPECT_NE(metrics.body.find("# TYPE "), std::string::npos) << metrics.body.substr(0, 500);
  // Every sample line is "name{labels} value" with a numeric value.
  std::istringstream lines(metrics.body);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    auto value = line.substr(space + 1);
    EXPECT_TRUE(value == "+Inf" || value == "-Inf" || value == "NaN" ||
                value.find_first_not_of("0123456789.eE+-") == std::string::npos)
        << "bad sample: " << line;
    ++samples;
  }
  EXPECT_GT(samples, 5);
}

TEST_F(HttpApi, ServesTheWebRootAnd404sUnknownPaths) {
  auto http = server().http();
  auto index = http.get("/");
  ASSERT_EQ(index.status, 200);
  EXPECT_EQ(index.body, ServerProcess::index_html);
  EXPECT_NE(index.content_type.find("text/html"), std::string::npos) << index.content_type;
  auto asset = http.get("/assets/app.js");
  EXPECT_EQ(asset.status, 200);
  EXPECT_NE(asset.body.find("parley test asset"), std::string::npos);
  EXPECT_TRUE(is_http_error(http.get("/no/such/page.html"), 404, "not_found"));
  EXPECT_TRUE(is_http_error(http.get("/api/v1/nothing-here"), 404, "not_found"));
  // Nothing outside the web root is reachable.
  for (const char* path : {"/../parley.db", "/%2e%2e/parley.db", "/..%2fparley.db",
                           "/assets/../../parleyd.log", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd"}) {
    auto res = http.get(path);
    EXPECT_NE(res.status, 200) << path << " answered " << res.body.substr(0, 200);
    EXPECT_EQ(res.body.find("root:"), std::string::npos) << path;
  }
}

}  // namespace
}  // namespace parley::test
