// Fibers on event loops: code written as blocking calls that does not hold
// a thread while it waits.
//
// FiberLoops owns a few threads (one per core, by configuration), each an
// event loop with its own epoll set. Spawn runs a function on a fiber (its
// own stack, switched with Boost.Context) on the loop that has the fewest.
// A fiber runs until it waits; then its loop runs the next ready fiber, or
// sleeps in epoll_wait until a socket is ready, a deadline passes or another
// thread hands it a fiber. A fiber stays on the loop it began on.
//
// The waits below work on a fiber and on a plain thread alike, so the same
// driver code serves both:
//   WaitFd      poll(2) on a thread; on a fiber, the loop's epoll.
//   Sleep       absl::SleepFor on a thread; on a fiber, the loop's timers.
//   WaitWord    a futex on a thread; on a fiber, the fiber is parked and
//               its loop woken by whoever sets the word.
//
// poll(2) itself is one of them: this library defines poll() for the
// process, so a client library that waits for one socket in poll (libpq in
// libpqxx's blocking calls, connects) waits on the fiber's loop (PollOnFiber).
//
// A fiber must not wait any other way for something another fiber of its
// loop provides (an absl::Mutex held across a wait, a condition variable, a
// blocking library call whose peer is such a fiber): the loop's thread would
// sleep with the provider unable to run. Blocking on a database or the disk
// only delays the loop's other fibers.
#ifndef TXCOORD_UTIL_FIBER_H_
#define TXCOORD_UTIL_FIBER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/time/time.h"

struct pollfd;
struct addrinfo;

namespace txcoord::util {

namespace fiber_internal {
struct Fiber;
class Loop;
}  // namespace fiber_internal

class FiberLoops {
 public:
  // Starts `loops` threads (at least 1). Each fiber gets a stack of
  // `stack_bytes` (rounded up to pages) with a guard page below it.
  explicit FiberLoops(int loops, size_t stack_bytes = 256 << 10);
  // Waits for every fiber to finish, then stops the loops.
  ~FiberLoops();
  FiberLoops(const FiberLoops&) = delete;
  FiberLoops& operator=(const FiberLoops&) = delete;

  // Runs `fn` on a new fiber of the loop with the fewest fibers. An
  // exception out of `fn` terminates the process. Thread-safe.
  void Spawn(std::function<void()> fn);

  int loops() const { return static_cast<int>(loops_.size()); }
  // Fibers begun and not finished.
  int fibers() const;

 private:
  std::vector<std::unique_ptr<fiber_internal::Loop>> loops_;
};

// True on a fiber of a FiberLoops.
bool OnFiber();

// On a fiber: starts `fn` on a new fiber of the same loop (it runs when
// this one waits) and returns true. Elsewhere: false, and `fn` is dropped.
bool SpawnOnThisLoop(std::function<void()> fn);

// Waits until `fd` is ready for `events` (POLLIN, POLLOUT, POLLPRI) or until
// `deadline` (absl::InfiniteFuture(): none). Returns the poll(2) revents
// seen (POLLERR and POLLHUP included), 0 at the deadline, -1 (errno set) on
// error.
int WaitFd(int fd, short events, absl::Time deadline);

// poll(2) as the process's poll() runs it: on a fiber, one socket with a
// timeout waits through WaitFd; any other call is ppoll(2).
int PollOnFiber(struct pollfd* fds, unsigned long nfds, int timeout_ms);

// Sleeps `d`.
void Sleep(absl::Duration d);

// getaddrinfo(3) as the process's getaddrinfo() runs it: a lookup can only
// block its thread (for seconds when a name server does not answer), so on
// a fiber a host name is looked up on the blocking pool (util/blocking.h)
// while the fiber parks. A numeric address (or a null node, or
// AI_NUMERICHOST), which needs no name server, is converted in place.
int GetaddrinfoOnFiber(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res);

// Tests only (a slow name server is an injected fault): the function
// GetaddrinfoOnFiber calls instead of the C library's getaddrinfo; null
// restores the C library's.
using GetaddrinfoFn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
void ReplaceGetaddrinfoForTest(GetaddrinfoFn lookup);

// A 32-bit word that one waiter waits on until another thread or fiber
// changes it. Created by the waiter, which is the only one to wait on it.
class WaitWord {
 public:
  explicit WaitWord(uint32_t initial);
  WaitWord(const WaitWord&) = delete;
  WaitWord& operator=(const WaitWord&) = delete;

  uint32_t load() const { return word_.load(std::memory_order_acquire); }
  // Waits while the word holds `value`; returns the value that ended the
  // wait.
  uint32_t WaitWhile(uint32_t value);
  // Stores `value` and wakes the waiter. The waiter may return and destroy
  // *w as soon as it sees the store: Set reads nothing of *w after it.
  static void Set(WaitWord* w, uint32_t value);

 private:
  std::atomic<uint32_t> word_;
  std::shared_ptr<fiber_internal::Fiber> fiber_;  // the waiter's, or null on a thread
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
                "a futex word is a plain 32-bit integer");
};

// Starts an asynchronous operation, `start(done)`, whose completion calls
// `done(result)` once, on any thread; waits for it and returns the result.
// On a fiber the fiber parks (its loop runs the others meanwhile), on a
// thread the thread sleeps. (gRPC's callback client API: `Result` is
// grpc::Status.)
template <typename Result, typename Start>
Result AwaitCompletion(Start&& start) {
  Result result{};
  WaitWord done(0);
  start([&result, &done](Result r) {
    result = std::move(r);
    WaitWord::Set(&done, 1);  // the waiter's frame may go from here on
  });
  done.WaitWhile(0);
  return result;
}

}  // namespace txcoord::util

#endif  // TXCOORD_UTIL_FIBER_H_
