// WorkerThreads: a pool of threads that start when work finds none idle and
// end after a while without work, so that a busy process does not pay a
// thread creation per task and an idle one keeps no threads for its peak.
#ifndef TXCOORD_UTIL_WORKER_THREADS_H_
#define TXCOORD_UTIL_WORKER_THREADS_H_

#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace txcoord::util {

// Thread-safe. Threads are named `name` (util/thread_name.h).
class WorkerThreads {
 public:
  // REQUIRES: the object outlives every thread it started (threads() == 0
  // before it is destroyed, or never destroyed).
  WorkerThreads(std::string name, int max_threads, absl::Duration idle_exit);

  // Queues `task`; a thread is started when no idle one is left (up to
  // max_threads). `then`, if any, runs on the same thread after `task`,
  // once that thread already counts as idle again: a Submit made by
  // whatever `then` wakes finds it and starts no thread. So the threads
  // alive never outnumber the tasks that ran at once (while they last).
  void Submit(std::function<void()> task, std::function<void()> then = nullptr);

  // Threads alive now.
  int threads() const;

 private:
  struct Task {
    std::function<void()> run;
    std::function<void()> then;
  };
  void Work();

  const std::string name_;
  const int max_threads_;
  const absl::Duration idle_exit_;
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int threads_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting for a task (or about to)
};

}  // namespace txcoord::util

#endif  // TXCOORD_UTIL_WORKER_THREADS_H_
