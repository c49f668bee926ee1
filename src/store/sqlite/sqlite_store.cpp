#include "store/sqlite/sqlite_store.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/migrations.hpp"
#include "store/store_metrics.hpp"

namespace parley::store {

namespace {

using Clock = std::chrono::steady_clock;

using Op = StoreOp;
constexpr std::size_t kOpCount = kStoreOpCount;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::error_code err(StoreErrc e) {
  return make_error_code(e);
}

// SQLite stores signed 64-bit integers. Seqs are unsigned in the port, and callers use
// UINT64_MAX to mean "no bound", so larger values are clamped rather than wrapped to -1.
std::int64_t to_db(std::uint64_t v) {
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(v, max));
}

// Errors that say the database could not be used right now (locked by another process, disk
// full, I/O failure, out of memory) become `unavailable`: the transaction did not commit and the
// caller may retry. Everything else (corruption, misuse, an unexpected constraint) is a bug or
// worse, and becomes `internal`.
std::error_code sqlite_error(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_INTERRUPT:
      return err(StoreErrc::unavailable);
    default:
      return err(StoreErrc::internal);
  }
}

std::optional<RoomKind> kind_from_string(std::string_view s) {
  if (s == "public") return RoomKind::public_room;
  if (s == "private") return RoomKind::private_room;
  if (s == "dm") return RoomKind::dm;
  return std::nullopt;
}

const char* sync_pragma(SqliteSync s) {
  switch (s) {
    case SqliteSync::normal:
      return "PRAGMA synchronous = NORMAL";
    case SqliteSync::full:
      return "PRAGMA synchronous = FULL";
    case SqliteSync::extra:
      return "PRAGMA synchronous = EXTRA";
  }
  return "PRAGMA synchronous = FULL";
}

// One SQLite connection and its prepared statements. A connection is used by one thread at a
// time (the writer, or one reader), so it is opened without SQLite's own mutex.
class Connection {
 public:
  // Opening happens at start-up only, so failures throw with the reason; `what` is the error
  // message without the "cannot open SQLite database at X:" prefix, which the caller adds.
  Connection(const std::string& path, bool read_only, int busy_timeout_ms) {
    const int flags =
        (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
        SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string reason = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw std::runtime_error(reason);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
  }

  ~Connection() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  // Runs one or more statements that return nothing of interest. Used at start-up (pragmas,
  // migrations), where a failure throws.
  void exec_or_throw(const char* sql) {
    char* msg = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string reason = msg != nullptr ? msg : sqlite3_errstr(rc);
      sqlite3_free(msg);
      throw std::runtime_error(reason);
    }
  }

  // Returns the first column of the first row of `sql`, as text. Start-up only.
  std::string query_text_or_throw(const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
    std::string out;
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW) {
        const auto* text = sqlite3_column_text(stmt, 0);
        if (text != nullptr) out = reinterpret_cast<const char*>(text);
        rc = SQLITE_OK;
      } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
      }
    }
    std::string reason = rc != SQLITE_OK ? sqlite3_errmsg(db_) : "";
    sqlite3_finalize(stmt);
    if (rc != SQLITE_OK) throw std::runtime_error(reason);
    return out;
  }

  // The prepared statement for `sql`, prepared on first use and kept for the connection's life.
  // On failure returns nullptr and sets *rc.
  sqlite3_stmt* statement(std::string_view sql, int* rc) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    *rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                             SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (*rc != SQLITE_OK) {
      spdlog::error("sqlite: cannot prepare \"{}\": {}", sql, sqlite3_errmsg(db_));
      sqlite3_finalize(stmt);
      return nullptr;
    }
    statements_.emplace(std::string(sql), stmt);
    return stmt;
  }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> statements_;
};

// One use of a cached statement: binds, steps, reads columns, and resets the statement when it
// goes out of scope, which also ends its implicit read transaction on a reader connection.
// Text is bound without copying, so every string bound must outlive the Query; the operations
// bind only strings they own for their whole run.
class Query {
 public:
  Query(Connection& conn, std::string_view sql) : conn_(conn), stmt_(conn.statement(sql, &rc_)) {}
  ~Query() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  template <class... Args>
  Query& bind(Args&&... args) {
    static_assert(((!std::is_same_v<std::remove_cvref_t<Args>, std::string> ||
                    std::is_lvalue_reference_v<Args>)&&...),
                  "a bound std::string must outlive the query: bind an lvalue");
    int index = 1;
    (bind_one(index++, args), ...);
    return *this;
  }

  // Steps once: true on a row; false when done or on an error (see error()).
  bool next() {
    if (rc_ != SQLITE_OK || done_) return false;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    done_ = true;
    if (rc != SQLITE_DONE) {
      rc_ = rc;
      spdlog::warn("sqlite: {} (in \"{}\")", sqlite3_errmsg(conn_.db()), sqlite3_sql(stmt_));
    }
    return false;
  }

  // Runs the statement to completion and returns its error, if any.
  std::error_code run() {
    while (next()) {
    }
    return error();
  }

  std::error_code error() const { return rc_ == SQLITE_OK ? std::error_code{} : sqlite_error(rc_); }
  int changes() const { return sqlite3_changes(conn_.db()); }

