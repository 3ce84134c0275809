// txcoord.v1.SessionService on the gRPC synchronous server.
//
// Why the sync server: every handler blocks on databases (a statement, a
// PREPARE, an fsync). gRPC's sync server runs each call on a thread of its
// own pool, capped by ResourceQuota::SetMaxThreads (limits.server_threads):
// a slow database blocks only the calls that wait for it, never the
// completion queues. The callback API would need a second thread pool to
// keep blocking work off gRPC's event threads, for the same effect.
#ifndef TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace txcoord::coordinator {

class SessionServiceImpl final : public txcoord::v1::SessionService::Service {
 public:
  // REQUIRES: all three outlive this object.
  SessionServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth);

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
  grpc::Status RunTransaction(grpc::ServerContext*, const txcoord::v1::RunTransactionRequest*,
                              txcoord::v1::RunTransactionResponse*) override;

 private:
  // RunTransaction's answer for a retry whose key names `txn_id`: its
  // recorded outcome (OK with the state, ABORTED, or FAILED_PRECONDITION
  // when HEURISTIC).
  absl::Status AnswerRecorded(const std::string& txn_id, txcoord::v1::RunTransactionResponse* resp);
  Coordinator* const coordinator_;
  SessionManager* const sessions_;
  const Authenticator* const auth_;
  // RunTransaction idempotency keys → txn id ("" while running). In memory:
  // a key is honoured until this process restarts (see docs/design.md).
  absl::Mutex keys_mu_;
  // Idempotency keys of RunTransaction calls running now (finished ones
  // are found in the journal).
  absl::flat_hash_set<std::string> keys_ ABSL_GUARDED_BY(keys_mu_);
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_SESSION_SERVICE_H_
