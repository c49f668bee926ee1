// Fuzz target: the RFC 6455 frame parser (protocol::ws::FrameParser), as WsSession drives it.
//
// The first byte picks the mode and the message limit; the second seeds the split points.
//
// Raw mode (the input after two bytes is the byte stream from a client):
//  * the stream is fed once whole and once in random pieces, the way a socket delivers it
//    (unconsumed bytes are offered again with the next piece, as WsSession does); both give
//    exactly the same events;
//  * each feed consumes at most what it was offered, and what the caller must keep back is
//    never more than one frame header plus one control frame (payloads are never buffered by
//    the caller, whatever the message size);
//  * no event follows an error or a close, and a stopped parser consumes nothing;
//  * every text event is valid UTF-8 and within the limit; control payloads are at most 125
//    bytes; error codes are 1002, 1003, 1007 or 1009; close codes are valid or 1005.
// Generator mode: the input describes valid messages (valid UTF-8, fragmented anywhere, pings
// between fragments, a close at the end); they are framed with make_client_frame, fed in random
// pieces, and the parser must return exactly those messages, or 1009 for one over the limit.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol/ws_frame.hpp"

namespace ws = parley::protocol::ws;
using Kind = ws::FrameEvent::Kind;

namespace {

constexpr std::size_t kMaxKeptBack = 14 + 125;  // longest header + largest control frame

std::size_t limit_for(std::uint8_t b) {
  switch (b >> 5) {
    case 0:
      return 64 * 1024;  // the server's default
    case 1:
      return 0;
    default:
      return static_cast<std::size_t>(b & 0x1F) * 13 + (b >> 5);
  }
}

bool valid_close_code(std::uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

std::string show(const ws::FrameEvent& e) {
  return "kind " + std::to_string(static_cast<int>(e.kind)) + " code " + std::to_string(e.code) +
         " data size " + std::to_string(e.data.size());
}

bool same(const ws::FrameEvent& a, const ws::FrameEvent& b) {
  return a.kind == b.kind && a.code == b.code && a.data == b.data;
}

// Feeds `stream` in pieces whose sizes come from `rng`, checking the per-feed invariants.
std::vector<ws::FrameEvent> feed_in_pieces(std::string_view stream, std::size_t limit,
                                           std::mt19937& rng) {
  ws::FrameParser p(ws::ParserLimits{limit});
  std::vector<ws::FrameEvent> events;
  std::string pending;  // bytes offered but not consumed
  std::size_t pos = 0;
  bool stopped = false;
  while (pos < stream.size()) {
    std::size_t n = std::uniform_int_distribution<std::size_t>(1, 64)(rng);
    if (rng() % 8 == 0) n = std::uniform_int_distribution<std::size_t>(1, 70000)(rng);
    n = std::min(n, stream.size() - pos);
    pending.append(stream.substr(pos, n));
    pos += n;
    const std::size_t before = events.size();
    const std::size_t used = p.feed(pending, events);
    FUZZ_CHECK(used <= pending.size(), "consumed more than offered");
    if (stopped) {
      FUZZ_CHECK(used == 0 && events.size() == before, "a stopped parser went on");
    }
    pending.erase(0, used);
    if (!p.failed()) {
      FUZZ_CHECK(pending.size() <= kMaxKeptBack,
                 "the caller must keep back " + std::to_string(pending.size()) + " bytes");
    }
    for (std::size_t i = before; i < events.size(); ++i) {
      FUZZ_CHECK(!stopped, "an event after an error or a close: " + show(events[i]));
      if (events[i].kind == Kind::error || events[i].kind == Kind::close) stopped = true;
    }
    FUZZ_CHECK(stopped == p.failed(), "failed() disagrees with the events");
  }
  return events;
}

void check_events(const std::vector<ws::FrameEvent>& events, std::size_t limit) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    const bool last = i + 1 == events.size();
    switch (e.kind) {
      case Kind::text:
        FUZZ_CHECK(ws::is_valid_utf8(e.data), "a text event that is not UTF-8");
        FUZZ_CHECK(e.data.size() <= limit, "a text event over the limit");
        break;
      case Kind::ping:
      case Kind::pong:
        FUZZ_CHECK(e.data.size() <= 125, "a control payload over 125 bytes");
        break;
      case Kind::close:
        FUZZ_CHECK(last, "an event after a close");
        FUZZ_CHECK(e.code == 1005 || valid_close_code(e.code),
                   "close code " + std::to_string(e.code));
        FUZZ_CHECK(e.data.size() <= 123 && ws::is_valid_utf8(e.data), "bad close reason");
        break;
      case Kind::error:
        FUZZ_CHECK(last, "an event after an error");
        FUZZ_CHECK(e.code == 1002 || e.code == 1003 || e.code == 1007 || e.code == 1009,
                   "error code " + std::to_string(e.code));
        break;
    }
  }
}

