// Throughput of the SQLite store: appends with a window of requests in flight, as the sessions of
// a busy node produce them, so that group commit can batch; and history reads beside them.
//
// Arguments: in-flight window, synchronous mode (0 = NORMAL, 1 = FULL). Run from a Release build:
//   store_bench --benchmark_filter=Append
// The database lives under $TMPDIR (or /tmp); put that on the disk you want to measure.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "metrics/metrics.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace {

using namespace parley;
namespace fs = std::filesystem;

constexpr int kRooms = 16;

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

// A fresh database with kRooms rooms, each with one member, removed when done.
struct Fixture {
  explicit Fixture(store::SqliteSync sync) {
    dir = fs::temp_directory_path() / ("parley-store-bench-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    store::SqliteOptions o;
    o.path = (dir / "bench.db").string();
    o.synchronous = sync;
    db = std::make_unique<store::SqliteStore>(o, registry);
    Window w(1);
    for (int r = 0; r < kRooms; ++r) {
      const std::string user = "user" + std::to_string(r);
      w.acquire();
      db->create_user(user, "hash", [&](Result<Ok>) { w.release(); });
      w.acquire();
      db->create_room("room" + std::to_string(r), store::RoomKind::public_room, user,
                      [&](Result<Ok>) { w.release(); });
    }
    w.wait_idle();
  }
  ~Fixture() {
    db.reset();
    fs::remove_all(dir);
  }
  double mean_batch() {
    auto snap = registry.histogram("parley_store_batch_size", "", {}, {}).snapshot();
    return snap.count == 0 ? 0 : snap.sum / static_cast<double>(snap.count);
  }

  fs::path dir;
  metrics::Registry registry;
  std::unique_ptr<store::SqliteStore> db;
};

store::SqliteSync sync_arg(std::int64_t v) {
  return v == 0 ? store::SqliteSync::normal : store::SqliteSync::full;
}

void BM_Append(benchmark::State& state) {
  Fixture f(sync_arg(state.range(1)));
  Window window(state.range(0));
  const std::string body(120, 'x');
  std::atomic<std::int64_t> errors{0};
  std::int64_t n = 0;
  for (auto _ : state) {
    const int r = static_cast<int>(n % kRooms);
    window.acquire();
    f.db->append(
        {"room" + std::to_string(r), "user" + std::to_string(r), "m" + std::to_string(n), body},
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
    ->ArgNames({"inflight", "full_sync"})
    ->ArgsProduct({{1, 64, 1024}, {0, 1}})
    ->UseRealTime()
    ->MinTime(2.0);

// The newest page of history (50 messages) from a room with 1000, with 64 requests in flight
// across the reader threads.
void BM_History(benchmark::State& state) {
  Fixture f(store::SqliteSync::normal);
  {
    Window w(256);
    for (int i = 0; i < 1000; ++i) {
      w.acquire();
      f.db->append({"room0", "user0", "m" + std::to_string(i), std::string(120, 'x')},
                   [&](Result<store::AppendResult>) { w.release(); });
    }
    w.wait_idle();
  }
  Window window(64);
  for (auto _ : state) {
    window.acquire();
    f.db->history("room0", UINT64_MAX, 50, [&](Result<store::HistoryPage> page) {
      benchmark::DoNotOptimize(page);
      window.release();
    });
  }
  window.wait_idle();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_History)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
