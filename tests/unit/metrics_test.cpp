// Unit tests of the metrics registry: value semantics, registration identity, and the exact
// text exposition (promtool is not on every machine, so the format is pinned by comparison).

#include <gtest/gtest.h>

#include <cmath>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "metrics/process.hpp"

namespace pm = parley::metrics;

namespace {

// The lines of `text` that start with `prefix`.
std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
    pos = end + 1;
  }
  return out;
}

double sample_value(const std::string& text, const std::string& series) {
  const auto lines = lines_with(text, series + " ");
  if (lines.size() != 1) return std::numeric_limits<double>::quiet_NaN();
  return std::stod(lines[0].substr(series.size() + 1));
}

}  // namespace

TEST(MetricsFormat, Values) {
  EXPECT_EQ(pm::format_value(0), "0");
  EXPECT_EQ(pm::format_value(-0.0), "0");
  EXPECT_EQ(pm::format_value(42), "42");
  EXPECT_EQ(pm::format_value(-7), "-7");
  EXPECT_EQ(pm::format_value(1048576), "1048576");
  EXPECT_EQ(pm::format_value(1e15), "1000000000000000");
  EXPECT_EQ(pm::format_value(2.5), "2.5");
  EXPECT_EQ(pm::format_value(0.1), "0.1");
  EXPECT_EQ(pm::format_value(0.00005), "5e-05");
  EXPECT_EQ(pm::format_value(1e300), "1e+300");
  EXPECT_EQ(pm::format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(pm::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(pm::format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  // Shortest round-trip: the text reads back to the same double.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(pm::format_value(third)), third);
}

TEST(MetricsFormat, LabelEscaping) {
  EXPECT_EQ(pm::escape_label_value("plain"), "plain");
  EXPECT_EQ(pm::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(Metrics, CounterAndGauge) {
  pm::Counter c;
  c.inc();
  c.inc(4);
  EXPECT_EQ(c.value(), 5u);
  pm::Gauge g;
  g.set(10);
  g.inc();
  g.dec();
  g.dec();
  g.add(0.5);
  EXPECT_DOUBLE_EQ(g.value(), 9.5);
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  pm::Histogram h({1, 5, 10});
  for (double v : {0.5, 1.0, 3.0, 5.0, 7.0, 100.0}) h.observe(v);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // dropped
  const auto s = h.snapshot();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 2u);  // 0.5, 1 (le is inclusive)
  EXPECT_EQ(s.cumulative[1], 4u);  // + 3, 5
  EXPECT_EQ(s.cumulative[2], 5u);  // + 7
  EXPECT_EQ(s.cumulative[3], 6u);  // + 100
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(h.count(), 6u);
  EXPECT_DOUBLE_EQ(s.sum, 116.5);
}

TEST(Metrics, HistogramNormalisesBounds) {
  pm::Histogram h({10, 1, 5, 5, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.bounds(), (std::vector<double>{1, 5, 10}));
}

TEST(Metrics, LatencyBuckets) {
  const std::vector<double> want{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                 0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                 0.5,     1,      2.5,     5,      10};
  EXPECT_EQ(pm::latency_buckets(), want);
}

TEST(Metrics, SameNameAndLabelsIsSameObject) {
  pm::Registry r;
  auto& a = r.counter("x_total", "X.", {{"k", "v"}});
  auto& b = r.counter("x_total", "ignored", {{"k", "v"}});
  auto& c = r.counter("x_total", "X.", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  // Label order does not make a different series.
  auto& d = r.gauge("y", "Y.", {{"a", "1"}, {"b", "2"}});
  auto& e = r.gauge("y", "Y.", {{"b", "2"}, {"a", "1"}});
  EXPECT_EQ(&d, &e);
  auto& h1 = r.histogram("h", "H.", {1, 2});
  auto& h2 = r.histogram("h", "H.", {3});
  EXPECT_EQ(&h1, &h2);
  EXPECT_EQ(h2.bounds(), (std::vector<double>{1, 2}));
}

TEST(Metrics, MisuseThrowsAtRegistration) {
  pm::Registry r;
  r.counter("a_total", "A.");
  EXPECT_THROW(r.gauge("a_total", "A."), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name", "B."), std::invalid_argument);
  EXPECT_THROW(r.counter("c_total", "C.", {{"0bad", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("c_total", "C.", {{"__reserved", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("c_total", "C.", {{"k", "1"}, {"k", "2"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "H.", {1}, {{"le", "1"}}), std::invalid_argument);
  r.counter("d_total", "D.");
  EXPECT_THROW(r.callback_counter("d_total", "D.", [] { return 1.0; }), std::invalid_argument);
}

TEST(Metrics, ExpositionExact) {
  pm::Registry r;
  // Registration order is the output order, whatever the names.
  auto& sent = r.counter("parley_messages_total", "Messages received.", {{"result", "ok"}});
  auto& rejected = r.counter("parley_messages_total", "ignored", {{"result", "rejected"}});
  auto& conns = r.gauge("parley_connections", "Open WebSocket connections.");
  auto& lat = r.histogram("parley_ack_seconds", "Send-to-ack latency.", {0.001, 0.01, 0.1},
                          {{"node", "n\"1\\\n"}});
  r.callback_gauge("parley_bus_connected", "1 when the bus is connected.", [] { return 1.0; });
  r.callback_counter("parley_cpu_seconds_total", "Help with \\ and\nnewline \"quoted\".",
                     [] { return 0.25; });
  auto& a_gauge = r.gauge("a_first_alphabetically", "Registered last.");

  sent.inc(3);
  rejected.inc();
  conns.set(7);
  lat.observe(0.0005);
  lat.observe(0.001);
  lat.observe(0.05);
  lat.observe(3);
  a_gauge.set(-1.5);

  const std::string want =
      "# HELP parley_messages_total Messages received.\n"
      "# TYPE parley_messages_total counter\n"
      "parley_messages_total{result=\"ok\"} 3\n"
      "parley_messages_total{result=\"rejected\"} 1\n"
      "# HELP parley_connections Open WebSocket connections.\n"
      "# TYPE parley_connections gauge\n"
      "parley_connections 7\n"
      "# HELP parley_ack_seconds Send-to-ack latency.\n"
      "# TYPE parley_ack_seconds histogram\n"
      "parley_ack_seconds_bucket{node=\"n\\\"1\\\\\\n\",le=\"0.001\"} 2\n"
      "parley_ack_seconds_bucket{node=\"n\\\"1\\\\\\n\",le=\"0.01\"} 2\n"
      "parley_ack_seconds_bucket{node=\"n\\\"1\\\\\\n\",le=\"0.1\"} 3\n"
      "parley_ack_seconds_bucket{node=\"n\\\"1\\\\\\n\",le=\"+Inf\"} 4\n"
      "parley_ack_seconds_sum{node=\"n\\\"1\\\\\\n\"} 3.0515\n"
      "parley_ack_seconds_count{node=\"n\\\"1\\\\\\n\"} 4\n"
      "# HELP parley_bus_connected 1 when the bus is connected.\n"
      "# TYPE parley_bus_connected gauge\n"
      "parley_bus_connected 1\n"
      "# HELP parley_cpu_seconds_total Help with \\\\ and\\nnewline \"quoted\".\n"
      "# TYPE parley_cpu_seconds_total counter\n"
      "parley_cpu_seconds_total 0.25\n"
      "# HELP a_first_alphabetically Registered last.\n"
      "# TYPE a_first_alphabetically gauge\n"
      "a_first_alphabetically -1.5\n";
  EXPECT_EQ(r.render(), want);
}

TEST(Metrics, EmptyRegistryRendersNothing) {
  pm::Registry r;
  EXPECT_EQ(r.render(), "");
}

TEST(Metrics, CallbackReplacedOnReRegistration) {
  pm::Registry r;
  r.callback_gauge("q", "Q.", [] { return 1.0; });
  r.callback_gauge("q", "Q.", [] { return 2.0; });
  EXPECT_EQ(r.render(), "# HELP q Q.\n# TYPE q gauge\nq 2\n");
}

TEST(Metrics, ConcurrentUpdatesAreCounted) {
  pm::Registry r;
  auto& c = r.counter("c_total", "C.");
  auto& g = r.gauge("g", "G.");
  auto& h = r.histogram("h", "H.", {0.5});
  constexpr int threads = 4;
  constexpr int per_thread = 10000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        c.inc();
        g.inc();
        h.observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrapes racing with updates must stay well-formed: _count equals the +Inf bucket.
  for (int i = 0; i < 50; ++i) {
    const auto text = r.render();
    const double inf = sample_value(text, "h_bucket{le=\"+Inf\"}");
    const double count = sample_value(text, "h_count");
    EXPECT_EQ(inf, count);
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), std::uint64_t{threads * per_thread});
  EXPECT_DOUBLE_EQ(g.value(), threads * per_thread);
  const auto s = h.snapshot();
  EXPECT_EQ(s.cumulative[0], std::uint64_t{threads * per_thread / 2});
  EXPECT_EQ(s.count, std::uint64_t{threads * per_thread});
}

TEST(ProcessMetrics, ParseProcStat) {
  // The command name may hold spaces and parentheses; fields count from the last ')'.
  const std::string text =
      "4891 (we ird) name) R 4869 4869 2835 0 -1 4194304 102 0 0 0 17 5 0 0 20 0 1 0 34450 "
      "2998272 415 18446744073709551615 0 0\n";
  const auto st = pm::parse_proc_stat(text);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->utime_ticks, 17u);
  EXPECT_EQ(st->stime_ticks, 5u);
  EXPECT_EQ(st->starttime_ticks, 34450u);
  EXPECT_FALSE(pm::parse_proc_stat("no paren here").has_value());
  EXPECT_FALSE(pm::parse_proc_stat("1 (x) R 1 2 3").has_value());
}

TEST(ProcessMetrics, RegisteredAndPlausible) {
  pm::Registry r;
  pm::register_process_metrics(r);
  const auto text = r.render();
  EXPECT_EQ(lines_with(text, "# TYPE process_cpu_seconds_total counter").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE process_resident_memory_bytes gauge").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE process_open_fds gauge").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE process_max_fds gauge").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE process_start_time_seconds gauge").size(), 1u);

  EXPECT_GE(sample_value(text, "process_cpu_seconds_total"), 0.0);
  EXPECT_GT(sample_value(text, "process_resident_memory_bytes"), 1024.0 * 1024.0);
  EXPECT_GT(sample_value(text, "process_virtual_memory_bytes"),
            sample_value(text, "process_resident_memory_bytes"));
  // stdin, stdout and stderr at least.
  EXPECT_GE(sample_value(text, "process_open_fds"), 3.0);
  EXPECT_GE(sample_value(text, "process_max_fds"), sample_value(text, "process_open_fds"));
  // After 2020-01-01 and not in the future.
  const double start = sample_value(text, "process_start_time_seconds");
  EXPECT_GT(start, 1577836800.0);
  EXPECT_LE(start, static_cast<double>(std::time(nullptr)) + 1);
}
