#include "util/blocking.h"

namespace txcoord::util {

WorkerThreads& BlockingThreads() {
  // The bound is the callers' (see the header); this cap only stops a
  // runaway caller.
  static WorkerThreads* threads = new WorkerThreads("txc-blocking", 1024, absl::Seconds(10));
  return *threads;
}

}  // namespace txcoord::util
