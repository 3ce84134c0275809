#include "server/cluster.h"

#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator.h"
#include "coordinator/logging.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {

CoordinatorOptions CoordinatorOptionsFor(const Config& config, const std::string& node_id) {
  CoordinatorOptions options;
  options.node_id = node_id;
  options.timeouts = config.timeouts;
  options.recovery = config.recovery;
  options.max_rows = config.limits.max_rows;
  options.max_sql_bytes = config.limits.max_sql_bytes;
  options.recent_outcomes = config.limits.recent_outcomes;
  for (const participants::BindOptions& b : config.binds) {
    if (b.last_resource) options.last_resource_binds.insert(b.name);
  }
  options.retention_max_per_pass = config.journal.retention.max_per_pass;
  return options;
}

ClusterMember::ClusterMember(const Config& config, journal::EtcdJournal* journal, Metrics* metrics)
    : config_(config), journal_(journal), metrics_(metrics) {
  metrics_->DescribeCounter("txcoord_adoptions_total",
                            "Dead nodes this node adopted, by outcome (settled: the id was given back with no "
                            "decision left to drive and no branch prepared).");
}

ClusterMember::~ClusterMember() { Stop(); }

void ClusterMember::Start() {
  thread_ = std::thread([this] {
    util::NameThisThread("txc-cluster");
    Loop();
  });
}

void ClusterMember::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ClusterMember::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), interval_);
      if (stopping_) return;
    }
    if (!journal_->DecisionWriteHealth().ok()) continue;  // a node that lost its own id adopts nobody
    absl::StatusOr<std::vector<std::string>> orphans = journal_->Orphans();
    if (!orphans.ok()) continue;  // etcd unreachable: the next round
    for (const std::string& node : *orphans) (void)AdoptIfOrphan(node);
  }
}

std::optional<AdoptionReport> ClusterMember::AdoptIfOrphan(const std::string& node) {
  absl::StatusOr<std::optional<int64_t>> epoch = journal_->TryAdopt(node);
  if (!epoch.ok() || !epoch->has_value()) return std::nullopt;
  AdoptionReport report = Adopt(node, **epoch);
  metrics_->Increment("txcoord_adoptions_total", {{"outcome", report.settled ? "settled" : "unsettled"}});
  absl::MutexLock lock(&mu_);
  recent_.insert(recent_.begin(), report);
  if (recent_.size() > 20) recent_.pop_back();
  return report;
}

std::vector<AdoptionReport> ClusterMember::RecentAdoptions() const {
  absl::MutexLock lock(&mu_);
  return recent_;
}

AdoptionReport ClusterMember::Adopt(const std::string& node, int64_t epoch) {
  AdoptionReport report;
  report.node_id = node;
  report.epoch = epoch;
  report.started = absl::Now();
  Log(spdlog::level::warn, "",
      absl::StrCat("adopting node \"", node, "\" (its id now at epoch ", epoch,
                   ", which fences its last process): it stopped holding its id with work left"));
  auto finish = [&](absl::Status why) {
    report.took = absl::Now() - report.started;
    if (!why.ok()) report.error = std::string(why.message());
    absl::Status released = journal_->ReleaseAdopted(node, epoch, report.settled);
    Log(report.settled ? spdlog::level::warn : spdlog::level::err, "",
        absl::StrCat("adoption of node \"", node, "\" ", report.settled ? "settled" : "NOT settled", " in ",
                     absl::FormatDuration(report.took), ": ", report.redriven, " decisions re-driven, ",
                     report.decided_committed, " prepared branches committed, ", report.orphans_rolled_back,
                     " orphaned branches rolled back", report.error.empty() ? "" : "; ", report.error,
                     released.ok() ? "; its id is free again" : absl::StrCat("; giving the id back: ", released.message())));
    return report;
  };
  absl::StatusOr<std::unique_ptr<journal::EtcdJournal>> attached = journal_->Attach(node, epoch);
  if (!attached.ok()) return finish(attached.status());

  std::map<std::string, std::unique_ptr<participants::Participant>> binds;
  for (participants::BindOptions b : config_.binds) {
    b.take_over_node_claims = true;
    b.pool_size = std::min(b.pool_size, 4);
    absl::StatusOr<std::unique_ptr<participants::Participant>> p = participants::CreateParticipant(b);
    if (!p.ok()) return finish(p.status());
    binds[b.name] = *std::move(p);
  }
  CoordinatorOptions options = CoordinatorOptionsFor(config_, node);
  options.background_recovery = false;
  Coordinator coordinator(attached->get(), std::move(binds), options, RealClock());
  absl::Status started = coordinator.Start();  // claims (ending the dead node's claims) and recovers
  absl::Status why;
  if (!started.ok()) {
    why = started;
  } else {
    auto add = [&](const RecoveryReport& r) {
      report.redriven += r.redriven;
      report.orphans_rolled_back += r.orphans_rolled_back;
      report.decided_committed += r.decided_committed;
    };
    add(coordinator.start_report());
    // The dead process's statements may still be running in the databases
    // (a batch ending in PREPARE sent before it died, waiting for a row
    // lock): each ends by its transaction's deadline, at most
    // timeouts.transaction after the adoption began. Passes go on until
    // then, so that a branch prepared late is rolled back too; then until
    // nothing is left, or for 5 s more at most.
    const absl::Time quiet = report.started + config_.timeouts.transaction + absl::Seconds(1);
    const absl::Time give_up = quiet + absl::Seconds(5);
    for (;;) {
      why = absl::OkStatus();
      absl::StatusOr<std::vector<journal::DecisionRecord>> unfinished = (*attached)->ScanUnfinished();
      if (!unfinished.ok()) why = unfinished.status();
      for (const journal::DecisionRecord& r : unfinished.ok() ? *unfinished : std::vector<journal::DecisionRecord>{}) {
        if (r.state() == journal::COMMITTING || r.state() == journal::ROLLING_BACK) {
          why = absl::UnavailableError(absl::StrCat("decision ", r.txn_id(), " is not finished yet"));
        }
      }
      for (const std::string& name : coordinator.BindNames()) {
        participants::Participant* p = coordinator.FindBind(name);
        if (!p->capabilities().two_phase) continue;
        absl::StatusOr<std::vector<participants::PreparedBranch>> left = p->ListPrepared(node);
        if (!left.ok()) why = left.status();
        else if (!left->empty()) {
          why = absl::UnavailableError(absl::StrCat("bind \"", name, "\" still has ", left->size(),
                                                    " prepared branches of the node"));
        }
      }
      if ((why.ok() && absl::Now() >= quiet) || absl::Now() >= give_up) break;
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(500))) break;
      }
      add(coordinator.RecoverNow());
    }
    report.settled = why.ok();
  }
  coordinator.Stop();
  return finish(why);
}

}  // namespace txcoord::coordinator
