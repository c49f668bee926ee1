#pragma once
// Helpers shared by the integration tests: unique names, registered users, and Session, a
// WebSocket client that keeps frames it skipped so that waiting for one reply never loses the
// live events that arrived before it.
//
// Helpers report failures by throwing std::runtime_error with a full description; GoogleTest
// records the exception as a failure of the running test.

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/api.hpp"
#include "client/ws_client.hpp"
#include "support/server_process.hpp"

namespace parley::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A name unique in this process and very likely across processes: prefix + pid + counter,
// lowercase, at most 32 characters, so it is a valid user name and a valid room name.
std::string unique_name(std::string_view prefix);

struct User {
  std::string name;
  std::string password;
  std::string token;
};

// Registers a fresh user (one Argon2 hash: about 50 ms). Throws on any failure.
User register_user(const ServerProcess& server, std::string_view prefix = "u");
// Logs `user` in again and returns the new token.
std::string login_token(const ServerProcess& server, const User& user);

// A text frame of type "message" for `room` (any room when empty).
bool is_message(const json& j, std::string_view room = {});

class Session {
 public:
  // Connects and authenticates with `cursors`; `welcome` and the frames replayed before
  // `synced` are kept. Throws when authentication fails.
  Session(const ServerProcess& server, const std::string& token,
          const std::map<std::string, std::uint64_t>& cursors = {});
  Session(const ServerProcess& server, const User& user,
          const std::map<std::string, std::uint64_t>& cursors = {})
      : Session(server, user.token, cursors) {}

  client::WsClient& ws() { return *ws_; }
  const json& welcome() const { return auth_.welcome; }
  const std::vector<json>& replayed() const { return auth_.replayed; }

  void send(const json& frame) { ws_->send_json(frame); }

  // The next frame (skipped ones first). Throws on timeout or when the connection ends.
  json next(std::chrono::milliseconds timeout = 5s);
  // The next frame satisfying `pred`; frames before it are kept for later next() calls.
  json wait_for(const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds timeout = 5s, std::string_view what = "a frame");
  // The next frame of `type`, keeping the others.
  json wait_type(std::string_view type, std::chrono::milliseconds timeout = 5s);
  // Sends `request` with a fresh `ref` and returns the frame echoing that ref (a reply or
  // an error).
  json request(json request, std::chrono::milliseconds timeout = 5s);
  // Sends a ping with a fresh ref and returns every frame that arrived before its pong
  // (including kept ones), leaving nothing kept. The server answers in order, so anything
  // it queued for this session before reading the ping is in the result.
  std::vector<json> barrier(std::chrono::milliseconds timeout = 5s);
  // Frames of the kept backlog (not yet returned by next()).
  std::size_t kept() const { return kept_.size(); }

  // Convenience requests. They throw unless the reply has the expected type.
  json create(const std::string& room, bool is_private = false);
  json join(const std::string& room);
  // Sends a message and waits for its ack; `id` defaults to a random client_msg_id.
  json send_message(const std::string& room, const std::string& body, std::string id = {});

  // Skips frames until the connection ends; returns the close event (kind timeout when it is
  // still open after `timeout`).
  client::WsEvent wait_closed(std::chrono::milliseconds timeout = 5s);

 private:
  std::unique_ptr<client::WsClient> ws_;
  client::AuthResult auth_;
  std::deque<json> kept_;
  std::uint64_t next_ref_ = 0;
};

struct CommandResult {
  int code = -1;       // exit status; 128 + the signal when killed
  std::string output;  // stdout and stderr
};

// Runs `cmd` through /bin/sh with `input` on its stdin (empty: nothing), stdout and stderr
// captured together. Throws when the shell cannot be started.
CommandResult run_shell(const std::string& cmd, const std::string& input = {});

// `parleyd admin ARGS...` against `server`'s SQLite store (`--store sqlite:<its data dir>` is
// appended unless `with_store` is false), killed after 30 s.
CommandResult run_parleyd_admin(const ServerProcess& server, const std::vector<std::string>& args,
                                bool with_store = true);

// The message frames of `room` among `frames`.
std::vector<json> messages_of(const std::vector<json>& frames, std::string_view room);

// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 5s);

// GET /api/v1/rooms for `token`, as a map room -> entry. Throws unless 200.
std::map<std::string, json> rooms_of(const ServerProcess& server, const std::string& token);

// Every message of `room` through the HTTP messages API (paging with before), ascending.
std::vector<json> all_messages_http(const ServerProcess& server, const std::string& token,
                                    const std::string& room);

}  // namespace parley::test
