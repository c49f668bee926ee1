// Integration tests of the RabbitMQ bus against a real broker.
//
// Environment (set by the README's test command, scripts/test.sh):
//   PARLEY_TEST_AMQP_URL     amqp://guest:guest@127.0.0.1:PORT/ — every broker test needs it;
//                            without it the tests FAIL (they are never skipped).
//   PARLEY_TEST_RABBIT_NODE  the broker's Erlang node name, for the RabbitmqBusRestart tests,
//                            which run `rabbitmqctl -n NODE stop_app` and `... start_app`
//                            (RabbitMQ stops inside a live Erlang node and comes back on the
//                            same ports), and freeze the broker with SIGSTOP. rabbitmqctl must
//                            reach that node through epmd: the tests use ERL_EPMD_PORT, else
//                            PARLEY_EPMD_PORT (what deploy/servers.sh gave epmd), else 24369
//                            (its default). `deploy/servers.sh ctl RUN_DIR ARGS...` runs
//                            rabbitmqctl the same way by hand.
// To run by hand (the ports are examples):
//   export PARLEY_AMQP_PORT=25682 PARLEY_AMQP_DIST_PORT=25683 PARLEY_EPMD_PORT=24379
//   eval "$(deploy/servers.sh start /tmp/rmq rabbitmq | sed 's/^/export /')"
//   ctest --test-dir build/<dir> -R Rabbitmq --output-on-failure
//   deploy/servers.sh stop /tmp/rmq
//
// Each test uses an exchange of its own (deleted at the end), so that tests running in parallel
// against one broker never see each other's events. The restart tests stop the broker for
// everyone and are therefore registered RUN_SERIAL.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus/rabbitmq/event_codec.hpp"
#include "bus/rabbitmq/rabbitmq_bus.hpp"
#include "metrics/metrics.hpp"

using parley::bus::AmqpEndpoint;
using parley::bus::Event;
using parley::bus::EventKind;
using parley::bus::EventPtr;
using parley::bus::RabbitmqBus;
using parley::bus::RabbitmqOptions;
using parley::bus::State;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kHowToRun =
    "run the tests with the README's test command (scripts/test.sh), which starts RabbitMQ with "
    "deploy/servers.sh and exports what it prints; see the top of "
    "tests/integration/rabbitmq_bus_test.cpp to run them by hand";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

EventPtr make_event(EventKind kind, const std::string& topic, std::uint64_t seq,
                    const std::string& origin, const std::string& payload,
                    const std::string& room = "", const std::string& user = "") {
  auto e = std::make_shared<Event>();
  e->kind = kind;
  e->topic = topic;
  e->room = room;
  e->seq = seq;
  e->origin_node = origin;
  e->user = user;
  e->payload = payload;
  return e;
}

// Probe events confirm that a subscription is in place: a bus carries out commands in order, so
// once a node receives a probe it published itself after subscribe(), the binding exists.
constexpr const char* kProbe = "probe:";

bool is_probe(const Event& e) {
  return e.payload.rfind(kProbe, 0) == 0;
}

// Collects what a bus hands to its handler, keeping probes apart.
class Sink {
 public:
  parley::bus::Bus::Handler handler() {
    return [this](std::vector<EventPtr> batch) {
      {
        std::lock_guard lock(mu_);
        batches_.push_back(batch.size());
        for (auto& e : batch) {
          if (is_probe(*e)) {
            ++probes_[e->topic];
          } else {
            events_.push_back(std::move(e));
          }
        }
      }
      const auto delay = delay_.load();
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
    };
  }
  parley::bus::Bus::ResyncHandler resync_handler(std::function<State()> state = {}) {
    return [this, state] {
      std::lock_guard lock(mu_);
      ++resyncs_;
      if (state) resync_states_.push_back(state());
    };
  }
  // Makes the handler slow, to let messages pile up in the broker's queue.
  void set_delay(std::chrono::milliseconds d) { delay_ = d; }

  std::size_t count() {
    std::lock_guard lock(mu_);
    return events_.size();
  }
  std::size_t probes(const std::string& topic) {
    std::lock_guard lock(mu_);
    return probes_[topic];
  }
  int resyncs() {
    std::lock_guard lock(mu_);
    return resyncs_;
  }
  std::vector<State> resync_states() {
    std::lock_guard lock(mu_);
    return resync_states_;
  }
  std::vector<EventPtr> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<std::size_t> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    return wait_until([&] { return count() >= n; }, timeout);
  }

 private:
  std::mutex mu_;
  std::vector<EventPtr> events_;
  std::vector<std::size_t> batches_;
  std::map<std::string, std::size_t> probes_;
  int resyncs_ = 0;
  std::vector<State> resync_states_;
  std::atomic<std::chrono::milliseconds> delay_{0ms};
};

