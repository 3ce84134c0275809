// The crash matrix: for every commit-protocol fault point and every kind of
// transaction (PostgreSQL+MariaDB, PostgreSQL+PostgreSQL, PostgreSQL+MariaDB
// with SQLite as the last resource, PostgreSQL configured as the last
// resource + MariaDB), run a transfer through the real
// txcoord binary, SIGKILL it at that point, restart it, and check:
//   - all or nothing: both accounts changed, or neither (and the last
//     resource's row with them);
//   - the outcome is the one the protocol promises for that point (abort
//     before the decision, commit after it), and a client that was told
//     COMMITTED sees its writes;
//   - GetTransaction after the restart reports that outcome;
//   - no prepared branch of this node is left on any database;
//   - the journal holds no unfinished record;
//   - a last resource's decision row is removed once the transaction ends.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "journal/journal.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/db_checks.h"
#include "tests/testing/local_db.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/session.grpc.pb.h"

#ifndef TXC_BINARY
#error "TXC_BINARY must name the txcoord binary"
#endif

namespace txcoord::testing {
namespace {

namespace v1 = ::txcoord::v1;

struct Case {
  std::string point;     // the fault point armed for the first run
  std::string topology;  // "pg_maria", "pg_pg", "pg_maria_lite", "pglr_maria"
  bool commits;          // the outcome the protocol promises
  std::string backend = "rocksdb";  // the journal: "rocksdb" or "etcd" (the harness's etcd)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.point << " on " << c.topology << " (" << c.backend << ")"; }

std::string Name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.point + "_" + info.param.topology + (info.param.backend == "etcd" ? "_etcd" : "");
  for (char& c : n) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return n;
}


class CrashMatrixTest : public ::testing::TestWithParam<Case> {
 protected:
  // The journal's backend: the case's (KeyedRetryTest, not parameterized,
  // uses RocksDB).
  virtual std::string Backend() const { return GetParam().backend; }

  void SetUp() override {
    TXC_REQUIRE_DB_ENV(pg_uri_, "TXC_PG_URI");
    TXC_REQUIRE_DB_ENV(pg2_uri_, "TXC_PG2_URI");
    TXC_REQUIRE_DB_ENV(maria_dsn_, "TXC_MARIADB_ODBC");
    static std::mt19937_64 rng(std::random_device{}());
    suffix_ = std::to_string(rng() % 1000000000ull);
    node_ = "crash" + suffix_;
    table_ = "crash_acct_" + suffix_;
    sqlite_dsn_ = absl::StrCat("Driver=SQLite3;Database=", tmp_.Sub("lr.db"));
    for (const std::string& uri : {pg_uri_, pg2_uri_}) {
      RawPostgres(uri, absl::StrCat("CREATE TABLE ", table_, " (id int PRIMARY KEY, balance bigint)"));
      RawPostgres(uri, absl::StrCat("INSERT INTO ", table_, " VALUES (1, 100)"));
    }
    RawOdbc my(maria_dsn_);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query(absl::StrCat("CREATE TABLE ", table_, " (id INT PRIMARY KEY, balance BIGINT) ENGINE=InnoDB"));
    my.Query(absl::StrCat("INSERT INTO ", table_, " VALUES (1, 100)"));
    RawOdbc lite(sqlite_dsn_);
    lite.Query(absl::StrCat("CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)"));

    std::string journal_yaml = absl::StrCat("journal: {dir: ", tmp_.Sub("journal"), "}\n");
    if (Backend() == "etcd") {
      TXC_REQUIRE_DB_ENV(etcd_, "TXC_ETCD_ENDPOINTS");
      // The killed process's lease holds the id for up to lease_ttl: the
      // restart waits for it.
      journal_yaml = absl::StrCat("journal:\n  backend: etcd\n  etcd: {cluster: crash", suffix_,
                                  ", lease_ttl: 2s, call_timeout: 1s, endpoints: [\"",
                                  absl::StrReplaceAll(etcd_, {{",", "\", \""}}), "\"]}\n");
    }
    config_ = tmp_.Sub("txcoord.yaml");
    std::ofstream out(config_);
    out << "node_id: " << node_ << "\n"
        << "listen: 127.0.0.1:0\nplaintext: true\n"
        << journal_yaml
        << "timeouts: {transaction: 20s, orphan_safety: 1s}\n"
        << "recovery: {interval: 200ms, backoff: {initial: 50ms, max: 500ms}}\n"
        << "binds:\n"
        << "  pg: {driver: postgres, dsn: \"" << pg_uri_ << "\"}\n"
        << "  pglr: {driver: postgres, dsn: \"" << pg_uri_ << "\", last_resource: true}\n"
        << "  pg2: {driver: postgres, dsn: \"" << pg2_uri_ << "\"}\n"
        << "  maria: {driver: odbc, dsn: \"" << maria_dsn_ << "\"}\n"
        << "  lite: {driver: odbc, dsn: \"" << sqlite_dsn_ << "\"}\n";
  }

