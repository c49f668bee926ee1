#include "support/raw_ws_client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

namespace parley::test {

namespace ws = protocol::ws;
using steady = std::chrono::steady_clock;

std::uint16_t RawFrame::close_code() const {
  if (payload.size() < 2) return 1005;
  return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                    static_cast<unsigned char>(payload[1]));
}

std::string RawFrame::close_reason() const {
  return payload.size() > 2 ? payload.substr(2) : std::string();
}

nlohmann::json RawFrame::json() const {
  return nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
}

std::string RawFrame::describe() const {
  switch (kind) {
    case Kind::timeout:
      return "timeout";
    case Kind::eof:
      return "EOF (connection closed without a close frame)";
    case Kind::frame:
      break;
  }
  if (is_close()) {
    return "close frame " + std::to_string(close_code()) + " \"" + close_reason() + "\"";
  }
  return "frame opcode " + std::to_string(static_cast<int>(opcode)) + " " +
         (payload.size() > 200 ? payload.substr(0, 200) + "…" : payload);
}

std::string CloseResult::describe() const {
  if (got_close_frame) {
    return "close frame " + std::to_string(code) + " \"" + reason + "\" after " +
           std::to_string(frames_skipped) + " data frames";
  }
  return std::string(timed_out ? "timeout" : "EOF") + " without a close frame after " +
         std::to_string(frames_skipped) + " data frames";
}

RawWsClient::~RawWsClient() {
  close_socket();
}

void RawWsClient::close_socket() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RawWsClient::connect(const std::string& host, std::uint16_t port, int rcvbuf,
                          const std::string& path) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket(): " + std::string(std::strerror(errno)));
  if (rcvbuf > 0) {
    // Must precede connect(): the window scale is negotiated in the handshake.
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw std::runtime_error("RawWsClient needs a numeric IPv4 host, got " + host);
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  send_raw("GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
           "\r\nSec-WebSocket-Version: 13\r\n\r\n");
  // Read the response head byte by byte is not needed: read chunks and keep what follows the
  // head (the server may send a frame right after it) in buf_.
  const auto deadline = steady::now() + std::chrono::seconds(5);
  for (;;) {
    auto end = buf_.find("\r\n\r\n");
    if (end != std::string::npos) {
      auto head = buf_.substr(0, end);
      buf_.erase(0, end + 4);
      if (head.rfind("HTTP/1.1 101", 0) != 0) {
        throw std::runtime_error("WebSocket upgrade refused: " + head);
      }
      if (head.find(ws::accept_key(key)) == std::string::npos) {
        throw std::runtime_error("WebSocket upgrade with a wrong Sec-WebSocket-Accept: " + head);
      }
      return;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) throw std::runtime_error("timed out waiting for the upgrade response");
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) throw std::runtime_error("connection closed during the upgrade");
    buf_.append(chunk, static_cast<std::size_t>(n));
  }
}

void RawWsClient::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("send(): " + std::string(std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void RawWsClient::send_frame(ws::Opcode op, std::string_view payload, bool fin) {
  static thread_local std::mt19937 rng(std::random_device{}());
  send_raw(ws::make_client_frame(op, payload, static_cast<std::uint32_t>(rng()), fin));
}

std::optional<RawFrame> take_frame(std::string& buf) {
  if (buf.size() < 2) return std::nullopt;
  auto b0 = static_cast<unsigned char>(buf[0]);
  auto b1 = static_cast<unsigned char>(buf[1]);
  bool masked = (b1 & 0x80) != 0;
  std::uint64_t len = b1 & 0x7f;
  std::size_t pos = 2;
  if (len == 126) {
    if (buf.size() < 4) return std::nullopt;
    len = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
    pos = 4;
  } else if (len == 127) {
    if (buf.size() < 10) return std::nullopt;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
    pos = 10;
  }
  unsigned char mask[4] = {0, 0, 0, 0};
  if (masked) {
    if (buf.size() < pos + 4) return std::nullopt;
    std::memcpy(mask, buf.data() + pos, 4);
    pos += 4;
  }
  if (buf.size() < pos + len) return std::nullopt;
  RawFrame f;
  f.kind = RawFrame::Kind::frame;
  f.fin = (b0 & 0x80) != 0;
  f.opcode = static_cast<ws::Opcode>(b0 & 0x0f);
  f.payload = buf.substr(pos, len);
  if (masked) {
    for (std::size_t i = 0; i < f.payload.size(); ++i)
      f.payload[i] ^= static_cast<char>(mask[i % 4]);
  }
  buf.erase(0, pos + len);
  return f;
}

RawFrame RawWsClient::read_frame(std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (auto f = take_frame(buf_)) {
      if (f->opcode == ws::Opcode::ping) send_frame(ws::Opcode::pong, f->payload);
      return *f;
    }
    if (eof_) {
      RawFrame f;
      f.kind = RawFrame::Kind::eof;
      return f;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() < 0) return RawFrame{};
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r == 0) {
      if (steady::now() >= deadline) return RawFrame{};
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("poll(): " + std::string(std::strerror(errno)));
    }
    char chunk[65536];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    buf_.append(chunk, static_cast<std::size_t>(n));
  }
}

nlohmann::json RawWsClient::read_json(std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    auto f = read_frame(std::max(left, std::chrono::milliseconds(0)));
    if (f.kind == RawFrame::Kind::frame && f.opcode == ws::Opcode::text) {
      auto j = f.json();
      if (j.is_discarded())
        throw std::runtime_error("server sent a non-JSON text frame: " + f.payload);
      return j;
    }
    if (f.kind == RawFrame::Kind::frame &&
        (f.opcode == ws::Opcode::ping || f.opcode == ws::Opcode::pong)) {
      continue;
    }
    throw std::runtime_error("expected a text frame, got " + f.describe());
  }
}

CloseResult RawWsClient::wait_close(std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  CloseResult out;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) {
      out.timed_out = true;
      return out;
    }
    auto f = read_frame(left);
    if (f.kind == RawFrame::Kind::timeout) {
      out.timed_out = true;
      return out;
    }
    if (f.kind == RawFrame::Kind::eof) return out;
    if (f.is_close()) {
      out.got_close_frame = true;
      out.code = f.close_code();
      out.reason = f.close_reason();
      return out;
    }
    ++out.frames_skipped;
  }
}

nlohmann::json RawWsClient::authenticate(const std::string& token) {
  send_json({{"type", "auth"}, {"token", token}});
  auto welcome = read_json(std::chrono::seconds(10));
  if (welcome.value("type", "") != "welcome") {
    throw std::runtime_error("expected welcome, got " + welcome.dump());
  }
  auto synced = read_json(std::chrono::seconds(10));
  if (synced.value("type", "") != "synced") {
    throw std::runtime_error("expected synced, got " + synced.dump());
  }
  return welcome;
}

}  // namespace parley::test
