#include "parley/commands.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "client/api.hpp"
#include "client/ws_client.hpp"
#include "parley/state_dir.hpp"

namespace parley::cli {

using client::ApiError;
using client::TransportError;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Raised inside a command to end it with a message and an exit code.
struct Exit {
  int code;
  std::string message;
};

[[noreturn]] void fail(int code, std::string message) {
  throw Exit{code, std::move(message)};
}

bool has_credentials(const GlobalOptions& g) {
  return !g.user.empty() && !g.password.empty();
}

int exit_for(const ApiError& e) {
  if (e.status() == 401 || e.code() == "unauthorized") return exit_code::auth;
  return exit_code::server_error;
}

std::string describe(const ApiError& e) {
  std::string s = e.server_message().empty() ? e.code() : e.server_message();
  if (!e.code().empty() && s != e.code()) s += " (" + e.code() + ")";
  return s;
}

// The token to use: the saved one, else a fresh login when credentials were given.
struct Session {
  const GlobalOptions& g;
  StateDir state;
  std::string user;
  std::string token;

  explicit Session(const GlobalOptions& opts) : g(opts), state(opts.server) {
    if (auto saved = state.load_token()) {
      // A saved token of another user is not used when credentials name someone else.
      if (g.user.empty() || saved->user == g.user) {
        user = saved->user;
        token = saved->token;
        return;
      }
    }
    if (!has_credentials(g)) {
      fail(exit_code::auth,
           "not logged in: run `parley login --user NAME --password PASS` (or set PARLEY_USER "
           "and PARLEY_PASSWORD)");
    }
    relogin();
  }

  // Logs in again with the given credentials; false when there are none to use.
  bool relogin() {
    if (!has_credentials(g)) return false;
    client::HttpClient api(g.server);
    try {
      auto c = client::login(api, g.user, g.password);
      user = c.user.empty() ? g.user : c.user;
      token = c.token;
      state.save_token(user, token);
      return true;
    } catch (const ApiError& e) {
      fail(exit_for(e), "login as " + g.user + " failed: " + describe(e));
    }
  }

  [[noreturn]] void token_rejected() {
    state.remove_token();
    fail(exit_code::auth,
         "the session token was refused (logged out or expired): run `parley login`");
  }

  // An authenticated HTTP request, logging in again once if the saved token was refused.
  client::HttpResponse http(std::string_view method, const std::string& target) {
    client::HttpClient api(g.server);
    auto res = api.request(method, target, std::nullopt, token);
    if (res.status == 401) {
      if (!relogin()) token_rejected();
      res = api.request(method, target, std::nullopt, token);
      if (res.status == 401) token_rejected();
    }
    return res;
  }

  // A connected and authenticated WebSocket, logging in again once if the token was refused.
  std::unique_ptr<client::WsClient> websocket(const std::map<std::string, std::uint64_t>& cursors,
                                              client::AuthResult* out = nullptr) {
    for (int attempt = 0;; ++attempt) {
      auto ws = std::make_unique<client::WsClient>();
      ws->connect(g.server.host, g.server.port);
      try {
        auto r = client::authenticate(*ws, token, cursors);
        if (out) *out = std::move(r);
        return ws;
      } catch (const ApiError& e) {
        if (e.code() != "unauthorized") throw;
        if (attempt > 0 || !relogin()) token_rejected();
      }
    }
  }
};

// An error frame answering a request; `retry_after_ms` is set for rate_limited.
class ErrorReply : public ApiError {
 public:
  explicit ErrorReply(const json& frame)
      : ApiError(0, frame.value("code", std::string()), frame.value("message", std::string())),
        retry_after_ms(frame.value("retry_after_ms", std::int64_t{0})) {}
  std::int64_t retry_after_ms;
};

// Sends `request` with a fresh ref and returns the reply carrying that ref; other frames
// (live messages, presence…) are skipped. An error reply becomes ApiError.
json request_reply(client::WsClient& ws, json request, std::chrono::milliseconds timeout = 10s) {
  static std::uint64_t next_ref = 0;
  auto ref = "cli-" + std::to_string(++next_ref);
  request["ref"] = ref;
  ws.send_json(request);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw TransportError("no answer from the server in time");
    auto ev = ws.receive(left);
    if (ev.is_timeout()) continue;
    if (ev.is_closed()) throw TransportError("the server closed the connection: " + ev.describe());
    auto j = ev.json();
    if (!j.is_object() || j.value("ref", std::string()) != ref) continue;
    if (j.value("type", std::string()) == "error") throw ErrorReply(j);
    return j;
  }
}

