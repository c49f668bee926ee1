// Process figures from /proc, read on scrape. Every reader returns NaN when /proc cannot be
// read, so that a scrape on an unusual system still succeeds and shows the gap plainly.

#include "metrics/process.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace parley::metrics {

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

std::optional<std::string> read_file(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return ss.str();
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  if (res.ec != std::errc{} || res.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\n' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

double clock_ticks_per_second() {
  const long t = ::sysconf(_SC_CLK_TCK);
  return t > 0 ? static_cast<double>(t) : nan_value;
}

double page_size_bytes() {
  const long p = ::sysconf(_SC_PAGESIZE);
  return p > 0 ? static_cast<double>(p) : nan_value;
}

std::optional<ProcStat> read_self_stat() {
  const auto text = read_file("/proc/self/stat");
  if (!text) return std::nullopt;
  return parse_proc_stat(*text);
}

double cpu_seconds() {
  const auto st = read_self_stat();
  if (!st) return nan_value;
  return static_cast<double>(st->utime_ticks + st->stime_ticks) / clock_ticks_per_second();
}

// Field `index` of /proc/self/statm (0: total program size, 1: resident set), in bytes.
double statm_bytes(std::size_t index) {
  const auto text = read_file("/proc/self/statm");
  if (!text) return nan_value;
  const auto fields = split_spaces(*text);
  if (fields.size() <= index) return nan_value;
  const auto pages = parse_u64(fields[index]);
  if (!pages) return nan_value;
  return static_cast<double>(*pages) * page_size_bytes();
}

double open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return nan_value;
  // The directory stream holds a descriptor of its own while we count; it is not one of the
  // process's, so it is left out.
  const int own_fd = ::dirfd(dir);
  std::uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    const auto fd = parse_u64(name);
    if (fd && static_cast<long long>(*fd) == own_fd) continue;
    ++n;
  }
  ::closedir(dir);
  return static_cast<double>(n);
}

double max_fds() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return nan_value;
  if (rl.rlim_cur == RLIM_INFINITY) return std::numeric_limits<double>::infinity();
  return static_cast<double>(rl.rlim_cur);
}

// The start time in unix seconds: boot time (btime in /proc/stat) plus the process's start
// offset since boot. It cannot change, so it is computed once at registration.
double start_time_seconds() {
  const auto st = read_self_stat();
  const auto proc_stat = read_file("/proc/stat");
  if (!st || !proc_stat) return nan_value;
  std::istringstream lines(*proc_stat);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("btime ", 0) != 0) continue;
    const auto btime = parse_u64(std::string_view(line).substr(6));
    if (!btime) return nan_value;
    return static_cast<double>(*btime) +
           static_cast<double>(st->starttime_ticks) / clock_ticks_per_second();
  }
  return nan_value;
}

}  // namespace

double process_cpu_seconds() {
  return cpu_seconds();
}
double process_resident_bytes() {
  return statm_bytes(1);
}

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  // After the command name come fields 3 (state) onwards: utime is field 14, stime 15 and
  // starttime 22, so their indexes here are 11, 12 and 19.
  const auto fields = split_spaces(text.substr(close + 1));
  if (fields.size() < 20) return std::nullopt;
  const auto utime = parse_u64(fields[11]);
  const auto stime = parse_u64(fields[12]);
  const auto start = parse_u64(fields[19]);
  if (!utime || !stime || !start) return std::nullopt;
  return ProcStat{*utime, *stime, *start};
}

void register_process_metrics(Registry& registry) {
  registry.callback_counter("process_cpu_seconds_total",
                            "Total user and system CPU time spent in seconds.", cpu_seconds);
  registry.callback_gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                          [] { return statm_bytes(1); });
  registry.callback_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          [] { return statm_bytes(0); });
  registry.callback_gauge("process_open_fds", "Number of open file descriptors.", open_fds);
  registry.callback_gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds);
  const double start = start_time_seconds();
  registry.callback_gauge("process_start_time_seconds",
                          "Start time of the process since unix epoch in seconds.",
                          [start] { return start; });
}

}  // namespace parley::metrics
