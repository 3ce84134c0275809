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
#include "coordinator/callback_participant.h"
#include "coordinator/logging.h"
#include "coordinator/parallel.h"
#include "participants/statement_guard.h"
#include "participants/xid.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::coordinator {
namespace {

using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;


class SystemClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
};

// Parses "<node>.<epoch>.<seq>".
bool ParseTxnId(absl::string_view id, std::string* node, uint64_t* epoch, uint64_t* seq) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '.');
  if (parts.size() != 3) return false;
  *node = std::string(parts[0]);
  return absl::SimpleAtoi(parts[1], epoch) && absl::SimpleAtoi(parts[2], seq);
}

// True when (epoch, seq) is at or before the journal's collected marker:
// the id of this node's newest transaction whose history record the
// retention deleted ("" for none).
bool CollectedBefore(uint64_t epoch, uint64_t seq, absl::string_view marker) {
  std::string node;
  uint64_t me = 0, ms = 0;
  if (!ParseTxnId(marker, &node, &me, &ms)) return false;
  return epoch < me || (epoch == me && seq <= ms);
}

std::string BranchStateName(journal::BranchState s) {
  switch (s) {
    case journal::BRANCH_PREPARED: return "prepared";
    case journal::BRANCH_COMMITTED: return "committed";
    case journal::BRANCH_ROLLED_BACK: return "rolled_back";
    case journal::BRANCH_HEURISTIC_HAZARD: return "heuristic_hazard";
    case journal::BRANCH_READ_ONLY: return "read_only";
    default: return "unknown";
  }
}

participants::Xid XidOf(const BranchRecord& b) {
  participants::Xid x;
  x.format_id = b.format_id();
  x.gtrid = b.gtrid();
  x.bqual = b.bqual();
  return x;
}

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
  while (cancels_in_flight_.load(std::memory_order_acquire) != 0) absl::SleepFor(absl::Milliseconds(1));
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
                         "1 while no commit decision is taken until a restart (a journal write that failed and "
                         "could not be withdrawn, or this node id claimed by another coordinator).",
                         [this] {
                           absl::MutexLock lock(&mu_);
                           return std::vector<std::pair<Labels, double>>{{{}, halted_.empty() ? 0.0 : 1.0}};
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

absl::Status Coordinator::LogDecisionTimed(const DecisionRecord& record) {
  absl::Time start = absl::Now();
  absl::Status s = journal_->LogDecision(record);
  metrics_.Observe("txcoord_journal_write_duration_seconds", absl::Now() - start);
  return s;
}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::QueueEnd(journal::DecisionRecord record) {
  absl::MutexLock lock(&end_mu_);
  if (!end_thread_.joinable()) end_thread_ = std::thread([this] { EndLoop(); });
  ends_.push_back(std::move(record));
}

void Coordinator::EndLoop() {
  // Decision rows of finished transactions, by last-resource bind: removed
  // at most every 100 ms, all with one journal sync and one DELETE per bind.
  constexpr absl::Duration kForgetEvery = absl::Milliseconds(100);
  absl::flat_hash_map<std::string, std::vector<std::string>> forgets;
  absl::Time forget_due = absl::InfiniteFuture();
  for (;;) {
    std::vector<journal::DecisionRecord> batch;
    bool stopping;
    {
      absl::MutexLock lock(&end_mu_);
      absl::Condition ready(
          +[](Coordinator* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->end_mu_) { return c->end_stop_ || !c->ends_.empty(); },
          this);
      if (forgets.empty()) {
        end_mu_.Await(ready);
      } else {
        end_mu_.AwaitWithDeadline(ready, forget_due);
      }
      stopping = end_stop_;
      batch.swap(ends_);
    }
    if (!batch.empty()) {
      absl::Status s = journal_->MarkFinishedMany(batch);
      if (!s.ok()) {
        Log(spdlog::level::warn, "", absl::StrCat("END records of ", batch.size(),
                                                  " transactions not written (recovery re-drives them): ", s.message()));
      } else {
        for (const auto& r : batch) {
          for (const BranchRecord& b : r.branches()) {
            if (!b.last_resource()) continue;
            if (forgets.empty()) forget_due = absl::Now() + kForgetEvery;
            forgets[b.bind()].push_back(r.txn_id());
          }
        }
      }
      absl::MutexLock lock(&mu_);
      for (const auto& r : batch) driving_.erase(r.txn_id());
    }
    if (!forgets.empty() && (stopping || absl::Now() >= forget_due)) ForgetDecisions(forgets);
    if (stopping && batch.empty()) return;  // everything written and forgotten
  }
}

void Coordinator::ForgetDecisions(absl::flat_hash_map<std::string, std::vector<std::string>>& forgets) {
  // The rows go only once the journal's ENDs (written unsynced) are durable:
  // after a crash GetTransaction must still find the outcome somewhere.
  if (absl::Status synced = journal_->Sync(); !synced.ok()) {
    Log(spdlog::level::warn, "", absl::StrCat("decision rows kept (recovery removes them later): ", synced.message()));
  } else {
    for (const auto& [bind, ids] : forgets) {
      Participant* p = FindBind(bind);
      if (p == nullptr) continue;
      if (absl::Status s = p->ForgetDecisions(ids); !s.ok()) {
        Log(spdlog::level::warn, "", absl::StrCat("decision rows on bind \"", bind,
                                                  "\" kept (recovery removes them later): ", s.message()));
      }
    }
  }
  forgets.clear();
}

absl::Status Coordinator::Start() {
  TXC_RETURN_IF_ERROR(ClaimBinds(/*at_start=*/true));
  RecoveryReport r = RecoverPass(/*at_start=*/true);
  (void)r;
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
    background_ = std::thread([this] { BackgroundLoop(); });
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

absl::StatusOr<std::vector<participants::ResultSet>> Coordinator::Execute(
    Transaction& txn, absl::string_view bind,
    const std::vector<std::pair<std::string, std::vector<participants::Value>>>& statements,
    int max_rows) {
  Participant* participant = FindBind(bind);
  if (participant == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", bind, "\""));
  }
  if (statements.empty()) {
    return absl::InvalidArgumentError("Execute needs at least one statement");
  }
  const std::string dialect = participant->capabilities().dialect;
  for (const auto& [sql, params] : statements) {
    if (sql.empty()) return absl::InvalidArgumentError("empty SQL statement");
    if (static_cast<int>(sql.size()) > options_.max_sql_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("SQL statement of ", sql.size(),
                                                     " bytes exceeds the limit of ",
                                                     options_.max_sql_bytes));
    }
    // Nothing is sent: the transaction stays as it was.
    TXC_RETURN_IF_ERROR(participants::CheckBranchSql(bind, dialect, sql));
  }
  max_rows = RowLimit(max_rows);

  Transaction::Enlisted* enlisted = nullptr;
  {
    absl::MutexLock lock(&txn.mu_);
    if (txn.state_ != TxnState::kActive) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn.id_, " is ", TxnStateName(txn.state_), ": Execute needs ACTIVE"));
    }
    if (!txn.failure_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn.id_, " failed (", txn.failure_, "): only Rollback is accepted"));
    }
    for (auto& e : txn.branches_) {
      if (e->bind == bind) enlisted = e.get();
    }
    if (enlisted != nullptr && enlisted->external) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bind \"", bind, "\" is a service branch of ", txn.id_,
          " (the service runs its SQL and prepares it): txcoord cannot run statements on it too"));
    }
  }
  absl::Time now = clock_->Now();
  if (now >= txn.deadline_) {
    (void)AbortAll(txn, "transaction timeout");
    return absl::DeadlineExceededError(absl::StrCat(
        "transaction ", txn.id_, " exceeded its timeout and was rolled back"));
  }
  if (enlisted == nullptr) {
    bool two_phase = participant->capabilities().two_phase;
    if (!two_phase) {
      absl::MutexLock lock(&txn.mu_);
      for (auto& e : txn.branches_) {
        if (!e->two_phase) {
          return absl::FailedPreconditionError(absl::StrCat(
              "bind \"", bind, "\" has no two-phase commit and \"", e->bind,
              "\" already joined as the transaction's one last resource"));
        }
      }
    }
    int index;
    {
      absl::MutexLock lock(&txn.mu_);
      index = static_cast<int>(txn.branches_.size());
    }
    TXC_ASSIGN_OR_RETURN(participants::Xid xid, participants::MakeXid(txn.id_, index, bind));
    auto branch = participant->Begin(xid, txn.deadline_ - now);
    if (!branch.ok()) return branch.status();  // nothing enlisted: the txn stays usable
    auto e = std::make_unique<Transaction::Enlisted>();
    e->bind = std::string(bind);
    e->participant = participant;
    e->branch = std::move(*branch);
    e->xid = xid;
    e->two_phase = two_phase;
    enlisted = e.get();
    absl::MutexLock lock(&txn.mu_);
    txn.branches_.push_back(std::move(e));
  }
  std::vector<participants::ResultSet> results;
  for (const auto& [sql, params] : statements) {
    auto result = enlisted->branch->Execute(sql, params, max_rows);
    if (!result.ok()) {
      if (participants::IsBranchEnded(result.status())) {
        return MarkHeuristic(txn, std::string(bind), result.status());
      }
      // The transaction can only roll back now: it does at once, so that
      // no branch keeps its locks until the client (or the timeout) acts.
      const bool expired = clock_->Now() >= txn.deadline_;
      (void)AbortAll(txn, absl::StrCat("statement on bind \"", bind, "\" failed: ", result.status().message()));
      if (expired) {
        return absl::DeadlineExceededError(absl::StrCat(
            "transaction ", txn.id_, " exceeded its timeout on bind \"", bind,
            "\" and was rolled back: ", result.status().message()));
      }
      return absl::Status(result.status().code(),
                          absl::StrCat(result.status().message(), " (transaction ", txn.id_, " was rolled back)"));
    }
    results.push_back(std::move(*result));
  }
  return results;
}

