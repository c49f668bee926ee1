// PROTOCOL.md's error table: malformed requests, binary, oversized and invalid UTF-8 frames,
// the send rate limit, slow consumers and the authentication timeout.

#include <string>

#include "fixture.hpp"
#include "support/raw_ws_client.hpp"

namespace parley::test {
namespace {

namespace ws = protocol::ws;

class WsErrors : public IntegrationTest {};

// A raw client that is authenticated as a fresh user.
std::unique_ptr<RawWsClient> raw_authed(ServerProcess& server, const User& u, int rcvbuf = 0) {
  auto raw = std::make_unique<RawWsClient>();
  raw->connect(server.host(), server.port(), rcvbuf);
  raw->authenticate(u.token);
  return raw;
}

TEST_F(WsErrors, MalformedRequestsAreBadRequestAndTheSocketStaysOpen) {
  auto u = register_user(server(), "bad");
  Session s(server(), u);
  const std::vector<std::string> inputs = {
      "hello",                                              // not JSON
      "{\"type\":\"ping\"",                                 // truncated JSON
      "[1,2,3]",                                            // JSON, not an object
      "\"ping\"",                                           // a JSON string
      "{}",                                                 // no type
      "{\"type\":42}",                                      // mistyped type
      "{\"type\":\"dance\"}",                               // unknown type
      "{\"type\":\"join\"}",                                // missing room
      "{\"type\":\"join\",\"room\":5}",                     // mistyped room
      "{\"type\":\"send\",\"room\":\"r\",\"body\":\"x\"}",  // missing client_msg_id
      "{\"type\":\"read\",\"room\":\"r\",\"seq\":\"3\"}",   // mistyped seq
      "{\"type\":\"read\",\"room\":\"r\",\"seq\":-1}",      // negative seq
      "{\"type\":\"history\",\"room\":\"r\",\"before\":5,\"limit\":\"2\"}",
      "{\"type\":\"watch\",\"users\":\"bob\"}",  // users not an array
      "{\"type\":\"create\",\"room\":\"r\"}",    // missing visibility
  };
  for (const auto& in : inputs) {
    s.ws().send_text(in);
    auto reply = s.next();
    EXPECT_TRUE(is_ws_error(reply, "bad_request")) << "input " << in << " -> " << reply.dump();
  }
  // A malformed request that carries a valid ref gets it back.
  s.ws().send_text("{\"type\":\"dance\",\"ref\":\"r-9\"}");
  EXPECT_TRUE(is_ws_error(s.next(), "bad_request", "r-9"));
  s.ws().send_text("{\"type\":\"join\",\"ref\":\"r-10\"}");
  EXPECT_TRUE(is_ws_error(s.next(), "bad_request", "r-10"));
  // Still open and serving.
  s.send({{"type", "ping"}, {"ref", "alive"}});
  EXPECT_EQ(s.next(), json({{"type", "pong"}, {"ref", "alive"}}));
  auto room = unique_name("after");
  EXPECT_EQ(s.create(room).value("room", ""), room);
}

TEST_F(WsErrors, BinaryFrameCloses1003) {
  auto u = register_user(server(), "bin");
  auto raw = raw_authed(server(), u);
  raw->send_frame(ws::Opcode::binary, "{\"type\":\"ping\"}");
  auto c = raw->wait_close(5s);
  EXPECT_TRUE(c.got_close_frame) << c.describe();
  EXPECT_EQ(c.code, 1003) << c.describe();
}

TEST_F(WsErrors, FrameOver64KiBCloses1009) {
  auto u = register_user(server(), "big");
  {
    auto raw = raw_authed(server(), u);
    raw->send_text(std::string(64 * 1024 + 1, 'x'));
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1009) << "one frame of 64 KiB + 1: " << c.describe();
  }
  {
    // The limit applies to the message, whatever its fragmentation.
    auto raw = raw_authed(server(), u);
    raw->send_frame(ws::Opcode::text, std::string(40000, 'x'), /*fin=*/false);
    raw->send_frame(ws::Opcode::continuation, std::string(40000, 'x'), /*fin=*/true);
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1009) << "two fragments of 40000: " << c.describe();
  }
  {
    // Announcing a huge length is enough: the server must not wait for (or buffer) the payload.
    auto raw = raw_authed(server(), u);
    auto frame = ws::make_client_frame(ws::Opcode::text, std::string(70000, 'y'), 0x01020304);
    raw->send_raw(frame.substr(0, 14 + 100));
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1009) << "declared length over the limit: " << c.describe();
  }
}

TEST_F(WsErrors, FrameLimitIsConfigurable) {
  auto& srv = own({"--max-frame-bytes", "1024"});
  auto u = register_user(srv, "small");
  {
    auto raw = raw_authed(srv, u);
    json ping = {{"type", "ping"}, {"ref", "fits"}, {"pad", ""}};
    ping["pad"] = std::string(1024 - ping.dump().size(), 'p');
    ASSERT_EQ(ping.dump().size(), 1024u);
    raw->send_json(ping);
    auto reply = raw->read_frame(5s);
    ASSERT_EQ(reply.kind, RawFrame::Kind::frame) << reply.describe();
    EXPECT_FALSE(reply.is_close())
        << "1024 bytes is within --max-frame-bytes 1024: " << reply.describe();
    ping["pad"] = ping["pad"].get<std::string>() + "p";
    raw->send_json(ping);
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1009) << "1025 bytes with --max-frame-bytes 1024: " << c.describe();
  }
}

