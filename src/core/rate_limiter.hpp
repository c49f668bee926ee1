#pragma once
// Per-key token buckets (the send rate limit: per user, per node). Pure logic: the caller
// passes the clock, so tests drive time by hand.
//
// Thread-safety: one RateLimiter may be used from every I/O thread; the table is split into
// shards, each behind its own short mutex, so users on different shards never contend.

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace parley::core {

struct RateLimit {
  double per_second = 20;  // refill rate
  double burst = 40;       // bucket size
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimiter(RateLimit limit) : limit_(limit) {}

  // Takes one token for `key`. Returns 0 when allowed, else the milliseconds until a token is
  // available (the `retry_after_ms` of the rate_limited error).
  std::uint64_t acquire(std::string_view key, Clock::time_point now);
  const RateLimit& limit() const { return limit_; }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;
  };
  RateLimit limit_;
  std::array<Shard, 16> shards_;
};

}  // namespace parley::core
