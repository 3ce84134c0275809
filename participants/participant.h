// Participants: txcoord's hand on one database ("bind").
//
// A Participant owns one bind's connection pool and does everything that
// does not belong to one live transaction: finishing prepared branches from
// any connection (also after a crash), listing this node's in-doubt
// branches, health checks. Participant::Begin() takes a pooled connection
// and starts a Branch on it: one local transaction, driven through
//
//   Begin ─▶ Execute* ─▶ Prepare ──▶ (Participant::CommitPrepared / RollbackPrepared)
//                 │          └─ READ_ONLY vote: already ended, nothing to finish
//                 ├─▶ CommitOnePhase          (the only bind of its transaction)
//                 ├─▶ CommitAsLastResource    (the non-2PC bind of a 2PC transaction)
//                 └─▶ Rollback
//
// Errors (absl::Status): ABORTED serialization failure / deadlock / lock
// timeout (the whole transaction may be retried); UNAVAILABLE the database
// is unreachable or the connection broke; RESOURCE_EXHAUSTED pool or
// database connection limit; NOT_FOUND (only from CommitPrepared /
// RollbackPrepared) no prepared branch with that xid exists;
// INVALID_ARGUMENT / FAILED_PRECONDITION the statement's own error. Every
// message names the bind and the SQLSTATE / native code where there is one.
// Exceptions of the client libraries never leave a participant.
#ifndef TXCOORD_PARTICIPANTS_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_PARTICIPANT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/xid.h"

namespace txcoord::participants {

// A typed SQL value: statement parameters and result cells.
struct Value {
  enum class Kind {
    kNull, kBool, kInt64, kDouble,
    kDecimal,    // exact numeric as text: "12.30"
    kString,     // UTF-8
    kBytes,      // raw bytes
    kDate,       // "2026-11-25"
    kTime,       // "13:45:00.123"
    kTimestamp,  // "2026-11-25T13:45:00.123Z" or without zone
  };
  Kind kind = Kind::kNull;
  bool bool_value = false;
  int64_t int_value = 0;
  double double_value = 0;
  std::string text;  // kDecimal, kString, kBytes, kDate, kTime, kTimestamp

  static Value Null() { return Value{}; }
  static Value Bool(bool v) { Value x; x.kind = Kind::kBool; x.bool_value = v; return x; }
  static Value Int64(int64_t v) { Value x; x.kind = Kind::kInt64; x.int_value = v; return x; }
  static Value Double(double v) { Value x; x.kind = Kind::kDouble; x.double_value = v; return x; }
  static Value Text(Kind k, std::string v) { Value x; x.kind = k; x.text = std::move(v); return x; }
  static Value String(std::string v) { return Text(Kind::kString, std::move(v)); }
  bool operator==(const Value&) const = default;
};

// A one-value answer (GET_LOCK, COUNT(*), EXISTS…) as a truth value: a
// boolean or integer as such; text other than "", "0" and "f" is true.
inline bool TruthyValue(const Value& v) {
  if (v.kind == Value::Kind::kBool) return v.bool_value;
  if (v.kind == Value::Kind::kInt64) return v.int_value != 0;
  return !v.text.empty() && v.text != "0" && v.text != "f";
}

struct Column {
  std::string name;
  std::string type;  // the database's type name, e.g. "int8", "VARCHAR"
};

struct ResultSet {
  std::vector<Column> columns;           // empty when no rows are returned
  std::vector<std::vector<Value>> rows;
  int64_t rows_affected = -1;            // -1 when the database does not say
  bool truncated = false;                // more rows existed than max_rows
};

enum class Vote {
  kPrepared,  // prepared under the branch's xid: finish with Commit/RollbackPrepared
  kReadOnly,  // wrote nothing: the local transaction is already ended
};

// A prepared branch as the database lists it.
struct PreparedBranch {
  Xid xid;
  std::string raw;                // as the database shows it (gid, or XA data)
  absl::Time prepared_at = absl::InfinitePast();  // InfinitePast: not told
};

struct BindOptions {
  std::string name;                // the bind's name, in every error message
  std::string driver;              // "postgres" (libpqxx) or "odbc"
  std::string dsn;                 // libpq URI / key=value, or ODBC "Driver=…;…"
  int pool_size = 8;
  // Connections opened before any call needs them, and opened again when
  // the pool holds fewer (checked with the binds' health, every 5 s): the
  // first calls after a start do not each wait for a new connection.
  int pool_min_open = 0;
  absl::Duration acquire_timeout = absl::Seconds(2);
  // The longest one call waits for the database's reply (and a new
  // connection for the server's answer) before the connection is given up:
  // a server that stops answering fails calls instead of holding them.
  // PostgreSQL (libpq: connect_timeout and a socket watchdog) and MariaDB
  // over ODBC (READ_TIMEOUT / WRITE_TIMEOUT) honour it; other ODBC drivers
  // do not. Zero: no limit. PostgreSQL waits for a branch's statement up
  // to its statement_timeout plus a margin when that is longer; MariaDB's
  // timeouts are per connection (set above the longest transaction).
  absl::Duration io_timeout = absl::Seconds(60);
  // A two-phase bind committed as the transaction's last resource whenever
  // it can be (no PREPARE; its local COMMIT with the decision row is the
  // decision). Read by the coordinator; participants ignore it.
  bool last_resource = false;
  // Set by a node adopting a dead node (not from the config file):
  // ClaimNode ends the database sessions that still hold the dead node's
  // claim (a paused process, or one cut off by a partition, keeps them)
  // and reports the conflict, so that the next attempt takes the claim.
  bool take_over_node_claims = false;
};

struct Capabilities {
  std::string driver;    // "postgres" or "odbc:<DBMS name>"
  std::string dialect;   // "postgresql", "mariadb", "oracle", "sqlserver", "sqlite"
  bool two_phase = true;  // false: may join a 2PC transaction only as last resource
};

struct PoolStats {
  int size = 0;      // the limit
  int open = 0;      // connections open now
  int in_use = 0;    // held by branches
};

// One local transaction on one pooled connection. Not thread-safe, except
// Cancel(). Destroying a Branch that did not finish rolls it back (or, when
// the connection is unusable, discards the connection) and returns the
// connection to the pool.
class Branch {
 public:
  virtual ~Branch() = default;

