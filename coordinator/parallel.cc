#include "coordinator/parallel.h"
#include "util/thread_name.h"

#include <thread>
#include <utility>

namespace txcoord::coordinator {

BranchWorkers& BranchWorkers::Get() {
  static BranchWorkers* workers = new BranchWorkers(256, absl::Seconds(10));
  return *workers;
}

BranchWorkers::BranchWorkers(int max_threads, absl::Duration idle_exit)
    : max_threads_(max_threads), idle_exit_(idle_exit) {}

void BranchWorkers::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
  if (static_cast<int>(queue_.size()) > idle_ && threads_ < max_threads_) {
    ++threads_;
    std::thread([this] {
      util::NameThisThread("txc-branch");
      Work();
    }).detach();
  }
}

int BranchWorkers::threads() const {
  absl::MutexLock lock(&mu_);
  return threads_;
}

void BranchWorkers::Work() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    ++idle_;
    const bool got = mu_.AwaitWithTimeout(
        absl::Condition(+[](std::deque<std::function<void()>>* q) { return !q->empty(); }, &queue_), idle_exit_);
    --idle_;
    if (!got) {
      --threads_;  // idle for idle_exit_: this thread ends (its last access to *this)
      return;
    }
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    task();
    task = nullptr;  // the task's captures are released outside the lock
    mu_.Lock();
  }
}

}  // namespace txcoord::coordinator
