#pragma once
// A shard: one I/O thread's io_context and the state of the sessions living on it. All fields
// are touched only from this shard's thread, so fan-out to local members takes no lock: a bus
// event is posted once per shard, and the shard hands the same frame buffer to each member.
//
// The shard also keeps, per room, the last seq it delivered. A message whose seq is ahead of
// last + 1 means the bus lost or reordered something: the shard holds it, fetches the missing
// messages from the store (gap repair), and delivers all of them in order.

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "transport/node.hpp"

namespace parley::transport {

class Shard {
 public:
  Shard(Node& node, unsigned index);
  boost::asio::io_context& ioc() { return ioc_; }
  unsigned index() const { return index_; }

  // Everything below runs on this shard's thread only.
  void add_session(WsSession* s);
  void remove_session(WsSession* s);
  const std::unordered_set<WsSession*>& sessions() const { return sessions_; }
  // The buffer every session of this shard reads into. Sessions read only when their socket is
  // readable and parse at once, so one buffer per thread replaces one per connection.
  std::span<char> read_scratch();
  // Staging for a session's gathered write (async_write copies the list it is given).
  std::vector<boost::asio::const_buffer>& iov_scratch() { return iov_scratch_; }

  void add_user_session(const std::string& user, WsSession* s);
  void remove_user_session(const std::string& user, WsSession* s);
  // `room_last_seq` is the room's last seq as read from the store when the session learnt of the
  // room; it starts the shard's delivery point when this is the room's first local member.
  // Returns the shard's delivery point for the room.
  std::uint64_t add_room_member(const std::string& room, WsSession* s, std::uint64_t room_last_seq);
  void remove_room_member(const std::string& room, WsSession* s);
  // The last seq this shard delivered for the room (0 when it has no local members).
  std::uint64_t room_last(const std::string& room) const;
  void add_watcher(const std::string& user, WsSession* s);
  void remove_watcher(const std::string& user, WsSession* s);

  // A batch of bus events for this shard (posted by the node's bus handler).
  void on_deliveries(const std::vector<Delivery>& batch);
  // The bus reconnected: check every local room against the store.
  void resync_rooms();

 private:
  struct Room {
    std::uint64_t last = 0;  // last seq delivered to local members
    std::vector<WsSession*> members;
    bool repairing = false;
    std::vector<Delivery> pending;  // messages held while repairing, ascending arrival
  };
  void on_message(const Delivery& d);
  void deliver_in_order(const std::string& room_name, Room& room, const Delivery& d);
  void start_repair(const std::string& room_name, Room& room, std::uint64_t up_to);
  void finish_repair(const std::string& room_name, std::uint64_t up_to, bool ok,
                     const std::vector<Delivery>& fetched);
  void check_room(const std::string& room_name);
  void on_user_event(const UserEvent& ev);

 public:
  // Adds the deliveries counted since the last call to the node's counter (one atomic add per
  // batch instead of one per delivery).
  void flush_counters();

 private:
  std::uint64_t delivered_ = 0;

  Node& node_;
  unsigned index_;
  boost::asio::io_context ioc_{1};
  std::unordered_set<WsSession*> sessions_;
  std::unique_ptr<char[]> read_scratch_;  // allocated on first use
  std::vector<boost::asio::const_buffer> iov_scratch_;
  std::unordered_map<std::string, Room> rooms_;
  std::unordered_map<std::string, std::vector<WsSession*>> users_;
  std::unordered_map<std::string, std::vector<WsSession*>> watchers_;
};

// Builds the WebSocket text frame for a JSON payload, once, for every recipient.
std::shared_ptr<const std::string> make_text_frame(std::string_view json);

}  // namespace parley::transport
