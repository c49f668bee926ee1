// RFC 6455 conformance, negative cases, over raw TCP against a real parleyd: each malformed or
// out-of-order frame gets the exact close code (and, where PROTOCOL.md documents it, the reason),
// the server then ends the TCP connection, and nothing it should ignore is answered.
//
//   1002 protocol error: unmasked client frame; RSV1, RSV2 or RSV3 without an extension; every
//        reserved opcode (0x3-0x7, 0xB-0xF); a control frame over 125 bytes, or fragmented; a
//        continuation without a started message; a new data frame (text or binary) inside a
//        fragmented message; a 64-bit length with its top bit set; a close frame with a 1-byte
//        payload or a code that may not be sent (0, 999, 1004-1006, 1012-2999, 5000, 65535).
//   1007 invalid UTF-8: in one frame (bad bytes, overlong forms, surrogates, > U+10FFFF), split
//        across fragments, a message ending inside a code point, detected before the message
//        ends; invalid UTF-8 in a close reason.
//   1009 message too big: one frame, fragments that add up, a declared length alone.
//   Behaviour: a ping inside a fragmented message is answered with a pong carrying its payload
//   and the message completes; a client close is echoed (its code, 1000 when it has none);
//   data after the client's close is not processed; the server's close is followed by the end of
//   the TCP connection.

#include <cstring>
#include <string>

#include "fixture.hpp"
#include "support/raw_ws_client.hpp"

namespace parley::test {
namespace {

namespace ws = protocol::ws;

// Small limits make the oversize cases cheap; everything else is the default.
std::vector<std::string> rfc_server_args() {
  auto a = default_server_args();
  a.insert(a.end(), {"--max-frame-bytes", "1024"});
  return a;
}

class Rfc6455 : public IntegrationTest {
 protected:
  ServerProcess& srv() { return shared(rfc_server_args()); }

  // A raw client, authenticated unless `auth` is false.
  std::unique_ptr<RawWsClient> client(bool auth = true) {
    if (auth && user_.name.empty()) user_ = register_user(srv(), "rfc");
    auto raw = std::make_unique<RawWsClient>();
    raw->connect(srv().host(), srv().port());
    if (auth) raw->authenticate(user_.token);
    return raw;
  }

  User user_;
};

// A masked frame with the first header byte given as is (FIN, RSV bits, any opcode).
std::string frame_b0(std::uint8_t b0, std::string_view payload) {
  auto f = ws::make_client_frame(ws::Opcode::text, payload, 0x11223344, true);
  f[0] = static_cast<char>(b0);
  return f;
}

std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

// The server closes with `code` (and `reason` when given); after the client's answering close,
// the TCP connection ends.
::testing::AssertionResult closes_with(RawWsClient& raw, std::uint16_t code,
                                       const std::string& reason = {}) {
  auto c = raw.wait_close(5s);
  if (!c.got_close_frame) {
    return ::testing::AssertionFailure() << "expected close " << code << ", got " << c.describe();
  }
  if (c.code != code) {
    return ::testing::AssertionFailure() << "expected close " << code << ", got " << c.describe();
  }
  if (!reason.empty() && c.reason != reason) {
    return ::testing::AssertionFailure()
           << "expected close reason \"" << reason << "\", got " << c.describe();
  }
  if (!ws::is_valid_utf8(c.reason)) {
    return ::testing::AssertionFailure() << "close reason is not UTF-8: " << c.describe();
  }
  if (c.frames_skipped != 0) {
    return ::testing::AssertionFailure() << "data frames before the close: " << c.describe();
  }
  try {
    raw.send_frame(ws::Opcode::close, close_payload(code));
  } catch (const std::exception&) {
    // The server may have closed the TCP connection already.
  }
  auto after = raw.read_frame(4s);
  if (after.kind != RawFrame::Kind::eof) {
    return ::testing::AssertionFailure()
           << "after close " << code << " the TCP connection stays open: " << after.describe();
  }
  return ::testing::AssertionSuccess();
}

TEST_F(Rfc6455, UnmaskedClientFrameCloses1002) {
  for (bool auth : {false, true}) {
    SCOPED_TRACE(auth ? "authenticated" : "before auth");
    auto raw = client(auth);
    std::string f = "\x81\x0f{\"type\":\"ping\"}";  // FIN text, no MASK bit, 15 bytes
    raw->send_raw(f);
    EXPECT_TRUE(closes_with(*raw, 1002, "client frames must be masked"));
  }
}

TEST_F(Rfc6455, ReservedBitsWithoutAnExtensionClose1002) {
  for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
    SCOPED_TRACE("RSV bits " + std::to_string(rsv));
    auto raw = client();
    raw->send_raw(frame_b0(static_cast<std::uint8_t>(0x80 | rsv | 0x1), "{\"type\":\"ping\"}"));
    EXPECT_TRUE(closes_with(*raw, 1002, "reserved bits set"));
  }
  // Also on a control frame.
  auto raw = client();
  raw->send_raw(frame_b0(0x80 | 0x40 | 0x9, "p"));
  EXPECT_TRUE(closes_with(*raw, 1002, "reserved bits set"));
}

TEST_F(Rfc6455, ReservedOpcodesClose1002) {
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    SCOPED_TRACE("opcode " + std::to_string(op));
    auto raw = client(op % 2 == 0);  // before and after auth alike
    raw->send_raw(frame_b0(static_cast<std::uint8_t>(0x80 | op), "x"));
    EXPECT_TRUE(closes_with(*raw, 1002, "reserved opcode"));
  }
}

