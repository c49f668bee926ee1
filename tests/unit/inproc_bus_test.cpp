// Unit tests of the in-process bus: delivery order, filtering by subscription, batching, and
// stop semantics.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/inproc/inproc_bus.hpp"

using parley::bus::Event;
using parley::bus::EventKind;
using parley::bus::EventPtr;
using parley::bus::InprocBus;
using parley::bus::State;
using namespace std::chrono_literals;

namespace {

EventPtr make_event(const std::string& topic, std::uint64_t seq, const std::string& origin = "n1") {
  auto e = std::make_shared<Event>();
  e->kind = EventKind::message;
  e->topic = topic;
  e->seq = seq;
  e->origin_node = origin;
  e->payload = topic + "#" + std::to_string(seq);
  return e;
}

// Collects what the handler receives, batch by batch, and lets the test wait for a count.
class Sink {
 public:
  parley::bus::Bus::Handler handler() {
    return [this](std::vector<EventPtr> batch) {
      std::lock_guard lock(mu_);
      batch_sizes_.push_back(batch.size());
      for (auto& e : batch) events_.push_back(std::move(e));
      cv_.notify_all();
    };
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }
  std::vector<EventPtr> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<std::size_t> batch_sizes() {
    std::lock_guard lock(mu_);
    return batch_sizes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<EventPtr> events_;
  std::vector<std::size_t> batch_sizes_;
};

}  // namespace

TEST(InprocBus, StateFollowsLifecycle) {
  InprocBus bus;
  EXPECT_EQ(bus.state(), State::connecting);
  Sink sink;
  bus.start(sink.handler(), [] {});
  EXPECT_EQ(bus.state(), State::connected);
  bus.stop();
  EXPECT_EQ(bus.state(), State::disconnected);
  bus.stop();  // idempotent
}

TEST(InprocBus, StopWithoutStart) {
  InprocBus bus;
  bus.publish(make_event("room.a", 1));
  bus.stop();
  EXPECT_EQ(bus.state(), State::disconnected);
}

TEST(InprocBus, DeliversOwnEventsToSubscribedTopicsOnly) {
  InprocBus bus;
  Sink sink;
  bus.subscribe("room.a");
  bus.subscribe("presence");
  bus.start(sink.handler(), [] {});
  bus.publish(make_event("room.a", 1));
  bus.publish(make_event("room.b", 1));
  bus.publish(make_event("presence", 0));
  bus.publish(make_event("room.a", 2));
  ASSERT_TRUE(sink.wait_for(3));
  bus.stop();
  const auto got = sink.events();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0]->payload, "room.a#1");
  EXPECT_EQ(got[1]->payload, "presence#0");
  EXPECT_EQ(got[2]->payload, "room.a#2");
}

TEST(InprocBus, UnsubscribeStopsDelivery) {
  InprocBus bus;
  Sink sink;
  bus.start(sink.handler(), [] {});
  bus.subscribe("room.a");
  bus.publish(make_event("room.a", 1));
  ASSERT_TRUE(sink.wait_for(1));
  bus.unsubscribe("room.a");
  bus.publish(make_event("room.a", 2));
  // Subscribing twice and unsubscribing once leaves no subscription: the set holds no counts.
  bus.subscribe("room.c");
  bus.subscribe("room.c");
  bus.unsubscribe("room.c");
  bus.publish(make_event("room.c", 1));
  bus.subscribe("room.b");
  bus.publish(make_event("room.b", 1));
  ASSERT_TRUE(sink.wait_for(2));
  bus.stop();
  const auto got = sink.events();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->payload, "room.a#1");
  EXPECT_EQ(got[1]->payload, "room.b#1");
}

