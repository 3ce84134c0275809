#include "participants/mariadb/mariadb_branch.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "participants/mariadb_common.h"
#include "participants/sql_common.h"
#include "participants/statement_guard.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::participants::mariadb {

absl::StatusOr<std::unique_ptr<MariadbConnection>> OpenConnection(const MariadbShared& shared) {
  return MariadbConnection::Open(shared.options.name, shared.dsn, shared.options.io_timeout);
}

std::optional<std::string> NativeLiteral(const MariadbConnection& c, const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull:
    case Value::Kind::kBool:
      return MysqlPlainLiteral(v);
    case Value::Kind::kInt64:
      if (v.int_value == INT64_MIN) return "(-9223372036854775807 - 1)";
      return MysqlPlainLiteral(v);
    case Value::Kind::kDouble:
      if (!std::isfinite(v.double_value)) return std::nullopt;
      // With an exponent the literal is a DOUBLE (without, a DECIMAL);
      // 17 significant digits give back the same double.
      return absl::StrFormat("(%.16e)", v.double_value);
    case Value::Kind::kDecimal: {
      absl::string_view t = v.text;
      size_t i = (!t.empty() && (t[0] == '-' || t[0] == '+')) ? 1 : 0;
      size_t digits = 0, dots = 0;
      for (size_t k = i; k < t.size(); ++k) {
        if (absl::ascii_isdigit(static_cast<unsigned char>(t[k])))
          ++digits;
        else if (t[k] == '.')
          ++dots;
        else
          return std::nullopt;
      }
      if (digits == 0 || dots > 1) return std::nullopt;
      return absl::StrCat("(", t, ")");
    }
    case Value::Kind::kString:
      return c.QuoteString(v.text);
    case Value::Kind::kBytes:
      return v.text.empty() ? std::string("_binary''") : absl::StrCat("X'", absl::BytesToHexString(v.text), "'");
    case Value::Kind::kDate:
      return absl::StrCat("CAST(", c.QuoteString(v.text), " AS DATE)");
    case Value::Kind::kTime:
      return absl::StrCat("CAST(", c.QuoteString(v.text), " AS TIME(6))");
    case Value::Kind::kTimestamp: {
      // DATETIME has no zone: a UTC marker is dropped, other offsets refused.
      std::string text = v.text;
      if (!text.empty() && (text.back() == 'Z' || text.back() == 'z')) text.pop_back();
      if (text.size() > 19 && text.find_first_of("+-", 19) != std::string::npos) return std::nullopt;
      return absl::StrCat("CAST(", c.QuoteString(text), " AS DATETIME(6))");
    }
  }
  return std::nullopt;
}

namespace {

// `sql` with its parameters written in (INVALID_ARGUMENT naming the bind
// when they cannot be); a text without parameters as written.
absl::StatusOr<std::string> Inline(const MariadbConnection& c, absl::string_view bind, absl::string_view sql,
                                   const std::vector<Value>& params) {
  std::optional<MysqlInlined> inlined =
      InlineMysqlParameters(sql, params, [&c](const Value& v) { return NativeLiteral(c, v); });
  if (!inlined) {
    if (params.empty()) return std::string(sql);  // sent as written: the server reads it
    return absl::InvalidArgumentError(absl::StrCat(
        "bind ", bind,
        ": the parameters cannot be written into this statement's text (the mariadb driver sends no server-side "
        "prepared statements): a backslash inside a quoted string, an executable comment, a '?' glued to a word, "
        "or a value MariaDB cannot hold (NaN, infinity, a malformed decimal, a time zone other than UTC)"));
  }
  return std::move(inlined->sql);
}

}  // namespace

