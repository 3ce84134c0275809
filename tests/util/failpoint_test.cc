#include "util/failpoint.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "gtest/gtest.h"
#include "util/fiber.h"

namespace txcoord::failpoint {
namespace {

TEST(FailpointTest, UnarmedPointDoesNothing) {
  DisarmAll();
  EXPECT_TRUE(Hit("test.unarmed").ok());
  EXPECT_EQ(HitCount("test.unarmed"), 0);
}

TEST(FailpointTest, ErrorActionReturnsUnavailableAndCountsHits) {
  ASSERT_TRUE(Arm("test.error", "error").ok());
  absl::Status s = Hit("test.error");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("test.error"), std::string::npos);
  EXPECT_EQ(HitCount("test.error"), 1);
  Disarm("test.error");
  EXPECT_TRUE(Hit("test.error").ok());
}

TEST(FailpointTest, FiresOnlyAtTheKthHit) {
  ASSERT_TRUE(Arm("test.kth", "error@3").ok());
  EXPECT_TRUE(Hit("test.kth").ok());
  EXPECT_TRUE(Hit("test.kth").ok());
  EXPECT_FALSE(Hit("test.kth").ok());
  EXPECT_TRUE(Hit("test.kth").ok());
  DisarmAll();
}

TEST(FailpointTest, RejectsUnknownActions) {
  EXPECT_EQ(Arm("x", "explode").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Arm("x", "delay(abc)").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Arm("x", "crash@0").code(), absl::StatusCode::kInvalidArgument);
}

// A delay stands for a slow step of one call: on a fiber it parks that
// fiber, and the loop's other fibers go on meanwhile.
TEST(FailpointTest, ADelayOnAFiberHoldsOnlyThatFiber) {
  ASSERT_TRUE(Arm("test.delay", "delay(300)").ok());
  std::atomic<bool> delayed_done{false};
  std::atomic<bool> other_ran_during_delay{false};
  {
    util::FiberLoops loops(1);
    loops.Spawn([&] {
      (void)Hit("test.delay");
      delayed_done = true;
    });
    loops.Spawn([&] {
      util::Sleep(absl::Milliseconds(20));
      other_ran_during_delay = !delayed_done.load();
    });
  }  // waits for both fibers
  DisarmAll();
  EXPECT_TRUE(delayed_done.load());
  EXPECT_TRUE(other_ran_during_delay.load()) << "the delay held the loop's thread";
}

TEST(FailpointTest, CrashActionKillsTheProcessWithSigkill) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    (void)Arm("test.crash", "crash");
    (void)Hit("test.crash");
    _exit(0);  // not reached when the point works
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

}  // namespace
}  // namespace txcoord::failpoint
