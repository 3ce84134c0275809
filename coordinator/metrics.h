// Prometheus metrics: counters, gauges read at scrape time, and
// histograms, rendered in the text exposition format (version 0.0.4).
// Thread-safe. Recording takes a shared (reader) lock to find its series
// (one hash lookup of its name and labels) and then updates atomics; only
// the first use of a name or label set takes the lock exclusively. A
// recording allocates nothing once its series exists: its labels are views
// of the caller's strings.
#ifndef TXCOORD_COORDINATOR_METRICS_H_
#define TXCOORD_COORDINATOR_METRICS_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace txcoord::coordinator {

using Labels = std::vector<std::pair<std::string, std::string>>;
// The labels of one recording, valid for the call: {{"bind", name}, ...}.
using LabelRefs = absl::Span<const std::pair<absl::string_view, absl::string_view>>;

class Histogram {
 public:
  // Upper bounds in seconds (sorted), +Inf implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double seconds);
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound, plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class Metrics {
 public:
  Metrics();

  void Increment(absl::string_view name, LabelRefs labels = {}, uint64_t by = 1);
  void Observe(absl::string_view name, absl::Duration d, LabelRefs labels = {});
  // A gauge whose samples are read by `fn` at every scrape.
  using GaugeFn = std::function<std::vector<std::pair<Labels, double>>()>;
  void RegisterGauge(const std::string& name, const std::string& help, GaugeFn fn);
  // A counter kept elsewhere (its values only grow), read by `fn` at every scrape.
  void RegisterCounterFn(const std::string& name, const std::string& help, GaugeFn fn);
  // Declares a counter or histogram with its help text (before use).
  void DescribeCounter(const std::string& name, const std::string& help);
  void DescribeHistogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  // The whole exposition, "# HELP"/"# TYPE" lines included.
  std::string Render() const;
  // Current value of a counter (tests and admin).
  uint64_t CounterValue(const std::string& name, LabelRefs labels = {}) const;

 private:
  // A family whose samples `fn` reads at every scrape, of `type`.
  void RegisterReadAtScrape(const std::string& name, const std::string& help, const char* type,
                            GaugeFn fn);
  static std::string LabelText(const Labels& labels);
  // The series of `name` whose key (the name followed by the label text)
  // is `key`, created on first use.
  std::atomic<uint64_t>* Counter(absl::string_view name, const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);
  Histogram* HistogramOf(absl::string_view name, const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);
  struct Family {
    std::string help;
    std::string type;  // counter, gauge, histogram
    std::vector<double> bounds;
    std::map<std::string, std::unique_ptr<std::atomic<uint64_t>>, std::less<>> counters;
    std::map<std::string, std::unique_ptr<Histogram>, std::less<>> histograms;
    GaugeFn gauge;  // gauges, and counters kept elsewhere
  };
  // A series, by its name followed by its label text: what a recording looks up.
  struct Series {
    std::atomic<uint64_t>* counter = nullptr;
    Histogram* histogram = nullptr;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Series> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_METRICS_H_
