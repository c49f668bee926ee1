// Tests of the SQLite adapter of the Store port, against real database files in a temporary
// directory: every operation's success and errors, seq assignment under concurrency, dedup,
// group commit, durability across reopening, and migrations.

#include "store/sqlite/sqlite_store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/migrations.hpp"

namespace parley::store {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr std::uint64_t kNewest = std::numeric_limits<std::uint64_t>::max();

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

// The Store port as blocking calls.
class Blocking {
 public:
  explicit Blocking(Store& s) : s_(s) {}

  Result<Ok> create_user(const std::string& u, const std::string& hash = "hash") {
    return wait_for<Ok>([&](auto cb) { s_.create_user(u, hash, cb); });
  }
  Result<UserAuth> get_user(const std::string& u) {
    return wait_for<UserAuth>([&](auto cb) { s_.get_user(u, cb); });
  }
  Result<Ok> create_token(const std::string& h, const std::string& u, std::int64_t exp) {
    return wait_for<Ok>([&](auto cb) { s_.create_token(h, u, exp, cb); });
  }
  Result<TokenInfo> lookup_token(const std::string& h) {
    return wait_for<TokenInfo>([&](auto cb) { s_.lookup_token(h, cb); });
  }
  Result<TokenInfo> delete_token(const std::string& h) {
    return wait_for<TokenInfo>([&](auto cb) { s_.delete_token(h, cb); });
  }
  Result<Ok> create_room(const std::string& r, RoomKind k, const std::string& creator) {
    return wait_for<Ok>([&](auto cb) { s_.create_room(r, k, creator, cb); });
  }
  Result<JoinResult> join_room(const std::string& r, const std::string& u) {
    return wait_for<JoinResult>([&](auto cb) { s_.join_room(r, u, cb); });
  }
  Result<Ok> leave_room(const std::string& r, const std::string& u) {
    return wait_for<Ok>([&](auto cb) { s_.leave_room(r, u, cb); });
  }
  Result<Ok> invite(const std::string& r, const std::string& inviter, const std::string& u) {
    return wait_for<Ok>([&](auto cb) { s_.invite(r, inviter, u, cb); });
  }
  Result<JoinResult> open_dm(const std::string& r, const std::string& u, const std::string& o) {
    return wait_for<JoinResult>([&](auto cb) { s_.open_dm(r, u, o, cb); });
  }
  Result<bool> is_member(const std::string& r, const std::string& u) {
    return wait_for<bool>([&](auto cb) { s_.is_member(r, u, cb); });
  }
  Result<std::vector<RoomSummary>> list_rooms(const std::string& u) {
    return wait_for<std::vector<RoomSummary>>([&](auto cb) { s_.list_rooms(u, cb); });
  }
  Result<RoomSummary> room_info(const std::string& r) {
    return wait_for<RoomSummary>([&](auto cb) { s_.room_info(r, cb); });
  }
  Result<AppendResult> append(const std::string& r, const std::string& from, const std::string& id,
                              const std::string& body = "hello") {
    return wait_for<AppendResult>([&](auto cb) { s_.append({r, from, id, body}, cb); });
  }
  Result<std::vector<StoredMessage>> read_range(const std::string& r, std::uint64_t after,
                                                std::uint64_t up_to, std::uint32_t limit) {
    return wait_for<std::vector<StoredMessage>>(
        [&](auto cb) { s_.read_range(r, after, up_to, limit, cb); });
  }
  Result<HistoryPage> history(const std::string& r, std::uint64_t before, std::uint32_t limit) {
    return wait_for<HistoryPage>([&](auto cb) { s_.history(r, before, limit, cb); });
  }
  Result<std::uint64_t> set_read(const std::string& r, const std::string& u, std::uint64_t seq) {
    return wait_for<std::uint64_t>([&](auto cb) { s_.set_read(r, u, seq, cb); });
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

std::vector<std::uint64_t> seqs_of(const std::vector<StoredMessage>& ms) {
  std::vector<std::uint64_t> out;
  for (const auto& m : ms) out.push_back(m.seq);
  return out;
}

std::vector<std::uint64_t> iota_seqs(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (auto s = from; s <= to; ++s) out.push_back(s);
  return out;
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
  void reopen() {
    close();
    open();
  }

  // Alice and bob exist; alice created the public room "general".
  void seed() {
    ASSERT_TRUE(db_->create_user("alice").has_value());
    ASSERT_TRUE(db_->create_user("bob").has_value());
    ASSERT_TRUE(db_->create_room("general", RoomKind::public_room, "alice").has_value());
  }

  void append_n(const std::string& room, const std::string& from, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(db_->append(room, from, from + "-" + std::to_string(i)).has_value());
    }
  }

  metrics::Histogram& batch_histogram() {
    return registry_->histogram("parley_store_batch_size", "", {}, {});
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

// --- opening and migrations --------------------------------------------------------------------

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

TEST_F(SqliteStoreTest, MigrationsAppliedAndRecorded) {
  const auto& migrations = sqlite_migrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_EQ(migrations.front().version, 1);
  EXPECT_EQ(store_->schema_version(), migrations.back().version);
}

TEST_F(SqliteStoreTest, MigrationsIdempotentOnReopen) {
  seed();
  const int version = store_->schema_version();
  reopen();
  EXPECT_EQ(store_->schema_version(), version);
  reopen();
  EXPECT_EQ(store_->schema_version(), version);
  EXPECT_TRUE(db_->get_user("alice").has_value());
  EXPECT_TRUE(db_->room_info("general").has_value());
}

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

// --- users and tokens --------------------------------------------------------------------------

TEST_F(SqliteStoreTest, CreateAndGetUser) {
  ASSERT_TRUE(db_->create_user("alice", "$argon2id$x").has_value());
  auto u = db_->get_user("alice");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password_hash, "$argon2id$x");
}

TEST_F(SqliteStoreTest, CreateUserTwiceConflicts) {
  ASSERT_TRUE(db_->create_user("alice", "first").has_value());
  EXPECT_EQ(error_of(db_->create_user("alice", "second")), StoreErrc::conflict);
  EXPECT_EQ(db_->get_user("alice")->password_hash, "first");
}

TEST_F(SqliteStoreTest, GetUnknownUserNotFound) {
  EXPECT_EQ(error_of(db_->get_user("nobody")), StoreErrc::not_found);
}

TEST_F(SqliteStoreTest, TokenLifecycle) {
  seed();
  ASSERT_TRUE(db_->create_token("h1", "alice", 1'900'000'000).has_value());
  auto t = db_->lookup_token("h1");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->expires_at, 1'900'000'000);

  auto deleted = db_->delete_token("h1");
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(deleted->user, "alice");
  EXPECT_EQ(deleted->expires_at, 1'900'000'000);
  EXPECT_EQ(error_of(db_->lookup_token("h1")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_token("h1")), StoreErrc::not_found);
}

TEST_F(SqliteStoreTest, TokenErrors) {
  seed();
  EXPECT_EQ(error_of(db_->create_token("h1", "nobody", 1)), StoreErrc::not_found);
  ASSERT_TRUE(db_->create_token("h1", "alice", 1).has_value());
  EXPECT_EQ(error_of(db_->create_token("h1", "bob", 2)), StoreErrc::conflict);
  EXPECT_EQ(db_->lookup_token("h1")->user, "alice");
  EXPECT_EQ(error_of(db_->lookup_token("unknown")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_token("unknown")), StoreErrc::not_found);
}

// --- rooms and membership ----------------------------------------------------------------------

TEST_F(SqliteStoreTest, CreateRoomMakesCreatorMember) {
  seed();
  EXPECT_TRUE(*db_->is_member("general", "alice"));
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  auto info = db_->room_info("general");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->room, "general");
  EXPECT_EQ(info->kind, RoomKind::public_room);
  EXPECT_EQ(info->last_seq, 0u);
}

TEST_F(SqliteStoreTest, CreateRoomErrors) {
  seed();
  EXPECT_EQ(error_of(db_->create_room("general", RoomKind::private_room, "bob")),
            StoreErrc::conflict);
  EXPECT_EQ(db_->room_info("general")->kind, RoomKind::public_room);
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  EXPECT_EQ(error_of(db_->create_room("ghosts", RoomKind::public_room, "nobody")),
            StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->room_info("ghosts")), StoreErrc::not_found);
}

TEST_F(SqliteStoreTest, IsMemberOfMissingRoomIsFalse) {
  seed();
  auto r = db_->is_member("nowhere", "alice");
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(*r);
}

TEST_F(SqliteStoreTest, JoinPublicRoomIsIdempotent) {
  seed();
  append_n("general", "alice", 3);
  auto first = db_->join_room("general", "bob");
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->newly_joined);
  EXPECT_EQ(first->last_seq, 3u);
  EXPECT_EQ(first->kind, RoomKind::public_room);
  auto again = db_->join_room("general", "bob");
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->newly_joined);
  EXPECT_EQ(again->last_seq, 3u);
  EXPECT_TRUE(*db_->is_member("general", "bob"));
}

TEST_F(SqliteStoreTest, JoinErrors) {
  seed();
  EXPECT_EQ(error_of(db_->join_room("nowhere", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->join_room("general", "nobody")), StoreErrc::not_found);
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  EXPECT_EQ(error_of(db_->join_room("secret", "bob")), StoreErrc::forbidden);
  EXPECT_FALSE(*db_->is_member("secret", "bob"));
}

TEST_F(SqliteStoreTest, PrivateRoomNeedsInvitationWhichJoiningConsumes) {
  seed();
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  ASSERT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  auto joined = db_->join_room("secret", "bob");
  ASSERT_TRUE(joined.has_value());
  EXPECT_TRUE(joined->newly_joined);
  EXPECT_EQ(joined->kind, RoomKind::private_room);
  // A member rejoins freely; after leaving, a new invitation is needed.
  EXPECT_FALSE(db_->join_room("secret", "bob")->newly_joined);
  ASSERT_TRUE(db_->leave_room("secret", "bob").has_value());
  EXPECT_EQ(error_of(db_->join_room("secret", "bob")), StoreErrc::forbidden);
}

TEST_F(SqliteStoreTest, DmCannotBeJoinedByOthers) {
  seed();
  ASSERT_TRUE(db_->create_user("carol").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  EXPECT_EQ(error_of(db_->join_room("dm:alice:bob", "carol")), StoreErrc::forbidden);
  auto member = db_->join_room("dm:alice:bob", "bob");
  ASSERT_TRUE(member.has_value());
  EXPECT_FALSE(member->newly_joined);
  EXPECT_EQ(member->kind, RoomKind::dm);
}

TEST_F(SqliteStoreTest, LeaveRoom) {
  seed();
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  ASSERT_TRUE(db_->leave_room("general", "bob").has_value());
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  // Leaving a room one is not in succeeds; leaving a missing room does not.
  EXPECT_TRUE(db_->leave_room("general", "bob").has_value());
  EXPECT_EQ(error_of(db_->leave_room("nowhere", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->append("general", "bob", "m1")), StoreErrc::forbidden);
}

TEST_F(SqliteStoreTest, InviteIsIdempotent) {
  seed();
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  ASSERT_TRUE(db_->join_room("secret", "bob").has_value());
  // Inviting a member changes nothing and succeeds.
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  EXPECT_TRUE(db_->invite("secret", "bob", "alice").has_value());
}

TEST_F(SqliteStoreTest, InviteErrors) {
  seed();
  ASSERT_TRUE(db_->create_user("carol").has_value());
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  EXPECT_EQ(error_of(db_->invite("nowhere", "alice", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->invite("secret", "alice", "nobody")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->invite("secret", "bob", "carol")), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->join_room("secret", "carol")), StoreErrc::forbidden);
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  EXPECT_EQ(error_of(db_->invite("dm:alice:bob", "alice", "carol")), StoreErrc::forbidden);
}

TEST_F(SqliteStoreTest, OpenDmCreatesRoomWithBothMembers) {
  seed();
  auto first = db_->open_dm("dm:alice:bob", "alice", "bob");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->kind, RoomKind::dm);
  EXPECT_EQ(first->last_seq, 0u);
  EXPECT_TRUE(first->newly_joined);
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "alice"));
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "bob"));
  EXPECT_EQ(db_->room_info("dm:alice:bob")->kind, RoomKind::dm);

