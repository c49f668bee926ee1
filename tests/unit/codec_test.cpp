#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "protocol/messages.hpp"

namespace parley::protocol {
namespace {

// ---- helpers ----

Envelope decode_ok(std::string_view json, const Limits& limits = {}) {
  auto r = decode_request(json, limits);
  EXPECT_TRUE(r.has_value()) << json << " -> " << (r ? "" : r.error().message);
  return r ? *r : Envelope{};
}

DecodeError decode_err(std::string_view json, const Limits& limits = {}) {
  auto r = decode_request(json, limits);
  EXPECT_FALSE(r.has_value()) << json;
  return r ? DecodeError{} : r.error();
}

// Expects bad_request whose message mentions `mentions`.
void expect_bad(std::string_view json, std::string_view mentions, const Limits& limits = {}) {
  const DecodeError e = decode_err(json, limits);
  EXPECT_EQ(e.code, ErrorCode::bad_request) << json;
  EXPECT_NE(e.message.find(mentions), std::string::npos)
      << json << ": message \"" << e.message << "\" should mention " << mentions;
}

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  EXPECT_FALSE(d.HasParseError()) << json;
  EXPECT_TRUE(d.IsObject()) << json;
  return d;
}

std::string str(const rapidjson::Value& v) {
  return std::string(v.GetString(), v.GetStringLength());
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

// ---- decode: every type ----

TEST(Decode, Auth) {
  auto env = decode_ok(R"({"type":"auth","token":"tok123"})");
  ASSERT_TRUE(std::holds_alternative<AuthReq>(env.request));
  const auto& a = std::get<AuthReq>(env.request);
  EXPECT_EQ(a.token, "tok123");
  EXPECT_TRUE(a.cursors.empty());
  EXPECT_FALSE(env.ref.has_value());
}

TEST(Decode, AuthWithCursors) {
  auto env = decode_ok(
      R"({"type":"auth","token":"t","cursors":{"general":17,"dm:alice:bob":0,"big":18446744073709551615}})");
  const auto& a = std::get<AuthReq>(env.request);
  ASSERT_EQ(a.cursors.size(), 3U);
  EXPECT_EQ(a.cursors[0], (std::pair<std::string, std::uint64_t>{"general", 17}));
  EXPECT_EQ(a.cursors[1], (std::pair<std::string, std::uint64_t>{"dm:alice:bob", 0}));
  EXPECT_EQ(a.cursors[2].second, 18446744073709551615ULL);
  auto empty = decode_ok(R"({"type":"auth","token":"t","cursors":{}})");
  EXPECT_TRUE(std::get<AuthReq>(empty.request).cursors.empty());
}

TEST(Decode, AuthErrors) {
  expect_bad(R"({"type":"auth"})", "token");
  expect_bad(R"({"type":"auth","token":5})", "token");
  expect_bad(R"({"type":"auth","token":""})", "token");
  expect_bad(R"({"type":"auth","token":"t","cursors":[]})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":null})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"general":-1}})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"general":1.5}})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"general":"3"}})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"General":3}})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"dm:bob:alice":3}})", "cursors");
  expect_bad(R"({"type":"auth","token":"t","cursors":{"a":1,"b":2,"a":3}})", "twice");
  Limits small;
  small.max_cursors = 2;
  decode_ok(R"({"type":"auth","token":"t","cursors":{"a":1,"b":2}})", small);
  expect_bad(R"({"type":"auth","token":"t","cursors":{"a":1,"b":2,"c":3}})", "cursors", small);
}

TEST(Decode, Create) {
  auto pub = decode_ok(R"({"type":"create","room":"general","visibility":"public"})");
  EXPECT_EQ(std::get<CreateReq>(pub.request), (CreateReq{"general", false}));
  auto priv = decode_ok(R"({"type":"create","room":"secret","visibility":"private"})");
  EXPECT_EQ(std::get<CreateReq>(priv.request), (CreateReq{"secret", true}));
}

TEST(Decode, CreateErrors) {
  expect_bad(R"({"type":"create","visibility":"public"})", "room");
  expect_bad(R"({"type":"create","room":"general"})", "visibility");
  expect_bad(R"({"type":"create","room":"general","visibility":"hidden"})", "visibility");
  expect_bad(R"({"type":"create","room":"general","visibility":true})", "visibility");
  // Only plain names may be created; dm rooms are named by the server.
  expect_bad(R"({"type":"create","room":"dm:alice:bob","visibility":"private"})", "room");
  expect_bad(R"({"type":"create","room":"Bad Room","visibility":"public"})", "room");
  expect_bad(R"({"type":"create","room":"","visibility":"public"})", "room");
  expect_bad(R"({"type":"create","room":")" + std::string(65, 'a') + R"(","visibility":"public"})",
             "room");
  decode_ok(R"({"type":"create","room":")" + std::string(64, 'a') + R"(","visibility":"public"})");
}

