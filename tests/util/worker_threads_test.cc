// WorkerThreads: threads start for work, up to the bound, and end when
// idle; RunBlocking runs a fiber's call on them and parks the fiber.
#include "util/worker_threads.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "util/blocking.h"
#include "util/fiber.h"

namespace txcoord::util {
namespace {

// Threads are started for work and end when idle: an idle pool keeps none.
TEST(WorkerThreadsTest, ThreadsGrowWithTheWorkAndEndWhenIdle) {
  // Never destroyed (its threads may outlive the test body by a moment).
  auto* workers = new WorkerThreads("txc-test", 4, absl::Milliseconds(200));
  EXPECT_EQ(workers->threads(), 0);
  absl::Mutex mu;
  int running = 0;
  bool release = false;
  for (int i = 0; i < 6; ++i) {
    workers->Submit([&] {
      absl::MutexLock lock(&mu);
      ++running;
      mu.Await(absl::Condition(&release));
      --running;
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto four = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return running == 4; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&four), absl::Seconds(5)));
  }
  EXPECT_EQ(workers->threads(), 4) << "bounded by max_threads";
  {
    absl::MutexLock lock(&mu);
    release = true;
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return running == 0; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(5)));
  }
  for (int i = 0; i < 300 && workers->threads() > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(workers->threads(), 0) << "idle threads end";
}

// A thread counts as idle before `then` runs: a task submitted by `then`
// (a fiber woken by its call's end, making its next call) finds it and
// starts no thread. 50 calls one after another keep one thread.
TEST(WorkerThreadsTest, WorkSubmittedByThenReusesTheThread) {
  auto* workers = new WorkerThreads("txc-test", 64, absl::Seconds(5));
  absl::Mutex mu;
  int left = 50;
  std::function<void()> next = [&] {
    workers->Submit([] { absl::SleepFor(absl::Microseconds(100)); },
                    [&] {
                      absl::MutexLock lock(&mu);
                      if (--left > 0) next();
                    });
  };
  next();
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return left == 0; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
  }
  EXPECT_EQ(workers->threads(), 1);
}

// On a fiber, a blocking call runs on the pool while the fiber parks: the
// loop runs its other fibers meanwhile (one loop, so a call that blocked
// the loop's thread would hold the other fiber up).
TEST(RunBlockingTest, TheLoopRunsOtherFibersWhileACallBlocks) {
  FiberLoops loops(1);
  std::atomic<bool> ticked{false};
  std::atomic<bool> blocked_saw_tick{false};
  std::atomic<int> done{0};
  std::thread::id caller_thread, call_thread;
  loops.Spawn([&] {
    caller_thread = std::this_thread::get_id();
    const int got = RunBlocking([&] {
      call_thread = std::this_thread::get_id();
      for (int i = 0; i < 500 && !ticked.load(); ++i) absl::SleepFor(absl::Milliseconds(10));
      blocked_saw_tick = ticked.load();
      return 42;
    });
    EXPECT_EQ(got, 42);
    done.fetch_add(1);
  });
  loops.Spawn([&] {
    Sleep(absl::Milliseconds(5));
    ticked = true;
    done.fetch_add(1);
  });
  for (int i = 0; i < 1000 && done.load() < 2; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(done.load(), 2);
  EXPECT_TRUE(blocked_saw_tick.load()) << "the other fiber ran while the call blocked";
  EXPECT_NE(caller_thread, call_thread) << "the call ran on a pool thread";
}

// Off a fiber it runs in place.
TEST(RunBlockingTest, OffAFiberTheCallRunsInPlace) {
  std::thread::id call_thread;
  RunBlocking([&] { call_thread = std::this_thread::get_id(); });
  EXPECT_EQ(call_thread, std::this_thread::get_id());
}

}  // namespace
}  // namespace txcoord::util
