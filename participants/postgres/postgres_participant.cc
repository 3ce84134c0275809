#include "participants/postgres/postgres_participant.h"

#include <libpq-fe.h>
#include <poll.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "participants/connection_pool.h"
#include "participants/postgres/postgres_batch.h"
#include "participants/postgres/postgres_branch.h"
#include "participants/postgres/postgres_connection.h"
#include "participants/sql_common.h"
#include "participants/statement_guard.h"
#include "util/failpoint.h"
#include "util/io_watchdog.h"
#include "util/status_macros.h"

namespace txcoord::participants {

using postgres_internal::BeginStatements;
using postgres_internal::kCreateDecisionsTable;
using postgres_internal::NewPostgresBranch;
using postgres_internal::Guard;
using postgres_internal::kFirstTail;
using postgres_internal::Pipelined;
using postgres_internal::RunPipelined;
using postgres_internal::SentBatch;
using postgres_internal::GuardOn;
using postgres_internal::OpenConnection;
using postgres_internal::ParamText;
using postgres_internal::PgConnection;
using postgres_internal::PgShared;
using postgres_internal::ToResultSet;

std::optional<std::string> PostgresBatchableSql(absl::string_view sql) {
  while (!sql.empty() && (sql.back() == ';' || absl::ascii_isspace(static_cast<unsigned char>(sql.back())))) {
    sql.remove_suffix(1);
  }
  if (sql.empty()) return std::nullopt;
  enum { kCode, kSingle, kDouble } state = kCode;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    const char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    if (c == '\0' || c == '\\') return std::nullopt;
    switch (state) {
      case kSingle:
        if (c == '\'') state = kCode;  // '' reopens at once: the same as an escaped quote
        break;
      case kDouble:
        if (c == '"') state = kCode;
        break;
      case kCode:
        if (c == '\'') state = kSingle;
        else if (c == '"') state = kDouble;
        else if (c == ';') return std::nullopt;
        else if (c == '-' && next == '-') return std::nullopt;
        else if (c == '/' && next == '*') return std::nullopt;
        else if (c == '$' && !absl::ascii_isdigit(static_cast<unsigned char>(next))) return std::nullopt;
        break;
    }
  }
  if (state != kCode) return std::nullopt;
  return std::string(sql);
}

namespace {

// The statement guard over a batch (before anything is sent):
// INVALID_ARGUMENT naming the refused statement. *session_state: some
// statement may leave session state (its connection is closed after).
absl::Status GuardBatch(const std::string& bind, const std::vector<Statement>& statements, bool* session_state) {
  for (size_t i = 0; i < statements.size(); ++i) {
    absl::Status refused = GuardBranchSql(bind, "postgresql", statements[i].first, session_state);
    if (refused.ok()) refused = postgres_internal::CheckParams(bind, statements[i].second);
    if (!refused.ok()) {
      return absl::Status(refused.code(), absl::StrCat("statement ", i + 1, ": ", refused.message()));
    }
  }
  return absl::OkStatus();
}

// Every statement in PostgresBatchableSql's subset, or nullopt.
std::optional<std::vector<std::string>> BatchableSqls(const std::vector<Statement>& statements) {
  std::vector<std::string> sqls;
  for (const auto& st : statements) {
    std::optional<std::string> sql = PostgresBatchableSql(st.first);
    if (!sql) return std::nullopt;
    sqls.push_back(*std::move(sql));
  }
  return sqls;
}

// True when a statement (batchable SQL: no leading comment) begins with
// INSERT, UPDATE, DELETE or MERGE. Anything else (SELECT, WITH, CALL…) may
// or may not write: the read-only probe tells.
bool AnyDataChange(const std::vector<std::string>& sqls) {
  for (const std::string& sql : sqls) {
    absl::string_view word = absl::StripLeadingAsciiWhitespace(sql);
    word = word.substr(0, word.find_first_of(" \t\r\n("));
    for (const char* verb : {"insert", "update", "delete", "merge"}) {
      if (absl::EqualsIgnoreCase(word, verb)) return true;
    }
  }
  return false;
}

// After a failed batch on a live connection: ends the aborted transaction
// block. (A batch leaves no named statement: a statement that makes one
// closes its connection after, as any that leaves session state.)
void CleanUpFailedBatch(const BindOptions& options, ConnectionPool<PgConnection>::Lease& lease) {
  bool broken = false;
  absl::Status c = GuardOn(options, *lease, SqlErrorContext::kStatement, &broken, [&] {
    pqxx::nontransaction n(*lease->conn);
    n.exec("ROLLBACK");
  });
  if (!c.ok()) lease.MarkBroken();
}

// A failed batch's status, "statement N: " first when a statement failed.
absl::Status NameFailedStatement(const Pipelined& run) {
  if (run.failed < 0) return run.status;
  return absl::Status(run.status.code(), absl::StrCat("statement ", run.failed + 1, ": ", run.status.message()));
}

// False when an idle connection has already been closed by the server
// (restart, terminated backend): its goodbye is waiting in the socket. No
// round trip; a connection lost silently (network) is not caught.
bool ConnectionLooksAlive(PgConnection& c) {
  // A server that ends a session sends an error message, then closes: each
  // read takes one of them, so read while something is pending (bounded).
  for (int reads = 0; reads < 4; ++reads) {
    const int fd = c.conn->sock();
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;  // nothing pending (or poll failed: let the query tell)
    try {
      c.conn->get_notifs();  // reads what arrived; a closed connection throws
    } catch (const std::exception&) {
      return false;
    }
    if (!c.conn->is_open()) return false;
  }
  return false;  // still readable after that: something is wrong with it
}

// COMMIT / ROLLBACK PREPARED sent by PQsendQuery, its reply not read yet.
class FinishPreparedCall : public PendingCall<absl::Status> {
 public:
  FinishPreparedCall(std::shared_ptr<PgShared> shared, ConnectionPool<PgConnection>::Lease lease)
      : shared_(std::move(shared)), lease_(std::move(lease)) {}
  ~FinishPreparedCall() override {
    if (lease_) (void)Finish();
  }

