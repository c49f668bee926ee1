#pragma once
// A small high-dynamic-range histogram in the spirit of HdrHistogram: values (nanoseconds) are
// counted in log-linear buckets, 2^kSubBits buckets per power of two, so that any value is
// reported within 1/2^kSubBits (0.8 %) of itself from 1 ns to hours, at a fixed cost of one
// array increment per sample and 58 KiB per histogram. Percentiles report the highest value
// equivalent to the bucket (clamped to the exact maximum), as HdrHistogram does.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <vector>

namespace parley::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr std::uint64_t kSub = 1ull << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void record(std::int64_t value) {
    std::uint64_t v = value < 0 ? 0 : static_cast<std::uint64_t>(value);
    ++counts_[index(v)];
    ++count_;
    sum_ += v;
    if (v > max_) max_ = v;
    if (v < min_) min_ = v;
  }

  void merge(const Histogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = sum_ = max_ = 0;
    min_ = UINT64_MAX;
  }

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }

  // The value below which `p` percent of the samples fall (0 when empty).
  std::uint64_t percentile(double p) const {
    if (count_ == 0) return 0;
    if (p >= 100.0) return max_;
    auto rank = static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(count_) + 0.5);
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper(i), max_);
    }
    return max_;
  }

  static std::size_t index(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const int e = 63 - std::countl_zero(v);         // >= kSubBits
    const std::uint64_t sub = v >> (e - kSubBits);  // in [kSub, 2 kSub)
    return static_cast<std::size_t>((e - kSubBits + 1) * kSub + (sub - kSub));
  }
  // The largest value that lands in bucket `i`.
  static std::uint64_t upper(std::size_t i) {
    if (i < kSub) return i;
    const int e = static_cast<int>(i / kSub) + kSubBits - 1;
    const std::uint64_t sub = i % kSub + kSub;
    const int shift = e - kSubBits;
    if (shift >= 63 - kSubBits) return UINT64_MAX;
    return ((sub + 1) << shift) - 1;
  }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = UINT64_MAX;
};

}  // namespace parley::bench
