#pragma once
// The RabbitMQ adapter of the Bus port (AMQP 0-9-1 through rabbitmq-c), selected with
// `--bus amqp://user:pass@host:port/vhost`.
//
// Topology: one durable topic exchange (parley.events by default); per node one exclusive,
// auto-delete, server-named queue; one binding per subscribed topic, whose binding key is the
// topic itself ("room.general", "room.dm:alice:bob", "user.alice", "presence", "node"). Room and
// user names hold only [a-z0-9_-] and ':', so a binding key never holds the '*' or '#' wildcards
// and matches exactly one routing key. Events are packed several to a message per routing key
// (see event_codec.hpp), and the node's own publications come back to it like anyone else's.
//
// Threads: rabbitmq-c is blocking and a connection may not be shared between threads, so one
// adapter thread owns the connection and does all the network work. publish(), subscribe() and
// unsubscribe() only append to a command queue under a mutex and wake that thread through an
// eventfd; they never block on the network. The thread sends what is queued (publishes packed
// per routing key), then takes what the broker delivered, decodes it and hands it to the handler
// as one batch per loop turn.
//
// Failures: the thread connects in the background, so start() never blocks, and it reconnects
// with exponential backoff whenever the connection drops. A broker that dies without closing
// the connection is noticed by heartbeats (after two silent intervals: 4 s by default) or, when
// this node is blocked sending to it, by the send timeout (5 s by default). Events published while
// there is no connection are dropped and counted: delivery is at most once and the store is the
// truth. After a reconnect the thread declares the exchange and a new queue, binds every subscribed
// topic again, and only then calls the resync handler, so that the node's re-read of the store
// cannot miss an event published after it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bus/bus.hpp"
#include "core/result.hpp"

namespace parley::metrics {
class Registry;
class Counter;
}  // namespace parley::metrics

namespace parley::bus {

struct RabbitmqOptions {
  // amqp://user:pass@host:port/vhost. "amqp://host:port/" and "amqp://host:port" both mean the
  // default vhost "/", which is also spelled "%2f". amqps:// is not supported.
  std::string url;
  // Names the AMQP connection (visible in rabbitmqctl list_connections) and the logs.
  std::string node_id;
  std::string exchange = "parley.events";
  // Reconnect backoff: the first retry after reconnect_min, doubling up to reconnect_max.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  // AMQP heartbeat; a broker that stays silent for two intervals is taken for dead. 0 disables.
  std::chrono::seconds heartbeat{2};
  // How long the broker may leave this node's sends unread before the connection is taken for
  // dead (TCP_USER_TIMEOUT; 0 leaves the kernel default). Heartbeats alone miss a broker that
  // froze while this node was busy publishing: rabbitmq-c counts the deliveries still buffered
  // from before the freeze as signs of life, while its send waits for room that never comes.
  std::chrono::milliseconds send_timeout{5000};
  // Bounds on the TCP connect and on each synchronous AMQP method (declare, bind, login).
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds rpc_timeout{5000};
  // Packing: at most this many events, and (unless one event alone is larger) this many body
  // bytes, per AMQP message.
  std::size_t max_pack_events = 64;
  std::size_t max_pack_bytes = 128 * 1024;
  // Messages the broker may have in flight to this node before it acknowledges them. Bounds the
  // memory a busy node takes in, and leaves the rest waiting in the queue (queue depth metric).
  std::uint16_t prefetch = 256;
  // How often the queue depth is asked for (a passive queue.declare on the bus thread).
  std::chrono::milliseconds depth_interval{1000};
  // Fault injection, for tests and drills only: the bus thread sleeps this long per consumed
  // AMQP message, so that this node's consumer falls behind and its queue fills (the node
  // itself keeps serving HTTP, so its queue-depth gauge can be watched). 0: off.
  std::chrono::milliseconds consume_delay{0};
  // How long stop() lets the bus thread send what was queued and close politely before it shuts
  // the socket down.
  std::chrono::milliseconds stop_grace{2000};
  // Commands waiting for the bus thread beyond which publishes are dropped (and counted), so that
  // a stalled broker cannot make the node's memory grow without bound.
  std::size_t max_queued = std::size_t{1} << 20;
  // When set, registers parley_bus_reconnects_total, parley_bus_dropped_total and the callback
  // gauge parley_bus_queue_depth. The registry must outlive the bus or stop rendering first.
  metrics::Registry* metrics = nullptr;
};

// The parts of an AMQP URL that the adapter uses.
struct AmqpEndpoint {
  std::string host;
  int port = 5672;
  std::string user;
  std::string password;
  std::string vhost;
};
Result<AmqpEndpoint, std::string> parse_amqp_url(const std::string& url);

// Whether `name` can be the exchange (RabbitmqOptions::exchange): AMQP 0-9-1 names hold 1 to 255
// letters, digits, '-', '_', '.' and ':', and the broker reserves those starting with "amq.".
// The rule lives here, next to the adapter that declares the exchange, so that parleyd can refuse
// a bad --bus-exchange while parsing its flags with the very check create() makes.
bool valid_exchange_name(std::string_view name);
// The rule above in words, for the error messages of both checks.
inline constexpr std::string_view kExchangeNameRule =
    "1 to 255 letters, digits, '-', '_', '.' or ':', not starting with 'amq.'";

class RabbitmqBus : public Bus {
 public:
  // Running totals, for tests and diagnostics. Messages are AMQP messages; events are bus events
  // (several per message when packed).
  struct Stats {
    std::uint64_t events_sent = 0;
    std::uint64_t messages_sent = 0;
    std::uint64_t events_received = 0;
    std::uint64_t messages_received = 0;
    std::uint64_t dropped = 0;      // publishes that never reached the broker
    std::uint64_t malformed = 0;    // received messages that could not be decoded
    std::uint64_t reconnects = 0;   // connections re-established after a loss
    std::uint64_t connections = 0;  // connections established, the first included
  };

