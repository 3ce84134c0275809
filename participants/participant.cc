#include "participants/participant.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "util/status_macros.h"
#include "participants/noop/noop_participant.h"
#include "participants/mariadb/mariadb_participant.h"
#include "participants/odbc/odbc_participant.h"
#include "participants/postgres/postgres_participant.h"
#include "participants/statement_guard.h"

namespace txcoord::participants {

absl::StatusOr<BatchOutcome> Participant::RunBatch(const Xid& xid, absl::Duration lock_timeout,
                                                   const std::vector<Statement>& statements,
                                                   int max_rows, bool prepare) {
  BatchOutcome out;
  const std::string dialect = capabilities().dialect;
  for (size_t i = 0; i < statements.size(); ++i) {
    absl::Status refused = CheckBranchSql(bind(), dialect, statements[i].first);
    if (!refused.ok()) {
      return absl::Status(refused.code(), absl::StrCat("statement ", i + 1, ": ", refused.message()));
    }
  }
  TXC_ASSIGN_OR_RETURN(out.branch, Begin(xid, lock_timeout));
  for (size_t i = 0; i < statements.size(); ++i) {
    auto r = out.branch->Execute(statements[i].first, statements[i].second, max_rows);
    if (!r.ok()) {
      (void)out.branch->Rollback();
      return absl::Status(r.status().code(), absl::StrCat("statement ", i + 1, ": ", r.status().message()));
    }
    out.results.push_back(*std::move(r));
  }
  if (prepare) {
    TXC_ASSIGN_OR_RETURN(out.vote, out.branch->Prepare());  // rolled back on error
    out.branch.reset();
  }
  return out;
}

CommitBatchOutcome Participant::RunAndCommit(const Xid& xid, absl::Duration lock_timeout,
                                             const std::vector<Statement>& statements, int max_rows) {
  CommitBatchOutcome out;
  absl::StatusOr<BatchOutcome> batch = RunBatch(xid, lock_timeout, statements, max_rows, /*prepare=*/false);
  if (!batch.ok()) {
    out.status = batch.status();  // nothing committed, nothing left behind
    return out;
  }
  out.status = batch->branch->CommitOnePhase();
  out.commit_failed = !out.status.ok();
  out.outcome_unknown = out.status.code() == absl::StatusCode::kUnavailable;
  if (out.status.ok()) out.results = std::move(batch->results);
  return out;
}

absl::Status RequireActiveBranch(absl::string_view bind, absl::string_view op, BranchState state,
                                 const absl::Status& failure) {
  if (state == BranchState::kActive) return absl::OkStatus();
  if (state == BranchState::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("bind ", bind, ": ", op, " after a failed statement: ", failure.message()));
  }
  return absl::FailedPreconditionError(absl::StrCat("bind ", bind, ": ", op, " on a finished branch"));
}

absl::Status BranchEndedError(absl::string_view bind, absl::string_view what) {
  absl::Status s = absl::FailedPreconditionError(absl::StrCat(
      "bind ", bind, ": the database ended this branch's transaction (", what,
      ") while txcoord held it open; its work may be committed"));
  s.SetPayload(kBranchEndedPayload, absl::Cord("1"));
  return s;
}

bool IsBranchEnded(const absl::Status& s) { return s.GetPayload(kBranchEndedPayload).has_value(); }

absl::Status Participant::EnsureDecisionTable() {
  return absl::UnimplementedError(absl::StrCat("bind ", bind(), ": no decision table on this driver"));
}

absl::Status Participant::ForgetDecisions(const std::vector<std::string>& txn_ids) {
  absl::Status first;
  for (const std::string& id : txn_ids) {
    absl::Status s = ForgetDecision(id);
    if (first.ok()) first = s;
  }
  return first;
}

absl::StatusOr<bool> Participant::FenceDecision(absl::string_view) {
  return absl::UnimplementedError(absl::StrCat("bind ", bind(), ": no decision table on this driver"));
}

absl::StatusOr<std::unique_ptr<Participant>> CreateParticipant(const BindOptions& options) {
  if (options.name.empty()) return absl::InvalidArgumentError("bind name is empty");
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bind ", options.name, ": pool_size must be at least 1"));
  }
  if (options.driver == "postgres") return CreatePostgresParticipant(options);
  if (options.driver == "odbc") return CreateOdbcParticipant(options);
  if (options.driver == "mariadb") return CreateMariadbParticipant(options);
  if (options.driver == "noop") return CreateNoopParticipant(options);  // test-only
  return absl::InvalidArgumentError(absl::StrCat("bind ", options.name, ": unknown driver \"",
                                                 options.driver, "\" (postgres, mariadb, odbc or the test-only noop)"));
}

absl::Status Participant::ClaimNode(absl::string_view) { return absl::OkStatus(); }

std::string Participant::node_claim_kind() const { return ""; }

}  // namespace txcoord::participants
