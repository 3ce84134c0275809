// One txcoord process: journal, binds, coordinator, sessions and the gRPC
// server, started in that order (recovery runs before the port opens) and
// stopped in reverse. Used by main() and by tests (on 127.0.0.1:0).
#ifndef TXCOORD_SERVER_SERVER_H_
#define TXCOORD_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "coordinator/session_manager.h"
#include "journal/etcd_journal.h"
#include "server/config.h"
#include "util/fiber.h"

namespace grpc {
class Server;
}
namespace httplib {
class Server;
}

namespace txcoord::coordinator {

class SessionServiceImpl;
class Authenticator;
class AdminServiceImpl;
class AsyncEdge;
class HealthServiceImpl;
class TransactionServiceImpl;

class ClusterMember;
class Console;
class PeerChannels;

// The exit code of a process that lost its etcd lease (cluster mode): it
// stopped so that a restart takes its id back with a new epoch.
inline constexpr int kExitLeaseLost = 75;

class TxcoordServer {
 public:
  // Opens the journal, creates every bind's participant, runs recovery, and
  // starts serving on config.listen. A bind that cannot be reached is not
  // fatal (it is retried); a bad config or journal is.
  static absl::StatusOr<std::unique_ptr<TxcoordServer>> Start(const Config& config,
                                                              Clock* clock = RealClock());
  ~TxcoordServer();

  // The address actually bound ("127.0.0.1:<port>").
  const std::string& address() const { return address_; }
  // The /metrics address ("" when metrics_listen is not set).
  const std::string& metrics_address() const { return metrics_address_; }
  // The admin console (nullptr when console_listen is not set).
  const Console* console() const { return console_.get(); }
  // Sets the gRPC health statuses from the binds' health now (also done
  // every 5 s): "" and "txcoord.v1.SessionService" serve when every bind
  // answers; "txcoord.bind.<name>" per bind.
  void UpdateHealth();
  Coordinator* coordinator() { return coordinator_.get(); }
  SessionManager* sessions() { return sessions_.get(); }
  void Wait();
  void Shutdown();
  // Calls `fn` once, from another thread, after the server stopped by
  // itself (a lost etcd lease; exit_code() tells) — at once if it already
  // has. The binary's main thread waits for it beside its signals.
  void NotifyWhenStoppedByItself(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(health_mu_);
  // 0, or kExitLeaseLost when the server stopped because its etcd lease
  // was lost.
  int exit_code() {
    absl::MutexLock lock(&health_mu_);
    return lease_lost_ ? kExitLeaseLost : 0;
  }
  // Cluster mode only (nullptr otherwise).
  ClusterMember* cluster() { return cluster_.get(); }
  journal::Journal* journal() { return journal_.get(); }

 private:
  TxcoordServer() = default;
  void HealthLoop();
  std::unique_ptr<journal::Journal> journal_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<PeerChannels> peers_;       // cluster mode
  std::unique_ptr<util::FiberLoops> fibers_;  // null with limits.event_loops 0
  std::unique_ptr<SessionServiceImpl> session_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<TransactionServiceImpl> transaction_service_;
  std::unique_ptr<HealthServiceImpl> health_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<AsyncEdge> edge_;  // serves every service's calls but reflection's
  std::string address_;
  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  std::string metrics_address_;
  std::unique_ptr<Console> console_;
  absl::Mutex health_mu_;
  bool stopping_ ABSL_GUARDED_BY(health_mu_) = false;
  bool lease_lost_ ABSL_GUARDED_BY(health_mu_) = false;
  bool shutting_down_for_lease_ ABSL_GUARDED_BY(health_mu_) = false;
  bool stopped_by_itself_ ABSL_GUARDED_BY(health_mu_) = false;  // its Shutdown has run
  std::function<void()> on_stopped_by_itself_ ABSL_GUARDED_BY(health_mu_);
  journal::EtcdJournal* etcd_journal_ = nullptr;  // journal_, in cluster mode
  std::unique_ptr<ClusterMember> cluster_;
  std::thread health_thread_;
  // A stop's grace: calls still running at its end (one waiting for a row
  // lock that a vanished client's transaction holds would wait until its
  // transaction's timeout) have their statements cancelled, again every
  // 500 ms, until the gRPC server has finished every call.
  void StartCancellingAfter(absl::Time deadline);
  absl::Mutex shutdown_mu_;
  bool cancelling_started_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  bool calls_done_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  std::thread canceller_;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVER_H_
