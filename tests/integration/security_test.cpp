// Security checks against a real parleyd (docs/security.md): the Origin allow-list of WebSocket
// upgrades, tokens (missing, forged, expired, logged out), a user x room matrix proving that no
// request reaches a room its user is not in, login throttling, per-address and per-user
// connection caps, the authentication timeout, and request bodies and frames refused over their
// limits before they are buffered whole. The ThrottleUnit tests cover core::Throttle itself.
//
// Not covered because the feature does not exist: deleting a user (there is no deletion; see
// docs/security.md).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <thread>

#include "core/throttle.hpp"
#include "fixture.hpp"
#include "support/raw_ws_client.hpp"

namespace parley::test {
namespace {

namespace ws = protocol::ws;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// A raw HTTP connection: any request bytes, optionally from another loopback address
// (127.0.0.2 ...), kept open after a 101 so that connection caps can be tested.

class RawConn {
 public:
  RawConn(const std::string& host, std::uint16_t port, const std::string& source = {}) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket(): " + std::string(std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!source.empty()) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, source.c_str(), &src.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        throw std::runtime_error("bind to " + source + ": " + std::strerror(errno));
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
    }
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // Sends bytes; false when the server has closed the connection.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads until a complete response head (and its Content-Length body) is in, the connection
  // ends or the timeout passes. Returns the status (0: none).
  int read_response(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = steady::now() + timeout;
    for (;;) {
      auto end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        head_ = buf_.substr(0, end);
        std::size_t len = 0;
        auto lower = head_;
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (auto p = lower.find("content-length: "); p != std::string::npos) {
          len = std::stoul(lower.substr(p + 16));
        }
        if (buf_.size() >= end + 4 + len || status_of(head_) == 101) {
          body_ = buf_.substr(end + 4, len);
          buf_.erase(0, end + 4 + len);
          return status_of(head_);
        }
      }
      if (eof_ || !fill(deadline)) return 0;
    }
  }
  // True when the server closes the connection within the timeout.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (!eof_) {
      if (!fill(deadline)) return eof_;
    }
    return true;
  }
  const std::string& head() const { return head_; }
  const std::string& body() const { return body_; }
  std::string header(const std::string& name) const {
    std::string lower_head = head_, lower_name = name + ": ";
    for (auto& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (auto& c : lower_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto p = lower_head.find("\r\n" + lower_name);
    if (p == std::string::npos) return {};
    auto start = p + 2 + lower_name.size();
    return head_.substr(start, head_.find("\r\n", start) - start);
  }
  json body_json() const { return json::parse(body_, nullptr, false); }

 private:
  static int status_of(const std::string& head) {
    return head.size() >= 12 && head.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(head.substr(9, 3)) : 0;
  }
  bool fill(steady::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[16384];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return true;
    }
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buf_, head_, body_;
  bool eof_ = false;
};

std::string upgrade_request(const ServerProcess& s, const std::vector<std::string>& extra = {}) {
  std::string r = "GET /ws HTTP/1.1\r\nHost: " + s.host() + ":" + std::to_string(s.port()) +
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  for (const auto& h : extra) r += h + "\r\n";
  return r + "\r\n";
}

// Upgrades with extra headers; returns the status of the answer.
int try_upgrade(RawConn& c, const ServerProcess& s, const std::vector<std::string>& extra = {}) {
  c.send(upgrade_request(s, extra));
  return c.read_response();
}

// The socket is closed by the server with `code` (after any number of error frames).
::testing::AssertionResult closed_with(RawWsClient& raw, std::uint16_t code,
                                       const std::string& reason,
                                       std::chrono::milliseconds timeout = 5s) {
  auto c = raw.wait_close(timeout);
  if (!c.got_close_frame || c.code != code || (!reason.empty() && c.reason != reason)) {
    return ::testing::AssertionFailure()
           << "expected close " << code << " \"" << reason << "\", got " << c.describe();
  }
  return ::testing::AssertionSuccess();
}

std::string login_body(const std::string& user, const std::string& password) {
  return json({{"username", user}, {"password", password}}).dump();
}

std::string post_to(const std::string& path, const std::string& body,
                    const std::string& extra_headers = {}) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

std::string post_login(const std::string& body) {
  return post_to("/api/v1/login", body);
}

// A POST of `body` to `path` from `source` (a loopback address); returns the status.
int post_from(const ServerProcess& s, const std::string& source, const std::string& path,
              const std::string& body, json* answer = nullptr, std::string* retry_after = nullptr) {
  RawConn c(s.host(), s.port(), source);
  c.send(post_to(path, body));
  int status = c.read_response(10s);
  if (answer) *answer = c.body_json();
  if (retry_after) *retry_after = c.header("Retry-After");
  return status;
}

int login_from(const ServerProcess& s, const std::string& source, const std::string& user,
               const std::string& password, json* body = nullptr,
               std::string* retry_after = nullptr) {
  return post_from(s, source, "/api/v1/login", login_body(user, password), body, retry_after);
}

// Smaller Argon2 parameters keep the many registrations of these tests quick; nothing here
// depends on the hash cost.
std::vector<std::string> fast_args(std::vector<std::string> more = {}) {
  auto a = default_server_args();
  a.insert(a.end(), {"--argon2-memlimit-kib", "1024", "--argon2-opslimit", "1"});
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

class Security : public IntegrationTest {
 protected:
  ServerProcess& srv() { return shared(fast_args()); }
};

// ---------------------------------------------------------------------------------------------
// Origin allow-list

TEST_F(Security, OriginDefaultAllowsNoOriginAndSameOriginOnly) {
  auto& s = srv();
  const std::string self = "http://" + s.host() + ":" + std::to_string(s.port());
  struct Case {
    std::vector<std::string> headers;
    int status;
  };
  const std::vector<Case> cases = {
      {{}, 101},                         // not a browser
      {{"Origin: " + self}, 101},        // the server's own page
      {{"Origin: " + self + "/"}, 101},  // trailing slash
      {{"Origin: HTTP://" + s.host() + ":" + std::to_string(s.port())}, 101},  // case
      {{"Origin: https://evil.example"}, 403},                          // cross-site hijacking
      {{"Origin: http://" + s.host() + ":1"}, 403},                     // another port
      {{"Origin: null"}, 403},                                          // sandboxed / file:
      {{"Origin: " + s.host() + ":" + std::to_string(s.port())}, 403},  // no scheme
      {{"Origin: "}, 403},                                              // present but empty
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.headers.empty() ? std::string("no Origin") : c.headers[0]);
    RawConn conn(s.host(), s.port());
    EXPECT_EQ(try_upgrade(conn, s, c.headers), c.status) << conn.head();
    if (c.status == 403) {
      auto j = conn.body_json();
      EXPECT_EQ(j["error"]["code"], "forbidden") << conn.body();
      EXPECT_TRUE(conn.closed_within(2s)) << "a refused upgrade closes the connection";
    }
  }
}

TEST_F(Security, OriginAllowListIsConfigurable) {
  auto& s = own(
      fast_args({"--allowed-origins", "https://chat.example.com, https://Other.example:8443/"}));
  for (const auto& [origin, status] :
       std::vector<std::pair<std::string, int>>{{"https://chat.example.com", 101},
                                                {"https://other.example:8443", 101},
                                                {"http://chat.example.com", 403},  // scheme counts
                                                {"https://chat.example.com.evil.example", 403},
                                                {"https://evil.example", 403}}) {
    SCOPED_TRACE(origin);
    RawConn conn(s.host(), s.port());
    EXPECT_EQ(try_upgrade(conn, s, {"Origin: " + origin}), status) << conn.head();
  }
  auto& any = own(fast_args({"--allowed-origins", "*"}));
  RawConn conn(any.host(), any.port());
  EXPECT_EQ(try_upgrade(conn, any, {"Origin: https://anything.example"}), 101);
}

TEST_F(Security, RefusedOriginGetsNoSessionEvenWithAValidToken) {
  auto& s = srv();
  auto u = register_user(s, "orig");
  RawConn conn(s.host(), s.port());
  conn.send(upgrade_request(s, {"Origin: https://evil.example"}) +
            ws::make_client_frame(ws::Opcode::text,
                                  json({{"type", "auth"}, {"token", u.token}}).dump(), 7));
  EXPECT_EQ(conn.read_response(), 403);
  EXPECT_TRUE(conn.closed_within(2s));
  // The user never came online (nobody saw a session).
  Session watcher(s, register_user(s, "watch"));
  watcher.send({{"type", "watch"}, {"users", {u.name}}});  // presence frames carry no ref
  auto p = watcher.wait_type("presence");
  EXPECT_EQ(p.value("status", ""), "offline") << p.dump();
}

// ---------------------------------------------------------------------------------------------
// Tokens

TEST_F(Security, MissingTokenIsRefused) {
  auto& s = srv();
  auto http = s.http();
  EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms"), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms/general/messages"), 401, "unauthorized"));
  EXPECT_TRUE(
      is_http_error(http.request("POST", "/api/v1/logout", json::object()), 401, "unauthorized"));
  // The wrong scheme is no token.
  EXPECT_TRUE(is_http_error(
      http.request_raw("GET", "/api/v1/rooms", "", "", {{"Authorization", "Basic dTpw"}}), 401,
      "unauthorized"));
  EXPECT_TRUE(
      is_http_error(http.request_raw("GET", "/api/v1/rooms", "", "", {{"Authorization", "Bearer"}}),
                    401, "unauthorized"));
  // WebSocket: an auth frame without a token, with an empty one, with a non-string one, and a
  // first frame that is not auth.
  for (const auto& first : {json({{"type", "auth"}}), json({{"type", "auth"}, {"token", ""}}),
                            json({{"type", "auth"}, {"token", 42}}), json({{"type", "ping"}})}) {
    SCOPED_TRACE(first.dump());
    RawWsClient raw;
    raw.connect(s.host(), s.port());
    raw.send_json(first);
    EXPECT_TRUE(closed_with(raw, 1008, "unauthorized"));
  }
}

