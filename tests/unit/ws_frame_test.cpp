#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "protocol/ws_frame.hpp"

namespace parley::protocol::ws {
namespace {

using Kind = FrameEvent::Kind;

constexpr std::uint32_t key1 = 0x37FA213DU;
constexpr std::uint32_t key2 = 0x01020304U;

// What a transport does with the parser: append what arrives, feed, drop what was consumed.
struct Stream {
  explicit Stream(ParserLimits limits = {}) : parser(limits) {}

  void push(std::string_view chunk) {
    buf.append(chunk);
    const std::size_t n = parser.feed(buf, events);
    ASSERT_LE(n, buf.size());
    buf.erase(0, n);
  }

  FrameParser parser;
  std::string buf;
  std::vector<FrameEvent> events;
};

std::vector<FrameEvent> parse_all(std::string_view bytes, ParserLimits limits = {}) {
  Stream s(limits);
  s.push(bytes);
  return s.events;
}

// A frame built byte by byte, for the frames that make_client_frame refuses to produce.
std::string raw_frame(std::uint8_t b0, std::string_view payload, bool masked = true,
                      std::uint32_t key = key1) {
  std::string out;
  out.push_back(static_cast<char>(b0));
  const std::uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out.push_back(
          static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> shift) & 0xFF));
    }
  }
  const std::uint8_t k[4] = {static_cast<std::uint8_t>(key >> 24),
                             static_cast<std::uint8_t>(key >> 16),
                             static_cast<std::uint8_t>(key >> 8), static_cast<std::uint8_t>(key)};
  if (masked) {
    out.append(reinterpret_cast<const char*>(k), 4);
  }
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out.push_back(masked ? static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ k[i % 4])
                         : payload[i]);
  }
  return out;
}

// A header alone that declares `len` bytes with the 64-bit length form.
std::string header64(std::uint8_t b0, std::uint64_t len) {
  std::string out;
  out.push_back(static_cast<char>(b0));
  out.push_back(static_cast<char>(0x80 | 127));
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((len >> shift) & 0xFF));
  }
  out.append("\x01\x02\x03\x04", 4);
  return out;
}

std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

void expect_error(const std::vector<FrameEvent>& events, std::uint16_t code) {
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, Kind::error);
  EXPECT_EQ(events.back().code, code) << events.back().data;
}

// ---- accept key and frame writers ----

