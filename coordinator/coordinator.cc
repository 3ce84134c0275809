#include "coordinator/coordinator.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/logging.h"
#include "coordinator/parallel.h"
#include "participants/callback/callback_participant.h"
#include "participants/statement_guard.h"
#include "participants/xid.h"
#include "util/failpoint.h"
#include "util/fiber.h"
#include "util/status_macros.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {

using participants::CallbackParticipant;
using participants::kCallbackPrefix;

using internal::BranchStateName;
using internal::CollectedBefore;
using internal::ParseTxnId;
using internal::XidOf;

namespace {

using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;


class SystemClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
};

}  // namespace

Clock* RealClock() {
  static SystemClock clock;
  return &clock;
}

const char* TxnStateName(TxnState s) {
  switch (s) {
    case TxnState::kActive: return "ACTIVE";
    case TxnState::kPreparing: return "PREPARING";
    case TxnState::kCommitting: return "COMMITTING";
    case TxnState::kCommitted: return "COMMITTED";
    case TxnState::kAborting: return "ABORTING";
    case TxnState::kAborted: return "ABORTED";
    case TxnState::kHeuristic: return "HEURISTIC";
  }
  return "UNKNOWN";
}

absl::Status AbortedBecause(absl::string_view txn_id, const absl::Status& cause) {
  return absl::AbortedError(absl::StrCat("transaction ", txn_id, " was rolled back: ",
                                         cause.message()));
}

// ---------------------------------------------------------------- Transaction

Transaction::Transaction(Coordinator* owner, std::string id, std::string session_id,
                         std::map<std::string, std::string> labels, absl::Time started,
                         absl::Time deadline)
    : owner_(owner),
      id_(std::move(id)),
      session_id_(std::move(session_id)),
      labels_(std::move(labels)),
      started_(started),
      deadline_(deadline) {}

Transaction::~Transaction() {
  // A transaction dropped while active (its session closed or expired) is
  // rolled back: nothing stays locked.
  TxnState s = state();
  if (s == TxnState::kActive || s == TxnState::kPreparing) {
    (void)owner_->Rollback(*this, "the session ended with the transaction open");
  }
  owner_->Unregister(id_);
  // No cancel starts after Unregister; wait for one still running (rare:
  // network cancels run on threads of their own, Branch::Cancel only
  // hands them over, except SQLCancel on ODBC dialects without CancelSql).
  while (cancels_in_flight_.load(std::memory_order_acquire) != 0) util::Sleep(absl::Milliseconds(1));
}

TxnState Transaction::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void Transaction::CancelRunning() {
  absl::MutexLock lock(&mu_);
  // Branches are only released after the state leaves ACTIVE (under mu_),
  // so every branch seen here is alive.
  if (state_ != TxnState::kActive) return;
  for (auto& e : branches_) {
    if (e->branch) e->branch->Cancel();
  }
}

void Transaction::Fail(std::string why) {
  absl::MutexLock lock(&mu_);
  if (failure_.empty()) failure_ = std::move(why);
}

// ---------------------------------------------------------------- Coordinator

