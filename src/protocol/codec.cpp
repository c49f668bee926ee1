#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "core/names.hpp"
#include "protocol/messages.hpp"
#include "protocol/ws_frame.hpp"

namespace parley::protocol {

namespace {

namespace rj = rapidjson;

// The DOM and the parser's stack both draw from pools that start in buffers on the caller's
// stack, so that decoding an ordinary request does not touch the heap for the JSON tree.
using Allocator = rj::MemoryPoolAllocator<rj::CrtAllocator>;
using Document = rj::GenericDocument<rj::UTF8<>, Allocator, Allocator>;
using Value = Document::ValueType;

// Iterative parsing keeps a deeply nested hostile frame from exhausting the thread's stack.
// In-situ parsing decodes strings in place in a scratch copy of the frame, so the DOM holds no
// string copies. RapidJSON's own encoding validation is left off: it is slow, and every string
// the decoder keeps is validated afterwards anyway (which also catches what RapidJSON lets
// through, a lone low surrogate escape); strings it does not keep cannot harm anyone.
constexpr unsigned parse_flags = rj::kParseIterativeFlag | rj::kParseInsituFlag;

// The in-situ parser's per-thread copy of the frame: reused, so that decoding does not allocate.
// A rare huge input (an HTTP body, say) does not pin its memory to the thread for good.
constexpr std::size_t max_kept_scratch = 256 * 1024;

std::string quoted(std::string_view field) {
  std::string s;
  s.reserve(field.size() + 2);
  s.push_back('"');
  s.append(field);
  s.push_back('"');
  return s;
}

// Reads the fields of one request object and remembers the first problem found. Each getter
// returns false once a problem is recorded, so that decoders read as a straight sequence of
// field reads.
class FieldReader {
 public:
  FieldReader(const Value& obj, const Limits& limits) : obj_(obj), limits_(limits) {}

  DecodeError take_error() { return std::move(error_); }
  const Limits& limits() const { return limits_; }

  bool fail(std::string message, ErrorCode code = ErrorCode::bad_request) {
    error_.code = code;
    error_.message = std::move(message);
    return false;
  }

  // The member named `name`, or nullptr when absent.
  const Value* find(const char* name) const {
    auto it = obj_.FindMember(name);
    return it == obj_.MemberEnd() ? nullptr : &it->value;
  }

  // A required string field holding valid UTF-8. RapidJSON turns a "\udc00" escape (a lone
  // low surrogate) into bytes that are not UTF-8, so the result is checked again here: such a
  // string would otherwise be relayed to other clients and make their WebSocket close 1007.
  bool string(const char* name, std::string_view& out) {
    const Value* v = find(name);
    if (v == nullptr) {
      return fail("missing field " + quoted(name));
    }
    return string_value(*v, name, out);
  }

  bool string_value(const Value& v, std::string_view name, std::string_view& out) {
    if (!raw_string_value(v, name, out)) {
      return false;
    }
    if (!ws::is_valid_utf8(out)) {
      return fail("field " + quoted(name) + " is not valid UTF-8");
    }
    return true;
  }

  // A required string field whose value is checked against a stricter, ASCII-only rule (a
  // name, a keyword) by the caller, which makes a UTF-8 check redundant.
  bool raw_string(const char* name, std::string_view& out) {
    const Value* v = find(name);
    if (v == nullptr) {
      return fail("missing field " + quoted(name));
    }
    return raw_string_value(*v, name, out);
  }

  bool raw_string_value(const Value& v, std::string_view name, std::string_view& out) {
    if (!v.IsString()) {
      return fail("field " + quoted(name) + " must be a string");
    }
    out = std::string_view(v.GetString(), v.GetStringLength());
    return true;
  }

  bool room_ref(const char* name, std::string& out) {
    std::string_view s;
    if (!raw_string(name, s)) {
      return false;
    }
    if (!core::valid_room_ref(s)) {
      return fail("field " + quoted(name) + " is not a valid room name");
    }
    out.assign(s);
    return true;
  }

  bool plain_room(const char* name, std::string& out) {
    std::string_view s;
    if (!raw_string(name, s)) {
      return false;
    }
    if (!core::valid_room_name(s)) {
      return fail("field " + quoted(name) + " must match ^[a-z0-9_-]{1,64}$");
    }
    out.assign(s);
    return true;
  }

