// txbench: load generator for txcoord and its baselines, side by side on
// the same databases, accounts and random stream.
//
//   txbench --setup [--accounts 10000]                    create + seed the accounts tables
//   txbench --workload transfer --mode txcoord-oneshot --clients 32 --seconds 10
//
// Workloads (statements per transaction):
//   transfer   UPDATE one PostgreSQL account (-1), UPDATE one MariaDB account (+1)
//   transfer3  PostgreSQL txcoord_a (-2), PostgreSQL txcoord_b (+1), MariaDB (+1)
//   single     one UPDATE on PostgreSQL (one bind: one-phase commit)
//   readonly   SELECT one account on PostgreSQL and one on MariaDB
//   noop       one statement on each of two noop binds (a txcoord with the
//              test-only noop driver): coordinator overhead + fsynced journal
//   ping       the gRPC health check (Check), answered on txcoord's gRPC
//              thread: the floor cost of one RPC; with --mode sync-rpc
//              (named for the synchronous server it was first run on) a
//              malformed GetTransaction, handed to a loop and back (the
//              floor of txcoord's own RPCs)
// Modes:
//   txcoord-session  OpenSession once per client, then Execute per bind + Commit
//   txcoord-oneshot  RunTransaction (one RPC per transaction)
//   direct-2pc       libpq + the MariaDB client library straight to the databases:
//                    BEGIN/UPDATE/PREPARE TRANSACTION, XA START/UPDATE/END/PREPARE,
//                    then COMMIT PREPARED / XA COMMIT; no coordinator, no log
//   direct-1pc       the same statements, each database committed on its own
//                    (not atomic)
// Locks are always taken PostgreSQL first, then MariaDB (no cross-database
// deadlock in the benchmark itself).
//
// One line per run:
//   txbench workload=W mode=M clients=N tps=X p50_ms=Y p99_ms=Z errors=E p95_ms=… seconds=… txns=…
#include <grpcpp/grpcpp.h>
#include <libpq-fe.h>
#include <mysql.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "CLI/CLI.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace v1 = ::txcoord::v1;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string workload = "transfer";
  std::string mode = "txcoord-oneshot";
  std::string api;  // "session" / "oneshot": shorthand for the txcoord modes
  std::string address = "127.0.0.1:7600";
  int clients = 1;
  double seconds = 5;
  double warmup = 0.5;
  int channels = 0;  // 0: min(clients, 8)
  int accounts = 10000;
  uint64_t seed = 42;
  bool setup = false;
  std::string pg_uri, pg2_uri;
  std::string maria_host = "127.0.0.1", maria_user = "txcoord", maria_password, maria_db = "txcoord";
  int maria_port = 3306;
  std::string pg_bind = "pg", pg2_bind = "pg2", maria_bind = "maria";
  std::string noop_binds = "n1,n2";
};

std::string Env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

// A transaction's work, the same for every mode.
struct Work {
  int64_t pg_id = 0, pg2_id = 0, maria_id = 0;
};

// ------------------------------------------------------------ direct clients

class Pg {
 public:
  explicit Pg(const std::string& uri) : conn_(PQconnectdb(uri.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) error_ = PQerrorMessage(conn_);
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }
  ~Pg() { PQfinish(conn_); }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // Runs `sql` (with optional text parameters); false with error() set on failure.
  bool Exec(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> p;
    for (const auto& s : params) p.push_back(s.c_str());
    PGresult* r = params.empty()
                      ? PQexec(conn_, sql.c_str())
                      : PQexecParams(conn_, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(),
                                     nullptr, nullptr, 0);
    ExecStatusType st = PQresultStatus(r);
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!good) error_ = PQresultErrorMessage(r);
    PQclear(r);
    return good;
  }
  void ClearError() { error_.clear(); }
  PGconn* raw() { return conn_; }

 private:
  PGconn* conn_;
  std::string error_;
};