  absl::Status Finish() override {
    const BindOptions& options = shared_->options;
    PGconn* raw = lease_->conn->raw();
    absl::Status s;
    bool replied = false;
    {
      util::IoWatchdog::Watch watch(PQsocket(raw), options.io_timeout);
      // Blocks in libpq until the reply (or the watchdog's shutdown);
      // every result is read, so that the connection is idle after.
      while (PGresult* r = PQgetResult(raw)) {
        replied = true;
        if (PQresultStatus(r) != PGRES_COMMAND_OK && s.ok()) {
          const char* sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
          s = StatusFromSqlstate(options.name, sqlstate ? sqlstate : "", 0, PQresultErrorMessage(r),
                                 SqlErrorContext::kFinishPrepared);
        }
        PQclear(r);
      }
      if (watch.Disarm()) {
        lease_.MarkBroken();
        s = postgres_internal::NoReplyError(options.name, options.io_timeout);
      }
    }
    if (PQstatus(raw) != CONNECTION_OK) {
      // The outcome is unknown: the caller asks again later.
      lease_.MarkBroken();
      if (s.code() != absl::StatusCode::kUnavailable) {
        s = absl::UnavailableError(absl::StrCat("bind ", options.name, ": connection to PostgreSQL lost",
                                                replied ? " after its reply began: " : ": ",
                                                TrimRight(PQerrorMessage(raw))));
      }
    }
    lease_.Release();
    return s;
  }

 private:
  std::shared_ptr<PgShared> shared_;
  ConnectionPool<PgConnection>::Lease lease_;
};

// A batch ending with a statement that must not be sent twice (PREPARE
// TRANSACTION, COMMIT), sent; Finish reads its results. A lost connection
// is discarded (run.broken); after a failure the connection is cleaned up
// and the error names the failing statement.
class OnceBatch {
 public:
  OnceBatch(std::shared_ptr<PgShared> shared, ConnectionPool<PgConnection>::Lease lease,
            const std::vector<std::string>& begin, const std::vector<std::string>& sqls,
            const std::vector<Statement>& statements, const std::string& last, absl::Duration lock_timeout,
            bool session_state)
      : shared_(std::move(shared)),
        lease_(std::move(lease)),
        session_state_(session_state),
        sent_(*shared_, *lease_, begin, sqls, statements, {last}, lock_timeout) {}

