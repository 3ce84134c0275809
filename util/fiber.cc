#include "util/fiber.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <linux/futex.h>
#include <netdb.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <map>
#include <thread>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "util/blocking.h"
#include "util/thread_name.h"

namespace txcoord::util {
namespace fiber_internal {

namespace context = boost::context;

struct Fiber : std::enable_shared_from_this<Fiber> {
  enum : int { kAwake = 0, kWoken = 1, kParked = 2 };

  Loop* loop = nullptr;
  std::function<void()> fn;
  context::fiber self;       // the fiber's context while it is suspended
  context::fiber scheduler;  // the loop's context while the fiber runs
  // kAwake: running or runnable; kWoken: a wake-up came while it was not
  // parked (the next Park returns at once); kParked: waiting for Unpark.
  std::atomic<int> wake{kAwake};
  bool parking = false;   // it switched to the loop to park
  bool finished = false;
};

// What a fiber waits for on its loop: a socket, a deadline or both.
struct Waiter {
  std::shared_ptr<Fiber> fiber;
  uint32_t revents = 0;
  bool done = false;
  bool timer_fired = false;  // its deadline left the loop's timers
};

namespace {

// Milliseconds from now until `deadline` for poll(2) or epoll_wait(2),
// rounded up, at most a minute (the caller looks again); -1: no deadline.
int TimeoutMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const double ms = std::ceil(absl::ToDoubleMilliseconds(deadline - absl::Now()));
  return ms <= 0 ? 0 : ms > 60000 ? 60000 : static_cast<int>(ms);
}

thread_local Loop* tls_loop = nullptr;    // the loop this thread runs
thread_local Fiber* tls_fiber = nullptr;  // the fiber running now

// Stacks of one size, kept for reuse: a fiber per call should not cost an
// mmap, an mprotect and a munmap. Used on its loop's thread only.
class StackCache {
 public:
  explicit StackCache(size_t bytes) : allocator_(bytes) {}
  ~StackCache() {
    for (context::stack_context& s : free_) allocator_.deallocate(s);
  }
  context::stack_context Allocate() {
    peak_in_use_ = std::max(peak_in_use_, ++in_use_);
    if (free_.empty()) return allocator_.allocate();
    context::stack_context s = free_.back();
    free_.pop_back();
    return s;
  }
  // Keeps as many free stacks as this loop's fibers ever used at once (at
  // most kMaxKept): the pages they hold were in use at that peak anyway,
  // and a loop running more fibers than it keeps stacks would map and
  // unmap a stack per fiber (each unmap a TLB shootdown on every core:
  // engine_bench at 256 transactions on two loops ran at 13–19k commits/s
  // keeping 64 stacks, 38–62k keeping up to the peak).
  void Deallocate(context::stack_context& s) {
    --in_use_;
    if (free_.size() < std::min(peak_in_use_, kMaxKept)) {
      free_.push_back(s);
    } else {
      allocator_.deallocate(s);
    }
  }

 private:
  static constexpr size_t kMaxKept = 1024;
  size_t in_use_ = 0;
  size_t peak_in_use_ = 0;
  context::protected_fixedsize_stack allocator_;
  std::vector<context::stack_context> free_;
};

// Boost.Context's StackAllocator over a StackCache.
class CachedStack {
 public:
  explicit CachedStack(StackCache* cache) : cache_(cache) {}
  context::stack_context allocate() { return cache_->Allocate(); }
  void deallocate(context::stack_context& s) noexcept { cache_->Deallocate(s); }

