// txcoord.v1.AdminService: what operators and txctl use. On gRPC's async
// API (server/service/async_edge.h); every call runs on a thread of the
// branch workers (a recovery pass or a bind check may block), never on
// gRPC's threads.
#ifndef TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_

#include <atomic>

#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "server/auth.h"
#include "server/cluster.h"
#include "server/peers.h"
#include "server/service/async_edge.h"
#include "txcoord/v1/admin.grpc.pb.h"

namespace txcoord::coordinator {

class AdminServiceImpl final
    : public txcoord::v1::AdminService::WithRawMethod_ListTransactions<
          txcoord::v1::AdminService::WithRawMethod_GetTransaction<txcoord::v1::AdminService::WithRawMethod_ListInDoubt<
              txcoord::v1::AdminService::WithRawMethod_ResolveTransaction<
                  txcoord::v1::AdminService::WithRawMethod_ListBinds<
                      txcoord::v1::AdminService::WithRawMethod_CheckBinds<
                          txcoord::v1::AdminService::WithRawMethod_RecoverNow<
                              txcoord::v1::AdminService::WithRawMethod_Drain<
                                  txcoord::v1::AdminService::WithRawMethod_ListNodes<
                                      txcoord::v1::AdminService::Service>>>>>>>>> {
 public:
  // REQUIRES: all three outlive this object.
  AdminServiceImpl(Coordinator* coordinator, SessionManager* sessions, const Authenticator* auth);

  // Serves every method on `edge`. REQUIRES: before edge.Start().
  void ServeOn(AsyncEdge& edge);

  // Cluster mode: where adoptions are reported from (set once, at start).
  void SetCluster(const ClusterMember* cluster) { cluster_.store(cluster); }
  // Cluster mode: the channels to the other nodes, for ResolveTransaction on
  // a transaction of another node (set once, at start).
  void SetPeers(PeerChannels* peers) { peers_.store(peers); }

 private:
  // Each call answered, on a branch worker thread (server/service/unary_call.h).
  grpc::Status AnswerListTransactions(grpc::ServerContextBase*, const txcoord::v1::ListTransactionsRequest*,
                                      txcoord::v1::ListTransactionsResponse*);
  grpc::Status AnswerGetTransaction(grpc::ServerContextBase*, const txcoord::v1::GetTransactionRequest*,
                                    txcoord::v1::Transaction*);
  grpc::Status AnswerListInDoubt(grpc::ServerContextBase*, const txcoord::v1::ListInDoubtRequest*,
                                 txcoord::v1::ListInDoubtResponse*);
  grpc::Status AnswerResolveTransaction(grpc::ServerContextBase*, const txcoord::v1::ResolveTransactionRequest*,
                                        txcoord::v1::Transaction*);
  grpc::Status AnswerListBinds(grpc::ServerContextBase*, const txcoord::v1::ListBindsRequest*,
                               txcoord::v1::ListBindsResponse*);
  grpc::Status AnswerCheckBinds(grpc::ServerContextBase*, const txcoord::v1::CheckBindsRequest*,
                                txcoord::v1::ListBindsResponse*);
  grpc::Status AnswerRecoverNow(grpc::ServerContextBase*, const txcoord::v1::RecoverNowRequest*,
                                txcoord::v1::RecoverNowResponse*);
  grpc::Status AnswerDrain(grpc::ServerContextBase*, const txcoord::v1::DrainRequest*, txcoord::v1::DrainResponse*);
  grpc::Status AnswerListNodes(grpc::ServerContextBase*, const txcoord::v1::ListNodesRequest*,
                               txcoord::v1::ListNodesResponse*);
  void FillBinds(bool check, txcoord::v1::ListBindsResponse* out);
  // ResolveTransaction for node `owner`'s transaction, sent to that node
  // when a process holds its id and advertises an address.
  grpc::Status ForwardResolve(const std::string& owner, grpc::ServerContextBase* ctx,
                              const txcoord::v1::ResolveTransactionRequest& req, txcoord::v1::Transaction* resp);
  Coordinator* const coordinator_;
  SessionManager* const sessions_;
  const Authenticator* const auth_;
  std::atomic<const ClusterMember*> cluster_{nullptr};
  std::atomic<PeerChannels*> peers_{nullptr};
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_ADMIN_SERVICE_H_
