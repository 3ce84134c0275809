// txcoord.v1.TransactionService: global transactions whose branches the
// services prepare on their own connections (see docs/transaction-rpcs.md).
// On gRPC's callback API, never on gRPC's threads: a call runs on a fiber of
// the event loops (a callback participant's RPCs park the fiber too), or
// with no loops (limits.event_loops 0) on a thread of the branch workers.
#ifndef TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_TRANSACTION_SERVICE_H_

#include "coordinator/coordinator.h"
#include "server/auth.h"
#include "txcoord/v1/transaction.grpc.pb.h"
#include "util/fiber.h"

namespace txcoord::coordinator {

class TransactionServiceImpl final
    : public txcoord::v1::TransactionService::WithRawCallbackMethod_BeginGlobal<
          txcoord::v1::TransactionService::WithRawCallbackMethod_PrepareGlobal<
              txcoord::v1::TransactionService::WithRawCallbackMethod_AddBranch<
                  txcoord::v1::TransactionService::WithRawCallbackMethod_Execute<
                      txcoord::v1::TransactionService::WithRawCallbackMethod_RegisterBranch<
                          txcoord::v1::TransactionService::WithRawCallbackMethod_CommitGlobal<
                              txcoord::v1::TransactionService::WithRawCallbackMethod_RollbackGlobal<
                                  txcoord::v1::TransactionService::WithRawCallbackMethod_GetTransaction<
                                      txcoord::v1::TransactionService::Service>>>>>>>> {
 public:
  // REQUIRES: all three outlive this object. `fibers` null: every call on a thread.
  TransactionServiceImpl(Coordinator* coordinator, const Authenticator* auth, util::FiberLoops* fibers);

  grpc::ServerUnaryReactor* BeginGlobal(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                        grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* PrepareGlobal(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                          grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* AddBranch(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                      grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext*, const grpc::ByteBuffer*, grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* RegisterBranch(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                           grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* CommitGlobal(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                         grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* RollbackGlobal(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                           grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* GetTransaction(grpc::CallbackServerContext*, const grpc::ByteBuffer*,
                                           grpc::ByteBuffer*) override;

 private:
  // A call: parsed, then run on a fiber or a thread (see above).
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* TransactionCall(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out,
                                            grpc::Status (TransactionServiceImpl::*call)(grpc::ServerContextBase*,
                                                                                         const Request*, Response*));
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
