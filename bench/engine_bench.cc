// engine_bench: the coordinator engine alone, in process, no gRPC.
//
// coordinator::Coordinator with two test-only noop binds and a real RocksDB
// journal (fsynced decisions) under /var/tmp: every transaction runs Begin,
// one Execute per bind, Commit — PREPARE on both binds, LogDecision (sync,
// group commit), COMMIT PREPARED on both, END. N threads (or, with
// --event-loops, N fibers on that many event loops, as txcoord runs its
// calls) run transactions back to back for a fixed time; one line per
// concurrency:
//
//   engine_bench runs_on=threads|fibers concurrency=N commits_per_s=X p50_us=Y p99_us=Z errors=E
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "journal/journal.h"
#include "participants/participant.h"
#include "util/fiber.h"

namespace coord = ::txcoord::coordinator;
namespace parts = ::txcoord::participants;
using SteadyClock = std::chrono::steady_clock;

namespace {

int Run(const std::vector<int>& concurrency, double seconds, const std::string& dir, bool decision_log,
        int event_loops) {
  txcoord::journal::JournalOptions jo;
  jo.dir = dir;
  jo.node_id = "bench";
  jo.decision_log = decision_log;
  auto journal = txcoord::journal::OpenRocksDbJournal(jo);
  if (!journal.ok()) {
    std::cerr << "engine_bench: journal: " << journal.status() << "\n";
    return 1;
  }
  std::map<std::string, std::unique_ptr<parts::Participant>> binds;
  for (const char* name : {"n1", "n2"}) {
    parts::BindOptions bo;
    bo.name = name;
    bo.driver = "noop";
    bo.pool_size = 1024;
    auto p = parts::CreateParticipant(bo);
    if (!p.ok()) {
      std::cerr << "engine_bench: " << p.status() << "\n";
      return 1;
    }
    binds[name] = std::move(*p);
  }
  coord::CoordinatorOptions co;
  co.node_id = "bench";
  co.background_recovery = false;
  coord::Coordinator coordinator(journal->get(), std::move(binds), co, coord::RealClock());
  if (auto s = coordinator.Start(); !s.ok()) {
    std::cerr << "engine_bench: start: " << s << "\n";
    return 1;
  }

  const std::vector<std::pair<std::string, std::vector<parts::Value>>> stmt = {
      {"UPDATE accounts SET balance = balance + 1 WHERE id = 1", {}}};
  for (int n : concurrency) {
    std::atomic<bool> measuring{false}, stop{false};
    std::vector<std::vector<uint32_t>> lat(n);
    std::vector<int64_t> errors(n, 0);
    std::vector<std::thread> threads;
    std::unique_ptr<txcoord::util::FiberLoops> loops;
    if (event_loops > 0) loops = std::make_unique<txcoord::util::FiberLoops>(event_loops);
    std::atomic<int> running{n};
    for (int i = 0; i < n; ++i) {
      auto one = [&, i] {
        lat[i].reserve(1 << 16);
        while (!stop.load(std::memory_order_relaxed)) {
          auto t0 = SteadyClock::now();
          auto txn = coordinator.Begin("bench", {}, absl::ZeroDuration());
          bool ok = coordinator.Execute(*txn, "n1", stmt, 0).ok() &&
                    coordinator.Execute(*txn, "n2", stmt, 0).ok();
          auto st = ok ? coordinator.Commit(*txn) : absl::StatusOr<coord::TxnState>(absl::AbortedError("execute"));
          ok = ok && st.ok() && (*st == coord::TxnState::kCommitted || *st == coord::TxnState::kCommitting);
          txn.reset();
          auto t1 = SteadyClock::now();
          if (!measuring.load(std::memory_order_relaxed) || stop.load(std::memory_order_relaxed)) continue;
          if (ok) {
            lat[i].push_back(static_cast<uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
          } else {
            ++errors[i];
          }
        }
        running.fetch_sub(1);
      };
      if (loops != nullptr) {
        loops->Spawn(one);
      } else {
        threads.emplace_back(one);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    measuring = true;
    auto start = SteadyClock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
    for (auto& t : threads) t.join();
    while (running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    loops.reset();
    std::vector<uint32_t> all;
    int64_t errs = 0;
    for (int i = 0; i < n; ++i) {
      all.insert(all.end(), lat[i].begin(), lat[i].end());
      errs += errors[i];
    }
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) -> uint32_t {
      if (all.empty()) return 0;
      return all[std::min(all.size() - 1, static_cast<size_t>(p * static_cast<double>(all.size() - 1) + 0.5))];
    };
    std::printf("engine_bench runs_on=%s concurrency=%d commits_per_s=%.0f p50_us=%u p99_us=%u errors=%lld\n",
                event_loops > 0 ? "fibers" : "threads", n, static_cast<double>(all.size()) / elapsed, pct(0.5),
                pct(0.99), static_cast<long long>(errs));
    std::fflush(stdout);
  }
  coordinator.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> concurrency = {1, 4, 16, 64, 256};
  double seconds = 3;
  std::string dir = "/var/tmp/txcoord-engine-bench-" + std::to_string(::getpid());
  CLI::App app{"engine_bench: in-process 2PC engine with noop binds and a real journal"};
  app.add_option("--concurrency", concurrency, "concurrent transactions, one run each");
  int event_loops = 0;
  app.add_option("--event-loops", event_loops,
                 "run the transactions as fibers on this many event loops, as txcoord's calls run (0: a thread "
                 "each)");
  app.add_option("--seconds", seconds, "measured seconds per run");
  app.add_option("--dir", dir, "journal directory (deleted at the end)");
  bool decision_log = true;
  app.add_option("--decision-log", decision_log,
                 "decisions durable in the journal's decision log (false: RocksDB's synced WAL)");
  CLI11_PARSE(app, argc, argv);
  // As in txcoord's main: no lock-order cycle detection outside the tests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::filesystem::remove_all(dir);
  int rc = Run(concurrency, seconds, dir, decision_log, event_loops);
  std::filesystem::remove_all(dir);
  return rc;
}