 private:
  StackCache* cache_;
};

}  // namespace

class Loop {
 public:
  Loop(int index, size_t stack_bytes) : stacks_(stack_bytes) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || event_fd_ < 0) std::abort();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) std::abort();
    thread_ = std::thread([this, index] {
      NameThisThread("txc-loop" + std::to_string(index));
      Run();
    });
  }

  ~Loop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      WakeLocked();
    }
    thread_.join();
    close(event_fd_);
    close(epoll_fd_);
  }

  int fibers() const { return live_.load(std::memory_order_relaxed); }

  void Spawn(std::function<void()> fn) {
    live_.fetch_add(1, std::memory_order_relaxed);
    if (tls_loop == this) {
      Start(std::move(fn));  // the loop's own thread: no queue, no wake-up
      return;
    }
    absl::MutexLock lock(&mu_);
    spawns_.push_back(std::move(fn));
    WakeLocked();
  }

  // Makes `f` (of this loop) runnable. Any thread.
  void Ready(std::shared_ptr<Fiber> f) {
    if (tls_loop == this) {
      run_.push_back(std::move(f));
      return;
    }
    absl::MutexLock lock(&mu_);
    readied_.push_back(std::move(f));
    WakeLocked();
  }

  // On fiber `f` of this loop: returns after an Unpark (possibly one that
  // came before this call).
  void Park(Fiber* f) {
    if (f->wake.exchange(Fiber::kAwake, std::memory_order_acq_rel) == Fiber::kWoken) return;
    f->parking = true;
    f->scheduler = std::move(f->scheduler).resume();
    f->wake.store(Fiber::kAwake, std::memory_order_release);
  }

  // Wakes `f` (of any loop) from Park, or makes its next Park return.
  static void Unpark(const std::shared_ptr<Fiber>& f) {
    if (f->wake.exchange(Fiber::kWoken, std::memory_order_acq_rel) == Fiber::kParked) f->loop->Ready(f);
  }

  int WaitFd(Fiber* f, int fd, short events, absl::Time deadline) {
    Waiter w;
    w.fiber = f->shared_from_this();
    epoll_event ev{};
    ev.events = EPOLLONESHOT | ((events & POLLIN) ? EPOLLIN : 0u) | ((events & POLLOUT) ? EPOLLOUT : 0u) |
                ((events & POLLPRI) ? EPOLLPRI : 0u);
    ev.data.ptr = &w;
    // A socket stays in the epoll set between waits (one epoll_ctl per wait,
    // not two), disarmed: EPOLLONESHOT disarms it when it fires, and a wait
    // that ends at its deadline disarms it itself. The kernel drops a closed
    // socket from the set, so a number seen before may be new: MOD then
    // fails with ENOENT and it is added again.
    const bool known = registered_.contains(fd);
    if (epoll_ctl(epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
      const int retry = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
      if (retry < 0 || epoll_ctl(epoll_fd_, retry, fd, &ev) != 0) {
        registered_.erase(fd);
        return -1;
      }
    }
    registered_.insert(fd);
    WaitFor(f, w, deadline);
    if (w.revents == 0) {
      epoll_event off{};
      off.events = EPOLLONESHOT;  // armed for nothing: the stale &w never comes back
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &off);
    }
    uint32_t r = 0;
    if (w.revents & EPOLLIN) r |= POLLIN;
    if (w.revents & EPOLLOUT) r |= POLLOUT;
    if (w.revents & EPOLLPRI) r |= POLLPRI;
    if (w.revents & EPOLLERR) r |= POLLERR;
    if (w.revents & EPOLLHUP) r |= POLLHUP;
    return static_cast<int>(r);
  }

  void SleepUntil(Fiber* f, absl::Time deadline) {
    Waiter w;
    w.fiber = f->shared_from_this();
    WaitFor(f, w, deadline);
  }

 private:
  // Parks `f` until `w` is done: by its socket (Run sets it) or its deadline.
  void WaitFor(Fiber* f, Waiter& w, absl::Time deadline) {
    auto timer = timers_.end();
    if (deadline != absl::InfiniteFuture()) timer = timers_.emplace(deadline, &w);
    while (!w.done) Park(f);
    if (timer != timers_.end() && !w.timer_fired) timers_.erase(timer);
  }

  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (wake_sent_) return;
    wake_sent_ = true;
    const uint64_t one = 1;
    (void)!write(event_fd_, &one, sizeof one);
  }

  void Start(std::function<void()> fn) {
    auto f = std::make_shared<Fiber>();
    f->loop = this;
    f->fn = std::move(fn);
    Fiber* raw = f.get();
    f->self = context::fiber(std::allocator_arg, CachedStack(&stacks_), [raw](context::fiber&& scheduler) {
      raw->scheduler = std::move(scheduler);
      raw->fn();
      raw->fn = nullptr;  // its captures go while the fiber still runs
      raw->finished = true;
      return std::move(raw->scheduler);
    });
    all_.emplace(raw, f);
    run_.push_back(std::move(f));
  }

  void Resume(const std::shared_ptr<Fiber>& f) {
    tls_fiber = f.get();
    f->self = std::move(f->self).resume();
    tls_fiber = nullptr;
    if (f->finished) {
      all_.erase(f.get());
      live_.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    if (f->parking) {
      f->parking = false;
      int awake = Fiber::kAwake;
      // Parked, unless an Unpark came since Park looked: then it runs again.
      if (!f->wake.compare_exchange_strong(awake, Fiber::kParked, std::memory_order_acq_rel)) {
        run_.push_back(f);
      }
    }
  }

  void Run() {
    tls_loop = this;
    epoll_event events[64];
    for (;;) {
      std::vector<std::function<void()>> spawns;
      std::vector<std::shared_ptr<Fiber>> readied;
      bool stopping;
      {
        absl::MutexLock lock(&mu_);
        spawns.swap(spawns_);
        readied.swap(readied_);
        stopping = stopping_;
        wake_sent_ = false;  // with the queues drained under the same lock
      }
      for (auto& fn : spawns) Start(std::move(fn));
      for (auto& f : readied) run_.push_back(std::move(f));
      // The fibers runnable now; those they make runnable run next round,
      // after the sockets were looked at.
      for (size_t n = run_.size(); n > 0; --n) {
        std::shared_ptr<Fiber> f = std::move(run_.front());
        run_.pop_front();
        Resume(f);
      }
      if (stopping && all_.empty()) {
        absl::MutexLock lock(&mu_);
        if (spawns_.empty()) break;
        continue;
      }
      const int timeout_ms = !run_.empty() ? 0 : !timers_.empty() ? TimeoutMs(timers_.begin()->first) : -1;
      const int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          uint64_t count;
          (void)!read(event_fd_, &count, sizeof count);
          continue;
        }
        Waiter* w = static_cast<Waiter*>(events[i].data.ptr);
        if (w->done) continue;
        w->revents = events[i].events;
        w->done = true;
        Unpark(w->fiber);
      }
      if (!timers_.empty()) {
        const absl::Time now = absl::Now();
        while (!timers_.empty() && timers_.begin()->first <= now) {
          Waiter* w = timers_.begin()->second;
          timers_.erase(timers_.begin());
          w->timer_fired = true;
          if (!w->done) {
            w->done = true;
            Unpark(w->fiber);
          }
        }
      }
    }
    tls_loop = nullptr;
  }

  StackCache stacks_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  std::atomic<int> live_{0};
  absl::Mutex mu_;
  std::vector<std::function<void()>> spawns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Fiber>> readied_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_sent_ ABSL_GUARDED_BY(mu_) = false;  // the eventfd was written since the last drain
  // The loop thread's own.
  std::deque<std::shared_ptr<Fiber>> run_;
  std::unordered_map<Fiber*, std::shared_ptr<Fiber>> all_;  // keeps parked fibers alive
  std::multimap<absl::Time, Waiter*> timers_;
  absl::flat_hash_set<int> registered_;  // sockets in the epoll set (see WaitFd)
  std::thread thread_;  // last: starts once everything above is built
};

}  // namespace fiber_internal

