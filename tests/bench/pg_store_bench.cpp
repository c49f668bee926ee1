// Throughput of the PostgreSQL store: appends with a window of requests in flight, as the
// sessions of busy nodes produce them, so that group commit can batch; optionally through two
// store instances at once (two nodes on one database); and history reads beside them. Commits
// are durable: the server's fsync and synchronous_commit are left as they are (on).
//
// Needs PARLEY_TEST_PG_URL (deploy/servers.sh prints it); each run works in a schema of its own,
// dropped afterwards. Arguments: in-flight window, nodes (store instances), rooms. Run from a
// Release build:
//   PARLEY_TEST_PG_URL=postgresql://parley@127.0.0.1:25432/parley pg_store_bench

#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/postgres/postgres_store.hpp"

namespace {

using namespace parley;

// "prefix" + number, without the `const char* + std::string&&` overload that trips GCC 12's
// -Wrestrict false positive at -O3.
std::string numbered(std::string_view prefix, std::int64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

// A counting window: acquire() blocks while `limit` requests are in flight; the store's callbacks
// release(). wait_idle() waits for every request to complete.
class Window {
 public:
  explicit Window(std::int64_t limit) : limit_(limit) {}
  void acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ < limit_; });
    ++in_flight_;
  }
  // Notifies under the lock: once wait_idle() returns, the window may be destroyed, so no
  // releasing thread may still be about to touch it.
  void release() {
    std::lock_guard lock(mutex_);
    --in_flight_;
    cv_.notify_all();
  }
  void wait_idle() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::int64_t in_flight_ = 0;
  std::int64_t limit_;
};

// Runs one admin statement; the benchmark cannot run without its schema, so failures throw.
void admin(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string e = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error(sql + ": " + e);
}

// A fresh schema with `rooms` rooms, each with one member, and `nodes` stores on it.
struct Fixture {
  Fixture(int nodes, int rooms) : rooms(rooms) {
    const char* base = std::getenv("PARLEY_TEST_PG_URL");
    if (base == nullptr) throw std::runtime_error("set PARLEY_TEST_PG_URL");
    base_url = base;
    schema = numbered("parley_bench_", ::getpid());
    admin(base_url, "DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    admin(base_url, "CREATE SCHEMA " + schema);
    store::PostgresOptions o;
    o.url = base_url + (base_url.find('?') == std::string::npos ? "?" : "&") +
            "options=-csearch_path%3D" + schema;
    for (int i = 0; i < nodes; ++i) {
      registries.push_back(std::make_unique<metrics::Registry>());
      dbs.push_back(std::make_unique<store::PostgresStore>(o, *registries.back()));
    }
    Window w(1);
    for (int r = 0; r < rooms; ++r) {
      const std::string user = numbered("user", r);
      w.acquire();
      dbs[0]->create_user(user, "hash", [&](Result<Ok>) { w.release(); });
      w.acquire();
      dbs[0]->create_room(numbered("room", r), store::RoomKind::public_room, user,
                          [&](Result<Ok>) { w.release(); });
    }
    w.wait_idle();
  }
  ~Fixture() {
    dbs.clear();
    try {
      admin(base_url, "DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    } catch (const std::exception&) {
    }
  }
  double mean_batch() {
    double sum = 0;
    double count = 0;
    for (auto& r : registries) {
      auto snap = r->histogram("parley_store_batch_size", "", {}, {}).snapshot();
      sum += snap.sum;
      count += static_cast<double>(snap.count);
    }
    return count == 0 ? 0 : sum / count;
  }

  int rooms;
  std::string base_url;
  std::string schema;
  std::vector<std::unique_ptr<metrics::Registry>> registries;
  std::vector<std::unique_ptr<store::PostgresStore>> dbs;
};

void BM_Append(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(1)), static_cast<int>(state.range(2)));
  Window window(state.range(0));
  const std::string body(120, 'x');
  std::atomic<std::int64_t> errors{0};
  std::int64_t n = 0;
  for (auto _ : state) {
    const int r = static_cast<int>(n % f.rooms);
    auto& db = *f.dbs[static_cast<std::size_t>(n) % f.dbs.size()];
    window.acquire();
    db.append({numbered("room", r), numbered("user", r), numbered("m", n), body},
              [&](Result<store::AppendResult> res) {
                if (!res.has_value()) ++errors;
                window.release();
              });
    ++n;
  }
  window.wait_idle();
  state.SetItemsProcessed(state.iterations());
  state.counters["mean_batch"] = f.mean_batch();
  state.counters["errors"] = static_cast<double>(errors.load());
}
BENCHMARK(BM_Append)
    ->ArgNames({"inflight", "nodes", "rooms"})
    ->Args({1, 1, 16})
    ->Args({64, 1, 16})
    ->Args({1024, 1, 16})
    ->Args({4096, 1, 16})
    ->Args({4096, 1, 1000})
    ->Args({4096, 2, 16})
    ->UseRealTime()
    ->MinTime(3.0);

// The newest page of history (50 messages) from a room with 1000, with 64 requests in flight
// across the reader connections.
void BM_History(benchmark::State& state) {
  Fixture f(1, 1);
  {
    Window w(256);
    for (int i = 0; i < 1000; ++i) {
      w.acquire();
      f.dbs[0]->append({"room0", "user0", numbered("m", i), std::string(120, 'x')},
                       [&](Result<store::AppendResult>) { w.release(); });
    }
    w.wait_idle();
  }
  Window window(64);
  for (auto _ : state) {
    window.acquire();
    f.dbs[0]->history("room0", UINT64_MAX, 50, [&](Result<store::HistoryPage> page) {
      benchmark::DoNotOptimize(page);
      window.release();
    });
  }
  window.wait_idle();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_History)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
