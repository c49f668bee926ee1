#pragma once
// RFC 6455 framing owned by Parley: Beast serves HTTP and the upgrade request, while frames are
// parsed and written here, so that every frame queued for one client can leave in one write.
// The parser is pure (bytes in, events out), incremental, and never buffers a message past its
// limit: the declared length is checked against the limit before any payload is kept.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parley::protocol::ws {

enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

// Close codes Parley sends.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;  // binary frames
inline constexpr std::uint16_t invalid_payload = 1007;   // invalid UTF-8
inline constexpr std::uint16_t policy_violation = 1008;  // auth, slow consumer, logout
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
}  // namespace close_code

struct ParserLimits {
  std::size_t max_message_bytes = 64 * 1024;  // a text message (all fragments) over this: 1009
};

struct FrameEvent {
  enum class Kind {
    text,   // a complete text message (fragments joined), valid UTF-8
    ping,   // answer with a pong carrying `data`
    pong,   // ignore
    close,  // peer's close; `code` (1005 when absent) and `data` = reason
    error,  // protocol violation: close the connection with `code`, reason `data`
  };
  Kind kind = Kind::text;
  std::string data;
  std::uint16_t code = 0;
};

// Incremental parser of client-to-server frames (which must be masked).
// Errors and their close codes:
//   1002: unmasked frame, reserved bits set, reserved opcode, control frame over 125 bytes or
//         fragmented, continuation without a start, a data frame inside a fragmented message,
//         close payload of 1 byte or with an invalid code;
//   1003: a binary frame; 1007: invalid UTF-8 (text, also split across fragments, or close
//   reason), detected as early as possible; 1009: a message over max_message_bytes.
// After an error event, or a close event, the parser consumes nothing more.
class FrameParser {
 public:
  explicit FrameParser(ParserLimits limits = {});
  // Consumes what it can from `in`, appending events to `out`; returns the number of bytes
  // consumed. A frame header is consumed only once complete, a control frame only once whole;
  // the payload of a text or continuation frame is consumed (unmasked, validated, kept) as it
  // arrives, so that invalid UTF-8 fails fast and nothing is ever parsed twice. Unconsumed bytes
  // (a partial header or control frame) must be offered again with more data after them.
  std::size_t feed(std::string_view in, std::vector<FrameEvent>& out);
  // True after an error or a close event: the connection is finished.
  bool failed() const { return done_; }

 private:
  // Emits an error event and stops the parser.
  void fail(std::vector<FrameEvent>& out, std::uint16_t code, std::string_view reason);

  ParserLimits limits_;
  bool done_ = false;
  bool in_fragmented_ = false;
  std::string message_;           // the text message being assembled across fragments
  std::uint32_t utf8_state_ = 0;  // incremental validator state across fragments
  // The data frame whose header has been consumed and whose payload is still arriving.
  bool in_frame_ = false;
  bool frame_fin_ = false;
  std::uint64_t frame_remaining_ = 0;
  std::array<std::uint8_t, 4> mask_{};
  std::size_t mask_offset_ = 0;  // payload bytes of this frame unmasked so far, modulo 4
};

// Appends a server-to-client (unmasked) frame header for a payload of `len` bytes, FIN set.
void append_frame_header(std::string& out, Opcode op, std::size_t len);
// A complete unmasked frame.
std::string make_frame(Opcode op, std::string_view payload);
// A close frame with code and reason (reason is truncated to fit 125 bytes, at a UTF-8
// character boundary so that the peer can still validate it).
std::string make_close_frame(std::uint16_t code, std::string_view reason);
// A masked client-to-server frame (clients and tests); `fin` false for a fragment. The mask key
// goes on the wire most significant byte first.
std::string make_client_frame(Opcode op, std::string_view payload, std::uint32_t mask_key,
                              bool fin = true);
// Sec-WebSocket-Accept for a Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);

// Incremental UTF-8 validation (Hoehrmann's DFA): state 0 = accept, 1 = reject, other =
// in the middle of a code point.
inline constexpr std::uint32_t utf8_accept = 0;
inline constexpr std::uint32_t utf8_reject = 1;
std::uint32_t utf8_validate(std::uint32_t state, std::string_view bytes);
inline bool is_valid_utf8(std::string_view s) {
  return utf8_validate(utf8_accept, s) == utf8_accept;
}

}  // namespace parley::protocol::ws