absl::StatusOr<Coordinator::CheckedWork> Coordinator::CheckWork(
    Transaction& txn, const std::vector<std::pair<std::string, Statements>>& work) {
  CheckedWork checked;
  int first_index;
  {
    absl::MutexLock lock(&txn.mu_);
    if (txn.state_ != TxnState::kActive || !txn.failure_.empty() || !txn.branches_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("transaction ", txn.id_, " is not fresh"));
    }
    first_index = static_cast<int>(txn.branches_.size());
  }
  for (size_t i = 0; i < work.size(); ++i) {
    const auto& [bind, statements] = work[i];
    Participant* p = FindBind(bind);
    if (p == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", bind, "\""));
    for (size_t j = 0; j < i; ++j) {
      if (work[j].first == bind) {
        return absl::InvalidArgumentError(absl::StrCat(
            "bind \"", bind, "\" appears twice: put all of its statements in one entry"));
      }
    }
    if (statements.empty()) return absl::InvalidArgumentError(absl::StrCat("bind \"", bind, "\" has no statements"));
    const std::string dialect = p->capabilities().dialect;
    for (size_t k = 0; k < statements.size(); ++k) {
      const std::string& sql = statements[k].first;
      if (sql.empty()) return absl::InvalidArgumentError("empty SQL statement");
      if (static_cast<int>(sql.size()) > options_.max_sql_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("SQL statement of ", sql.size(),
                                                       " bytes exceeds the limit of ", options_.max_sql_bytes));
      }
      if (absl::Status refused = participants::CheckBranchSql(bind, dialect, sql); !refused.ok()) {
        return absl::Status(refused.code(), absl::StrCat("statement ", k + 1, ": ", refused.message()));
      }
    }
    if (!p->capabilities().two_phase && ++checked.last_resources > 1) {
      return absl::FailedPreconditionError("at most one bind without two-phase commit may join a transaction");
    }
    TXC_ASSIGN_OR_RETURN(participants::Xid xid,
                         participants::MakeXid(txn.id_, first_index + static_cast<int>(i), bind));
    checked.xids.push_back(std::move(xid));
  }
  checked.now = clock_->Now();
  if (checked.now >= txn.deadline_) {
    return absl::DeadlineExceededError(absl::StrCat("transaction ", txn.id_, " exceeded its timeout"));
  }
  return checked;
}

absl::StatusOr<std::vector<std::vector<participants::ResultSet>>> Coordinator::ExecuteOnBinds(
    Transaction& txn, const std::vector<std::pair<std::string, Statements>>& work, int max_rows) {
  max_rows = RowLimit(max_rows);
  TXC_ASSIGN_OR_RETURN(CheckedWork checked, CheckWork(txn, work));
  const int last_resources = checked.last_resources;
  const std::vector<participants::Xid>& xids = checked.xids;
  const absl::Time now = checked.now;
  // Without a bind lacking 2PC, the first bind configured as last resource
  // takes that role: it is not prepared, and Commit commits it locally with
  // the decision row.
  int lr_index = -1;
  if (work.size() > 1 && last_resources == 0) {
    for (size_t i = 0; i < work.size() && lr_index < 0; ++i) {
      if (ConfiguredLastResource(work[i].first)) lr_index = static_cast<int>(i);
    }
  }
  std::vector<std::unique_ptr<Transaction::Enlisted>> enlisted(work.size());
  std::vector<std::vector<participants::ResultSet>> results(work.size());
  std::vector<absl::Status> errors(work.size());
  // With more than one bind the transaction commits in two phases: each
  // two-phase bind prepares right after its statements, in the same call
  // (RunBatch: on PostgreSQL one round trip for BEGIN and the statements,
  // one for PREPARE). A branch left active here (the only bind, or the last
  // resource) is finished by Commit.
  const bool prepare = work.size() > 1;
  RunParallel(work.size(), [&](size_t i) {
    const auto& [bind, statements] = work[i];
    Participant* p = FindBind(bind);
    const bool two_phase = p->capabilities().two_phase && static_cast<int>(i) != lr_index;
    const bool prepare_here = prepare && two_phase;
    const absl::Time step_start = absl::Now();
    auto batch = p->RunBatch(xids[i], txn.deadline_ - now, statements, max_rows, prepare_here);
    metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_start,
                     {{"bind", bind}, {"step", "work"}});
    if (prepare_here) {
      metrics_.Increment("txcoord_prepares_total",
                         {{"bind", bind},
                          {"vote", !batch.ok() ? "failed"
                                   : batch->vote == participants::Vote::kReadOnly ? "read_only"
                                                                                  : "prepared"}});
    }
    if (!batch.ok()) {
      // Nothing is left on the bind: not enlisted.
      errors[i] = participants::IsBranchEnded(batch.status())
                      ? batch.status()
                      : absl::Status(batch.status().code(), absl::StrCat("statement on bind \"", bind,
                                                                         "\" failed: ", batch.status().message()));
      return;
    }
    auto e = std::make_unique<Transaction::Enlisted>();
    e->bind = bind;
    e->participant = p;
    e->branch = std::move(batch->branch);
    e->xid = xids[i];
    e->two_phase = two_phase;
    if (prepare_here) {
      e->read_only = batch->vote == participants::Vote::kReadOnly;
      e->prepared = !e->read_only;
    }
    results[i] = std::move(batch->results);
    enlisted[i] = std::move(e);
    if (prepare_here) TXC_FAILPOINT("commit.after_prepare");
  });
  {
    absl::MutexLock lock(&txn.mu_);
    for (auto& e : enlisted) {
      if (e) txn.branches_.push_back(std::move(e));  // rolled back with the others on any error
    }
  }
  for (size_t i = 0; i < errors.size(); ++i) {
    if (participants::IsBranchEnded(errors[i])) return MarkHeuristic(txn, work[i].first, errors[i]);
  }
  for (const absl::Status& e : errors) {
    if (!e.ok()) {
      txn.Fail(std::string(e.message()));
      return e;
    }
  }
  return results;
}

absl::StatusOr<Coordinator::OneShot> Coordinator::RunOneShot(
    Transaction& txn, const std::vector<std::pair<std::string, Statements>>& work, int max_rows) {
  // The whole transaction was rolled back: the client may retry it, unless
  // the request itself is wrong.
  auto rolled_back = [&](const absl::Status& s) {
    if (txn.state() == TxnState::kHeuristic) return s;  // not rolled back: MarkHeuristic says what happened
    (void)Rollback(txn, std::string(s.message()));
    return absl::Status(s.code() == absl::StatusCode::kInvalidArgument ||
                                s.code() == absl::StatusCode::kFailedPrecondition
                            ? s.code()
                            : absl::StatusCode::kAborted,
                        absl::StrCat("transaction ", txn.id_, " was rolled back: ", s.message()));
  };
  if (work.size() != 1) {
    auto results = ExecuteOnBinds(txn, work, max_rows);
    if (!results.ok()) return rolled_back(results.status());
    TXC_ASSIGN_OR_RETURN(TxnState state, Commit(txn));
    return OneShot{*std::move(results), state};
  }
  max_rows = RowLimit(max_rows);
  absl::StatusOr<CheckedWork> checked = CheckWork(txn, work);
  if (!checked.ok()) return rolled_back(checked.status());
  const auto& [bind, statements] = work[0];
  Participant* p = FindBind(bind);
  const absl::Time start = absl::Now();
  participants::CommitBatchOutcome out =
      p->RunAndCommit(checked->xids[0], txn.deadline_ - checked->now, statements, max_rows);
  metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - start, {{"bind", bind}, {"step", "work"}});
  if (participants::IsBranchEnded(out.status)) return MarkHeuristic(txn, bind, out.status);
  if (!out.status.ok() && !out.commit_failed) {
    // A statement failed: nothing was committed and nothing is left.
    return rolled_back(absl::Status(out.status.code(), absl::StrCat("statement on bind \"", bind,
                                                                    "\" failed: ", out.status.message())));
  }
  auto e = std::make_unique<Transaction::Enlisted>();
  e->bind = bind;
  e->participant = p;
  e->xid = checked->xids[0];
  e->two_phase = p->capabilities().two_phase;
  Transaction::Enlisted& only = *e;
  {
    absl::MutexLock lock(&txn.mu_);
    txn.branches_.push_back(std::move(e));
  }
  // Committed, its COMMIT refused, or the outcome unknown: what a
  // one-phase Commit reports.
  absl::StatusOr<TxnState> state = FinishOnePhase(txn, only, out.status, out.outcome_unknown);
  RecordCommit(txn, start, state);
  if (!state.ok()) return state.status();
  OneShot done;
  done.results.push_back(std::move(out.results));
  done.state = *state;
  return done;
}