TEST_F(Security, ForgedTokensAreRefused) {
  auto& s = srv();
  auto u = register_user(s, "forge");
  std::string flipped = u.token;
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  const std::vector<std::string> forged = {
      flipped,                     // one character changed
      u.token.substr(0, 42),       // truncated
      u.token + "A",               // extended
      std::string(43, 'A'),        // well-formed, random
      "' OR '1'='1",               // SQL
      std::string(8000, 'x'),      // huge
      "\xe2\x82\xac\xe2\x82\xac",  // non-ASCII
      u.name,                      // the user name
  };
  auto http = s.http();
  for (const auto& t : forged) {
    SCOPED_TRACE("token of " + std::to_string(t.size()) + " bytes");
    if (t.find('\xe2') == std::string::npos) {
      EXPECT_TRUE(is_http_error(http.get("/api/v1/rooms", t), 401, "unauthorized"));
    }
    RawWsClient raw;
    raw.connect(s.host(), s.port());
    raw.send_json({{"type", "auth"}, {"token", t}});
    EXPECT_TRUE(closed_with(raw, 1008, "unauthorized"));
  }
  // The real token still works.
  EXPECT_EQ(http.get("/api/v1/rooms", u.token).status, 200);
}

// Runs `sql` with ?1 bound to `user` on the server's SQLite file, behind the node's back: no bus
// event tells the node, so its token cache is not evicted. Expects at least one changed row.
void change_tokens(const ServerProcess& s, const char* sql, const std::string& user) {
  sqlite3* db = nullptr;
  auto path = (s.data_dir() / "parley.db").string();
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK) << path;
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_bind_text(st, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE) << sqlite3_errmsg(db);
  EXPECT_GE(sqlite3_changes(db), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// Sets every token of `user` to have expired (the only way to expire a token without waiting:
// --token-ttl-s is at least 60 s).
void expire_tokens(const ServerProcess& s, const std::string& user) {
  change_tokens(s, "UPDATE tokens SET expires_at = 1 WHERE user = ?1", user);
}

// Deletes every token of `user`, as a logout on another node would, but without its bus event:
// what a node that was cut off from the bus during the logout sees.
void delete_tokens(const ServerProcess& s, const std::string& user) {
  change_tokens(s, "DELETE FROM tokens WHERE user = ?1", user);
}

TEST_F(Security, ExpiredTokenIsRefused) {
  auto& s = srv();
  auto u = register_user(s, "exp");
  // Not used before it expires: the node has not cached it.
  expire_tokens(s, u.name);
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", u.token), 401, "unauthorized"));
  RawWsClient raw;
  raw.connect(s.host(), s.port());
  raw.send_json({{"type", "auth"}, {"token", u.token}});
  EXPECT_TRUE(closed_with(raw, 1008, "unauthorized"));
  // A fresh login gives a working token.
  auto fresh = login_token(s, u);
  EXPECT_EQ(s.http().get("/api/v1/rooms", fresh).status, 200);
}

TEST_F(Security, CachedTokenIsRefusedOnceItsLifetimeEnds) {
  // The node caches tokens it has seen; the cache must honour the expiry too. The shortest
  // lifetime the server accepts is 60 s, so this test waits that long.
  auto& s = own(fast_args({"--token-ttl-s", "60"}));
  auto u = register_user(s, "ttl");
  const auto issued = steady::now();
  ASSERT_EQ(s.http().get("/api/v1/rooms", u.token).status, 200);  // now cached
  Session live(s, u);
  std::this_thread::sleep_until(issued + 62s);
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", u.token), 401, "unauthorized"));
  RawWsClient raw;
  raw.connect(s.host(), s.port());
  raw.send_json({{"type", "auth"}, {"token", u.token}});
  EXPECT_TRUE(closed_with(raw, 1008, "unauthorized"));
}

// The token cache's lifetime (--token-cache-ttl-s) bounds how long a node trusts a token revoked
// without its bus event reaching it: until the cached lookup is that old the token still works
// (the cache answers), afterwards the node reads the store and refuses it.
TEST_F(Security, RevokedTokenIsTrustedFromTheCacheForAtMostItsTtl) {
  constexpr auto ttl = 3s;
  auto& s = own(fast_args({"--token-cache-ttl-s", "3"}));
  auto u = register_user(s, "cttl");
  const auto before_lookup = steady::now();
  ASSERT_EQ(s.http().get("/api/v1/rooms", u.token).status, 200);  // now cached
  const auto after_lookup = steady::now();
  delete_tokens(s, u.name);
  // The entry was cached after before_lookup, so a request answered less than ttl after that was
  // checked against a fresh entry: only the cache can have accepted it. On a machine too slow
  // for that, the check is skipped rather than failed.
  const int cached_status = s.http().get("/api/v1/rooms", u.token).status;
  if (steady::now() - before_lookup < ttl) {
    EXPECT_EQ(cached_status, 200) << "within the TTL the cached lookup answers";
  }
  // The entry was cached before after_lookup, so once after_lookup + ttl has passed it is stale.
  std::this_thread::sleep_until(after_lookup + ttl + 200ms);
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", u.token), 401, "unauthorized"));
  RawWsClient raw;
  raw.connect(s.host(), s.port());
  raw.send_json({{"type", "auth"}, {"token", u.token}});
  EXPECT_TRUE(closed_with(raw, 1008, "unauthorized"));
}

// --token-cache-ttl-s 0 turns the cache off: a token revoked in the store is refused at once.
TEST_F(Security, TokenCacheTtlZeroReadsTheStoreEveryTime) {
  auto& s = own(fast_args({"--token-cache-ttl-s", "0"}));
  auto u = register_user(s, "cttl0");
  ASSERT_EQ(s.http().get("/api/v1/rooms", u.token).status, 200);
  delete_tokens(s, u.name);
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", u.token), 401, "unauthorized"));
  // A fresh token works: the store is read, and nothing stale is kept.
  auto fresh = login_token(s, u);
  EXPECT_EQ(s.http().get("/api/v1/rooms", fresh).status, 200);
  EXPECT_EQ(s.http().get("/api/v1/rooms", fresh).status, 200);
}

TEST_F(Security, LoggedOutTokenIsDeadEverywhere) {
  auto& s = srv();
  auto u = register_user(s, "out");
  const std::string other_token = login_token(s, u);
  RawWsClient open;
  open.connect(s.host(), s.port());
  open.authenticate(u.token);
  RawWsClient other;
  other.connect(s.host(), s.port());
  other.authenticate(other_token);

  auto res = s.http().request("POST", "/api/v1/logout", json::object(), u.token);
  ASSERT_EQ(res.status, 204) << res.body;
  // Its open socket is closed within a second.
  EXPECT_TRUE(closed_with(open, 1008, "logged out", 2s));
  // Every later use is refused, a second logout included.
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", u.token), 401, "unauthorized"));
  EXPECT_TRUE(is_http_error(s.http().request("POST", "/api/v1/logout", json::object(), u.token),
                            401, "unauthorized"));
  RawWsClient again;
  again.connect(s.host(), s.port());
  again.send_json({{"type", "auth"}, {"token", u.token}});
  EXPECT_TRUE(closed_with(again, 1008, "unauthorized"));
  // The user's other token and socket are untouched.
  other.send_json({{"type", "ping"}, {"ref", "still"}});
  EXPECT_EQ(other.read_json(5s).value("ref", ""), "still");
  EXPECT_EQ(s.http().get("/api/v1/rooms", other_token).status, 200);
}

// ---------------------------------------------------------------------------------------------
// The user x room matrix

// A user deletes their own account (DELETE /api/v1/users/me with the password): every token of
// theirs dies on the spot (sockets closed 1008 "account deleted", HTTP 401, new sockets 1008),
// the name can neither log in nor be taken again, nobody can invite or dm it, and what they said
// stays in the rooms.
TEST_F(Security, DeletedUsersTokensAreDeadAndTheNameStaysTaken) {
  auto& s = srv();
  auto u = register_user(s, "del");
  auto peer = register_user(s, "del");
  const std::string second_token = login_token(s, u);
  const auto room = unique_name("delroom");
  {
    Session su(s, u);
    su.create(room);
    Session sp(s, peer);
    sp.join(room);
    su.send_message(room, "said before leaving");
  }
  RawWsClient open;
  open.connect(s.host(), s.port());
  open.authenticate(u.token);
  RawWsClient other;
  other.connect(s.host(), s.port());
  other.authenticate(second_token);

  const std::string path = "/api/v1/users/me";
  EXPECT_TRUE(is_http_error(s.http().request("DELETE", path, json{{"password", u.password}}), 401,
                            "unauthorized"))
      << "no token";
  EXPECT_TRUE(
      is_http_error(s.http().request("DELETE", path, json::object(), u.token), 400, "bad_request"))
      << "no password";
  EXPECT_TRUE(is_http_error(
      s.http().request("DELETE", path, json{{"password", "not-the-password"}}, u.token), 401,
      "unauthorized"))
      << "a token alone must not delete an account";
  EXPECT_TRUE(is_http_error(s.http().request("POST", path, json{{"password", u.password}}, u.token),
                            405, "bad_request"));
  // Still alive after the refusals.
  other.send_json({{"type", "ping"}, {"ref", "alive"}});
  EXPECT_EQ(other.read_json(5s).value("ref", ""), "alive");

  auto res = s.http().request("DELETE", path, json{{"password", u.password}}, u.token);
  ASSERT_EQ(res.status, 204) << res.body;
  EXPECT_TRUE(closed_with(open, 1008, "account deleted", 2s));
  EXPECT_TRUE(closed_with(other, 1008, "account deleted", 2s));
  for (const auto& t : {u.token, second_token}) {
    EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", t), 401, "unauthorized"));
    RawWsClient again;
    again.connect(s.host(), s.port());
    again.send_json({{"type", "auth"}, {"token", t}});
    EXPECT_TRUE(closed_with(again, 1008, "unauthorized"));
  }
  EXPECT_TRUE(
      is_http_error(s.http().request("DELETE", path, json{{"password", u.password}}, u.token), 401,
                    "unauthorized"));
  EXPECT_TRUE(is_http_error(
      s.http().post("/api/v1/login", json{{"username", u.name}, {"password", u.password}}), 401,
      "unauthorized"));
  EXPECT_TRUE(is_http_error(
      s.http().post("/api/v1/register", json{{"username", u.name}, {"password", "new-password"}}),
      409, "conflict"))
      << "the name stays taken, so old messages are never attributed to a newcomer";
  Session sp(s, peer);
  EXPECT_EQ(sp.request({{"type", "invite"}, {"room", room}, {"user", u.name}}).value("code", ""),
            "not_found");
  EXPECT_EQ(sp.request({{"type", "dm"}, {"user", u.name}}).value("code", ""), "not_found");
  auto history = all_messages_http(s, peer.token, room);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].value("from", ""), u.name);
  EXPECT_EQ(history[0].value("body", ""), "said before leaving");
}