  // Checks the options (the URL above all) and prepares the bus; nothing touches the network
  // until start(). Errors are for the operator: a bad URL, an impossible option.
  static Result<std::unique_ptr<RabbitmqBus>, std::string> create(RabbitmqOptions options);

  ~RabbitmqBus() override;
  RabbitmqBus(const RabbitmqBus&) = delete;
  RabbitmqBus& operator=(const RabbitmqBus&) = delete;

  // Starts the bus thread, which connects in the background. A second call does nothing.
  void start(Handler on_events, ResyncHandler on_resync) override;
  // Sends what is already queued (when connected), closes the connection and joins the thread.
  // A broker that does not take data cannot hold it up for long: after stop_grace the socket is
  // shut down under the bus thread's feet, which fails whatever it is blocked in. Publishes after
  // stop() are dropped. Safe to call more than once, without start(), and from inside the
  // handler (the thread is then joined by a later stop() or the destructor).
  void stop() override;
  void publish(EventPtr event) override;
  // Subscriptions are a set, not counts: the node refcounts its own interest in a topic. A topic
  // holding '*' or '#', or longer than 255 bytes, cannot be bound exactly and is refused (logged).
  void subscribe(const std::string& topic) override;
  void unsubscribe(const std::string& topic) override;
  // connecting until the first connection, connected while it holds, disconnected after a loss
  // (until it is re-established) and after stop().
  State state() const override;

  Stats stats() const;
  // Messages waiting in this node's queue at the last check (0 without a connection).
  std::int64_t queue_depth() const;
  std::int64_t backlog() const override { return queue_depth(); }

 private:
  struct Command {
    enum class Op : std::uint8_t { publish, subscribe, unsubscribe };
    Op op = Op::publish;
    EventPtr event;     // publish
    std::string topic;  // subscribe, unsubscribe
  };
  class Worker;  // the connection and everything else only the bus thread touches
  friend class Worker;

  RabbitmqBus(RabbitmqOptions options, AmqpEndpoint endpoint, int wake_fd);
  void enqueue(Command command);
  void wake();
  void count_dropped(std::uint64_t n);

  const RabbitmqOptions opts_;
  const AmqpEndpoint endpoint_;
  const int wake_fd_;  // eventfd: commands are waiting, or stop() was called

  std::mutex mu_;  // guards commands_, wake_pending_, started_, stopping_, exited_
  std::vector<Command> commands_;
  bool wake_pending_ = false;
  bool started_ = false;
  bool stopping_ = false;
  bool exited_ = false;  // the bus thread has finished (stop() waits for it, within stop_grace)
  std::condition_variable exited_cv_;

  // The connections' sockets while they are open, so that stop() can shut them down. The bus
  // thread sets each after connecting and clears it, under the lock, before closing the descriptor,
  // so stop() never touches a descriptor that was closed and perhaps reused.
  std::mutex sock_mu_;
  int sockfd_ = -1;      // the consuming connection's
  int pub_sockfd_ = -1;  // the publishing connection's

  Handler on_events_;
  ResyncHandler on_resync_;
  std::atomic<State> state_{State::connecting};
  std::thread thread_;

  // Counters the bus thread writes and anyone reads.
  std::atomic<std::uint64_t> events_sent_{0};
  std::atomic<std::uint64_t> messages_sent_{0};
  std::atomic<std::uint64_t> events_received_{0};
  std::atomic<std::uint64_t> messages_received_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> connections_{0};
  // Shared with the queue-depth gauge's callback, which may outlive the bus inside the registry.
  std::shared_ptr<std::atomic<std::int64_t>> queue_depth_;
  metrics::Counter* reconnects_metric_ = nullptr;
  metrics::Counter* dropped_metric_ = nullptr;
};

}  // namespace parley::bus