  ASSERT_TRUE(db_->append("dm:alice:bob", "bob", "m1").has_value());
  auto again = db_->open_dm("dm:alice:bob", "bob", "alice");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->last_seq, 1u);
  EXPECT_FALSE(again->newly_joined);
}

TEST_F(SqliteStoreTest, OpenDmBringsBackAUserWhoLeft) {
  seed();
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  ASSERT_TRUE(db_->leave_room("dm:alice:bob", "bob").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "bob"));
}

TEST_F(SqliteStoreTest, OpenDmErrors) {
  seed();
  EXPECT_EQ(error_of(db_->open_dm("dm:alice:nobody", "alice", "nobody")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->room_info("dm:alice:nobody")), StoreErrc::not_found);
  // A room of another kind under the name is a conflict, not a dm.
  EXPECT_EQ(error_of(db_->open_dm("general", "alice", "bob")), StoreErrc::conflict);
  EXPECT_FALSE(*db_->is_member("general", "bob"));
}

TEST_F(SqliteStoreTest, ListRooms) {
  seed();
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  append_n("general", "alice", 4);
  ASSERT_TRUE(db_->set_read("general", "alice", 2).has_value());

  auto rooms = db_->list_rooms("alice");
  ASSERT_TRUE(rooms.has_value());
  ASSERT_EQ(rooms->size(), 3u);
  std::map<std::string, RoomSummary> by_name;
  for (const auto& r : *rooms) by_name[r.room] = r;
  EXPECT_EQ(by_name["general"].kind, RoomKind::public_room);
  EXPECT_EQ(by_name["general"].last_seq, 4u);
  EXPECT_EQ(by_name["general"].read_seq, 2u);
  EXPECT_EQ(by_name["secret"].kind, RoomKind::private_room);
  EXPECT_EQ(by_name["dm:alice:bob"].kind, RoomKind::dm);

  auto bobs = db_->list_rooms("bob");
  ASSERT_TRUE(bobs.has_value());
  ASSERT_EQ(bobs->size(), 1u);
  EXPECT_EQ(bobs->front().room, "dm:alice:bob");
  EXPECT_TRUE(db_->list_rooms("nobody")->empty());
}