TEST(Decode, JoinLeaveTypingAcceptPlainAndDmRooms) {
  for (std::string_view room : {"general", "dm:alice:bob"}) {
    const std::string r(room);
    EXPECT_EQ(std::get<JoinReq>(decode_ok(R"({"type":"join","room":")" + r + "\"}").request).room,
              r);
    EXPECT_EQ(std::get<LeaveReq>(decode_ok(R"({"type":"leave","room":")" + r + "\"}").request).room,
              r);
    EXPECT_EQ(
        std::get<TypingReq>(decode_ok(R"({"type":"typing","room":")" + r + "\"}").request).room, r);
  }
}

TEST(Decode, RoomFieldErrors) {
  for (std::string_view type : {"join", "leave", "typing", "history", "read", "invite", "send"}) {
    const std::string t(type);
    expect_bad(R"({"type":")" + t + "\"}", "room");
    expect_bad(R"({"type":")" + t + R"(","room":42})", "room");
    expect_bad(R"({"type":")" + t + R"(","room":null})", "room");
    expect_bad(R"({"type":")" + t + R"(","room":["general"]})", "room");
    expect_bad(R"({"type":")" + t + R"(","room":"UPPER"})", "room");
    expect_bad(R"({"type":")" + t + R"(","room":"dm:bob:alice"})", "room");
    expect_bad(R"({"type":")" + t + R"(","room":"dm:alice"})", "room");
  }
}

TEST(Decode, Invite) {
  auto env = decode_ok(R"({"type":"invite","room":"secret","user":"bob.b"})");
  EXPECT_EQ(std::get<InviteReq>(env.request), (InviteReq{"secret", "bob.b"}));
  expect_bad(R"({"type":"invite","room":"secret"})", "user");
  expect_bad(R"({"type":"invite","room":"secret","user":"Bob"})", "user");
  expect_bad(R"({"type":"invite","room":"secret","user":7})", "user");
}

TEST(Decode, Dm) {
  auto env = decode_ok(R"({"type":"dm","user":"bob"})");
  EXPECT_EQ(std::get<DmReq>(env.request).user, "bob");
  expect_bad(R"({"type":"dm"})", "user");
  expect_bad(R"({"type":"dm","user":""})", "user");
  expect_bad(R"({"type":"dm","user":")" + std::string(33, 'b') + "\"}", "user");
  expect_bad(R"({"type":"dm","user":"bo b"})", "user");
  expect_bad(R"({"type":"dm","user":{}})", "user");
}

TEST(Decode, Send) {
  auto env =
      decode_ok(R"({"type":"send","room":"general","client_msg_id":"c1","body":"hi \"there\"\n"})");
  EXPECT_EQ(std::get<SendReq>(env.request), (SendReq{"general", "c1", "hi \"there\"\n"}));
  auto dm = decode_ok(R"({"type":"send","room":"dm:alice:bob","client_msg_id":"x","body":"é"})");
  EXPECT_EQ(std::get<SendReq>(dm.request).body, "\xC3\xA9");
}

TEST(Decode, SendErrors) {
  expect_bad(R"({"type":"send","room":"general","body":"b"})", "client_msg_id");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":"","body":"b"})", "client_msg_id");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":1,"body":"b"})", "client_msg_id");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":"c"})", "body");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":"c","body":""})", "body");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":"c","body":null})", "body");
  expect_bad(R"({"type":"send","room":"general","client_msg_id":"c","body":12})", "body");
}

TEST(Decode, ClientMsgIdLengthInCharacters) {
  const std::string ok64 = repeat("\xE2\x82\xAC", 64);  // 64 characters, 192 bytes
  decode_ok(R"({"type":"send","room":"r","client_msg_id":")" + ok64 + R"(","body":"b"})");
  expect_bad(R"({"type":"send","room":"r","client_msg_id":")" + ok64 + R"(x","body":"b"})",
             "client_msg_id");
  decode_ok(R"({"type":"send","room":"r","client_msg_id":")" + std::string(64, 'i') +
            R"(","body":"b"})");
  expect_bad(
      R"({"type":"send","room":"r","client_msg_id":")" + std::string(65, 'i') + R"(","body":"b"})",
      "client_msg_id");
}

