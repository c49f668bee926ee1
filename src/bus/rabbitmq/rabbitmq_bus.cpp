// The RabbitMQ bus. The public half (publish, subscribe, stop...) only queues commands; the
// Worker below, which lives on the bus thread, owns the rabbitmq-c connections and does the rest:
// connect and reconnect, bind and unbind, consume, acknowledge and ask for the queue depth on one
// connection, and hand the queued publishes, packed per routing key, to a publisher thread that
// sends them on a second connection (see "The publisher" for why).

#include "bus/rabbitmq/rabbitmq_bus.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>
#include <utility>

#include "bus/rabbitmq/event_codec.hpp"
#include "metrics/metrics.hpp"

namespace parley::bus {

namespace {

using Clock = std::chrono::steady_clock;
using Status = Result<Ok, std::string>;

constexpr amqp_channel_t kChannel = 1;
// The longest AMQP short string, which bounds routing and binding keys.
constexpr std::size_t kMaxRoutingKey = 255;

timeval to_timeval(std::chrono::milliseconds d) {
  const auto ms = std::max<std::int64_t>(d.count(), 0);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

amqp_bytes_t bytes_of(const std::string& s) {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());
  return b;
}

std::string string_of(amqp_bytes_t b) {
  return b.bytes == nullptr ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

// What went wrong in a synchronous AMQP method, in words for the log.
std::string describe(const amqp_rpc_reply_t& r, const char* what) {
  std::string out = what;
  out += ": ";
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      out += "ok";
      break;
    case AMQP_RESPONSE_NONE:
      out += "no reply";
      break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      out += amqp_error_string2(r.library_error);
      break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
        out += "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
               string_of(m->reply_text);
      } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        out += "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
               string_of(m->reply_text);
      } else {
        out += "unexpected server method " + std::to_string(r.reply.id);
      }
      break;
  }
  return out;
}

// A binding key with '*' or '#' would match more than its own topic.
bool bindable(const std::string& topic) {
  return !topic.empty() && topic.size() <= kMaxRoutingKey &&
         topic.find_first_of("*#") == std::string::npos;
}

