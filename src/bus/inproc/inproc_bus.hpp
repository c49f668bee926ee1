#pragma once
// The in-process bus: the single-node adapter of the Bus port, and the test double for code that
// talks to a bus. Nothing leaves the process: publish() queues the event, and one dispatcher
// thread hands everything queued since its last turn to the handler as one batch, keeping only
// the events whose topic is subscribed at that moment.
//
// Thread-safety: publish(), subscribe(), unsubscribe(), state() and queue_depth() may be called
// from any thread. start() and stop() are called by the owner, once each. The handler runs on
// the dispatcher thread only.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "bus/bus.hpp"

namespace parley::bus {

class InprocBus : public Bus {
 public:
  InprocBus() = default;
  ~InprocBus() override;
  InprocBus(const InprocBus&) = delete;
  InprocBus& operator=(const InprocBus&) = delete;

  // Starts the dispatcher thread. Events published before start() are delivered once it runs.
  // A second call does nothing. The resync handler is never called: nothing here can be lost.
  void start(Handler on_events, ResyncHandler on_resync) override;
  // Delivers what is already queued, then joins the dispatcher. Events published afterwards are
  // dropped. Safe to call more than once, and without start().
  void stop() override;
  void publish(EventPtr event) override;
  // Subscriptions are a set, not counts: the node refcounts its own interest in a topic.
  void subscribe(const std::string& topic) override;
  void unsubscribe(const std::string& topic) override;
  // connecting before start(), connected from start() until stop(), disconnected after.
  State state() const override;

  // Events queued and not yet taken by the dispatcher (the "bus queue depth" metric).
  std::size_t queue_depth() const;
  std::int64_t backlog() const override { return static_cast<std::int64_t>(queue_depth()); }

 private:
  void run();
  bool subscribed(const std::string& topic) const;

  mutable std::mutex mu_;  // guards queue_, stopping_, started_
  std::condition_variable cv_;
  std::vector<EventPtr> queue_;
  bool started_ = false;
  bool stopping_ = false;

  // A mutex of its own, so that publishers are not held up while the dispatcher filters.
  mutable std::mutex topics_mu_;
  std::unordered_set<std::string> topics_;

  Handler on_events_;
  ResyncHandler on_resync_;
  std::atomic<State> state_{State::connecting};
  std::thread thread_;
};

}  // namespace parley::bus
