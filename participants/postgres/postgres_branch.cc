#include "participants/postgres/postgres_branch.h"

#include <libpq-fe.h>

#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "participants/sql_common.h"
#include "participants/statement_guard.h"
#include "participants/xid.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::participants::postgres_internal {

namespace {

class PostgresBranch : public Branch {
 public:
  using State = BranchState;

  // `statement_limit`: the statement_timeout the branch's statements run
  // under (its Begin's lock_timeout).
  // `session_state`: statements already run on it may have left session
  // state (the connection is closed when the branch ends).
  PostgresBranch(std::shared_ptr<PgShared> shared, ConnectionPool<PgConnection>::Lease lease,
                 Xid xid, absl::Duration statement_limit, bool session_state = false)
      : shared_(std::move(shared)),
        lease_(std::move(lease)),
        xid_(std::move(xid)),
        statement_limit_(statement_limit),
        session_state_(session_state) {
    absl::MutexLock lock(&cancel_mu_);
    cancel_key_ = lease_->cancel;
  }

  ~PostgresBranch() override {
    if (state_ != State::kEnded) (void)Rollback();
    Finish();
  }

  absl::StatusOr<ResultSet> Execute(absl::string_view sql, const std::vector<Value>& params,
                                    int max_rows) override {
    TXC_RETURN_IF_ERROR(RequireActive("Execute"));
    TXC_RETURN_IF_ERROR(GuardBranchSql(shared_->options.name, "postgresql", sql, &session_state_));
    TXC_RETURN_IF_ERROR(CheckParams(shared_->options.name, params));
    std::vector<std::optional<std::string>> texts;
    texts.reserve(params.size());
    for (const Value& v : params) texts.push_back(ParamText(v));
    std::vector<const char*> ptrs;
    ptrs.reserve(texts.size());
    for (const auto& t : texts) ptrs.push_back(t ? t->c_str() : nullptr);
    ResultSet out;
    absl::Status s = Run([&](pqxx::nontransaction& n) {
      pqxx::result r =
          n.exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(ptrs));
      out = ToResultSet(*shared_, n, r, max_rows);
    });
    if (!s.ok()) {
      Fail(s);
      return s;
    }
    // Still inside the branch's transaction? (The guard refuses what it can
    // see; this catches what it cannot.)
    if (state_ == State::kActive && PQtransactionStatus(lease_->conn->raw()) == PQTRANS_IDLE) {
      state_ = State::kEnded;
      Finish();
      return BranchEndedError(shared_->options.name, "after a statement the connection was outside any transaction");
    }
    return out;
  }

