#pragma once
// A WebSocket client on a bare TCP socket for tests that must misbehave on purpose: send
// handcrafted frames (binary, oversized, invalid UTF-8, fragmented), or never read so that the
// server's write queue to it fills up. The upgrade is done by hand; frames are built with
// parley::protocol::ws::make_client_frame and server frames are parsed here.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "protocol/ws_frame.hpp"

namespace parley::test {

struct RawFrame {
  enum class Kind {
    frame,    // a complete frame: opcode, fin, payload
    timeout,  // nothing complete arrived in time
    eof,      // the server closed the TCP connection (or reset it)
  };
  Kind kind = Kind::timeout;
  protocol::ws::Opcode opcode = protocol::ws::Opcode::text;
  bool fin = true;
  std::string payload;

  bool is_close() const { return kind == Kind::frame && opcode == protocol::ws::Opcode::close; }
  // For a close frame: its code (1005 when it has none) and reason.
  std::uint16_t close_code() const;
  std::string close_reason() const;
  nlohmann::json json() const;
  std::string describe() const;
};

// How a connection ended, as seen by wait_close().
struct CloseResult {
  bool got_close_frame = false;  // false: EOF or timeout without a close frame
  bool timed_out = false;
  std::uint16_t code = 0;
  std::string reason;
  std::size_t frames_skipped = 0;  // data frames read before the close
  std::string describe() const;
};

// Takes one complete frame (masked or not) off the front of `buf`, if there is one; what follows
// it stays in `buf`. For any client that reads a server's bytes itself.
std::optional<RawFrame> take_frame(std::string& buf);

class RawWsClient {
 public:
  RawWsClient() = default;
  ~RawWsClient();
  RawWsClient(const RawWsClient&) = delete;
  RawWsClient& operator=(const RawWsClient&) = delete;

  // Connects and upgrades. `rcvbuf` > 0 sets SO_RCVBUF before connecting, so that the TCP
  // window the server sees is small from the first byte. Throws std::runtime_error.
  void connect(const std::string& host, std::uint16_t port, int rcvbuf = 0,
               const std::string& path = "/ws");

  // Sends bytes as they are.
  void send_raw(std::string_view bytes);
  // Sends one masked frame (random mask key).
  void send_frame(protocol::ws::Opcode op, std::string_view payload, bool fin = true);
  void send_text(std::string_view text) { send_frame(protocol::ws::Opcode::text, text); }
  void send_json(const nlohmann::json& j) { send_text(j.dump()); }

  // The next complete server frame. Pings are answered with pongs automatically and returned.
  RawFrame read_frame(std::chrono::milliseconds timeout);
  // The next text frame parsed as JSON; throws on timeout, close or EOF.
  nlohmann::json read_json(std::chrono::milliseconds timeout);
  // Reads (and discards) frames until a close frame, EOF or the timeout.
  CloseResult wait_close(std::chrono::milliseconds timeout);

  // Sends `auth` and reads up to `synced`; throws std::runtime_error when refused.
  nlohmann::json authenticate(const std::string& token);

  void close_socket();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace parley::test
