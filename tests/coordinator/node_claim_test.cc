// One node id, one coordinator: txcoord claims its node id on every bind
// (PostgreSQL advisory lock, MariaDB GET_LOCK) for as long as it runs.
//   - a second coordinator with the same node id and binds (its own
//     journal) is refused at start, naming the node id and the bind, and
//     starts once the first has stopped;
//   - a claim lost with its connection is taken again by the next recovery
//     pass;
//   - a claim lost and taken by someone else halts decisions: the next
//     two-phase commit is refused and rolled back.
#include <future>

#include <pqxx/pqxx>

#include "gmock/gmock.h"
#include "participants/xid.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

class NodeClaimTest : public CoordinatorTest {
 protected:
  // The backend holding this node's advisory lock for bind "pg".
  std::string ClaimHolderPid() {
    const int64_t key = participants::NodeClaimKey(node_id_, "pg");
    return PgScalar(pg_uri_, absl::StrCat("SELECT coalesce(min(pid), 0) FROM pg_locks WHERE locktype = 'advisory' "
                                          "AND granted AND objsubid = 1 AND classid::bigint = ",
                                          key >> 32, " AND objid::bigint = ", key & 0xffffffffll));
  }
};

TEST_F(NodeClaimTest, ASecondCoordinatorWithTheSameNodeIdIsRefusedUntilTheFirstStops) {
  coordinator::Config second = MakeConfig();
  second.journal.dir = tmp_.Sub("journal-second");
  auto refused = coordinator::TxcoordServer::Start(second);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(refused.status().message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat("node_id \"", node_id_, "\" is in use by another coordinator")));
  EXPECT_THAT(message, HasSubstr("bind maria"));  // binds are claimed in name order: lite (no lock), maria, …
  EXPECT_THAT(message, HasSubstr("GET_LOCK"));

  // PostgreSQL alone refuses it too, naming the holder.
  coordinator::Config pg_only = second;
  std::erase_if(pg_only.binds, [](const participants::BindOptions& b) { return b.name != "pg"; });
  auto refused_pg = coordinator::TxcoordServer::Start(pg_only);
  ASSERT_FALSE(refused_pg.ok());
  EXPECT_THAT(std::string(refused_pg.status().message()), HasSubstr("PostgreSQL advisory lock"));
  EXPECT_THAT(std::string(refused_pg.status().message()), HasSubstr("held by pid " + ClaimHolderPid()));

  // The first one was not disturbed.
  EXPECT_TRUE(TransferPgToMaria(1).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 10);

  StopServer();
  auto started = coordinator::TxcoordServer::Start(second);
  ASSERT_TRUE(started.ok()) << started.status();
}

TEST_F(NodeClaimTest, AClaimLostWithItsConnectionIsTakenAgain) {
  const std::string pid = ClaimHolderPid();
  ASSERT_NE(pid, "0");
  PgScalar(pg_uri_, "SELECT pg_terminate_backend(" + pid + ")");
  server_->coordinator()->RecoverNow();
  const std::string again = ClaimHolderPid();
  EXPECT_NE(again, "0");
  EXPECT_NE(again, pid);
  EXPECT_TRUE(server_->coordinator()->DecisionHealth().ok());
  EXPECT_TRUE(TransferPgToMaria(2).ok());
}

TEST_F(NodeClaimTest, AClaimTakenByAnotherSessionHaltsDecisions) {
  const std::string pid = ClaimHolderPid();
  ASSERT_NE(pid, "0");
  // Stand-in for a second coordinator that started while the claim was
  // lost: queued on the lock before the first's session ends, it is granted
  // the lock before any recovery pass can take it back.
  pqxx::connection other(pg_uri_);
  std::future<bool> taken = std::async(std::launch::async, [&] {
    try {
      pqxx::nontransaction n(other);
      n.exec("SET lock_timeout = '10s'");
      n.exec_params("SELECT pg_advisory_lock($1::bigint)", participants::NodeClaimKey(node_id_, "pg"));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  });
  // Wait until the request is queued behind the coordinator's lock.
  for (int i = 0; i < 100 && PgScalar(pg_uri_, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == "0"; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  PgScalar(pg_uri_, "SELECT pg_terminate_backend(" + pid + ")");
  ASSERT_TRUE(taken.get()) << "the stand-in did not get the lock";
  server_->coordinator()->RecoverNow();
  absl::Status halted = server_->coordinator()->DecisionHealth();
  EXPECT_EQ(halted.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(halted.message()), HasSubstr("in use by another coordinator"));
  EXPECT_THAT(server_->coordinator()->metrics().Render(), HasSubstr("\ntxcoord_decisions_halted 1\n"));

  grpc::Status refused = TransferPgToMaria(3);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

}  // namespace
}  // namespace txcoord::testing