// A plain rabbitmq-c connection, for what the bus itself never does: publish garbage, delete a
// test's exchange.
class RawAmqp {
 public:
  explicit RawAmqp(const std::string& url) {
    auto ep = parley::bus::parse_amqp_url(url);
    if (!ep) return;
    conn_ = amqp_new_connection();
    amqp_socket_t* sock = amqp_tcp_socket_new(conn_);
    const timeval tv{5, 0};
    if (sock == nullptr || amqp_socket_open_noblock(sock, ep->host.c_str(), ep->port, &tv) != 0) {
      return;
    }
    auto r = amqp_login(conn_, ep->vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                        AMQP_SASL_METHOD_PLAIN, ep->user.c_str(), ep->password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return;
    amqp_channel_open(conn_, 1);
    ok_ = amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL;
  }
  ~RawAmqp() {
    if (conn_ == nullptr) return;
    if (ok_) {
      amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
      amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn_);
  }
  RawAmqp(const RawAmqp&) = delete;
  RawAmqp& operator=(const RawAmqp&) = delete;

  bool ok() const { return ok_; }
  bool publish(const std::string& exchange, const std::string& key, const std::string& body) {
    return ok_ && amqp_basic_publish(conn_, 1, amqp_cstring_bytes(exchange.c_str()),
                                     amqp_cstring_bytes(key.c_str()), 0, 0, nullptr,
                                     amqp_bytes_t{body.size(), const_cast<char*>(body.data())}) ==
                      AMQP_STATUS_OK;
  }
  bool delete_exchange(const std::string& exchange) {
    if (!ok_) return false;
    amqp_exchange_delete(conn_, 1, amqp_cstring_bytes(exchange.c_str()), 0);
    return amqp_get_rpc_reply(conn_).reply_type == AMQP_RESPONSE_NORMAL;
  }

 private:
  amqp_connection_state_t conn_ = nullptr;
  bool ok_ = false;
};

std::string unique_tag() {
  std::random_device rd;
  return std::to_string(::getpid()) + "." + std::to_string(rd() % 1000000);
}

class RabbitmqBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = env("PARLEY_TEST_AMQP_URL");
    ASSERT_FALSE(url_.empty()) << "PARLEY_TEST_AMQP_URL is not set: " << kHowToRun;
    exchange_ = "parley.test." + unique_tag();
  }

  void TearDown() override {
    for (auto& b : buses_) b->stop();
    buses_.clear();
    if (!url_.empty()) {
      RawAmqp raw(url_);
      raw.delete_exchange(exchange_);
    }
  }

  RabbitmqOptions options(const std::string& node) {
    RabbitmqOptions o;
    o.url = url_;
    o.node_id = node;
    o.exchange = exchange_;
    o.reconnect_min = 50ms;
    o.reconnect_max = 500ms;
    o.heartbeat = 1s;
    return o;
  }

  RabbitmqBus& make_bus(RabbitmqOptions o) {
    auto b = RabbitmqBus::create(std::move(o));
    if (!b) {
      ADD_FAILURE() << b.error();
      throw std::runtime_error(b.error());
    }
    buses_.push_back(std::move(b).value());
    return *buses_.back();
  }
  RabbitmqBus& make_bus(const std::string& node) { return make_bus(options(node)); }

  static void expect_connected(RabbitmqBus& bus, std::chrono::milliseconds timeout = 10s) {
    ASSERT_TRUE(wait_until([&] { return bus.state() == State::connected; }, timeout))
        << "the bus did not connect to " << env("PARLEY_TEST_AMQP_URL");
  }

  // Subscribes and waits until the binding is in place (see kProbe).
  static void subscribe_confirmed(RabbitmqBus& bus, Sink& sink, const std::string& topic) {
    const auto before = sink.probes(topic);
    bus.subscribe(topic);
    bus.publish(make_event(EventKind::node, topic, 0, "probe", std::string(kProbe) + topic));
    ASSERT_TRUE(wait_until([&] { return sink.probes(topic) > before; }, 10s))
        << "no probe came back on " << topic;
  }

  std::string url_;
  std::string exchange_;
  std::vector<std::unique_ptr<RabbitmqBus>> buses_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The wire format and the URL, no broker needed.

TEST(RabbitmqWire, RoundTripKeepsEveryField) {
  std::vector<EventPtr> in;
  in.push_back(make_event(EventKind::message, "room.dm:alice:bob", 1, "node-1",
                          R"({"type":"message","body":"hi"})", "dm:alice:bob", ""));
  in.push_back(make_event(EventKind::typing, "room.dm:alice:bob", 0, "node-2", "{}", "dm:alice:bob",
                          "alice"));
  // Binary payloads survive: the format is length-prefixed, not text.
  in.push_back(make_event(EventKind::user, "room.dm:alice:bob", ~std::uint64_t{0}, "",
                          std::string("\0\xff\x80 bytes", 9), "", "bob"));
  in.push_back(make_event(EventKind::node, "room.dm:alice:bob", 300, "n", std::string(70000, 'x')));
  std::string body;
  parley::bus::wire::encode_events("room.dm:alice:bob", in, body);
  std::size_t expected_size = 3 + 1 + 1 + 17;
  for (const auto& e : in) expected_size += parley::bus::wire::encoded_size(*e);
  EXPECT_EQ(body.size(), expected_size);

  auto out = parley::bus::wire::decode_events(body);
  ASSERT_TRUE(out) << out.error();
  ASSERT_EQ(out->size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const Event& a = *in[i];
    const Event& b = *(*out)[i];
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.topic, b.topic);
    EXPECT_EQ(a.room, b.room);
    EXPECT_EQ(a.seq, b.seq);
    EXPECT_EQ(a.origin_node, b.origin_node);
    EXPECT_EQ(a.user, b.user);
    EXPECT_EQ(a.payload, b.payload);
  }
}

