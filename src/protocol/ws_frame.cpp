#include "protocol/ws_frame.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/detail/sha1.hpp>

namespace parley::protocol::ws {

namespace {

constexpr std::size_t max_control_payload = 125;

// Bjoern Hoehrmann's UTF-8 DFA (http://bjoern.hoehrmann.de/utf-8/decoder/dfa/), the variant
// whose reject state is 1: the first 256 entries map bytes to character classes, the rest map
// (state, class) to the next state. It rejects overlong forms, surrogates and code points past
// U+10FFFF, which is exactly what RFC 6455 requires of text frames.
constexpr std::uint8_t utf8d[] = {
    // clang-format off
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, // 00..1f
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, // 20..3f
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, // 40..5f
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, // 60..7f
  1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9, // 80..9f
  7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7, // a0..bf
  8,8,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2, // c0..df
  0xa,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x3,0x4,0x3,0x3, // e0..ef
  0xb,0x6,0x6,0x6,0x5,0x8,0x8,0x8,0x8,0x8,0x8,0x8,0x8,0x8,0x8,0x8, // f0..ff
  0x0,0x1,0x2,0x3,0x5,0x8,0x7,0x1,0x1,0x1,0x4,0x6,0x1,0x1,0x1,0x1, // s0..s0
  1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,1,1,1,1,0,1,0,1,1,1,1,1,1, // s1..s2
  1,2,1,1,1,1,1,2,1,2,1,1,1,1,1,1,1,1,1,1,1,1,1,2,1,1,1,1,1,1,1,1, // s3..s4
  1,2,1,1,1,1,1,1,1,2,1,1,1,1,1,1,1,1,1,1,1,1,1,3,1,3,1,1,1,1,1,1, // s5..s6
  1,3,1,1,1,1,1,3,1,3,1,1,1,1,1,1,1,3,1,1,1,1,1,1,1,1,1,1,1,1,1,1, // s7..s8
    // clang-format on
};

bool is_control(std::uint8_t op) {
  return (op & 0x8U) != 0;
}

bool is_known_opcode(std::uint8_t op) {
  switch (op) {
    case 0x0:
    case 0x1:
    case 0x2:
    case 0x8:
    case 0x9:
    case 0xA:
      return true;
    default:
      return false;
  }
}

// The codes a peer may put in a close frame (RFC 6455 section 7.4): 1004-1006 and 1015 are
// reserved for local use and never sent, 1016-2999 are reserved for future extensions and
// below 1000 is unused.
bool is_valid_close_code(std::uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
         (code >= 3000 && code <= 4999);
}

// XORs `n` bytes at `p` with the masking key, starting `offset` bytes into the frame's payload.
// The key repeats every 4 bytes, so an 8-byte pattern built from the rotated key is applied a
// word at a time; memcpy keeps it free of alignment and aliasing concerns and compiles to plain
// loads and stores.
void unmask(char* p, std::size_t n, const std::array<std::uint8_t, 4>& key, std::size_t offset) {
  std::uint8_t pattern[8];
  for (std::size_t i = 0; i < 8; ++i) {
    pattern[i] = key[(offset + i) & 3U];
  }
  std::uint64_t word_mask;
  std::memcpy(&word_mask, pattern, sizeof word_mask);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    w ^= word_mask;
    std::memcpy(p + i, &w, sizeof w);
  }
  for (std::size_t j = 0; i < n; ++i, ++j) {
    p[i] = static_cast<char>(static_cast<std::uint8_t>(p[i]) ^ pattern[j]);
  }
}

std::uint64_t read_be(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

// Writes a frame header with the first byte `b0` (FIN, RSV, opcode) and, when `mask` is given,
// the MASK bit and key.
void append_header(std::string& out, std::uint8_t b0, std::size_t len, const std::uint8_t* mask) {
  char buf[14];
  std::size_t n = 0;
  const std::uint8_t mask_bit = mask != nullptr ? 0x80U : 0U;
  buf[n++] = static_cast<char>(b0);
  if (len < 126) {
    buf[n++] = static_cast<char>(mask_bit | len);
  } else if (len <= 0xFFFF) {
    buf[n++] = static_cast<char>(mask_bit | 126U);
    buf[n++] = static_cast<char>((len >> 8) & 0xFFU);
    buf[n++] = static_cast<char>(len & 0xFFU);
  } else {
    buf[n++] = static_cast<char>(mask_bit | 127U);
    const auto len64 = static_cast<std::uint64_t>(len);
    for (int shift = 56; shift >= 0; shift -= 8) {
      buf[n++] = static_cast<char>((len64 >> shift) & 0xFFU);
    }
  }
  if (mask != nullptr) {
    std::memcpy(buf + n, mask, 4);
    n += 4;
  }
  out.append(buf, n);
}

}  // namespace

std::uint32_t utf8_validate(std::uint32_t state, std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    // Chat text is mostly ASCII: between code points, skip eight ASCII bytes at a time.
    if (state == utf8_accept) {
      while (i + 8 <= n) {
        std::uint64_t w;
        std::memcpy(&w, p + i, sizeof w);
        if ((w & 0x8080808080808080ULL) != 0) {
          break;
        }
        i += 8;
      }
      if (i == n) {
        break;
      }
    }
    state = utf8d[256 + state * 16 + utf8d[p[i]]];
    if (state == utf8_reject) {
      return utf8_reject;
    }
    ++i;
  }
  return state;
}

