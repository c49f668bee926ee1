#pragma once
// The recent-message cache: for each room, the newest messages as one contiguous run of seqs,
// so resumes and first history pages are served without the store. Pure data structure.
//
// Thread-safety: every method takes the mutex of one shard of rooms; copies go out, never
// references. Ordering: put() accepts seq == newest + 1 (extends the run) or anything newer
// (the run restarts there, keeping the run contiguous); older or repeated seqs are ignored.

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace parley::core {

struct CachedMessage {
  std::uint64_t seq = 0;
  std::string from;
  std::string body;
  std::int64_t ts_ms = 0;
  std::string client_msg_id;
  // The message's encoded `message` frame JSON, when the caller caches the encoded form (the
  // node does: it serves resumes and history without encoding again).
  std::shared_ptr<const std::string> json;
};

class RecentCache {
 public:
  RecentCache(std::size_t per_room, std::size_t max_rooms);

  void put(const std::string& room, CachedMessage m);
  // Messages with seq in (after, up_to], ascending, at most `limit`, if the cache holds every one
  // of them (after + 1 >= oldest cached and up_to <= newest cached); nullopt on a miss.
  std::optional<std::vector<CachedMessage>> range(const std::string& room, std::uint64_t after,
                                                  std::uint64_t up_to, std::size_t limit) const;
  // Every cached message with seq > after, ascending, at most `limit`, if the cache's run reaches
  // back to after + 1 (or the room's run starts at seq 1); nullopt on a miss. An empty vector
  // means nothing newer than `after` is cached.
  std::optional<std::vector<CachedMessage>> since(const std::string& room, std::uint64_t after,
                                                  std::size_t limit) const;
  // The newest seq cached for the room (0 if none).
  std::uint64_t newest(const std::string& room) const;
  void clear_room(const std::string& room);
  void clear_all();

 private:
  struct Room {
    std::deque<CachedMessage> msgs;  // contiguous ascending seqs
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Room> rooms;
  };
  Shard& shard(const std::string& room) const;
  std::size_t per_room_;
  std::size_t max_rooms_per_shard_;
  mutable std::array<Shard, 16> shards_;
};

}  // namespace parley::core