  // Runs one statement. Parameters are positional in the bind's native
  // style ($1… on PostgreSQL, ? on ODBC). At most `max_rows` rows are
  // returned (0: no limit); `truncated` says when there were more.
  // REQUIRES: the branch is active (not prepared or finished).
  virtual absl::StatusOr<ResultSet> Execute(absl::string_view sql,
                                            const std::vector<Value>& params,
                                            int max_rows) = 0;

  // Phase 1: ends the branch's work and prepares it under xid(). A branch
  // that wrote nothing votes kReadOnly and is already ended. On error the
  // branch is rolled back and no prepared branch is left behind.
  virtual absl::StatusOr<Vote> Prepare() = 0;

  // Commits the local transaction in one phase (the only bind).
  virtual absl::Status CommitOnePhase() = 0;

  // Logging last resource: inserts (txn_id, payload) into the database's
  // txcoord_decisions table and commits, both in this one local
  // transaction: that local COMMIT is the transaction's decision.
  // REQUIRES: !capabilities().two_phase or a test that says otherwise.
  virtual absl::Status CommitAsLastResource(absl::string_view txn_id,
                                            absl::string_view payload) = 0;

  // Rolls back an active (not prepared) branch. Idempotent.
  virtual absl::Status Rollback() = 0;

  // Cancels the statement running on this branch (PQcancel / SQLCancel).
  // Thread-safe: meant to be called from another thread.
  virtual void Cancel() = 0;

