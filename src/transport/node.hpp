#pragma once
// The node: everything one parleyd process shares between its I/O threads. It owns the shards
// (one io_context and one thread each), the bus subscriptions, the token cache, presence and the
// rate limiter, and turns bus events into deliveries.
//
// Threading: each shard's state is touched only by its own thread, so fan-out takes no lock.
// Node-wide tables (subscription counts, token cache) sit behind short mutexes and are used
// on session open/close and on requests, never per delivery. Store and bus callbacks arrive on
// their own threads and hop to a shard with asio::post.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bus/bus.hpp"
#include "core/presence.hpp"
#include "core/rate_limiter.hpp"
#include "core/recent_cache.hpp"
#include "metrics/metrics.hpp"
#include "store/store.hpp"
#include "transport/options.hpp"

namespace parley::transport {

class WsSession;
class Shard;

// A per-user event, decoded once from the bus on the bus thread. Each kind has its wire name in
// kUserEventKinds (node.cpp).
struct UserEvent {
  enum class Kind { joined, left, read, logout, invitation, deleted } kind = Kind::joined;
  std::string user;
  std::string room;
  std::uint64_t seq = 0;       // joined: the room's last_seq; read: the marker
  std::string by;              // invitation: the inviter
  std::string token_hash;      // logout (deleted: every token of `user`)
  std::string origin_session;  // read: the session that moved the marker (skipped)
};

// What a shard receives for one bus event. `frame` is the complete WebSocket frame, built once
// per node and shared by every recipient's write queue.
struct Delivery {
  bus::EventPtr event;
  std::shared_ptr<const std::string> frame;
  std::shared_ptr<const UserEvent> user_event;
  std::string presence_user;  // presence events: whose status changed
  bool presence_online = false;
};

struct NodeMetrics {
  explicit NodeMetrics(metrics::Registry& r);
  metrics::Gauge& connections;
  metrics::Gauge& sessions;
  metrics::Counter& received;
  metrics::Counter& delivered;
  metrics::Counter& rejected_bad_request;
  metrics::Counter& rejected_forbidden;
  metrics::Counter& rejected_rate_limited;
  metrics::Counter& rejected_unavailable;
  metrics::Counter& rejected_other;
  metrics::Histogram& send_to_ack;
  metrics::Histogram& delivery_latency;
  metrics::Counter& gap_repairs;
  metrics::Counter& slow_consumer_closes;
  metrics::Counter& cache_hits;
  metrics::Counter& cache_misses;
  metrics::Counter& bus_published;
  metrics::Counter& bus_consumed;
  metrics::Counter& ws_closes_protocol;
  // The store adapter's append latency (the same series it registers), for the node's stats.
  metrics::Histogram& store_append;
};

class Node {
 public:
  Node(Options opts, store::Store& store, bus::Bus& bus, metrics::Registry& registry);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts the shard threads and the bus. Call once.
  void start();
  // Stops the threads after the I/O contexts run out of work or are stopped.
  void stop();
  void join();

  const Options& options() const { return opts_; }
  store::Store& store() { return store_; }
  bus::Bus& bus() { return bus_; }
  NodeMetrics& metrics() { return metrics_; }
  metrics::Registry& registry() { return registry_; }
  core::RateLimiter& rate_limiter() { return rate_limiter_; }
  core::RateLimiter& typing_limiter() { return typing_limiter_; }
  core::RecentCache& cache() { return cache_; }
  core::Presence& presence() { return presence_; }
  core::Throttle& throttle() { return throttle_; }
  boost::asio::thread_pool& hash_pool() { return hash_pool_; }
  std::size_t shard_count() const { return shards_.size(); }
  Shard& shard(std::size_t i) { return *shards_[i]; }
  Shard& next_shard();  // round-robin, for new connections

  // Draining: /readyz answers 503, new connections are refused.
  bool draining() const { return draining_.load(); }
  void set_draining() { draining_.store(true); }
  bool ready() const;
  std::string readiness_report() const;