TEST(WsAcceptKey, Rfc6455Example) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsFrameWriter, HeaderLengthForms) {
  struct Case {
    std::size_t len;
    std::string header;
  };
  const Case cases[] = {
      {0, std::string("\x81\x00", 2)},
      {125, "\x81\x7D"},
      {126, std::string("\x81\x7E\x00\x7E", 4)},
      {65535, "\x81\x7E\xFF\xFF"},
      {65536, std::string("\x81\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10)},
  };
  for (const auto& c : cases) {
    std::string out;
    append_frame_header(out, Opcode::text, c.len);
    EXPECT_EQ(out, c.header) << c.len;
  }
  std::string ping;
  append_frame_header(ping, Opcode::ping, 3);
  EXPECT_EQ(ping, "\x89\x03");
}

TEST(WsFrameWriter, MakeFrame) {
  EXPECT_EQ(make_frame(Opcode::text, "hi"), "\x81\x02hi");
  EXPECT_EQ(make_frame(Opcode::pong, ""), std::string("\x8A\x00", 2));
  const std::string big(300, 'x');
  const std::string f = make_frame(Opcode::text, big);
  EXPECT_EQ(f.size(), 4 + big.size());
  EXPECT_EQ(f.substr(4), big);
}

TEST(WsFrameWriter, CloseFrame) {
  EXPECT_EQ(make_close_frame(1000, ""), "\x88\x02\x03\xE8");
  EXPECT_EQ(make_close_frame(1008, "slow consumer"), "\x88\x0F\x03\xF0slow consumer");
}

TEST(WsFrameWriter, CloseReasonTruncatedAtCharacterBoundary) {
  std::string reason;
  for (int i = 0; i < 100; ++i) {
    reason += "\xC3\xA9";  // é, two bytes
  }
  const std::string f = make_close_frame(1001, reason);
  const std::size_t payload_len = static_cast<unsigned char>(f[1]);
  ASSERT_LE(payload_len, 125U);
  EXPECT_EQ(f.size(), 2 + payload_len);
  const std::string_view r(f.data() + 4, payload_len - 2);
  EXPECT_EQ(r.size(), 122U);  // 123 would split an é
  EXPECT_TRUE(is_valid_utf8(r));

  const std::string ascii(200, 'a');
  const std::string g = make_close_frame(1001, ascii);
  EXPECT_EQ(static_cast<unsigned char>(g[1]), 125U);
}

TEST(WsFrameWriter, ClientFrameIsMaskedAndParses) {
  const std::string f = make_client_frame(Opcode::text, "Hello", key1);
  ASSERT_EQ(f.size(), 2 + 4 + 5U);
  EXPECT_EQ(static_cast<unsigned char>(f[0]), 0x81);
  EXPECT_EQ(static_cast<unsigned char>(f[1]), 0x85);
  EXPECT_EQ(f.substr(2, 4), "\x37\xFA\x21\x3D");
  EXPECT_EQ(f.substr(6), "\x7F\x9F\x4D\x51\x58");  // RFC 6455 section 5.7's example
  const std::string frag = make_client_frame(Opcode::text, "Hel", key1, false);
  EXPECT_EQ(static_cast<unsigned char>(frag[0]), 0x01);
}

// ---- UTF-8 validation ----

// A plain validator written from the definition, to check the DFA against.
bool reference_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) {
      return false;  // truncated
    }
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t min_for_len[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

TEST(WsUtf8, KnownValidAndInvalid) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii, long enough to use the word loop"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));      // U+D7FF
  EXPECT_TRUE(is_valid_utf8("\xEE\x80\x80"));      // U+E000
  EXPECT_TRUE(is_valid_utf8(std::string("\0", 1)));

  EXPECT_FALSE(is_valid_utf8("\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));          // overlong NUL
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\x80"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // U+D800, surrogate
  EXPECT_FALSE(is_valid_utf8("\xED\xBF\xBF"));      // U+DFFF
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(is_valid_utf8("abcdefgh\xE2\x82"));  // truncated after the word loop
  EXPECT_FALSE(is_valid_utf8("abcdefghijklmnop\x80qrstuvwxyz"));
}

TEST(WsUtf8, DfaAgreesWithReferenceOnAllShortSequences) {
  std::string s;
  for (int a = 0; a < 256; ++a) {
    s.assign(1, static_cast<char>(a));
    ASSERT_EQ(is_valid_utf8(s), reference_utf8(s)) << a;
    for (int b = 0; b < 256; ++b) {
      s.assign({static_cast<char>(a), static_cast<char>(b)});
      ASSERT_EQ(is_valid_utf8(s), reference_utf8(s)) << a << " " << b;
    }
  }
  // Three-byte sequences whose lead byte starts a multi-byte form (the rest are covered above).
  for (int a = 0xC0; a < 0x100; ++a) {
    for (int b = 0x70; b < 0xD0; ++b) {
      for (int c = 0x70; c < 0xD0; ++c) {
        s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        ASSERT_EQ(is_valid_utf8(s), reference_utf8(s)) << a << " " << b << " " << c;
      }
    }
  }
  // Four-byte leads with every second byte and a sample of the rest.
  for (int a = 0xF0; a < 0x100; ++a) {
    for (int b = 0x70; b < 0xD0; ++b) {
      for (int c : {0x7F, 0x80, 0xBF, 0xC0}) {
        for (int d : {0x7F, 0x80, 0xBF, 0xC0}) {
          s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                    static_cast<char>(d)});
          ASSERT_EQ(is_valid_utf8(s), reference_utf8(s)) << a << " " << b << " " << c << " " << d;
        }
      }
    }
  }
}

TEST(WsUtf8, IncrementalAcrossEverySplit) {
  const std::string text =
      "ab\xC3\xA9"
      "cdefghij\xE2\x82\xAC"
      "klmnopqrstu\xF0\x9F\x98\x80vw";
  for (std::size_t i = 0; i <= text.size(); ++i) {
    std::uint32_t st = utf8_validate(utf8_accept, std::string_view(text).substr(0, i));
    ASSERT_NE(st, utf8_reject);
    st = utf8_validate(st, std::string_view(text).substr(i));
    EXPECT_EQ(st, utf8_accept) << i;
  }
  // Mid-code-point states are neither accept nor reject.
  EXPECT_NE(utf8_validate(utf8_accept, "\xE2\x82"), utf8_accept);
  EXPECT_NE(utf8_validate(utf8_accept, "\xE2\x82"), utf8_reject);
}

TEST(WsUtf8, RandomBytesAgreeWithReference) {
  std::mt19937 rng(12345);
  const std::string alphabet[] = {"a",    "\x80", "\xBF", "\xC2", "\xDF", "\xE0", "\xED",    "\xEF",
                                  "\xF0", "\xF4", "\xF5", "\xA0", "\x90", "\x8F", "\xC3\xA9"};
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s;
    const int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) {
      s += alphabet[rng() % std::size(alphabet)];
    }
    ASSERT_EQ(is_valid_utf8(s), reference_utf8(s)) << ::testing::PrintToString(s);
  }
}

