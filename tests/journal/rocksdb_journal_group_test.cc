// The RocksDB journal's group commit and decision log: concurrent writers,
// groups, the decision log's laps, sizes and failures.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "journal/rocksdb_journal.h"
#include "rocksdb/db.h"
#include "tests/journal/journal_records.h"
#include "tests/testing/raw_journal_db.h"
#include "tests/testing/temp_dir.h"
#include "util/failpoint.h"
#include "util/fiber.h"

namespace txcoord::journal {
namespace {

using ::testing::HasSubstr;
using txcoord::testing::TempDir;

using test_records::MakeDecision;
using test_records::Options;
using test_records::UnfinishedIds;

class ConcurrentWritersTest : public ::testing::TestWithParam<int> {};

// GetParam(): JournalOptions::max_group_size (the default, and groups so
// small that most writers wait behind a full one).
TEST_P(ConcurrentWritersTest, AllLandDurably) {
  TempDir tmp;
  constexpr int kThreads = 32, kEach = 50;
  JournalOptions o = Options(tmp.Sub("j"));
  o.max_group_size = GetParam();
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok());
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          if (!(*j)->LogDecision(MakeDecision(absl::StrCat("node-a.1.", t * kEach + i))).ok()) {
            ++failures;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
  }
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)->ScanUnfinished()->size(), static_cast<size_t>(kThreads * kEach));
}

INSTANTIATE_TEST_SUITE_P(GroupSizes, ConcurrentWritersTest, ::testing::Values(JournalOptions().max_group_size, 3));

TEST(RocksDbJournalTest, DecisionLogOptionsAreChecked) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.decision_log_bytes = 100000;  // not a multiple of 4096
  EXPECT_EQ(OpenRocksDbJournal(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.decision_log_bytes = 4096;
  EXPECT_EQ(OpenRocksDbJournal(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.decision_log = false;  // the size does not matter then
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.1")).ok());
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("j/decisions.log")));
}

TEST(RocksDbJournalTest, DecisionTooLargeForTheDecisionLogIsRefused) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.decision_log_bytes = DecisionLog::kMinBytes;
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  absl::Status s = (*j)->LogDecision(MakeDecision("node-a.1.1", 600));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("decision_log_bytes"));
  EXPECT_TRUE(UnfinishedIds(**j).empty());
  EXPECT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.2")).ok());
}

// Many laps of a small decision log: the open after them reads back exactly
// the unfinished decisions, none of the finished ones.
TEST(RocksDbJournalTest, DecisionLogLapsKeepExactlyTheUnfinishedDecisions) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.decision_log_bytes = DecisionLog::kMinBytes;  // 14 one-decision groups a lap
  std::vector<std::string> expected;
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    for (int i = 0; i < 200; ++i) {
      const std::string id = absl::StrCat("node-a.1.", 1000 + i);
      ASSERT_TRUE((*j)->LogDecision(MakeDecision(id)).ok()) << i;
      if (i % 10 == 3) {
        expected.push_back(id);
      } else {
        ASSERT_TRUE((*j)->MarkFinished(MakeDecision(id)).ok());
      }
    }
    EXPECT_EQ(UnfinishedIds(**j), expected);
    // 14 one-decision groups fill a lap: the 15th, 29th, … begin the next.
    EXPECT_EQ((*j)->Stats().decision_log_laps, 199u / 14);
    EXPECT_EQ((*j)->Stats().decision_groups, 200u);
  }
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(UnfinishedIds(**j), expected);
  EXPECT_EQ((*j)->finished_count(), 180);
  EXPECT_EQ((*j)->Stats().decisions, 0u) << "counts start at each open";
}

#ifdef TXC_FAILPOINTS_ENABLED
// Opens the journal, logs `decisions` with RocksDB's unsynced writes lost
// (the power-cut fault point), returns the unfinished ids it then sees.
std::vector<std::string> LogWithIndexWritesLost(const JournalOptions& o, const std::vector<DecisionRecord>& decisions) {
  auto j = OpenRocksDbJournal(o);
  EXPECT_TRUE(j.ok()) << j.status();
  if (!j.ok()) return {};
  EXPECT_TRUE(failpoint::Arm("journal.lose_index_writes", "error").ok());
  for (const DecisionRecord& d : decisions) EXPECT_TRUE((*j)->LogDecision(d).ok()) << d.txn_id();
  failpoint::DisarmAll();
  return UnfinishedIds(**j);
}