TEST(Decode, BodyLimitCountsCodePoints) {
  // 4000 three-byte characters (12000 bytes) are within the limit; one more is too large.
  const std::string euro4000 = repeat("\xE2\x82\xAC", 4000);
  auto env =
      decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":")" + euro4000 + "\"}");
  EXPECT_EQ(std::get<SendReq>(env.request).body, euro4000);
  const DecodeError e =
      decode_err(R"({"type":"send","room":"r","client_msg_id":"c","ref":"q","body":")" + euro4000 +
                 "\xE2\x82\xAC\"}");
  EXPECT_EQ(e.code, ErrorCode::too_large);
  EXPECT_NE(e.message.find("body"), std::string::npos);
  EXPECT_EQ(e.ref, "q");

  // Four-byte characters and plain ASCII at the boundary.
  decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":")" +
            repeat("\xF0\x9F\x98\x80", 4000) + "\"}");
  EXPECT_EQ(decode_err(R"({"type":"send","room":"r","client_msg_id":"c","body":")" +
                       repeat("\xF0\x9F\x98\x80", 4001) + "\"}")
                .code,
            ErrorCode::too_large);
  decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":")" + std::string(4000, 'a') +
            "\"}");
  EXPECT_EQ(decode_err(R"({"type":"send","room":"r","client_msg_id":"c","body":")" +
                       std::string(4001, 'a') + "\"}")
                .code,
            ErrorCode::too_large);
  // An escape counts as the one character it stands for.
  decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":")" + repeat("\\n", 4000) +
            "\"}");

  Limits small;
  small.max_body_code_points = 3;
  decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":"abc"})", small);
  EXPECT_EQ(
      decode_err(R"({"type":"send","room":"r","client_msg_id":"c","body":"abcd"})", small).code,
      ErrorCode::too_large);
}

TEST(Decode, History) {
  auto newest = decode_ok(R"({"type":"history","room":"general"})");
  const auto& h = std::get<HistoryReq>(newest.request);
  EXPECT_EQ(h.room, "general");
  EXPECT_FALSE(h.before.has_value());
  EXPECT_EQ(h.limit, Limits{}.default_history_limit);

  auto full = decode_ok(R"({"type":"history","room":"dm:alice:bob","before":120,"limit":200})");
  EXPECT_EQ(std::get<HistoryReq>(full.request), (HistoryReq{"dm:alice:bob", 120, 200}));
  auto one = decode_ok(R"({"type":"history","room":"r","before":0,"limit":1})");
  EXPECT_EQ(std::get<HistoryReq>(one.request), (HistoryReq{"r", 0, 1}));

  Limits custom;
  custom.default_history_limit = 7;
  EXPECT_EQ(
      std::get<HistoryReq>(decode_ok(R"({"type":"history","room":"r"})", custom).request).limit,
      7U);
}

TEST(Decode, HistoryErrors) {
  expect_bad(R"({"type":"history","room":"r","limit":0})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":201})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":-1})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":10.5})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":1e1})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":"10"})", "limit");
  expect_bad(R"({"type":"history","room":"r","limit":4294967297})", "limit");
  expect_bad(R"({"type":"history","room":"r","before":-5})", "before");
  expect_bad(R"({"type":"history","room":"r","before":5.0})", "before");
  expect_bad(R"({"type":"history","room":"r","before":"5"})", "before");
  expect_bad(R"({"type":"history","room":"r","before":null})", "before");
  expect_bad(R"({"type":"history","room":"r","before":18446744073709551616})", "before");
  Limits small;
  small.max_history_limit = 10;
  decode_ok(R"({"type":"history","room":"r","limit":10})", small);
  expect_bad(R"({"type":"history","room":"r","limit":11})", "limit", small);
}

TEST(Decode, Read) {
  auto env = decode_ok(R"({"type":"read","room":"general","seq":42})");
  EXPECT_EQ(std::get<ReadReq>(env.request), (ReadReq{"general", 42}));
  expect_bad(R"({"type":"read","room":"general"})", "seq");
  expect_bad(R"({"type":"read","room":"general","seq":-1})", "seq");
  expect_bad(R"({"type":"read","room":"general","seq":1.25})", "seq");
  expect_bad(R"({"type":"read","room":"general","seq":"42"})", "seq");
  expect_bad(R"({"type":"read","room":"general","seq":true})", "seq");
}

TEST(Decode, Watch) {
  auto env = decode_ok(R"({"type":"watch","users":["bob","carol.c"]})");
  EXPECT_EQ(std::get<WatchReq>(env.request).users, (std::vector<std::string>{"bob", "carol.c"}));
  auto empty = decode_ok(R"({"type":"watch","users":[]})");
  EXPECT_TRUE(std::get<WatchReq>(empty.request).users.empty());
  expect_bad(R"({"type":"watch"})", "users");
  expect_bad(R"({"type":"watch","users":"bob"})", "users");
  expect_bad(R"({"type":"watch","users":["bob",3]})", "users");
  expect_bad(R"({"type":"watch","users":["bob","Bad"]})", "users");
  expect_bad(R"({"type":"watch","users":[""]})", "users");
  Limits small;
  small.max_watch_users = 2;
  decode_ok(R"({"type":"watch","users":["a","b"]})", small);
  expect_bad(R"({"type":"watch","users":["a","b","c"]})", "users", small);
}

