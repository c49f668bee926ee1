// The Store port's contract, run against both adapters: SQLite on a temporary file, and
// PostgreSQL on a fresh schema of the server named by PARLEY_TEST_PG_URL. Every operation's
// success and errors, seq assignment under concurrency (several threads, and two store instances
// on one database: two "nodes"), dedup, group commit, durability across reopening, history
// boundaries and read markers. PostgreSQL-only tests follow: start-up errors, migrations by
// several nodes at once, lock timeouts, and the server going away and coming back.
//
// Environment (scripts/test.sh provides it; see the README's test command):
//   PARLEY_TEST_PG_URL   libpq URL of a database the tests may create schemas in (required: the
//                        PostgreSQL tests fail without it)
//   PARLEY_TEST_PG_DATA  the server's data directory, for the restart test, which stops and
//                        starts the server with `runuser -u postgres -- pg_ctl` (so runs as root)
//   PARLEY_TEST_PG_OPTS  the server's start options (pg_ctl -o); optional, read from the data
//                        directory's postmaster.opts when absent
//   PARLEY_TEST_PG_BIN   PostgreSQL's bin directory; optional, /usr/lib/postgresql/15/bin

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/migrations.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace parley::store {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// "prefix" + number, without the `const char* + std::string&&` overload that trips GCC 12's
// -Wrestrict false positive at -O3.
std::string numbered(std::string_view prefix, std::int64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

constexpr std::uint64_t kNewest = std::numeric_limits<std::uint64_t>::max();
constexpr const char* kHowToRun =
    "PARLEY_TEST_PG_URL is not set. Run the tests with the README's test command "
    "(scripts/test.sh), which starts PostgreSQL; or start one with "
    "`deploy/servers.sh start /tmp/pg postgres` and export the PARLEY_TEST_PG_* lines it prints.";

// Calls `submit` with a callback that fulfils a promise, and waits for it: the callback API made
// blocking for tests. Also checks that the callback runs exactly once (a second call would throw
// std::future_error from set_value).
template <class T, class Submit>
Result<T> wait_for(Submit&& submit) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  submit([promise](Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "store callback not called within 60 s";
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
  Result<Ok> set_admin(const std::string& user, bool admin) {
    return wait_for<Ok>([&](auto cb) { s_.set_admin(user, admin, cb); });
  }
  Result<Ok> delete_user(const std::string& user) {
    return wait_for<Ok>([&](auto cb) { s_.delete_user(user, cb); });
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

// Waits until `pred` holds or `timeout` passes; returns whether it held.
template <class Pred>
bool eventually(Pred pred, milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL helpers.

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

// A blocking admin connection for the tests' own statements (schemas, holding locks).
class PgAdmin {
 public:
  explicit PgAdmin(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    // DROP SCHEMA ... CASCADE lists every table as a notice: not worth the test log.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
  }
  ~PgAdmin() { PQfinish(conn_); }
  PgAdmin(const PgAdmin&) = delete;
  PgAdmin& operator=(const PgAdmin&) = delete;

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(conn_); }
  // Runs `sql`; returns "" or the error message.
  std::string exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string e = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                        ? ""
                        : std::string(PQresultErrorMessage(r)) + " (in " + sql + ")";
    PQclear(r);
    return e;
  }
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    std::string v = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return v;
  }

 private:
  PGconn* conn_;
};

// The base URL with search_path set to `schema`, so that the store's unqualified tables live
// there.
std::string url_with_schema(const std::string& base, const std::string& schema) {
  if (base.starts_with("postgres://") || base.starts_with("postgresql://")) {
    return base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
           schema;
  }
  return base + " options='-csearch_path=" + schema + "'";
}

std::string schema_name(const std::string& test) {
  std::string s = numbered("parley_t_", ::getpid()) + "_";
  for (char c : test) {
    if (s.size() >= 60) break;
    s.push_back(std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c))
                                                            : '_');
  }
  return s;
}

// Runs argv with output discarded; returns its exit status (-1 if it could not run).
int run_command(const std::vector<std::string>& argv) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The PostgreSQL server of the tests, stopped and started with pg_ctl as the postgres user.
class PgServer {
 public:
  // Empty when the environment does not say enough; `why` then says what is missing.
  static std::optional<PgServer> from_env(std::string& why) {
    const char* data = env("PARLEY_TEST_PG_DATA");
    if (data == nullptr) {
      why =
          "PARLEY_TEST_PG_DATA (the server's data directory) is not set; the README's test "
          "command sets it";
      return std::nullopt;
    }
    PgServer s;
    s.data_ = data;
    s.bin_ = env("PARLEY_TEST_PG_BIN") != nullptr ? env("PARLEY_TEST_PG_BIN")
                                                  : "/usr/lib/postgresql/15/bin";
    s.log_ = (fs::path(s.data_).parent_path() / "log").string();
    if (const char* opts = env("PARLEY_TEST_PG_OPTS")) {
      s.opts_ = opts;
    } else {
      // postmaster.opts holds the command line of the running server: "bin" "-D" "dir" "-p" ...
      std::ifstream in(fs::path(s.data_) / "postmaster.opts");
      std::string line;
      std::getline(in, line);
      std::vector<std::string> tokens;
      std::istringstream words(line);
      std::string w;
      while (words >> std::quoted(w)) tokens.push_back(w);
      for (std::size_t i = 1; i < tokens.size(); ++i) {
        if (tokens[i] == "-D") {
          ++i;
          continue;
        }
        s.opts_ += (s.opts_.empty() ? "'" : " '") + tokens[i] + "'";
      }
      if (tokens.empty()) {
        why = "cannot read " + (fs::path(s.data_) / "postmaster.opts").string() +
              " and PARLEY_TEST_PG_OPTS is not set";
        return std::nullopt;
      }
    }
    return s;
  }

  bool stop() const {
    return run_command({"runuser", "-u", "postgres", "--", bin_ + "/pg_ctl", "-D", data_, "-m",
                        "fast", "-w", "-t", "60", "stop"}) == 0;
  }
  bool start() const {
    return run_command({"runuser", "-u", "postgres", "--", bin_ + "/pg_ctl", "-D", data_, "-l",
                        log_, "-w", "-t", "60", "-o", opts_, "start"}) == 0;
  }

 private:
  std::string data_;
  std::string bin_;
  std::string log_;
  std::string opts_;
};

// ---------------------------------------------------------------------------------------------
// Fixtures.

enum class Adapter { sqlite, postgres };

void PrintTo(Adapter a, std::ostream* os) {
  *os << (a == Adapter::sqlite ? "sqlite" : "postgres");
}

std::string adapter_name(const ::testing::TestParamInfo<Adapter>& info) {
  return info.param == Adapter::sqlite ? "sqlite" : "postgres";
}

// A store with its own metrics registry; the registry outlives the store that uses it.
struct Instance {
  std::unique_ptr<metrics::Registry> registry;
  std::unique_ptr<Store> store;
};

// Owns the database of one test (a directory, or a PostgreSQL schema) and opens stores on it.
class StoreFixture : public ::testing::Test {
 protected:
  void set_up(Adapter adapter) {
    adapter_ = adapter;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    if (adapter_ == Adapter::sqlite) {
      std::replace(name.begin(), name.end(), '/', '_');
      dir_ = fs::temp_directory_path() / (numbered("parley-contract-", ::getpid()) + "-" + name);
      fs::remove_all(dir_);
      fs::create_directories(dir_);
    } else {
      const char* base = env("PARLEY_TEST_PG_URL");
      if (base == nullptr) FAIL() << kHowToRun;
      base_url_ = base;
      schema_ = schema_name(name);
      PgAdmin admin(base_url_);
      ASSERT_TRUE(admin.ok()) << "cannot connect to PARLEY_TEST_PG_URL: " << admin.error();
      ASSERT_EQ(admin.exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE"), "");
      ASSERT_EQ(admin.exec("CREATE SCHEMA " + schema_), "");
      url_ = url_with_schema(base_url_, schema_);
    }
    open();
  }

  void TearDown() override {
    close();
    second_.store.reset();
    if (adapter_ == Adapter::sqlite) {
      if (!dir_.empty()) fs::remove_all(dir_);
    } else if (!schema_.empty()) {
      PgAdmin admin(base_url_);
      if (admin.ok()) (void)admin.exec("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
    }
  }

  SqliteOptions sqlite_options() const {
    SqliteOptions o;
    o.path = (dir_ / "parley.db").string();
    // The tests check logic, not power-loss durability; NORMAL keeps them fast on slow disks.
    o.synchronous = SqliteSync::normal;
    return o;
  }
  PostgresOptions pg_options() const {
    PostgresOptions o;
    o.url = url_;
    o.reconnect_min = milliseconds(50);
    o.reconnect_max = milliseconds(500);
    o.health_interval = milliseconds(200);
    return o;
  }

  // A new store on this test's database; `tune` adjusts the adapter's options.
  Instance make(std::size_t max_batch = 1024,
                milliseconds pg_query_timeout = milliseconds(10'000)) {
    Instance i;
    i.registry = std::make_unique<metrics::Registry>();
    if (adapter_ == Adapter::sqlite) {
      auto o = sqlite_options();
      o.max_batch = max_batch;
      i.store = std::make_unique<SqliteStore>(o, *i.registry);
    } else {
      auto o = pg_options();
      o.max_batch = max_batch;
      o.query_timeout = pg_query_timeout;
      i.store = std::make_unique<PostgresStore>(o, *i.registry);
    }
    return i;
  }

  void open(std::size_t max_batch = 1024) {
    close();
    main_ = make(max_batch);
    db_ = std::make_unique<Blocking>(*main_.store);
  }
  void close() {
    db_.reset();
    main_.store.reset();
  }
  void reopen() { open(); }

  Store& store() { return *main_.store; }
  int schema_version() const {
    if (auto* s = dynamic_cast<SqliteStore*>(main_.store.get())) return s->schema_version();
    if (auto* p = dynamic_cast<PostgresStore*>(main_.store.get())) return p->schema_version();
    return -1;
  }
  const std::vector<Migration>& migrations() const {
    return adapter_ == Adapter::sqlite ? sqlite_migrations() : postgres_migrations();
  }

  // Alice and bob exist; alice created the public room "general".
  void seed() {
    ASSERT_TRUE(db_->create_user("alice").has_value());
    ASSERT_TRUE(db_->create_user("bob").has_value());
    ASSERT_TRUE(db_->create_room("general", RoomKind::public_room, "alice").has_value());
  }

  void append_n(const std::string& room, const std::string& from, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(db_->append(room, from, from + numbered("-", i)).has_value());
    }
  }

  metrics::Histogram& batch_histogram() {
    return main_.registry->histogram("parley_store_batch_size", "", {}, {});
  }

  // The first column of the first row of `sql`, as text, read straight from the database
  // (outside the store) for what the port cannot show, such as rows of a deleted user.
  std::string db_value(const std::string& sql) {
    if (adapter_ == Adapter::postgres) {
      PgAdmin admin(url_);
      EXPECT_TRUE(admin.ok()) << admin.error();
      return admin.value(sql);
    }
    sqlite3* db = nullptr;
    std::string out;
    if (sqlite3_open_v2(sqlite_options().path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_stmt* stmt = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
          sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
        out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      } else {
        ADD_FAILURE() << sqlite3_errmsg(db) << " (in " << sql << ")";
      }
      sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db);
    return out;
  }
  // How many tokens, memberships and invitations name `user`, e.g. "0/0/0".
  std::string rows_naming(const std::string& user) {
    const std::string column = adapter_ == Adapter::sqlite ? "user" : "user_name";
    std::string out;
    for (const char* table : {"tokens", "members", "invites"}) {
      if (!out.empty()) out += "/";
      out += db_value(std::string("SELECT count(*) FROM ") + table + " WHERE " + column + " = '" +
                      user + "'");
    }
    return out;
  }

  Adapter adapter_ = Adapter::sqlite;
  fs::path dir_;
  std::string base_url_;
  std::string schema_;
  std::string url_;
  Instance main_;
  Instance second_;
  std::unique_ptr<Blocking> db_;
};

class StoreContract : public StoreFixture, public ::testing::WithParamInterface<Adapter> {
 protected:
  void SetUp() override { set_up(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Adapters, StoreContract,
                         ::testing::Values(Adapter::sqlite, Adapter::postgres), adapter_name);

// --- opening and migrations --------------------------------------------------------------------

TEST_P(StoreContract, MigrationsAppliedAndIdempotentOnReopen) {
  ASSERT_FALSE(migrations().empty());
  EXPECT_EQ(migrations().front().version, 1);
  EXPECT_EQ(schema_version(), migrations().back().version);
  EXPECT_TRUE(store().ready());
  seed();
  reopen();
  EXPECT_EQ(schema_version(), migrations().back().version);
  EXPECT_TRUE(db_->get_user("alice").has_value());
  EXPECT_TRUE(db_->room_info("general").has_value());
}

// --- users and tokens --------------------------------------------------------------------------

TEST_P(StoreContract, CreateAndGetUser) {
  ASSERT_TRUE(db_->create_user("alice", "$argon2id$x").has_value());
  auto u = db_->get_user("alice");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password_hash, "$argon2id$x");
}

TEST_P(StoreContract, CreateUserTwiceConflicts) {
  ASSERT_TRUE(db_->create_user("alice", "first").has_value());
  EXPECT_EQ(error_of(db_->create_user("alice", "second")), StoreErrc::conflict);
  EXPECT_EQ(db_->get_user("alice")->password_hash, "first");
  EXPECT_EQ(error_of(db_->get_user("nobody")), StoreErrc::not_found);
}

TEST_P(StoreContract, TokenLifecycleAndErrors) {
  seed();
  ASSERT_TRUE(db_->create_token("h1", "alice", 1'900'000'000).has_value());
  auto t = db_->lookup_token("h1");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->expires_at, 1'900'000'000);
  EXPECT_EQ(error_of(db_->create_token("h1", "bob", 2)), StoreErrc::conflict);
  // The refused token did not replace the existing one.
  EXPECT_EQ(db_->lookup_token("h1")->user, "alice");
  EXPECT_EQ(db_->lookup_token("h1")->expires_at, 1'900'000'000);
  EXPECT_EQ(error_of(db_->create_token("h2", "nobody", 1)), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->lookup_token("unknown")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_token("unknown")), StoreErrc::not_found);

  auto deleted = db_->delete_token("h1");
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(deleted->user, "alice");
  EXPECT_EQ(deleted->expires_at, 1'900'000'000);
  EXPECT_EQ(error_of(db_->lookup_token("h1")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_token("h1")), StoreErrc::not_found);
}

TEST_P(StoreContract, AdminFlagDefaultsOffAndFollowsSetAdmin) {
  seed();
  ASSERT_TRUE(db_->create_token("ha", "alice", 1'900'000'000).has_value());
  ASSERT_TRUE(db_->create_token("hb", "bob", 1'900'000'000).has_value());
  EXPECT_FALSE(db_->lookup_token("ha")->is_admin);
  EXPECT_FALSE(db_->lookup_token("hb")->is_admin);

  ASSERT_TRUE(db_->set_admin("alice", true).has_value());
  EXPECT_TRUE(db_->lookup_token("ha")->is_admin);
  EXPECT_FALSE(db_->lookup_token("hb")->is_admin);
  ASSERT_TRUE(db_->set_admin("alice", true).has_value());  // idempotent
  EXPECT_TRUE(db_->lookup_token("ha")->is_admin);

  // A reopened store reads the flag back.
  reopen();
  EXPECT_TRUE(db_->lookup_token("ha")->is_admin);
  ASSERT_TRUE(db_->set_admin("alice", false).has_value());
  EXPECT_FALSE(db_->lookup_token("ha")->is_admin);
  EXPECT_EQ(db_->lookup_token("ha")->user, "alice");
}

TEST_P(StoreContract, SetAdminUnknownUserIsNotFound) {
  seed();
  EXPECT_EQ(error_of(db_->set_admin("nobody", true)), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->set_admin("nobody", false)), StoreErrc::not_found);
}

// --- user deletion -----------------------------------------------------------------------------

// Bob has everything a user can have: tokens, the admin flag, memberships of a public room, of a
// room he created and of a dm, a pending invitation, and messages. Deleting him takes away all
// but his messages and his name, and leaves alice as she was.
TEST_P(StoreContract, DeleteUserRemovesAccessButKeepsMessagesAndName) {
  seed();
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  ASSERT_TRUE(db_->create_room("bobs", RoomKind::public_room, "bob").has_value());
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  ASSERT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  ASSERT_TRUE(db_->append("general", "alice", "a-1", "hi bob").has_value());
  ASSERT_TRUE(db_->append("general", "bob", "b-1", "hi alice").has_value());
  ASSERT_TRUE(db_->append("dm:alice:bob", "bob", "b-2", "psst").has_value());
  ASSERT_TRUE(db_->append("bobs", "bob", "b-3", "mine").has_value());
  ASSERT_TRUE(db_->create_token("hb1", "bob", 1'900'000'000).has_value());
  ASSERT_TRUE(db_->create_token("hb2", "bob", 1'900'000'000).has_value());
  ASSERT_TRUE(db_->create_token("ha", "alice", 1'900'000'000).has_value());
  ASSERT_TRUE(db_->set_admin("bob", true).has_value());
  ASSERT_EQ(rows_naming("bob"), "2/3/1");

  ASSERT_TRUE(db_->delete_user("bob").has_value());

  // Bob can neither log in nor use a token he had.
  EXPECT_EQ(error_of(db_->get_user("bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->lookup_token("hb1")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->lookup_token("hb2")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_token("hb1")), StoreErrc::not_found);
  // His memberships are gone: nothing to list, nothing to send to or mark read.
  ASSERT_TRUE(db_->list_rooms("bob").has_value());
  EXPECT_TRUE(db_->list_rooms("bob")->empty());
  for (const char* room : {"general", "bobs", "dm:alice:bob"}) {
    EXPECT_FALSE(*db_->is_member(room, "bob")) << room;
    EXPECT_EQ(error_of(db_->append(room, "bob", "b-new")), StoreErrc::forbidden) << room;
    EXPECT_EQ(error_of(db_->set_read(room, "bob", 1)), StoreErrc::forbidden) << room;
  }
  // Tokens, memberships and the invitation are deleted, not just hidden; the row stays, marked.
  EXPECT_EQ(rows_naming("bob"), "0/0/0");
  EXPECT_EQ(db_value("SELECT count(*) FROM users WHERE name = 'bob' AND deleted_at > 0"), "1");
  EXPECT_EQ(db_value("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL"), "1");

  // Every operation naming him answers exactly as for a user who never existed.
  EXPECT_EQ(error_of(db_->create_token("hb3", "bob", 1'900'000'000)), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->set_admin("bob", false)), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->set_admin("bob", true)), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->join_room("general", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->join_room("secret", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->invite("secret", "alice", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->open_dm("dm:alice:bob", "alice", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->open_dm("dm:alice:bob", "bob", "alice")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->open_dm("dm:bob:carl", "bob", "alice")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->create_room("bobs2", RoomKind::public_room, "bob")),
            StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->room_info("bobs2")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->delete_user("bob")), StoreErrc::not_found);
  EXPECT_EQ(rows_naming("bob"), "0/0/0");
  // The name stays taken, so his messages are never attributed to a newcomer.
  EXPECT_EQ(error_of(db_->create_user("bob", "newcomer")), StoreErrc::conflict);
  EXPECT_EQ(error_of(db_->get_user("bob")), StoreErrc::not_found);

  // His messages stay where they were, under his name, and the rooms go on.
  auto general = db_->history("general", kNewest, 10);
  ASSERT_TRUE(general.has_value());
  ASSERT_EQ(general->messages.size(), 2u);
  EXPECT_EQ(general->messages[1].from, "bob");
  EXPECT_EQ(general->messages[1].body, "hi alice");
  auto dm = db_->read_range("dm:alice:bob", 0, kNewest, 10);
  ASSERT_TRUE(dm.has_value());
  ASSERT_EQ(dm->size(), 1u);
  EXPECT_EQ((*dm)[0].from, "bob");
  EXPECT_EQ((*dm)[0].body, "psst");
  EXPECT_EQ(db_->room_info("bobs")->last_seq, 1u);
  EXPECT_EQ(db_->history("bobs", kNewest, 10)->messages.at(0).from, "bob");

  // Alice is untouched: her login, token, rooms (the dm included) and sends.
  EXPECT_TRUE(db_->get_user("alice").has_value());
  EXPECT_EQ(db_->lookup_token("ha")->user, "alice");
  auto listed = db_->list_rooms("alice");
  ASSERT_TRUE(listed.has_value());
  std::vector<std::string> alice_rooms;
  for (const auto& r : *listed) alice_rooms.push_back(r.room);
  EXPECT_EQ(alice_rooms, (std::vector<std::string>{"dm:alice:bob", "general", "secret"}));
  EXPECT_EQ(db_->append("dm:alice:bob", "alice", "a-2")->message.seq, 2u);
  EXPECT_EQ(db_->append("general", "alice", "a-3")->message.seq, 3u);

  // The deletion is durable.
  reopen();
  EXPECT_EQ(error_of(db_->get_user("bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->create_user("bob", "newcomer")), StoreErrc::conflict);
  EXPECT_EQ(error_of(db_->delete_user("bob")), StoreErrc::not_found);
  EXPECT_TRUE(db_->get_user("alice").has_value());
}

TEST_P(StoreContract, DeleteUnknownUserIsNotFound) {
  seed();
  EXPECT_EQ(error_of(db_->delete_user("nobody")), StoreErrc::not_found);
  // ... and creates no tombstone: the name is still free.
  EXPECT_TRUE(db_->create_user("nobody").has_value());
  EXPECT_TRUE(db_->delete_user("nobody").has_value());
  EXPECT_EQ(error_of(db_->delete_user("nobody")), StoreErrc::not_found);
  EXPECT_TRUE(db_->get_user("alice").has_value());
  EXPECT_TRUE(db_->get_user("bob").has_value());
}

// Writes queued together land in one batch and apply in submission order around the deletion:
// what came before it is undone by it, what comes after sees the user gone.
TEST_P(StoreContract, DeleteUserInsideABatchAppliesInOrder) {
  seed();
  ASSERT_TRUE(db_->create_room("other", RoomKind::public_room, "alice").has_value());
  std::vector<std::future<std::error_code>> results;
  auto track = [&results]() {
    auto p = std::make_shared<std::promise<std::error_code>>();
    results.push_back(p->get_future());
    return [p](auto r) { p->set_value(r.has_value() ? std::error_code{} : r.error()); };
  };
  store().create_token("hb", "bob", 1'900'000'000, track());
  store().join_room("general", "bob", track());
  store().append({"general", "bob", "b-1", "before"}, track());
  store().append({"other", "alice", "a-1", "unrelated"}, track());
  store().delete_user("bob", track());
  store().append({"general", "bob", "b-2", "after"}, track());
  store().join_room("other", "bob", track());
  store().create_token("hb2", "bob", 1'900'000'000, track());
  store().create_user("bob", "again", track());
  store().delete_user("bob", track());
  std::vector<StoreErrc> got;
  for (auto& f : results) {
    const std::error_code ec = f.get();
    got.push_back(!ec ? StoreErrc::ok
                      : (ec.category() == store_category() ? static_cast<StoreErrc>(ec.value())
                                                           : StoreErrc::internal));
  }
  using enum StoreErrc;
  const std::vector<StoreErrc> want = {ok,        ok,        ok,        ok,       ok,
                                       forbidden, not_found, not_found, conflict, not_found};
  EXPECT_EQ(got, want);
  EXPECT_EQ(rows_naming("bob"), "0/0/0");
  auto h = db_->history("general", kNewest, 10);
  ASSERT_TRUE(h.has_value());
  ASSERT_EQ(h->messages.size(), 1u);
  EXPECT_EQ(h->messages[0].body, "before");
  EXPECT_EQ(db_->room_info("other")->last_seq, 1u);
}

// Two nodes: one deletes users while the other has them join rooms, open dms, log in and send.
// Whatever the interleaving, nothing naming a deleted user survives, nothing deadlocks, and
// every answer is one the contract allows.
TEST_P(StoreContract, TwoNodesDeletingUsersWhileTheyActLeaveNothingBehind) {
  seed();
  constexpr int kUsers = 30;
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(db_->create_room(numbered("room", r), RoomKind::public_room, "alice").has_value());
  }
  for (int i = 0; i < kUsers; ++i) {
    ASSERT_TRUE(db_->create_user(numbered("u", i)).has_value());
    ASSERT_TRUE(db_->join_room("room0", numbered("u", i)).has_value());
  }
  second_ = make();
  std::mutex mu;
  std::map<std::string, int> outcomes;  // error message -> count
  std::atomic<int> pending{0};
  std::promise<void> done;
  auto count = [&](auto r) {
    {
      std::lock_guard lock(mu);
      ++outcomes[r.has_value() ? "ok" : r.error().message()];
    }
    if (--pending == 0) done.set_value();
  };
  pending = kUsers * 7;
  for (int i = 0; i < kUsers; ++i) {
    const std::string u = numbered("u", i);
    Store& other = *second_.store;
    other.join_room("room1", u, count);
    other.create_token(numbered("tok", i), u, 1'900'000'000, count);
    other.append({"room0", u, "m1", "x"}, count);
    store().delete_user(u, count);
    other.open_dm("dm:alice:" + u, "alice", u, count);
    other.join_room("room2", u, count);
    other.append({"room1", u, "m2", "y"}, count);
  }
  ASSERT_EQ(done.get_future().wait_for(seconds(120)), std::future_status::ready);
  for (const auto& [what, n] : outcomes) {
    const bool allowed = what == "ok" || what == make_error_code(StoreErrc::not_found).message() ||
                         what == make_error_code(StoreErrc::forbidden).message();
    EXPECT_TRUE(allowed) << n << " x " << what;
  }
  for (int i = 0; i < kUsers; ++i) {
    const std::string u = numbered("u", i);
    EXPECT_EQ(error_of(db_->get_user(u)), StoreErrc::not_found) << u;
    EXPECT_TRUE(db_->list_rooms(u)->empty()) << u;
    EXPECT_EQ(error_of(db_->lookup_token(numbered("tok", i))), StoreErrc::not_found) << u;
    EXPECT_EQ(rows_naming(u), "0/0/0") << u;
  }
  EXPECT_EQ(db_->list_rooms("alice")->size(),
            4u + std::stoul(db_value("SELECT count(*) FROM rooms WHERE kind = 'dm'")));
}

// A database created by an earlier build (schema version 1, before user deletion) is upgraded on
// open: its users keep working and can be deleted.
TEST_P(StoreContract, Version1DatabaseUpgrades) {
  close();
  ASSERT_GE(migrations().size(), 2u);
  const Migration& first = migrations().front();
  ASSERT_EQ(first.version, 1);
  if (adapter_ == Adapter::sqlite) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(sqlite_options().path.c_str(), &db), SQLITE_OK);
    const std::string sql = std::string(first.sql) +
                            "; PRAGMA user_version = 1;"
                            "INSERT INTO users (name, password_hash, created_at) "
                            "VALUES ('old', 'h', 1), ('older', 'h', 1);"
                            "INSERT INTO tokens (hash, user, expires_at) "
                            "VALUES ('ho', 'old', 1900000000)";
    char* msg = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    EXPECT_EQ(rc, SQLITE_OK) << (msg != nullptr ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
  } else {
    PgAdmin admin(base_url_);
    ASSERT_TRUE(admin.ok());
    ASSERT_EQ(admin.exec("DROP SCHEMA " + schema_ + " CASCADE; CREATE SCHEMA " + schema_), "");
    PgAdmin in_schema(url_);
    ASSERT_TRUE(in_schema.ok());
    // The adapter's own bookkeeping table, as the first build created it.
    ASSERT_EQ(in_schema.exec(std::string(first.sql)), "");
    ASSERT_EQ(in_schema.exec("CREATE TABLE schema_version (version integer NOT NULL PRIMARY KEY, "
                             "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
                             "INSERT INTO schema_version (version, name) VALUES (1, '" +
                             std::string(first.name) +
                             "');"
                             "INSERT INTO users (name, password_hash, created_at) "
                             "VALUES ('old', 'h', 1), ('older', 'h', 1);"
                             "INSERT INTO tokens (hash, user_name, expires_at) "
                             "VALUES ('ho', 'old', 1900000000)"),
              "");
  }
  open();
  EXPECT_EQ(schema_version(), migrations().back().version);
  EXPECT_EQ(db_->get_user("old")->password_hash, "h");
  EXPECT_EQ(db_->lookup_token("ho")->user, "old");
  ASSERT_TRUE(db_->delete_user("old").has_value());
  EXPECT_EQ(error_of(db_->get_user("old")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->lookup_token("ho")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->create_user("old")), StoreErrc::conflict);
  EXPECT_TRUE(db_->get_user("older").has_value());
}

// --- rooms and membership ----------------------------------------------------------------------

TEST_P(StoreContract, CreateRoomMakesCreatorMemberAndErrors) {
  seed();
  EXPECT_TRUE(*db_->is_member("general", "alice"));
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  auto info = db_->room_info("general");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->room, "general");
  EXPECT_EQ(info->kind, RoomKind::public_room);
  EXPECT_EQ(info->last_seq, 0u);

  EXPECT_EQ(error_of(db_->create_room("general", RoomKind::private_room, "bob")),
            StoreErrc::conflict);
  EXPECT_EQ(db_->room_info("general")->kind, RoomKind::public_room);
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  EXPECT_EQ(error_of(db_->create_room("ghosts", RoomKind::public_room, "nobody")),
            StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->room_info("ghosts")), StoreErrc::not_found);
  // is_member of a missing room is false, not an error.
  auto missing = db_->is_member("nowhere", "alice");
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(*missing);
}

TEST_P(StoreContract, JoinPublicRoomIsIdempotent) {
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

TEST_P(StoreContract, JoinErrors) {
  seed();
  EXPECT_EQ(error_of(db_->join_room("nowhere", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->join_room("general", "nobody")), StoreErrc::not_found);
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  EXPECT_EQ(error_of(db_->join_room("secret", "bob")), StoreErrc::forbidden);
  EXPECT_FALSE(*db_->is_member("secret", "bob"));
}

TEST_P(StoreContract, PrivateRoomNeedsInvitationWhichJoiningConsumes) {
  seed();
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  ASSERT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  auto joined = db_->join_room("secret", "bob");
  ASSERT_TRUE(joined.has_value());
  EXPECT_TRUE(joined->newly_joined);
  EXPECT_EQ(joined->kind, RoomKind::private_room);
  EXPECT_FALSE(db_->join_room("secret", "bob")->newly_joined);
  ASSERT_TRUE(db_->leave_room("secret", "bob").has_value());
  EXPECT_EQ(error_of(db_->join_room("secret", "bob")), StoreErrc::forbidden);
}

TEST_P(StoreContract, LeaveRoom) {
  seed();
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  ASSERT_TRUE(db_->leave_room("general", "bob").has_value());
  EXPECT_FALSE(*db_->is_member("general", "bob"));
  // Leaving a room one is not in succeeds; leaving a missing room does not.
  EXPECT_TRUE(db_->leave_room("general", "bob").has_value());
  EXPECT_EQ(error_of(db_->leave_room("nowhere", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->append("general", "bob", "m1")), StoreErrc::forbidden);
}

TEST_P(StoreContract, InviteIsIdempotentAndErrors) {
  seed();
  ASSERT_TRUE(db_->create_user("carol").has_value());
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  EXPECT_EQ(error_of(db_->invite("nowhere", "alice", "bob")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->invite("secret", "alice", "nobody")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->invite("secret", "carol", "bob")), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->join_room("secret", "carol")), StoreErrc::forbidden);
  ASSERT_TRUE(db_->join_room("secret", "bob").has_value());
  // Inviting a member changes nothing and succeeds.
  EXPECT_TRUE(db_->invite("secret", "alice", "bob").has_value());
  EXPECT_TRUE(db_->invite("secret", "bob", "alice").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  EXPECT_EQ(error_of(db_->invite("dm:alice:bob", "alice", "carol")), StoreErrc::forbidden);
}

TEST_P(StoreContract, OpenDm) {
  seed();
  ASSERT_TRUE(db_->create_user("carol").has_value());
  auto first = db_->open_dm("dm:alice:bob", "alice", "bob");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->kind, RoomKind::dm);
  EXPECT_EQ(first->last_seq, 0u);
  EXPECT_TRUE(first->newly_joined);
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "alice"));
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "bob"));
  EXPECT_EQ(db_->room_info("dm:alice:bob")->kind, RoomKind::dm);
  // Nobody else gets in, but a member joining is the usual idempotent success.
  EXPECT_EQ(error_of(db_->join_room("dm:alice:bob", "carol")), StoreErrc::forbidden);
  auto member = db_->join_room("dm:alice:bob", "bob");
  ASSERT_TRUE(member.has_value());
  EXPECT_FALSE(member->newly_joined);
  EXPECT_EQ(member->kind, RoomKind::dm);

  ASSERT_TRUE(db_->append("dm:alice:bob", "bob", "m1").has_value());
  auto again = db_->open_dm("dm:alice:bob", "bob", "alice");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->last_seq, 1u);
  EXPECT_FALSE(again->newly_joined);
  // Opening it again brings back a user who left.
  ASSERT_TRUE(db_->leave_room("dm:alice:bob", "bob").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  EXPECT_TRUE(*db_->is_member("dm:alice:bob", "bob"));

  EXPECT_EQ(error_of(db_->open_dm("dm:alice:nobody", "alice", "nobody")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->room_info("dm:alice:nobody")), StoreErrc::not_found);
  EXPECT_EQ(error_of(db_->open_dm("general", "alice", "bob")), StoreErrc::conflict);
  EXPECT_FALSE(*db_->is_member("general", "bob"));
}

TEST_P(StoreContract, ListRooms) {
  seed();
  ASSERT_TRUE(db_->create_room("secret", RoomKind::private_room, "alice").has_value());
  ASSERT_TRUE(db_->open_dm("dm:alice:bob", "alice", "bob").has_value());
  append_n("general", "alice", 4);
  ASSERT_TRUE(db_->set_read("general", "alice", 2).has_value());

  auto rooms = db_->list_rooms("alice");
  ASSERT_TRUE(rooms.has_value());
  ASSERT_EQ(rooms->size(), 3u);
  // Ordered by name, byte order.
  EXPECT_EQ(rooms->at(0).room, "dm:alice:bob");
  EXPECT_EQ(rooms->at(1).room, "general");
  EXPECT_EQ(rooms->at(2).room, "secret");
  EXPECT_EQ(rooms->at(0).kind, RoomKind::dm);
  EXPECT_EQ(rooms->at(1).kind, RoomKind::public_room);
  EXPECT_EQ(rooms->at(1).last_seq, 4u);
  EXPECT_EQ(rooms->at(1).read_seq, 2u);
  EXPECT_EQ(rooms->at(2).kind, RoomKind::private_room);

  auto bobs = db_->list_rooms("bob");
  ASSERT_TRUE(bobs.has_value());
  ASSERT_EQ(bobs->size(), 1u);
  EXPECT_EQ(bobs->front().room, "dm:alice:bob");
  EXPECT_TRUE(db_->list_rooms("nobody")->empty());
}

// --- messages ----------------------------------------------------------------------------------

TEST_P(StoreContract, AppendAssignsConsecutiveSeqs) {
  seed();
  const auto before =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (std::uint64_t i = 1; i <= 5; ++i) {
    auto r = db_->append("general", "alice", numbered("id", i), numbered("body ", i));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->duplicate);
    EXPECT_EQ(r->message.seq, i);
    EXPECT_EQ(r->message.room, "general");
    EXPECT_EQ(r->message.from, "alice");
    EXPECT_EQ(r->message.body, numbered("body ", i));
    EXPECT_EQ(r->message.client_msg_id, numbered("id", i));
    EXPECT_GE(r->message.ts_ms, before - 1000);
    EXPECT_LT(r->message.ts_ms, before + 60'000);
  }
  EXPECT_EQ(db_->room_info("general")->last_seq, 5u);
  // A new member's read marker starts at the room's last_seq.
  ASSERT_TRUE(db_->join_room("general", "bob").has_value());
  auto bobs = db_->list_rooms("bob");
  ASSERT_TRUE(bobs.has_value());
  ASSERT_EQ(bobs->size(), 1u);
  EXPECT_EQ(bobs->front().last_seq, 5u);
  EXPECT_EQ(bobs->front().read_seq, 5u);
}

TEST_P(StoreContract, AppendErrorsConsumeNoSeq) {
  seed();
  EXPECT_EQ(error_of(db_->append("general", "bob", "m1")), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->append("nowhere", "alice", "m1")), StoreErrc::not_found);
  EXPECT_EQ(db_->room_info("general")->last_seq, 0u);
  EXPECT_EQ(db_->append("general", "alice", "m1")->message.seq, 1u);
}

// Bodies and ids are stored byte for byte: the protocol allows "\u0000" and any Unicode in them.
TEST_P(StoreContract, BodiesAndIdsAreStoredByteForByte) {
  seed();
  const std::string body = std::string("a\0b", 3) + " \xc3\xa9\xf0\x9f\x98\x80 \"'\\ \n\t";
  const std::string id = std::string("id\0x", 4) + "\xe2\x82\xac";
  auto r = db_->append("general", "alice", id, body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message.body, body);
  auto stored = db_->read_range("general", 0, kNewest, 10);
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().body, body);
  EXPECT_EQ(stored->front().client_msg_id, id);
  auto dup = db_->append("general", "alice", id, "other");
  ASSERT_TRUE(dup.has_value());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->message.body, body);
  // An id differing only after the NUL is another message.
  auto other = db_->append("general", "alice", std::string("id\0y", 4) + "\xe2\x82\xac", "x");
  ASSERT_TRUE(other.has_value());
  EXPECT_FALSE(other->duplicate);
  EXPECT_EQ(other->message.seq, 2u);
}

TEST_P(StoreContract, DuplicateReturnsOriginalAndCreatesNothing) {
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

  // A sender who has left since still gets the original ack for a retry.
  ASSERT_TRUE(db_->leave_room("general", "bob").has_value());
  auto after_leaving = db_->append("general", "bob", "other");
  ASSERT_TRUE(after_leaving.has_value());
  EXPECT_TRUE(after_leaving->duplicate);
  EXPECT_EQ(after_leaving->message.seq, 2u);
}

TEST_P(StoreContract, DuplicatesInsideOneBatch) {
  seed();
  // Submitted back to back, these usually share a batch: the later ones must see the first.
  std::vector<std::future<Result<AppendResult>>> futures;
  for (int i = 0; i < 10; ++i) {
    auto p = std::make_shared<std::promise<Result<AppendResult>>>();
    futures.push_back(p->get_future());
    store().append({"general", "alice", "same", numbered("body ", i)},
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

// Appends interleaved with other writes in one batch: each applies in submission order, and
// failures (a missing room, a non-member, a conflict) take nothing from the others.
TEST_P(StoreContract, MixedBatchAppliesInSubmissionOrder) {
  seed();
  std::vector<std::future<Result<AppendResult>>> appends;
  auto append = [&](const std::string& room, const std::string& from, const std::string& id) {
    auto p = std::make_shared<std::promise<Result<AppendResult>>>();
    appends.push_back(p->get_future());
    store().append({room, from, id, "x"},
                   [p](Result<AppendResult> r) { p->set_value(std::move(r)); });
  };
  std::promise<Result<Ok>> conflict;
  append("general", "bob", "b0");  // forbidden: not a member yet
  store().join_room("general", "bob", [](Result<JoinResult>) {});
  append("general", "bob", "b1");    // 1
  append("general", "alice", "a1");  // 2
  append("nowhere", "alice", "a2");  // not_found
  store().create_room("fresh", RoomKind::public_room, "alice", [](Result<Ok>) {});
  append("fresh", "alice", "f1");  // fresh 1
  store().create_room("general", RoomKind::public_room, "bob",
                      [&](Result<Ok> r) { conflict.set_value(std::move(r)); });
  append("general", "bob", "b2");  // 3
  append("fresh", "alice", "f2");  // fresh 2
  store().leave_room("general", "bob", [](Result<Ok>) {});
  append("general", "bob", "b3");  // forbidden again
  append("general", "bob", "b1");  // duplicate of seq 1, allowed after leaving

  std::vector<Result<AppendResult>> r;
  for (auto& f : appends) r.push_back(f.get());
  EXPECT_EQ(error_of(r[0]), StoreErrc::forbidden);
  EXPECT_EQ(r[1]->message.seq, 1u);
  EXPECT_EQ(r[2]->message.seq, 2u);
  EXPECT_EQ(error_of(r[3]), StoreErrc::not_found);
  EXPECT_EQ(r[4]->message.seq, 1u);
  EXPECT_EQ(r[5]->message.seq, 3u);
  EXPECT_EQ(r[6]->message.seq, 2u);
  EXPECT_EQ(error_of(r[7]), StoreErrc::forbidden);
  ASSERT_TRUE(r[8].has_value());
  EXPECT_TRUE(r[8]->duplicate);
  EXPECT_EQ(r[8]->message.seq, 1u);
  EXPECT_EQ(error_of(conflict.get_future().get()), StoreErrc::conflict);
  EXPECT_EQ(seqs_of(*db_->read_range("general", 0, kNewest, 100)), iota_seqs(1, 3));
  EXPECT_EQ(seqs_of(*db_->read_range("fresh", 0, kNewest, 100)), iota_seqs(1, 2));
  EXPECT_FALSE(*db_->is_member("general", "bob"));
}

TEST_P(StoreContract, ReadRange) {
  seed();
  append_n("general", "alice", 10);
  auto all = db_->read_range("general", 0, kNewest, 100);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(seqs_of(*all), iota_seqs(1, 10));
  EXPECT_EQ(all->front().from, "alice");
  EXPECT_EQ(all->front().room, "general");
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
  ASSERT_TRUE(db_->create_room("empty", RoomKind::public_room, "alice").has_value());
  auto empty = db_->read_range("empty", 0, kNewest, 10);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST_P(StoreContract, HistoryBoundaries) {
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
  // Exactly the remaining messages: no more.
  auto exact = db_->history("general", 11, 10);
  EXPECT_EQ(seqs_of(exact->messages), iota_seqs(1, 10));
  EXPECT_FALSE(exact->has_more);
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
  EXPECT_EQ(page->messages.front().room, "general");
  EXPECT_EQ(page->messages.front().client_msg_id, "alice-7");
}

TEST_P(StoreContract, HistoryErrorsAndEmptyRoom) {
  seed();
  EXPECT_EQ(error_of(db_->history("nowhere", kNewest, 10)), StoreErrc::not_found);
  auto empty = db_->history("general", kNewest, 10);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->messages.empty());
  EXPECT_FALSE(empty->has_more);
}

// --- read markers ------------------------------------------------------------------------------

TEST_P(StoreContract, ReadMarkerClampsAndNeverMovesBack) {
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
  EXPECT_EQ(error_of(db_->set_read("general", "bob", 1)), StoreErrc::forbidden);
  EXPECT_EQ(error_of(db_->set_read("nowhere", "alice", 1)), StoreErrc::not_found);
}

// --- writer behaviour --------------------------------------------------------------------------

// Appends from `threads` threads to `rooms` rooms through the given stores, without waiting for
// each other; checks that every room's seqs are exactly 1..N, each handed out once, matching
// what is stored, and that nothing failed.
void check_concurrent_appends(const std::vector<Store*>& stores, Blocking& db, int threads,
                              int rooms, int per_thread_per_room) {
  std::mutex mutex;
  std::map<std::string, std::vector<std::uint64_t>> acked;
  std::map<std::pair<std::string, std::string>, std::uint64_t> seq_of;
  std::atomic<int> failures{0};
  std::atomic<int> pending{threads * rooms * per_thread_per_room};
  std::promise<void> all_done;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      Store& s = *stores[static_cast<std::size_t>(t) % stores.size()];
      const std::string user = numbered("u", t);
      for (int i = 0; i < per_thread_per_room; ++i) {
        for (int r = 0; r < rooms; ++r) {
          const std::string room = numbered("room", r);
          const std::string id = user + numbered("-", i);
          s.append({room, user, id, "x"}, [&, room, id](Result<AppendResult> res) {
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
  for (auto& w : workers) w.join();
  ASSERT_EQ(all_done.get_future().wait_for(seconds(120)), std::future_status::ready);
  EXPECT_EQ(failures.load(), 0);
  const auto per_room = static_cast<std::uint64_t>(threads * per_thread_per_room);
  for (int r = 0; r < rooms; ++r) {
    const std::string room = numbered("room", r);
    auto seqs = acked[room];
    std::sort(seqs.begin(), seqs.end());
    EXPECT_EQ(seqs, iota_seqs(1, per_room)) << room;
    EXPECT_EQ(db.room_info(room)->last_seq, per_room);
    auto stored = db.read_range(room, 0, kNewest, 100'000);
    ASSERT_TRUE(stored.has_value());
    EXPECT_EQ(seqs_of(*stored), iota_seqs(1, per_room));
    for (const auto& m : *stored) EXPECT_EQ((seq_of[{room, m.client_msg_id}]), m.seq);
  }
}

void seed_rooms(Blocking& db, int threads, int rooms) {
  for (int t = 0; t < threads; ++t) {
    ASSERT_TRUE(db.create_user(numbered("u", t)).has_value());
  }
  for (int r = 0; r < rooms; ++r) {
    const std::string room = numbered("room", r);
    ASSERT_TRUE(db.create_room(room, RoomKind::public_room, "u0").has_value());
    for (int t = 1; t < threads; ++t) {
      ASSERT_TRUE(db.join_room(room, numbered("u", t)).has_value());
    }
  }
}

TEST_P(StoreContract, SeqsGaplessUnderConcurrentAppenders) {
  constexpr int kThreads = 8;
  constexpr int kRooms = 4;
  seed_rooms(*db_, kThreads, kRooms);
  check_concurrent_appends({&store()}, *db_, kThreads, kRooms, 100);
  // The writer batched: far fewer commits than appends.
  EXPECT_LT(batch_histogram().snapshot().count,
            static_cast<std::uint64_t>(kThreads * kRooms * 100));
}

// Two store instances on one database, as two nodes behind a load balancer: their writers
// interleave on the same rooms, and still no seq is skipped or repeated, and nobody deadlocks.
TEST_P(StoreContract, TwoNodesAppendGaplessWithoutDeadlock) {
  constexpr int kThreads = 8;
  constexpr int kRooms = 6;
  seed_rooms(*db_, kThreads, kRooms);
  second_ = make();
  check_concurrent_appends({&store(), second_.store.get()}, *db_, kThreads, kRooms, 60);
}

// The same retried send reaching two nodes at once creates one message: one gets the original,
// the other the duplicate, with the same seq.
TEST_P(StoreContract, TwoNodesDedupTheSameSend) {
  seed();
  second_ = make();
  for (int i = 0; i < 20; ++i) {
    const std::string id = numbered("retry-", i);
    std::promise<Result<AppendResult>> a;
    std::promise<Result<AppendResult>> b;
    store().append({"general", "alice", id, "x"},
                   [&](Result<AppendResult> r) { a.set_value(std::move(r)); });
    second_.store->append({"general", "alice", id, "x"},
                          [&](Result<AppendResult> r) { b.set_value(std::move(r)); });
    auto ra = a.get_future().get();
    auto rb = b.get_future().get();
    ASSERT_TRUE(ra.has_value());
    ASSERT_TRUE(rb.has_value());
    EXPECT_EQ(ra->message.seq, rb->message.seq);
    EXPECT_EQ(ra->message.seq, static_cast<std::uint64_t>(i + 1));
    EXPECT_NE(ra->duplicate, rb->duplicate);
  }
  EXPECT_EQ(db_->room_info("general")->last_seq, 20u);
}

// Two nodes creating the same users and rooms in opposite orders, many times, at once: exactly
// one creation of each wins, the others conflict, and nothing deadlocks.
TEST_P(StoreContract, TwoNodesCreatingTheSameNamesDoNotDeadlock) {
  second_ = make();
  constexpr int kNames = 200;
  std::atomic<int> created{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> other{0};
  std::atomic<int> pending{4 * kNames};
  std::promise<void> done;
  auto count = [&](Result<Ok> r) {
    if (r.has_value()) {
      ++created;
    } else if (r.error() == StoreErrc::conflict) {
      ++conflicts;
    } else {
      ++other;
    }
    if (--pending == 0) done.set_value();
  };
  for (int i = 0; i < kNames; ++i) {
    store().create_user(numbered("n", i), "h", count);
    second_.store->create_user(numbered("n", kNames - 1 - i), "h", count);
  }
  for (int i = 0; i < kNames; ++i) {
    store().create_room(numbered("r", i), RoomKind::public_room, "n0", count);
    second_.store->create_room(numbered("r", kNames - 1 - i), RoomKind::public_room, "n1", count);
  }
  ASSERT_EQ(done.get_future().wait_for(seconds(120)), std::future_status::ready);
  EXPECT_EQ(other.load(), 0);
  // Rooms may be refused as not_found only if created before user n0/n1 committed; they were
  // queued after them on each node, so every creation is either a success or a conflict.
  EXPECT_EQ(created.load(), 2 * kNames);
  EXPECT_EQ(conflicts.load(), 2 * kNames);
}

TEST_P(StoreContract, GroupCommitBatchesConcurrentWrites) {
  seed();
  constexpr int kOps = 2000;
  const auto batches_before = batch_histogram().snapshot().count;
  std::atomic<int> pending{kOps};
  std::atomic<int> failed{0};
  std::promise<void> done;
  for (int i = 0; i < kOps; ++i) {
    store().append({"general", "alice", numbered("m", i), "x"}, [&](Result<AppendResult> r) {
      if (!r.has_value()) ++failed;
      if (--pending == 0) done.set_value();
    });
  }
  done.get_future().wait();
  EXPECT_EQ(failed.load(), 0);
  const auto snap = batch_histogram().snapshot();
  const auto batches = snap.count - batches_before;
  // Every PostgreSQL commit waits for a WAL flush, long enough for hundreds of appends to queue
  // behind it; a SQLite commit in NORMAL mode can be quick enough to keep up with the submitter.
  EXPECT_LT(batches, static_cast<std::uint64_t>(adapter_ == Adapter::postgres ? kOps / 4 : kOps));
  EXPECT_GT(batches, 0u);
  EXPECT_GE(snap.sum, static_cast<double>(kOps));
  // The latency histogram saw every append.
  auto& latency =
      main_.registry->histogram("parley_store_query_seconds", "", {}, {{"op", "append"}});
  EXPECT_GE(latency.snapshot().count, static_cast<std::uint64_t>(kOps));
}

// Within one batch, a failing operation is undone alone: the others still commit.
TEST_P(StoreContract, FailingOperationDoesNotAbortItsBatch) {
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
    store().create_room(i % 2 == 0 ? numbered("r", i) : "general", RoomKind::public_room, "alice",
                        cb);
  }
  done.get_future().wait();
  EXPECT_EQ(ok.load(), kOps / 2);
  EXPECT_EQ(conflicts.load(), kOps / 2);
  EXPECT_LT(batch_histogram().snapshot().count, static_cast<std::uint64_t>(kOps) + 3);
  reopen();
  EXPECT_EQ(db_->list_rooms("alice")->size(), static_cast<std::size_t>(kOps / 2 + 1));
}

TEST_P(StoreContract, ReadsSeeWritesWhoseCallbackRan) {
  seed();
  for (int i = 0; i < 20; ++i) {
    std::promise<Result<std::vector<StoredMessage>>> read;
    store().append({"general", "alice", numbered("m", i), "hi"}, [&](Result<AppendResult> r) {
      ASSERT_TRUE(r.has_value());
      // Submitted from the writer's callback: the read must see the message.
      store().read_range(
          "general", r->message.seq - 1, kNewest, 10,
          [&](Result<std::vector<StoredMessage>> m) { read.set_value(std::move(m)); });
    });
    auto messages = read.get_future().get();
    ASSERT_TRUE(messages.has_value());
    ASSERT_EQ(messages->size(), 1u);
    EXPECT_EQ(messages->front().seq, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(messages->front().body, "hi");
  }
}

TEST_P(StoreContract, ThrowingCallbackDoesNotStopTheStore) {
  seed();
  store().append({"general", "alice", "m1", "x"},
                 [](Result<AppendResult>) { throw std::runtime_error("callback bug"); });
  store().get_user("alice", [](Result<UserAuth>) { throw std::runtime_error("callback bug"); });
  EXPECT_EQ(db_->append("general", "alice", "m2")->message.seq, 2u);
  EXPECT_TRUE(db_->get_user("alice").has_value());
}

TEST_P(StoreContract, SmallBatchLimitStillCommitsEverything) {
  open(3);
  seed();
  constexpr int kOps = 100;
  std::atomic<int> pending{kOps};
  std::promise<void> done;
  for (int i = 0; i < kOps; ++i) {
    store().append({"general", "alice", numbered("m", i), "x"}, [&](Result<AppendResult>) {
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

// --- durability and shutdown -------------------------------------------------------------------

TEST_P(StoreContract, DataSurvivesReopening) {
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

TEST_P(StoreContract, DestructorDrainsQueuedWrites) {
  seed();
  constexpr int kOps = 500;
  std::atomic<int> succeeded{0};
  for (int i = 0; i < kOps; ++i) {
    store().append({"general", "alice", numbered("m", i), "x"}, [&](Result<AppendResult> r) {
      if (r.has_value()) ++succeeded;
    });
  }
  close();  // returns only after every queued callback has run
  EXPECT_EQ(succeeded.load(), kOps);
  open();
  EXPECT_EQ(db_->room_info("general")->last_seq, static_cast<std::uint64_t>(kOps));
}

TEST_P(StoreContract, CallbacksSubmittingDuringShutdownAreStillCalled) {
  seed();
  std::atomic<int> calls{0};
  Store* s = &store();
  for (int i = 0; i < 50; ++i) {
    s->append({"general", "alice", numbered("m", i), "x"}, [&, s](Result<AppendResult>) {
      ++calls;
      s->history("general", kNewest, 5, [&](Result<HistoryPage>) { ++calls; });
    });
  }
  close();
  EXPECT_EQ(calls.load(), 100);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only.

class PostgresStoreTest : public StoreFixture {
 protected:
  void SetUp() override { set_up(Adapter::postgres); }
};

TEST_F(PostgresStoreTest, OpenFailureIsOneClearLineWithoutThePassword) {
  // Nothing listens on port 1.
  PostgresOptions o;
  o.url = "postgresql://parley:s3cret@127.0.0.1:1/parley";
  o.connect_timeout_s = 2;
  metrics::Registry registry;
  auto r = PostgresStore::open(o, registry);
  ASSERT_FALSE(r.has_value());
  const std::string& e = r.error();
  EXPECT_EQ(
      e.rfind("cannot open PostgreSQL store at postgresql://parley:***@127.0.0.1:1/parley: ", 0),
      0u)
      << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;
  EXPECT_THROW(PostgresStore(o, registry), std::runtime_error);
  EXPECT_EQ(redact_postgres_url("host=x password=abc dbname=y"), "host=x password=*** dbname=y");
  EXPECT_EQ(redact_postgres_url("postgresql://u@h/db?password=abc&x=1"),
            "postgresql://u@h/db?password=***&x=1");
}

TEST_F(PostgresStoreTest, RefusesSchemaNewerThanBuild) {
  close();
  PgAdmin admin(url_);
  ASSERT_TRUE(admin.ok());
  ASSERT_EQ(admin.exec("INSERT INTO schema_version (version, name) VALUES (999, 'future')"), "");
  metrics::Registry registry;
  auto r = PostgresStore::open(pg_options(), registry);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("999"), std::string::npos) << r.error();
}

// Nodes starting at once on an empty schema: each migration is applied exactly once and every
// node comes up.
TEST_F(PostgresStoreTest, ConcurrentStartupMigratesOnce) {
  close();
  {
    PgAdmin admin(base_url_);
    ASSERT_TRUE(admin.ok());
    ASSERT_EQ(admin.exec("DROP SCHEMA " + schema_ + " CASCADE"), "");
    ASSERT_EQ(admin.exec("CREATE SCHEMA " + schema_), "");
  }
  constexpr int kNodes = 6;
  std::vector<std::future<Result<std::unique_ptr<PostgresStore>, std::string>>> starts;
  std::vector<std::unique_ptr<metrics::Registry>> registries;
  for (int i = 0; i < kNodes; ++i) registries.push_back(std::make_unique<metrics::Registry>());
  for (int i = 0; i < kNodes; ++i) {
    starts.push_back(std::async(std::launch::async, [&, i] {
      return PostgresStore::open(pg_options(), *registries[static_cast<std::size_t>(i)]);
    }));
  }
  std::vector<std::unique_ptr<PostgresStore>> nodes;
  for (auto& s : starts) {
    auto r = s.get();
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_EQ((*r)->schema_version(), postgres_migrations().back().version);
    nodes.push_back(std::move(*r));
  }
  PgAdmin admin(url_);
  EXPECT_EQ(admin.value("SELECT count(*) FROM schema_version"),
            std::to_string(postgres_migrations().size()));
  nodes.clear();
}

// A room locked by another session for longer than the query timeout: the append answers
// `unavailable` after the timeout instead of waiting for good, writes nothing, and succeeds
// once the lock is gone.
TEST_F(PostgresStoreTest, LockHeldElsewhereTimesOutAsUnavailable) {
  seed();
  main_ = make(1024, milliseconds(300));
  db_ = std::make_unique<Blocking>(*main_.store);
  PgAdmin other(url_);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other.exec("BEGIN"), "");
  ASSERT_EQ(other.exec("SELECT * FROM rooms WHERE name = 'general' FOR UPDATE"), "");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of(db_->append("general", "alice", "m1")), StoreErrc::unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  // Reads are not blocked by row locks.
  EXPECT_EQ(db_->room_info("general")->last_seq, 0u);
  EXPECT_TRUE(store().ready());
  ASSERT_EQ(other.exec("COMMIT"), "");
  auto retry = db_->append("general", "alice", "m1");
  ASSERT_TRUE(retry.has_value());
  EXPECT_FALSE(retry->duplicate);
  EXPECT_EQ(retry->message.seq, 1u);
}

// When the set-wise insert of a run fails (here: a row planted behind the counter's back makes
// the next seq collide), the run is retried one append at a time, so only the append that
// cannot be stored fails (`internal`) and the others in its batch commit.
TEST_F(PostgresStoreTest, FailedSetWiseInsertFailsOnlyTheCulprit) {
  seed();
  ASSERT_TRUE(db_->create_room("random", RoomKind::public_room, "alice").has_value());
  ASSERT_EQ(db_->append("general", "alice", "g0")->message.seq, 1u);
  {
    PgAdmin admin(url_);
    ASSERT_TRUE(admin.ok());
    ASSERT_EQ(admin.exec("INSERT INTO messages (room, seq, sender, client_msg_id, body, ts_ms) "
                         "VALUES ('general', 2, 'alice', '\\x00'::bytea, 'x'::bytea, 0)"),
              "");
  }
  std::vector<std::future<Result<AppendResult>>> results;
  for (const auto& [room, id] : std::vector<std::pair<std::string, std::string>>{
           {"random", "r1"}, {"general", "g1"}, {"random", "r2"}, {"random", "r3"}}) {
    auto p = std::make_shared<std::promise<Result<AppendResult>>>();
    results.push_back(p->get_future());
    store().append({room, "alice", id, "x"},
                   [p](Result<AppendResult> r) { p->set_value(std::move(r)); });
  }
  EXPECT_EQ(results[0].get()->message.seq, 1u);
  EXPECT_EQ(error_of(results[1].get()), StoreErrc::internal);
  EXPECT_EQ(results[2].get()->message.seq, 2u);
  EXPECT_EQ(results[3].get()->message.seq, 3u);
  EXPECT_EQ(db_->room_info("general")->last_seq, 1u);
  EXPECT_EQ(seqs_of(*db_->read_range("random", 0, kNewest, 10)), iota_seqs(1, 3));
}

// The server stops and comes back: appends and reads answer `unavailable` while it is down and
// ready() is false; afterwards ready() turns true by itself and the same requests succeed. Sends
// racing with the stop either are acknowledged (and then stored) or fail `unavailable`, and
// retrying those with the same client_msg_id leaves every seq gapless. Needs the harness's
// PARLEY_TEST_PG_DATA (and root, for runuser); runs alone (RUN_SERIAL) since it stops the server.
TEST_F(PostgresStoreTest, ServerRestartUnavailableWhileDownThenRecovers) {
  std::string why;
  auto server = PgServer::from_env(why);
  ASSERT_TRUE(server.has_value()) << why;
  seed();
  ASSERT_EQ(db_->append("general", "alice", "m0")->message.seq, 1u);
  ASSERT_TRUE(store().ready());

  // Sends race with the stop from another thread.
  std::mutex mutex;
  std::map<std::string, std::uint64_t> acked;  // id -> seq
  std::set<std::string> failed;
  std::atomic<bool> stop_sending{false};
  std::atomic<int> pending{0};
  std::thread sender([&] {
    for (int i = 1; !stop_sending; ++i) {
      const std::string id = numbered("race-", i);
      ++pending;
      store().append({"general", "alice", id, "x"}, [&, id](Result<AppendResult> r) {
        std::lock_guard lock(mutex);
        if (r.has_value()) {
          acked[id] = r->message.seq;
        } else {
          EXPECT_EQ(r.error(), StoreErrc::unavailable);
          failed.insert(id);
        }
        --pending;
      });
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  std::this_thread::sleep_for(milliseconds(200));
  const bool stopped = server->stop();
  // Whatever happens below, the server must run again for the other tests.
  struct Restart {
    const PgServer& s;
    bool done = false;
    ~Restart() {
      if (!done) s.start();
    }
  } restart{*server};
  std::this_thread::sleep_for(milliseconds(200));
  stop_sending = true;
  sender.join();
  ASSERT_TRUE(stopped) << "pg_ctl stop failed (the test needs root and PARLEY_TEST_PG_DATA)";
  ASSERT_TRUE(eventually([&] { return pending.load() == 0; }, seconds(60)));

  EXPECT_EQ(error_of(db_->append("general", "alice", "down-1")), StoreErrc::unavailable);
  EXPECT_FALSE(store().ready());
  EXPECT_EQ(error_of(db_->room_info("general")), StoreErrc::unavailable);
  EXPECT_EQ(error_of(db_->create_user("carol")), StoreErrc::unavailable);
  EXPECT_FALSE(store().ready());

  ASSERT_TRUE(server->start()) << "pg_ctl start failed";
  restart.done = true;
  EXPECT_TRUE(eventually([&] { return store().ready(); }, seconds(30)));

  // The retry with the same id succeeds now: it was not written while the server was down.
  auto retry = db_->append("general", "alice", "down-1");
  ASSERT_TRUE(retry.has_value()) << error_of(retry).message();
  EXPECT_FALSE(retry->duplicate);
  // Retrying the sends that failed during the race: those that did commit come back as
  // duplicates, the others get new seqs; in the end every seq is there exactly once.
  for (const auto& id : failed) {
    auto r = db_->append("general", "alice", id);
    ASSERT_TRUE(r.has_value()) << error_of(r).message();
    acked[id] = r->message.seq;
  }
  acked["m0"] = 1;
  acked["down-1"] = retry->message.seq;
  auto stored = db_->read_range("general", 0, kNewest, 100'000);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(seqs_of(*stored), iota_seqs(1, stored->size()));
  EXPECT_EQ(stored->size(), acked.size());
  for (const auto& m : *stored) EXPECT_EQ(acked[m.client_msg_id], m.seq) << m.client_msg_id;
  EXPECT_TRUE(db_->room_info("general").has_value());
  EXPECT_TRUE(db_->create_user("carol").has_value());
}

}  // namespace
}  // namespace parley::store
