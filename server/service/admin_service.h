// txcoord.v1.AdminService: what operators and txctl use.
#ifndef TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_

#include <atomic>

#include "server/auth.h"
#include "server/cluster.h"
#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "txcoord/v1/admin.grpc.pb.h"

namespace txcoord::coordinator {

class AdminServiceImpl final : public txcoord::v1::AdminService::Service {
 public:
  // REQUIRES: all three outlive this object.
  AdminServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth);

  grpc::Status ListTransactions(grpc::ServerContext*, const txcoord::v1::ListTransactionsRequest*,
                                txcoord::v1::ListTransactionsResponse*) override;
  grpc::Status GetTransaction(grpc::ServerContext*, const txcoord::v1::GetTransactionRequest*,
                              txcoord::v1::Transaction*) override;
  grpc::Status ListInDoubt(grpc::ServerContext*, const txcoord::v1::ListInDoubtRequest*,
                           txcoord::v1::ListInDoubtResponse*) override;
  grpc::Status ResolveTransaction(grpc::ServerContext*, const txcoord::v1::ResolveTransactionRequest*,
                                  txcoord::v1::Transaction*) override;
  grpc::Status ListBinds(grpc::ServerContext*, const txcoord::v1::ListBindsRequest*,
                         txcoord::v1::ListBindsResponse*) override;
  grpc::Status CheckBinds(grpc::ServerContext*, const txcoord::v1::CheckBindsRequest*,
                          txcoord::v1::ListBindsResponse*) override;
  grpc::Status RecoverNow(grpc::ServerContext*, const txcoord::v1::RecoverNowRequest*,
                          txcoord::v1::RecoverNowResponse*) override;
  grpc::Status Drain(grpc::ServerContext*, const txcoord::v1::DrainRequest*,
                     txcoord::v1::DrainResponse*) override;
  grpc::Status ListNodes(grpc::ServerContext*, const txcoord::v1::ListNodesRequest*,
                         txcoord::v1::ListNodesResponse*) override;

  // Cluster mode: where adoptions are reported from (set once, at start).
  void SetCluster(const ClusterMember* cluster) { cluster_.store(cluster); }

 private:
  void FillBinds(bool check, txcoord::v1::ListBindsResponse* out);
  Coordinator* const coordinator_;
  SessionManager* const sessions_;
  const Authenticator* const auth_;
  std::atomic<const ClusterMember*> cluster_{nullptr};
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_