TEST(Decode, Ping) {
  auto env = decode_ok(R"({"type":"ping"})");
  EXPECT_TRUE(std::holds_alternative<PingReq>(env.request));
  auto with_ref = decode_ok(R"({"type":"ping","ref":"p1"})");
  EXPECT_EQ(with_ref.ref, "p1");
}

// ---- decode: envelope-level errors ----

TEST(DecodeEnvelope, NotJson) {
  for (std::string_view bad :
       {"", "   ", "{", "not json", "{\"type\":\"ping\"", "{\"type\":\"ping\"}x",
        "{\"type\":\"ping\",}", "{'type':'ping'}", "{\"type\":\"ping\"}{}"}) {
    const DecodeError e = decode_err(bad);
    EXPECT_EQ(e.code, ErrorCode::bad_request) << bad;
    EXPECT_FALSE(e.message.empty());
    EXPECT_FALSE(e.ref.has_value());
  }
}

TEST(DecodeEnvelope, NotAnObject) {
  for (std::string_view bad : {"[]", "[{\"type\":\"ping\"}]", "\"ping\"", "42", "null", "true"}) {
    const DecodeError e = decode_err(bad);
    EXPECT_EQ(e.code, ErrorCode::bad_request) << bad;
    EXPECT_NE(e.message.find("object"), std::string::npos) << e.message;
  }
}

TEST(DecodeEnvelope, TypeMissingOrWrong) {
  expect_bad(R"({})", "type");
  expect_bad(R"({"room":"general"})", "type");
  expect_bad(R"({"type":1})", "type");
  expect_bad(R"({"type":null})", "type");
  expect_bad(R"({"type":"nope"})", "nope");
  expect_bad(R"({"type":"PING"})", "unknown type");
  expect_bad(R"({"type":"message"})", "unknown type");  // a server frame, not a request
  const DecodeError long_type = decode_err(R"({"type":")" + std::string(1000, 'x') + "\"}");
  EXPECT_LT(long_type.message.size(), 100U);
}

TEST(DecodeEnvelope, ExtraFieldsIgnored) {
  auto env = decode_ok(
      R"({"type":"join","room":"general","extra":{"deep":[1,2,{"x":null}]},"n":1.5,"ref":"r"})");
  EXPECT_EQ(std::get<JoinReq>(env.request).room, "general");
  EXPECT_EQ(env.ref, "r");
}

TEST(DecodeEnvelope, WhitespaceAllowed) {
  auto env = decode_ok(" \n{ \"type\" : \"read\" ,\t\"room\":\"general\", \"seq\" : 3 }\r\n");
  EXPECT_EQ(std::get<ReadReq>(env.request), (ReadReq{"general", 3}));
}

TEST(DecodeEnvelope, RefEchoedOnErrors) {
  const DecodeError e = decode_err(R"({"type":"join","ref":"abc"})");
  EXPECT_EQ(e.ref, "abc");
  EXPECT_EQ(decode_err(R"({"ref":"r1","type":"bogus"})").ref, "r1");
  EXPECT_EQ(decode_err(R"({"ref":"r2"})").ref, "r2");
  EXPECT_EQ(decode_err(R"({"ref":"r3","type":"read","room":"g","seq":-1})").ref, "r3");
  EXPECT_EQ(decode_err(R"({"ref":"","type":"read"})").ref, "");
}

TEST(DecodeEnvelope, InvalidRefIsNotEchoed) {
  for (const std::string& bad :
       {std::string(R"({"type":"ping","ref":5})"), std::string(R"({"type":"ping","ref":null})"),
        std::string(R"({"type":"ping","ref":["a"]})"),
        R"({"type":"ping","ref":")" + std::string(65, 'r') + "\"}",
        R"({"type":"join","ref":")" + std::string(65, 'r') + "\"}"}) {
    const DecodeError e = decode_err(bad);
    EXPECT_EQ(e.code, ErrorCode::bad_request) << bad;
    EXPECT_FALSE(e.ref.has_value()) << bad;
    EXPECT_NE(e.message.find("ref"), std::string::npos) << e.message;
  }
}

TEST(DecodeEnvelope, RefLengthInCharacters) {
  EXPECT_EQ(decode_ok(R"({"type":"ping","ref":")" + std::string(64, 'r') + "\"}").ref,
            std::string(64, 'r'));
  const std::string e64 = repeat("\xC3\xA9", 64);
  EXPECT_EQ(decode_ok(R"({"type":"ping","ref":")" + e64 + "\"}").ref, e64);
  EXPECT_FALSE(decode_err(R"({"type":"ping","ref":")" + e64 + "\xC3\xA9\"}").ref.has_value());
}

