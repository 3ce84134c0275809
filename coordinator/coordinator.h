// The coordinator: transactions across binds and the two-phase commit
// protocol (presumed abort), with recovery.
//
//   ACTIVE ──Commit──▶ PREPARING ──all voted yes──▶ COMMITTING ──all acked──▶ COMMITTED
//     │                    │ a no vote, an error, a timeout
//     └──Rollback──────────┴────────────────────▶ ABORTING ──all acked──▶ ABORTED
//
// Commit of a transaction with enlisted binds B:
//   |B| == 0: nothing to do.   |B| == 1: one-phase commit, no journal write.
//   otherwise: PREPARE every 2PC branch in parallel (read-only voters drop
//   out); any failure rolls every branch back (nothing journaled: presumed
//   abort). Then the decision: with a last-resource (non-2PC) bind, its
//   local COMMIT carrying the decision row *is* the decision and the journal
//   records it afterwards; without, Journal::LogDecision (fsynced). No
//   COMMIT PREPARED is sent before the decision is durable. Phase 2 commits
//   every branch in parallel; branches that fail are retried by the
//   background pass with capped exponential backoff; END when all acked.
//
// Recovery (Start() before serving, then every recovery interval): re-drive
// every unfinished journal record; list every bind's prepared branches of
// this node: commit those decided (journal or a last resource's
// txcoord_decisions), roll back the others that are orphans (older epoch, or
// not live and older than the orphan safety interval). Nothing is rolled
// back while a last-resource bind cannot be read. Other nodes' branches are
// never touched.
//
// Thread safety: Coordinator is thread-safe. A Transaction is used by one
// caller at a time (its session serializes calls), except
// Transaction::CancelRunning(), which any thread may call.
#ifndef TXCOORD_COORDINATOR_COORDINATOR_H_
#define TXCOORD_COORDINATOR_COORDINATOR_H_

#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/options.h"
#include "coordinator/metrics.h"
#include "journal/journal.h"
#include "participants/participant.h"

namespace txcoord::coordinator {

// The time source; tests may hand in a fake.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};
Clock* RealClock();

enum class TxnState { kActive, kPreparing, kCommitting, kCommitted, kAborting, kAborted, kHeuristic };
const char* TxnStateName(TxnState s);

struct BranchInfo {
  std::string bind;
  std::string xid;
  std::string state;  // "active", "prepared", "read_only", "committed", "rolled_back", "heuristic_hazard"
  int attempts = 0;
  std::string last_error;
  bool last_resource = false;
};

struct TxnInfo {
  std::string txn_id;
  TxnState state = TxnState::kActive;
  std::vector<BranchInfo> branches;
  absl::Time started_at = absl::InfinitePast();
  absl::Time decided_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
  std::string session_id;
  std::map<std::string, std::string> labels;
  std::string abort_reason;
};

struct RecoveryReport {
  int redriven = 0;             // journal records finished this pass
  int orphans_rolled_back = 0;
  int decided_committed = 0;    // prepared branches committed from a decision
  int still_pending = 0;        // records or branches left for a later pass
};

// A prepared branch found on a bind, matched against the journal.
struct InDoubtBranch {
  // kPeer: another node's of this cluster (its node or its adopter finishes it).
  enum class Kind { kDecided, kOrphaned, kForeign, kPeer };
  std::string bind;
  std::string xid;
  std::string txn_id;   // when ours or a peer's
  std::string node_id;  // whose, when the xid is txcoord's
  Kind kind = Kind::kForeign;
  absl::Duration age = absl::ZeroDuration();
  bool age_known = false;
};

struct ListTransactionsFilter {
  std::vector<TxnState> states;  // empty: all
  std::string bind;              // empty: all
  absl::Duration older_than = absl::ZeroDuration();
  int page_size = 100;
  std::string page_token;        // from the previous page; empty: first
};

struct CoordinatorStats {
  int64_t committed = 0;
  int64_t aborted = 0;
  int64_t heuristic_hazards = 0;
  int64_t phase2_retries = 0;
};

class Coordinator;

// One global transaction while it is live. Created by
// Coordinator::Begin(), owned by its session.
class Transaction {
 public:
  ~Transaction();
  const std::string& id() const { return id_; }
  TxnState state() const;
  absl::Time deadline() const { return deadline_; }
  // Cancels the statement running on any branch (thread-safe).
  void CancelRunning();
  // Marks the transaction as failed with `why` (only Rollback is accepted).
  void Fail(std::string why);

