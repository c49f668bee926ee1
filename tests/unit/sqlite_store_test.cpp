// Tests of what is specific to the SQLite adapter of the Store port, against real database files
// in a temporary directory: opening (parent directories, the one-line error, refusing files that
// are not databases and ":memory:"), refusing a schema newer than the build (PRAGMA
// user_version), and SQLite's write lock; plus the port's error category and room kind names,
// which no adapter owns. The port's behaviour (every operation's success and errors, seqs, dedup,
// group commit, durability, migrations) is tested once for both adapters, in
// tests/integration/store_contract_test.cpp.

#include "store/sqlite/sqlite_store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>

#include "metrics/metrics.hpp"

namespace parley::store {
namespace {

namespace fs = std::filesystem;

// Calls `submit` with a callback that fulfils a promise, and waits for it: the callback API made
// blocking for tests. Also checks that the callback runs exactly once (a second call would throw
// std::future_error from set_value).
template <class T, class Submit>
Result<T> wait_for(Submit&& submit) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  submit([promise](Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "store callback not called within 30 s";
    std::abort();
  }
  return future.get();
}

// The few Store operations these tests need, as blocking calls.
class Blocking {
 public:
  explicit Blocking(Store& s) : s_(s) {}

  Result<Ok> create_user(const std::string& u, const std::string& hash = "hash") {
    return wait_for<Ok>([&](auto cb) { s_.create_user(u, hash, cb); });
  }
  Result<Ok> create_room(const std::string& r, RoomKind k, const std::string& creator) {
    return wait_for<Ok>([&](auto cb) { s_.create_room(r, k, creator, cb); });
  }
  Result<RoomSummary> room_info(const std::string& r) {
    return wait_for<RoomSummary>([&](auto cb) { s_.room_info(r, cb); });
  }
  Result<AppendResult> append(const std::string& r, const std::string& from, const std::string& id,
                              const std::string& body = "hello") {
    return wait_for<AppendResult>([&](auto cb) { s_.append({r, from, id, body}, cb); });
  }

 private:
  Store& s_;
};

std::error_code code(StoreErrc e) {
  return make_error_code(e);
}

template <class T>
std::error_code error_of(const Result<T>& r) {
  return r.has_value() ? std::error_code{} : r.error();
}

// Each test gets its own directory, removed afterwards, and a fresh metrics registry per store.
class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("parley-sqlite-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    open();
  }
  void TearDown() override {
    close();
    fs::remove_all(dir_);
  }

  SqliteOptions options() const {
    SqliteOptions o;
    o.path = (dir_ / "parley.db").string();
    // The tests check logic, not power-loss durability; NORMAL keeps them fast on slow disks.
    o.synchronous = SqliteSync::normal;
    return o;
  }
  void open(SqliteOptions o) {
    close();  // the old store uses the old registry's histograms until it is gone
    registry_ = std::make_unique<metrics::Registry>();
    store_ = std::make_unique<SqliteStore>(std::move(o), *registry_);
    db_ = std::make_unique<Blocking>(*store_);
  }
  void open() { open(options()); }
  void close() {
    db_.reset();
    store_.reset();
  }

  // Alice and bob exist; alice created the public room "general".
  void seed() {
    ASSERT_TRUE(db_->create_user("alice").has_value());
    ASSERT_TRUE(db_->create_user("bob").has_value());
    ASSERT_TRUE(db_->create_room("general", RoomKind::public_room, "alice").has_value());
  }

