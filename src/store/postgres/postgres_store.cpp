#include "store/postgres/postgres_store.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/migrations.hpp"
#include "store/store_metrics.hpp"

namespace parley::store {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using Op = StoreOp;
constexpr std::size_t kOpCount = kStoreOpCount;

// Type OIDs of the binary array elements the adapter sends (pg_type.h; stable across versions).
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;

// The key of the advisory lock that serialises migrations between nodes starting at once. The
// two-integer form keeps it apart from the one-integer keys that writers take per batch.
constexpr int kMigrationLockKey1 = 0x7061726c;  // "parl"
constexpr int kMigrationLockKey2 = 1;
// Migrations may wait for another node's migration and may rebuild large tables, so they get a
// much longer deadline than queries; start-up still cannot hang for good.
constexpr auto kMigrationTimeout = std::chrono::minutes(10);

std::error_code err(StoreErrc e) {
  return make_error_code(e);
}

// PostgreSQL stores signed 64-bit integers. Seqs are unsigned in the port, and callers use
// UINT64_MAX to mean "no bound", so larger values are clamped rather than wrapped to -1.
std::int64_t to_db(std::uint64_t v) {
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(v, max));
}

std::optional<RoomKind> kind_from_string(std::string_view s) {
  if (s == "public") return RoomKind::public_room;
  if (s == "private") return RoomKind::private_room;
  if (s == "dm") return RoomKind::dm;
  return std::nullopt;
}

// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...");
// logs and start-up errors want one line.
std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == '\r' || ch == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(ch);
  }
  return out;
}

// 64-bit FNV-1a: a stable hash of a lock key that every node computes identically, so that all
// writers sort their advisory locks the same way. Collisions only make two keys share a lock.
std::int64_t lock_key(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return static_cast<std::int64_t>(h);
}

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_be64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::uint64_t get_be(const char* p, int len) {
  std::uint64_t v = 0;
  for (int i = 0; i < len; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// A one-dimensional array in PostgreSQL's binary format (array_send): dimensions, flags, element
// type, then each element as a length and its bytes. Binary arrays carry any bytes, NUL included,
// without the quoting a text array literal would need.
class ArrayBuilder {
 public:
  explicit ArrayBuilder(Oid element) : element_(element) {}

  void add(std::string_view bytes) {
    put_be32(data_, static_cast<std::uint32_t>(bytes.size()));
    data_.append(bytes);
    ++count_;
  }
  void add_i64(std::int64_t v) {
    put_be32(data_, 8);
    put_be64(data_, static_cast<std::uint64_t>(v));
    ++count_;
  }
  std::string finish() const {
    std::string out;
    if (count_ == 0) {
      // An empty array has no dimensions at all.
      put_be32(out, 0);
      put_be32(out, 0);
      put_be32(out, element_);
      return out;
    }
    out.reserve(20 + data_.size());
    put_be32(out, 1);  // one dimension
    put_be32(out, 0);  // no NULLs
    put_be32(out, element_);
    put_be32(out, count_);
    put_be32(out, 1);  // lower bound
    out.append(data_);
    return out;
  }

 private:
  Oid element_;
  std::uint32_t count_ = 0;
  std::string data_;
};

// The parameters of one statement, all in binary format so that text and bytea pass byte for
// byte (a text-format parameter would stop at the first NUL).
class Params {
 public:
  Params& text(std::string_view s) { return add(std::string(s)); }
  Params& bytes(std::string_view s) { return add(std::string(s)); }
  Params& i64(std::int64_t v) {
    std::string b;
    put_be64(b, static_cast<std::uint64_t>(v));
    return add(std::move(b));
  }
  Params& u64(std::uint64_t v) { return i64(to_db(v)); }
  Params& array(const ArrayBuilder& a) { return add(a.finish()); }

  int size() const { return static_cast<int>(data_.size()); }
  // Pointers into the owned values, valid until the next change.
  void pointers(std::vector<const char*>& values, std::vector<int>& lengths,
                std::vector<int>& formats) const {
    values.clear();
    lengths.clear();
    formats.clear();
    for (const auto& d : data_) {
      values.push_back(d.data());
      lengths.push_back(static_cast<int>(d.size()));
      formats.push_back(1);
    }
  }

 private:
  Params& add(std::string v) {
    data_.push_back(std::move(v));
    return *this;
  }
  std::vector<std::string> data_;
};

// A query result, owned, with typed readers for binary-format columns.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r) {}

  explicit operator bool() const { return r_ != nullptr; }
  PGresult* get() const { return r_.get(); }
  ExecStatusType status() const { return PQresultStatus(r_.get()); }
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }

  // An integer column of any width (int2, int4, int8, bool), sign-extended.
  std::int64_t i64(int row, int col) const {
    if (null(row, col)) return 0;
    const int len = PQgetlength(r_.get(), row, col);
    const std::uint64_t raw = get_be(PQgetvalue(r_.get(), row, col), len);
    if (len >= 8) return static_cast<std::int64_t>(raw);
    const std::uint64_t sign = std::uint64_t{1} << (len * 8 - 1);
    return static_cast<std::int64_t>((raw ^ sign) - sign);
  }
  std::uint64_t u64(int row, int col) const {
    const auto v = i64(row, col);
    return v < 0 ? 0 : static_cast<std::uint64_t>(v);
  }
  bool boolean(int row, int col) const { return i64(row, col) != 0; }
  std::string str(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
  }
  // The first column of the first row as text, for simple-protocol (text format) results.
  std::string text_value() const { return rows() > 0 && !null(0, 0) ? str(0, 0) : std::string(); }

  std::string sqlstate() const {
    const char* s = r_ ? PQresultErrorField(r_.get(), PG_DIAG_SQLSTATE) : nullptr;
    return s != nullptr ? s : "";
  }
  std::string message() const {
    return r_ ? one_line(PQresultErrorMessage(r_.get())) : std::string("no result");
  }

 private:
  struct Clear {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  std::unique_ptr<PGresult, Clear> r_;
};

// SQLSTATEs after which the session is gone: the server is shutting down or crashed, or the
// connection failed. The connection is dropped and rebuilt.
bool is_connection_state(std::string_view state) {
  return state.starts_with("08") || state == "57P01" || state == "57P02" || state == "57P03";
}

// A failed statement's error for the caller. States that say "not now" (connection, shutdown,
// timeouts and cancellation, lock not available, serialization failure or deadlock, out of
// resources, I/O errors, a read-only server after a failover) become `unavailable`: nothing was
// written and the same request may be retried. Everything else is a bug or worse: `internal`.
std::error_code classify(std::string_view state) {
  if (is_connection_state(state) || state == "57014" || state == "55P03" || state == "25006" ||
      state.starts_with("40") || state.starts_with("53") || state.starts_with("58")) {
    return err(StoreErrc::unavailable);
  }
  return err(StoreErrc::internal);
}

// ---------------------------------------------------------------------------------------------
// Prepared statements. Every parameter carries an explicit cast, which fixes its type for the
// binary encoding, and every connection prepares them all once when it connects.

enum class Stmt {
  // Batch control and set-wise appends (writer).
  advisory_locks,
  lock_rooms,
  late_lock_rooms,
  now_ms,
  append_probe,
  append_insert,
  append_bump,
  ping,
  // Single operations (writer).
  create_user,
  user_exists,
  create_token,
  delete_token,
  find_room_locked,
  insert_room,
  add_member,
  delete_invite,
  delete_member,
  insert_invite,
  set_read,
  // Reads.
  get_user,
  lookup_token,
  is_member,
  list_rooms,
  room_info,
  read_range,
  history,
  set_admin,
  // Added with user deletion (writer).
  lock_rooms_and_user_rooms,
  delete_user,
  count,
};
constexpr std::size_t kStmtCount = static_cast<std::size_t>(Stmt::count);

constexpr std::array<const char*, kStmtCount> kStmtSql = {
    // advisory_locks: the keys arrive sorted; unnest yields them in order, so every writer takes
    // them in the same order.
    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k) AS s",
    // lock_rooms: locks are taken in the order of the sort below them, name order, on every node.
    "SELECT name FROM rooms WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE",
    // late_lock_rooms: for rooms that appeared after the batch took its locks. Waiting here could
    // deadlock with a writer that holds this room and waits for one of ours, so it never waits.
    "SELECT name FROM rooms WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE NOWAIT",
    // now_ms: one timestamp per batch from the database's clock, taken once the locks are held,
    // so that a room's messages get non-decreasing times whichever node wrote them.
    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
    // append_probe: per request, in order: the room's counter (NULL: no such room), whether the
    // sender is a member, and the original message when the key exists already.
    "SELECT k.i, r.last_seq, mb.room IS NOT NULL, d.seq, d.body, d.ts_ms "
    "FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS k(room, sender, cmid, i) "
    "LEFT JOIN rooms r ON r.name = k.room "
    "LEFT JOIN members mb ON mb.room = k.room AND mb.user_name = k.sender "
    "LEFT JOIN messages d ON d.room = k.room AND d.sender = k.sender AND d.client_msg_id = k.cmid",
    // append_insert: every new message of a run in one statement.
    "INSERT INTO messages (room, seq, sender, client_msg_id, body, ts_ms) "
    "SELECT t.room, t.seq, t.sender, t.cmid, t.body, $6::int8 "
    "FROM unnest($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::bytea[]) "
    "AS t(room, seq, sender, cmid, body)",
    // append_bump: each room's counter to its highest new seq, in the same transaction.
    "UPDATE rooms AS r SET last_seq = v.seq FROM unnest($1::text[], $2::int8[]) AS v(name, seq) "
    "WHERE r.name = v.name",
    // ping
    "SELECT 1",
    // create_user
    "INSERT INTO users (name, password_hash, created_at) VALUES ($1::text, $2::text, $3::int8) "
    "ON CONFLICT (name) DO NOTHING RETURNING true",
    // user_exists: a deleted user is unknown to every operation but create_user.
    "SELECT true FROM users WHERE name = $1::text AND deleted_at IS NULL",
    // create_token
    "INSERT INTO tokens (hash, user_name, expires_at) VALUES ($1::text, $2::text, $3::int8) "
    "ON CONFLICT (hash) DO NOTHING RETURNING true",
    // delete_token
    "DELETE FROM tokens WHERE hash = $1::text RETURNING user_name, expires_at",
    // find_room_locked: the room row is the room's write lock. The batch locked it already when
    // it existed at the start; NOWAIT covers a room that appeared since (see late_lock_rooms).
    "SELECT kind, last_seq, "
    "EXISTS (SELECT 1 FROM members WHERE room = $1::text AND user_name = $2::text) "
    "FROM rooms WHERE name = $1::text FOR UPDATE NOWAIT",
    // insert_room
    "INSERT INTO rooms (name, kind, last_seq, created_by, created_at) "
    "VALUES ($1::text, $2::text, 0, $3::text, $4::int8) ON CONFLICT (name) DO NOTHING "
    "RETURNING true",
    // add_member
    "INSERT INTO members (room, user_name, read_seq, joined_at) "
    "VALUES ($1::text, $2::text, $3::int8, $4::int8) ON CONFLICT (room, user_name) DO NOTHING "
    "RETURNING true",
    // delete_invite
    "DELETE FROM invites WHERE room = $1::text AND user_name = $2::text RETURNING true",
    // delete_member
    "DELETE FROM members WHERE room = $1::text AND user_name = $2::text",
    // insert_invite
    "INSERT INTO invites (room, user_name, invited_by, created_at) "
    "VALUES ($1::text, $2::text, $3::text, $4::int8) ON CONFLICT (room, user_name) DO NOTHING",
    // set_read: the room's counter (NULL: no room), the member's marker before (NULL: not a
    // member) and after the update (NULL: unchanged), in one round trip.
    "WITH r AS (SELECT last_seq FROM rooms WHERE name = $1::text FOR UPDATE NOWAIT), "
    "m AS (SELECT read_seq FROM members WHERE room = $1::text AND user_name = $2::text), "
    "u AS (UPDATE members SET read_seq = LEAST($3::int8, (SELECT last_seq FROM r)) "
    "      WHERE room = $1::text AND user_name = $2::text "
    "        AND read_seq < LEAST($3::int8, (SELECT last_seq FROM r)) RETURNING read_seq) "
    "SELECT (SELECT last_seq FROM r), (SELECT read_seq FROM m), (SELECT read_seq FROM u)",
    // get_user
    "SELECT password_hash FROM users WHERE name = $1::text AND deleted_at IS NULL",
    // lookup_token
    "SELECT t.user_name, t.expires_at, COALESCE(u.is_admin, false) FROM tokens t "
    "LEFT JOIN users u ON u.name = t.user_name WHERE t.hash = $1::text",
    // is_member
    "SELECT true FROM members WHERE room = $1::text AND user_name = $2::text",
    // list_rooms
    "SELECT r.name, r.kind, r.last_seq, m.read_seq FROM members m "
    "JOIN rooms r ON r.name = m.room WHERE m.user_name = $1::text ORDER BY r.name",
    // room_info
    "SELECT kind, last_seq FROM rooms WHERE name = $1::text",
    // read_range: no row means no room; one row of NULLs means a room without such messages.
    "SELECT m.seq, m.sender, m.body, m.ts_ms, m.client_msg_id FROM rooms r LEFT JOIN ("
    "  SELECT seq, sender, body, ts_ms, client_msg_id FROM messages "
    "  WHERE room = $1::text AND seq > $2::int8 AND seq <= $3::int8 ORDER BY seq LIMIT $4::int8"
    ") m ON true WHERE r.name = $1::text ORDER BY m.seq",
    // history: newest first; the caller reverses. One row more than asked tells whether older
    // messages exist.
    "SELECT m.seq, m.sender, m.body, m.ts_ms, m.client_msg_id FROM rooms r LEFT JOIN ("
    "  SELECT seq, sender, body, ts_ms, client_msg_id FROM messages "
    "  WHERE room = $1::text AND seq < $2::int8 ORDER BY seq DESC LIMIT $3::int8"
    ") m ON true WHERE r.name = $1::text ORDER BY m.seq DESC",
    // set_admin
    "UPDATE users SET is_admin = $2::int8 <> 0 WHERE name = $1::text AND deleted_at IS NULL "
    "RETURNING true",
    // lock_rooms_and_user_rooms: lock_rooms for a batch that deletes users ($2): their rooms, those
    // of their memberships and invitations, are locked with the others, in the same name order.
    "SELECT name FROM rooms WHERE name = ANY($1::text[]) OR name IN ("
    "  SELECT room FROM members WHERE user_name = ANY($2::text[]) "
    "  UNION SELECT room FROM invites WHERE user_name = ANY($2::text[])"
    ") ORDER BY name FOR UPDATE",
    // delete_user: one row for the user when it existed (name set), then one per room it lost a
    // membership or invitation in (room set). The data-modifying parts all run, read or not, and
    // only touch the rows of a user the UPDATE found.
    "WITH u AS (UPDATE users SET deleted_at = $2::int8 "
    "           WHERE name = $1::text AND deleted_at IS NULL RETURNING name), "
    "t AS (DELETE FROM tokens WHERE user_name IN (SELECT name FROM u)), "
    "m AS (DELETE FROM members WHERE user_name IN (SELECT name FROM u) RETURNING room), "
    "i AS (DELETE FROM invites WHERE user_name IN (SELECT name FROM u) RETURNING room) "
    "SELECT name, NULL::text FROM u UNION ALL SELECT NULL, room FROM m "
    "UNION ALL SELECT NULL, room FROM i",
};