  // Node-wide reference counts of bus subscriptions, called from shards: the bus binds a room
  // while any shard has local members of it and a user topic while any session of theirs is open.
  void retain_topic(const std::string& topic);
  void release_topic(const std::string& topic);

  // Token authentication with a cache in front of the store. The callback runs on a store
  // thread or inline (cache hit); callers post back to their own executor.
  void authenticate(const std::string& token, std::function<void(Result<store::TokenInfo>)> cb);
  void forget_token(const std::string& token_hash);
  // Drops every cached token of `user` (the account was deleted).
  void forget_user_tokens(const std::string& user);
  static std::string hash_token(std::string_view token);

  // The latest heartbeat figures of each live peer, as JSON objects (see admin_api.hpp).
  std::vector<std::string> peer_stats();

  // Publishing helpers (any thread).
  void publish_message(const store::StoredMessage& m);
  void publish_typing(const std::string& room, const std::string& user);
  void publish_user_event(const UserEvent& ev);
  // A session of `user` opened or closed on this node; publishes presence changes.
  void session_opened(const std::string& user);
  void session_closed(const std::string& user);

 private:
  // Reads a token from the store and caches it unless a revocation (generation) overtook the
  // read; then it reads once more when `retry` is set (see authenticate).
  void look_up_token(const std::string& h, std::uint64_t generation, bool retry,
                     std::function<void(Result<store::TokenInfo>)> cb);
  void on_bus_events(std::vector<bus::EventPtr> batch);
  void on_bus_resync();
  void observe_delivery_latency(const std::string& payload);
  // Node heartbeats and presence snapshots (see node.cpp). Runs on shard 0's thread.
  void heartbeat_tick();
  void publish_node_event(bool snapshot);
  // Applies a node event on the bus thread; returns the users whose status changed.
  std::vector<std::string> on_node_event(const bus::Event& ev);
  void deliver_presence_changes(const std::vector<std::string>& users);

  Options opts_;
  store::Store& store_;
  bus::Bus& bus_;
  metrics::Registry& registry_;
  NodeMetrics metrics_;
  core::RateLimiter rate_limiter_;
  core::RateLimiter typing_limiter_;
  core::RecentCache cache_;
  core::Presence presence_;
  core::Throttle throttle_{opts_.throttle};
  boost::asio::thread_pool hash_pool_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_shard_{0};
  std::atomic<bool> draining_{false};

  std::mutex topics_mu_;
  std::unordered_map<std::string, std::uint32_t> topic_refs_;

  // Other nodes as seen through their heartbeats.
  struct Peer {
    std::string incarnation;
    std::chrono::steady_clock::time_point last_seen;
    std::string stats;  // the "stats" object of its latest heartbeat, as JSON (admin API)
  };
  std::mutex peers_mu_;
  std::unordered_map<std::string, Peer> peers_;
  std::string incarnation_;  // random per process: a restarted node is a new incarnation
  std::unique_ptr<boost::asio::steady_timer> heartbeat_timer_;
  // The bus and store states the heartbeat last saw, so that it logs their transitions.
  std::optional<bus::State> logged_bus_state_;
  std::optional<bool> logged_store_ready_;
  void log_state_changes();

  std::mutex tokens_mu_;
  // A token hash's lookup, reused for Options::token_cache_ttl: revocations reach every node on
  // the bus at once, and the TTL bounds how long a node that missed one (its bus was down) trusts
  // a token.
  struct CachedToken {
    store::TokenInfo info;
    std::chrono::steady_clock::time_point cached_at;
  };
  std::unordered_map<std::string, CachedToken> token_cache_;  // token hash -> lookup
  // Counts revocations (forget_token, forget_user_tokens), so that a store read that one
  // overtook neither fills the cache nor stands unchecked (see look_up_token).
  std::uint64_t revocations_ = 0;
};

}  // namespace parley::transport
