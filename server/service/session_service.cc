#include "server/service/session_service.h"

#include <functional>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "server/service/convert.h"
#include "server/service/unary_call.h"
#include "util/failpoint.h"
#include "util/status_macros.h"

namespace txcoord::coordinator {
namespace {

absl::Status CheckBindAllowed(const Session& s, const std::string& bind) {
  if (!s.allowed_binds.empty() && !s.allowed_binds.count(bind)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bind \"", bind, "\" is not among the binds session ", s.id, " was opened with"));
  }
  return absl::OkStatus();
}

}  // namespace

SessionServiceImpl::SessionServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth,
                                       util::FiberLoops* fibers)
    : coordinator_(coordinator), sessions_(sessions), auth_(auth), fibers_(fibers) {
  coordinator_->metrics().DescribeCounter(
      "txcoord_one_shot_calls_total",
      "RunTransaction calls past their checks, by where they ran: on a fiber of an event loop, or on a thread "
      "(limits.event_loops 0).");
  coordinator_->metrics().DescribeCounter(
      "txcoord_session_calls_total",
      "Session calls (OpenSession … CloseSession, GetTransaction), by where they ran: on a fiber of an event loop, "
      "or on a thread (limits.event_loops 0).");
}

void SessionServiceImpl::Dispatch(FinishCall finish, std::function<grpc::Status()> call, const char* counter) {
  FinishOnFiberOrThread(fibers_, coordinator_->metrics(), counter, std::move(finish), std::move(call));
}

void SessionServiceImpl::ServeOn(AsyncEdge& edge) {
  auto dispatch = [this](FinishCall finish, std::function<grpc::Status()> run) {
    Dispatch(std::move(finish), std::move(run), "txcoord_session_calls_total");
  };
  using Self = SessionServiceImpl;
  ServeUnary(
      edge, [this](auto... a) { RequestOpenSession(a...); }, this, &Self::AnswerOpenSession, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestBegin(a...); }, this, &Self::AnswerBegin, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestExecute(a...); }, this, &Self::AnswerExecute, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestCommit(a...); }, this, &Self::AnswerCommit, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestRollback(a...); }, this, &Self::AnswerRollback, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestCloseSession(a...); }, this, &Self::AnswerCloseSession, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestGetTransaction(a...); }, this, &Self::AnswerGetTransaction, dispatch);
  edge.Add([this](auto... a) { RequestRunTransaction(a...); },
           [this](grpc::ServerContext* ctx, const grpc::ByteBuffer* in, grpc::ByteBuffer* out, FinishCall finish) {
             RunTransactionCall(ctx, in, out, std::move(finish));
           });
}