TEST_F(Rfc6455, ControlFrameOver125BytesCloses1002) {
  for (auto op : {ws::Opcode::ping, ws::Opcode::pong, ws::Opcode::close}) {
    SCOPED_TRACE("opcode " + std::to_string(static_cast<int>(op)));
    auto raw = client();
    std::string payload(126, 'c');
    if (op == ws::Opcode::close) payload = close_payload(1000, std::string(124, 'r'));
    raw->send_frame(op, payload);
    EXPECT_TRUE(closes_with(*raw, 1002, "control frame over 125 bytes"));
  }
  // 125 bytes is fine: the ping is answered with the same payload.
  auto raw = client();
  raw->send_frame(ws::Opcode::ping, std::string(125, 'p'));
  auto pong = raw->read_frame(5s);
  ASSERT_EQ(pong.kind, RawFrame::Kind::frame) << pong.describe();
  EXPECT_EQ(pong.opcode, ws::Opcode::pong) << pong.describe();
  EXPECT_EQ(pong.payload, std::string(125, 'p'));
}

TEST_F(Rfc6455, FragmentedControlFrameCloses1002) {
  for (auto op : {ws::Opcode::ping, ws::Opcode::pong, ws::Opcode::close}) {
    SCOPED_TRACE("opcode " + std::to_string(static_cast<int>(op)));
    auto raw = client();
    raw->send_frame(op, op == ws::Opcode::close ? close_payload(1000) : "p", /*fin=*/false);
    EXPECT_TRUE(closes_with(*raw, 1002, "fragmented control frame"));
  }
}

TEST_F(Rfc6455, ContinuationWithoutAStartedMessageCloses1002) {
  {
    auto raw = client();
    raw->send_frame(ws::Opcode::continuation, "{\"type\":\"ping\"}", /*fin=*/true);
    EXPECT_TRUE(closes_with(*raw, 1002, "continuation frame without a message"));
  }
  {
    // After a complete message, a continuation has nothing to continue either.
    auto raw = client();
    raw->send_json({{"type", "ping"}, {"ref", "one"}});
    EXPECT_EQ(raw->read_json(5s).value("ref", ""), "one");
    raw->send_frame(ws::Opcode::continuation, "x", /*fin=*/false);
    EXPECT_TRUE(closes_with(*raw, 1002, "continuation frame without a message"));
  }
}

TEST_F(Rfc6455, NewDataFrameInsideAFragmentedMessageCloses1002) {
  for (auto op : {ws::Opcode::text, ws::Opcode::binary}) {
    SCOPED_TRACE("opcode " + std::to_string(static_cast<int>(op)));
    auto raw = client();
    raw->send_frame(ws::Opcode::text, "{\"type\":", /*fin=*/false);
    raw->send_frame(op, "\"ping\"}", /*fin=*/true);
    EXPECT_TRUE(closes_with(*raw, 1002, "data frame inside a fragmented message"));
  }
}

TEST_F(Rfc6455, LengthWithTheMostSignificantBitSetCloses1002) {
  auto raw = client();
  std::string f = "\x81\xff";
  f += std::string("\x80\x00\x00\x00\x00\x00\x00\x05", 8);
  f += std::string("\x01\x02\x03\x04", 4);
  f += "hello";
  raw->send_raw(f);
  EXPECT_TRUE(closes_with(*raw, 1002, "frame length has its most significant bit set"));
}