 private:
  friend class Coordinator;
  struct Enlisted {
    std::string bind;
    participants::Participant* participant = nullptr;
    std::unique_ptr<participants::Branch> branch;
    participants::Xid xid;
    bool two_phase = true;
    bool prepared = false;
    bool read_only = false;
    // A branch a service prepares on its own connection (TransactionService):
    // no Branch object here; `registered` once the service said it prepared.
    bool external = false;
    bool registered = false;
    bool callback = false;  // a ParticipantService at an address, prepared by txcoord
    // A bind without 2PC that the service commits itself, with the decision
    // row (PrepareGlobal): settled by Participant::FenceDecision.
    bool service_lr = false;
  };
  Transaction(Coordinator* owner, std::string id, std::string session_id,
              std::map<std::string, std::string> labels, absl::Time started,
              absl::Time deadline);

  Coordinator* const owner_;
  const std::string id_;
  const std::string session_id_;
  std::string identity_;  // set before the transaction is published
  // RunTransaction's idempotency key as journaled (identity "/" key), or
  // "": recorded with the outcome (Journal::FindIdempotencyKey).
  std::string idempotency_key_;  // set before the transaction is published
  const std::map<std::string, std::string> labels_;
  const absl::Time started_;
  const absl::Time deadline_;
  mutable absl::Mutex mu_;
  TxnState state_ ABSL_GUARDED_BY(mu_) = TxnState::kActive;
  std::string failure_ ABSL_GUARDED_BY(mu_);  // non-empty: only Rollback
  // PrepareGlobal ran (state PREPARING): the service may commit its last
  // resource; only CommitGlobal / RollbackGlobal (both fence) may follow.
  bool service_lr_pending_ ABSL_GUARDED_BY(mu_) = false;
  // Enlisted branches; the vector is only resized under mu_, so that
  // CancelRunning() may walk it from another thread.
  std::vector<std::unique_ptr<Enlisted>> branches_ ABSL_GUARDED_BY(mu_);
  // CancelExpired calls running outside the coordinator's mu_ (a cancel
  // may wait on the network): counted under that mu_ while the transaction
  // is registered; the destructor waits for them after unregistering. The
  // canceller's decrement is its last access to the transaction.
  std::atomic<int> cancels_in_flight_{0};
};

struct CoordinatorOptions {
  std::string node_id;
  Timeouts timeouts;
  RecoveryOptions recovery;
  int max_rows = 10000;
  int max_sql_bytes = 1 << 20;
  int recent_outcomes = 10000;  // outcomes kept in memory (Limits::recent_outcomes)
  bool background_recovery = true;  // false: only Start() and RecoverNow()
  // Two-phase binds committed as the last resource when a transaction has
  // none without 2PC (config: binds.<name>.last_resource). They hold
  // decision rows (txcoord_decisions) as well as prepared branches.
  std::set<std::string> last_resource_binds;
  // The journal's Retention::max_per_pass: a retention pass that deleted
  // this many is followed by another at the next step.
  int64_t retention_max_per_pass = journal::Retention().max_per_pass;
};

class Coordinator {
 public:
  // REQUIRES: "journal" and "clock" outlive this object.
  Coordinator(journal::Journal* journal,
              std::map<std::string, std::unique_ptr<participants::Participant>> binds,
              CoordinatorOptions options, Clock* clock);
  ~Coordinator();