class Maria {
 public:
  explicit Maria(const Options& o) : conn_(mysql_init(nullptr)) {
    if (!mysql_real_connect(conn_, o.maria_host.c_str(), o.maria_user.c_str(), o.maria_password.c_str(),
                            o.maria_db.c_str(), static_cast<unsigned>(o.maria_port), nullptr, 0)) {
      error_ = mysql_error(conn_);
    }
  }
  ~Maria() { mysql_close(conn_); }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool Exec(const std::string& sql) {
    if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) {
      error_ = std::to_string(mysql_errno(conn_)) + " " + mysql_error(conn_);
      return false;
    }
    if (MYSQL_RES* res = mysql_store_result(conn_)) mysql_free_result(res);
    return true;
  }
  void ClearError() { error_.clear(); }
  MYSQL* raw() { return conn_; }

 private:
  MYSQL* conn_;
  std::string error_;
};

// ---------------------------------------------------------------- workers

struct Result {
  std::vector<uint32_t> latencies_us;
  int64_t errors = 0;
  std::string first_error;
  void Error(const std::string& e) {
    ++errors;
    if (first_error.empty()) first_error = e;
  }
};

class Worker {
 public:
  Worker(const Options& o, int index) : o_(o), index_(index), rng_(o.seed * 1000003 + index) {}
  virtual ~Worker() = default;
  // Connects; false (with why) when it cannot.
  virtual bool Connect(std::string* why) = 0;
  // One transaction; false and `error` set on failure.
  virtual bool RunOne(const Work& w, std::string* error) = 0;

  Work NextWork() {
    std::uniform_int_distribution<int64_t> d(1, o_.accounts);
    Work w;
    w.pg_id = d(rng_);
    w.pg2_id = d(rng_);
    w.maria_id = d(rng_);
    return w;
  }

 protected:
  const Options& o_;
  const int index_;
  std::mt19937_64 rng_;
};

std::shared_ptr<grpc::Channel> MakeChannel(const Options& o, int index) {
  int channels = o.channels > 0 ? o.channels : std::min(o.clients, 8);
  grpc::ChannelArguments args;
  // Distinct arguments: one HTTP/2 connection per channel.
  args.SetInt("txbench.channel", index % channels);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  // Several txcoords (a cluster): "a,b,c", each client on one, in turn.
  std::vector<std::string> addresses = absl::StrSplit(o.address, ',');
  const std::string address = addresses[index % addresses.size()];
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  // gRPC 1.51's client sometimes fails a loopback connect when dozens of
  // channels open at once (SO_ERROR 2, "No such file or directory"); calls
  // on a channel in TRANSIENT_FAILURE then fail at once until it reconnects.
  // Connect before measuring, through the reconnect.
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "txbench: channel " << index << " to " << address << " not connected within 10 s\n";
  }
  return channel;
}

v1::Statement* AddStatement(v1::BindWork* bw, const std::string& sql, std::initializer_list<int64_t> params) {
  v1::Statement* s = bw->add_statements();
  s->set_sql(sql);
  for (int64_t p : params) s->add_params()->set_int_value(p);
  return s;
}

