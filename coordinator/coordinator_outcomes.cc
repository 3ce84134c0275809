// Coordinator, part of its implementation (see coordinator.h): How transactions end: aborts and heuristic outcomes, the journal's END
// writer, phase 2 and its retries, and the outcome GetTransaction answers.
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
#include "participants/callback/callback_participant.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/logging.h"
#include "coordinator/parallel.h"
#include "participants/statement_guard.h"
#include "participants/xid.h"
#include "util/failpoint.h"
#include "util/status_macros.h"
#include "coordinator/coordinator_internal.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {

using internal::BranchStateName;
using internal::CollectedBefore;
using internal::ParseTxnId;
using internal::XidOf;
using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;

absl::Status Coordinator::LogDecisionTimed(const DecisionRecord& record) {
  absl::Time start = absl::Now();
  absl::Status s = journal_->LogDecision(record);
  metrics_.Observe("txcoord_journal_write_duration_seconds", absl::Now() - start);
  return s;
}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::QueueEnd(journal::DecisionRecord record) {
  absl::MutexLock lock(&end_mu_);
  if (!end_thread_.joinable()) end_thread_ = std::thread([this] {
    util::NameThisThread("txc-ends");
    EndLoop();
  });
  ends_.push_back(std::move(record));
}

void Coordinator::EndLoop() {
  // Decision rows of finished transactions, by last-resource bind: removed
  // at most every 100 ms, all with one journal sync and one DELETE per bind.
  constexpr absl::Duration kForgetEvery = absl::Milliseconds(100);
  constexpr absl::Duration kEndLinger = absl::Milliseconds(10);
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
      // Only QueueEnd fills it: commits decided here, finished the first time.
      absl::Status s = journal_->MarkDecidedFinished(batch);
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
    // Let the next ENDs gather: this thread then wakes at most every
    // kEndLinger under load, not once per transaction. Nobody waits for an
    // END: recovery skips what is in driving_ meanwhile, and the admin
    // views show the outcome the client was told (RememberOutcome).
    if (!batch.empty() && !stopping) absl::SleepFor(kEndLinger);
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

bool Coordinator::DrivePhase2(DecisionRecord& record, bool first_attempt, bool end_async) {
  const bool rollback = record.state() == journal::ROLLING_BACK;
  std::vector<BranchRecord*> todo;
  for (BranchRecord& b : *record.mutable_branches()) {
    if (b.state() == journal::BRANCH_PREPARED) todo.push_back(&b);
  }
  std::vector<absl::Status> results(todo.size());
  // As in ExecuteOnBinds: calls a driver can send without waiting (XA
  // COMMIT on the native MariaDB driver's parked connection) go first and
  // are read after the others ran.
  std::vector<std::unique_ptr<participants::PendingCall<absl::Status>>> started(todo.size());
  std::vector<absl::Time> step_starts(todo.size());
  std::vector<size_t> blocking;
  for (size_t i = 0; i < todo.size(); ++i) {
    Participant* p = FindBind(todo[i]->bind());
    step_starts[i] = absl::Now();
    if (p != nullptr) started[i] = p->StartFinishPrepared(XidOf(*todo[i]), /*commit=*/!rollback);
    if (started[i] == nullptr) blocking.push_back(i);
  }
  auto done = [&](size_t i) {
    metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_starts[i],
                     {{"bind", todo[i]->bind()}, {"step", rollback ? "rollback" : "commit"}});
    if (!rollback) TXC_FAILPOINT("commit.after_branch_committed");
  };
  RunParallel(blocking.size(), [&](size_t k) {
    const size_t i = blocking[k];
    BranchRecord* b = todo[i];
    Participant* p = FindBind(b->bind());
    if (p == nullptr) {
      results[i] = absl::FailedPreconditionError(absl::StrCat(
          "bind \"", b->bind(), "\" is not in the configuration any more"));
      return;
    }
    participants::Xid xid = XidOf(*b);
    step_starts[i] = absl::Now();
    results[i] = rollback ? p->RollbackPrepared(xid) : p->CommitPrepared(xid);
    done(i);
  });
  for (size_t i = 0; i < todo.size(); ++i) {
    if (started[i] == nullptr) continue;
    results[i] = started[i]->Finish();
    done(i);
  }
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
    if (!journal_->clustered()) {
      return absl::NotFoundError(absl::StrCat("transaction ", txn_id, " belongs to node \"", node,
                                              "\"; this is \"", options_.node_id, "\""));
    }
    return GetForeignTransaction(txn_id, node, epoch, seq);
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

absl::StatusOr<TxnInfo> Coordinator::GetForeignTransaction(absl::string_view txn_id, const std::string& node,
                                                           uint64_t epoch, uint64_t seq) {
  // Another node's transaction, from the shared journal.
  TXC_ASSIGN_OR_RETURN(std::optional<DecisionRecord> record, journal_->FindOnNode(node, txn_id));
  if (record.has_value()) return FromRecord(*record);
  TXC_ASSIGN_OR_RETURN(std::string marker, journal_->CollectedMarkerOf(node));
  if (CollectedBefore(epoch, seq, marker)) {
    return absl::NotFoundError(absl::StrCat(
        "transaction ", txn_id, " has no record any more: it was rolled back, or it finished before node \"", node,
        "\"'s journal retention deleted its record"));
  }
  TXC_ASSIGN_OR_RETURN(journal::NodeStatus status, journal_->NodeOf(node));
  if (status.epoch == static_cast<int64_t>(epoch) && status.adopted_by.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "transaction ", txn_id, " has no decision yet: node \"", node, "\" still runs epoch ", epoch,
        " (it is in progress there, or was never started); ask again later, or ask that node"));
  }
  if (status.epoch != 0 && status.epoch < static_cast<int64_t>(epoch)) {
    return absl::NotFoundError(absl::StrCat("transaction ", txn_id, " was never started: node \"", node,
                                            "\" has not reached epoch ", epoch));
  }
  // Epoch `epoch` of that node is over (its id is held by a newer process
  // or an adopter, or by nobody): it can never write a decision again, so
  // no decision means none (presumed abort).
  TxnInfo info;
  info.txn_id = std::string(txn_id);
  info.state = TxnState::kAborted;
  info.abort_reason = absl::StrCat("no commit decision was recorded (presumed abort; node \"", node, "\" epoch ",
                                   epoch, " is over)");
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

CoordinatorStats Coordinator::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace txcoord::coordinator
