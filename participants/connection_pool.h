// A bounded pool of database connections of one bind, generic over the
// connection type.
//
//   auto pool = ConnectionPool<PgConnection>::Create("orders", 8, absl::Seconds(2), open_fn);
//   TXC_ASSIGN_OR_RETURN(auto lease, pool->Acquire());
//   ... lease->... ;          // use the connection
//   lease.MarkBroken();       // on a lost connection: it is closed, not reused
//   // ~Lease returns it to the pool
//
// At most `size` connections are open at once (idle + in use). Acquire()
// reuses an idle connection, else opens one (outside the lock) while below
// the limit, else waits up to `acquire_timeout` for a release and then
// returns RESOURCE_EXHAUSTED naming the bind. A connection marked broken is
// destroyed on release; since what broke one (a restarted server) usually
// broke all, every idle connection is dropped as well, so that the next use
// reconnects instead of failing once per stale connection.
//
// Thread safety: thread-safe. A Lease is used by one thread at a time; it
// keeps the pool alive (shared ownership), so leases may outlive the owner's
// reference to the pool.
#ifndef TXCOORD_PARTICIPANTS_CONNECTION_POOL_H_
#define TXCOORD_PARTICIPANTS_CONNECTION_POOL_H_

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "util/fiber.h"
#include "participants/participant.h"

namespace txcoord::participants {

template <typename Conn>
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool<Conn>> {
 public:
  // Opens one new connection; its error is returned by Acquire() as is.
  using Opener = std::function<absl::StatusOr<std::unique_ptr<Conn>>()>;

  // A connection taken from the pool; returns it on destruction.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        Release();
        pool_ = std::move(other.pool_);
        conn_ = std::move(other.conn_);
        broken_ = other.broken_;
        other.broken_ = false;
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    Conn* get() const { return conn_.get(); }
    Conn* operator->() const { return conn_.get(); }
    Conn& operator*() const { return *conn_; }
    explicit operator bool() const { return conn_ != nullptr; }

    // The connection is lost: it is closed on release, and so are the idle
    // ones (what broke this one, e.g. a server restart, likely broke them).
    void MarkBroken() { broken_ = true; }
    bool broken() const { return broken_; }

    // This connection (only) must not be reused, e.g. MariaDB's after XA
    // PREPARE: it is closed now and its slot freed.
    void Discard() {
      if (pool_ != nullptr && conn_ != nullptr) pool_->Drop(std::move(conn_));
      pool_.reset();
      conn_.reset();
      broken_ = false;
    }

    // Returns the connection to the pool now (idempotent).
    void Release() {
      if (pool_ != nullptr && conn_ != nullptr) {
        pool_->Return(std::move(conn_), broken_);
      }
      pool_.reset();
      conn_.reset();
      broken_ = false;
    }

   private:
    friend class ConnectionPool;
    Lease(std::shared_ptr<ConnectionPool> pool, std::unique_ptr<Conn> conn)
        : pool_(std::move(pool)), conn_(std::move(conn)) {}
    std::shared_ptr<ConnectionPool> pool_;
    std::unique_ptr<Conn> conn_;
    bool broken_ = false;
  };

  static std::shared_ptr<ConnectionPool> Create(std::string bind, int size,
                                                absl::Duration acquire_timeout, Opener opener) {
    return std::shared_ptr<ConnectionPool>(
        new ConnectionPool(std::move(bind), size, acquire_timeout, std::move(opener)));
  }

  // Takes an idle connection or opens a new one; waits up to the acquire
  // timeout when `size` connections are in use.
  absl::StatusOr<Lease> Acquire() { return Take(/*wait=*/true); }
  // The same without waiting: RESOURCE_EXHAUSTED at once (not counted as
  // exhausted) when `size` connections are in use.
  absl::StatusOr<Lease> TryAcquire() { return Take(/*wait=*/false); }

