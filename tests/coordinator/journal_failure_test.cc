// A commit decision whose journal write or sync fails, through the gRPC
// service on real PostgreSQL and MariaDB (fault points in the journal):
// fail-stop. Whether the decision reached the disk is unknown, so the
// commit answers UNAVAILABLE (never "rolled back"), both branches stay
// prepared, txcoord takes no further decision and runs no recovery pass
// (NOT_SERVING, txcoord_decisions_halted 1); the next start commits if the
// journal holds the decision and rolls back if not, and GetTransaction
// agrees with every branch.
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
  // (action "error"), then the restart: see the file comment.
  // `journal_holds_it`: whether the decision reached the journal's log.
  void FailStopThenRestart(const char* point, bool journal_holds_it) {
    ASSERT_TRUE(failpoint::Arm(point, "error").ok());
    std::string txn_id;
    grpc::Status commit = TransferPgToMaria(1, &txn_id);
    failpoint::DisarmAll();
    EXPECT_EQ(commit.error_code(), grpc::StatusCode::UNAVAILABLE) << commit.error_message();
    EXPECT_THAT(commit.error_message(), HasSubstr("outcome is not known yet"));
    EXPECT_EQ(PreparedOnPgAndMaria(), 2) << "both branches wait, prepared, for the restart";
    EXPECT_EQ(server_->coordinator()->DecisionHealth().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    EXPECT_EQ(Health("txcoord.v1.SessionService"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    EXPECT_THAT(server_->coordinator()->metrics().Render(), HasSubstr("\ntxcoord_decisions_halted 1\n"));
    v1::Transaction before = GetTxn(txn_id);
    EXPECT_NE(before.state(), v1::ABORTED) << "never reported rolled back";
    EXPECT_NE(before.state(), v1::COMMITTED);

    // No further decision: the next two-phase commit is refused and rolled
    // back (nothing of it is in the journal), its branches released.
    ExpectTwoPhaseCommitRefused("until it is restarted");

    // Recovery passes (every 500 ms here; the orphan safety interval is
    // 2 s) leave the undecided branches alone.
    coordinator::RecoveryReport report = server_->coordinator()->RecoverNow();
    EXPECT_EQ(report.orphans_rolled_back + report.redriven, 0);
    absl::SleepFor(absl::Seconds(3));
    EXPECT_EQ(PreparedOnPgAndMaria(), 2);

    // The restart settles the journal and the branches alike.
    StopServer();
    StartServer();
    EXPECT_EQ(PreparedLeft(), 0);
    const int64_t moved = journal_holds_it ? 10 : 0;
    EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - moved);
    EXPECT_EQ(MyBalance(1), kInitial + moved);
    v1::Transaction t = GetTxn(txn_id);
    EXPECT_EQ(t.state(), journal_holds_it ? v1::COMMITTED : v1::ABORTED) << t.ShortDebugString();
    EXPECT_TRUE(server_->coordinator()->DecisionHealth().ok());
    EXPECT_EQ(Health(""), grpc::health::v1::HealthCheckResponse::SERVING);
    // Decisions go on.
    EXPECT_TRUE(TransferPgToMaria(3).ok());
    EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial - 10);
    EXPECT_EQ(MyBalance(3), kInitial + 10);
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

// The write reached the log, then reported failure.
TEST_F(JournalFailureTest, DecisionWrittenButReportedFailedIsCommittedAtTheRestart) {
  FailStopThenRestart("journal.after_decision_write", /*journal_holds_it=*/true);
}

// The decision log's fdatasync failed (EIO) after the write.
TEST_F(JournalFailureTest, FailedDecisionLogSyncIsSettledAtTheRestart) {
  FailStopThenRestart("journal.decision_log_sync", /*journal_holds_it=*/true);
}

// Nothing was written: the restart rolls back.
TEST_F(JournalFailureTest, DecisionNeverWrittenIsRolledBackAtTheRestart) {
  FailStopThenRestart("journal.before_decision_sync", /*journal_holds_it=*/false);
}

// Decisions synced in RocksDB's own WAL: its sync failed (EIO).
class WalJournalFailureTest : public JournalFailureTest {
 protected:
  void SetUp() override {
    decision_log_ = false;
    JournalFailureTest::SetUp();
  }
};

TEST_F(WalJournalFailureTest, FailedWalSyncIsSettledAtTheRestart) {
  FailStopThenRestart("journal.wal_sync", /*journal_holds_it=*/true);
}

}  // namespace
}  // namespace txcoord::testing
