// Admission control: the login throttle, connection counters, Origin checks.

#include "core/throttle.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>

namespace parley::core {

namespace {

std::size_t shard_index(std::string_view key, std::size_t shards) {
  return std::hash<std::string_view>{}(key) % shards;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// "host:80" and "host:443" are "host": the port a browser leaves out of Origin.
std::string without_default_port(std::string s) {
  for (std::string_view port : {":80", ":443"}) {
    if (s.size() > port.size() && s.compare(s.size() - port.size(), port.size(), port) == 0) {
      s.resize(s.size() - port.size());
      break;
    }
  }
  return s;
}

// An Origin or list entry, lowercased and without a trailing slash.
std::string normal_origin(std::string_view s) {
  std::string out = lower(trim(s));
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

// ---- LoginThrottle ----

std::uint64_t LoginThrottle::attempt(std::string_view user, std::string_view ip,
                                     Clock::time_point now) {
  std::lock_guard lock(mu_);
  const std::uint64_t wait_user = user.empty() ? 0 : per_user_.wait_ms(user, now);
  const std::uint64_t wait_ip = ip.empty() ? 0 : per_ip_.wait_ms(ip, now);
  if (wait_user > 0 || wait_ip > 0) return std::max(wait_user, wait_ip);
  if (!user.empty()) per_user_.take(user, now);
  if (!ip.empty()) per_ip_.take(ip, now);
  return 0;
}

void LoginThrottle::succeeded(std::string_view user, std::string_view ip, Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!user.empty()) per_user_.give_back(user, now);
  if (!ip.empty()) per_ip_.give_back(ip, now);
}

// ---- ConnectionCounter ----

ConnectionCounter::Shard& ConnectionCounter::shard_of(std::string_view key) const {
  return shards_[shard_index(key, shards_.size())];
}

bool ConnectionCounter::try_acquire(std::string_view key) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto [it, inserted] = s.counts.try_emplace(std::string(key), 0);
  if (max_ != 0 && it->second >= max_) {
    if (it->second == 0) s.counts.erase(it);
    return false;
  }
  ++it->second;
  return true;
}

void ConnectionCounter::release(std::string_view key) {
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(std::string(key));
  if (it == s.counts.end()) return;
  if (--it->second == 0) s.counts.erase(it);
}

std::size_t ConnectionCounter::count(std::string_view key) const {
  const Shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(std::string(key));
  return it == s.counts.end() ? 0 : it->second;
}

// ---- Origin ----

bool origin_allowed(std::string_view origin, bool has_origin, std::string_view host,
                    const std::vector<std::string>& allowed) {
  if (!has_origin) return true;
  const std::string o = normal_origin(origin);
  for (const auto& a : allowed) {
    if (a == "*" || normal_origin(a) == o) return true;
  }
  // Same origin: the Origin's host[:port] is the request's Host.
  const auto scheme = o.find("://");
  if (scheme == std::string::npos || trim(host).empty()) return false;
  return without_default_port(o.substr(scheme + 3)) == without_default_port(lower(trim(host)));
}

std::vector<std::string> split_list(std::string_view csv) {
  std::vector<std::string> out;
  while (!csv.empty()) {
    const auto comma = csv.find(',');
    const std::string_view item = trim(csv.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    csv.remove_prefix(comma + 1);
  }
  return out;
}

std::string_view address_of(std::string_view remote) {
  const auto colon = remote.rfind(':');
  return colon == std::string_view::npos ? remote : remote.substr(0, colon);
}

std::string client_address(std::string_view peer, std::string_view forwarded,
                           const std::vector<std::string>& trusted_proxies) {
  if (forwarded.empty() ||
      std::find(trusted_proxies.begin(), trusted_proxies.end(), peer) == trusted_proxies.end()) {
    return std::string(peer);
  }
  const auto comma = forwarded.rfind(',');
  const std::string_view last =
      trim(comma == std::string_view::npos ? forwarded : forwarded.substr(comma + 1));
  // Only a literal IPv4 or IPv6 address is believed (not a port, a name or garbage).
  const std::string candidate(last);
  unsigned char parsed[sizeof(in6_addr)];
  const bool is_address = inet_pton(AF_INET, candidate.c_str(), parsed) == 1 ||
                          inet_pton(AF_INET6, candidate.c_str(), parsed) == 1;
  return is_address ? candidate : std::string(peer);
}

}  // namespace parley::core