// The per-bind statements of a workload, in lock order (PostgreSQL first).
std::vector<v1::BindWork> TxcoordWork(const Options& o, const Work& w) {
  std::vector<v1::BindWork> out;
  auto add = [&](const std::string& bind, const std::string& sql, std::initializer_list<int64_t> params) {
    v1::BindWork bw;
    bw.set_bind(bind);
    AddStatement(&bw, sql, params);
    out.push_back(std::move(bw));
  };
  const std::string pg_upd = "UPDATE bench_accounts SET balance = balance + $1 WHERE id = $2";
  const std::string my_upd = "UPDATE bench_accounts SET balance = balance + ? WHERE id = ?";
  if (o.workload == "transfer") {
    add(o.pg_bind, pg_upd, {-1, w.pg_id});
    add(o.maria_bind, my_upd, {1, w.maria_id});
  } else if (o.workload == "transfer3") {
    add(o.pg_bind, pg_upd, {-2, w.pg_id});
    add(o.pg2_bind, pg_upd, {1, w.pg2_id});
    add(o.maria_bind, my_upd, {1, w.maria_id});
  } else if (o.workload == "single") {
    add(o.pg_bind, pg_upd, {-1, w.pg_id});
  } else if (o.workload == "readonly") {
    add(o.pg_bind, "SELECT balance FROM bench_accounts WHERE id = $1", {w.pg_id});
    add(o.maria_bind, "SELECT balance FROM bench_accounts WHERE id = ?", {w.maria_id});
  } else if (o.workload == "noop") {
    size_t start = 0;
    while (start <= o.noop_binds.size()) {
      size_t comma = o.noop_binds.find(',', start);
      if (comma == std::string::npos) comma = o.noop_binds.size();
      add(o.noop_binds.substr(start, comma - start), "noop", {w.pg_id});
      start = comma + 1;
    }
  }
  return out;
}

std::string Describe(const grpc::Status& s) {
  return std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message();
}

// A worker with one SessionService stub on its own channel.
class SessionStubWorker : public Worker {
 public:
  using Worker::Worker;
  bool Connect(std::string*) override {
    stub_ = v1::SessionService::NewStub(MakeChannel(o_, index_));
    return true;
  }

 protected:
  std::unique_ptr<v1::SessionService::Stub> stub_;
};

class OneshotWorker final : public SessionStubWorker {
 public:
  using SessionStubWorker::SessionStubWorker;
  bool RunOne(const Work& w, std::string* error) override {
    v1::RunTransactionRequest req;
    for (auto& bw : TxcoordWork(o_, w)) *req.add_work() = std::move(bw);
    v1::RunTransactionResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub_->RunTransaction(&ctx, req, &resp);
    if (!s.ok()) *error = Describe(s);
    return s.ok();
  }
};

class SessionWorker final : public Worker {
 public:
  using Worker::Worker;
  ~SessionWorker() override {
    if (!session_.empty()) {
      grpc::ClientContext ctx;
      v1::CloseSessionRequest req;
      req.set_session_id(session_);
      v1::CloseSessionResponse resp;
      (void)stub_->CloseSession(&ctx, req, &resp);
    }
  }
  bool Connect(std::string* why) override {
    stub_ = v1::SessionService::NewStub(MakeChannel(o_, index_));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::OpenSessionRequest req;
    v1::OpenSessionResponse resp;
    grpc::Status s = stub_->OpenSession(&ctx, req, &resp);
    if (!s.ok()) {
      *why = "OpenSession: " + Describe(s);
      return false;
    }
    session_ = resp.session_id();
    return true;
  }
  bool RunOne(const Work& w, std::string* error) override {
    for (auto& bw : TxcoordWork(o_, w)) {
      v1::ExecuteRequest req;
      req.set_session_id(session_);
      req.set_bind(bw.bind());
      *req.mutable_statements() = std::move(*bw.mutable_statements());
      v1::ExecuteResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      grpc::Status s = stub_->Execute(&ctx, req, &resp);
      if (!s.ok()) {
        *error = "Execute " + bw.bind() + ": " + Describe(s);
        Rollback();
        return false;
      }
    }
    v1::CommitRequest req;
    req.set_session_id(session_);
    v1::CommitResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub_->Commit(&ctx, req, &resp);
    if (!s.ok()) {
      *error = "Commit: " + Describe(s);
      if (s.error_code() != grpc::StatusCode::ABORTED) Rollback();
      return false;
    }
    return true;
  }

 private:
  void Rollback() {
    grpc::ClientContext ctx;
    v1::RollbackRequest req;
    req.set_session_id(session_);
    v1::RollbackResponse resp;
    (void)stub_->Rollback(&ctx, req, &resp);
  }
  std::unique_ptr<v1::SessionService::Stub> stub_;
  std::string session_;
};