// Runs a command body, mapping every failure to a message on stderr and an exit code.
template <class F>
int run(F body) {
  try {
    return body();
  } catch (const Exit& e) {
    if (!e.message.empty()) std::cerr << "parley: " << e.message << "\n";
    return e.code;
  } catch (const ApiError& e) {
    std::cerr << "parley: " << describe(e) << "\n";
    return exit_for(e);
  } catch (const TransportError& e) {
    std::cerr << "parley: " << e.what() << "\n";
    return exit_code::connection;
  } catch (const std::exception& e) {
    std::cerr << "parley: " << e.what() << "\n";
    return exit_code::server_error;
  }
}

void require_credentials(const GlobalOptions& g, const char* what) {
  if (!has_credentials(g)) {
    fail(exit_code::usage,
         std::string(what) + " needs --user and --password (or PARLEY_USER and PARLEY_PASSWORD)");
  }
}

std::string format_message(const json& m) {
  return "[" + m.value("room", std::string()) + " #" + std::to_string(m.value("seq", 0ULL)) + "] " +
         m.value("from", std::string()) + ": " + m.value("body", std::string());
}

}  // namespace

int cmd_register(const GlobalOptions& g) {
  return run([&] {
    require_credentials(g, "register");
    client::HttpClient http(g.server);
    auto c = client::register_user(http, g.user, g.password);
    StateDir(g.server).save_token(c.user.empty() ? g.user : c.user, c.token);
    std::cout << "registered and logged in as " << g.user << "\n";
    return exit_code::ok;
  });
}

int cmd_login(const GlobalOptions& g) {
  return run([&] {
    require_credentials(g, "login");
    client::HttpClient http(g.server);
    auto c = client::login(http, g.user, g.password);
    StateDir(g.server).save_token(c.user.empty() ? g.user : c.user, c.token);
    std::cout << "logged in as " << g.user << "\n";
    return exit_code::ok;
  });
}

int cmd_logout(const GlobalOptions& g) {
  return run([&] {
    StateDir state(g.server);
    auto saved = state.load_token();
    if (!saved) fail(exit_code::auth, "not logged in");
    client::HttpClient http(g.server);
    // The local token is forgotten whatever the server says: a refused token is dead anyway.
    try {
      client::logout(http, saved->token);
    } catch (const ApiError& e) {
      state.remove_token();
      if (e.status() == 401) {
        std::cout << "logged out (the token had already expired)\n";
        return exit_code::ok;
      }
      throw;
    }
    state.remove_token();
    std::cout << "logged out\n";
    return exit_code::ok;
  });
}

int cmd_rooms(const GlobalOptions& g) {
  return run([&] {
    Session s(g);
    auto res = s.http("GET", "/api/v1/rooms");
    if (res.status != 200) client::throw_api_error(res);
    auto j = res.json();
    std::printf("%-40s %-8s %10s %10s %8s\n", "ROOM", "KIND", "LAST", "READ", "UNREAD");
    for (const auto& r : j.value("rooms", json::array())) {
      std::printf("%-40s %-8s %10llu %10llu %8llu\n", r.value("room", std::string()).c_str(),
                  r.value("kind", std::string()).c_str(),
                  static_cast<unsigned long long>(r.value("last_seq", 0ULL)),
                  static_cast<unsigned long long>(r.value("read_seq", 0ULL)),
                  static_cast<unsigned long long>(r.value("unread", 0ULL)));
    }
    return exit_code::ok;
  });
}

int cmd_join(const GlobalOptions& g, const std::string& room) {
  return run([&] {
    Session s(g);
    auto ws = s.websocket({});
    auto r = request_reply(*ws, {{"type", "join"}, {"room", room}});
    std::cout << "joined " << r.value("room", room) << " (last seq " << r.value("last_seq", 0ULL)
              << ")\n";
    ws->close();
    return exit_code::ok;
  });
}

int cmd_create(const GlobalOptions& g, const std::string& room, bool is_private) {
  return run([&] {
    Session s(g);
    auto ws = s.websocket({});
    auto r = request_reply(
        *ws,
        {{"type", "create"}, {"room", room}, {"visibility", is_private ? "private" : "public"}});
    std::cout << "created " << (is_private ? "private" : "public") << " room "
              << r.value("room", room) << "\n";
    ws->close();
    return exit_code::ok;
  });
}