  // REQUIRES: once.
  Pipelined Finish(int max_rows) {
    Pipelined run = sent_.Finish(max_rows);
    if (session_state_) lease_.MarkBroken();  // closed when released, never pooled again
    if (run.broken) {
      lease_.MarkBroken();
    } else if (!run.status.ok()) {
      CleanUpFailedBatch(shared_->options, lease_);
      run.status = NameFailedStatement(run);
    }
    lease_.Release();
    return run;
  }

 private:
  std::shared_ptr<PgShared> shared_;
  ConnectionPool<PgConnection>::Lease lease_;
  const bool session_state_;
  SentBatch sent_;  // after lease_: uses its connection
};

// A batch ending in PREPARE TRANSACTION, in flight.
class PrepareBatchCall : public PendingCall<absl::StatusOr<BatchOutcome>> {
 public:
  PrepareBatchCall(std::unique_ptr<OnceBatch> once, int max_rows) : once_(std::move(once)), max_rows_(max_rows) {}
  ~PrepareBatchCall() override {
    if (once_ != nullptr) (void)Finish();
  }

  absl::StatusOr<BatchOutcome> Finish() override {
    Pipelined run = once_->Finish(max_rows_);
    once_.reset();
    if (!run.status.ok()) return run.status;
    BatchOutcome out;
    out.results = std::move(run.results);
    out.vote = Vote::kPrepared;
    return out;
  }

 private:
  std::unique_ptr<OnceBatch> once_;
  const int max_rows_;
};

class PostgresParticipant : public Participant {
 public:
  explicit PostgresParticipant(std::shared_ptr<PgShared> shared) : shared_(std::move(shared)) {}

  const std::string& bind() const override { return shared_->options.name; }
  Capabilities capabilities() const override { return Capabilities{"postgres", "postgresql", true}; }
  PoolStats pool_stats() const override { return shared_->pool->stats(); }
  absl::Status OpenMinimumConnections() override { return shared_->pool->OpenUpTo(shared_->options.pool_min_open); }

  absl::StatusOr<std::unique_ptr<Branch>> Begin(const Xid& xid,
                                                absl::Duration lock_timeout) override {
    const std::string sql = absl::StrJoin(BeginStatements(lock_timeout), "; ");
    // A pooled connection may have died while idle (server restart,
    // terminated backend): BEGIN has no effect yet, so try once more on a
    // freshly opened connection.
    for (int attempt = 0;; ++attempt) {
      TXC_ASSIGN_OR_RETURN(auto lease, shared_->pool->Acquire());
      bool broken = false;
      absl::Status s = GuardOn(shared_->options, *lease, SqlErrorContext::kStatement, &broken, [&] {
        pqxx::nontransaction n(*lease->conn);
        n.exec(sql);
      });
      if (s.ok()) return NewPostgresBranch(shared_, std::move(lease), xid, lock_timeout);
      if (broken) lease.MarkBroken();
      if (!broken || attempt > 0) return s;
    }
  }

