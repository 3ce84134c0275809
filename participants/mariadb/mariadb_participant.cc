#include "participants/mariadb/mariadb_participant.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "participants/connection_pool.h"
#include "participants/mariadb/mariadb_branch.h"
#include "participants/mariadb/mariadb_connection.h"
#include "participants/mariadb_common.h"
#include "participants/node_claim.h"
#include "participants/parked_connections.h"
#include "participants/sql_common.h"
#include "participants/statement_guard.h"
#include "util/failpoint.h"
#include "util/fiber.h"
#include "util/status_macros.h"

namespace txcoord::participants {
namespace {

using mariadb::Lease;
using mariadb::MariadbConnection;
using mariadb::MariadbDsn;
using mariadb::MariadbShared;
using mariadb::NativeLiteral;
using mariadb::NewMariadbBranch;
using mariadb::OpenConnection;
using mariadb::QueryOutcome;
using mariadb::RollbackOn;
using mariadb::StatementResult;

class MariadbParticipant : public Participant {
 public:
  explicit MariadbParticipant(std::shared_ptr<MariadbShared> shared) : shared_(std::move(shared)) {}

  const std::string& bind() const override { return shared_->options.name; }
  Capabilities capabilities() const override { return Capabilities{"mariadb", "mariadb", true}; }
  PoolStats pool_stats() const override { return shared_->pool->stats(); }
  absl::Status OpenMinimumConnections() override { return shared_->pool->OpenUpTo(shared_->options.pool_min_open); }

  absl::StatusOr<std::unique_ptr<Branch>> Begin(const Xid& xid, absl::Duration lock_timeout) override {
    // An idle pooled connection may have died (server restart, killed
    // session): nothing has happened yet, so try once more on a new one.
    for (int attempt = 0;; ++attempt) {
      TXC_ASSIGN_OR_RETURN(Lease lease, shared_->pool->Acquire());
      std::vector<std::string> sqls;
      const int counter_at = StartSql(*lease, xid, lock_timeout, /*probe=*/true, &sqls);
      QueryOutcome q = lease->Query(absl::StrJoin(sqls, ";\n"), shared_->io_timeout());
      if (q.status.ok()) {
        lease->changed_rows = false;
        if (counter_at >= 0) lease->write_counter = CounterOf(q, counter_at);
        return NewMariadbBranch(shared_, std::move(lease), xid, lock_timeout);
      }
      const bool broken = lease->broken();
      lease.MarkBroken();  // its session state is unknown now
      if (!broken || attempt > 0) return q.status;
    }
  }

  absl::StatusOr<BatchOutcome> RunBatch(const Xid& xid, absl::Duration lock_timeout,
                                        const std::vector<Statement>& statements, int max_rows,
                                        bool prepare) override {
    std::unique_ptr<PendingCall<absl::StatusOr<BatchOutcome>>> call =
        StartBatch(xid, lock_timeout, statements, max_rows, prepare);
    if (call != nullptr) return call->Finish();
    return Participant::RunBatch(xid, lock_timeout, statements, max_rows, prepare);
  }

  // A batch that changes data (or is not prepared here) as one string:
  // XA START, the statements and, with `prepare`, XA END and XA PREPARE.
  // Statements that only read keep the default path and its read-only
  // probe (one round trip more), so that such a branch votes READ_ONLY.
  std::unique_ptr<PendingCall<absl::StatusOr<BatchOutcome>>> StartBatch(const Xid& xid, absl::Duration lock_timeout,
                                                                        const std::vector<Statement>& statements,
                                                                        int max_rows, bool prepare) override {
    using Call = PendingCall<absl::StatusOr<BatchOutcome>>;
    bool session_state = false;
    if (absl::Status refused = GuardStatements(statements, &session_state); !refused.ok()) {
      return std::unique_ptr<Call>(new ReadyCall<absl::StatusOr<BatchOutcome>>(refused));
    }
    bool changes = false;
    for (const Statement& st : statements) changes = changes || MysqlChangesData(st.first);
    if (statements.empty() || (prepare && !changes)) return nullptr;
    absl::StatusOr<Lease> lease = AcquireLive();
    if (!lease.ok()) return std::unique_ptr<Call>(new ReadyCall<absl::StatusOr<BatchOutcome>>(lease.status()));
    std::optional<std::vector<std::string>> texts = BatchTexts(**lease, statements);
    if (!texts) return nullptr;  // the lease goes back to the pool
    const std::string x = XaLiteral(xid);
    std::vector<std::string> tail;
    if (prepare) {
      tail = {"XA END " + x, "XA PREPARE " + x};
      TXC_FAILPOINT("participants.mariadb.before_prepare");
    }
    if (prepare) (*lease)->write_counter = -2;  // no probe: no baseline after this prepare
    InFlight f = SendStart(*lease, xid, lock_timeout, *std::move(texts), tail);
    return std::unique_ptr<Call>(
        new BatchCall(this, *std::move(lease), xid, lock_timeout, f, max_rows, prepare, session_state));
  }