  virtual const Xid& xid() const = 0;
};

// A branch whose local transaction the database ended while txcoord still
// held it open (a statement that committed, rolled back or prepared it on
// its own; the statement guard refuses those it can see). Its work may be
// committed: the global transaction can no longer be atomic. Returned by
// Branch calls (FAILED_PRECONDITION, marked with kBranchEndedPayload); the
// coordinator then records the transaction as HEURISTIC.
inline constexpr absl::string_view kBranchEndedPayload = "type.txcoord.dev/branch-ended";
absl::Status BranchEndedError(absl::string_view bind, absl::string_view what);

// A Branch's life: active; failed (a statement failed: only Rollback is
// accepted); ended (prepared, committed or rolled back).
enum class BranchState { kActive, kFailed, kEnded };

// OK while `state` is kActive; else FAILED_PRECONDITION naming the bind and
// `op`: after a failed statement (its `failure`), or on a finished branch.
absl::Status RequireActiveBranch(absl::string_view bind, absl::string_view op, BranchState state,
                                 const absl::Status& failure);
bool IsBranchEnded(const absl::Status& s);

// A statement: SQL and its positional parameters.
using Statement = std::pair<std::string, std::vector<Value>>;

// The payload of a fence row in txcoord_decisions (Participant::FenceDecision).
inline constexpr absl::string_view kDecisionTombstone = "ROLLED_BACK";

// What Participant::RunBatch leaves behind.
struct BatchOutcome {
  // Still active (RunBatch without prepare): finish it like any branch.
  // Null when the batch ended the local transaction (prepared or read-only).
  std::unique_ptr<Branch> branch;
  std::vector<ResultSet> results;  // one per statement
  Vote vote = Vote::kPrepared;     // with prepare only
};

// What Participant::RunAndCommit did.
struct CommitBatchOutcome {
  absl::Status status;  // OK: committed
  // status is not OK and the COMMIT may have taken effect (the connection
  // broke after the batch was sent): nobody knows the outcome here.
  bool outcome_unknown = false;
  bool commit_failed = false;      // the COMMIT failed, not a statement
  std::vector<ResultSet> results;  // one per statement, when committed
};

// A participant call under way: its request is on the wire (sent without
// waiting for the reply), and Finish() waits for the reply and returns
// what the blocking call would have. One thread can so have calls on
// several binds in flight. Not thread-safe. REQUIRES: Finish() at most
// once; destroying an unfinished call finishes it and drops its outcome.
template <typename T>
class PendingCall {
 public:
  virtual ~PendingCall() = default;
  virtual T Finish() = 0;
};

// A call whose outcome is known without the database (refused before
// anything was sent).
template <typename T>
class ReadyCall : public PendingCall<T> {
 public:
  explicit ReadyCall(T value) : value_(std::move(value)) {}
  T Finish() override { return std::move(value_); }

 private:
  T value_;
};

// One bind. Thread-safe.
class Participant {
 public:
  virtual ~Participant() = default;

  virtual const std::string& bind() const = 0;
  virtual Capabilities capabilities() const = 0;
  virtual PoolStats pool_stats() const = 0;
  // Opens connections until the pool holds BindOptions::pool_min_open
  // (idle or in use); the error of the first that fails to open.
  virtual absl::Status OpenMinimumConnections() { return absl::OkStatus(); }

  // Takes a connection from the pool (waits up to the acquire timeout, then
  // RESOURCE_EXHAUSTED) and starts a local transaction for `xid` (XA START
  // on XA dialects). Statements and lock waits in it are limited to
  // `lock_timeout` (0: none), so that a cross-database deadlock ends.
  virtual absl::StatusOr<std::unique_ptr<Branch>> Begin(
      const Xid& xid, absl::Duration lock_timeout) = 0;

  // RunTransaction's path: begins a branch for `xid`, runs `statements`
  // and, with `prepare`, prepares it (phase 1) — in as few round trips as
  // the backend allows. The default does Begin, Execute… and Prepare one
  // after another; PostgreSQL sends BEGIN and all statements in one round
  // trip. On any error nothing is left behind: the local transaction is
  // rolled back (or its connection discarded) and no branch is prepared.
  virtual absl::StatusOr<BatchOutcome> RunBatch(const Xid& xid, absl::Duration lock_timeout,
                                                const std::vector<Statement>& statements,
                                                int max_rows, bool prepare);

  // RunBatch begun without waiting for the database's reply, where the
  // driver can (the native MariaDB driver, for a batch it sends as one
  // string); nullptr when it cannot, and the caller then calls RunBatch.
  // Errors found before anything is sent come back from Finish().
  virtual std::unique_ptr<PendingCall<absl::StatusOr<BatchOutcome>>> StartBatch(
      const Xid& /*xid*/, absl::Duration /*lock_timeout*/, const std::vector<Statement>& /*statements*/,
      int /*max_rows*/, bool /*prepare*/) {
    return nullptr;
  }

  // A one-bind RunTransaction whole: begins, runs `statements` and commits
  // one-phase, in as few round trips as the backend allows. The default is
  // RunBatch then the branch's CommitOnePhase (UNAVAILABLE from it: outcome
  // unknown); PostgreSQL on libpqxx sends BEGIN, the statements and COMMIT
  // in one round trip. A failed statement or COMMIT leaves nothing behind.
  virtual CommitBatchOutcome RunAndCommit(const Xid& xid, absl::Duration lock_timeout,
                                          const std::vector<Statement>& statements, int max_rows);