class PingWorker final : public Worker {
 public:
  using Worker::Worker;
  bool Connect(std::string*) override {
    stub_ = grpc::health::v1::Health::NewStub(MakeChannel(o_, index_));
    return true;
  }
  bool RunOne(const Work&, std::string* error) override {
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub_->Check(&ctx, req, &resp);
    if (!s.ok()) *error = Describe(s);
    return s.ok();
  }

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
};

// ping --mode sync-rpc: the cheapest call of txcoord's own services:
// SessionService.GetTransaction with a malformed id, answered
// INVALID_ARGUMENT on a loop before any lookup. The floor under every
// txcoord RPC, where the health check above is answered on the gRPC
// thread without a hand-off.
class SyncPingWorker final : public SessionStubWorker {
 public:
  using SessionStubWorker::SessionStubWorker;
  bool RunOne(const Work&, std::string* error) override {
    v1::GetTransactionRequest req;
    req.set_txn_id("not-a-txn-id");
    v1::Transaction resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub_->GetTransaction(&ctx, req, &resp);
    if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      *error = Describe(s);
      return false;
    }
    return true;
  }
};

// Direct: statement by statement, as a hand-written client does it.
class DirectWorker final : public Worker {
 public:
  DirectWorker(const Options& o, int index, bool two_phase)
      : Worker(o, index), two_phase_(two_phase), nonce_(std::to_string(::getpid()) + "_" + std::to_string(index)) {}

  bool Connect(std::string* why) override {
    const std::string& w = o_.workload;
    if (w != "transfer" && w != "transfer3" && w != "single" && w != "readonly") {
      *why = "workload " + w + " has no direct mode";
      return false;
    }
    pg_ = std::make_unique<Pg>(o_.pg_uri);
    if (!pg_->ok()) return *why = "PostgreSQL: " + pg_->error(), false;
    if (w == "transfer3") {
      pg2_ = std::make_unique<Pg>(o_.pg2_uri);
      if (!pg2_->ok()) return *why = "PostgreSQL 2: " + pg2_->error(), false;
    }
    if (w != "single") {
      maria_ = std::make_unique<Maria>(o_);
      if (!maria_->ok()) return *why = "MariaDB: " + maria_->error(), false;
    }
    return true;
  }

