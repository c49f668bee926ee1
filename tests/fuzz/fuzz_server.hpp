#pragma once
// An in-process parleyd for the session fuzz targets: a real Node (one shard thread) over a
// real SqliteStore in a temporary directory and the in-process bus, with a few users, rooms and
// messages. A fuzz input is fed to a real HttpSession or WsSession through one end of a Unix
// socket pair (the in-memory stream: no network, no refactoring of the sessions, which take an
// asio tcp::socket), and everything the server writes back is collected from the other end.
//
// Inputs may name the fixture's credentials by placeholder; they are substituted before the
// bytes are sent: $TOKEN (user "fuzzer"), $OTHER (user "fuzzee"), $EXPIRED (an expired token of
// "fuzzer"). The password of both users is "fuzz-password".

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>

namespace parley::transport {
class Node;
class Shard;
}  // namespace parley::transport

namespace parley::fuzz {

inline constexpr std::string_view kToken = "fuzzer-token-0123456789abcdefghijklmnopqrstu";
inline constexpr std::string_view kOtherToken = "fuzzee-token-0123456789abcdefghijklmnopqrstu";
inline constexpr std::string_view kExpiredToken = "expired-token-0123456789abcdefghijklmnopqrs";

// The node, created on first use and shut down at exit.
transport::Node& node();

// Replaces the placeholders above.
std::string substitute(std::string_view input);

// Restores the fixture's tokens (a fuzz input may log them out).
void restore_tokens();

struct Exchange {
  std::string output;          // every byte the server wrote, in order
  bool server_closed = false;  // the server closed (or shut down) its side
};

// Runs one connection: `start(fd)` must hand `fd` (the server's end) to a session on the shard
// thread; `input` is written in pieces sized by `rng`, then the client waits until the server
// has been quiet for `idle_ms` (or closed), shuts down its sending side and reads to EOF.
// Aborts when the server neither answers nor closes within 20 s (a hang).
Exchange exchange(const std::function<void(int fd)>& start, std::string_view input,
                  std::mt19937& rng, int idle_ms);

}  // namespace parley::fuzz

namespace parley::fuzz {

// Checks bytes a server wrote on a WebSocket: a sequence of unmasked, unfragmented frames
// (text, pong or close) with no reserved bits, each text frame one JSON object with a string
// "type" (an error frame carries a known code, never "internal"), at most one close frame, last,
// with a valid code and a UTF-8 reason. A frame cut short by the end of the bytes is tolerated
// (the client hung up first). Returns the number of complete frames.
std::size_t check_ws_output(std::string_view bytes);

// Checks one JSON document written by the server (a frame or an HTTP body).
void check_server_json(std::string_view text, bool is_frame);

}  // namespace parley::fuzz
