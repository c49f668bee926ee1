// The in-process bus. One queue and one dispatcher thread give the ordering the port promises
// (per publisher and topic) for free: the queue keeps the global publish order.

#include "bus/inproc/inproc_bus.hpp"

#include <utility>

namespace parley::bus {

InprocBus::~InprocBus() {
  stop();
}

void InprocBus::start(Handler on_events, ResyncHandler on_resync) {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  on_events_ = std::move(on_events);
  on_resync_ = std::move(on_resync);
  state_.store(State::connected, std::memory_order_release);
  thread_ = std::thread([this] { run(); });
}

void InprocBus::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // A handler that stops the bus must not join its own thread; the owner's later stop() or the
  // destructor joins it.
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  state_.store(State::disconnected, std::memory_order_release);
}

void InprocBus::publish(EventPtr event) {
  if (!event) return;
  {
    std::lock_guard lock(mu_);
    // After stop() nothing will deliver the event; delivery is at most once, so it is dropped.
    if (stopping_) return;
    queue_.push_back(std::move(event));
  }
  cv_.notify_one();
}

void InprocBus::subscribe(const std::string& topic) {
  std::lock_guard lock(topics_mu_);
  topics_.insert(topic);
}

void InprocBus::unsubscribe(const std::string& topic) {
  std::lock_guard lock(topics_mu_);
  topics_.erase(topic);
}

State InprocBus::state() const {
  return state_.load(std::memory_order_acquire);
}

std::size_t InprocBus::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool InprocBus::subscribed(const std::string& topic) const {
  return topics_.find(topic) != topics_.end();
}

// The dispatcher: wait for events, take all of them at once, keep the subscribed ones and hand
// them over as one batch. Taking the whole queue per turn is what makes batches grow under
// load, so the handler's per-call cost is paid once per burst rather than once per event.
void InprocBus::run() {
  std::vector<EventPtr> taken;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      // stop() drains: the loop ends only once the queue is empty.
      if (queue_.empty()) return;
      taken.swap(queue_);
    }
    std::vector<EventPtr> batch;
    batch.reserve(taken.size());
    {
      std::lock_guard lock(topics_mu_);
      for (auto& e : taken) {
        if (subscribed(e->topic)) batch.push_back(std::move(e));
      }
    }
    taken.clear();
    if (!batch.empty() && on_events_) on_events_(std::move(batch));
  }
}

}  // namespace parley::bus
