// The session API end to end: a real gRPC server on loopback, real
// PostgreSQL, MariaDB and SQLite.
#include <atomic>
#include <future>
#include <thread>

#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "txcoord/v1/admin.grpc.pb.h"
#include "txcoord/v1/transaction.grpc.pb.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(CoordinatorTest, CommitsAcrossPostgresMariadbAndSqliteLastResource) {
  std::string s = Open();
  v1::ExecuteResponse first;
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 1, 100))}, &first).ok());
  EXPECT_EQ(first.results(0).rows_affected(), 1);
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 1, 100))}).ok());
  ASSERT_TRUE(Exec(s, "lite", {Sql(absl::StrCat("INSERT INTO ", lite_table_, " VALUES (1, 'transfer')"))}).ok());
  v1::CommitResponse c;
  grpc::Status st = Commit(s, &c);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(c.state(), v1::COMMITTED);
  EXPECT_EQ(c.txn_id(), first.txn_id());
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 100);
  EXPECT_EQ(MyBalance(1), kInitial + 100);
  RawOdbc lite(sqlite_dsn_);
  EXPECT_EQ(lite.Query(absl::StrCat("SELECT note FROM ", lite_table_, " WHERE id = 1")),
            std::vector<std::string>{"transfer"});
  EXPECT_EQ(PreparedLeft(), 0);
  v1::Transaction t = GetTxn(c.txn_id());
  EXPECT_EQ(t.state(), v1::COMMITTED);
  ASSERT_EQ(t.branches_size(), 3);
  int last_resources = 0;
  for (const auto& b : t.branches()) {
    EXPECT_EQ(b.state(), v1::BRANCH_COMMITTED) << b.bind();
    last_resources += b.last_resource();
  }
  EXPECT_EQ(last_resources, 1);
  EXPECT_TRUE(server_->coordinator()->journal()->ScanUnfinished()->empty());
  // The last resource's local COMMIT was the decision; the journal records
  // it afterwards unsynced, so no durable decision write was counted.
  EXPECT_EQ(server_->coordinator()->journal()->Stats().decisions, 0u);
}

TEST_F(CoordinatorTest, FailedPrepareRollsBackEveryBranch) {
  RawPostgres(pg_uri_, absl::StrCat("CREATE TABLE parent_", suffix_, " (id int PRIMARY KEY)"));
  RawPostgres(pg_uri_, absl::StrCat("CREATE TABLE child_", suffix_, " (id int, parent int REFERENCES parent_",
                                    suffix_, " DEFERRABLE INITIALLY DEFERRED)"));
  std::string s = Open();
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 2, 50))}, &e).ok());
  ASSERT_TRUE(Exec(s, "pg2", {Sql(Debit(pg_table_, 2, 50))}).ok());
  // Violates the deferred foreign key: fails only at PREPARE.
  ASSERT_TRUE(Exec(s, "pg", {Sql(absl::StrCat("INSERT INTO child_", suffix_, " VALUES (1, 42)"))}).ok());
  v1::CommitResponse c;
  grpc::Status st = Commit(s, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("pg"));
  EXPECT_EQ(MyBalance(2), kInitial);
  EXPECT_EQ(PgBalance(pg2_uri_, 2), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
  v1::Transaction t = GetTxn(e.txn_id());
  EXPECT_EQ(t.state(), v1::ABORTED);
  EXPECT_THAT(t.abort_reason(), HasSubstr("PREPARE"));
  RawPostgres(pg_uri_, absl::StrCat("DROP TABLE child_", suffix_, ", parent_", suffix_));
}

TEST_F(CoordinatorTest, RollbackUndoesEveryBind) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 3, 10))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 3, 10))}).ok());
  ASSERT_TRUE(Rollback(s).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  // The session goes on with a new transaction.
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 3, 1))}).ok());
  ASSERT_TRUE(Commit(s).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial - 1);
}