std::string stmt_name(Stmt s) {
  return "parley_" + std::to_string(static_cast<int>(s));
}

// ---------------------------------------------------------------------------------------------
// Connections.

// How the adapter connects; derived from PostgresOptions once.
struct ConnectSettings {
  std::string url;
  int connect_timeout_s = 5;
  milliseconds query_timeout{10'000};

  // A round trip's client-side deadline. The server's statement_timeout ends a slow statement
  // first with a clean error; this catches a server or network that stopped answering. One
  // pipeline may hold one long lock wait and fast statements, hence twice the timeout.
  Clock::time_point deadline() const {
    return Clock::now() + 2 * query_timeout + milliseconds(1000);
  }
};

// One step of a round trip: a transaction-control statement sent as text, or a prepared one.
struct Step {
  const char* control = nullptr;
  Stmt stmt = Stmt::ping;
  Params params;
};

// What a round trip sends and what came back, one result per step. After the first failed
// step, the server skips the rest up to the pipeline's sync point (their results are
// PGRES_PIPELINE_ABORTED).
struct Exchange {
  std::vector<Step> steps;
  std::vector<PgResult> results;
  int failed = -1;        // the first step that failed, or -1
  std::error_code error;  // its error, or the connection's
  std::string message;    // for the log
  bool lost = false;      // the connection is gone

  int add_control(const char* sql) {
    steps.push_back(Step{sql, Stmt::ping, {}});
    return static_cast<int>(steps.size()) - 1;
  }
  int add(Stmt s, Params p) {
    steps.push_back(Step{nullptr, s, std::move(p)});
    return static_cast<int>(steps.size()) - 1;
  }
  // Whether step i ran and succeeded.
  bool ok(int i) const { return failed < 0 ? !lost : i < failed; }
  // Whether step i was skipped because an earlier one failed (so it certainly did not run).
  bool skipped(int i) const {
    return i < static_cast<int>(results.size()) && results[i] &&
           results[i].status() == PGRES_PIPELINE_ABORTED;
  }
};

// One libpq connection in non-blocking mode. Every wait goes through poll() with a deadline, so a
// server that stops answering costs at most that deadline, after which the connection is closed.
// Used by one thread at a time.
class PgConn {
 public:
  ~PgConn() { PQfinish(conn_); }
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Connects, sets the session up, and (when `pipeline`) enters pipeline mode and prepares every
  // statement. The error is one line, for the log or the start-up message.
  static Result<std::unique_ptr<PgConn>, std::string> connect(const ConnectSettings& s,
                                                              bool pipeline) {
    const std::string timeout = std::to_string(std::max(2, s.connect_timeout_s));
    // A dead peer (a pulled cable, a crashed host) is noticed within about the query timeout
    // even while the connection is idle, instead of TCP's two hours.
    const std::string user_timeout = std::to_string((2 * s.query_timeout).count() + 1000);
    // Defaults first, then the URL: with expand_dbname, later entries override earlier ones, so
    // whatever the URL says wins.
    const char* keys[] = {"connect_timeout",
                          "application_name",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          nullptr};
    const char* values[] = {timeout.c_str(),      "parleyd",     "1",    "10", "5", "3",
                            user_timeout.c_str(), s.url.c_str(), nullptr};
    PGconn* raw = PQconnectdbParams(keys, values, 1);
    std::unique_ptr<PgConn> c(new PgConn(raw, s));
    if (raw == nullptr) return unexpected(std::string("out of memory"));
    if (PQstatus(raw) != CONNECTION_OK) return unexpected(one_line(PQerrorMessage(raw)));
    PQsetNoticeProcessor(raw, &PgConn::on_notice, nullptr);
    if (PQsetnonblocking(raw, 1) != 0) return unexpected(one_line(PQerrorMessage(raw)));
    const auto q = s.query_timeout.count();
    // statement_timeout ends any statement that runs too long, a lock wait included, with an
    // error the adapter answers as `unavailable`. idle_in_transaction_session_timeout lets the
    // server end the transaction of a node that stopped mid-batch (SIGSTOP, a hung host), so its
    // room locks do not hold the other nodes up for longer than that.
    const std::string setup =
        "SET statement_timeout = " + std::to_string(q) +
        "; SET idle_in_transaction_session_timeout = " + std::to_string(2 * q + 1000) +
        "; SET client_min_messages = warning";
    if (auto r = c->simple(setup, s.deadline()); !r) return unexpected(r.error());
    if (pipeline) {
      if (auto r = c->prepare_all(); !r) return unexpected(r.error());
    }
    return c;
  }

  bool broken() const { return broken_; }