void raw_mode(std::string_view stream, std::size_t limit, std::mt19937& rng) {
  ws::FrameParser whole(ws::ParserLimits{limit});
  std::vector<ws::FrameEvent> expected;
  const std::size_t used = whole.feed(stream, expected);
  FUZZ_CHECK(used <= stream.size(), "consumed more than offered");
  if (!whole.failed()) {
    FUZZ_CHECK(stream.size() - used <= kMaxKeptBack, "kept back too much of one feed");
  }
  check_events(expected, limit);
  const auto pieces = feed_in_pieces(stream, limit, rng);
  FUZZ_CHECK(pieces.size() == expected.size(),
             "split feeding gave " + std::to_string(pieces.size()) + " events, whole gave " +
                 std::to_string(expected.size()));
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    FUZZ_CHECK(same(pieces[i], expected[i]), "event " + std::to_string(i) + " differs: " +
                                                 show(pieces[i]) + " vs " + show(expected[i]));
  }
}

// Appends the UTF-8 encoding of a code point taken from two bytes (surrogates avoided).
void append_code_point(std::string& out, std::uint32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp += 0x800;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void generator_mode(std::string_view in, std::size_t limit, std::mt19937& rng) {
  std::string stream;
  std::vector<ws::FrameEvent> expected;
  bool stopped = false;
  std::size_t i = 0;
  while (i < in.size() && !stopped) {
    // A message: a length byte, then that many units (one byte: ASCII; 0xFF prefix: a wide
    // code point from the next three bytes).
    const std::size_t units = static_cast<std::uint8_t>(in[i++]);
    std::string msg;
    for (std::size_t u = 0; u < units && i < in.size(); ++u) {
      auto b = static_cast<std::uint8_t>(in[i++]);
      if (b >= 0xF0 && i + 2 < in.size() + 0 && i + 1 < in.size()) {
        std::uint32_t cp = (static_cast<std::uint32_t>(b & 0x0F) << 16) |
                           (static_cast<std::uint32_t>(static_cast<std::uint8_t>(in[i])) << 8) |
                           static_cast<std::uint8_t>(in[i + 1]);
        i += 2;
        append_code_point(msg, cp % 0x110000);
      } else {
        append_code_point(msg, b & 0x7F);
      }
    }
    // Fragment it at random byte offsets (code points may be split), pings in between.
    const std::size_t fragments = 1 + rng() % 4;
    std::vector<std::size_t> cuts;
    for (std::size_t f = 1; f < fragments; ++f)
      cuts.push_back(msg.empty() ? 0 : rng() % (msg.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(msg.size());
    std::size_t start = 0;
    std::size_t sent = 0;
    bool too_big = false;
    for (std::size_t f = 0; f < cuts.size(); ++f) {
      const std::string_view part = std::string_view(msg).substr(start, cuts[f] - start);
      start = cuts[f];
      const bool fin = f + 1 == cuts.size();
      stream += ws::make_client_frame(f == 0 ? ws::Opcode::text : ws::Opcode::continuation, part,
                                      static_cast<std::uint32_t>(rng()), fin);
      sent += part.size();
      if (sent > limit) {  // refused at the header of the fragment that passes the limit
        too_big = true;
        break;
      }
      if (!fin && rng() % 3 == 0) {
        std::string ping(rng() % 126, 'p');
        stream += ws::make_client_frame(ws::Opcode::ping, ping, static_cast<std::uint32_t>(rng()));
        expected.push_back({Kind::ping, ping, 0});
      }
    }
    if (too_big) {
      expected.push_back({Kind::error, "message too big", 1009});
      stopped = true;
    } else {
      expected.push_back({Kind::text, msg, 0});
    }
  }
  if (!stopped) {
    std::string payload = {static_cast<char>(0x03), static_cast<char>(0xE8)};  // 1000
    payload += "bye";
    stream += ws::make_client_frame(ws::Opcode::close, payload, static_cast<std::uint32_t>(rng()));
    expected.push_back({Kind::close, "bye", 1000});
    stream += "garbage after the close frame";
  }
  const auto got = feed_in_pieces(stream, limit, rng);
  check_events(got, limit);
  FUZZ_CHECK(got.size() == expected.size(), "generator: got " + std::to_string(got.size()) +
                                                " events, expected " +
                                                std::to_string(expected.size()));
  for (std::size_t k = 0; k < got.size(); ++k) {
    FUZZ_CHECK(same(got[k], expected[k]), "generator: event " + std::to_string(k) + " is " +
                                              show(got[k]) + ", expected " + show(expected[k]));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t limit = limit_for(data[0]);
  std::mt19937 rng(data[1]);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (data[0] & 0x10) {
    generator_mode(rest, limit, rng);
  } else {
    raw_mode(rest, limit, rng);
  }
  return 0;
}
