#include "server/service/transaction_service.h"

#include "absl/strings/str_cat.h"
#include "server/service/convert.h"
#include "server/service/unary_call.h"

namespace txcoord::coordinator {

TransactionServiceImpl::TransactionServiceImpl(Coordinator* coordinator, const Authenticator* auth,
                                               util::FiberLoops* fibers)
    : coordinator_(coordinator), auth_(auth), fibers_(fibers) {
  coordinator_->metrics().DescribeCounter(
      "txcoord_transaction_calls_total",
      "TransactionService calls, by where they ran: on a fiber of an event loop, or on a thread "
      "(limits.event_loops 0).");
}

void TransactionServiceImpl::ServeOn(AsyncEdge& edge) {
  auto dispatch = [this](FinishCall finish, std::function<grpc::Status()> run) {
    FinishOnFiberOrThread(fibers_, coordinator_->metrics(), "txcoord_transaction_calls_total", std::move(finish),
                          std::move(run));
  };
  using Self = TransactionServiceImpl;
  ServeUnary(
      edge, [this](auto... a) { RequestBeginGlobal(a...); }, this, &Self::AnswerBeginGlobal, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestPrepareGlobal(a...); }, this, &Self::AnswerPrepareGlobal, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestAddBranch(a...); }, this, &Self::AnswerAddBranch, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestExecute(a...); }, this, &Self::AnswerExecute, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestRegisterBranch(a...); }, this, &Self::AnswerRegisterBranch, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestCommitGlobal(a...); }, this, &Self::AnswerCommitGlobal, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestRollbackGlobal(a...); }, this, &Self::AnswerRollbackGlobal, dispatch);
  ServeUnary(
      edge, [this](auto... a) { RequestGetTransaction(a...); }, this, &Self::AnswerGetTransaction, dispatch);
}

grpc::Status TransactionServiceImpl::AnswerBeginGlobal(grpc::ServerContextBase* ctx,
                                                       const txcoord::v1::BeginGlobalRequest* req,
                                                       txcoord::v1::BeginGlobalResponse* resp) {
  TXC_IDENTIFY(who);
  std::vector<std::string> binds(req->binds().begin(), req->binds().end());
  for (const std::string& b : binds) {
    if (coordinator_->HasBind(b)) {
      if (auto st = Authenticator::RequireBind(who, b); !st.ok()) return ToGrpc(st);
    }
  }
  std::map<std::string, std::string> labels(req->labels().begin(), req->labels().end());
  auto begun = coordinator_->BeginGlobal(binds, FromProto(req->timeout()), std::move(labels), who.name);
  if (!begun.ok()) return ToGrpc(begun.status());
  resp->set_txn_id(begun->first);
  for (const auto& [bind, xid] : begun->second) {
    auto* x = resp->add_xids();
    x->set_bind(bind);
    x->set_xid(xid);
  }
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerPrepareGlobal(grpc::ServerContextBase* ctx,
                                                         const txcoord::v1::PrepareGlobalRequest* req,
                                                         txcoord::v1::PrepareGlobalResponse* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty() || req->last_resource_bind().empty()) {
    return ToGrpc(absl::InvalidArgumentError("txn_id and last_resource_bind are required"));
  }
  if (coordinator_->HasBind(req->last_resource_bind())) {
    if (auto st = Authenticator::RequireBind(who, req->last_resource_bind()); !st.ok()) return ToGrpc(st);
  }
  auto payload = coordinator_->PrepareGlobal(req->txn_id(), who.name, req->last_resource_bind());
  if (!payload.ok()) return ToGrpc(payload.status());
  resp->set_txn_id(req->txn_id());
  resp->set_payload(*payload);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerAddBranch(grpc::ServerContextBase* ctx,
                                                     const txcoord::v1::AddBranchRequest* req,
                                                     txcoord::v1::BranchXid* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty() || req->bind().empty()) {
    return ToGrpc(absl::InvalidArgumentError("txn_id and bind are required"));
  }
  if (coordinator_->HasBind(req->bind())) {
    if (auto st = Authenticator::RequireBind(who, req->bind()); !st.ok()) return ToGrpc(st);
  }
  auto xid = coordinator_->AddBranch(req->txn_id(), req->bind(), who.name);
  if (!xid.ok()) return ToGrpc(xid.status());
  resp->set_bind(req->bind());
  resp->set_xid(*xid);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerExecute(grpc::ServerContextBase* ctx,
                                                   const txcoord::v1::GlobalExecuteRequest* req,
                                                   txcoord::v1::ExecuteResponse* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty() || req->bind().empty()) {
    return ToGrpc(absl::InvalidArgumentError("txn_id and bind are required"));
  }
  if (req->max_rows() < 0) return ToGrpc(absl::InvalidArgumentError("max_rows must not be negative"));
  if (!coordinator_->HasBind(req->bind())) {
    return ToGrpc(absl::InvalidArgumentError(absl::StrCat("unknown bind \"", req->bind(), "\"")));
  }
  if (auto st = Authenticator::RequireBind(who, req->bind()); !st.ok()) return ToGrpc(st);
  auto statements = StatementsFromProto(req->statements());
  if (!statements.ok()) return ToGrpc(statements.status());
  auto results = coordinator_->ExecuteGlobal(req->txn_id(), who.name, req->bind(), *statements, req->max_rows());
  if (!results.ok()) return ToGrpc(results.status());
  resp->set_txn_id(req->txn_id());
  for (const auto& r : *results) ToProto(r, resp->add_results());
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerRegisterBranch(grpc::ServerContextBase* ctx,
                                                          const txcoord::v1::RegisterBranchRequest* req,
                                                          txcoord::v1::RegisterBranchResponse*) {
  TXC_IDENTIFY(who);
  if (!req->participant_address().empty()) {
    // A callback participant: xid is its branch id; no bind.
    if (req->txn_id().empty() || req->xid().empty()) {
      return ToGrpc(absl::InvalidArgumentError("txn_id and xid (the branch id) are required"));
    }
    return ToGrpc(coordinator_->RegisterBranch(req->txn_id(), "", req->xid(), who.name, req->participant_address()));
  }
  if (req->txn_id().empty() || req->bind().empty() || req->xid().empty()) {
    return ToGrpc(absl::InvalidArgumentError("txn_id, bind and xid are required"));
  }
  if (auto st = Authenticator::RequireBind(who, req->bind()); !st.ok()) return ToGrpc(st);
  return ToGrpc(coordinator_->RegisterBranch(req->txn_id(), req->bind(), req->xid(), who.name, "", req->read_only()));
}

grpc::Status TransactionServiceImpl::AnswerCommitGlobal(grpc::ServerContextBase* ctx,
                                                        const txcoord::v1::CommitGlobalRequest* req,
                                                        txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  auto info = coordinator_->CommitGlobal(req->txn_id(), who.name);
  if (!info.ok()) return ToGrpc(info.status());
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerRollbackGlobal(grpc::ServerContextBase* ctx,
                                                          const txcoord::v1::RollbackGlobalRequest* req,
                                                          txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  auto info = coordinator_->RollbackGlobal(req->txn_id(), who.name);
  if (!info.ok()) return ToGrpc(info.status());
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AnswerGetTransaction(grpc::ServerContextBase* ctx,
                                                          const txcoord::v1::GetTransactionRequest* req,
                                                          txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  (void)who;
  return coordinator::AnswerGetTransaction(*coordinator_, *req, resp);
}

}  // namespace txcoord::coordinator
