#include "coordinator/metrics.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txcoord::coordinator {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CountersAndHistogramsRenderWithEscapedLabels) {
  Metrics m;
  m.DescribeCounter("txcoord_things_total", "Things.");
  m.Increment("txcoord_things_total", {{"bind", "a\"b\\c\nd"}}, 2);
  m.Increment("txcoord_things_total", {{"bind", "a\"b\\c\nd"}});
  m.Increment("txcoord_things_total");
  m.Observe("txcoord_step_seconds", absl::Milliseconds(3), {{"bind", "pg"}, {"step", "commit"}});
  m.Observe("txcoord_step_seconds", absl::Seconds(20), {{"bind", "pg"}, {"step", "commit"}});
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("# HELP txcoord_things_total Things.\n# TYPE txcoord_things_total counter\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_things_total{bind=\"a\\\"b\\\\c\\nd\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_things_total 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE txcoord_step_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_step_seconds_bucket{bind=\"pg\",step=\"commit\",le=\"0.0025\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_step_seconds_bucket{bind=\"pg\",step=\"commit\",le=\"0.005\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_step_seconds_bucket{bind=\"pg\",step=\"commit\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_step_seconds_count{bind=\"pg\",step=\"commit\"} 2\n"));
  EXPECT_EQ(m.CounterValue("txcoord_things_total", {{"bind", "a\"b\\c\nd"}}), 3u);
  EXPECT_EQ(m.CounterValue("txcoord_things_total"), 1u);
}

// Gauges and counters kept elsewhere are read at every scrape and typed.
TEST(MetricsTest, ScrapeTimeGaugesAndCountersRenderWithTheirType) {
  Metrics m;
  double level = 2;
  uint64_t done = 7;
  m.RegisterGauge("txcoord_level", "A level.", [&] {
    return std::vector<std::pair<Labels, double>>{{{{"bind", "pg"}}, level}};
  });
  m.RegisterCounterFn("txcoord_done_total", "Things done.", [&] {
    return std::vector<std::pair<Labels, double>>{{{}, double(done)}};
  });
  std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr("# HELP txcoord_level A level.\n# TYPE txcoord_level gauge\n"
                              "txcoord_level{bind=\"pg\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("# HELP txcoord_done_total Things done.\n# TYPE txcoord_done_total counter\n"
                              "txcoord_done_total 7\n"));
  level = 3;
  done = 9;
  text = m.Render();
  EXPECT_THAT(text, HasSubstr("txcoord_level{bind=\"pg\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("txcoord_done_total 9\n"));
}

// Series created and recorded from many threads at once: none is lost.
TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics m;
  constexpr int kThreads = 8, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        m.Increment("txcoord_total", {{"bind", i % 2 ? "odd" : "even"}});
        m.Increment("txcoord_per_thread_total", {{"t", std::to_string(t)}});
        m.Observe("txcoord_seconds", absl::Microseconds(i));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(m.CounterValue("txcoord_total", {{"bind", "odd"}}), uint64_t{kThreads} * kEach / 2);
  EXPECT_EQ(m.CounterValue("txcoord_total", {{"bind", "even"}}), uint64_t{kThreads} * kEach / 2);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(m.CounterValue("txcoord_per_thread_total", {{"t", std::to_string(t)}}), uint64_t{kEach});
  }
  EXPECT_THAT(m.Render(), HasSubstr("txcoord_seconds_count " + std::to_string(kThreads * kEach) + "\n"));
}

}  // namespace
}  // namespace txcoord::coordinator
