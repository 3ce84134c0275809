// Connections still attached to the branch they prepared, kept for phase 2.
//
// MariaDB keeps an XA branch attached to the session that prepared it until
// that session ends: another connection gets XAER_NOTA for a while after a
// close, and an empty (read-only) prepared branch is discarded with its
// session. So a MariaDB participant parks the preparing connection by xid;
// phase 2 runs XA COMMIT / XA ROLLBACK on it and returns it to the pool,
// instead of closing it and opening another. A connection parked longer
// than `max_age` (phase 2 never came from this process) is closed at the
// next Park, which detaches its branch for any other connection.
//
// Thread-safe.
#ifndef TXCOORD_PARTICIPANTS_PARKED_CONNECTIONS_H_
#define TXCOORD_PARTICIPANTS_PARKED_CONNECTIONS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "participants/connection_pool.h"
#include "participants/xid.h"

namespace txcoord::participants {

template <typename Conn>
class ParkedConnections {
 public:
  using Lease = typename ConnectionPool<Conn>::Lease;

  explicit ParkedConnections(absl::Duration max_age = absl::Seconds(10)) : max_age_(max_age) {}
  ~ParkedConnections() {
    // Never back to the pool: a parked connection is inside a prepared branch.
    for (auto& [xid, p] : parked_) p.lease.Discard();
  }

  void Park(const Xid& xid, Lease lease) {
    std::vector<Lease> stale;
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      for (auto it = parked_.begin(); it != parked_.end();) {
        if (now - it->second.since > max_age_) {
          stale.push_back(std::move(it->second.lease));
          parked_.erase(it++);
        } else {
          ++it;
        }
      }
      parked_[XidToString(xid)] = Parked{std::move(lease), now};
    }
    for (auto& l : stale) l.Discard();
  }

  // The connection attached to `xid`'s prepared branch, if parked here
  // (an empty Lease otherwise).
  Lease Unpark(const Xid& xid) {
    absl::MutexLock lock(&mu_);
    auto it = parked_.find(XidToString(xid));
    if (it == parked_.end()) return {};
    Lease lease = std::move(it->second.lease);
    parked_.erase(it);
    return lease;
  }

 private:
  struct Parked {
    Lease lease;
    absl::Time since;
  };
  const absl::Duration max_age_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Parked> parked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_PARKED_CONNECTIONS_H_
