#pragma once
// The scenarios of parley-bench. Each prints a human table on stdout, then one JSON line (the
// last line of stdout), and returns the process exit code: 0 when it ran and counted (a --max
// search that finds no passing rate still exits 0; a set-up failure exits 1).

#include <sys/types.h>
#include <string>
#include <vector>

namespace parley::bench {

struct CommonOptions {
  std::string url = "http://127.0.0.1:8080";  // a node or HAProxy
  unsigned threads = 1;                       // generator event loops
  std::string user_prefix = "bench";
  std::string password = "bench-password";
  std::string token_file;
  unsigned register_concurrency = 8;
  std::vector<std::string> metrics_urls;  // default: url (every node of a cluster)
  std::vector<int> server_pids;           // read /proc/<pid> instead of /metrics
  bool no_metrics = false;
  unsigned source_ips = 0;  // 0: automatic (one 127.0.0.x per 10,000)
  double duration_s = 10;
  double warmup_s = 2;
  double drain_s = 3;
  unsigned open_concurrency = 256;
  bool quiet = false;
  std::string label;  // copied to the JSON line
};

struct TrafficOptions {
  unsigned connections = 1000;  // fanout: members of the room
  unsigned users = 0;           // 0: scenario default
  unsigned senders = 0;         // 0: scenario default
  double rate = 0;              // total messages/s; 0: scenario default
  unsigned body_bytes = 100;
  unsigned rooms = 0;      // rooms: number of rooms
  unsigned room_size = 0;  // rooms: connections per room
  double tick_us = 1000;
  bool max = false;       // search for the highest rate meeting the bound
  double max_p99_ms = 0;  // 0: scenario default (fanout 50, rooms 50, ingest 10)
  double min_ratio = 0.99;
  unsigned max_steps = 8;
  double max_factor = 2.0;
  bool cleanup = true;  // leave the rooms at the end
};

struct IdleOptions {
  unsigned connections = 1000;
  unsigned users = 0;
  double ping_interval_s = 30;
  double settle_s = 2;
};

struct ConnectOptions {
  unsigned concurrency = 64;
  unsigned users = 100;
};

int run_traffic(const std::string& scenario, const CommonOptions& c, TrafficOptions t);
int run_idle(const CommonOptions& c, IdleOptions o);
// The disk's durable-write latency, which bounds every acknowledgement (acks follow the store's
// commit): `writes` times a pwrite of `size` bytes followed by fdatasync, first appending to a
// new file (as a WAL that grows), then overwriting the same blocks (as a WAL started over).
struct DiskOptions {
  std::string dir = "/var/tmp";
  unsigned writes = 500;
  unsigned size = 8192;
  std::string label;
};

int run_connect(const CommonOptions& c, ConnectOptions o);
int run_disk(const DiskOptions& o);

}  // namespace parley::bench