  absl::StatusOr<BatchOutcome> RunBatch(const Xid& xid, absl::Duration lock_timeout,
                                        const std::vector<Statement>& statements, int max_rows,
                                        bool prepare) override {
    bool session_state = false;
    TXC_RETURN_IF_ERROR(GuardBatch(bind(), statements, &session_state));
    std::optional<std::vector<std::string>> sqls = BatchableSqls(statements);
    if (!sqls) return Participant::RunBatch(xid, lock_timeout, statements, max_rows, prepare);
    const std::vector<std::string> begin = BeginStatements(lock_timeout);
    if (prepare && AnyDataChange(*sqls)) {
      return RunAndPrepare(xid, *sqls, statements, max_rows, lock_timeout, session_state);
    }
    const std::vector<std::string> tail =
        prepare ? std::vector<std::string>{"SELECT txid_current_if_assigned() IS NULL"} : std::vector<std::string>{};
    // A pooled connection may have died while idle: nothing of the batch
    // can have taken effect then (no PREPARE is in it, and the server rolls
    // back the transaction of a lost connection), so it runs once more on a
    // fresh connection.
    for (int attempt = 0;; ++attempt) {
      TXC_ASSIGN_OR_RETURN(auto lease, shared_->pool->Acquire());
      BatchOutcome out;
      Pipelined run = RunPipelined(*shared_, *lease, begin, *sqls, statements, tail, max_rows, lock_timeout);
      absl::Status s = run.status;
      bool broken = run.broken;
      const bool read_only = s.ok() && prepare && run.tail.at(0) == "t";
      if (broken) {
        lease.MarkBroken();
        if (attempt == 0) continue;
        return s;
      }
      out.results = std::move(run.results);
      if (session_state) lease.MarkBroken();  // closed when released, never pooled again
      if (s.ok() && PQtransactionStatus(lease->conn->raw()) == PQTRANS_IDLE) {
        return BranchEndedError(bind(), "after the statements the connection was outside any transaction");
      }
      if (s.ok() && prepare) {
        s = GuardOn(shared_->options, *lease, SqlErrorContext::kStatement, &broken, [&] {
          TXC_FAILPOINT("participants.postgres.before_prepare");
          pqxx::nontransaction n(*lease->conn);
          n.exec(read_only ? std::string("COMMIT") : "PREPARE TRANSACTION " + QuoteSqlLiteral(PostgresGid(xid)));
        }, lock_timeout);
        out.vote = read_only ? Vote::kReadOnly : Vote::kPrepared;
        if (broken) lease.MarkBroken();
      }
      if (!s.ok()) {
        if (!broken) CleanUpFailedBatch(shared_->options, lease);
        if (!run.status.ok()) return NameFailedStatement(run);
        return s;  // the PREPARE (or read-only COMMIT) after the batch
      }
      if (!prepare) {
        out.branch = NewPostgresBranch(shared_, std::move(lease), xid, lock_timeout, session_state);
      }
      return out;
    }
  }

  // RunBatch with prepare for statements that change data: PREPARE
  // TRANSACTION ends the same string, one round trip in all. (Statements
  // that only read keep the probe, so that a read-only branch votes
  // READ_ONLY; a data change that changed nothing is prepared all the same.)
  // If its connection breaks the branch may be prepared: the coordinator's
  // abort leaves it to recovery's orphan pass, as with a PREPARE that lost
  // its connection.
  absl::StatusOr<BatchOutcome> RunAndPrepare(const Xid& xid, const std::vector<std::string>& sqls,
                                             const std::vector<Statement>& statements, int max_rows,
                                             absl::Duration lock_timeout, bool session_state) {
    return StartAndPrepare(xid, sqls, statements, max_rows, lock_timeout, session_state)->Finish();
  }

  // RunAndPrepare's batch sent, its reply not read: a PostgreSQL + MariaDB
  // transaction has both binds' batches in flight from one thread.
  std::unique_ptr<PendingCall<absl::StatusOr<BatchOutcome>>> StartBatch(const Xid& xid, absl::Duration lock_timeout,
                                                                        const std::vector<Statement>& statements,
                                                                        int max_rows, bool prepare) override {
    using Call = PendingCall<absl::StatusOr<BatchOutcome>>;
    bool session_state = false;
    if (absl::Status refused = GuardBatch(bind(), statements, &session_state); !refused.ok()) {
      return std::unique_ptr<Call>(new ReadyCall<absl::StatusOr<BatchOutcome>>(refused));
    }
    std::optional<std::vector<std::string>> sqls = BatchableSqls(statements);
    if (!sqls || !prepare || !AnyDataChange(*sqls)) return nullptr;  // RunBatch's other paths
    return StartAndPrepare(xid, *sqls, statements, max_rows, lock_timeout, session_state);
  }

  std::unique_ptr<PendingCall<absl::StatusOr<BatchOutcome>>> StartAndPrepare(
      const Xid& xid, const std::vector<std::string>& sqls, const std::vector<Statement>& statements, int max_rows,
      absl::Duration lock_timeout, bool session_state) {
    using Call = PendingCall<absl::StatusOr<BatchOutcome>>;
    TXC_FAILPOINT("participants.postgres.before_prepare");
    absl::StatusOr<std::unique_ptr<OnceBatch>> once =
        StartOnce(sqls, statements, "PREPARE TRANSACTION " + QuoteSqlLiteral(PostgresGid(xid)), lock_timeout,
                  session_state);
    if (!once.ok()) return std::unique_ptr<Call>(new ReadyCall<absl::StatusOr<BatchOutcome>>(once.status()));
    return std::unique_ptr<Call>(new PrepareBatchCall(*std::move(once), max_rows));
  }

