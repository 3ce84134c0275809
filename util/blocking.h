// RunBlocking: a call into a library that can only block its thread (an
// ODBC driver), made from a fiber, runs on a thread of the blocking pool
// while the fiber parks, so that the fiber's event loop goes on running its
// other fibers; made anywhere else, it runs in place.
//
// The pool's threads (`txc-blocking`) start when a call finds none idle and
// end after 10 s without calls. They never outnumber the calls that ran at
// once: a thread counts as idle again before the fiber it served is woken.
// A caller that makes one call at a time per connection (the ODBC
// participant) so bounds them by its connections (pool.size).
#ifndef TXCOORD_UTIL_BLOCKING_H_
#define TXCOORD_UTIL_BLOCKING_H_

#include <optional>
#include <type_traits>
#include <utility>

#include "util/fiber.h"
#include "util/worker_threads.h"

namespace txcoord::util {

// The pool RunBlocking uses. Lives until exit.
WorkerThreads& BlockingThreads();

template <typename F>
auto RunBlocking(F&& call) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  if (!OnFiber()) return call();
  WaitWord done(0);
  if constexpr (std::is_void_v<R>) {
    BlockingThreads().Submit([&call] { call(); }, [&done] { WaitWord::Set(&done, 1); });
    done.WaitWhile(0);
  } else {
    std::optional<R> result;
    BlockingThreads().Submit([&call, &result] { result.emplace(call()); }, [&done] { WaitWord::Set(&done, 1); });
    done.WaitWhile(0);
    return *std::move(result);
  }
}

}  // namespace txcoord::util

#endif  // TXCOORD_UTIL_BLOCKING_H_
