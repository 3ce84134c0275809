#include "coordinator/service/transaction_service.h"

#include "absl/strings/str_cat.h"
#include "coordinator/service/convert.h"

namespace txcoord::coordinator {

TransactionServiceImpl::TransactionServiceImpl(Coordinator* coordinator, const Authenticator* auth)
    : coordinator_(coordinator), auth_(auth) {}

grpc::Status TransactionServiceImpl::BeginGlobal(grpc::ServerContext* ctx, const txcoord::v1::BeginGlobalRequest* req,
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

grpc::Status TransactionServiceImpl::RegisterBranch(grpc::ServerContext* ctx,
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
  return ToGrpc(coordinator_->RegisterBranch(req->txn_id(), req->bind(), req->xid(), who.name));
}

grpc::Status TransactionServiceImpl::CommitGlobal(grpc::ServerContext* ctx, const txcoord::v1::CommitGlobalRequest* req,
                                                  txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  auto info = coordinator_->CommitGlobal(req->txn_id(), who.name);
  if (!info.ok()) {
    // A retried CommitGlobal after a lost reply: the recorded outcome.
    if (info.status().code() == absl::StatusCode::kNotFound) {
      auto recorded = coordinator_->GetTransaction(req->txn_id());
      if (recorded.ok() && (recorded->state == TxnState::kCommitted || recorded->state == TxnState::kCommitting)) {
        ToProto(*recorded, resp);
        return grpc::Status::OK;
      }
    }
    return ToGrpc(info.status());
  }
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::RollbackGlobal(grpc::ServerContext* ctx,
                                                    const txcoord::v1::RollbackGlobalRequest* req,
                                                    txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  if (req->txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  auto info = coordinator_->RollbackGlobal(req->txn_id(), who.name);
  if (!info.ok()) return ToGrpc(info.status());
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::GetTransaction(grpc::ServerContext* ctx,
                                                    const txcoord::v1::GetTransactionRequest* req,
                                                    txcoord::v1::Transaction* resp) {
  TXC_IDENTIFY(who);
  (void)who;
  return AnswerGetTransaction(*coordinator_, *req, resp);
}

}  // namespace txcoord::coordinator