  void TearDown() override {
    if (pg_uri_.empty()) return;
    for (const std::string& uri : {pg_uri_, pg2_uri_}) {
      try {
        RawPostgres(uri, "DROP TABLE IF EXISTS " + table_);
      } catch (const std::exception&) {
      }
    }
    RawOdbc my(maria_dsn_);
    if (my.ok()) my.Query("DROP TABLE IF EXISTS " + table_);
  }

  int64_t Balance(const std::string& bind) {
    if (bind == "maria") {
      RawOdbc my(maria_dsn_);
      auto v = my.Query(absl::StrCat("SELECT balance FROM ", table_, " WHERE id = 1"));
      return v.empty() ? -1 : std::stoll(v[0]);
    }
    return std::stoll(PgScalar(bind == "pg" ? pg_uri_ : pg2_uri_,
                               absl::StrCat("SELECT balance FROM ", table_, " WHERE id = 1")));
  }

  int PreparedLeft() { return PreparedBranchesOfNode(node_, {pg_uri_, pg2_uri_}, maria_dsn_); }

  TempDir tmp_;
  std::string pg_uri_, pg2_uri_, maria_dsn_, sqlite_dsn_, etcd_;
  std::string suffix_, node_, table_, config_;
};

TEST_P(CrashMatrixTest, EndsAllOrNothingAfterRestart) {
  const Case& c = GetParam();
  const std::string bind_b = c.topology == "pg_pg" ? "pg2" : "maria";
  const bool with_lr = c.topology == "pg_maria_lite";
  // pglr is the same database as pg, configured as last resource.
  const bool pg_lr = c.topology == "pglr_maria";
  TxcoordProcess txcoord(TXC_BINARY, config_, tmp_.path());

  const bool in_recovery = c.point == "recovery.after_redrive";
  ASSERT_TRUE(txcoord.Start(in_recovery ? "commit.after_decision_logged=crash" : c.point + "=crash"))
      << "txcoord did not start; see " << txcoord.log_path();

  // The transfer.
  auto channel = grpc::CreateChannel(txcoord.address(), grpc::InsecureChannelCredentials());
  auto stub = v1::SessionService::NewStub(channel);
  std::string session, txn_id;
  {
    grpc::ClientContext ctx;
    v1::OpenSessionRequest req;
    v1::OpenSessionResponse resp;
    ASSERT_TRUE(stub->OpenSession(&ctx, req, &resp).ok());
    session = resp.session_id();
  }
  auto exec = [&](const std::string& bind, const std::string& sql) {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    req.set_session_id(session);
    req.set_bind(bind);
    req.add_statements()->set_sql(sql);
    v1::ExecuteResponse resp;
    grpc::Status s = stub->Execute(&ctx, req, &resp);
    txn_id = resp.txn_id();
    return s;
  };
  ASSERT_TRUE(exec(pg_lr ? "pglr" : "pg", absl::StrCat("UPDATE ", table_, " SET balance = balance - 30 WHERE id = 1")).ok());
  ASSERT_TRUE(exec(bind_b, absl::StrCat("UPDATE ", table_, " SET balance = balance + 30 WHERE id = 1")).ok());
  if (with_lr) {
    ASSERT_TRUE(exec("lite", "INSERT INTO audit VALUES (1, 'transfer')").ok());
  }
  bool told_committed = false;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::CommitRequest req;
    req.set_session_id(session);
    v1::CommitResponse resp;
    grpc::Status s = stub->Commit(&ctx, req, &resp);
    told_committed = s.ok() && (resp.state() == v1::COMMITTED || resp.state() == v1::COMMITTING);
  }
  ASSERT_TRUE(txcoord.WaitForCrash(10)) << "fault point " << c.point << " was not hit";
  stub.reset();
  channel.reset();

  if (in_recovery) {  // NOLINT
    // Dies again in recovery, after re-driving a branch.
    EXPECT_FALSE(txcoord.Start("recovery.after_redrive=crash"));
    EXPECT_FALSE(txcoord.running());
  }
  ASSERT_TRUE(txcoord.Start()) << "restart failed; see " << txcoord.log_path();