// The URL for messages: the password never reaches a log or a terminal.
std::string redacted(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

bool valid_exchange_name(std::string_view name) {
  // The length bound is that of an AMQP short string, like a routing key's.
  return !name.empty() && name.size() <= kMaxRoutingKey && !name.starts_with("amq.") &&
         std::all_of(name.begin(), name.end(), [](unsigned char ch) {
           return std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':';
         });
}

Result<AmqpEndpoint, std::string> parse_amqp_url(const std::string& url) {
  if (url.rfind("amqp://", 0) != 0) {
    return unexpected("expected an amqp://user:pass@host:port/vhost URL, got '" + redacted(url) +
                      "'");
  }
  // amqp_parse_url decodes in place and points into the buffer it is given.
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info{};
  if (const int rc = amqp_parse_url(buf.data(), &info); rc != AMQP_STATUS_OK) {
    return unexpected("cannot parse AMQP URL '" + redacted(url) + "': " + amqp_error_string2(rc));
  }
  AmqpEndpoint ep;
  ep.host = info.host != nullptr ? info.host : "";
  ep.port = info.port;
  ep.user = info.user != nullptr ? info.user : "";
  ep.password = info.password != nullptr ? info.password : "";
  ep.vhost = info.vhost != nullptr ? info.vhost : "";
  // "amqp://host:port/" leaves an empty vhost, which no broker has: it means the default one.
  if (ep.vhost.empty()) ep.vhost = "/";
  if (ep.host.empty()) return unexpected("AMQP URL '" + redacted(url) + "' names no host");
  if (ep.port <= 0 || ep.port > 65535) {
    return unexpected("AMQP URL '" + redacted(url) + "' has a bad port");
  }
  return ep;
}

// Everything the bus thread owns. Nothing here is touched by any other thread but the publisher
// thread it starts (which shares only the pub_* members, see "The publisher"); what the worker
// shares with callers goes through the RabbitmqBus members (the command queue under mu_, the
// atomics).
class RabbitmqBus::Worker {
 public:
  explicit Worker(RabbitmqBus& bus) : bus_(bus), opts_(bus.opts_) {}
  ~Worker() { close(false); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The thread's whole life: connect, serve, and after a loss wait and reconnect, until stop().
  void run() {
    auto backoff = opts_.reconnect_min;
    bool ever_connected = false;
    std::string last_error;
    while (!stopping()) {
      if (auto c = connect(); !c) {
        close(false);
        // The same failure every 5 s while the broker is down is logged once.
        if (c.error() != last_error) {
          spdlog::warn("bus: cannot connect to RabbitMQ at {}:{} ({}); retrying",
                       bus_.endpoint_.host, bus_.endpoint_.port, c.error());
          last_error = c.error();
        }
        wait_offline(backoff);
        backoff = std::min(backoff * 2, opts_.reconnect_max);
        continue;
      }
      last_error.clear();
      backoff = opts_.reconnect_min;
      bus_.connections_.fetch_add(1, std::memory_order_relaxed);
      bus_.state_.store(State::connected, std::memory_order_release);
      if (ever_connected) {
        bus_.reconnects_.fetch_add(1, std::memory_order_relaxed);
        if (bus_.reconnects_metric_ != nullptr) bus_.reconnects_metric_->inc();
        spdlog::info("bus: reconnected to RabbitMQ at {}:{}, {} topic(s) bound again",
                     bus_.endpoint_.host, bus_.endpoint_.port, topics_.size());
      } else {
        spdlog::info("bus: connected to RabbitMQ at {}:{}", bus_.endpoint_.host,
                     bus_.endpoint_.port);
      }
      // The bindings are in place, so whatever is published from now on reaches this node; what
      // was published before (and dropped, or routed to the lost queue) is in the store, which the
      // handler re-reads. Before the first connection nothing can have been missed unless this
      // node itself dropped events.
      if ((ever_connected || lost_events_) && bus_.on_resync_) bus_.on_resync_();
      ever_connected = true;
      lost_events_ = false;

      auto served = serve();
      if (served) {
        close(true);
        break;
      }
      close(false);
      lost_events_ = true;
      if (stopping()) break;
      bus_.state_.store(State::disconnected, std::memory_order_release);
      spdlog::warn("bus: lost the RabbitMQ connection ({}); reconnecting", served.error());
    }
    close(false);
    bus_.state_.store(State::disconnected, std::memory_order_release);
  }

 private:
  bool stopping() {
    std::lock_guard lock(bus_.mu_);
    return bus_.stopping_;
  }

  // Takes every queued command; returns whether stop() has been called. A command queued before
  // stop() is always taken by the call that first sees stopping_, so none is forgotten.
  bool take_commands(std::vector<Command>& out) {
    out.clear();
    std::lock_guard lock(bus_.mu_);
    out.swap(bus_.commands_);
    bus_.wake_pending_ = false;
    return bus_.stopping_;
  }

  void drain_wake_fd() {
    std::uint64_t n = 0;
    // Non-blocking: EAGAIN just means nobody woke us.
    [[maybe_unused]] const auto r = ::read(bus_.wake_fd_, &n, sizeof n);
  }

  // Opens one connection and its channel, logged in, and registers its socket for stop(). Its
  // name (shown by the management tools) says whose it is and what it is for.
  // The connection goes into `conn_slot` at once, so that close() destroys it whatever fails.
  Status open(const char* role, amqp_connection_state_t& conn_slot, int& sockfd_slot) {
    amqp_connection_state_t conn = amqp_new_connection();
    if (conn == nullptr) return unexpected(std::string("out of memory"));
    conn_slot = conn;
    amqp_socket_t* sock = amqp_tcp_socket_new(conn);
    if (sock == nullptr) return unexpected(std::string("cannot create a socket"));
    const timeval connect_tv = to_timeval(opts_.connect_timeout);
    const auto& ep = bus_.endpoint_;
    if (const int rc = amqp_socket_open_noblock(sock, ep.host.c_str(), ep.port, &connect_tv);
        rc != AMQP_STATUS_OK) {
      return unexpected(std::string(amqp_error_string2(rc)));
    }
    const int fd = amqp_socket_get_sockfd(sock);
    {
      std::lock_guard lock(bus_.sock_mu_);
      sockfd_slot = fd;
    }
    if (opts_.send_timeout.count() > 0) {
      const unsigned int ms = static_cast<unsigned int>(opts_.send_timeout.count());
      if (::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) != 0) {
        spdlog::debug("bus: cannot set TCP_USER_TIMEOUT: {}", std::strerror(errno));
      }
    }
    const timeval rpc_tv = to_timeval(opts_.rpc_timeout);
    amqp_set_handshake_timeout(conn, &rpc_tv);
    amqp_set_rpc_timeout(conn, &rpc_tv);

    const std::string name = "parley " + opts_.node_id + " " + role;
    amqp_table_entry_t entry;
    entry.key = amqp_cstring_bytes("connection_name");
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = bytes_of(name);
    amqp_table_t props;
    props.num_entries = 1;
    props.entries = &entry;
    auto r = amqp_login_with_properties(
        conn, ep.vhost.c_str(), AMQP_DEFAULT_MAX_CHANNELS, AMQP_DEFAULT_FRAME_SIZE,
        static_cast<int>(opts_.heartbeat.count()), &props, AMQP_SASL_METHOD_PLAIN, ep.user.c_str(),
        ep.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return unexpected(describe(r, "login"));
    amqp_channel_open(conn, kChannel);
    return check(conn, "channel.open");
  }

  // Opens both connections: on the consuming one the exchange, a fresh queue and every binding,
  // then the consumer; then the publishing one and its thread. On failure the half-open
  // connections are left for close().
  Status connect() {
    if (auto s = open(kConsume, conn_, bus_.sockfd_); !s) return s;
    amqp_exchange_declare(conn_, kChannel, bytes_of(opts_.exchange), amqp_cstring_bytes("topic"),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                          amqp_empty_table);
    if (auto s = check("exchange.declare"); !s) return s;
    // Exclusive and auto-delete: the queue lives exactly as long as this connection, so a dead
    // node leaves nothing behind and a reconnect starts from an empty queue.
    auto* q = amqp_queue_declare(conn_, kChannel, amqp_empty_bytes, /*passive=*/0, /*durable=*/0,
                                 /*exclusive=*/1, /*auto_delete=*/1, amqp_empty_table);
    if (auto s = check("queue.declare"); !s) return s;
    if (q == nullptr) return unexpected(std::string("queue.declare: no reply"));
    queue_ = string_of(q->queue);
    amqp_basic_qos(conn_, kChannel, 0, opts_.prefetch, 0);
    if (auto s = check("basic.qos"); !s) return s;
    for (const auto& topic : topics_) {
      if (auto s = bind(topic); !s) return s;
    }
    amqp_basic_consume(conn_, kChannel, bytes_of(queue_), amqp_empty_bytes, /*no_local=*/0,
                       /*no_ack=*/0, /*exclusive=*/1, amqp_empty_table);
    if (auto s = check("basic.consume"); !s) return s;
    next_depth_check_ = Clock::now();
    if (auto s = open(kPublish, pub_conn_, bus_.pub_sockfd_); !s) {
      return unexpected("publishing connection: " + s.error());
    }
    start_publisher();
    return Ok{};
  }

  Status check(const char* what) { return check(conn_, what); }
  static Status check(amqp_connection_state_t conn, const char* what) {
    const auto r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return Ok{};
    return unexpected(describe(r, what));
  }

  // Closes both connections: politely (channel.close, connection.close, each bounded by a short
  // timeout, after the publisher sent what it was handed) when stopping, or by just dropping the
  // sockets after a failure.
  void close(bool graceful) {
    stop_publisher(graceful);
    close_connection(pub_conn_, bus_.pub_sockfd_, graceful);
    close_connection(conn_, bus_.sockfd_, graceful);
    queue_.clear();
    bus_.queue_depth_->store(0, std::memory_order_relaxed);
  }

  void close_connection(amqp_connection_state_t& conn, int& sockfd_slot, bool graceful) {
    if (conn == nullptr) return;
    if (graceful) {
      const timeval tv = to_timeval(std::min(opts_.rpc_timeout, std::chrono::milliseconds(1000)));
      amqp_set_rpc_timeout(conn, &tv);
      amqp_channel_close(conn, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
    {
      std::lock_guard lock(bus_.sock_mu_);
      sockfd_slot = -1;
    }
    amqp_destroy_connection(conn);
    conn = nullptr;
  }

  Status bind(const std::string& topic) {
    amqp_queue_bind(conn_, kChannel, bytes_of(queue_), bytes_of(opts_.exchange), bytes_of(topic),
                    amqp_empty_table);
    return check("queue.bind");
  }

  Status unbind(const std::string& topic) {
    amqp_queue_unbind(conn_, kChannel, bytes_of(queue_), bytes_of(opts_.exchange), bytes_of(topic),
                      amqp_empty_table);
    return check("queue.unbind");
  }

  // Applies a subscription change to the set of topics; returns whether the set changed.
  bool apply_subscription(const Command& c) {
    if (c.op == Command::Op::subscribe) return topics_.insert(c.topic).second;
    return topics_.erase(c.topic) > 0;
  }

  void drop(std::uint64_t n) {
    if (n == 0) return;
    lost_events_ = true;
    bus_.count_dropped(n);
  }

  // Without a connection: subscriptions are remembered for the next one, publishes are dropped.
  void apply_offline(std::vector<Command>& cmds) {
    for (auto& c : cmds) {
      if (c.op == Command::Op::publish) {
        drop(1);
      } else {
        apply_subscription(c);
      }
    }
    cmds.clear();
  }

  // Waits for the backoff to pass, handling commands meanwhile; returns early on stop().
  void wait_offline(std::chrono::milliseconds d) {
    const auto deadline = Clock::now() + d;
    std::vector<Command> cmds;
    for (;;) {
      const bool stop = take_commands(cmds);
      apply_offline(cmds);
      if (stop) return;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      pollfd pfd{bus_.wake_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count()) + 1) > 0) drain_wake_fd();
    }
  }

  // The connected loop: send, receive, check the depth, sleep until the socket or a caller
  // wakes us. Returns Ok once stop() has been seen (after sending what was queued before it), an
  // error when the connection fails.
  Status serve() {
    std::vector<Command> cmds;
    const int sockfd = amqp_socket_get_sockfd(amqp_get_socket(conn_));
    for (;;) {
      const bool stop = take_commands(cmds);
      if (auto s = process(cmds); !s) return s;
      if (stop) return Ok{};
      if (auto failure = publisher_failure(); !failure.empty()) {
        return unexpected("publishing connection: " + failure);
      }
      auto more = receive_turn();
      if (!more) return unexpected(more.error());
      if (Clock::now() >= next_depth_check_) {
        if (auto s = check_depth(); !s) return s;
      }
      // A full turn may have left deliveries behind, and RPCs (the depth check, bindings) park
      // deliveries that arrive meanwhile in rabbitmq-c's own buffers, where poll() cannot see them.
      if (*more || amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_)) continue;
      pollfd pfds[2] = {{sockfd, POLLIN, 0}, {bus_.wake_fd_, POLLIN, 0}};
      const int n = ::poll(pfds, 2, poll_timeout_ms());
      if (n > 0 && (pfds[1].revents & POLLIN) != 0) drain_wake_fd();
    }
  }

  // Sleep no longer than the next depth check, and short enough that rabbitmq-c (which only
  // sends heartbeats when called) sends them in time: every half interval.
  int poll_timeout_ms() const {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_depth_check_ - Clock::now())
            .count();
    ms = std::clamp<std::int64_t>(ms, 0, 1000);
    if (opts_.heartbeat.count() > 0) {
      ms = std::min<std::int64_t>(ms, opts_.heartbeat.count() * 500);
    }
    return static_cast<int>(ms);
  }

  // Carries out the commands in order. Publishes are gathered per routing key and handed to the
  // publisher thread; a subscription change first hands over what was gathered before it, and
  // what comes after it only once the binding is in place, so that a subscribe followed by a
  // publish on the same thread binds before it publishes (and the node sees its own event).
  // After a failure the remaining publishes are dropped and subscriptions only remembered.
  Status process(std::vector<Command>& cmds) {
    Status status = Ok{};
    for (auto& c : cmds) {
      if (c.op == Command::Op::publish) {
        if (!status) {
          drop(1);
        } else {
          gather(std::move(c.event));
        }
        continue;
      }
      if (status) hand_off();
      const bool changed = apply_subscription(c);
      if (status && changed) {
        status = c.op == Command::Op::subscribe ? bind(c.topic) : unbind(c.topic);
      }
    }
    if (status) hand_off();
    cmds.clear();
    return status;
  }

  void gather(EventPtr e) {
    if (e->topic.empty() || e->topic.size() > kMaxRoutingKey) {
      spdlog::debug("bus: dropping an event with an unusable topic '{}'", e->topic);
      drop(1);
      return;
    }
    auto [it, inserted] = pending_index_.try_emplace(e->topic, pending_.size());
    if (inserted) pending_.emplace_back(e->topic, std::vector<EventPtr>{});
    pending_[it->second].second.push_back(std::move(e));
  }

  // ---- The publisher --------------------------------------------------------------------------
  // Publishes leave on a connection of their own, sent by a thread of their own. RabbitMQ
  // throttles a connection that publishes faster than the queues take the messages (credit flow:
  // the broker stops reading its socket, so our send blocks). When one connection and one thread
  // also consumed, that stopped consumption and acknowledgements too: this node's own queue
  // backed up and deliveries fell seconds behind their acks (two nodes at 20,000 sends/s
  // delivered 1,300/s with both queues at 20k messages and the connections in state `flow`; see
  // docs/benchmarks.md). RabbitMQ recommends separate connections for the same reason.
  //
  // Between the bus thread and the publisher thread only pub_mu_'s members are shared. The
  // publisher thread alone uses pub_conn_ and body_ while it runs; the bus thread opens and
  // closes pub_conn_ only while no publisher thread exists.

  void start_publisher() {
    {
      std::lock_guard lock(pub_mu_);
      pub_queue_.clear();
      pub_stop_ = pub_graceful_ = false;
      pub_failure_.clear();
    }
    pub_thread_ = std::thread([this] { publisher_loop(); });
  }

  // Stops the publisher thread and waits for it. Graceful: it first sends what it was handed.
  // Otherwise that is dropped, and the socket is shut down first, so that a send blocked on a
  // broker that stopped reading returns at once.
  void stop_publisher(bool graceful) {
    if (!pub_thread_.joinable()) return;
    {
      std::lock_guard lock(pub_mu_);
      pub_stop_ = true;
      pub_graceful_ = graceful;
    }
    pub_cv_.notify_one();
    if (!graceful) {
      std::lock_guard lock(bus_.sock_mu_);
      if (bus_.pub_sockfd_ >= 0) ::shutdown(bus_.pub_sockfd_, SHUT_RDWR);
    }
    pub_thread_.join();
  }

  // Why the publisher failed, or empty while it works.
  std::string publisher_failure() {
    std::lock_guard lock(pub_mu_);
    return pub_failure_;
  }

  // Hands the gathered publishes to the publisher thread, in order.
  void hand_off() {
    if (pending_.empty()) return;
    {
      std::lock_guard lock(pub_mu_);
      for (auto& p : pending_) pub_queue_.push_back(std::move(p));
    }
    pub_cv_.notify_one();
    pending_.clear();
    pending_index_.clear();
  }

  void publisher_loop() {
    // rabbitmq-c sends heartbeats only when called, and reads the broker's only when asked.
    const auto tick = opts_.heartbeat.count() > 0
                          ? std::chrono::milliseconds(opts_.heartbeat.count() * 500)
                          : std::chrono::milliseconds(1000);
    auto next_service = Clock::now() + tick;
    std::vector<TopicBatch> work;
    Status status = Ok{};
    for (;;) {
      bool stop = false;
      bool graceful = false;
      {
        std::unique_lock lock(pub_mu_);
        pub_cv_.wait_until(lock, next_service, [this] { return pub_stop_ || !pub_queue_.empty(); });
        work.swap(pub_queue_);
        stop = pub_stop_;
        graceful = pub_graceful_;
      }
      // While the broker throttles us, the bus thread's turns pile up here; merged, they pack
      // into fewer and fuller messages (up to max_pack_events), which lets the broker catch up.
      wire::merge_by_topic(work);
      if (stop && !graceful) status = unexpected(std::string("stopped"));
      for (auto& [topic, events] : work) {
        if (!status) {
          bus_.count_dropped(events.size());
          continue;
        }
        status = send_topic(topic, events);
      }
      work.clear();
      if (status && Clock::now() >= next_service) {
        status = service_publisher();
        next_service = Clock::now() + tick;
      }
      if (!status && !stop) {
        // The bus thread sees the failure at its next turn and reconnects; until it stops this
        // thread, whatever it hands over is dropped (and counted) above.
        {
          std::lock_guard lock(pub_mu_);
          if (pub_failure_.empty()) pub_failure_ = status.error();
        }
        bus_.wake();
      }
      if (stop) return;
    }
  }

  // Lets rabbitmq-c send a heartbeat if one is due and read what the broker sent: its heartbeats
  // (taken for signs of life), or a close, which ends the connection.
  Status service_publisher() {
    amqp_frame_t frame;
    const timeval tv{0, 1};  // not {0, 0}: that would skip the heartbeat checks (see receive_turn)
    const int rc = amqp_simple_wait_frame_noblock(pub_conn_, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) return Ok{};
    if (rc != AMQP_STATUS_OK) return unexpected(std::string(amqp_error_string2(rc)));
    if (frame.frame_type == AMQP_FRAME_METHOD &&
        (frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
         frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)) {
      return unexpected(std::string("closed by the broker"));
    }
    return Ok{};
  }

  // Sends one topic's events, packed: runs of up to max_pack_events events and max_pack_bytes
  // bytes become one message. Order within a topic is kept, which is all the port promises.
  // Publisher thread.
  Status send_topic(const std::string& topic, const std::vector<EventPtr>& events) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes(wire::kContentType.data());
    props.delivery_mode = 1;  // transient: the store, not the broker, keeps what matters
    const std::size_t max_events = std::max<std::size_t>(opts_.max_pack_events, 1);
    std::size_t i = 0;
    while (i < events.size()) {
      std::size_t j = i;
      std::size_t bytes = 0;
      while (j < events.size() && j - i < max_events) {
        const std::size_t s = wire::encoded_size(*events[j]);
        if (j > i && bytes + s > opts_.max_pack_bytes) break;
        bytes += s;
        ++j;
      }
      body_.clear();
      wire::encode_events(topic, std::span<const EventPtr>(events.data() + i, j - i), body_);
      const int rc =
          amqp_basic_publish(pub_conn_, kChannel, bytes_of(opts_.exchange), bytes_of(topic),
                             /*mandatory=*/0, /*immediate=*/0, &props, bytes_of(body_));
      if (rc != AMQP_STATUS_OK) {
        bus_.count_dropped(events.size() - i);
        return unexpected(std::string("basic.publish: ") + amqp_error_string2(rc));
      }
      bus_.events_sent_.fetch_add(j - i, std::memory_order_relaxed);
      bus_.messages_sent_.fetch_add(1, std::memory_order_relaxed);
      i = j;
    }
    return Ok{};
  }

  // Takes the deliveries that are already here (never waiting for more), decodes them, hands the
  // events of still-subscribed topics to the handler as one batch and acknowledges them all at
  // once. Returns whether the turn stopped at its size limit, i.e. more may be waiting.
  Result<bool, std::string> receive_turn() {
    // Acknowledging as we go keeps the broker sending while the handler runs: half the prefetch
    // window per turn.
    const std::size_t max_messages = std::max<std::size_t>(opts_.prefetch / 2, 1);
    std::vector<EventPtr> batch;
    std::uint64_t last_tag = 0;
    std::size_t messages = 0;
    bool full = false;
    for (;;) {
      if (messages >= max_messages) {
        full = true;
        break;
      }
      amqp_maybe_release_buffers(conn_);
      amqp_envelope_t env;
      // Not {0, 0}: rabbitmq-c treats a zero timeout as "immediate", which would also skip its
      // check for a broker that stopped sending heartbeats. A microsecond keeps that check.
      const timeval tv{0, 1};
      const auto r = amqp_consume_message(conn_, &env, &tv, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        ++messages;
        last_tag = env.delivery_tag;
        take_message(env, batch);
        amqp_destroy_envelope(&env);
        if (opts_.consume_delay.count() > 0) std::this_thread::sleep_for(opts_.consume_delay);
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_TIMEOUT) {
        break;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        if (auto s = handle_other_frame(); !s) return unexpected(s.error());
        continue;
      }
      return unexpected(describe(r, "basic.consume"));
    }
    if (!batch.empty()) {
      bus_.events_received_.fetch_add(batch.size(), std::memory_order_relaxed);
      if (bus_.on_events_) bus_.on_events_(std::move(batch));
    }
    if (last_tag != 0) {
      if (const int rc = amqp_basic_ack(conn_, kChannel, last_tag, /*multiple=*/1);
          rc != AMQP_STATUS_OK) {
        return unexpected(std::string("basic.ack: ") + amqp_error_string2(rc));
      }
    }
    return full;
  }

  void take_message(const amqp_envelope_t& env, std::vector<EventPtr>& batch) {
    bus_.messages_received_.fetch_add(1, std::memory_order_relaxed);
    const std::string_view body(static_cast<const char*>(env.message.body.bytes),
                                env.message.body.len);
    auto events = wire::decode_events(body);
    if (!events) {
      bus_.malformed_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("bus: dropping a malformed message (routing key '{}'): {}",
                   string_of(env.routing_key), events.error());
      return;
    }
    // A message routed before an unbind took effect may still arrive; like the in-process bus,
    // deliver only topics subscribed now, so that unsubscribe() means no more events.
    if (events->empty() || topics_.count(events->front()->topic) == 0) return;
    for (auto& e : *events) batch.push_back(std::move(e));
  }

  // A frame other than a delivery came in on its own: the broker closing the channel or the
  // connection, cancelling our consumer, or something harmless to skip.
  Status handle_other_frame() {
    amqp_frame_t frame;
    if (const int rc = amqp_simple_wait_frame(conn_, &frame); rc != AMQP_STATUS_OK) {
      return unexpected(std::string("reading a frame: ") + amqp_error_string2(rc));
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) return Ok{};
    switch (frame.payload.method.id) {
      case AMQP_CONNECTION_CLOSE_METHOD: {
        const auto* m = static_cast<const amqp_connection_close_t*>(frame.payload.method.decoded);
        std::string why = "connection closed by the broker: " + std::to_string(m->reply_code) +
                          " " + string_of(m->reply_text);
        amqp_connection_close_ok_t ok{};
        amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return unexpected(std::move(why));
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        const auto* m = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
        return unexpected("channel closed by the broker: " + std::to_string(m->reply_code) + " " +
                          string_of(m->reply_text));
      }
      case AMQP_BASIC_CANCEL_METHOD:
        return unexpected(std::string("the broker cancelled our consumer"));
      default:
        return Ok{};
    }
  }

  // A passive queue.declare answers with the number of messages ready in our queue.
  Status check_depth() {
    next_depth_check_ = Clock::now() + opts_.depth_interval;
    auto* q = amqp_queue_declare(conn_, kChannel, bytes_of(queue_), /*passive=*/1, /*durable=*/0,
                                 /*exclusive=*/1, /*auto_delete=*/1, amqp_empty_table);
    if (auto s = check("queue.declare (passive)"); !s) return s;
    if (q != nullptr) {
      bus_.queue_depth_->store(static_cast<std::int64_t>(q->message_count),
                               std::memory_order_relaxed);
    }
    return Ok{};
  }

  using TopicBatch = wire::TopicBatch;
  static constexpr const char* kConsume = "consume";
  static constexpr const char* kPublish = "publish";

  RabbitmqBus& bus_;
  const RabbitmqOptions& opts_;
  amqp_connection_state_t conn_ = nullptr;      // consuming: queue, bindings, deliveries, acks
  amqp_connection_state_t pub_conn_ = nullptr;  // publishing (publisher thread while it runs)
  std::string queue_;
  // The topics this node is subscribed to, bound on every connection.
  std::set<std::string> topics_;
  // Publishes gathered in one turn, per topic, topics in the order first seen.
  std::vector<TopicBatch> pending_;
  std::unordered_map<std::string, std::size_t> pending_index_;
  // The publisher thread and what it shares with the bus thread (under pub_mu_).
  std::thread pub_thread_;
  std::mutex pub_mu_;
  std::condition_variable pub_cv_;
  std::vector<TopicBatch> pub_queue_;  // handed over, not yet sent, in order
  bool pub_stop_ = false;
  bool pub_graceful_ = false;
  std::string pub_failure_;
  std::string body_;  // the publisher thread's, reused for every message body
  Clock::time_point next_depth_check_{};
  // Events were dropped or may have been lost since the last connection: resync after the next.
  bool lost_events_ = false;
};