TEST_F(SqliteStoreTest, NewMemberReadMarkerStartsAtLastSeq) {
  seed();
  append_n("general", "alice", 5);
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  auto rooms = db_->list_rooms("bob");
  ASSERT_EQ(rooms->size(), 1u);
  EXPECT_EQ(rooms->front().last_seq, 5u);
  EXPECT_EQ(rooms->front().read_seq, 5u);
}

// --- messages ----------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, AppendAssignsConsecutiveSeqs) {
  seed();
  const auto before =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (std::uint64_t i = 1; i <= 5; ++i) {
    auto r = db_->append("general", "alice", "id" + std::to_string(i), "body " + std::to_string(i));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->duplicate);
    EXPECT_EQ(r->message.seq, i);
    EXPECT_EQ(r->message.room, "general");
    EXPECT_EQ(r->message.from, "alice");
    EXPECT_EQ(r->message.body, "body " + std::to_string(i));
    EXPECT_EQ(r->message.client_msg_id, "id" + std::to_string(i));
    EXPECT_GE(r->message.ts_ms, before);
    EXPECT_LT(r->message.ts_ms, before + 60'000);
  }
  EXPECT_EQ(db_->room_info("general")->last_seq, 5u);
}

TEST_F(SqliteStoreTest, AppendErrors) {
  seed();
  EXPECT_EQ(error_of(db_->append("general", "bob", "m1")), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->append("nowhere", "alice", "m1")), StoreErrc::not_found);
  // Nothing was written, and the failures did not consume a seq.
  EXPECT_EQ(db_->room_info("general")->last_seq, 0u);
  EXPECT_EQ(db_->append("general", "alice", "m1")->message.seq, 1u);
}