  std::int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::uint64_t u64(int col) const {
    const auto v = sqlite3_column_int64(stmt_, col);
    return v < 0 ? 0 : static_cast<std::uint64_t>(v);
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  template <class T>
  void bind_one(int index, const T& v) {
    if (rc_ != SQLITE_OK) return;
    using U = std::remove_cvref_t<T>;
    int rc = SQLITE_OK;
    if constexpr (std::is_same_v<U, bool>) {
      rc = sqlite3_bind_int(stmt_, index, v ? 1 : 0);
    } else if constexpr (std::is_integral_v<U> && std::is_unsigned_v<U>) {
      rc = sqlite3_bind_int64(stmt_, index, to_db(v));
    } else if constexpr (std::is_integral_v<U>) {
      rc = sqlite3_bind_int64(stmt_, index, static_cast<sqlite3_int64>(v));
    } else {
      const std::string_view s(v);
      rc = sqlite3_bind_text(stmt_, index, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) {
      rc_ = rc;
      spdlog::warn("sqlite: cannot bind parameter {}: {}", index, sqlite3_errmsg(conn_.db()));
    }
  }

  Connection& conn_;
  int rc_ = SQLITE_OK;
  sqlite3_stmt* stmt_;
  bool done_ = false;
};

// ---------------------------------------------------------------------------------------------
// The operations. Each runs on one connection: writes inside the writer's batch transaction (and
// their own savepoint), reads in an implicit read transaction per statement. They return errors
// as values; a SQLite failure comes back as `unavailable` or `internal`.

struct RoomRow {
  RoomKind kind = RoomKind::public_room;
  std::uint64_t last_seq = 0;
  bool member = false;  // whether the user asked about is a member
};

// The room, and whether `user` is a member of it; nullopt if the room does not exist.
Result<std::optional<RoomRow>> find_room(Connection& c, const std::string& room,
                                         const std::string& user) {
  Query q(c,
          "SELECT kind, last_seq, EXISTS(SELECT 1 FROM members WHERE room = ?1 AND user = ?2) "
          "FROM rooms WHERE name = ?1");
  q.bind(room, user);
  if (!q.next()) {
    if (q.error()) return unexpected(q.error());
    return std::optional<RoomRow>();
  }
  auto kind = kind_from_string(q.text(0));
  if (!kind) {
    spdlog::error("sqlite: room {} has an unknown kind", room);
    return unexpected(err(StoreErrc::internal));
  }
  return std::optional<RoomRow>(RoomRow{*kind, q.u64(1), q.i64(2) != 0});
}

// Whether `user` exists and is not deleted: a deleted user is unknown to every operation but
// create_user, which still finds the name taken.
Result<bool> user_exists(Connection& c, const std::string& user) {
  Query q(c, "SELECT 1 FROM users WHERE name = ?1 AND deleted_at IS NULL");
  q.bind(user);
  const bool found = q.next();
  if (q.error()) return unexpected(q.error());
  return found;
}

// Adds `user` to `room` unless already a member. A new membership's read marker starts at the
// room's current last_seq: what was said before one joined is not "unread".
Result<bool> add_member(Connection& c, const std::string& room, const std::string& user,
                        std::uint64_t last_seq, std::int64_t now_ms) {
  Query q(c,
          "INSERT INTO members (room, user, read_seq, joined_at) VALUES (?1, ?2, ?3, ?4) "
          "ON CONFLICT (room, user) DO NOTHING");
  q.bind(room, user, last_seq, now_ms);
  if (auto e = q.run()) return unexpected(e);
  return q.changes() > 0;
}

Result<Ok> op_create_user(Connection& c, const std::string& user, const std::string& hash,
                          std::int64_t now_ms) {
  Query q(c,
          "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3) "
          "ON CONFLICT (name) DO NOTHING");
  q.bind(user, hash, now_ms);
  if (auto e = q.run()) return unexpected(e);
  if (q.changes() == 0) return unexpected(err(StoreErrc::conflict));
  return Ok{};
}

Result<UserAuth> op_get_user(Connection& c, const std::string& user) {
  Query q(c, "SELECT password_hash FROM users WHERE name = ?1 AND deleted_at IS NULL");
  q.bind(user);
  if (!q.next()) return unexpected(q.error() ? q.error() : err(StoreErrc::not_found));
  return UserAuth{user, q.text(0)};
}

Result<Ok> op_create_token(Connection& c, const std::string& hash, const std::string& user,
                           std::int64_t expires_at) {
  auto exists = user_exists(c, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  Query q(c,
          "INSERT INTO tokens (hash, user, expires_at) VALUES (?1, ?2, ?3) "
          "ON CONFLICT (hash) DO NOTHING");
  q.bind(hash, user, expires_at);
  if (auto e = q.run()) return unexpected(e);
  if (q.changes() == 0) return unexpected(err(StoreErrc::conflict));
  return Ok{};
}

Result<TokenInfo> op_lookup_token(Connection& c, const std::string& hash) {
  Query q(c,
          "SELECT t.user, t.expires_at, COALESCE(u.is_admin, 0) FROM tokens t "
          "LEFT JOIN users u ON u.name = t.user WHERE t.hash = ?1");
  q.bind(hash);
  if (!q.next()) return unexpected(q.error() ? q.error() : err(StoreErrc::not_found));
  return TokenInfo{q.text(0), q.i64(1), q.i64(2) != 0};
}

Result<Ok> op_set_admin(Connection& c, const std::string& user, bool admin) {
  Query q(c, "UPDATE users SET is_admin = ?2 WHERE name = ?1 AND deleted_at IS NULL");
  q.bind(user, static_cast<std::int64_t>(admin ? 1 : 0));
  if (auto e = q.run()) return unexpected(e);
  if (q.changes() == 0) return unexpected(err(StoreErrc::not_found));
  return Ok{};
}

// Marks the user deleted and removes everything that lets it act: tokens, memberships and
// invitations. The row stays as a tombstone so that create_user still finds the name taken, and
// the messages stay. The statements share the operation's savepoint, so they apply together or
// not at all.
Result<Ok> op_delete_user(Connection& c, const std::string& user, std::int64_t now_ms) {
  {
    Query q(c, "UPDATE users SET deleted_at = ?2 WHERE name = ?1 AND deleted_at IS NULL");
    q.bind(user, now_ms);
    if (auto e = q.run()) return unexpected(e);
    if (q.changes() == 0) return unexpected(err(StoreErrc::not_found));
  }
  for (const char* sql :
       {"DELETE FROM tokens WHERE user = ?1", "DELETE FROM members WHERE user = ?1",
        "DELETE FROM invites WHERE user = ?1"}) {
    Query q(c, sql);
    q.bind(user);
    if (auto e = q.run()) return unexpected(e);
  }
  return Ok{};
}

Result<TokenInfo> op_delete_token(Connection& c, const std::string& hash) {
  Query q(c, "DELETE FROM tokens WHERE hash = ?1 RETURNING user, expires_at");
  q.bind(hash);
  if (!q.next()) return unexpected(q.error() ? q.error() : err(StoreErrc::not_found));
  TokenInfo info{q.text(0), q.i64(1)};
  // Stepping to the end finishes the statement cleanly before the savepoint is released.
  if (auto e = q.run()) return unexpected(e);
  return info;
}

Result<Ok> op_create_room(Connection& c, const std::string& room, RoomKind kind,
                          const std::string& creator, std::int64_t now_ms) {
  auto exists = user_exists(c, creator);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  {
    Query q(c,
            "INSERT INTO rooms (name, kind, last_seq, created_by, created_at) "
            "VALUES (?1, ?2, 0, ?3, ?4) ON CONFLICT (name) DO NOTHING");
    q.bind(room, to_string(kind), creator, now_ms);
    if (auto e = q.run()) return unexpected(e);
    if (q.changes() == 0) return unexpected(err(StoreErrc::conflict));
  }
  auto added = add_member(c, room, creator, 0, now_ms);
  if (!added) return unexpected(added.error());
  return Ok{};
}

Result<JoinResult> op_join_room(Connection& c, const std::string& room, const std::string& user,
                                std::int64_t now_ms) {
  auto found = find_room(c, room, user);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  const RoomRow r = **found;
  if (r.member) return JoinResult{r.last_seq, r.kind, false};
  auto exists = user_exists(c, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  // A dm room has exactly its two users; nobody else gets in, invited or not.
  if (r.kind == RoomKind::dm) return unexpected(err(StoreErrc::forbidden));
  {
    // Joining consumes any invitation, so leaving a private room needs a new one to come back.
    Query q(c, "DELETE FROM invites WHERE room = ?1 AND user = ?2");
    q.bind(room, user);
    if (auto e = q.run()) return unexpected(e);
    if (r.kind == RoomKind::private_room && q.changes() == 0) {
      return unexpected(err(StoreErrc::forbidden));
    }
  }
  auto added = add_member(c, room, user, r.last_seq, now_ms);
  if (!added) return unexpected(added.error());
  return JoinResult{r.last_seq, r.kind, true};
}

Result<Ok> op_leave_room(Connection& c, const std::string& room, const std::string& user) {
  auto found = find_room(c, room, user);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  if (!(*found)->member) return Ok{};
  Query q(c, "DELETE FROM members WHERE room = ?1 AND user = ?2");
  q.bind(room, user);
  if (auto e = q.run()) return unexpected(e);
  return Ok{};
}

Result<Ok> op_invite(Connection& c, const std::string& room, const std::string& inviter,
                     const std::string& user, std::int64_t now_ms) {
  auto found = find_room(c, room, inviter);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  auto exists = user_exists(c, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  const RoomRow r = **found;
  if (!r.member || r.kind == RoomKind::dm) return unexpected(err(StoreErrc::forbidden));
  {
    Query q(c, "SELECT 1 FROM members WHERE room = ?1 AND user = ?2");
    q.bind(room, user);
    const bool already_member = q.next();
    if (q.error()) return unexpected(q.error());
    if (already_member) return Ok{};
  }
  Query q(c,
          "INSERT INTO invites (room, user, invited_by, created_at) VALUES (?1, ?2, ?3, ?4) "
          "ON CONFLICT (room, user) DO NOTHING");
  q.bind(room, user, inviter, now_ms);
  if (auto e = q.run()) return unexpected(e);
  return Ok{};
}

Result<JoinResult> op_open_dm(Connection& c, const std::string& room, const std::string& user,
                              const std::string& other, std::int64_t now_ms) {
  for (const std::string* u : {&user, &other}) {
    auto exists = user_exists(c, *u);
    if (!exists) return unexpected(exists.error());
    if (!*exists) return unexpected(err(StoreErrc::not_found));
  }
  auto found = find_room(c, room, user);
  if (!found) return unexpected(found.error());
  std::uint64_t last_seq = 0;
  if (*found) {
    // The name is the caller's dm name; a room of another kind under it is a naming bug.
    if ((*found)->kind != RoomKind::dm) return unexpected(err(StoreErrc::conflict));
    last_seq = (*found)->last_seq;
  } else {
    Query q(c,
            "INSERT INTO rooms (name, kind, last_seq, created_by, created_at) "
            "VALUES (?1, 'dm', 0, ?2, ?3)");
    q.bind(room, user, now_ms);
    if (auto e = q.run()) return unexpected(e);
  }
  // A dm always has both of its users: opening it again brings back one who had left.
  auto added = add_member(c, room, user, last_seq, now_ms);
  if (!added) return unexpected(added.error());
  auto other_added = add_member(c, room, other, last_seq, now_ms);
  if (!other_added) return unexpected(other_added.error());
  return JoinResult{last_seq, RoomKind::dm, *added};
}

Result<bool> op_is_member(Connection& c, const std::string& room, const std::string& user) {
  Query q(c, "SELECT 1 FROM members WHERE room = ?1 AND user = ?2");
  q.bind(room, user);
  const bool found = q.next();
  if (q.error()) return unexpected(q.error());
  return found;
}

Result<std::vector<RoomSummary>> op_list_rooms(Connection& c, const std::string& user) {
  Query q(c,
          "SELECT r.name, r.kind, r.last_seq, m.read_seq FROM members m "
          "JOIN rooms r ON r.name = m.room WHERE m.user = ?1 ORDER BY r.name");
  q.bind(user);
  std::vector<RoomSummary> rooms;
  while (q.next()) {
    auto kind = kind_from_string(q.text(1));
    if (!kind) return unexpected(err(StoreErrc::internal));
    rooms.push_back(RoomSummary{q.text(0), *kind, q.u64(2), q.u64(3)});
  }
  if (q.error()) return unexpected(q.error());
  return rooms;
}

Result<RoomSummary> op_room_info(Connection& c, const std::string& room) {
  Query q(c, "SELECT kind, last_seq FROM rooms WHERE name = ?1");
  q.bind(room);
  if (!q.next()) return unexpected(q.error() ? q.error() : err(StoreErrc::not_found));
  auto kind = kind_from_string(q.text(0));
  if (!kind) return unexpected(err(StoreErrc::internal));
  return RoomSummary{room, *kind, q.u64(1), 0};
}

Result<AppendResult> op_append(Connection& c, const AppendRequest& req, std::int64_t now_ms) {
  {
    // A retried send finds its original row through the unique key and gets it back unchanged.
    Query q(c,
            "SELECT seq, body, ts_ms FROM messages "
            "WHERE room = ?1 AND sender = ?2 AND client_msg_id = ?3");
    q.bind(req.room, req.from, req.client_msg_id);
    if (q.next()) {
      return AppendResult{
          StoredMessage{req.room, q.u64(0), req.from, q.text(1), q.i64(2), req.client_msg_id},
          true};
    }
    if (q.error()) return unexpected(q.error());
  }
  auto found = find_room(c, req.room, req.from);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  if (!(*found)->member) return unexpected(err(StoreErrc::forbidden));
  // The counter and the insert share this transaction: if either fails both roll back, so a seq
  // is never skipped or handed out twice.
  const std::uint64_t seq = (*found)->last_seq + 1;
  {
    Query q(c, "UPDATE rooms SET last_seq = ?2 WHERE name = ?1");
    q.bind(req.room, seq);
    if (auto e = q.run()) return unexpected(e);
  }
  {
    Query q(c,
            "INSERT INTO messages (room, seq, sender, client_msg_id, body, ts_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    q.bind(req.room, seq, req.from, req.client_msg_id, req.body, now_ms);
    if (auto e = q.run()) return unexpected(e);
  }
  return AppendResult{StoredMessage{req.room, seq, req.from, req.body, now_ms, req.client_msg_id},
                      false};
}

// Reads the message columns (seq, sender, body, ts_ms, client_msg_id) of the current row.
StoredMessage message_row(const Query& q, const std::string& room) {
  return StoredMessage{room, q.u64(0), q.text(1), q.text(2), q.i64(3), q.text(4)};
}

// Whether the room exists; asked only when a message read came back empty, so that the hot
// path costs one query.
Result<Ok> require_room(Connection& c, const std::string& room) {
  Query q(c, "SELECT 1 FROM rooms WHERE name = ?1");
  q.bind(room);
  if (q.next()) return Ok{};
  return unexpected(q.error() ? q.error() : err(StoreErrc::not_found));
}

Result<std::vector<StoredMessage>> op_read_range(Connection& c, const std::string& room,
                                                 std::uint64_t after, std::uint64_t up_to,
                                                 std::uint32_t limit) {
  std::vector<StoredMessage> messages;
  {
    Query q(c,
            "SELECT seq, sender, body, ts_ms, client_msg_id FROM messages "
            "WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4");
    q.bind(room, after, up_to, limit);
    while (q.next()) messages.push_back(message_row(q, room));
    if (q.error()) return unexpected(q.error());
  }
  if (messages.empty()) {
    if (auto ok = require_room(c, room); !ok) return unexpected(ok.error());
  }
  return messages;
}

Result<HistoryPage> op_history(Connection& c, const std::string& room, std::uint64_t before,
                               std::uint32_t limit) {
  HistoryPage page;
  {
    // One row more than asked tells whether older messages exist.
    Query q(c,
            "SELECT seq, sender, body, ts_ms, client_msg_id FROM messages "
            "WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3");
    q.bind(room, before, static_cast<std::int64_t>(limit) + 1);
    while (q.next()) {
      if (page.messages.size() == limit) {
        page.has_more = true;
        break;
      }
      page.messages.push_back(message_row(q, room));
    }
    if (q.error()) return unexpected(q.error());
  }
  std::reverse(page.messages.begin(), page.messages.end());
  if (page.messages.empty()) {
    if (auto ok = require_room(c, room); !ok) return unexpected(ok.error());
  }
  return page;
}

Result<std::uint64_t> op_set_read(Connection& c, const std::string& room, const std::string& user,
                                  std::uint64_t seq) {
  auto found = find_room(c, room, user);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  if (!(*found)->member) return unexpected(err(StoreErrc::forbidden));
  std::uint64_t current = 0;
  {
    Query q(c, "SELECT read_seq FROM members WHERE room = ?1 AND user = ?2");
    q.bind(room, user);
    if (!q.next()) return unexpected(q.error() ? q.error() : err(StoreErrc::internal));
    current = q.u64(0);
  }
  // Markers only move forward, and never past the last message: a client cannot claim to have
  // read what does not exist yet.
  const std::uint64_t target = std::min(seq, (*found)->last_seq);
  if (target <= current) return current;
  Query q(c, "UPDATE members SET read_seq = ?3 WHERE room = ?1 AND user = ?2");
  q.bind(room, user, target);
  if (auto e = q.run()) return unexpected(e);
  return target;
}

// ---------------------------------------------------------------------------------------------
// Tasks and queues.

// One queued operation with its callback. The writer runs a task inside its batch and completes
// it after the commit; a reader runs and completes it at once.
class Task {
 public:
  Task(metrics::Histogram& latency, std::atomic<bool>& ready)
      : latency_(latency), ready_(ready), submitted_(Clock::now()) {}
  virtual ~Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // Runs the operation and keeps its outcome; returns the error, if any.
  virtual std::error_code run(Connection& c, std::int64_t now_ms) = 0;
  // Replaces the outcome with an error (the batch did not commit, or the store is closing).
  virtual void fail(std::error_code ec) = 0;
  // Records the latency and calls the callback with the outcome. Called exactly once, after
  // run() or fail().
  virtual void complete() = 0;

 protected:
  // Latency counts from the call to the completion: what the caller waits for, queueing and
  // the batch's commit included.
  void record(const std::error_code& ec) {
    latency_.observe(std::chrono::duration<double>(Clock::now() - submitted_).count());
    ready_.store(ec != StoreErrc::unavailable, std::memory_order_relaxed);
  }

 private:
  metrics::Histogram& latency_;
  std::atomic<bool>& ready_;
  Clock::time_point submitted_;
};

template <class T, class Fn>
class TypedTask final : public Task {
 public:
  TypedTask(metrics::Histogram& latency, std::atomic<bool>& ready, Fn fn, Callback<T> cb)
      : Task(latency, ready), fn_(std::move(fn)), cb_(std::move(cb)) {}

  std::error_code run(Connection& c, std::int64_t now_ms) override {
    try {
      outcome_.emplace(fn_(c, now_ms));
    } catch (const std::exception& e) {
      // Only allocation can throw here; the operation's savepoint is rolled back like any error.
      spdlog::error("sqlite store: operation failed: {}", e.what());
      outcome_.emplace(unexpected(err(StoreErrc::internal)));
    }
    return outcome_->has_value() ? std::error_code{} : outcome_->error();
  }

  void fail(std::error_code ec) override { outcome_.emplace(unexpected(ec)); }

  void complete() override {
    if (!outcome_) outcome_.emplace(unexpected(err(StoreErrc::internal)));
    record(outcome_->has_value() ? std::error_code{} : outcome_->error());
    if (!cb_) return;
    // A throwing callback must not take the store's thread down with it.
    try {
      cb_(std::move(*outcome_));
    } catch (const std::exception& e) {
      spdlog::error("sqlite store: a callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("sqlite store: a callback threw");
    }
  }

 private:
  Fn fn_;
  Callback<T> cb_;
  std::optional<Result<T>> outcome_;
};

// A FIFO of tasks shared by the producers (any thread) and one or more worker threads.
class TaskQueue {
 public:
  // Queues a task. Returns it back when the queue is closed (its workers are gone).
  std::unique_ptr<Task> push(std::unique_ptr<Task> task) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return task;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return nullptr;
  }

  // Waits for work and moves up to `max` tasks into `out`. Returns false when the queue is
  // stopping and empty: the worker should exit. Stopping still hands out queued tasks, so that
  // everything submitted before the store closes is run.
  bool pop(std::vector<std::unique_ptr<Task>>& out, std::size_t max) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !tasks_.empty() || stopping_; });
    if (tasks_.empty()) return false;
    const std::size_t n = std::min(max, tasks_.size());
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(std::move(tasks_.front()));
      tasks_.pop_front();
    }
    return true;
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

  // After the workers have exited: refuses further tasks and returns those left over.
  std::deque<std::unique_ptr<Task>> close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    return std::move(tasks_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Task>> tasks_;
  bool stopping_ = false;
  bool closed_ = false;
};

void fail_and_complete(Task& t) {
  t.fail(err(StoreErrc::unavailable));
  t.complete();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct SqliteStore::Impl {
  SqliteOptions options;
  std::atomic<bool> ready{true};
  std::array<metrics::Histogram*, kOpCount> latency{};
  metrics::Histogram* batch_size = nullptr;
  std::unique_ptr<Connection> writer;
  std::vector<std::unique_ptr<Connection>> readers;
  TaskQueue write_queue;
  TaskQueue read_queue;
  std::thread writer_thread;
  std::vector<std::thread> reader_threads;
  int schema_version = 0;

  // Checkpoints (copying the WAL back into the database file) run on their own thread and
  // connection. SQLite's automatic checkpoint runs inside the commit that crosses the threshold,
  // on the writer thread, and took a fifth of its time under load; here the writer only reports
  // the WAL's size after each commit (wal_hook) and the checkpointer does PASSIVE checkpoints,
  // which never block the writer or the readers.
  std::unique_ptr<Connection> checkpointer;
  std::thread checkpoint_thread;
  std::mutex checkpoint_mutex;
  std::condition_variable checkpoint_cv;
  bool checkpoint_stopping = false;
  bool checkpoint_running = false;  // the checkpointer is inside a checkpoint
  bool restart_wanted = false;      // the WAL is large: the writer checkpoints (see below)
  int wal_frames = 0;               // the WAL's size in frames after the last commit
  int checkpointed_frames = 0;      // the WAL's size when the checkpointer last started
  std::uint64_t commits = 0;        // counts commits, so the checkpointer can tell idleness

  Impl(SqliteOptions opts, metrics::Registry& registry);
  ~Impl();

  [[noreturn]] void fail_open(const std::string& reason) const {
    throw std::runtime_error("cannot open SQLite database at " + options.path + ": " + reason);
  }
  void open_connections();
  void migrate();
  void shutdown();
  void writer_loop();
  void run_batch(std::vector<std::unique_ptr<Task>>& batch);
  void reader_loop(Connection& c);
  void checkpoint_loop();
  // Called by SQLite on the writer thread after every commit, with the WAL's size in frames.
  static int on_wal_commit(void* self, sqlite3* db, const char* schema, int frames);

  template <class T, class Fn>
  void submit(TaskQueue& queue, Op op, Fn fn, Callback<T> cb) {
    std::unique_ptr<Task> task = std::make_unique<TypedTask<T, Fn>>(
        *latency[static_cast<std::size_t>(op)], ready, std::move(fn), std::move(cb));
    // The queue is closed only while the store is being destroyed; a task submitted then (by a
    // callback of another task) is refused here rather than left uncalled.
    if (auto refused = queue.push(std::move(task))) fail_and_complete(*refused);
  }
  template <class T, class Fn>
  void write(Op op, Fn fn, Callback<T> cb) {
    submit<T>(write_queue, op, std::move(fn), std::move(cb));
  }
  template <class T, class Fn>
  void read(Op op, Fn fn, Callback<T> cb) {
    submit<T>(read_queue, op, std::move(fn), std::move(cb));
  }
};

SqliteStore::Impl::Impl(SqliteOptions opts, metrics::Registry& registry)
    : options(std::move(opts)) {
  if (options.path.empty() || options.path == ":memory:" || options.path.starts_with("file:")) {
    fail_open("the path must name a file");
  }
  options.reader_threads = std::max(1u, options.reader_threads);
  options.max_batch = std::max<std::size_t>(1, options.max_batch);

  StoreMetrics m(registry);
  latency = m.latency;
  batch_size = m.batch_size;

  open_connections();
  try {
    writer_thread = std::thread([this] { writer_loop(); });
    checkpoint_thread = std::thread([this] { checkpoint_loop(); });
    for (auto& r : readers) reader_threads.emplace_back([this, c = r.get()] { reader_loop(*c); });
  } catch (const std::system_error& e) {
    // Threads that did start must be joined before the members they use go away.
    shutdown();
    fail_open(std::string("cannot start the store's threads: ") + e.what());
  }
}

void SqliteStore::Impl::open_connections() {
  const std::filesystem::path file(options.path);
  if (file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec)
      fail_open("cannot create directory " + file.parent_path().string() + ": " + ec.message());
  }
  try {
    writer = std::make_unique<Connection>(options.path, false, options.busy_timeout_ms);
    // WAL lets the readers run while the writer commits, and makes a commit one append to the
    // log instead of a rewrite of the pages.
    const std::string mode = writer->query_text_or_throw("PRAGMA journal_mode = WAL");
    if (mode != "wal") throw std::runtime_error("cannot switch to WAL mode (got " + mode + ")");
    writer->exec_or_throw(sync_pragma(options.synchronous));
    writer->exec_or_throw("PRAGMA foreign_keys = ON");
    // Appends touch a leaf of each of several B-trees per room; with SQLite's default 2 MiB
    // cache those pages were evicted and read back (pread) within the same batch, and a full
    // cache spills dirty pages to the WAL before the commit, writing them twice.
    // A negative cache_size is in KiB.
    writer->exec_or_throw(
        ("PRAGMA cache_size = -" + std::to_string(std::max(1u, options.writer_cache_mib) * 1024))
            .c_str());
    // No automatic checkpoints on the writer: checkpoint_loop does them (see checkpointer).
    // Setting a WAL hook replaces SQLite's auto-checkpoint hook.
    writer->exec_or_throw("PRAGMA wal_autocheckpoint = 0");
    sqlite3_wal_hook(writer->db(), &Impl::on_wal_commit, this);
  } catch (const std::runtime_error& e) {
    fail_open(e.what());
  }
  migrate();
  try {
    checkpointer = std::make_unique<Connection>(options.path, false, options.busy_timeout_ms);
    // A checkpoint syncs the database file before it lets the WAL be reused; that is what
    // synchronous decides for the checkpointing connection, so it matches the writer's.
    checkpointer->exec_or_throw(sync_pragma(options.synchronous));
    checkpointer->exec_or_throw("PRAGMA wal_autocheckpoint = 0");
  } catch (const std::runtime_error& e) {
    fail_open(std::string("cannot open the checkpoint connection: ") + e.what());
  }
  try {
    for (unsigned i = 0; i < options.reader_threads; ++i) {
      readers.push_back(std::make_unique<Connection>(options.path, true, options.busy_timeout_ms));
    }
  } catch (const std::runtime_error& e) {
    fail_open(std::string("cannot open a reader connection: ") + e.what());
  }
}

// Applies every migration above the recorded version, one transaction each. The version is read
// inside the same IMMEDIATE transaction that applies the next migration, so two processes
// starting on the same file cannot both apply it.
void SqliteStore::Impl::migrate() {
  const auto& migrations = sqlite_migrations();
  int latest = 0;
  for (const auto& m : migrations) {
    if (m.version <= latest) {
      fail_open("migration " + std::string(m.name) + " is out of order");
    }
    latest = m.version;
  }
  for (;;) {
    int current = 0;
    try {
      writer->exec_or_throw("BEGIN IMMEDIATE");
      current = std::stoi(writer->query_text_or_throw("PRAGMA user_version"));
    } catch (const std::exception& e) {
      sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
      fail_open(std::string("cannot read the schema version: ") + e.what());
    }
    if (current > latest) {
      sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
      fail_open("schema version " + std::to_string(current) + " is newer than this build knows (" +
                std::to_string(latest) + ")");
    }
    auto next = std::find_if(migrations.begin(), migrations.end(),
                             [&](const Migration& m) { return m.version > current; });
    if (next == migrations.end()) {
      sqlite3_exec(writer->db(), "COMMIT", nullptr, nullptr, nullptr);
      schema_version = current;
      return;
    }
    try {
      writer->exec_or_throw(std::string(next->sql).c_str());
      writer->exec_or_throw(("PRAGMA user_version = " + std::to_string(next->version)).c_str());
      writer->exec_or_throw("COMMIT");
    } catch (const std::runtime_error& e) {
      sqlite3_exec(writer->db(), "ROLLBACK", nullptr, nullptr, nullptr);
      fail_open("migration " + std::string(next->name) + " failed: " + e.what());
    }
    spdlog::info("sqlite store: applied migration {} to {}", next->name, options.path);
  }
}

SqliteStore::Impl::~Impl() {
  shutdown();
}

// Idempotent: the store's destructor calls it while the store is whole, then ~Impl again.
void SqliteStore::Impl::shutdown() {
  // The writer drains first: its callbacks may still submit reads, which the readers serve.
  write_queue.stop();
  if (writer_thread.joinable()) writer_thread.join();
  for (auto& t : write_queue.close()) fail_and_complete(*t);
  read_queue.stop();
  for (auto& t : reader_threads) {
    if (t.joinable()) t.join();
  }
  for (auto& t : read_queue.close()) fail_and_complete(*t);
  {
    std::lock_guard lock(checkpoint_mutex);
    checkpoint_stopping = true;
  }
  checkpoint_cv.notify_all();
  if (checkpoint_thread.joinable()) checkpoint_thread.join();
  // Readers and the checkpointer close first so that the writer's connection is the last one and
  // checkpoints the WAL into the database file on close.
  readers.clear();
  checkpointer.reset();
  writer.reset();
}

namespace {
// The checkpointer runs a PASSIVE checkpoint once this many frames (pages) were added to the WAL
// since its last one. Larger than SQLite's default (1000) because a page rewritten by many
// commits is copied once per checkpoint, and every checkpoint syncs the database file.
constexpr int kCheckpointFrames = 4096;
// The WAL is reused from its start only when a checkpoint has copied all of it before the
// writer's next transaction. Under sustained load the checkpointer, running beside the writer,
// rarely catches up exactly. Past this size (64 MiB of 4 KiB pages) the checkpointer stands
// aside and the writer runs one PASSIVE checkpoint itself between two transactions: it copies
// what was committed since the checkpointer's last run and syncs the database once, and its
// next transaction starts the WAL over.
constexpr int kWalRestartFrames = 16 * 1024;
// The checkpointer truncates the WAL file once no commit happened for this long.
constexpr auto kIdleTruncateAfter = std::chrono::seconds(1);
}  // namespace

int SqliteStore::Impl::on_wal_commit(void* self, sqlite3* db, const char* schema, int frames) {
  auto& impl = *static_cast<Impl*>(self);
  bool restart_wanted = false;
  bool wake = false;
  {
    std::lock_guard lock(impl.checkpoint_mutex);
    impl.wal_frames = frames;
    ++impl.commits;
    impl.restart_wanted = frames >= kWalRestartFrames;
    restart_wanted = impl.restart_wanted && !impl.checkpoint_running;
    // Only a commit that gives the checkpointer work wakes it: a wake-up per commit cost a
    // context switch per batch at low rates.
    if (frames < impl.checkpointed_frames) impl.checkpointed_frames = 0;  // the WAL started over
    wake = !impl.restart_wanted && frames - impl.checkpointed_frames >= kCheckpointFrames;
  }
  if (restart_wanted) {
    // Another process's checkpoint (SQLITE_BUSY) or a reader still on old frames can stop it;
    // the next commit tries again.
    sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  if (wake) impl.checkpoint_cv.notify_one();
  return SQLITE_OK;
}

void SqliteStore::Impl::checkpoint_loop() {
  std::unique_lock lock(checkpoint_mutex);
  std::uint64_t seen_commits = commits;
  bool truncated = true;
  while (!checkpoint_stopping) {
    const bool woken = checkpoint_cv.wait_for(lock, kIdleTruncateAfter, [&] {
      if (wal_frames < checkpointed_frames) checkpointed_frames = 0;  // the WAL started over
      return checkpoint_stopping ||
             (!restart_wanted && wal_frames - checkpointed_frames >= kCheckpointFrames);
    });
    if (checkpoint_stopping) break;
    const bool idle = !woken && commits == seen_commits;
    seen_commits = commits;
    if (!woken && (!idle || truncated)) continue;
    checkpointed_frames = wal_frames;
    checkpoint_running = true;
    lock.unlock();
    sqlite3* db = checkpointer->db();
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (idle && rc == SQLITE_OK) {
      // Nothing was committed for a while: give the WAL file's space back. TRUNCATE takes the
      // writer lock, which an idle writer does not hold, so it does not delay a commit.
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
      spdlog::warn("sqlite store: checkpoint failed: {}", sqlite3_errmsg(db));
    }
    lock.lock();
    checkpoint_running = false;
    truncated = idle && rc == SQLITE_OK;
  }
}

void SqliteStore::Impl::writer_loop() {
  std::vector<std::unique_ptr<Task>> batch;
  batch.reserve(options.max_batch);
  while (write_queue.pop(batch, options.max_batch)) {
    run_batch(batch);
    batch.clear();
  }
}

namespace {

// Runs one cached transaction-control statement (BEGIN, SAVEPOINT, COMMIT ...).
std::error_code control(Connection& c, std::string_view sql) {
  Query q(c, sql);
  return q.run();
}

}  // namespace

// Group commit: the whole batch is one transaction, so it costs one WAL sync however many
// operations it holds. Each operation runs inside its own savepoint, so one that fails (a
// conflict, a forbidden append) is undone alone and the others still commit. Callbacks run after
// COMMIT returns, so every acknowledgement they carry is durable.
void SqliteStore::Impl::run_batch(std::vector<std::unique_ptr<Task>>& batch) {
  Connection& c = *writer;
  // One timestamp for the batch: its messages are committed together.
  const std::int64_t now_ms = now_unix_ms();
  std::error_code batch_error = control(c, "BEGIN IMMEDIATE");
  if (!batch_error) {
    for (auto& task : batch) {
      if ((batch_error = control(c, "SAVEPOINT op"))) break;
      const std::error_code op_error = task->run(c, now_ms);
      if (sqlite3_get_autocommit(c.db()) != 0) {
        // Some errors (I/O, disk full) make SQLite roll back the whole transaction: everything
        // run so far in this batch is gone, so the batch fails as a whole.
        batch_error = op_error == StoreErrc::internal ? op_error : err(StoreErrc::unavailable);
        break;
      }
      if (op_error && (batch_error = control(c, "ROLLBACK TO op"))) break;
      if ((batch_error = control(c, "RELEASE op"))) break;
    }
    if (!batch_error) batch_error = control(c, "COMMIT");
    if (batch_error && sqlite3_get_autocommit(c.db()) == 0) {
      if (control(c, "ROLLBACK")) spdlog::error("sqlite store: cannot roll back a failed batch");
    }
  }
  if (batch_error) {
    spdlog::warn("sqlite store: a batch of {} operations failed: {}", batch.size(),
                 batch_error.message());
    for (auto& task : batch) task->fail(batch_error);
  } else {
    batch_size->observe(static_cast<double>(batch.size()));
  }
  for (auto& task : batch) task->complete();
}

void SqliteStore::Impl::reader_loop(Connection& c) {
  std::vector<std::unique_ptr<Task>> one;
  // Readers take one task at a time, so that a slow read does not hold others behind it while
  // another reader is idle.
  while (read_queue.pop(one, 1)) {
    one.front()->run(c, 0);
    one.front()->complete();
    one.clear();
  }
}

// ---------------------------------------------------------------------------------------------

SqliteStore::SqliteStore(SqliteOptions options, metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

Result<std::unique_ptr<SqliteStore>, std::string> SqliteStore::open(SqliteOptions options,
                                                                    metrics::Registry& registry) {
  try {
    return std::make_unique<SqliteStore>(std::move(options), registry);
  } catch (const std::exception& e) {
    return unexpected(std::string(e.what()));
  }
}

// The drain runs while this object is whole, so callbacks that call back into the store during
// it (a write's callback submitting a read) reach a live Impl.
SqliteStore::~SqliteStore() {
  impl_->shutdown();
}

bool SqliteStore::ready() const {
  return impl_->ready.load(std::memory_order_relaxed);
}

int SqliteStore::schema_version() const {
  return impl_->schema_version;
}

void SqliteStore::create_user(std::string user, std::string password_hash, Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::create_user,
      [user = std::move(user), hash = std::move(password_hash)](Connection& c, std::int64_t now) {
        return op_create_user(c, user, hash, now);
      },
      std::move(cb));
}

void SqliteStore::get_user(std::string user, Callback<UserAuth> cb) {
  impl_->read<UserAuth>(
      Op::get_user,
      [user = std::move(user)](Connection& c, std::int64_t) { return op_get_user(c, user); },
      std::move(cb));
}

void SqliteStore::create_token(std::string token_hash, std::string user, std::int64_t expires_at,
                               Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::create_token,
      [hash = std::move(token_hash), user = std::move(user), expires_at](
          Connection& c, std::int64_t) { return op_create_token(c, hash, user, expires_at); },
      std::move(cb));
}

void SqliteStore::lookup_token(std::string token_hash, Callback<TokenInfo> cb) {
  impl_->read<TokenInfo>(
      Op::lookup_token,
      [hash = std::move(token_hash)](Connection& c, std::int64_t) {
        return op_lookup_token(c, hash);
      },
      std::move(cb));
}

void SqliteStore::delete_token(std::string token_hash, Callback<TokenInfo> cb) {
  impl_->write<TokenInfo>(
      Op::delete_token,
      [hash = std::move(token_hash)](Connection& c, std::int64_t) {
        return op_delete_token(c, hash);
      },
      std::move(cb));
}

void SqliteStore::set_admin(std::string user, bool admin, Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::set_admin,
      [user = std::move(user), admin](Connection& c, std::int64_t) {
        return op_set_admin(c, user, admin);
      },
      std::move(cb));
}

void SqliteStore::delete_user(std::string user, Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::delete_user,
      [user = std::move(user)](Connection& c, std::int64_t now) {
        return op_delete_user(c, user, now);
      },
      std::move(cb));
}

void SqliteStore::create_room(std::string room, RoomKind kind, std::string creator,
                              Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::create_room,
      [room = std::move(room), kind, creator = std::move(creator)](
          Connection& c, std::int64_t now) { return op_create_room(c, room, kind, creator, now); },
      std::move(cb));
}

void SqliteStore::join_room(std::string room, std::string user, Callback<JoinResult> cb) {
  impl_->write<JoinResult>(
      Op::join_room,
      [room = std::move(room), user = std::move(user)](Connection& c, std::int64_t now) {
        return op_join_room(c, room, user, now);
      },
      std::move(cb));
}

void SqliteStore::leave_room(std::string room, std::string user, Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::leave_room,
      [room = std::move(room), user = std::move(user)](Connection& c, std::int64_t) {
        return op_leave_room(c, room, user);
      },
      std::move(cb));
}

