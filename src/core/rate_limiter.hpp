#pragma once
// Token buckets per key: the send and typing limits (per user, per node), the registration limit
// (per client address) and the login throttle's tables (see throttle.hpp). Pure logic: the
// caller passes the clock, so tests drive time by hand.
//
// Thread-safety: one RateLimiter may be used from every I/O thread; the table is split into
// shards, each behind its own short mutex, so keys on different shards never contend. Memory is
// bounded by live keys: a shard is swept of full buckets as it grows (a full bucket answers
// exactly like a missing one, so forgetting it changes no answer).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace parley::core {

// `burst` tokens, refilled at `per_second`. A burst of 0 turns the limit off; a burst between 0
// and 1 still lets one request through (the bucket holds at least one token).
struct RateLimit {
  double per_second = 20;  // refill rate
  double burst = 40;       // bucket size
  bool enabled() const { return burst > 0; }
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimiter(RateLimit limit) : limit_(limit) {}

  // Takes one token for `key`. Returns 0 when allowed, else the milliseconds until a token is
  // available (the `retry_after_ms` of a rate_limited answer) and takes nothing.
  std::uint64_t acquire(std::string_view key, Clock::time_point now);
  // The same answer as acquire() without taking the token (for checks across several tables
  // that must all agree before any token is taken: LoginThrottle).
  std::uint64_t wait_ms(std::string_view key, Clock::time_point now);
  // Takes one token unconditionally (after wait_ms() said 0).
  void take(std::string_view key, Clock::time_point now);
  // Gives one token back, up to the burst.
  void give_back(std::string_view key, Clock::time_point now);
  const RateLimit& limit() const { return limit_; }
  // Keys with a bucket that is not known to be full (for tests).
  std::size_t size() const;

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;
  };
  Shard& shard_of(std::string_view key);
  double capacity() const;
  // The bucket of `key`, refilled up to `now`; created full. Call with the shard's mutex held.
  Bucket& refill(Shard& s, std::string_view key, Clock::time_point now);
  // The wait for a whole token in `b` (0: it has one).
  std::uint64_t wait_of(const Bucket& b) const;

  RateLimit limit_;
  std::array<Shard, 16> shards_;
};

}  // namespace parley::core
