#include "coordinator/parallel.h"

namespace txcoord::coordinator {

util::WorkerThreads& BranchWorkers() {
  static util::WorkerThreads* workers = new util::WorkerThreads("txc-branch", 256, absl::Seconds(10));
  return *workers;
}

}  // namespace txcoord::coordinator