// A power cut loses RocksDB's unsynced writes (the fault point drops them):
// the decisions come back from the decision log at the next open, and a
// decision finished before the cut does not.
TEST(RocksDbJournalTest, DecisionsRocksDbLostAreWrittenBackFromTheDecisionLog) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.decision_log_bytes = DecisionLog::kMinBytes;
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    for (int i = 1; i <= 20; ++i) {  // more than a lap
      ASSERT_TRUE((*j)->LogDecision(MakeDecision(absl::StrCat("node-a.1.", i))).ok());
      ASSERT_TRUE((*j)->MarkFinished(MakeDecision(absl::StrCat("node-a.1.", i))).ok());
    }
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.21")).ok());
    ASSERT_TRUE(failpoint::Arm("journal.lose_index_writes", "error").ok());
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.22")).ok());
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.23", 5)).ok());
    failpoint::DisarmAll();
    EXPECT_EQ(UnfinishedIds(**j), std::vector<std::string>{"node-a.1.21"}) << "the cut lost the index";
  }
  for (int open = 0; open < 2; ++open) {  // written back once, then kept
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(UnfinishedIds(**j), (std::vector<std::string>{"node-a.1.21", "node-a.1.22", "node-a.1.23"}));
    auto back = (*j)->Find("node-a.1.23");
    ASSERT_TRUE(back.ok() && back->has_value());
    EXPECT_EQ((*back)->branches_size(), 5);
    auto finished = (*j)->Find("node-a.1.20");
    ASSERT_TRUE(finished.ok() && finished->has_value());
    EXPECT_NE((*finished)->finished_at_unix_micros(), 0) << "still finished";
  }
}

// A group over 32 KiB is synced in RocksDB itself, not in the decision log:
// the power-cut fault point, which drops only the decision log's unsynced
// index writes, does not touch it.
TEST(RocksDbJournalTest, LargeGroupIsSyncedInRocksDbItself) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  EXPECT_EQ(LogWithIndexWritesLost(o, {MakeDecision("node-a.1.1"), MakeDecision("node-a.1.2", 1000)}),  // ≈ 45 KiB
            std::vector<std::string>{"node-a.1.2"});
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(UnfinishedIds(**j), (std::vector<std::string>{"node-a.1.1", "node-a.1.2"}));
}

// Switching the decision log off at a restart: what RocksDB lost is still
// written back from it first.
TEST(RocksDbJournalTest, DecisionLogSwitchedOffIsReadBackOnceThenRemoved) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  EXPECT_TRUE(LogWithIndexWritesLost(o, {MakeDecision("node-a.1.1")}).empty());
  o.decision_log = false;
  std::vector<std::string> expected = {"node-a.1.1"};
  for (int open = 0; open < 2; ++open) {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(UnfinishedIds(**j), expected);
    expected.push_back(absl::StrCat("node-a.2.", open));
    EXPECT_FALSE(std::filesystem::exists(tmp.Sub("j/decisions.log")));
    ASSERT_TRUE((*j)->LogDecision(MakeDecision(absl::StrCat("node-a.2.", open))).ok());
  }
  o.decision_log = true;
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(UnfinishedIds(**j), (std::vector<std::string>{"node-a.1.1", "node-a.2.0", "node-a.2.1"}));
}

// The decision log's fdatasync fails: the decision may or may not be
// durable. Later decisions are refused until a restart, which writes back
// what reached the log.
TEST(RocksDbJournalTest, FailedDecisionLogSyncStopsDecisionsUntilTheRestart) {
  TempDir tmp;
  {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.1")).ok());
    ASSERT_TRUE(failpoint::Arm("journal.decision_log_sync", "error").ok());
    absl::Status s = (*j)->LogDecision(MakeDecision("node-a.1.2"));
    failpoint::DisarmAll();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    s = (*j)->LogDecision(MakeDecision("node-a.1.3"));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("until txcoord is restarted"));
  }
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  // 1.2 reached the file before its sync failed: written back; 1.3 was
  // refused before any write.
  EXPECT_EQ(UnfinishedIds(**j), (std::vector<std::string>{"node-a.1.1", "node-a.1.2"}));
  ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.2.1")).ok()) << "decisions go on";
}
// DecisionWriteHealth is asked at every two-phase commit: it must answer
// while a group's write is in progress, not wait for its fsync (it did, and
// every commit queued behind the group being written: engine_bench at 64
// fell from 13,000-18,000 to 6,000-7,000 commits/s).
TEST(RocksDbJournalTest, DecisionWriteHealthDoesNotWaitForAGroupsWrite) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE(failpoint::Arm("journal.decision_log_sync", "delay(3000)").ok());
  std::atomic<bool> logged{false};
  std::thread writer([&] {
    EXPECT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.1")).ok());
    logged = true;
  });
  absl::SleepFor(absl::Milliseconds(300));  // the writer is inside its group's write
  EXPECT_TRUE((*j)->DecisionWriteHealth().ok());
  EXPECT_FALSE(logged) << "DecisionWriteHealth waited for the group's write";
  writer.join();
  failpoint::DisarmAll();
  EXPECT_TRUE(logged);
}