TEST_F(CoordinatorTest, SingleBindCommitsInOnePhaseWithoutJournalDecision) {
  std::string s = Open();
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 4, 7)), Sql(Credit(my_table_, 5, 7))}, &e).ok());
  ASSERT_EQ(e.results_size(), 2);
  v1::CommitResponse c;
  ASSERT_TRUE(Commit(s, &c).ok());
  EXPECT_EQ(c.state(), v1::COMMITTED);
  EXPECT_EQ(MyBalance(4), kInitial + 7);
  EXPECT_EQ(MyBalance(5), kInitial + 7);
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(GetTxn(c.txn_id()).state(), v1::COMMITTED);
  EXPECT_EQ(server_->coordinator()->journal()->Stats().decisions, 0u) << "a one-phase commit logs no decision";
}

TEST_F(CoordinatorTest, ReadOnlyBranchIsLeftOutOfPhaseTwo) {
  std::string s = Open();
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(s, "pg", {Sql(absl::StrCat("SELECT balance FROM ", pg_table_, " WHERE id = $1"), {6})}, &e).ok());
  ASSERT_EQ(e.results(0).rows_size(), 1);
  EXPECT_EQ(e.results(0).rows(0).values(0).int_value(), kInitial);
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 6, 1))}).ok());
  ASSERT_TRUE(Exec(s, "pg2", {Sql(Debit(pg_table_, 6, 1))}).ok());
  v1::CommitResponse c;
  ASSERT_TRUE(Commit(s, &c).ok());
  v1::Transaction t = GetTxn(c.txn_id());
  EXPECT_EQ(t.state(), v1::COMMITTED);
  std::vector<std::string> binds;
  for (const auto& b : t.branches()) binds.push_back(b.bind());
  EXPECT_THAT(binds, ::testing::UnorderedElementsAre("maria", "pg2"));
  // One decision, made durable in one group (the journal's counters on /metrics).
  const std::string metrics = server_->coordinator()->metrics().Render();
  EXPECT_THAT(metrics, HasSubstr("\n# TYPE txcoord_journal_decisions_total counter\ntxcoord_journal_decisions_total 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\ntxcoord_journal_decision_groups_total 1\n"));
  EXPECT_EQ(PgBalance(pg2_uri_, 6), kInitial - 1);
  EXPECT_EQ(MyBalance(6), kInitial + 1);
}