absl::Status Coordinator::MarkHeuristic(Transaction& txn, const std::string& bind, const absl::Status& cause) {
  const std::string reason = std::string(cause.message());
  (void)AbortAll(txn, reason, /*heuristic_bind=*/bind);
  metrics_.Increment("txcoord_branches_ended_by_statement_total", {{"bind", bind}});
  {
    absl::MutexLock lock(&mu_);
    ++stats_.heuristic_hazards;
  }
  Log(spdlog::level::err, txn.id_,
      absl::StrCat("HEURISTIC: ", reason, "; the other binds' work was undone"));
  return absl::FailedPreconditionError(absl::StrCat(
      "transaction ", txn.id_, " is HEURISTIC: ", reason,
      "; the other binds' work was undone, so the transaction is not atomic (see its branches)"));
}

absl::Status Coordinator::AbortAll(Transaction& txn, const std::string& reason, const std::string& heuristic_bind) {
  std::vector<Transaction::Enlisted*> branches;
  {
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = TxnState::kAborting;
    if (txn.failure_.empty()) txn.failure_ = reason;
    for (auto& e : txn.branches_) branches.push_back(e.get());
  }
  RunParallel(branches.size(), [&](size_t i) {
    Transaction::Enlisted* e = branches[i];
    if (e->read_only || e->service_lr) return;  // a service's last resource: fenced by the caller
    if (e->prepared || e->external) {  // an external branch may be prepared though not registered
      absl::Status s = e->participant->RollbackPrepared(e->xid);
      // Not rolled back now (database down): the background pass rolls
      // this orphan back once the transaction is no longer live.
      (void)s;
    } else if (e->branch) {
      (void)e->branch->Rollback();
    }
    e->branch.reset();  // returns the connection to the pool
  });
  TxnInfo info = Describe(txn);
  const TxnState final_state = heuristic_bind.empty() ? TxnState::kAborted : TxnState::kHeuristic;
  {
    absl::MutexLock lock(&txn.mu_);
    txn.state_ = final_state;
  }
  info.state = final_state;
  info.finished_at = clock_->Now();
  if (final_state == TxnState::kHeuristic) {
    // Kept in the journal's history, so that GetTransaction and operators
    // see it after a restart too: the ended branch may have committed.
    DecisionRecord record;
    record.set_txn_id(txn.id_);
    record.set_state(journal::HEURISTIC_MIXED);
    record.set_idempotency_key(txn.idempotency_key_);
    record.set_session_id(txn.session_id_);
    record.set_started_at_unix_micros(absl::ToUnixMicros(txn.started_));
    record.set_finished_at_unix_micros(absl::ToUnixMicros(info.finished_at));
    for (const auto& [k, v] : txn.labels_) (*record.mutable_labels())[k] = v;
    for (BranchInfo& b : info.branches) {
      const bool ended = b.bind == heuristic_bind;
      b.state = ended ? "heuristic_hazard" : b.state == "read_only" ? "read_only" : "rolled_back";
      if (ended) b.last_error = reason;
    }
    bool listed = false;
    for (const BranchInfo& b : info.branches) listed |= b.bind == heuristic_bind;
    if (!listed) info.branches.push_back(BranchInfo{heuristic_bind, "", "heuristic_hazard", 0, reason, false});
    for (const BranchInfo& b : info.branches) {
      BranchRecord* r = record.add_branches();
      r->set_bind(b.bind);
      r->set_state(b.state == "heuristic_hazard" ? journal::BRANCH_HEURISTIC_HAZARD
                   : b.state == "read_only"      ? journal::BRANCH_READ_ONLY
                                                 : journal::BRANCH_ROLLED_BACK);
      r->set_last_error(b.last_error);
    }
    (void)journal_->RecordFinished(record);
  } else {
    for (BranchInfo& b : info.branches) {
      if (b.state != "read_only") b.state = "rolled_back";
    }
    RecordKeyedOutcome(txn, info, journal::ROLLED_BACK);
  }
  RememberOutcome(std::move(info));
  return absl::OkStatus();
}

void Coordinator::RecordKeyedOutcome(const Transaction& txn, const TxnInfo& info, journal::DecisionState state) {
  if (txn.idempotency_key_.empty()) return;
  DecisionRecord record;
  record.set_txn_id(txn.id_);
  record.set_state(state);
  record.set_idempotency_key(txn.idempotency_key_);
  record.set_abort_reason(info.abort_reason);
  record.set_session_id(txn.session_id_);
  record.set_started_at_unix_micros(absl::ToUnixMicros(txn.started_));
  record.set_finished_at_unix_micros(absl::ToUnixMicros(info.finished_at));
  for (const auto& [k, v] : txn.labels_) (*record.mutable_labels())[k] = v;
  for (const BranchInfo& b : info.branches) {
    BranchRecord* r = record.add_branches();
    r->set_bind(b.bind);
    r->set_state(b.state == "read_only"   ? journal::BRANCH_READ_ONLY
                 : b.state == "committed" ? journal::BRANCH_COMMITTED
                 : state == journal::HEURISTIC_HAZARD ? journal::BRANCH_HEURISTIC_HAZARD
                                                      : journal::BRANCH_ROLLED_BACK);
    r->set_last_resource(b.last_resource);
  }
  // Not synced, like every history record: a crash before it reaches the
  // disk loses only the record of a transaction that committed nothing
  // (or whose outcome nobody knows either way).
  (void)journal_->MarkFinished(record);
}

absl::Status Coordinator::Rollback(Transaction& txn, absl::string_view reason) {
  TxnState s = txn.state();
  if (s == TxnState::kAborted) return absl::OkStatus();
  bool service_lr;
  {
    absl::MutexLock lock(&txn.mu_);
    service_lr = txn.service_lr_pending_ && txn.state_ == TxnState::kPreparing;
  }
  if (service_lr) {
    // The service may have committed its last resource already: the fence
    // in the commit protocol decides, and a commit it finds stands.
    absl::StatusOr<TxnState> settled = CommitProtocol(txn);
    if (settled.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn.id_, " was committed by the service's last resource: it cannot be rolled back"));
    }
    if (settled.status().code() == absl::StatusCode::kAborted) return absl::OkStatus();
    return settled.status();  // undecided now: recovery fences and settles it
  }
  if (s != TxnState::kActive && s != TxnState::kPreparing) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", txn.id_, " is ", TxnStateName(s), ": it can no longer be rolled back"));
  }
  return AbortAll(txn, std::string(reason));
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
  RunParallel(two_phase.size(), [&](size_t i) {
    Transaction::Enlisted* e = two_phase[i];
    if (e->prepared || e->read_only) return;  // prepared with its statements (RunTransaction)
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
      {
        // Not ACTIVE or PREPARING: nothing rolls these branches back now.
        absl::MutexLock lock(&txn.mu_);
        txn.state_ = TxnState::kAborting;
      }
      TxnInfo undecided = Describe(txn);
      undecided.state = TxnState::kPreparing;
      undecided.abort_reason = absl::StrCat("outcome unknown until txcoord is restarted: ", s.message());
      RememberOutcome(std::move(undecided));
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

bool Coordinator::DrivePhase2(DecisionRecord& record, bool first_attempt, bool end_async) {
  const bool rollback = record.state() == journal::ROLLING_BACK;
  std::vector<BranchRecord*> todo;
  for (BranchRecord& b : *record.mutable_branches()) {
    if (b.state() == journal::BRANCH_PREPARED) todo.push_back(&b);
  }
  std::vector<absl::Status> results(todo.size());
  RunParallel(todo.size(), [&](size_t i) {
    BranchRecord* b = todo[i];
    Participant* p = FindBind(b->bind());
    if (p == nullptr) {
      results[i] = absl::FailedPreconditionError(absl::StrCat(
          "bind \"", b->bind(), "\" is not in the configuration any more"));
      return;
    }
    participants::Xid xid = XidOf(*b);
    const absl::Time step_start = absl::Now();
    results[i] = rollback ? p->RollbackPrepared(xid) : p->CommitPrepared(xid);
    metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_start,
                     {{"bind", b->bind()}, {"step", rollback ? "rollback" : "commit"}});
    if (!rollback) TXC_FAILPOINT("commit.after_branch_committed");
  });
  bool all_done = true;
  int hazards = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    BranchRecord* b = todo[i];
    const absl::Status& s = results[i];
    b->set_attempts(b->attempts() + 1);
    if (s.ok()) {
      b->set_state(rollback ? journal::BRANCH_ROLLED_BACK : journal::BRANCH_COMMITTED);
      b->clear_last_error();
    } else if (s.code() == absl::StatusCode::kNotFound) {
      if (first_attempt && b->attempts() == 1 && !rollback) {
        // Prepared a moment ago and gone before our first COMMIT PREPARED:
        // someone else ended it. Record and count it; never ignore it.
        b->set_state(journal::BRANCH_HEURISTIC_HAZARD);
        b->set_last_error(std::string(s.message()));
        ++hazards;
        Log(spdlog::level::err, record.txn_id(),
            absl::StrCat("HEURISTIC HAZARD: the prepared branch on bind \"", b->bind(),
                         "\" was gone at the first COMMIT PREPARED: ", s.message()));
      } else {
        // A replay: an earlier attempt (before a crash or a lost reply)
        // already finished it.
        b->set_state(rollback ? journal::BRANCH_ROLLED_BACK : journal::BRANCH_COMMITTED);
      }
    } else {
      b->set_last_error(std::string(s.message()));
      all_done = false;
      Log(spdlog::level::warn, record.txn_id(),
          absl::StrCat("phase 2 on bind \"", b->bind(), "\" failed (attempt ", b->attempts(),
                       "), will retry: ", s.message()));
    }
  }
  record.set_phase2_rounds(record.phase2_rounds() + 1);
  if (hazards > 0) {
    metrics_.Increment("txcoord_heuristic_hazards_total", {}, hazards);
    absl::MutexLock lock(&mu_);
    stats_.heuristic_hazards += hazards;
  }
  if (!all_done) {
    (void)journal_->UpdateDecision(record);
    return false;
  }
  TXC_FAILPOINT("commit.before_end");
  bool hazard = false;
  for (const BranchRecord& b : record.branches()) {
    hazard |= b.state() == journal::BRANCH_HEURISTIC_HAZARD;
  }
  record.set_state(hazard ? journal::HEURISTIC_HAZARD
                   : rollback ? journal::ROLLED_BACK
                              : journal::COMMITTED);
  record.set_finished_at_unix_micros(absl::ToUnixMicros(clock_->Now()));
  if (end_async) {
    QueueEnd(record);  // the caller keeps the transaction in driving_
  } else {
    (void)journal_->MarkFinished(record);
  }
  return true;
}