void SqliteStore::invite(std::string room, std::string inviter, std::string user, Callback<Ok> cb) {
  impl_->write<Ok>(
      Op::invite,
      [room = std::move(room), inviter = std::move(inviter), user = std::move(user)](
          Connection& c, std::int64_t now) { return op_invite(c, room, inviter, user, now); },
      std::move(cb));
}

void SqliteStore::open_dm(std::string dm_room, std::string user, std::string other,
                          Callback<JoinResult> cb) {
  impl_->write<JoinResult>(
      Op::open_dm,
      [room = std::move(dm_room), user = std::move(user), other = std::move(other)](
          Connection& c, std::int64_t now) { return op_open_dm(c, room, user, other, now); },
      std::move(cb));
}

void SqliteStore::is_member(std::string room, std::string user, Callback<bool> cb) {
  impl_->read<bool>(
      Op::is_member,
      [room = std::move(room), user = std::move(user)](Connection& c, std::int64_t) {
        return op_is_member(c, room, user);
      },
      std::move(cb));
}

void SqliteStore::list_rooms(std::string user, Callback<std::vector<RoomSummary>> cb) {
  impl_->read<std::vector<RoomSummary>>(
      Op::list_rooms,
      [user = std::move(user)](Connection& c, std::int64_t) { return op_list_rooms(c, user); },
      std::move(cb));
}

