// A two-phase bind configured as last resource (binds.<name>.last_resource):
// PostgreSQL commits locally with the decision row instead of PREPARE and
// COMMIT PREPARED, through both APIs, and gives the role up to a bind
// without 2PC. Real PostgreSQL, MariaDB and SQLite, a real server on
// loopback. Crashes at every step: tests/crash (topology pglr_maria).
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "txcoord/v1/admin.grpc.pb.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class LastResourceTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    with_pg_last_resource_ = true;
    CoordinatorTest::SetUp();
  }

  // The metric samples whose line starts with `prefix`, one per line.
  std::string Samples(absl::string_view prefix) {
    std::string out;
    for (absl::string_view line : absl::StrSplit(server_->coordinator()->metrics().Render(), '\n')) {
      if (absl::StartsWith(line, prefix)) absl::StrAppend(&out, line, "\n");
    }
    return out;
  }
  std::string Prepares() { return Samples("txcoord_prepares_total{"); }

  // Rows of this node's decisions left in pglr's txcoord_decisions table
  // (fence tombstones aside), after waiting up to 5 s for their removal.
  std::string DecisionRowsLeft(const std::string& txn_id) {
    std::string n;
    for (int i = 0; i < 50; ++i) {
      n = PgDecisionRows(pg_uri_, txn_id);
      if (n == "0") break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return n;
  }

  const v1::Branch* BranchOf(const v1::Transaction& t, const std::string& bind) {
    for (const auto& b : t.branches()) {
      if (b.bind() == bind) return &b;
    }
    return nullptr;
  }
};

TEST_F(LastResourceTest, RunTransactionCommitsThePostgresBindWithoutPrepare) {
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"pglr", {Debit(pg_table_, 1, 7)}}, {"maria", {Credit(my_table_, 1, 7)}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 7);
  EXPECT_EQ(MyBalance(1), kInitial + 7);
  EXPECT_EQ(PreparedLeft(), 0);
  // MariaDB prepared; PostgreSQL never did.
  const std::string prepares = Prepares();
  EXPECT_THAT(prepares, HasSubstr("txcoord_prepares_total{bind=\"maria\",vote=\"prepared\"} 1"));
  EXPECT_THAT(prepares, Not(HasSubstr("txcoord_prepares_total{bind=\"pglr\"")));
  // Its local COMMIT with the decision row is timed as its commit step.
  EXPECT_THAT(Samples("txcoord_branch_step_duration_seconds_count{bind=\"pglr\""),
              HasSubstr("{bind=\"pglr\",step=\"commit\"} 1\n"));
  v1::Transaction t = GetTxn(resp.txn_id());
  EXPECT_EQ(t.state(), v1::COMMITTED);
  const v1::Branch* lr = BranchOf(t, "pglr");
  ASSERT_NE(lr, nullptr);
  EXPECT_TRUE(lr->last_resource());
  EXPECT_EQ(DecisionRowsLeft(resp.txn_id()), "0") << "the decision row was not removed after the END";
  // After a restart the outcome is still known (the row went only after a
  // journal sync made the END durable).
  StopServer();
  StartServer();
  EXPECT_EQ(GetTxn(resp.txn_id()).state(), v1::COMMITTED);
}

TEST_F(LastResourceTest, SessionCommitChoosesThePostgresBindAndAbortsCleanly) {
  std::string txn_id;
  {
    std::string s = Open();
    v1::ExecuteResponse first;
    ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 2, 5))}, &first).ok());
    ASSERT_TRUE(Exec(s, "pglr", {Sql(Debit(pg_table_, 2, 5))}).ok());
    txn_id = first.txn_id();
    v1::CommitResponse resp;
    grpc::Status st = Commit(s, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.state(), v1::COMMITTED);
  }
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial - 5);
  EXPECT_EQ(MyBalance(2), kInitial + 5);
  EXPECT_THAT(Prepares(), Not(HasSubstr("txcoord_prepares_total{bind=\"pglr\"")));
  EXPECT_EQ(DecisionRowsLeft(txn_id), "0");

  // A statement failing on the last resource (CHECK balance >= 0): the
  // commit is refused and both binds are rolled back.
  {
    std::string s = Open();
    ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 3, 5))}).ok());
    grpc::Status st = Exec(s, "pglr", {Sql(Debit(pg_table_, 3, kInitial + 1))});
    EXPECT_FALSE(st.ok());
    EXPECT_FALSE(Commit(s).ok());
  }
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(LastResourceTest, ListBindsShowsTheSetting) {
  auto admin = v1::AdminService::NewStub(channel_);
  grpc::ClientContext ctx;
  v1::ListBindsResponse resp;
  grpc::Status st = admin->ListBinds(&ctx, v1::ListBindsRequest(), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  std::map<std::string, v1::BindStatus> by_name;
  for (const auto& b : resp.binds()) by_name[b.name()] = b;
  ASSERT_EQ(by_name.count("pglr"), 1u);
  EXPECT_TRUE(by_name["pglr"].two_phase());
  EXPECT_TRUE(by_name["pglr"].last_resource());
  EXPECT_FALSE(by_name["pg"].last_resource());
  EXPECT_FALSE(by_name["lite"].last_resource());  // no 2PC: always the last resource, not "configured"
}

TEST_F(LastResourceTest, ABindWithoutTwoPhaseKeepsTheRoleAndThePostgresBindPrepares) {
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(
      *stub_, {{"pglr", {Debit(pg_table_, 4, 3)}}, {"lite", {absl::StrCat("INSERT INTO ", lite_table_, " VALUES (4, 'audit')")}}},
      &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 4), kInitial - 3);
  EXPECT_THAT(Prepares(), HasSubstr("txcoord_prepares_total{bind=\"pglr\",vote=\"prepared\"} 1"));
  v1::Transaction t = GetTxn(resp.txn_id());
  const v1::Branch* lite = BranchOf(t, "lite");
  const v1::Branch* pg = BranchOf(t, "pglr");
  ASSERT_NE(lite, nullptr);
  ASSERT_NE(pg, nullptr);
  EXPECT_TRUE(lite->last_resource());
  EXPECT_FALSE(pg->last_resource());

  // Two binds configured or not: only the first configured one is the last
  // resource; "pg" (same database, not configured) prepares.
  v1::RunTransactionResponse resp2;
  st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 5, 2)}}, {"pglr", {"SELECT 1"}}}, &resp2);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(PgBalance(pg_uri_, 5), kInitial - 2);
  EXPECT_EQ(PreparedLeft(), 0);
}

}  // namespace
}  // namespace txcoord::testing