TEST_F(Rfc6455, InvalidUtf8InOneFrameCloses1007) {
  const std::vector<std::string> bad = {
      "\xff",              // never valid
      "\xc0\xaf",          // overlong '/'
      "\xe0\x80\xaf",      // overlong, 3 bytes
      "\xed\xa0\x80",      // UTF-16 surrogate U+D800
      "\xf4\x90\x80\x80",  // U+110000, past Unicode
      "\xc3\x28",          // bad continuation byte
      "\x80",              // lone continuation byte
  };
  for (const auto& b : bad) {
    SCOPED_TRACE("bytes of length " + std::to_string(b.size()));
    auto raw = client();
    raw->send_text("{\"type\":\"ping\",\"ref\":\"" + b + "\"}");
    EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in text message"));
  }
}

TEST_F(Rfc6455, InvalidUtf8SplitAcrossFragmentsCloses1007) {
  {
    // A code point split over two fragments is fine.
    auto raw = client();
    raw->send_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"\xe2\x82", false);
    raw->send_frame(ws::Opcode::continuation, "\xac\"}", true);
    EXPECT_EQ(raw->read_json(5s), json({{"type", "pong"}, {"ref", "\xe2\x82\xac"}}));
  }
  {
    // Its last byte replaced by one that cannot continue it is not.
    auto raw = client();
    raw->send_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"\xe2\x82", false);
    raw->send_frame(ws::Opcode::continuation, "\x28\"}", true);
    EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in text message"));
  }
  {
    // A message may not end inside a code point (here its final fragment is empty).
    auto raw = client();
    raw->send_frame(ws::Opcode::text, "\"\xe2\x82", false);
    raw->send_frame(ws::Opcode::continuation, "", true);
    EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in text message"));
  }
  {
    // Detected as soon as the bad byte arrives, not at the end of the message (which never
    // comes here).
    auto raw = client();
    raw->send_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"", false);
    raw->send_frame(ws::Opcode::continuation, "ok\xff", false);
    EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in text message"));
  }
  {
    // And within one frame's payload before the frame is complete: half a frame is sent.
    auto raw = client();
    auto f = ws::make_client_frame(ws::Opcode::text, std::string("\xff") + std::string(500, 'x'),
                                   0x0a0b0c0d);
    raw->send_raw(f.substr(0, 8 + 10));
    EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in text message"));
  }
}

TEST_F(Rfc6455, OversizeMessageCloses1009) {
  {
    auto raw = client();
    raw->send_text(std::string(1025, 'x'));
    EXPECT_TRUE(closes_with(*raw, 1009, "message too big"));
  }
  {
    // Fragments count together.
    auto raw = client();
    raw->send_frame(ws::Opcode::text, std::string(600, 'x'), false);
    raw->send_frame(ws::Opcode::continuation, std::string(600, 'x'), true);
    EXPECT_TRUE(closes_with(*raw, 1009, "message too big"));
  }
  {
    // The declared length is enough: 2^40 bytes announced, none sent.
    auto raw = client(false);
    std::string f = "\x81\xff";
    f += std::string("\x00\x00\x01\x00\x00\x00\x00\x00", 8);
    f += "\x01\x02\x03\x04";
    raw->send_raw(f);
    EXPECT_TRUE(closes_with(*raw, 1009, "message too big"));
  }
  {
    // Exactly the limit is accepted (and judged on its content: not JSON).
    auto raw = client();
    raw->send_text(std::string(1024, 'x'));
    auto reply = raw->read_json(5s);
    EXPECT_TRUE(is_ws_error(reply, "bad_request")) << reply.dump();
  }
}

TEST_F(Rfc6455, CloseFrameWithOneBytePayloadCloses1002) {
  auto raw = client();
  raw->send_frame(ws::Opcode::close, std::string("\x03", 1));
  EXPECT_TRUE(closes_with(*raw, 1002, "close frame of 1 byte"));
}

TEST_F(Rfc6455, CloseFrameWithAnInvalidCodeCloses1002) {
  for (unsigned code : {0u, 999u, 1004u, 1005u, 1006u, 1012u, 1015u, 1016u, 2999u, 5000u, 65535u}) {
    SCOPED_TRACE("code " + std::to_string(code));
    auto raw = client();
    raw->send_frame(ws::Opcode::close, close_payload(static_cast<std::uint16_t>(code)));
    EXPECT_TRUE(closes_with(*raw, 1002, "invalid close code"));
  }
}

TEST_F(Rfc6455, CloseReasonWithInvalidUtf8Closes1007) {
  auto raw = client();
  raw->send_frame(ws::Opcode::close, close_payload(1000, "bye \xff"));
  EXPECT_TRUE(closes_with(*raw, 1007, "invalid UTF-8 in close reason"));
}