// Starts `n` writers of decisions "<prefix>0" … while the first group is
// held inside its write (the caller arms a delay there), so that they all
// queue behind it. Returns their results once all have returned.
std::vector<absl::Status> LogBehindAHeldGroup(Journal& j, const std::string& prefix, int n) {
  std::thread first([&] { EXPECT_TRUE(j.LogDecision(MakeDecision(prefix + "first")).ok()); });
  while (failpoint::HitCount("journal.before_decision_sync") < 1) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  std::vector<absl::Status> results(n);
  std::atomic<int> returned{0};
  std::vector<std::thread> queued;
  for (int i = 0; i < n; ++i) {
    queued.emplace_back([&, i] {
      results[i] = j.LogDecision(MakeDecision(absl::StrCat(prefix, i)));
      ++returned;
    });
  }
  // A writer nobody leads would wait for ever: fail in bounded time.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (returned.load() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  if (returned.load() < n) {
    std::fprintf(stderr, "%d of %d queued writers still wait after 30 s: nobody leads them\n", n - returned.load(), n);
    std::abort();
  }
  first.join();
  for (auto& t : queued) t.join();
  return results;
}

// The writers queued behind a group form the next one, and its leader
// hands its result to every one of them: a failure too.
TEST(RocksDbJournalTest, QueuedWritersShareTheirGroupsResult) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE(failpoint::Arm("journal.before_decision_sync", "delay(1000)@1").ok());
  ASSERT_TRUE(failpoint::Arm("journal.after_decision_write", "error@2").ok());
  std::vector<absl::Status> results = LogBehindAHeldGroup(**j, "node-a.1.", 7);
  EXPECT_EQ(failpoint::HitCount("journal.before_decision_sync"), 2)
      << "the seven queued writers should have formed one group";
  failpoint::DisarmAll();
  for (const absl::Status& s : results) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  // Only the first group was made durable.
  EXPECT_EQ((*j)->Stats().decision_groups, 1u);
  EXPECT_EQ((*j)->Stats().decisions, 1u);
}

// With groups capped, the writers left behind a group are led by the next
// in line: every one of them returns, and every decision is there.
TEST(RocksDbJournalTest, WritersLeftBehindAFullGroupLeadTheNextOnes) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.max_group_size = 2;
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE(failpoint::Arm("journal.before_decision_sync", "delay(1000)@1").ok());
  std::vector<absl::Status> results = LogBehindAHeldGroup(**j, "node-a.1.", 7);
  EXPECT_EQ(failpoint::HitCount("journal.before_decision_sync"), 5)
      << "seven writers queued behind the first group: groups of 2, 2, 2 and 1";
  failpoint::DisarmAll();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(UnfinishedIds(**j).size(), 8u);
  EXPECT_EQ((*j)->Stats().decision_groups, 5u);
  EXPECT_EQ((*j)->Stats().decisions, 8u);
}
// Decisions of fibers on one event loop: a fiber never leads, so while a
// group is written (held here 200 ms) the loop runs its other fibers and
// they queue for the next group. A fiber leading would hold the loop's
// thread in the group's write: 40 fibers, 40 groups.
TEST(RocksDbJournalTest, FibersOfOneLoopShareGroupsWrittenByTheLeadThread) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE(failpoint::Arm("journal.before_decision_sync", "delay(200)@1").ok());
  constexpr int kFibers = 40;
  std::vector<absl::Status> results(kFibers);
  {
    util::FiberLoops loops(1);
    for (int i = 0; i < kFibers; ++i) {
      loops.Spawn([&, i] { results[i] = (*j)->LogDecision(MakeDecision(absl::StrCat("node-a.1.", i))); });
    }
  }
  failpoint::DisarmAll();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ((*j)->Stats().decisions, static_cast<uint64_t>(kFibers));
  EXPECT_LE((*j)->Stats().decision_groups, 3u);
  EXPECT_EQ(UnfinishedIds(**j).size(), static_cast<size_t>(kFibers));
}
#endif  // TXC_FAILPOINTS_ENABLED

}  // namespace
}  // namespace txcoord::journal