TEST_F(CoordinatorTest, StatementErrorLeavesOnlyRollback) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 7, 5))}).ok());
  grpc::Status bad = Exec(s, "pg", {Sql("SELECT * FROM no_such_table_" + suffix_)});
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.error_message(), HasSubstr("42P01"));
  EXPECT_THAT(bad.error_message(), HasSubstr("was rolled back"));
  // Rolled back at once: the MariaDB row is free before the client acts.
  EXPECT_EQ(MyBalance(7), kInitial);
  EXPECT_EQ(Exec(s, "maria", {Sql(Credit(my_table_, 7, 5))}).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  grpc::Status commit = Commit(s);
  EXPECT_EQ(commit.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(commit.error_message(), HasSubstr("42P01"));
  ASSERT_TRUE(Rollback(s).ok());
  EXPECT_EQ(MyBalance(7), kInitial);
}

TEST_F(CoordinatorTest, UnknownBindAndSessionAreRefused) {
  std::string s = Open();
  EXPECT_EQ(Exec(s, "nope", {Sql("SELECT 1")}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Exec("no-such-session", "pg", {Sql("SELECT 1")}).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Commit("no-such-session").error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status other_epoch = Exec(absl::StrCat(node_id_, ".999.s1.00"), "pg", {Sql("SELECT 1")});
  EXPECT_EQ(other_epoch.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(other_epoch.error_message(), HasSubstr("epoch"));
  grpc::Status other_node = Exec("othernode.1.s1.00", "pg", {Sql("SELECT 1")});
  EXPECT_EQ(other_node.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(other_node.error_message(), HasSubstr("othernode"));
  grpc::ClientContext ctx;
  v1::OpenSessionRequest req;
  req.add_binds("nope");
  v1::OpenSessionResponse resp;
  EXPECT_EQ(stub_->OpenSession(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CoordinatorTest, TransactionTimeoutFreesLocks) {
  std::string holder = Open(/*txn_timeout_ms=*/1500);
  ASSERT_TRUE(Exec(holder, "pg", {Sql(Debit(pg_table_, 8, 1))}).ok());
  ASSERT_TRUE(Exec(holder, "maria", {Sql(Debit(my_table_, 8, 1))}).ok());
  // Another session updates the same rows: it waits for the locks until the
  // holder's transaction times out and is rolled back.
  std::string other = Open(/*txn_timeout_ms=*/15000);
  auto start = absl::Now();
  grpc::Status pg = Exec(other, "pg", {Sql(Credit(pg_table_, 8, 2))});
  grpc::Status my = Exec(other, "maria", {Sql(Credit(my_table_, 8, 2))});
  ASSERT_TRUE(pg.ok()) << pg.error_message();
  ASSERT_TRUE(my.ok()) << my.error_message();
  ASSERT_TRUE(Commit(other).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(PgBalance(pg_uri_, 8), kInitial + 2);
  EXPECT_EQ(MyBalance(8), kInitial + 2);
  // The holder learns its transaction is gone.
  grpc::Status late = Commit(holder);
  EXPECT_FALSE(late.ok());
  EXPECT_TRUE(late.error_code() == grpc::StatusCode::ABORTED ||
              late.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
      << late.error_message();
}

// Transfers in both directions: some deadlock across the two databases
// (neither database sees the cycle); the transaction timeout (3 s) ends them
// with ABORTED, and the total never changes.
TEST_F(CoordinatorTest, ConcurrentTransfersKeepTheTotal) {
  constexpr int kClients = 32, kEach = 8;
  std::atomic<int> committed{0}, aborted{0}, other{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(c);
      std::string s = Open(3000);
      for (int i = 0; i < kEach; ++i) {
        int from = 1 + rng() % kAccounts, to = 1 + rng() % kAccounts;
        int64_t amount = 1 + rng() % 5;
        bool pg_first = rng() % 2;
        grpc::Status a = Exec(s, pg_first ? "pg" : "maria",
                              {Sql(Debit(pg_first ? pg_table_ : my_table_, from, amount))});
        grpc::Status b = a.ok() ? Exec(s, pg_first ? "maria" : "pg",
                                       {Sql(Credit(pg_first ? my_table_ : pg_table_, to, amount))})
                                : a;
        if (!a.ok() || !b.ok()) {
          (void)Rollback(s);
          ++aborted;
          continue;
        }
        grpc::Status st = Commit(s);
        if (st.ok()) ++committed;
        else if (st.error_code() == grpc::StatusCode::ABORTED) ++aborted;
        else ++other;
      }
      (void)Close(s);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(committed.load(), kClients * kEach / 2);
  EXPECT_EQ(PgTotal(pg_uri_) + MyTotal(), 2 * kAccounts * kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

// A deadlock across databases that neither database can see: A holds a
// PostgreSQL row and waits for a MariaDB row that B holds while B waits for
// A's PostgreSQL row. The transaction timeout ends it: one side fails and
// rolls back, the other commits.
TEST_F(CoordinatorTest, CrossDatabaseDeadlockIsBrokenByTheTransactionTimeout) {
  std::string a = Open(2000), b = Open(2000);
  ASSERT_TRUE(Exec(a, "pg", {Sql(Debit(pg_table_, 11, 1))}).ok());
  ASSERT_TRUE(Exec(b, "maria", {Sql(Debit(my_table_, 11, 1))}).ok());
  auto start = absl::Now();
  auto a_waits = std::async(std::launch::async, [&] { return Exec(a, "maria", {Sql(Credit(my_table_, 11, 1))}); });
  absl::SleepFor(absl::Milliseconds(200));
  grpc::Status b_waits = Exec(b, "pg", {Sql(Credit(pg_table_, 11, 1))});
  grpc::Status a_result = a_waits.get();
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_FALSE(a_result.ok() && b_waits.ok()) << "both sides went through a deadlock";
  for (const grpc::Status& s : {a_result, b_waits}) {
    if (!s.ok()) {
      EXPECT_TRUE(s.error_code() == grpc::StatusCode::ABORTED ||
                  s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
          << s.error_code() << " " << s.error_message();
    }
  }
  (void)Rollback(a);
  (void)Rollback(b);
  EXPECT_EQ(PgBalance(pg_uri_, 11), kInitial);
  EXPECT_EQ(MyBalance(11), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(CoordinatorTest, CommitRetriedWithTheSameTxnIdReturnsTheRecordedOutcome) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 9, 3))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 9, 3))}).ok());
  v1::CommitResponse c;
  ASSERT_TRUE(Commit(s, &c).ok());
  v1::CommitResponse again;
  grpc::Status st = Commit(s, &again, c.txn_id());
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.state(), v1::COMMITTED);
  EXPECT_EQ(again.txn_id(), c.txn_id());
  EXPECT_EQ(PgBalance(pg_uri_, 9), kInitial - 3);  // not twice
  EXPECT_EQ(MyBalance(9), kInitial + 3);
  EXPECT_EQ(Rollback(s).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CoordinatorTest, CloseSessionRollsBackItsTransaction) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 10, 5))}).ok());
  ASSERT_TRUE(Close(s).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 10), kInitial);
  // The row is not locked any more.
  std::string t = Open(5000);
  ASSERT_TRUE(Exec(t, "pg", {Sql(Debit(pg_table_, 10, 1))}).ok());
  ASSERT_TRUE(Commit(t).ok());
  EXPECT_EQ(Exec(s, "pg", {Sql("SELECT 1")}).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorTest, BadInputGetsClearErrors) {
  std::string s = Open();
  EXPECT_EQ(Exec(s, "pg", {Sql("")}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Exec(s, "pg", {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Statement no_kind = Sql("SELECT $1::int");
  no_kind.add_params();  // a Value without a kind
  EXPECT_EQ(Exec(s, "pg", {no_kind}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // string fields: invalid UTF-8 makes the request fail to parse, which
  // every service reports as INVALID_ARGUMENT naming the message.
  v1::Statement bad_utf8 = Sql("SELECT $1::text");
  bad_utf8.add_params()->set_string_value(std::string("\xc3\x28", 2));
  grpc::Status utf8 = Exec(s, "pg", {bad_utf8});
  EXPECT_EQ(utf8.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << utf8.error_message();
  EXPECT_THAT(utf8.error_message(), HasSubstr("not a valid txcoord.v1.ExecuteRequest"));
  EXPECT_THAT(utf8.error_message(), HasSubstr("invalid UTF-8"));
  {
    grpc::ClientContext ctx;
    v1::RunTransactionRequest req;
    auto* w = req.add_work();
    w->set_bind("pg");
    *w->add_statements() = bad_utf8;
    v1::RunTransactionResponse resp;
    grpc::Status one_shot = stub_->RunTransaction(&ctx, req, &resp);
    EXPECT_EQ(one_shot.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << one_shot.error_message();
    EXPECT_THAT(one_shot.error_message(), HasSubstr("not a valid txcoord.v1.RunTransactionRequest"));
  }
  // The same from TransactionService and AdminService.
  {
    grpc::ClientContext ctx;
    v1::GlobalExecuteRequest req;
    req.set_txn_id("t1.1.1");
    req.set_bind("pg");
    *req.add_statements() = bad_utf8;
    v1::ExecuteResponse resp;
    grpc::Status global = v1::TransactionService::NewStub(channel_)->Execute(&ctx, req, &resp);
    EXPECT_EQ(global.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << global.error_message();
    EXPECT_THAT(global.error_message(), HasSubstr("not a valid txcoord.v1.GlobalExecuteRequest"));
  }
  {
    grpc::ClientContext ctx;
    v1::ResolveTransactionRequest req;
    req.set_txn_id("t1.1.1");
    req.set_decision(v1::ResolveTransactionRequest::ROLLBACK);
    req.set_reason(std::string("\xc3\x28", 2));
    v1::Transaction resp;
    grpc::Status resolve = v1::AdminService::NewStub(channel_)->ResolveTransaction(&ctx, req, &resp);
    EXPECT_EQ(resolve.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << resolve.error_message();
    EXPECT_THAT(resolve.error_message(), HasSubstr("not a valid txcoord.v1.ResolveTransactionRequest"));
  }
  // Text in any script passes through as is.
  v1::Statement text = Sql("SELECT $1::text || ' — ok'");
  text.add_params()->set_string_value("d\u00e9j\u00e0 \u65e5\u672c");
  v1::ExecuteResponse echoed;
  ASSERT_TRUE(Exec(s, "pg", {text}, &echoed).ok());
  EXPECT_EQ(echoed.results(0).rows(0).values(0).string_value(), "d\u00e9j\u00e0 \u65e5\u672c \u2014 ok");
  ASSERT_TRUE(Rollback(s).ok());
  // Wrong parameter count: the caller's mistake (INVALID_ARGUMENT naming the
  // bind), never a lost connection; the transaction is then rolled back.
  grpc::Status count = Exec(s, "pg", {Sql("SELECT $1::int + $2::int", {1})});
  EXPECT_EQ(count.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << count.error_message();
  EXPECT_THAT(count.error_message(), HasSubstr("bind pg"));
  ASSERT_TRUE(Rollback(s).ok());
  // A 64 MiB request is refused by the message size limit.
  std::string huge(64 << 20, 'x');
  grpc::Status big = Exec(s, "pg", {Sql("SELECT '" + huge + "'")});
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  // SQL over the per-statement limit but under the message limit.
  std::string long_sql(2 << 20, ' ');
  EXPECT_EQ(Exec(s, "pg", {Sql("SELECT 1" + long_sql)}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The session still works.
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(s, "pg", {Sql("SELECT 41 + $1::int", {1})}, &e).ok());
  EXPECT_EQ(e.results(0).rows(0).values(0).int_value(), 42);
  ASSERT_TRUE(Commit(s).ok());
}

TEST_F(CoordinatorTest, MaxRowsTruncatesAndSaysSo) {
  std::string s = Open();
  for (const std::string bind : {"pg", "maria"}) {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    req.set_session_id(s);
    req.set_bind(bind);
    req.set_max_rows(3);
    req.add_statements()->set_sql(absl::StrCat("SELECT id FROM ", bind == "pg" ? pg_table_ : my_table_, " ORDER BY id"));
    v1::ExecuteResponse resp;
    ASSERT_TRUE(stub_->Execute(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.results(0).rows_size(), 3) << bind;
    EXPECT_TRUE(resp.results(0).truncated()) << bind;
  }
  ASSERT_TRUE(Commit(s).ok());
}

TEST_F(CoordinatorTest, GetTransactionOfUnknownIds) {
  grpc::Status st;
  GetTxn("garbage", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  GetTxn(absl::StrCat(node_id_, ".1.999999"), &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  GetTxn("othernode.1.1", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

class SessionLimitTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    max_sessions_ = 50;
    CoordinatorTest::SetUp();
  }
};

TEST_F(SessionLimitTest, ManySessionsHitTheLimitAndIdleOnesAreReclaimed) {
  int opened = 0;
  grpc::Status last;
  for (int i = 0; i < 2000; ++i) {
    grpc::ClientContext ctx;
    v1::OpenSessionRequest req;
    req.mutable_idle_timeout()->set_nanos(500000000);  // 0.5 s
    v1::OpenSessionResponse resp;
    last = stub_->OpenSession(&ctx, req, &resp);
    if (!last.ok()) break;
    ++opened;
  }
  EXPECT_EQ(opened, 50);
  EXPECT_EQ(last.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // After the idle timeout the reaper frees them.
  absl::SleepFor(absl::Seconds(1.5));
  EXPECT_EQ(server_->sessions()->size(), 0);
  EXPECT_FALSE(Open().empty());
}

TEST_F(CoordinatorTest, RunTransactionCommitsInOneCallAndHonoursItsIdempotencyKey) {
  auto run = [&](v1::RunTransactionResponse* resp) {
    grpc::ClientContext ctx;
    v1::RunTransactionRequest req;
    auto* a = req.add_work();
    a->set_bind("pg");
    *a->add_statements() = Sql(Debit(pg_table_, 1, 11));
    auto* b = req.add_work();
    b->set_bind("maria");
    *b->add_statements() = Sql(Credit(my_table_, 1, 11));
    req.set_idempotency_key("key-" + suffix_);
    return stub_->RunTransaction(&ctx, req, resp);
  };
  v1::RunTransactionResponse first, second;
  ASSERT_TRUE(run(&first).ok());
  EXPECT_EQ(first.state(), v1::COMMITTED);
  ASSERT_EQ(first.results_size(), 2);
  ASSERT_TRUE(run(&second).ok());
  EXPECT_EQ(second.txn_id(), first.txn_id());
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 11);  // once
  EXPECT_EQ(MyBalance(1), kInitial + 11);
}

TEST_F(CoordinatorTest, RunTransactionRollsBackEveryBindWhenOneFails) {
  const std::string bad = "SELECT * FROM no_such_table_" + suffix_;
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"maria", {Credit(my_table_, 12, 5)}}, {"pg", {Debit(pg_table_, 12, 5), bad}}}, &resp);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.error_message(), HasSubstr("pg"));
  EXPECT_EQ(MyBalance(12), kInitial);
  EXPECT_EQ(PgBalance(pg_uri_, 12), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);

  // The other way round: PostgreSQL's branch is prepared in its batch (one
  // call with its statements) before MariaDB's statement fails; it must be
  // rolled back as well.
  st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 12, 5)}}, {"maria", {Credit(my_table_, 12, 5), bad}}}, &resp);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.error_message(), HasSubstr("maria"));
  EXPECT_EQ(MyBalance(12), kInitial);
  EXPECT_EQ(PgBalance(pg_uri_, 12), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);

  // A bind that only reads votes read-only and is left out of the decision.
  st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 12, 5)}}, {"maria", {"SELECT COUNT(*) FROM " + my_table_}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 12), kInitial - 5);
  EXPECT_EQ(PreparedLeft(), 0);

  grpc::ClientContext ctx2;
  v1::RunTransactionRequest twice;
  for (int i = 0; i < 2; ++i) {
    auto* w = twice.add_work();
    w->set_bind("pg");
    *w->add_statements() = Sql("SELECT 1");
  }
  EXPECT_EQ(stub_->RunTransaction(&ctx2, twice, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// One bind: BEGIN, the statements and COMMIT in one round trip on
// PostgreSQL (counted in participant_batch_test's
// RunBatchIsOneRoundTripOnLibpqxx), with the outcomes of a one-phase commit.
TEST_F(CoordinatorTest, RunTransactionOnOneBindCommitsInOneRoundTrip) {
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 13, 6), "SELECT 41 + 1"}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(1).rows(0).values(0).int_value(), 42);
  EXPECT_EQ(PgBalance(pg_uri_, 13), kInitial - 6);
  EXPECT_EQ(GetTxn(resp.txn_id()).state(), v1::COMMITTED);

  // The transaction an error names ("transaction <id> …"): a failed call
  // returns no response message.
  auto named = [](const grpc::Status& failed) {
    std::string m = failed.error_message();
    size_t at = m.find("transaction ");
    if (at == std::string::npos) return std::string();
    at += 12;
    return m.substr(at, m.find(' ', at) - at);
  };
  // A failing statement rolls it back.
  st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 13, 6), "SELECT * FROM no_such_table_" + suffix_}}}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("was rolled back"));
  EXPECT_EQ(PgBalance(pg_uri_, 13), kInitial - 6);
  EXPECT_EQ(GetTxn(named(st)).state(), v1::ABORTED);

  // A COMMIT refused by the database (a deferred constraint) is ABORTED.
  const std::string t = "txc_deferred_" + suffix_;
  RawPostgres(pg_uri_, "CREATE TABLE " + t + " (id INT, CONSTRAINT u_" + suffix_ +
                                    " UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)");
  const std::string twice = "INSERT INTO " + t + " VALUES (1), (1)";
  st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 13, 6), twice}}}, &resp);
  RawPostgres(pg_uri_, "DROP TABLE " + t);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("23505"));
  EXPECT_EQ(PgBalance(pg_uri_, 13), kInitial - 6);
  EXPECT_EQ(GetTxn(named(st)).state(), v1::ABORTED);
}