  bool username(const char* name, std::string& out) {
    std::string_view s;
    if (!raw_string(name, s)) {
      return false;
    }
    if (!core::valid_username(s)) {
      return fail("field " + quoted(name) + " is not a valid user name");
    }
    out.assign(s);
    return true;
  }

  // Numbers must be JSON integers in 0..2^64-1: RapidJSON reports floats, negatives and larger
  // integers as other kinds, all of which are refused.
  bool uint64_value(const Value& v, std::string_view name, std::uint64_t& out) {
    if (!v.IsUint64()) {
      return fail("field " + quoted(name) + " must be a non-negative integer");
    }
    out = v.GetUint64();
    return true;
  }

  bool uint64(const char* name, std::uint64_t& out) {
    const Value* v = find(name);
    if (v == nullptr) {
      return fail("missing field " + quoted(name));
    }
    return uint64_value(*v, name, out);
  }

 private:
  const Value& obj_;
  const Limits& limits_;
  DecodeError error_;
};

bool decode_auth(FieldReader& r, AuthReq& req) {
  std::string_view token;
  if (!r.string("token", token)) {
    return false;
  }
  if (token.empty()) {
    return r.fail("field \"token\" is empty");
  }
  req.token.assign(token);
  const Value* cursors = r.find("cursors");
  if (cursors == nullptr) {
    return true;
  }
  if (!cursors->IsObject()) {
    return r.fail("field \"cursors\" must be an object of room name to seq");
  }
  if (cursors->MemberCount() > r.limits().max_cursors) {
    return r.fail("field \"cursors\" has more than " + std::to_string(r.limits().max_cursors) +
                  " rooms");
  }
  req.cursors.reserve(cursors->MemberCount());
  for (auto it = cursors->MemberBegin(); it != cursors->MemberEnd(); ++it) {
    std::string_view room(it->name.GetString(), it->name.GetStringLength());
    if (!core::valid_room_ref(room)) {
      return r.fail("field \"cursors\" names an invalid room");
    }
    std::uint64_t seq = 0;
    if (!r.uint64_value(it->value, "cursors." + std::string(room), seq)) {
      return false;
    }
    req.cursors.emplace_back(std::string(room), seq);
  }
  // A room named twice would be replayed twice; refuse it rather than guess which cursor counts.
  if (req.cursors.size() > 1) {
    std::vector<std::string_view> rooms;
    rooms.reserve(req.cursors.size());
    for (const auto& c : req.cursors) {
      rooms.emplace_back(c.first);
    }
    std::sort(rooms.begin(), rooms.end());
    if (std::adjacent_find(rooms.begin(), rooms.end()) != rooms.end()) {
      return r.fail("field \"cursors\" names a room twice");
    }
  }
  return true;
}

bool decode_create(FieldReader& r, CreateReq& req) {
  if (!r.plain_room("room", req.room)) {
    return false;
  }
  std::string_view visibility;
  if (!r.raw_string("visibility", visibility)) {
    return false;
  }
  if (visibility == "public") {
    req.is_private = false;
  } else if (visibility == "private") {
    req.is_private = true;
  } else {
    return r.fail("field \"visibility\" must be \"public\" or \"private\"");
  }
  return true;
}

bool decode_send(FieldReader& r, SendReq& req) {
  if (!r.room_ref("room", req.room)) {
    return false;
  }
  std::string_view id;
  if (!r.string("client_msg_id", id)) {
    return false;
  }
  const std::size_t id_len = core::utf8_code_points(id);
  if (id_len == 0 || id_len > r.limits().max_client_msg_id) {
    return r.fail("field \"client_msg_id\" must have 1 to " +
                  std::to_string(r.limits().max_client_msg_id) + " characters");
  }
  std::string_view body;
  if (!r.string("body", body)) {
    return false;
  }
  if (body.empty()) {
    return r.fail("field \"body\" is empty");
  }
  // Bytes bound code points from above, so short bodies skip the count.
  if (body.size() > r.limits().max_body_code_points &&
      core::utf8_code_points(body) > r.limits().max_body_code_points) {
    return r.fail(
        "field \"body\" is over " + std::to_string(r.limits().max_body_code_points) + " characters",
        ErrorCode::too_large);
  }
  req.client_msg_id.assign(id);
  req.body.assign(body);
  return true;
}

bool decode_history(FieldReader& r, HistoryReq& req) {
  if (!r.room_ref("room", req.room)) {
    return false;
  }
  if (const Value* before = r.find("before"); before != nullptr) {
    std::uint64_t b = 0;
    if (!r.uint64_value(*before, "before", b)) {
      return false;
    }
    req.before = b;
  }
  req.limit = r.limits().default_history_limit;
  if (const Value* limit = r.find("limit"); limit != nullptr) {
    std::uint64_t l = 0;
    if (!limit->IsUint64() || (l = limit->GetUint64()) < 1 || l > r.limits().max_history_limit) {
      return r.fail("field \"limit\" must be an integer from 1 to " +
                    std::to_string(r.limits().max_history_limit));
    }
    req.limit = static_cast<std::uint32_t>(l);
  }
  return true;
}

bool decode_watch(FieldReader& r, WatchReq& req) {
  const Value* users = r.find("users");
  if (users == nullptr) {
    return r.fail("missing field \"users\"");
  }
  if (!users->IsArray()) {
    return r.fail("field \"users\" must be an array of user names");
  }
  if (users->Size() > r.limits().max_watch_users) {
    return r.fail("field \"users\" has more than " + std::to_string(r.limits().max_watch_users) +
                  " names");
  }
  req.users.reserve(users->Size());
  for (const Value& u : users->GetArray()) {
    if (!u.IsString()) {
      return r.fail("field \"users\" must be an array of user names");
    }
    std::string_view name(u.GetString(), u.GetStringLength());
    if (!core::valid_username(name)) {
      return r.fail("field \"users\" holds an invalid user name");
    }
    req.users.emplace_back(name);
  }
  return true;
}

// Decodes the request whose type is `type` into `req`; false (with the reader's error set)
// when a field is missing or wrong, or the type is unknown.
bool decode_body(FieldReader& r, std::string_view type, Request& req) {
  // Ordered by how often each type arrives.
  if (type == "send") {
    return decode_send(r, req.emplace<SendReq>());
  }
  if (type == "typing") {
    return r.room_ref("room", req.emplace<TypingReq>().room);
  }
  if (type == "read") {
    auto& read = req.emplace<ReadReq>();
    return r.room_ref("room", read.room) && r.uint64("seq", read.seq);
  }
  if (type == "ping") {
    req.emplace<PingReq>();
    return true;
  }
  if (type == "history") {
    return decode_history(r, req.emplace<HistoryReq>());
  }
  if (type == "auth") {
    return decode_auth(r, req.emplace<AuthReq>());
  }
  if (type == "join") {
    return r.room_ref("room", req.emplace<JoinReq>().room);
  }
  if (type == "leave") {
    return r.room_ref("room", req.emplace<LeaveReq>().room);
  }
  if (type == "create") {
    return decode_create(r, req.emplace<CreateReq>());
  }
  if (type == "invite") {
    auto& invite = req.emplace<InviteReq>();
    return r.room_ref("room", invite.room) && r.username("user", invite.user);
  }
  if (type == "dm") {
    return r.username("user", req.emplace<DmReq>().user);
  }
  if (type == "watch") {
    return decode_watch(r, req.emplace<WatchReq>());
  }
  // Name the type back only when it is short and printable, so the error stays readable.
  const bool printable = type.size() <= 32 && std::all_of(type.begin(), type.end(), [](char c) {
                           return c >= 0x20 && c < 0x7F;
                         });
  return r.fail(printable ? "unknown type " + quoted(type) : std::string("unknown type"));
}

// Characters that need escaping in a JSON string: '"', '\\' and the C0 controls.
constexpr std::array<bool, 256> make_escape_table() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) {
    t[static_cast<std::size_t>(c)] = true;
  }
  t['"'] = true;
  t['\\'] = true;
  return t;
}
constexpr std::array<bool, 256> needs_escape = make_escape_table();