void Coordinator::ScheduleRetry(const std::string& txn_id) {
  auto [it, inserted] = pending_.try_emplace(txn_id);
  if (inserted) {
    it->second.backoff = options_.recovery.backoff_initial;
  } else {
    it->second.backoff = std::min(it->second.backoff * 2, options_.recovery.backoff_max);
    ++stats_.phase2_retries;
    metrics_.Increment("txcoord_phase2_retries_total");
  }
  it->second.next_attempt = clock_->Now() + it->second.backoff;
}

TxnInfo Coordinator::FromRecord(const DecisionRecord& record) {
  TxnInfo info;
  info.txn_id = record.txn_id();
  switch (record.state()) {
    case journal::COMMITTING: info.state = TxnState::kCommitting; break;
    case journal::COMMITTED: info.state = TxnState::kCommitted; break;
    case journal::ROLLING_BACK: info.state = TxnState::kAborting; break;
    case journal::ROLLED_BACK: info.state = TxnState::kAborted; break;
    default: info.state = TxnState::kHeuristic; break;
  }
  for (const BranchRecord& b : record.branches()) {
    BranchInfo bi;
    bi.bind = b.bind();
    bi.xid = participants::XidToString(XidOf(b));
    bi.state = BranchStateName(b.state());
    bi.attempts = b.attempts();
    bi.last_error = b.last_error();
    bi.last_resource = b.last_resource();
    info.branches.push_back(std::move(bi));
  }
  info.session_id = record.session_id();
  info.abort_reason = record.abort_reason();
  for (const auto& [k, v] : record.labels()) info.labels[k] = v;
  if (record.started_at_unix_micros()) info.started_at = absl::FromUnixMicros(record.started_at_unix_micros());
  if (record.decided_at_unix_micros()) info.decided_at = absl::FromUnixMicros(record.decided_at_unix_micros());
  if (record.finished_at_unix_micros()) info.finished_at = absl::FromUnixMicros(record.finished_at_unix_micros());
  return info;
}

absl::StatusOr<TxnInfo> Coordinator::GetTransaction(absl::string_view txn_id) {
  std::string node;
  uint64_t epoch = 0, seq = 0;
  if (!ParseTxnId(txn_id, &node, &epoch, &seq)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", txn_id, "\" is not a txn id (<node_id>.<epoch>.<seq>)"));
  }
  if (node != options_.node_id) {
    return absl::NotFoundError(absl::StrCat("transaction ", txn_id, " belongs to node \"", node,
                                            "\"; this is \"", options_.node_id, "\""));
  }
  {
    absl::MutexLock lock(&mu_);
    // Lock order: mu_, then the transaction's mu_ (in Describe).
    if (auto it = live_.find(txn_id); it != live_.end()) return Describe(*it->second);
  }
  TXC_ASSIGN_OR_RETURN(std::optional<DecisionRecord> record, journal_->Find(txn_id));
  {
    // A finished outcome remembered here is newer than an unfinished
    // record whose END is still queued for the journal.
    absl::MutexLock lock(&mu_);
    if (auto it = recent_.find(txn_id);
        it != recent_.end() && (!record.has_value() || record->state() == journal::COMMITTING)) {
      return it->second;
    }
  }
  if (record.has_value()) return FromRecord(*record);
  if (CollectedBefore(epoch, seq, journal_->CollectedMarker())) {
    // An id no newer than the newest record the retention deleted: it may
    // have committed, so no presumption.
    return absl::NotFoundError(absl::StrCat(
        "transaction ", txn_id, " has no record here any more: it was rolled back, or it finished before "
        "the journal's retention (journal.retention) deleted its record"));
  }
  const uint64_t current = journal_->epoch();
  if (epoch > current || (epoch == current && seq >= next_seq_.load())) {
    return absl::NotFoundError(absl::StrCat("transaction ", txn_id, " was never started here"));
  }
  // Presumed abort: an id this node handed out, with no decision.
  TxnInfo info;
  info.txn_id = std::string(txn_id);
  info.state = TxnState::kAborted;
  info.abort_reason = "no commit decision was recorded (presumed abort)";
  return info;
}

absl::Status Coordinator::DecisionHealth() const {
  absl::MutexLock lock(&mu_);
  if (halted_.empty()) return absl::OkStatus();
  return absl::UnavailableError(halted_);
}

absl::Status Coordinator::CommitHealth() const {
  TXC_RETURN_IF_ERROR(DecisionHealth());
  return journal_->DecisionWriteHealth();
}

absl::Status Coordinator::ClaimBinds(bool at_start) {
  // A previous process of this node (killed a moment ago) may still hold
  // its locks until the databases notice its connections are gone.
  const absl::Time give_up = absl::Now() + (at_start ? absl::Seconds(10) : absl::ZeroDuration());
  for (const auto& [name, p] : binds_) {
    absl::Status s;
    for (;;) {
      s = p->ClaimNode(options_.node_id);
      if (s.code() != absl::StatusCode::kFailedPrecondition || absl::Now() >= give_up) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
    bool was_claimed;
    {
      absl::MutexLock lock(&mu_);
      was_claimed = claimed_.contains(name);
      if (s.ok()) claimed_.insert(name);
      else claimed_.erase(name);
    }
    if (s.ok()) {
      if (!was_claimed && !p->node_claim_kind().empty()) {
        Log(spdlog::level::info, "", absl::StrCat("bind \"", name, "\": node_id claimed (", p->node_claim_kind(), ")"));
      }
      continue;
    }
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      if (at_start) return s;
      {
        absl::MutexLock lock(&mu_);
        if (halted_.empty()) {
          halted_ = absl::StrCat(s.message(), ": txcoord takes no commit decision until it is restarted");
        }
      }
      Log(spdlog::level::critical, "", absl::StrCat(s.message(), ". No commit decision is taken and no "
                                                                  "orphan rolled back until txcoord is restarted."));
      continue;
    }
    // Unreachable: claimed at a later pass; until then recovery leaves this
    // bind's prepared branches alone.
    if (at_start || was_claimed) {
      Log(spdlog::level::warn, "", absl::StrCat("bind \"", name, "\": node_id not claimed yet: ", s.message()));
    }
  }
  return absl::OkStatus();
}

CoordinatorStats Coordinator::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

namespace {
// The xid as a service writes it in its bind's dialect.
std::string XidForDialect(const participants::Xid& xid, const std::string& dialect) {
  if (dialect == "postgresql") return participants::PostgresGid(xid);
  return participants::XaLiteral(xid);
}
}  // namespace