  // One round trip: XA START, the statements, XA END, XA COMMIT … ONE PHASE.
  CommitBatchOutcome RunAndCommit(const Xid& xid, absl::Duration lock_timeout,
                                  const std::vector<Statement>& statements, int max_rows) override {
    CommitBatchOutcome out;
    bool session_state = false;
    out.status = GuardStatements(statements, &session_state);
    if (!out.status.ok() || statements.empty()) {
      if (out.status.ok()) return Participant::RunAndCommit(xid, lock_timeout, statements, max_rows);
      return out;  // nothing sent
    }
    absl::StatusOr<Lease> lease = AcquireLive();
    if (!lease.ok()) {
      out.status = lease.status();  // nothing sent
      return out;
    }
    std::optional<std::vector<std::string>> texts = BatchTexts(**lease, statements);
    if (!texts) {
      lease->Release();
      return Participant::RunAndCommit(xid, lock_timeout, statements, max_rows);
    }
    const std::string x = XaLiteral(xid);
    (*lease)->write_counter = -1;  // re-read at the next Begin
    InFlight f = SendStart(*lease, xid, lock_timeout, *std::move(texts), {"XA END " + x, "XA COMMIT " + x + " ONE PHASE"});
    Sent sent = SendFinish(*lease, xid, f, max_rows, session_state);
    out.status = sent.status;
    out.outcome_unknown = sent.broken;  // the COMMIT may have run
    out.commit_failed = !sent.status.ok() && (sent.broken || sent.failed_tail >= 0);
    if (sent.status.ok()) out.results = std::move(sent.results);
    return out;
  }

  std::unique_ptr<PendingCall<absl::Status>> StartFinishPrepared(const Xid& xid, bool commit) override {
    Lease lease = shared_->parked.Unpark(xid);
    if (!lease) return nullptr;
    lease->StartQuery(absl::StrCat(commit ? "XA COMMIT " : "XA ROLLBACK ", XaLiteral(xid)), shared_->io_timeout());
    return std::unique_ptr<PendingCall<absl::Status>>(new FinishPreparedCall(std::move(lease)));
  }

  absl::Status CommitPrepared(const Xid& xid) override { return FinishPrepared(xid, "XA COMMIT "); }
  absl::Status RollbackPrepared(const Xid& xid) override { return FinishPrepared(xid, "XA ROLLBACK "); }

  absl::StatusOr<std::vector<PreparedBranch>> ListAllPrepared() override { return ListPrepared(""); }

