// TransactionService: services prepare their own branches on their own
// connections under xids txcoord minted, register them, and txcoord makes
// the decision and finishes the branches itself.
#include <fstream>
#include <future>

#include "gmock/gmock.h"
#include "tests/coordinator/transaction_service_fixture.h"
#include "util/failpoint.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(TransactionServiceTest, TwoServicesPrepareTheirOwnBranchesAndTxcoordCommitsThem) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  ASSERT_EQ(g.xids_size(), 2);
  EXPECT_THAT(XidOf(g, "pg"), HasSubstr("txc1_" + g.txn_id()));
  EXPECT_THAT(XidOf(g, "maria"), HasSubstr("X'"));
  // The two services work independently and concurrently.
  auto pg = std::async(std::launch::async, [&] {
    PreparePg(XidOf(g, "pg"), 1, 30);
    return Register(g.txn_id(), "pg", XidOf(g, "pg"));
  });
  auto my = std::async(std::launch::async, [&] {
    PrepareMaria(XidOf(g, "maria"), 1, 30);
    return Register(g.txn_id(), "maria", XidOf(g, "maria"));
  });
  ASSERT_TRUE(pg.get().ok());
  ASSERT_TRUE(my.get().ok());
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 30);
  EXPECT_EQ(MyBalance(1), kInitial + 30);
  EXPECT_EQ(PreparedLeft(), 0);
  // A retried CommitGlobal answers with the outcome.
  ASSERT_TRUE(CommitGlobal(g.txn_id(), &t).ok());
  EXPECT_EQ(t.state(), v1::COMMITTED);
}

TEST_F(TransactionServiceTest, AnUnregisteredOrUnpreparedBranchAbortsEverything) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  PreparePg(XidOf(g, "pg"), 2, 10);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  PrepareMaria(XidOf(g, "maria"), 2, 10);  // prepared, then the service died before registering
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), HasSubstr("never registered"));
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial);
  EXPECT_EQ(MyBalance(2), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);

  // Registered without preparing: refused at commit.
  v1::BeginGlobalResponse h = BeginGlobal({"pg"});
  ASSERT_TRUE(Register(h.txn_id(), "pg", XidOf(h, "pg")).ok());
  s = CommitGlobal(h.txn_id(), &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), HasSubstr("not prepared"));
}

TEST_F(TransactionServiceTest, RegisteredBranchesAreRolledBackAtTheTimeout) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"}, 1000);
  PreparePg(XidOf(g, "pg"), 3, 10);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  PrepareMaria(XidOf(g, "maria"), 3, 10);
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  // The client that should commit died. After the timeout:
  EXPECT_TRUE(NothingPreparedWithin(absl::Seconds(10)));
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  v1::Transaction t;
  // The late CommitGlobal learns the outcome, and why.
  grpc::Status late = CommitGlobal(g.txn_id(), &t);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(late.error_message(), HasSubstr("timeout"));
  ASSERT_TRUE(RollbackGlobal(g.txn_id(), &t).ok()) << "rolling back a rolled-back transaction is idempotent";
  EXPECT_EQ(t.state(), v1::ABORTED);
  EXPECT_EQ(GetTxn(g.txn_id()).state(), v1::ABORTED);
}