Result<std::unique_ptr<RabbitmqBus>, std::string> RabbitmqBus::create(RabbitmqOptions options) {
  auto ep = parse_amqp_url(options.url);
  if (!ep) return unexpected(ep.error());
  if (!valid_exchange_name(options.exchange)) {
    return unexpected("the exchange name '" + options.exchange + "' must be " +
                      std::string(kExchangeNameRule));
  }
  if (options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min) {
    return unexpected(std::string("reconnect backoff needs 0 < min <= max"));
  }
  if (options.heartbeat.count() < 0 || options.heartbeat.count() > 65535) {
    return unexpected(std::string("heartbeat must be 0..65535 s"));
  }
  if (options.max_pack_events == 0 || options.max_pack_bytes == 0 || options.prefetch == 0) {
    return unexpected(std::string("packing limits and prefetch must be positive"));
  }
  if (options.send_timeout.count() < 0 || options.stop_grace.count() < 0) {
    return unexpected(std::string("send_timeout and stop_grace cannot be negative"));
  }
  if (options.depth_interval.count() <= 0) {
    return unexpected(std::string("the queue depth interval must be positive"));
  }
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return unexpected(std::string("eventfd: ") + std::strerror(errno));
  return std::unique_ptr<RabbitmqBus>(new RabbitmqBus(std::move(options), std::move(*ep), fd));
}