using fiber_internal::Fiber;
using fiber_internal::tls_fiber;

FiberLoops::FiberLoops(int loops, size_t stack_bytes) {
  if (loops < 1) loops = 1;
  for (int i = 0; i < loops; ++i) loops_.push_back(std::make_unique<fiber_internal::Loop>(i, stack_bytes));
}

FiberLoops::~FiberLoops() { loops_.clear(); }

void FiberLoops::Spawn(std::function<void()> fn) {
  fiber_internal::Loop* best = loops_[0].get();
  for (auto& l : loops_) {
    if (l->fibers() < best->fibers()) best = l.get();
  }
  best->Spawn(std::move(fn));
}

int FiberLoops::fibers() const {
  int n = 0;
  for (const auto& l : loops_) n += l->fibers();
  return n;
}

bool OnFiber() { return tls_fiber != nullptr; }

bool SpawnOnThisLoop(std::function<void()> fn) {
  if (tls_fiber == nullptr) return false;
  tls_fiber->loop->Spawn(std::move(fn));
  return true;
}

int WaitFd(int fd, short events, absl::Time deadline) {
  if (Fiber* f = tls_fiber) return f->loop->WaitFd(f, fd, events, deadline);
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = poll(&p, 1, fiber_internal::TimeoutMs(deadline));
    if (n > 0) return p.revents;
    if (n < 0 && errno != EINTR) return -1;
    if (n == 0 && absl::Now() >= deadline) return 0;
  }
}

