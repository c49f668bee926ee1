#include "bench/scenarios.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <thread>

#include "bench/engine.hpp"
#include "bench/server_probe.hpp"
#include "bench/users.hpp"

namespace parley::bench {

namespace {

using json = nlohmann::json;

constexpr const char* kRateLimitNote =
    "the server's per-user send limit (default 20/s, burst 40) and per-address registration "
    "limit (default burst 100) must be raised for benchmarks: "
    "parleyd --send-rate 1000000 --send-burst 1000000 --register-burst-per-ip 0";

struct Env {
  client::Endpoint http;
  ServerProbe probe;
  UserOptions users;
};

Env make_env(const CommonOptions& c) {
  auto ep = client::parse_server_url(c.url);
  if (!ep) throw std::runtime_error("bad --url " + c.url + " (expected http://host:port)");
  std::vector<client::Endpoint> metrics;
  if (!c.no_metrics) {
    if (c.metrics_urls.empty()) {
      metrics.push_back(*ep);
    } else {
      for (const auto& u : c.metrics_urls) {
        auto m = client::parse_server_url(u);
        if (!m) throw std::runtime_error("bad --metrics-url " + u);
        metrics.push_back(*m);
      }
    }
  }
  std::vector<pid_t> pids(c.server_pids.begin(), c.server_pids.end());
  Env env{*ep, ServerProbe(std::move(metrics), std::move(pids)), {}};
  env.users.http = *ep;
  env.users.prefix = c.user_prefix;
  env.users.password = c.password;
  env.users.token_file = c.token_file;
  env.users.concurrency = c.register_concurrency;
  env.users.quiet = c.quiet;
  return env;
}

std::string nonce() {
  static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(std::random_device{}() ^ static_cast<std::uint64_t>(now_ns()));
  std::string s;
  for (int i = 0; i < 6; ++i) s.push_back(chars[rng() % 36]);
  return s;
}

double cpu_self_s() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void sleep_until_ns(std::int64_t t) {
  for (;;) {
    std::int64_t d = t - now_ns();
    if (d <= 0) return;
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::int64_t>(d, 100'000'000)));
  }
}

// The machine's load when the run started (the box is shared: say how quiet it was).
std::string loadavg() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return {};
  char buf[128] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string s(buf, n);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

json machine_json(const std::string& load_at_start) {
  return json{{"nproc", std::thread::hardware_concurrency()},
              {"loadavg_at_start", load_at_start},
              {"loadavg_at_end", loadavg()}};
}

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

json latency_json(const Histogram& h) {
  return json{{"count", h.count()},
              {"p50_ms", round3(ms(h.percentile(50)))},
              {"p90_ms", round3(ms(h.percentile(90)))},
              {"p99_ms", round3(ms(h.percentile(99)))},
              {"p999_ms", round3(ms(h.percentile(99.9)))},
              {"max_ms", round3(ms(h.max()))},
              {"mean_ms", round3(h.mean() / 1e6)}};
}

std::string lat_line(const char* name, const Histogram& h) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "  %-22s p50 %8.3f  p90 %8.3f  p99 %8.3f  p99.9 %8.3f  max %8.3f ms  (n=%llu)\n",
                name, ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)),
                ms(h.percentile(99.9)), ms(h.max()), static_cast<unsigned long long>(h.count()));
  return buf;
}

json server_json(const ServerSnapshot& a, const ServerSnapshot& b, double window_s) {
  json j;
  j["ok"] = a.ok && b.ok;
  if (!a.ok || !b.ok) j["error"] = !a.error.empty() ? a.error : b.error;
  j["cpu_s"] = round3(b.cpu_s - a.cpu_s);
  j["cpu_pct"] = round3((b.cpu_s - a.cpu_s) / window_s * 100.0);
  j["rss_bytes"] = b.rss_bytes;
  if (b.has_counters) {
    j["delivered"] = b.delivered - a.delivered;
    j["received"] = b.received - a.received;
  }
  if (a.has_sched && b.has_sched) {
    j["sched_run_s"] = round3(b.sched_run_s - a.sched_run_s);
    j["sched_wait_s"] = round3(b.sched_wait_s - a.sched_wait_s);
  }
  return j;
}