void SqliteStore::room_info(std::string room, Callback<RoomSummary> cb) {
  impl_->read<RoomSummary>(
      Op::room_info,
      [room = std::move(room)](Connection& c, std::int64_t) { return op_room_info(c, room); },
      std::move(cb));
}

void SqliteStore::append(AppendRequest req, Callback<AppendResult> cb) {
  impl_->write<AppendResult>(
      Op::append,
      [req = std::move(req)](Connection& c, std::int64_t now) { return op_append(c, req, now); },
      std::move(cb));
}

void SqliteStore::read_range(std::string room, std::uint64_t after, std::uint64_t up_to,
                             std::uint32_t limit, Callback<std::vector<StoredMessage>> cb) {
  impl_->read<std::vector<StoredMessage>>(
      Op::read_range,
      [room = std::move(room), after, up_to, limit](Connection& c, std::int64_t) {
        return op_read_range(c, room, after, up_to, limit);
      },
      std::move(cb));
}

void SqliteStore::history(std::string room, std::uint64_t before, std::uint32_t limit,
                          Callback<HistoryPage> cb) {
  impl_->read<HistoryPage>(
      Op::history,
      [room = std::move(room), before, limit](Connection& c, std::int64_t) {
        return op_history(c, room, before, limit);
      },
      std::move(cb));
}

void SqliteStore::set_read(std::string room, std::string user, std::uint64_t seq,
                           Callback<std::uint64_t> cb) {
  impl_->write<std::uint64_t>(
      Op::set_read,
      [room = std::move(room), user = std::move(user), seq](Connection& c, std::int64_t) {
        return op_set_read(c, room, user, seq);
      },
      std::move(cb));
}

}  // namespace parley::store
