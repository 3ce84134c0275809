#include "coordinator/session_manager.h"

#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {

SessionManager::SessionManager(Coordinator* coordinator, SessionOptions options, Clock* clock)
    : coordinator_(coordinator), options_(options), clock_(clock) {
  reaper_ = std::thread([this] {
    util::NameThisThread("txc-sessions");
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
        mu_.AwaitWithTimeout(absl::Condition(&stop), options_.reap_interval);
        if (stopping_) return;
      }
      ReapExpired();
    }
  });
}

SessionManager::~SessionManager() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  reaper_.join();
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    sessions.swap(sessions_);
  }
  for (auto& [id, s] : sessions) {
    absl::MutexLock lock(&s->call_mu);
    s->txn.reset();  // rolls back
  }
}

absl::StatusOr<std::string> SessionManager::Open(const std::vector<std::string>& binds,
                                                 absl::Duration transaction_timeout,
                                                 absl::Duration idle_timeout,
                                                 std::map<std::string, std::string> labels,
                                                 const std::string& owner) {
  if (transaction_timeout < absl::ZeroDuration() || idle_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must not be negative");
  }
  if (transaction_timeout > options_.max_transaction_timeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "transaction_timeout ", absl::FormatDuration(transaction_timeout),
        " exceeds the maximum of ", absl::FormatDuration(options_.max_transaction_timeout)));
  }
  auto session = std::make_shared<Session>();
  for (const std::string& b : binds) {
    if (!coordinator_->HasBind(b)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown bind \"", b, "\""));
    }
    session->allowed_binds.insert(b);
  }
  session->transaction_timeout = transaction_timeout;
  session->idle_timeout =
      idle_timeout > absl::ZeroDuration() ? idle_timeout : options_.default_idle_timeout;
  session->labels = std::move(labels);
  session->owner = owner;
  session->last_used_us = absl::ToUnixMicros(clock_->Now());
  static thread_local std::mt19937_64 rng(std::random_device{}());
  absl::MutexLock lock(&mu_);
  if (!accepting_) {
    return absl::UnavailableError("the coordinator is draining: it takes no new sessions");
  }
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "session limit reached (", options_.max_sessions,
        " open): close sessions you no longer use; idle ones expire after their idle timeout"));
  }
  if (per_owner_[owner] >= options_.max_sessions_per_identity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "identity \"", owner, "\" has ", options_.max_sessions_per_identity,
        " sessions open (limits.max_sessions_per_identity): close some first"));
  }
  session->id = absl::StrFormat("%s.%d.s%d.%016x", coordinator_->node_id(),
                                coordinator_->epoch(), next_seq_++, rng());
  sessions_[session->id] = session;
  ++per_owner_[owner];
  return session->id;
}

std::shared_ptr<Session> SessionManager::Find(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void SessionManager::ForgetLocked(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  if (--per_owner_[it->second->owner] <= 0) per_owner_.erase(it->second->owner);
  sessions_.erase(it);
}

absl::Status SessionManager::WithSession(absl::string_view id,
                                         const std::function<absl::Status(Session&)>& fn,
                                         const std::string& owner) {
  if (id.empty()) return absl::InvalidArgumentError("session_id is required");
  std::shared_ptr<Session> s = Find(id);
  if (s == nullptr) {
    std::vector<std::string> parts = absl::StrSplit(id, '.');
    uint64_t epoch = 0;
    if (parts.size() == 4 && parts[0] == coordinator_->node_id() &&
        absl::SimpleAtoi(parts[1], &epoch) && epoch != coordinator_->epoch()) {
      return absl::NotFoundError(absl::StrCat(
          "session ", id, " is from epoch ", epoch, "; the coordinator restarted (epoch ",
          coordinator_->epoch(), ") and sessions do not survive a restart: open a new one"));
    }
    if (parts.size() == 4 && parts[0] != coordinator_->node_id()) {
      return absl::NotFoundError(absl::StrCat("session ", id, " belongs to node \"", parts[0],
                                              "\", not to this coordinator (\"",
                                              coordinator_->node_id(), "\")"));
    }
    return absl::NotFoundError(absl::StrCat("session ", id,
                                            " does not exist (closed, expired or never opened)"));
  }
  if (!owner.empty() && s->owner != owner) {
    return absl::PermissionDeniedError(absl::StrCat("session ", id, " belongs to another identity"));
  }
  if (!s->call_mu.TryLock()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "another call is running on session ", id,
        ": calls on one session are serialized; wait for it to return"));
  }
  absl::Status result;
  if (s->closed) {
    result = absl::NotFoundError(absl::StrCat("session ", id, " was closed"));
  } else {
    s->last_used_us = absl::ToUnixMicros(clock_->Now());
    result = fn(*s);
    s->last_used_us = absl::ToUnixMicros(clock_->Now());
  }
  s->call_mu.Unlock();
  return result;
}

absl::Status SessionManager::Close(absl::string_view id, const std::string& owner) {
  absl::Status status = WithSession(
      id,
      [](Session& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        s.txn.reset();  // an open transaction is rolled back
        s.closed = true;
        return absl::OkStatus();
      },
      owner);
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  ForgetLocked(std::string(id));
  return absl::OkStatus();
}

void SessionManager::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
}

int SessionManager::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(sessions_.size());
}

void SessionManager::ReapExpired() {
  std::vector<std::shared_ptr<Session>> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
  }
  coordinator_->CancelExpired();
  const absl::Time now = clock_->Now();
  std::vector<std::string> expired;
  for (auto& s : all) {
    if (!s->call_mu.TryLock()) {
      continue;  // a call is running: CancelExpired() above handled a timeout
    }
    bool idle = now - absl::FromUnixMicros(s->last_used_us.load()) >= s->idle_timeout;
    if (s->txn != nullptr && now >= s->txn->deadline()) {
      TxnState st = s->txn->state();
      if (st == TxnState::kActive) {
        s->last_txn_id = s->txn->id();
        (void)coordinator_->Rollback(*s->txn, "transaction timeout");
        s->txn.reset();
      }
    }
    if (idle) {
      s->txn.reset();
      s->closed = true;
      expired.push_back(s->id);
    }
    s->call_mu.Unlock();
  }
  if (!expired.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& id : expired) ForgetLocked(id);
  }
}

}  // namespace txcoord::coordinator