TEST_F(WsErrors, MessageOfExactly64KiBIsAcceptedAndJudgedOnItsContent) {
  auto u = register_user(server(), "edge");
  Session s(server(), u);
  auto room = unique_name("edge");
  s.create(room);
  json send = {{"type", "send"}, {"room", room}, {"client_msg_id", "big"}, {"body", ""}};
  const auto overhead = send.dump().size();
  send["body"] = std::string(64 * 1024 - overhead, 'b');
  auto text = send.dump();
  ASSERT_EQ(text.size(), 64u * 1024);
  s.ws().send_text(text);
  auto reply = s.next();
  EXPECT_TRUE(is_ws_error(reply, "too_large")) << reply.dump().substr(0, 300);
  EXPECT_NO_THROW(s.barrier()) << "a recoverable error leaves the socket open";
}

TEST_F(WsErrors, InvalidUtf8Closes1007) {
  auto u = register_user(server(), "utf");
  {
    auto raw = raw_authed(server(), u);
    raw->send_text("\xff\xfe not utf-8");
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1007) << c.describe();
  }
  {
    // Inside an otherwise valid JSON request.
    auto raw = raw_authed(server(), u);
    raw->send_text("{\"type\":\"ping\",\"ref\":\"\xc3\x28\"}");
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1007) << c.describe();
  }
  {
    // A code point split across fragments is valid; a broken one across fragments is not.
    auto raw = raw_authed(server(), u);
    raw->send_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"\xc3", false);
    raw->send_frame(ws::Opcode::continuation, "\xa9\"}", true);
    auto pong = raw->read_json(5s);
    EXPECT_EQ(pong, json({{"type", "pong"}, {"ref", "\xc3\xa9"}}));
    raw->send_frame(ws::Opcode::text, "{\"type\":\"ping\",\"ref\":\"\xc3", false);
    raw->send_frame(ws::Opcode::continuation, "\x28\"}", true);
    auto c = raw->wait_close(5s);
    EXPECT_TRUE(c.got_close_frame) << c.describe();
    EXPECT_EQ(c.code, 1007) << c.describe();
  }
}

TEST_F(WsErrors, SendRateIsLimitedToTheBurstThenRateLimited) {
  auto& srv = own({"--send-rate", "20", "--send-burst", "40"});
  auto u = register_user(srv, "rate");
  auto other = register_user(srv, "rate");
  Session s(srv, u);
  auto room = unique_name("rate");
  s.create(room);
  // 60 sends at once: the burst of 40 passes, and at 20/s only a token or two refills while
  // they are read, so the rest is refused.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 60; ++i) {
    s.send({{"type", "send"},
            {"room", room},
            {"client_msg_id", "m" + std::to_string(i)},
            {"body", "burst " + std::to_string(i)},
            {"ref", "m" + std::to_string(i)}});
  }
  int acks = 0;
  int limited = 0;
  std::int64_t retry_after = 0;
  for (int i = 0; i < 60; ++i) {
    auto r = s.wait_for([](const json& j) { return j.contains("ref"); }, 10s, "a reply");
    if (r.value("type", "") == "ack") {
      ++acks;
    } else {
      ASSERT_TRUE(is_ws_error(r, "rate_limited")) << r.dump();
      ASSERT_TRUE(r.contains("retry_after_ms") && r["retry_after_ms"].is_number_integer())
          << r.dump();
      retry_after = r["retry_after_ms"].get<std::int64_t>();
      EXPECT_GT(retry_after, 0) << r.dump();
      EXPECT_LE(retry_after, 5000) << "at 20/s a token comes back within 50 ms: " << r.dump();
      ++limited;
    }
  }
  const auto elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(acks, 40) << "the burst passes";
  EXPECT_LE(acks, 40 + static_cast<int>(elapsed_s * 20) + 1) << "no more than burst + rate * time";
  EXPECT_EQ(acks + limited, 60);
  EXPECT_GE(limited, 1);
  // Refused sends stored nothing.
  EXPECT_EQ(all_messages_http(srv, u.token, room).size(), static_cast<std::size_t>(acks));
  // The limit is per user: another user sends right away.
  Session o(srv, other);
  o.join(room);
  EXPECT_EQ(o.send_message(room, "not throttled").value("type", ""), "ack");
  // After the advertised wait, the first user may send again (the server said how long).
  std::this_thread::sleep_for(std::chrono::milliseconds(retry_after + 20));
  EXPECT_EQ(s.send_message(room, "again").value("type", ""), "ack");
}

