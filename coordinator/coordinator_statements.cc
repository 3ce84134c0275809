// Coordinator, part of its implementation (see coordinator.h): statements —
// Execute in a session, the checks of a transaction's work, the binds'
// work run at the same time, and RunTransaction's one-shot path.
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
#include "participants/statement_guard.h"
#include "participants/xid.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::coordinator {

using internal::BranchStateName;
using internal::CollectedBefore;
using internal::ParseTxnId;
using internal::XidOf;

using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;

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
  // Per bind, once: its participant, whether it commits in two phases (not
  // the last resource), and whether it prepares in its batch.
  std::vector<Participant*> binds(work.size());
  std::vector<char> two_phase(work.size()), prepare_here(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    binds[i] = FindBind(work[i].first);
    two_phase[i] = binds[i]->capabilities().two_phase && static_cast<int>(i) != lr_index;
    prepare_here[i] = prepare && two_phase[i];
  }
  // Binds whose driver can send their batch without waiting for the reply
  // (the native MariaDB driver) send it first; the others then run (on
  // branch workers beside this thread), and the first ones' replies are
  // read last: all batches in flight at once with fewer thread hand-offs.
  std::vector<std::unique_ptr<participants::PendingCall<absl::StatusOr<participants::BatchOutcome>>>> started(
      work.size());
  std::vector<absl::Time> step_starts(work.size());
  std::vector<size_t> blocking;
  for (size_t i = 0; i < work.size(); ++i) {
    step_starts[i] = absl::Now();
    started[i] = binds[i]->StartBatch(xids[i], txn.deadline_ - now, work[i].second, max_rows,
                                             prepare_here[i]);
    if (started[i] == nullptr) blocking.push_back(i);
  }
  auto finish = [&](size_t i, absl::StatusOr<participants::BatchOutcome> batch) {
    const std::string& bind = work[i].first;
    metrics_.Observe("txcoord_branch_step_duration_seconds", absl::Now() - step_starts[i],
                     {{"bind", bind}, {"step", "work"}});
    if (prepare_here[i]) {
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
    e->participant = binds[i];
    e->branch = std::move(batch->branch);
    e->xid = xids[i];
    e->two_phase = two_phase[i];
    if (prepare_here[i]) {
      e->read_only = batch->vote == participants::Vote::kReadOnly;
      e->prepared = !e->read_only;
    }
    results[i] = std::move(batch->results);
    enlisted[i] = std::move(e);
    if (prepare_here[i]) TXC_FAILPOINT("commit.after_prepare");
  };
  RunParallel(blocking.size(), [&](size_t k) {
    const size_t i = blocking[k];
    step_starts[i] = absl::Now();
    finish(i, binds[i]->RunBatch(xids[i], txn.deadline_ - now, work[i].second, max_rows, prepare_here[i]));
  });
  for (size_t i = 0; i < work.size(); ++i) {
    if (started[i] != nullptr) finish(i, started[i]->Finish());
  }
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

}  // namespace txcoord::coordinator
