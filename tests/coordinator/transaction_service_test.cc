// TransactionService: services prepare their own branches on their own
// connections under xids txcoord minted, register them, and txcoord makes
// the decision and finishes the branches itself.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <future>

#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/transaction.grpc.pb.h"
#include "util/failpoint.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

// A txc_branch_service child process: its stdout lines, SIGKILL, exit code.
class ServiceProcess {
 public:
  explicit ServiceProcess(std::vector<std::string> args) : args_(std::move(args)) {
    // Everything the child needs is built before fork (no allocation after
    // it in a threaded process).
    args_.insert(args_.begin(), TXC_BRANCH_SERVICE);
    std::vector<char*> argv;
    for (auto& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe(fds) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      // Never outlives a crashed test. (The signal follows the forking
      // thread, not the process: fine here, the test's own thread forks
      // and outlives its children; not for txcoord processes that the
      // bank test restarts from a thread that ends first.)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~ServiceProcess() {
    Kill();
    if (out_ >= 0) ::close(out_);
  }
  // The next line of its stdout, or "" after `timeout` or at its end.
  std::string ReadLine(absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (left <= 0 || out_ < 0) return "";
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) return "";
      char chunk[512];
      ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) return "";
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Its exit code (waits up to `timeout`); -1 when it did not end by itself.
  int Wait(absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (pid_ > 0 && absl::Now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

 private:
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buf_;
};

class TransactionServiceTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    CoordinatorTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    Connect(server_->address());
  }
  void Connect(const std::string& address) {
    txs_ = v1::TransactionService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }

  v1::BeginGlobalResponse BeginGlobal(std::vector<std::string> binds, int timeout_ms = 0) {
    grpc::ClientContext ctx;
    v1::BeginGlobalRequest req;
    for (auto& b : binds) req.add_binds(b);
    if (timeout_ms) {
      req.mutable_timeout()->set_seconds(timeout_ms / 1000);
      req.mutable_timeout()->set_nanos((timeout_ms % 1000) * 1000000);
    }
    v1::BeginGlobalResponse resp;
    grpc::Status s = txs_->BeginGlobal(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  static std::string XidOf(const v1::BeginGlobalResponse& g, const std::string& bind) {
    for (const auto& x : g.xids()) {
      if (x.bind() == bind) return x.xid();
    }
    return "";
  }
  // "The PostgreSQL service": its own connection, its own SQL.
  void PreparePg(const std::string& gid, int account, int64_t amount) {
    pqxx::connection c(pg_uri_);
    pqxx::nontransaction n(c);
    n.exec("BEGIN");
    n.exec(Debit(pg_table_, account, amount));
    n.exec("PREPARE TRANSACTION " + n.quote(gid));
  }
  // "The MariaDB service": XA on its own connection, closed after PREPARE.
  void PrepareMaria(const std::string& xa, int account, int64_t amount) {
    RawOdbc my(maria_dsn_);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query("XA START " + xa);
    my.Query(Credit(my_table_, account, amount));
    my.Query("XA END " + xa);
    my.Query("XA PREPARE " + xa);
  }
  grpc::Status Register(const std::string& txn, const std::string& bind, const std::string& xid) {
    grpc::ClientContext ctx;
    v1::RegisterBranchRequest req;
    req.set_txn_id(txn);
    req.set_bind(bind);
    req.set_xid(xid);
    v1::RegisterBranchResponse resp;
    return txs_->RegisterBranch(&ctx, req, &resp);
  }
  // A callback participant's branch `branch_id` at `address`.
  grpc::Status RegisterCallback(const std::string& txn, const std::string& branch_id, const std::string& address) {
    grpc::ClientContext ctx;
    v1::RegisterBranchRequest req;
    req.set_txn_id(txn);
    req.set_xid(branch_id);
    req.set_participant_address(address);
    v1::RegisterBranchResponse resp;
    return txs_->RegisterBranch(&ctx, req, &resp);
  }
  grpc::Status RegisterReadOnly(const std::string& txn, const std::string& bind, const std::string& xid) {
    grpc::ClientContext ctx;
    v1::RegisterBranchRequest req;
    req.set_txn_id(txn);
    req.set_bind(bind);
    req.set_xid(xid);
    req.set_read_only(true);
    v1::RegisterBranchResponse resp;
    return txs_->RegisterBranch(&ctx, req, &resp);
  }
  grpc::Status AddBranch(const std::string& txn, const std::string& bind, std::string* xid) {
    grpc::ClientContext ctx;
    v1::AddBranchRequest req;
    req.set_txn_id(txn);
    req.set_bind(bind);
    v1::BranchXid resp;
    grpc::Status s = txs_->AddBranch(&ctx, req, &resp);
    if (xid != nullptr) *xid = resp.xid();
    return s;
  }
  grpc::Status ExecuteGlobal(const std::string& txn, const std::string& bind, const std::string& sql,
                             v1::ExecuteResponse* out = nullptr) {
    grpc::ClientContext ctx;
    v1::GlobalExecuteRequest req;
    req.set_txn_id(txn);
    req.set_bind(bind);
    req.add_statements()->set_sql(sql);
    v1::ExecuteResponse resp;
    return txs_->Execute(&ctx, req, out != nullptr ? out : &resp);
  }
  grpc::Status RollbackGlobal(const std::string& txn, v1::Transaction* out) {
    grpc::ClientContext ctx;
    v1::RollbackGlobalRequest req;
    req.set_txn_id(txn);
    return txs_->RollbackGlobal(&ctx, req, out);
  }
  // Arguments of a service process preparing `sql` on `bind` under its xid in `g`.
  std::vector<std::string> ServiceArgs(const v1::BeginGlobalResponse& g, const std::string& bind,
                                       const std::string& sql) {
    std::vector<std::string> a = {"--target", server_->address(), "--txn", g.txn_id(), "--bind", bind,
                                  "--xid", XidOf(g, bind), "--sql", sql};
    if (bind == "pg") a.insert(a.end(), {"--pg", pg_uri_});
    else a.insert(a.end(), {"--odbc", maria_dsn_});
    return a;
  }
  static std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  grpc::Status PrepareGlobal(const std::string& txn, const std::string& lr_bind, std::string* payload) {
    grpc::ClientContext ctx;
    v1::PrepareGlobalRequest req;
    req.set_txn_id(txn);
    req.set_last_resource_bind(lr_bind);
    v1::PrepareGlobalResponse resp;
    grpc::Status s = txs_->PrepareGlobal(&ctx, req, &resp);
    if (payload != nullptr) *payload = resp.payload();
    return s;
  }
  // "The SQLite service": its own write and txcoord's decision row in one
  // local transaction on its own connection. Returns the first error ("" if
  // it committed).
  std::string CommitLiteWithDecision(const std::string& txn, const std::string& payload, int id) {
    RawOdbc lite(sqlite_dsn_);
    if (!lite.ok()) return lite.error();
    std::string err;
    for (const std::string& q :
         {std::string("BEGIN"), absl::StrCat("INSERT INTO ", lite_table_, " VALUES (", id, ", 'service-lr')"),
          absl::StrCat("INSERT INTO txcoord_decisions (txn_id, payload) VALUES ('", txn, "', '", payload, "')"),
          std::string("COMMIT")}) {
      lite.Query(q, 1, &err);
      if (!err.empty()) {
        lite.Query("ROLLBACK", 1, &err);
        return q + ": " + err;
      }
    }
    return "";
  }
  int LiteDecisionRows(const std::string& txn) {
    RawOdbc lite(sqlite_dsn_);
    auto v = lite.Query(absl::StrCat("SELECT COUNT(*) FROM txcoord_decisions WHERE txn_id = '", txn,
                                     "' AND payload <> 'ROLLED_BACK'"));
    return v.empty() ? -1 : std::stoi(v[0]);
  }
  // The config of a txcoord process (this test's node id) with the pg bind
  // and one ODBC bind; returns its path.
  std::string ProcessConfig(const std::string& file, const std::string& journal, const std::string& odbc_bind,
                            const std::string& odbc_dsn) {
    std::string config = tmp_.Sub(file);
    std::ofstream out(config);
    out << "node_id: " << node_id_ << "\nlisten: 127.0.0.1:0\nplaintext: true\njournal: {dir: " << tmp_.Sub(journal)
        << "}\nbinds:\n  pg: {driver: postgres, dsn: \"" << pg_uri_ << "\"}\n"
        << "  " << odbc_bind << ": {driver: odbc, dsn: \"" << odbc_dsn << "\"}\n";
    return config;
  }
  // Waits (bounded) until no prepared branch of this test's node is left.
  bool NothingPreparedWithin(absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    while (PreparedLeft() != 0) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return true;
  }
  std::vector<std::string> LiteNotes() {
    RawOdbc lite(sqlite_dsn_);
    return lite.Query(absl::StrCat("SELECT note FROM ", lite_table_, " ORDER BY id"));
  }
  grpc::Status CommitGlobal(const std::string& txn, v1::Transaction* out) {
    grpc::ClientContext ctx;
    v1::CommitGlobalRequest req;
    req.set_txn_id(txn);
    return txs_->CommitGlobal(&ctx, req, out);
  }

  std::unique_ptr<v1::TransactionService::Stub> txs_;
};

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

// A resource that is not a database: a key-value "service" implementing
// ParticipantService, with its state kept outside the gRPC server so that
// the server can be killed and restarted.
struct KvState {
  absl::Mutex mu;
  std::map<std::string, std::string> branches;  // "txn/branch" → prepared | committed | rolled_back
  bool vote_no = false;
};

class KvParticipant final : public v1::ParticipantService::Service {
 public:
  explicit KvParticipant(KvState* state) : state_(state) {}
  grpc::Status Prepare(grpc::ServerContext*, const v1::ParticipantRequest* r, v1::ParticipantVote* v) override {
    absl::MutexLock lock(&state_->mu);
    if (state_->vote_no) {
      v->set_vote(v1::ParticipantVote::NO);
      v->set_reason("the key is locked");
      return grpc::Status::OK;
    }
    state_->branches[r->txn_id() + "/" + r->branch_id()] = "prepared";
    v->set_vote(v1::ParticipantVote::YES);
    return grpc::Status::OK;
  }
  grpc::Status Commit(grpc::ServerContext*, const v1::ParticipantRequest* r, v1::ParticipantAck* a) override {
    return Finish(*r, "committed", a);
  }
  grpc::Status Rollback(grpc::ServerContext*, const v1::ParticipantRequest* r, v1::ParticipantAck* a) override {
    return Finish(*r, "rolled_back", a);
  }
  grpc::Status ListPrepared(grpc::ServerContext*, const v1::ListPreparedRequest*,
                            v1::ListPreparedResponse* resp) override {
    absl::MutexLock lock(&state_->mu);
    for (const auto& [key, st] : state_->branches) {
      if (st != "prepared") continue;
      auto* b = resp->add_branches();
      b->set_txn_id(key.substr(0, key.find('/')));
      b->set_branch_id(key.substr(key.find('/') + 1));
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status Finish(const v1::ParticipantRequest& r, const std::string& to, v1::ParticipantAck* a) {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->branches.find(r.txn_id() + "/" + r.branch_id());
    if (it == state_->branches.end() || it->second != "prepared") {
      a->set_unknown_branch(true);  // idempotent: already finished, or never prepared
      return grpc::Status::OK;
    }
    it->second = to;
    return grpc::Status::OK;
  }
  KvState* state_;
};

class KvServer {
 public:
  KvServer(KvState* state, int port) : service_(state) {
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
  }
  ~KvServer() { server_->Shutdown(std::chrono::system_clock::now()); }
  int port() const { return port_; }

 private:
  KvParticipant service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

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
