// The TransactionService tests' fixture: a real txcoord (the coordinator
// fixture) with a TransactionService client, txc_branch_service child
// processes that prepare their own branches, and a key-value
// ParticipantService (KvServer) as a callback participant.
#ifndef TXCOORD_TESTS_COORDINATOR_TRANSACTION_SERVICE_FIXTURE_H_
#define TXCOORD_TESTS_COORDINATOR_TRANSACTION_SERVICE_FIXTURE_H_

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
                                  "--xid",    XidOf(g, bind),     "--sql", sql};
    if (bind == "pg")
      a.insert(a.end(), {"--pg", pg_uri_});
    else
      a.insert(a.end(), {"--odbc", maria_dsn_});
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
    auto v = lite.Query(
        absl::StrCat("SELECT COUNT(*) FROM txcoord_decisions WHERE txn_id = '", txn, "' AND payload <> 'ROLLED_BACK'"));
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

// A resource that is not a database: a key-value "service" implementing
// ParticipantService, with its state kept outside the gRPC server so that
// the server can be killed and restarted.
struct KvState {
  absl::Mutex mu;
  std::map<std::string, std::string> branches;  // "txn/branch" → prepared | committed | rolled_back
  bool vote_no = false;
  // While set, Commit waits (up to 10 s) until it is cleared; commits_held
  // counts the Commits waiting.
  bool hold_commits = false;
  int commits_held = 0;
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
    {
      absl::MutexLock lock(&state_->mu);
      ++state_->commits_held;
      state_->mu.AwaitWithTimeout(
          absl::Condition(
              +[](KvState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return !s->hold_commits; }, state_),
          absl::Seconds(10));
      --state_->commits_held;
    }
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

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_COORDINATOR_TRANSACTION_SERVICE_FIXTURE_H_