absl::StatusOr<std::string> Coordinator::AddExternalBranch(Transaction& txn, const std::string& bind) {
  Participant* p = FindBind(bind);
  if (p == nullptr || !HasBind(bind)) return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", bind, "\""));
  participants::Capabilities caps = p->capabilities();
  if (!caps.two_phase) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bind \"", bind, "\" (", caps.dialect,
        ") has no two-phase commit: a service cannot prepare on it; run its statements through "
        "txcoord (Execute on the global transaction) and it commits as the last resource"));
  }
  absl::MutexLock lock(&txn.mu_);
  for (const auto& e : txn.branches_) {
    if (e->bind != bind) continue;
    if (e->external && !e->callback) return XidForDialect(e->xid, caps.dialect);  // asked again
    return absl::InvalidArgumentError(absl::StrCat("bind \"", bind, "\" already runs statements through txcoord in ",
                                                   txn.id_, ": a service cannot also prepare a branch on it"));
  }
  TXC_ASSIGN_OR_RETURN(participants::Xid xid,
                       participants::MakeXid(txn.id_, static_cast<int>(txn.branches_.size()), bind));
  auto e = std::make_unique<Transaction::Enlisted>();
  e->bind = bind;
  e->participant = p;
  e->xid = xid;
  e->external = true;
  txn.branches_.push_back(std::move(e));
  return XidForDialect(xid, caps.dialect);
}

absl::StatusOr<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> Coordinator::BeginGlobal(
    const std::vector<std::string>& binds, absl::Duration timeout, std::map<std::string, std::string> labels,
    std::string owner) {
  for (size_t i = 0; i < binds.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (binds[j] == binds[i]) return absl::InvalidArgumentError(absl::StrCat("bind \"", binds[i], "\" named twice"));
    }
  }
  std::vector<std::pair<std::string, std::string>> xids;
  std::unique_ptr<Transaction> txn = Begin("", std::move(labels), timeout);
  for (const std::string& bind : binds) {
    TXC_ASSIGN_OR_RETURN(std::string xid, AddExternalBranch(*txn, bind));
    xids.emplace_back(bind, std::move(xid));
  }
  std::string id = txn->id();
  absl::MutexLock lock(&mu_);
  globals_[id] = Global{std::move(owner), std::move(txn)};
  return std::make_pair(id, xids);
}

absl::StatusOr<Coordinator::Global*> Coordinator::FindGlobal(absl::string_view txn_id, absl::string_view owner,
                                                             bool allow_busy) {
  auto it = globals_.find(txn_id);
  if (it == globals_.end()) {
    return absl::NotFoundError(absl::StrCat("no open global transaction ", txn_id,
                                            " (ended, timed out, or never begun here)"));
  }
  if (!owner.empty() && it->second.owner != owner) {
    return absl::PermissionDeniedError(absl::StrCat("global transaction ", txn_id, " belongs to another identity"));
  }
  if (it->second.busy && !allow_busy) {
    return absl::FailedPreconditionError(absl::StrCat(
        "global transaction ", txn_id, " is running an Execute: ask again when it returned"));
  }
  return &it->second;
}

absl::StatusOr<Transaction*> Coordinator::FindJoinable(absl::string_view txn_id, absl::string_view owner,
                                                       bool allow_busy) {
  absl::StatusOr<Global*> g = FindGlobal(txn_id, owner, allow_busy);
  if (g.ok()) return (*g)->txn.get();
  if (g.status().code() != absl::StatusCode::kNotFound) return g.status();
  auto it = live_.find(txn_id);
  if (it == live_.end() || it->second->session_id_.empty()) {
    return absl::NotFoundError(absl::StrCat("no open global or session transaction ", txn_id,
                                            " (ended, timed out, or never begun here)"));
  }
  if (!owner.empty() && it->second->identity_ != owner) {
    return absl::PermissionDeniedError(absl::StrCat("transaction ", txn_id, " belongs to another identity"));
  }
  return it->second;
}

absl::StatusOr<std::unique_ptr<Transaction>> Coordinator::TakeGlobal(absl::string_view txn_id,
                                                                     absl::string_view owner) {
  absl::MutexLock lock(&mu_);
  TXC_ASSIGN_OR_RETURN(Global * g, FindGlobal(txn_id, owner));
  std::unique_ptr<Transaction> txn = std::move(g->txn);
  globals_.erase(globals_.find(txn_id));
  return txn;
}

absl::StatusOr<std::string> Coordinator::AddBranch(absl::string_view txn_id, absl::string_view bind,
                                                   absl::string_view owner) {
  absl::MutexLock lock(&mu_);
  TXC_ASSIGN_OR_RETURN(Transaction * txn, FindJoinable(txn_id, owner));
  if (TxnState st = txn->state(); st != TxnState::kActive) {
    return absl::FailedPreconditionError(absl::StrCat("transaction ", txn_id, " is ", TxnStateName(st)));
  }
  // Lock order: mu_, then the transaction's mu_.
  return AddExternalBranch(*txn, std::string(bind));
}

absl::StatusOr<std::vector<participants::ResultSet>> Coordinator::ExecuteGlobal(absl::string_view txn_id,
                                                                                 absl::string_view owner,
                                                                                 absl::string_view bind,
                                                                                 const Statements& statements,
                                                                                 int max_rows) {
  Transaction* txn;
  {
    absl::MutexLock lock(&mu_);
    TXC_ASSIGN_OR_RETURN(Global * g, FindGlobal(txn_id, owner));
    g->busy = true;
    txn = g->txn.get();
  }
  auto results = Execute(*txn, bind, statements, max_rows);
  absl::MutexLock lock(&mu_);
  if (auto it = globals_.find(txn_id); it != globals_.end()) it->second.busy = false;
  return results;
}

absl::Status Coordinator::RegisterBranch(absl::string_view txn_id, absl::string_view bind, absl::string_view xid,
                                         absl::string_view owner, absl::string_view participant_address,
                                         bool read_only) {
  const bool callback = !participant_address.empty();
  if (callback && (xid.empty() || xid.size() > participants::kMaxBqualBytes)) {
    return absl::InvalidArgumentError("a callback branch needs a branch id (xid) of 1–64 bytes");
  }
  Participant* callback_participant =
      callback ? FindBind(absl::StrCat(kCallbackPrefix, participant_address)) : nullptr;
  absl::MutexLock lock(&mu_);
  // Also while an Execute runs: registering touches only its own branch entry.
  TXC_ASSIGN_OR_RETURN(Transaction * found, FindJoinable(txn_id, owner, /*allow_busy=*/true));
  Transaction& txn = *found;
  // Lock order: mu_, then the transaction's mu_.
  absl::MutexLock txn_lock(&txn.mu_);
  if (txn.state_ != TxnState::kActive) {
    return absl::FailedPreconditionError(absl::StrCat("transaction ", txn_id, " is ", TxnStateName(txn.state_)));
  }
  if (callback) {
    for (auto& e : txn.branches_) {
      if (e->bind == callback_participant->bind() && e->xid.bqual == xid) return absl::OkStatus();  // again
    }
    auto e = std::make_unique<Transaction::Enlisted>();
    e->bind = callback_participant->bind();
    e->participant = callback_participant;
    e->xid.gtrid = std::string(txn_id);
    e->xid.bqual = std::string(xid);
    e->external = e->registered = e->callback = true;
    txn.branches_.push_back(std::move(e));
    return absl::OkStatus();
  }
  for (auto& e : txn.branches_) {
    if (e->bind != bind) continue;
    if (!e->external) {
      return absl::InvalidArgumentError(absl::StrCat("bind \"", bind, "\" runs statements through txcoord in ", txn_id,
                                                     ": it has no service branch to register"));
    }
    if (xid != XidForDialect(e->xid, e->participant->capabilities().dialect) &&
        xid != participants::XidToString(e->xid)) {
      return absl::InvalidArgumentError(absl::StrCat("xid \"", xid, "\" is not the one minted for bind \"", bind,
                                                     "\" in ", txn_id));
    }
    e->registered = true;
    e->read_only = read_only;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bind \"", bind, "\" has no branch in ", txn_id, ": name it at BeginGlobal or AddBranch"));
}

absl::StatusOr<TxnInfo> Coordinator::CommitGlobal(absl::string_view txn_id, absl::string_view owner) {
  absl::StatusOr<std::unique_ptr<Transaction>> taken = TakeGlobal(txn_id, owner);
  if (!taken.ok()) {
    if (taken.status().code() != absl::StatusCode::kNotFound) return taken.status();
    // Ended already (a retry after a lost reply, a timeout, an abort): its outcome.
    absl::StatusOr<TxnInfo> recorded = GetTransaction(txn_id);
    if (!recorded.ok()) return taken.status();
    if (recorded->state == TxnState::kAborted) {
      return absl::AbortedError(absl::StrCat("transaction ", txn_id, " was rolled back",
                                             recorded->abort_reason.empty() ? "" : ": ", recorded->abort_reason));
    }
    return recorded;
  }
  std::unique_ptr<Transaction> txn = *std::move(taken);
  absl::StatusOr<TxnState> state = Commit(*txn);
  if (!state.ok() && state.status().code() == absl::StatusCode::kFailedPrecondition &&
      txn->state() == TxnState::kActive) {
    // Not committable (a failed statement): still open, for RollbackGlobal.
    absl::MutexLock lock(&mu_);
    std::string id = txn->id();
    globals_[id] = Global{std::string(owner), std::move(txn)};
    return state.status();
  }
  TxnInfo info = Describe(*txn);
  if (!state.ok()) return state.status();
  info.state = *state;
  return info;
}