TEST(DecodeEnvelope, StringsMustBeUnicode) {
  // A lone surrogate escape would decode to bytes that are not UTF-8.
  expect_bad(R"({"type":"send","room":"r","client_msg_id":"c","body":"x\udc00y"})", "body");
  expect_bad(R"({"type":"send","room":"r","client_msg_id":"c","body":"x\ud800y"})", "");
  expect_bad(R"({"type":"ping","ref":"\udfff"})", "ref");
  // Raw invalid UTF-8 in the frame.
  expect_bad("{\"type\":\"send\",\"room\":\"r\",\"client_msg_id\":\"c\",\"body\":\"\xFF\"}", "");
  // A proper pair is one character.
  auto env = decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":"\ud83d\ude00"})");
  EXPECT_EQ(std::get<SendReq>(env.request).body, "\xF0\x9F\x98\x80");
}

TEST(DecodeEnvelope, RawNulIsNotJson) {
  // Nothing may hide behind a NUL byte: the whole input must be one JSON object.
  const std::string trailing = std::string(R"({"type":"ping"})") + '\0' + "garbage";
  EXPECT_EQ(decode_err(trailing).code, ErrorCode::bad_request);
  const std::string inside = std::string(R"({"type":"ping","x":")") + '\0' + "\"}";
  EXPECT_EQ(decode_err(inside).code, ErrorCode::bad_request);
}

TEST(DecodeEnvelope, RawInvalidUtf8) {
  // Kept strings are checked; raw bytes in ignored fields do not matter.
  expect_bad("{\"type\":\"ping\",\"ref\":\"\xC3\"}", "ref");
  expect_bad("{\"type\":\"auth\",\"token\":\"\xED\xA0\x80\"}", "token");
  expect_bad("{\"type\":\"send\",\"room\":\"r\",\"client_msg_id\":\"\xFF\",\"body\":\"b\"}",
             "client_msg_id");
  expect_bad("{\"type\":\"join\",\"room\":\"\xC3\xA9\"}", "room");
  expect_bad("{\"type\":\"p\xC3\"}", "unknown type");
  decode_ok("{\"type\":\"ping\",\"ignored\":\"\xFF\"}");
}

TEST(DecodeEnvelope, EmbeddedNulInBody) {
  auto env = decode_ok(R"({"type":"send","room":"r","client_msg_id":"c","body":"a\u0000b"})");
  EXPECT_EQ(std::get<SendReq>(env.request).body, std::string("a\0b", 3));
}

TEST(DecodeEnvelope, DeepNestingDoesNotCrash) {
  const std::string deep =
      "{\"type\":\"ping\",\"x\":" + std::string(60000, '[') + std::string(60000, ']') + "}";
  EXPECT_TRUE(decode_request(deep).has_value());
  EXPECT_FALSE(decode_request(std::string(65536, '[')).has_value());
}

TEST(DecodeEnvelope, DuplicateKeysFirstWins) {
  auto env = decode_ok(R"({"type":"join","room":"first","room":"second"})");
  EXPECT_EQ(std::get<JoinReq>(env.request).room, "first");
}

// ---- encode_request / round trip ----

TEST(EncodeRequest, ExactShapes) {
  EXPECT_EQ(encode_request({std::nullopt, PingReq{}}), R"({"type":"ping"})");
  EXPECT_EQ(encode_request({"r1", JoinReq{"general"}}),
            R"({"type":"join","ref":"r1","room":"general"})");
  EXPECT_EQ(encode_request({std::nullopt, CreateReq{"g", true}}),
            R"({"type":"create","room":"g","visibility":"private"})");
  EXPECT_EQ(encode_request({std::nullopt, SendReq{"g", "c1", "hi"}}),
            R"({"type":"send","room":"g","client_msg_id":"c1","body":"hi"})");
  EXPECT_EQ(encode_request({std::nullopt, HistoryReq{"g", std::nullopt, 50}}),
            R"({"type":"history","room":"g","limit":50})");
  EXPECT_EQ(encode_request({std::nullopt, HistoryReq{"g", 9, 20}}),
            R"({"type":"history","room":"g","before":9,"limit":20})");
  EXPECT_EQ(encode_request({std::nullopt, AuthReq{"t", {{"a", 1}, {"dm:x:y", 2}}}}),
            R"({"type":"auth","token":"t","cursors":{"a":1,"dm:x:y":2}})");
  EXPECT_EQ(encode_request({std::nullopt, WatchReq{{"a", "b"}}}),
            R"({"type":"watch","users":["a","b"]})");
  EXPECT_EQ(encode_request({std::nullopt, ReadReq{"g", 5}}),
            R"({"type":"read","room":"g","seq":5})");
}

// Random valid requests of every type, with strings full of characters that need escaping.
class RequestGenerator {
 public:
  explicit RequestGenerator(unsigned seed) : rng_(seed) {}

