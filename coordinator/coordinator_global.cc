// Coordinator, part of its implementation (see coordinator.h): Global transactions of services that run their own SQL
// (TransactionService): minting xids, registered and callback branches,
// PrepareGlobal with a service's last resource, CommitGlobal/RollbackGlobal.
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

namespace txcoord::coordinator {

using participants::CallbackParticipant;
using participants::kCallbackPrefix;

using internal::BranchStateName;
using internal::CollectedBefore;
using internal::ParseTxnId;
using internal::XidOf;
using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;

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

}  // namespace txcoord::coordinator