Coordinator::Coordinator(journal::Journal* journal,
                         std::map<std::string, std::unique_ptr<Participant>> binds,
                         CoordinatorOptions options, Clock* clock)
    : journal_(journal), binds_(std::move(binds)), options_(std::move(options)), clock_(clock) {
  metrics_.DescribeCounter("txcoord_transactions_total",
                           "Transactions ended, by outcome (committed, aborted, failed).");
  metrics_.DescribeHistogram("txcoord_commit_duration_seconds",
                             "Commit call latency, from the Commit request to its answer.",
                             {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  metrics_.DescribeCounter("txcoord_prepares_total", "PREPARE calls by bind and vote (prepared, read_only, failed).");
  metrics_.DescribeCounter("txcoord_phase2_retries_total", "Phase-2 passes repeated after a branch failed.");
  metrics_.DescribeCounter("txcoord_heuristic_hazards_total",
                           "Branches not found on their first COMMIT PREPARED (someone else ended them).");
  metrics_.DescribeCounter("txcoord_branches_ended_by_statement_total",
                           "Branches whose transaction the database ended on a statement's request while txcoord "
                           "held it open (their transaction is HEURISTIC).");
  metrics_.DescribeHistogram("txcoord_journal_write_duration_seconds",
                             "Durable decision write latency (LogDecision, fsync included).",
                             {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5});
  metrics_.DescribeHistogram("txcoord_branch_step_duration_seconds",
                             "Time of one step on one branch, by bind and step: work (statements, and PREPARE "
                             "when sent with them), prepare, commit, rollback (phase 2).",
                             {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5});
  metrics_.RegisterGauge("txcoord_in_doubt_transactions",
                         "Decided transactions whose phase 2 waits for a retry.", [this] {
                           absl::MutexLock lock(&mu_);
                           return std::vector<std::pair<Labels, double>>{{{}, double(pending_.size())}};
                         });
  metrics_.RegisterGauge("txcoord_orphan_branches",
                         "Prepared branches of this node without a decision, waiting for the orphan safety interval.",
                         [this] {
                           absl::MutexLock lock(&mu_);
                           return std::vector<std::pair<Labels, double>>{{{}, double(first_seen_.size())}};
                         });
  metrics_.RegisterGauge("txcoord_decisions_halted",
                         "1 while no commit decision is taken: until a restart (a journal write that failed, "
                         "this node id claimed by another coordinator, a lost etcd lease), or until the etcd "
                         "journal settles a decision write that went without reply.",
                         [this] {
                           return std::vector<std::pair<Labels, double>>{{{}, CommitHealth().ok() ? 0.0 : 1.0}};
                         });
  // The journal's group commit: decisions / groups is how many decisions
  // shared one fsync; each lap of the decision log syncs RocksDB's WAL.
  auto journal_counter = [this](uint64_t journal::JournalStats::*field) {
    return [this, field] {
      return std::vector<std::pair<Labels, double>>{{{}, double(journal_->Stats().*field)}};
    };
  };
  metrics_.RegisterCounterFn("txcoord_journal_decision_groups_total",
                             "Groups of commit decisions made durable, one fsync each.",
                             journal_counter(&journal::JournalStats::decision_groups));
  metrics_.RegisterCounterFn("txcoord_journal_decisions_total",
                             "Commit decisions made durable (in those groups).",
                             journal_counter(&journal::JournalStats::decisions));
  metrics_.RegisterCounterFn("txcoord_journal_decision_log_laps_total",
                             "Laps of the decision log begun because it was full (each waits for a sync of "
                             "RocksDB's write-ahead log).",
                             journal_counter(&journal::JournalStats::decision_log_laps));
  metrics_.RegisterGauge("txcoord_journal_history_records",
                         "Finished transactions kept in the journal's history (journal.retention bounds it).",
                         [this] {
                           return std::vector<std::pair<Labels, double>>{{{}, double(journal_->finished_count())}};
                         });
  metrics_.DescribeCounter("txcoord_journal_history_collected_total",
                           "History records deleted by the journal's retention (journal.retention).");
  metrics_.RegisterGauge("txcoord_live_transactions", "Transactions open or committing now.", [this] {
    return std::vector<std::pair<Labels, double>>{{{}, double(live_count())}};
  });
  metrics_.RegisterGauge("txcoord_pool_connections", "Connections per bind: size (limit), open, in_use.", [this] {
    std::vector<std::pair<Labels, double>> out;
    for (const auto& [name, p] : binds_) {
      participants::PoolStats s = p->pool_stats();
      out.push_back({{{"bind", name}, {"state", "size"}}, double(s.size)});
      out.push_back({{{"bind", name}, {"state", "open"}}, double(s.open)});
      out.push_back({{{"bind", name}, {"state", "in_use"}}, double(s.in_use)});
    }
    return out;
  });
}

absl::Status Coordinator::Start() {
  TXC_RETURN_IF_ERROR(ClaimBinds(/*at_start=*/true));
  start_report_ = RecoverPass(/*at_start=*/true);
  // The decision table of every last-resource bind, made now rather than
  // at a service's PrepareGlobal: by then the service's own transaction may
  // hold a lock that DDL waits for (SQLite locks the whole file). Best
  // effort: PrepareGlobal tries again.
  for (const auto& [name, p] : binds_) {
    if (!HoldsDecisions(name, *p)) continue;
    if (absl::Status s = p->EnsureDecisionTable(); !s.ok()) {
      Log(spdlog::level::warn, "", absl::StrCat("bind \"", name, "\": txcoord_decisions not created yet: ", s.message()));
    }
  }
  if (options_.background_recovery) {
    background_ = std::thread([this] {
      util::NameThisThread("txc-expiry");
      BackgroundLoop();
    });
  }
  return absl::OkStatus();
}

void Coordinator::Stop() {
  std::vector<std::unique_ptr<Transaction>> globals;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, g] : globals_) globals.push_back(std::move(g.txn));
    globals_.clear();
  }
  globals.clear();  // open global transactions are rolled back
  if (background_.joinable()) background_.join();
  {
    absl::MutexLock lock(&end_mu_);
    end_stop_ = true;
  }
  if (end_thread_.joinable()) end_thread_.join();  // after writing every queued END
}

