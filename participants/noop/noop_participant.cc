#include "participants/noop/noop_participant.h"

#include <atomic>
#include <utility>

namespace txcoord::participants {
namespace {

class NoopParticipant;

class NoopBranch final : public Branch {
 public:
  NoopBranch(Xid xid, std::atomic<int>* in_use) : xid_(std::move(xid)), in_use_(in_use) {
    in_use_->fetch_add(1, std::memory_order_relaxed);
  }
  ~NoopBranch() override { in_use_->fetch_sub(1, std::memory_order_relaxed); }

  absl::StatusOr<ResultSet> Execute(absl::string_view, const std::vector<Value>&, int) override {
    ResultSet r;
    r.rows_affected = 1;
    return r;
  }
  absl::StatusOr<Vote> Prepare() override { return Vote::kPrepared; }
  absl::Status CommitOnePhase() override { return absl::OkStatus(); }
  absl::Status CommitAsLastResource(absl::string_view, absl::string_view) override {
    return absl::OkStatus();
  }
  absl::Status Rollback() override { return absl::OkStatus(); }
  void Cancel() override {}
  const Xid& xid() const override { return xid_; }

 private:
  Xid xid_;
  std::atomic<int>* in_use_;
};

class NoopParticipant final : public Participant {
 public:
  explicit NoopParticipant(BindOptions options) : options_(std::move(options)) {}

  const std::string& bind() const override { return options_.name; }
  Capabilities capabilities() const override {
    Capabilities c;
    c.driver = "noop";
    c.dialect = "noop";
    c.two_phase = true;
    return c;
  }
  PoolStats pool_stats() const override {
    PoolStats s;
    s.size = options_.pool_size;
    s.in_use = in_use_.load(std::memory_order_relaxed);
    s.open = s.in_use;
    return s;
  }
  absl::StatusOr<std::unique_ptr<Branch>> Begin(const Xid& xid, absl::Duration) override {
    return std::unique_ptr<Branch>(new NoopBranch(xid, &in_use_));
  }
  absl::Status CommitPrepared(const Xid&) override { return absl::OkStatus(); }
  absl::Status RollbackPrepared(const Xid&) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(absl::string_view) override {
    return std::vector<PreparedBranch>{};
  }
  absl::StatusOr<std::vector<PreparedBranch>> ListAllPrepared() override {
    return std::vector<PreparedBranch>{};
  }
  absl::StatusOr<std::vector<std::string>> ListDecisions(absl::string_view) override {
    return std::vector<std::string>{};
  }
  absl::Status ForgetDecision(absl::string_view) override { return absl::OkStatus(); }
  absl::Status CheckHealth() override { return absl::OkStatus(); }

 private:
  const BindOptions options_;
  std::atomic<int> in_use_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Participant>> CreateNoopParticipant(const BindOptions& options) {
  return std::unique_ptr<Participant>(new NoopParticipant(options));
}

}  // namespace txcoord::participants
