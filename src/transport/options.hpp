#pragma once
// Every limit of the transport is a setting; the defaults are PROTOCOL.md's.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/rate_limiter.hpp"
#include "core/throttle.hpp"
#include "protocol/messages.hpp"

namespace parley::transport {

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  unsigned threads = 1;
  std::string node_id = "parley";
  std::string web_root;  // empty: no static files

  std::size_t max_frame_bytes = 64 * 1024;          // a WebSocket message over this: close 1009
  std::size_t max_http_body_bytes = 64 * 1024;      // a request body over this: 413
  std::size_t write_queue_bytes = 4 * 1024 * 1024;  // backlog past this: close 1008 slow consumer
  std::chrono::milliseconds auth_timeout{5000};     // no auth frame by then: close 1008
  std::chrono::milliseconds http_request_timeout{30000};  // idle keep-alive or trickled request
  std::chrono::milliseconds drain_window{2000};           // SIGTERM: 1001 closes spread over this
  std::int64_t token_ttl_s = 30LL * 24 * 3600;            // tokens live 30 days
  std::chrono::seconds token_cache_ttl{60};               // token lookups reused this long; 0: off
  core::RateLimit send_rate{20, 40};                      // per user per node
  core::RateLimit typing_rate{2, 10};                     // typing events per user per node
  std::size_t max_watched_users = 10000;                  // distinct users one socket may watch
  std::size_t replay_page = 500;                          // messages fetched per resume round trip
  std::size_t cache_per_room = 256;                       // recent-message cache
  std::size_t cache_rooms = 4096;
  std::uint64_t argon2_opslimit = 2;  // OWASP: t=2, m=19 MiB
  std::size_t argon2_memlimit = 19 * 1024 * 1024;
  unsigned hash_threads = 2;
  std::size_t max_pipelined = 64;  // requests queued behind a pending auth
  // Presence across nodes: each node heartbeats on the bus; a node silent for node_timeout is
  // taken for dead and its users go offline everywhere.
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds node_timeout{5000};
  protocol::Limits protocol;
  // Abuse limits: login throttling, connection caps, the Origin allow-list (docs/security.md).
  core::ThrottleSettings throttle;
};

}  // namespace parley::transport