grpc::Status SessionServiceImpl::AnswerOpenSession(grpc::ServerContextBase* ctx,
                                                   const txcoord::v1::OpenSessionRequest* req,
                                                   txcoord::v1::OpenSessionResponse* resp) {
  TXC_IDENTIFY(who);
  std::vector<std::string> binds(req->binds().begin(), req->binds().end());
  for (const std::string& b : binds) {
    if (!coordinator_->HasBind(b)) {
      return ToGrpc(absl::InvalidArgumentError(absl::StrCat("unknown bind \"", b, "\"")));
    }
    if (auto st = Authenticator::RequireBind(who, b); !st.ok()) return ToGrpc(st);
  }
  if (binds.empty() && !who.all_binds) binds.assign(who.binds.begin(), who.binds.end());
  if (binds.empty() && !who.all_binds) {
    return ToGrpc(absl::PermissionDeniedError(absl::StrCat("identity \"", who.name, "\" may use no bind")));
  }
  std::map<std::string, std::string> labels(req->labels().begin(), req->labels().end());
  auto id = sessions_->Open(binds, FromProto(req->transaction_timeout()),
                            FromProto(req->idle_timeout()), std::move(labels), who.name);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_session_id(*id);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::AnswerBegin(grpc::ServerContextBase* ctx, const txcoord::v1::BeginRequest* req,
                                             txcoord::v1::BeginResponse* resp) {
  TXC_IDENTIFY(who);
  return ToGrpc(sessions_->WithSession(req->session_id(), [&](Session& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (s.txn != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", s.id, " already has transaction ", s.txn->id(), " open: commit or roll it back first"));
    }
    s.txn = coordinator_->Begin(s.id, s.labels, s.transaction_timeout, s.owner);
    resp->set_txn_id(s.txn->id());
    return absl::OkStatus();
  }, who.name));
}

grpc::Status SessionServiceImpl::AnswerExecute(grpc::ServerContextBase* ctx, const txcoord::v1::ExecuteRequest* req,
                                               txcoord::v1::ExecuteResponse* resp) {
  TXC_IDENTIFY(who);
  if (req->bind().empty()) return ToGrpc(absl::InvalidArgumentError("bind is required"));
  if (!coordinator_->HasBind(req->bind())) {
    return ToGrpc(absl::InvalidArgumentError(absl::StrCat("unknown bind \"", req->bind(), "\"")));
  }
  if (auto st = Authenticator::RequireBind(who, req->bind()); !st.ok()) return ToGrpc(st);
  if (req->max_rows() < 0) return ToGrpc(absl::InvalidArgumentError("max_rows must not be negative"));
  auto statements = StatementsFromProto(req->statements());
  if (!statements.ok()) return ToGrpc(statements.status());
  return ToGrpc(sessions_->WithSession(req->session_id(), [&](Session& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (auto st = CheckBindAllowed(s, req->bind()); !st.ok()) return st;
    if (s.txn == nullptr) s.txn = coordinator_->Begin(s.id, s.labels, s.transaction_timeout, s.owner);
    resp->set_txn_id(s.txn->id());
    auto results = coordinator_->Execute(*s.txn, req->bind(), *statements, req->max_rows());
    if (!results.ok()) return results.status();
    for (const auto& r : *results) ToProto(r, resp->add_results());
    return absl::OkStatus();
  }, who.name));
}

grpc::Status SessionServiceImpl::AnswerCommit(grpc::ServerContextBase* ctx, const txcoord::v1::CommitRequest* req,
                                              txcoord::v1::CommitResponse* resp) {
  TXC_IDENTIFY(who);
  return ToGrpc(sessions_->WithSession(req->session_id(), [&](Session& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (s.txn == nullptr || (!req->txn_id().empty() && req->txn_id() != s.txn->id())) {
      // A retried Commit after a lost reply: answer with the recorded outcome.
      std::string id = req->txn_id().empty() ? s.last_txn_id : req->txn_id();
      if (id.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("session ", s.id, " has no transaction to commit"));
      }
      if (!req->txn_id().empty() && s.txn == nullptr && req->txn_id() != s.last_txn_id) {
        return absl::FailedPreconditionError(absl::StrCat(
            "transaction ", req->txn_id(), " is not this session's last transaction"));
      }
      if (s.txn != nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "session ", s.id, " has transaction ", s.txn->id(), " open, not ", req->txn_id()));
      }
      auto info = coordinator_->GetTransaction(id);
      if (!info.ok()) return info.status();
      resp->set_txn_id(id);
      if (info->state == TxnState::kAborted) {
        return absl::AbortedError(absl::StrCat("transaction ", id, " was rolled back: ", info->abort_reason));
      }
      if (info->state != TxnState::kCommitted && info->state != TxnState::kCommitting) {
        return absl::FailedPreconditionError(absl::StrCat(
            "transaction ", id, " is ", TxnStateName(info->state)));
      }
      resp->set_state(ToProto(info->state));
      return absl::OkStatus();
    }
    resp->set_txn_id(s.txn->id());
    auto state = coordinator_->Commit(*s.txn);
    TxnState now = s.txn->state();
    if (now != TxnState::kActive && now != TxnState::kPreparing) {
      s.last_txn_id = s.txn->id();
      s.txn.reset();  // ended (committed, committing or rolled back)
    }
    if (!state.ok()) return state.status();
    resp->set_state(ToProto(*state));
    return absl::OkStatus();
  }, who.name));
}

