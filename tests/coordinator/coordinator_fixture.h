// A real txcoord server on 127.0.0.1 (in this process) over the local test
// databases, with accounts tables made for each test, and a gRPC client.
#ifndef TXCOORD_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
#define TXCOORD_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_

#include <pqxx/pqxx>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/server.h"
#include "grpcpp/grpcpp.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/db_checks.h"
#include "tests/testing/local_db.h"
#include "tests/testing/temp_dir.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace txcoord::testing {

namespace v1 = ::txcoord::v1;

inline std::string RandomSuffix() {
  static std::mt19937_64 rng(std::random_device{}());
  return std::to_string(rng() % 1000000000ull);
}


inline v1::Statement Sql(const std::string& sql, std::vector<int64_t> ints = {}) {
  v1::Statement s;
  s.set_sql(sql);
  for (int64_t i : ints) s.add_params()->set_int_value(i);
  return s;
}

// One RunTransaction over (bind, statements) in that order.
inline grpc::Status RunWork(v1::SessionService::Stub& stub,
                     const std::vector<std::pair<std::string, std::vector<std::string>>>& work,
                     v1::RunTransactionResponse* resp) {
  grpc::ClientContext ctx;
  v1::RunTransactionRequest req;
  for (const auto& [bind, statements] : work) {
    auto* w = req.add_work();
    w->set_bind(bind);
    for (const std::string& sql : statements) w->add_statements()->set_sql(sql);
  }
  return stub.RunTransaction(&ctx, req, resp);
}

class CoordinatorTest : public ::testing::Test {
 protected:
  static constexpr int kAccounts = 100;
  static constexpr int64_t kInitial = 1000;

  void SetUp() override {
    TXC_REQUIRE_DB_ENV(pg_uri_, "TXC_PG_URI");
    TXC_REQUIRE_DB_ENV(pg2_uri_, "TXC_PG2_URI");
    TXC_REQUIRE_DB_ENV(maria_dsn_, "TXC_MARIADB_ODBC");
    if (with_pg_odbc_) TXC_REQUIRE_DB_ENV(pg_odbc_dsn_, "TXC_PG_ODBC");
    suffix_ = RandomSuffix();
    node_id_ = "t" + suffix_;
    pg_table_ = "acct_pg_" + suffix_;
    my_table_ = "acct_my_" + suffix_;
    lite_table_ = "audit_" + suffix_;
    sqlite_dsn_ = absl::StrCat("Driver=SQLite3;Database=", tmp_.Sub("audit.db"));
    for (const std::string& uri : {pg_uri_, pg2_uri_}) {
      RawPostgres(uri, absl::StrCat("CREATE TABLE ", pg_table_,
                                    " (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))"));
      RawPostgres(uri, absl::StrCat("INSERT INTO ", pg_table_, " SELECT g, ", kInitial,
                                    " FROM generate_series(1, ", kAccounts, ") g"));
    }
    RawOdbc my(maria_dsn_);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query(absl::StrCat("CREATE TABLE ", my_table_,
                          " (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"));
    for (int i = 1; i <= kAccounts; ++i) {
      my.Query(absl::StrCat("INSERT INTO ", my_table_, " VALUES (", i, ", ", kInitial, ")"));
    }
    RawOdbc lite(sqlite_dsn_);
    ASSERT_TRUE(lite.ok()) << lite.error();
    lite.Query(absl::StrCat("CREATE TABLE ", lite_table_, " (id INTEGER PRIMARY KEY, note TEXT)"));
    StartServer();
  }

  void TearDown() override {
    stub_.reset();
    server_.reset();
    if (pg_uri_.empty()) return;
    for (const std::string& uri : {pg_uri_, pg2_uri_}) {
      try {
        RawPostgres(uri, "DROP TABLE IF EXISTS " + pg_table_);
      } catch (const std::exception&) {
      }
    }
    RawOdbc my(maria_dsn_);
    if (my.ok()) my.Query("DROP TABLE IF EXISTS " + my_table_);
  }