// An admin deletes any account (DELETE /api/v1/admin/users/NAME); nobody else can.
TEST_F(Security, AdminsDeleteAccountsAndNobodyElseCan) {
  auto& s = srv();
  auto admin = register_user(s, "dadm");
  auto victim = register_user(s, "dvic");
  ASSERT_EQ(run_parleyd_admin(s, {"grant", admin.name}).code, 0);
  const std::string path = "/api/v1/admin/users/" + victim.name;
  EXPECT_TRUE(is_http_error(s.http().request("DELETE", path), 401, "unauthorized"));
  EXPECT_TRUE(
      is_http_error(s.http().request("DELETE", path, std::nullopt, victim.token), 403, "forbidden"))
      << "not even one's own account this way";
  EXPECT_TRUE(
      is_http_error(s.http().request("GET", path, std::nullopt, admin.token), 405, "bad_request"));
  EXPECT_TRUE(is_http_error(
      s.http().request("DELETE", "/api/v1/admin/users/Not%20A%20Name", std::nullopt, admin.token),
      400, "bad_request"));
  EXPECT_TRUE(is_http_error(
      s.http().request("DELETE", "/api/v1/admin/users/nobody_at_all", std::nullopt, admin.token),
      404, "not_found"));
  RawWsClient open;
  open.connect(s.host(), s.port());
  open.authenticate(victim.token);
  auto res = s.http().request("DELETE", path, std::nullopt, admin.token);
  ASSERT_EQ(res.status, 204) << res.body;
  EXPECT_TRUE(closed_with(open, 1008, "account deleted", 2s));
  EXPECT_TRUE(is_http_error(s.http().get("/api/v1/rooms", victim.token), 401, "unauthorized"));
  EXPECT_TRUE(
      is_http_error(s.http().request("DELETE", path, std::nullopt, admin.token), 404, "not_found"))
      << "deleted already";
  EXPECT_EQ(s.http().get("/api/v1/rooms", admin.token).status, 200);
}