TEST(RabbitmqWire, MergesBatchesPerTopicKeepingOrder) {
  using parley::bus::wire::TopicBatch;
  auto ev = [](const std::string& topic, std::uint64_t seq) {
    return make_event(EventKind::message, topic, seq, "n", std::to_string(seq));
  };
  std::vector<TopicBatch> batches;
  batches.push_back({"room.b", {ev("room.b", 1), ev("room.b", 2)}});
  batches.push_back({"room.a", {ev("room.a", 1)}});
  batches.push_back({"room.b", {ev("room.b", 3)}});
  batches.push_back({"room.c", {ev("room.c", 1)}});
  batches.push_back({"room.a", {ev("room.a", 2), ev("room.a", 3)}});
  parley::bus::wire::merge_by_topic(batches);
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> got;
  for (const auto& [topic, events] : batches) {
    std::vector<std::uint64_t> seqs;
    for (const auto& e : events) seqs.push_back(e->seq);
    got.emplace_back(topic, seqs);
  }
  const std::vector<std::pair<std::string, std::vector<std::uint64_t>>> want{
      {"room.b", {1, 2, 3}}, {"room.a", {1, 2, 3}}, {"room.c", {1}}};
  EXPECT_EQ(got, want);
}

TEST(RabbitmqWire, RejectsMalformedBodies) {
  std::vector<EventPtr> in{make_event(EventKind::message, "room.a", 7, "n1", "payload", "a")};
  std::string good;
  parley::bus::wire::encode_events("room.a", in, good);
  ASSERT_TRUE(parley::bus::wire::decode_events(good));

  EXPECT_FALSE(parley::bus::wire::decode_events(""));
  EXPECT_FALSE(parley::bus::wire::decode_events("hello, world"));
  std::string bad_version = good;
  bad_version[2] = 2;
  EXPECT_FALSE(parley::bus::wire::decode_events(bad_version));
  // Every truncation fails, none reads past the end (ASan would say).
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(parley::bus::wire::decode_events(std::string_view(good).substr(0, n))) << n;
  }
  EXPECT_FALSE(parley::bus::wire::decode_events(good + "x"));
  std::string bad_kind = good;
  bad_kind[3 + 1 + 1 + 6] = 9;  // header, count, topic length, "room.a", then the kind
  EXPECT_FALSE(parley::bus::wire::decode_events(bad_kind));
  // A count that the body cannot hold is refused before anything is allocated for it.
  std::string huge_count = std::string("PE\x01", 3) + "\xff\xff\xff\xff\x0f" + std::string(1, '\0');
  EXPECT_FALSE(parley::bus::wire::decode_events(huge_count));
  std::string zero_count = std::string("PE\x01", 3) + std::string(1, '\0') + std::string(1, '\0');
  EXPECT_FALSE(parley::bus::wire::decode_events(zero_count));
}

TEST(RabbitmqWire, ParsesUrls) {
  auto a = parley::bus::parse_amqp_url("amqp://guest:secret@127.0.0.1:25672/");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 25672);
  EXPECT_EQ(a->user, "guest");
  EXPECT_EQ(a->password, "secret");
  EXPECT_EQ(a->vhost, "/");
  auto b = parley::bus::parse_amqp_url("amqp://u:p@rabbit.example:5673/chat");
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(b->vhost, "chat");
  auto c = parley::bus::parse_amqp_url("amqp://u:p@h/%2f");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->vhost, "/");
  EXPECT_EQ(c->port, 5672);
  EXPECT_FALSE(parley::bus::parse_amqp_url("inproc"));
  EXPECT_FALSE(parley::bus::parse_amqp_url("amqps://u:p@h:5671/"));
  EXPECT_FALSE(parley::bus::parse_amqp_url("amqp://u:p@h:notaport/"));
  // Errors quote the URL without its password.
  auto bad = parley::bus::parse_amqp_url("amqp://user:s3cret@h:notaport/");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().find("s3cret"), std::string::npos) << bad.error();
  EXPECT_NE(bad.error().find("amqp://user:***@h:notaport/"), std::string::npos) << bad.error();

  RabbitmqOptions o;
  o.url = "http://nope";
  EXPECT_FALSE(RabbitmqBus::create(o));
  o.url = "amqp://u:p@h:1/";
  o.reconnect_min = 0ms;
  EXPECT_FALSE(RabbitmqBus::create(o));
}

// ---------------------------------------------------------------------------------------------
// Against the broker.