  coordinator::Config MakeConfig() {
    coordinator::Config c;
    c.node_id = node_id_;
    c.listen = "127.0.0.1:0";
    c.plaintext = true;
    c.journal.dir = tmp_.Sub("journal");
    c.journal.node_id = node_id_;
    c.timeouts.transaction = absl::Seconds(20);
    c.timeouts.orphan_safety = absl::Seconds(2);
    c.recovery.interval = absl::Milliseconds(500);
    c.recovery.backoff_initial = absl::Milliseconds(50);
    c.recovery.backoff_max = absl::Milliseconds(500);
    c.limits.max_sessions = max_sessions_;
    if (history_max_ >= 0) c.journal.retention.finished_max = history_max_;
    if (history_per_pass_ > 0) c.journal.retention.max_per_pass = history_per_pass_;
    c.journal.decision_log = decision_log_;
    c.limits.event_loops = event_loops_;
    auto bind = [pg_pool_size = pg_pool_size_, min_open = pool_min_open_](std::string name, std::string driver,
                                                                           std::string dsn) {
      participants::BindOptions b;
      b.name = std::move(name);
      b.driver = std::move(driver);
      b.dsn = std::move(dsn);
      b.pool_size = absl::StartsWith(b.name, "pg") ? pg_pool_size : 40;
      b.acquire_timeout = absl::Seconds(5);
      b.pool_min_open = min_open;
      return b;
    };
    c.binds = {bind("pg", "postgres", pg_uri_), bind("pg2", "postgres", pg2_uri_),
               bind("maria", "mariadb", maria_dsn_)};
    if (with_lite_) c.binds.push_back(bind("lite", "odbc", sqlite_dsn_));
    if (with_pg_odbc_) {
      // The database of "pg" again, through psqlODBC.
      c.binds.push_back(bind("pgodbc", "odbc", pg_odbc_dsn_));
    }
    if (with_pg_last_resource_) {
      // The database of "pg", configured as last resource.
      c.binds.push_back(bind("pglr", "postgres", pg_uri_));
      c.binds.back().last_resource = true;
    }
    return c;
  }

  void StartServer() {
    auto server = coordinator::TxcoordServer::Start(MakeConfig());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::SessionService::NewStub(channel_);
  }

  void StopServer() {
    stub_.reset();
    server_.reset();
  }