// ---- Parser: messages ----

TEST(WsParser, SingleTextFrame) {
  auto ev = parse_all(make_client_frame(Opcode::text, "{\"type\":\"ping\"}", key1));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::text);
  EXPECT_EQ(ev[0].data, "{\"type\":\"ping\"}");
}

TEST(WsParser, EmptyTextFrame) {
  auto ev = parse_all(make_client_frame(Opcode::text, "", key1));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::text);
  EXPECT_EQ(ev[0].data, "");
}

TEST(WsParser, SeveralFramesInOneFeed) {
  std::string bytes =
      make_client_frame(Opcode::text, "one", key1) + make_client_frame(Opcode::text, "two", key2) +
      make_client_frame(Opcode::ping, "p", key1) + make_client_frame(Opcode::text, "three", 0);
  FrameParser p;
  std::vector<FrameEvent> ev;
  EXPECT_EQ(p.feed(bytes, ev), bytes.size());
  ASSERT_EQ(ev.size(), 4U);
  EXPECT_EQ(ev[0].data, "one");
  EXPECT_EQ(ev[1].data, "two");
  EXPECT_EQ(ev[2].kind, Kind::ping);
  EXPECT_EQ(ev[2].data, "p");
  EXPECT_EQ(ev[3].data, "three");
}

TEST(WsParser, MaskingAtEveryLengthAndKey) {
  std::mt19937 rng(7);
  for (std::size_t len = 0; len < 80; ++len) {
    std::string payload;
    for (std::size_t i = 0; i < len; ++i) {
      payload.push_back(static_cast<char>('a' + rng() % 26));
    }
    const std::uint32_t key = static_cast<std::uint32_t>(rng());
    auto ev = parse_all(make_client_frame(Opcode::text, payload, key));
    ASSERT_EQ(ev.size(), 1U);
    EXPECT_EQ(ev[0].data, payload) << len;
  }
}

TEST(WsParser, SixteenBitLength) {
  for (std::size_t len : {126U, 127U, 1000U, 65535U}) {
    const std::string payload(len, 'q');
    const std::string f = make_client_frame(Opcode::text, payload, key2);
    EXPECT_EQ(static_cast<unsigned char>(f[1]), 0x80 | 126);
    ParserLimits limits;
    limits.max_message_bytes = 70000;
    auto ev = parse_all(f, limits);
    ASSERT_EQ(ev.size(), 1U);
    EXPECT_EQ(ev[0].data, payload);
  }
}

TEST(WsParser, SixtyFourBitLength) {
  const std::string payload(70000, 'z');
  const std::string f = make_client_frame(Opcode::text, payload, key1);
  EXPECT_EQ(static_cast<unsigned char>(f[1]), 0x80 | 127);
  ParserLimits limits;
  limits.max_message_bytes = 1 << 20;
  auto ev = parse_all(f, limits);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].data, payload);
}

