// txcoord.v1.TransactionService: global transactions whose branches the
// services prepare on their own connections (see docs/transaction-rpcs.md).
#ifndef TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_

#include "server/auth.h"
#include "coordinator/coordinator.h"
#include "txcoord/v1/transaction.grpc.pb.h"

namespace txcoord::coordinator {

class TransactionServiceImpl final : public txcoord::v1::TransactionService::Service {
 public:
  // REQUIRES: both outlive this object.
  TransactionServiceImpl(Coordinator* coordinator, const Authenticator* auth);

  grpc::Status BeginGlobal(grpc::ServerContext*, const txcoord::v1::BeginGlobalRequest*,
                           txcoord::v1::BeginGlobalResponse*) override;
  grpc::Status PrepareGlobal(grpc::ServerContext*, const txcoord::v1::PrepareGlobalRequest*,
                             txcoord::v1::PrepareGlobalResponse*) override;
  grpc::Status AddBranch(grpc::ServerContext*, const txcoord::v1::AddBranchRequest*, txcoord::v1::BranchXid*) override;
  grpc::Status Execute(grpc::ServerContext*, const txcoord::v1::GlobalExecuteRequest*,
                       txcoord::v1::ExecuteResponse*) override;
  grpc::Status RegisterBranch(grpc::ServerContext*, const txcoord::v1::RegisterBranchRequest*,
                              txcoord::v1::RegisterBranchResponse*) override;
  grpc::Status CommitGlobal(grpc::ServerContext*, const txcoord::v1::CommitGlobalRequest*,
                            txcoord::v1::Transaction*) override;
  grpc::Status RollbackGlobal(grpc::ServerContext*, const txcoord::v1::RollbackGlobalRequest*,
                              txcoord::v1::Transaction*) override;
  grpc::Status GetTransaction(grpc::ServerContext*, const txcoord::v1::GetTransactionRequest*,
                              txcoord::v1::Transaction*) override;

 private:
  Coordinator* const coordinator_;
  const Authenticator* const auth_;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_