  absl::StatusOr<Vote> Prepare() override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("Prepare"));
    bool read_only = false;
    bool ended_before_prepare = false;
    // In a transaction aborted by an earlier error, PostgreSQL answers
    // PREPARE TRANSACTION and COMMIT with a silent ROLLBACK. That cannot
    // happen here: a failed Execute makes the branch kFailed, and the SELECT
    // below would itself fail in an aborted transaction.
    absl::Status s = Run([&](pqxx::nontransaction& n) {
      pqxx::result probe = n.exec(
          "SELECT txid_current_if_assigned() IS NULL, "
          "coalesce(current_setting('txcoord.branch', true) = 'open', false)");
      read_only = probe[0][0].as<bool>();
      // The branch's transaction must still be the one Begin started (its
      // SET LOCAL marker survives only in it; COMMIT AND CHAIN loses it).
      // Outside any transaction PostgreSQL would even answer PREPARE
      // TRANSACTION with a warning only.
      ended_before_prepare =
          !probe[0][1].as<bool>() || PQtransactionStatus(lease_->conn->raw()) != PQTRANS_INTRANS;
      if (ended_before_prepare) return;
      TXC_FAILPOINT("participants.postgres.before_prepare");
      n.exec(read_only ? std::string("COMMIT") : "PREPARE TRANSACTION " + QuoteSqlLiteral(PostgresGid(xid_)));
    });
    if (!s.ok()) {
      (void)EndLocally("ROLLBACK");
      return s;
    }
    if (ended_before_prepare) {
      state_ = State::kEnded;
      Finish();
      return BranchEndedError(shared_->options.name, "PREPARE TRANSACTION found no transaction to prepare");
    }
    state_ = State::kEnded;
    Finish();
    return read_only ? Vote::kReadOnly : Vote::kPrepared;
  }

  absl::Status CommitOnePhase() override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("CommitOnePhase"));
    return EndLocally("COMMIT");
  }

  absl::Status CommitAsLastResource(absl::string_view txn_id,
                                    absl::string_view payload) override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("CommitAsLastResource"));
    bool ready;
    {
      absl::MutexLock lock(&shared_->decisions_mu);
      ready = shared_->decisions_table_ready;
    }
    if (ready) {
      // One round trip: the decision row and the COMMIT that makes it the
      // decision. If the INSERT fails the COMMIT is skipped; a lost
      // connection leaves the outcome unknown (UNAVAILABLE) for recovery.
      absl::Status s = Run([&](pqxx::nontransaction& n) {
        n.exec(absl::StrCat("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (", QuoteSqlLiteral(txn_id),
                            ", ", QuoteSqlLiteral(payload), "); COMMIT"));
      });
      if (!s.ok()) {
        (void)EndLocally("ROLLBACK");  // after a failed COMMIT: a no-op
        return s;
      }
      state_ = State::kEnded;
      Finish();
      return absl::OkStatus();
    }
    absl::Status s = Run([&](pqxx::nontransaction& n) {
      if (!ready) {
        // Inside the transaction, under a savepoint: a concurrent creator
        // makes ours fail (duplicate pg_type row), and then the table exists.
        n.exec("SAVEPOINT txc_decisions_ddl");
        try {
          n.exec(std::string(kCreateDecisionsTable));
          n.exec("RELEASE SAVEPOINT txc_decisions_ddl");
        } catch (const pqxx::sql_error&) {
          n.exec("ROLLBACK TO SAVEPOINT txc_decisions_ddl");
        }
      }
      n.exec_params("INSERT INTO txcoord_decisions (txn_id, payload) VALUES ($1, $2)",
                    std::string(txn_id), std::string(payload));
    });
    if (!s.ok()) {
      (void)EndLocally("ROLLBACK");
      return s;
    }
    TXC_FAILPOINT("participants.postgres.before_last_resource_commit");
    TXC_RETURN_IF_ERROR(EndLocally("COMMIT"));
    absl::MutexLock lock(&shared_->decisions_mu);
    shared_->decisions_table_ready = true;
    return absl::OkStatus();
  }

  absl::Status Rollback() override {
    if (state_ == State::kEnded) return absl::OkStatus();
    return EndLocally("ROLLBACK");
  }

  // Asks the server to cancel the running statement (PQcancel with the
  // connection's cancel key), from a thread of its own: the request opens
  // a new connection and waits for the server's answer without a time
  // limit (SendCancelInBackground). Best effort: the statement may have
  // ended meanwhile; this branch's own call is bounded by io_timeout.
  void Cancel() override {
    std::shared_ptr<PGcancel> key;
    {
      absl::MutexLock lock(&cancel_mu_);
      key = cancel_key_;
      if (key != nullptr) cancel_sent_ = true;
    }
    if (key == nullptr) return;
    (void)SendCancelInBackground([key = std::move(key)] {
      char error[256];
      (void)PQcancel(key.get(), error, sizeof error);
    });
  }

  const Xid& xid() const override { return xid_; }

 private:
  template <typename Fn>
  absl::Status Run(Fn&& fn) {
    bool broken = false;
    absl::Status s = GuardOn(
        shared_->options, *lease_, SqlErrorContext::kStatement, &broken,
        [&] {
          pqxx::nontransaction n(*lease_->conn);
          fn(n);
        },
        statement_limit_);
    if (broken) {
      lease_.MarkBroken();  // the server rolls back an unprepared transaction
      state_ = State::kEnded;
      Finish();
    }
    return s;
  }

  absl::Status RequireActive(absl::string_view op) {
    return RequireActiveBranch(shared_->options.name, op, state_, failure_);
  }

  // Like RequireActive, but a failed branch is rolled back first.
  absl::Status RequireActiveOrRollback(absl::string_view op) {
    absl::Status s = RequireActive(op);
    if (!s.ok() && state_ == State::kFailed) (void)EndLocally("ROLLBACK");
    return s;
  }

  void Fail(const absl::Status& s) {
    if (state_ == State::kActive) {
      state_ = State::kFailed;
      failure_ = s;
    }
  }

  // Ends the local transaction with COMMIT or ROLLBACK and returns the
  // connection (closed instead when even ROLLBACK failed).
  absl::Status EndLocally(const char* sql) {
    if (state_ == State::kEnded) return absl::OkStatus();
    absl::Status s = Run([&](pqxx::nontransaction& n) { n.exec(sql); });
    if (!s.ok() && std::string(sql) == "ROLLBACK") lease_.MarkBroken();
    state_ = State::kEnded;
    Finish();
    return s;
  }

  // Returns the connection to the pool (once); closes it instead when a
  // statement may have left session state on it (SessionStateSql), or when
  // a cancel was sent to it: the cancel may arrive after this branch ended
  // and would interrupt the next statement on the connection.
  void Finish() {
    bool cancel_sent;
    {
      absl::MutexLock lock(&cancel_mu_);
      cancel_key_ = nullptr;
      cancel_sent = cancel_sent_;
    }
    if (cancel_sent) lease_.Discard();
    if (session_state_) lease_.MarkBroken();
    lease_.Release();
  }

  std::shared_ptr<PgShared> shared_;
  ConnectionPool<PgConnection>::Lease lease_;
  const Xid xid_;
  const absl::Duration statement_limit_;
  State state_ = State::kActive;
  absl::Status failure_;
  bool session_state_ = false;  // a statement may have left session state
  absl::Mutex cancel_mu_;
  std::shared_ptr<PGcancel> cancel_key_ ABSL_GUARDED_BY(cancel_mu_);  // null once finished
  bool cancel_sent_ ABSL_GUARDED_BY(cancel_mu_) = false;              // its connection is not lent again
};

}  // namespace

std::unique_ptr<Branch> NewPostgresBranch(std::shared_ptr<PgShared> shared, ConnectionPool<PgConnection>::Lease lease,
                                          Xid xid, absl::Duration statement_limit, bool session_state) {
  return std::make_unique<PostgresBranch>(std::move(shared), std::move(lease), std::move(xid), statement_limit,
                                          session_state);
}

}  // namespace txcoord::participants::postgres_internal
