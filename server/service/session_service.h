// txcoord.v1.SessionService on gRPC's async API (server/service/async_edge.h).
//
// Each handler hands its call to a fiber (util/fiber.h) or, with no event
// loops (limits.event_loops 0), to a thread of the branch workers, which
// runs it and calls Finish: gRPC's threads never wait for a database.
#ifndef TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "server/auth.h"
#include "server/service/async_edge.h"
#include "txcoord/v1/session.grpc.pb.h"
#include "util/fiber.h"

namespace txcoord::coordinator {

class SessionServiceImpl final
    : public txcoord::v1::SessionService::WithRawMethod_OpenSession<
          txcoord::v1::SessionService::WithRawMethod_Begin<
              txcoord::v1::SessionService::WithRawMethod_Execute<
                  txcoord::v1::SessionService::WithRawMethod_Commit<
                      txcoord::v1::SessionService::WithRawMethod_Rollback<
                          txcoord::v1::SessionService::WithRawMethod_CloseSession<
                              txcoord::v1::SessionService::WithRawMethod_GetTransaction<
                                  txcoord::v1::SessionService::WithRawMethod_RunTransaction<
                                      txcoord::v1::SessionService::Service>>>>>>>> {
 public:
  // `fibers` may be null (no fibers: RunTransaction on threads).
  // REQUIRES: all outlive this object.
  SessionServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth,
                     util::FiberLoops* fibers);

  // Serves every method on `edge` (gRPC's async API). REQUIRES: before
  // edge.Start().
  void ServeOn(AsyncEdge& edge);

 private:
  // RunTransaction: parses and checks its work before it runs it.
  void RunTransactionCall(grpc::ServerContextBase* ctx, const grpc::ByteBuffer* in, grpc::ByteBuffer* out,
                          FinishCall finish);
  // Counts the call in `counter` (by runs_on), runs it on a fiber (or a
  // branch worker without loops), then finishes it.
  void Dispatch(FinishCall finish, std::function<grpc::Status()> call, const char* counter);
  // Each call answered, run by Dispatch (each may block on its databases).
  grpc::Status AnswerOpenSession(grpc::ServerContextBase*, const txcoord::v1::OpenSessionRequest*,
                                 txcoord::v1::OpenSessionResponse*);
  grpc::Status AnswerBegin(grpc::ServerContextBase*, const txcoord::v1::BeginRequest*, txcoord::v1::BeginResponse*);
  grpc::Status AnswerExecute(grpc::ServerContextBase*, const txcoord::v1::ExecuteRequest*,
                             txcoord::v1::ExecuteResponse*);
  grpc::Status AnswerCommit(grpc::ServerContextBase*, const txcoord::v1::CommitRequest*, txcoord::v1::CommitResponse*);
  grpc::Status AnswerRollback(grpc::ServerContextBase*, const txcoord::v1::RollbackRequest*,
                              txcoord::v1::RollbackResponse*);
  grpc::Status AnswerCloseSession(grpc::ServerContextBase*, const txcoord::v1::CloseSessionRequest*,
                                  txcoord::v1::CloseSessionResponse*);
  grpc::Status AnswerGetTransaction(grpc::ServerContextBase*, const txcoord::v1::GetTransactionRequest*,
                                    txcoord::v1::Transaction*);
  using Work = std::vector<std::pair<std::string, Coordinator::Statements>>;
  // RunTransaction's work, checked (INVALID_ARGUMENT, PERMISSION_DENIED).
  absl::StatusOr<Work> WorkOf(const Identity& who, const txcoord::v1::RunTransactionRequest& req) const;
  // RunTransaction after the checks: blocks until the outcome.
  grpc::Status RunWork(const Identity& who, const txcoord::v1::RunTransactionRequest& req, Work work,
                       txcoord::v1::RunTransactionResponse* resp);
  // RunTransaction's answer for a retry whose key names `txn_id`: its
  // recorded outcome (OK with the state, ABORTED, or FAILED_PRECONDITION
  // when HEURISTIC).
  absl::Status AnswerRecorded(const std::string& txn_id, txcoord::v1::RunTransactionResponse* resp);
  Coordinator* const coordinator_;
  SessionManager* const sessions_;
  const Authenticator* const auth_;
  util::FiberLoops* const fibers_;
  // RunTransaction idempotency keys → txn id ("" while running). In memory:
  // a key is honoured until this process restarts (see docs/design.md).
  absl::Mutex keys_mu_;
  // Idempotency keys of RunTransaction calls running now (finished ones
  // are found in the journal).
  absl::flat_hash_set<std::string> keys_ ABSL_GUARDED_BY(keys_mu_);
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_