grpc::Status SessionServiceImpl::AnswerRollback(grpc::ServerContextBase* ctx, const txcoord::v1::RollbackRequest* req,
                                                txcoord::v1::RollbackResponse* resp) {
  TXC_IDENTIFY(who);
  return ToGrpc(sessions_->WithSession(req->session_id(), [&](Session& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (s.txn == nullptr) {
      if (!s.last_txn_id.empty()) {
        auto info = coordinator_->GetTransaction(s.last_txn_id);
        if (info.ok() && info->state == TxnState::kAborted) {
          resp->set_txn_id(s.last_txn_id);
          return absl::OkStatus();  // already rolled back (a timeout, a failed commit)
        }
        if (info.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "transaction ", s.last_txn_id, " is already ", TxnStateName(info->state),
              ": it cannot be rolled back"));
        }
      }
      return absl::FailedPreconditionError(absl::StrCat("session ", s.id, " has no open transaction"));
    }
    resp->set_txn_id(s.txn->id());
    absl::Status st = coordinator_->Rollback(*s.txn, "rolled back by the client");
    if (st.ok()) {
      s.last_txn_id = s.txn->id();
      s.txn.reset();
    }
    return st;
  }, who.name));
}

grpc::Status SessionServiceImpl::AnswerCloseSession(grpc::ServerContextBase* ctx,
                                                    const txcoord::v1::CloseSessionRequest* req,
                                                    txcoord::v1::CloseSessionResponse*) {
  TXC_IDENTIFY(who);
  return ToGrpc(sessions_->Close(req->session_id(), who.name));
}

grpc::Status SessionServiceImpl::AnswerGetTransaction(grpc::ServerContextBase* ctx,
                                                      const txcoord::v1::GetTransactionRequest* req,
                                                      txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);  // any authenticated caller may ask for an outcome
  (void)who;
  return coordinator::AnswerGetTransaction(*coordinator_, *req, resp);
}

absl::Status SessionServiceImpl::AnswerRecorded(const std::string& txn_id,
                                               txcoord::v1::RunTransactionResponse* resp) {
  auto info = coordinator_->GetTransaction(txn_id);
  if (!info.ok()) return info.status();
  resp->set_txn_id(txn_id);
  resp->set_state(ToProto(info->state));
  switch (info->state) {
    case TxnState::kAborted:
      return absl::AbortedError(absl::StrCat("transaction ", txn_id, " was rolled back",
                                             info->abort_reason.empty() ? "" : ": ", info->abort_reason));
    case TxnState::kHeuristic:
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", txn_id, " is HEURISTIC (its outcome differs between binds or is unknown: see "
          "GetTransaction)", info->abort_reason.empty() ? "" : ": ", info->abort_reason));
    default:
      return absl::OkStatus();  // committed, or committing: the work ran once
  }
}

absl::StatusOr<SessionServiceImpl::Work> SessionServiceImpl::WorkOf(
    const Identity& who, const txcoord::v1::RunTransactionRequest& req) const {
  if (req.work_size() == 0) return absl::InvalidArgumentError("work is empty");
  if (req.max_rows() < 0) return absl::InvalidArgumentError("max_rows must not be negative");
  Work work;
  for (int i = 0; i < req.work_size(); ++i) {
    const auto& w = req.work(i);
    if (!coordinator_->HasBind(w.bind())) {
      return absl::InvalidArgumentError(absl::StrCat("work ", i + 1, ": unknown bind \"", w.bind(), "\""));
    }
    TXC_RETURN_IF_ERROR(Authenticator::RequireBind(who, w.bind()));
    if (w.statements_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("work ", i + 1, " has no statements"));
    }
    auto st = StatementsFromProto(w.statements());
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("work ", i + 1, ": ", st.status().message()));
    }
    work.emplace_back(w.bind(), std::move(*st));
  }
  return work;
}