  bool RunOne(const Work& work, std::string* error) override {
    ++seq_;
    const std::string gid = "bench_" + nonce_ + "_" + std::to_string(seq_);
    const std::string xid = "'" + gid + "'";
    const bool ro = o_.workload == "readonly";
    std::vector<Pg*> pgs;
    pgs.push_back(pg_.get());
    if (o_.workload == "transfer3") pgs.push_back(pg2_.get());
    std::vector<int64_t> pg_ids = {work.pg_id, work.pg2_id};
    std::vector<int64_t> pg_delta = {o_.workload == "transfer3" ? -2 : -1, 1};
    bool ok = true;
    std::string err;
    size_t begun_pg = 0;
    bool maria_started = false;
    // Phase 0: the work, PostgreSQL first.
    for (size_t i = 0; ok && i < pgs.size(); ++i) {
      ok = pgs[i]->Exec("BEGIN");
      if (ok) {
        ++begun_pg;
        ok = ro ? pgs[i]->Exec("SELECT balance FROM bench_accounts WHERE id = $1", {std::to_string(pg_ids[i])})
                : pgs[i]->Exec("UPDATE bench_accounts SET balance = balance + $1 WHERE id = $2",
                               {std::to_string(pg_delta[i]), std::to_string(pg_ids[i])});
      }
      if (!ok) err = "PostgreSQL: " + pgs[i]->error();
    }
    if (ok && maria_) {
      ok = maria_->Exec(two_phase_ ? "XA START " + xid : "START TRANSACTION");
      if (ok) {
        maria_started = true;
        ok = maria_->Exec(ro ? "SELECT balance FROM bench_accounts WHERE id = " + std::to_string(work.maria_id)
                             : "UPDATE bench_accounts SET balance = balance + 1 WHERE id = " +
                                   std::to_string(work.maria_id));
      }
      if (!ok) err = "MariaDB: " + maria_->error();
    }
    if (!ok) {
      Abort(begun_pg, maria_started, xid);
      *error = err;
      return false;
    }
    if (!two_phase_) {
      for (Pg* p : pgs) {
        if (!p->Exec("COMMIT")) return *error = "PostgreSQL COMMIT: " + p->error(), p->ClearError(), false;
      }
      if (maria_ && !maria_->Exec("COMMIT")) return *error = "MariaDB COMMIT: " + maria_->error(), false;
      return true;
    }
    // Phase 1.
    size_t prepared_pg = 0;
    for (size_t i = 0; ok && i < pgs.size(); ++i) {
      ok = pgs[i]->Exec("PREPARE TRANSACTION '" + gid + "_" + std::to_string(i) + "'");
      if (ok) ++prepared_pg;
      else err = "PostgreSQL PREPARE: " + pgs[i]->error();
    }
    bool maria_prepared = false;
    if (ok && maria_) {
      ok = maria_->Exec("XA END " + xid) && maria_->Exec("XA PREPARE " + xid);
      if (ok) maria_prepared = true;
      else err = "MariaDB XA PREPARE: " + maria_->error();
    }
    if (!ok) {
      for (size_t i = 0; i < pgs.size(); ++i) {
        if (i < prepared_pg) pgs[i]->Exec("ROLLBACK PREPARED '" + gid + "_" + std::to_string(i) + "'");
        else pgs[i]->Exec("ROLLBACK");
        pgs[i]->ClearError();
      }
      if (maria_) {
        if (!maria_prepared) maria_->Exec("XA END " + xid);  // fails harmlessly when already ended
        maria_->Exec("XA ROLLBACK " + xid);
        maria_->ClearError();
      }
      *error = err;
      return false;
    }
    // Phase 2 (no log: a crash here leaves in-doubt branches nobody resolves).
    for (size_t i = 0; i < pgs.size(); ++i) {
      if (!pgs[i]->Exec("COMMIT PREPARED '" + gid + "_" + std::to_string(i) + "'")) {
        err = "PostgreSQL COMMIT PREPARED: " + pgs[i]->error();
        ok = false;
      }
    }
    if (maria_ && !maria_->Exec("XA COMMIT " + xid)) {
      err = "MariaDB XA COMMIT: " + maria_->error();
      ok = false;
    }
    if (!ok) *error = err;
    return ok;
  }

 private:
  void Abort(size_t begun_pg, bool maria_started, const std::string& xid) {
    for (size_t i = 0; i < begun_pg; ++i) {
      Pg* p = i == 0 ? pg_.get() : pg2_.get();
      p->Exec("ROLLBACK");
      p->ClearError();
    }
    if (maria_started) {
      if (two_phase_) {
        maria_->Exec("XA END " + xid);
        maria_->Exec("XA ROLLBACK " + xid);
      } else {
        maria_->Exec("ROLLBACK");
      }
      maria_->ClearError();
    }
  }
  const bool two_phase_;
  const std::string nonce_;
  uint64_t seq_ = 0;
  std::unique_ptr<Pg> pg_, pg2_;
  std::unique_ptr<Maria> maria_;
};

std::unique_ptr<Worker> MakeWorker(const Options& o, int index) {
  if (o.workload == "ping" && o.mode == "sync-rpc") return std::make_unique<SyncPingWorker>(o, index);
  if (o.workload == "ping") return std::make_unique<PingWorker>(o, index);
  if (o.mode == "txcoord-oneshot") return std::make_unique<OneshotWorker>(o, index);
  if (o.mode == "txcoord-session") return std::make_unique<SessionWorker>(o, index);
  if (o.mode == "direct-2pc") return std::make_unique<DirectWorker>(o, index, true);
  if (o.mode == "direct-1pc") return std::make_unique<DirectWorker>(o, index, false);
  return nullptr;
}

