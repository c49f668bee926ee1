#pragma once
// The load generator's engine: a few threads, each with its own epoll loop and its own slice of
// the connections, speaking RFC 6455 by hand (masked client frames from
// protocol::ws::make_client_frame, a small reader for the server's unmasked frames) so that
// the generator spends little CPU per delivery and never becomes the bottleneck.
//
// Work happens in phases that the controller (the calling thread) starts and that end by
// themselves: open connections (TCP, upgrade, auth, then create or join a room), send traffic
// at a fixed rate (open loop: a timer decides when each message is due, replies are never
// awaited), hold idle connections with pings, churn connections (handshake + auth per
// second), leave rooms. Connections outlive phases; between phases nobody reads, and the
// kernel's buffers keep what arrives.
//
// Latency: each message carries its intended send time (not the time it was written, so that
// a stalled generator or server cannot hide the wait: no coordinated omission) in its body and
// its client_msg_id. End-to-end latency = receive time - intended send time on the same
// monotonic clock (the generator is one process); ack latency likewise.

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/histogram.hpp"

namespace parley::bench {

// CLOCK_MONOTONIC in nanoseconds.
std::int64_t now_ns();

struct Target {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
};

enum class Action : std::uint8_t { none, create, join };

struct ConnSpec {
  std::uint32_t user = 0;  // index into the tokens
  std::int32_t room = -1;  // index into the room names; -1: none
  Action action = Action::none;
  bool sender = false;
};

// What a phase counted, summed over the workers.
struct PhaseStats {
  std::uint64_t opened = 0, failed = 0;       // open: connections made live / failed
  std::uint64_t sent = 0, sent_measured = 0;  // traffic: send frames written
  std::uint64_t expected_measured = 0;        // deliveries due for the measured sends
  std::uint64_t delivered = 0;                // message frames of this trial received
  std::uint64_t delivered_measured = 0;       // ... of measured sends
  std::uint64_t delivered_in_window = 0;      // ... received inside the window
  std::uint64_t acks = 0, acks_measured = 0;
  std::uint64_t stale = 0;  // message frames of earlier trials or runs
  std::uint64_t errors = 0, rate_limited = 0;
  std::uint64_t gaps = 0;    // a room's seq not last + 1
  std::uint64_t closes = 0;  // the server closed a connection
  std::uint64_t pings = 0, pongs = 0;
  std::uint64_t handshakes = 0, handshakes_in_window = 0;
  std::uint64_t left = 0;
  std::map<std::string, std::uint64_t> error_codes;
  std::map<int, std::uint64_t> close_codes;
  std::string first_error;
  Histogram e2e, ack, connect;

  void merge(const PhaseStats& o);
};

struct EngineOptions {
  Target target;
  unsigned threads = 1;
  unsigned source_ips = 1;  // >1: bind connection i to 127.0.0.(1 + i % source_ips)
  std::vector<std::string> tokens;
  std::vector<std::string> rooms;
  unsigned open_concurrency = 256;  // handshakes in flight while opening
  std::int64_t open_timeout_ns = 120'000'000'000;
};

struct TrafficPlan {
  double rate = 1000;  // messages per second over all senders
  std::size_t body_bytes = 100;
  std::int64_t t0 = 0;           // first send is due at t0 (monotonic ns)
  std::int64_t warmup_ns = 0;    // sends due before t0 + warmup are not measured
  std::int64_t duration_ns = 0;  // sends due in [t0 + warmup, t0 + warmup + duration) are
  std::int64_t drain_ns = 0;     // after the last send, wait this long at most for stragglers
  std::int64_t tick_ns = 1'000'000;
  std::string run_id;  // with `trial`, marks this trial's frames
  std::uint32_t trial = 0;
  std::vector<std::uint32_t> members;  // per room: live connections (deliveries per message)
};

struct IdlePlan {
  std::int64_t duration_ns = 0;
  std::int64_t ping_interval_ns = 30'000'000'000;
};

struct ChurnPlan {
  unsigned concurrency = 64;
  std::int64_t t0 = 0, warmup_ns = 0, duration_ns = 0;
  std::uint32_t users = 1;  // cycles through tokens [0, users)
};

class Worker;

class Engine {
 public:
  explicit Engine(EngineOptions o);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a connection; open() makes every queued one live.
  void add(const ConnSpec& spec);
  // Opens the queued connections (and reopens any the server closed, without their action):
  // TCP, upgrade, auth (up to `synced`), then the action (create or join the spec's room).
  PhaseStats open();
  // Runs traffic; `controller` runs on the calling thread meanwhile (it takes the server
  // snapshots at the window's edges).
  PhaseStats traffic(const TrafficPlan& plan, const std::function<void()>& controller);
  PhaseStats idle(const IdlePlan& plan, const std::function<void()>& controller);
  PhaseStats churn(const ChurnPlan& plan, const std::function<void()>& controller);
  // Every live connection that created or joined its room leaves it (cleanup).
  PhaseStats leave_rooms();
  void close_all();

  std::size_t live() const;
  std::size_t closed() const;
  // Live connections per room.
  std::vector<std::uint32_t> members() const;

  const EngineOptions& options() const { return o_; }
  const std::string& upgrade_request() const { return upgrade_; }
  const std::string& expected_accept() const { return accept_; }
  sockaddr_in address() const { return addr_; }

 private:
  PhaseStats run(const std::function<void(Worker&, PhaseStats&)>& fn,
                 const std::function<void()>& controller);

  EngineOptions o_;
  sockaddr_in addr_{};
  std::string upgrade_;
  std::string accept_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::size_t added_ = 0;
};

}  // namespace parley::bench