  // Runs `sql` (one or more statements) with the simple protocol, outside pipeline mode: used at
  // start-up for session settings and migrations. Returns each statement's result.
  Result<std::vector<PgResult>, std::string> simple(const std::string& sql,
                                                    Clock::time_point deadline) {
    if (PQsendQuery(conn_, sql.c_str()) == 0) return unexpected(fail_message());
    if (!flush(deadline)) return unexpected(fail_message());
    std::vector<PgResult> results;
    std::string error;
    for (;;) {
      if (!wait_result(deadline)) return unexpected(fail_message());
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) break;
      PgResult res(r);
      const auto st = res.status();
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && error.empty()) error = res.message();
      results.push_back(std::move(res));
    }
    if (PQstatus(conn_) == CONNECTION_BAD) broken_ = true;
    if (!error.empty()) return unexpected(error);
    return results;
  }

  // Sends every step of `x` and one sync point in a single flush, then reads every result: one
  // network round trip however many steps. The first failing step is recorded in x; a broken
  // connection or a missed deadline marks the connection broken.
  void round_trip(Exchange& x, Clock::time_point deadline) {
    x.results.clear();
    x.failed = -1;
    x.error = {};
    x.lost = false;
    if (broken_) return lose(x, "the connection is closed");
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
    for (const auto& step : x.steps) {
      int sent = 0;
      if (step.control != nullptr) {
        sent = PQsendQueryParams(conn_, step.control, 0, nullptr, nullptr, nullptr, nullptr, 1);
      } else {
        step.params.pointers(values, lengths, formats);
        sent = PQsendQueryPrepared(conn_, names_[static_cast<std::size_t>(step.stmt)].c_str(),
                                   step.params.size(), values.data(), lengths.data(),
                                   formats.data(), 1);
      }
      if (sent == 0) return lose(x, fail_message());
    }
    if (PQpipelineSync(conn_) == 0 || !flush(deadline)) return lose(x, fail_message());
    for (std::size_t i = 0; i < x.steps.size(); ++i) {
      if (!wait_result(deadline)) return lose(x, fail_message());
      PgResult res(PQgetResult(conn_));
      if (!res) return lose(x, fail_message());
      const auto st = res.status();
      if (st == PGRES_FATAL_ERROR && x.failed < 0) {
        x.failed = static_cast<int>(i);
        const std::string state = res.sqlstate();
        x.error = classify(state);
        x.message = res.message();
        if (is_connection_state(state) || PQstatus(conn_) == CONNECTION_BAD) {
          x.results.push_back(std::move(res));
          return lose(x, x.message);
        }
      } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED &&
                 x.failed < 0) {
        x.failed = static_cast<int>(i);
        x.error = err(StoreErrc::internal);
        x.message = std::string("unexpected result status ") + PQresStatus(st);
      }
      x.results.push_back(std::move(res));
      // Each statement's results end with a NULL.
      if (!wait_result(deadline)) return lose(x, fail_message());
      if (PGresult* extra = PQgetResult(conn_); extra != nullptr) {
        PQclear(extra);
        return lose(x, "more results than statements");
      }
    }
    if (!wait_result(deadline)) return lose(x, fail_message());
    PgResult sync(PQgetResult(conn_));
    if (!sync || sync.status() != PGRES_PIPELINE_SYNC) return lose(x, "pipeline out of step");
  }

 private:
  PgConn(PGconn* c, const ConnectSettings& s) : conn_(c), settings_(s) {
    for (std::size_t i = 0; i < kStmtCount; ++i) names_[i] = stmt_name(static_cast<Stmt>(i));
  }

  static void on_notice(void*, const char* message) {
    spdlog::debug("postgres store: server notice: {}", one_line(message));
  }

  Result<Ok, std::string> prepare_all() {
    if (PQenterPipelineMode(conn_) == 0) return unexpected(fail_message());
    for (std::size_t i = 0; i < kStmtCount; ++i) {
      if (PQsendPrepare(conn_, names_[i].c_str(), kStmtSql[i], 0, nullptr) == 0) {
        return unexpected(fail_message());
      }
    }
    const auto deadline = settings_.deadline();
    if (PQpipelineSync(conn_) == 0 || !flush(deadline)) return unexpected(fail_message());
    std::string error;
    for (std::size_t i = 0; i < kStmtCount; ++i) {
      if (!wait_result(deadline)) return unexpected(fail_message());
      PgResult res(PQgetResult(conn_));
      if (!res) return unexpected(fail_message());
      if (res.status() != PGRES_COMMAND_OK && error.empty()) {
        error = "cannot prepare statement " + std::to_string(i) + ": " + res.message();
      }
      if (!wait_result(deadline)) return unexpected(fail_message());
      if (PGresult* extra = PQgetResult(conn_); extra != nullptr) PQclear(extra);
    }
    if (!wait_result(deadline)) return unexpected(fail_message());
    PgResult sync(PQgetResult(conn_));
    if (!error.empty()) return unexpected(error);
    if (!sync || sync.status() != PGRES_PIPELINE_SYNC)
      return unexpected(std::string("pipeline out of step"));
    return Ok{};
  }

  std::string fail_message() {
    if (timed_out_) return "no answer from the server within the deadline";
    std::string m = one_line(PQerrorMessage(conn_));
    return m.empty() ? std::string("connection lost") : m;
  }

  void lose(Exchange& x, const std::string& message) {
    broken_ = true;
    x.lost = true;
    x.error = err(StoreErrc::unavailable);
    x.message = message;
    // Closing the socket now ends the server side's transaction too, and makes later use fail
    // fast instead of waiting on a dead peer.
    PQfinish(conn_);
    conn_ = nullptr;
  }

  // Waits until the socket is ready for `events` or the deadline passes.
  bool wait_socket(short events, Clock::time_point deadline) {
    const int fd = PQsocket(conn_);
    if (fd < 0) return false;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        timed_out_ = true;
        return false;
      }
      pollfd p{fd, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1'000'000)));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
  }

  // Sends everything buffered. While the output is blocked, input is read too, so that a server
  // blocked writing results to us cannot deadlock with us writing statements to it.
  bool flush(Clock::time_point deadline) {
    if (conn_ == nullptr) return false;
    for (;;) {
      const int r = PQflush(conn_);
      if (r == 0) return true;
      if (r < 0) return false;
      if (!wait_socket(POLLOUT | POLLIN, deadline)) return false;
      if (PQconsumeInput(conn_) == 0) return false;
    }
  }

  // Reads until PQgetResult would not block.
  bool wait_result(Clock::time_point deadline) {
    if (conn_ == nullptr) return false;
    while (PQisBusy(conn_) != 0) {
      if (!wait_socket(POLLIN, deadline)) return false;
      if (PQconsumeInput(conn_) == 0) return false;
    }
    return true;
  }

  PGconn* conn_;
  ConnectSettings settings_;
  std::array<std::string, kStmtCount> names_;
  bool broken_ = false;
  bool timed_out_ = false;
};

// ---------------------------------------------------------------------------------------------
// Sessions: what an operation runs its statements through. A writer's session belongs to the
// current batch transaction; control statements it defers (savepoints) travel at the head of
// the next round trip instead of costing one of their own.

class Session {
 public:
  Session(PgConn& conn, const ConnectSettings& settings, std::int64_t now_ms)
      : conn_(conn), settings_(settings), now_ms_(now_ms) {}

  std::int64_t now_ms() const { return now_ms_; }
  void set_now_ms(std::int64_t v) { now_ms_ = v; }

  // Queues a control statement for the head of the next round trip.
  void defer(const char* sql) { deferred_.push_back(sql); }
  bool has_deferred() const { return !deferred_.empty(); }

  // Runs `x` after the deferred statements in one round trip. Returns the offset of x's first
  // step in the exchange actually sent. A failure of a deferred statement or of the connection
  // makes the whole batch fail (fatal()).
  std::error_code exchange(Exchange& x) {
    Exchange full;
    for (const char* sql : deferred_) full.add_control(sql);
    const int offset = static_cast<int>(deferred_.size());
    deferred_.clear();
    for (auto& s : x.steps) full.steps.push_back(std::move(s));
    conn_.round_trip(full, settings_.deadline());
    if (full.lost) {
      fatal_ = full.error;
      spdlog::warn("postgres store: connection lost: {}", full.message);
    } else if (full.failed >= 0 && full.failed < offset) {
      fatal_ = full.error;
      spdlog::warn("postgres store: transaction control failed: {}", full.message);
    } else if (full.failed >= 0) {
      spdlog::debug("postgres store: statement failed: {}", full.message);
    }
    x.steps.clear();
    for (int i = 0; i < static_cast<int>(full.steps.size()); ++i) {
      if (i >= offset) x.steps.push_back(std::move(full.steps[i]));
    }
    x.results.clear();
    for (int i = offset; i < static_cast<int>(full.results.size()); ++i) {
      x.results.push_back(std::move(full.results[i]));
    }
    x.failed = full.failed < 0 ? -1 : std::max(-1, full.failed - offset);
    if (full.failed >= 0 && full.failed < offset) x.failed = 0;
    x.error = full.error;
    x.message = full.message;
    x.lost = full.lost;
    if (fatal_) return fatal_;
    return x.failed >= 0 ? x.error : std::error_code{};
  }

  // One statement in one round trip.
  Result<PgResult> query(Stmt s, Params p) {
    Exchange x;
    x.add(s, std::move(p));
    if (auto e = exchange(x)) {
      if (x.error == StoreErrc::internal && !x.message.empty()) {
        spdlog::warn("postgres store: {} (statement {})", x.message, static_cast<int>(s));
      }
      return unexpected(e);
    }
    return std::move(x.results.front());
  }

  // A failure that ends the batch (lost connection, failed transaction control).
  std::error_code fatal() const { return fatal_; }
  // Ends the batch with `ec`: the transaction is unusable (a statement outside any savepoint
  // failed, or COMMIT did).
  void fail(std::error_code ec) {
    if (!fatal_) fatal_ = ec;
  }

  // Room names whose row lock this transaction holds for good.
  bool holds(const std::string& room) const { return locked_.contains(room); }
  void hold(const std::string& room) { locked_.insert(room); }
  // A lock taken inside an operation's savepoint lasts only if the operation succeeds: rolling
  // the savepoint back releases it. Operations note their locks here; end_op() keeps or drops
  // them.
  void note_lock(const std::string& room) { pending_.push_back(room); }
  void end_op(bool succeeded) {
    if (succeeded) locked_.insert(pending_.begin(), pending_.end());
    pending_.clear();
  }

 private:
  PgConn& conn_;
  const ConnectSettings& settings_;
  std::int64_t now_ms_;
  std::vector<const char*> deferred_;
  std::error_code fatal_;
  std::set<std::string> locked_;
  std::vector<std::string> pending_;
};