  Envelope next() {
    Envelope env;
    if (pick(3) == 0) {
      env.ref = text(0, 64);
    }
    switch (pick(12)) {
      case 0: {
        AuthReq a{text(1, 40), {}};
        const std::size_t n = pick(5);
        for (std::size_t i = 0; i < n; ++i) {
          // Distinct rooms: numbered plain names, and at most one dm room.
          a.cursors.emplace_back(
              i == 0 && pick(2) == 0 ? dm_room() : plain_room() + "-" + std::to_string(i), u64());
        }
        env.request = a;
        break;
      }
      case 1:
        env.request = CreateReq{plain_room(), pick(2) == 0};
        break;
      case 2:
        env.request = JoinReq{room()};
        break;
      case 3:
        env.request = InviteReq{room(), user()};
        break;
      case 4:
        env.request = LeaveReq{room()};
        break;
      case 5:
        env.request = DmReq{user()};
        break;
      case 6:
        env.request = SendReq{room(), text(1, 64), text(1, 300)};
        break;
      case 7: {
        HistoryReq h{room(), std::nullopt, static_cast<std::uint32_t>(1 + pick(200))};
        if (pick(2) == 0) {
          h.before = u64();
        }
        env.request = h;
        break;
      }
      case 8:
        env.request = TypingReq{room()};
        break;
      case 9:
        env.request = ReadReq{room(), u64()};
        break;
      case 10: {
        WatchReq w;
        const std::size_t n = pick(6);
        for (std::size_t i = 0; i < n; ++i) {
          w.users.push_back(user());
        }
        env.request = w;
        break;
      }
      default:
        env.request = PingReq{};
        break;
    }
    return env;
  }

 private:
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }

  std::uint64_t u64() {
    switch (pick(3)) {
      case 0:
        return pick(10);
      case 1:
        return 18446744073709551615ULL - pick(3);
      default:
        return rng_();
    }
  }

  std::string name(std::string_view alphabet, std::size_t max) {
    std::string s;
    const std::size_t n = 1 + pick(max);
    for (std::size_t i = 0; i < n; ++i) {
      s.push_back(alphabet[pick(alphabet.size())]);
    }
    return s;
  }
  std::string user() { return name("abcxyz0189_.-", 32); }
  std::string plain_room() { return name("abcxyz0189_-", 50); }
  std::string room() { return pick(4) == 0 ? dm_room() : plain_room(); }
  std::string dm_room() {
    {
      std::string a = user();
      std::string b = user();
      if (a == b) {
        b += "z";
        if (b.size() > 32) {
          b = "zz";
        }
      }
      if (b < a) {
        std::swap(a, b);
      }
      return "dm:" + a + ":" + b;
    }
  }

  // 1..max characters drawn from ASCII, escapes, controls and multi-byte characters.
  std::string text(std::size_t min, std::size_t max) {
    static const std::vector<std::string> pieces = {"a",
                                                    "Z",
                                                    " ",
                                                    "\"",
                                                    "\\",
                                                    "/",
                                                    "\n",
                                                    "\t",
                                                    "\r",
                                                    "\b",
                                                    "\f",
                                                    std::string("\0", 1),
                                                    "\x01",
                                                    "\x1F",
                                                    "\x7F",
                                                    "\xC3\xA9",
                                                    "\xE2\x82\xAC",
                                                    "\xF0\x9F\x98\x80",
                                                    "\xE2\x80\xA8",
                                                    "{",
                                                    "}"};
    std::string s;
    const std::size_t n = min + pick(max - min + 1);
    for (std::size_t i = 0; i < n; ++i) {
      s += pieces[pick(pieces.size())];
    }
    return s;
  }

  std::mt19937_64 rng_;
};

TEST(RoundTrip, DecodeOfEncodeIsIdentity) {
  RequestGenerator gen(20240601);
  std::size_t per_type[std::variant_size_v<Request>] = {};
  for (int i = 0; i < 5000; ++i) {
    const Envelope env = gen.next();
    ++per_type[env.request.index()];
    const std::string json = encode_request(env);
    auto back = decode_request(json);
    ASSERT_TRUE(back.has_value()) << json << " -> " << back.error().message;
    ASSERT_EQ(*back, env) << json;
    // Encoding is deterministic, so encoding again gives the same text.
    ASSERT_EQ(encode_request(*back), json);
  }
  for (std::size_t n : per_type) {
    EXPECT_GT(n, 100U);
  }
}

TEST(RoundTrip, DecodedFramesReencodeToEquivalentFrames) {
  const std::string inputs[] = {
      R"({"type":"history","ref":"h","room":"general"})",
      R"({ "room":"general", "type":"send", "body":"\u00e9\u20ac", "client_msg_id":"m" })",
      R"({"type":"auth","token":"t","cursors":{"general":3}})",
  };
  for (const auto& in : inputs) {
    const Envelope env = decode_ok(in);
    EXPECT_EQ(decode_ok(encode_request(env)), env) << in;
  }
}

// ---- server frame encoders ----

