// Token buckets, one per key, spread over shards so that I/O threads serving different users
// rarely meet on a mutex.

#include "core/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

namespace parley::core {

namespace {

// The answer when the bucket never refills (a zero or negative rate): one day, long enough to
// mean "not soon" while staying a number every JSON client reads exactly.
constexpr std::uint64_t never_ms = 24ULL * 60 * 60 * 1000;

// A shard's table is swept of full buckets each time it reaches a power of two from this size
// on: a full bucket behaves exactly like a missing one, so forgetting it changes no answer and
// keeps the table from growing with every user ever seen.
constexpr std::size_t sweep_from = 1024;

}  // namespace

std::uint64_t RateLimiter::acquire(std::string_view key, Clock::time_point now) {
  // A bucket smaller than one token could never grant anything, so the size is at least 1.
  const double capacity = std::max(limit_.burst, 1.0);
  const double rate = limit_.per_second;
  const bool refills = rate > 0 && std::isfinite(rate);

  Shard& shard = shards_[std::hash<std::string_view>{}(key) % shards_.size()];
  std::lock_guard lock(shard.mu);

  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    it = shard.buckets.emplace(std::string(key), Bucket{capacity, now}).first;
    const std::size_t n = shard.buckets.size();
    if (n >= sweep_from && (n & (n - 1)) == 0 && refills) {
      std::erase_if(shard.buckets, [&](const auto& kv) {
        if (kv.first == key) return false;
        const std::chrono::duration<double> idle = now - kv.second.last;
        return kv.second.tokens + idle.count() * rate >= capacity;
      });
      it = shard.buckets.find(std::string(key));
    }
  }
  Bucket& b = it->second;

  // Time only moves forward for a bucket: a caller whose clock reading is older than the last
  // one (two threads racing to read now) refills nothing instead of draining the bucket.
  if (now > b.last) {
    if (refills) {
      const std::chrono::duration<double> elapsed = now - b.last;
      b.tokens = std::min(capacity, b.tokens + elapsed.count() * rate);
    }
    b.last = now;
  }

  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  if (!refills) return never_ms;
  // Round up, and never answer 0: a client that waits the time it is told must then succeed.
  const double wait_ms = std::ceil((1.0 - b.tokens) / rate * 1000.0);
  return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(wait_ms), 1, never_ms);
}

}  // namespace parley::core
