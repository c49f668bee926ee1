// Presence counting. The table holds only non-zero counts, so "the user has an entry" and "the
// user is online somewhere" are the same fact.

#include "core/presence.hpp"

#include <algorithm>

namespace parley::core {

bool Presence::online_locked(const std::string& user) const {
  return counts_.find(user) != counts_.end();
}

bool Presence::session_opened(const std::string& node, const std::string& user) {
  std::lock_guard lock(mu_);
  const bool was_online = online_locked(user);
  ++counts_[user][node];
  return !was_online;
}

bool Presence::session_closed(const std::string& node, const std::string& user) {
  std::lock_guard lock(mu_);
  auto u = counts_.find(user);
  // A close without a matching open (a double close on an error path) changes nothing rather
  // than underflowing the count.
  if (u == counts_.end()) return false;
  auto n = u->second.find(node);
  if (n == u->second.end()) return false;
  if (--n->second > 0) return false;
  u->second.erase(n);
  if (!u->second.empty()) return false;
  counts_.erase(u);
  return true;
}

bool Presence::set_remote(const std::string& node, const std::string& user, bool online) {
  std::lock_guard lock(mu_);
  const bool was_online = online_locked(user);
  if (online) {
    // A remote node announces a status, not a session count: one entry stands for all of its
    // sessions. A repeated announcement (heartbeats re-announce) keeps the entry as it is.
    auto& count = counts_[user][node];
    if (count == 0) count = 1;
    return !was_online;
  }
  auto u = counts_.find(user);
  if (u == counts_.end()) return false;
  u->second.erase(node);
  if (!u->second.empty()) return false;
  counts_.erase(u);
  return was_online;
}

std::vector<std::string> Presence::drop_node(const std::string& node) {
  std::lock_guard lock(mu_);
  std::vector<std::string> went_offline;
  for (auto it = counts_.begin(); it != counts_.end();) {
    if (it->second.erase(node) > 0 && it->second.empty()) {
      went_offline.push_back(it->first);
      it = counts_.erase(it);
    } else {
      ++it;
    }
  }
  // Sorted so that callers announce in a stable order and tests can compare lists.
  std::sort(went_offline.begin(), went_offline.end());
  return went_offline;
}

bool Presence::online(const std::string& user) const {
  std::lock_guard lock(mu_);
  return online_locked(user);
}

std::vector<std::string> Presence::users_on(const std::string& node) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> users;
  for (const auto& [user, nodes] : counts_) {
    if (nodes.find(node) != nodes.end()) users.push_back(user);
  }
  std::sort(users.begin(), users.end());
  return users;
}

}  // namespace parley::core