bool Coordinator::HasBind(absl::string_view bind) const {
  return binds_.count(std::string(bind)) > 0;  // callback participants are not binds
}

std::vector<std::string> Coordinator::BindNames() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : binds_) out.push_back(name);
  return out;
}

Participant* Coordinator::FindBind(absl::string_view bind) const {
  auto it = binds_.find(std::string(bind));
  if (it != binds_.end()) return it->second.get();
  if (absl::StartsWith(bind, kCallbackPrefix) && bind.size() > kCallbackPrefix.size()) {
    absl::MutexLock lock(&callbacks_mu_);
    auto& p = callbacks_[bind];
    if (!p) p = std::make_unique<CallbackParticipant>(std::string(bind.substr(kCallbackPrefix.size())));
    return p.get();
  }
  return nullptr;
}

std::string Coordinator::NextTxnId() {
  return absl::StrCat(options_.node_id, ".", journal_->epoch(), ".", next_seq_.fetch_add(1));
}

std::unique_ptr<Transaction> Coordinator::Begin(std::string session_id,
                                                std::map<std::string, std::string> labels,
                                                absl::Duration timeout, std::string identity,
                                                std::string idempotency_key) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.timeouts.transaction;
  absl::Time now = clock_->Now();
  auto txn = std::unique_ptr<Transaction>(new Transaction(
      this, NextTxnId(), std::move(session_id), std::move(labels), now, now + timeout));
  txn->identity_ = std::move(identity);
  txn->idempotency_key_ = std::move(idempotency_key);
  absl::MutexLock lock(&mu_);
  live_[txn->id()] = txn.get();
  return txn;
}

absl::StatusOr<std::optional<std::string>> Coordinator::ReserveIdempotencyKey(Transaction& txn) {
  absl::StatusOr<std::optional<std::string>> holder = journal_->ReserveIdempotencyKey(txn.idempotency_key_, txn.id_);
  // Read only by the thread that runs the transaction (this one).
  if (holder.ok() && holder->has_value()) txn.idempotency_key_.clear();
  return holder;
}

void Coordinator::LeaveUndecided(Transaction& txn, std::string why) {
  {
    // Not ACTIVE or PREPARING: nothing rolls these branches back now.
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = TxnState::kAborting;
  }
  TxnInfo undecided = Describe(txn);
  undecided.state = TxnState::kPreparing;
  undecided.abort_reason = std::move(why);
  RememberOutcome(std::move(undecided));
}

void Coordinator::Unregister(const std::string& txn_id) {
  absl::MutexLock lock(&mu_);
  live_.erase(txn_id);
}