TEST_F(CoordinatorTest, OutcomeSurvivesARestart) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 2, 4))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 2, 4))}).ok());
  v1::CommitResponse c;
  ASSERT_TRUE(Commit(s, &c).ok());
  std::string s2 = Open();
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(s2, "pg", {Sql(Debit(pg_table_, 3, 4))}, &e).ok());
  ASSERT_TRUE(Rollback(s2).ok());
  StopServer();
  StartServer();
  EXPECT_EQ(GetTxn(c.txn_id()).state(), v1::COMMITTED);
  EXPECT_EQ(GetTxn(e.txn_id()).state(), v1::ABORTED);  // presumed abort
  // The old session is gone, with a clear reason.
  grpc::Status old = Exec(s, "pg", {Sql("SELECT 1")});
  EXPECT_EQ(old.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(old.error_message(), HasSubstr("restarted"));
}

TEST_F(CoordinatorTest, RetentionCollectsHistoryInTheBackgroundAndGetTransactionSaysSo) {
  history_max_ = 3;
  history_per_pass_ = 2;
  StopServer();
  StartServer();
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    v1::RunTransactionResponse r;
    ASSERT_TRUE(RunWork(*stub_, {{"pg", {Debit(pg_table_, 9, 1)}}}, &r).ok());
    ids.push_back(r.txn_id());
  }
  // The background pass (every recovery interval, 500 ms here; two records
  // per pass) brings the history down to 3; bounded wait.
  journal::Journal* j = server_->coordinator()->journal();
  for (int waited = 0; waited < 200 && j->finished_count() > 3; ++waited) absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(j->finished_count(), 3);
  const std::string metrics = server_->coordinator()->metrics().Render();
  EXPECT_THAT(metrics, HasSubstr("\ntxcoord_journal_history_records 3\n"));
  EXPECT_THAT(metrics, HasSubstr("\ntxcoord_journal_history_collected_total 4\n"));
  // After a restart (no outcomes in memory): the newest are still answered;
  // a collected one is not presumed aborted — it committed.
  StopServer();
  StartServer();
  EXPECT_EQ(GetTxn(ids[6]).state(), v1::COMMITTED);
  EXPECT_EQ(GetTxn(ids[4]).state(), v1::COMMITTED);
  for (int i : {0, 3}) {
    grpc::Status st;
    GetTxn(ids[i], &st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << ids[i];
    EXPECT_THAT(st.error_message(), HasSubstr("retention")) << ids[i];
  }
  EXPECT_EQ(PgBalance(pg_uri_, 9), kInitial - 7);
}