RabbitmqBus::RabbitmqBus(RabbitmqOptions options, AmqpEndpoint endpoint, int wake_fd)
    : opts_(std::move(options)),
      endpoint_(std::move(endpoint)),
      wake_fd_(wake_fd),
      queue_depth_(std::make_shared<std::atomic<std::int64_t>>(0)) {
  if (opts_.metrics != nullptr) {
    auto& m = *opts_.metrics;
    reconnects_metric_ = &m.counter("parley_bus_reconnects_total",
                                    "Connections to RabbitMQ re-established after a loss.");
    dropped_metric_ =
        &m.counter("parley_bus_dropped_total",
                   "Events dropped before reaching RabbitMQ (no connection, or too many queued).");
    m.callback_gauge(
        "parley_bus_queue_depth",
        "Messages waiting in this node's RabbitMQ queue (each packs one or more events).",
        [depth = queue_depth_] {
          return static_cast<double>(depth->load(std::memory_order_relaxed));
        });
  }
}

RabbitmqBus::~RabbitmqBus() {
  stop();
  if (thread_.joinable()) thread_.join();
  ::close(wake_fd_);
}

void RabbitmqBus::start(Handler on_events, ResyncHandler on_resync) {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  on_events_ = std::move(on_events);
  on_resync_ = std::move(on_resync);
  thread_ = std::thread([this] {
    {
      Worker w(*this);
      w.run();
    }
    std::lock_guard lock(mu_);
    exited_ = true;
    exited_cv_.notify_all();
  });
}