TEST(WsParser, LimitIsInclusive) {
  ParserLimits limits;
  limits.max_message_bytes = 100;
  auto ok = parse_all(make_client_frame(Opcode::text, std::string(100, 'a'), key1), limits);
  ASSERT_EQ(ok.size(), 1U);
  EXPECT_EQ(ok[0].kind, Kind::text);
  auto bad = parse_all(make_client_frame(Opcode::text, std::string(101, 'a'), key1), limits);
  expect_error(bad, close_code::message_too_big);
}

TEST(WsParser, DefaultLimitIs64KiB) {
  auto ok = parse_all(make_client_frame(Opcode::text, std::string(65536, 'a'), key1));
  ASSERT_EQ(ok.size(), 1U);
  EXPECT_EQ(ok[0].data.size(), 65536U);
  auto bad = parse_all(make_client_frame(Opcode::text, std::string(65537, 'a'), key1));
  expect_error(bad, close_code::message_too_big);
}

TEST(WsParser, Fragmented) {
  const std::string bytes = make_client_frame(Opcode::text, "Hel", key1, false) +
                            make_client_frame(Opcode::continuation, "lo, ", key2, false) +
                            make_client_frame(Opcode::continuation, "world", key1, true);
  auto ev = parse_all(bytes);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::text);
  EXPECT_EQ(ev[0].data, "Hello, world");
}

TEST(WsParser, FragmentedWithEmptyFragments) {
  const std::string bytes = make_client_frame(Opcode::text, "", key1, false) +
                            make_client_frame(Opcode::continuation, "x", key2, false) +
                            make_client_frame(Opcode::continuation, "", key1, true) +
                            make_client_frame(Opcode::text, "next", key1, true);
  auto ev = parse_all(bytes);
  ASSERT_EQ(ev.size(), 2U);
  EXPECT_EQ(ev[0].data, "x");
  EXPECT_EQ(ev[1].data, "next");
}

TEST(WsParser, ControlFramesInterleaveFragments) {
  const std::string bytes = make_client_frame(Opcode::text, "ab", key1, false) +
                            make_client_frame(Opcode::ping, "p1", key2) +
                            make_client_frame(Opcode::continuation, "cd", key1, false) +
                            make_client_frame(Opcode::pong, "", key2) +
                            make_client_frame(Opcode::continuation, "ef", key1, true);
  auto ev = parse_all(bytes);
  ASSERT_EQ(ev.size(), 3U);
  EXPECT_EQ(ev[0].kind, Kind::ping);
  EXPECT_EQ(ev[0].data, "p1");
  EXPECT_EQ(ev[1].kind, Kind::pong);
  EXPECT_EQ(ev[2].kind, Kind::text);
  EXPECT_EQ(ev[2].data, "abcdef");
}

TEST(WsParser, CloseInsideFragmentedMessageEndsIt) {
  const std::string bytes = make_client_frame(Opcode::text, "ab", key1, false) +
                            make_client_frame(Opcode::close, close_payload(1000, "bye"), key2) +
                            make_client_frame(Opcode::continuation, "cd", key1, true);
  FrameParser p;
  std::vector<FrameEvent> ev;
  const std::size_t consumed = p.feed(bytes, ev);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::close);
  EXPECT_EQ(ev[0].code, 1000);
  EXPECT_EQ(ev[0].data, "bye");
  EXPECT_TRUE(p.failed());
  EXPECT_LT(consumed, bytes.size());
}

TEST(WsParser, PingPayloadIsUnmasked) {
  const std::string payload(125, 'P');
  auto ev = parse_all(make_client_frame(Opcode::ping, payload, key2));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::ping);
  EXPECT_EQ(ev[0].data, payload);
}