TEST(Encode, JsonStringEscaping) {
  auto enc = [](std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  EXPECT_EQ(enc(""), R"("")");
  EXPECT_EQ(enc("plain"), R"("plain")");
  EXPECT_EQ(enc("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(enc("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(enc(std::string("\0\x01\x1F", 3)), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(enc("/\x7F"), "\"/\x7F\"");
  EXPECT_EQ(enc("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
            "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"");
  std::string appended = "x";
  append_json_string(appended, "y");
  EXPECT_EQ(appended, "x\"y\"");
}

// The escaper skips clean bytes eight at a time; a plain byte-by-byte escaper checks it with
// every special character at every position of strings around the word size.
std::string reference_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

TEST(Encode, EscapingAtEveryPosition) {
  const char specials[] = {'"',    '\\',   '\n',   '\x01', '\x1F', '\0', '\x20', '\x21', '\x7F',
                           '\x80', '\xA2', '\xDC', '\xFF', '!',    '#',  '[',    ']'};
  for (std::size_t len = 1; len <= 24; ++len) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (char sp : specials) {
        std::string s(len, 'a');
        s[pos] = sp;
        std::string out;
        append_json_string(out, s);
        ASSERT_EQ(out, reference_escape(s)) << "len " << len << " pos " << pos << " char "
                                            << static_cast<int>(static_cast<unsigned char>(sp));
      }
    }
  }
  std::mt19937 rng(99);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s(rng() % 40, '\0');
    for (auto& ch : s) {
      ch = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 26);
    }
    std::string out;
    append_json_string(out, s);
    ASSERT_EQ(out, reference_escape(s));
  }
}

TEST(Encode, EveryControlCharacterParsesBack) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) {
    all.push_back(static_cast<char>(c));
  }
  all += "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xE2\x80\xA8";
  std::string out = "{\"s\":";
  append_json_string(out, all);
  out += "}";
  auto d = parse(out);
  EXPECT_EQ(str(d["s"]), all);
}

TEST(Encode, MessageExact) {
  MessageView m{"general", 42, "alice", "hello", 1700000000123, "c-1"};
  EXPECT_EQ(
      encode_message(m),
      R"({"type":"message","room":"general","seq":42,"from":"alice","body":"hello","ts":1700000000123,"client_msg_id":"c-1"})");
}

TEST(Encode, MessageFieldsParseBack) {
  const std::string body =
      "quote \" backslash \\ newline \n nul " + std::string("\0", 1) + " é € 😀";
  MessageView m{"dm:alice:bob", 18446744073709551615ULL, "bob", body, -5, "id\"1"};
  auto d = parse(encode_message(m));
  EXPECT_EQ(str(d["type"]), "message");
  EXPECT_EQ(str(d["room"]), "dm:alice:bob");
  EXPECT_EQ(d["seq"].GetUint64(), 18446744073709551615ULL);
  EXPECT_EQ(str(d["from"]), "bob");
  EXPECT_EQ(str(d["body"]), body);
  EXPECT_EQ(d["ts"].GetInt64(), -5);
  EXPECT_EQ(str(d["client_msg_id"]), "id\"1");
  EXPECT_EQ(d.MemberCount(), 7U);
}

TEST(Encode, Ack) {
  EXPECT_EQ(encode_ack(std::nullopt, "general", "c1", 7, 1000),
            R"({"type":"ack","room":"general","client_msg_id":"c1","seq":7,"ts":1000})");
  EXPECT_EQ(
      encode_ack(std::string("r\"1"), "general", "c1", 7, 1000),
      R"({"type":"ack","ref":"r\"1","room":"general","client_msg_id":"c1","seq":7,"ts":1000})");
  auto d = parse(encode_ack(std::string("x"), "g", "id\n", 1, 2));
  EXPECT_EQ(str(d["client_msg_id"]), "id\n");
}

TEST(Encode, Error) {
  EXPECT_EQ(encode_error(std::nullopt, ErrorCode::bad_request, "missing field \"room\""),
            R"({"type":"error","code":"bad_request","message":"missing field \"room\""})");
  EXPECT_EQ(
      encode_error(std::string("r"), ErrorCode::rate_limited, "slow down", 250),
      R"({"type":"error","ref":"r","code":"rate_limited","message":"slow down","retry_after_ms":250})");
  auto d = parse(encode_error(std::string("ref"), ErrorCode::unavailable, "store down"));
  EXPECT_EQ(str(d["code"]), "unavailable");
  EXPECT_EQ(str(d["ref"]), "ref");
  EXPECT_FALSE(d.HasMember("retry_after_ms"));
}