  // Runs recovery (before serving) and starts the background pass.
  absl::Status Start();
  void Stop();

  bool HasBind(absl::string_view bind) const;
  // A two-phase bind configured as last resource (binds.<name>.last_resource).
  bool ConfiguredLastResource(absl::string_view bind) const {
    return options_.last_resource_binds.contains(std::string(bind));
  }
  std::vector<std::string> BindNames() const;
  participants::Participant* FindBind(absl::string_view bind) const;

  // A new transaction; `timeout` 0 means the configured default.
  // `identity`: who began it (a session's owner), for TransactionService
  // calls that name this transaction (AddBranch, RegisterBranch).
  // `idempotency_key`: RunTransaction's (identity "/" key), journaled with
  // the outcome, whatever it is, so that a retry finds it after a restart.
  std::unique_ptr<Transaction> Begin(std::string session_id,
                                     std::map<std::string, std::string> labels,
                                     absl::Duration timeout, std::string identity = "",
                                     std::string idempotency_key = "");
  // The transaction recorded with `idempotency_key` (see Begin), or nullopt.
  absl::StatusOr<std::optional<std::string>> FindIdempotencyKey(absl::string_view idempotency_key) {
    return journal_->FindIdempotencyKey(idempotency_key);
  }
  // Journal::ReserveIdempotencyKey for `txn` (begun with a key): the
  // transaction that already holds the key (on any node), or nullopt when
  // `txn` now holds it. When another holds it, `txn` lets the key go, so
  // that dropping it records nothing under the key.
  absl::StatusOr<std::optional<std::string>> ReserveIdempotencyKey(Transaction& txn);

  // Runs statements on `bind`, enlisting it on first use. A statement error
  // leaves the transaction failed. INVALID_ARGUMENT unknown bind or bad
  // statement; FAILED_PRECONDITION the transaction is not active or failed.
  absl::StatusOr<std::vector<participants::ResultSet>> Execute(
      Transaction& txn, absl::string_view bind,
      const std::vector<std::pair<std::string, std::vector<participants::Value>>>& statements,
      int max_rows);

  // RunTransaction's path: runs each bind's statements on its own thread
  // (all binds concurrently, each through Participant::RunBatch), enlisting
  // every bind. With more than one bind, each two-phase bind is also
  // prepared in that call, so Commit goes straight to the decision. Binds
  // must be distinct and not yet enlisted. Results in `work` order. On any
  // error the transaction is failed (only Rollback) and that error is
  // returned.
  using Statements = std::vector<std::pair<std::string, std::vector<participants::Value>>>;
  absl::StatusOr<std::vector<std::vector<participants::ResultSet>>> ExecuteOnBinds(
      Transaction& txn, const std::vector<std::pair<std::string, Statements>>& work, int max_rows);

  // RunTransaction whole: ExecuteOnBinds then Commit. A single bind runs
  // through Participant::RunAndCommit instead (PostgreSQL on libpqxx: BEGIN,
  // the statements and COMMIT in one round trip), with Commit's one-phase
  // outcomes. A failed statement rolls everything back: its error then
  // says so (INVALID_ARGUMENT and FAILED_PRECONDITION keep their code, any
  // other is ABORTED). Commit's errors are returned as they are.
  struct OneShot {
    std::vector<std::vector<participants::ResultSet>> results;  // in `work` order
    TxnState state;
  };
  absl::StatusOr<OneShot> RunOneShot(Transaction& txn, const std::vector<std::pair<std::string, Statements>>& work,
                                     int max_rows);