void RabbitmqBus::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake();
  // A handler that stops the bus must not join its own thread; the owner's later stop() or the
  // destructor joins it.
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    bool exited = false;
    {
      std::unique_lock lock(mu_);
      exited = exited_cv_.wait_for(lock, opts_.stop_grace, [this] { return exited_; });
    }
    if (!exited) {
      // rabbitmq-c waits without bound in some places (a send to a broker that stopped reading,
      // a login to a broker that accepted the connection and froze): shutting the socket down
      // fails those calls at once, and the thread then finds stopping_ set.
      std::lock_guard lock(sock_mu_);
      if (sockfd_ >= 0 || pub_sockfd_ >= 0) {
        spdlog::warn("bus: RabbitMQ did not let the bus stop within {} ms; closing the sockets",
                     opts_.stop_grace.count());
      }
      for (const int fd : {sockfd_, pub_sockfd_}) {
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
      }
    }
    thread_.join();
  }
  state_.store(State::disconnected, std::memory_order_release);
}

void RabbitmqBus::enqueue(Command command) {
  bool need_wake = false;
  bool dropped = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || (command.op == Command::Op::publish && commands_.size() >= opts_.max_queued)) {
      // Subscription changes after stop() do not matter; publishes are dropped and counted.
      dropped = command.op == Command::Op::publish;
    } else {
      commands_.push_back(std::move(command));
      need_wake = !wake_pending_;
      wake_pending_ = true;
    }
  }
  if (dropped) count_dropped(1);
  if (need_wake) wake();
}