TEST(InprocBus, OrderPerPublisherAcrossThreads) {
  InprocBus bus;
  Sink sink;
  bus.subscribe("room.a");
  bus.subscribe("room.b");
  bus.start(sink.handler(), [] {});
  constexpr int publishers = 4;
  constexpr std::uint64_t per_publisher = 5000;
  std::vector<std::thread> ts;
  for (int p = 0; p < publishers; ++p) {
    ts.emplace_back([&bus, p] {
      const std::string origin = "p" + std::to_string(p);
      const std::string topic = p % 2 == 0 ? "room.a" : "room.b";
      for (std::uint64_t s = 1; s <= per_publisher; ++s) bus.publish(make_event(topic, s, origin));
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(sink.wait_for(publishers * per_publisher));
  bus.stop();
  std::map<std::string, std::uint64_t> last;
  for (const auto& e : sink.events()) {
    auto& l = last[e->origin_node];
    ASSERT_EQ(e->seq, l + 1) << e->origin_node;
    l = e->seq;
  }
  ASSERT_EQ(last.size(), std::size_t{publishers});
  for (const auto& [origin, l] : last) EXPECT_EQ(l, per_publisher) << origin;
}

TEST(InprocBus, BatchesWhatQueuedWhileTheHandlerWasBusy) {
  InprocBus bus;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  bool first_entered = false;
  std::vector<std::size_t> sizes;
  std::atomic<std::size_t> total{0};
  bus.subscribe("room.a");
  bus.start(
      [&](std::vector<EventPtr> batch) {
        std::unique_lock lock(mu);
        sizes.push_back(batch.size());
        total += batch.size();
        if (!first_entered) {
          first_entered = true;
          cv.notify_all();
          // Hold the dispatcher so that the next events pile up in the queue.
          cv.wait(lock, [&] { return release; });
        }
        cv.notify_all();
      },
      [] {});
  bus.publish(make_event("room.a", 1));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return first_entered; }));
  }
  for (std::uint64_t s = 2; s <= 11; ++s) bus.publish(make_event("room.a", s));
  bus.publish(make_event("room.other", 1));  // filtered out of the batch
  EXPECT_EQ(bus.queue_depth(), 11u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return total.load() == 11; }));
  }
  bus.stop();
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 10}));
  EXPECT_EQ(bus.queue_depth(), 0u);
}

TEST(InprocBus, EventsPublishedBeforeStartAreDelivered) {
  InprocBus bus;
  Sink sink;
  bus.subscribe("room.a");
  bus.publish(make_event("room.a", 1));
  bus.publish(make_event("room.a", 2));
  bus.start(sink.handler(), [] {});
  ASSERT_TRUE(sink.wait_for(2));
  bus.stop();
  EXPECT_EQ(sink.batch_sizes(), (std::vector<std::size_t>{2}));
}

TEST(InprocBus, StopDrainsQueuedEventsThenDropsNewOnes) {
  InprocBus bus;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  bool entered = false;
  std::vector<std::uint64_t> got;
  bus.subscribe("room.a");
  bus.start(
      [&](std::vector<EventPtr> batch) {
        std::unique_lock lock(mu);
        for (const auto& e : batch) got.push_back(e->seq);
        if (!entered) {
          entered = true;
          cv.notify_all();
          cv.wait(lock, [&] { return release; });
        }
      },
      [] {});
  bus.publish(make_event("room.a", 1));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return entered; }));
  }
  // Queued behind a busy handler when stop() is called: still delivered.
  bus.publish(make_event("room.a", 2));
  bus.publish(make_event("room.a", 3));
  std::thread stopper([&] { bus.stop(); });
  // stop() cannot finish while the handler is held; let it start waiting for the dispatcher.
  std::this_thread::sleep_for(20ms);
  bus.publish(make_event("room.a", 4));  // after stop(): dropped
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  stopper.join();
  EXPECT_EQ(got, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(bus.state(), State::disconnected);
  bus.publish(make_event("room.a", 5));
  EXPECT_EQ(bus.queue_depth(), 0u);
}

TEST(InprocBus, StopFromInsideTheHandler) {
  auto bus = std::make_unique<InprocBus>();
  std::atomic<int> calls{0};
  bus->subscribe("node");
  // The handler holds the raw pointer: reading the unique_ptr itself would race with reset().
  InprocBus* raw = bus.get();
  bus->start(
      [&calls, raw](std::vector<EventPtr>) {
        ++calls;
        raw->stop();  // must not deadlock by joining its own thread
      },
      [] {});
  bus->publish(make_event("node", 1));
  for (int i = 0; i < 500 && calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(calls.load(), 1);
  bus.reset();  // the destructor joins the dispatcher
}

TEST(InprocBus, DestructorStopsARunningBus) {
  Sink sink;
  {
    InprocBus bus;
    bus.subscribe("room.a");
    bus.start(sink.handler(), [] {});
    for (std::uint64_t s = 1; s <= 100; ++s) bus.publish(make_event("room.a", s));
  }
  // The destructor drained the queue before joining.
  EXPECT_EQ(sink.events().size(), 100u);
}