  CommitBatchOutcome RunAndCommit(const Xid& xid, absl::Duration lock_timeout,
                                  const std::vector<Statement>& statements, int max_rows) override {
    bool session_state = false;
    if (absl::Status refused = GuardBatch(bind(), statements, &session_state); !refused.ok()) {
      CommitBatchOutcome out;
      out.status = refused;  // nothing sent
      return out;
    }
    std::optional<std::vector<std::string>> sqls = BatchableSqls(statements);
    if (!sqls) return Participant::RunAndCommit(xid, lock_timeout, statements, max_rows);
    absl::StatusOr<std::unique_ptr<OnceBatch>> once = StartOnce(*sqls, statements, "COMMIT", lock_timeout,
                                                                session_state);
    CommitBatchOutcome out;
    if (!once.ok()) {
      out.status = once.status();  // nothing sent
      return out;
    }
    Pipelined run = (*once)->Finish(max_rows);
    out.status = run.status;
    out.outcome_unknown = run.broken;  // the COMMIT may have run
    out.commit_failed = !run.status.ok() && (run.broken || run.failed == kFirstTail);
    if (run.status.ok()) out.results = std::move(run.results);
    return out;
  }

  // A batch ending with `last` (PREPARE TRANSACTION, COMMIT) that must not
  // be sent twice, sent on a connection the server has not closed while it
  // was idle (ConnectionLooksAlive). An error: nothing was sent.
  absl::StatusOr<std::unique_ptr<OnceBatch>> StartOnce(const std::vector<std::string>& sqls,
                                                       const std::vector<Statement>& statements,
                                                       const std::string& last, absl::Duration lock_timeout,
                                                       bool session_state) {
    TXC_ASSIGN_OR_RETURN(ConnectionPool<PgConnection>::Lease lease, AcquireLive());
    return std::make_unique<OnceBatch>(shared_, std::move(lease), BeginStatements(lock_timeout), sqls, statements,
                                       last, lock_timeout, session_state);
  }

  // A pooled connection, not one the server closed while it was idle (its
  // goodbye waits in the socket). After a server restart every idle
  // connection is closed: up to one try per pooled connection, then a new
  // one.
  absl::StatusOr<ConnectionPool<PgConnection>::Lease> AcquireLive(bool finish = false) {
    absl::StatusOr<ConnectionPool<PgConnection>::Lease> lease = Acquire(finish);
    for (int tries = 0; lease.ok() && !ConnectionLooksAlive(**lease); ++tries) {
      lease->MarkBroken();
      lease = absl::UnavailableError("");  // gives the dead one back before the next Acquire
      if (tries > shared_->options.pool_size + PgShared::kFinishReserve) {
        return absl::UnavailableError(absl::StrCat("bind ", bind(), ": no live connection to PostgreSQL"));
      }
      lease = Acquire(finish);
    }
    return lease;
  }

  // A pooled connection; for a call that finishes a prepared branch
  // (`finish`), one of the reserve when the pool is at its limit.
  absl::StatusOr<ConnectionPool<PgConnection>::Lease> Acquire(bool finish) {
    if (!finish) return shared_->pool->Acquire();
    absl::StatusOr<ConnectionPool<PgConnection>::Lease> lease = shared_->pool->TryAcquire();
    if (lease.ok() || lease.status().code() != absl::StatusCode::kResourceExhausted) return lease;
    return shared_->finish_pool->Acquire();
  }

  // COMMIT / ROLLBACK PREPARED sent with libpq's PQsendQuery on a pooled
  // connection (one the server did not close while it was idle: the
  // statement is never sent twice); Finish() reads the reply under the
  // bind's reply bound (IoWatchdog), as FinishPrepared does.
  std::unique_ptr<PendingCall<absl::Status>> StartFinishPrepared(const Xid& xid, bool commit) override {
    using Call = PendingCall<absl::Status>;
    absl::StatusOr<ConnectionPool<PgConnection>::Lease> lease = AcquireLive(/*finish=*/true);
    if (!lease.ok()) return std::unique_ptr<Call>(new ReadyCall<absl::Status>(lease.status()));
    PGconn* raw = (*lease)->conn->raw();
    const std::string sql = (commit ? "COMMIT PREPARED " : "ROLLBACK PREPARED ") + QuoteSqlLiteral(PostgresGid(xid));
    if (raw == nullptr || PQsendQuery(raw, sql.c_str()) != 1) {
      lease->MarkBroken();
      return std::unique_ptr<Call>(new ReadyCall<absl::Status>(absl::UnavailableError(absl::StrCat(
          "bind ", bind(), ": connection to PostgreSQL lost: ", raw ? TrimRight(PQerrorMessage(raw)) : ""))));
    }
    return std::unique_ptr<Call>(new FinishPreparedCall(shared_, *std::move(lease)));
  }

