// A branch is txcoord's to begin and end: SQL that would end, start or
// prepare a bind's transaction is refused before it is sent (sessions,
// RunTransaction); a branch the database ended anyway (the guard missing a
// statement: an injected fault) makes the transaction HEURISTIC, never
// COMMITTED or ABORTED; session state never reaches the next transaction on
// a pooled connection; a transaction that can only roll back does so at
// once. TransactionService.Execute's cases are in transaction_service_test.
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "util/failpoint.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

class BranchGuardTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    with_pg_odbc_ = true;
    CoordinatorTest::SetUp();
  }
  void TearDown() override {
    failpoint::DisarmAll();
    CoordinatorTest::TearDown();
  }

  int PgPrepared(const std::string& gid) {
    return std::stoi(PgScalar(pg_uri_, absl::StrCat("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '", gid, "'")));
  }
};

// Statements refused on each backend, in their common spellings.
const std::vector<std::pair<std::string, std::string>>& RefusedForms() {
  static const auto* forms = new std::vector<std::pair<std::string, std::string>>{
      {"pg", "COMMIT"},
      {"pg", "END"},
      {"pg", "COMMIT AND CHAIN"},
      {"pg", "/* c */ commit"},
      {"pg", "PREPARE TRANSACTION 'x1'"},
      {"pg", "ROLLBACK"},
      {"pg", "ABORT"},
      {"pg", "BEGIN"},
      {"pg", "START TRANSACTION"},
      {"pg", "COMMIT PREPARED 'x1'"},
      {"pg", "RESET ALL"},
      {"pg", "SELECT 1; COMMIT"},
      {"pgodbc", "COMMIT"},
      {"pgodbc", "end"},
      {"pgodbc", "PREPARE TRANSACTION 'x1'"},
      {"maria", "COMMIT"},
      {"maria", "ROLLBACK"},
      {"maria", "XA END 'x'"},
      {"maria", "/*!COMMIT*/"},
      {"maria", "CREATE TABLE never_made (a INT)"},
      {"maria", "SET autocommit = 1"},
      {"maria", "SELECT 1; COMMIT"},
      {"lite", "COMMIT"},
      {"lite", "END"},
      {"lite", "BEGIN"},
  };
  return *forms;
}

TEST_F(BranchGuardTest, SessionRefusesStatementsThatEndABranchAndRollbackUndoesEverything) {
  for (const auto& [bind, sql] : RefusedForms()) {
    SCOPED_TRACE(bind + ": " + sql);
    std::string s = Open();
    ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 1, 10))}).ok());
    ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 1, 10))}).ok());
    grpc::Status refused = Exec(s, bind, {Sql(sql)});
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << refused.error_message();
    EXPECT_THAT(refused.error_message(), HasSubstr("txcoord begins and ends"));
    ASSERT_TRUE(Rollback(s).ok());
    ASSERT_TRUE(Close(s).ok());
  }
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial);
  EXPECT_EQ(MyBalance(1), kInitial);
  EXPECT_EQ(PgPrepared("x1"), 0);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(BranchGuardTest, ARefusedStatementLeavesTheTransactionAtomic) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 2, 10))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 2, 10))}).ok());
  EXPECT_EQ(Exec(s, "pg", {Sql("COMMIT")}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Nothing was sent: the PostgreSQL work is still uncommitted.
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial);
  v1::CommitResponse c;
  ASSERT_TRUE(Commit(s, &c).ok());
  EXPECT_EQ(c.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial - 10);
  EXPECT_EQ(MyBalance(2), kInitial + 10);
}

TEST_F(BranchGuardTest, RunTransactionRefusesBeforeSendingAnything) {
  const std::vector<std::vector<std::pair<std::string, std::vector<std::string>>>> works = {
      {{"pg", {Debit(pg_table_, 3, 10), "COMMIT"}}, {"maria", {Credit(my_table_, 3, 10)}}},
      {{"pg", {Debit(pg_table_, 3, 10), "PREPARE TRANSACTION 'x1'"}}, {"maria", {Credit(my_table_, 3, 10)}}},
      {{"pg", {Debit(pg_table_, 3, 10)}}, {"maria", {Credit(my_table_, 3, 10), "COMMIT"}}},
      {{"pg", {Debit(pg_table_, 3, 10) + "; END"}}},
      {{"pgodbc", {Debit(pg_table_, 3, 10), "COMMIT"}}},
      {{"maria", {Credit(my_table_, 3, 10), "/*!50000 COMMIT */"}}},
      {{"lite", {absl::StrCat("INSERT INTO ", lite_table_, " VALUES (3, 'x')"), "COMMIT"}}},
  };
  for (const auto& work : works) {
    SCOPED_TRACE(work[0].second.back());
    v1::RunTransactionResponse resp;
    grpc::Status st = RunWork(*stub_, work, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr("txcoord begins and ends"));
  }
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  EXPECT_EQ(PgPrepared("x1"), 0);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(BranchGuardTest, SavepointsStayAllowed) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 4, 10)), Sql("SAVEPOINT s1"), Sql(Debit(pg_table_, 4, 5)),
                             Sql("ROLLBACK TO SAVEPOINT s1"), Sql("RELEASE SAVEPOINT s1")})
                  .ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 4, 10))}).ok());
  ASSERT_TRUE(Commit(s).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 4), kInitial - 10);
  EXPECT_EQ(MyBalance(4), kInitial + 10);
}

