// journal_bench: durable decisions per second through the journal, by
// number of concurrent writers. Prints one line per configuration:
//   journal_bench mode=M writers=N decisions_per_s=X p50_us=Y p99_us=Z p999_us=W [decisions_per_sync=G]
// mode=group-commit is RocksDbJournal::LogDecision as configured by default
// (txcoord's own writer queue; each group synced in the decision log, then
// written to RocksDB unsynced); mode=group-commit-rocksdb-sync is the same
// queue with the decision log off (one synced RocksDB WriteBatch per group);
// mode=rocksdb-write-group is each writer calling DB::Put with sync=true
// itself (RocksDB's own write grouping), measured side by side for
// comparison. After each group-commit run a second line,
// journal_bench_reads, gives what readers pay (ProbeReads).
//
//   journal_bench [--dir=/var/tmp] [--seconds=3] [--writers=1,4,16,64,256]
//       [--decision_log_bytes=16777216] [--repeat=1]
//       [--modes=group-commit,group-commit-rocksdb-sync,rocksdb-write-group]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "journal/journal.h"
#include "rocksdb/db.h"

ABSL_FLAG(std::string, dir, "/var/tmp", "where the benchmark journals are made (a real disk)");
ABSL_FLAG(double, seconds, 3.0, "seconds per configuration");
ABSL_FLAG(std::string, writers, "1,4,16,64,256", "writer counts");
ABSL_FLAG(int, repeat, 1,
          "rounds over every configuration (modes alternate inside each); with more than one, "
          "each line carries run=K and a median line per configuration follows");
ABSL_FLAG(uint64_t, decision_log_bytes, txcoord::journal::JournalOptions().decision_log_bytes,
          "each decision-log file's size (mode group-commit)");
ABSL_FLAG(std::string, modes, "group-commit,group-commit-rocksdb-sync,rocksdb-write-group",
          "modes to run");

