#include "util/io_watchdog.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/socket_pair.h"

namespace txcoord::util {
namespace {

using ::txcoord::testing::SocketPair;

TEST(IoWatchdogTest, ABlockedReadPastItsDeadlineEndsWithTheSocketShutDown) {
  SocketPair s;
  const uint64_t before = IoWatchdog::fired_total();
  IoWatchdog::Watch w(s.fd[0], absl::Milliseconds(200));
  auto start = std::chrono::steady_clock::now();
  char c;
  // Nothing is ever written to fd[1]: only the watchdog ends this read.
  ssize_t n = ::recv(s.fd[0], &c, 1, 0);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(n, 0);
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::seconds(20));
  EXPECT_TRUE(w.Disarm());
  EXPECT_TRUE(w.Disarm());  // the answer is kept
  EXPECT_EQ(IoWatchdog::fired_total(), before + 1);
}

TEST(IoWatchdogTest, ADisarmedWatchLeavesTheSocketAlone) {
  SocketPair s;
  {
    IoWatchdog::Watch w(s.fd[0], absl::Milliseconds(100));
    EXPECT_FALSE(w.Disarm());
  }
  {
    IoWatchdog::Watch w(s.fd[0], absl::Milliseconds(100));
  }  // disarmed by the destructor
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::send(s.fd[1], "x", 1, 0), 1);
  char c = 0;
  EXPECT_EQ(::recv(s.fd[0], &c, 1, 0), 1);
  EXPECT_EQ(c, 'x');
}

TEST(IoWatchdogTest, AnEarlierDeadlineArmedLaterStillFiresFirst) {
  SocketPair late, early;
  IoWatchdog::Watch far(late.fd[0], absl::Hours(1));
  IoWatchdog::Watch soon(early.fd[0], absl::Milliseconds(100));
  char c;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(::recv(early.fd[0], &c, 1, 0), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  EXPECT_TRUE(soon.Disarm());
  EXPECT_FALSE(far.Disarm());
}

// With nothing armed the watchdog's thread dozes and is not woken for a
// deadline later than its next look: such a watch still fires in time.
TEST(IoWatchdogTest, AWatchArmedWhileNothingElseIsStillFires) {
  SocketPair s;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // nothing armed now
  IoWatchdog::Watch w(s.fd[0], absl::Milliseconds(1500));
  auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_EQ(::recv(s.fd[0], &c, 1, 0), 0);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(1400));
  EXPECT_LT(waited, std::chrono::seconds(20));
  EXPECT_TRUE(w.Disarm());
}

TEST(IoWatchdogTest, NoTimeoutArmsNothing) {
  SocketPair s;
  IoWatchdog::Watch none(s.fd[0], absl::ZeroDuration());
  IoWatchdog::Watch bad(-1, absl::Milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(none.Disarm());
  EXPECT_FALSE(bad.Disarm());
}

}  // namespace
}  // namespace txcoord::util