  // Global transactions of services that run their own SQL
  // (TransactionService). BeginGlobal mints one xid per bind (bind → the xid
  // in that bind's dialect: a PostgreSQL gid, or an XA literal); services
  // prepare under it and RegisterBranch; CommitGlobal checks every minted
  // branch is registered and really prepared on its database, then runs the
  // decision and phase 2 like any commit. Unfinished ones are rolled back
  // at their timeout.
  // `binds` may be empty (AddBranch and ExecuteGlobal add to it later).
  absl::StatusOr<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> BeginGlobal(
      const std::vector<std::string>& binds, absl::Duration timeout, std::map<std::string, std::string> labels,
      std::string owner);
  // Mints the xid of one more service branch, on `bind`, in an open global
  // transaction; asked again for the same bind, the same xid.
  absl::StatusOr<std::string> AddBranch(absl::string_view txn_id, absl::string_view bind, absl::string_view owner);
  // With `participant_address`: a callback participant (no bind); `xid` is
  // then its branch id, and txcoord calls its Prepare at CommitGlobal.
  // `read_only`: the service's branch wrote nothing and the service ended
  // it itself; it is left out of the decision.
  absl::Status RegisterBranch(absl::string_view txn_id, absl::string_view bind, absl::string_view xid,
                              absl::string_view owner, absl::string_view participant_address = "",
                              bool read_only = false);
  // Runs statements through txcoord in an open global transaction, on a
  // bind that is not one of its service branches (like a session's
  // Execute): the way to mix txcoord-run SQL, and a last-resource bind
  // without two-phase commit, with registered branches. One call at a time
  // per transaction: a concurrent call is FAILED_PRECONDITION.
  absl::StatusOr<std::vector<participants::ResultSet>> ExecuteGlobal(absl::string_view txn_id,
                                                                     absl::string_view owner,
                                                                     absl::string_view bind,
                                                                     const Statements& statements, int max_rows);
  // For a bind without two-phase commit that the service writes itself
  // (its last resource): checks every service branch is registered and
  // prepared (else ABORTED, everything rolled back), makes sure the
  // database's txcoord_decisions table exists, and returns the decision
  // row's payload. The service then inserts (txn_id, payload) into
  // txcoord_decisions in its own last-resource transaction and commits it:
  // that commit is the decision. CommitGlobal (or RollbackGlobal, or the
  // timeout) settles it with Participant::FenceDecision. Nothing but
  // CommitGlobal / RollbackGlobal is accepted afterwards.
  absl::StatusOr<std::string> PrepareGlobal(absl::string_view txn_id, absl::string_view owner,
                                            absl::string_view last_resource_bind);
  // A transaction no longer open answers with its outcome: CommitGlobal
  // ABORTED (why) or the committed info, RollbackGlobal the aborted info or
  // FAILED_PRECONDITION when it committed.
  absl::StatusOr<TxnInfo> CommitGlobal(absl::string_view txn_id, absl::string_view owner);
  absl::StatusOr<TxnInfo> RollbackGlobal(absl::string_view txn_id, absl::string_view owner);

  // Commits. OK with kCommitted, or kCommitting when the decision is durable
  // but some branch is still being finished in the background. ABORTED when
  // the transaction was rolled back (a no vote, an error, a timeout).
  absl::StatusOr<TxnState> Commit(Transaction& txn);
  Metrics& metrics() { return metrics_; }
  absl::Status Rollback(Transaction& txn, absl::string_view reason);

  // The outcome of a transaction of this node: live, in the journal, in the
  // recent-outcome cache, or presumed aborted (an id this node handed out
  // with no decision). NOT_FOUND for ids this node never handed out.
  absl::StatusOr<TxnInfo> GetTransaction(absl::string_view txn_id);

  RecoveryReport RecoverNow();
  // What Start()'s recovery pass did.
  RecoveryReport start_report() const { return start_report_; }