void Sleep(absl::Duration d) {
  if (Fiber* f = tls_fiber) {
    f->loop->SleepUntil(f, absl::Now() + d);
    return;
  }
  absl::SleepFor(d);
}

int PollOnFiber(pollfd* fds, unsigned long nfds, int timeout_ms) {
  if (nfds == 1 && timeout_ms != 0 && tls_fiber != nullptr) {
    const absl::Time deadline = timeout_ms < 0 ? absl::InfiniteFuture() : absl::Now() + absl::Milliseconds(timeout_ms);
    const int revents = WaitFd(fds[0].fd, fds[0].events, deadline);
    if (revents < 0) return -1;
    fds[0].revents = static_cast<short>(revents);
    return revents != 0 ? 1 : 0;
  }
  timespec ts{};
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000;
  }
  return ppoll(fds, nfds, timeout_ms >= 0 ? &ts : nullptr, nullptr);
}

namespace {

GetaddrinfoFn LibcGetaddrinfo() {
  static const auto libc = reinterpret_cast<GetaddrinfoFn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  return libc;
}

std::atomic<GetaddrinfoFn> getaddrinfo_for_test{nullptr};

// True when `node` is an IPv4 or IPv6 address written out: converting it
// asks no name server.
bool NumericAddress(const char* node) {
  unsigned char addr[sizeof(in6_addr)];
  return inet_pton(AF_INET, node, addr) == 1 || inet_pton(AF_INET6, node, addr) == 1;
}

}  // namespace

void ReplaceGetaddrinfoForTest(GetaddrinfoFn lookup) { getaddrinfo_for_test = lookup; }

int GetaddrinfoOnFiber(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  GetaddrinfoFn lookup = getaddrinfo_for_test.load();
  if (lookup == nullptr) lookup = LibcGetaddrinfo();
  if (tls_fiber == nullptr || node == nullptr || (hints != nullptr && (hints->ai_flags & AI_NUMERICHOST) != 0) ||
      NumericAddress(node)) {
    return lookup(node, service, hints, res);
  }
  int saved_errno = 0;
  const int rc = RunBlocking([&] {
    const int r = lookup(node, service, hints, res);
    saved_errno = errno;  // EAI_SYSTEM's detail
    return r;
  });
  errno = saved_errno;
  return rc;
}

WaitWord::WaitWord(uint32_t initial) : word_(initial) {
  if (tls_fiber != nullptr) fiber_ = tls_fiber->shared_from_this();
}

uint32_t WaitWord::WaitWhile(uint32_t value) {
  for (;;) {
    const uint32_t now = word_.load(std::memory_order_acquire);
    if (now != value) return now;
    if (fiber_ != nullptr) {
      if (tls_fiber != fiber_.get()) std::abort();  // REQUIRES: waited on by its creator
      fiber_->loop->Park(fiber_.get());
    } else {
      // Sleeps only while the word still holds `value`; a wake-up without a
      // change (a signal, a spurious wake) loops.
      syscall(SYS_futex, &word_, FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
    }
  }
}

void WaitWord::Set(WaitWord* w, uint32_t value) {
  std::shared_ptr<Fiber> fiber = w->fiber_;  // copied before the store: *w may go right after it
  std::atomic<uint32_t>* word = &w->word_;
  word->store(value, std::memory_order_release);
  if (fiber != nullptr) {
    fiber_internal::Loop::Unpark(fiber);
    return;
  }
  // Names the address only: at worst a spurious wake of another futex
  // sleeper there, which re-checks its word.
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

}  // namespace txcoord::util

// poll(2) for the whole process (this definition interposes the C
// library's): what waits in poll for one socket on a fiber — libpq inside
// libpqxx's blocking calls, a client library's connect — waits on the
// fiber's loop instead. Everything else is ppoll(2), as before.
extern "C" int poll(pollfd* fds, nfds_t nfds, int timeout) { return txcoord::util::PollOnFiber(fds, nfds, timeout); }

// getaddrinfo(3) for the whole process (this definition interposes the C
// library's): the host name libpq or Connector/C looks up when a fiber opens
// a connection is looked up on the blocking pool, not on the fiber's loop.
extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  return txcoord::util::GetaddrinfoOnFiber(node, service, hints, res);
}