TEST_F(Security, UserRoomMatrixNothingLeaksAcrossRooms) {
  auto& s = srv();
  constexpr int kUsers = 10;
  std::vector<User> users;
  for (int i = 0; i < kUsers; ++i) users.push_back(register_user(s, "m" + std::to_string(i)));
  std::vector<std::unique_ptr<Session>> ss;
  for (auto& u : users) ss.push_back(std::make_unique<Session>(s, u));

  // Ten rooms: four public, four private, two direct-message rooms. Membership of the eight
  // named rooms: user i is in room j when (i + j) % 3 == 0; the dm rooms hold their two users.
  struct Room {
    std::string name;
    std::string kind;
    std::set<int> members;
  };
  std::vector<Room> rooms;
  for (int j = 0; j < 8; ++j) {
    Room r{unique_name("mx" + std::to_string(j)), j < 4 ? "public" : "private", {}};
    for (int i = 0; i < kUsers; ++i) {
      if ((i + j) % 3 == 0) r.members.insert(i);
    }
    const int owner = *r.members.begin();
    ASSERT_EQ(ss[owner]->create(r.name, r.kind == "private").value("type", ""), "joined");
    for (int i : r.members) {
      if (i == owner) continue;
      if (r.kind == "private") {
        auto inv =
            ss[owner]->request({{"type", "invite"}, {"room", r.name}, {"user", users[i].name}});
        ASSERT_EQ(inv.value("type", ""), "invited") << inv.dump();
      }
      ASSERT_EQ(ss[i]->join(r.name).value("type", ""), "joined");
    }
    rooms.push_back(r);
  }
  for (auto [a, b] : {std::pair{0, 1}, std::pair{2, 3}}) {
    auto j = ss[a]->request({{"type", "dm"}, {"user", users[b].name}});
    ASSERT_EQ(j.value("type", ""), "joined") << j.dump();
    rooms.push_back({j["room"].get<std::string>(), "dm", {a, b}});
  }
  ASSERT_EQ(rooms.size(), 10u);
  auto member = [&](int i, const Room& r) { return r.members.count(i) != 0; };

  // Every member says something in each of its rooms.
  for (const auto& r : rooms) {
    for (int i : r.members)
      ss[i]->send_message(r.name, "secret of " + users[i].name + " in " + r.name);
  }
  for (auto& x : ss) x->barrier(10s);  // drop what was delivered so far

  // Every non-member tries every request on every room.
  int refused = 0;
  auto http = s.http();
  for (int i = 0; i < kUsers; ++i) {
    for (const auto& r : rooms) {
      if (member(i, r)) continue;
      SCOPED_TRACE(users[i].name + " on " + r.kind + " room " + r.name);
      auto& x = *ss[i];
      const std::vector<json> requests = {
          {{"type", "send"}, {"room", r.name}, {"client_msg_id", "leak"}, {"body", "from outside"}},
          {{"type", "history"}, {"room", r.name}, {"limit", 200}},
          {{"type", "history"}, {"room", r.name}, {"before", 1000}, {"limit", 1}},
          {{"type", "typing"}, {"room", r.name}},
          {{"type", "read"}, {"room", r.name}, {"seq", 1000}},
          {{"type", "invite"}, {"room", r.name}, {"user", users[i].name}},
          {{"type", "invite"}, {"room", r.name}, {"user", users[(i + 1) % kUsers].name}},
      };
      for (const auto& q : requests) {
        auto reply = x.request(q);
        EXPECT_TRUE(is_ws_error(reply, "forbidden")) << q.dump() << " -> " << reply.dump();
        ++refused;
      }
      if (r.kind != "public") {  // public rooms are open to anyone by design
        auto reply = x.request({{"type", "join"}, {"room", r.name}});
        EXPECT_TRUE(is_ws_error(reply, "forbidden")) << reply.dump();
        ++refused;
      }
      auto res = http.get("/api/v1/rooms/" + client::url_encode_segment(r.name) + "/messages",
                          users[i].token);
      EXPECT_TRUE(is_http_error(res, 403, "forbidden")) << res.body;
      EXPECT_EQ(res.body.find("secret"), std::string::npos) << res.body;
      auto res2 = http.get(
          "/api/v1/rooms/" + client::url_encode_segment(r.name) + "/messages?before=2&limit=1",
          users[i].token);
      EXPECT_TRUE(is_http_error(res2, 403, "forbidden")) << res2.body;
      refused += 2;
    }
  }
  std::printf("matrix: %d users x %zu rooms, %d requests refused\n", kUsers, rooms.size(), refused);

  // Nothing of another room reached anyone, and nobody's typing or read marker leaked.
  for (int i = 0; i < kUsers; ++i) {
    for (const auto& f : ss[i]->barrier(10s)) {
      const auto type = f.value("type", "");
      if (type == "message" || type == "typing" || type == "read" || type == "joined" ||
          type == "invitation") {
        const auto room = f.value("room", "");
        bool ok = false;
        for (const auto& r : rooms) ok = ok || (r.name == room && member(i, r));
        EXPECT_TRUE(ok) << users[i].name << " received " << f.dump();
      }
      EXPECT_EQ(f.dump().find("from outside"), std::string::npos) << f.dump();
    }
  }
  // Resume cursors: a fresh session naming every room at 0 replays only its own rooms, whole.
  for (int i = 0; i < kUsers; ++i) {
    std::map<std::string, std::uint64_t> cursors;
    for (const auto& r : rooms) cursors[r.name] = 0;
    Session again(s, users[i], cursors);
    std::map<std::string, std::size_t> replayed;
    for (const auto& m : again.replayed()) {
      if (is_message(m)) ++replayed[m.value("room", "")];
    }
    for (const auto& r : rooms) {
      EXPECT_EQ(replayed[r.name], member(i, r) ? r.members.size() : 0u)
          << users[i].name << " resuming room " << r.name;
    }
  }
  // The store holds exactly the members' messages; listings and read markers are unchanged.
  for (const auto& r : rooms) {
    const int m = *r.members.begin();
    auto msgs = all_messages_http(s, users[m].token, r.name);
    EXPECT_EQ(msgs.size(), r.members.size()) << r.name;
    for (const auto& msg : msgs) {
      EXPECT_TRUE(member(0, r) || msg.value("from", "") != users[0].name);
      bool from_member = false;
      for (int i : r.members) from_member = from_member || msg.value("from", "") == users[i].name;
      EXPECT_TRUE(from_member) << msg.dump();
    }
  }
  for (int i = 0; i < kUsers; ++i) {
    auto listed = rooms_of(s, users[i].token);
    std::size_t expected = 0;
    for (const auto& r : rooms) {
      if (!member(i, r)) {
        EXPECT_EQ(listed.count(r.name), 0u) << users[i].name << " lists " << r.name;
      } else {
        ++expected;
        EXPECT_EQ(listed.at(r.name).value("read_seq", 99), 0) << "a read marker moved: " << r.name;
      }
    }
    EXPECT_EQ(listed.size(), expected);
  }
}

