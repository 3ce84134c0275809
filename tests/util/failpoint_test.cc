#include "util/failpoint.h"

#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

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