FrameParser::FrameParser(ParserLimits limits) : limits_(limits) {}

void FrameParser::fail(std::vector<FrameEvent>& out, std::uint16_t code, std::string_view reason) {
  FrameEvent ev;
  ev.kind = FrameEvent::Kind::error;
  ev.code = code;
  ev.data.assign(reason);
  out.push_back(std::move(ev));
  done_ = true;
  message_.clear();
}

std::size_t FrameParser::feed(std::string_view in, std::vector<FrameEvent>& out) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t pos = 0;
  while (!done_) {
    if (in_frame_) {
      // The payload of a text or continuation frame: take whatever has arrived.
      const std::size_t avail = in.size() - pos;
      const auto n = static_cast<std::size_t>(
          std::min<std::uint64_t>(frame_remaining_, static_cast<std::uint64_t>(avail)));
      if (n == 0 && frame_remaining_ != 0) {
        break;
      }
      const std::size_t old = message_.size();
      message_.append(in.data() + pos, n);
      unmask(message_.data() + old, n, mask_, mask_offset_);
      mask_offset_ = (mask_offset_ + n) & 3U;
      pos += n;
      frame_remaining_ -= n;
      utf8_state_ = utf8_validate(utf8_state_, std::string_view(message_.data() + old, n));
      if (utf8_state_ == utf8_reject) {
        fail(out, close_code::invalid_payload, "invalid UTF-8 in text message");
        break;
      }
      if (frame_remaining_ != 0) {
        break;
      }
      in_frame_ = false;
      if (frame_fin_) {
        // A message may not end in the middle of a code point.
        if (utf8_state_ != utf8_accept) {
          fail(out, close_code::invalid_payload, "invalid UTF-8 in text message");
          break;
        }
        FrameEvent ev;
        ev.kind = FrameEvent::Kind::text;
        ev.data = std::move(message_);
        out.push_back(std::move(ev));
        message_ = std::string();
        in_fragmented_ = false;
        utf8_state_ = utf8_accept;
      }
      continue;
    }

    // A frame header. Every rule that the first two bytes decide is checked before waiting for
    // the rest, so that a bad frame is refused as early as possible.
    const std::size_t avail = in.size() - pos;
    if (avail < 2) {
      break;
    }
    const unsigned char b0 = bytes[pos];
    const unsigned char b1 = bytes[pos + 1];
    const bool fin = (b0 & 0x80U) != 0;
    const std::uint8_t op = b0 & 0x0FU;
    const bool masked = (b1 & 0x80U) != 0;
    const std::uint8_t len7 = b1 & 0x7FU;
    if ((b0 & 0x70U) != 0) {
      fail(out, close_code::protocol_error, "reserved bits set");
      break;
    }
    if (!is_known_opcode(op)) {
      fail(out, close_code::protocol_error, "reserved opcode");
      break;
    }
    if (!masked) {
      fail(out, close_code::protocol_error, "client frames must be masked");
      break;
    }
    if (is_control(op)) {
      if (!fin) {
        fail(out, close_code::protocol_error, "fragmented control frame");
        break;
      }
      if (len7 > max_control_payload) {
        fail(out, close_code::protocol_error, "control frame over 125 bytes");
        break;
      }
    } else if (op == static_cast<std::uint8_t>(Opcode::continuation)) {
      if (!in_fragmented_) {
        fail(out, close_code::protocol_error, "continuation frame without a message");
        break;
      }
    } else {
      if (in_fragmented_) {
        fail(out, close_code::protocol_error, "data frame inside a fragmented message");
        break;
      }
      if (op == static_cast<std::uint8_t>(Opcode::binary)) {
        fail(out, close_code::unsupported_data, "binary frames are not supported");
        break;
      }
    }

    const std::size_t ext = len7 == 126 ? 2 : (len7 == 127 ? 8 : 0);
    if (avail < 2 + ext) {
      break;
    }
    const std::uint64_t len = ext == 0 ? len7 : read_be(bytes + pos + 2, ext);
    if (ext == 8 && (len >> 63) != 0) {
      fail(out, close_code::protocol_error, "frame length has its most significant bit set");
      break;
    }
    // The declared length is checked before a byte of payload is kept, so a peer cannot make
    // the parser buffer a message that will be refused anyway.
    if (!is_control(op) &&
        len > limits_.max_message_bytes - std::min(limits_.max_message_bytes, message_.size())) {
      fail(out, close_code::message_too_big, "message too big");
      break;
    }
    const std::size_t header_len = 2 + ext + 4;
    if (avail < header_len) {
      break;
    }
    std::array<std::uint8_t, 4> key{};
    std::memcpy(key.data(), bytes + pos + 2 + ext, 4);

    if (is_control(op)) {
      // Control frames are small and taken whole; they may arrive between the frames of a
      // fragmented message without disturbing it.
      const auto plen = static_cast<std::size_t>(len);
      if (avail < header_len + plen) {
        break;
      }
      std::string payload(in.data() + pos + header_len, plen);
      unmask(payload.data(), plen, key, 0);
      pos += header_len + plen;
      FrameEvent ev;
      ev.data = std::move(payload);
      if (op == static_cast<std::uint8_t>(Opcode::ping)) {
        ev.kind = FrameEvent::Kind::ping;
        out.push_back(std::move(ev));
      } else if (op == static_cast<std::uint8_t>(Opcode::pong)) {
        ev.kind = FrameEvent::Kind::pong;
        out.push_back(std::move(ev));
      } else {
        if (plen == 0) {
          ev.kind = FrameEvent::Kind::close;
          ev.code = 1005;  // "no status received", as RFC 6455 section 7.1.5 reports it
          out.push_back(std::move(ev));
          done_ = true;
          break;
        }
        if (plen == 1) {
          fail(out, close_code::protocol_error, "close frame of 1 byte");
          break;
        }
        const auto code = static_cast<std::uint16_t>(
            read_be(reinterpret_cast<const unsigned char*>(ev.data.data()), 2));
        if (!is_valid_close_code(code)) {
          fail(out, close_code::protocol_error, "invalid close code");
          break;
        }
        ev.data.erase(0, 2);
        if (!is_valid_utf8(ev.data)) {
          fail(out, close_code::invalid_payload, "invalid UTF-8 in close reason");
          break;
        }
        ev.kind = FrameEvent::Kind::close;
        ev.code = code;
        out.push_back(std::move(ev));
        done_ = true;
        break;
      }
      continue;
    }

    pos += header_len;
    if (op == static_cast<std::uint8_t>(Opcode::text)) {
      in_fragmented_ = true;
    }
    in_frame_ = true;
    frame_fin_ = fin;
    frame_remaining_ = len;
    mask_ = key;
    mask_offset_ = 0;
    message_.reserve(message_.size() + static_cast<std::size_t>(len));
  }
  return pos;
}