template <class Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(res.ptr - buf));
}

// Appends `,"key":` (the key is a literal that needs no escaping).
void append_key(std::string& out, std::string_view key) {
  out.append(",\"", 2);
  out.append(key);
  out.append("\":", 2);
}

void append_str_field(std::string& out, std::string_view key, std::string_view value) {
  append_key(out, key);
  append_json_string(out, value);
}

template <class Int>
void append_int_field(std::string& out, std::string_view key, Int value) {
  append_key(out, key);
  append_int(out, value);
}

// Starts an object with its "type" and, when given, the echoed "ref".
void begin(std::string& out, std::string_view type, const std::optional<std::string>& ref = {}) {
  out.append("{\"type\":\"", 9);
  out.append(type);
  out.push_back('"');
  if (ref) {
    append_str_field(out, "ref", *ref);
  }
}

std::size_t message_size_hint(const MessageView& m) {
  return 96 + m.room.size() + m.from.size() + m.body.size() + m.client_msg_id.size();
}

void append_message(std::string& out, const MessageView& m) {
  begin(out, "message");
  append_str_field(out, "room", m.room);
  append_int_field(out, "seq", m.seq);
  append_str_field(out, "from", m.from);
  append_str_field(out, "body", m.body);
  append_int_field(out, "ts", m.ts_ms);
  append_str_field(out, "client_msg_id", m.client_msg_id);
  out.push_back('}');
}

}  // namespace