TEST_F(WsErrors, SlowConsumerIsClosed1008AndResumesWithCursors) {
  auto& srv =
      own({"--send-rate", "1000000", "--send-burst", "1000000", "--write-queue-bytes", "131072"});
  auto alice = register_user(srv, "fast");
  auto slow = register_user(srv, "slow");
  auto room = unique_name("flood");
  Session a(srv, alice);
  a.create(room);
  Session(srv, slow).join(room);

  // The slow client: a tiny receive buffer, and it never reads while the flood goes on.
  auto raw = std::make_unique<RawWsClient>();
  raw->connect(srv.host(), srv.port(), /*rcvbuf=*/4096);
  raw->authenticate(slow.token);

  // Alice floods the room in windows of 8 sends, reading every reply so that she is never
  // slow herself (a window echoes 28 KB to her, well under the limit), until the slow client
  // is reported offline or 8 MB were sent.
  a.send({{"type", "watch"}, {"users", {slow.name}}});
  const std::string body(3500, 'f');
  int sent = 0;
  bool slow_offline = false;
  std::uint64_t last_seq = 0;
  while (sent < 2400 && !slow_offline) {
    for (int i = 0; i < 8; ++i, ++sent) {
      a.send({{"type", "send"},
              {"room", room},
              {"client_msg_id", "f" + std::to_string(sent)},
              {"body", body}});
    }
    int acks = 0;
    while (acks < 8) {
      auto ev = a.ws().receive(10s);
      ASSERT_TRUE(ev.is_text()) << "alice's socket: " << ev.describe();
      auto j = ev.json();
      auto type = j.value("type", "");
      if (type == "ack") {
        ++acks;
        last_seq = std::max<std::uint64_t>(last_seq, j.value("seq", 0ULL));
      } else if (type == "presence" && j.value("user", "") == slow.name &&
                 j.value("status", "") == "offline") {
        slow_offline = true;
      } else if (type == "error") {
        FAIL() << "alice got " << j.dump();
      }
    }
  }
  ASSERT_TRUE(slow_offline) << "the slow client was still online after " << sent
                            << " messages of 3.5 KB with --write-queue-bytes 131072";
  // Now read what reached the slow client: messages in order, then the close.
  std::uint64_t seen = 0;
  std::optional<RawFrame> close;
  for (;;) {
    auto f = raw->read_frame(30s);
    if (f.kind != RawFrame::Kind::frame) {
      FAIL() << "no close frame for the slow consumer: " << f.describe() << " after seq " << seen;
    }
    if (f.is_close()) {
      close = f;
      break;
    }
    auto j = f.json();
    if (is_message(j, room)) {
      ASSERT_EQ(j["seq"].get<std::uint64_t>(), seen + 1) << "in order, no gap, before the close";
      seen = j["seq"].get<std::uint64_t>();
    }
  }
  EXPECT_EQ(close->close_code(), 1008);
  EXPECT_EQ(close->close_reason(), "slow consumer");
  EXPECT_LT(seen, last_seq) << "it was closed before receiving everything";
  // It reconnects with its cursor and gets exactly the rest, though the rest is far more than
  // the write-queue limit: a resume must be paced by the client's reading, not pushed at once.
  const std::string resume = "resuming from seq " + std::to_string(seen) + " to " +
                             std::to_string(last_seq) + " (" +
                             std::to_string((last_seq - seen) * 3500 / 1024) + " KiB of bodies)";
  std::unique_ptr<Session> again;
  try {
    again =
        std::make_unique<Session>(srv, slow, std::map<std::string, std::uint64_t>{{room, seen}});
  } catch (const std::exception& e) {
    FAIL() << resume << ": " << e.what();
  }
  auto replay = messages_of(again->replayed(), room);
  ASSERT_EQ(replay.size(), last_seq - seen) << resume;
  for (std::size_t i = 0; i < replay.size(); ++i) {
    ASSERT_EQ(replay[i].value("seq", 0ULL), seen + 1 + i) << resume;
  }
  // Alice's session was never affected.
  EXPECT_NO_THROW(a.barrier(10s));
}

TEST_F(WsErrors, NoAuthWithinTheTimeoutCloses) {
  auto& srv = own({"--auth-timeout-ms", "500"});
  auto ws = srv.connect_ws();
  const auto t0 = std::chrono::steady_clock::now();
  client::WsEvent ev;
  do {
    ev = ws->receive(5s);
  } while (ev.is_text());  // an error frame may precede the close
  auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  ASSERT_TRUE(ev.is_closed()) << "still open 5 s after connecting without auth";
  EXPECT_GE(elapsed.count(), 400) << "closed before the timeout: " << ev.describe();
  EXPECT_LE(elapsed.count(), 2000) << ev.describe();
  EXPECT_EQ(ev.close_code, 1008) << ev.describe();
  // A client that authenticates in time is not affected by the timer.
  auto u = register_user(srv, "intime");
  Session s(srv, u);
  std::this_thread::sleep_for(700ms);  // past the auth timeout: the point of this check
  EXPECT_NO_THROW(s.barrier());
}

}  // namespace
}  // namespace parley::test