  absl::Status CommitPrepared(const Xid& xid) override {
    return FinishPrepared("COMMIT PREPARED ", xid);
  }
  absl::Status RollbackPrepared(const Xid& xid) override {
    return FinishPrepared("ROLLBACK PREPARED ", xid);
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListAllPrepared() override {
    std::vector<PreparedBranch> out;
    TXC_RETURN_IF_ERROR(RunPooled(/*retry_if_broken=*/true, [&](pqxx::nontransaction& n) {
      out.clear();
      pqxx::result r = n.exec(
          "SELECT gid, (extract(epoch FROM prepared) * 1000000)::int8 FROM pg_prepared_xacts "
          "WHERE database = current_database() ORDER BY prepared");
      for (const auto& row : r) {
        absl::StatusOr<Xid> xid = ParsePostgresGid(row[0].c_str());
        PreparedBranch b;
        b.xid = xid.ok() ? *std::move(xid) : Xid{0, row[0].c_str(), ""};  // another manager's gid
        b.raw = row[0].c_str();
        b.prepared_at = absl::FromUnixMicros(row[1].as<int64_t>());
        out.push_back(std::move(b));
      }
    }));
    return out;
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    const std::string prefix = absl::StrCat(kPostgresGidPrefix, node_id, ".");
    std::vector<PreparedBranch> out;
    TXC_RETURN_IF_ERROR(RunPooled(/*retry_if_broken=*/true, [&](pqxx::nontransaction& n) {
      out.clear();
      pqxx::result r = n.exec_params(
          "SELECT gid, (extract(epoch FROM prepared) * 1000000)::int8 FROM pg_prepared_xacts "
          "WHERE database = current_database() AND left(gid, length($1)) = $1 ORDER BY prepared",
          prefix);
      for (const auto& row : r) {
        absl::StatusOr<Xid> xid = ParsePostgresGid(row[0].c_str());
        if (!xid.ok() || NodeIdOfGtrid(xid->gtrid) != node_id) continue;  // not ours
        PreparedBranch b;
        b.xid = *std::move(xid);
        b.raw = row[0].c_str();
        b.prepared_at = absl::FromUnixMicros(row[1].as<int64_t>());
        out.push_back(std::move(b));
      }
    }));
    return out;
  }

  absl::StatusOr<std::vector<std::string>> ListDecisions(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    const std::string prefix = absl::StrCat(node_id, ".");
    std::vector<std::string> out;
    TXC_RETURN_IF_ERROR(RunPooled(/*retry_if_broken=*/true, [&](pqxx::nontransaction& n) {
      out.clear();
      if (n.exec("SELECT to_regclass('txcoord_decisions') IS NULL")[0][0].as<bool>()) return;
      pqxx::result r = n.exec_params(
          "SELECT txn_id FROM txcoord_decisions WHERE left(txn_id, length($1)) = $1 "
          "AND payload IS DISTINCT FROM $2 ORDER BY decided_at, txn_id",
          prefix, std::string(kDecisionTombstone));
      for (const auto& row : r) out.emplace_back(row[0].c_str());
    }));
    return out;
  }

  absl::Status ForgetDecision(absl::string_view txn_id) override {
    return RunPooled(/*retry_if_broken=*/false, [&](pqxx::nontransaction& n) {
      if (n.exec("SELECT to_regclass('txcoord_decisions') IS NULL")[0][0].as<bool>()) return;
      n.exec_params("DELETE FROM txcoord_decisions WHERE txn_id = $1", std::string(txn_id));
    });
  }

  absl::Status EnsureDecisionTable() override {
    {
      absl::MutexLock lock(&shared_->decisions_mu);
      if (shared_->decisions_table_ready) return absl::OkStatus();
    }
    TXC_RETURN_IF_ERROR(RunPooled(/*retry_if_broken=*/true, [&](pqxx::nontransaction& n) {
      try {
        n.exec(std::string(kCreateDecisionsTable));
      } catch (const pqxx::sql_error&) {
        // A concurrent creator (duplicate pg_type row): fine if it exists now.
        if (n.exec("SELECT to_regclass('txcoord_decisions') IS NULL")[0][0].as<bool>()) throw;
      }
    }));
    absl::MutexLock lock(&shared_->decisions_mu);
    shared_->decisions_table_ready = true;
    return absl::OkStatus();
  }

  // For a two-phase bind configured as last resource: recovery fences an
  // orphan's decision row before rolling its branches back, because the
  // last resource's COMMIT may still be running on the server after
  // txcoord died. The insert waits for such a transaction (same key), for
  // at most 5 s; then the row tells.
  absl::StatusOr<bool> FenceDecision(absl::string_view txn_id) override {
    TXC_RETURN_IF_ERROR(EnsureDecisionTable());
    bool fenced = false;
    TXC_RETURN_IF_ERROR(RunPooled(/*retry_if_broken=*/false, [&](pqxx::nontransaction& n) {
      n.exec("BEGIN");
      try {
        n.exec("SET LOCAL lock_timeout = '5s'");
        pqxx::result inserted = n.exec_params(
            "INSERT INTO txcoord_decisions (txn_id, payload) VALUES ($1, $2) "
            "ON CONFLICT (txn_id) DO NOTHING RETURNING 1",
            std::string(txn_id), std::string(kDecisionTombstone));
        if (inserted.empty()) {
          pqxx::result row = n.exec_params("SELECT payload FROM txcoord_decisions WHERE txn_id = $1",
                                           std::string(txn_id));
          if (row.empty()) throw std::runtime_error("the decision row vanished while fencing");
          fenced = !row[0][0].is_null() && row[0][0].as<std::string>() == kDecisionTombstone;
        } else {
          fenced = true;
        }
        n.exec("COMMIT");
      } catch (...) {
        n.exec("ROLLBACK");
        throw;
      }
    }));
    return fenced;
  }

  absl::Status ForgetDecisions(const std::vector<std::string>& txn_ids) override {
    if (txn_ids.empty()) return absl::OkStatus();
    return RunPooled(/*retry_if_broken=*/false, [&](pqxx::nontransaction& n) {
      if (n.exec("SELECT to_regclass('txcoord_decisions') IS NULL")[0][0].as<bool>()) return;
      // One round trip, and no WAL flush to wait for: a removal lost in a
      // crash leaves a row that recovery removes again.
      std::string sql =
          "BEGIN; SET LOCAL synchronous_commit TO off; DELETE FROM txcoord_decisions WHERE txn_id IN (";
      for (size_t i = 0; i < txn_ids.size(); ++i) {
        if (i > 0) sql += ", ";
        sql += QuoteSqlLiteral(txn_ids[i]);
      }
      sql += "); COMMIT";
      try {
        n.exec(sql);
      } catch (const pqxx::sql_error&) {
        n.exec("ROLLBACK");  // leave no aborted transaction block on a pooled connection
        throw;
      }
    });
  }

  absl::Status CheckHealth() override {
    return RunPooled(/*retry_if_broken=*/true,
                     [&](pqxx::nontransaction& n) { n.exec("SELECT 1"); });
  }

  absl::Status ClaimNode(absl::string_view node_id) override {
    TXC_RETURN_IF_ERROR(ValidateNodeId(node_id));
    absl::MutexLock lock(&claim_mu_);
    if (claim_ != nullptr) {
      // Held while the claiming session lives.
      bool broken = false;
      absl::Status alive = GuardOn(shared_->options, *claim_, SqlErrorContext::kStatement, &broken, [&] {
        pqxx::nontransaction n(*claim_->conn);
        n.exec("SELECT 1");
      });
      if (alive.ok()) return absl::OkStatus();
      // The session and its lock are gone — or, behind a partition, the
      // server still keeps them: remember whose it was.
      stale_claim_pid_ = claim_pid_;
      claim_.reset();
    }
    absl::StatusOr<std::unique_ptr<PgConnection>> opened = OpenConnection(shared_->options);
    // Not connected (a refused login included): not claimed yet, which is
    // never the FAILED_PRECONDITION of a claim held by someone else.
    if (!opened.ok()) return absl::UnavailableError(opened.status().message());
    std::unique_ptr<PgConnection> c = *std::move(opened);
    bool got = false;
    bool ended_stale = false;
    std::string holders;
    bool broken = false;
    TXC_RETURN_IF_ERROR(GuardOn(shared_->options, *c, SqlErrorContext::kStatement, &broken, [&] {
      pqxx::nontransaction n(*c->conn);
      got = n.exec(PostgresNodeClaimSql(node_id, bind()))[0][0].as<bool>();
      if (!got) {
        pqxx::result r = n.exec(PostgresNodeClaimHolderSql(node_id, bind()));
        if (!r.empty() && !r[0][0].is_null()) holders = r[0][0].c_str();
        if (HolderIsSession(holders, stale_claim_pid_)) {
          n.exec(PostgresEndSessionSql(stale_claim_pid_));
          ended_stale = true;
        } else if (shared_->options.take_over_node_claims) {
          // An adopter: the dead node's sessions go; the next attempt claims.
          for (int64_t pid : HolderSessions(holders)) n.exec(PostgresEndSessionSql(pid));
        }
      }
    }));
    if (ended_stale) return StaleClaimTerminated(bind(), stale_claim_pid_);
    if (!got) {
      return NodeClaimConflict(bind(), node_id, absl::StrCat(node_claim_kind(), " ", NodeClaimKey(node_id, bind())),
                               holders);
    }
    claim_pid_ = c->conn->backendpid();
    claim_ = std::move(c);
    stale_claim_pid_ = 0;
    return absl::OkStatus();
  }
  std::string node_claim_kind() const override { return "PostgreSQL advisory lock"; }

 private:
  absl::Status FinishPrepared(const char* verb, const Xid& xid) {
    // No retry here: if the connection broke mid-statement the branch may be
    // finished already, and a retry would report NOT_FOUND for a success.
    return RunPooled(/*retry_if_broken=*/false,
                     [&](pqxx::nontransaction& n) {
                       n.exec(verb + QuoteSqlLiteral(PostgresGid(xid)));
                     },
                     SqlErrorContext::kFinishPrepared, /*finish=*/true);
  }

  template <typename Fn>
  absl::Status RunPooled(bool retry_if_broken, Fn&& fn,
                         SqlErrorContext context = SqlErrorContext::kStatement, bool finish = false) {
    for (int attempt = 0;; ++attempt) {
      TXC_ASSIGN_OR_RETURN(auto lease, Acquire(finish));
      bool broken = false;
      absl::Status s = GuardOn(shared_->options, *lease, context, &broken, [&] {
        pqxx::nontransaction n(*lease->conn);
        fn(n);
      });
      if (broken) lease.MarkBroken();
      if (s.ok() || !broken || !retry_if_broken || attempt > 0) return s;
    }
  }

  std::shared_ptr<PgShared> shared_;
  absl::Mutex claim_mu_;
  std::unique_ptr<PgConnection> claim_ ABSL_GUARDED_BY(claim_mu_);  // holds the node's advisory lock
  int64_t claim_pid_ ABSL_GUARDED_BY(claim_mu_) = 0;  // claim_'s backend (read while it answers)
  int64_t stale_claim_pid_ ABSL_GUARDED_BY(claim_mu_) = 0;  // the backend of a claim given up (0: none)
};

}  // namespace

absl::StatusOr<std::unique_ptr<Participant>> CreatePostgresParticipant(
    const BindOptions& options) {
  auto shared = std::make_shared<PgShared>();
  shared->options = options;
  BindOptions copy = options;
  shared->pool = ConnectionPool<PgConnection>::Create(
      options.name, options.pool_size, options.acquire_timeout,
      [copy]() { return OpenConnection(copy); });
  shared->finish_pool = ConnectionPool<PgConnection>::Create(
      options.name, PgShared::kFinishReserve, options.acquire_timeout,
      [copy]() { return OpenConnection(copy); });
  return std::unique_ptr<Participant>(new PostgresParticipant(std::move(shared)));
}

}  // namespace txcoord::participants
