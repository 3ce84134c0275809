// Sessions: one active transaction each, calls serialized, limits and
// timeouts enforced.
//
// A call on a session that is already running another call gets
// FAILED_PRECONDITION at once (it does not wait): a client must not issue
// concurrent calls on one session. A session holds a bind's connection only
// while its transaction has that bind enlisted. The reaper rolls back a
// transaction past its timeout (cancelling a running statement first) and
// closes sessions idle past their idle timeout.
//
// Thread-safe.
#ifndef TXCOORD_COORDINATOR_SESSION_MANAGER_H_
#define TXCOORD_COORDINATOR_SESSION_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"

namespace txcoord::coordinator {

struct Session {
  std::string id;
  std::string owner;                    // the identity that opened it
  std::set<std::string> allowed_binds;  // empty: every bind
  absl::Duration transaction_timeout;
  absl::Duration idle_timeout;
  std::map<std::string, std::string> labels;

  // Held for the whole of one call (TryLock: a second call is refused).
  absl::Mutex call_mu;
  std::unique_ptr<Transaction> txn ABSL_GUARDED_BY(call_mu);
  std::string last_txn_id ABSL_GUARDED_BY(call_mu);  // the last one that ended
  std::atomic<int64_t> last_used_us{0};
  std::atomic<bool> closed{false};
};

struct SessionOptions {
  int max_sessions = 10000;
  int max_sessions_per_identity = 1000;
  absl::Duration default_idle_timeout = absl::Seconds(60);
  absl::Duration max_transaction_timeout = absl::Hours(1);
  absl::Duration reap_interval = absl::Milliseconds(200);
};

class SessionManager {
 public:
  // REQUIRES: "coordinator" and "clock" outlive this object.
  SessionManager(Coordinator* coordinator, SessionOptions options, Clock* clock);
  ~SessionManager();

  // RESOURCE_EXHAUSTED at max_sessions; INVALID_ARGUMENT unknown bind or
  // negative timeouts.
  // RESOURCE_EXHAUSTED also when `owner` has max_sessions_per_identity open.
  absl::StatusOr<std::string> Open(const std::vector<std::string>& binds,
                                   absl::Duration transaction_timeout,
                                   absl::Duration idle_timeout,
                                   std::map<std::string, std::string> labels,
                                   const std::string& owner = "");

  // Runs `fn` with the session's call lock held. NOT_FOUND unknown session
  // (with the reason when the id is from another node or epoch);
  // FAILED_PRECONDITION another call is running on it.
  // PERMISSION_DENIED when `owner` is set and another identity opened it.
  absl::Status WithSession(absl::string_view id,
                           const std::function<absl::Status(Session&)>& fn,
                           const std::string& owner = "");

  // Rolls back an open transaction and forgets the session.
  absl::Status Close(absl::string_view id, const std::string& owner = "");

  // Refuses new sessions from now on (Drain).
  void StopAccepting();
  int size() const;
  // One reaper pass (also run every reap_interval by a thread).
  void ReapExpired();

 private:
  std::shared_ptr<Session> Find(absl::string_view id) const;

  Coordinator* const coordinator_;
  const SessionOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> per_owner_ ABSL_GUARDED_BY(mu_);
  void ForgetLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_SESSION_MANAGER_H_
