#include "participants/odbc/odbc_participant.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "participants/connection_pool.h"
#include "participants/odbc/odbc_connection.h"
#include "participants/odbc/odbc_dialect.h"
#include "participants/node_claim.h"
#include "participants/parked_connections.h"
#include "participants/statement_guard.h"
#include "participants/sql_common.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::participants {
namespace {

using odbc::Dialect;
using odbc::OdbcConnection;

// What a participant and its branches share (branches may outlive it).
struct OdbcShared {
  BindOptions options;
  std::string dbms_name;
  std::shared_ptr<const Dialect> dialect;
  std::shared_ptr<ConnectionPool<OdbcConnection>> pool;
  DecisionsTableFlag decisions_table;

  // Connections still attached to the branch they prepared (dialects with
  // close_after_prepare(), i.e. MariaDB).
  ParkedConnections<OdbcConnection> parked;
};

odbc::ErrorMapper MapperFor(std::shared_ptr<const Dialect> dialect, std::string bind) {
  return [dialect = std::move(dialect), bind = std::move(bind)](
             const odbc::Diagnostic& d, SqlErrorContext context, bool dead) {
    return dialect->MapError(bind, d, context, dead);
  };
}

// A new (unpooled) connection, set up for the dialect.
absl::StatusOr<std::unique_ptr<OdbcConnection>> OpenConnection(const OdbcShared& shared) {
  TXC_ASSIGN_OR_RETURN(
      auto conn,
      OdbcConnection::Open(shared.options.name, shared.dialect->AdjustDsn(shared.options.dsn, shared.options.io_timeout),
                           MapperFor(shared.dialect, shared.options.name)));
  TXC_RETURN_IF_ERROR(shared.dialect->OnConnect(*conn));
  return conn;
}

class OdbcBranch : public Branch {
 public:
  using State = BranchState;

  OdbcBranch(std::shared_ptr<OdbcShared> shared, ConnectionPool<OdbcConnection>::Lease lease,
             Xid xid)
      : shared_(std::move(shared)), lease_(std::move(lease)), xid_(std::move(xid)) {
    absl::MutexLock lock(&cancel_mu_);
    cancel_target_ = lease_.get();
  }

  ~OdbcBranch() override {
    if (state_ != State::kEnded) (void)Rollback();
    Finish();
  }

  absl::StatusOr<ResultSet> Execute(absl::string_view sql, const std::vector<Value>& params,
                                    int max_rows) override {
    TXC_RETURN_IF_ERROR(RequireActive("Execute"));
    TXC_RETURN_IF_ERROR(GuardBranchSql(shared_->options.name, shared_->dialect->name(), sql, &session_state_));
    TXC_RETURN_IF_ERROR(CheckParameterMarkers(shared_->options.name, shared_->dialect->name(), sql, params.size()));
    odbc::ExecOptions o;
    o.max_rows = max_rows;
    std::optional<std::string> inlined = shared_->dialect->InlineParameters(sql, params);
    absl::StatusOr<ResultSet> rs =
        inlined ? lease_->Execute(*inlined, {}, o) : lease_->Execute(sql, params, o);
    if (rs.ok() && rs->columns.empty() && rs->rows_affected > 0) lease_->changed_rows = true;
    if (!rs.ok()) {
      if (state_ == State::kActive) {
        state_ = State::kFailed;
        failure_ = rs.status();
      }
      CheckBroken();
    }
    return rs;
  }

