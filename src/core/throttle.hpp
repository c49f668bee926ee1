#pragma once
// Admission control against abuse: login throttling (token buckets per username and per client
// address), the registration limit (per client address), connection caps (per client address, per
// user) and the Origin allow-list of WebSocket upgrades. Pure logic, no I/O: the caller passes the
// clock, and the transport decides what to answer (429, a 1008 close, 403).
//
// Thread-safety: every class here may be used from every I/O thread at once; tables are split
// into shards, each behind a short mutex. Memory is bounded by live keys: buckets that have
// refilled are swept (a full bucket is the same as a missing one), and a connection count that
// drops to 0 is erased.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/rate_limiter.hpp"

namespace parley::core {

struct LoginLimits {
  RateLimit per_user{0.1, 10};  // 10 attempts, then one every 10 s, per username
  RateLimit per_ip{1, 50};      // 50 attempts, then one per second, per client address
};

// Password guessing: every login attempt costs a token from its username's bucket and from its
// address's bucket, before the password is checked, so that parallel guesses are counted too.
// A successful login gives both tokens back: only failures use up the budget, and a user who
// knows their password is never slowed down by their own logins.
class LoginThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LoginThrottle(LoginLimits limits) : per_user_(limits.per_user), per_ip_(limits.per_ip) {}

  // 0 when the attempt may go on (both tokens taken); otherwise the milliseconds to wait, and
  // nothing was taken. An empty `user` or `ip` skips that bucket.
  std::uint64_t attempt(std::string_view user, std::string_view ip, Clock::time_point now);
  // The attempt succeeded: its tokens come back.
  void succeeded(std::string_view user, std::string_view ip, Clock::time_point now);

 private:
  std::mutex mu_;  // makes check-then-take atomic across the two tables
  RateLimiter per_user_;
  RateLimiter per_ip_;
};

// Live connections per key, with a cap (0: no cap).
class ConnectionCounter {
 public:
  explicit ConnectionCounter(std::size_t max_per_key) : max_(max_per_key) {}
  // Counts one more connection for `key`, unless it is at the cap (then false, nothing counted).
  bool try_acquire(std::string_view key);
  // Forgets one connection of `key`; a key with no connection counted is ignored.
  void release(std::string_view key);
  std::size_t count(std::string_view key) const;
  std::size_t max_per_key() const { return max_; }

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::size_t> counts;
  };
  Shard& shard_of(std::string_view key) const;
  std::size_t max_;
  mutable std::array<Shard, 16> shards_;
};

// The Origin allow-list of WebSocket upgrades (cross-site WebSocket hijacking: a page on another
// site opening a socket with the user's cookies or stored credentials). A request is allowed when
// it has no Origin header (not a browser), when its Origin is the same as its Host (scheme
// ignored: TLS may end at a proxy; a default port :80/:443 is ignored), when the list has "*", or
// when the Origin is in the list (compared case-insensitively, without a trailing slash).
bool origin_allowed(std::string_view origin, bool has_origin, std::string_view host,
                    const std::vector<std::string>& allowed);
// A comma-separated setting ("https://a.example, https://b.example:8443") -> the entries,
// trimmed; empty entries dropped.
std::vector<std::string> split_list(std::string_view csv);

// The address part of a remote endpoint "1.2.3.4:5678" or "::1:5678" (as the transport formats
// it): everything before the last ':'. Returns the input when it has no ':'.
std::string_view address_of(std::string_view remote);

// The client's address for a request from `peer` (an address, no port) carrying the
// X-Forwarded-For value `forwarded` (empty when absent). When `peer` is one of `trusted_proxies`,
// the client is the header's last entry: the one that proxy appended itself. Earlier entries are
// whatever the client claimed and are never believed, nor is the header from any other peer.
// An entry that is not an IPv4 or IPv6 address falls back to `peer`.
std::string client_address(std::string_view peer, std::string_view forwarded,
                           const std::vector<std::string>& trusted_proxies);

struct ThrottleSettings {
  LoginLimits login;
  // Registrations per client address: each costs an Argon2id hash on the shared hashing pool,
  // so a flood of them would starve every login. 100, then one per second.
  RateLimit register_per_ip{1, 100};
  std::size_t max_connections_per_ip = 0;      // WebSocket connections per client address
  std::size_t max_connections_per_user = 256;  // authenticated sessions per user, per node
  std::vector<std::string> allowed_origins;    // empty: no Origin or same origin only
  // Peers whose X-Forwarded-For is believed (the load balancer): every per-address limit then
  // counts the real client's address instead of the proxy's.
  std::vector<std::string> trusted_proxies;
};

// The node's admission state.
class Throttle {
 public:
  explicit Throttle(const ThrottleSettings& s)
      : settings_(s),
        login_(s.login),
        registrations_(s.register_per_ip),
        ip_connections_(s.max_connections_per_ip),
        user_connections_(s.max_connections_per_user) {}
  const ThrottleSettings& settings() const { return settings_; }
  LoginThrottle& login() { return login_; }
  RateLimiter& registrations() { return registrations_; }
  ConnectionCounter& ip_connections() { return ip_connections_; }
  ConnectionCounter& user_connections() { return user_connections_; }
  bool origin_allowed(std::string_view origin, bool has_origin, std::string_view host) const {
    return core::origin_allowed(origin, has_origin, host, settings_.allowed_origins);
  }
  std::string client_address(std::string_view peer, std::string_view forwarded) const {
    return core::client_address(peer, forwarded, settings_.trusted_proxies);
  }

 private:
  ThrottleSettings settings_;
  LoginThrottle login_;
  RateLimiter registrations_;
  ConnectionCounter ip_connections_;
  ConnectionCounter user_connections_;
};

}  // namespace parley::core