absl::StatusOr<TxnInfo> Coordinator::RollbackGlobal(absl::string_view txn_id, absl::string_view owner) {
  absl::StatusOr<std::unique_ptr<Transaction>> taken = TakeGlobal(txn_id, owner);
  if (!taken.ok()) {
    if (taken.status().code() != absl::StatusCode::kNotFound) return taken.status();
    absl::StatusOr<TxnInfo> recorded = GetTransaction(txn_id);
    if (!recorded.ok()) return taken.status();
    if (recorded->state != TxnState::kAborted) {
      return absl::FailedPreconditionError(absl::StrCat("transaction ", txn_id, " is ",
                                                        TxnStateName(recorded->state), ": it can no longer be rolled back"));
    }
    return recorded;
  }
  std::unique_ptr<Transaction> txn = *std::move(taken);
  TXC_RETURN_IF_ERROR(Rollback(*txn, "rolled back by the client"));
  return Describe(*txn);
}

absl::Status Coordinator::VerifyServiceBranches(const std::vector<Transaction::Enlisted*>& external) {
  for (Transaction::Enlisted* e : external) {
    // Checked before (PrepareGlobal), or ended by the service itself (read-only).
    if (e->prepared || e->read_only) continue;
    absl::Status problem;
    if (e->callback) {
      auto vote = static_cast<CallbackParticipant*>(e->participant)->Prepare(e->xid);
      if (!vote.ok()) {
        problem = absl::AbortedError(absl::StrCat("PREPARE of ", e->bind, " failed: ", vote.status().message()));
      } else if (*vote == participants::Vote::kReadOnly) {
        e->read_only = true;
        continue;
      }
    } else if (!e->registered) {
      problem = absl::AbortedError(absl::StrCat("the branch on bind \"", e->bind, "\" was never registered"));
    } else {
      auto listed = e->participant->ListPrepared(options_.node_id);
      if (!listed.ok()) {
        problem = listed.status();
      } else if (std::none_of(listed->begin(), listed->end(),
                              [&](const participants::PreparedBranch& b) { return b.xid == e->xid; })) {
        problem = absl::AbortedError(absl::StrCat("the branch registered on bind \"", e->bind,
                                                  "\" is not prepared on its database"));
      }
    }
    if (!problem.ok()) return absl::AbortedError(problem.message());
    e->prepared = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Coordinator::PrepareGlobal(absl::string_view txn_id, absl::string_view owner,
                                                       absl::string_view last_resource_bind) {
  Participant* lr = HasBind(last_resource_bind) ? FindBind(last_resource_bind) : nullptr;
  if (lr == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", last_resource_bind, "\""));
  }
  if (lr->capabilities().two_phase) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bind \"", last_resource_bind, "\" has two-phase commit: prepare a branch on it (AddBranch) instead"));
  }
  Transaction* txn;
  {
    absl::MutexLock lock(&mu_);
    TXC_ASSIGN_OR_RETURN(Global * g, FindGlobal(txn_id, owner));
    g->busy = true;
    txn = g->txn.get();
  }
  auto release = [&] {
    absl::MutexLock lock(&mu_);
    if (auto it = globals_.find(txn_id); it != globals_.end()) it->second.busy = false;
  };
  std::vector<Transaction::Enlisted*> external;
  {
    absl::MutexLock lock(&txn->mu_);
    absl::Status refused;
    if (txn->state_ != TxnState::kActive || !txn->failure_.empty()) {
      refused = absl::FailedPreconditionError(absl::StrCat("transaction ", txn_id, " is ", TxnStateName(txn->state_),
                                                           txn->failure_.empty() ? "" : " and failed"));
    }
    for (auto& e : txn->branches_) {
      if (refused.ok() && !e->external) {
        refused = absl::FailedPreconditionError(absl::StrCat(
            "transaction ", txn_id, " runs statements through txcoord on bind \"", e->bind,
            "\": a service's own last resource cannot be combined with them (run the last resource's "
            "statements through Execute instead)"));
      }
      external.push_back(e.get());
    }
    if (!refused.ok()) {
      release();
      return refused;
    }
  }
  if (absl::Status problem = VerifyServiceBranches(external); !problem.ok()) {
    std::unique_ptr<Transaction> taken;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = globals_.find(txn_id); it != globals_.end()) {
        taken = std::move(it->second.txn);
        globals_.erase(it);
      }
    }
    std::string reason(problem.message());
    if (taken) (void)AbortAll(*taken, reason);
    return absl::AbortedError(absl::StrCat("transaction ", txn_id, " was rolled back: ", reason));
  }
  if (absl::Status s = lr->EnsureDecisionTable(); !s.ok()) {
    release();
    // Nothing was decided or rolled back: the transaction stays open.
    return absl::FailedPreconditionError(absl::StrCat(
        "bind \"", last_resource_bind, "\" has no txcoord_decisions table and it cannot be created now (",
        s.message(), "); txcoord creates it at start, or create it before the service's transaction writes; ",
        "transaction ", txn_id, " is still open"));
  }
  std::vector<Transaction::Enlisted*> prepared;
  for (Transaction::Enlisted* e : external) {
    if (e->prepared) prepared.push_back(e);
  }
  auto e = std::make_unique<Transaction::Enlisted>();
  e->bind = std::string(last_resource_bind);
  e->participant = lr;
  e->external = e->registered = e->service_lr = true;
  e->two_phase = false;
  Transaction::Enlisted* last_resource = e.get();
  {
    absl::MutexLock lock(&txn->mu_);
    auto xid = participants::MakeXid(txn->id_, static_cast<int>(txn->branches_.size()), e->bind);
    if (!xid.ok()) {
      release();
      return xid.status();
    }
    e->xid = *xid;
    txn->branches_.push_back(std::move(e));
    txn->state_ = TxnState::kPreparing;
    txn->service_lr_pending_ = true;
  }
  std::string payload = absl::BytesToHexString(MakeDecision(*txn, prepared, last_resource).SerializeAsString());
  release();
  return payload;
}

void Coordinator::AbortExpiredGlobals() {
  std::vector<std::unique_ptr<Transaction>> expired;
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    for (auto it = globals_.begin(); it != globals_.end();) {
      // A busy one is left to its running Execute (bounded by the same
      // deadline) and taken at the next pass.
      if (now >= it->second.txn->deadline() && !it->second.busy) {
        expired.push_back(std::move(it->second.txn));
        globals_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& txn : expired) {
    Log(spdlog::level::info, txn->id(), "global transaction timed out: rolling back its branches");
    (void)Rollback(*txn, "transaction timeout");
  }  // destroyed here, outside mu_
}

int Coordinator::live_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(live_.size());
}

absl::StatusOr<std::pair<std::vector<TxnInfo>, std::string>> Coordinator::ListTransactions(
    const ListTransactionsFilter& filter) {
  const int page_size = filter.page_size > 0 ? std::min(filter.page_size, 1000) : 100;
  const absl::Time now = clock_->Now();
  auto keep = [&](const TxnInfo& t) {
    if (!filter.states.empty() &&
        std::find(filter.states.begin(), filter.states.end(), t.state) == filter.states.end()) {
      return false;
    }
    if (!filter.bind.empty() &&
        std::none_of(t.branches.begin(), t.branches.end(),
                     [&](const BranchInfo& b) { return b.bind == filter.bind; })) {
      return false;
    }
    if (filter.older_than > absl::ZeroDuration()) {
      absl::Time since = t.started_at != absl::InfinitePast() ? t.started_at : t.decided_at;
      if (since == absl::InfinitePast() || now - since < filter.older_than) return false;
    }
    return true;
  };
  std::vector<TxnInfo> out;
  absl::Time before = absl::InfiniteFuture();
  if (filter.page_token.empty()) {
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, txn] : live_) {
        TxnInfo info = Describe(*txn);
        if (keep(info)) out.push_back(std::move(info));
      }
    }
    TXC_ASSIGN_OR_RETURN(std::vector<DecisionRecord> unfinished, journal_->ScanUnfinished());
    for (const DecisionRecord& r : unfinished) {
      TxnInfo info = FromRecord(r);
      if (keep(info)) out.push_back(std::move(info));
    }
  } else {
    int64_t us;
    if (!absl::SimpleAtoi(filter.page_token, &us)) {
      return absl::InvalidArgumentError("page_token is not one this server handed out");
    }
    before = absl::FromUnixMicros(us);
  }
  std::string next;
  while (static_cast<int>(out.size()) < page_size) {
    TXC_ASSIGN_OR_RETURN(std::vector<DecisionRecord> history, journal_->ListFinished(before, page_size));
    if (history.empty()) {
      next.clear();
      break;
    }
    for (const DecisionRecord& r : history) {
      before = absl::FromUnixMicros(r.finished_at_unix_micros());
      next = absl::StrCat(r.finished_at_unix_micros());
      TxnInfo info = FromRecord(r);
      if (keep(info)) out.push_back(std::move(info));
      if (static_cast<int>(out.size()) >= page_size) break;
    }
    if (static_cast<int>(history.size()) < page_size) {
      if (static_cast<int>(out.size()) < page_size) next.clear();
      break;
    }
  }
  return std::make_pair(std::move(out), next);
}