TEST_F(RabbitmqBusTest, TwoNodesExchangeEventsOnTheirTopics) {
  Sink sa;
  Sink sb;
  auto& a = make_bus("node-a");
  auto& b = make_bus("node-b");
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(a, sa, "room.general");
  subscribe_confirmed(a, sa, "room.dm:alice:bob");
  subscribe_confirmed(a, sa, "presence");
  subscribe_confirmed(b, sb, "room.general");
  subscribe_confirmed(b, sb, "user.alice");
  subscribe_confirmed(b, sb, "presence");

  a.publish(make_event(EventKind::message, "room.general", 1, "node-a", R"({"seq":1})", "general"));
  a.publish(make_event(EventKind::typing, "room.dm:alice:bob", 0, "node-a", R"({"t":1})",
                       "dm:alice:bob", "alice"));
  a.publish(
      make_event(EventKind::presence, "presence", 0, "node-a", R"({"online":true})", "", "alice"));
  b.publish(
      make_event(EventKind::user, "user.alice", 0, "node-b", R"({"kind":"joined"})", "", "alice"));
  b.publish(
      make_event(EventKind::presence, "presence", 0, "node-b", R"({"online":false})", "", "bob"));
  b.publish(make_event(EventKind::message, "room.general", 2, "node-b", R"({"seq":2})", "general"));

  ASSERT_TRUE(sa.wait_for(5));
  ASSERT_TRUE(sb.wait_for(5));
  std::this_thread::sleep_for(200ms);  // anything that should not arrive has had its chance

  auto summary = [](const std::vector<EventPtr>& events) {
    std::multiset<std::string> out;
    for (const auto& e : events) out.insert(e->topic + "|" + e->origin_node + "|" + e->payload);
    return out;
  };
  EXPECT_EQ(summary(sa.events()), (std::multiset<std::string>{
                                      "room.general|node-a|{\"seq\":1}",
                                      "room.general|node-b|{\"seq\":2}",
                                      "room.dm:alice:bob|node-a|{\"t\":1}",
                                      "presence|node-a|{\"online\":true}",
                                      "presence|node-b|{\"online\":false}",
                                  }));
  EXPECT_EQ(summary(sb.events()), (std::multiset<std::string>{
                                      "room.general|node-a|{\"seq\":1}",
                                      "room.general|node-b|{\"seq\":2}",
                                      "user.alice|node-b|{\"kind\":\"joined\"}",
                                      "presence|node-a|{\"online\":true}",
                                      "presence|node-b|{\"online\":false}",
                                  }));
  // Every field crosses the broker intact.
  for (const auto& e : sb.events()) {
    if (e->kind == EventKind::message && e->seq == 1) {
      EXPECT_EQ(e->room, "general");
      EXPECT_EQ(e->user, "");
    }
    if (e->kind == EventKind::user) {
      EXPECT_EQ(e->user, "alice");
    }
  }
  for (const auto& e : sa.events()) {
    if (e->kind == EventKind::typing) {
      EXPECT_EQ(e->room, "dm:alice:bob");
      EXPECT_EQ(e->user, "alice");
    }
  }
  EXPECT_EQ(a.stats().dropped, 0u);
  EXPECT_EQ(b.stats().dropped, 0u);
  EXPECT_EQ(sa.resyncs(), 0);  // a first connection with nothing dropped needs no resync
}

TEST_F(RabbitmqBusTest, DeliversItsOwnEventsWhenSubscribed) {
  Sink s;
  auto& bus = make_bus("solo");
  bus.start(s.handler(), s.resync_handler());
  expect_connected(bus);
  // No confirmation: the bus binds before it publishes what was queued after subscribe().
  bus.subscribe("room.self");
  bus.publish(make_event(EventKind::message, "room.self", 1, "solo", "hello", "self"));
  bus.publish(make_event(EventKind::message, "room.unbound", 1, "solo", "nobody", "unbound"));
  ASSERT_TRUE(s.wait_for(1));
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(s.count(), 1u);
  EXPECT_EQ(s.events()[0]->payload, "hello");
}

TEST_F(RabbitmqBusTest, UnsubscribeStopsDelivery) {
  Sink sa;
  Sink sb;
  auto& a = make_bus("node-a");
  auto& b = make_bus("node-b");
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(a, sa, "room.x");
  subscribe_confirmed(b, sb, "room.x");
  subscribe_confirmed(b, sb, "room.y");

  a.publish(make_event(EventKind::message, "room.x", 1, "node-a", "x1", "x"));
  ASSERT_TRUE(sb.wait_for(1));

  b.unsubscribe("room.x");
  // The probe on room.y comes back only after the unbind: commands run in order.
  const auto probes = sb.probes("room.y");
  b.publish(make_event(EventKind::node, "room.y", 0, "probe", std::string(kProbe) + "after"));
  ASSERT_TRUE(wait_until([&] { return sb.probes("room.y") > probes; }, 10s));

  a.publish(make_event(EventKind::message, "room.x", 2, "node-a", "x2", "x"));
  a.publish(make_event(EventKind::message, "room.y", 1, "node-a", "y1", "y"));
  ASSERT_TRUE(sb.wait_for(2));
  ASSERT_TRUE(sa.wait_for(2));  // node-a, still subscribed, got x2: it was published
  std::this_thread::sleep_for(300ms);
  std::vector<std::string> got;
  for (const auto& e : sb.events()) got.push_back(e->payload);
  EXPECT_EQ(got, (std::vector<std::string>{"x1", "y1"}));

  // Subscribing again resumes delivery; subscriptions are a set, so twice then once is none.
  subscribe_confirmed(b, sb, "room.x");
  a.publish(make_event(EventKind::message, "room.x", 3, "node-a", "x3", "x"));
  ASSERT_TRUE(sb.wait_for(3));
  EXPECT_EQ(sb.events().back()->payload, "x3");
}

