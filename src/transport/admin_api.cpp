#include "transport/admin_api.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <spdlog/spdlog.h>
#include <string_view>
#include <vector>

#include "metrics/metrics.hpp"
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

// The value of a label in a sample's label set `{a="x",b="y"}` (no escapes in the ones we read).
std::string_view label(std::string_view labels, std::string_view name) {
  std::string key = std::string(name) + "=\"";
  auto p = labels.find(key);
  if (p == std::string_view::npos) return {};
  p += key.size();
  auto e = labels.find('"', p);
  return e == std::string_view::npos ? std::string_view() : labels.substr(p, e - p);
}

// The figures read from the rendered exposition: sums over each family's series.
struct Scraped {
  double bus_queue_depth = 0;
  double cpu_seconds = 0;
  double rss_bytes = 0;
  std::vector<double> append_bounds;      // le of parley_store_query_seconds{op="append"}
  std::vector<double> append_cumulative;  // its cumulative counts
};

Scraped scrape(const metrics::Registry& registry) {
  Scraped s;
  const std::string text = registry.render();
  std::string_view rest(text);
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view series = line.substr(0, sp);
    const double value = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
    auto brace = series.find('{');
    std::string_view name = series.substr(0, brace);
    std::string_view labels = brace == std::string_view::npos ? std::string_view() : series.substr(brace);
    if (name == "parley_bus_queue_depth") {
      s.bus_queue_depth += value;
    } else if (name == "process_cpu_seconds_total") {
      s.cpu_seconds = value;
    } else if (name == "process_resident_memory_bytes") {
      s.rss_bytes = value;
    } else if (name == "parley_store_query_seconds_bucket" && label(labels, "op") == "append") {
      std::string le(label(labels, "le"));
      s.append_bounds.push_back(le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr));
      s.append_cumulative.push_back(value);
    }
  }
  return s;
}

// histogram_quantile as Prometheus computes it: linear interpolation inside the bucket that
// holds the rank; NaN without observations.
double quantile(double q, const std::vector<double>& bounds, const std::vector<double>& cumulative) {
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

}  // namespace

std::string collect_node_stats(Node& node) {
  auto& m = node.metrics();
  const Scraped s = scrape(node.registry());
  auto snap = m.send_to_ack.snapshot();
  std::vector<double> bounds = m.send_to_ack.bounds();
  bounds.push_back(INFINITY);
  std::vector<double> cumulative(snap.cumulative.begin(), snap.cumulative.end());

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
  o += ",\"bus_queue_depth\":" + num(s.bus_queue_depth);
  o += ",\"store_append_p99\":" + num(quantile(0.99, s.append_bounds, s.append_cumulative));
  o += ",\"cpu_seconds\":" + num(s.cpu_seconds);
  o += ",\"rss_bytes\":" + num(s.rss_bytes);
  o += '}';
  return o;
}

void handle_admin_nodes(Node& node, const ApiRequest& req, Respond done) {
  if (req.method != "GET") return done(error_response(405, "bad_request", "use GET"));
  if (req.bearer.empty()) {
    return done(error_response(401, "unauthorized", "missing Authorization: Bearer <token>"));
  }
  // Straight to the store, not through the token cache: a grant or revoke takes effect at once.
  node.store().lookup_token(
      Node::hash_token(req.bearer), [&node, done](Result<store::TokenInfo> r) {
        const auto now_s = now_ms() / 1000;
        if (!r || r->expires_at <= now_s) {
          if (!r && r.error() == store::StoreErrc::unavailable) {
            return done(error_response(503, "unavailable", "the store is unavailable; retry"));
          }
          return done(error_response(401, "unauthorized", "invalid or expired token"));
        }
        if (!r->is_admin) {
          return done(error_response(403, "forbidden", "the dashboard is for admins only"));
        }
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