TEST_F(SqliteStoreTest, DuplicateReturnsOriginalAndCreatesNothing) {
  seed();
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  auto original = db_->append("general", "alice", "same", "first body");
  ASSERT_TRUE(original.has_value());
  ASSERT_TRUE(db_->append("general", "bob", "other").has_value());
  std::this_thread::sleep_for(milliseconds(5));

  auto retry = db_->append("general", "alice", "same", "a different body");
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->message.seq, original->message.seq);
  EXPECT_EQ(retry->message.ts_ms, original->message.ts_ms);
  EXPECT_EQ(retry->message.body, "first body");
  EXPECT_EQ(retry->message.from, "alice");
  EXPECT_EQ(retry->message.client_msg_id, "same");
  EXPECT_EQ(db_->room_info("general")->last_seq, 2u);
  EXPECT_EQ(db_->read_range("general", 0, kNewest, 100)->size(), 2u);

  // The key is (room, sender, client_msg_id): another sender or room is a new message.
  auto bob = db_->append("general", "bob", "same");
  ASSERT_TRUE(bob.has_value());
  EXPECT_FALSE(bob->duplicate);
  EXPECT_EQ(bob->message.seq, 3u);
  ASSERT_TRUE(db_->create_room("random", RoomKind::public_room, "alice").has_value());
  auto elsewhere = db_->append("random", "alice", "same");
  ASSERT_TRUE(elsewhere.has_value());
  EXPECT_FALSE(elsewhere->duplicate);
  EXPECT_EQ(elsewhere->message.seq, 1u);
}

