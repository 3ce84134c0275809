// A commit decision whose journal write fails, through the gRPC service on
// real PostgreSQL and MariaDB (fault points in the journal):
//   - the write reached the log but reported failure: the decision is
//     withdrawn, the transaction rolled back everywhere, and a restart does
//     not bring the decision back;
//   - the write failed and the withdrawal too: the outcome is unknown, so
//     the branches stay prepared, txcoord reports UNAVAILABLE, takes no
//     further commit decision and rolls nothing back as an orphan; the next
//     start commits what the journal holds;
//   - the decision log's sync failed: that transaction is rolled back, and
//     every later two-phase commit is refused (NOT_SERVING) until the
//     restart, while recovery and one-phase commits go on.
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "util/failpoint.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

class JournalFailureTest : public CoordinatorTest {
 protected:
  void SetUp() override {
#ifndef TXC_FAILPOINTS_ENABLED
    GTEST_SKIP() << "fault points are compiled out of this build";
#endif
    CoordinatorTest::SetUp();
  }
  void TearDown() override {
    failpoint::DisarmAll();
    CoordinatorTest::TearDown();
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& service) {
    server_->UpdateHealth();
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = grpc::health::v1::Health::NewStub(channel_)->Check(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }
  // pg_prepared_xacts is cluster-wide: counted through one database only.
  int PreparedOnPgAndMaria() { return PreparedBranchesOfNode(node_id_, {pg_uri_}, maria_dsn_); }

  // A transfer of account 1 with the journal fault point `point` armed
  // (action "error"): it must be rolled back everywhere (ABORTED, both
  // balances unchanged, nothing left prepared). Returns its message.
  grpc::Status TransferRolledBackBy(const char* point, std::string* txn_id) {
    EXPECT_TRUE(failpoint::Arm(point, "error").ok());
    grpc::Status commit = TransferPgToMaria(1, txn_id);
    failpoint::DisarmAll();
    EXPECT_EQ(commit.error_code(), grpc::StatusCode::ABORTED) << commit.error_message();
    EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial);
    EXPECT_EQ(MyBalance(1), kInitial);
    EXPECT_EQ(PreparedLeft(), 0);
    return commit;
  }

  // Restarts txcoord: the journal must not hold `txn_id` (withdrawn), and
  // account 1 stays untouched on both databases.
  void RestartAndExpectWithdrawn(const std::string& txn_id) {
    StopServer();
    StartServer();
    auto record = server_->coordinator()->journal()->Find(txn_id);
    ASSERT_TRUE(record.ok()) << record.status();
    EXPECT_FALSE(record->has_value()) << "the withdrawn decision came back";
    EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial);
    EXPECT_EQ(MyBalance(1), kInitial);
  }

  // The next two-phase commit (account 2) is refused with UNAVAILABLE
  // naming `why`, and rolled back on both databases.
  void ExpectTwoPhaseCommitRefused(const char* why) {
    grpc::Status second = TransferPgToMaria(2);
    EXPECT_EQ(second.error_code(), grpc::StatusCode::UNAVAILABLE) << second.error_message();
    EXPECT_THAT(second.error_message(), HasSubstr(why));
    EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial);
    EXPECT_EQ(MyBalance(2), kInitial);
  }
};

TEST_F(JournalFailureTest, DecisionThatReachedTheLogIsWithdrawnAndStaysRolledBack) {
  std::string txn_id;
  grpc::Status commit = TransferRolledBackBy("journal.after_decision_write", &txn_id);
  EXPECT_THAT(commit.error_message(), HasSubstr("journal could not record the decision"));
  EXPECT_TRUE(server_->coordinator()->DecisionHealth().ok()) << "the withdrawal succeeded: decisions go on";

  // The restart finds no decision to re-drive: the rollback stands.
  RestartAndExpectWithdrawn(txn_id);

  EXPECT_TRUE(TransferPgToMaria(2).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial - 10);
  EXPECT_EQ(MyBalance(2), kInitial + 10);
}

TEST_F(JournalFailureTest, UnwithdrawableDecisionLeavesBranchesPreparedUntilTheRestartDecides) {
  ASSERT_TRUE(failpoint::Arm("journal.after_decision_write", "error").ok());
  ASSERT_TRUE(failpoint::Arm("journal.withdraw_decision", "error").ok());
  std::string txn_id;
  grpc::Status commit = TransferPgToMaria(1, &txn_id);
  failpoint::DisarmAll();
  EXPECT_EQ(commit.error_code(), grpc::StatusCode::UNAVAILABLE) << commit.error_message();
  EXPECT_THAT(commit.error_message(), HasSubstr("outcome is not known yet"));
  EXPECT_EQ(PreparedOnPgAndMaria(), 2) << "both branches wait, prepared, for the restart";
  absl::Status health = server_->coordinator()->DecisionHealth();
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_THAT(server_->coordinator()->metrics().Render(), HasSubstr("\ntxcoord_decisions_halted 1\n"));
  EXPECT_EQ(Health("txcoord.v1.SessionService"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  // No further decision: the next two-phase commit is refused and rolled
  // back (nothing of it is in the journal), its branches released.
  ExpectTwoPhaseCommitRefused("until it is restarted");

  // Recovery passes (every 500 ms here; the orphan safety interval is 2 s)
  // leave the undecided branches alone.
  coordinator::RecoveryReport report = server_->coordinator()->RecoverNow();
  EXPECT_EQ(report.orphans_rolled_back + report.redriven, 0);
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(PreparedOnPgAndMaria(), 2);

  // The journal holds the decision (the write reached it): the restart
  // commits both branches.
  StopServer();
  StartServer();
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 10);
  EXPECT_EQ(MyBalance(1), kInitial + 10);
  v1::Transaction t = GetTxn(txn_id);
  EXPECT_EQ(t.state(), v1::COMMITTED) << t.ShortDebugString();
  EXPECT_TRUE(server_->coordinator()->DecisionHealth().ok());
  EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(JournalFailureTest, FailedDecisionLogSyncStopsTwoPhaseCommitsUntilTheRestart) {
  std::string txn_id;
  TransferRolledBackBy("journal.decision_log_sync", &txn_id);

  // The log's tail is unknown: no further decision until the restart.
  EXPECT_TRUE(server_->coordinator()->DecisionHealth().ok()) << "recovery passes go on";
  absl::Status health = server_->coordinator()->CommitHealth();
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.message()), HasSubstr("until txcoord is restarted"));
  EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  ExpectTwoPhaseCommitRefused("until txcoord is restarted");
  EXPECT_EQ(PreparedLeft(), 0);

  RestartAndExpectWithdrawn(txn_id);
  EXPECT_TRUE(server_->coordinator()->CommitHealth().ok());
  EXPECT_TRUE(TransferPgToMaria(3).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial - 10);
  EXPECT_EQ(MyBalance(3), kInitial + 10);
}

}  // namespace
}  // namespace txcoord::testing
