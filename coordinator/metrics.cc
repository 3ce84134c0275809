#include "coordinator/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace txcoord::coordinator {

namespace {
// The label text ({a="x",b="y"}, "" without labels) appended to `out`.
template <typename L>
void AppendLabels(const L& labels, std::string* out) {
  if (labels.empty()) return;
  out->push_back('{');
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) out->push_back(',');
    first = false;
    absl::StrAppend(out, label, "=\"");
    for (char c : value) {  // the exposition format's escapes
      if (c == '\\')
        out->append("\\\\");
      else if (c == '"')
        out->append("\\\"");
      else if (c == '\n')
        out->append("\\n");
      else
        out->push_back(c);
    }
    out->push_back('"');
  }
  out->push_back('}');
}

// The key of a series in Metrics::series_: its name and label text.
const std::string& SeriesKey(absl::string_view name, LabelRefs labels) {
  thread_local std::string key;
  key.assign(name.data(), name.size());
  AppendLabels(labels, &key);
  return key;
}

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.9g", v);
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + seconds, std::memory_order_relaxed)) {
  }
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  uint64_t cumulative = 0;
  auto with = [&](const std::string& le) {
    return labels.empty() ? absl::StrCat("{le=\"", le, "\"}")
                          : absl::StrCat(labels.substr(0, labels.size() - 1), ",le=\"", le, "\"}");
  };
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket", with(FormatValue(bounds_[i])), " ", cumulative, "\n");
  }
  cumulative += buckets_[bounds_.size()].load(std::memory_order_relaxed);
  absl::StrAppend(out, name, "_bucket", with("+Inf"), " ", cumulative, "\n");
  absl::StrAppend(out, name, "_sum", labels, " ", FormatValue(sum_.load()), "\n");
  absl::StrAppend(out, name, "_count", labels, " ", cumulative, "\n");
}

Metrics::Metrics() = default;

std::string Metrics::LabelText(const Labels& labels) {
  std::string out;
  AppendLabels(labels, &out);
  return out;
}

void Metrics::DescribeCounter(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = "counter";
}

void Metrics::DescribeHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = "histogram";
  f.bounds = std::move(bounds);
}

void Metrics::RegisterGauge(const std::string& name, const std::string& help, GaugeFn fn) {
  RegisterReadAtScrape(name, help, "gauge", std::move(fn));
}

void Metrics::RegisterCounterFn(const std::string& name, const std::string& help, GaugeFn fn) {
  RegisterReadAtScrape(name, help, "counter", std::move(fn));
}

void Metrics::RegisterReadAtScrape(const std::string& name, const std::string& help,
                                   const char* type, GaugeFn fn) {
  absl::MutexLock lock(&mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = type;
  f.gauge = std::move(fn);
}

void Metrics::Increment(absl::string_view name, LabelRefs labels, uint64_t by) {
  const std::string& key = SeriesKey(name, labels);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = series_.find(key);
    if (it != series_.end() && it->second.counter != nullptr) {
      it->second.counter->fetch_add(by, std::memory_order_relaxed);
      return;
    }
  }
  Counter(name, key)->fetch_add(by, std::memory_order_relaxed);
}

void Metrics::Observe(absl::string_view name, absl::Duration d, LabelRefs labels) {
  const std::string& key = SeriesKey(name, labels);
  const double seconds = absl::ToDoubleSeconds(d);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = series_.find(key);
    if (it != series_.end() && it->second.histogram != nullptr) {
      it->second.histogram->Observe(seconds);
      return;
    }
  }
  HistogramOf(name, key)->Observe(seconds);
}

// `key` is the series' name followed by its label text: the text is what
// the family keys its series by.
std::atomic<uint64_t>* Metrics::Counter(absl::string_view name, const std::string& key) {
  absl::MutexLock lock(&mu_);  // the first use of this series
  Family& family = families_.try_emplace(std::string(name)).first->second;
  if (family.type.empty()) family.type = "counter";
  auto& c = family.counters[key.substr(name.size())];
  if (!c) c = std::make_unique<std::atomic<uint64_t>>(0);
  series_[key].counter = c.get();
  return c.get();
}

Histogram* Metrics::HistogramOf(absl::string_view name, const std::string& key) {
  absl::MutexLock lock(&mu_);  // the first use of this series
  Family& family = families_.try_emplace(std::string(name)).first->second;
  if (family.type.empty()) {
    family.type = "histogram";
    family.bounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  }
  auto& h = family.histograms[key.substr(name.size())];
  if (!h) h = std::make_unique<Histogram>(family.bounds);
  series_[key].histogram = h.get();
  return h.get();
}

uint64_t Metrics::CounterValue(const std::string& name, LabelRefs labels) const {
  std::string text;
  AppendLabels(labels, &text);
  absl::MutexLock lock(&mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return 0;
  auto c = f->second.counters.find(text);
  return c == f->second.counters.end() ? 0 : c->second->load();
}

std::string Metrics::Render() const {
  struct ReadAtScrape {
    std::string name, help, type;
    GaugeFn fn;
  };
  std::vector<ReadAtScrape> scraped;
  std::string out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, f] : families_) {
      if (f.gauge) {
        scraped.push_back({name, f.help, f.type, f.gauge});
        continue;
      }
      absl::StrAppend(&out, "# HELP ", name, " ", f.help.empty() ? name : f.help, "\n");
      absl::StrAppend(&out, "# TYPE ", name, " ", f.type, "\n");
      for (const auto& [labels, c] : f.counters) absl::StrAppend(&out, name, labels, " ", c->load(), "\n");
      for (const auto& [labels, h] : f.histograms) h->Render(name, labels, &out);
    }
  }
  // Families read at scrape time (gauges, counters kept elsewhere) are read
  // outside the lock: their functions may take other locks.
  for (const ReadAtScrape& f : scraped) {
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const auto& [labels, value] : f.fn()) {
      absl::StrAppend(&out, f.name, LabelText(labels), " ", FormatValue(value), "\n");
    }
  }
  return out;
}

}  // namespace txcoord::coordinator