TEST_F(SqliteStoreTest, DuplicateAfterLeavingStillGetsOriginalAck) {
  seed();
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  auto original = db_->append("general", "bob", "m1");
  ASSERT_TRUE(db_->leave_room("general", "bob").has_value());
  auto retry = db_->append("general", "bob", "m1");
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->message.seq, original->message.seq);
}

TEST_F(SqliteStoreTest, DuplicatesInsideOneBatch) {
  seed();
  // Submitted back to back, these usually share a batch: the second must see the first's row.
  std::vector<std::future<Result<AppendResult>>> futures;
  std::vector<std::shared_ptr<std::promise<Result<AppendResult>>>> promises;
  for (int i = 0; i < 10; ++i) {
    auto p = std::make_shared<std::promise<Result<AppendResult>>>();
    futures.push_back(p->get_future());
    store_->append({"general", "alice", "same", "body " + std::to_string(i)},
                   [p](Result<AppendResult> r) { p->set_value(std::move(r)); });
  }
  for (std::size_t i = 0; i < futures.size(); ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->message.seq, 1u);
    EXPECT_EQ(r->duplicate, i != 0);
    EXPECT_EQ(r->message.body, "body 0");
  }
  EXPECT_EQ(db_->room_info("general")->last_seq, 1u);
}

TEST_F(SqliteStoreTest, ReadRange) {
  seed();
  append_n("general", "alice", 10);
  auto all = db_->read_range("general", 0, kNewest, 100);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(seqs_of(*all), iota_seqs(1, 10));
  EXPECT_EQ(all->front().from, "alice");
  EXPECT_EQ(all->front().client_msg_id, "alice-0");
  EXPECT_EQ(all->back().client_msg_id, "alice-9");

  EXPECT_EQ(seqs_of(*db_->read_range("general", 3, 7, 100)), iota_seqs(4, 7));
  EXPECT_EQ(seqs_of(*db_->read_range("general", 3, 7, 2)), iota_seqs(4, 5));
  EXPECT_EQ(seqs_of(*db_->read_range("general", 9, 20, 100)), iota_seqs(10, 10));
  EXPECT_TRUE(db_->read_range("general", 10, kNewest, 100)->empty());
  EXPECT_TRUE(db_->read_range("general", 5, 5, 100)->empty());
  EXPECT_TRUE(db_->read_range("general", 7, 3, 100)->empty());
  EXPECT_TRUE(db_->read_range("general", 0, kNewest, 0)->empty());
  EXPECT_TRUE(db_->read_range("general", kNewest, kNewest, 10)->empty());
  EXPECT_EQ(error_of(db_->read_range("nowhere", 0, kNewest, 10)), StoreErrc::not_found);
  // An existing room without messages is an empty range, not an error.
  ASSERT_TRUE(db_->create_room("empty", RoomKind::public_room, "alice").has_value());
  auto empty = db_->read_range("empty", 0, kNewest, 10);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST_F(SqliteStoreTest, HistoryNewestPage) {
  seed();
  append_n("general", "alice", 10);
  auto page = db_->history("general", kNewest, 3);
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(seqs_of(page->messages), iota_seqs(8, 10));
  EXPECT_TRUE(page->has_more);
  // last_seq + 1 means the same as "newest".
  auto same = db_->history("general", 11, 3);
  EXPECT_EQ(seqs_of(same->messages), iota_seqs(8, 10));
  EXPECT_TRUE(same->has_more);
}

TEST_F(SqliteStoreTest, HistoryBoundaries) {
  seed();
  append_n("general", "alice", 10);
  // Exactly the remaining messages: no more.
  auto exact = db_->history("general", 11, 10);
  EXPECT_EQ(seqs_of(exact->messages), iota_seqs(1, 10));
  EXPECT_FALSE(exact->has_more);
  // One fewer than remaining: more.
  auto short_page = db_->history("general", 11, 9);
  EXPECT_EQ(seqs_of(short_page->messages), iota_seqs(2, 10));
  EXPECT_TRUE(short_page->has_more);
  // Paging backwards from the front of the previous page.
  auto older = db_->history("general", 4, 2);
  EXPECT_EQ(seqs_of(older->messages), iota_seqs(2, 3));
  EXPECT_TRUE(older->has_more);
  auto oldest = db_->history("general", 2, 5);
  EXPECT_EQ(seqs_of(oldest->messages), iota_seqs(1, 1));
  EXPECT_FALSE(oldest->has_more);
  auto nothing = db_->history("general", 1, 5);
  EXPECT_TRUE(nothing->messages.empty());
  EXPECT_FALSE(nothing->has_more);
  // limit 0 returns nothing but still says whether messages exist.
  auto zero = db_->history("general", kNewest, 0);
  EXPECT_TRUE(zero->messages.empty());
  EXPECT_TRUE(zero->has_more);
}

TEST_F(SqliteStoreTest, HistoryErrorsAndEmptyRoom) {
  seed();
  EXPECT_EQ(error_of(db_->history("nowhere", kNewest, 10)), StoreErrc::not_found);
  auto empty = db_->history("general", kNewest, 10);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->messages.empty());
  EXPECT_FALSE(empty->has_more);
}