// Whether `s` can be a PostgreSQL text value: valid UTF-8 without NUL. A name that is not can
// exist in no table, so the set-wise append answers for it without asking the server (which
// would refuse the whole statement).
bool storable_text(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The operations. Each runs in a session: writes inside the writer's batch transaction (and
// their own savepoint), reads in autocommit mode, one statement each. They return errors as
// values; a database failure comes back as `unavailable` or `internal`.

struct RoomRow {
  RoomKind kind = RoomKind::public_room;
  std::uint64_t last_seq = 0;
  bool member = false;  // whether the user asked about is a member
};

// The room, locked, and whether `user` is a member of it; nullopt if the room does not exist.
Result<std::optional<RoomRow>> find_room(Session& s, const std::string& room,
                                         const std::string& user) {
  auto r = s.query(Stmt::find_room_locked, std::move(Params().text(room).text(user)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return std::optional<RoomRow>();
  auto kind = kind_from_string(r->str(0, 0));
  if (!kind) {
    spdlog::error("postgres store: room {} has an unknown kind", room);
    return unexpected(err(StoreErrc::internal));
  }
  s.note_lock(room);
  return std::optional<RoomRow>(RoomRow{*kind, r->u64(0, 1), r->boolean(0, 2)});
}

Result<bool> user_exists(Session& s, const std::string& user) {
  auto r = s.query(Stmt::user_exists, std::move(Params().text(user)));
  if (!r) return unexpected(r.error());
  return r->rows() > 0;
}

// Adds `user` to `room` unless already a member. A new membership's read marker starts at the
// room's current last_seq: what was said before one joined is not "unread".
Result<bool> add_member(Session& s, const std::string& room, const std::string& user,
                        std::uint64_t last_seq) {
  auto r = s.query(Stmt::add_member,
                   std::move(Params().text(room).text(user).u64(last_seq).i64(s.now_ms())));
  if (!r) return unexpected(r.error());
  return r->rows() > 0;
}

Result<Ok> op_create_user(Session& s, const std::string& user, const std::string& hash) {
  auto r = s.query(Stmt::create_user, std::move(Params().text(user).text(hash).i64(s.now_ms())));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::conflict));
  return Ok{};
}

Result<UserAuth> op_get_user(Session& s, const std::string& user) {
  auto r = s.query(Stmt::get_user, std::move(Params().text(user)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  return UserAuth{user, r->str(0, 0)};
}

Result<Ok> op_create_token(Session& s, const std::string& hash, const std::string& user,
                           std::int64_t expires_at) {
  auto exists = user_exists(s, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  auto r = s.query(Stmt::create_token, std::move(Params().text(hash).text(user).i64(expires_at)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::conflict));
  return Ok{};
}

Result<TokenInfo> op_lookup_token(Session& s, const std::string& hash) {
  auto r = s.query(Stmt::lookup_token, std::move(Params().text(hash)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  return TokenInfo{r->str(0, 0), r->i64(0, 1), r->boolean(0, 2)};
}

Result<Ok> op_set_admin(Session& s, const std::string& user, bool admin) {
  auto r = s.query(Stmt::set_admin, std::move(Params().text(user).i64(admin ? 1 : 0)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  return Ok{};
}

// Marks the user deleted and removes its tokens, memberships and invitations, in one statement
// (so in the operation's savepoint, all or nothing). The row stays as a tombstone so that
// create_user still finds the name taken; the messages stay. Every row it changes is covered by
// the batch's locks but the user's tokens: delete_token (a logout) locks only the token's hash,
// so this may wait for a logout on another node. That wait can close a cycle only if one batch
// deletes two users while another logs both out in the other order; PostgreSQL's deadlock
// detector then fails one of the two operations with `unavailable`, and a retry succeeds.
Result<Ok> op_delete_user(Session& s, const std::string& user) {
  auto r = s.query(Stmt::delete_user, std::move(Params().text(user).i64(s.now_ms())));
  if (!r) return unexpected(r.error());
  bool found = false;
  for (int i = 0; i < r->rows(); ++i) {
    if (!r->null(i, 0)) {
      found = true;
      continue;
    }
    // The batch locked every room of the user at its start (see delete_user's LockNeeds). A
    // membership in a room it did not lock would mean another writer added it without the "u:"
    // lock; changing it unlocked could let an append in flight there commit after the deletion.
    // Nothing is kept (the savepoint rolls back) and the caller may retry.
    if (const std::string room = r->str(i, 1); !s.holds(room)) {
      spdlog::warn("postgres store: delete_user {}: room {} was not locked; retry", user, room);
      return unexpected(err(StoreErrc::unavailable));
    }
  }
  if (!found) return unexpected(err(StoreErrc::not_found));
  return Ok{};
}

Result<TokenInfo> op_delete_token(Session& s, const std::string& hash) {
  auto r = s.query(Stmt::delete_token, std::move(Params().text(hash)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  return TokenInfo{r->str(0, 0), r->i64(0, 1)};
}

Result<Ok> op_create_room(Session& s, const std::string& room, RoomKind kind,
                          const std::string& creator) {
  auto exists = user_exists(s, creator);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  {
    auto r =
        s.query(Stmt::insert_room,
                std::move(Params().text(room).text(to_string(kind)).text(creator).i64(s.now_ms())));
    if (!r) return unexpected(r.error());
    if (r->rows() == 0) return unexpected(err(StoreErrc::conflict));
  }
  // The new row is this transaction's until it commits: nobody else can lock it meanwhile.
  s.note_lock(room);
  auto added = add_member(s, room, creator, 0);
  if (!added) return unexpected(added.error());
  return Ok{};
}

Result<JoinResult> op_join_room(Session& s, const std::string& room, const std::string& user) {
  auto found = find_room(s, room, user);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  const RoomRow r = **found;
  if (r.member) return JoinResult{r.last_seq, r.kind, false};
  auto exists = user_exists(s, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  // A dm room has exactly its two users; nobody else gets in, invited or not.
  if (r.kind == RoomKind::dm) return unexpected(err(StoreErrc::forbidden));
  {
    // Joining consumes any invitation, so leaving a private room needs a new one to come back.
    auto d = s.query(Stmt::delete_invite, std::move(Params().text(room).text(user)));
    if (!d) return unexpected(d.error());
    if (r.kind == RoomKind::private_room && d->rows() == 0) {
      return unexpected(err(StoreErrc::forbidden));
    }
  }
  auto added = add_member(s, room, user, r.last_seq);
  if (!added) return unexpected(added.error());
  return JoinResult{r.last_seq, r.kind, true};
}

Result<Ok> op_leave_room(Session& s, const std::string& room, const std::string& user) {
  auto found = find_room(s, room, user);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  if (!(*found)->member) return Ok{};
  auto r = s.query(Stmt::delete_member, std::move(Params().text(room).text(user)));
  if (!r) return unexpected(r.error());
  return Ok{};
}

Result<Ok> op_invite(Session& s, const std::string& room, const std::string& inviter,
                     const std::string& user) {
  auto found = find_room(s, room, inviter);
  if (!found) return unexpected(found.error());
  if (!*found) return unexpected(err(StoreErrc::not_found));
  auto exists = user_exists(s, user);
  if (!exists) return unexpected(exists.error());
  if (!*exists) return unexpected(err(StoreErrc::not_found));
  const RoomRow r = **found;
  if (!r.member || r.kind == RoomKind::dm) return unexpected(err(StoreErrc::forbidden));
  {
    auto m = s.query(Stmt::is_member, std::move(Params().text(room).text(user)));
    if (!m) return unexpected(m.error());
    if (m->rows() > 0) return Ok{};
  }
  auto r2 = s.query(Stmt::insert_invite,
                    std::move(Params().text(room).text(user).text(inviter).i64(s.now_ms())));
  if (!r2) return unexpected(r2.error());
  return Ok{};
}

Result<JoinResult> op_open_dm(Session& s, const std::string& room, const std::string& user,
                              const std::string& other) {
  for (const std::string* u : {&user, &other}) {
    auto exists = user_exists(s, *u);
    if (!exists) return unexpected(exists.error());
    if (!*exists) return unexpected(err(StoreErrc::not_found));
  }
  auto found = find_room(s, room, user);
  if (!found) return unexpected(found.error());
  std::uint64_t last_seq = 0;
  if (*found) {
    // The name is the caller's dm name; a room of another kind under it is a naming bug.
    if ((*found)->kind != RoomKind::dm) return unexpected(err(StoreErrc::conflict));
    last_seq = (*found)->last_seq;
  } else {
    // The batch holds the advisory lock on this name, so no other node creates it meanwhile.
    auto r = s.query(Stmt::insert_room,
                     std::move(Params().text(room).text("dm").text(user).i64(s.now_ms())));
    if (!r) return unexpected(r.error());
    if (r->rows() == 0) return unexpected(err(StoreErrc::unavailable));
    s.note_lock(room);
  }
  // A dm always has both of its users: opening it again brings back one who had left.
  auto added = add_member(s, room, user, last_seq);
  if (!added) return unexpected(added.error());
  auto other_added = add_member(s, room, other, last_seq);
  if (!other_added) return unexpected(other_added.error());
  return JoinResult{last_seq, RoomKind::dm, *added};
}

Result<bool> op_is_member(Session& s, const std::string& room, const std::string& user) {
  auto r = s.query(Stmt::is_member, std::move(Params().text(room).text(user)));
  if (!r) return unexpected(r.error());
  return r->rows() > 0;
}

Result<std::vector<RoomSummary>> op_list_rooms(Session& s, const std::string& user) {
  auto r = s.query(Stmt::list_rooms, std::move(Params().text(user)));
  if (!r) return unexpected(r.error());
  std::vector<RoomSummary> rooms;
  rooms.reserve(static_cast<std::size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    auto kind = kind_from_string(r->str(i, 1));
    if (!kind) return unexpected(err(StoreErrc::internal));
    rooms.push_back(RoomSummary{r->str(i, 0), *kind, r->u64(i, 2), r->u64(i, 3)});
  }
  return rooms;
}

Result<RoomSummary> op_room_info(Session& s, const std::string& room) {
  auto r = s.query(Stmt::room_info, std::move(Params().text(room)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  auto kind = kind_from_string(r->str(0, 0));
  if (!kind) return unexpected(err(StoreErrc::internal));
  return RoomSummary{room, *kind, r->u64(0, 1), 0};
}

// Reads the message columns (seq, sender, body, ts_ms, client_msg_id) of row i.
StoredMessage message_row(const PgResult& r, int i, const std::string& room) {
  return StoredMessage{room, r.u64(i, 0), r.str(i, 1), r.str(i, 2), r.i64(i, 3), r.str(i, 4)};
}

Result<std::vector<StoredMessage>> op_read_range(Session& s, const std::string& room,
                                                 std::uint64_t after, std::uint64_t up_to,
                                                 std::uint32_t limit) {
  auto r =
      s.query(Stmt::read_range, std::move(Params().text(room).u64(after).u64(up_to).i64(limit)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  std::vector<StoredMessage> messages;
  messages.reserve(static_cast<std::size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) {
    if (r->null(i, 0)) continue;  // the room exists but has no such message
    messages.push_back(message_row(*r, i, room));
  }
  return messages;
}

Result<HistoryPage> op_history(Session& s, const std::string& room, std::uint64_t before,
                               std::uint32_t limit) {
  auto r =
      s.query(Stmt::history,
              std::move(Params().text(room).u64(before).i64(static_cast<std::int64_t>(limit) + 1)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return unexpected(err(StoreErrc::not_found));
  HistoryPage page;
  for (int i = 0; i < r->rows(); ++i) {
    if (r->null(i, 0)) continue;
    if (page.messages.size() == limit) {
      page.has_more = true;
      break;
    }
    page.messages.push_back(message_row(*r, i, room));
  }
  std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

Result<std::uint64_t> op_set_read(Session& s, const std::string& room, const std::string& user,
                                  std::uint64_t seq) {
  // Markers only move forward, and never past the last message: a client cannot claim to have
  // read what does not exist yet.
  auto r = s.query(Stmt::set_read, std::move(Params().text(room).text(user).u64(seq)));
  if (!r) return unexpected(r.error());
  if (r->rows() == 0 || r->null(0, 0)) return unexpected(err(StoreErrc::not_found));
  if (r->null(0, 1)) return unexpected(err(StoreErrc::forbidden));
  s.note_lock(room);
  return r->null(0, 2) ? r->u64(0, 1) : r->u64(0, 2);
}

// One append on its own, the slow path that a run falls back to when its set-wise insert fails,
// so that the failing request fails alone. Same rules as the set-wise path.
Result<AppendResult> op_append_one(Session& s, const AppendRequest& req) {
  Exchange x;
  ArrayBuilder room(kTextOid);
  room.add(req.room);
  x.add(Stmt::late_lock_rooms, std::move(Params().array(room)));
  ArrayBuilder rooms(kTextOid), senders(kTextOid), ids(kByteaOid);
  rooms.add(req.room);
  senders.add(req.from);
  ids.add(req.client_msg_id);
  const int probe =
      x.add(Stmt::append_probe, std::move(Params().array(rooms).array(senders).array(ids)));
  if (auto e = s.exchange(x)) return unexpected(e);
  const PgResult& p = x.results[static_cast<std::size_t>(probe)];
  if (p.rows() != 1) return unexpected(err(StoreErrc::internal));
  // A retried send finds its original row through the unique key and gets it back unchanged.
  if (!p.null(0, 3)) {
    return AppendResult{
        StoredMessage{req.room, p.u64(0, 3), req.from, p.str(0, 4), p.i64(0, 5), req.client_msg_id},
        true};
  }
  if (p.null(0, 1)) return unexpected(err(StoreErrc::not_found));
  if (!p.boolean(0, 2)) return unexpected(err(StoreErrc::forbidden));
  s.note_lock(req.room);
  const std::uint64_t seq = p.u64(0, 1) + 1;
  Exchange w;
  ArrayBuilder r2(kTextOid), seqs(kInt8Oid), from(kTextOid), cmid(kByteaOid), body(kByteaOid);
  r2.add(req.room);
  seqs.add_i64(to_db(seq));
  from.add(req.from);
  cmid.add(req.client_msg_id);
  body.add(req.body);
  w.add(Stmt::append_insert,
        std::move(
            Params().array(r2).array(seqs).array(from).array(cmid).array(body).i64(s.now_ms())));
  ArrayBuilder br(kTextOid), bs(kInt8Oid);
  br.add(req.room);
  bs.add_i64(to_db(seq));
  w.add(Stmt::append_bump, std::move(Params().array(br).array(bs)));
  if (auto e = s.exchange(w)) return unexpected(e);
  return AppendResult{
      StoredMessage{req.room, seq, req.from, req.body, s.now_ms(), req.client_msg_id}, false};
}

// ---------------------------------------------------------------------------------------------
// Tasks and queues.

// What a write locks before the batch touches anything: the rows of the rooms it names, and
// advisory locks on keys it may insert that no row protects yet (a user name, a token hash, a
// new room's name). Unique-index insertions of the same key by two transactions wait on each
// other, so without these two nodes creating users {a, b} and {b, a} could deadlock.
//
// User deletion adds two things. Every write that checks that a user exists before adding a row
// that names it (a token, a membership, an invitation) takes the user's "u:" key, which
// delete_user takes too: the check and the deletion cannot interleave, so no such row survives
// the deletion of its user, and once delete_user holds the key the user's rooms cannot change
// but by shrinking. And delete_user locks the rows of those rooms (rooms_of_user): append checks
// membership under the room's row lock and relies on that lock to keep the membership as it saw
// it until its batch commits, as leave_room does. Deleting memberships without the room locks
// would let a send that passed its check commit after the deletion was acknowledged. The rooms
// are found and locked in the batch's first round trip, after its advisory locks and with its
// other rooms in name order, rather than inside the operation: a lock taken there would be out
// of the global order and could deadlock with another node's batch.
struct LockNeeds {
  std::string room;
  std::vector<std::string> keys;
  std::string rooms_of_user;
};

class Task {
 public:
  Task(metrics::Histogram& latency, LockNeeds needs)
      : latency_(latency), needs_(std::move(needs)), submitted_(Clock::now()) {}
  virtual ~Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  const LockNeeds& needs() const { return needs_; }
  // Non-null for appends, which a batch runs set-wise.
  virtual const AppendRequest* append_request() const { return nullptr; }
  virtual void set_append(Result<AppendResult>) {}

  // Runs the operation and keeps its outcome; returns the error, if any.
  virtual std::error_code run(Session& s) = 0;
  // Replaces the outcome with an error (the batch did not commit, or the store is closing).
  virtual void fail(std::error_code ec) = 0;
  // Records the latency and calls the callback with the outcome. Called exactly once, after
  // run() or fail().
  virtual void complete() = 0;

 protected:
  // Latency counts from the call to the completion: what the caller waits for, queueing and
  // the batch's commit included.
  void record() {
    latency_.observe(std::chrono::duration<double>(Clock::now() - submitted_).count());
  }

  template <class T>
  static void call(Callback<T>& cb, Result<T> outcome) {
    if (!cb) return;
    // A throwing callback must not take the store's thread down with it.
    try {
      cb(std::move(outcome));
    } catch (const std::exception& e) {
      spdlog::error("postgres store: a callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("postgres store: a callback threw");
    }
  }

 private:
  metrics::Histogram& latency_;
  LockNeeds needs_;
  Clock::time_point submitted_;
};

template <class T, class Fn>
class TypedTask final : public Task {
 public:
  TypedTask(metrics::Histogram& latency, LockNeeds needs, Fn fn, Callback<T> cb)
      : Task(latency, std::move(needs)), fn_(std::move(fn)), cb_(std::move(cb)) {}

  std::error_code run(Session& s) override {
    try {
      outcome_.emplace(fn_(s));
    } catch (const std::exception& e) {
      // Only allocation can throw here; the operation's savepoint is rolled back like any error.
      spdlog::error("postgres store: operation failed: {}", e.what());
      outcome_.emplace(unexpected(err(StoreErrc::internal)));
    }
    return outcome_->has_value() ? std::error_code{} : outcome_->error();
  }
  void fail(std::error_code ec) override { outcome_.emplace(unexpected(ec)); }
  void complete() override {
    if (!outcome_) outcome_.emplace(unexpected(err(StoreErrc::internal)));
    record();
    call(cb_, std::move(*outcome_));
  }

 private:
  Fn fn_;
  Callback<T> cb_;
  std::optional<Result<T>> outcome_;
};

class AppendTask final : public Task {
 public:
  AppendTask(metrics::Histogram& latency, AppendRequest req, Callback<AppendResult> cb)
      : Task(latency, LockNeeds{req.room, {}, {}}), req_(std::move(req)), cb_(std::move(cb)) {}

  const AppendRequest* append_request() const override { return &req_; }
  void set_append(Result<AppendResult> r) override { outcome_.emplace(std::move(r)); }
  std::error_code run(Session& s) override {
    try {
      outcome_.emplace(op_append_one(s, req_));
    } catch (const std::exception& e) {
      spdlog::error("postgres store: append failed: {}", e.what());
      outcome_.emplace(unexpected(err(StoreErrc::internal)));
    }
    return outcome_->has_value() ? std::error_code{} : outcome_->error();
  }
  void fail(std::error_code ec) override { outcome_.emplace(unexpected(ec)); }
  void complete() override {
    if (!outcome_) outcome_.emplace(unexpected(err(StoreErrc::internal)));
    record();
    call(cb_, std::move(*outcome_));
  }

 private:
  AppendRequest req_;
  Callback<AppendResult> cb_;
  std::optional<Result<AppendResult>> outcome_;
};

// A FIFO of tasks shared by the producers (any thread) and one or more worker threads.
class TaskQueue {
 public:
  enum class Popped { tasks, idle, stopped };

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

  // Waits up to `idle` for work and moves up to `max` tasks into `out`. Returns `idle` when the
  // time passed or poke() was called with nothing queued, and `stopped` when the queue is
  // stopping and empty: the worker should exit. Stopping still hands out queued tasks, so that
  // everything submitted before the store closes is run.
  Popped pop(std::vector<std::unique_ptr<Task>>& out, std::size_t max, Clock::duration idle) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, idle, [&] { return !tasks_.empty() || stopping_ || poked_; });
    poked_ = false;
    if (tasks_.empty()) return stopping_ ? Popped::stopped : Popped::idle;
    const std::size_t n = std::min(max, tasks_.size());
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(std::move(tasks_.front()));
      tasks_.pop_front();
    }
    return Popped::tasks;
  }

  // Wakes one waiting worker with nothing to do, so that it looks at the connection now.
  void poke() {
    {
      std::lock_guard lock(mutex_);
      poked_ = true;
    }
    cv_.notify_one();
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
  bool poked_ = false;
  bool closed_ = false;
};

void fail_and_complete(Task& t) {
  t.fail(err(StoreErrc::unavailable));
  t.complete();
}

// Exponential backoff between connection attempts.
class Backoff {
 public:
  Backoff(milliseconds min, milliseconds max) : min_(min), max_(max), delay_(min) {}
  bool due() const { return Clock::now() >= next_; }
  Clock::time_point next() const { return next_; }
  void failed() {
    next_ = Clock::now() + delay_;
    delay_ = std::min(max_, delay_ * 2);
  }
  void succeeded() {
    delay_ = min_;
    next_ = {};
  }

 private:
  milliseconds min_;
  milliseconds max_;
  milliseconds delay_;
  Clock::time_point next_{};
};

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string redact_postgres_url(const std::string& url) {
  std::string out = url;
  // URI form: scheme://user:password@host...
  if (const auto scheme = out.find("://"); scheme != std::string::npos) {
    const auto start = scheme + 3;
    const auto end = out.find_first_of("/?", start);
    const auto authority_end = end == std::string::npos ? out.size() : end;
    const auto at = out.rfind('@', authority_end);
    if (at != std::string::npos && at > start) {
      const auto colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... as a URI query parameter or a key=value pair.
  for (std::size_t pos = out.find("password="); pos != std::string::npos;
       pos = out.find("password=", pos + 1)) {
    const auto value = pos + 9;
    const auto end = out.find_first_of("& ", value);
    out.replace(value, (end == std::string::npos ? out.size() : end) - value, "***");
  }
  return out;
}

struct PostgresStore::Impl {
  PostgresOptions options;
  ConnectSettings settings;
  std::atomic<bool> ready{false};
  std::array<metrics::Histogram*, kOpCount> latency{};
  metrics::Histogram* batch_size = nullptr;
  int schema_version = 0;

  // The writer's connection and its state, used by the writer thread only (and by the
  // constructor before the thread starts).
  std::unique_ptr<PgConn> writer;
  Backoff writer_backoff;
  Clock::time_point writer_last_ok{};
  bool reported_down = false;

  // One connection per reader thread, each used by its thread only.
  struct Reader {
    std::unique_ptr<PgConn> conn;
    Backoff backoff;
  };
  std::vector<std::unique_ptr<Reader>> readers;

  TaskQueue write_queue;
  TaskQueue read_queue;
  std::thread writer_thread;
  std::vector<std::thread> reader_threads;

  Impl(PostgresOptions opts, metrics::Registry& registry);
  ~Impl();

  [[noreturn]] void fail_open(const std::string& reason) const {
    throw std::runtime_error("cannot open PostgreSQL store at " + redact_postgres_url(options.url) +
                             ": " + one_line(reason));
  }
  void migrate();
  void shutdown();

  void writer_loop();
  void maintain_writer();
  bool reconnect_writer();
  void drop_writer(const std::string& why);
  void run_batch(std::vector<std::unique_ptr<Task>>& batch);
  // One attempt at a batch. Returns the batch's error ({} when committed); sets commit_in_doubt
  // when the connection was lost after COMMIT was sent.
  std::error_code execute_batch(std::vector<std::unique_ptr<Task>>& batch, bool& commit_in_doubt);
  void rollback_after_failure();

  void reader_loop(Reader& r);

  template <class T, class Fn>
  void submit(TaskQueue& queue, Op op, LockNeeds needs, Fn fn, Callback<T> cb) {
    std::unique_ptr<Task> task = std::make_unique<TypedTask<T, Fn>>(
        *latency[static_cast<std::size_t>(op)], std::move(needs), std::move(fn), std::move(cb));
    // The queue is closed only while the store is being destroyed; a task submitted then (by a
    // callback of another task) is refused here rather than left uncalled.
    if (auto refused = queue.push(std::move(task))) fail_and_complete(*refused);
  }
  template <class T, class Fn>
  void write(Op op, LockNeeds needs, Fn fn, Callback<T> cb) {
    submit<T>(write_queue, op, std::move(needs), std::move(fn), std::move(cb));
  }
  template <class T, class Fn>
  void read(Op op, Fn fn, Callback<T> cb) {
    submit<T>(read_queue, op, {}, std::move(fn), std::move(cb));
  }
};

PostgresStore::Impl::Impl(PostgresOptions opts, metrics::Registry& registry)
    : options(std::move(opts)), writer_backoff(options.reconnect_min, options.reconnect_max) {
  if (options.url.empty()) fail_open("the URL is empty");
  options.pool_size = std::max(2u, options.pool_size);
  options.max_batch = std::max<std::size_t>(1, options.max_batch);
  options.query_timeout = std::max(options.query_timeout, milliseconds(100));
  options.reconnect_min = std::max(options.reconnect_min, milliseconds(1));
  options.reconnect_max = std::max(options.reconnect_max, options.reconnect_min);
  options.health_interval = std::max(options.health_interval, milliseconds(10));
  writer_backoff = Backoff(options.reconnect_min, options.reconnect_max);
  settings = ConnectSettings{options.url, options.connect_timeout_s, options.query_timeout};

  StoreMetrics m(registry);
  latency = m.latency;
  batch_size = m.batch_size;

  {
    // Migrations run with the simple protocol (a file holds several statements), so the writer
    // connects without pipeline mode first and reconnects with it afterwards.
    auto c = PgConn::connect(settings, false);
    if (!c) fail_open(c.error());
    writer = std::move(*c);
    migrate();
    writer.reset();
  }
  auto w = PgConn::connect(settings, true);
  if (!w) fail_open(w.error());
  writer = std::move(*w);
  writer_last_ok = Clock::now();
  for (unsigned i = 0; i + 1 < options.pool_size; ++i) {
    auto r = PgConn::connect(settings, true);
    if (!r) fail_open("reader connection: " + r.error());
    readers.push_back(std::make_unique<Reader>(
        Reader{std::move(*r), Backoff(options.reconnect_min, options.reconnect_max)}));
  }
  ready.store(true);
  try {
    writer_thread = std::thread([this] { writer_loop(); });
    for (auto& r : readers) reader_threads.emplace_back([this, p = r.get()] { reader_loop(*p); });
  } catch (const std::system_error& e) {
    // Threads that did start must be joined before the members they use go away.
    shutdown();
    fail_open(std::string("cannot start the store's threads: ") + e.what());
  }
}

// Applies every migration above the recorded version, one transaction each. Each transaction
// first takes an advisory lock that every node uses for this, then reads the version: nodes
// starting at once apply each migration exactly once, one after the other.
void PostgresStore::Impl::migrate() {
  const auto& migrations = postgres_migrations();
  int latest = 0;
  for (const auto& m : migrations) {
    if (m.version <= latest) fail_open("migration " + std::string(m.name) + " is out of order");
    latest = m.version;
  }
  const std::string timeout_ms =
      std::to_string(std::chrono::duration_cast<milliseconds>(kMigrationTimeout).count());
  for (;;) {
    const auto deadline = Clock::now() + kMigrationTimeout + std::chrono::seconds(5);
    auto head = writer->simple(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout = " + timeout_ms +
            "; SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey1) + ", " +
            std::to_string(kMigrationLockKey2) +
            "); CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer NOT NULL PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now()); "
            "SELECT coalesce(max(version), 0) FROM schema_version",
        deadline);
    if (!head) fail_open("cannot read the schema version: " + head.error());
    int current = 0;
    try {
      current = std::stoi(head->back().text_value());
    } catch (const std::exception&) {
      fail_open("cannot read the schema version: not a number");
    }
    if (current > latest) {
      (void)writer->simple("ROLLBACK", deadline);
      fail_open("schema version " + std::to_string(current) + " is newer than this build knows (" +
                std::to_string(latest) + ")");
    }
    auto next = std::find_if(migrations.begin(), migrations.end(),
                             [&](const Migration& m) { return m.version > current; });
    if (next == migrations.end()) {
      if (auto c = writer->simple("COMMIT", deadline); !c) {
        fail_open("cannot read the schema version: " + c.error());
      }
      schema_version = current;
      return;
    }
    auto applied = writer->simple(std::string(next->sql), deadline);
    if (applied) {
      // Migration names are file names (digits, letters, underscores): no quoting needed.
      applied = writer->simple("INSERT INTO schema_version (version, name) VALUES (" +
                                   std::to_string(next->version) + ", '" + std::string(next->name) +
                                   "'); COMMIT",
                               deadline);
    }
    if (!applied) {
      (void)writer->simple("ROLLBACK", deadline);
      fail_open("migration " + std::string(next->name) + " failed: " + applied.error());
    }
    spdlog::info("postgres store: applied migration {}", next->name);
  }
}

PostgresStore::Impl::~Impl() {
  shutdown();
}

// Idempotent: the store's destructor calls it while the store is whole, then ~Impl again.
void PostgresStore::Impl::shutdown() {
  // The writer drains first: its callbacks may still submit reads, which the readers serve.
  write_queue.stop();
  if (writer_thread.joinable()) writer_thread.join();
  for (auto& t : write_queue.close()) fail_and_complete(*t);
  read_queue.stop();
  for (auto& t : reader_threads) {
    if (t.joinable()) t.join();
  }
  for (auto& t : read_queue.close()) fail_and_complete(*t);
  readers.clear();
  writer.reset();
}

void PostgresStore::Impl::drop_writer(const std::string& why) {
  if (writer) spdlog::warn("postgres store: writer connection dropped: {}", why);
  writer.reset();
  ready.store(false);
  writer_backoff.failed();
}

bool PostgresStore::Impl::reconnect_writer() {
  auto c = PgConn::connect(settings, true);
  if (!c) {
    // The first failure of an outage is worth a warning; the retries that follow are not.
    if (ready.exchange(false) || !reported_down) {
      spdlog::warn("postgres store: cannot reconnect (retrying with backoff): {}", c.error());
    } else {
      spdlog::debug("postgres store: cannot reconnect: {}", c.error());
    }
    reported_down = true;
    writer_backoff.failed();
    return false;
  }
  reported_down = false;
  writer = std::move(*c);
  writer_backoff.succeeded();
  writer_last_ok = Clock::now();
  if (!ready.exchange(true)) spdlog::info("postgres store: reconnected");
  return true;
}

// Between batches: an idle connection is checked every health_interval (or at once when a
// reader saw the server go), and a missing one is rebuilt when the backoff allows, so that
// ready() follows the server even while nothing is written.
void PostgresStore::Impl::maintain_writer() {
  if (!writer) {
    if (writer_backoff.due()) reconnect_writer();
    return;
  }
  Exchange x;
  x.add(Stmt::ping, {});
  writer->round_trip(x, settings.deadline());
  if (x.lost || x.failed >= 0) {
    drop_writer(x.message);
    return;
  }
  writer_last_ok = Clock::now();
}

void PostgresStore::Impl::writer_loop() {
  std::vector<std::unique_ptr<Task>> batch;
  batch.reserve(options.max_batch);
  for (;;) {
    Clock::duration idle = options.health_interval;
    if (writer) {
      idle = std::max<Clock::duration>(Clock::duration::zero(),
                                       writer_last_ok + options.health_interval - Clock::now());
    } else {
      idle = std::max<Clock::duration>(milliseconds(1), writer_backoff.next() - Clock::now());
    }
    const auto popped = write_queue.pop(batch, options.max_batch, idle);
    if (popped == TaskQueue::Popped::stopped) return;
    if (popped == TaskQueue::Popped::idle) {
      maintain_writer();
      continue;
    }
    run_batch(batch);
    batch.clear();
  }
}

void PostgresStore::Impl::run_batch(std::vector<std::unique_ptr<Task>>& batch) {
  std::error_code error;
  bool outage = false;
  // While the server is away, writes fail at once (nothing is written) rather than wait for it;
  // the first batch after the backoff has passed tries to reconnect.
  if (!writer && !(writer_backoff.due() && reconnect_writer())) {
    error = err(StoreErrc::unavailable);
    outage = true;
  } else {
    bool in_doubt = false;
    error = execute_batch(batch, in_doubt);
    // A connection found dead before COMMIT was sent (the server restarted while this one was
    // idle) rolled nothing forward: the batch can run again, once, on a new connection.
    if (error && writer && writer->broken() && !in_doubt) {
      drop_writer("lost before commit");
      if (reconnect_writer()) error = execute_batch(batch, in_doubt);
    }
    if (error && writer && writer->broken()) drop_writer("lost during the batch");
  }
  if (error) {
    // During a known outage every batch fails the same way; the outage itself was logged.
    if (outage) {
      spdlog::debug("postgres store: a batch of {} operations failed: {}", batch.size(),
                    error.message());
    } else {
      spdlog::warn("postgres store: a batch of {} operations failed: {}", batch.size(),
                   error.message());
    }
    for (auto& task : batch) task->fail(error);
  } else {
    batch_size->observe(static_cast<double>(batch.size()));
    writer_last_ok = Clock::now();
  }
  for (auto& task : batch) task->complete();
}

// After a batch failed on a live connection: ends the aborted transaction so that the
// connection can serve the next batch, or drops the connection if even that fails.
void PostgresStore::Impl::rollback_after_failure() {
  if (!writer || writer->broken()) return;
  Exchange x;
  x.add_control("ROLLBACK");
  writer->round_trip(x, settings.deadline());
  if (x.lost || x.failed >= 0) drop_writer("cannot roll back: " + x.message);
}

namespace {

// A maximal run of consecutive appends in a batch, executed set-wise. `probed` lists the
// requests whose room and sender can be stored at all (valid UTF-8, no NUL); the others cannot
// match any row and are answered without the server.
struct AppendRun {
  std::vector<Task*> tasks;
  std::vector<std::size_t> probed;
};

// The probe of a run: for each probed request its room's counter, membership, and original.
Params probe_params(const AppendRun& run) {
  ArrayBuilder rooms(kTextOid), senders(kTextOid), ids(kByteaOid);
  for (std::size_t i : run.probed) {
    const AppendRequest& r = *run.tasks[i]->append_request();
    rooms.add(r.room);
    senders.add(r.from);
    ids.add(r.client_msg_id);
  }
  Params p;
  p.array(rooms).array(senders).array(ids);
  return p;
}

struct ProbeRow {
  bool room_exists = false;
  std::uint64_t last_seq = 0;
  bool member = false;
  bool duplicate = false;
  std::uint64_t seq = 0;
  std::string body;
  std::int64_t ts_ms = 0;
};

// One row per request of the run; requests that were not probed keep the defaults (no room).
std::vector<ProbeRow> read_probe(const PgResult& r, const AppendRun& run) {
  std::vector<ProbeRow> rows(run.tasks.size());
  for (int i = 0; i < r.rows(); ++i) {
    const auto k = r.i64(i, 0) - 1;  // WITH ORDINALITY counts from 1
    if (k < 0 || static_cast<std::size_t>(k) >= run.probed.size()) continue;
    ProbeRow& row = rows[run.probed[static_cast<std::size_t>(k)]];
    row.room_exists = !r.null(i, 1);
    row.last_seq = r.u64(i, 1);
    row.member = r.boolean(i, 2);
    row.duplicate = !r.null(i, 3);
    if (row.duplicate) {
      row.seq = r.u64(i, 3);
      row.body = r.str(i, 4);
      row.ts_ms = r.i64(i, 5);
    }
  }
  return rows;
}

// Probes the run in one round trip, or ends the batch if that fails (a statement outside any
// savepoint failed, so the transaction is unusable).
std::optional<std::vector<ProbeRow>> probe_run(Session& s, const AppendRun& run) {
  Exchange x;
  x.add(Stmt::append_probe, probe_params(run));
  if (auto e = s.exchange(x)) {
    s.fail(e);
    return std::nullopt;
  }
  return read_probe(x.results.front(), run);
}

// Executes one run of appends inside the batch transaction: probes every request in one
// statement (reusing `pre_probe` when the batch's first round trip carried it), decides each
// outcome here, then inserts every new message and bumps every room's counter in two statements
// under one savepoint. With `last`, COMMIT rides in the same round trip. If the set-wise insert
// fails (an unexpected constraint, a value the server refuses), the run is rolled back and each
// append runs alone in its own savepoint, so only the culprit fails.
void execute_run(Session& s, AppendRun& run, std::optional<PgResult> pre_probe, bool last,
                 bool& committed, bool& commit_in_doubt) {
  const std::size_t n = run.tasks.size();
  std::vector<ProbeRow> rows;
  if (pre_probe) {
    rows = read_probe(*pre_probe, run);
  } else if (auto probed = probe_run(s, run)) {
    rows = std::move(*probed);
  } else {
    return;
  }

  // Rooms the batch did not lock at its start (created since by another node) must be locked
  // before their counters are used: NOWAIT, so that this late lock cannot deadlock.
  std::vector<std::string> to_lock;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& room = run.tasks[i]->append_request()->room;
    if (rows[i].room_exists && !s.holds(room)) to_lock.push_back(room);
  }
  std::set<std::string> busy;  // rooms another writer holds right now
  if (!to_lock.empty()) {
    std::sort(to_lock.begin(), to_lock.end());
    to_lock.erase(std::unique(to_lock.begin(), to_lock.end()), to_lock.end());
    ArrayBuilder names(kTextOid);
    for (const auto& r : to_lock) names.add(r);
    Exchange x;
    x.add_control("SAVEPOINT late");
    x.add(Stmt::late_lock_rooms, std::move(Params().array(names)));
    x.add_control("RELEASE SAVEPOINT late");
    const int again = x.add(Stmt::append_probe, probe_params(run));
    s.exchange(x);
    if (s.fatal()) return;
    if (x.ok(again)) {
      for (const auto& r : to_lock) s.hold(r);
      rows = read_probe(x.results[static_cast<std::size_t>(again)], run);
    } else {
      // Another writer holds one of them: those appends answer `unavailable` (the client
      // retries), the rest of the run goes on.
      busy.insert(to_lock.begin(), to_lock.end());
      s.defer("ROLLBACK TO SAVEPOINT late");
      s.defer("RELEASE SAVEPOINT late");
      auto probed = probe_run(s, run);
      if (!probed) return;
      rows = std::move(*probed);
    }
  }

  // Decide every outcome in submission order. A key seen earlier in this run is a duplicate of
  // that request, exactly as if the earlier one had been committed first.
  std::map<std::string, std::uint64_t> counters;  // room -> last seq handed out
  std::map<std::tuple<std::string, std::string, std::string>, std::size_t> fresh;
  ArrayBuilder rooms(kTextOid), seqs(kInt8Oid), senders(kTextOid), ids(kByteaOid),
      bodies(kByteaOid);
  std::vector<Result<AppendResult>> outcomes;
  outcomes.reserve(n);
  std::size_t inserted = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const AppendRequest& req = *run.tasks[i]->append_request();
    const ProbeRow& row = rows[i];
    // A retried send finds its original row through the unique key and gets it back unchanged.
    if (row.duplicate) {
      outcomes.emplace_back(AppendResult{
          StoredMessage{req.room, row.seq, req.from, row.body, row.ts_ms, req.client_msg_id},
          true});
      continue;
    }
    auto key = std::make_tuple(req.room, req.from, req.client_msg_id);
    if (auto it = fresh.find(key); it != fresh.end()) {
      AppendResult dup = *outcomes[it->second];
      dup.duplicate = true;
      outcomes.emplace_back(std::move(dup));
      continue;
    }
    if (!row.room_exists) {
      outcomes.emplace_back(unexpected(err(StoreErrc::not_found)));
      continue;
    }
    if (busy.contains(req.room)) {
      outcomes.emplace_back(unexpected(err(StoreErrc::unavailable)));
      continue;
    }
    if (!row.member) {
      outcomes.emplace_back(unexpected(err(StoreErrc::forbidden)));
      continue;
    }
    // The counter and the insert share this transaction: if either fails both roll back, so a
    // seq is never skipped or handed out twice.
    const auto counter = counters.try_emplace(req.room, row.last_seq).first;
    const std::uint64_t seq = ++counter->second;
    rooms.add(req.room);
    seqs.add_i64(to_db(seq));
    senders.add(req.from);
    ids.add(req.client_msg_id);
    bodies.add(req.body);
    ++inserted;
    fresh.emplace(std::move(key), i);
    outcomes.emplace_back(AppendResult{
        StoredMessage{req.room, seq, req.from, req.body, s.now_ms(), req.client_msg_id}, false});
  }

  if (inserted > 0) {
    ArrayBuilder bump_rooms(kTextOid), bump_seqs(kInt8Oid);
    for (const auto& [room, seq] : counters) {
      bump_rooms.add(room);
      bump_seqs.add_i64(to_db(seq));
    }
    Exchange x;
    x.add_control("SAVEPOINT run");
    x.add(Stmt::append_insert,
          std::move(Params().array(rooms).array(seqs).array(senders).array(ids).array(bodies).i64(
              s.now_ms())));
    x.add(Stmt::append_bump, std::move(Params().array(bump_rooms).array(bump_seqs)));
    const int release = x.add_control("RELEASE SAVEPOINT run");
    int commit = -1;
    if (last) {
      commit = x.add_control("COMMIT");
      commit_in_doubt = true;
    }
    s.exchange(x);
    if (s.fatal()) return;  // lost: commit_in_doubt says whether COMMIT may have run
    if (commit >= 0) commit_in_doubt = false;
    if (commit >= 0 && x.ok(commit)) {
      committed = true;
    } else if (commit >= 0 && !x.skipped(commit)) {
      // COMMIT itself failed: the transaction is gone and nothing of the batch is stored.
      spdlog::warn("postgres store: COMMIT failed: {}", x.message);
      s.fail(err(StoreErrc::unavailable));
      return;
    }
    if (!x.ok(release)) {
      spdlog::warn(
          "postgres store: a set-wise append of {} messages failed ({}); retrying them "
          "one by one",
          inserted, x.message);
      s.defer("ROLLBACK TO SAVEPOINT run");
      s.defer("RELEASE SAVEPOINT run");
      for (Task* t : run.tasks) {
        s.defer("SAVEPOINT op");
        const std::error_code ec = t->run(s);
        if (s.fatal()) return;
        s.end_op(!ec);
        if (ec) s.defer("ROLLBACK TO SAVEPOINT op");
        s.defer("RELEASE SAVEPOINT op");
      }
      return;
    }
  }
  for (std::size_t i = 0; i < n; ++i) run.tasks[i]->set_append(std::move(outcomes[i]));
}

}  // namespace

// Group commit: the whole batch is one transaction, so it costs one WAL flush however many
// operations it holds.
//
// Round trips: the first carries BEGIN, the advisory locks, the sorted room locks, the batch's
// timestamp and, when the batch starts with appends, their probe. A run of appends then costs one
// more (insert, counter update and, for the last run, COMMIT). Any other write costs one round
// trip per statement, its savepoint statements riding along with the next one. A pure append
// batch is therefore two round trips whatever its size.
std::error_code PostgresStore::Impl::execute_batch(std::vector<std::unique_ptr<Task>>& batch,
                                                   bool& commit_in_doubt) {
  commit_in_doubt = false;
  Session s(*writer, settings, 0);

  // What the batch must lock, sorted, so that every node takes its locks in the same order.
  std::vector<std::string> rooms;
  std::vector<std::int64_t> keys;
  std::vector<std::string> deleted_users;
  for (const auto& t : batch) {
    if (!t->needs().room.empty()) rooms.push_back(t->needs().room);
    for (const auto& k : t->needs().keys) keys.push_back(lock_key(k));
    if (!t->needs().rooms_of_user.empty()) deleted_users.push_back(t->needs().rooms_of_user);
  }
  std::sort(rooms.begin(), rooms.end());
  rooms.erase(std::unique(rooms.begin(), rooms.end()), rooms.end());
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());

  // Segments: runs of appends, and single other writes, in submission order.
  std::vector<AppendRun> runs;
  std::vector<std::pair<Task*, int>> segments;  // (single task, -1) or (nullptr, run index)
  for (const auto& t : batch) {
    if (t->append_request() != nullptr) {
      if (segments.empty() || segments.back().second < 0) {
        runs.emplace_back();
        segments.emplace_back(nullptr, static_cast<int>(runs.size()) - 1);
      }
      const AppendRequest& req = *t->append_request();
      if (storable_text(req.room) && storable_text(req.from)) {
        runs.back().probed.push_back(runs.back().tasks.size());
      }
      runs.back().tasks.push_back(t.get());
    } else {
      segments.emplace_back(t.get(), -1);
    }
  }

  Exchange head;
  // The explicit level matters: the adapter relies on each statement seeing everything
  // committed before it started, which is READ COMMITTED whatever the server's default.
  head.add_control("BEGIN ISOLATION LEVEL READ COMMITTED");
  if (!keys.empty()) {
    ArrayBuilder a(kInt8Oid);
    for (auto k : keys) a.add_i64(k);
    head.add(Stmt::advisory_locks, std::move(Params().array(a)));
  }
  int lock = -1;
  if (!deleted_users.empty()) {
    // After the advisory locks, so the users' rooms are final when this statement reads them.
    ArrayBuilder a(kTextOid), u(kTextOid);
    for (const auto& r : rooms) a.add(r);
    for (const auto& d : deleted_users) u.add(d);
    lock = head.add(Stmt::lock_rooms_and_user_rooms, std::move(Params().array(a).array(u)));
  } else if (!rooms.empty()) {
    ArrayBuilder a(kTextOid);
    for (const auto& r : rooms) a.add(r);
    lock = head.add(Stmt::lock_rooms, std::move(Params().array(a)));
  }
  const int now = head.add(Stmt::now_ms, {});
  int probe = -1;
  if (segments.front().second >= 0) {
    probe = head.add(Stmt::append_probe,
                     probe_params(runs[static_cast<std::size_t>(segments.front().second)]));
  }
  writer->round_trip(head, settings.deadline());
  if (head.lost) return head.error;
  if (head.failed >= 0) {
    spdlog::warn("postgres store: cannot start a batch: {}", head.message);
    rollback_after_failure();
    return head.error;
  }
  if (lock >= 0) {
    const PgResult& r = head.results[static_cast<std::size_t>(lock)];
    for (int i = 0; i < r.rows(); ++i) s.hold(r.str(i, 0));
  }
  s.set_now_ms(head.results[static_cast<std::size_t>(now)].i64(0, 0));

  bool committed = false;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const bool last = i + 1 == segments.size();
    auto [task, run] = segments[i];
    if (task != nullptr) {
      // Each operation in its own savepoint: one that fails is undone alone and the others
      // still commit.
      s.defer("SAVEPOINT op");
      const std::error_code ec = task->run(s);
      if (s.fatal()) break;
      s.end_op(!ec);
      if (ec) s.defer("ROLLBACK TO SAVEPOINT op");
      s.defer("RELEASE SAVEPOINT op");
    } else {
      std::optional<PgResult> pre;
      if (i == 0 && probe >= 0)
        pre.emplace(std::move(head.results[static_cast<std::size_t>(probe)]));
      execute_run(s, runs[static_cast<std::size_t>(run)], std::move(pre), last, committed,
                  commit_in_doubt);
      if (s.fatal()) break;
    }
  }
  if (s.fatal()) {
    if (!writer->broken()) rollback_after_failure();
    return s.fatal();
  }
  if (!committed) {
    Exchange c;
    const int commit = c.add_control("COMMIT");
    commit_in_doubt = true;
    s.exchange(c);
    if (s.fatal()) {
      // A lost connection after COMMIT was sent: the outcome is unknown. The batch is not
      // acknowledged (`unavailable`); a client retry with the same client_msg_id finds the
      // message if it did commit.
      if (!writer->broken()) {
        commit_in_doubt = false;
        rollback_after_failure();
      }
      return s.fatal();
    }
    commit_in_doubt = false;
    if (!c.ok(commit)) {
      spdlog::warn("postgres store: COMMIT failed: {}", c.message);
      rollback_after_failure();
      return err(StoreErrc::unavailable);
    }
  }
  return {};
}

void PostgresStore::Impl::reader_loop(Reader& r) {
  std::vector<std::unique_ptr<Task>> one;
  for (;;) {
    // Readers take one task at a time, so that a slow read does not hold others behind it while
    // another reader is idle.
    const auto popped = read_queue.pop(one, 1, std::chrono::hours(1));
    if (popped == TaskQueue::Popped::stopped) return;
    if (popped == TaskQueue::Popped::idle) continue;
    Task& task = *one.front();
    // Reads are idempotent, so a read that found its connection dead (the server restarted
    // since it was last used) runs once more on a new one.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!r.conn) {
        if (attempt == 0 && !r.backoff.due()) {
          task.fail(err(StoreErrc::unavailable));
          break;
        }
        auto c = PgConn::connect(settings, true);
        if (!c) {
          r.backoff.failed();
          write_queue.poke();  // the writer checks its own connection now
          task.fail(err(StoreErrc::unavailable));
          break;
        }
        r.conn = std::move(*c);
        r.backoff.succeeded();
      }
      Session s(*r.conn, settings, 0);
      task.run(s);
      if (!r.conn->broken()) break;
      r.conn.reset();
      write_queue.poke();
      if (attempt == 1) task.fail(err(StoreErrc::unavailable));
    }
    task.complete();
    one.clear();
  }
}

// ---------------------------------------------------------------------------------------------

PostgresStore::PostgresStore(PostgresOptions options, metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

Result<std::unique_ptr<PostgresStore>, std::string> PostgresStore::open(
    PostgresOptions options, metrics::Registry& registry) {
  try {
    return std::make_unique<PostgresStore>(std::move(options), registry);
  } catch (const std::exception& e) {
    return unexpected(std::string(e.what()));
  }
}

// The drain runs while this object is whole, so callbacks that call back into the store during
// it (a write's callback submitting a read) reach a live Impl.
PostgresStore::~PostgresStore() {
  impl_->shutdown();
}

bool PostgresStore::ready() const {
  return impl_->ready.load(std::memory_order_relaxed);
}

int PostgresStore::schema_version() const {
  return impl_->schema_version;
}

void PostgresStore::create_user(std::string user, std::string password_hash, Callback<Ok> cb) {
  LockNeeds needs{{}, {"u:" + user}, {}};
  impl_->write<Ok>(
      Op::create_user, std::move(needs),
      [user = std::move(user), hash = std::move(password_hash)](Session& s) {
        return op_create_user(s, user, hash);
      },
      std::move(cb));
}

void PostgresStore::get_user(std::string user, Callback<UserAuth> cb) {
  impl_->read<UserAuth>(
      Op::get_user, [user = std::move(user)](Session& s) { return op_get_user(s, user); },
      std::move(cb));
}

void PostgresStore::create_token(std::string token_hash, std::string user, std::int64_t expires_at,
                                 Callback<Ok> cb) {
  LockNeeds needs{{}, {"t:" + token_hash, "u:" + user}, {}};
  impl_->write<Ok>(
      Op::create_token, std::move(needs),
      [hash = std::move(token_hash), user = std::move(user), expires_at](Session& s) {
        return op_create_token(s, hash, user, expires_at);
      },
      std::move(cb));
}

void PostgresStore::lookup_token(std::string token_hash, Callback<TokenInfo> cb) {
  impl_->read<TokenInfo>(
      Op::lookup_token,
      [hash = std::move(token_hash)](Session& s) { return op_lookup_token(s, hash); },
      std::move(cb));
}

void PostgresStore::delete_token(std::string token_hash, Callback<TokenInfo> cb) {
  LockNeeds needs{{}, {"t:" + token_hash}, {}};
  impl_->write<TokenInfo>(
      Op::delete_token, std::move(needs),
      [hash = std::move(token_hash)](Session& s) { return op_delete_token(s, hash); },
      std::move(cb));
}

void PostgresStore::set_admin(std::string user, bool admin, Callback<Ok> cb) {
  LockNeeds needs{{}, {"u:" + user}, {}};
  impl_->write<Ok>(
      Op::set_admin, std::move(needs),
      [user = std::move(user), admin](Session& s) { return op_set_admin(s, user, admin); },
      std::move(cb));
}

void PostgresStore::delete_user(std::string user, Callback<Ok> cb) {
  // The "u:" key and the user's rooms: see LockNeeds for why each is needed.
  LockNeeds needs{{}, {"u:" + user}, user};
  impl_->write<Ok>(
      Op::delete_user, std::move(needs),
      [user = std::move(user)](Session& s) { return op_delete_user(s, user); }, std::move(cb));
}

void PostgresStore::create_room(std::string room, RoomKind kind, std::string creator,
                                Callback<Ok> cb) {
  LockNeeds needs{room, {"r:" + room, "u:" + creator}, {}};
  impl_->write<Ok>(
      Op::create_room, std::move(needs),
      [room = std::move(room), kind, creator = std::move(creator)](Session& s) {
        return op_create_room(s, room, kind, creator);
      },
      std::move(cb));
}

void PostgresStore::join_room(std::string room, std::string user, Callback<JoinResult> cb) {
  LockNeeds needs{room, {"u:" + user}, {}};
  impl_->write<JoinResult>(
      Op::join_room, std::move(needs),
      [room = std::move(room), user = std::move(user)](Session& s) {
        return op_join_room(s, room, user);
      },
      std::move(cb));
}

void PostgresStore::leave_room(std::string room, std::string user, Callback<Ok> cb) {
  LockNeeds needs{room, {}, {}};
  impl_->write<Ok>(
      Op::leave_room, std::move(needs),
      [room = std::move(room), user = std::move(user)](Session& s) {
        return op_leave_room(s, room, user);
      },
      std::move(cb));
}

void PostgresStore::invite(std::string room, std::string inviter, std::string user,
                           Callback<Ok> cb) {
  LockNeeds needs{room, {"u:" + user}, {}};
  impl_->write<Ok>(
      Op::invite, std::move(needs),
      [room = std::move(room), inviter = std::move(inviter), user = std::move(user)](Session& s) {
        return op_invite(s, room, inviter, user);
      },
      std::move(cb));
}

void PostgresStore::open_dm(std::string dm_room, std::string user, std::string other,
                            Callback<JoinResult> cb) {
  LockNeeds needs{dm_room, {"r:" + dm_room, "u:" + user, "u:" + other}, {}};
  impl_->write<JoinResult>(
      Op::open_dm, std::move(needs),
      [room = std::move(dm_room), user = std::move(user), other = std::move(other)](Session& s) {
        return op_open_dm(s, room, user, other);
      },
      std::move(cb));
}

void PostgresStore::is_member(std::string room, std::string user, Callback<bool> cb) {
  impl_->read<bool>(
      Op::is_member,
      [room = std::move(room), user = std::move(user)](Session& s) {
        return op_is_member(s, room, user);
      },
      std::move(cb));
}

void PostgresStore::list_rooms(std::string user, Callback<std::vector<RoomSummary>> cb) {
  impl_->read<std::vector<RoomSummary>>(
      Op::list_rooms, [user = std::move(user)](Session& s) { return op_list_rooms(s, user); },
      std::move(cb));
}

void PostgresStore::room_info(std::string room, Callback<RoomSummary> cb) {
  impl_->read<RoomSummary>(
      Op::room_info, [room = std::move(room)](Session& s) { return op_room_info(s, room); },
      std::move(cb));
}

void PostgresStore::append(AppendRequest req, Callback<AppendResult> cb) {
  std::unique_ptr<Task> task = std::make_unique<AppendTask>(
      *impl_->latency[static_cast<std::size_t>(Op::append)], std::move(req), std::move(cb));
  if (auto refused = impl_->write_queue.push(std::move(task))) fail_and_complete(*refused);
}

void PostgresStore::read_range(std::string room, std::uint64_t after, std::uint64_t up_to,
                               std::uint32_t limit, Callback<std::vector<StoredMessage>> cb) {
  impl_->read<std::vector<StoredMessage>>(
      Op::read_range,
      [room = std::move(room), after, up_to, limit](Session& s) {
        return op_read_range(s, room, after, up_to, limit);
      },
      std::move(cb));
}

void PostgresStore::history(std::string room, std::uint64_t before, std::uint32_t limit,
                            Callback<HistoryPage> cb) {
  impl_->read<HistoryPage>(
      Op::history,
      [room = std::move(room), before, limit](Session& s) {
        return op_history(s, room, before, limit);
      },
      std::move(cb));
}

void PostgresStore::set_read(std::string room, std::string user, std::uint64_t seq,
                             Callback<std::uint64_t> cb) {
  LockNeeds needs{room, {}, {}};
  impl_->write<std::uint64_t>(
      Op::set_read, std::move(needs),
      [room = std::move(room), user = std::move(user), seq](Session& s) {
        return op_set_read(s, room, user, seq);
      },
      std::move(cb));
}

}  // namespace parley::store