void SessionServiceImpl::RunTransactionCall(grpc::ServerContextBase* ctx, const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out, FinishCall finish) {
  auto messages =
      std::make_shared<std::pair<txcoord::v1::RunTransactionRequest, txcoord::v1::RunTransactionResponse>>();
  absl::Status checked = ParseRequest(in, &messages->first);
  absl::StatusOr<Identity> who = checked.ok() ? auth_->Identify(*ctx) : absl::StatusOr<Identity>(checked);
  absl::StatusOr<Work> work = who.ok() ? WorkOf(*who, messages->first) : who.status();
  if (!work.ok()) {
    finish(ToGrpc(work.status()));
    return;
  }
  auto shared_work = std::make_shared<Work>(*std::move(work));
  Dispatch(
      std::move(finish),
      [this, out, messages, who = *std::move(who), shared_work] {
        return SerializeReply(RunWork(who, messages->first, std::move(*shared_work), &messages->second),
                              messages->second, out);
      },
      "txcoord_one_shot_calls_total");
}

grpc::Status SessionServiceImpl::RunWork(const Identity& who, const txcoord::v1::RunTransactionRequest& request,
                                         Work work, txcoord::v1::RunTransactionResponse* resp) {
  const txcoord::v1::RunTransactionRequest* req = &request;
  // Keys are per identity: one caller cannot read another's outcomes. The
  // outcome is journaled with the key (Coordinator::Begin), so a retry
  // after a restart finds it too; keys_ holds only the keys running now.
  const std::string key = req->idempotency_key().empty() ? "" : absl::StrCat(who.name, "/", req->idempotency_key());
  if (!key.empty()) {
    {
      absl::MutexLock lock(&keys_mu_);
      if (!keys_.insert(key).second) {
        return ToGrpc(absl::FailedPreconditionError(absl::StrCat(
            "a transaction with idempotency key \"", req->idempotency_key(), "\" is running: ask again when it returned")));
      }
    }
    // A cluster journal answers this when the key is taken below.
    absl::StatusOr<std::optional<std::string>> recorded =
        coordinator_->journal()->clustered() ? std::optional<std::string>() : coordinator_->FindIdempotencyKey(key);
    if (!recorded.ok() || recorded->has_value()) {
      absl::MutexLock lock(&keys_mu_);
      keys_.erase(key);
    }
    if (!recorded.ok()) return ToGrpc(recorded.status());
    if (recorded->has_value()) return ToGrpc(AnswerRecorded(**recorded, resp));
  }
  std::map<std::string, std::string> labels(req->labels().begin(), req->labels().end());
  std::unique_ptr<Transaction> txn =
      coordinator_->Begin("", std::move(labels), FromProto(req->timeout()), /*identity=*/"", key);
  absl::Cleanup running_done = [&] {
    if (key.empty()) return;
    absl::MutexLock lock(&keys_mu_);
    keys_.erase(key);
  };
  if (!key.empty()) {
    // Cluster journals: the key is taken for this transaction before any
    // work runs, so that a retry on another node finds it while it runs.
    absl::StatusOr<std::optional<std::string>> taken = coordinator_->ReserveIdempotencyKey(*txn);
    if (!taken.ok()) return ToGrpc(taken.status());
    if (taken->has_value()) return ToGrpc(AnswerRecorded(**taken, resp));
  }
  resp->set_txn_id(txn->id());
  auto run = coordinator_->RunOneShot(*txn, work, req->max_rows());
  TXC_FAILPOINT("session.run_transaction.before_reply");
  if (!run.ok()) return ToGrpc(run.status());
  for (const auto& per_bind : run->results) {
    for (const auto& r : per_bind) ToProto(r, resp->add_results());
  }
  resp->set_state(ToProto(run->state));
  return grpc::Status::OK;
}

}  // namespace txcoord::coordinator