  std::string Open(int txn_timeout_ms = 0, int idle_timeout_ms = 0) {
    grpc::ClientContext ctx;
    v1::OpenSessionRequest req;
    if (txn_timeout_ms > 0) {
      req.mutable_transaction_timeout()->set_seconds(txn_timeout_ms / 1000);
      req.mutable_transaction_timeout()->set_nanos((txn_timeout_ms % 1000) * 1000000);
    }
    if (idle_timeout_ms > 0) {
      req.mutable_idle_timeout()->set_seconds(idle_timeout_ms / 1000);
      req.mutable_idle_timeout()->set_nanos((idle_timeout_ms % 1000) * 1000000);
    }
    v1::OpenSessionResponse resp;
    grpc::Status s = stub_->OpenSession(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.session_id();
  }

  grpc::Status Exec(const std::string& session, const std::string& bind,
                    std::vector<v1::Statement> statements, v1::ExecuteResponse* out = nullptr) {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    req.set_session_id(session);
    req.set_bind(bind);
    for (auto& s : statements) *req.add_statements() = std::move(s);
    v1::ExecuteResponse resp;
    grpc::Status s = stub_->Execute(&ctx, req, out ? out : &resp);
    return s;
  }

  grpc::Status Commit(const std::string& session, v1::CommitResponse* out = nullptr,
                      const std::string& txn_id = "") {
    grpc::ClientContext ctx;
    v1::CommitRequest req;
    req.set_session_id(session);
    req.set_txn_id(txn_id);
    v1::CommitResponse resp;
    return stub_->Commit(&ctx, req, out ? out : &resp);
  }

  grpc::Status Rollback(const std::string& session) {
    grpc::ClientContext ctx;
    v1::RollbackRequest req;
    req.set_session_id(session);
    v1::RollbackResponse resp;
    return stub_->Rollback(&ctx, req, &resp);
  }

  grpc::Status Close(const std::string& session) {
    grpc::ClientContext ctx;
    v1::CloseSessionRequest req;
    req.set_session_id(session);
    v1::CloseSessionResponse resp;
    return stub_->CloseSession(&ctx, req, &resp);
  }

  v1::Transaction GetTxn(const std::string& txn_id, grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    v1::GetTransactionRequest req;
    req.set_txn_id(txn_id);
    v1::Transaction resp;
    grpc::Status s = stub_->GetTransaction(&ctx, req, &resp);
    if (status) *status = s;
    else EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  std::string Debit(const std::string& table, int id, int64_t amount) {
    return absl::StrCat("UPDATE ", table, " SET balance = balance - ", amount, " WHERE id = ", id);
  }
  std::string Credit(const std::string& table, int id, int64_t amount) {
    return absl::StrCat("UPDATE ", table, " SET balance = balance + ", amount, " WHERE id = ", id);
  }

  int64_t PgBalance(const std::string& uri, int id) {
    return std::stoll(PgScalar(uri, absl::StrCat("SELECT balance FROM ", pg_table_, " WHERE id = ", id)));
  }
  int64_t PgTotal(const std::string& uri) {
    return std::stoll(PgScalar(uri, absl::StrCat("SELECT sum(balance) FROM ", pg_table_)));
  }
  int64_t MyBalance(int id) {
    RawOdbc my(maria_dsn_);
    auto v = my.Query(absl::StrCat("SELECT balance FROM ", my_table_, " WHERE id = ", id));
    return v.empty() ? -1 : std::stoll(v[0]);
  }
  int64_t MyTotal() {
    RawOdbc my(maria_dsn_);
    auto v = my.Query(absl::StrCat("SELECT sum(balance) FROM ", my_table_));
    return v.empty() ? -1 : std::stoll(v[0]);
  }
  // Prepared branches of this test's node left on the databases.
  // Moves 10 from PostgreSQL account `id` to MariaDB account `id` in one
  // session; returns the Commit status (and the transaction id).
  grpc::Status TransferPgToMaria(int id, std::string* txn_id = nullptr) {
    std::string s = Open();
    v1::ExecuteResponse first;
    grpc::Status st = Exec(s, "pg", {Sql(Debit(pg_table_, id, 10))}, &first);
    EXPECT_TRUE(st.ok()) << st.error_message();
    st = Exec(s, "maria", {Sql(Credit(my_table_, id, 10))});
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (txn_id != nullptr) *txn_id = first.txn_id();
    return Commit(s);
  }
  int PreparedLeft() { return PreparedBranchesOfNode(node_id_, {pg_uri_, pg2_uri_}, maria_dsn_); }

  TempDir tmp_;
  std::string pg_uri_, pg2_uri_, maria_dsn_, sqlite_dsn_, pg_odbc_dsn_;
  std::string suffix_, node_id_, pg_table_, my_table_, lite_table_;
  int max_sessions_ = 1000;
  bool with_pg_last_resource_ = false;  // set before SetUp: adds bind "pglr"
  bool decision_log_ = true;   // journal.decision_log (false: decisions synced in RocksDB's WAL)
  bool with_pg_odbc_ = false;  // set before SetUp: adds bind "pgodbc" (pg's database through psqlODBC)
  int64_t history_max_ = -1;      // journal.retention.finished_max when >= 0 (then restart the server)
  int64_t history_per_pass_ = -1;  // journal.retention.max_per_pass when > 0
  int event_loops_ = -1;  // limits.event_loops
  bool with_lite_ = true;  // bind "lite" (SQLite through ODBC)
  int pool_min_open_ = 0;  // pool.min_open of every bind
  int pg_pool_size_ = 40;  // pool_size of "pg" and "pg2" (the others have 40)
  std::unique_ptr<coordinator::TxcoordServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SessionService::Stub> stub_;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
