#pragma once
// Typed client requests and the pure functions that decode them from, and encode server frames
// to, the JSON text of PROTOCOL.md. Nothing here does I/O or throws across its API: bad input
// comes back as a DecodeError value.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/result.hpp"

namespace parley::protocol {

enum class ErrorCode {
  bad_request,
  unauthorized,
  forbidden,
  not_found,
  conflict,
  too_large,
  rate_limited,
  unavailable,
  internal,
};
std::string_view to_string(ErrorCode c);

// Limits the decoder enforces; the defaults are PROTOCOL.md's and each is a setting.
struct Limits {
  std::size_t max_body_code_points = 4000;
  std::size_t max_client_msg_id = 64;
  std::size_t max_ref = 64;
  std::uint32_t max_history_limit = 200;
  std::uint32_t default_history_limit = 50;
  std::size_t max_watch_users = 1000;
  std::size_t max_cursors = 10000;
};

struct AuthReq {
  std::string token;
  std::vector<std::pair<std::string, std::uint64_t>> cursors;  // room -> last seq seen
  bool operator==(const AuthReq&) const = default;
};
struct CreateReq {
  std::string room;
  bool is_private = false;
  bool operator==(const CreateReq&) const = default;
};
struct JoinReq {
  std::string room;
  bool operator==(const JoinReq&) const = default;
};
struct InviteReq {
  std::string room;
  std::string user;
  bool operator==(const InviteReq&) const = default;
};
struct LeaveReq {
  std::string room;
  bool operator==(const LeaveReq&) const = default;
};
struct DmReq {
  std::string user;
  bool operator==(const DmReq&) const = default;
};
struct SendReq {
  std::string room;
  std::string client_msg_id;
  std::string body;
  bool operator==(const SendReq&) const = default;
};
struct HistoryReq {
  std::string room;
  std::optional<std::uint64_t> before;  // absent: the newest messages
  std::uint32_t limit = 50;
  bool operator==(const HistoryReq&) const = default;
};
struct TypingReq {
  std::string room;
  bool operator==(const TypingReq&) const = default;
};
struct ReadReq {
  std::string room;
  std::uint64_t seq = 0;
  bool operator==(const ReadReq&) const = default;
};
struct WatchReq {
  std::vector<std::string> users;
  bool operator==(const WatchReq&) const = default;
};
struct PingReq {
  bool operator==(const PingReq&) const = default;
};

using Request = std::variant<AuthReq, CreateReq, JoinReq, InviteReq, LeaveReq, DmReq, SendReq,
                             HistoryReq, TypingReq, ReadReq, WatchReq, PingReq>;

struct Envelope {
  std::optional<std::string> ref;
  Request request;
  bool operator==(const Envelope&) const = default;
};

struct DecodeError {
  ErrorCode code = ErrorCode::bad_request;
  std::string message;             // human-readable, names the offending field
  std::optional<std::string> ref;  // echoed when the frame carried a valid ref
};

// Decodes one client text frame. Validates types, required fields, names (rooms, users) and
// limits: a body over the limit is too_large, everything else malformed is bad_request.
Result<Envelope, DecodeError> decode_request(std::string_view json, const Limits& limits = {});

// Encodes a request back to JSON (used by clients, tools and the round-trip fuzz property).
std::string encode_request(const Envelope& env);

// ---- Server -> client frames. Each returns one JSON object as text. ----
struct MessageView {
  std::string_view room;
  std::uint64_t seq = 0;
  std::string_view from;
  std::string_view body;
  std::int64_t ts_ms = 0;
  std::string_view client_msg_id;
};

std::string encode_welcome(std::string_view user, std::string_view node,
                           std::int64_t server_time_ms);
std::string encode_synced();
std::string encode_message(const MessageView& m);
std::string encode_ack(const std::optional<std::string>& ref, std::string_view room,
                       std::string_view client_msg_id, std::uint64_t seq, std::int64_t ts_ms);
std::string encode_joined(const std::optional<std::string>& ref, std::string_view room,
                          std::uint64_t last_seq);
std::string encode_left(const std::optional<std::string>& ref, std::string_view room);
std::string encode_invited(const std::optional<std::string>& ref, std::string_view room,
                           std::string_view user);
// Sent to the invitee's own sessions so that their client can offer to join.
std::string encode_invitation(std::string_view room, std::string_view by);
std::string encode_history(const std::optional<std::string>& ref, std::string_view room,
                           const std::vector<MessageView>& messages, bool has_more);
std::string encode_typing(std::string_view room, std::string_view user);
std::string encode_read(std::string_view room, std::uint64_t seq);
std::string encode_presence(std::string_view user, bool online);
std::string encode_pong(const std::optional<std::string>& ref);
std::string encode_error(const std::optional<std::string>& ref, ErrorCode code,
                         std::string_view message,
                         std::optional<std::uint64_t> retry_after_ms = std::nullopt);

// Appends s to out as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace parley::protocol
