// The metrics registry and its Prometheus text exposition (format 0.0.4).
//
// Updates never lock: every series is a heap object whose address is stable for the registry's
// life, so the hot path touches only its own atomics. The registry's mutex guards the family
// list only, which changes at start-up and is read on scrape.

#include "metrics/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

namespace parley::metrics {

void Gauge::add(double d) {
  v_.fetch_add(d, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  // The exposition needs strictly increasing finite bounds with +Inf added last, so a caller's
  // unsorted list, duplicates, NaN or an explicit +Inf are normalised here rather than rendered
  // as a family that Prometheus rejects.
  std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::observe(double v) {
  // A NaN would poison the sum for the rest of the process's life, so it is dropped.
  if (std::isnan(v)) return;
  // Buckets are "less than or equal": the first bound >= v takes the observation, and values
  // above every bound land in the +Inf slot at the end.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  const auto idx = static_cast<std::size_t>(std::distance(bounds_.begin(), it));
  buckets_[idx].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  // The count is taken from the buckets read above rather than from count_, so that a scrape
  // racing with observe() still shows _count equal to the +Inf bucket, as Prometheus expects.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> latency_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integral values below 2^53 are exact as integers, and writing them without an exponent
  // keeps counters readable ("1048576", not "1.048576e+06"). Larger ones use the shortest form.
  constexpr double exact_limit = 9007199254740992.0;  // 2^53
  if (v == std::trunc(v) && std::fabs(v) < exact_limit) {
    return std::to_string(static_cast<std::int64_t>(v));  // also turns -0 into "0"
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  if (res.ec != std::errc{}) return "NaN";  // unreachable: 64 bytes hold any double
  return std::string(buf, res.ptr);
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

// HELP text escapes backslash and newline only; quotes are legal there.
std::string escape_help(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool is_alpha_(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_metric_name(const std::string& s) {
  if (s.empty() || !(is_alpha_(s[0]) || s[0] == ':')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alpha_(c) || is_digit(c) || c == ':'; });
}

// [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are reserved for Prometheus itself.
bool valid_label_name(const std::string& s) {
  if (s.empty() || !is_alpha_(s[0])) return false;
  if (s.size() >= 2 && s[0] == '_' && s[1] == '_') return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alpha_(c) || is_digit(c); });
}

enum class Kind { counter, gauge, histogram, callback_gauge, callback_counter };

const char* type_name(Kind k) {
  switch (k) {
    case Kind::counter:
    case Kind::callback_counter:
      return "counter";
    case Kind::gauge:
    case Kind::callback_gauge:
      return "gauge";
    case Kind::histogram:
      return "histogram";
  }
  return "untyped";
}

// Label sets are compared without regard to order, so {a,b} and {b,a} name the same series.
Labels sorted_labels(Labels l) {
  std::sort(l.begin(), l.end());
  return l;
}

// Renders {k="v",...} with an optional extra label (the histogram's "le") last.
std::string render_labels(const Labels& labels, const char* extra_name = nullptr,
                          const std::string& extra_value = {}) {
  if (labels.empty() && extra_name == nullptr) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    out += escape_label_value(v);
    out += '"';
  }
  if (extra_name != nullptr) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += escape_label_value(extra_value);
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace

struct Registry::Impl {
  struct Series {
    Kind kind;
    Labels labels;  // as given, rendered in this order
    Labels sorted;  // for identity comparisons
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> fn;
  };
  struct Family {
    std::string name;
    std::string help;
    const char* type;
    std::vector<std::unique_ptr<Series>> series;
  };

  mutable std::mutex mu;
  std::vector<std::unique_ptr<Family>> families;  // registration order
  std::unordered_map<std::string, Family*> by_name;

  // Finds or creates the series for (name, labels) of the given kind. Returns the series and
  // whether it was created, so that the caller fills in a new one. Caller holds mu.
  std::pair<Series*, bool> find_or_add(const std::string& name, const std::string& help, Kind kind,
                                       Labels labels) {
    if (!valid_metric_name(name)) {
      throw std::invalid_argument("metrics: invalid metric name '" + name + "'");
    }
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto& key = labels[i].first;
      if (!valid_label_name(key)) {
        throw std::invalid_argument("metrics: invalid label name '" + key + "' on " + name);
      }
      if (kind == Kind::histogram && key == "le") {
        throw std::invalid_argument("metrics: label 'le' is reserved on histogram " + name);
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (labels[j].first == key) {
          throw std::invalid_argument("metrics: duplicate label '" + key + "' on " + name);
        }
      }
    }
    Family* fam = nullptr;
    if (auto it = by_name.find(name); it != by_name.end()) {
      fam = it->second;
      if (fam->type != type_name(kind)) {
        throw std::invalid_argument("metrics: " + name + " registered as " + fam->type +
                                    ", now as " + type_name(kind));
      }
    } else {
      auto owned = std::make_unique<Family>();
      owned->name = name;
      owned->help = help;
      owned->type = type_name(kind);
      fam = owned.get();
      families.push_back(std::move(owned));
      by_name.emplace(name, fam);
    }
    Labels key = sorted_labels(labels);
    for (auto& s : fam->series) {
      if (s->sorted == key) {
        if (s->kind != kind) {
          throw std::invalid_argument("metrics: series of " + name +
                                      " registered both as a callback and as a value");
        }
        return {s.get(), false};
      }
    }
    auto s = std::make_unique<Series>();
    s->kind = kind;
    s->labels = std::move(labels);
    s->sorted = std::move(key);
    fam->series.push_back(std::move(s));
    return {fam->series.back().get(), true};
  }
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

Counter& Registry::counter(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard lock(impl_->mu);
  auto [s, created] = impl_->find_or_add(name, help, Kind::counter, std::move(labels));
  if (created) s->counter = std::make_unique<Counter>();
  return *s->counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard lock(impl_->mu);
  auto [s, created] = impl_->find_or_add(name, help, Kind::gauge, std::move(labels));
  if (created) s->gauge = std::make_unique<Gauge>();
  return *s->gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               std::vector<double> buckets, Labels labels) {
  std::lock_guard lock(impl_->mu);
  auto [s, created] = impl_->find_or_add(name, help, Kind::histogram, std::move(labels));
  // A repeated registration gets the existing histogram with its original buckets: handing
  // out a second object would split the observations of one series.
  if (created) s->histogram = std::make_unique<Histogram>(std::move(buckets));
  return *s->histogram;
}

void Registry::callback_gauge(const std::string& name, const std::string& help,
                              std::function<double()> fn, Labels labels) {
  std::lock_guard lock(impl_->mu);
  auto [s, created] = impl_->find_or_add(name, help, Kind::callback_gauge, std::move(labels));
  (void)created;
  s->fn = std::move(fn);
}

void Registry::callback_counter(const std::string& name, const std::string& help,
                                std::function<double()> fn, Labels labels) {
  std::lock_guard lock(impl_->mu);
  auto [s, created] = impl_->find_or_add(name, help, Kind::callback_counter, std::move(labels));
  (void)created;
  s->fn = std::move(fn);
}

std::string Registry::render() const {
  std::lock_guard lock(impl_->mu);
  std::string out;
  out.reserve(4096);
  for (const auto& fam : impl_->families) {
    out += "# HELP ";
    out += fam->name;
    out += ' ';
    out += escape_help(fam->help);
    out += "\n# TYPE ";
    out += fam->name;
    out += ' ';
    out += fam->type;
    out += '\n';
    for (const auto& s : fam->series) {
      switch (s->kind) {
        case Kind::counter:
          out += fam->name + render_labels(s->labels) + ' ' + std::to_string(s->counter->value()) +
                 '\n';
          break;
        case Kind::gauge:
          out +=
              fam->name + render_labels(s->labels) + ' ' + format_value(s->gauge->value()) + '\n';
          break;
        case Kind::callback_gauge:
        case Kind::callback_counter: {
          const double v = s->fn ? s->fn() : std::numeric_limits<double>::quiet_NaN();
          out += fam->name + render_labels(s->labels) + ' ' + format_value(v) + '\n';
          break;
        }
        case Kind::histogram: {
          const auto snap = s->histogram->snapshot();
          const auto& bounds = s->histogram->bounds();
          for (std::size_t i = 0; i <= bounds.size(); ++i) {
            const std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
            out += fam->name + "_bucket" + render_labels(s->labels, "le", le) + ' ' +
                   std::to_string(snap.cumulative[i]) + '\n';
          }
          const std::string labels = render_labels(s->labels);
          out += fam->name + "_sum" + labels + ' ' + format_value(snap.sum) + '\n';
          out += fam->name + "_count" + labels + ' ' + std::to_string(snap.count) + '\n';
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace parley::metrics