std::string_view to_string(ErrorCode c) {
  switch (c) {
    case ErrorCode::bad_request:
      return "bad_request";
    case ErrorCode::unauthorized:
      return "unauthorized";
    case ErrorCode::forbidden:
      return "forbidden";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::conflict:
      return "conflict";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::rate_limited:
      return "rate_limited";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::internal:
      return "internal";
  }
  return "internal";
}

Result<Envelope, DecodeError> decode_request(std::string_view json, const Limits& limits) {
  alignas(16) char value_buffer[4096];
  alignas(16) char parse_buffer[1024];
  Allocator value_allocator(value_buffer, sizeof value_buffer);
  Allocator parse_allocator(parse_buffer, sizeof parse_buffer);
  Document doc(&value_allocator, sizeof parse_buffer, &parse_allocator);
  // The in-situ parser stops at a NUL byte, which would hide anything after it; a raw NUL is
  // never valid JSON text, so such input is refused here.
  if (std::memchr(json.data(), '\0', json.size()) != nullptr) {
    return unexpected(
        DecodeError{ErrorCode::bad_request, "not JSON: a raw NUL byte", std::nullopt});
  }
  thread_local std::string scratch;
  scratch.assign(json);
  struct ScratchRelease {
    ~ScratchRelease() {
      if (scratch.capacity() > max_kept_scratch) {
        scratch = std::string();
      }
    }
  } release;
  doc.ParseInsitu<parse_flags>(scratch.data());
  if (doc.HasParseError()) {
    return unexpected(DecodeError{ErrorCode::bad_request,
                                  std::string("not JSON: ") +
                                      rj::GetParseError_En(doc.GetParseError()) + " at offset " +
                                      std::to_string(doc.GetErrorOffset()),
                                  std::nullopt});
  }
  if (!doc.IsObject()) {
    return unexpected(
        DecodeError{ErrorCode::bad_request, "a frame must be a JSON object", std::nullopt});
  }

  FieldReader r(doc, limits);
  Envelope env;
  // The ref comes first: once it is known to be good, every later error can echo it.
  if (const Value* ref = r.find("ref"); ref != nullptr) {
    std::string_view s;
    if (!ref->IsString() ||
        !ws::is_valid_utf8(s = std::string_view(ref->GetString(), ref->GetStringLength())) ||
        core::utf8_code_points(s) > limits.max_ref) {
      return unexpected(DecodeError{ErrorCode::bad_request,
                                    "field \"ref\" must be a string of at most " +
                                        std::to_string(limits.max_ref) + " characters",
                                    std::nullopt});
    }
    env.ref.emplace(s);
  }

  std::string_view type;
  if (!r.raw_string("type", type) || !decode_body(r, type, env.request)) {
    DecodeError err = r.take_error();
    err.ref = std::move(env.ref);
    return unexpected(std::move(err));
  }
  return env;
}

// ---- encode_request: the inverse of decode_request. ----

namespace {

struct RequestEncoder {
  std::string& out;

