#pragma once
// The Store port: everything Parley persists. Adapters: sqlite/ (single node) and postgres/.
//
// Thread-safety and ordering rules, which every adapter keeps:
//  * Every method may be called from any thread at any time and never blocks the caller: it
//    queues the operation and returns. The callback runs exactly once, on a thread owned by the
//    store, so callers must hop back to their own executor (the I/O threads post to their
//    io_context) and must not block inside it.
//  * Writes (everything that is not a read below) go through one writer that applies them in
//    the order they were submitted and commits them in batches (group commit). A write's
//    callback runs only after its batch has committed, so an acknowledgement built inside it
//    is durable.
//  * Reads see every write whose callback has already run.
//  * append() assigns each room's seq from a per-room counter inside the same transaction as
//    the insert: 1, 2, 3 ... with no gap and no reuse. A repeated (room, sender, client_msg_id)
//    creates nothing and returns the original seq and ts with duplicate = true.
//  * Errors are values: StoreErrc in a std::error_code. `unavailable` means the database could
//    not be reached and nothing was written: the caller may retry the same request.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "core/result.hpp"

namespace parley::store {

enum class StoreErrc {
  ok = 0,
  not_found = 1,    // no such user / room
  conflict = 2,     // the name is taken
  forbidden = 3,    // not a member, or private room without invitation
  unavailable = 4,  // the database is unreachable; nothing was written
  internal = 5,     // anything else (corruption, a bug)
};
const std::error_category& store_category();
std::error_code make_error_code(StoreErrc e);

enum class RoomKind { public_room, private_room, dm };
const char* to_string(RoomKind k);  // "public", "private", "dm"

struct StoredMessage {
  std::string room;
  std::uint64_t seq = 0;
  std::string from;
  std::string body;
  std::int64_t ts_ms = 0;  // unix ms, set by the store when committed
  std::string client_msg_id;
};

struct AppendRequest {
  std::string room;
  std::string from;
  std::string client_msg_id;
  std::string body;
};
struct AppendResult {
  StoredMessage message;   // as committed (the original one when duplicate)
  bool duplicate = false;  // the (room, from, client_msg_id) existed already
};

struct UserAuth {
  std::string user;
  std::string password_hash;  // libsodium crypto_pwhash_str format
};

struct TokenInfo {
  std::string user;
  std::int64_t expires_at = 0;  // unix seconds
  bool is_admin = false;        // the user's admin flag (set by `parleyd admin grant`)
};

struct RoomSummary {
  std::string room;
  RoomKind kind = RoomKind::public_room;
  std::uint64_t last_seq = 0;
  std::uint64_t read_seq = 0;
};

struct HistoryPage {
  std::vector<StoredMessage> messages;  // ascending seq
  bool has_more = false;                // older messages exist before messages.front()
};

struct JoinResult {
  std::uint64_t last_seq = 0;
  RoomKind kind = RoomKind::public_room;
  bool newly_joined = true;  // false when the user was a member already
};

template <class T>
using Callback = std::function<void(Result<T>)>;

class Store {
 public:
  virtual ~Store() = default;

  // Users and tokens. Tokens are stored only as a hash; the caller hashes.
  virtual void create_user(std::string user, std::string password_hash, Callback<Ok> cb) = 0;
  virtual void get_user(std::string user, Callback<UserAuth> cb) = 0;  // read
  virtual void create_token(std::string token_hash, std::string user, std::int64_t expires_at,
                            Callback<Ok> cb) = 0;
  virtual void lookup_token(std::string token_hash, Callback<TokenInfo> cb) = 0;  // read
  virtual void delete_token(std::string token_hash,
                            Callback<TokenInfo> cb) = 0;  // not_found if absent
  // set_admin: sets or clears the user's admin flag (a write); not_found for an unknown user.
  virtual void set_admin(std::string user, bool admin, Callback<Ok> cb) = 0;
  // delete_user (a write): in one transaction deletes every token, membership and invitation of
  // the user and marks the user deleted. A deleted user cannot log in (get_user: not_found), has
  // no valid token (lookup_token: not_found), cannot be invited, joined, dm'd, made admin or
  // given a token (not_found), and keeps the name: create_user of it is a conflict, so old
  // messages are never attributed to a newcomer. Messages stay in their rooms. not_found if the
  // user does not exist or is deleted already.
  virtual void delete_user(std::string user, Callback<Ok> cb) = 0;

  // Rooms and membership.
  // create_room: conflict if it exists; the creator becomes a member.
  virtual void create_room(std::string room, RoomKind kind, std::string creator,
                           Callback<Ok> cb) = 0;
  // join_room: not_found, or forbidden for a private room without an invitation. Idempotent.
  virtual void join_room(std::string room, std::string user, Callback<JoinResult> cb) = 0;
  // leave_room: not_found if the room does not exist; leaving a room one is not in succeeds.
  virtual void leave_room(std::string room, std::string user, Callback<Ok> cb) = 0;
  // invite: not_found (room or user), forbidden (inviter not a member). Idempotent.
  virtual void invite(std::string room, std::string inviter, std::string user, Callback<Ok> cb) = 0;
  // open_dm: creates room `dm_room` of kind dm with both users as members if absent.
  // not_found if `other` does not exist. Returns the room's last_seq.
  virtual void open_dm(std::string dm_room, std::string user, std::string other,
                       Callback<JoinResult> cb) = 0;
  // is_member: false (not an error) when the room does not exist.
  virtual void is_member(std::string room, std::string user, Callback<bool> cb) = 0;  // read
  // The rooms the user is a member of, with last_seq and the user's read marker.
  virtual void list_rooms(std::string user, Callback<std::vector<RoomSummary>> cb) = 0;  // read
  // Room kind and last_seq; not_found if it does not exist.
  virtual void room_info(std::string room, Callback<RoomSummary> cb) = 0;  // read

  // Messages.
  // append: forbidden if the sender is not a member (checked in the same transaction),
  // not_found if the room does not exist. A duplicate is recognised before membership is checked,
  // so a sender who has left since still gets the original ack for a retry.
  virtual void append(AppendRequest req, Callback<AppendResult> cb) = 0;
  // Messages with seq in (after, up_to], ascending, at most limit; not_found if the room does
  // not exist. UINT64_MAX as up_to means "no upper bound".
  virtual void read_range(std::string room, std::uint64_t after, std::uint64_t up_to,
                          std::uint32_t limit, Callback<std::vector<StoredMessage>> cb) = 0;
  // The last `limit` messages with seq < before, ascending; not_found if the room does not
  // exist. UINT64_MAX (or last_seq + 1) as before means "the newest".
  virtual void history(std::string room, std::uint64_t before, std::uint32_t limit,
                       Callback<HistoryPage> cb) = 0;  // read
  // set_read: moves the user's read marker forward (never back) to min(seq, last_seq).
  virtual void set_read(std::string room, std::string user, std::uint64_t seq,
                        Callback<std::uint64_t> cb) = 0;

  // True while the database answers; feeds /readyz.
  virtual bool ready() const = 0;
};

}  // namespace parley::store

namespace std {
template <>
struct is_error_code_enum<parley::store::StoreErrc> : true_type {};
}  // namespace std