  // Recovery at start runs before serving; allow the background pass a
  // moment for branches it could not finish at once.
  int64_t a = 0, b = 0;
  int left = -1;
  std::string decision_rows = "0";
  for (int i = 0; i < 100; ++i) {
    a = Balance("pg");
    b = Balance(bind_b);
    left = PreparedLeft();
    if (pg_lr) {
      // txcoord created the table at start (a bind that holds decisions).
      decision_rows = PgDecisionRows(pg_uri_, txn_id);
    }
    if (left == 0 && (a + b == 200) && (a == 100) == !c.commits && decision_rows == "0") break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(decision_rows, "0") << "the last resource's decision row of " << txn_id << " was not removed";
  EXPECT_EQ(a + b, 200) << "the transfer was applied on one side only";
  EXPECT_EQ(left, 0) << "prepared branches of " << node_ << " are left";
  if (c.commits) {
    EXPECT_EQ(a, 70);
    EXPECT_EQ(b, 130);
  } else {
    EXPECT_EQ(a, 100);
    EXPECT_EQ(b, 100);
    EXPECT_FALSE(told_committed);
  }
  if (told_committed) {
    EXPECT_EQ(a, 70) << "the client was told COMMITTED";
  }
  if (with_lr) {
    RawOdbc lite(sqlite_dsn_);
    auto rows = lite.Query("SELECT count(*) FROM audit");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0], c.commits ? "1" : "0") << "the last resource disagrees";
  }
  {
    auto channel2 = grpc::CreateChannel(txcoord.address(), grpc::InsecureChannelCredentials());
    auto stub2 = v1::SessionService::NewStub(channel2);
    grpc::ClientContext ctx;
    v1::GetTransactionRequest req;
    req.set_txn_id(txn_id);
    v1::Transaction t;
    grpc::Status s = stub2->GetTransaction(&ctx, req, &t);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(t.state(), c.commits ? v1::COMMITTED : v1::ABORTED) << txn_id;
  }
  txcoord.Stop();
  journal::JournalOptions o;
  o.dir = tmp_.Sub("journal");
  o.node_id = node_;
  if (c.backend == "etcd") {
    o.backend = journal::Backend::kEtcd;
    o.etcd.client.endpoints = absl::StrSplit(etcd_, ',');
    o.etcd.prefix = absl::StrCat("/txcoord/crash", suffix_, "/");
  }
  auto j = journal::OpenJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  auto unfinished = (*j)->ScanUnfinished();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_TRUE(unfinished->empty()) << unfinished->size() << " unfinished, first " << (*unfinished)[0].txn_id();
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const std::string topology : {"pg_maria", "pg_pg", "pg_maria_lite", "pglr_maria"}) {
    cases.push_back({"commit.before_prepare", topology, false});
    cases.push_back({"commit.after_prepare", topology, false});
    cases.push_back({"commit.before_decision_logged", topology, false});
    if (topology == "pg_maria_lite" || topology == "pglr_maria") {
      cases.push_back({"commit.after_last_resource_committed", topology, true});
    }
    cases.push_back({"commit.after_decision_logged", topology, true});
    cases.push_back({"commit.after_branch_committed", topology, true});
    cases.push_back({"commit.before_end", topology, true});
    cases.push_back({"recovery.after_redrive", topology, true});
  }
  // The etcd journal: the same protocol points, and its own write paths
  // (before the Txn; after it was applied, before the reply).
  for (const auto& [point, commits] : std::vector<std::pair<std::string, bool>>{
           {"commit.after_prepare", false},
           {"commit.before_decision_logged", false},
           {"journal.etcd.before_txn", false},
           {"journal.etcd.after_txn", true},
           {"commit.after_decision_logged", true},
           {"commit.after_branch_committed", true},
           {"recovery.after_redrive", true}}) {
    cases.push_back({point, "pg_maria", commits, "etcd"});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(FaultPoints, CrashMatrixTest, ::testing::ValuesIn(AllCases()), Name);

// RunTransaction's idempotency key outlives the process: killed after the
// commit and before the reply, restarted, the retry with the key answers
// the recorded outcome and runs nothing again.
class KeyedRetryTest : public CrashMatrixTest {
 protected:
  std::string Backend() const override { return "rocksdb"; }

  grpc::Status Run(const std::string& address, const std::string& key,
                   const std::vector<std::pair<std::string, std::string>>& work, v1::RunTransactionResponse* resp) {
    auto stub = v1::SessionService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::RunTransactionRequest req;
    req.set_idempotency_key(key);
    for (const auto& [bind, sql] : work) {
      auto* w = req.add_work();
      w->set_bind(bind);
      w->add_statements()->set_sql(sql);
    }
    return stub->RunTransaction(&ctx, req, resp);
  }
  int64_t Rows(const std::string& bind, const std::string& note) {
    const std::string sql = absl::StrCat("SELECT count(*) FROM ", rows_, " WHERE note = '", note, "'");
    if (bind == "maria") {
      RawOdbc my(maria_dsn_);
      auto v = my.Query(sql);
      return v.empty() ? -1 : std::stoll(v[0]);
    }
    return std::stoll(PgScalar(pg_uri_, sql));
  }
  void SetUp() override {
    CrashMatrixTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    rows_ = "keyed_rows_" + suffix_;
    RawPostgres(pg_uri_, absl::StrCat("CREATE TABLE ", rows_, " (id serial PRIMARY KEY, note text)"));
    RawOdbc my(maria_dsn_);
    my.Query(absl::StrCat("CREATE TABLE ", rows_, " (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT) ENGINE=InnoDB"));
  }
  void TearDown() override {
    if (!rows_.empty()) {
      RawPostgres(pg_uri_, "DROP TABLE IF EXISTS " + rows_);
      RawOdbc my(maria_dsn_);
      if (my.ok()) my.Query("DROP TABLE IF EXISTS " + rows_);
    }
    CrashMatrixTest::TearDown();
  }
  std::string rows_;
};

TEST_F(KeyedRetryTest, ARetryAfterACrashBeforeTheReplyRunsNothingTwice) {
  for (bool two_binds : {false, true}) {
    SCOPED_TRACE(two_binds ? "two binds (decision record)" : "one bind (one-phase commit)");
    const std::string note = two_binds ? "two" : "one";
    std::vector<std::pair<std::string, std::string>> work = {
        {"pg", absl::StrCat("INSERT INTO ", rows_, " (note) VALUES ('", note, "')")}};
    if (two_binds) work.push_back({"maria", absl::StrCat("INSERT INTO ", rows_, " (note) VALUES ('", note, "')")});
    TxcoordProcess p(TXC_BINARY, config_, tmp_.path());
    ASSERT_TRUE(p.Start("session.run_transaction.before_reply=crash"));
    v1::RunTransactionResponse lost;
    grpc::Status first = Run(p.address(), "key-" + note, work, &lost);
    EXPECT_EQ(first.error_code(), grpc::StatusCode::UNAVAILABLE) << first.error_message();
    ASSERT_TRUE(p.WaitForCrash(10));
    ASSERT_EQ(Rows("pg", note), 1);  // committed before the crash
    ASSERT_TRUE(p.Start());
    for (int retry = 0; retry < 2; ++retry) {
      v1::RunTransactionResponse resp;
      grpc::Status again = Run(p.address(), "key-" + note, work, &resp);
      ASSERT_TRUE(again.ok()) << again.error_message();
      EXPECT_TRUE(resp.state() == v1::COMMITTED || resp.state() == v1::COMMITTING) << resp.state();
    }
    EXPECT_EQ(Rows("pg", note), 1);
    if (two_binds) {
      EXPECT_EQ(Rows("maria", note), 1);
    }
    // Another key runs the work again.
    v1::RunTransactionResponse other;
    ASSERT_TRUE(Run(p.address(), "another-" + note, work, &other).ok());
    EXPECT_EQ(Rows("pg", note), 2);
    p.Stop();
  }
  // A rolled-back transaction's key answers its abort after a restart,
  // with the same transaction id, instead of running it again.
  TxcoordProcess p(TXC_BINARY, config_, tmp_.path());
  ASSERT_TRUE(p.Start());
  const std::vector<std::pair<std::string, std::string>> failing = {
      {"pg", absl::StrCat("INSERT INTO ", rows_, " (note) VALUES ('aborted')")},
      {"maria", "INSERT INTO no_such_table_here VALUES (1)"}};
  v1::RunTransactionResponse resp;
  grpc::Status aborted = Run(p.address(), "key-aborted", failing, &resp);
  // The statement's own code (a missing table: INVALID_ARGUMENT).
  ASSERT_FALSE(aborted.ok());
  ASSERT_NE(aborted.error_message().find(" was rolled back"), std::string::npos) << aborted.error_message();
  p.Stop();
  ASSERT_TRUE(p.Start());
  grpc::Status again = Run(p.address(), "key-aborted", failing, &resp);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ABORTED) << again.error_message();
  const std::string id = aborted.error_message().substr(0, aborted.error_message().find(" was rolled back"));
  EXPECT_EQ(again.error_message().substr(0, again.error_message().find(" was rolled back")), id);
  EXPECT_EQ(Rows("pg", "aborted"), 0);
  EXPECT_EQ(PreparedLeft(), 0);
}

