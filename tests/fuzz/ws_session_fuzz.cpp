// Fuzz target: a WebSocket session (transport::WsSession) of a real in-process node, fed raw
// bytes through an in-memory stream (a Unix socket pair; see fuzz_server.hpp).
//
// The first byte is a set of flags, the second seeds the write pieces:
//   bit 0: send a valid auth frame ({"type":"auth","token":$TOKEN}) first;
//   bit 1: structured: the rest is records [flags][length][payload] turned into masked client
//          frames (low nibble of flags: opcode, reserved ones included; 0x10: not final;
//          0x20: the payload is repeated to length*300 bytes), so that JSON requests reach the
//          decoder and the handlers; otherwise the rest is sent as raw bytes;
//   bit 2: hand the first bytes to the session as bytes read behind the upgrade request.
// Placeholders ($TOKEN, $OTHER, $EXPIRED) are replaced by the fixture's tokens.
//
// Properties: no crash, hang or sanitizer report in the server; everything it writes back is a
// valid sequence of server frames (check_ws_output): JSON objects, known error codes and never
// "internal", at most one close frame with a valid code, nothing after it.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "fuzz_server.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/node.hpp"
#include "transport/shard.hpp"
#include "transport/ws_session.hpp"

namespace asio = boost::asio;
namespace ws = parley::protocol::ws;
using parley::transport::WsSession;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::fuzz::node();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  auto& node = parley::fuzz::node();
  const std::uint8_t flags = data[0];
  std::mt19937 rng(data[1]);
  const std::string rest =
      parley::fuzz::substitute(std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2));

  std::string stream;
  if (flags & 1) {
    stream += ws::make_client_frame(
        ws::Opcode::text,
        "{\"type\":\"auth\",\"token\":\"" + std::string(parley::fuzz::kToken) + "\"}",
        static_cast<std::uint32_t>(rng()));
  }
  if (flags & 2) {
    std::size_t i = 0;
    while (i + 2 <= rest.size()) {
      const auto f = static_cast<std::uint8_t>(rest[i]);
      const std::size_t len = static_cast<std::uint8_t>(rest[i + 1]);
      i += 2;
      std::string payload = rest.substr(i, len);
      i += payload.size();
      if ((f & 0x20) && !payload.empty()) {
        const std::size_t target = len * 300;
        std::string big;
        while (big.size() < target) big += payload;
        payload = big.substr(0, target);
      }
      stream += ws::make_client_frame(static_cast<ws::Opcode>(f & 0x0F), payload,
                                      static_cast<std::uint32_t>(rng()), (f & 0x10) == 0);
    }
  } else {
    stream += rest;
  }

  std::string initial;
  if ((flags & 4) && !stream.empty()) {
    const std::size_t n = rng() % (stream.size() + 1);
    initial = stream.substr(0, n);
    stream.erase(0, n);
  }
  auto& shard = node.next_shard();
  auto ex = parley::fuzz::exchange(
      [&](int fd) {
        asio::post(shard.ioc(), [&node, &shard, fd, initial] {
          asio::ip::tcp::socket s(shard.ioc());
          s.assign(asio::ip::tcp::v4(), fd);
          std::make_shared<WsSession>(node, shard, std::move(s), initial, "fuzz")->start();
        });
      },
      stream, rng, 15);
  parley::fuzz::check_ws_output(ex.output);
  return 0;
}