// The guard misses the statement (injected): PostgreSQL commits the branch's
// work. txcoord notices and says HEURISTIC; it never answers COMMITTED or
// "rolled back".
TEST_F(BranchGuardTest, ABranchEndedBehindTxcoordInASessionIsHeuristic) {
  ASSERT_TRUE(failpoint::Arm("participants.statement_guard.miss", "error").ok());
  std::string s = Open();
  v1::ExecuteResponse first;
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 5, 10))}, &first).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 5, 10))}).ok());
  grpc::Status ended = Exec(s, "pg", {Sql("COMMIT")});
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << ended.error_message();
  EXPECT_THAT(ended.error_message(), HasSubstr("HEURISTIC"));
  EXPECT_EQ(PgBalance(pg_uri_, 5), kInitial - 10);  // committed by the statement
  EXPECT_EQ(MyBalance(5), kInitial);                // rolled back at once
  grpc::Status commit = Commit(s);
  EXPECT_EQ(commit.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << commit.error_message();
  EXPECT_THAT(commit.error_message(), HasSubstr("HEURISTIC"));
  v1::Transaction t = GetTxn(first.txn_id());
  EXPECT_EQ(t.state(), v1::HEURISTIC);
  bool pg_hazard = false;
  for (const auto& b : t.branches()) pg_hazard |= b.bind() == "pg" && b.state() == v1::BRANCH_HEURISTIC_HAZARD;
  EXPECT_TRUE(pg_hazard) << t.DebugString();
  EXPECT_EQ(PreparedLeft(), 0);
  // Recorded in the journal: the same answer after a restart.
  StopServer();
  StartServer();
  EXPECT_EQ(GetTxn(first.txn_id()).state(), v1::HEURISTIC);
}