  // XA RECOVER is server-wide: binds on databases of one server list the
  // same branches.
  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(absl::string_view node_id) override {
    if (!node_id.empty()) TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    std::vector<PreparedBranch> out;
    TXC_RETURN_IF_ERROR(RunPooled(true, [&](MariadbConnection& c) -> absl::Status {
      TXC_ASSIGN_OR_RETURN(out, ListPreparedOn(c, node_id));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<std::string>> ListDecisions(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    std::vector<std::string> out;
    TXC_RETURN_IF_ERROR(RunPooled(true, [&](MariadbConnection& c) -> absl::Status {
      out.clear();
      TXC_ASSIGN_OR_RETURN(bool exists, DecisionsTableExists(c));
      if (!exists) return absl::OkStatus();
      // node_id is [A-Za-z0-9-]: no LIKE wildcards, safe in a literal.
      TXC_ASSIGN_OR_RETURN(ResultSet rs,
                           c.Execute(absl::StrCat("SELECT txn_id FROM txcoord_decisions WHERE txn_id LIKE '", node_id,
                                                  ".%' AND (payload IS NULL OR payload <> '", kDecisionTombstone,
                                                  "') ORDER BY decided_at, txn_id"),
                                     shared_->io_timeout()));
      for (const auto& row : rs.rows) out.push_back(row[0].text);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status ForgetDecision(absl::string_view txn_id) override {
    return RunPooled(false, [&](MariadbConnection& c) -> absl::Status {
      TXC_ASSIGN_OR_RETURN(bool exists, DecisionsTableExists(c));
      if (!exists) return absl::OkStatus();
      return c.Run("DELETE FROM txcoord_decisions WHERE txn_id = " + c.QuoteString(txn_id), shared_->io_timeout());
    });
  }

  absl::Status EnsureDecisionTable() override {
    if (shared_->decisions_table.ready()) return absl::OkStatus();
    // In autocommit mode on a connection of its own (DDL).
    TXC_ASSIGN_OR_RETURN(auto separate, OpenConnection(*shared_));
    TXC_RETURN_IF_ERROR(separate->Run(kMariadbDecisionsTableDdl, shared_->io_timeout()));
    shared_->decisions_table.Set();
    return absl::OkStatus();
  }

  absl::StatusOr<bool> FenceDecision(absl::string_view txn_id) override {
    TXC_RETURN_IF_ERROR(EnsureDecisionTable());
    bool fenced = false;
    TXC_RETURN_IF_ERROR(RunPooled(false, [&](MariadbConnection& c) -> absl::Status {
      const std::string id = c.QuoteString(txn_id);
      absl::Status inserted = c.Run(absl::StrCat("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (", id,
                                                 ", '", kDecisionTombstone, "')"),
                                    shared_->io_timeout());
      if (inserted.ok()) {
        fenced = true;
        return absl::OkStatus();
      }
      // Most likely the key exists: whose row is it?
      TXC_ASSIGN_OR_RETURN(ResultSet rs, c.Execute("SELECT payload FROM txcoord_decisions WHERE txn_id = " + id,
                                                   shared_->io_timeout()));
      if (rs.rows.empty()) return inserted;  // not a duplicate: undecided
      fenced = rs.rows[0][0].kind != Value::Kind::kNull && rs.rows[0][0].text == kDecisionTombstone;
      return absl::OkStatus();
    }));
    return fenced;
  }

  absl::Status CheckHealth() override {
    return RunPooled(true, [&](MariadbConnection& c) { return c.Run("SELECT 1", shared_->io_timeout()); });
  }

  absl::Status ClaimNode(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    NodeClaimOps<MariadbConnection> ops;
    ops.bind = bind();
    ops.claim_sql = MariadbClaimNodeSql(node_id, bind());
    ops.holder_sql = MariadbNodeClaimHolderSql(node_id, bind());
    ops.kind = std::string(kMariadbNodeClaimKind);
    ops.take_over = shared_->options.take_over_node_claims;
    ops.open = [this] { return OpenConnection(*shared_); };
    ops.check = [this](MariadbConnection& c) { return c.Run("SELECT 1", shared_->io_timeout()); };
    ops.query = [this](MariadbConnection& c, const std::string& sql) { return c.Execute(sql, shared_->io_timeout()); };
    ops.session_id = [](const MariadbConnection& c) { return c.thread_id(); };
    ops.end_session_sql = [](int64_t session) { return absl::StrCat("KILL ", session); };
    return claim_.Claim(node_id, ops);
  }
  std::string node_claim_kind() const override { return std::string(kMariadbNodeClaimKind); }

 private:
  // The statement guard and the '?' count of every statement:
  // INVALID_ARGUMENT "statement N: …" before anything is sent.
  absl::Status GuardStatements(const std::vector<Statement>& statements, bool* session_state) {
    for (size_t i = 0; i < statements.size(); ++i) {
      absl::Status refused = GuardBranchSql(bind(), "mariadb", statements[i].first, session_state);
      if (refused.ok()) {
        refused = CheckParameterMarkers(bind(), "mariadb", statements[i].first, statements[i].second.size());
      }
      if (!refused.ok()) {
        return absl::Status(refused.code(), absl::StrCat("statement ", i + 1, ": ", refused.message()));
      }
    }
    return absl::OkStatus();
  }

  // The statements as text for one multi-statement string; nullopt when
  // one is not a single statement that lexes without doubt (its text could
  // run into the XA statements after it), or its parameters cannot be
  // written: the caller then runs them one call each, with their own
  // errors.
  static std::optional<std::vector<std::string>> BatchTexts(const MariadbConnection& c,
                                                           const std::vector<Statement>& statements) {
    std::vector<std::string> texts;
    for (const Statement& st : statements) {
      std::optional<MysqlInlined> inlined =
          InlineMysqlParameters(st.first, st.second, [&c](const Value& v) { return NativeLiteral(c, v); });
      if (!inlined || inlined->several_statements) return std::nullopt;
      texts.push_back(std::move(inlined->sql));
    }
    return texts;
  }

  // What Send did.
  struct Sent {
    absl::Status status;             // "statement N: …" when a statement failed
    bool broken = false;             // the connection was lost: what ran is unknown
    int failed_tail = -1;            // the index in `tail` of the statement that failed, or -1
    std::vector<ResultSet> results;  // one per statement, when OK
  };

  // A batch string on the wire (SendStart), to be read by SendFinish.
  struct InFlight {
    size_t first = 0;  // the index of the first statement in the string
    size_t count = 0;  // the statements
    size_t total = 0;  // every statement of the string
  };

  // Sends the branch's start (StartSql, no probe), `texts` and `tail` as one
  // string on `lease`, without waiting for the reply.
  InFlight SendStart(Lease& lease, const Xid& xid, absl::Duration lock_timeout, std::vector<std::string> texts,
                     const std::vector<std::string>& tail) {
    std::vector<std::string> sqls;
    StartSql(*lease, xid, lock_timeout, /*probe=*/false, &sqls);
    InFlight f;
    f.first = sqls.size();
    f.count = texts.size();
    for (std::string& text : texts) sqls.push_back(std::move(text));
    sqls.insert(sqls.end(), tail.begin(), tail.end());
    f.total = sqls.size();
    lease->changed_rows = false;
    lease->StartQuery(absl::StrJoin(sqls, ";\n"), shared_->statement_timeout(lock_timeout));
    return f;
  }

  // Reads the reply of SendStart's string. On failure on a live connection
  // the branch is rolled back; a lost connection is discarded (the server
  // rolls back what was not prepared or committed).
  Sent SendFinish(Lease& lease, const Xid& xid, const InFlight& f, int max_rows, bool session_state) {
    QueryOutcome q = lease->FinishQuery(max_rows);
    if (session_state) lease.MarkBroken();  // closed when released, never pooled again
    Sent sent;
    if (q.status.ok() && q.results.size() != f.total) {
      // Never expected: the server ran another number of statements.
      lease.MarkBroken();  // closing the session rolls back what is not prepared
      sent.broken = true;
      sent.status = absl::InternalError(absl::StrCat("bind ", bind(), ": the batch of ", f.total,
                                                     " statements gave ", q.results.size(), " results"));
      return sent;
    }
    if (!q.status.ok()) {
      lease->session_lock_timeout_ms = -2;  // the SET may not have run
      sent.broken = lease->broken();
      if (sent.broken) {
        lease.MarkBroken();
      } else {
        (void)RollbackOn(*shared_, *lease, xid);
        if (lease->broken()) lease.MarkBroken();
      }
      const int failed = q.failed_statement - static_cast<int>(f.first);
      sent.status = q.status;
      if (failed >= 0 && failed < static_cast<int>(f.count)) {
        sent.status = absl::Status(q.status.code(), absl::StrCat("statement ", failed + 1, ": ", q.status.message()));
      } else if (failed >= static_cast<int>(f.count)) {
        sent.failed_tail = failed - static_cast<int>(f.count);
      }
      return sent;
    }
    for (size_t i = 0; i < f.count; ++i) {
      StatementResult& r = q.results[f.first + i];
      if (r.affected_rows > 0) lease->changed_rows = true;
      sent.results.push_back(std::move(r.result));
    }
    return sent;
  }

  // What RunBatch returns once its string's reply is read.
  absl::StatusOr<BatchOutcome> BatchFinish(Lease lease, const Xid& xid, absl::Duration lock_timeout,
                                           const InFlight& f, int max_rows, bool prepare, bool session_state) {
    Sent sent = SendFinish(lease, xid, f, max_rows, session_state);
    if (!sent.status.ok()) return sent.status;
    BatchOutcome out;
    out.results = std::move(sent.results);
    if (prepare) {
      out.vote = Vote::kPrepared;
      if (lease && !session_state) shared_->parked.Park(xid, std::move(lease));
      return out;
    }
    out.branch = NewMariadbBranch(shared_, std::move(lease), xid, lock_timeout, session_state);
    return out;
  }

  // RunBatch's string under way.
  class BatchCall : public PendingCall<absl::StatusOr<BatchOutcome>> {
   public:
    BatchCall(MariadbParticipant* participant, Lease lease, Xid xid, absl::Duration lock_timeout, InFlight f,
              int max_rows, bool prepare, bool session_state)
        : participant_(participant), lease_(std::move(lease)), xid_(std::move(xid)), lock_timeout_(lock_timeout),
          f_(f), max_rows_(max_rows), prepare_(prepare), session_state_(session_state) {}
    ~BatchCall() override {
      if (!finished_) (void)Finish();
    }
    absl::StatusOr<BatchOutcome> Finish() override {
      finished_ = true;
      return participant_->BatchFinish(std::move(lease_), xid_, lock_timeout_, f_, max_rows_, prepare_,
                                       session_state_);
    }

   private:
    MariadbParticipant* const participant_;
    Lease lease_;
    const Xid xid_;
    const absl::Duration lock_timeout_;
    const InFlight f_;
    const int max_rows_;
    const bool prepare_;
    const bool session_state_;
    bool finished_ = false;
  };

  // XA COMMIT / XA ROLLBACK on a parked connection, under way.
  class FinishPreparedCall : public PendingCall<absl::Status> {
   public:
    explicit FinishPreparedCall(Lease lease) : lease_(std::move(lease)) {}
    ~FinishPreparedCall() override {
      if (lease_) (void)Finish();
    }
    absl::Status Finish() override { return FinishParked(lease_, lease_->FinishQuery(0, SqlErrorContext::kFinishPrepared).status); }

   private:
    Lease lease_;
  };

  // After phase 2 on the parked connection that prepared the branch: a
  // lost connection is discarded (outcome unknown: the caller asks again
  // later), one whose XA COMMIT failed too (its session state is unknown:
  // closing it detaches the branch); else it goes back to the pool.
  static absl::Status FinishParked(Lease& lease, absl::Status s) {
    if (lease->broken()) {
      lease.MarkBroken();
    } else if (!s.ok()) {
      lease.Discard();
    }
    lease.Release();
    return s;
  }

  // A pooled connection, not one the server closed while it was idle (a
  // batch may carry XA PREPARE and is never sent twice). After a server
  // restart every idle connection is closed: up to one try per pooled
  // connection, then a new one.
  absl::StatusOr<Lease> AcquireLive() {
    absl::StatusOr<Lease> lease = shared_->pool->Acquire();
    for (int tries = 0; lease.ok() && !(*lease)->LooksAlive(); ++tries) {
      lease->MarkBroken();
      lease = absl::UnavailableError("");  // gives the dead one back before the next Acquire
      if (tries > shared_->options.pool_size) {
        return absl::UnavailableError(absl::StrCat("bind ", bind(), ": no live connection to MariaDB"));
      }
      lease = shared_->pool->Acquire();
    }
    return lease;
  }

  // The statements that start a branch on `c`: the session's limits when
  // they differ, the write-counter baseline when `probe` and none is
  // known, XA START. Returns the probe's index in *sqls, or -1.
  int StartSql(MariadbConnection& c, const Xid& xid, absl::Duration lock_timeout, bool probe,
               std::vector<std::string>* sqls) {
    const int64_t ms = MariadbTimeoutMillis(lock_timeout);
    if (!MariadbSessionLimitsCloseEnough(c.session_lock_timeout_ms, ms)) {
      sqls->push_back(MariadbSessionLimitsSql(ms));
      c.session_lock_timeout_ms = ms;  // unknown again if this fails: the connection is then dropped
    }
    int counter_at = -1;
    if (probe && c.write_counter == -1) {
      counter_at = static_cast<int>(sqls->size());
      sqls->push_back(std::string(kMariadbWriteCounterSql));
    }
    sqls->push_back("XA START " + XaLiteral(xid));
    return counter_at;
  }

  // The probe's value in `q` at `index`, or -1 (Prepare will not vote
  // read-only) when it did not give one integer.
  static int64_t CounterOf(const QueryOutcome& q, int index) {
    if (index < 0 || static_cast<size_t>(index) >= q.results.size()) return -1;
    const ResultSet& rs = q.results[index].result;
    if (rs.rows.size() != 1 || rs.rows[0].size() != 1 || rs.rows[0][0].kind != Value::Kind::kInt64) return -1;
    return rs.rows[0][0].int_value;
  }

  absl::StatusOr<bool> DecisionsTableExists(MariadbConnection& c) {
    TXC_ASSIGN_OR_RETURN(ResultSet exists, c.Execute(kMariadbDecisionsTableExistsSql, shared_->io_timeout()));
    return !exists.rows.empty() && TruthyValue(exists.rows[0][0]);
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListPreparedOn(MariadbConnection& c, absl::string_view node_id) {
    QueryOutcome q = c.Query("XA RECOVER", shared_->io_timeout(), 0, SqlErrorContext::kStatement,
                             /*text_as_bytes=*/true);
    if (!q.status.ok()) return q.status;
    std::vector<PreparedBranch> out;
    if (q.results.empty()) return out;
    for (const auto& row : q.results.front().result.rows) {
      // formatID, gtrid_length, bqual_length, data
      if (row.size() < 4 || row[0].kind != Value::Kind::kInt64 || row[1].kind != Value::Kind::kInt64 ||
          row[2].kind != Value::Kind::kInt64) {
        continue;
      }
      if (!node_id.empty() && row[0].int_value != kTxcFormatId) continue;
      absl::StatusOr<Xid> xid = ParseXaRecoverRow(row[0].int_value, row[1].int_value, row[2].int_value, row[3].text);
      if (!xid.ok()) continue;
      if (!node_id.empty() && NodeIdOfGtrid(xid->gtrid) != node_id) continue;
      PreparedBranch b;
      b.xid = *std::move(xid);
      b.raw = XaLiteral(b.xid);
      out.push_back(std::move(b));
    }
    return out;
  }

  // XA COMMIT / XA ROLLBACK (`verb`) on the connection that prepared the
  // branch when it is parked here, else on a pooled one. XAER_NOTA is
  // NOT_FOUND only if XA RECOVER does not list the xid either: a branch
  // whose preparing session is still closing is listed but not yet
  // finishable; retried for up to 5 s, then UNAVAILABLE.
  absl::Status FinishPrepared(const Xid& xid, absl::string_view verb) {
    const std::string sql = absl::StrCat(verb, XaLiteral(xid));
    if (Lease lease = shared_->parked.Unpark(xid)) {
      return FinishParked(lease, lease->Run(sql, shared_->io_timeout(), SqlErrorContext::kFinishPrepared));
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    absl::Duration pause = absl::Milliseconds(2);
    for (;;) {
      absl::Status s;
      std::vector<PreparedBranch> listed;
      // No retry on a new connection: a lost one may have committed already.
      TXC_RETURN_IF_ERROR(RunPooled(false, [&](MariadbConnection& c) -> absl::Status {
        s = c.Run(sql, shared_->io_timeout(), SqlErrorContext::kFinishPrepared);
        if (s.code() != absl::StatusCode::kNotFound || NodeIdOfGtrid(xid.gtrid).empty()) return absl::OkStatus();
        TXC_ASSIGN_OR_RETURN(listed, ListPreparedOn(c, NodeIdOfGtrid(xid.gtrid)));
        return absl::OkStatus();
      }));
      bool still_there = false;
      for (const PreparedBranch& b : listed) still_there = still_there || b.xid == xid;
      if (!still_there) return s;
      if (absl::Now() + pause > deadline) {
        return absl::UnavailableError(absl::StrCat("bind ", bind(), ": ", XidToString(xid),
                                                   " is listed by XA RECOVER but still attached to a session: ",
                                                   s.message()));
      }
      util::Sleep(pause);  // on a fiber, the loop runs the others meanwhile
      pause = std::min(pause * 2, absl::Milliseconds(100));
    }
  }

  // Runs `fn` on a pooled connection in autocommit mode (see
  // participants::RunPooled).
  template <typename Fn>
  absl::Status RunPooled(bool retry_if_broken, Fn&& fn) {
    return participants::RunPooled(*shared_->pool, retry_if_broken, std::forward<Fn>(fn));
  }

  std::shared_ptr<MariadbShared> shared_;
  NodeClaim<MariadbConnection> claim_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Participant>> CreateMariadbParticipant(const BindOptions& options) {
  auto shared = std::make_shared<MariadbShared>();
  shared->options = options;
  TXC_ASSIGN_OR_RETURN(shared->dsn, mariadb::ParseMariadbDsn(options.name, options.dsn));
  MariadbShared* raw = shared.get();  // the pool lives inside *raw
  shared->pool = ConnectionPool<MariadbConnection>::Create(options.name, options.pool_size, options.acquire_timeout,
                                                           [raw]() { return OpenConnection(*raw); });
  return std::unique_ptr<Participant>(new MariadbParticipant(std::move(shared)));
}

}  // namespace txcoord::participants