// Many publishers, many events: every event arrives once, in order per publisher and topic, and
// the adapter packs them several to a message. Also measures the throughput.
TEST_F(RabbitmqBusTest, KeepsOrderPerPublisherUnderLoadAndPacks) {
  constexpr int kPublishers = 4;
  constexpr std::uint64_t kPerPublisher = 25000;
  constexpr std::uint64_t kTotal = kPublishers * kPerPublisher;
  Sink sa;
  Sink sb;
  auto& a = make_bus("node-a");
  auto& b = make_bus("node-b");
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(b, sb, "room.load-0");
  subscribe_confirmed(b, sb, "room.load-1");

  // A typical chat message frame is around 150 bytes.
  const std::string payload(150, 'm');
  const auto t0 = Clock::now();
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&a, &payload, p] {
      const std::string origin = "p" + std::to_string(p);
      const std::string topic = "room.load-" + std::to_string(p % 2);
      for (std::uint64_t s = 1; s <= kPerPublisher; ++s) {
        a.publish(make_event(EventKind::message, topic, s, origin, payload, topic.substr(5)));
      }
    });
  }
  for (auto& t : publishers) t.join();
  ASSERT_TRUE(sb.wait_for(kTotal, 120s)) << "received " << sb.count() << " of " << kTotal
                                         << "; dropped at the publisher " << a.stats().dropped;
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  std::map<std::string, std::uint64_t> last;  // per publisher (each keeps to one topic)
  for (const auto& e : sb.events()) {
    auto& l = last[e->origin_node];
    ASSERT_EQ(e->seq, l + 1) << "publisher " << e->origin_node << " out of order";
    l = e->seq;
  }
  ASSERT_EQ(last.size(), std::size_t{kPublishers});
  for (const auto& [origin, l] : last) EXPECT_EQ(l, kPerPublisher) << origin;

  const auto sent = a.stats();
  const auto recv = b.stats();
  EXPECT_EQ(sent.events_sent, kTotal);
  EXPECT_EQ(sent.dropped, 0u);
  // Packing: under this load most messages carry many events.
  EXPECT_LT(sent.messages_sent * 4, sent.events_sent)
      << sent.messages_sent << " messages for " << sent.events_sent << " events";
  // node-b received every message node-a sent, plus its own probes.
  EXPECT_EQ(recv.messages_received - recv.messages_sent, sent.messages_sent);
  // The receiver hands events over in batches, not one by one.
  const auto batches = sb.batches();
  std::printf(
      "[ throughput ] %llu events in %.2f s = %.0f events/s through RabbitMQ; %llu messages "
      "(%.1f events/message), %zu handler batches (%.1f events/batch)\n",
      static_cast<unsigned long long>(kTotal), seconds, static_cast<double>(kTotal) / seconds,
      static_cast<unsigned long long>(sent.messages_sent),
      static_cast<double>(sent.events_sent) / static_cast<double>(sent.messages_sent),
      batches.size(), static_cast<double>(kTotal) / static_cast<double>(batches.size()));
  RecordProperty("events_per_second", static_cast<int>(static_cast<double>(kTotal) / seconds));
}

TEST_F(RabbitmqBusTest, StopIsPrompt) {
  Sink s;
  auto& bus = make_bus("node-stop");
  bus.start(s.handler(), s.resync_handler());
  expect_connected(bus);
  subscribe_confirmed(bus, s, "room.stop");
  for (std::uint64_t i = 1; i <= 1000; ++i) {
    bus.publish(make_event(EventKind::message, "room.stop", i, "n", "x", "stop"));
  }
  const auto t0 = Clock::now();
  bus.stop();
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_EQ(bus.state(), State::disconnected);
  // What was queued before stop() was still sent.
  EXPECT_EQ(bus.stats().events_sent, 1001u);
  bus.publish(make_event(EventKind::message, "room.stop", 1001, "n", "late", "stop"));
  EXPECT_EQ(bus.stats().dropped, 1u);
  bus.stop();  // idempotent
}

TEST_F(RabbitmqBusTest, UnreachableBrokerNeitherBlocksStartNorStop) {
  Sink s;
  auto o = options("node-down");
  o.url = "amqp://guest:guest@127.0.0.1:1/";  // nothing listens on port 1
  parley::metrics::Registry registry;
  o.metrics = &registry;
  auto& bus = make_bus(o);
  auto t0 = Clock::now();
  bus.start(s.handler(), s.resync_handler());
  EXPECT_LT(Clock::now() - t0, 100ms);
  EXPECT_EQ(bus.state(), State::connecting);
  bus.subscribe("room.a");
  for (int i = 0; i < 10; ++i) {
    bus.publish(
        make_event(EventKind::message, "room.a", static_cast<std::uint64_t>(i + 1), "n", "x"));
  }
  // Publishes without a connection are dropped, and counted.
  ASSERT_TRUE(wait_until([&] { return bus.stats().dropped == 10; }, 5s)) << bus.stats().dropped;
  EXPECT_EQ(bus.state(), State::connecting);
  EXPECT_EQ(bus.stats().connections, 0u);
  const auto text = registry.render();
  EXPECT_NE(text.find("parley_bus_dropped_total 10"), std::string::npos) << text;
  EXPECT_NE(text.find("parley_bus_reconnects_total 0"), std::string::npos) << text;
  EXPECT_NE(text.find("parley_bus_queue_depth 0"), std::string::npos) << text;
  t0 = Clock::now();
  bus.stop();
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_EQ(bus.state(), State::disconnected);
  EXPECT_EQ(s.resyncs(), 0);
}

