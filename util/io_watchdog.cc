#include "util/io_watchdog.h"

#include <sys/socket.h>

#include <atomic>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "util/thread_name.h"

namespace txcoord::util {
namespace {

std::atomic<uint64_t> g_fired{0};

// How long the thread sleeps with nothing armed.
constexpr absl::Duration kIdleRecheck = absl::Seconds(1);

class Watchdog {
 public:
  static Watchdog& Instance() {
    // Never destroyed: its thread runs for the process's life.
    static Watchdog* w = new Watchdog();
    return *w;
  }

  uint64_t Arm(int fd, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    const uint64_t id = ++next_id_;
    by_deadline_.emplace(std::make_pair(deadline, id), fd);
    deadline_of_[id] = deadline;
    if (!started_) {
      started_ = true;
      std::thread([this] {
        NameThisThread("txc-watchdog");
        Loop();
      }).detach();
    }
    // The thread sleeps until wake_at_: wake it only for an earlier
    // deadline (rare: calls arm about the same timeout, so a new deadline
    // is nearly always the latest), not for every call.
    if (deadline < wake_at_) changed_.Signal();
    return id;
  }

  // True when the watch had fired.
  bool Disarm(uint64_t id) {
    absl::MutexLock lock(&mu_);
    if (fired_.erase(id) > 0) return true;
    auto it = deadline_of_.find(id);
    if (it != deadline_of_.end()) {
      by_deadline_.erase(std::make_pair(it->second, id));
      deadline_of_.erase(it);
    }
    return false;
  }

 private:
  Watchdog() = default;

  void Loop() {
    absl::MutexLock lock(&mu_);
    for (;;) {
      const absl::Time now = absl::Now();
      if (by_deadline_.empty()) {
        // Nothing armed: look again within kIdleRecheck, so that a watch
        // armed meanwhile with a longer timeout needs no wake-up.
        wake_at_ = now + kIdleRecheck;
        changed_.WaitWithDeadline(&mu_, wake_at_);
        continue;
      }
      auto first = by_deadline_.begin();
      if (now < first->first.first) {
        wake_at_ = first->first.first;
        changed_.WaitWithDeadline(&mu_, wake_at_);
        continue;
      }
      // Under mu_: the watch is still armed, so its owner has not closed
      // (or reused) the descriptor.
      ::shutdown(first->second, SHUT_RDWR);
      g_fired.fetch_add(1, std::memory_order_relaxed);
      const uint64_t id = first->first.second;
      fired_.insert(id);
      deadline_of_.erase(id);
      by_deadline_.erase(first);
    }
  }

  absl::Mutex mu_;
  absl::CondVar changed_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // When the thread wakes next on its own (before it first sleeps: never).
  absl::Time wake_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<absl::Time, uint64_t>, int> by_deadline_ ABSL_GUARDED_BY(mu_);  // -> fd
  absl::flat_hash_map<uint64_t, absl::Time> deadline_of_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> fired_ ABSL_GUARDED_BY(mu_);  // fired, not yet disarmed
};

}  // namespace

IoWatchdog::Watch::Watch(int fd, absl::Duration timeout) {
  if (fd < 0 || timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration()) return;
  id_ = Watchdog::Instance().Arm(fd, absl::Now() + timeout);
}

bool IoWatchdog::Watch::Disarm() {
  if (id_ != 0) {
    fired_ = Watchdog::Instance().Disarm(id_);
    id_ = 0;
  }
  return fired_;
}

uint64_t IoWatchdog::fired_total() { return g_fired.load(std::memory_order_relaxed); }

}  // namespace txcoord::util
