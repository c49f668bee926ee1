#pragma once
// A synchronous WebSocket client over plain TCP (Boost.Beast). One read is kept pending between
// calls, so a receive that times out loses nothing: the frame that arrives later is returned by
// the next receive. Not thread-safe: one thread drives one client (give each thread its own).

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "client/client_error.hpp"

namespace parley::client {

struct WsEvent {
  enum class Kind {
    text,     // a text frame in `data`
    binary,   // a binary frame in `data` (Parley never sends one)
    closed,   // the connection ended: `close_code` and `close_reason`
    timeout,  // nothing arrived in time; the connection is still usable
  };
  Kind kind = Kind::timeout;
  std::string data;
  // The peer's close code, 1005 when its close frame carried none, 1006 when the connection
  // dropped without a close frame.
  std::uint16_t close_code = 0;
  std::string close_reason;

  bool is_text() const { return kind == Kind::text; }
  bool is_closed() const { return kind == Kind::closed; }
  bool is_timeout() const { return kind == Kind::timeout; }
  // `data` parsed as JSON; a discarded value when it is not JSON.
  nlohmann::json json() const;
  // A one-line description for diagnostics.
  std::string describe() const;
};

class WsClient {
 public:
  WsClient();
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Opens the TCP connection and performs the upgrade. Throws TransportError.
  void connect(const std::string& host, std::uint16_t port, const std::string& path = "/ws",
               std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Sends one frame. Throws TransportError when the connection is gone or the write stalls.
  void send_text(std::string_view text);
  void send_json(const nlohmann::json& j) { send_text(j.dump()); }
  void send_binary(std::string_view data);

  // The next frame or the end of the connection, waiting at most `timeout`.
  WsEvent receive(std::chrono::milliseconds timeout);

  // Performs the closing handshake (code 1000 by default) and waits briefly for its end.
  void close(std::uint16_t code = 1000, std::string_view reason = {});
  // Drops the TCP connection without a closing handshake, as a crashed client would.
  void drop();

  // True until the connection ended (closed by either side or failed).
  bool is_open() const;

  // The number of bytes received in frames so far (for the bench tool).
  std::uint64_t bytes_received() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::client
