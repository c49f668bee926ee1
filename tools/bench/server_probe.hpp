#pragma once
// What the server spent during a measurement window: CPU seconds, resident memory and its own
// delivery counters, read from each node's GET /metrics (process_cpu_seconds_total,
// process_resident_memory_bytes, parley_messages_delivered_total, ...) or, with --server-pid,
// from /proc/<pid>/stat and /proc/<pid>/status. Several sources are summed (a cluster's nodes).

#include <sys/types.h>
#include <cstdint>
#include <string>
#include <vector>

#include "client/http_client.hpp"

namespace parley::bench {

struct ServerSnapshot {
  bool ok = false;         // every source answered
  double cpu_s = 0;        // process CPU seconds (user + system)
  double rss_bytes = 0;    // resident set size
  double delivered = 0;    // parley_messages_delivered_total (metrics sources only)
  double received = 0;     // parley_messages_received_total
  double sessions = 0;     // parley_sessions_authenticated
  double slow_closes = 0;  // parley_slow_consumer_closes_total
  double rate_limited = 0;
  bool has_counters = false;  // delivered/received came from /metrics
  // With --server-pid: the server threads' time on a CPU and time runnable but waiting for
  // one (/proc/<pid>/task/*/schedstat). Waiting time is what a busy machine adds to latency.
  double sched_run_s = 0;
  double sched_wait_s = 0;
  bool has_sched = false;
  std::string error;
};

class ServerProbe {
 public:
  // `metrics` endpoints are scraped over HTTP; `pids` read from /proc (same machine only).
  ServerProbe(std::vector<client::Endpoint> metrics, std::vector<pid_t> pids);
  bool empty() const { return metrics_.empty() && pids_.empty(); }
  ServerSnapshot take() const;
  std::string describe() const;

 private:
  std::vector<client::Endpoint> metrics_;
  std::vector<pid_t> pids_;
};

// Parses the value of an unlabelled sample (or the sum over all label sets) `name` from a
// Prometheus text exposition. Returns false when absent.
bool prometheus_value(const std::string& text, const std::string& name, double& out);

}  // namespace parley::bench