// Every way of cutting the byte stream in two, and byte by byte, gives the same events.
TEST(WsParser, SplitAtEveryByteBoundary) {
  const std::string bytes = make_client_frame(Opcode::text, "first \xE2\x82\xAC message", key1) +
                            make_client_frame(Opcode::text, "fr\xC3", key2, false) +
                            make_client_frame(Opcode::ping, "ping!", key1) +
                            make_client_frame(Opcode::continuation, "\xA9g", key1, true) +
                            make_client_frame(Opcode::text, std::string(300, 'L'), key2) +
                            make_client_frame(Opcode::close, close_payload(1000, "done"), key1);
  const auto expected = parse_all(bytes);
  ASSERT_EQ(expected.size(), 5U);
  EXPECT_EQ(expected[0].data, "first \xE2\x82\xAC message");
  EXPECT_EQ(expected[1].kind, Kind::ping);
  EXPECT_EQ(expected[2].data, "fr\xC3\xA9g");
  EXPECT_EQ(expected[3].data, std::string(300, 'L'));
  EXPECT_EQ(expected[4].kind, Kind::close);

  auto same = [&](const std::vector<FrameEvent>& got, std::size_t at) {
    ASSERT_EQ(got.size(), expected.size()) << "split at " << at;
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].kind, expected[i].kind) << "split at " << at;
      EXPECT_EQ(got[i].data, expected[i].data) << "split at " << at;
      EXPECT_EQ(got[i].code, expected[i].code) << "split at " << at;
    }
  };
  for (std::size_t i = 0; i <= bytes.size(); ++i) {
    Stream s;
    s.push(std::string_view(bytes).substr(0, i));
    s.push(std::string_view(bytes).substr(i));
    same(s.events, i);
  }
  Stream bytewise;
  for (char c : bytes) {
    bytewise.push(std::string_view(&c, 1));
  }
  same(bytewise.events, 1);
}

TEST(WsParser, PartialHeaderIsNotConsumed) {
  const std::string f = make_client_frame(Opcode::text, std::string(200, 'x'), key1);
  FrameParser p;
  std::vector<FrameEvent> ev;
  EXPECT_EQ(p.feed(f.substr(0, 1), ev), 0U);
  EXPECT_EQ(p.feed(f.substr(0, 3), ev), 0U);  // extended length incomplete
  EXPECT_EQ(p.feed(f.substr(0, 7), ev), 0U);  // mask key incomplete
  EXPECT_EQ(p.feed(f.substr(0, 8), ev), 8U);  // header taken; payload streams from here on
  EXPECT_EQ(p.feed(f.substr(8, 50), ev), 50U);
  EXPECT_TRUE(ev.empty());
  EXPECT_EQ(p.feed(f.substr(58), ev), f.size() - 58);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].data, std::string(200, 'x'));
}

TEST(WsParser, PartialControlFrameWaitsUntilWhole) {
  const std::string f = make_client_frame(Opcode::ping, "hello", key1);
  FrameParser p;
  std::vector<FrameEvent> ev;
  EXPECT_EQ(p.feed(f.substr(0, f.size() - 1), ev), 0U);
  EXPECT_TRUE(ev.empty());
  EXPECT_EQ(p.feed(f, ev), f.size());
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].data, "hello");
}

// ---- Parser: close frames ----

TEST(WsParserClose, EmptyCloseIs1005) {
  FrameParser p;
  std::vector<FrameEvent> ev;
  const std::string bytes =
      make_client_frame(Opcode::close, "", key1) + make_client_frame(Opcode::text, "after", key1);
  const std::size_t n = p.feed(bytes, ev);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::close);
  EXPECT_EQ(ev[0].code, 1005);
  EXPECT_EQ(ev[0].data, "");
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(n, 6U);
  // Nothing more is consumed after the close.
  EXPECT_EQ(p.feed(make_client_frame(Opcode::text, "x", key1), ev), 0U);
  EXPECT_EQ(ev.size(), 1U);
}

TEST(WsParserClose, CodeAndReason) {
  auto ev =
      parse_all(make_client_frame(Opcode::close, close_payload(1001, "going \xC3\xA9"), key2));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].kind, Kind::close);
  EXPECT_EQ(ev[0].code, 1001);
  EXPECT_EQ(ev[0].data, "going \xC3\xA9");
}

TEST(WsParserClose, OneByteIsProtocolError) {
  expect_error(parse_all(make_client_frame(Opcode::close, "\x03", key1)),
               close_code::protocol_error);
}