absl::Status RollbackOn(MariadbShared& shared, MariadbConnection& c, const Xid& xid) {
  c.write_counter = -1;
  if (c.broken()) return absl::OkStatus();  // the server rolls back a lost session's branch
  (void)c.Run("XA END " + XaLiteral(xid), shared.io_timeout());
  absl::Status s = c.Run("XA ROLLBACK " + XaLiteral(xid), shared.io_timeout(), SqlErrorContext::kFinishPrepared);
  if (s.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
  if (!s.ok()) c.MarkBroken();
  return s;
}

namespace {

class MariadbBranch : public Branch {
 public:
  using State = BranchState;

  MariadbBranch(std::shared_ptr<MariadbShared> shared, Lease lease, Xid xid, absl::Duration lock_timeout,
                bool session_state = false)
      : shared_(std::move(shared)),
        lease_(std::move(lease)),
        xid_(std::move(xid)),
        statement_timeout_(shared_->statement_timeout(lock_timeout)),
        session_state_(session_state) {
    absl::MutexLock lock(&cancel_mu_);
    cancel_session_ = lease_->thread_id();
  }

  ~MariadbBranch() override {
    if (state_ != State::kEnded) (void)Rollback();
    Finish();
  }

  absl::StatusOr<ResultSet> Execute(absl::string_view sql, const std::vector<Value>& params, int max_rows) override {
    TXC_RETURN_IF_ERROR(RequireActive("Execute"));
    TXC_RETURN_IF_ERROR(GuardBranchSql(bind(), "mariadb", sql, &session_state_));
    TXC_RETURN_IF_ERROR(CheckParameterMarkers(bind(), "mariadb", sql, params.size()));
    TXC_ASSIGN_OR_RETURN(std::string text, Inline(*lease_, bind(), sql, params));
    QueryOutcome q = lease_->Query(text, statement_timeout_, max_rows);
    for (const auto& r : q.results) {
      if (r.affected_rows > 0) lease_->changed_rows = true;
    }
    if (!q.status.ok()) {
      if (state_ == State::kActive) {
        state_ = State::kFailed;
        failure_ = q.status;
      }
      CheckBroken();
      return q.status;
    }
    if (q.results.empty()) return ResultSet{};
    return std::move(q.results.front().result);
  }

  absl::StatusOr<Vote> Prepare() override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("Prepare"));
    absl::StatusOr<Vote> vote = PrepareOn(*lease_);
    if (!vote.ok()) {
      CheckBroken();
      if (state_ != State::kEnded) (void)End(/*commit=*/false);
      return vote.status();
    }
    state_ = State::kEnded;
    if (*vote == Vote::kPrepared && !session_state_ && !CancelSent()) {
      // Kept for phase 2; a connection with session state is closed by
      // Finish instead (the prepared branch survives the disconnect).
      {
        absl::MutexLock lock(&cancel_mu_);
        cancel_session_ = 0;
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

  absl::Status CommitAsLastResource(absl::string_view txn_id, absl::string_view payload) override {
    TXC_RETURN_IF_ERROR(RequireActiveOrRollback("CommitAsLastResource"));
    absl::Status s = EnsureDecisionsTable();
    if (s.ok()) {
      s = lease_->Run(absl::StrCat("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (",
                                   lease_->QuoteString(txn_id), ", ", lease_->QuoteString(payload), ")"),
                      statement_timeout_);
    }
    if (!s.ok()) {
      CheckBroken();
      if (state_ != State::kEnded) (void)End(/*commit=*/false);
      return s;
    }
    TXC_FAILPOINT("participants.mariadb.before_last_resource_commit");
    TXC_RETURN_IF_ERROR(End(/*commit=*/true));
    shared_->decisions_table.Set();
    return absl::OkStatus();
  }

  absl::Status Rollback() override {
    if (state_ == State::kEnded) return absl::OkStatus();
    return End(/*commit=*/false);
  }

  // KILL QUERY from a new connection of the bind, on a thread of its own
  // (bounded by io_timeout).
  void Cancel() override {
    int64_t session;
    {
      absl::MutexLock lock(&cancel_mu_);
      session = cancel_session_;
      if (session != 0) cancel_sent_ = true;
    }
    if (session == 0) return;
    (void)SendCancelInBackground([shared = shared_, session] {
      absl::StatusOr<std::unique_ptr<MariadbConnection>> c = OpenConnection(*shared);
      if (c.ok()) (void)(*c)->Run(absl::StrCat("KILL QUERY ", session), shared->io_timeout());
    });
  }

  const Xid& xid() const override { return xid_; }

 private:
  const std::string& bind() const { return shared_->options.name; }

  // XA END and XA PREPARE; a branch that changed no row (the Handler_*
  // probe unchanged since the baseline) ends with XA COMMIT … ONE PHASE
  // and votes kReadOnly instead. The probe is skipped when a statement
  // reported changed rows.
  absl::StatusOr<Vote> PrepareOn(MariadbConnection& c) {
    const std::string x = XaLiteral(xid_);
    const int64_t before = c.write_counter;
    c.write_counter = -1;
    if (c.changed_rows) {
      c.write_counter = -2;  // no baseline for the next branch here (read only if it looks read-only)
      TXC_FAILPOINT("participants.mariadb.before_prepare");
      TXC_RETURN_IF_ERROR(c.Query(absl::StrCat("XA END ", x, ";\nXA PREPARE ", x), statement_timeout_).status);
      return Vote::kPrepared;
    }
    QueryOutcome q = c.Query(absl::StrCat("XA END ", x, ";\n", kMariadbWriteCounterSql), statement_timeout_);
    if (!q.status.ok() && (c.broken() || q.failed_statement == 0)) return q.status;
    std::optional<int64_t> now;
    if (q.status.ok() && q.results.size() == 2 && q.results[1].result.rows.size() == 1 &&
        q.results[1].result.rows[0].size() == 1 && q.results[1].result.rows[0][0].kind == Value::Kind::kInt64) {
      now = q.results[1].result.rows[0][0].int_value;
    }
    // Without a baseline the branch may have written: it is prepared. A
    // branch that wrote nothing is then prepared empty, which MariaDB keeps
    // only while its session lives: phase 2 runs on this connection, parked.
    const bool wrote = before < 0 || !now || *now != before;
    if (now) c.write_counter = *now;  // the baseline of the next branch here
    if (!wrote) {
      TXC_RETURN_IF_ERROR(c.Run("XA COMMIT " + x + " ONE PHASE", statement_timeout_));
      return Vote::kReadOnly;
    }
    TXC_FAILPOINT("participants.mariadb.before_prepare");
    TXC_RETURN_IF_ERROR(c.Run("XA PREPARE " + x, statement_timeout_));
    return Vote::kPrepared;
  }

  absl::Status RequireActive(absl::string_view op) { return RequireActiveBranch(bind(), op, state_, failure_); }

  absl::Status RequireActiveOrRollback(absl::string_view op) {
    absl::Status s = RequireActive(op);
    if (!s.ok() && state_ == State::kFailed) (void)End(/*commit=*/false);
    return s;
  }

  // DDL commits implicitly: on a separate, unpooled connection.
  absl::Status EnsureDecisionsTable() {
    if (shared_->decisions_table.ready()) return absl::OkStatus();
    TXC_ASSIGN_OR_RETURN(auto separate, OpenConnection(*shared_));
    TXC_RETURN_IF_ERROR(separate->Run(kMariadbDecisionsTableDdl, shared_->io_timeout()));
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

  // Ends the local transaction: XA END + XA COMMIT … ONE PHASE in one
  // round trip, or the rollback. A failed COMMIT is followed by a
  // rollback; a connection whose state is then unknown is closed.
  absl::Status End(bool commit) {
    if (state_ == State::kEnded) return absl::OkStatus();
    absl::Status s;
    if (commit) {
      const std::string x = XaLiteral(xid_);
      lease_->write_counter = -1;  // re-read at the next Begin
      s = lease_->Query(absl::StrCat("XA END ", x, ";\nXA COMMIT ", x, " ONE PHASE"), statement_timeout_).status;
      if (!s.ok() && !lease_->broken()) (void)RollbackOn(*shared_, *lease_, xid_);
    } else {
      s = RollbackOn(*shared_, *lease_, xid_);
    }
    if (lease_->broken()) lease_.MarkBroken();
    state_ = State::kEnded;
    Finish();
    return s;
  }

  // Returns the connection to the pool (once); closes it instead when a
  // statement may have left session state on it, or when a cancel was sent
  // to it: the KILL QUERY may arrive after this branch ended and would
  // interrupt the next statement on the connection.
  void Finish() {
    bool cancel_sent;
    {
      absl::MutexLock lock(&cancel_mu_);
      cancel_session_ = 0;
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

  std::shared_ptr<MariadbShared> shared_;
  Lease lease_;
  const Xid xid_;
  const absl::Duration statement_timeout_;
  State state_ = State::kActive;
  absl::Status failure_;
  bool session_state_ = false;  // a statement may have left session state
  absl::Mutex cancel_mu_;
  int64_t cancel_session_ ABSL_GUARDED_BY(cancel_mu_) = 0;  // the server session to KILL QUERY; 0: none
  bool cancel_sent_ ABSL_GUARDED_BY(cancel_mu_) = false;    // its connection is not lent again
};

}  // namespace

std::unique_ptr<Branch> NewMariadbBranch(std::shared_ptr<MariadbShared> shared, Lease lease, Xid xid,
                                         absl::Duration lock_timeout, bool session_state) {
  return std::make_unique<MariadbBranch>(std::move(shared), std::move(lease), std::move(xid), lock_timeout,
                                         session_state);
}

}  // namespace txcoord::participants::mariadb
