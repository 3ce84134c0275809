// txcoord.v1.TransactionService: global transactions whose branches the
// services prepare on their own connections (see docs/transaction-rpcs.md).
// On gRPC's async API (server/service/async_edge.h); a call runs on a fiber of
// the event loops (a callback participant's RPCs park the fiber too), or
// with no loops (limits.event_loops 0) on a thread of the branch workers.
#ifndef TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_

#include "coordinator/coordinator.h"
#include "server/auth.h"
#include "server/service/async_edge.h"
#include "txcoord/v1/transaction.grpc.pb.h"
#include "util/fiber.h"

namespace txcoord::coordinator {

class TransactionServiceImpl final
    : public txcoord::v1::TransactionService::WithRawMethod_BeginGlobal<
          txcoord::v1::TransactionService::WithRawMethod_PrepareGlobal<
              txcoord::v1::TransactionService::WithRawMethod_AddBranch<
                  txcoord::v1::TransactionService::WithRawMethod_Execute<
                      txcoord::v1::TransactionService::WithRawMethod_RegisterBranch<
                          txcoord::v1::TransactionService::WithRawMethod_CommitGlobal<
                              txcoord::v1::TransactionService::WithRawMethod_RollbackGlobal<
                                  txcoord::v1::TransactionService::WithRawMethod_GetTransaction<
                                      txcoord::v1::TransactionService::Service>>>>>>>> {
 public:
  // REQUIRES: all three outlive this object. `fibers` null: every call on a thread.
  TransactionServiceImpl(Coordinator* coordinator, const Authenticator* auth, util::FiberLoops* fibers);

  // Serves every method on `edge` (gRPC's async API). REQUIRES: before
  // edge.Start().
  void ServeOn(AsyncEdge& edge);

 private:
  // Each call answered.
  grpc::Status AnswerBeginGlobal(grpc::ServerContextBase*, const txcoord::v1::BeginGlobalRequest*,
                                 txcoord::v1::BeginGlobalResponse*);
  grpc::Status AnswerPrepareGlobal(grpc::ServerContextBase*, const txcoord::v1::PrepareGlobalRequest*,
                                   txcoord::v1::PrepareGlobalResponse*);
  grpc::Status AnswerAddBranch(grpc::ServerContextBase*, const txcoord::v1::AddBranchRequest*, txcoord::v1::BranchXid*);
  grpc::Status AnswerExecute(grpc::ServerContextBase*, const txcoord::v1::GlobalExecuteRequest*,
                             txcoord::v1::ExecuteResponse*);
  grpc::Status AnswerRegisterBranch(grpc::ServerContextBase*, const txcoord::v1::RegisterBranchRequest*,
                                    txcoord::v1::RegisterBranchResponse*);
  grpc::Status AnswerCommitGlobal(grpc::ServerContextBase*, const txcoord::v1::CommitGlobalRequest*,
                                  txcoord::v1::Transaction*);
  grpc::Status AnswerRollbackGlobal(grpc::ServerContextBase*, const txcoord::v1::RollbackGlobalRequest*,
                                    txcoord::v1::Transaction*);
  grpc::Status AnswerGetTransaction(grpc::ServerContextBase*, const txcoord::v1::GetTransactionRequest*,
                                    txcoord::v1::Transaction*);

  Coordinator* const coordinator_;
  const Authenticator* const auth_;
  util::FiberLoops* const fibers_;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_