absl::StatusOr<std::vector<InDoubtBranch>> Coordinator::ListInDoubt(
    const std::vector<std::string>& binds) {
  for (const std::string& b : binds) {
    if (!HasBind(b)) return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", b, "\""));
  }
  absl::flat_hash_set<std::string> lr_decided;
  for (const auto& [name, p] : binds_) {
    if (!HoldsDecisions(name, *p)) continue;
    auto ids = p->ListDecisions(options_.node_id);
    if (ids.ok()) lr_decided.insert(ids->begin(), ids->end());
  }
  const absl::Time now = clock_->Now();
  std::vector<InDoubtBranch> out;
  for (const auto& [name, p] : binds_) {
    if (!binds.empty() && std::find(binds.begin(), binds.end(), name) == binds.end()) continue;
    if (!p->capabilities().two_phase) continue;
    auto prepared = p->ListAllPrepared();
    if (!prepared.ok()) {
      return absl::Status(prepared.status().code(),
                          absl::StrCat("bind \"", name, "\": ", prepared.status().message()));
    }
    for (const participants::PreparedBranch& b : *prepared) {
      InDoubtBranch d;
      d.bind = name;
      d.xid = b.raw.empty() ? participants::XidToString(b.xid) : b.raw;
      if (b.prepared_at != absl::InfinitePast()) {
        d.age = now - b.prepared_at;
        d.age_known = true;
      }
      if (b.xid.format_id != participants::kTxcFormatId ||
          participants::NodeIdOfGtrid(b.xid.gtrid) != options_.node_id) {
        d.kind = InDoubtBranch::Kind::kForeign;
        out.push_back(std::move(d));
        continue;
      }
      d.txn_id = b.xid.gtrid;
      bool decided = lr_decided.contains(d.txn_id);
      if (!decided) {
        auto record = journal_->Find(d.txn_id);
        decided = record.ok() && record->has_value() && (*record)->state() != journal::ROLLED_BACK;
      }
      {
        absl::MutexLock lock(&mu_);
        decided |= driving_.contains(d.txn_id);
      }
      d.kind = decided ? InDoubtBranch::Kind::kDecided : InDoubtBranch::Kind::kOrphaned;
      out.push_back(std::move(d));
    }
  }
  return out;
}

absl::StatusOr<TxnInfo> Coordinator::Resolve(absl::string_view txn_id, bool commit,
                                             absl::string_view operator_identity,
                                             absl::string_view reason) {
  std::string node;
  uint64_t epoch = 0, seq = 0;
  if (!ParseTxnId(txn_id, &node, &epoch, &seq)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", txn_id, "\" is not a txn id"));
  }
  if (node != options_.node_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", txn_id, " belongs to node \"", node,
        "\": resolve it on that coordinator; txcoord never touches another node's branches"));
  }
  if (reason.empty()) return absl::InvalidArgumentError("a resolution needs a reason");
  // No recovery pass may act on this transaction meanwhile.
  absl::MutexLock recovery_lock(&recovery_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (live_.contains(txn_id) || driving_.contains(txn_id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn_id, " is live (its commit is running): it is not in doubt"));
    }
  }
  journal::Resolution resolution;
  resolution.set_operator_identity(std::string(operator_identity));
  resolution.set_reason(std::string(reason));
  resolution.set_at_unix_micros(absl::ToUnixMicros(clock_->Now()));
  resolution.set_decision(commit ? journal::Resolution::COMMIT : journal::Resolution::ROLLBACK);

  TXC_ASSIGN_OR_RETURN(std::optional<DecisionRecord> existing, journal_->Find(txn_id));
  bool lr_committed = false;
  for (const auto& [name, p] : binds_) {
    if (!HoldsDecisions(name, *p)) continue;
    auto ids = p->ListDecisions(options_.node_id);
    if (!ids.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "last-resource bind \"", name, "\" cannot be read, and it may hold this transaction's decision: ",
          ids.status().message()));
    }
    lr_committed |= std::find(ids->begin(), ids->end(), txn_id) != ids->end();
  }
  const bool holds_commit =
      lr_committed || (existing.has_value() && existing->state() != journal::ROLLING_BACK &&
                       existing->state() != journal::ROLLED_BACK);
  const bool holds_rollback =
      existing.has_value() && (existing->state() == journal::ROLLING_BACK ||
                               existing->state() == journal::ROLLED_BACK);
  if (commit && holds_rollback) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the journal already holds a ROLLBACK decision for ", txn_id, ": it cannot be committed"));
  }
  if (!commit && holds_commit) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", lr_committed ? "last resource" : "journal", " already holds a COMMIT decision for ",
        txn_id, ": it cannot be rolled back (recovery commits it)"));
  }

  DecisionRecord record;
  if (existing.has_value()) {
    record = *existing;
  } else {
    // No decision yet: the transaction's branches are what the binds list.
    record.set_txn_id(std::string(txn_id));
    record.set_state(commit ? journal::COMMITTING : journal::ROLLING_BACK);
    record.set_decided_at_unix_micros(resolution.at_unix_micros());
    for (const auto& [name, p] : binds_) {
      if (!p->capabilities().two_phase) continue;
      auto prepared = p->ListPrepared(options_.node_id);
      if (!prepared.ok()) {
        return absl::UnavailableError(absl::StrCat("bind \"", name, "\" cannot be listed: ",
                                                   prepared.status().message()));
      }
      for (const participants::PreparedBranch& b : *prepared) {
        if (b.xid.gtrid != txn_id) continue;
        BranchRecord* br = record.add_branches();
        br->set_bind(name);
        br->set_format_id(b.xid.format_id);
        br->set_gtrid(b.xid.gtrid);
        br->set_bqual(b.xid.bqual);
        br->set_state(journal::BRANCH_PREPARED);
      }
    }
    if (record.branches_size() == 0 && !lr_committed) {
      return absl::NotFoundError(absl::StrCat("no prepared branch and no decision of ", txn_id,
                                              " exists: nothing to resolve"));
    }
  }
  *record.add_resolutions() = resolution;
  if (record.state() == journal::COMMITTED || record.state() == journal::ROLLED_BACK) {
    // Already finished: record who asked, change nothing.
    (void)journal_->MarkFinished(record);
    return FromRecord(record);
  }
  // Who and why, durable before anything is applied.
  TXC_RETURN_IF_ERROR(LogDecisionTimed(record));
  Log(spdlog::level::warn, record.txn_id(),
      absl::StrCat("operator resolution ", commit ? "COMMIT" : "ROLLBACK", " by ", operator_identity, ": ",
                   reason));
  const bool done = DrivePhase2(record, /*first_attempt=*/!existing.has_value());
  {
    absl::MutexLock lock(&mu_);
    if (done) pending_.erase(record.txn_id());
    else ScheduleRetry(record.txn_id());  // the background pass finishes it
  }
  return FromRecord(record);
}

int Coordinator::CancelExpired() {
  AbortExpiredGlobals();
  const absl::Time now = clock_->Now();
  // Cancelling talks to the databases (a server that does not answer may
  // hold a cancel for long): never under mu_, which every Begin and
  // Commit takes. A transaction stays alive while its cancel runs.
  std::vector<Transaction*> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, txn] : live_) {
      if (now >= txn->deadline_) {
        txn->cancels_in_flight_.fetch_add(1, std::memory_order_relaxed);
        expired.push_back(txn);
      }
    }
  }
  for (Transaction* txn : expired) {
    txn->CancelRunning();
    txn->cancels_in_flight_.fetch_sub(1, std::memory_order_release);  // *txn may be gone after this
  }
  return static_cast<int>(expired.size());
}

RecoveryReport Coordinator::RecoverNow() { return RecoverPass(/*at_start=*/false); }