// Statements run by txcoord (a PostgreSQL branch it holds) and a branch a
// service prepared itself (MariaDB) commit as one; a SQLite bind, which
// cannot prepare, joins the same way and commits as the last resource.
TEST_F(TransactionServiceTest, TxcoordRunWorkAndRegisteredBranchesMixInOneTransaction) {
  v1::BeginGlobalResponse g = BeginGlobal({"maria"});
  v1::ExecuteResponse e;
  ASSERT_TRUE(ExecuteGlobal(g.txn_id(), "pg", Debit(pg_table_, 4, 25), &e).ok());
  EXPECT_EQ(e.results(0).rows_affected(), 1);
  ASSERT_TRUE(ExecuteGlobal(g.txn_id(), "lite", absl::StrCat("INSERT INTO ", lite_table_, " VALUES (4, 'mixed')")).ok());
  PrepareMaria(XidOf(g, "maria"), 4, 25);
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  // txcoord will not run SQL on the service's own branch, nor register one
  // for a bind it runs itself.
  EXPECT_EQ(ExecuteGlobal(g.txn_id(), "maria", "SELECT 1").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Register(g.txn_id(), "pg", "txc1_x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(AddBranch(g.txn_id(), "pg", nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 4), kInitial - 25);
  EXPECT_EQ(MyBalance(4), kInitial + 25);
  EXPECT_EQ(LiteNotes(), std::vector<std::string>{"mixed"});
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(TransactionServiceTest, AFailedStatementRollsBackAtOnceAndCommitGlobalSaysAborted) {
  v1::BeginGlobalResponse g = BeginGlobal({"maria"});
  PrepareMaria(XidOf(g, "maria"), 5, 7);
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  ASSERT_TRUE(ExecuteGlobal(g.txn_id(), "pg", Debit(pg_table_, 5, 7)).ok());
  EXPECT_FALSE(ExecuteGlobal(g.txn_id(), "pg", "SELECT * FROM no_such_table_" + suffix_).ok());
  // Rolled back at once, the service's prepared branch too: nothing stays
  // locked while the service decides what to do.
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(MyBalance(5), kInitial);
  EXPECT_EQ(ExecuteGlobal(g.txn_id(), "pg", "SELECT 1").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("42P01"));
  ASSERT_TRUE(RollbackGlobal(g.txn_id(), &t).ok());
  EXPECT_EQ(t.state(), v1::ABORTED);
  EXPECT_EQ(PgBalance(pg_uri_, 5), kInitial);
  EXPECT_EQ(MyBalance(5), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
  // Committed ones cannot be rolled back afterwards.
  v1::BeginGlobalResponse h = BeginGlobal({});
  ASSERT_TRUE(ExecuteGlobal(h.txn_id(), "pg", Debit(pg_table_, 5, 1)).ok());
  ASSERT_TRUE(CommitGlobal(h.txn_id(), &t).ok());
  EXPECT_EQ(RollbackGlobal(h.txn_id(), &t).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// TransactionService.Execute refuses, before sending, SQL that would end,
// start or prepare the bind's branch (the statement guard): the global
// transaction goes on and commits atomically.
TEST_F(TransactionServiceTest, ExecuteRefusesStatementsThatEndABranch) {
  v1::BeginGlobalResponse g = BeginGlobal({"maria"});
  PrepareMaria(XidOf(g, "maria"), 6, 3);
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  ASSERT_TRUE(ExecuteGlobal(g.txn_id(), "pg", Debit(pg_table_, 6, 3)).ok());
  for (const auto& [bind, sql] : std::vector<std::pair<std::string, std::string>>{
           {"pg", "COMMIT"}, {"pg", "END"}, {"pg", "COMMIT AND CHAIN"}, {"pg", "/* c */ commit"},
           {"pg", "PREPARE TRANSACTION 'x1'"}, {"pg", "SELECT 1; ROLLBACK"}, {"pg2", "BEGIN"},
           {"lite", "COMMIT"}, {"lite", "END"}}) {
    grpc::Status refused = ExecuteGlobal(g.txn_id(), bind, sql);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bind << ": " << sql << ": "
                                                                        << refused.error_message();
    EXPECT_THAT(refused.error_message(), HasSubstr("txcoord begins and ends"));
  }
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial) << "the PostgreSQL branch is still uncommitted";
  v1::Transaction t;
  grpc::Status committed = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(committed.ok()) << committed.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial - 3);
  EXPECT_EQ(MyBalance(6), kInitial + 3);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(TransactionServiceTest, AConcurrentCallOnARunningExecuteIsRefused) {
  v1::BeginGlobalResponse g = BeginGlobal({});
  auto slow = std::async(std::launch::async, [&] { return ExecuteGlobal(g.txn_id(), "pg", "SELECT pg_sleep(1.5)"); });
  absl::SleepFor(absl::Milliseconds(400));
  v1::Transaction t;
  grpc::Status busy = CommitGlobal(g.txn_id(), &t);
  EXPECT_EQ(busy.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << busy.error_message();
  EXPECT_THAT(busy.error_message(), HasSubstr("running"));
  ASSERT_TRUE(slow.get().ok());
  ASSERT_TRUE(CommitGlobal(g.txn_id(), &t).ok());
  EXPECT_EQ(t.state(), v1::COMMITTED);
}

// A SessionService session's transaction joined by a service's own
// branch: the session runs SQL on PostgreSQL through txcoord, the MariaDB
// service prepares its branch under an xid from AddBranch (naming the
// session's txn id) and registers it; the session's Commit commits both,
// its Rollback rolls both back.
TEST_F(TransactionServiceTest, ASessionTransactionTakesRegisteredBranches) {
  for (bool commit : {true, false}) {
    const int account = commit ? 18 : 19;
    std::string s = Open();
    v1::ExecuteResponse e;
    ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, account, 6))}, &e).ok());
    std::string xid;
    grpc::Status added = AddBranch(e.txn_id(), "maria", &xid);
    ASSERT_TRUE(added.ok()) << added.error_message();
    PrepareMaria(xid, account, 6);
    ASSERT_TRUE(Register(e.txn_id(), "maria", xid).ok());
    EXPECT_EQ(Exec(s, "maria", {Sql("SELECT 1")}).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "the service's branch is not the session's to run SQL on";
    if (commit) {
      v1::CommitResponse c;
      grpc::Status st = Commit(s, &c);
      ASSERT_TRUE(st.ok()) << st.error_message();
      EXPECT_EQ(c.state(), v1::COMMITTED);
      EXPECT_EQ(PgBalance(pg_uri_, account), kInitial - 6);
      EXPECT_EQ(MyBalance(account), kInitial + 6);
    } else {
      ASSERT_TRUE(Rollback(s).ok());
      EXPECT_EQ(PgBalance(pg_uri_, account), kInitial);
      EXPECT_EQ(MyBalance(account), kInitial);
    }
    EXPECT_EQ(PreparedLeft(), 0);
    // The session's transaction ended: nothing more joins it.
    EXPECT_EQ(AddBranch(e.txn_id(), "pg2", nullptr).error_code(), grpc::StatusCode::NOT_FOUND);
  }
}

// Binds known only as the work goes: AddBranch mints their xids later.
TEST_F(TransactionServiceTest, AddBranchMintsAnXidForALaterBind) {
  v1::BeginGlobalResponse g = BeginGlobal({});
  EXPECT_EQ(g.xids_size(), 0);
  std::string pg_xid, again, maria_xid;
  ASSERT_TRUE(AddBranch(g.txn_id(), "pg", &pg_xid).ok());
  ASSERT_TRUE(AddBranch(g.txn_id(), "pg", &again).ok());
  EXPECT_EQ(again, pg_xid) << "asked again, the same xid";
  ASSERT_TRUE(AddBranch(g.txn_id(), "maria", &maria_xid).ok());
  EXPECT_NE(maria_xid, pg_xid);
  grpc::Status lite = AddBranch(g.txn_id(), "lite", nullptr);
  EXPECT_EQ(lite.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(lite.error_message(), HasSubstr("last resource"));
  EXPECT_EQ(AddBranch(g.txn_id(), "nope", nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(AddBranch("nonode.1.1", "pg", nullptr).error_code(), grpc::StatusCode::NOT_FOUND);
  PreparePg(pg_xid, 6, 3);
  ASSERT_TRUE(Register(g.txn_id(), "pg", pg_xid).ok());
  PrepareMaria(maria_xid, 6, 3);
  ASSERT_TRUE(Register(g.txn_id(), "maria", maria_xid).ok());
  v1::Transaction t;
  ASSERT_TRUE(CommitGlobal(g.txn_id(), &t).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial - 3);
  EXPECT_EQ(MyBalance(6), kInitial + 3);
  EXPECT_EQ(PreparedLeft(), 0);
}

// A service whose branch only read ends it itself (MariaDB refuses XA
// COMMIT of an empty prepared branch) and registers it read-only: left out.
TEST_F(TransactionServiceTest, AReadOnlyBranchIsRegisteredAndLeftOut) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  PreparePg(XidOf(g, "pg"), 7, 9);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  {
    RawOdbc my(maria_dsn_);
    ASSERT_TRUE(my.ok()) << my.error();
    const std::string xa = XidOf(g, "maria");
    my.Query("XA START " + xa);
    my.Query(absl::StrCat("SELECT balance FROM ", my_table_, " WHERE id = 7"));
    my.Query("XA END " + xa);
    my.Query("XA COMMIT " + xa + " ONE PHASE");
  }
  ASSERT_TRUE(RegisterReadOnly(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 7), kInitial - 9);
  EXPECT_EQ(MyBalance(7), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

TEST_F(TransactionServiceTest, BadRequestsGetClearErrors) {
  grpc::ClientContext ctx;
  v1::BeginGlobalRequest req;
  req.add_binds("nope");
  v1::BeginGlobalResponse resp;
  EXPECT_EQ(txs_->BeginGlobal(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx2;
  v1::BeginGlobalRequest lr;
  lr.add_binds("lite");
  grpc::Status no_2pc = txs_->BeginGlobal(&ctx2, lr, &resp);
  EXPECT_EQ(no_2pc.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_2pc.error_message(), HasSubstr("two-phase"));
  v1::BeginGlobalResponse g = BeginGlobal({"pg"});
  EXPECT_EQ(Register(g.txn_id(), "pg", "txc1_someone.else_0-pg").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Register(g.txn_id(), "maria", "X'00',X'00',1").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Register("nonode.1.1", "pg", "x").error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx3;
  v1::RegisterBranchRequest cb;
  cb.set_txn_id(g.txn_id());
  cb.set_participant_address("127.0.0.1:1");  // a callback branch needs its branch id
  v1::RegisterBranchResponse r;
  EXPECT_EQ(txs_->RegisterBranch(&ctx3, cb, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(TransactionServiceTest, CallbackParticipantJoinsAndIsRetriedUntilItComesBack) {
  KvState kv;
  auto kv_server = std::make_unique<KvServer>(&kv, 0);
  const int port = kv_server->port();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  v1::BeginGlobalResponse g = BeginGlobal({"pg"});
  PreparePg(XidOf(g, "pg"), 5, 8);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  ASSERT_TRUE(RegisterCallback(g.txn_id(), "key-42", address).ok());
  // The service goes down right after the decision.
  ASSERT_TRUE(failpoint::Arm("commit.after_decision_logged", "delay(800)").ok());
  auto commit = std::async(std::launch::async, [&] {
    v1::Transaction t;
    grpc::Status s = CommitGlobal(g.txn_id(), &t);
    return std::make_pair(s, t);
  });
  for (int i = 0; i < 200 && failpoint::HitCount("commit.after_decision_logged") == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  kv_server.reset();
  auto [status, t] = commit.get();
  failpoint::DisarmAll();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTING);  // decided; the callback branch waits
  EXPECT_EQ(PgBalance(pg_uri_, 5), kInitial - 8);
  {
    absl::MutexLock lock(&kv.mu);
    EXPECT_EQ(kv.branches[g.txn_id() + "/key-42"], "prepared");
  }
  kv_server = std::make_unique<KvServer>(&kv, port);  // back, same address
  bool committed = false;
  for (int i = 0; i < 150 && !committed; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    absl::MutexLock lock(&kv.mu);
    committed = kv.branches[g.txn_id() + "/key-42"] == "committed";
  }
  EXPECT_TRUE(committed) << "phase 2 was not retried until the participant came back";
  bool finished = false;
  for (int i = 0; i < 50 && !finished; ++i) {
    finished = GetTxn(g.txn_id()).state() == v1::COMMITTED;
    if (!finished) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(finished);

  // A NO vote aborts everything.
  kv.vote_no = true;
  v1::BeginGlobalResponse h = BeginGlobal({"pg"});
  PreparePg(XidOf(h, "pg"), 6, 8);
  ASSERT_TRUE(Register(h.txn_id(), "pg", XidOf(h, "pg")).ok());
  ASSERT_TRUE(RegisterCallback(h.txn_id(), "key-43", address).ok());
  v1::Transaction t2;
  grpc::Status no = CommitGlobal(h.txn_id(), &t2);
  EXPECT_EQ(no.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(no.error_message(), HasSubstr("locked"));
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

// txcoord killed after the decision: the branches are committed after its
// restart, with no client left.
TEST_F(TransactionServiceTest, BranchesAreCommittedAfterACrashAfterTheDecision) {
  StopServer();
  TxcoordProcess p(TXC_BINARY, ProcessConfig("txcoord.yaml", "jp", "maria", maria_dsn_), tmp_.path());
  ASSERT_TRUE(p.Start("commit.after_decision_logged=crash"));
  Connect(p.address());
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  PreparePg(XidOf(g, "pg"), 4, 12);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  PrepareMaria(XidOf(g, "maria"), 4, 12);
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  v1::Transaction t;
  (void)CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(p.WaitForCrash(10));
  ASSERT_TRUE(p.Start());
  EXPECT_EQ(PgBalance(pg_uri_, 4), kInitial - 12);
  EXPECT_EQ(MyBalance(4), kInitial + 12);
  EXPECT_EQ(PreparedLeft(), 0);
  p.Stop();
}

// The services as separate processes: each prepares its own branch on its
// own database and registers it; the MariaDB service then commits the
// global transaction.
TEST_F(TransactionServiceTest, TwoServiceProcessesPrepareTheirBranchesAndOneCommits) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  const std::string go = tmp_.Sub("commit-now");
  ServiceProcess pg(ServiceArgs(g, "pg", Debit(pg_table_, 8, 40)));
  ServiceProcess my(With(ServiceArgs(g, "maria", Credit(my_table_, 8, 40)), {"--commit-when", go}));
  EXPECT_EQ(pg.ReadLine(), "prepared");
  EXPECT_EQ(pg.ReadLine(), "registered");
  EXPECT_EQ(pg.Wait(), 0);
  EXPECT_EQ(my.ReadLine(), "prepared");
  EXPECT_EQ(my.ReadLine(), "registered");
  std::ofstream(go) << "go";
  EXPECT_EQ(my.ReadLine(), "committed COMMITTED");
  EXPECT_EQ(my.Wait(), 0);
  EXPECT_EQ(PgBalance(pg_uri_, 8), kInitial - 40);
  EXPECT_EQ(MyBalance(8), kInitial + 40);
  EXPECT_EQ(PreparedLeft(), 0);
}

// A service killed after preparing and before registering leaves a
// prepared orphan: CommitGlobal aborts and rolls it back with the rest.
TEST_F(TransactionServiceTest, AServiceKilledBeforeRegisteringIsRolledBack) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  const std::string go = tmp_.Sub("commit-now-2");
  ServiceProcess pg(With(ServiceArgs(g, "pg", Debit(pg_table_, 9, 40)), {"--stop-after", "prepare"}));
  ServiceProcess my(With(ServiceArgs(g, "maria", Credit(my_table_, 9, 40)), {"--commit-when", go}));
  ASSERT_EQ(pg.ReadLine(), "prepared");
  pg.Kill();
  EXPECT_EQ(my.ReadLine(), "prepared");
  EXPECT_EQ(my.ReadLine(), "registered");
  std::ofstream(go) << "go";
  const std::string outcome = my.ReadLine();
  EXPECT_THAT(outcome, HasSubstr("commit-failed 10 "));  // ABORTED
  EXPECT_THAT(outcome, HasSubstr("never registered"));
  EXPECT_EQ(my.Wait(), 1);
  EXPECT_EQ(PgBalance(pg_uri_, 9), kInitial);
  EXPECT_EQ(MyBalance(9), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
}

// A service killed after registering, and nobody commits: the branches
// are rolled back at the transaction's timeout.
TEST_F(TransactionServiceTest, AServiceKilledAfterRegisteringIsRolledBackAtTheTimeout) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"}, 1500);
  ServiceProcess pg(With(ServiceArgs(g, "pg", Debit(pg_table_, 10, 40)), {"--stop-after", "register"}));
  ServiceProcess my(ServiceArgs(g, "maria", Credit(my_table_, 10, 40)));
  ASSERT_EQ(pg.ReadLine(), "prepared");
  ASSERT_EQ(pg.ReadLine(), "registered");
  pg.Kill();
  EXPECT_EQ(my.Wait(), 0);
  EXPECT_TRUE(NothingPreparedWithin(absl::Seconds(10)));
  EXPECT_EQ(GetTxn(g.txn_id()).state(), v1::ABORTED);
  EXPECT_EQ(PgBalance(pg_uri_, 10), kInitial);
  EXPECT_EQ(MyBalance(10), kInitial);
}

// A bind without two-phase commit that the service writes itself: its
// local COMMIT, carrying txcoord's decision row, is the decision.
TEST_F(TransactionServiceTest, AServiceCommitsItsOwnLastResource) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg"});
  PreparePg(XidOf(g, "pg"), 11, 50);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  std::string payload;
  grpc::Status p = PrepareGlobal(g.txn_id(), "lite", &payload);
  ASSERT_TRUE(p.ok()) << p.error_message();
  EXPECT_FALSE(payload.empty());
  // Nothing may join after PrepareGlobal.
  EXPECT_EQ(ExecuteGlobal(g.txn_id(), "pg2", "SELECT 1").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(AddBranch(g.txn_id(), "maria", nullptr).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_EQ(CommitLiteWithDecision(g.txn_id(), payload, 11), "");
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 11), kInitial - 50);
  EXPECT_EQ(LiteNotes(), std::vector<std::string>{"service-lr"});
  // The row goes once the END is durable (batched every 100 ms).
  int rows = -1;
  for (int i = 0; i < 50 && rows != 0; ++i) {
    if (i > 0) absl::SleepFor(absl::Milliseconds(100));
    rows = LiteDecisionRows(g.txn_id());
  }
  EXPECT_EQ(rows, 0) << "the decision row is dropped once the branches are finished";
  EXPECT_EQ(PreparedLeft(), 0);
  // Wrong uses.
  v1::BeginGlobalResponse h = BeginGlobal({});
  EXPECT_EQ(PrepareGlobal(h.txn_id(), "pg", nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(PrepareGlobal(h.txn_id(), "nope", nullptr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(ExecuteGlobal(h.txn_id(), "pg", "SELECT 1").ok());
  EXPECT_EQ(PrepareGlobal(h.txn_id(), "lite", nullptr).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// The usual order for an ORM: the service's last-resource transaction has
// written before it asks PrepareGlobal. txcoord made the decision table at
// start (SQLite would not let it create one now); without it the answer is
// FAILED_PRECONDITION and the transaction stays open.
TEST_F(TransactionServiceTest, PrepareGlobalWhileTheServiceTransactionHoldsItsDatabase) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg"});
  PreparePg(XidOf(g, "pg"), 16, 5);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  RawOdbc lite(sqlite_dsn_);
  ASSERT_TRUE(lite.ok()) << lite.error();
  lite.Query("BEGIN");
  lite.Query(absl::StrCat("INSERT INTO ", lite_table_, " VALUES (16, 'service-lr')"));
  std::string payload;
  grpc::Status p = PrepareGlobal(g.txn_id(), "lite", &payload);
  ASSERT_TRUE(p.ok()) << p.error_message();
  lite.Query(absl::StrCat("INSERT INTO txcoord_decisions (txn_id, payload) VALUES ('", g.txn_id(), "', '", payload, "')"));
  lite.Query("COMMIT");
  v1::Transaction t;
  grpc::Status c = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(c.ok()) << c.error_message();
  EXPECT_EQ(PgBalance(pg_uri_, 16), kInitial - 5);

  // Without the table, and the database held by a service's transaction
  // from before txcoord started.
  lite.Query("DROP TABLE txcoord_decisions");
  StopServer();
  lite.Query("BEGIN");
  lite.Query(absl::StrCat("INSERT INTO ", lite_table_, " VALUES (17, 'held')"));
  StartServer();
  Connect(server_->address());
  v1::BeginGlobalResponse h = BeginGlobal({});
  grpc::Status refused = PrepareGlobal(h.txn_id(), "lite", nullptr);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("still open"));
  lite.Query("ROLLBACK");
  EXPECT_EQ(GetTxn(h.txn_id()).state(), v1::ACTIVE);
  ASSERT_TRUE(RollbackGlobal(h.txn_id(), &t).ok());
  EXPECT_EQ(t.state(), v1::ABORTED);
}

// The service never commits its last resource (it died): at the timeout
// txcoord fences the decision row and rolls everything back; the service
// can then no longer commit.
TEST_F(TransactionServiceTest, ALastResourceNeverCommittedIsFencedAndRolledBack) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg"}, 1500);
  PreparePg(XidOf(g, "pg"), 12, 50);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  std::string payload;
  ASSERT_TRUE(PrepareGlobal(g.txn_id(), "lite", &payload).ok());
  EXPECT_TRUE(NothingPreparedWithin(absl::Seconds(10)));
  EXPECT_EQ(GetTxn(g.txn_id()).state(), v1::ABORTED);
  EXPECT_EQ(PgBalance(pg_uri_, 12), kInitial);
  EXPECT_THAT(CommitLiteWithDecision(g.txn_id(), payload, 12), HasSubstr("txcoord_decisions"))
      << "the late service's commit must fail on the fence row";
  EXPECT_THAT(LiteNotes(), ::testing::IsEmpty());
}

// The service commits its last resource and dies before CommitGlobal: at
// the timeout the fence finds its row and txcoord commits the rest.
TEST_F(TransactionServiceTest, ALastResourceCommittedWithoutCommitGlobalIsCommittedAtTheTimeout) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg"}, 1500);
  PreparePg(XidOf(g, "pg"), 13, 50);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  std::string payload;
  ASSERT_TRUE(PrepareGlobal(g.txn_id(), "lite", &payload).ok());
  ASSERT_EQ(CommitLiteWithDecision(g.txn_id(), payload, 13), "");
  EXPECT_TRUE(NothingPreparedWithin(absl::Seconds(10)));
  EXPECT_EQ(GetTxn(g.txn_id()).state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 13), kInitial - 50);
  EXPECT_EQ(LiteNotes(), std::vector<std::string>{"service-lr"});
  v1::Transaction t;
  EXPECT_EQ(RollbackGlobal(g.txn_id(), &t).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// txcoord killed between PrepareGlobal and CommitGlobal: at restart,
// recovery learns from the last resource's table whether the service
// committed — a row: the branches commit; none: it fences (the service's
// late commit then fails) and rolls them back.
TEST_F(TransactionServiceTest, RecoverySettlesAServiceLastResourceAfterACrash) {
  StopServer();
  TxcoordProcess p(TXC_BINARY, ProcessConfig("txcoord-lr.yaml", "jlr", "lite", sqlite_dsn_), tmp_.path());
  ASSERT_TRUE(p.Start());
  Connect(p.address());
  // Committed by the service before the crash.
  v1::BeginGlobalResponse done = BeginGlobal({"pg"});
  PreparePg(XidOf(done, "pg"), 14, 50);
  ASSERT_TRUE(Register(done.txn_id(), "pg", XidOf(done, "pg")).ok());
  std::string done_payload;
  ASSERT_TRUE(PrepareGlobal(done.txn_id(), "lite", &done_payload).ok());
  ASSERT_EQ(CommitLiteWithDecision(done.txn_id(), done_payload, 14), "");
  // Not committed by the service before the crash.
  v1::BeginGlobalResponse open = BeginGlobal({"pg"});
  PreparePg(XidOf(open, "pg"), 15, 50);
  ASSERT_TRUE(Register(open.txn_id(), "pg", XidOf(open, "pg")).ok());
  std::string open_payload;
  ASSERT_TRUE(PrepareGlobal(open.txn_id(), "lite", &open_payload).ok());
  p.Kill();
  ASSERT_TRUE(p.Start());
  Connect(p.address());
  EXPECT_EQ(PgBalance(pg_uri_, 14), kInitial - 50);
  EXPECT_EQ(PgBalance(pg_uri_, 15), kInitial);
  EXPECT_EQ(PreparedLeft(), 0);
  {
    grpc::ClientContext ctx;
    v1::GetTransactionRequest req;
    req.set_txn_id(done.txn_id());
    v1::Transaction t;
    ASSERT_TRUE(txs_->GetTransaction(&ctx, req, &t).ok());
    EXPECT_EQ(t.state(), v1::COMMITTED);
  }
  EXPECT_THAT(CommitLiteWithDecision(open.txn_id(), open_payload, 15), HasSubstr("txcoord_decisions"));
  EXPECT_EQ(LiteNotes(), std::vector<std::string>{"service-lr"});
  p.Stop();
}

}  // namespace
}  // namespace txcoord::testing