TEST_F(Rfc6455, ValidCloseIsEchoedWithItsCode) {
  for (unsigned code : {1000u, 1001u, 1003u, 1007u, 1011u, 3000u, 4999u}) {
    SCOPED_TRACE("code " + std::to_string(code));
    auto raw = client();
    raw->send_frame(ws::Opcode::close, close_payload(static_cast<std::uint16_t>(code), "bye"));
    auto c = raw->wait_close(5s);
    ASSERT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, code) << c.describe();
    EXPECT_EQ(c.reason, "") << c.describe();
    EXPECT_EQ(raw->read_frame(4s).kind, RawFrame::Kind::eof);
  }
  // No code: 1000.
  auto raw = client();
  raw->send_frame(ws::Opcode::close, "");
  auto c = raw->wait_close(5s);
  ASSERT_TRUE(c.got_close_frame) << c.describe();
  EXPECT_EQ(c.code, 1000) << c.describe();
}

TEST_F(Rfc6455, PingInsideAFragmentedMessageIsAnsweredWithAPong) {
  auto raw = client();
  raw->send_frame(ws::Opcode::text, "{\"type\":\"pi", false);
  raw->send_frame(ws::Opcode::ping, "mid-message");
  raw->send_frame(ws::Opcode::continuation, "ng\",\"ref\":", false);
  raw->send_frame(ws::Opcode::pong, "unsolicited");  // ignored
  raw->send_frame(ws::Opcode::ping, "");
  raw->send_frame(ws::Opcode::continuation, "\"frag\"}", true);
  auto p1 = raw->read_frame(5s);
  ASSERT_EQ(p1.kind, RawFrame::Kind::frame) << p1.describe();
  EXPECT_EQ(p1.opcode, ws::Opcode::pong) << p1.describe();
  EXPECT_EQ(p1.payload, "mid-message");
  auto p2 = raw->read_frame(5s);
  ASSERT_EQ(p2.kind, RawFrame::Kind::frame) << p2.describe();
  EXPECT_EQ(p2.opcode, ws::Opcode::pong) << p2.describe();
  EXPECT_EQ(p2.payload, "");
  // The message itself completed.
  EXPECT_EQ(raw->read_json(5s), json({{"type", "pong"}, {"ref", "frag"}}));
  // Before authentication too.
  auto pre = client(false);
  pre->send_frame(ws::Opcode::text, "{\"type\":\"au", false);
  pre->send_frame(ws::Opcode::ping, "pre-auth");
  auto p3 = pre->read_frame(5s);
  ASSERT_EQ(p3.kind, RawFrame::Kind::frame) << p3.describe();
  EXPECT_EQ(p3.opcode, ws::Opcode::pong) << p3.describe();
  EXPECT_EQ(p3.payload, "pre-auth");
}

TEST_F(Rfc6455, DataAfterTheClientsCloseIsNotProcessed) {
  auto raw = client();
  // The close and, in the same write, requests that would each get an answer.
  std::string bytes = ws::make_client_frame(ws::Opcode::close, close_payload(1000), 0x01010101);
  bytes +=
      ws::make_client_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"after\"}", 0x02020202);
  bytes += ws::make_client_frame(ws::Opcode::ping, "after", 0x03030303);
  auto room = unique_name("after");
  bytes += ws::make_client_frame(
      ws::Opcode::text, json({{"type", "create"}, {"room", room}, {"visibility", "public"}}).dump(),
      0x04040404);
  raw->send_raw(bytes);
  auto c = raw->wait_close(5s);
  ASSERT_TRUE(c.got_close_frame) << c.describe();
  EXPECT_EQ(c.code, 1000) << c.describe();
  EXPECT_EQ(c.frames_skipped, 0u) << "frames were answered after the client's close";
  // Then the connection ends, with nothing else.
  auto after = raw->read_frame(4s);
  EXPECT_EQ(after.kind, RawFrame::Kind::eof) << after.describe();
  // The create after the close was not processed: the room does not exist.
  auto res = srv().http().get("/api/v1/rooms/" + room + "/messages", user_.token);
  EXPECT_TRUE(is_http_error(res, 404, "not_found")) << res.body;
}

TEST_F(Rfc6455, DataAfterTheServersCloseIsIgnored) {
  auto raw = client();
  raw->send_frame(ws::Opcode::binary, "x");  // the server closes 1003
  raw->send_json({{"type", "ping"}, {"ref", "late"}});
  raw->send_frame(ws::Opcode::ping, "late");
  EXPECT_TRUE(closes_with(*raw, 1003, "binary frames are not supported"));
}

}  // namespace
}  // namespace parley::test
