#include "util/fiber.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/socket_pair.h"

namespace txcoord::util {
namespace {

using ::txcoord::testing::SocketPair;

TEST(FiberTest, AFiberWaitingForASocketLetsTheOthersOfItsLoopRun) {
  SocketPair s;
  int revents = -2;
  char got = 0;
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      // Only the second fiber, on the same (only) thread, writes: if this
      // wait held the thread, it would end at its deadline with nothing.
      revents = WaitFd(s.fd[0], POLLIN, absl::Now() + absl::Seconds(10));
      if (revents > 0) (void)!::read(s.fd[0], &got, 1);
    });
    loops.Spawn([&] {
      Sleep(absl::Milliseconds(20));
      (void)!::write(s.fd[1], "x", 1);
    });
  }  // waits for both fibers
  EXPECT_TRUE(revents > 0 && (revents & POLLIN)) << revents;
  EXPECT_EQ(got, 'x');
}

TEST(FiberTest, WaitFdEndsAtItsDeadlineOnAFiberAndOnAThread) {
  SocketPair s;
  std::atomic<int> on_fiber{-2};
  absl::Duration fiber_took;
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      const absl::Time start = absl::Now();
      on_fiber = WaitFd(s.fd[0], POLLIN, start + absl::Milliseconds(50));
      fiber_took = absl::Now() - start;
    });
  }
  EXPECT_EQ(on_fiber.load(), 0);
  EXPECT_GE(fiber_took, absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  EXPECT_EQ(WaitFd(s.fd[0], POLLIN, start + absl::Milliseconds(30)), 0);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  // Ready at once, on a thread.
  (void)!::write(s.fd[1], "y", 1);
  EXPECT_TRUE(WaitFd(s.fd[0], POLLIN, absl::InfiniteFuture()) & POLLIN);
}

TEST(FiberTest, ASocketNumberReusedOrWaitedOnAfterATimeoutIsWaitedOnAgain) {
  std::atomic<int> checks{0};
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      int numbers[2];
      {
        SocketPair s;
        numbers[0] = s.fd[0];
        // A wait that ends at its deadline, then data: a later wait sees it
        // (and nothing is delivered to the first wait's gone frame).
        if (WaitFd(s.fd[0], POLLIN, absl::Now() + absl::Milliseconds(5)) == 0) ++checks;
        (void)!::write(s.fd[1], "a", 1);
        Sleep(absl::Milliseconds(5));
        if (WaitFd(s.fd[0], POLLIN, absl::Now() + absl::Seconds(5)) & POLLIN) ++checks;
      }  // closed: the kernel drops it from the loop's epoll set
      SocketPair again;  // likely the same numbers
      numbers[1] = again.fd[0];
      (void)!::write(again.fd[1], "b", 1);
      if (WaitFd(again.fd[0], POLLIN, absl::Now() + absl::Seconds(5)) & POLLIN) ++checks;
      if (numbers[0] == numbers[1]) ++checks;
    });
  }
  EXPECT_EQ(checks.load(), 4);
}

TEST(FiberTest, PollForOneSocketOnAFiberWaitsOnTheLoop) {
  SocketPair s;
  int polled = -2;
  short revents = 0;
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      // ::poll, as a client library calls it: if it held the thread, the
      // writer below (same thread) could not run and it would time out.
      pollfd p{s.fd[0], POLLIN, 0};
      polled = ::poll(&p, 1, 5000);
      revents = p.revents;
    });
    loops.Spawn([&] {
      Sleep(absl::Milliseconds(20));
      (void)!::write(s.fd[1], "p", 1);
    });
  }
  EXPECT_EQ(polled, 1);
  EXPECT_TRUE(revents & POLLIN);
  // Off a fiber, and with a zero timeout, it is the kernel's poll.
  pollfd p{s.fd[0], POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  char c;
  (void)!::read(s.fd[0], &c, 1);
  p.revents = 0;
  EXPECT_EQ(::poll(&p, 1, 20), 0);
}

