#pragma once
// A small Prometheus registry. Debian 12 has no prometheus-cpp, so this is hand-written:
// counters and gauges are relaxed atomics (no lock on the hot path), histograms keep one atomic
// per bucket, and the text exposition format 0.0.4 is rendered on scrape only.
//
// Thread-safety: registering metrics (the add_* calls) happens at start-up, before any other
// thread uses the registry; registration and render() share one mutex all the same, so a late
// registration is safe, merely not free. Updating a metric is lock-free and safe from any
// thread. render() may run concurrently with updates; it reads each value once.

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace parley::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void add(double d);
  void inc() { add(1); }
  void dec() { add(-1); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound (+Inf last), sum and count, read once each.
  struct Snapshot {
    std::vector<std::uint64_t> cumulative;
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;
  // The number of observations so far, without the cost of a snapshot.
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1 (+Inf)
  std::atomic<double> sum_{0};
  std::atomic<std::uint64_t> count_{0};
};

// Buckets for latencies in seconds: 50 us .. 10 s.
std::vector<double> latency_buckets();

// A sample value as the exposition format writes it: integral values without an exponent,
// others in the shortest form that reads back to the same double, "+Inf", "-Inf", "NaN".
std::string format_value(double v);
// A label value with \\, \" and newline escaped, as the exposition format requires.
std::string escape_label_value(const std::string& v);

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The same name with different labels adds a series to one family; help and type come from
  // the first registration. Returned references live as long as the registry.
  Counter& counter(const std::string& name, const std::string& help, Labels labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, Labels labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> buckets, Labels labels = {});
  // A gauge computed on scrape (process figures, queue depths).
  // Registering the same name and labels again replaces the function.
  void callback_gauge(const std::string& name, const std::string& help, std::function<double()> fn,
                      Labels labels = {});
  // A counter computed on scrape, for totals another component already keeps (process CPU
  // seconds). The function must return a value that never decreases.
  void callback_counter(const std::string& name, const std::string& help,
                        std::function<double()> fn, Labels labels = {});

  // Metric and label names must match the Prometheus grammar, a name keeps the type of its first
  // registration, and "le" is reserved for histogram buckets. Breaking these rules is a
  // programming error found at start-up, so the add_* calls throw std::invalid_argument for it.
  //
  // Callbacks run on the scraping thread while the registry is locked: they must not call back
  // into the registry.

  // Prometheus text exposition format 0.0.4.
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::metrics