  fs::path dir_;
  std::unique_ptr<metrics::Registry> registry_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Blocking> db_;
};

// --- the error category and room kinds ---------------------------------------------------------

TEST(StoreErrors, CategoryNamesEveryCode) {
  EXPECT_STREQ(store_category().name(), "store");
  EXPECT_EQ(code(StoreErrc::not_found).message(), "not_found");
  EXPECT_EQ(code(StoreErrc::conflict).message(), "conflict");
  EXPECT_EQ(code(StoreErrc::forbidden).message(), "forbidden");
  EXPECT_EQ(code(StoreErrc::unavailable).message(), "unavailable");
  EXPECT_EQ(code(StoreErrc::internal).message(), "internal");
  std::error_code ec = StoreErrc::forbidden;  // implicit, through is_error_code_enum
  EXPECT_EQ(ec, StoreErrc::forbidden);
  EXPECT_NE(ec, StoreErrc::not_found);
  EXPECT_EQ(&ec.category(), &store_category());
}

TEST(StoreErrors, RoomKindNames) {
  EXPECT_STREQ(to_string(RoomKind::public_room), "public");
  EXPECT_STREQ(to_string(RoomKind::private_room), "private");
  EXPECT_STREQ(to_string(RoomKind::dm), "dm");
}

// --- opening -----------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, OpenCreatesParentDirectories) {
  auto o = options();
  o.path = (dir_ / "a" / "b" / "parley.db").string();
  open(o);
  EXPECT_TRUE(fs::exists(dir_ / "a" / "b" / "parley.db"));
  EXPECT_TRUE(store_->ready());
  EXPECT_TRUE(db_->create_user("alice").has_value());
}

TEST_F(SqliteStoreTest, OpenFailureIsOneClearLine) {
  close();
  // A regular file where the parent directory should be.
  std::ofstream(dir_ / "file") << "x";
  auto o = options();
  o.path = (dir_ / "file" / "parley.db").string();
  metrics::Registry registry;
  try {
    SqliteStore store(o, registry);
    FAIL() << "opened a database under a regular file";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("cannot open SQLite database at " + o.path + ": ", 0), 0u) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  auto result = SqliteStore::open(o, registry);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().find(o.path), std::string::npos);
}

TEST_F(SqliteStoreTest, OpenRefusesNonDatabaseFilesAndMemory) {
  close();
  std::ofstream(dir_ / "garbage.db") << std::string(4096, 'g');
  auto o = options();
  o.path = (dir_ / "garbage.db").string();
  metrics::Registry registry;
  auto garbage = SqliteStore::open(o, registry);
  ASSERT_FALSE(garbage.has_value());
  EXPECT_NE(garbage.error().find("garbage.db"), std::string::npos) << garbage.error();
  o.path = ":memory:";
  EXPECT_FALSE(SqliteStore::open(o, registry).has_value());
}

// --- migrations --------------------------------------------------------------------------------

// The version SQLite records (PRAGMA user_version) is this adapter's own; PostgresStoreTest has
// the same check for PostgreSQL's schema_version table.
TEST_F(SqliteStoreTest, RefusesSchemaNewerThanBuild) {
  close();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "parley.db").c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  metrics::Registry registry;
  auto r = SqliteStore::open(options(), registry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("999"), std::string::npos) << r.error();
}

// --- locking -----------------------------------------------------------------------------------

// While another connection holds the write lock past the busy timeout, writes fail with
// `unavailable`, write nothing, and ready() turns false; a retry later succeeds.
TEST_F(SqliteStoreTest, LockedDatabaseIsUnavailableAndRetryable) {
  close();
  auto o = options();
  o.busy_timeout_ms = 50;
  open(o);
  seed();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(o.path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  EXPECT_EQ(error_of(db_->append("general", "alice", "m1")), StoreErrc::unavailable);
  EXPECT_FALSE(store_->ready());
  // Reads go on in WAL mode.
  EXPECT_TRUE(db_->room_info("general").has_value());

  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  auto retry = db_->append("general", "alice", "m1");
  ASSERT_TRUE(retry.has_value());
  EXPECT_FALSE(retry->duplicate);
  EXPECT_EQ(retry->message.seq, 1u);
  EXPECT_TRUE(store_->ready());
}

}  // namespace
}  // namespace parley::store