// txcoord SIGKILLed while its PostgreSQL statement waits for a row lock:
// the server notices the closed connection (client_connection_check_interval,
// PostgreSQL 14 and later) and ends the statement and its transaction
// within seconds, instead of when the lock is released or the statement's
// deadline (the transaction timeout, 20 s here) passes. The batch ended in
// PREPARE TRANSACTION, so without it the branch would be prepared after
// the holder lets go, for the next start's recovery to roll back. Through
// libpqxx (`pg`) and through psqlODBC (`pgodbc`, same database).
TEST_F(KeyedRetryTest, AStatementWaitingForALockEndsWhenTxcoordIsKilled) {
  if (std::stoi(PgScalar(pg_uri_, "SHOW server_version_num")) < 140000) {
    GTEST_SKIP() << "client_connection_check_interval needs PostgreSQL 14";
  }
  std::string pg_odbc;
  TXC_REQUIRE_DB_ENV(pg_odbc, "TXC_PG_ODBC");
  {
    std::ofstream out(config_, std::ios::app);
    out << "  pgodbc: {driver: odbc, dsn: \"" << pg_odbc << "\"}\n";
  }
  for (const std::string bind : {"pg", "pgodbc"}) {
    SCOPED_TRACE(bind);
    pqxx::connection holder(pg_uri_);
    pqxx::work lock(holder);
    lock.exec(absl::StrCat("UPDATE ", table_, " SET balance = balance WHERE id = 1"));

    TxcoordProcess p(TXC_BINARY, config_, tmp_.path());
    ASSERT_TRUE(p.Start());
    const std::string marker = absl::StrCat("txc_killed_wait_", bind, "_", suffix_);
    std::thread call([&] {
      v1::RunTransactionResponse resp;
      // Fails when the process dies; its outcome is checked in the databases.
      (void)Run(
          p.address(), "",
          {{bind, absl::StrCat("UPDATE ", table_, " SET balance = balance - 1 WHERE id = 1 AND '", marker, "' <> ''")},
           {"pg2", absl::StrCat("UPDATE ", table_, " SET balance = balance + 1 WHERE id = 1")}},
          &resp);
    });
    const std::string waiting = absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%", marker,
                                             "%' AND query NOT LIKE '%pg_stat_activity%'");
    bool seen = false;
    for (int i = 0; i < 200 && !seen; ++i) {
      seen = PgScalar(pg_uri_, waiting + " AND wait_event_type = 'Lock'") == "1";
      if (!seen) absl::SleepFor(absl::Milliseconds(50));
    }
    if (!seen) {
      p.Kill();
      call.join();
      FAIL() << "txcoord's statement never waited for the row lock";
    }
    p.Kill();
    call.join();
    const absl::Time killed = absl::Now();
    bool gone = false;
    while (!gone && absl::Now() < killed + absl::Seconds(10)) {
      gone = PgScalar(pg_uri_, waiting) == "0";
      if (!gone) absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_TRUE(gone) << "the dead process's statement still waits for the lock";
    lock.abort();
    absl::SleepFor(absl::Milliseconds(500));
    EXPECT_EQ(PgScalar(pg_uri_, absl::StrCat("SELECT count(*) FROM pg_prepared_xacts WHERE database = "
                                             "current_database() AND gid LIKE '%",
                                             node_, "%'")),
              "0")
        << "the dead process's branch on pg was prepared after it died";
    // pg2's branch was prepared before the kill: the next start rolls it back.
    ASSERT_TRUE(p.Start());
    for (int i = 0; i < 150 && PreparedLeft() > 0; ++i) absl::SleepFor(absl::Milliseconds(100));
    EXPECT_EQ(PreparedLeft(), 0);
    EXPECT_EQ(Balance("pg"), 100);
    EXPECT_EQ(Balance("pg2"), 100);
    p.Stop();
  }
}

}  // namespace
}  // namespace txcoord::testing