TEST_F(Security, PresenceWatchIsServerWideByDesignAndCarriesNoRoomData) {
  // Decision (docs/security.md): presence is a property of users, not of rooms; any
  // authenticated user may watch any user name, as in most chat servers. A watch answers with
  // the status only: no room, no message, nothing of the watched user's rooms.
  auto& s = srv();
  auto a = register_user(s, "pw");
  auto b = register_user(s, "pw");
  Session sb(s, b);
  auto room = unique_name("pwroom");
  sb.create(room, true);
  Session sa(s, a);
  sa.send({{"type", "watch"}, {"users", {b.name, "nobody_here"}}});
  auto p = sa.wait_type("presence");
  EXPECT_EQ(p, json({{"type", "presence"}, {"user", b.name}, {"status", "online"}}));
  auto q = sa.wait_type("presence");
  EXPECT_EQ(q, json({{"type", "presence"}, {"user", "nobody_here"}, {"status", "offline"}}))
      << "an unknown user looks like an offline one: no user enumeration";
  sb.send_message(room, "private words");
  sb.send({{"type", "typing"}, {"room", room}});
  for (const auto& f : sa.barrier()) {
    EXPECT_NE(f.value("type", ""), "message") << f.dump();
    EXPECT_NE(f.value("type", ""), "typing") << f.dump();
  }
}

// Typing events are not stored but fan out to the whole room: past the per-user burst they are
// refused with rate_limited (and retry_after_ms), and the room sees only the ones let through.
TEST_F(Security, TypingIsRateLimited) {
  auto& s = own(fast_args({"--typing-burst", "3", "--typing-rate", "0.01"}));
  auto a = register_user(s, "ty");
  auto b = register_user(s, "ty");
  const auto room = unique_name("tyroom");
  Session sa(s, a), sb(s, b);
  sa.create(room);
  sb.join(room);
  sa.barrier();
  sb.barrier();
  for (int i = 0; i < 3; ++i) sa.send({{"type", "typing"}, {"room", room}});
  auto refused = sa.request({{"type", "typing"}, {"room", room}});
  EXPECT_EQ(refused.value("type", ""), "error") << refused.dump();
  EXPECT_EQ(refused.value("code", ""), "rate_limited") << refused.dump();
  ASSERT_TRUE(refused.contains("retry_after_ms")) << refused.dump();
  EXPECT_GT(refused["retry_after_ms"].get<std::int64_t>(), 0);
  // Messages are a separate budget: still accepted.
  sa.send_message(room, "still talking");
  int typing = 0;
  sb.wait_for([&](const json& j) { return is_message(j, room); }, 5s, "the message");
  // The message was published after every typing event the node let through.
  for (const auto& f : sb.barrier()) typing += f.value("type", "") == "typing" ? 1 : 0;
  EXPECT_EQ(typing, 3);
}

// One watch may name at most --max-watch-users, and one socket may watch at most
// --max-watched-users in all: each costs memory for the socket's life. A watch past the total is
// refused as a whole (bad_request) and adds no one; naming users already watched costs nothing.
TEST_F(Security, WatchedUsersPerSocketAreCapped) {
  auto& s = own(fast_args({"--max-watched-users", "5"}));
  auto a = register_user(s, "wc");
  Session sa(s, a);
  auto watch = [&](std::vector<std::string> users) {
    return sa.request({{"type", "watch"}, {"users", users}});
  };
  auto presence_count = [&](const std::vector<json>& frames) {
    int n = 0;
    for (const auto& f : frames) n += f.value("type", "") == "presence" ? 1 : 0;
    return n;
  };
  sa.send({{"type", "watch"}, {"users", {"w1", "w2", "w3"}}});
  EXPECT_EQ(presence_count(sa.barrier()), 3);
  auto refused = watch({"w1", "w4", "w5", "w6"});  // 3 new: 6 in all
  EXPECT_EQ(refused.value("code", ""), "bad_request") << refused.dump();
  EXPECT_NE(refused.value("message", "").find("at most 5"), std::string::npos) << refused.dump();
  EXPECT_EQ(presence_count(sa.barrier()), 0) << "a refused watch adds no one";
  sa.send({{"type", "watch"}, {"users", {"w1", "w2", "w4", "w5"}}});  // 2 new: 5 in all
  EXPECT_EQ(presence_count(sa.barrier()), 4);
  EXPECT_EQ(watch({"w6"}).value("code", ""), "bad_request");
  // The socket stays usable.
  EXPECT_EQ(sa.request({{"type", "ping"}}).value("type", ""), "pong");
}

// ---------------------------------------------------------------------------------------------
// Login throttling

