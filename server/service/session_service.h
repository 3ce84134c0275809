// txcoord.v1.SessionService.
//
// RunTransaction is on gRPC's callback API: its handler checks the request
// and hands the transaction to a fiber (util/fiber.h) when every bind's
// driver waits through the fiber loop (Capabilities::runs_on_fibers), else
// to a thread of the branch workers; either calls Finish. gRPC's threads
// never wait for a database.
//
// The other methods are on the sync server: each call runs on a thread of
// gRPC's pool, capped by ResourceQuota::SetMaxThreads
// (limits.server_threads), and blocks on its databases there.
#ifndef TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "txcoord/v1/session.grpc.pb.h"
#include "util/fiber.h"

namespace txcoord::coordinator {

class SessionServiceImpl final
    : public txcoord::v1::SessionService::WithCallbackMethod_RunTransaction<txcoord::v1::SessionService::Service> {
 public:
  // `fibers` may be null (no fibers: RunTransaction on threads).
  // REQUIRES: all outlive this object.
  SessionServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth,
                     util::FiberLoops* fibers);

  grpc::Status OpenSession(grpc::ServerContext*, const txcoord::v1::OpenSessionRequest*,
                           txcoord::v1::OpenSessionResponse*) override;
  grpc::Status Begin(grpc::ServerContext*, const txcoord::v1::BeginRequest*,
                     txcoord::v1::BeginResponse*) override;
  grpc::Status Execute(grpc::ServerContext*, const txcoord::v1::ExecuteRequest*,
                       txcoord::v1::ExecuteResponse*) override;
  grpc::Status Commit(grpc::ServerContext*, const txcoord::v1::CommitRequest*,
                      txcoord::v1::CommitResponse*) override;
  grpc::Status Rollback(grpc::ServerContext*, const txcoord::v1::RollbackRequest*,
                        txcoord::v1::RollbackResponse*) override;
  grpc::Status CloseSession(grpc::ServerContext*, const txcoord::v1::CloseSessionRequest*,
                            txcoord::v1::CloseSessionResponse*) override;
  grpc::Status GetTransaction(grpc::ServerContext*, const txcoord::v1::GetTransactionRequest*,
                              txcoord::v1::Transaction*) override;
  grpc::ServerUnaryReactor* RunTransaction(grpc::CallbackServerContext*, const txcoord::v1::RunTransactionRequest*,
                                           txcoord::v1::RunTransactionResponse*) override;

 private:
  using Work = std::vector<std::pair<std::string, Coordinator::Statements>>;
  // RunTransaction's work, checked (INVALID_ARGUMENT, PERMISSION_DENIED);
  // *on_fibers: whether it may run on a fiber.
  absl::StatusOr<Work> WorkOf(const Identity& who, const txcoord::v1::RunTransactionRequest& req,
                              bool* on_fibers) const;
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
