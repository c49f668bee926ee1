#include "support/test_util.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

namespace parley::test {

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/parley-test-XXXXXX";
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed for " + templ);
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string unique_name(std::string_view prefix) {
  static std::atomic<std::uint64_t> counter{0};
  // A random per-process tag keeps names distinct across restarts of a test binary that
  // reuse a pid against the same data (unlikely, but cheap to rule out).
  static const std::string tag = [] {
    std::random_device rd;
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::string t;
    for (int i = 0; i < 4; ++i) t.push_back(alphabet[rd() % 36]);
    return t;
  }();
  std::string name(prefix.substr(0, 12));
  name += "_" + tag + std::to_string(::getpid() % 100000) + "_" + std::to_string(++counter);
  return name.substr(0, 32);
}

User register_user(const ServerProcess& server, std::string_view prefix) {
  User u;
  u.name = unique_name(prefix);
  u.password = "pw-" + u.name + "-secret";
  auto http = server.http();
  auto c = client::register_user(http, u.name, u.password);
  u.token = c.token;
  return u;
}

std::string login_token(const ServerProcess& server, const User& user) {
  auto http = server.http();
  return client::login(http, user.name, user.password).token;
}

bool is_message(const json& j, std::string_view room) {
  return j.is_object() && j.value("type", "") == "message" &&
         (room.empty() || j.value("room", "") == room);
}

Session::Session(const ServerProcess& server, const std::string& token,
                 const std::map<std::string, std::uint64_t>& cursors) {
  ws_ = server.connect_ws();
  auth_ = client::authenticate(*ws_, token, cursors);
}

json Session::next(std::chrono::milliseconds timeout) {
  if (!kept_.empty()) {
    auto j = std::move(kept_.front());
    kept_.pop_front();
    return j;
  }
  auto ev = ws_->receive(timeout);
  if (ev.is_text()) {
    auto j = ev.json();
    if (j.is_discarded()) throw std::runtime_error("server sent a non-JSON frame: " + ev.data);
    return j;
  }
  throw std::runtime_error("expected a frame within " + std::to_string(timeout.count()) +
                           " ms, got " + ev.describe());
}

json Session::wait_for(const std::function<bool(const json&)>& pred,
                       std::chrono::milliseconds timeout, std::string_view what) {
  for (auto it = kept_.begin(); it != kept_.end(); ++it) {
    if (pred(*it)) {
      auto j = std::move(*it);
      kept_.erase(it);
      return j;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string seen;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw std::runtime_error(
          "timed out after " + std::to_string(timeout.count()) + " ms waiting for " +
          std::string(what) +
          (seen.empty() ? "; nothing else arrived" : "; other frames: " + seen));
    }
    auto ev = ws_->receive(left);
    if (ev.is_timeout()) continue;
    if (!ev.is_text()) {
      throw std::runtime_error("waiting for " + std::string(what) + ", got " + ev.describe() +
                               (seen.empty() ? "" : " after " + seen));
    }
    auto j = ev.json();
    if (pred(j)) return j;
    if (seen.size() < 2000) seen += ev.data + " ";
    kept_.push_back(std::move(j));
  }
}

json Session::wait_type(std::string_view type, std::chrono::milliseconds timeout) {
  return wait_for([&](const json& j) { return j.value("type", "") == type; }, timeout,
                  "a \"" + std::string(type) + "\" frame");
}

json Session::request(json req, std::chrono::milliseconds timeout) {
  auto ref = "t" + std::to_string(++next_ref_);
  req["ref"] = ref;
  ws_->send_json(req);
  return wait_for([&](const json& j) { return j.is_object() && j.value("ref", "") == ref; },
                  timeout, "the reply to " + req.dump());
}

std::vector<json> Session::barrier(std::chrono::milliseconds timeout) {
  auto ref = "barrier" + std::to_string(++next_ref_);
  ws_->send_json({{"type", "ping"}, {"ref", ref}});
  auto pong = wait_for(
      [&](const json& j) { return j.value("type", "") == "pong" && j.value("ref", "") == ref; },
      timeout, "the pong of a barrier ping");
  std::vector<json> before(kept_.begin(), kept_.end());
  kept_.clear();
  return before;
}

json Session::create(const std::string& room, bool is_private) {
  auto r = request(
      {{"type", "create"}, {"room", room}, {"visibility", is_private ? "private" : "public"}});
  if (r.value("type", "") != "joined")
    throw std::runtime_error("create " + room + " failed: " + r.dump());
  return r;
}

json Session::join(const std::string& room) {
  auto r = request({{"type", "join"}, {"room", room}});
  if (r.value("type", "") != "joined")
    throw std::runtime_error("join " + room + " failed: " + r.dump());
  return r;
}

json Session::send_message(const std::string& room, const std::string& body, std::string id) {
  if (id.empty()) id = client::random_client_msg_id();
  auto r = request({{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", body}});
  if (r.value("type", "") != "ack")
    throw std::runtime_error("send to " + room + " failed: " + r.dump());
  return r;
}

client::WsEvent Session::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return client::WsEvent{};
    auto ev = ws_->receive(left);
    if (ev.is_closed()) return ev;
    if (ev.is_timeout()) continue;
    if (ev.is_text()) kept_.push_back(ev.json());
  }
}

std::vector<json> messages_of(const std::vector<json>& frames, std::string_view room) {
  std::vector<json> out;
  for (const auto& f : frames) {
    if (is_message(f, room)) out.push_back(f);
  }
  return out;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

std::map<std::string, json> rooms_of(const ServerProcess& server, const std::string& token) {
  auto res = server.http().get("/api/v1/rooms", token);
  if (res.status != 200) {
    throw std::runtime_error("GET /api/v1/rooms: " + std::to_string(res.status) + " " + res.body);
  }
  std::map<std::string, json> out;
  const auto body = res.json();  // named: iterating a member of a temporary would dangle
  for (const auto& r : body.at("rooms")) out[r.at("room").get<std::string>()] = r;
  return out;
}

std::vector<json> all_messages_http(const ServerProcess& server, const std::string& token,
                                    const std::string& room) {
  std::vector<json> out;
  std::optional<std::uint64_t> before;
  auto http = server.http();
  for (int page = 0; page < 100000; ++page) {
    std::string target =
        "/api/v1/rooms/" + client::url_encode_segment(room) + "/messages?limit=200";
    if (before) target += "&before=" + std::to_string(*before);
    auto res = http.get(target, token);
    if (res.status != 200) {
      throw std::runtime_error("GET " + target + ": " + std::to_string(res.status) + " " +
                               res.body);
    }
    auto j = res.json();
    auto msgs = j.at("messages");
    out.insert(out.begin(), msgs.begin(), msgs.end());
    if (!j.at("has_more").get<bool>() || msgs.empty()) break;
    before = msgs.front().at("seq").get<std::uint64_t>();
  }
  return out;
}

CommandResult run_shell(const std::string& cmd, const std::string& input) {
  TempDir dir;
  const auto in = dir.path() / "stdin";
  {
    std::ofstream f(in, std::ios::binary);
    f << input;
  }
  CommandResult r;
  FILE* p = ::popen((cmd + " <'" + in.string() + "' 2>&1").c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed for " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

CommandResult run_parleyd_admin(const ServerProcess& server, const std::vector<std::string>& args,
                                bool with_store) {
  std::string cmd = "timeout 30 '" + parleyd_path() + "' admin";
  for (const auto& a : args) cmd += " '" + a + "'";
  if (with_store) cmd += " --store 'sqlite:" + (server.data_dir() / "parley.db").string() + "'";
  return run_shell(cmd);
}

}  // namespace parley::test