void Coordinator::RememberOutcome(TxnInfo info) {
  absl::MutexLock lock(&mu_);
  if (info.state == TxnState::kCommitted) ++stats_.committed;
  if (info.state == TxnState::kAborted) ++stats_.aborted;
  std::string id = info.txn_id;
  if (recent_.insert_or_assign(id, std::move(info)).second) recent_order_.push_back(id);
  while (recent_order_.size() > static_cast<size_t>(options_.recent_outcomes)) {
    recent_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
}

TxnInfo Coordinator::Describe(const Transaction& txn) const {
  TxnInfo info;
  info.txn_id = txn.id_;
  info.session_id = txn.session_id_;
  info.labels = txn.labels_;
  info.started_at = txn.started_;
  absl::MutexLock lock(&txn.mu_);
  info.state = txn.state_;
  info.abort_reason = txn.failure_;
  for (const auto& e : txn.branches_) {
    BranchInfo b;
    b.bind = e->bind;
    b.xid = participants::XidToString(e->xid);
    b.state = e->read_only ? "read_only" : e->prepared ? "prepared" : "active";
    b.last_resource = !e->two_phase;
    info.branches.push_back(std::move(b));
  }
  return info;
}

absl::StatusOr<TxnState> Coordinator::CommitOnePhase(Transaction& txn,
                                                     Transaction::Enlisted& only) {
  absl::Status s = only.branch->CommitOnePhase();
  only.branch.reset();
  return FinishOnePhase(txn, only, s, /*outcome_unknown=*/s.code() == absl::StatusCode::kUnavailable);
}

absl::StatusOr<TxnState> Coordinator::FinishOnePhase(Transaction& txn, Transaction::Enlisted& only,
                                                     const absl::Status& s, bool outcome_unknown) {
  if (!s.ok()) {
    {
      absl::MutexLock lock(&txn.mu_);
      // An unknown outcome is never reported as rolled back.
      txn.state_ = outcome_unknown ? TxnState::kHeuristic : TxnState::kAborted;
      txn.failure_ = std::string(s.message());
    }
    TxnInfo info = Describe(txn);
    info.finished_at = clock_->Now();
    RecordKeyedOutcome(txn, info, outcome_unknown ? journal::HEURISTIC_HAZARD : journal::ROLLED_BACK);
    RememberOutcome(std::move(info));
    if (outcome_unknown) {
      return absl::UnavailableError(absl::StrCat(
          "transaction ", txn.id_, ": the connection to bind \"", only.bind,
          "\" broke during its one-phase COMMIT; the outcome is unknown to txcoord: ",
          s.message()));
    }
    return AbortedBecause(txn.id_, s);
  }
  {
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = TxnState::kCommitted;
  }
  TxnInfo info = Describe(txn);
  info.finished_at = info.decided_at = clock_->Now();
  // Kept in the journal's history (not synced: see docs/design.md) so that
  // GetTransaction answers after a restart too.
  DecisionRecord record;
  record.set_txn_id(txn.id_);
  record.set_state(journal::COMMITTED);
  record.set_session_id(txn.session_id_);
  record.set_started_at_unix_micros(absl::ToUnixMicros(txn.started_));
  record.set_decided_at_unix_micros(absl::ToUnixMicros(info.decided_at));
  record.set_finished_at_unix_micros(absl::ToUnixMicros(info.finished_at));
  record.set_idempotency_key(txn.idempotency_key_);
  for (const auto& [k, v] : txn.labels_) (*record.mutable_labels())[k] = v;
  BranchRecord* b = record.add_branches();
  b->set_bind(only.bind);
  b->set_format_id(only.xid.format_id);
  b->set_gtrid(only.xid.gtrid);
  b->set_bqual(only.xid.bqual);
  b->set_state(journal::BRANCH_COMMITTED);
  b->set_last_resource(!only.two_phase);
  // A fresh id the journal never saw: no read of its history first.
  (void)journal_->RecordFinished(record);
  RememberOutcome(std::move(info));
  return TxnState::kCommitted;
}

DecisionRecord Coordinator::MakeDecision(const Transaction& txn,
                                         const std::vector<Transaction::Enlisted*>& prepared,
                                         Transaction::Enlisted* last_resource) {
  DecisionRecord record;
  record.set_txn_id(txn.id_);
  record.set_state(journal::COMMITTING);
  record.set_session_id(txn.session_id_);
  record.set_started_at_unix_micros(absl::ToUnixMicros(txn.started_));
  record.set_decided_at_unix_micros(absl::ToUnixMicros(clock_->Now()));
  record.set_idempotency_key(txn.idempotency_key_);
  for (const auto& [k, v] : txn.labels_) (*record.mutable_labels())[k] = v;
  for (Transaction::Enlisted* e : prepared) {
    BranchRecord* b = record.add_branches();
    b->set_bind(e->bind);
    b->set_format_id(e->xid.format_id);
    b->set_gtrid(e->xid.gtrid);
    b->set_bqual(e->xid.bqual);
    b->set_state(journal::BRANCH_PREPARED);
  }
  if (last_resource != nullptr) {
    BranchRecord* b = record.add_branches();
    b->set_bind(last_resource->bind);
    b->set_format_id(last_resource->xid.format_id);
    b->set_gtrid(last_resource->xid.gtrid);
    b->set_bqual(last_resource->xid.bqual);
    b->set_state(journal::BRANCH_COMMITTED);
    b->set_last_resource(true);
  }
  return record;
}

absl::StatusOr<TxnState> Coordinator::Commit(Transaction& txn) {
  absl::Time start = absl::Now();
  absl::StatusOr<TxnState> result = CommitProtocol(txn);
  RecordCommit(txn, start, result);
  return result;
}

void Coordinator::RecordCommit(const Transaction& txn, absl::Time start, const absl::StatusOr<TxnState>& result) {
  metrics_.Observe("txcoord_commit_duration_seconds", absl::Now() - start);
  const char* outcome = result.ok() ? "committed"
                        : result.status().code() == absl::StatusCode::kAborted ? "aborted"
                                                                               : "failed";
  metrics_.Increment("txcoord_transactions_total", {{"outcome", outcome}});
  if (result.ok()) {
    Log(spdlog::level::debug, txn.id(), absl::StrCat("commit: ", TxnStateName(*result)));
  } else {
    Log(spdlog::level::info, txn.id(), absl::StrCat("commit: ", result.status().ToString()));
  }
}

absl::StatusOr<TxnState> Coordinator::CommitProtocol(Transaction& txn) {
  std::vector<Transaction::Enlisted*> branches;
  bool service_lr = false;
  {
    absl::MutexLock lock(&txn.mu_);
    if (txn.state_ == TxnState::kCommitted || txn.state_ == TxnState::kCommitting) {
      return txn.state_;  // a retried Commit: the recorded outcome
    }
    if (txn.state_ == TxnState::kAborted) {
      // Rolled back already (a failed statement, a timeout): the first error.
      return absl::AbortedError(absl::StrCat("transaction ", txn.id_, " was rolled back",
                                             txn.failure_.empty() ? "" : ": ", txn.failure_));
    }
    if (txn.state_ != TxnState::kActive && !(txn.state_ == TxnState::kPreparing && txn.service_lr_pending_)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn.id_, " is ", TxnStateName(txn.state_), ": it cannot commit"));
    }
    if (!txn.failure_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn.id_, " failed (", txn.failure_, "): only Rollback is accepted"));
    }
    for (auto& e : txn.branches_) branches.push_back(e.get());
    txn.state_ = TxnState::kPreparing;
    service_lr = txn.service_lr_pending_;
  }
  // With a service's last resource the service may have committed: only
  // the fence below decides, never the clock.
  if (!service_lr && clock_->Now() >= txn.deadline_) {
    (void)AbortAll(txn, "transaction timeout before commit");
    return absl::AbortedError(absl::StrCat("transaction ", txn.id_,
                                           " exceeded its timeout and was rolled back"));
  }
  if (branches.empty()) {
    {
      absl::MutexLock lock(&txn.mu_);
      txn.state_ = TxnState::kCommitted;
    }
    TxnInfo info = Describe(txn);
    RememberOutcome(std::move(info));
    return TxnState::kCommitted;
  }
  if (branches.size() == 1 && !branches[0]->external) return CommitOnePhase(txn, *branches[0]);

  // Phase 1: PREPARE every two-phase branch in parallel.
  Transaction::Enlisted* last_resource = nullptr;
  std::vector<Transaction::Enlisted*> two_phase;
  std::vector<Transaction::Enlisted*> external;
  for (auto* e : branches) {
    if (e->service_lr) last_resource = e;
    else if (e->external) external.push_back(e);
    else if (e->two_phase) two_phase.push_back(e);
    else last_resource = e;
  }
  if (last_resource == nullptr) {
    // No bind without 2PC: the first one configured as last resource takes
    // the role (ExecuteOnBinds chose it already for RunTransaction).
    for (auto it = two_phase.begin(); it != two_phase.end(); ++it) {
      Transaction::Enlisted* e = *it;
      if (e->prepared || e->read_only || e->callback || !ConfiguredLastResource(e->bind)) continue;
      {
        absl::MutexLock lock(&txn.mu_);
        e->two_phase = false;
      }
      last_resource = e;
      two_phase.erase(it);
      break;
    }
  }
  // Branches services prepared themselves: each must be registered and
  // really prepared on its database before any decision (PrepareGlobal may
  // have checked them already).
  if (absl::Status problem = VerifyServiceBranches(external); !problem.ok()) {
    std::string reason(problem.message());
    (void)AbortAll(txn, reason);
    return absl::AbortedError(absl::StrCat("transaction ", txn.id_, " was rolled back: ", reason));
  }
  TXC_FAILPOINT("commit.before_prepare");
  std::vector<absl::Status> votes(two_phase.size());
  // Branches prepared with their statements (RunTransaction) are skipped
  // here, so that a transaction with nothing left to prepare wakes no
  // branch worker.
  std::vector<size_t> unprepared;
  for (size_t i = 0; i < two_phase.size(); ++i) {
    if (!two_phase[i]->prepared && !two_phase[i]->read_only) unprepared.push_back(i);
  }
  RunParallel(unprepared.size(), [&](size_t k) {
    const size_t i = unprepared[k];
    Transaction::Enlisted* e = two_phase[i];
    const absl::Time step_start = absl::Now();
    absl::StatusOr<participants::Vote> vote = e->branch->Prepare();
    metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_start,
                     {{"bind", e->bind}, {"step", "prepare"}});
    metrics_.Increment("txcoord_prepares_total",
                       {{"bind", e->bind},
                        {"vote", !vote.ok() ? "failed"
                                 : *vote == participants::Vote::kReadOnly ? "read_only"
                                                                           : "prepared"}});
    if (!vote.ok()) {
      votes[i] = vote.status();
      return;
    }
    if (*vote == participants::Vote::kReadOnly) {
      e->read_only = true;
    } else {
      e->prepared = true;
    }
    e->branch.reset();  // ended on this connection: back to the pool
    TXC_FAILPOINT("commit.after_prepare");
  });
  for (size_t i = 0; i < votes.size(); ++i) {
    if (participants::IsBranchEnded(votes[i])) return MarkHeuristic(txn, two_phase[i]->bind, votes[i]);
  }
  for (size_t i = 0; i < votes.size(); ++i) {
    if (!votes[i].ok()) {
      std::string reason = absl::StrCat("PREPARE on bind \"", two_phase[i]->bind,
                                        "\" failed: ", votes[i].message());
      (void)AbortAll(txn, reason);
      return absl::AbortedError(absl::StrCat("transaction ", txn.id_,
                                             " was rolled back: ", reason));
    }
  }
  std::vector<Transaction::Enlisted*> prepared;
  for (auto* e : external) {
    if (!e->read_only) prepared.push_back(e);
  }
  for (auto* e : two_phase) {
    if (e->prepared) prepared.push_back(e);
  }
  if (!service_lr && clock_->Now() >= txn.deadline_) {
    (void)AbortAll(txn, "transaction timeout during prepare");
    return absl::AbortedError(absl::StrCat("transaction ", txn.id_,
                                           " exceeded its timeout and was rolled back"));
  }
  if (prepared.empty() && !service_lr) {
    // Every two-phase branch was read-only: at most the last resource writes.
    if (last_resource != nullptr) return CommitOnePhase(txn, *last_resource);
    {
      absl::MutexLock lock(&txn.mu_);
      txn.state_ = TxnState::kCommitted;
    }
    RememberOutcome(Describe(txn));
    return TxnState::kCommitted;
  }

  // The decision.
  if (absl::Status halted = CommitHealth(); !halted.ok()) {
    // Nothing of this transaction is in the journal: rolling back is safe.
    (void)AbortAll(txn, std::string(halted.message()));
    return absl::UnavailableError(absl::StrCat("transaction ", txn.id_, " was rolled back: ", halted.message()));
  }
  DecisionRecord record = MakeDecision(txn, prepared, last_resource);
  {
    absl::MutexLock lock(&mu_);
    driving_.insert(txn.id_);
  }
  TXC_FAILPOINT("commit.before_decision_logged");
  if (last_resource != nullptr) {
    // Logging last resource: its local COMMIT with the decision row is the
    // decision. Then the journal records it (fsynced) for phase 2.
    absl::Status s;
    if (service_lr) {
      // The service committed its decision row, or not: the fence tells,
      // and makes sure it cannot happen later.
      absl::StatusOr<bool> fenced = last_resource->participant->FenceDecision(txn.id_);
      if (!fenced.ok()) {
        s = absl::UnavailableError(fenced.status().message());
      } else if (*fenced) {
        s = absl::AbortedError("the service did not commit its decision row in its last-resource transaction");
      }
    } else {
      std::string payload = absl::BytesToHexString(record.SerializeAsString());
      const absl::Time step_start = absl::Now();
      s = last_resource->branch->CommitAsLastResource(txn.id_, payload);
      metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_start,
                       {{"bind", last_resource->bind}, {"step", "commit"}});
      last_resource->branch.reset();
    }
    if (!s.ok()) {
      // Not committed, or unknown (connection lost in COMMIT): in the latter
      // case recovery reads txcoord_decisions before touching the branches.
      bool unknown = s.code() == absl::StatusCode::kUnavailable;
      {
        absl::MutexLock lock(&mu_);
        driving_.erase(txn.id_);
      }
      if (unknown) {
        absl::MutexLock lock(&txn.mu_);
        txn.state_ = TxnState::kAborting;
        return absl::UnavailableError(absl::StrCat(
            "transaction ", txn.id_, ": the last-resource bind \"", last_resource->bind,
            service_lr ? "\" could not be read to learn whether the service committed its decision row, so the "
                         "outcome is not known yet; recovery settles it "
                       : "\" failed during its COMMIT, so the outcome is not known yet; recovery settles it "
            "from that database's txcoord_decisions table (ask GetTransaction later): ",
            s.message()));
      }
      std::string reason = absl::StrCat(service_lr ? "the service's last resource on bind \"" : "last-resource COMMIT on bind \"",
                                        last_resource->bind, "\" failed: ", s.message());
      (void)AbortAll(txn, reason);
      return absl::AbortedError(absl::StrCat("transaction ", txn.id_,
                                             " was rolled back: ", reason));
    }
    TXC_FAILPOINT("commit.after_last_resource_committed");
    // The decision is durable in the last resource: the journal's copy need
    // not be synced (nor even written). Recovery finds the decision row if it
    // is lost, and the row is removed only after a journal sync made the
    // END durable (EndLoop).
    (void)journal_->UpdateDecision(record);
  } else {
    absl::Status s = LogDecisionTimed(record);
    if (journal::IsDecisionNotWritten(s)) {
      // Certainly not written (the journal refused it before sending, or
      // the store refused it): presumed abort applies at once.
      {
        absl::MutexLock lock(&mu_);
        driving_.erase(txn.id_);
      }
      std::string reason = absl::StrCat("the commit decision could not be recorded: ", s.message());
      (void)AbortAll(txn, reason);
      return absl::UnavailableError(absl::StrCat("transaction ", txn.id_, " was rolled back, nothing committed: ",
                                                 reason));
    }
    if (!s.ok() && journal_->SettlesFailedDecisions()) {
      // Unknown, and the journal settles it by itself (etcd): decisions
      // stop until it has; then recovery finds the decision, or rolls the
      // branches back (the decision can no longer be written).
      {
        absl::MutexLock lock(&mu_);
        driving_.erase(txn.id_);
        settling_.insert(txn.id_);
      }
      Log(spdlog::level::err, txn.id_,
          absl::StrCat("decision write without reply (", s.message(), "): the branches stay prepared until the "
                       "journal settles the write, then recovery commits or rolls them back"));
      LeaveUndecided(txn, absl::StrCat("outcome unknown until the journal answers again: ", s.message()));
      return absl::UnavailableError(absl::StrCat(
          "transaction ", txn.id_, ": the journal did not confirm its commit decision (", s.message(),
          "), so its outcome is not known yet: its branches stay prepared and recovery settles them once the "
          "journal answers (commit if it holds the decision, else roll back); ask GetTransaction then"));
    }
    if (!s.ok()) {
      // Fail-stop. The record may have reached the log all the same (an
      // fsync can fail after the write, and what a failed fsync left on
      // disk cannot be known): neither committing nor rolling back is safe.
      // The branches stay prepared, no further decision is taken and no
      // recovery pass runs until txcoord is restarted; the next start reads
      // what the log holds and settles the journal and the branches alike
      // (commit if the decision is there, roll back if not).
      {
        absl::MutexLock lock(&mu_);
        driving_.erase(txn.id_);
        if (halted_.empty()) {
          halted_ = absl::StrCat("the journal failed while recording a commit decision (", s.message(),
                                 "): txcoord takes no commit decision until it is restarted");
        }
      }
      Log(spdlog::level::critical, txn.id_,
          absl::StrCat("decision write failed (", s.message(), "): the branches stay prepared; the next start "
                       "commits them if the journal holds the decision, else rolls them back. No commit decision "
                       "is taken until txcoord is restarted."));
      LeaveUndecided(txn, absl::StrCat("outcome unknown until txcoord is restarted: ", s.message()));
      return absl::UnavailableError(absl::StrCat(
          "transaction ", txn.id_, ": the journal failed while recording its commit decision (", s.message(),
          "), so its outcome is not known yet: its branches stay prepared and txcoord decides when it is "
          "restarted (commit if the journal holds the decision, else roll back); ask GetTransaction then"));
    }
  }
  Log(spdlog::level::debug, txn.id_, "decision COMMIT is durable");
  TXC_FAILPOINT("commit.after_decision_logged");
  {
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = TxnState::kCommitting;
  }
  // Phase 2.
  bool finished = DrivePhase2(record, /*first_attempt=*/true, /*end_async=*/true);
  TxnState result = finished ? TxnState::kCommitted : TxnState::kCommitting;
  {
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = result;
  }
  if (!finished) {
    absl::MutexLock lock(&mu_);
    driving_.erase(txn.id_);
    ScheduleRetry(txn.id_);
  }  // finished: the END writer takes it out of driving_ once the END is written
  if (finished) {
    TxnInfo info = FromRecord(record);
    RememberOutcome(std::move(info));
    // A last resource's decision row goes once the END is durable (EndLoop).
  }
  return result;
}

}  // namespace txcoord::coordinator