TEST_F(Security, LoginIsThrottledPerUsername) {
  auto& s = own(fast_args({"--login-burst-per-user", "3", "--login-rate-per-user", "0.01",
                           "--login-burst-per-ip", "1000", "--login-rate-per-ip", "100"}));
  auto victim = register_user(s, "victim");
  const std::string ip = "127.0.0.1";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(login_from(s, ip, victim.name, "wrong-guess-" + std::to_string(i)), 401)
        << "guess " << i;
  }
  json body;
  std::string retry;
  EXPECT_EQ(login_from(s, ip, victim.name, "wrong-guess-3", &body, &retry), 429);
  EXPECT_EQ(body["error"]["code"], "rate_limited") << body.dump();
  ASSERT_TRUE(body["error"].contains("retry_after_ms")) << body.dump();
  EXPECT_GT(body["error"]["retry_after_ms"].get<std::int64_t>(), 0);
  EXPECT_FALSE(retry.empty()) << "a 429 carries Retry-After";
  EXPECT_GE(std::stoi(retry), 1);
  // While throttled, even the right password is refused: throttling is not an oracle.
  EXPECT_EQ(login_from(s, ip, victim.name, victim.password), 429);
  // From another address too (the username's budget is spent); another user is not affected.
  EXPECT_EQ(login_from(s, "127.0.0.2", victim.name, victim.password), 429);
  auto other = register_user(s, "other");
  EXPECT_EQ(login_from(s, ip, other.name, other.password), 200);
  EXPECT_EQ(login_from(s, ip, other.name, "nope-nope-nope"), 401);
  // The victim's existing token still works: throttling locks logins, not sessions.
  EXPECT_EQ(s.http().get("/api/v1/rooms", victim.token).status, 200);
}

TEST_F(Security, LoginIsThrottledPerAddress) {
  auto& s = own(fast_args({"--login-burst-per-ip", "5", "--login-rate-per-ip", "0.01",
                           "--login-burst-per-user", "1000", "--login-rate-per-user", "100"}));
  auto u = register_user(s, "addr");
  // Five guesses at five different names from 127.0.0.3 spend the address's budget...
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(login_from(s, "127.0.0.3", "guess_" + std::to_string(i), "password-x"), 401);
  }
  EXPECT_EQ(login_from(s, "127.0.0.3", "guess_5", "password-x"), 429);
  EXPECT_EQ(login_from(s, "127.0.0.3", u.name, u.password), 429);
  // ...and nobody else's: another address logs in.
  EXPECT_EQ(login_from(s, "127.0.0.4", u.name, u.password), 200);
  // Names that cannot exist count against the address as well.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(login_from(s, "127.0.0.5", "Not A Name!", "password-x"), 401);
  EXPECT_EQ(login_from(s, "127.0.0.5", "Not A Name!", "password-x"), 429);
}

// Behind HAProxy every client arrives from the proxy's address. With --trusted-proxies the
// per-address limits count the address the proxy appended to X-Forwarded-For instead; the header
// is believed only from a trusted peer, and only its last entry (the client writes the others).
TEST_F(Security, TrustedProxysForwardedAddressIsTheClient) {
  auto& s = own(fast_args({"--trusted-proxies", "127.0.0.1", "--login-burst-per-ip", "2",
                           "--login-rate-per-ip", "0.01", "--login-burst-per-user", "1000"}));
  auto login_via = [&](const std::string& source, const std::string& forwarded) {
    RawConn c(s.host(), s.port(), source);
    c.send(post_to("/api/v1/login", login_body("nobody_fw", "password-x"),
                   "X-Forwarded-For: " + forwarded + "\r\n"));
    return c.read_response(10s);
  };
  // Two clients behind the trusted proxy have budgets of their own.
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.1"), 401);
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.1"), 401);
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.1"), 429);
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.2"), 401);
  // Only the last entry counts: a client cannot pick its address by sending the header itself.
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.2, 10.1.0.1"), 429);
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.1, 10.1.0.3"), 401);
  // From a peer that is not trusted the header is ignored: it is charged to the peer.
  EXPECT_EQ(login_via("127.0.0.9", "10.1.0.4"), 401);
  EXPECT_EQ(login_via("127.0.0.9", "10.1.0.5"), 401);
  EXPECT_EQ(login_via("127.0.0.9", "10.1.0.6"), 429);
  // An entry that is not an address is charged to the proxy itself.
  EXPECT_EQ(login_via("127.0.0.1", "not-an-address"), 401);
  EXPECT_EQ(login_via("127.0.0.1", "10.1.0.7:8080x"), 401);
  EXPECT_EQ(login_via("127.0.0.1", "garbage"), 429);
}

TEST_F(Security, SuccessfulLoginsAreNeverThrottled) {
  auto& s = own(fast_args({"--login-burst-per-user", "2", "--login-rate-per-user", "0.01",
                           "--login-burst-per-ip", "3", "--login-rate-per-ip", "0.01"}));
  auto u = register_user(s, "good");
  for (int i = 0; i < 12; ++i) EXPECT_EQ(login_from(s, "127.0.0.1", u.name, u.password), 200) << i;
  // One failure then successes: still fine (the budget of 2 per name is not spent).
  EXPECT_EQ(login_from(s, "127.0.0.1", u.name, "wrong-password"), 401);
  EXPECT_EQ(login_from(s, "127.0.0.1", u.name, u.password), 200);
}

// Each registration costs an Argon2id hash on the hashing pool that logins share: a flood of
// them from one address is cut off with 429, other addresses go on, and a request refused for
// its own fault (400) costs nothing.
TEST_F(Security, RegistrationsArePerAddressLimited) {
  auto& s = own({"--send-rate", "1000000", "--send-burst", "1000000", "--argon2-memlimit-kib",
                 "1024", "--argon2-opslimit", "1", "--register-burst-per-ip", "3",
                 "--register-rate-per-ip", "0.01"});
  const std::string path = "/api/v1/register";
  EXPECT_EQ(post_from(s, "127.0.0.6", path, login_body("Bad Name", "password-x")), 400);
  EXPECT_EQ(post_from(s, "127.0.0.6", path, login_body(unique_name("rg"), "short")), 400);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(post_from(s, "127.0.0.6", path, login_body(unique_name("rg"), "password-x")), 201)
        << i;
  }
  json body;
  std::string retry;
  EXPECT_EQ(
      post_from(s, "127.0.0.6", path, login_body(unique_name("rg"), "password-x"), &body, &retry),
      429);
  EXPECT_EQ(body["error"]["code"], "rate_limited") << body.dump();
  ASSERT_TRUE(body["error"].contains("retry_after_ms")) << body.dump();
  EXPECT_GT(body["error"]["retry_after_ms"].get<std::int64_t>(), 0);
  EXPECT_FALSE(retry.empty()) << "a 429 carries Retry-After";
  // Another address is not affected, and logins from the throttled one still work.
  const std::string name = unique_name("rg");
  EXPECT_EQ(post_from(s, "127.0.0.7", path, login_body(name, "password-x")), 201);
  EXPECT_EQ(login_from(s, "127.0.0.6", name, "password-x"), 200);
}