// --- read markers ------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, ReadMarkerClampsAndNeverMovesBack) {
  seed();
  append_n("general", "alice", 5);
  EXPECT_EQ(*db_->set_read("general", "alice", 3), 3u);
  EXPECT_EQ(*db_->set_read("general", "alice", 2), 3u);   // never back
  EXPECT_EQ(*db_->set_read("general", "alice", 99), 5u);  // clamped to last_seq
  EXPECT_EQ(*db_->set_read("general", "alice", kNewest), 5u);
  EXPECT_EQ(*db_->set_read("general", "alice", 0), 5u);
  EXPECT_EQ(db_->list_rooms("alice")->front().read_seq, 5u);
  ASSERT_TRUE(db_->append("general", "alice", "late").has_value());
  EXPECT_EQ(*db_->set_read("general", "alice", 6), 6u);
}

TEST_F(SqliteStoreTest, ReadMarkerErrors) {
  seed();
  EXPECT_EQ(error_of(db_->set_read("general", "bob", 1)), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->set_read("nowhere", "alice", 1)), StoreErrc::not_found);
}

// --- writer behaviour --------------------------------------------------------------------------

// Many threads append to several rooms at once without waiting for each other: every room's
// seqs must be exactly 1..N, each handed out once, and match what is stored.
TEST_F(SqliteStoreTest, SeqsGaplessUnderConcurrentAppenders) {
  constexpr int kThreads = 8;
  constexpr int kRooms = 4;
  constexpr int kPerThreadPerRoom = 100;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(db_->create_user("u" + std::to_string(t)).has_value());
  }
  for (int r = 0; r < kRooms; ++r) {
    const std::string room = "room" + std::to_string(r);
    ASSERT_TRUE(db_->create_room(room, RoomKind::public_room, "u0").has_value());
    for (int t = 1; t < kThreads; ++t) {
      ASSERT_TRUE(db_->join_room(room, "u" + std::to_string(t)).has_value());
    }
  }

  std::mutex mutex;
  std::map<std::string, std::vector<std::uint64_t>> acked;              // room -> seqs
  std::map<std::pair<std::string, std::string>, std::uint64_t> seq_of;  // (room, id) -> seq
  std::atomic<int> failures{0};
  std::atomic<int> pending{kThreads * kRooms * kPerThreadPerRoom};
  std::promise<void> all_done;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string user = "u" + std::to_string(t);
      for (int i = 0; i < kPerThreadPerRoom; ++i) {
        for (int r = 0; r < kRooms; ++r) {
          const std::string room = "room" + std::to_string(r);
          const std::string id = user + "-" + std::to_string(i);
          store_->append({room, user, id, "x"}, [&, room, id](Result<AppendResult> res) {
            if (!res.has_value() || res->duplicate) {
              ++failures;
            } else {
              std::lock_guard lock(mutex);
              acked[room].push_back(res->message.seq);
              seq_of[{room, id}] = res->message.seq;
            }
            if (--pending == 0) all_done.set_value();
          });
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  all_done.get_future().wait();

  EXPECT_EQ(failures.load(), 0);
  constexpr std::uint64_t kPerRoom = kThreads * kPerThreadPerRoom;
  for (int r = 0; r < kRooms; ++r) {
    const std::string room = "room" + std::to_string(r);
    auto seqs = acked[room];
    std::sort(seqs.begin(), seqs.end());
    EXPECT_EQ(seqs, iota_seqs(1, kPerRoom)) << room;
    EXPECT_EQ(db_->room_info(room)->last_seq, kPerRoom);
    auto stored = db_->read_range(room, 0, kNewest, 10'000);
    ASSERT_TRUE(stored.has_value());
    EXPECT_EQ(seqs_of(*stored), iota_seqs(1, kPerRoom));
    for (const auto& m : *stored) {
      EXPECT_EQ((seq_of[{room, m.client_msg_id}]), m.seq);
    }
  }
  // The writer batched: far fewer commits than appends.
  EXPECT_LT(batch_histogram().snapshot().count,
            static_cast<std::uint64_t>(kThreads * kRooms * kPerThreadPerRoom));
}

TEST_F(SqliteStoreTest, GroupCommitBatchesConcurrentWrites) {
  seed();
  constexpr int kOps = 2000;
  const auto batches_before = batch_histogram().snapshot().count;
  std::atomic<int> pending{kOps};
  std::promise<void> done;
  for (int i = 0; i < kOps; ++i) {
    store_->append({"general", "alice", "m" + std::to_string(i), "x"}, [&](Result<AppendResult> r) {
      EXPECT_TRUE(r.has_value());
      if (--pending == 0) done.set_value();
    });
  }
  done.get_future().wait();
  const auto snap = batch_histogram().snapshot();
  const auto batches = snap.count - batches_before;
  EXPECT_LT(batches, static_cast<std::uint64_t>(kOps));
  EXPECT_GT(batches, 0u);
  EXPECT_GE(snap.sum, static_cast<double>(kOps));
  // The latency histogram saw every append.
  auto& latency = registry_->histogram("parley_store_query_seconds", "", {}, {{"op", "append"}});
  EXPECT_GE(latency.snapshot().count, static_cast<std::uint64_t>(kOps));
}

// Within one batch, a failing operation is undone alone: the others still commit.
TEST_F(SqliteStoreTest, FailingOperationDoesNotAbortItsBatch) {
  seed();
  constexpr int kOps = 400;
  std::atomic<int> pending{kOps};
  std::atomic<int> ok{0};
  std::atomic<int> conflicts{0};
  std::promise<void> done;
  for (int i = 0; i < kOps; ++i) {
    auto cb = [&](Result<Ok> r) {
      if (r.has_value()) ++ok;
      if (!r.has_value() && r.error() == StoreErrc::conflict) ++conflicts;
      if (--pending == 0) done.set_value();
    };
    // Every other create is for a room that exists already.
    store_->create_room(i % 2 == 0 ? "r" + std::to_string(i) : "general", RoomKind::public_room,
                        "alice", cb);
  }
  done.get_future().wait();
  EXPECT_EQ(ok.load(), kOps / 2);
  EXPECT_EQ(conflicts.load(), kOps / 2);
  EXPECT_LT(batch_histogram().snapshot().count, static_cast<std::uint64_t>(kOps) + 3);
  reopen();
  EXPECT_EQ(db_->list_rooms("alice")->size(), static_cast<std::size_t>(kOps / 2 + 1));
}

TEST_F(SqliteStoreTest, WritesApplyInSubmissionOrder) {
  seed();
  // Submitted without waiting: the join must precede the append, which must precede the leave.
  std::promise<Result<AppendResult>> appended;
  store_->join_room("general", "bob", [](Result<JoinResult>) {});
  store_->append({"general", "bob", "m1", "hi"},
                 [&](Result<AppendResult> r) { appended.set_value(std::move(r)); });
  store_->leave_room("general", "bob", [](Result<Ok>) {});
  auto r = appended.get_future().get();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message.seq, 1u);
  EXPECT_FALSE(*db_->is_member("general", "bob"));
}

TEST_F(SqliteStoreTest, ReadsSeeWritesWhoseCallbackRan) {
  seed();
  std::promise<Result<std::vector<StoredMessage>>> read;
  store_->append({"general", "alice", "m1", "hi"}, [&](Result<AppendResult> r) {
    ASSERT_TRUE(r.has_value());
    // Submitted from the writer's callback: the read must see the committed message.
    store_->read_range("general", 0, kNewest, 10,
                       [&](Result<std::vector<StoredMessage>> m) { read.set_value(std::move(m)); });
  });
  auto messages = read.get_future().get();
  ASSERT_TRUE(messages.has_value());
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ(messages->front().body, "hi");
}

TEST_F(SqliteStoreTest, ThrowingCallbackDoesNotStopTheStore) {
  seed();
  store_->append({"general", "alice", "m1", "x"},
                 [](Result<AppendResult>) { throw std::runtime_error("callback bug"); });
  store_->get_user("alice", [](Result<UserAuth>) { throw std::runtime_error("callback bug"); });
  EXPECT_EQ(db_->append("general", "alice", "m2")->message.seq, 2u);
  EXPECT_TRUE(db_->get_user("alice").has_value());
}

// --- durability and shutdown -------------------------------------------------------------------

TEST_F(SqliteStoreTest, DataSurvivesReopening) {
  seed();
  ASSERT_TRUE(db_->create_token("h1", "alice", 42).has_value());
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  append_n("general", "alice", 3);
  ASSERT_TRUE(db_->set_read("general", "bob", 2).has_value());
  reopen();
  EXPECT_EQ(db_->get_user("alice")->password_hash, "hash");
  EXPECT_EQ(db_->lookup_token("h1")->user, "alice");
  EXPECT_TRUE(*db_->is_member("general", "bob"));
  EXPECT_EQ(seqs_of(*db_->read_range("general", 0, kNewest, 10)), iota_seqs(1, 3));
  EXPECT_EQ(db_->list_rooms("bob")->front().read_seq, 2u);
  // The counter continues where it was, and dedup still knows the old ids.
  EXPECT_EQ(db_->append("general", "alice", "new")->message.seq, 4u);
  EXPECT_TRUE(db_->append("general", "alice", "alice-0")->duplicate);
}

TEST_F(SqliteStoreTest, DestructorDrainsQueuedWrites) {
  seed();
  constexpr int kOps = 500;
  std::atomic<int> succeeded{0};
  for (int i = 0; i < kOps; ++i) {
    store_->append({"general", "alice", "m" + std::to_string(i), "x"}, [&](Result<AppendResult> r) {
      if (r.has_value()) ++succeeded;
    });
  }
  close();  // returns only after every queued callback has run
  EXPECT_EQ(succeeded.load(), kOps);
  open();
  EXPECT_EQ(db_->room_info("general")->last_seq, static_cast<std::uint64_t>(kOps));
}

TEST_F(SqliteStoreTest, CallbacksSubmittingDuringShutdownAreStillCalled) {
  seed();
  std::atomic<int> calls{0};
  for (int i = 0; i < 50; ++i) {
    store_->append({"general", "alice", "m" + std::to_string(i), "x"},
                   [&, s = store_.get()](Result<AppendResult>) {
                     ++calls;
                     s->history("general", kNewest, 5, [&](Result<HistoryPage>) { ++calls; });
                   });
  }
  close();
  EXPECT_EQ(calls.load(), 100);
}

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

TEST_F(SqliteStoreTest, SmallBatchLimitStillCommitsEverything) {
  close();
  auto o = options();
  o.max_batch = 3;
  o.reader_threads = 1;
  open(o);
  seed();
  constexpr int kOps = 100;
  std::atomic<int> pending{kOps};
  std::promise<void> done;
  for (int i = 0; i < kOps; ++i) {
    store_->append({"general", "alice", "m" + std::to_string(i), "x"}, [&](Result<AppendResult>) {
      if (--pending == 0) done.set_value();
    });
  }
  done.get_future().wait();
  EXPECT_EQ(db_->room_info("general")->last_seq, static_cast<std::uint64_t>(kOps));
  const auto snap = batch_histogram().snapshot();
  // No batch exceeded the limit: everything sits in the buckets up to 4 (bounds 1, 2, 4, ...).
  ASSERT_GE(snap.cumulative.size(), 3u);
  EXPECT_EQ(snap.cumulative[2], snap.count);
}

}  // namespace
}  // namespace parley::store
