// RunParallel: every index exactly once, concurrency when workers are free,
// and no return before a worker's branch has finished.
#include "coordinator/parallel.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace txcoord::coordinator {
namespace {

TEST(RunParallelTest, RunsEveryIndexExactlyOnceUnderContention) {
  // Many callers with instant branches: branches are taken back by the
  // callers and run by workers in every interleaving.
  constexpr int kCallers = 8;
  constexpr int kRounds = 2000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const size_t n = 1 + static_cast<size_t>((round + t) % 4);
        std::vector<std::atomic<int>> runs(n);
        RunParallel(n, [&](size_t i) { runs[i].fetch_add(1); });
        for (size_t i = 0; i < n; ++i) {
          if (runs[i].load() != 1) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(RunParallelTest, ReturnsOnlyAfterAWorkersBranchFinished) {
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> slow_done{false};
    std::atomic<bool> started_on_worker{false};
    const std::thread::id caller = std::this_thread::get_id();
    RunParallel(2, [&](size_t i) {
      if (i == 0) {
        // Give a worker time to start branch 1, so that it is not taken back.
        for (int k = 0; k < 200 && !started_on_worker.load(); ++k) absl::SleepFor(absl::Milliseconds(1));
        return;
      }
      if (std::this_thread::get_id() != caller) started_on_worker = true;
      absl::SleepFor(absl::Milliseconds(20));
      slow_done = true;
    });
    EXPECT_TRUE(slow_done.load()) << "round " << round;
  }
}

TEST(RunParallelTest, BranchesRunConcurrentlyWhenWorkersAreFree) {
  // Each branch waits until all three have started: run one after the
  // other, they would each give up after 5 s and report it.
  constexpr size_t kBranches = 3;
  absl::Mutex mu;
  size_t arrived = 0;
  std::atomic<int> gave_up{0};
  RunParallel(kBranches, [&](size_t) {
    absl::MutexLock lock(&mu);
    ++arrived;
    auto all_here = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return arrived == kBranches; };
    if (!mu.AwaitWithTimeout(absl::Condition(&all_here), absl::Seconds(5))) gave_up.fetch_add(1);
  });
  EXPECT_EQ(gave_up.load(), 0);
}

}  // namespace
}  // namespace txcoord::coordinator
