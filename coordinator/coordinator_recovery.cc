// Coordinator, part of its implementation (see coordinator.h): Node claims, admin listings and resolution, expiry, recovery passes,
// the journal's retention and the background loop.
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

using internal::BranchStateName;
using internal::CollectedBefore;
using internal::ParseTxnId;
using internal::XidOf;
using journal::BranchRecord;
using journal::DecisionRecord;
using participants::Participant;

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
    TXC_ASSIGN_OR_RETURN(std::vector<DecisionRecord> unfinished, journal_->ScanUnfinished());
    absl::MutexLock lock(&mu_);
    absl::flat_hash_set<std::string> listed;
    for (const auto& [id, txn] : live_) {
      listed.insert(id);
      TxnInfo info = Describe(*txn);
      if (keep(info)) out.push_back(std::move(info));
    }
    for (const DecisionRecord& r : unfinished) {
      // Once per transaction: a live one's own state is the newest. A
      // commit whose END is not written yet is what its client was told
      // (its remembered outcome), not the journal's COMMITTING.
      if (!listed.insert(r.txn_id()).second) continue;
      auto remembered = recent_.find(r.txn_id());
      const bool ended = remembered != recent_.end() && (remembered->second.state == TxnState::kCommitted ||
                                                         remembered->second.state == TxnState::kAborted);
      TxnInfo info = ended ? remembered->second : FromRecord(r);
      if (keep(info)) out.push_back(std::move(info));
    }
  } else {
    int64_t us;
    if (!absl::SimpleAtoi(filter.page_token, &us)) {
      return absl::InvalidArgumentError("page_token is not one this server handed out");
    }
    before = absl::FromUnixMicros(us);
  }
  // The first page holds every live and unfinished transaction; when they
  // fill it, the next page starts the history (the last page may be empty).
  std::string next;
  if (static_cast<int>(out.size()) >= page_size) next = absl::StrCat(absl::ToUnixMicros(before));
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
  // Cluster mode: whether a node id is one of this cluster's (asked once per node).
  absl::flat_hash_map<std::string, bool> peers;
  auto is_peer = [&](const std::string& node) {
    if (!journal_->clustered()) return false;
    auto [it, added] = peers.try_emplace(node, false);
    if (added) it->second = journal_->NodeOf(node).ok();
    return it->second;
  };
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
      if (b.xid.format_id == participants::kTxcFormatId) d.node_id = participants::NodeIdOfGtrid(b.xid.gtrid);
      if (d.node_id != options_.node_id) {
        d.kind = InDoubtBranch::Kind::kForeign;
        if (!d.node_id.empty() && is_peer(d.node_id)) {
          d.kind = InDoubtBranch::Kind::kPeer;
          d.txn_id = b.xid.gtrid;
        }
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
  return CancelRunningOf([now](const Transaction& txn) { return now >= txn.deadline_; });
}

int Coordinator::CancelRunningStatements() {
  return CancelRunningOf([](const Transaction&) { return true; });
}

int Coordinator::CancelRunningOf(const std::function<bool(const Transaction&)>& which) {
  // Cancelling talks to the databases (a server that does not answer may
  // hold a cancel for long): never under mu_, which every Begin and
  // Commit takes. A transaction stays alive while its cancel runs.
  std::vector<Transaction*> chosen;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, txn] : live_) {
      if (which(*txn)) {
        txn->cancels_in_flight_.fetch_add(1, std::memory_order_relaxed);
        chosen.push_back(txn);
      }
    }
  }
  for (Transaction* txn : chosen) {
    txn->CancelRunning();
    txn->cancels_in_flight_.fetch_sub(1, std::memory_order_release);  // *txn may be gone after this
  }
  return static_cast<int>(chosen.size());
}

RecoveryReport Coordinator::RecoverNow() { return RecoverPass(/*at_start=*/false); }

RecoveryReport Coordinator::RecoverPass(bool at_start) {
  absl::MutexLock recovery_lock(&recovery_mu_);
  RecoveryReport report;
  // At start, Start() has claimed already; later a lost claim is taken
  // again here (or found taken elsewhere, which halts decisions).
  if (!at_start) (void)ClaimBinds(/*at_start=*/false);
  if (absl::Status halted = CommitHealth(); !halted.ok()) {
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
  absl::flat_hash_set<std::string> seen_txns;  // with a prepared branch now, before this pass acted
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
      seen_txns.insert(txn_id);
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
      {
        // A decision write without reply that the journal has settled
        // since (this pass runs only when it has): no decision means none.
        absl::MutexLock lock(&mu_);
        if (settling_.contains(txn_id)) orphan = true;
      }
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
    if (all_listed) {
      for (auto it = settling_.begin(); it != settling_.end();) {
        if (!still_prepared.contains(*it) && !seen_txns.contains(*it)) settling_.erase(it++);
        else ++it;
      }
    }
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