TEST(Encode, ErrorCodeNames) {
  const std::pair<ErrorCode, std::string_view> names[] = {
      {ErrorCode::bad_request, "bad_request"},   {ErrorCode::unauthorized, "unauthorized"},
      {ErrorCode::forbidden, "forbidden"},       {ErrorCode::not_found, "not_found"},
      {ErrorCode::conflict, "conflict"},         {ErrorCode::too_large, "too_large"},
      {ErrorCode::rate_limited, "rate_limited"}, {ErrorCode::unavailable, "unavailable"},
      {ErrorCode::internal, "internal"},
  };
  for (const auto& [code, name] : names) {
    EXPECT_EQ(to_string(code), name);
  }
}

TEST(Encode, History) {
  std::vector<MessageView> msgs = {{"g", 1, "alice", "one", 10, "a"},
                                   {"g", 2, "bob", "tw\"o", 20, "b"}};
  const std::string json = encode_history(std::string("h1"), "g", msgs, true);
  EXPECT_EQ(
      json,
      R"({"type":"history","ref":"h1","room":"g","messages":[)"
      R"({"type":"message","room":"g","seq":1,"from":"alice","body":"one","ts":10,"client_msg_id":"a"},)"
      R"({"type":"message","room":"g","seq":2,"from":"bob","body":"tw\"o","ts":20,"client_msg_id":"b"}],)"
      R"("has_more":true})");
  auto d = parse(json);
  ASSERT_TRUE(d["messages"].IsArray());
  EXPECT_EQ(d["messages"].Size(), 2U);
  EXPECT_EQ(str(d["messages"][1]["body"]), "tw\"o");
  EXPECT_EQ(encode_history(std::nullopt, "g", {}, false),
            R"({"type":"history","room":"g","messages":[],"has_more":false})");
}

TEST(Encode, OtherFramesExact) {
  EXPECT_EQ(encode_welcome("alice", "node-1", 1700000000000),
            R"({"type":"welcome","user":"alice","node":"node-1","server_time":1700000000000})");
  EXPECT_EQ(encode_synced(), R"({"type":"synced"})");
  EXPECT_EQ(encode_joined(std::nullopt, "general", 0),
            R"({"type":"joined","room":"general","last_seq":0})");
  EXPECT_EQ(encode_joined(std::string("j"), "dm:a:b", 12),
            R"({"type":"joined","ref":"j","room":"dm:a:b","last_seq":12})");
  EXPECT_EQ(encode_left(std::nullopt, "general"), R"({"type":"left","room":"general"})");
  EXPECT_EQ(encode_left(std::string("l"), "general"),
            R"({"type":"left","ref":"l","room":"general"})");
  EXPECT_EQ(encode_invited(std::string("i"), "secret", "bob"),
            R"({"type":"invited","ref":"i","room":"secret","user":"bob"})");
  EXPECT_EQ(encode_invited(std::nullopt, "secret", "bob"),
            R"({"type":"invited","room":"secret","user":"bob"})");
  EXPECT_EQ(encode_invitation("secret", "alice"),
            R"({"type":"invitation","room":"secret","by":"alice"})");
  EXPECT_EQ(encode_typing("general", "alice"),
            R"({"type":"typing","room":"general","user":"alice"})");
  EXPECT_EQ(encode_read("general", 9), R"({"type":"read","room":"general","seq":9})");
  EXPECT_EQ(encode_presence("bob", true), R"({"type":"presence","user":"bob","status":"online"})");
  EXPECT_EQ(encode_presence("bob", false),
            R"({"type":"presence","user":"bob","status":"offline"})");
  EXPECT_EQ(encode_pong(std::nullopt), R"({"type":"pong"})");
  EXPECT_EQ(encode_pong(std::string("p")), R"({"type":"pong","ref":"p"})");
}

TEST(Encode, AllFramesAreValidJsonWithHostileStrings) {
  const std::string h = "\"\\\n\x01</script>\xE2\x80\xA8";
  const std::optional<std::string> ref = h;
  MessageView m{h, 1, h, h, 2, h};
  const std::string frames[] = {
      encode_welcome(h, h, 1),
      encode_message(m),
      encode_ack(ref, h, h, 1, 2),
      encode_joined(ref, h, 3),
      encode_left(ref, h),
      encode_invited(ref, h, h),
      encode_invitation(h, h),
      encode_history(ref, h, {m}, false),
      encode_typing(h, h),
      encode_read(h, 4),
      encode_presence(h, true),
      encode_pong(ref),
      encode_error(ref, ErrorCode::internal, h, 5),
  };
  for (const auto& f : frames) {
    auto d = parse(f);
    ASSERT_TRUE(d.HasMember("type")) << f;
    for (auto it = d.MemberBegin(); it != d.MemberEnd(); ++it) {
      if (it->value.IsString() && std::string_view(it->name.GetString()) != "type" &&
          std::string_view(it->name.GetString()) != "status" &&
          std::string_view(it->name.GetString()) != "code") {
        EXPECT_EQ(str(it->value), h) << f << " field " << it->name.GetString();
      }
    }
  }
}

}  // namespace
}  // namespace parley::protocol