// COMMIT AND CHAIN leaves the connection inside a (new) transaction: the
// statement itself passes, and the check before PREPARE finds the branch's
// transaction gone.
TEST_F(BranchGuardTest, CommitAndChainIsFoundBeforePrepare) {
  ASSERT_TRUE(failpoint::Arm("participants.statement_guard.miss", "error").ok());
  std::string s = Open();
  v1::ExecuteResponse first;
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 6, 10)), Sql("COMMIT AND CHAIN")}, &first).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 6, 10))}).ok());
  grpc::Status commit = Commit(s);
  EXPECT_EQ(commit.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << commit.error_message();
  EXPECT_THAT(commit.error_message(), HasSubstr("HEURISTIC"));
  EXPECT_EQ(GetTxn(first.txn_id()).state(), v1::HEURISTIC);
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial - 10);
  EXPECT_EQ(MyBalance(6), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(BranchGuardTest, ABranchEndedInRunTransactionIsHeuristicNotRolledBack) {
  ASSERT_TRUE(failpoint::Arm("participants.statement_guard.miss", "error").ok());
  for (const char* end : {"COMMIT", "COMMIT AND CHAIN"}) {
    SCOPED_TRACE(end);
    v1::RunTransactionResponse resp;
    grpc::Status st = RunWork(
        *stub_, {{"pg", {Debit(pg_table_, 7, 10), end}}, {"maria", {Credit(my_table_, 7, 10)}}}, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr("HEURISTIC"));
    EXPECT_THAT(st.error_message(), ::testing::Not(HasSubstr("was rolled back")));
    // "transaction <id> is HEURISTIC: …"
    const std::string id = st.error_message().substr(12, st.error_message().find(" is HEURISTIC") - 12);
    EXPECT_EQ(GetTxn(id).state(), v1::HEURISTIC) << id;
  }
  EXPECT_EQ(PgBalance(pg_uri_, 7), kInitial - 20);
  EXPECT_EQ(MyBalance(7), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

// SET without LOCAL, SET ROLE, temporary tables, session advisory locks and
// user variables end with their transaction's connection: the connection is
// closed, never handed to the next transaction.
TEST_F(BranchGuardTest, SessionStateNeverReachesTheNextTransaction) {
  const std::string key = suffix_;
  const std::string temp = "tmp_" + suffix_;
  const std::string lock = "txc_leak_" + suffix_;
  {
    // One bind, committed in one phase (PostgreSQL cannot prepare a
    // transaction that made a temporary table).
    std::string s = Open();
    ASSERT_TRUE(Exec(s, "pg", {Sql("SET search_path = leak_schema, public"), Sql("SET ROLE txcoord"),
                               Sql(absl::StrCat("CREATE TEMP TABLE ", temp, " (a int)")),
                               Sql(absl::StrCat("SELECT pg_advisory_lock(", key, ")")),
                               Sql(Debit(pg_table_, 8, 1))})
                    .ok());
    ASSERT_TRUE(Commit(s).ok());
    // Two binds, prepared and committed.
    ASSERT_TRUE(Exec(s, "pg", {Sql("SET search_path = leak_schema, public"), Sql("SET ROLE txcoord"),
                               Sql(absl::StrCat("SELECT pg_advisory_lock(", key, ")")),
                               Sql(Debit(pg_table_, 8, 1))})
                    .ok());
    ASSERT_TRUE(Exec(s, "maria", {Sql("SET @txc_leak = 42"), Sql(absl::StrCat("SELECT GET_LOCK('", lock, "', 0)")),
                                  Sql(Credit(my_table_, 8, 1))})
                    .ok());
    ASSERT_TRUE(Commit(s).ok());
    ASSERT_TRUE(Close(s).ok());
  }
  // Pools hand out the most recently returned connection first.
  for (int i = 0; i < 3; ++i) {
    std::string s = Open();
    v1::ExecuteResponse pg;
    ASSERT_TRUE(Exec(s, "pg", {Sql("SELECT current_setting('search_path'), current_setting('role'), "
                                   "to_regclass('pg_temp." + temp + "') IS NULL")},
                     &pg)
                    .ok());
    ASSERT_EQ(pg.results(0).rows_size(), 1);
    EXPECT_THAT(pg.results(0).rows(0).values(0).string_value(), ::testing::Not(HasSubstr("leak_schema")));
    EXPECT_EQ(pg.results(0).rows(0).values(1).string_value(), "none");
    EXPECT_TRUE(pg.results(0).rows(0).values(2).bool_value());
    v1::ExecuteResponse my;
    ASSERT_TRUE(Exec(s, "maria", {Sql("SELECT CONCAT(IF(@txc_leak IS NULL, 'clean', 'leak'), ' ', "
                                      "IF(IS_USED_LOCK('" + lock + "') IS NULL, 'clean', 'leak'))")},
                     &my)
                    .ok());
    ASSERT_EQ(my.results(0).rows_size(), 1);
    EXPECT_EQ(my.results(0).rows(0).values(0).string_value(), "clean clean");
    ASSERT_TRUE(Rollback(s).ok());
    ASSERT_TRUE(Close(s).ok());
  }
  EXPECT_EQ(PgScalar(pg_uri_, absl::StrCat("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ",
                                           key)),
            "0");
  // The same through RunTransaction's batch path.
  v1::RunTransactionResponse resp;
  ASSERT_TRUE(RunWork(*stub_, {{"pg", {"SET search_path = leak_schema, public", Debit(pg_table_, 8, 1)}}}, &resp).ok());
  ASSERT_TRUE(RunWork(*stub_, {{"pg", {"SELECT current_setting('search_path')"}}}, &resp).ok());
  ASSERT_EQ(resp.results(0).rows_size(), 1);
  EXPECT_THAT(resp.results(0).rows(0).values(0).string_value(), ::testing::Not(HasSubstr("leak_schema")));
}

// Once a transaction can only roll back, every branch is rolled
// back at once — a client that gives up after the error blocks nobody.
TEST_F(BranchGuardTest, AFailedStatementReleasesEveryOtherBindsLocksAtOnce) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 9, 10))}).ok());
  grpc::Status dup = Exec(s, "pg", {Sql(absl::StrCat("INSERT INTO ", pg_table_, " VALUES (9, 0)"))});
  EXPECT_EQ(dup.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << dup.error_message();
  EXPECT_THAT(dup.error_message(), HasSubstr("23505"));
  // Another writer of the MariaDB row gets it within 1 s, the client idle.
  RawOdbc other(maria_dsn_);
  ASSERT_TRUE(other.ok()) << other.error();
  other.Query("SET SESSION innodb_lock_wait_timeout = 1");
  std::string err;
  other.Query(absl::StrCat("UPDATE ", my_table_, " SET balance = balance WHERE id = 9"), 1, &err);
  EXPECT_EQ(err, "");
  grpc::Status commit = Commit(s);
  EXPECT_EQ(commit.error_code(), grpc::StatusCode::ABORTED) << commit.error_message();
  EXPECT_THAT(commit.error_message(), HasSubstr("23505"));
  EXPECT_TRUE(Rollback(s).ok());
  EXPECT_EQ(MyBalance(9), kInitial);
  // RunTransaction: the same, in one call.
  v1::RunTransactionResponse resp;
  grpc::Status run = RunWork(*stub_,
                             {{"maria", {Credit(my_table_, 9, 10)}},
                              {"pg", {absl::StrCat("INSERT INTO ", pg_table_, " VALUES (9, 0)")}}},
                             &resp);
  EXPECT_EQ(run.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << run.error_message();
  other.Query(absl::StrCat("UPDATE ", my_table_, " SET balance = balance WHERE id = 9"), 1, &err);
  EXPECT_EQ(err, "");
  EXPECT_EQ(MyBalance(9), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

}  // namespace
}  // namespace txcoord::testing
