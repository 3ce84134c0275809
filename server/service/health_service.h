// grpc.health.v1.Health, served on the async edge (server/service/
// async_edge.h) beside txcoord's own services: Check, and Watch for
// clients that follow a status as it changes (gRPC's client-side health
// checking). gRPC's built-in health service runs on the callback API,
// whose threads would poll beside the edge's.
//
// Statuses are set by name (TxcoordServer::UpdateHealth). Check answers
// NOT_FOUND for a name never set; Watch sends SERVICE_UNKNOWN for it and
// keeps watching, as the protocol asks.
#ifndef TXCOORD_SERVER_SERVICE_HEALTH_SERVICE_H_
#define TXCOORD_SERVER_SERVICE_HEALTH_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/service/async_edge.h"

namespace txcoord::coordinator {

class HealthServiceImpl final : public grpc::health::v1::Health::WithRawMethod_Check<
                                    grpc::health::v1::Health::WithRawMethod_Watch<grpc::health::v1::Health::Service>> {
 public:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  HealthServiceImpl() = default;
  // REQUIRES: Shutdown() was called and the server has stopped.
  ~HealthServiceImpl() override;

  // Serves Check and Watch on `edge`. REQUIRES: before edge.Start(); `edge`
  // outlives this object's calls.
  void ServeOn(AsyncEdge& edge);

  // `service`'s status ("" is the whole server); watchers of it are sent
  // the new one. Ignored after Shutdown.
  void SetServingStatus(const std::string& service, bool serving);

  // Every status NOT_SERVING from now on; each watcher is sent that, then
  // its stream ends (UNAVAILABLE), so the server's Shutdown does not wait
  // for streams that never end by themselves. Before the server's Shutdown.
  void Shutdown();

 private:
  class Watcher;
  grpc::Status AnswerCheckCall(grpc::ServerContextBase*, const grpc::health::v1::HealthCheckRequest* request,
                               grpc::health::v1::HealthCheckResponse* response);
  // Asks for one more Watch call.
  void AskWatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The status to report for `service`: SERVICE_UNKNOWN if never set.
  Status StatusOf(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AsyncEdge* edge_ = nullptr;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Status> statuses_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);  // arrived, not yet done
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_HEALTH_SERVICE_H_
