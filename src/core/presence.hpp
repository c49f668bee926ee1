#pragma once
// Presence: a user is online while any of their sessions on any node is open. This class counts
// sessions per (node, user) and reports transitions of the cluster-wide status. Pure logic.
//
// Thread-safety: all methods take one internal mutex; they are called on session open/close and
// on presence events, never per message.

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace parley::core {

class Presence {
 public:
  // A session of `user` opened/closed on `node`. Returns true when the user's cluster-wide
  // status changed (offline -> online, or online -> offline).
  bool session_opened(const std::string& node, const std::string& user);
  bool session_closed(const std::string& node, const std::string& user);
  // Another node reports that `user` is online/offline there.
  bool set_remote(const std::string& node, const std::string& user, bool online);
  // Every user online on `node` goes offline there (the node died or restarted). Returns the
  // users whose cluster-wide status changed to offline.
  std::vector<std::string> drop_node(const std::string& node);
  bool online(const std::string& user) const;
  // Users with at least one session on `node` (for heartbeats and re-announcing).
  std::vector<std::string> users_on(const std::string& node) const;

 private:
  bool online_locked(const std::string& user) const;
  mutable std::mutex mu_;
  // user -> node -> number of sessions
  std::unordered_map<std::string, std::unordered_map<std::string, std::uint32_t>> counts_;
};

}  // namespace parley::core