  // Admin. Live transactions, then unfinished decisions, then history,
  // newest first; the token pages through history.
  absl::StatusOr<std::pair<std::vector<TxnInfo>, std::string>> ListTransactions(
      const ListTransactionsFilter& filter);
  // Prepared branches on `binds` (empty: all), classified.
  absl::StatusOr<std::vector<InDoubtBranch>> ListInDoubt(const std::vector<std::string>& binds);
  // An operator's decision for an in-doubt transaction of this node:
  // journaled (fsynced) with who and why before it is applied. Refused with
  // FAILED_PRECONDITION when the journal (or a last resource) holds the
  // opposite decision, or while the transaction is live.
  absl::StatusOr<TxnInfo> Resolve(absl::string_view txn_id, bool commit,
                                  absl::string_view operator_identity, absl::string_view reason);
  int live_count() const;
  // Cancels the running statements of live transactions past their
  // deadline (their calls then fail and roll back). Returns how many.
  int CancelExpired();
  // Cancels the running statements of every live transaction still active
  // (a stop that cannot wait for them). Returns how many live transactions
  // it looked at.
  int CancelRunningStatements();
  CoordinatorStats stats() const;
  // OK, or why no commit decision is taken until txcoord restarts: a
  // decision write failed and could not be withdrawn, or another
  // coordinator took this node id on a bind whose claim was lost.
  absl::Status DecisionHealth() const;
  // DecisionHealth, then the journal's: OK, or why no two-phase commit can
  // be decided now (its decision log failed: until txcoord is restarted).
  absl::Status CommitHealth() const;
  uint64_t epoch() const { return journal_->epoch(); }
  const std::string& node_id() const { return options_.node_id; }
  journal::Journal* journal() const { return journal_; }

 private:
  friend class Transaction;
  // An open global transaction (TransactionService) and its owner.
  struct Global {
    std::string owner;
    std::unique_ptr<Transaction> txn;
    bool busy = false;  // an ExecuteGlobal is running on it
  };
  struct Pending {  // a decided transaction whose phase 2 is not done
    absl::Time next_attempt;
    absl::Duration backoff;
  };