std::string describe_errors(const PhaseStats& st) {
  std::string out;
  for (const auto& [k, v] : st.error_codes) out += " " + k + "=" + std::to_string(v);
  for (const auto& [k, v] : st.close_codes)
    out += " close" + std::to_string(k) + "=" + std::to_string(v);
  return out;
}

unsigned auto_source_ips(unsigned requested, std::size_t connections) {
  if (requested > 0) return requested;
  // Linux's connect() searches the ephemeral range (28k ports here) for a free port, even
  // ports first: past ~10k connections from one address the search gets slow. One 127.0.0.x
  // address per 10,000 connections keeps it fast.
  return static_cast<unsigned>(std::max<std::size_t>(1, (connections + 9999) / 10000));
}

// Opens the engine's queued connections and fails loudly when any did not make it.
bool open_all(Engine& e, const char* what, bool quiet, json* report = nullptr) {
  auto t = now_ns();
  PhaseStats st = e.open();
  double s = static_cast<double>(now_ns() - t) / 1e9;
  if (!quiet) {
    std::fprintf(stderr, "opened %llu %s connections in %.2f s%s\n",
                 static_cast<unsigned long long>(st.opened), what, s,
                 st.failed ? (" (" + std::to_string(st.failed) + " failed)").c_str() : "");
  }
  if (report) {  // summed over the opening phases
    (*report)["opened"] = report->value("opened", std::uint64_t{0}) + st.opened;
    (*report)["failed"] = report->value("failed", std::uint64_t{0}) + st.failed;
    (*report)["seconds"] = round3(report->value("seconds", 0.0) + s);
  }
  if (st.failed > 0) {
    std::fprintf(stderr, "parley-bench: %llu connections failed to open; first error: %s\n",
                 static_cast<unsigned long long>(st.failed), st.first_error.c_str());
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Traffic: fanout, rooms, ingest

struct Layout {
  unsigned rooms = 1, room_size = 1, users = 1, senders = 1;
};

struct Trial {
  double rate = 0;
  PhaseStats st;
  ServerSnapshot a, b;
  double gen_cpu_s = 0;
  double window_s = 0;
  double ratio = 0, ack_ratio = 0, deliveries_per_s = 0, sends_per_s = 0, acks_per_s = 0;
  double bound_p99_ms = 0;
  bool pass = false;
  std::string why;
};

json trial_json(const Trial& t, bool ingest) {
  json j;
  j["rate"] = t.rate;
  j["sent"] = t.st.sent_measured;
  j["acked"] = t.st.acks_measured;
  j["expected_deliveries"] = t.st.expected_measured;
  j["delivered"] = t.st.delivered_measured;
  j["delivery_ratio"] = std::round(t.ratio * 1e6) / 1e6;
  j["ack_ratio"] = std::round(t.ack_ratio * 1e6) / 1e6;
  j["deliveries_per_s"] = std::round(t.deliveries_per_s);
  j["sends_per_s"] = std::round(t.sends_per_s);
  j["acks_per_s"] = std::round(t.acks_per_s);
  j["e2e"] = latency_json(t.st.e2e);
  j["ack"] = latency_json(t.st.ack);
  j["errors"] = t.st.errors;
  j["error_codes"] = t.st.error_codes;
  j["rate_limited"] = t.st.rate_limited;
  j["closes"] = t.st.closes;
  j["gaps"] = t.st.gaps;
  j["stale_frames"] = t.st.stale;
  j["generator_cpu_s"] = round3(t.gen_cpu_s);
  j["server"] = server_json(t.a, t.b, t.window_s);
  double cpu = t.b.cpu_s - t.a.cpu_s;
  double deliveries = t.b.has_counters ? t.b.delivered - t.a.delivered
                                       : static_cast<double>(t.st.delivered_in_window);
  if (deliveries > 0 && t.a.ok && t.b.ok)
    j["server"]["cpu_s_per_million_deliveries"] = round3(cpu / (deliveries / 1e6));
  if (ingest && t.acks_per_s > 0 && t.a.ok && t.b.ok) {
    j["server"]["cpu_us_per_send"] = round3(cpu / (t.acks_per_s * t.window_s) * 1e6);
  }
  j["pass"] = t.pass;
  if (!t.why.empty()) j["why"] = t.why;
  return j;
}

}  // namespace

int run_traffic(const std::string& scenario, const CommonOptions& c, TrafficOptions t) {
  const std::string load0 = loadavg();
  const bool ingest = scenario == "ingest";
  Layout L;
  if (scenario == "fanout") {
    L.rooms = 1;
    L.room_size = std::max(1u, t.connections);
    L.users = t.users ? t.users : std::min(L.room_size, 1000u);
    L.senders = t.senders ? t.senders : std::min(10u, L.room_size);
    if (t.rate <= 0) t.rate = 1000;
  } else if (scenario == "rooms") {
    L.rooms = t.rooms ? t.rooms : 10;
    L.room_size = t.room_size ? t.room_size : 100;
    L.users = t.users ? t.users : L.rooms * L.room_size;
    L.senders = t.senders ? t.senders : L.rooms;
    if (t.rate <= 0) t.rate = 1000;
  } else {  // ingest: every sender alone in its own room
    L.senders = t.senders ? t.senders : (t.rooms ? t.rooms : 100);
    L.rooms = L.senders;
    L.room_size = 1;
    L.users = L.senders;
    if (t.rate <= 0) t.rate = 10000;
  }
  L.users = std::clamp(L.users, L.rooms, L.rooms * L.room_size);
  L.senders = std::min(L.senders, L.rooms * L.room_size);
  const double bound_ms = t.max_p99_ms > 0 ? t.max_p99_ms : (ingest ? 10.0 : 50.0);
  const std::size_t total_conns = static_cast<std::size_t>(L.rooms) * L.room_size;

  Env env = make_env(c);
  if (!c.quiet) std::fprintf(stderr, "note: %s\n", kRateLimitNote);
  auto tokens = ensure_users(env.users, L.users);

  const std::string run_id = nonce();
  EngineOptions eo;
  eo.target = {env.http.host, env.http.port};
  eo.threads = c.threads;
  eo.source_ips = auto_source_ips(c.source_ips, total_conns);
  eo.tokens = tokens;
  eo.open_concurrency = c.open_concurrency;
  const char* tag = scenario == "fanout" ? "bf" : scenario == "rooms" ? "br" : "bi";
  for (unsigned r = 0; r < L.rooms; ++r)
    eo.rooms.push_back(std::string(tag) + "-" + run_id + "-" + std::to_string(r));
  Engine engine(eo);

  // Users are spread over rooms: user u belongs to room u % rooms; the j-th connection of room
  // r uses that room's users in turn. Members join before their other connections open, so
  // that every connection is a member from its welcome on.
  auto users_in_room = [&](unsigned r) { return (L.users - r + L.rooms - 1) / L.rooms; };
  auto is_sender = [&](unsigned r, unsigned j) {
    // Sender s sits in room s % rooms, as that room's (s / rooms)-th connection.
    unsigned per_room = L.senders / L.rooms + (r < L.senders % L.rooms ? 1u : 0u);
    return j < per_room;
  };
  json open_report = json::object();
  for (int phase = 0; phase < 3; ++phase) {
    for (unsigned r = 0; r < L.rooms; ++r) {
      const unsigned uir = users_in_room(r);
      for (unsigned j = 0; j < L.room_size; ++j) {
        int p = j == 0 ? 0 : (j < uir ? 1 : 2);
        if (p != phase) continue;
        ConnSpec s;
        s.user = r + L.rooms * (j % uir);
        s.room = static_cast<std::int32_t>(r);
        s.action = p == 0 ? Action::create : p == 1 ? Action::join : Action::none;
        s.sender = is_sender(r, j);
        engine.add(s);
      }
    }
    const char* what = phase == 0 ? "room-creating" : phase == 1 ? "joining" : "further";
    if (!open_all(engine, what, c.quiet, &open_report)) return 1;
  }

  auto run_trial = [&](double rate, std::uint32_t trial_no) {
    Trial tr;
    tr.rate = rate;
    if (engine.closed() > 0) {
      if (!c.quiet)
        std::fprintf(stderr, "reopening %zu connections the server closed\n", engine.closed());
      engine.open();
    }
    TrafficPlan plan;
    plan.rate = rate;
    plan.body_bytes = t.body_bytes;
    plan.warmup_ns = static_cast<std::int64_t>(c.warmup_s * 1e9);
    plan.duration_ns = static_cast<std::int64_t>(c.duration_s * 1e9);
    plan.drain_ns = static_cast<std::int64_t>(c.drain_s * 1e9);
    plan.tick_ns = static_cast<std::int64_t>(t.tick_us * 1e3);
    plan.run_id = run_id;
    plan.trial = trial_no;
    plan.members = engine.members();
    plan.t0 = now_ns() + 100'000'000;
    const std::int64_t ws = plan.t0 + plan.warmup_ns, we = ws + plan.duration_ns;
    double gen_a = 0, gen_b = 0;
    tr.st = engine.traffic(plan, [&] {
      sleep_until_ns(ws);
      tr.a = env.probe.take();
      gen_a = cpu_self_s();
      sleep_until_ns(we);
      tr.b = env.probe.take();
      gen_b = cpu_self_s();
    });
    tr.window_s = c.duration_s;
    tr.gen_cpu_s = gen_b - gen_a;
    const auto& st = tr.st;
    tr.ratio = st.expected_measured ? static_cast<double>(st.delivered_measured) /
                                          static_cast<double>(st.expected_measured)
                                    : 0.0;
    tr.ack_ratio = st.sent_measured ? static_cast<double>(st.acks_measured) /
                                          static_cast<double>(st.sent_measured)
                                    : 0.0;
    tr.deliveries_per_s = static_cast<double>(st.delivered_in_window) / c.duration_s;
    tr.sends_per_s = static_cast<double>(st.sent_measured) / c.duration_s;
    tr.acks_per_s = static_cast<double>(st.acks_measured) / c.duration_s;
    const double p99 = ms(ingest ? st.ack.percentile(99) : st.e2e.percentile(99));
    tr.bound_p99_ms = p99;
    std::string why;
    if (st.sent_measured == 0) why += "nothing sent; ";
    if (tr.ratio < t.min_ratio) why += "delivery ratio " + std::to_string(tr.ratio) + "; ";
    if (tr.ack_ratio < t.min_ratio) why += "ack ratio " + std::to_string(tr.ack_ratio) + "; ";
    if (p99 > bound_ms)
      why += "p99 " + std::to_string(p99) + " ms > " + std::to_string(bound_ms) + " ms; ";
    if (st.closes > 0) why += std::to_string(st.closes) + " connections closed by the server; ";
    if (st.errors > 0) why += std::to_string(st.errors) + " error frames;";
    tr.pass = why.empty();
    tr.why = why;
    if (st.rate_limited > 0) {
      std::fprintf(stderr, "WARNING: %llu sends were rate_limited: %s\n",
                   static_cast<unsigned long long>(st.rate_limited), kRateLimitNote);
    }
    if (!c.quiet) {
      std::fprintf(stderr,
                   "trial %u: rate %.0f/s -> %.0f deliveries/s, ratio %.4f, %s p99 %.3f ms%s%s\n",
                   trial_no, rate, tr.deliveries_per_s, tr.ratio, ingest ? "ack" : "e2e", p99,
                   tr.pass ? "" : "  FAIL: ", tr.why.c_str());
    }
    return tr;
  };

  std::vector<Trial> trials;
  if (!t.max) {
    trials.push_back(run_trial(t.rate, 0));
  } else {
    double lo = 0, hi = std::numeric_limits<double>::infinity(), r = t.rate;
    for (unsigned step = 0; step < t.max_steps; ++step) {
      Trial tr = run_trial(r, step);
      const bool pass = tr.pass;
      trials.push_back(std::move(tr));
      if (pass)
        lo = r;
      else
        hi = r;
      if (std::isinf(hi))
        r = r * t.max_factor;
      else if (lo == 0)
        r = hi / t.max_factor;
      else
        r = (lo + hi) / 2;
      if (!std::isinf(hi) && lo > 0 && (hi - lo) / hi < 0.05) break;
      if (r < 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  json cleanup = json::object();
  if (t.cleanup) {
    PhaseStats lv = engine.leave_rooms();
    cleanup["left"] = lv.left;
  }
  engine.close_all();

  // ---- report
  const Trial* best = nullptr;
  for (const auto& tr : trials) {
    if (tr.pass && (!best || tr.rate > best->rate)) best = &tr;
  }
  const Trial& main = t.max ? (best ? *best : trials.back()) : trials.front();

  std::printf("parley-bench %s  target %s  %s\n", scenario.c_str(), c.url.c_str(),
              t.max ? "(--max search)" : "");
  std::printf(
      "  rooms %u x %u connections (%zu total), %u users, %u senders, body %u B, window %.1f s "
      "after %.1f s warm-up, generator threads %u\n",
      L.rooms, L.room_size, total_conns, L.users, L.senders, t.body_bytes, c.duration_s, c.warmup_s,
      c.threads);
  std::printf("  server probe: %s\n", env.probe.describe().c_str());
  std::printf("  note: %s\n\n", kRateLimitNote);
  std::printf("  %10s %12s %12s %8s %9s %9s %9s %9s %9s %8s %9s %9s  %s\n", "rate/s", "sends/s",
              "deliv/s", "ratio", "e2e p50", "e2e p99", "e2e p99.9", "e2e max", "ack p99",
              "srv cpu%", "cpu s/M", "srv wait", "pass");
  for (const auto& tr : trials) {
    double cpu = tr.b.cpu_s - tr.a.cpu_s;
    double dl = tr.b.has_counters ? tr.b.delivered - tr.a.delivered
                                  : static_cast<double>(tr.st.delivered_in_window);
    const std::string wait =
        tr.a.has_sched && tr.b.has_sched
            ? std::to_string(static_cast<int>(std::lround(tr.b.sched_wait_s - tr.a.sched_wait_s))) +
                  " s"
            : std::string("-");
    std::printf("  %10.0f %12.0f %12.0f %8.4f %9.3f %9.3f %9.3f %9.3f %9.3f %8.1f %9.3f %9s  %s\n",
                tr.rate, tr.sends_per_s, tr.deliveries_per_s, tr.ratio,
                ms(tr.st.e2e.percentile(50)), ms(tr.st.e2e.percentile(99)),
                ms(tr.st.e2e.percentile(99.9)), ms(tr.st.e2e.max()), ms(tr.st.ack.percentile(99)),
                cpu / tr.window_s * 100.0, dl > 0 ? cpu / (dl / 1e6) : 0.0, wait.c_str(),
                tr.pass ? "yes" : ("no: " + tr.why).c_str());
  }
  std::printf("\n  %s: rate %.0f/s\n",
              t.max ? (best ? "best passing" : "no passing rate; last") : "result", main.rate);
  std::printf(
      "  sent %llu (measured), acked %llu, expected deliveries %llu, delivered %llu, ratio %.6f\n",
      static_cast<unsigned long long>(main.st.sent_measured),
      static_cast<unsigned long long>(main.st.acks_measured),
      static_cast<unsigned long long>(main.st.expected_measured),
      static_cast<unsigned long long>(main.st.delivered_measured), main.ratio);
  std::printf("  deliveries/s %.0f, sends/s %.0f, acks/s %.0f\n", main.deliveries_per_s,
              main.sends_per_s, main.acks_per_s);
  std::printf("%s", lat_line("end-to-end latency", main.st.e2e).c_str());
  std::printf("%s", lat_line("ack latency", main.st.ack).c_str());
  std::printf(
      "  server CPU %.2f s in %.1f s (%.1f%% of a core), RSS %.1f MiB; generator CPU %.2f s\n",
      main.b.cpu_s - main.a.cpu_s, main.window_s,
      (main.b.cpu_s - main.a.cpu_s) / main.window_s * 100, main.b.rss_bytes / 1048576.0,
      main.gen_cpu_s);
  if (main.a.has_sched && main.b.has_sched) {
    std::printf(
        "  server threads on CPU %.2f s, runnable but waiting for a CPU %.2f s (a busy machine's "
        "share of the latency)\n",
        main.b.sched_run_s - main.a.sched_run_s, main.b.sched_wait_s - main.a.sched_wait_s);
  }
  std::printf("  errors %llu, closes %llu, gaps %llu%s\n\n",
              static_cast<unsigned long long>(main.st.errors),
              static_cast<unsigned long long>(main.st.closes),
              static_cast<unsigned long long>(main.st.gaps), describe_errors(main.st).c_str());

  json j;
  j["scenario"] = scenario;
  j["target"] = c.url;
  if (!c.label.empty()) j["label"] = c.label;
  j["params"] = {{"rooms", L.rooms},           {"room_size", L.room_size},
                 {"connections", total_conns}, {"users", L.users},
                 {"senders", L.senders},       {"rate", t.rate},
                 {"body_bytes", t.body_bytes}, {"duration_s", c.duration_s},
                 {"warmup_s", c.warmup_s},     {"drain_s", c.drain_s},
                 {"threads", c.threads},       {"max", t.max},
                 {"bound_p99_ms", bound_ms},   {"bound_metric", ingest ? "ack" : "e2e"},
                 {"min_ratio", t.min_ratio},   {"source_ips", eo.source_ips}};
  j["open"] = open_report;
  j["result"] = trial_json(main, ingest);
  if (t.max) {
    j["best_rate"] = best ? best->rate : 0.0;
    j["trials"] = json::array();
    for (const auto& tr : trials) j["trials"].push_back(trial_json(tr, ingest));
  }
  j["cleanup"] = cleanup;
  j["note"] = kRateLimitNote;
  j["machine"] = machine_json(load0);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Idle

int run_idle(const CommonOptions& c, IdleOptions o) {
  const std::string load0 = loadavg();
  Env env = make_env(c);
  const unsigned users = o.users ? o.users : std::min(o.connections, 1000u);
  auto tokens = ensure_users(env.users, users);
  EngineOptions eo;
  eo.target = {env.http.host, env.http.port};
  eo.threads = c.threads;
  eo.source_ips = auto_source_ips(c.source_ips, o.connections);
  eo.tokens = tokens;
  eo.open_concurrency = c.open_concurrency;
  Engine engine(eo);

  ServerSnapshot base = env.probe.take();
  for (unsigned i = 0; i < o.connections; ++i) {
    ConnSpec s;
    s.user = i % users;
    engine.add(s);
  }
  json open_report = json::object();
  const std::int64_t t_open = now_ns();
  PhaseStats ost = engine.open();
  const double open_s = static_cast<double>(now_ns() - t_open) / 1e9;
  open_report["opened"] = ost.opened;
  open_report["failed"] = ost.failed;
  open_report["seconds"] = round3(open_s);
  if (!c.quiet) {
    std::fprintf(stderr, "opened %llu idle connections in %.2f s (%llu failed%s%s)\n",
                 static_cast<unsigned long long>(ost.opened), open_s,
                 static_cast<unsigned long long>(ost.failed), ost.failed ? "; first error: " : "",
                 ost.first_error.c_str());
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.settle_s));
  ServerSnapshot a, b;
  IdlePlan plan;
  plan.duration_ns = static_cast<std::int64_t>(c.duration_s * 1e9);
  plan.ping_interval_ns = static_cast<std::int64_t>(o.ping_interval_s * 1e9);
  double gen_a = 0, gen_b = 0;
  std::int64_t ta = 0, tb = 0;
  PhaseStats st = engine.idle(plan, [&] {
    a = env.probe.take();
    ta = now_ns();
    gen_a = cpu_self_s();
    sleep_until_ns(ta + plan.duration_ns);
    b = env.probe.take();
    tb = now_ns();
    gen_b = cpu_self_s();
  });
  const std::size_t live = engine.live();
  engine.close_all();

  const double held_s = static_cast<double>(tb - ta) / 1e9;
  const double rss_per_conn = live ? (a.rss_bytes - base.rss_bytes) / static_cast<double>(live) : 0;
  const double idle_cpu_pct = held_s > 0 ? (b.cpu_s - a.cpu_s) / held_s * 100.0 : 0;

  std::printf("parley-bench idle  target %s\n", c.url.c_str());
  std::printf(
      "  %u connections over %u users, source addresses %u, pings every %.1f s, held %.1f s, "
      "generator threads %u\n",
      o.connections, users, eo.source_ips, o.ping_interval_s, held_s, c.threads);
  std::printf("  server probe: %s\n\n", env.probe.describe().c_str());
  std::printf("  opened %llu (failed %llu) in %.2f s = %.0f connections/s (handshake + auth)\n",
              static_cast<unsigned long long>(ost.opened),
              static_cast<unsigned long long>(ost.failed), open_s,
              static_cast<double>(ost.opened) / open_s);
  std::printf("  live at the end %zu, server-closed %llu, pings %llu, pongs %llu\n", live,
              static_cast<unsigned long long>(st.closes), static_cast<unsigned long long>(st.pings),
              static_cast<unsigned long long>(st.pongs));
  std::printf(
      "  server RSS %.1f MiB before, %.1f MiB with the connections: %.0f bytes (%.2f KiB) per "
      "connection\n",
      base.rss_bytes / 1048576.0, a.rss_bytes / 1048576.0, rss_per_conn, rss_per_conn / 1024.0);
  std::printf("  server idle CPU %.3f s in %.1f s = %.2f%% of a core; generator CPU %.2f s\n",
              b.cpu_s - a.cpu_s, held_s, idle_cpu_pct, gen_b - gen_a);
  if (!ost.first_error.empty()) std::printf("  first error: %s\n", ost.first_error.c_str());
  std::printf("\n");

  json j;
  j["scenario"] = "idle";
  j["target"] = c.url;
  if (!c.label.empty()) j["label"] = c.label;
  j["params"] = {{"connections", o.connections}, {"users", users},
                 {"duration_s", c.duration_s},   {"ping_interval_s", o.ping_interval_s},
                 {"source_ips", eo.source_ips},  {"threads", c.threads}};
  j["open"] = open_report;
  j["open"]["per_s"] = std::round(static_cast<double>(ost.opened) / open_s);
  j["result"] = {{"live", live},
                 {"closes", st.closes},
                 {"pings", st.pings},
                 {"pongs", st.pongs},
                 {"errors", st.errors},
                 {"held_s", round3(held_s)},
                 {"rss_before_bytes", base.rss_bytes},
                 {"rss_bytes", a.rss_bytes},
                 {"rss_per_connection_bytes", std::round(rss_per_conn)},
                 {"idle_cpu_s", round3(b.cpu_s - a.cpu_s)},
                 {"idle_cpu_pct", round3(idle_cpu_pct)},
                 {"generator_cpu_s", round3(gen_b - gen_a)},
                 {"server_ok", base.ok && a.ok && b.ok}};
  j["machine"] = machine_json(load0);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return ost.opened > 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Connect

int run_connect(const CommonOptions& c, ConnectOptions o) {
  const std::string load0 = loadavg();
  Env env = make_env(c);
  auto tokens = ensure_users(env.users, std::max(1u, o.users));
  EngineOptions eo;
  eo.target = {env.http.host, env.http.port};
  eo.threads = c.threads;
  eo.source_ips = auto_source_ips(c.source_ips, 0);
  eo.tokens = tokens;
  Engine engine(eo);

  ChurnPlan plan;
  plan.concurrency = std::max(1u, o.concurrency);
  plan.users = std::max(1u, o.users);
  plan.t0 = now_ns() + 50'000'000;
  plan.warmup_ns = static_cast<std::int64_t>(c.warmup_s * 1e9);
  plan.duration_ns = static_cast<std::int64_t>(c.duration_s * 1e9);
  ServerSnapshot a, b;
  double gen_a = 0, gen_b = 0;
  const std::int64_t ws = plan.t0 + plan.warmup_ns, we = ws + plan.duration_ns;
  PhaseStats st = engine.churn(plan, [&] {
    sleep_until_ns(ws);
    a = env.probe.take();
    gen_a = cpu_self_s();
    sleep_until_ns(we);
    b = env.probe.take();
    gen_b = cpu_self_s();
  });
  const double per_s = static_cast<double>(st.handshakes_in_window) / c.duration_s;
  const double cpu = b.cpu_s - a.cpu_s;

  std::printf("parley-bench connect  target %s\n", c.url.c_str());
  std::printf(
      "  %u connections in flight, tokens of %u users, window %.1f s after %.1f s warm-up, "
      "generator threads %u\n",
      plan.concurrency, plan.users, c.duration_s, c.warmup_s, c.threads);
  std::printf("  each: TCP connect, HTTP upgrade, auth by token, welcome; then closed with RST\n");
  std::printf("  server probe: %s\n\n", env.probe.describe().c_str());
  std::printf("  handshakes + auth: %llu in the window = %.0f/s (total %llu, failed %llu)\n",
              static_cast<unsigned long long>(st.handshakes_in_window), per_s,
              static_cast<unsigned long long>(st.handshakes),
              static_cast<unsigned long long>(st.failed));
  std::printf("%s", lat_line("connect-to-welcome", st.connect).c_str());
  std::printf(
      "  server CPU %.2f s (%.1f%% of a core) = %.1f us per connection; generator CPU %.2f s\n",
      cpu, cpu / c.duration_s * 100,
      st.handshakes_in_window ? cpu / static_cast<double>(st.handshakes_in_window) * 1e6 : 0.0,
      gen_b - gen_a);
  if (a.has_sched && b.has_sched) {
    std::printf("  server threads on CPU %.2f s, runnable but waiting for a CPU %.2f s\n",
                b.sched_run_s - a.sched_run_s, b.sched_wait_s - a.sched_wait_s);
  }
  if (!st.first_error.empty()) std::printf("  first error: %s\n", st.first_error.c_str());
  std::printf("\n");

  json j;
  j["scenario"] = "connect";
  j["target"] = c.url;
  if (!c.label.empty()) j["label"] = c.label;
  j["params"] = {{"concurrency", plan.concurrency},
                 {"users", plan.users},
                 {"duration_s", c.duration_s},
                 {"warmup_s", c.warmup_s},
                 {"threads", c.threads}};
  j["result"] = {{"handshakes", st.handshakes_in_window},
                 {"handshakes_total", st.handshakes},
                 {"failed", st.failed},
                 {"per_s", std::round(per_s)},
                 {"latency", latency_json(st.connect)},
                 {"errors", st.errors},
                 {"error_codes", st.error_codes},
                 {"generator_cpu_s", round3(gen_b - gen_a)},
                 {"server", server_json(a, b, c.duration_s)}};
  if (st.handshakes_in_window)
    j["result"]["server"]["cpu_us_per_connection"] =
        round3(cpu / static_cast<double>(st.handshakes_in_window) * 1e6);
  if (!st.first_error.empty()) j["result"]["first_error"] = st.first_error;
  j["machine"] = machine_json(load0);
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return st.handshakes > 0 ? 0 : 1;
}

int run_disk(const DiskOptions& o) {
  if (o.writes == 0 || o.size == 0)
    throw std::runtime_error("--writes and --size must be positive");
  const std::string load0 = loadavg();
  std::string path = o.dir + "/parley-bench-disk.XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) throw std::runtime_error("cannot create a file in " + o.dir);
  ::unlink(path.c_str());  // gone when closed, whatever happens
  const std::string buf(o.size, 'x');
  // One phase: `writes` durable writes of `size` bytes at successive offsets from 0.
  auto phase = [&](Histogram& h) {
    for (unsigned i = 0; i < o.writes; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto off = static_cast<off_t>(i) * static_cast<off_t>(o.size);
      if (::pwrite(fd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size()) ||
          ::fdatasync(fd) != 0) {
        ::close(fd);
        throw std::runtime_error("write or fdatasync failed in " + o.dir);
      }
      h.record(std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now() - t0)
                   .count());
    }
  };
  Histogram append, overwrite;
  phase(append);     // the file grows with every write
  phase(overwrite);  // the same blocks again: no allocation, no size change
  ::close(fd);

  std::printf("parley-bench disk  %s: %u x (pwrite %u B + fdatasync)\n", o.dir.c_str(), o.writes,
              o.size);
  std::printf("%s", lat_line("append (file grows)", append).c_str());
  std::printf("%s", lat_line("overwrite", overwrite).c_str());
  std::printf("\n");
  json j{{"scenario", "disk"},
         {"params", {{"dir", o.dir}, {"writes", o.writes}, {"size", o.size}}},
         {"result", {{"append", latency_json(append)}, {"overwrite", latency_json(overwrite)}}}};
  if (!o.label.empty()) j["label"] = o.label;
  j["machine"] = machine_json(load0);
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace parley::bench