void append_frame_header(std::string& out, Opcode op, std::size_t len) {
  append_header(out, static_cast<std::uint8_t>(0x80U | static_cast<std::uint8_t>(op)), len,
                nullptr);
}

std::string make_frame(Opcode op, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  append_frame_header(out, op, payload.size());
  out.append(payload);
  return out;
}

std::string make_close_frame(std::uint16_t code, std::string_view reason) {
  std::size_t n = std::min(reason.size(), max_control_payload - 2);
  // Never cut a multi-byte character in two: back up to the start of the one that straddles.
  if (n < reason.size()) {
    while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0U) == 0x80U) {
      --n;
    }
  }
  std::string payload;
  payload.reserve(2 + n);
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFFU));
  payload.append(reason.substr(0, n));
  return make_frame(Opcode::close, payload);
}

std::string make_client_frame(Opcode op, std::string_view payload, std::uint32_t mask_key,
                              bool fin) {
  const std::array<std::uint8_t, 4> key = {
      static_cast<std::uint8_t>(mask_key >> 24), static_cast<std::uint8_t>(mask_key >> 16),
      static_cast<std::uint8_t>(mask_key >> 8), static_cast<std::uint8_t>(mask_key)};
  std::string out;
  out.reserve(payload.size() + 14);
  const auto b0 = static_cast<std::uint8_t>((fin ? 0x80U : 0U) | static_cast<std::uint8_t>(op));
  append_header(out, b0, payload.size(), key.data());
  const std::size_t start = out.size();
  out.append(payload);
  unmask(out.data() + start, payload.size(), key, 0);
  return out;
}

std::string accept_key(std::string_view client_key) {
  namespace detail = boost::beast::detail;
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  detail::sha1_context ctx;
  detail::init(ctx);
  detail::update(ctx, client_key.data(), client_key.size());
  detail::update(ctx, guid.data(), guid.size());
  unsigned char digest[detail::sha1_context::digest_size];
  detail::finish(ctx, digest);
  std::string out(detail::base64::encoded_size(sizeof digest), '\0');
  out.resize(detail::base64::encode(out.data(), digest, sizeof digest));
  return out;
}

}  // namespace parley::protocol::ws