  void operator()(const AuthReq& r) const {
    append_str_field(out, "token", r.token);
    if (!r.cursors.empty()) {
      append_key(out, "cursors");
      out.push_back('{');
      bool first = true;
      for (const auto& [room, seq] : r.cursors) {
        if (!first) {
          out.push_back(',');
        }
        first = false;
        append_json_string(out, room);
        out.push_back(':');
        append_int(out, seq);
      }
      out.push_back('}');
    }
  }
  void operator()(const CreateReq& r) const {
    append_str_field(out, "room", r.room);
    append_str_field(out, "visibility", r.is_private ? "private" : "public");
  }
  void operator()(const JoinReq& r) const { append_str_field(out, "room", r.room); }
  void operator()(const InviteReq& r) const {
    append_str_field(out, "room", r.room);
    append_str_field(out, "user", r.user);
  }
  void operator()(const LeaveReq& r) const { append_str_field(out, "room", r.room); }
  void operator()(const DmReq& r) const { append_str_field(out, "user", r.user); }
  void operator()(const SendReq& r) const {
    append_str_field(out, "room", r.room);
    append_str_field(out, "client_msg_id", r.client_msg_id);
    append_str_field(out, "body", r.body);
  }
  void operator()(const HistoryReq& r) const {
    append_str_field(out, "room", r.room);
    if (r.before) {
      append_int_field(out, "before", *r.before);
    }
    append_int_field(out, "limit", r.limit);
  }
  void operator()(const TypingReq& r) const { append_str_field(out, "room", r.room); }
  void operator()(const ReadReq& r) const {
    append_str_field(out, "room", r.room);
    append_int_field(out, "seq", r.seq);
  }
  void operator()(const WatchReq& r) const {
    append_key(out, "users");
    out.push_back('[');
    for (std::size_t i = 0; i < r.users.size(); ++i) {
      if (i != 0) {
        out.push_back(',');
      }
      append_json_string(out, r.users[i]);
    }
    out.push_back(']');
  }
  void operator()(const PingReq&) const {}
};

std::string_view request_type(const Request& req) {
  static constexpr std::string_view names[] = {"auth",   "create", "join",  "invite",
                                               "leave",  "dm",     "send",  "history",
                                               "typing", "read",   "watch", "ping"};
  static_assert(std::size(names) == std::variant_size_v<Request>);
  return names[req.index()];
}

}  // namespace

std::string encode_request(const Envelope& env) {
  std::string out;
  out.reserve(64);
  begin(out, request_type(env.request), env.ref);
  std::visit(RequestEncoder{out}, env.request);
  out.push_back('}');
  return out;
}

// ---- Server -> client frames. ----

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run_start = 0;
  std::size_t i = 0;
  for (;;) {
    // Most text needs no escaping: skip eight clean bytes at a time. A word is clean when no
    // byte is below 0x20 and none equals '"' or '\\' (the classic "has a byte less than n" and
    // "has a zero byte" bit tricks, exact as to whether any byte matches).
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof w);
      const std::uint64_t quote = w ^ (ones * '"');
      const std::uint64_t backslash = w ^ (ones * '\\');
      const std::uint64_t hit =
          ((w - ones * 0x20) | (quote - ones) | (backslash - ones)) & ~w & highs;
      if (hit != 0) {
        break;
      }
      i += 8;
    }
    if (i >= s.size()) {
      break;
    }
    const auto c = static_cast<unsigned char>(s[i++]);
    if (!needs_escape[c]) {
      continue;
    }
    // Copy the clean run before this character in one append; UTF-8 passes through unchanged.
    out.append(s.data() + run_start, i - 1 - run_start);
    run_start = i;
    switch (c) {
      case '"':
        out.append("\\\"", 2);
        break;
      case '\\':
        out.append("\\\\", 2);
        break;
      case '\n':
        out.append("\\n", 2);
        break;
      case '\r':
        out.append("\\r", 2);
        break;
      case '\t':
        out.append("\\t", 2);
        break;
      case '\b':
        out.append("\\b", 2);
        break;
      case '\f':
        out.append("\\f", 2);
        break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
        out.append(esc, sizeof esc);
        break;
      }
    }
  }
  out.append(s.data() + run_start, s.size() - run_start);
  out.push_back('"');
}

