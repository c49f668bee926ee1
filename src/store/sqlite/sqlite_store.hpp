#pragma once
// The SQLite adapter of the Store port, for a single node.
//
// One writer thread owns the only read-write connection. It takes every queued write (up to
// max_batch), runs them in one transaction with a savepoint around each, commits, and only then
// completes their callbacks: one fsync covers the whole batch (group commit). Reader threads
// each own a read-only connection; in WAL mode they read concurrently with the writer and see
// every transaction committed before their statement started.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/result.hpp"
#include "store/store.hpp"

namespace parley::metrics {
class Registry;
}

namespace parley::store {

// How hard SQLite works to make a commit survive a crash (PRAGMA synchronous, in WAL mode).
//  * normal: the WAL is not synced at commit, only at checkpoints. A committed transaction
//    survives the process being killed (kill -9, a crash), because the data is in the OS page
//    cache, but the last commits can be lost if the machine loses power.
//  * full: the WAL is synced at every commit, so a commit survives power loss too. With group
//    commit the cost is one fsync per batch, not per message.
//  * extra: like full, and also syncs the directory after the WAL is created or deleted.
enum class SqliteSync { normal, full, extra };

struct SqliteOptions {
  // The database file. Its parent directory is created if missing. ":memory:" is refused: the
  // readers need their own connections to the same data.
  std::string path;
  // Threads serving reads, each with its own connection. At least one.
  unsigned reader_threads = 2;
  // The largest number of write operations committed in one transaction. At least one.
  std::size_t max_batch = 1024;
  // How long a connection waits for a lock held by another process before giving up with
  // `unavailable`.
  int busy_timeout_ms = 5000;
  // An acknowledgement promises that the message is stored. FULL keeps that promise across
  // power loss, not just process death, and group commit keeps it cheap, so it is the default;
  // NORMAL is enough when only process crashes (kill -9) must be survived.
  SqliteSync synchronous = SqliteSync::full;
  // The writer connection's page cache, in MiB (a bound on memory it may hold). At least one.
  unsigned writer_cache_mib = 64;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) the database, applies pending migrations and starts the threads.
  // Throws std::runtime_error with one line saying what is wrong ("cannot open SQLite database at
  // X: reason"); this is the only place the adapter throws.
  SqliteStore(SqliteOptions options, metrics::Registry& registry);
  // The same without exceptions: the error is that one line.
  static Result<std::unique_ptr<SqliteStore>, std::string> open(SqliteOptions options,
                                                                metrics::Registry& registry);
  // Runs every operation already queued (their callbacks are called), then stops the threads and
  // closes the database.
  ~SqliteStore() override;

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  void create_user(std::string user, std::string password_hash, Callback<Ok> cb) override;
  void get_user(std::string user, Callback<UserAuth> cb) override;
  void create_token(std::string token_hash, std::string user, std::int64_t expires_at,
                    Callback<Ok> cb) override;
  void lookup_token(std::string token_hash, Callback<TokenInfo> cb) override;
  void delete_token(std::string token_hash, Callback<TokenInfo> cb) override;
  void set_admin(std::string user, bool admin, Callback<Ok> cb) override;
  void delete_user(std::string user, Callback<Ok> cb) override;

  void create_room(std::string room, RoomKind kind, std::string creator, Callback<Ok> cb) override;
  void join_room(std::string room, std::string user, Callback<JoinResult> cb) override;
  void leave_room(std::string room, std::string user, Callback<Ok> cb) override;
  void invite(std::string room, std::string inviter, std::string user, Callback<Ok> cb) override;
  void open_dm(std::string dm_room, std::string user, std::string other,
               Callback<JoinResult> cb) override;
  void is_member(std::string room, std::string user, Callback<bool> cb) override;
  void list_rooms(std::string user, Callback<std::vector<RoomSummary>> cb) override;
  void room_info(std::string room, Callback<RoomSummary> cb) override;

  void append(AppendRequest req, Callback<AppendResult> cb) override;
  void read_range(std::string room, std::uint64_t after, std::uint64_t up_to, std::uint32_t limit,
                  Callback<std::vector<StoredMessage>> cb) override;
  void history(std::string room, std::uint64_t before, std::uint32_t limit,
               Callback<HistoryPage> cb) override;
  void set_read(std::string room, std::string user, std::uint64_t seq,
                Callback<std::uint64_t> cb) override;

  bool ready() const override;

  // The schema version the database is at (the highest migration applied).
  int schema_version() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::store
