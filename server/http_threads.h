// The worker threads of txcoord's HTTP listeners (/metrics, the console):
// a fixed number (limits.http_threads), named, instead of cpp-httplib's
// default of at least eight.
#ifndef TXCOORD_SERVER_HTTP_THREADS_H_
#define TXCOORD_SERVER_HTTP_THREADS_H_

#include <functional>
#include <string>
#include <utility>

#include "httplib.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {

class NamedHttpThreads : public httplib::TaskQueue {
 public:
  NamedHttpThreads(int threads, std::string name) : pool_(threads < 1 ? 1 : threads), name_(std::move(name)) {}

  void enqueue(std::function<void()> fn) override {
    pool_.enqueue([fn = std::move(fn), this] {
      util::NameThisThread(name_);
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  const std::string name_;
};

// Gives `http` `threads` workers named `name`.
inline void UseNamedHttpThreads(httplib::Server& http, int threads, const std::string& name) {
  http.new_task_queue = [threads, name] { return new NamedHttpThreads(threads, name); };
}

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_HTTP_THREADS_H_