int cmd_send(const GlobalOptions& g, const std::string& room, const std::string& text) {
  return run([&] {
    Session s(g);
    // One id for every attempt: the server acknowledges a retry with the original seq and
    // stores nothing new, so retrying after a lost connection cannot duplicate the message.
    const auto id = client::random_client_msg_id();
    const json request = {{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", text}};
    auto backoff = 250ms;
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    std::unique_ptr<client::WsClient> ws;
    for (;;) {
      try {
        if (!ws || !ws->is_open()) ws = s.websocket({});
        auto ack = request_reply(*ws, request);
        std::cout << "sent to " << room << " #" << ack.value("seq", 0ULL) << "\n";
        ws->close();
        return exit_code::ok;
      } catch (const ErrorReply& e) {
        if (e.code() == "rate_limited") {
          std::this_thread::sleep_for(
              std::chrono::milliseconds(std::max<std::int64_t>(50, e.retry_after_ms)));
          continue;
        }
        if (e.code() != "unavailable" || std::chrono::steady_clock::now() > give_up) throw;
        if (g.verbose) std::cerr << "parley: server unavailable, retrying\n";
      } catch (const TransportError& e) {
        if (std::chrono::steady_clock::now() > give_up) throw;
        if (g.verbose) std::cerr << "parley: " << e.what() << "; retrying\n";
        ws.reset();
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  });
}

int cmd_tail(const GlobalOptions& g, const TailOptions& t) {
  return run([&] {
    Session s(g);
    // Only rooms the user belongs to can be tailed; the server would silently ignore others.
    auto res = s.http("GET", "/api/v1/rooms");
    if (res.status != 200) client::throw_api_error(res);
    std::map<std::string, std::uint64_t> last_seq;
    for (const auto& r : res.json().value("rooms", json::array())) {
      last_seq[r.value("room", std::string())] = r.value("last_seq", 0ULL);
    }
    std::map<std::string, std::uint64_t> cursors;
    for (const auto& room : t.rooms) {
      auto it = last_seq.find(room);
      if (it == last_seq.end()) {
        fail(exit_code::server_error,
             "not a member of " + room + " (run `parley join " + room + "`)");
      }
      // Without a saved cursor, tailing starts at the present (or --last messages back); the
      // server replays from there, so nothing sent after this point is missed.
      auto saved = s.state.load_cursor(s.user, room);
      cursors[room] = saved ? *saved : (it->second > t.last ? it->second - t.last : 0);
    }

    std::uint64_t printed = 0;
    // Prints the message if it is the next one of its room, and persists the cursor right
    // after printing it, so that a later `tail` resumes exactly after it. Returns false on a
    // gap, which a reconnect (resuming from the cursor) repairs.
    auto handle = [&](const json& m) {
      if (m.value("type", std::string()) != "message") return true;
      auto room = m.value("room", std::string());
      auto it = cursors.find(room);
      if (it == cursors.end()) return true;
      auto seq = m.value("seq", 0ULL);
      if (seq <= it->second) return true;  // already printed
      if (seq != it->second + 1) {
        if (g.verbose) std::cerr << "parley: gap in " << room << ", resyncing\n";
        return false;
      }
      std::cout << format_message(m) << std::endl;
      it->second = seq;
      s.state.save_cursor(s.user, room, seq);
      ++printed;
      return true;
    };

    std::mt19937 rng(std::random_device{}());
    auto backoff = 250ms;
    for (;;) {
      try {
        client::AuthResult auth;
        auto ws = s.websocket(cursors, &auth);
        bool ok = true;
        for (const auto& m : auth.replayed) {
          if (!(ok = handle(m))) break;
          if (t.count && printed >= t.count) return exit_code::ok;
        }
        if (ok) backoff = 250ms;
        while (ok) {
          auto ev = ws->receive(1s);
          if (ev.is_timeout()) continue;
          if (ev.is_closed()) {
            if (g.verbose) std::cerr << "parley: disconnected: " << ev.describe() << "\n";
            break;
          }
          ok = handle(ev.json());
          if (t.count && printed >= t.count) {
            ws->close();
            return exit_code::ok;
          }
        }
        ws->drop();
      } catch (const TransportError& e) {
        if (g.verbose) std::cerr << "parley: " << e.what() << "\n";
      }
      // Backoff with jitter, so that many clients of a restarted server do not reconnect in
      // lockstep.
      auto jitter =
          std::uniform_int_distribution<int>(0, static_cast<int>(backoff.count() / 2))(rng);
      std::this_thread::sleep_for(backoff + std::chrono::milliseconds(jitter));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
    }
  });
}

int cmd_history(const GlobalOptions& g, const std::string& room,
                std::optional<std::uint64_t> before, std::uint32_t limit) {
  return run([&] {
    Session s(g);
    std::string target = "/api/v1/rooms/" + client::url_encode_segment(room) +
                         "/messages?limit=" + std::to_string(limit);
    if (before) target += "&before=" + std::to_string(*before);
    auto res = s.http("GET", target);
    if (res.status != 200) client::throw_api_error(res);
    auto j = res.json();
    const auto& messages = j.value("messages", json::array());
    for (const auto& m : messages) std::cout << format_message(m) << "\n";
    if (j.value("has_more", false) && !messages.empty()) {
      std::cerr << "(older messages: --before " << messages.front().value("seq", 0ULL) << ")\n";
    }
    return exit_code::ok;
  });
}

}  // namespace parley::cli