  absl::StatusOr<TxnState> CommitProtocol(Transaction& txn);
  // Cancels the running statements of the live transactions `which` picks.
  int CancelRunningOf(const std::function<bool(const Transaction&)>& which);
  // END records of transactions committed in the foreground, written in
  // batches by end_thread_ so that a commit does not wait for the next
  // fsync group; each transaction stays in driving_ until its END is
  // written (recovery leaves it alone meanwhile). REQUIRES: `record` is a
  // decision this coordinator logged and never finished before (written
  // with Journal::MarkDecidedFinished).
  void QueueEnd(journal::DecisionRecord record);
  void EndLoop();
  // Removes finished transactions' decision rows from their last-resource
  // binds (`forgets`: bind → txn ids), after a journal sync has made their
  // END records durable: GetTransaction must still find them after a crash.
  void ForgetDecisions(absl::flat_hash_map<std::string, std::vector<std::string>>& forgets);
  // A bind whose txcoord_decisions table may hold this node's decisions:
  // every bind without 2PC, and every two-phase bind configured as last
  // resource.
  bool HoldsDecisions(const std::string& bind, const participants::Participant& p) const {
    return !p.capabilities().two_phase || ConfiguredLastResource(bind);
  }
  // The global transaction `txn_id` of `owner`, taken out of globals_ for
  // the caller (who puts it back or ends it). NOT_FOUND / PERMISSION_DENIED.
  absl::StatusOr<std::unique_ptr<Transaction>> TakeGlobal(absl::string_view txn_id, absl::string_view owner);
  // The open global transaction `txn_id` of `owner` (NOT_FOUND /
  // PERMISSION_DENIED / FAILED_PRECONDITION when not ACTIVE).
  // `allow_busy`: also while an ExecuteGlobal runs on it.
  absl::StatusOr<Global*> FindGlobal(absl::string_view txn_id, absl::string_view owner, bool allow_busy = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An open global transaction, or a session's live transaction, that
  // services may add branches to (NOT_FOUND / PERMISSION_DENIED /
  // FAILED_PRECONDITION as FindGlobal).
  absl::StatusOr<Transaction*> FindJoinable(absl::string_view txn_id, absl::string_view owner,
                                            bool allow_busy = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds a service branch on `bind` to `txn`; returns its xid as the
  // bind's dialect writes it.
  absl::StatusOr<std::string> AddExternalBranch(Transaction& txn, const std::string& bind);
  // Checks the service branches (registered, prepared on their database;
  // callback participants are asked to Prepare): marks them prepared or
  // read-only. ABORTED naming the first problem (nothing rolled back here).
  absl::Status VerifyServiceBranches(const std::vector<Transaction::Enlisted*>& external);
  void AbortExpiredGlobals();
  absl::Status LogDecisionTimed(const journal::DecisionRecord& record);
  std::string NextTxnId();
  void Unregister(const std::string& txn_id);
  void RememberOutcome(TxnInfo info);
  TxnInfo Describe(const Transaction& txn) const;
  // Rolls back every branch; the transaction ends ABORTED, or HEURISTIC
  // when `heuristic_bind` names a branch the database ended on its own
  // (recorded so in the journal's history).
  absl::Status AbortAll(Transaction& txn, const std::string& reason, const std::string& heuristic_bind = "");
  // A branch on `bind` was ended by the database behind txcoord's back
  // (participants::IsBranchEnded(cause)): its work may be committed. Rolls
  // back every other branch, records the transaction HEURISTIC and returns
  // FAILED_PRECONDITION saying so (never ABORTED: a retry could apply that
  // bind's work twice).
  absl::Status MarkHeuristic(Transaction& txn, const std::string& bind, const absl::Status& cause);
  // For a transaction with an idempotency key that ended without a
  // decision record (rolled back, or a one-phase commit whose outcome is
  // unknown): its outcome in the journal's history, so that a retry with
  // the key answers it instead of running the work again.
  void RecordKeyedOutcome(const Transaction& txn, const TxnInfo& info, journal::DecisionState state);
  absl::StatusOr<TxnState> CommitOnePhase(Transaction& txn, Transaction::Enlisted& only);
  // CommitOnePhase's bookkeeping once `only` committed one-phase (`s` OK),
  // failed its COMMIT, or lost its connection in it (`outcome_unknown`:
  // answered UNAVAILABLE, never "rolled back").
  absl::StatusOr<TxnState> FinishOnePhase(Transaction& txn, Transaction::Enlisted& only, const absl::Status& s,
                                          bool outcome_unknown);
  // A request's max_rows within the configured limit (0: the limit).
  int RowLimit(int max_rows) const {
    return max_rows <= 0 || max_rows > options_.max_rows ? options_.max_rows : max_rows;
  }
  // The checks of RunTransaction's work (binds known and distinct,
  // statements present and within limits, the transaction fresh and within
  // its timeout): one xid per entry, and how many binds lack 2PC.
  struct CheckedWork {
    std::vector<participants::Xid> xids;
    int last_resources = 0;
    absl::Time now;
  };
  absl::StatusOr<CheckedWork> CheckWork(Transaction& txn,
                                        const std::vector<std::pair<std::string, Statements>>& work);
  // Commit's metrics and log line for `result`, begun at `start`.
  void RecordCommit(const Transaction& txn, absl::Time start, const absl::StatusOr<TxnState>& result);
  // Drives phase 2 of `record` once; updates or finishes it in the journal.
  // `first_attempt`: the foreground attempt right after the decision.
  // `end_async`: a finished record's END is queued for the END writer (the
  // caller keeps the transaction in driving_) instead of written here.
  bool DrivePhase2(journal::DecisionRecord& record, bool first_attempt, bool end_async = false);
  void ScheduleRetry(const std::string& txn_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RecoveryReport RecoverPass(bool at_start);
  // One pass of the journal's retention; true when it left more to delete.
  bool CollectGarbage();
  // Claims this node id on every bind (Participant::ClaimNode) and updates
  // claimed_. At start a bind held by another session is an error (after
  // waiting a little for a previous process of this node to end); later it
  // halts decisions.
  absl::Status ClaimBinds(bool at_start);
  void BackgroundLoop();
  journal::DecisionRecord MakeDecision(const Transaction& txn,
                                       const std::vector<Transaction::Enlisted*>& prepared,
                                       Transaction::Enlisted* last_resource);
  static TxnInfo FromRecord(const journal::DecisionRecord& record);

  journal::Journal* const journal_;
  const std::map<std::string, std::unique_ptr<participants::Participant>> binds_;
  // Callback participants by address, made on first use (also by recovery
  // for journaled "callback:<address>" branches).
  mutable absl::Mutex callbacks_mu_;
  mutable absl::flat_hash_map<std::string, std::unique_ptr<participants::Participant>> callbacks_
      ABSL_GUARDED_BY(callbacks_mu_);
  const CoordinatorOptions options_;
  Clock* const clock_;
  std::atomic<uint64_t> next_seq_{1};

  mutable absl::Mutex mu_;
  // Transactions from Begin until their commit or rollback has returned.
  absl::flat_hash_map<std::string, Transaction*> live_ ABSL_GUARDED_BY(mu_);
  // Decided transactions whose phase 2 the foreground is driving right now.
  absl::flat_hash_set<std::string> driving_ ABSL_GUARDED_BY(mu_);
  // Set when a decision write failed and could not be withdrawn (the
  // journal's state is unknown until reopened), or when another coordinator
  // holds this node id on a bind: from then on no decision is taken.
  std::string halted_ ABSL_GUARDED_BY(mu_);
  RecoveryReport start_report_;  // written by Start() only
  // After a decision write whose outcome is not known: the branches stay
  // prepared (nothing rolls them back now) and GetTransaction answers
  // PREPARING with `why` until recovery settles the transaction.
  void LeaveUndecided(Transaction& txn, std::string why);
  // GetTransaction of another node's transaction (cluster journals).
  absl::StatusOr<TxnInfo> GetForeignTransaction(absl::string_view txn_id, const std::string& node, uint64_t epoch,
                                                uint64_t seq);
  // Transactions whose decision write went without reply, on a journal
  // that settles such writes (Journal::SettlesFailedDecisions): once it
  // has, recovery treats their prepared branches without a decision as
  // orphans at once. Dropped when no branch of theirs is prepared.
  absl::flat_hash_set<std::string> settling_ ABSL_GUARDED_BY(mu_);
  // Binds whose ClaimNode holds (or that have no such lock): only on these
  // does recovery treat prepared branches of this node as its own.
  absl::flat_hash_set<std::string> claimed_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  // Prepared branches of this node first seen (when the database does not
  // say when they were prepared), for the orphan safety interval.
  absl::flat_hash_map<std::string, absl::Time> first_seen_ ABSL_GUARDED_BY(mu_);
  // Outcomes of recent transactions that the journal does not hold.
  absl::flat_hash_map<std::string, TxnInfo> recent_ ABSL_GUARDED_BY(mu_);
  // Open global transactions (TransactionService) and their owners.
  absl::flat_hash_map<std::string, Global> globals_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> recent_order_ ABSL_GUARDED_BY(mu_);
  CoordinatorStats stats_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex recovery_mu_;  // one recovery pass at a time
  Metrics metrics_;
  std::thread background_;
  absl::Mutex end_mu_;
  std::vector<journal::DecisionRecord> ends_ ABSL_GUARDED_BY(end_mu_);
  bool end_stop_ ABSL_GUARDED_BY(end_mu_) = false;
  std::thread end_thread_;
};

// Maps a participant's error in phase 1 to what the client sees: the
// transaction was rolled back, so ABORTED, naming the bind and the cause.
absl::Status AbortedBecause(absl::string_view txn_id, const absl::Status& cause);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_COORDINATOR_H_
