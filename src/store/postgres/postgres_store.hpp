#pragma once
// The PostgreSQL adapter of the Store port, for several nodes sharing one database.
//
// One writer thread owns the only read-write connection. It takes every queued write (up to
// max_batch), runs them in one transaction and commits, and only then completes their callbacks
// (group commit: one WAL flush per batch). Before touching anything it locks the rows of every
// room the batch names (and those of the users it deletes), in name order, after transaction
// advisory locks on the other keys it may insert or depends on (user names, token hashes, new
// room names), also in order: writers on different nodes take their locks in the same global
// order, so they queue behind each other but never deadlock.
// A run of consecutive appends is executed set-wise (one probe, one multi-row insert, one counter
// update) in pipeline mode, so a batch of appends costs two round trips whatever its size; any
// other write runs alone inside its own savepoint, so its failure does not abort the batch.
//
// Reader threads each own a connection and serve reads in autocommit mode: every statement sees
// each transaction committed before it started, hence every write whose callback has run.
//
// When the server goes away, operations in flight and new ones fail with `unavailable` and
// ready() turns false; the writer reconnects with exponential backoff in the background (and
// probes an idle connection every health_interval), and ready() turns true once it is back. Every
// network wait has a deadline, so no call blocks forever.

#include <chrono>
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

struct PostgresOptions {
  // A libpq connection URI or key=value string, e.g. postgresql://parley@127.0.0.1:5432/parley.
  // Parameters in it (options=-csearch_path%3Dx, sslmode, ...) override the adapter's defaults.
  std::string url;
  // Connections in all: one writer (writes must apply in submission order, and one connection
  // committing large batches is what makes group commit pay) and pool_size - 1 readers, each on
  // its own thread. At least 2.
  unsigned pool_size = 4;
  // The largest number of write operations committed in one transaction. At least one.
  std::size_t max_batch = 1024;
  // How long opening one connection may take (libpq's connect_timeout; at least 2 s there).
  int connect_timeout_s = 5;
  // The longest one statement may run on the server (statement_timeout). The client waits a
  // little longer for any round trip, then drops the connection as broken.
  std::chrono::milliseconds query_timeout{10'000};
  // Reconnect backoff: the first retry after reconnect_min, doubling up to reconnect_max.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5'000};
  // How often an idle writer checks that the server still answers, so that ready() follows it.
  std::chrono::milliseconds health_interval{1'000};
};

class PostgresStore final : public Store {
 public:
  // Connects every connection, applies pending migrations (serialised between nodes starting at
  // once by an advisory lock) and starts the threads. Throws std::runtime_error with one line
  // saying what is wrong ("cannot open PostgreSQL store at URL: reason", the password elided);
  // this is the only place the adapter throws.
  PostgresStore(PostgresOptions options, metrics::Registry& registry);
  // The same without exceptions: the error is that one line.
  static Result<std::unique_ptr<PostgresStore>, std::string> open(PostgresOptions options,
                                                                  metrics::Registry& registry);
  // Runs every operation already queued (their callbacks are called; with the server gone they
  // fail `unavailable` without waiting for it), then stops the threads and disconnects.
  ~PostgresStore() override;

  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

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

  // True while the writer's connection is up and the server answers it.
  bool ready() const override;

  // The schema version the database is at (the highest migration applied).
  int schema_version() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The URL with any password replaced by "***", for logs and error messages.
std::string redact_postgres_url(const std::string& url);

}  // namespace parley::store