TEST_F(Security, LoginThrottlingCountsParallelGuesses) {
  // Guesses in flight together are charged before any password is checked.
  auto& s = own(fast_args({"--login-burst-per-user", "4", "--login-rate-per-user", "0.01",
                           "--login-burst-per-ip", "1000"}));
  auto u = register_user(s, "par");
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 20; ++i) {
    conns.push_back(std::make_unique<RawConn>(s.host(), s.port()));
    conns.back()->send(post_login(login_body(u.name, "parallel-guess-" + std::to_string(i))));
  }
  int unauthorized = 0, limited = 0;
  for (auto& c : conns) {
    int st = c->read_response(20s);
    unauthorized += st == 401;
    limited += st == 429;
  }
  EXPECT_EQ(unauthorized, 4) << "at most the burst is checked";
  EXPECT_EQ(limited, 16);
}

// ---------------------------------------------------------------------------------------------
// Connection caps

TEST_F(Security, ConnectionsPerAddressAreCapped) {
  auto& s = own(fast_args({"--max-connections-per-ip", "3"}));
  std::vector<std::unique_ptr<RawConn>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<RawConn>(s.host(), s.port(), "127.0.0.6"));
    ASSERT_EQ(try_upgrade(*held.back(), s), 101) << i;
  }
  RawConn fourth(s.host(), s.port(), "127.0.0.6");
  EXPECT_EQ(try_upgrade(fourth, s), 429) << fourth.head();
  EXPECT_EQ(fourth.body_json()["error"]["code"], "rate_limited") << fourth.body();
  EXPECT_TRUE(fourth.closed_within(2s));
  // Plain HTTP requests are not WebSocket connections: still served.
  RawConn http(s.host(), s.port(), "127.0.0.6");
  http.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(http.read_response(), 200);
  // Another address is not affected.
  RawConn other(s.host(), s.port(), "127.0.0.7");
  EXPECT_EQ(try_upgrade(other, s), 101);
  // Closing one frees its place (once the server has seen the close).
  held.pop_back();
  EXPECT_TRUE(eventually(
      [&] {
        RawConn again(s.host(), s.port(), "127.0.0.6");
        return try_upgrade(again, s) == 101;
      },
      5s));
}

TEST_F(Security, SessionsPerUserAreCapped) {
  auto& s = own(fast_args({"--max-connections-per-user", "2"}));
  auto u = register_user(s, "cap");
  auto a = std::make_unique<Session>(s, u);
  Session b(s, u);
  RawWsClient third;
  third.connect(s.host(), s.port());
  third.send_json({{"type", "auth"}, {"token", u.token}});
  EXPECT_TRUE(closed_with(third, 1008, "too many connections"));
  // The first two are unaffected; another user is not counted with them.
  EXPECT_NO_THROW(b.barrier());
  EXPECT_NO_THROW(a->barrier());
  Session other(s, register_user(s, "cap"));
  // A place frees up when a session ends.
  a.reset();
  EXPECT_TRUE(eventually(
      [&] {
        RawWsClient again;
        again.connect(s.host(), s.port());
        again.send_json({{"type", "auth"}, {"token", u.token}});
        auto f = again.read_frame(5s);
        return f.kind == RawFrame::Kind::frame && !f.is_close() &&
               f.json().value("type", "") == "welcome";
      },
      5s));
}

// ---------------------------------------------------------------------------------------------
// Unauthenticated sockets

TEST_F(Security, UnauthenticatedSocketsAreClosedAfterTheAuthTimeout) {
  auto& s = own(fast_args({"--auth-timeout-ms", "800"}));
  // Idle ones, one that sent half a frame header, one that keeps pinging, one that sent part
  // of an auth frame: none of them keeps its socket.
  std::vector<std::unique_ptr<RawWsClient>> socks;
  for (int i = 0; i < 20; ++i) {
    socks.push_back(std::make_unique<RawWsClient>());
    socks.back()->connect(s.host(), s.port());
  }
  socks[0]->send_raw("\x81");
  auto auth = ws::make_client_frame(ws::Opcode::text, "{\"type\":\"auth\",\"token\":\"abc\"}", 9);
  socks[1]->send_raw(auth.substr(0, auth.size() - 3));
  const auto t0 = steady::now();
  std::thread pinger([&] {
    for (int i = 0; i < 10; ++i) {
      try {
        socks[2]->send_frame(ws::Opcode::ping, "keepalive");
      } catch (const std::exception&) {
        return;
      }
      std::this_thread::sleep_for(150ms);
    }
  });
  for (std::size_t i = 0; i < socks.size(); ++i) {
    SCOPED_TRACE("socket " + std::to_string(i));
    auto c = socks[i]->wait_close(5s);
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1008) << c.describe();
    EXPECT_EQ(c.reason, "authentication timed out") << c.describe();
    EXPECT_LE(elapsed, 3000) << "closed late";
  }
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
  EXPECT_GE(elapsed, 600) << "closed before the timeout";
  pinger.join();
}

// ---------------------------------------------------------------------------------------------
// Limits enforced before the whole input is buffered

TEST_F(Security, OversizeHttpBodyIsRefusedBeforeItArrives) {
  auto& s = srv();
  {
    // A declared length over the limit: 413 at once, without the body being sent.
    RawConn c(s.host(), s.port());
    c.send(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000000\r\n\r\n{\"username\":");
    const auto t0 = steady::now();
    EXPECT_EQ(c.read_response(3s), 413) << c.head();
    EXPECT_LT(steady::now() - t0, 2s);
    EXPECT_EQ(c.body_json()["error"]["code"], "too_large") << c.body();
    EXPECT_TRUE(c.closed_within(2s));
  }
  {
    // A chunked body that grows past the limit: refused once it passes, long before its end.
    RawConn c(s.host(), s.port());
    c.send("POST /api/v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = "4000\r\n" + std::string(0x4000, 'a') + "\r\n";  // 16 KiB
    int sent = 0;
    for (; sent < 64; ++sent) {  // up to 1 MiB, never terminated
      if (!c.send(chunk)) break;
    }
    EXPECT_EQ(c.read_response(5s), 413) << c.head();
    EXPECT_EQ(c.body_json()["error"]["code"], "too_large") << c.body();
  }
  {
    // Headers over 16 KiB.
    RawConn c(s.host(), s.port());
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20000, 'p') + "\r\n\r\n");
    EXPECT_EQ(c.read_response(5s), 400) << c.head();
  }
}

TEST_F(Security, HttpBodyLimitIsConfigurable) {
  auto& s = own(fast_args({"--max-http-body-bytes", "1024"}));
  std::string fits =
      login_body("someone", std::string(1024 - login_body("someone", "").size(), 'p'));
  ASSERT_EQ(fits.size(), 1024u);
  RawConn a(s.host(), s.port());
  a.send(post_login(fits));
  EXPECT_EQ(a.read_response(), 401) << "1024 bytes are read and checked: " << a.body();
  RawConn b(s.host(), s.port());
  b.send(post_login(fits + " "));
  EXPECT_EQ(b.read_response(), 413) << b.head();
}