std::string encode_welcome(std::string_view user, std::string_view node,
                           std::int64_t server_time_ms) {
  std::string out;
  out.reserve(64 + user.size() + node.size());
  begin(out, "welcome");
  append_str_field(out, "user", user);
  append_str_field(out, "node", node);
  append_int_field(out, "server_time", server_time_ms);
  out.push_back('}');
  return out;
}

std::string encode_synced() {
  return "{\"type\":\"synced\"}";
}

std::string encode_message(const MessageView& m) {
  std::string out;
  out.reserve(message_size_hint(m));
  append_message(out, m);
  return out;
}

std::string encode_ack(const std::optional<std::string>& ref, std::string_view room,
                       std::string_view client_msg_id, std::uint64_t seq, std::int64_t ts_ms) {
  std::string out;
  out.reserve(96 + room.size() + client_msg_id.size() + (ref ? ref->size() : 0));
  begin(out, "ack", ref);
  append_str_field(out, "room", room);
  append_str_field(out, "client_msg_id", client_msg_id);
  append_int_field(out, "seq", seq);
  append_int_field(out, "ts", ts_ms);
  out.push_back('}');
  return out;
}

std::string encode_joined(const std::optional<std::string>& ref, std::string_view room,
                          std::uint64_t last_seq) {
  std::string out;
  out.reserve(64 + room.size() + (ref ? ref->size() : 0));
  begin(out, "joined", ref);
  append_str_field(out, "room", room);
  append_int_field(out, "last_seq", last_seq);
  out.push_back('}');
  return out;
}

std::string encode_left(const std::optional<std::string>& ref, std::string_view room) {
  std::string out;
  begin(out, "left", ref);
  append_str_field(out, "room", room);
  out.push_back('}');
  return out;
}

std::string encode_invited(const std::optional<std::string>& ref, std::string_view room,
                           std::string_view user) {
  std::string out;
  begin(out, "invited", ref);
  append_str_field(out, "room", room);
  append_str_field(out, "user", user);
  out.push_back('}');
  return out;
}

std::string encode_invitation(std::string_view room, std::string_view by) {
  std::string out;
  begin(out, "invitation");
  append_str_field(out, "room", room);
  append_str_field(out, "by", by);
  out.push_back('}');
  return out;
}

std::string encode_history(const std::optional<std::string>& ref, std::string_view room,
                           const std::vector<MessageView>& messages, bool has_more) {
  std::size_t hint = 64 + room.size() + (ref ? ref->size() : 0);
  for (const auto& m : messages) {
    hint += message_size_hint(m);
  }
  std::string out;
  out.reserve(hint);
  begin(out, "history", ref);
  append_str_field(out, "room", room);
  append_key(out, "messages");
  out.push_back('[');
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i != 0) {
      out.push_back(',');
    }
    append_message(out, messages[i]);
  }
  out.push_back(']');
  append_key(out, "has_more");
  out.append(has_more ? "true" : "false");
  out.push_back('}');
  return out;
}

std::string encode_typing(std::string_view room, std::string_view user) {
  std::string out;
  begin(out, "typing");
  append_str_field(out, "room", room);
  append_str_field(out, "user", user);
  out.push_back('}');
  return out;
}

std::string encode_read(std::string_view room, std::uint64_t seq) {
  std::string out;
  begin(out, "read");
  append_str_field(out, "room", room);
  append_int_field(out, "seq", seq);
  out.push_back('}');
  return out;
}

std::string encode_presence(std::string_view user, bool online) {
  std::string out;
  begin(out, "presence");
  append_str_field(out, "user", user);
  append_str_field(out, "status", online ? "online" : "offline");
  out.push_back('}');
  return out;
}

std::string encode_pong(const std::optional<std::string>& ref) {
  std::string out;
  begin(out, "pong", ref);
  out.push_back('}');
  return out;
}

std::string encode_error(const std::optional<std::string>& ref, ErrorCode code,
                         std::string_view message, std::optional<std::uint64_t> retry_after_ms) {
  std::string out;
  out.reserve(64 + message.size() + (ref ? ref->size() : 0));
  begin(out, "error", ref);
  append_str_field(out, "code", to_string(code));
  append_str_field(out, "message", message);
  if (retry_after_ms) {
    append_int_field(out, "retry_after_ms", *retry_after_ms);
  }
  out.push_back('}');
  return out;
}

}  // namespace parley::protocol