TEST(WsParserClose, ValidCodes) {
  for (std::uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
    auto ev = parse_all(make_client_frame(Opcode::close, close_payload(code), key1));
    ASSERT_EQ(ev.size(), 1U);
    EXPECT_EQ(ev[0].kind, Kind::close) << code;
    EXPECT_EQ(ev[0].code, code);
  }
}

TEST(WsParserClose, InvalidCodes) {
  for (std::uint16_t code :
       {0, 1, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    expect_error(parse_all(make_client_frame(Opcode::close, close_payload(code), key1)),
                 close_code::protocol_error);
  }
}

TEST(WsParserClose, InvalidUtf8Reason) {
  expect_error(parse_all(make_client_frame(Opcode::close, close_payload(1000, "bad \xC3"), key1)),
               close_code::invalid_payload);
  expect_error(
      parse_all(make_client_frame(Opcode::close, close_payload(1000, "\xED\xA0\x80"), key1)),
      close_code::invalid_payload);
}

// ---- Parser: protocol errors ----

TEST(WsParserErrors, UnmaskedFrame) {
  expect_error(parse_all(raw_frame(0x81, "hi", false)), close_code::protocol_error);
  // Decided from the first two bytes, without waiting for the payload.
  expect_error(parse_all(std::string("\x81\x05", 2)), close_code::protocol_error);
}

TEST(WsParserErrors, ReservedBits) {
  for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
    expect_error(parse_all(raw_frame(static_cast<std::uint8_t>(0x81 | rsv), "hi")),
                 close_code::protocol_error);
  }
}

TEST(WsParserErrors, ReservedOpcodes) {
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    expect_error(parse_all(raw_frame(static_cast<std::uint8_t>(0x80 | op), "")),
                 close_code::protocol_error);
  }
}

TEST(WsParserErrors, ControlFrameOver125Bytes) {
  expect_error(parse_all(raw_frame(0x89, std::string(126, 'p'))), close_code::protocol_error);
  expect_error(parse_all(raw_frame(0x88, close_payload(1000, std::string(124, 'r')))),
               close_code::protocol_error);
  // Refused from the first two bytes.
  expect_error(parse_all(std::string("\x89\xFE", 2)), close_code::protocol_error);
}

TEST(WsParserErrors, FragmentedControlFrame) {
  expect_error(parse_all(make_client_frame(Opcode::ping, "p", key1, false)),
               close_code::protocol_error);
  expect_error(parse_all(make_client_frame(Opcode::close, "", key1, false)),
               close_code::protocol_error);
}

TEST(WsParserErrors, ContinuationWithoutStart) {
  expect_error(parse_all(make_client_frame(Opcode::continuation, "x", key1)),
               close_code::protocol_error);
  // Also after a complete message.
  expect_error(parse_all(make_client_frame(Opcode::text, "done", key1) +
                         make_client_frame(Opcode::continuation, "x", key1)),
               close_code::protocol_error);
}

TEST(WsParserErrors, DataFrameInsideFragmentedMessage) {
  auto ev = parse_all(make_client_frame(Opcode::text, "a", key1, false) +
                      make_client_frame(Opcode::text, "b", key1));
  expect_error(ev, close_code::protocol_error);
  expect_error(parse_all(make_client_frame(Opcode::text, "a", key1, false) +
                         make_client_frame(Opcode::binary, "b", key1)),
               close_code::protocol_error);
}

TEST(WsParserErrors, BinaryFrame) {
  expect_error(parse_all(make_client_frame(Opcode::binary, "\x01\x02", key1)),
               close_code::unsupported_data);
  expect_error(parse_all(make_client_frame(Opcode::binary, "", key1, false)),
               close_code::unsupported_data);
}

TEST(WsParserErrors, SixtyFourBitLengthWithHighBitSet) {
  expect_error(parse_all(header64(0x81, 0x8000000000000000ULL)), close_code::protocol_error);
}

TEST(WsParserErrors, OversizedDeclaredLengthRejectedBeforePayload) {
  // Only the header arrives: the parser refuses it without waiting for, or keeping, the payload.
  FrameParser p;
  std::vector<FrameEvent> ev;
  const std::string h = header64(0x81, 1ULL << 40);
  p.feed(std::string_view(h).substr(0, 10), ev);  // even before the mask key
  expect_error(ev, close_code::message_too_big);
  EXPECT_TRUE(p.failed());

  std::string h16 = make_client_frame(Opcode::text, std::string(70000, 'a'), key1).substr(0, 14);
  expect_error(parse_all(h16), close_code::message_too_big);
}

