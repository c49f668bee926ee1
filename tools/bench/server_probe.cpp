#include "bench/server_probe.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace parley::bench {

ServerProbe::ServerProbe(std::vector<client::Endpoint> metrics, std::vector<pid_t> pids)
    : metrics_(std::move(metrics)), pids_(std::move(pids)) {}

bool prometheus_value(const std::string& text, const std::string& name, double& out) {
  bool found = false;
  double sum = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line.size() <= name.size() || line.compare(0, name.size(), name) != 0) continue;
    char next = line[name.size()];
    if (next != ' ' && next != '{') continue;
    std::size_t sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    std::string v(line.substr(sp + 1));
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (end == v.c_str()) continue;
    sum += d;
    found = true;
  }
  if (found) out = sum;
  return found;
}

namespace {

bool read_proc(pid_t pid, double& cpu_s, double& rss_bytes, std::string& err) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    err = "cannot read /proc/" + std::to_string(pid) + "/stat";
    return false;
  }
  // Fields after the command name (which may hold spaces) start after the last ')'.
  auto rp = line.rfind(')');
  std::istringstream in(line.substr(rp + 2));
  std::string f;
  std::vector<std::string> fields;
  while (in >> f) fields.push_back(f);
  // fields[0] is field 3 (state); utime is field 14, stime field 15, rss (pages) field 24.
  if (fields.size() < 22) {
    err = "short /proc stat";
    return false;
  }
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / tick;
  rss_bytes = std::stod(fields[21]) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  return true;
}

// Sums run and run-queue wait nanoseconds over the process's threads.
bool read_schedstat(pid_t pid, double& run_s, double& wait_s) {
  std::error_code ec;
  bool any = false;
  for (const auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(t.path() / "schedstat");
    double run = 0, wait = 0;
    if (in >> run >> wait) {
      run_s += run / 1e9;
      wait_s += wait / 1e9;
      any = true;
    }
  }
  return any;
}

}  // namespace

ServerSnapshot ServerProbe::take() const {
  ServerSnapshot s;
  s.ok = true;
  for (const auto& ep : metrics_) {
    try {
      client::HttpClient http(ep, std::chrono::seconds(10));
      auto res = http.get("/metrics");
      if (res.status != 200) {
        s.ok = false;
        s.error = "GET /metrics answered " + std::to_string(res.status);
        continue;
      }
      double v = 0;
      if (prometheus_value(res.body, "process_cpu_seconds_total", v)) s.cpu_s += v;
      if (prometheus_value(res.body, "process_resident_memory_bytes", v)) s.rss_bytes += v;
      if (prometheus_value(res.body, "parley_messages_delivered_total", v)) {
        s.delivered += v;
        s.has_counters = true;
      }
      if (prometheus_value(res.body, "parley_messages_received_total", v)) s.received += v;
      if (prometheus_value(res.body, "parley_sessions_authenticated", v)) s.sessions += v;
      if (prometheus_value(res.body, "parley_slow_consumer_closes_total", v)) s.slow_closes += v;
      if (res.body.find("reason=\"rate_limited\"") != std::string::npos) {
        std::size_t p = res.body.find("parley_requests_rejected_total{reason=\"rate_limited\"}");
        if (p != std::string::npos) {
          std::size_t sp = res.body.find(' ', p);
          if (sp != std::string::npos)
            s.rate_limited += std::strtod(res.body.c_str() + sp + 1, nullptr);
        }
      }
    } catch (const std::exception& e) {
      s.ok = false;
      s.error = std::string("GET /metrics: ") + e.what();
    }
  }
  if (!pids_.empty()) {
    // /proc is authoritative for CPU and memory when given.
    double cpu = 0, rss = 0;
    for (pid_t p : pids_) {
      double c = 0, r = 0;
      if (!read_proc(p, c, r, s.error)) {
        s.ok = false;
        continue;
      }
      cpu += c;
      rss += r;
      if (read_schedstat(p, s.sched_run_s, s.sched_wait_s)) s.has_sched = true;
    }
    s.cpu_s = cpu;
    s.rss_bytes = rss;
  }
  return s;
}

std::string ServerProbe::describe() const {
  std::string out;
  for (const auto& ep : metrics_) {
    if (!out.empty()) out += ", ";
    out += "http://" + ep.host + ":" + std::to_string(ep.port) + "/metrics";
  }
  for (pid_t p : pids_) {
    if (!out.empty()) out += ", ";
    out += "/proc/" + std::to_string(p);
  }
  return out.empty() ? "none" : out;
}

}  // namespace parley::bench
