#pragma once
// The Bus port: how events travel between the nodes of a cluster (and, on one node, from the
// store's writer to the sessions). Adapters: inproc/ (one node; also the test double) and
// rabbitmq/.
//
// Thread-safety and ordering rules, which every adapter keeps:
//  * publish(), subscribe() and unsubscribe() may be called from any thread and never block on
//    the network: adapters queue and return.
//  * Events published by one thread on one topic arrive in publish order; nothing is promised
//    across topics or publishers. Delivery is at most once per subscribing node: the store is
//    the truth, and a node that sees a gap in a room's seq repairs it from the store.
//  * The handler given to start() is called on one adapter-owned thread at a time, with a
//    batch of events. It must not block; it hands work to the I/O threads.
//  * A node receives the events it published itself (when subscribed to the topic), so one
//    path serves local and remote deliveries.
//  * Topics: "room.<room>", "user.<user>", "presence", "node". A node subscribes to a room topic
//    while it has local members of the room.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace parley::bus {

enum class EventKind : std::uint8_t {
  message = 1,   // a committed chat message; payload is the client-facing "message" frame JSON
  typing = 2,    // payload is the client-facing "typing" frame JSON
  user = 3,      // a per-user event (membership, read marker, logout); payload is internal JSON
  presence = 4,  // a user's online status changed on a node; payload is internal JSON
  node = 5,      // node heartbeat; payload is internal JSON
};

struct Event {
  EventKind kind = EventKind::message;
  std::string topic;        // e.g. "room.general"
  std::string room;         // message and typing events: the room
  std::uint64_t seq = 0;    // message events: the room seq
  std::string origin_node;  // the node that published it
  std::string user;         // typing events: the typist (their own sessions are skipped)
  std::string payload;      // serialized once by the publisher, never re-encoded
};
using EventPtr = std::shared_ptr<const Event>;

// Connection state reported to /readyz and /metrics.
enum class State { connecting, connected, disconnected };

class Bus {
 public:
  using Handler = std::function<void(std::vector<EventPtr> batch)>;
  // Called (on the adapter's thread) when the bus reconnects after a loss, so the node re-syncs
  // its rooms from the store.
  using ResyncHandler = std::function<void()>;

  virtual ~Bus() = default;
  virtual void start(Handler on_events, ResyncHandler on_resync) = 0;
  virtual void stop() = 0;
  virtual void publish(EventPtr event) = 0;
  virtual void subscribe(const std::string& topic) = 0;
  virtual void unsubscribe(const std::string& topic) = 0;
  virtual State state() const = 0;
  // Events waiting for this node (RabbitMQ: messages in its queue at the last check); 0 when the
  // adapter has no such queue. Any thread.
  virtual std::int64_t backlog() const { return 0; }
};

inline std::string room_topic(const std::string& room) {
  return "room." + room;
}
inline std::string user_topic(const std::string& user) {
  return "user." + user;
}

}  // namespace parley::bus