RecoveryReport Coordinator::RecoverPass(bool at_start) {
  absl::MutexLock recovery_lock(&recovery_mu_);
  RecoveryReport report;
  // At start, Start() has claimed already; later a lost claim is taken
  // again here (or found taken elsewhere, which halts decisions).
  if (!at_start) (void)ClaimBinds(/*at_start=*/false);
  if (absl::Status halted = DecisionHealth(); !halted.ok()) {
    // A decision may sit in the journal undurably, or another coordinator
    // may use this node id: neither re-driving decisions nor rolling
    // branches back as orphans is safe. The next start decides.
    Log(spdlog::level::warn, "", absl::StrCat("recovery pass skipped: ", halted.message()));
    return report;
  }
  const absl::Time now = clock_->Now();
  const uint64_t epoch = journal_->epoch();

  // (a) Re-drive every unfinished decision not driven by a live commit.
  auto unfinished = journal_->ScanUnfinished();
  absl::flat_hash_set<std::string> unfinished_ids;
  if (unfinished.ok()) {
    for (DecisionRecord& record : *unfinished) {
      unfinished_ids.insert(record.txn_id());
      {
        absl::MutexLock lock(&mu_);
        if (driving_.contains(record.txn_id())) continue;
        auto p = pending_.find(record.txn_id());
        if (!at_start && p != pending_.end() && p->second.next_attempt > now) {
          ++report.still_pending;
          continue;
        }
        driving_.insert(record.txn_id());
      }
      if ((record.state() != journal::COMMITTING && record.state() != journal::ROLLING_BACK) ||
          !TXC_FAILPOINT_STATUS("recovery.before_redrive").ok()) {
        absl::MutexLock lock(&mu_);
        driving_.erase(record.txn_id());
        ++report.still_pending;
        continue;  // heuristic (waits for an operator), or an injected fault
      }
      bool done = DrivePhase2(record, /*first_attempt=*/false);
      Log(spdlog::level::info, record.txn_id(),
          done ? "recovery: decision re-driven to the end" : "recovery: re-driven, branches still pending");
      TXC_FAILPOINT("recovery.after_redrive");
      absl::MutexLock lock(&mu_);
      driving_.erase(record.txn_id());
      if (done) {
        ++report.redriven;
        pending_.erase(record.txn_id());
        unfinished_ids.erase(record.txn_id());
      } else {
        ++report.still_pending;
        ScheduleRetry(record.txn_id());
      }
    }
  } else {
    ++report.still_pending;
  }

  // (b) Decisions held only by last resources.
  absl::flat_hash_set<std::string> lr_decided;
  bool lr_unknown = false;
  std::vector<Participant*> lr_binds;
  absl::flat_hash_map<std::string, int> fences;  // txn id → fence verdict, this pass
  for (const auto& [name, p] : binds_) {
    if (!HoldsDecisions(name, *p)) continue;
    lr_binds.push_back(p.get());
    auto ids = p->ListDecisions(options_.node_id);
    if (!ids.ok()) {
      lr_unknown = true;
      continue;
    }
    for (std::string& id : *ids) lr_decided.insert(std::move(id));
  }

  // (c) Prepared branches of this node on every bind.
  bool all_listed = true;
  absl::flat_hash_set<std::string> still_prepared;
  absl::flat_hash_set<std::string> seen_now;
  for (const auto& [name, p] : binds_) {
    if (!p->capabilities().two_phase) continue;
    bool claimed;
    {
      absl::MutexLock lock(&mu_);
      claimed = claimed_.contains(name);
    }
    // Not claimed: another coordinator may use this node id there.
    auto branches = claimed ? p->ListPrepared(options_.node_id)
                            : absl::StatusOr<std::vector<participants::PreparedBranch>>(
                                  absl::UnavailableError("node_id not claimed"));
    if (!branches.ok()) {
      all_listed = false;
      ++report.still_pending;
      continue;
    }
    for (const participants::PreparedBranch& b : *branches) {
      const std::string& txn_id = b.xid.gtrid;
      std::string key = absl::StrCat(name, "/", participants::XidToString(b.xid));
      seen_now.insert(key);
      if (unfinished_ids.contains(txn_id)) {
        still_prepared.insert(txn_id);
        continue;  // its journal record drives it
      }
      bool live;
      {
        absl::MutexLock lock(&mu_);
        live = live_.contains(txn_id) || driving_.contains(txn_id);
      }
      if (live) continue;
      bool committed = lr_decided.contains(txn_id);
      if (!committed) {
        auto record = journal_->Find(txn_id);
        if (!record.ok()) {
          ++report.still_pending;
          continue;
        }
        committed = record->has_value() &&
                    ((*record)->state() == journal::COMMITTED ||
                     (*record)->state() == journal::COMMITTING ||
                     (*record)->state() == journal::HEURISTIC_HAZARD);
      }
      if (committed) {
        absl::Status s = p->CommitPrepared(b.xid);
        if (s.ok() || s.code() == absl::StatusCode::kNotFound) {
          ++report.decided_committed;
        } else {
          still_prepared.insert(txn_id);
          ++report.still_pending;
        }
        continue;
      }
      if (lr_unknown) {
        ++report.still_pending;  // a last resource may hold its decision
        continue;
      }
      std::string node;
      uint64_t txn_epoch = 0, seq = 0;
      bool orphan = at_start;
      if (!orphan && ParseTxnId(txn_id, &node, &txn_epoch, &seq)) {
        absl::Time since = b.prepared_at;
        if (since == absl::InfinitePast()) {
          absl::MutexLock lock(&mu_);
          since = first_seen_.try_emplace(key, now).first->second;
        }
        orphan = txn_epoch < epoch || now - since >= options_.timeouts.orphan_safety;
      }
      if (!orphan) continue;
      // A service may still commit its own last resource's decision row
      // for this transaction (PrepareGlobal): fence it on every
      // last-resource bind first; a row already there means COMMIT.
      auto fence = fences.find(txn_id);
      if (fence == fences.end()) {
        int verdict = 0;  // 0 fenced everywhere, 1 committed, -1 undecided
        for (Participant* lr : lr_binds) {
          absl::StatusOr<bool> fenced = lr->FenceDecision(txn_id);
          if (!fenced.ok()) verdict = -1;
          else if (!*fenced && verdict == 0) verdict = 1;
        }
        fence = fences.emplace(txn_id, verdict).first;
      }
      if (fence->second == -1) {
        ++report.still_pending;
        continue;
      }
      if (fence->second == 1) {
        absl::Status s = p->CommitPrepared(b.xid);
        if (s.ok() || s.code() == absl::StatusCode::kNotFound) ++report.decided_committed;
        else ++report.still_pending;
        continue;
      }
      absl::Status s = TXC_FAILPOINT_STATUS("recovery.before_orphan_rollback");
      if (s.ok()) s = p->RollbackPrepared(b.xid);
      Log(spdlog::level::info, txn_id,
          absl::StrCat("recovery: orphaned prepared branch on bind \"", name, "\" rolled back: ",
                       s.ok() ? "OK" : s.ToString()));
      if (s.ok() || s.code() == absl::StatusCode::kNotFound) {
        ++report.orphans_rolled_back;
      } else {
        ++report.still_pending;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto it = first_seen_.begin(); it != first_seen_.end();) {
      if (!seen_now.contains(it->first)) first_seen_.erase(it++);
      else ++it;
    }
  }

  // (d) A last resource's decision whose branches are all finished: record
  // it in the journal's history, then drop the row.
  if (all_listed) {
    absl::flat_hash_map<std::string, std::vector<std::string>> forgets;
    for (const std::string& txn_id : lr_decided) {
      if (still_prepared.contains(txn_id)) continue;
      {
        absl::MutexLock lock(&mu_);
        if (live_.contains(txn_id) || driving_.contains(txn_id)) continue;
      }
      auto record = journal_->Find(txn_id);
      if (!record.ok()) continue;
      if (!record->has_value()) {
        DecisionRecord r;
        r.set_txn_id(txn_id);
        r.set_state(journal::COMMITTED);
        r.set_finished_at_unix_micros(absl::ToUnixMicros(now));
        if (!journal_->MarkFinished(r).ok()) continue;
      } else if ((*record)->state() == journal::COMMITTING) {
        continue;  // (a) finishes it
      }
      for (const auto& [name, p] : binds_) {
        if (HoldsDecisions(name, *p)) forgets[name].push_back(txn_id);
      }
    }
    if (!forgets.empty()) ForgetDecisions(forgets);  // after a journal sync
  }
  return report;
}

bool Coordinator::CollectGarbage() {
  const std::string node = options_.node_id;
  // The marker keeps the newest collected id of this node, so that
  // GetTransaction does not presume an abort for a collected commit.
  journal::CollectedMarkerFold newest = [&node](const std::string& marker, absl::string_view id) {
    std::string n;
    uint64_t e = 0, q = 0;
    if (!ParseTxnId(id, &n, &e, &q) || n != node || CollectedBefore(e, q, marker)) return marker;
    return std::string(id);
  };
  absl::StatusOr<int64_t> deleted = journal_->CollectGarbage(clock_->Now(), newest);
  if (!deleted.ok()) {
    Log(spdlog::level::warn, "", absl::StrCat("journal retention: ", deleted.status().message()));
    return false;
  }
  if (*deleted > 0) metrics_.Increment("txcoord_journal_history_collected_total", {}, *deleted);
  return *deleted >= options_.retention_max_per_pass;
}

void Coordinator::BackgroundLoop() {
  absl::Duration step = std::min(options_.recovery.interval, options_.recovery.backoff_initial);
  if (step < absl::Milliseconds(10)) step = absl::Milliseconds(10);
  absl::Time next_full = clock_->Now() + options_.recovery.interval;
  absl::Time next_gc = clock_->Now();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), step);
      if (stopping_) return;
    }
    if (clock_->Now() >= next_gc) {
      // A pass that hit its limit leaves more behind: the next step goes on.
      next_gc = CollectGarbage() ? clock_->Now() : clock_->Now() + options_.recovery.interval;
    }
    bool due = clock_->Now() >= next_full;
    if (!due) {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, p] : pending_) {
        if (p.next_attempt <= clock_->Now()) due = true;
      }
    }
    if (!due) continue;
    RecoverPass(/*at_start=*/false);
    next_full = clock_->Now() + options_.recovery.interval;
  }
}

}  // namespace txcoord::coordinator
