#include "transport/admin_api.hpp"

#include <spdlog/spdlog.h>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "metrics/metrics.hpp"
#include "metrics/process.hpp"
#include "protocol/messages.hpp"

namespace parley::transport {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  return metrics::format_value(v);
}

// histogram_quantile as Prometheus computes it: linear interpolation inside the bucket that
// holds the rank; NaN without observations.
double quantile(double q, const std::vector<double>& bounds,
                const std::vector<double>& cumulative) {
  if (cumulative.empty() || cumulative.back() <= 0) return NAN;
  const double total = cumulative.back();
  const double rank = q * total;
  for (std::size_t i = 0; i < cumulative.size(); ++i) {
    if (cumulative[i] >= rank) {
      if (!std::isfinite(bounds[i])) return i > 0 ? bounds[i - 1] : NAN;
      const double lo = i > 0 ? bounds[i - 1] : 0;
      const double below = i > 0 ? cumulative[i - 1] : 0;
      const double in = cumulative[i] - below;
      return in <= 0 ? bounds[i] : lo + (bounds[i] - lo) * (rank - below) / in;
    }
  }
  return NAN;
}

// A histogram's bounds (with +Inf) and cumulative counts, as quantile() takes them.
struct Buckets {
  std::vector<double> bounds;
  std::vector<double> cumulative;
  metrics::Histogram::Snapshot snap;
};
Buckets buckets_of(const metrics::Histogram& h) {
  Buckets b;
  b.snap = h.snapshot();
  b.bounds = h.bounds();
  b.bounds.push_back(INFINITY);
  b.cumulative.assign(b.snap.cumulative.begin(), b.snap.cumulative.end());
  return b;
}

}  // namespace

std::string collect_node_stats(Node& node) {
  // Read the figures themselves: this runs on every heartbeat, so it must not render the
  // registry (which also walks /proc/self/fd).
  auto& m = node.metrics();
  const Buckets ack = buckets_of(m.send_to_ack);
  const Buckets append = buckets_of(m.store_append);
  const auto& bounds = ack.bounds;
  const auto& cumulative = ack.cumulative;
  const auto& snap = ack.snap;

  std::string o = "{\"node\":";
  protocol::append_json_string(o, node.options().node_id);
  o += ",\"ts\":" + std::to_string(now_ms());
  o += ",\"connections\":" + num(m.connections.value());
  o += ",\"sessions\":" + num(m.sessions.value());
  o += ",\"messages_received\":" + std::to_string(m.received.value());
  o += ",\"messages_delivered\":" + std::to_string(m.delivered.value());
  o += ",\"send_to_ack\":{\"count\":" + std::to_string(snap.count);
  o += ",\"p50\":" + num(quantile(0.5, bounds, cumulative));
  o += ",\"p99\":" + num(quantile(0.99, bounds, cumulative));
  o += ",\"bounds\":[";
  for (std::size_t i = 0; i + 1 < bounds.size(); ++i) {
    if (i > 0) o += ',';
    o += num(bounds[i]);
  }
  o += "],\"cumulative\":[";
  for (std::size_t i = 0; i < snap.cumulative.size(); ++i) {
    if (i > 0) o += ',';
    o += std::to_string(snap.cumulative[i]);
  }
  o += "]}";
  o += ",\"bus_queue_depth\":" + num(static_cast<double>(node.bus().backlog()));
  o += ",\"store_append_p99\":" + num(quantile(0.99, append.bounds, append.cumulative));
  o += ",\"cpu_seconds\":" + num(metrics::process_cpu_seconds());
  o += ",\"rss_bytes\":" + num(metrics::process_resident_bytes());
  o += '}';
  return o;
}

void with_admin(Node& node, const ApiRequest& req, Respond done, std::function<void()> fn) {
  if (req.bearer.empty()) {
    return done(error_response(401, "unauthorized", "missing Authorization: Bearer <token>"));
  }
  node.store().lookup_token(
      Node::hash_token(req.bearer), [done, fn = std::move(fn)](Result<store::TokenInfo> r) {
        const auto now_s = now_ms() / 1000;
        if (!r || r->expires_at <= now_s) {
          if (!r && r.error() == store::StoreErrc::unavailable) {
            return done(error_response(503, "unavailable", "the store is unavailable; retry"));
          }
          return done(error_response(401, "unauthorized", "invalid or expired token"));
        }
        if (!r->is_admin) return done(error_response(403, "forbidden", "for admins only"));
        fn();
      });
}

void handle_admin_nodes(Node& node, const ApiRequest& req, Respond done) {
  if (req.method != "GET") return done(error_response(405, "bad_request", "use GET"));
  with_admin(node, req, done, [&node, done] {
    std::string body = "{\"nodes\":[" + collect_node_stats(node);
    for (const auto& stats : node.peer_stats()) {
      body += ',';
      body += stats;
    }
    body += "]}";
    HttpResponse res;
    res.status = 200;
    res.body = std::move(body);
    res.extra_headers = "Cache-Control: no-store\r\n";
    done(std::move(res));
  });
}

}  // namespace parley::transport