TEST_F(Security, OversizeFrameIsRefusedFromItsHeader) {
  auto& s = srv();
  auto u = register_user(s, "bigf");
  for (bool auth : {false, true}) {
    SCOPED_TRACE(auth ? "authenticated" : "before auth");
    RawWsClient raw;
    raw.connect(s.host(), s.port());
    if (auth) raw.authenticate(u.token);
    // 65 537 bytes announced; only the header and a few bytes sent.
    auto f = ws::make_client_frame(ws::Opcode::text, std::string(65537, 'x'), 0x01020304);
    raw.send_raw(f.substr(0, 14 + 10));
    EXPECT_TRUE(closed_with(raw, 1009, "message too big", 3s));
  }
}

// ---------------------------------------------------------------------------------------------
// core::Throttle, the pure component behind the checks above.

TEST(ThrottleUnit, LoginThrottleChargesBothKeysAndGivesBackOnSuccess) {
  using namespace std::chrono;
  core::LoginThrottle t({{1.0, 2}, {0.5, 3}});
  auto now = steady_clock::now();
  EXPECT_EQ(t.attempt("alice", "1.1.1.1", now), 0u);
  EXPECT_EQ(t.attempt("alice", "1.1.1.1", now), 0u);
  auto wait = t.attempt("alice", "1.1.1.1", now);
  EXPECT_EQ(wait, 1000u) << "one token at 1/s";
  // The refused attempt took nothing from the address: bob still passes once.
  EXPECT_EQ(t.attempt("bob", "1.1.1.1", now), 0u);
  EXPECT_EQ(t.attempt("carol", "1.1.1.1", now), 2000u) << "the address is empty: 0.5/s";
  t.succeeded("bob", "1.1.1.1", now);
  EXPECT_EQ(t.attempt("carol", "1.1.1.1", now), 0u) << "bob's success gave its token back";
  EXPECT_EQ(t.attempt("alice", "2.2.2.2", now + milliseconds(500)), 500u);
  EXPECT_EQ(t.attempt("alice", "2.2.2.2", now + seconds(1)), 0u);
  // Empty keys skip their bucket; a burst of 0 turns a limit off.
  core::LoginThrottle off({{0, 0}, {1, 1}});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(off.attempt("x", "", now), 0u);
}

TEST(ThrottleUnit, ConnectionCounterCapsAndForgets) {
  core::ConnectionCounter c(2);
  EXPECT_TRUE(c.try_acquire("a"));
  EXPECT_TRUE(c.try_acquire("a"));
  EXPECT_FALSE(c.try_acquire("a"));
  EXPECT_TRUE(c.try_acquire("b"));
  EXPECT_EQ(c.count("a"), 2u);
  c.release("a");
  EXPECT_TRUE(c.try_acquire("a"));
  c.release("zzz");  // never acquired: ignored
  c.release("a");
  c.release("a");
  c.release("a");
  EXPECT_EQ(c.count("a"), 0u);
  core::ConnectionCounter unlimited(0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(unlimited.try_acquire("k"));
  EXPECT_EQ(unlimited.count("k"), 1000u);
}

TEST(ThrottleUnit, ClientAddressBelievesOnlyTrustedProxiesLastEntry) {
  const std::vector<std::string> trusted{"127.0.0.1", "::1"};
  EXPECT_EQ(core::client_address("127.0.0.1", "", trusted), "127.0.0.1");
  EXPECT_EQ(core::client_address("127.0.0.1", "10.0.0.1", trusted), "10.0.0.1");
  EXPECT_EQ(core::client_address("::1", " 1.2.3.4 ,  2001:db8::7 ", trusted), "2001:db8::7");
  EXPECT_EQ(core::client_address("10.9.9.9", "10.0.0.1", trusted), "10.9.9.9");
  EXPECT_EQ(core::client_address("127.0.0.1", "10.0.0.1,", trusted), "127.0.0.1");
  EXPECT_EQ(core::client_address("127.0.0.1", "dead", trusted), "127.0.0.1");
  EXPECT_EQ(core::client_address("127.0.0.1", "10.0.0.1:80", trusted), "127.0.0.1");
  EXPECT_EQ(core::client_address("127.0.0.1", "10.0.0.1", {}), "127.0.0.1");
}

TEST(ThrottleUnit, OriginRules) {
  const std::vector<std::string> none;
  EXPECT_TRUE(core::origin_allowed("", false, "h:1", none));
  EXPECT_TRUE(core::origin_allowed("http://h:1", true, "h:1", none));
  EXPECT_TRUE(core::origin_allowed("https://h", true, "h:443", none));
  EXPECT_TRUE(core::origin_allowed("http://h:80", true, "h", none));
  EXPECT_FALSE(core::origin_allowed("http://h:2", true, "h:1", none));
  EXPECT_FALSE(core::origin_allowed("http://h:1", true, "", none));
  EXPECT_FALSE(core::origin_allowed("null", true, "h:1", none));
  EXPECT_FALSE(core::origin_allowed("", true, "h:1", none));
  const auto list = core::split_list(" https://a.example ,, https://B.example:8443/ ");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_TRUE(core::origin_allowed("https://a.example", true, "h", list));
  EXPECT_TRUE(core::origin_allowed("https://b.example:8443", true, "h", list));
  EXPECT_FALSE(core::origin_allowed("https://a.example.evil", true, "h", list));
  EXPECT_TRUE(core::origin_allowed("anything", true, "h", {"*"}));
  EXPECT_EQ(core::address_of("1.2.3.4:55"), "1.2.3.4");
  EXPECT_EQ(core::address_of("::1:55"), "::1");
  EXPECT_EQ(core::address_of("nocolon"), "nocolon");
}

TEST(ThrottleUnit, TokenBucketTablesStayBounded) {
  using namespace std::chrono;
  core::RateLimiter b({1000.0, 1});
  auto now = steady_clock::now();
  for (int i = 0; i < 100000; ++i) {
    b.take("k" + std::to_string(i), now + milliseconds(i));
  }
  EXPECT_LT(b.size(), 20000u) << "refilled buckets are swept";
}

}  // namespace
}  // namespace parley::test

namespace parley::test {
namespace {

// Slowloris: an HTTP connection that sends nothing, or trickles a request, is closed after
// --http-request-timeout-ms instead of holding a descriptor forever; a request that arrives in
// time is answered, and the keep-alive wait for the next one is bounded the same way.
TEST_F(Security, IdleAndTricklingHttpConnectionsAreClosed) {
  auto& s = own(fast_args({"--http-request-timeout-ms", "400"}));
  RawConn idle(s.host(), s.port());
  EXPECT_TRUE(idle.closed_within(3s)) << "an idle connection was kept open";

  RawConn trickle(s.host(), s.port());
  ASSERT_TRUE(trickle.send("GET /healthz HTTP/1.1\r\n"));
  EXPECT_TRUE(trickle.closed_within(3s)) << "a request never finished was kept open";

  RawConn kept(s.host(), s.port());
  ASSERT_TRUE(kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(kept.read_response(), 200);
  EXPECT_TRUE(kept.closed_within(3s)) << "an idle keep-alive connection was kept open";
}

}  // namespace
}  // namespace parley::test
