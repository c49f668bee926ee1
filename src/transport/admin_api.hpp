#pragma once
// The admin API: GET /api/v1/admin/nodes, the figures the dashboard (web/dashboard.html) draws.
// Each node reads its own figures from its metrics registry and carries them in its heartbeat
// (see Node::publish_node_event), so that any node can answer for the whole cluster.

#include <string>

#include "transport/api.hpp"

namespace parley::transport {

// This node's figures as a JSON object:
// {"node","ts","connections","sessions","messages_received","messages_delivered",
//  "send_to_ack":{"count","p50","p99","bounds":[..],"cumulative":[..]},
//  "bus_queue_depth","store_append_p99","cpu_seconds","rss_bytes"}
// Latencies are in seconds (null when nothing was observed yet); ts is unix ms.
std::string collect_node_stats(Node& node);

// Runs `fn` when the request's bearer token belongs to an admin; otherwise answers 401 (no valid
// token), 403 (not an admin) or 503 (store unavailable). The token is looked up in the store, not
// the token cache, so that a grant or revoke takes effect at once.
void with_admin(Node& node, const ApiRequest& req, Respond done, std::function<void()> fn);

// GET /api/v1/admin/nodes: 401 without a valid bearer token, 403 for a non-admin, else 200
// {"nodes":[<this node's stats>, <each live peer's latest heartbeat stats>...]}.
void handle_admin_nodes(Node& node, const ApiRequest& req, Respond done);

}  // namespace parley::transport