TEST_F(RabbitmqBusTest, ReportsQueueDepthWhileTheConsumerLags) {
  Sink sa;
  Sink sb;
  auto oa = options("node-a");
  oa.max_pack_events = 1;  // one message per event, so that the queue fills
  auto& a = make_bus(oa);
  auto ob = options("node-b");
  ob.prefetch = 16;
  ob.depth_interval = 100ms;
  parley::metrics::Registry registry;
  ob.metrics = &registry;
  auto& b = make_bus(ob);
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(b, sb, "room.slow");
  sb.set_delay(20ms);  // 8 messages per turn, so about 400 messages a second
  constexpr std::uint64_t kCount = 2000;
  for (std::uint64_t i = 1; i <= kCount; ++i) {
    a.publish(make_event(EventKind::message, "room.slow", i, "node-a", "x", "slow"));
  }
  ASSERT_TRUE(wait_until([&] { return b.queue_depth() > 100; }, 10s)) << b.queue_depth();
  const auto text = registry.render();
  EXPECT_NE(text.find("# TYPE parley_bus_queue_depth gauge"), std::string::npos) << text;
  EXPECT_EQ(text.find("parley_bus_queue_depth 0\n"), std::string::npos) << text;
  sb.set_delay(0ms);
  ASSERT_TRUE(sb.wait_for(kCount, 30s)) << sb.count();
  EXPECT_TRUE(wait_until([&] { return b.queue_depth() == 0; }, 5s)) << b.queue_depth();
  EXPECT_EQ(a.stats().messages_sent, kCount);
}

// The publishing connection carries no traffic while nothing is published; its heartbeats must
// keep it alive (the broker closes a connection after two missed heartbeats).
TEST_F(RabbitmqBusTest, IdleConnectionsSurviveOnHeartbeats) {
  Sink s;
  auto& bus = make_bus("node-idle");  // heartbeat 1 s
  bus.start(s.handler(), s.resync_handler());
  expect_connected(bus);
  subscribe_confirmed(bus, s, "room.idle");
  std::this_thread::sleep_for(3500ms);
  bus.publish(make_event(EventKind::message, "room.idle", 1, "node-idle", "after a pause", "i"));
  ASSERT_TRUE(s.wait_for(1));
  EXPECT_EQ(s.events()[0]->payload, "after a pause");
  EXPECT_EQ(bus.stats().connections, 1u) << "a connection was lost while idle";
  EXPECT_EQ(bus.stats().dropped, 0u);
}

TEST_F(RabbitmqBusTest, DropsMalformedMessagesAndCarriesOn) {
  Sink s;
  auto& bus = make_bus("node-m");
  bus.start(s.handler(), s.resync_handler());
  expect_connected(bus);
  subscribe_confirmed(bus, s, "room.m");
  RawAmqp raw(url_);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw.publish(exchange_, "room.m", "not an events message"));
  ASSERT_TRUE(wait_until([&] { return bus.stats().malformed == 1; }, 10s));
  bus.publish(make_event(EventKind::message, "room.m", 1, "node-m", "fine", "m"));
  ASSERT_TRUE(s.wait_for(1));
  EXPECT_EQ(s.events()[0]->payload, "fine");
}

// ---------------------------------------------------------------------------------------------
// Broker restarts: RabbitMQ is stopped and started inside its Erlang node with rabbitmqctl.

namespace {

class RabbitmqBusRestart : public RabbitmqBusTest {
 protected:
  void SetUp() override {
    RabbitmqBusTest::SetUp();
    if (HasFatalFailure()) return;
    node_ = env("PARLEY_TEST_RABBIT_NODE");
    ASSERT_FALSE(node_.empty()) << "PARLEY_TEST_RABBIT_NODE is not set: " << kHowToRun;
  }

  void TearDown() override {
    // Whatever happened, leave the broker running for the tests that follow.
    if (frozen_pid_ > 0) ::kill(frozen_pid_, SIGCONT);
    if (app_stopped_) rabbitmqctl("start_app");
    if (alarm_raised_) rabbitmqctl("set_vm_memory_high_watermark 0.4");
    RabbitmqBusTest::TearDown();
  }

  // The broker's OS process: its Erlang VM, which SIGSTOP freezes without closing any socket.
  int broker_pid() {
    std::string out;
    if (!rabbitmqctl("eval 'os:getpid().'", &out)) return -1;
    const auto b = out.find_first_of("0123456789");
    return b == std::string::npos ? -1 : std::atoi(out.c_str() + b);
  }
  void freeze(int pid) {
    ASSERT_EQ(::kill(pid, SIGSTOP), 0);
    frozen_pid_ = pid;
  }
  void thaw() {
    ASSERT_EQ(::kill(frozen_pid_, SIGCONT), 0);
    frozen_pid_ = -1;
  }

  // Runs rabbitmqctl against the test broker; the output goes to the failure message.
  bool rabbitmqctl(const std::string& command, std::string* output = nullptr) {
    const std::string log = "/tmp/parley-rabbitmqctl-" + std::to_string(::getpid()) + ".log";
    // rabbitmqctl finds the node through epmd: ERL_EPMD_PORT if the caller set it, else the
    // port deploy/servers.sh gave epmd (PARLEY_EPMD_PORT, 24369 by default).
    std::string epmd = env("ERL_EPMD_PORT");
    if (epmd.empty()) epmd = env("PARLEY_EPMD_PORT");
    if (epmd.empty()) epmd = "24369";
    const std::string cmd = "ERL_EPMD_PORT='" + epmd + "' timeout 120 rabbitmqctl -n '" + node_ +
                            "' " + command + " >'" + log + "' 2>&1";
    const int rc = std::system(cmd.c_str());
    std::string out;
    if (FILE* f = std::fopen(log.c_str(), "r")) {
      std::array<char, 4096> buf{};
      std::size_t n = 0;
      while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
      std::fclose(f);
    }
    std::remove(log.c_str());
    if (output != nullptr) *output = out;
    if (rc != 0) {
      ADD_FAILURE() << "`" << cmd << "` failed (" << rc << "): " << out
                    << "\nrabbitmqctl needs the broker's environment (ERL_EPMD_PORT); "
                    << kHowToRun;
      return false;
    }
    if (command == "stop_app") app_stopped_ = true;
    if (command == "start_app") app_stopped_ = false;
    if (command.rfind("set_vm_memory_high_watermark", 0) == 0) {
      alarm_raised_ = command == "set_vm_memory_high_watermark 0";
    }
    return true;
  }

