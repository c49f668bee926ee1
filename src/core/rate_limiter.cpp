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
// on, which keeps it from growing with every key ever seen.
constexpr std::size_t sweep_from = 1024;

}  // namespace

RateLimiter::Shard& RateLimiter::shard_of(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % shards_.size()];
}

double RateLimiter::capacity() const {
  // A bucket smaller than one token could never grant anything, so the size is at least 1.
  return std::max(limit_.burst, 1.0);
}

RateLimiter::Bucket& RateLimiter::refill(Shard& s, std::string_view key, Clock::time_point now) {
  const double cap = capacity();
  const double rate = limit_.per_second;
  const bool refills = rate > 0 && std::isfinite(rate);
  auto it = s.buckets.find(std::string(key));
  if (it == s.buckets.end()) {
    it = s.buckets.emplace(std::string(key), Bucket{cap, now}).first;
    const std::size_t n = s.buckets.size();
    if (n >= sweep_from && (n & (n - 1)) == 0 && refills) {
      std::erase_if(s.buckets, [&](const auto& kv) {
        if (kv.first == key) return false;
        const std::chrono::duration<double> idle = now - kv.second.last;
        return kv.second.tokens + idle.count() * rate >= cap;
      });
      it = s.buckets.find(std::string(key));
    }
  }
  Bucket& b = it->second;
  // Time only moves forward for a bucket: a caller whose clock reading is older than the last
  // one (two threads racing to read now) refills nothing instead of draining the bucket.
  if (now > b.last) {
    if (refills) {
      const std::chrono::duration<double> elapsed = now - b.last;
      b.tokens = std::min(cap, b.tokens + elapsed.count() * rate);
    }
    b.last = now;
  }
  return b;
}

std::uint64_t RateLimiter::wait_of(const Bucket& b) const {
  if (b.tokens >= 1.0) return 0;
  const double rate = limit_.per_second;
  if (!(rate > 0) || !std::isfinite(rate)) return never_ms;
  // Round up, and never answer 0: a client that waits the time it is told must then succeed.
  const double ms = std::ceil((1.0 - b.tokens) / rate * 1000.0);
  return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(ms), 1, never_ms);
}

std::uint64_t RateLimiter::acquire(std::string_view key, Clock::time_point now) {
  if (!limit_.enabled()) return 0;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  Bucket& b = refill(s, key, now);
  if (const auto wait = wait_of(b)) return wait;
  b.tokens -= 1.0;
  return 0;
}

std::uint64_t RateLimiter::wait_ms(std::string_view key, Clock::time_point now) {
  if (!limit_.enabled()) return 0;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  // A missing bucket is a full one: no need to create it just to look.
  if (s.buckets.find(std::string(key)) == s.buckets.end()) return 0;
  return wait_of(refill(s, key, now));
}

void RateLimiter::take(std::string_view key, Clock::time_point now) {
  if (!limit_.enabled()) return;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  refill(s, key, now).tokens -= 1.0;
}

void RateLimiter::give_back(std::string_view key, Clock::time_point now) {
  if (!limit_.enabled()) return;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  if (s.buckets.find(std::string(key)) == s.buckets.end()) return;  // full already
  Bucket& b = refill(s, key, now);
  b.tokens = std::min(capacity(), b.tokens + 1.0);
}

std::size_t RateLimiter::size() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace parley::core