TEST(FiberTest, SleepingFibersShareTheirThreadAndSleepTheirTime) {
  std::atomic<int> done{0};
  const absl::Time start = absl::Now();
  {
    FiberLoops loops(1);
    // 200 fibers sleeping 100 ms each on one thread: together about 100 ms,
    // not 20 s, unless a sleep holds the thread.
    for (int i = 0; i < 200; ++i) {
      loops.Spawn([&] {
        Sleep(absl::Milliseconds(100));
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 200);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(FiberTest, FibersRunOnTheLoopsThreadsOnly) {
  absl::Mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> done{0};
  {
    FiberLoops loops(2);
    EXPECT_EQ(loops.loops(), 2);
    for (int i = 0; i < 2000; ++i) {
      loops.Spawn([&] {
        EXPECT_TRUE(OnFiber());
        Sleep(absl::Milliseconds(1));
        absl::MutexLock lock(&mu);
        threads.insert(std::this_thread::get_id());
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 2000);
  EXPECT_LE(threads.size(), 2u);
  EXPECT_FALSE(threads.count(std::this_thread::get_id()));
  EXPECT_FALSE(OnFiber());
}

TEST(FiberTest, AWaitWordSetByAnotherFiberOfTheSameLoopWakesItsWaiter) {
  std::atomic<WaitWord*> published{nullptr};
  std::atomic<uint32_t> seen{0};
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      WaitWord word(0);
      published = &word;
      seen = word.WaitWhile(0);  // holding the thread here would hang the setter
    });
    loops.Spawn([&] {
      while (published.load() == nullptr) Sleep(absl::Milliseconds(1));
      WaitWord::Set(published.load(), 7);
    });
  }
  EXPECT_EQ(seen.load(), 7u);
}

TEST(FiberTest, AWaitWordSetFromAThreadWhileItsFiberParksIsNeverLost) {
  // A thread sets each word as soon as it appears, so that the wake-up
  // races the fiber's park: a lost wake-up hangs this test.
  constexpr int kRounds = 5000;
  std::atomic<WaitWord*> current{nullptr};
  std::atomic<int> rounds{0};
  std::thread setter([&] {
    for (int i = 0; i < kRounds; ++i) {
      WaitWord* w;
      while ((w = current.exchange(nullptr)) == nullptr) std::this_thread::yield();
      WaitWord::Set(w, 1);
    }
  });
  {
    FiberLoops loops(2);
    loops.Spawn([&] {
      for (int i = 0; i < kRounds; ++i) {
        WaitWord word(0);
        current = &word;
        if (word.WaitWhile(0) == 1) ++rounds;
      }
    });
  }
  setter.join();
  EXPECT_EQ(rounds.load(), kRounds);
}

TEST(FiberTest, AWaitWordOnAPlainThreadIsAFutex) {
  WaitWord word(0);
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    WaitWord::Set(&word, 3);
  });
  EXPECT_EQ(word.WaitWhile(0), 3u);
  setter.join();
}

TEST(FiberTest, TheLoopsCountTheirFibers) {
  absl::Notification release;
  FiberLoops loops(2);
  std::atomic<int> started{0};
  for (int i = 0; i < 10; ++i) {
    loops.Spawn([&] {
      ++started;
      while (!release.HasBeenNotified()) Sleep(absl::Milliseconds(1));
    });
  }
  while (started.load() < 10) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(loops.fibers(), 10);
  release.Notify();
  for (int i = 0; i < 5000 && loops.fibers() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(loops.fibers(), 0);
}

// Which thread each lookup of the recording name server ran on.
absl::Mutex lookups_mu;
std::vector<std::pair<std::string, std::thread::id>> lookups ABSL_GUARDED_BY(lookups_mu);

int RecordingNameServer(const char* node, const char*, const addrinfo*, addrinfo** res) {
  absl::MutexLock lock(&lookups_mu);
  lookups.emplace_back(node, std::this_thread::get_id());
  *res = nullptr;
  return EAI_NONAME;
}

// The process's getaddrinfo on a fiber: a host name is looked up on another
// thread (the blocking pool), an address written out on the loop's own
// thread; the lookup's result comes back as it is.
TEST(FiberTest, AHostNameIsLookedUpOffTheLoopAndANumericAddressInPlace) {
  {
    absl::MutexLock lock(&lookups_mu);
    lookups.clear();
  }
  ReplaceGetaddrinfoForTest(RecordingNameServer);
  std::thread::id loop_thread;
  std::vector<int> results;
  {
    FiberLoops loops(1);
    loops.Spawn([&] {
      loop_thread = std::this_thread::get_id();
      for (const char* node : {"db.example.test", "127.0.0.1", "::1"}) {
        addrinfo* res = nullptr;
        results.push_back(getaddrinfo(node, "5432", nullptr, &res));
      }
    });
  }
  ReplaceGetaddrinfoForTest(nullptr);
  EXPECT_EQ(results, std::vector<int>({EAI_NONAME, EAI_NONAME, EAI_NONAME}));
  absl::MutexLock lock(&lookups_mu);
  ASSERT_EQ(lookups.size(), 3u);
  EXPECT_EQ(lookups[0].first, "db.example.test");
  EXPECT_NE(lookups[0].second, loop_thread) << "the name was looked up on the loop's thread";
  EXPECT_EQ(lookups[1].first, "127.0.0.1");
  EXPECT_EQ(lookups[1].second, loop_thread);
  EXPECT_EQ(lookups[2].first, "::1");
  EXPECT_EQ(lookups[2].second, loop_thread);
}

}  // namespace
}  // namespace txcoord::util