namespace {

using Clock = std::chrono::steady_clock;

txcoord::journal::DecisionRecord Realistic(const std::string& txn_id) {
  txcoord::journal::DecisionRecord r;
  r.set_txn_id(txn_id);
  r.set_state(txcoord::journal::COMMITTING);
  r.set_session_id("s-0123456789abcdef");
  r.set_started_at_unix_micros(1'800'000'000'000'000);
  r.set_decided_at_unix_micros(1'800'000'000'050'000);
  const char* binds[] = {"pg_main", "mariadb_orders", "pg_ledger"};
  for (int i = 0; i < 3; ++i) {
    auto* b = r.add_branches();
    b->set_bind(binds[i]);
    b->set_format_id(0x54584331);
    b->set_gtrid(txn_id);
    b->set_bqual(absl::StrCat(i, "-", binds[i]));
    b->set_state(txcoord::journal::BRANCH_PREPARED);
  }
  return r;
}

struct Result {
  double per_s;
  double p50_us;
  double p99_us;
  double p999_us;
};

template <typename WriteFn>
Result Run(int writers, double seconds, WriteFn write) {
  std::vector<std::vector<double>> latencies(writers);
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        auto t0 = Clock::now();
        if (!write(w, i)) {
          failed = true;
          return;
        }
        latencies[w].push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  if (failed || all.empty()) {
    std::fprintf(stderr, "journal_bench: a write failed\n");
    std::exit(1);
  }
  std::sort(all.begin(), all.end());
  return {all.size() / elapsed, all[all.size() / 2], all[all.size() * 99 / 100],
          all[all.size() * 999 / 1000]};
}

// What readers pay in the state a busy coordinator leaves the journal in:
// every decision but each writer's last finished (an END tombstone beside
// each decision), then Find of an unfinished decision (GetTransaction,
// recovery's orphan check) and ScanUnfinished (once per recovery pass), so
// that a change to the write path shows its price for readers too. Prints
//   journal_bench_reads writers=N records=R find_p50_us=X scan_ms=Y
bool ProbeReads(txcoord::journal::Journal& journal, int64_t total,
                const std::vector<int64_t>& last_seq, std::string* line) {
  // Each writer's last decision stays unfinished (-1: it wrote none).
  std::set<int64_t> unfinished_seqs(last_seq.begin(), last_seq.end());
  unfinished_seqs.erase(-1);
  const std::vector<int64_t> probe(unfinished_seqs.begin(), unfinished_seqs.end());
  const int writers = static_cast<int>(probe.size());
  if (writers == 0) return false;
  std::vector<txcoord::journal::DecisionRecord> ends;
  for (int64_t seq = 0; seq < total; ++seq) {
    if (!unfinished_seqs.contains(seq)) {
      ends.push_back(Realistic(absl::StrCat("bench.1.", seq)));
      ends.back().set_state(txcoord::journal::COMMITTED);
    }
    if (ends.size() == 1000 || (seq + 1 == total && !ends.empty())) {
      if (!journal.MarkFinishedMany(ends).ok()) return false;
      ends.clear();
    }
  }
  std::vector<double> find_us;
  for (int k = 0; k < 200; ++k) {
    auto t0 = Clock::now();
    auto found = journal.Find(absl::StrCat("bench.1.", probe[k % writers]));
    find_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!found.ok() || !found->has_value()) {
      std::fprintf(stderr, "journal_bench: an unfinished decision was not found\n");
      return false;
    }
  }
  std::sort(find_us.begin(), find_us.end());
  auto t0 = Clock::now();
  auto unfinished = journal.ScanUnfinished();
  const double scan_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!unfinished.ok() || static_cast<int>(unfinished->size()) != writers) {
    std::fprintf(stderr, "journal_bench: the scan found %zu unfinished decisions, expected %d\n",
                 unfinished.ok() ? unfinished->size() : 0, writers);
    return false;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "journal_bench_reads writers=%d records=%lld find_p50_us=%.0f scan_ms=%.1f\n",
                writers, static_cast<long long>(total), find_us[find_us.size() / 2], scan_ms);
  *line = buf;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::vector<int> writer_counts;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_writers), ',')) {
    int n;
    if (absl::SimpleAtoi(s, &n) && n > 0) writer_counts.push_back(n);
  }
  std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_modes), ',');
  const std::string base = absl::StrCat(absl::GetFlag(FLAGS_dir), "/journal_bench.", ::getpid());
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  // decisions/s of every round, by (mode, writers), for the median lines.
  std::map<std::pair<std::string, int>, std::vector<double>> rates;

  for (int run = 1; run <= repeat; ++run) {
    for (int writers : writer_counts) {
      for (const std::string& mode : modes) {
        const std::string dir = absl::StrCat(base, "/", mode, "-", writers);
        std::filesystem::remove_all(dir);
        Result r{};
        std::string reads_line;
        std::string group_field;  // decisions per sync, for the group-commit modes
        if (mode == "group-commit" || mode == "group-commit-rocksdb-sync") {
          txcoord::journal::JournalOptions o;
          o.dir = dir;
          o.node_id = "bench";
          o.decision_log = mode == "group-commit";
          o.decision_log_bytes = absl::GetFlag(FLAGS_decision_log_bytes);
          auto journal = txcoord::journal::OpenRocksDbJournal(o);
          if (!journal.ok()) {
            std::fprintf(stderr, "journal_bench: %s\n", journal.status().ToString().c_str());
            return 1;
          }
          // Txn ids as the coordinator makes them: <node>.<epoch>.<seq>, one
          // sequence for all writers, so they reach the journal nearly in key
          // order (which the memtable's skip list is fast at).
          std::atomic<int64_t> next_seq{0};
          std::vector<int64_t> last_seq(writers, -1);
          r = Run(writers, seconds, [&](int w, int) {
            last_seq[w] = next_seq.fetch_add(1);
            return (*journal)->LogDecision(Realistic(absl::StrCat("bench.1.", last_seq[w]))).ok();
          });
          const txcoord::journal::JournalStats stats = (*journal)->Stats();
          if (stats.decision_groups > 0) {
            char buf[48];
            std::snprintf(buf, sizeof buf, " decisions_per_sync=%.1f",
                          double(stats.decisions) / double(stats.decision_groups));
            group_field = buf;
          }
          if (!ProbeReads(**journal, next_seq.load(), last_seq, &reads_line)) return 1;
        } else if (mode == "rocksdb-write-group") {
          rocksdb::Options o;
          o.create_if_missing = true;
          rocksdb::DB* db = nullptr;
          std::filesystem::create_directories(dir);  // its parent may not exist yet
          rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
          if (!s.ok()) {
            std::fprintf(stderr, "journal_bench: %s\n", s.ToString().c_str());
            return 1;
          }
          rocksdb::WriteOptions wo;
          wo.sync = true;
          std::atomic<int64_t> next_seq{0};
          r = Run(writers, seconds, [&](int, int) {
            std::string id = absl::StrCat("bench.1.", next_seq.fetch_add(1));
            return db->Put(wo, id, Realistic(id).SerializeAsString()).ok();
          });
          delete db;
        } else {
          std::fprintf(stderr, "journal_bench: unknown mode %s\n", mode.c_str());
          return 2;
        }
        const std::string run_field = repeat > 1 ? absl::StrCat(" run=", run) : "";
        std::printf("journal_bench mode=%s writers=%d decisions_per_s=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f%s%s\n",
                    mode.c_str(), writers, r.per_s, r.p50_us, r.p99_us, r.p999_us, group_field.c_str(),
                    run_field.c_str());
        std::fputs(reads_line.c_str(), stdout);
        std::fflush(stdout);
        std::filesystem::remove_all(dir);
        rates[{mode, writers}].push_back(r.per_s);
      }
    }
  }
  if (repeat > 1) {
    // The machine is shared: one round proves little, the median of several
    // alternating rounds more (with the lowest and highest beside it).
    for (const std::string& mode : modes) {
      for (int writers : writer_counts) {
        std::vector<double> v = rates[{mode, writers}];
        std::sort(v.begin(), v.end());
        const double median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
        std::printf("journal_bench_median mode=%s writers=%d decisions_per_s=%.0f min=%.0f max=%.0f runs=%zu\n",
                    mode.c_str(), writers, median, v.front(), v.back(), v.size());
      }
    }
  }
  std::filesystem::remove_all(base);
  return 0;
}