// A stop does not wait for a transaction's timeout: a call still waiting
// for its database when the 5 s grace ends (here an UPDATE behind a row
// lock held by another session's open transaction, both with a 60 s
// timeout) has its statement cancelled, and the server finishes.
TEST_F(CoordinatorTest, AStopCancelsCallsStillWaitingWhenItsGraceEnds) {
  const std::string holder = Open(/*txn_timeout_ms=*/60000);
  const std::string waiter = Open(/*txn_timeout_ms=*/60000);
  ASSERT_TRUE(Exec(holder, "pg", {Sql(Debit(pg_table_, 11, 1))}).ok());
  std::promise<grpc::Status> waited;
  std::thread blocked([&] { waited.set_value(Exec(waiter, "pg", {Sql(Debit(pg_table_, 11, 1))})); });
  std::future<grpc::Status> result = waited.get_future();
  ASSERT_EQ(result.wait_for(std::chrono::milliseconds(700)), std::future_status::timeout) << "it did not wait";
  // The server has stopped when its Wait returns: every call's handler has
  // finished (gRPC itself ends the client's call at the grace's end, while
  // the handler may still be waiting for the database).
  const absl::Time stop = absl::Now();
  std::promise<void> stopped;
  std::thread stopper([&] {
    server_->Shutdown();
    server_->Wait();
    stopped.set_value();
  });
  const bool finished = stopped.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  const absl::Duration took = absl::Now() - stop;
  stopper.join();
  blocked.join();
  ASSERT_TRUE(finished) << "the server did not stop within 20 s";
  EXPECT_FALSE(result.get().ok());
  EXPECT_GE(took, absl::Seconds(4)) << "the grace period was not given";
  EXPECT_LT(took, absl::Seconds(12));
  StopServer();
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(PgBalance(pg_uri_, 11), kInitial) << "neither transaction committed";
}

}  // namespace
}  // namespace txcoord::testing