  absl::StatusOr<Vote> Prepare() override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("Prepare"));
    if (!shared_->dialect->two_phase()) {
      absl::StatusOr<Vote> refused = shared_->dialect->Prepare(*lease_, xid_);  // FAILED_PRECONDITION
      (void)End(/*commit=*/false);
      return refused;
    }
    absl::StatusOr<Vote> vote = shared_->dialect->Prepare(*lease_, xid_);
    if (!vote.ok()) {
      CheckBroken();
      if (state_ != State::kEnded) (void)End(/*commit=*/false);
      return vote.status();
    }
    state_ = State::kEnded;
    if (*vote == Vote::kPrepared && shared_->dialect->close_after_prepare() && !session_state_ && !CancelSent()) {
      // See Dialect::close_after_prepare(): kept for phase 2 (ParkedConnections).
      // Not a connection with session state: Finish closes that one, and
      // the prepared branch survives the disconnect.
      {
        absl::MutexLock lock(&cancel_mu_);
        cancel_target_ = nullptr;
      }
      shared_->parked.Park(xid_, std::move(lease_));
    }
    Finish();
    return vote;
  }

  absl::Status CommitOnePhase() override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("CommitOnePhase"));
    return End(/*commit=*/true);
  }

  absl::Status CommitAsLastResource(absl::string_view txn_id,
                                    absl::string_view payload) override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("CommitAsLastResource"));
    absl::Status s = EnsureDecisionsTable();
    if (s.ok()) {
      s = lease_->Execute("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (?, ?)",
                          {Value::String(std::string(txn_id)), Value::String(std::string(payload))})
              .status();
    }
    if (!s.ok()) {
      CheckBroken();
      if (state_ != State::kEnded) (void)End(/*commit=*/false);
      return s;
    }
    TXC_FAILPOINT("participants.odbc.before_last_resource_commit");
    TXC_RETURN_IF_ERROR(End(/*commit=*/true));
    shared_->decisions_table.Set();
    return absl::OkStatus();
  }

  absl::Status Rollback() override {
    if (state_ == State::kEnded) return absl::OkStatus();
    return End(/*commit=*/false);
  }

  // The dialect's CancelSql on a new connection of the bind, from a thread
  // of its own (SendCancelInBackground; bounded by the bind's timeouts
  // where the driver has them), or SQLCancel on this thread.
  void Cancel() override {
    std::string sql;
    {
      absl::MutexLock lock(&cancel_mu_);
      if (cancel_target_ == nullptr) return;
      const int64_t session = cancel_target_->server_session_id;
      if (session != 0) sql = shared_->dialect->CancelSql(session);
      if (sql.empty()) {
        cancel_target_->Cancel();
        return;
      }
      cancel_sent_ = true;
    }
    (void)SendCancelInBackground([shared = shared_, sql = std::move(sql)] {
      absl::StatusOr<std::unique_ptr<OdbcConnection>> c = OpenConnection(*shared);
      if (c.ok()) (void)(*c)->Run(sql);  // best effort: the statement may have ended
    });
  }

  const Xid& xid() const override { return xid_; }

 private:
  absl::Status RequireActive(absl::string_view op) {
    return RequireActiveBranch(shared_->options.name, op, state_, failure_);
  }

  absl::Status RequireActiveOrRollback(absl::string_view op) {
    absl::Status s = RequireActive(op);
    if (!s.ok() && state_ == State::kFailed) (void)End(/*commit=*/false);
    return s;
  }

  absl::Status EnsureDecisionsTable() {
    if (shared_->decisions_table.ready()) return absl::OkStatus();
    if (shared_->dialect->decisions_ddl_in_transaction()) {
      return shared_->dialect->EnsureDecisionsTable(*lease_);
    }
    // DDL would commit (or be refused) inside the branch: use a separate,
    // unpooled connection so that a full pool cannot block it.
    TXC_ASSIGN_OR_RETURN(auto separate, OpenConnection(*shared_));
    TXC_RETURN_IF_ERROR(shared_->dialect->EnsureDecisionsTable(*separate));
    shared_->decisions_table.Set();
    return absl::OkStatus();
  }

  // The connection is lost: the server rolls back an unprepared branch.
  void CheckBroken() {
    if (lease_ && lease_->broken()) {
      lease_.MarkBroken();
      state_ = State::kEnded;
      Finish();
    }
  }

  // Ends the local transaction. A failed ROLLBACK closes the connection
  // (which rolls the branch back); a failed COMMIT is followed by a rollback.
  absl::Status End(bool commit) {
    if (state_ == State::kEnded) return absl::OkStatus();
    absl::Status s = commit ? shared_->dialect->CommitOnePhase(*lease_, xid_)
                            : shared_->dialect->Rollback(*lease_, xid_);
    if (!s.ok() && commit && !lease_->broken()) {
      if (!shared_->dialect->Rollback(*lease_, xid_).ok()) lease_.MarkBroken();
    } else if (!s.ok()) {
      lease_.MarkBroken();
    }
    if (lease_->broken()) lease_.MarkBroken();
    state_ = State::kEnded;
    Finish();
    return s;
  }

  // Returns the connection to the pool (once); closes it instead when a
  // statement may have left session state on it (SessionStateSql), or when
  // a cancel was sent to it from another connection: it may arrive after
  // this branch ended and would interrupt the next statement on it.
  void Finish() {
    bool cancel_sent;
    {
      absl::MutexLock lock(&cancel_mu_);
      cancel_target_ = nullptr;
      cancel_sent = cancel_sent_;
    }
    if (cancel_sent) lease_.Discard();
    if (session_state_ && lease_) lease_.MarkBroken();
    lease_.Release();
  }

  bool CancelSent() {
    absl::MutexLock lock(&cancel_mu_);
    return cancel_sent_;
  }

  std::shared_ptr<OdbcShared> shared_;
  ConnectionPool<OdbcConnection>::Lease lease_;
  const Xid xid_;
  State state_ = State::kActive;
  absl::Status failure_;
  bool session_state_ = false;  // a statement may have left session state
  absl::Mutex cancel_mu_;
  OdbcConnection* cancel_target_ ABSL_GUARDED_BY(cancel_mu_) = nullptr;
  bool cancel_sent_ ABSL_GUARDED_BY(cancel_mu_) = false;  // its connection is not lent again
};