  std::string node_;
  bool app_stopped_ = false;
  bool alarm_raised_ = false;  // the memory alarm, which blocks every publishing connection
  int frozen_pid_ = -1;
};

}  // namespace

TEST_F(RabbitmqBusRestart, ReconnectsRebindsAndResyncs) {
  Sink sa;
  Sink sb;
  parley::metrics::Registry registry;
  auto oa = options("node-a");
  oa.metrics = &registry;
  auto& a = make_bus(oa);
  auto& b = make_bus("node-b");
  a.start(sa.handler(), sa.resync_handler([&a] { return a.state(); }));
  b.start(sb.handler(), sb.resync_handler([&b] { return b.state(); }));
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(a, sa, "room.r");
  subscribe_confirmed(b, sb, "room.r");
  subscribe_confirmed(b, sb, "user.u");
  a.publish(make_event(EventKind::message, "room.r", 1, "node-a", "before", "r"));
  ASSERT_TRUE(sb.wait_for(1));

  ASSERT_TRUE(rabbitmqctl("stop_app"));
  // stop_app closes every connection: both buses notice at once.
  ASSERT_TRUE(wait_until([&] { return a.state() == State::disconnected; }, 15s));
  ASSERT_TRUE(wait_until([&] { return b.state() == State::disconnected; }, 15s));
  // While the broker is away, publishes are dropped and counted.
  b.publish(make_event(EventKind::message, "room.r", 2, "node-b", "lost", "r"));
  ASSERT_TRUE(wait_until([&] { return b.stats().dropped == 1; }, 5s));
  EXPECT_EQ(sa.resyncs(), 0);

  ASSERT_TRUE(rabbitmqctl("start_app"));
  expect_connected(a, 30s);
  expect_connected(b, 30s);
  // The resync handler runs once per reconnect, after the bindings are back (connected state).
  ASSERT_TRUE(wait_until([&] { return sa.resyncs() == 1 && sb.resyncs() == 1; }, 10s));
  EXPECT_EQ(sa.resync_states(), (std::vector<State>{State::connected}));
  EXPECT_EQ(sb.resync_states(), (std::vector<State>{State::connected}));

  // The bindings were restored without any new subscribe(): events flow again, across nodes
  // and back to the publisher.
  a.publish(make_event(EventKind::message, "room.r", 3, "node-a", "after", "r"));
  b.publish(make_event(EventKind::user, "user.u", 0, "node-b", "user-after", "", "u"));
  ASSERT_TRUE(sb.wait_for(3));
  ASSERT_TRUE(sa.wait_for(2));
  std::multiset<std::string> got_b;
  for (const auto& e : sb.events()) got_b.insert(e->payload);
  EXPECT_EQ(got_b, (std::multiset<std::string>{"before", "after", "user-after"}));
  std::vector<std::string> got_a;
  for (const auto& e : sa.events()) got_a.push_back(e->payload);
  EXPECT_EQ(got_a, (std::vector<std::string>{"before", "after"}));

  EXPECT_EQ(a.stats().reconnects, 1u);
  EXPECT_EQ(a.stats().connections, 2u);
  EXPECT_EQ(b.stats().reconnects, 1u);
  const auto text = registry.render();
  EXPECT_NE(text.find("parley_bus_reconnects_total 1"), std::string::npos) << text;
}

TEST_F(RabbitmqBusRestart, StartWithTheBrokerDownConnectsWhenItComesUp) {
  ASSERT_TRUE(rabbitmqctl("stop_app"));
  Sink s;
  auto& bus = make_bus("node-late");
  const auto t0 = Clock::now();
  bus.start(s.handler(), s.resync_handler([&bus] { return bus.state(); }));
  EXPECT_LT(Clock::now() - t0, 100ms);
  bus.subscribe("room.late");
  bus.publish(make_event(EventKind::message, "room.late", 1, "node-late", "dropped", "late"));
  ASSERT_TRUE(wait_until([&] { return bus.stats().dropped == 1; }, 5s));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(bus.state(), State::connecting);

  ASSERT_TRUE(rabbitmqctl("start_app"));
  expect_connected(bus, 30s);
  // Something was dropped before the first connection, so the node is told to resync.
  ASSERT_TRUE(wait_until([&] { return s.resyncs() == 1; }, 10s));
  EXPECT_EQ(s.resync_states(), (std::vector<State>{State::connected}));
  // The subscription made while the broker was down was bound on connecting.
  bus.publish(make_event(EventKind::message, "room.late", 2, "node-late", "delivered", "late"));
  ASSERT_TRUE(s.wait_for(1));
  EXPECT_EQ(s.events()[0]->payload, "delivered");
  EXPECT_EQ(bus.stats().connections, 1u);
  EXPECT_EQ(bus.stats().reconnects, 0u);
}

