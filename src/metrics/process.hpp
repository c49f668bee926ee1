#pragma once
// Process figures read from /proc on each scrape, named as every Prometheus client library names
// them (process_cpu_seconds_total, process_resident_memory_bytes, ...), so stock dashboards and
// alerts work unchanged.

#include <cstdint>
#include <optional>
#include <string_view>

#include "metrics/metrics.hpp"

namespace parley::metrics {

// Adds callback series for CPU seconds, resident and virtual memory, open and maximum file
// descriptors, and the start time. A figure that cannot be read (no /proc) is reported as NaN
// rather than failing the scrape.
void register_process_metrics(Registry& registry);

// This process's CPU seconds (user + system) and resident memory in bytes, read from /proc now
// (NaN when unreadable); for callers that need one figure without rendering the registry.
double process_cpu_seconds();
double process_resident_bytes();

// The fields of /proc/<pid>/stat that the process metrics use, in clock ticks.
struct ProcStat {
  std::uint64_t utime_ticks = 0;
  std::uint64_t stime_ticks = 0;
  std::uint64_t starttime_ticks = 0;  // since boot
};
// Parses the text of /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'. nullopt when the text is malformed.
std::optional<ProcStat> parse_proc_stat(std::string_view text);

}  // namespace parley::metrics