class OdbcParticipant : public Participant {
 public:
  explicit OdbcParticipant(std::shared_ptr<OdbcShared> shared) : shared_(std::move(shared)) {}

  const std::string& bind() const override { return shared_->options.name; }
  Capabilities capabilities() const override {
    return Capabilities{absl::StrCat("odbc:", shared_->dbms_name), shared_->dialect->name(),
                        shared_->dialect->two_phase()};
  }
  PoolStats pool_stats() const override { return shared_->pool->stats(); }
  absl::Status OpenMinimumConnections() override { return shared_->pool->OpenUpTo(shared_->options.pool_min_open); }

  absl::StatusOr<std::unique_ptr<Branch>> Begin(const Xid& xid,
                                                absl::Duration lock_timeout) override {
    // An idle pooled connection may have died (server restart, killed
    // session): nothing has happened yet, so try once more on a new one.
    for (int attempt = 0;; ++attempt) {
      TXC_ASSIGN_OR_RETURN(auto lease, shared_->pool->Acquire());
      absl::Status s = shared_->dialect->Begin(*lease, xid, lock_timeout);
      if (s.ok()) return std::unique_ptr<Branch>(new OdbcBranch(shared_, std::move(lease), xid));
      const bool broken = lease->broken();
      lease.MarkBroken();  // its session state is unknown now
      if (!broken || attempt > 0) return s;
    }
  }

  absl::Status CommitPrepared(const Xid& xid) override { return FinishPrepared(xid, /*commit=*/true); }
  absl::Status RollbackPrepared(const Xid& xid) override { return FinishPrepared(xid, /*commit=*/false); }