// A broker that freezes (SIGSTOP: sockets stay open, nothing answers) is noticed within seconds:
// by heartbeats on an idle bus (2 s with a 1 s heartbeat), by the send timeout on a bus blocked
// sending into full socket buffers (5 s by default, plus the time to fill them). stop() stays
// prompt even in the middle of a login that the frozen broker never answers.
// RabbitMQ stops reading a connection that publishes while a resource alarm is on, and throttles
// one that publishes faster than its queues drain (credit flow). A node's consumption must not
// hang on its publishing: with the memory alarm raised and its own publish held, node b still
// takes in the whole backlog of its queue, far more than its prefetch window. (When one
// connection did both, b took in at most its prefetch: the broker no longer read its acks. Under
// load the same coupling made two nodes at 20,000 sends/s deliver 1,300/s.)
TEST_F(RabbitmqBusRestart, KeepsConsumingWhileItsPublishingIsBlocked) {
  Sink sa;
  Sink sb;
  auto oa = options("node-a");
  oa.max_pack_events = 1;  // one message per event, so that b's queue holds many
  auto& a = make_bus(oa);
  auto ob = options("node-b");
  ob.prefetch = 16;
  auto& b = make_bus(ob);
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(b, sb, "room.q");
  sb.set_delay(50ms);  // 8 messages per turn: b's queue fills
  constexpr std::uint64_t kCount = 4000;
  for (std::uint64_t i = 1; i <= kCount; ++i) {
    a.publish(make_event(EventKind::message, "room.q", i, "node-a", "x", "q"));
  }
  ASSERT_TRUE(wait_until([&] { return a.stats().messages_sent == kCount; }, 10s));

  ASSERT_TRUE(rabbitmqctl("set_vm_memory_high_watermark 0"));
  // From its first publish on, b's publishing connection is blocked by the alarm.
  b.publish(make_event(EventKind::message, "room.q", kCount + 1, "node-b", "held", "q"));
  ASSERT_TRUE(wait_until([&] { return b.stats().messages_sent == 1; }, 5s));
  const std::size_t before = sb.count();
  ASSERT_LT(before + 500, kCount) << "the backlog was consumed before the alarm was raised";
  sb.set_delay(0ms);
  ASSERT_TRUE(sb.wait_for(kCount, 30s))
      << "while its publishing was blocked, b consumed " << sb.count() - before << " of the "
      << kCount - before << " messages waiting in its queue";
  EXPECT_EQ(sb.count(), kCount) << "the held publish arrived while the alarm was on";

  // The alarm cleared, the held publish goes through.
  ASSERT_TRUE(rabbitmqctl("set_vm_memory_high_watermark 0.4"));
  ASSERT_TRUE(sb.wait_for(kCount + 1, 30s)) << sb.count();
  EXPECT_EQ(sb.events().back()->payload, "held");
  EXPECT_EQ(b.state(), State::connected);
  EXPECT_EQ(b.stats().reconnects, 0u);
}

TEST_F(RabbitmqBusRestart, NoticesAFrozenBroker) {
  Sink sa;
  Sink sb;
  auto& a = make_bus("node-idle");  // heartbeat 1 s: silence is fatal after 2 s
  auto ob = options("node-busy");
  ob.max_queued = 100000;
  auto& b = make_bus(ob);
  a.start(sa.handler(), sa.resync_handler());
  b.start(sb.handler(), sb.resync_handler());
  expect_connected(a);
  expect_connected(b);
  subscribe_confirmed(a, sa, "room.f");
  subscribe_confirmed(b, sb, "room.f");
  const int pid = broker_pid();
  ASSERT_GT(pid, 0);

  std::atomic<bool> publishing{true};
  std::thread publisher([&] {
    const std::string payload(1000, 'p');
    for (std::uint64_t s = 1; publishing.load(); ++s) {
      b.publish(make_event(EventKind::message, "room.f", s, "node-busy", payload, "f"));
      if (s % 1000 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  std::this_thread::sleep_for(200ms);
  freeze(pid);
  const auto t0 = Clock::now();
  const bool idle_noticed = wait_until([&] { return a.state() == State::disconnected; }, 10s);
  const auto idle_after = Clock::now() - t0;
  const bool busy_noticed = wait_until([&] { return b.state() == State::disconnected; }, 10s);
  const auto busy_after = Clock::now() - t0;
  publishing = false;
  publisher.join();
  EXPECT_TRUE(idle_noticed);
  EXPECT_TRUE(busy_noticed);
  EXPECT_LT(idle_after, 4s);
  EXPECT_LT(busy_after, 9s);
  std::printf(
      "[ dead broker ] frozen broker noticed after %lld ms (idle bus), %lld ms (busy bus)\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(idle_after).count()),
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(busy_after).count()));

  // node-idle now retries: the kernel accepts its TCP connection for the frozen broker, and the
  // AMQP handshake waits for an answer that does not come. stop() must not wait for it.
  std::this_thread::sleep_for(500ms);
  const auto t1 = Clock::now();
  a.stop();
  EXPECT_LT(Clock::now() - t1, 3s);

  thaw();
  expect_connected(b, 30s);
  ASSERT_TRUE(wait_until([&] { return sb.resyncs() == 1; }, 10s));
  // Bindings are back: the node receives its own event again.
  const auto before = sb.count();
  b.publish(make_event(EventKind::message, "room.f", 1, "node-busy", "after-thaw", "f"));
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : sb.events()) {
          if (e->payload == "after-thaw") return true;
        }
        return false;
      },
      10s))
      << "received " << sb.count() - before << " events after the thaw";
  EXPECT_GT(b.stats().dropped, 0u);
}