TEST(WsParserErrors, FragmentsOverLimit) {
  ParserLimits limits;
  limits.max_message_bytes = 10;
  // 6 + 4 = 10 is fine, one more byte is not, and the refusal comes at the third header.
  auto ok = parse_all(make_client_frame(Opcode::text, "aaaaaa", key1, false) +
                          make_client_frame(Opcode::continuation, "bbbb", key1, true),
                      limits);
  ASSERT_EQ(ok.size(), 1U);
  EXPECT_EQ(ok[0].data, "aaaaaabbbb");

  Stream s(limits);
  s.push(make_client_frame(Opcode::text, "aaaaaa", key1, false));
  s.push(make_client_frame(Opcode::continuation, "bbbb", key1, false));
  EXPECT_TRUE(s.events.empty());
  s.push(make_client_frame(Opcode::continuation, "c", key1, true).substr(0, 2));
  expect_error(s.events, close_code::message_too_big);
}

TEST(WsParserErrors, InvalidUtf8InSingleFrame) {
  expect_error(parse_all(make_client_frame(Opcode::text, "ok \xFF", key1)),
               close_code::invalid_payload);
  expect_error(parse_all(make_client_frame(Opcode::text, "\xED\xA0\x80", key1)),
               close_code::invalid_payload);
}

TEST(WsParserErrors, TruncatedCodePointAtMessageEnd) {
  expect_error(parse_all(make_client_frame(Opcode::text, "ok \xE2\x82", key1)),
               close_code::invalid_payload);
  expect_error(parse_all(make_client_frame(Opcode::text, "ok \xE2", key1, false) +
                         make_client_frame(Opcode::continuation, "\x82", key1, true)),
               close_code::invalid_payload);
}

TEST(WsParserErrors, InvalidUtf8AcrossFragments) {
  // E2 82 starts a valid sequence; 28 in the next fragment breaks it.
  Stream s;
  s.push(make_client_frame(Opcode::text, "abc\xE2\x82", key1, false));
  EXPECT_TRUE(s.events.empty());
  s.push(make_client_frame(Opcode::continuation, "(def", key2, true));
  expect_error(s.events, close_code::invalid_payload);
}

TEST(WsParserErrors, InvalidUtf8FailsFastWithinAFrame) {
  // The frame declares 1000 bytes but only the first 20 have arrived; the bad byte among them
  // is reported at once, before the rest of the frame.
  std::string payload = "0123456789\xC0\x80" + std::string(988, 'x');
  const std::string f = make_client_frame(Opcode::text, payload, key1);
  Stream s;
  s.push(std::string_view(f).substr(0, 8 + 20));
  expect_error(s.events, close_code::invalid_payload);

  // And in the first fragment of a message, before its end arrives.
  Stream t;
  t.push(make_client_frame(Opcode::text, "\xF5", key1, false));
  expect_error(t.events, close_code::invalid_payload);
}

TEST(WsParserErrors, NothingConsumedAfterError) {
  FrameParser p;
  std::vector<FrameEvent> ev;
  p.feed(make_client_frame(Opcode::binary, "x", key1), ev);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(p.feed(make_client_frame(Opcode::text, "x", key1), ev), 0U);
  EXPECT_EQ(ev.size(), 1U);
}

TEST(WsParserErrors, EventsBeforeTheErrorAreKept) {
  auto ev = parse_all(make_client_frame(Opcode::text, "good", key1) +
                      make_client_frame(Opcode::ping, "", key1) + raw_frame(0x81, "bad", false));
  ASSERT_EQ(ev.size(), 3U);
  EXPECT_EQ(ev[0].data, "good");
  EXPECT_EQ(ev[1].kind, Kind::ping);
  EXPECT_EQ(ev[2].kind, Kind::error);
  EXPECT_EQ(ev[2].code, close_code::protocol_error);
}

}  // namespace
}  // namespace parley::protocol::ws