  // Opens connections into the idle list until `connections` (at most the
  // pool's size) are open, idle or in use; returns the first error.
  absl::Status OpenUpTo(int connections) {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (open_ >= std::min(connections, size_)) return absl::OkStatus();
        ++open_;  // reserve the slot; connect outside the lock
      }
      absl::StatusOr<std::unique_ptr<Conn>> conn = opener_();
      absl::MutexLock lock(&mu_);
      if (!conn.ok() || *conn == nullptr) {
        --open_;
        if (!conn.ok()) return conn.status();
        return absl::InternalError(absl::StrCat("bind ", bind_, ": opener returned no connection"));
      }
      idle_.push_back(*std::move(conn));
    }
  }

  PoolStats stats() const {
    absl::MutexLock lock(&mu_);
    PoolStats s;
    s.size = size_;
    s.open = open_;
    s.in_use = in_use_;
    return s;
  }

  // How many Acquire() calls timed out (for metrics and tests).
  int exhausted_count() const {
    absl::MutexLock lock(&mu_);
    return exhausted_count_;
  }

  const std::string& bind() const { return bind_; }

 private:
  absl::StatusOr<Lease> Take(bool wait) {
    {
      absl::MutexLock lock(&mu_);
      auto can_go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !idle_.empty() || open_ < size_;
      };
      bool got;
      if (!wait) {
        got = can_go();
        if (!got) {
          return absl::ResourceExhaustedError(
              absl::StrCat("bind ", bind_, ": all ", size_, " pooled connections are in use"));
        }
      } else if (util::OnFiber()) {
        // A fiber must not put its thread to sleep here: the connection it
        // waits for may be held by another fiber of its loop. It looks
        // again every millisecond instead.
        const absl::Time deadline = absl::Now() + acquire_timeout_;
        while (!(got = can_go()) && absl::Now() < deadline) {
          mu_.Unlock();
          util::Sleep(absl::Milliseconds(1));
          mu_.Lock();
        }
      } else {
        got = mu_.AwaitWithTimeout(absl::Condition(&can_go), acquire_timeout_);
      }
      if (!got) {
        ++exhausted_count_;
        return absl::ResourceExhaustedError(absl::StrCat(
            "bind ", bind_, ": all ", size_, " pooled connections are in use; none freed within ",
            absl::FormatDuration(acquire_timeout_)));
      }
      ++in_use_;
      if (!idle_.empty()) {
        std::unique_ptr<Conn> conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this->shared_from_this(), std::move(conn));
      }
      ++open_;  // reserve the slot; connect outside the lock
    }
    absl::StatusOr<std::unique_ptr<Conn>> conn = opener_();
    if (!conn.ok() || *conn == nullptr) {
      absl::MutexLock lock(&mu_);
      --open_;
      --in_use_;
      if (!conn.ok()) return conn.status();
      return absl::InternalError(absl::StrCat("bind ", bind_, ": opener returned no connection"));
    }
    return Lease(this->shared_from_this(), *std::move(conn));
  }

  ConnectionPool(std::string bind, int size, absl::Duration acquire_timeout, Opener opener)
      : bind_(std::move(bind)),
        size_(size < 1 ? 1 : size),
        acquire_timeout_(acquire_timeout),
        opener_(std::move(opener)) {}

  void Return(std::unique_ptr<Conn> conn, bool broken) {
    std::vector<std::unique_ptr<Conn>> to_close;  // closed outside the lock
    {
      absl::MutexLock lock(&mu_);
      --in_use_;
      if (broken) {
        to_close.push_back(std::move(conn));
        --open_;
        for (auto& idle : idle_) to_close.push_back(std::move(idle));
        open_ -= static_cast<int>(idle_.size());
        idle_.clear();
      } else {
        idle_.push_back(std::move(conn));
      }
    }
  }

  void Drop(std::unique_ptr<Conn> conn) {
    {
      absl::MutexLock lock(&mu_);
      --in_use_;
      --open_;
    }
    conn.reset();  // closed outside the lock
  }

  const std::string bind_;
  const int size_;
  const absl::Duration acquire_timeout_;
  const Opener opener_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;    // idle + in use + being opened
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;  // leased + being opened
  int exhausted_count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Runs fn(Conn&) -> absl::Status on a pooled connection; once more on a new
// connection if `retry_if_broken` and the first one turned out dead
// (Conn::broken()) — never for calls that must not run twice.
template <typename Conn, typename Fn>
absl::Status RunPooled(ConnectionPool<Conn>& pool, bool retry_if_broken, Fn&& fn) {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<typename ConnectionPool<Conn>::Lease> lease = pool.Acquire();
    if (!lease.ok()) return lease.status();
    absl::Status s = fn(**lease);
    const bool broken = (*lease)->broken();
    if (broken) lease->MarkBroken();
    if (s.ok() || !broken || !retry_if_broken || attempt > 0) return s;
  }
}

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_CONNECTION_POOL_H_
