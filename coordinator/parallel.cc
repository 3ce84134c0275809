#include "coordinator/parallel.h"

#include <thread>
#include <utility>

namespace txcoord::coordinator {

BranchWorkers& BranchWorkers::Get() {
  static BranchWorkers* workers = new BranchWorkers(256);
  return *workers;
}

void BranchWorkers::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

BranchWorkers::BranchWorkers(int threads) {
  for (int i = 0; i < threads; ++i) {
    std::thread([this] {
      for (;;) {
        std::function<void()> task;
        {
          absl::MutexLock lock(&mu_);
          mu_.Await(absl::Condition(+[](std::deque<std::function<void()>>* q) { return !q->empty(); }, &queue_));
          task = std::move(queue_.front());
          queue_.pop_front();
        }
        task();
      }
    }).detach();
  }
}

}  // namespace txcoord::coordinator