// ------------------------------------------------------------------ setup

// Branches a killed direct-2pc run left prepared (no log: nobody else
// resolves them) hold their row locks and would block the TRUNCATE.
void RollBackLeftovers(Pg& pg) {
  PGresult* r = PQexec(pg.raw(), "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'bench\\_%' "
                                 "AND database = current_database()");
  std::vector<std::string> gids;
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) gids.push_back(PQgetvalue(r, i, 0));
  }
  PQclear(r);
  for (const auto& g : gids) pg.Exec("ROLLBACK PREPARED '" + g + "'");
  if (!gids.empty()) std::cerr << "txbench: rolled back " << gids.size() << " leftover prepared branches\n";
}

void RollBackLeftovers(Maria& my) {
  if (mysql_query(my.raw(), "XA RECOVER") != 0) return;
  std::vector<std::string> xids;
  if (MYSQL_RES* res = mysql_store_result(my.raw())) {
    while (MYSQL_ROW row = mysql_fetch_row(res)) {
      unsigned long* len = mysql_fetch_lengths(res);
      std::string data(row[3], len[3]);
      int gl = std::atoi(row[1]);
      if (std::atoi(row[2]) == 0 && data.rfind("bench_", 0) == 0) xids.push_back(data.substr(0, gl));
    }
    mysql_free_result(res);
  }
  for (const auto& x : xids) my.Exec("XA ROLLBACK '" + x + "'");
  if (!xids.empty()) std::cerr << "txbench: rolled back " << xids.size() << " leftover XA branches\n";
}

int Setup(const Options& o) {
  auto pg_setup = [&](const std::string& uri, const char* what) {
    Pg pg(uri);
    if (pg.ok()) RollBackLeftovers(pg);
    if (!pg.ok() ||
        !pg.Exec("CREATE TABLE IF NOT EXISTS bench_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL)") ||
        !pg.Exec("TRUNCATE bench_accounts") ||
        !pg.Exec("INSERT INTO bench_accounts SELECT g, 1000000 FROM generate_series(1, " +
                 std::to_string(o.accounts) + ") g") ||
        !pg.Exec("VACUUM ANALYZE bench_accounts")) {
      std::cerr << "txbench: setup " << what << ": " << pg.error() << "\n";
      return false;
    }
    return true;
  };
  if (!pg_setup(o.pg_uri, "PostgreSQL")) return 1;
  if (!o.pg2_uri.empty() && !pg_setup(o.pg2_uri, "PostgreSQL 2")) return 1;
  Maria my(o);
  if (my.ok()) RollBackLeftovers(my);
  if (!my.ok() ||
      !my.Exec("CREATE TABLE IF NOT EXISTS bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL) "
               "ENGINE=InnoDB") ||
      !my.Exec("TRUNCATE bench_accounts") ||
      !my.Exec("INSERT INTO bench_accounts SELECT seq, 1000000 FROM seq_1_to_" + std::to_string(o.accounts))) {
    std::cerr << "txbench: setup MariaDB: " << my.error() << "\n";
    return 1;
  }
  std::cout << "txbench setup accounts=" << o.accounts << "\n";
  return 0;
}

double Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.pg_uri = Env("TXC_PG_URI");
  o.pg2_uri = Env("TXC_PG2_URI");
  o.maria_port = std::atoi(Env("TXC_MARIADB_PORT", "3306").c_str());
  o.maria_password = Env("TXC_MARIADB_PASSWORD", "txcoord_local_pw");
  CLI::App app{"txbench: txcoord load generator and direct 2PC baselines"};
  app.add_option("--workload", o.workload, "transfer, transfer3, single, readonly, noop, ping");
  app.add_option("--mode", o.mode, "txcoord-session, txcoord-oneshot, direct-2pc, direct-1pc (ping: sync-rpc)");
  app.add_option("--api", o.api, "session or oneshot: sets --mode txcoord-<api>");
  app.add_option("--address", o.address, "txcoord's gRPC address (several, comma-separated: clients spread over them)");
  app.add_option("--clients", o.clients, "concurrent clients (threads)");
  app.add_option("--seconds", o.seconds, "measured seconds");
  app.add_option("--warmup", o.warmup, "seconds run before measuring");
  app.add_option("--channels", o.channels, "gRPC connections (0: min(clients, 8))");
  app.add_option("--accounts", o.accounts, "accounts per database");
  app.add_option("--seed", o.seed, "random seed (same stream in every mode)");
  app.add_flag("--setup", o.setup, "create and seed the accounts tables, then exit");
  app.add_option("--pg-uri", o.pg_uri, "PostgreSQL URI (default $TXC_PG_URI)");
  app.add_option("--pg2-uri", o.pg2_uri, "second PostgreSQL database (default $TXC_PG2_URI)");
  app.add_option("--maria-host", o.maria_host);
  app.add_option("--maria-port", o.maria_port, "default $TXC_MARIADB_PORT");
  app.add_option("--maria-user", o.maria_user);
  app.add_option("--maria-password", o.maria_password, "default $TXC_MARIADB_PASSWORD or the local harness's");
  app.add_option("--maria-db", o.maria_db);
  app.add_option("--pg-bind", o.pg_bind);
  app.add_option("--pg2-bind", o.pg2_bind);
  app.add_option("--maria-bind", o.maria_bind);
  app.add_option("--noop-binds", o.noop_binds, "comma-separated noop binds for --workload noop");
  CLI11_PARSE(app, argc, argv);
  if (!o.api.empty()) o.mode = "txcoord-" + o.api;
  if (o.setup) return Setup(o);
  if (o.workload == "ping" && o.mode != "sync-rpc") o.mode = "grpc-health";
  if (o.clients < 1) o.clients = 1;

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < o.clients; ++i) {
    auto w = MakeWorker(o, i);
    if (!w) {
      std::cerr << "txbench: unknown mode " << o.mode << "\n";
      return 2;
    }
    std::string why;
    if (!w->Connect(&why)) {
      std::cerr << "txbench: client " << i << ": " << why << "\n";
      return 1;
    }
    workers.push_back(std::move(w));
  }

  std::vector<Result> results(o.clients);
  std::atomic<bool> measuring{false}, stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back([&, i] {
      Worker& w = *workers[i];
      Result& r = results[i];
      r.latencies_us.reserve(1 << 16);
      while (!stop.load(std::memory_order_relaxed)) {
        Work work = w.NextWork();
        std::string error;
        auto t0 = Clock::now();
        bool ok = w.RunOne(work, &error);
        auto t1 = Clock::now();
        if (!measuring.load(std::memory_order_relaxed) || stop.load(std::memory_order_relaxed)) continue;
        if (ok) {
          r.latencies_us.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
        } else {
          r.Error(error);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  measuring = true;
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& t : threads) t.join();

  std::vector<uint32_t> all;
  int64_t errors = 0;
  std::string first_error;
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  char line[512];
  std::snprintf(line, sizeof line,
                "txbench workload=%s mode=%s clients=%d tps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%lld "
                "p95_ms=%.2f seconds=%.1f txns=%zu",
                o.workload.c_str(), o.mode.c_str(), o.clients, static_cast<double>(all.size()) / elapsed,
                Percentile(all, 0.50), Percentile(all, 0.99), static_cast<long long>(errors),
                Percentile(all, 0.95), elapsed, all.size());
  std::cout << line << std::endl;
  if (!first_error.empty()) std::cerr << "txbench: first error: " << first_error << "\n";
  workers.clear();
  return 0;
}
