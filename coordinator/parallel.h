// RunParallel: a transaction's branch calls (PREPARE, COMMIT PREPARED, a
// bind's statements) run concurrently on a fixed set of worker threads.
#ifndef TXCOORD_COORDINATOR_PARALLEL_H_
#define TXCOORD_COORDINATOR_PARALLEL_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "util/fiber.h"
#include "util/worker_threads.h"

namespace txcoord::coordinator {

// The threads that run the extra branches of RunParallel off fibers, and
// the calls that run on threads (server/service/unary_call.h). Every
// concurrent multi-bind transaction holds one worker per extra branch for
// the length of a database round trip: 32 workers made 64 two-bind
// transactions queue for them. At most 256, each ending after 10 s idle.
// Tasks never wait for other tasks, so a bounded number of threads cannot
// deadlock; at the bound they queue, and RunParallel's own thread always
// runs one branch itself. Lives until exit.
util::WorkerThreads& BranchWorkers();

// Runs fn(0..n-1) concurrently and returns when all are done, each index
// exactly once: fn(0) on this thread, the others offered to the branch
// workers (on a fiber: started on new fibers of its loop). A branch no
// worker has started by the time this thread is free again runs here too
// (it takes it back): waiting for a worker to be scheduled is never faster
// than running the branch, and on a busy machine it cost a sleep and a
// wake-up per branch.
template <typename Fn>
void RunParallel(size_t n, Fn fn) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  if (util::OnFiber()) {
    // On a fiber the others run on fibers of the same loop: each waits for
    // its database through the loop, and nothing waits for a thread.
    std::atomic<size_t> left{n - 1};
    util::WaitWord all_done(0);
    for (size_t i = 1; i < n; ++i) {
      util::SpawnOnThisLoop([&, i] {
        fn(i);
        if (left.fetch_sub(1) == 1) util::WaitWord::Set(&all_done, 1);  // the last reference to this frame
      });
    }
    fn(0);
    all_done.WaitWhile(0);
    return;
  }
  // Shared with the queued tasks, which may outlive this call: a task taken
  // back here is dropped by its worker without touching fn.
  struct Shared {
    explicit Shared(size_t n) : claimed(n) {}
    std::vector<std::atomic<bool>> claimed;
    absl::Mutex mu;
    size_t finished_by_workers ABSL_GUARDED_BY(mu) = 0;
  };
  auto shared = std::make_shared<Shared>(n);
  for (size_t i = 1; i < n; ++i) {
    BranchWorkers().Submit([shared, &fn, i] {
      if (shared->claimed[i].exchange(true)) return;  // taken back by the caller
      fn(i);
      absl::MutexLock lock(&shared->mu);
      ++shared->finished_by_workers;
    });
  }
  fn(0);
  size_t on_workers = 0;
  for (size_t i = n - 1; i >= 1; --i) {
    if (shared->claimed[i].exchange(true)) {
      ++on_workers;
    } else {
      fn(i);
    }
  }
  struct Waiting {
    Shared* shared;
    size_t on_workers;
  } waiting{shared.get(), on_workers};
  absl::MutexLock lock(&shared->mu);
  shared->mu.Await(absl::Condition(
      +[](Waiting* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->shared->mu) {
        return w->shared->finished_by_workers == w->on_workers;
      },
      &waiting));
}

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_PARALLEL_H_
