#include "util/worker_threads.h"

#include <thread>

#include "util/thread_name.h"

namespace txcoord::util {

WorkerThreads::WorkerThreads(std::string name, int max_threads, absl::Duration idle_exit)
    : name_(std::move(name)), max_threads_(max_threads), idle_exit_(idle_exit) {}

void WorkerThreads::Submit(std::function<void()> task, std::function<void()> then) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Task{std::move(task), std::move(then)});
  if (static_cast<int>(queue_.size()) > idle_ && threads_ < max_threads_) {
    ++threads_;
    ++idle_;  // it takes a task as soon as it runs
    std::thread([this] {
      NameThisThread(name_);
      Work();
    }).detach();
  }
}

int WorkerThreads::threads() const {
  absl::MutexLock lock(&mu_);
  return threads_;
}

void WorkerThreads::Work() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Counted in idle_ here (by Submit, or at the end of the last task).
    const bool got = mu_.AwaitWithTimeout(absl::Condition(
                                              +[](std::deque<Task>* q) { return !q->empty(); }, &queue_),
                                          idle_exit_);
    if (!got) {
      --idle_;
      --threads_;  // idle for idle_exit_: this thread ends (its last access to *this)
      return;
    }
    --idle_;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    task.run();
    task.run = nullptr;  // the task's captures are released outside the lock
    mu_.Lock();
    ++idle_;
    if (task.then) {
      mu_.Unlock();
      task.then();
      task.then = nullptr;
      mu_.Lock();
    }
  }
}

}  // namespace txcoord::util