  absl::StatusOr<std::vector<PreparedBranch>> ListAllPrepared() override {
    std::vector<PreparedBranch> out;
    TXC_RETURN_IF_ERROR(RunPooled(true, [&](OdbcConnection& c) -> absl::Status {
      TXC_ASSIGN_OR_RETURN(out, shared_->dialect->ListPrepared(c, ""));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    std::vector<PreparedBranch> out;
    TXC_RETURN_IF_ERROR(RunPooled(true, [&](OdbcConnection& c) -> absl::Status {
      TXC_ASSIGN_OR_RETURN(out, shared_->dialect->ListPrepared(c, node_id));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<std::string>> ListDecisions(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    std::vector<std::string> out;
    TXC_RETURN_IF_ERROR(RunPooled(true, [&](OdbcConnection& c) -> absl::Status {
      out.clear();
      TXC_ASSIGN_OR_RETURN(ResultSet exists,
                           c.Execute(shared_->dialect->DecisionsTableExistsSql(), {}));
      if (exists.rows.empty() || !TruthyValue(exists.rows[0][0])) return absl::OkStatus();
      // node_id is [A-Za-z0-9-]: no LIKE wildcards, safe in a literal.
      TXC_ASSIGN_OR_RETURN(ResultSet rs,
                           c.Execute(absl::StrCat("SELECT txn_id FROM txcoord_decisions WHERE "
                                                  "txn_id LIKE '",
                                                  node_id, ".%' AND (payload IS NULL OR payload <> '",
                                                  kDecisionTombstone, "') ORDER BY decided_at, txn_id"),
                                     {}));
      for (const auto& row : rs.rows) out.push_back(row[0].text);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status ForgetDecision(absl::string_view txn_id) override {
    return RunPooled(false, [&](OdbcConnection& c) -> absl::Status {
      TXC_ASSIGN_OR_RETURN(ResultSet exists,
                           c.Execute(shared_->dialect->DecisionsTableExistsSql(), {}));
      if (exists.rows.empty() || !TruthyValue(exists.rows[0][0])) return absl::OkStatus();
      return c.Execute("DELETE FROM txcoord_decisions WHERE txn_id = ?",
                       {Value::String(std::string(txn_id))})
          .status();
    });
  }

  absl::Status EnsureDecisionTable() override {
    if (shared_->decisions_table.ready()) return absl::OkStatus();
    // In autocommit mode on a connection of its own (DDL).
    TXC_ASSIGN_OR_RETURN(auto separate, OpenConnection(*shared_));
    TXC_RETURN_IF_ERROR(shared_->dialect->EnsureDecisionsTable(*separate));
    shared_->decisions_table.Set();
    return absl::OkStatus();
  }

  absl::StatusOr<bool> FenceDecision(absl::string_view txn_id) override {
    TXC_RETURN_IF_ERROR(EnsureDecisionTable());
    bool fenced = false;
    TXC_RETURN_IF_ERROR(RunPooled(false, [&](OdbcConnection& c) -> absl::Status {
      const Value id = Value::String(std::string(txn_id));
      absl::Status inserted =
          c.Execute("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (?, ?)",
                    {id, Value::String(std::string(kDecisionTombstone))})
              .status();
      if (inserted.ok()) {
        fenced = true;
        return absl::OkStatus();
      }
      // Most likely the key exists: whose row is it?
      TXC_ASSIGN_OR_RETURN(ResultSet rs, c.Execute("SELECT payload FROM txcoord_decisions WHERE txn_id = ?", {id}));
      if (rs.rows.empty()) return inserted;  // not a duplicate: undecided
      fenced = rs.rows[0][0].kind != Value::Kind::kNull && rs.rows[0][0].text == kDecisionTombstone;
      return absl::OkStatus();
    }));
    return fenced;
  }

  absl::Status CheckHealth() override {
    return RunPooled(true,
                     [&](OdbcConnection& c) { return c.Run(shared_->dialect->HealthCheckSql()); });
  }

  absl::Status ClaimNode(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    NodeClaimOps<OdbcConnection> ops;
    ops.claim_sql = shared_->dialect->ClaimNodeSql(node_id, bind());
    if (ops.claim_sql.empty()) return absl::OkStatus();  // not guarded on this backend
    ops.bind = bind();
    ops.holder_sql = shared_->dialect->NodeClaimHolderSql(node_id, bind());
    ops.kind = node_claim_kind();
    ops.take_over = shared_->options.take_over_node_claims;
    ops.open = [this] { return OpenConnection(*shared_); };
    ops.check = [this](OdbcConnection& c) { return c.Run(shared_->dialect->HealthCheckSql()); };
    ops.query = [](OdbcConnection& c, const std::string& sql) { return c.Execute(sql, {}); };
    ops.session_id = [](const OdbcConnection& c) { return c.server_session_id; };
    ops.end_session_sql = [this](int64_t session) { return shared_->dialect->EndSessionSql(session); };
    return claim_.Claim(node_id, ops);
  }
  std::string node_claim_kind() const override { return shared_->dialect->node_claim_kind(); }

 private:
  absl::Status FinishPrepared(const Xid& xid, bool commit) {
    auto finish = [&](OdbcConnection& c) {
      return commit ? shared_->dialect->CommitPrepared(c, xid) : shared_->dialect->RollbackPrepared(c, xid);
    };
    if (auto lease = shared_->parked.Unpark(xid)) {
      // On the connection that prepared it: no reconnect, and no wait for
      // the server to detach the branch from a closed session.
      absl::Status s = finish(*lease);
      if (lease->broken()) {
        lease.MarkBroken();  // outcome unknown: the caller asks again later
      } else if (!s.ok()) {
        lease.Discard();  // its session state is unknown: closing it detaches the branch
      }
      return s;
    }
    // No retry: a lost connection may have committed already.
    return RunPooled(false, finish);
  }

  // Runs `fn` on a pooled connection in autocommit mode (see
  // participants::RunPooled).
  template <typename Fn>
  absl::Status RunPooled(bool retry_if_broken, Fn&& fn) {
    return participants::RunPooled(*shared_->pool, retry_if_broken, std::forward<Fn>(fn));
  }

  std::shared_ptr<OdbcShared> shared_;
  NodeClaim<OdbcConnection> claim_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Participant>> CreateOdbcParticipant(const BindOptions& options) {
  auto shared = std::make_shared<OdbcShared>();
  shared->options = options;
  {
    // Connect once to learn the DBMS; errors here use the generic mapping.
    auto generic = [bind = options.name](const odbc::Diagnostic& d, SqlErrorContext context,
                                         bool) {
      return StatusFromSqlstate(bind, d.sqlstate, d.native_error, d.message, context);
    };
    // A MariaDB driver bounds the handshake only through its own DSN keys:
    // set them when the DSN's Driver= names MariaDB or MySQL.
    const std::string lower = absl::AsciiStrToLower(options.dsn);
    const size_t at = lower.find("driver=");
    const std::string driver = at == std::string::npos ? "" : lower.substr(at, lower.find(';', at) - at);
    const bool mariadb_driver = absl::StrContains(driver, "mariadb") || absl::StrContains(driver, "mysql");
    TXC_ASSIGN_OR_RETURN(
        auto probe,
        OdbcConnection::Open(options.name,
                             mariadb_driver ? odbc::MariadbDsnWithTimeouts(options.dsn, options.io_timeout)
                                            : options.dsn,
                             generic));
    TXC_ASSIGN_OR_RETURN(shared->dbms_name, probe->DbmsName());
    absl::StatusOr<std::unique_ptr<Dialect>> dialect = odbc::DialectForDbms(shared->dbms_name);
    if (!dialect.ok()) {
      return absl::Status(dialect.status().code(),
                          absl::StrCat("bind ", options.name, ": ", dialect.status().message()));
    }
    shared->dialect = std::shared_ptr<const Dialect>(std::move(*dialect));
  }
  OdbcShared* raw = shared.get();  // the pool lives inside *raw
  shared->pool = ConnectionPool<OdbcConnection>::Create(
      options.name, options.pool_size, options.acquire_timeout,
      [raw]() { return OpenConnection(*raw); });
  return std::unique_ptr<Participant>(new OdbcParticipant(std::move(shared)));
}

}  // namespace txcoord::participants
