// The recent-message cache. Each room keeps one contiguous run of seqs, so "is every message in
// (after, up_to] here?" is two comparisons and the answer is a slice of the deque.

#include "core/recent_cache.hpp"

#include <algorithm>
#include <functional>

namespace parley::core {

RecentCache::RecentCache(std::size_t per_room, std::size_t max_rooms)
    : per_room_(per_room),
      // The room budget is split evenly over the shards, rounded up, and every shard may hold
      // at least one room so that a small budget still caches something.
      max_rooms_per_shard_(std::max<std::size_t>(1, (max_rooms + 15) / 16)) {}

RecentCache::Shard& RecentCache::shard(const std::string& room) const {
  return shards_[std::hash<std::string>{}(room) % shards_.size()];
}

void RecentCache::put(const std::string& room, CachedMessage m) {
  // Seqs start at 1; a per_room of 0 turns the cache off.
  if (m.seq == 0 || per_room_ == 0) return;
  Shard& sh = shard(room);
  std::lock_guard lock(sh.mu);

  auto it = sh.rooms.find(room);
  if (it == sh.rooms.end()) {
    // A new room over the shard's budget evicts some other room. Which one matters little:
    // a miss only costs a store query, and tracking recency would cost every hit a write.
    if (sh.rooms.size() >= max_rooms_per_shard_) sh.rooms.erase(sh.rooms.begin());
    it = sh.rooms.emplace(room, Room{}).first;
  }
  auto& msgs = it->second.msgs;

  if (!msgs.empty()) {
    const std::uint64_t newest = msgs.back().seq;
    if (m.seq <= newest) return;  // older or repeated: the run already covers or passed it
    // A jump past newest + 1 means messages in between were never seen here; the run restarts
    // at the new seq so that it stays contiguous and never serves a gap.
    if (m.seq != newest + 1) msgs.clear();
  }
  msgs.push_back(std::move(m));
  while (msgs.size() > per_room_) msgs.pop_front();
}

std::optional<std::vector<CachedMessage>> RecentCache::range(const std::string& room,
                                                             std::uint64_t after,
                                                             std::uint64_t up_to,
                                                             std::size_t limit) const {
  // An empty interval holds no message, so the cache trivially has all of them.
  if (after >= up_to) return std::vector<CachedMessage>{};

  Shard& sh = shard(room);
  std::lock_guard lock(sh.mu);
  auto it = sh.rooms.find(room);
  if (it == sh.rooms.end() || it->second.msgs.empty()) return std::nullopt;
  const auto& msgs = it->second.msgs;
  const std::uint64_t oldest = msgs.front().seq;
  const std::uint64_t newest = msgs.back().seq;
  if (after + 1 < oldest || up_to > newest) return std::nullopt;

  // The run is contiguous, so seq s sits at index s - oldest. The first `limit` messages after
  // `after` are returned, so a caller paging forward continues from the last one it got.
  const std::size_t first = static_cast<std::size_t>(after + 1 - oldest);
  const std::size_t count = std::min<std::size_t>(limit, static_cast<std::size_t>(up_to - after));
  std::vector<CachedMessage> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(msgs[first + i]);
  return out;
}

std::optional<std::vector<CachedMessage>> RecentCache::since(const std::string& room,
                                                             std::uint64_t after,
                                                             std::size_t limit) const {
  Shard& sh = shard(room);
  std::lock_guard lock(sh.mu);
  auto it = sh.rooms.find(room);
  if (it == sh.rooms.end() || it->second.msgs.empty()) return std::nullopt;
  const auto& msgs = it->second.msgs;
  const std::uint64_t oldest = msgs.front().seq;
  const std::uint64_t newest = msgs.back().seq;
  if (after + 1 < oldest) return std::nullopt;
  std::vector<CachedMessage> out;
  if (after >= newest) return out;
  const std::size_t first = static_cast<std::size_t>(after + 1 - oldest);
  const std::size_t count = std::min<std::size_t>(limit, msgs.size() - first);
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(msgs[first + i]);
  return out;
}

void RecentCache::clear_all() {
  for (auto& sh : shards_) {
    std::lock_guard lock(sh.mu);
    sh.rooms.clear();
  }
}

std::uint64_t RecentCache::newest(const std::string& room) const {
  Shard& sh = shard(room);
  std::lock_guard lock(sh.mu);
  auto it = sh.rooms.find(room);
  if (it == sh.rooms.end() || it->second.msgs.empty()) return 0;
  return it->second.msgs.back().seq;
}

void RecentCache::clear_room(const std::string& room) {
  Shard& sh = shard(room);
  std::lock_guard lock(sh.mu);
  sh.rooms.erase(room);
}

}  // namespace parley::core