void RabbitmqBus::wake() {
  const std::uint64_t one = 1;
  // Cannot fail short of a counter overflow, and a pending wake-up is as good as a new one.
  [[maybe_unused]] const auto r = ::write(wake_fd_, &one, sizeof one);
}

void RabbitmqBus::count_dropped(std::uint64_t n) {
  dropped_.fetch_add(n, std::memory_order_relaxed);
  if (dropped_metric_ != nullptr) dropped_metric_->inc(n);
}

void RabbitmqBus::publish(EventPtr event) {
  if (!event) return;
  Command c;
  c.op = Command::Op::publish;
  c.event = std::move(event);
  enqueue(std::move(c));
}

void RabbitmqBus::subscribe(const std::string& topic) {
  if (!bindable(topic)) {
    spdlog::warn("bus: refusing to subscribe to '{}': not an exact AMQP binding key", topic);
    return;
  }
  Command c;
  c.op = Command::Op::subscribe;
  c.topic = topic;
  enqueue(std::move(c));
}

void RabbitmqBus::unsubscribe(const std::string& topic) {
  if (!bindable(topic)) return;
  Command c;
  c.op = Command::Op::unsubscribe;
  c.topic = topic;
  enqueue(std::move(c));
}

State RabbitmqBus::state() const {
  return state_.load(std::memory_order_acquire);
}

RabbitmqBus::Stats RabbitmqBus::stats() const {
  Stats s;
  s.events_sent = events_sent_.load(std::memory_order_relaxed);
  s.messages_sent = messages_sent_.load(std::memory_order_relaxed);
  s.events_received = events_received_.load(std::memory_order_relaxed);
  s.messages_received = messages_received_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.malformed = malformed_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.connections = connections_.load(std::memory_order_relaxed);
  return s;
}

std::int64_t RabbitmqBus::queue_depth() const {
  return queue_depth_->load(std::memory_order_relaxed);
}

}  // namespace parley::bus