  // Phase 2, from any connection; idempotent in effect. A branch that does
  // not exist (already finished, or never prepared) is NOT_FOUND.
  virtual absl::Status CommitPrepared(const Xid& xid) = 0;
  virtual absl::Status RollbackPrepared(const Xid& xid) = 0;
  // CommitPrepared / RollbackPrepared begun without waiting for the reply,
  // where the driver can (the native MariaDB driver, on the connection
  // that prepared the branch); nullptr when it cannot.
  virtual std::unique_ptr<PendingCall<absl::Status>> StartFinishPrepared(const Xid& /*xid*/, bool /*commit*/) {
    return nullptr;
  }

  // Prepared branches whose gtrid belongs to `node_id` (see xid.h), in this
  // bind's database only. Never another node's.
  virtual absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(
      absl::string_view node_id) = 0;

  // Every prepared branch in this bind's database, whoever made it (for
  // operators' in-doubt listings): txcoord's branches parsed into their xid,
  // others with the format id the database reports (0 for a PostgreSQL gid
  // that is not txcoord's, whose gid is then in xid.gtrid) and `raw` as
  // shown by the database. Empty for binds without 2PC.
  virtual absl::StatusOr<std::vector<PreparedBranch>> ListAllPrepared() = 0;

  // Last resource only: the txn ids of `node_id` recorded in
  // txcoord_decisions, and removal of one once the journal holds it.
  // ListDecisions is empty while the table does not exist; ForgetDecision
  // of an absent txn id is OK (idempotent).
  virtual absl::StatusOr<std::vector<std::string>> ListDecisions(
      absl::string_view node_id) = 0;
  virtual absl::Status ForgetDecision(absl::string_view txn_id) = 0;
  // ForgetDecision of many at once (the default calls it for each; the
  // first error is returned after trying all). A lost removal only leaves
  // a row that recovery removes later, so it need not be durable.
  virtual absl::Status ForgetDecisions(const std::vector<std::string>& txn_ids);

  // Last resource only, for a decision row a service commits itself in its
  // own transaction (TransactionService.PrepareGlobal): creates
  // txcoord_decisions if missing.
  virtual absl::Status EnsureDecisionTable();
  // The fence that settles such a decision: inserts (txn_id,
  // kDecisionTombstone) in autocommit. true: the tombstone went in, so the
  // service's row can never commit (roll back); false: the service's row is
  // there (it committed). Any other error (the service's transaction still
  // holds the key, the database is down): undecided, ask again later.
  // Tombstones are not decisions: ListDecisions never returns them.
  virtual absl::StatusOr<bool> FenceDecision(absl::string_view txn_id);

  // Opens (or reuses) a connection and runs a trivial query.
  virtual absl::Status CheckHealth() = 0;

  // Claims `node_id` on this bind's database for as long as this
  // participant lives: a lock named after the node id and the bind
  // (NodeClaimName / NodeClaimKey in xid.h), held by a connection of its own (PostgreSQL: an advisory lock; MariaDB/MySQL:
  // GET_LOCK). Two coordinators with one node id would make the same xids
  // and roll back each other's branches as orphans. OK: held (checked on
  // the claiming connection, re-claimed after that connection was lost);
  // FAILED_PRECONDITION: another session holds it, named when the database
  // tells; UNAVAILABLE: the database cannot be reached. Backends without
  // such a lock (SQLite, and Oracle and SQL Server, not written) answer OK
  // and say so in `node_claim_kind()`.
  virtual absl::Status ClaimNode(absl::string_view node_id);
  // What ClaimNode takes, for logs: e.g. "PostgreSQL advisory lock", or ""
  // when this backend is not guarded.
  virtual std::string node_claim_kind() const;
};

// Creates the participant for `options.driver`. Connects lazily except for
// ODBC, which connects once to learn the dialect (SQLGetInfo(SQL_DBMS_NAME)):
// an unreachable ODBC bind is UNAVAILABLE here.
absl::StatusOr<std::unique_ptr<Participant>> CreateParticipant(
    const BindOptions& options);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_PARTICIPANT_H_
