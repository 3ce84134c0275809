#include "journal/rocksdb_journal.h"

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

TEST(RocksDbJournalTest, EpochIncrementsAtEveryOpen) {
  TempDir tmp;
  for (uint64_t expected = 1; expected <= 3; ++expected) {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ((*j)->epoch(), expected);
    EXPECT_EQ((*j)->node_id(), "node-a");
  }
}

TEST(RocksDbJournalTest, DirectoryIsOwnerOnly) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  struct stat st;
  ASSERT_EQ(::stat(tmp.Sub("j").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(RocksDbJournalTest, LoggedDecisionSurvivesReopenUntilFinished) {
  TempDir tmp;
  DecisionRecord d = MakeDecision("node-a.1.7");
  {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE((*j)->LogDecision(d).ok());
  }
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok()) << j.status();
  auto unfinished = (*j)->ScanUnfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].txn_id(), "node-a.1.7");
  EXPECT_EQ((*unfinished)[0].branches_size(), 3);
  EXPECT_EQ((*unfinished)[0].schema_version(), kSchemaVersion);
  EXPECT_EQ((*unfinished)[0].branches(2).bqual(), "2-bind_2");

  DecisionRecord done = (*unfinished)[0];
  done.set_state(COMMITTED);
  ASSERT_TRUE((*j)->MarkFinished(done).ok());
  EXPECT_TRUE((*j)->ScanUnfinished()->empty());
  auto found = (*j)->Find("node-a.1.7");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->state(), COMMITTED);
  EXPECT_GT((*found)->finished_at_unix_micros(), 0);
  EXPECT_EQ((*j)->finished_count(), 1);
  EXPECT_FALSE((*(*j)->Find("node-a.1.8")).has_value());
}

// The journal stamps its schema version into each record it stores,
// whether or not the caller set one, and stores the record's canonical
// bytes; a finished record keeps the caller's finished_at.
TEST(RocksDbJournalTest, StoredDecisionCarriesTheSchemaVersion) {
  TempDir tmp;
  DecisionRecord plain = MakeDecision("node-a.1.1");
  DecisionRecord versioned = MakeDecision("node-a.1.2");
  versioned.set_schema_version(kSchemaVersion);
  DecisionRecord finished = MakeDecision("node-a.1.3");
  finished.set_state(COMMITTED);
  finished.set_finished_at_unix_micros(1'800'000'000'000'000);
  {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE((*j)->LogDecision(plain).ok());
    ASSERT_TRUE((*j)->LogDecision(versioned).ok());
    ASSERT_TRUE((*j)->LogDecision(MakeDecision(finished.txn_id())).ok());
    ASSERT_TRUE((*j)->MarkFinished(finished).ok());
  }
  txcoord::testing::RawJournalDb raw(tmp.Sub("j"));
  ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();
  for (const DecisionRecord* r : {&plain, &versioned, &finished}) {
    std::string stored;
    ASSERT_TRUE(raw.db()->Get(rocksdb::ReadOptions(), r == &finished ? raw.history() : raw.unfinished(),
                              r->txn_id(), &stored).ok()) << r->txn_id();
    DecisionRecord expected = *r;
    expected.set_schema_version(kSchemaVersion);
    EXPECT_EQ(stored, expected.SerializeAsString()) << r->txn_id();
  }
}

TEST(RocksDbJournalTest, UpdateDecisionReplacesTheUnfinishedRecord) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  DecisionRecord d = MakeDecision("node-a.1.1");
  ASSERT_TRUE((*j)->LogDecision(d).ok());
  d.mutable_branches(0)->set_state(BRANCH_COMMITTED);
  d.mutable_branches(1)->set_attempts(4);
  d.mutable_branches(1)->set_last_error("bind_1 unavailable");
  ASSERT_TRUE((*j)->UpdateDecision(d).ok());
  auto unfinished = (*j)->ScanUnfinished();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].branches(0).state(), BRANCH_COMMITTED);
  EXPECT_EQ((*unfinished)[0].branches(1).attempts(), 4);
  EXPECT_EQ((*unfinished)[0].branches(1).last_error(), "bind_1 unavailable");
}

// Logs node-a.1.1 to .3 (idempotency keys key-1 to key-3) and node-a.1.4;
// returns the first three as COMMITTED records finished at 1000 µs × i.
std::vector<DecisionRecord> LogFourReturnThreeFinished(Journal& j) {
  std::vector<DecisionRecord> done;
  for (int i = 1; i <= 3; ++i) {
    DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i));
    d.set_idempotency_key(absl::StrCat("key-", i));
    EXPECT_TRUE(j.LogDecision(d).ok());
    d.set_state(COMMITTED);
    d.set_finished_at_unix_micros(1000 * i);
    done.push_back(d);
  }
  EXPECT_TRUE(j.LogDecision(MakeDecision("node-a.1.4")).ok());
  return done;
}

// After LogFourReturnThreeFinished's three were finished: they are in
// history, findable by id and key, and node-a.1.4 alone is unfinished.
void ExpectThreeInHistoryOneUnfinished(Journal& j) {
  EXPECT_EQ(j.finished_count(), 3);
  EXPECT_EQ(UnfinishedIds(j), std::vector<std::string>{"node-a.1.4"});
  auto found = j.Find("node-a.1.2");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->state(), COMMITTED);
  auto by_key = j.FindIdempotencyKey("key-3");
  ASSERT_TRUE(by_key.ok());
  EXPECT_EQ(by_key->value_or(""), "node-a.1.3");
  auto listed = j.ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 3u) << "each listed once";
}

// Several ENDs in one write (the coordinator's END writer), one of them a
// replay of an already finished record.
TEST(RocksDbJournalTest, FinishingManyAtOnce) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  std::vector<DecisionRecord> done = LogFourReturnThreeFinished(**j);
  ASSERT_TRUE((*j)->MarkFinished(done[0]).ok());
  done[0].set_finished_at_unix_micros(5000);
  ASSERT_TRUE((*j)->MarkFinishedMany(done).ok());
  ExpectThreeInHistoryOneUnfinished(**j);
  auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok() && !listed->empty());
  EXPECT_EQ((*listed)[0].txn_id(), "node-a.1.1") << "the replayed one, at its new time";
}

// The END writer's path: decisions logged here, finished once, without a
// history read.
TEST(RocksDbJournalTest, MarkDecidedFinishedMovesDecisionsToHistory) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE((*j)->MarkDecidedFinished(LogFourReturnThreeFinished(**j)).ok());
  ExpectThreeInHistoryOneUnfinished(**j);
  auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok() && !listed->empty());
  EXPECT_EQ((*listed)[0].txn_id(), "node-a.1.3");
}

TEST(RocksDbJournalTest, FinishingTwiceCountsOnce) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  DecisionRecord d = MakeDecision("node-a.1.1");
  ASSERT_TRUE((*j)->LogDecision(d).ok());
  d.set_finished_at_unix_micros(1000);
  ASSERT_TRUE((*j)->MarkFinished(d).ok());
  d.set_finished_at_unix_micros(2000);  // a replay after a crash
  ASSERT_TRUE((*j)->MarkFinished(d).ok());
  EXPECT_EQ((*j)->finished_count(), 1);
  auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].finished_at_unix_micros(), 2000);
}

TEST(RocksDbJournalTest, RecordFinishedKeepsAOnePhaseOutcomeInHistory) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 2;
  absl::Time now = absl::Now();
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.9")).ok());
    for (int i = 1; i <= 3; ++i) {
      DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i), 1);
      d.set_state(COMMITTED);
      d.set_finished_at_unix_micros(absl::ToUnixMicros(now) + i);
      ASSERT_TRUE((*j)->RecordFinished(d).ok());
    }
    EXPECT_EQ((*j)->finished_count(), 3);
    auto found = (*j)->Find("node-a.1.2");
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->state(), COMMITTED);
    auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 3u);
    EXPECT_EQ((*listed)[0].txn_id(), "node-a.1.3");
    auto unfinished = (*j)->ScanUnfinished();
    ASSERT_TRUE(unfinished.ok());
    ASSERT_EQ(unfinished->size(), 1u) << "an unrelated unfinished decision stays";
    EXPECT_EQ((*unfinished)[0].txn_id(), "node-a.1.9");
  }
  // Counted and indexed by time like any END: the count survives a reopen
  // and the retention removes the oldest.
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)->finished_count(), 3);
  auto deleted = (*j)->CollectGarbage(now);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  EXPECT_FALSE((*(*j)->Find("node-a.1.1")).has_value());
  EXPECT_TRUE((*(*j)->Find("node-a.1.3")).has_value());
}

TEST(RocksDbJournalTest, ListFinishedPagesNewestFirst) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  for (int i = 1; i <= 5; ++i) {
    DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i));
    d.set_finished_at_unix_micros(i * 1000);
    ASSERT_TRUE((*j)->MarkFinished(d).ok());
  }
  auto page1 = (*j)->ListFinished(absl::InfiniteFuture(), 2);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].txn_id(), "node-a.1.5");
  EXPECT_EQ((*page1)[1].txn_id(), "node-a.1.4");
  auto page2 = (*j)->ListFinished(
      absl::FromUnixMicros((*page1)[1].finished_at_unix_micros()), 10);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 3u);
  EXPECT_EQ((*page2)[0].txn_id(), "node-a.1.3");
  EXPECT_EQ((*page2)[2].txn_id(), "node-a.1.1");
}

TEST(RocksDbJournalTest, GarbageCollectionKeepsRetentionAndNeverTouchesUnfinished) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 3;
  o.retention.finished_max_age = absl::Hours(1);
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok());
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  // 2 records older than the max age, 5 recent ones.
  for (int i = 0; i < 7; ++i) {
    DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i));
    absl::Time finished = i < 2 ? now - absl::Hours(2) + absl::Seconds(i)
                                : now - absl::Minutes(10) + absl::Seconds(i);
    d.set_finished_at_unix_micros(absl::ToUnixMicros(finished));
    ASSERT_TRUE((*j)->MarkFinished(d).ok());
  }
  ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.100")).ok());
  EXPECT_EQ((*j)->finished_count(), 7);
  auto deleted = (*j)->CollectGarbage(now);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 4);  // 2 too old, then 2 more over the count of 3
  EXPECT_EQ((*j)->finished_count(), 3);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE((*(*j)->Find(absl::StrCat("node-a.1.", i))).has_value()) << i;
  }
  for (int i = 4; i < 7; ++i) {
    EXPECT_TRUE((*(*j)->Find(absl::StrCat("node-a.1.", i))).has_value()) << i;
  }
  auto unfinished = (*j)->ScanUnfinished();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].txn_id(), "node-a.1.100");
  // The count survives a reopen.
  j->reset();
  auto again = OpenRocksDbJournal(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->finished_count(), 3);
  // Aging alone: an hour later everything left in history is too old.
  EXPECT_EQ(*(*again)->CollectGarbage(now + absl::Hours(2)), 3);
  EXPECT_EQ((*again)->ScanUnfinished()->size(), 1u);
}

TEST(RocksDbJournalTest, GarbageCollectionIsBoundedPerPassAndResumesWhereItStopped) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 1;
  o.retention.max_per_pass = 2;
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok());
  const absl::Time now = absl::Now();
  auto finish = [&](int i) {
    DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i), 1);
    d.set_state(COMMITTED);
    d.set_finished_at_unix_micros(absl::ToUnixMicros(now) + i);
    ASSERT_TRUE((*j)->RecordFinished(d).ok());
  };
  for (int i = 1; i <= 7; ++i) finish(i);
  std::vector<int64_t> passes;
  for (int k = 0; k < 5; ++k) passes.push_back(*(*j)->CollectGarbage(now));
  EXPECT_EQ(passes, (std::vector<int64_t>{2, 2, 2, 0, 0}));
  EXPECT_EQ((*j)->finished_count(), 1);
  EXPECT_TRUE((*(*j)->Find("node-a.1.7")).has_value());
  // Newer records after the passes: collected from where the last one stopped.
  for (int i = 8; i <= 10; ++i) finish(i);
  EXPECT_EQ(*(*j)->CollectGarbage(now), 2);
  EXPECT_EQ(*(*j)->CollectGarbage(now), 1);
  EXPECT_EQ((*j)->finished_count(), 1);
  for (int i = 1; i <= 9; ++i) EXPECT_FALSE((*(*j)->Find(absl::StrCat("node-a.1.", i))).has_value()) << i;
  EXPECT_TRUE((*(*j)->Find("node-a.1.10")).has_value());
  auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
}

// A pass whose write fails deletes nothing; the next pass must not skip the
// records the failed one had walked past.
TEST(RocksDbJournalTest, GarbageCollectionAfterAFailedWriteStartsAgainAtTheOldest) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 2;
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok());
  const absl::Time now = absl::Now();
  for (int i = 1; i <= 6; ++i) {
    DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i), 1);
    d.set_state(COMMITTED);
    d.set_finished_at_unix_micros(absl::ToUnixMicros(now) + i);
    ASSERT_TRUE((*j)->RecordFinished(d).ok());
  }
  ASSERT_TRUE(failpoint::Arm("journal.collect_garbage_write", "error").ok());
  absl::StatusOr<int64_t> failed = (*j)->CollectGarbage(now);
  failpoint::DisarmAll();
#ifdef TXC_FAILPOINTS_ENABLED
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*j)->finished_count(), 6);
  EXPECT_EQ(*(*j)->CollectGarbage(now), 4);
  EXPECT_EQ((*j)->finished_count(), 2);
  for (int i = 1; i <= 4; ++i) EXPECT_FALSE((*(*j)->Find(absl::StrCat("node-a.1.", i))).has_value()) << i;
  auto listed = (*j)->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);
#else
  GTEST_SKIP() << "fault points are compiled out of this build";
#endif
}

TEST(RocksDbJournalTest, GarbageCollectionStoresItsMarkerWithTheDeletions) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 2;
  const absl::Time now = absl::Now();
  // The marker: the highest sequence number collected.
  CollectedMarkerFold highest = [](const std::string& marker, absl::string_view id) {
    int64_t seq = 0, old = 0;
    EXPECT_TRUE(absl::SimpleAtoi(id.substr(id.rfind('.') + 1), &seq)) << id;
    if (!marker.empty()) {
      EXPECT_TRUE(absl::SimpleAtoi(marker, &old)) << marker;
    }
    return absl::StrCat(std::max(seq, old));
  };
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ((*j)->CollectedMarker(), "");
    int order = 0;
    for (int i : {3, 1, 5, 2, 4}) {  // finished in this order
      DecisionRecord d = MakeDecision(absl::StrCat("node-a.1.", i), 1);
      d.set_state(COMMITTED);
      d.set_finished_at_unix_micros(absl::ToUnixMicros(now) + 10 * ++order);
      ASSERT_TRUE((*j)->RecordFinished(d).ok());
    }
    EXPECT_EQ(*(*j)->CollectGarbage(now, highest), 3);  // 3, 1 and 5, the oldest three
    EXPECT_EQ((*j)->CollectedMarker(), "5");
    EXPECT_EQ(*(*j)->CollectGarbage(now, highest), 0);
    EXPECT_EQ((*j)->CollectedMarker(), "5") << "a pass that deletes nothing keeps the marker";
  }
  auto again = OpenRocksDbJournal(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->CollectedMarker(), "5") << "stored with the deletions";
  EXPECT_TRUE((*(*again)->Find("node-a.1.2")).has_value());
  EXPECT_TRUE((*(*again)->Find("node-a.1.4")).has_value());
}

// RunTransaction's idempotency keys: found with their decision, with a
// one-phase outcome, after a reopen and after the decision log wrote back
// what RocksDB lost; deleted with their history record by the retention.
TEST(RocksDbJournalTest, IdempotencyKeysAreKeptWithTheirRecords) {
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.retention.finished_max = 1;
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto keyed = [](DecisionRecord r, const std::string& key) {
    r.set_idempotency_key(key);
    return r;
  };
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_FALSE((*(*j)->FindIdempotencyKey("alice/k1")).has_value());
    ASSERT_TRUE((*j)->LogDecision(keyed(MakeDecision("node-a.1.1"), "alice/k1")).ok());
    DecisionRecord one = keyed(MakeDecision("node-a.1.2", 1), "alice/k2");
    one.set_state(COMMITTED);
    one.set_finished_at_unix_micros(absl::ToUnixMicros(now - absl::Minutes(2)));
    ASSERT_TRUE((*j)->RecordFinished(one).ok());
    ASSERT_TRUE(failpoint::Arm("journal.lose_index_writes", "error").ok());
    ASSERT_TRUE((*j)->LogDecision(keyed(MakeDecision("node-a.1.3"), "bob/k1")).ok());
    failpoint::DisarmAll();
    EXPECT_FALSE((*(*j)->FindIdempotencyKey("bob/k1")).has_value()) << "lost with the index";
  }
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(*(*j)->FindIdempotencyKey("alice/k1"), std::optional<std::string>("node-a.1.1"));
  EXPECT_EQ(*(*j)->FindIdempotencyKey("alice/k2"), std::optional<std::string>("node-a.1.2"));
  EXPECT_EQ(*(*j)->FindIdempotencyKey("bob/k1"), std::optional<std::string>("node-a.1.3"));
  // Finished (END): still found; then the retention keeps one record, the
  // newest, and removes the older one's key with it.
  DecisionRecord end = keyed(MakeDecision("node-a.1.1"), "alice/k1");
  end.set_state(COMMITTED);
  end.set_finished_at_unix_micros(absl::ToUnixMicros(now - absl::Minutes(1)));
  ASSERT_TRUE((*j)->MarkFinished(end).ok());
  EXPECT_EQ(*(*j)->FindIdempotencyKey("alice/k1"), std::optional<std::string>("node-a.1.1"));
  EXPECT_EQ(*(*j)->CollectGarbage(now), 1);
  EXPECT_FALSE((*(*j)->FindIdempotencyKey("alice/k2")).has_value());
  EXPECT_EQ(*(*j)->FindIdempotencyKey("alice/k1"), std::optional<std::string>("node-a.1.1"));
}

TEST(RocksDbJournalTest, RefusesAnotherNodeId) {
  TempDir tmp;
  ASSERT_TRUE(OpenRocksDbJournal(Options(tmp.Sub("j"), "node-a")).ok());
  auto other = OpenRocksDbJournal(Options(tmp.Sub("j"), "node-b"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("node-a"));
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("node-b"));
}

TEST(RocksDbJournalTest, RefusesASecondOpenInThisProcess) {
  TempDir tmp;
  auto first = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(first.ok());
  auto second = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already open"));
}

TEST(RocksDbJournalTest, RefusesASecondOpenInAnotherProcess) {
  TempDir tmp;
  auto first = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(first.ok());
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto second = OpenRocksDbJournal(Options(tmp.Sub("j")));
    char code = second.ok() ? 'O'
                : second.status().code() == absl::StatusCode::kFailedPrecondition ? 'F'
                                                                                   : 'X';
    (void)!::write(pipefd[1], &code, 1);
    ::_exit(0);
  }
  char code = 0;
  ASSERT_EQ(::read(pipefd[0], &code, 1), 1);
  ::waitpid(pid, nullptr, 0);
  EXPECT_EQ(code, 'F');
}

TEST(RocksDbJournalTest, UnreadableRecordRefusesToStartAndNamesTheKey) {
  TempDir tmp;
  {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->LogDecision(MakeDecision("node-a.1.1")).ok());
  }
  {  // Damage one record behind the journal's back.
    txcoord::testing::RawJournalDb raw(tmp.Sub("j"));
    ASSERT_TRUE(raw.status().ok()) << raw.status().ToString();
    ASSERT_TRUE(raw.db()->Put(rocksdb::WriteOptions(), raw.unfinished(), "node-a.1.2",
                              "\xff\xff not a protobuf")
                    .ok());
  }
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("node-a.1.2"));
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("ldb"));
}

TEST(RocksDbJournalTest, WriteErrorIsReturnedAndNothingIsLogged) {
  TempDir tmp;
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE(failpoint::Arm("journal.before_decision_sync", "error").ok());
  absl::Status s = (*j)->LogDecision(MakeDecision("node-a.1.1"));
  failpoint::DisarmAll();
#ifdef TXC_FAILPOINTS_ENABLED
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*j)->ScanUnfinished()->empty());
#else
  GTEST_SKIP() << "fault points are compiled out of this build";
#endif
}

// A sync reported failed after the write reached the log: the record is
// there, and the next open reads it back (the caller left the branches
// prepared for that open to decide).
TEST(RocksDbJournalTest, DecisionWrittenDespiteAFailedWriteIsReadAtTheNextOpen) {
#ifndef TXC_FAILPOINTS_ENABLED
  GTEST_SKIP() << "fault points are compiled out of this build";
#else
  TempDir tmp;
  {
    auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE(failpoint::Arm("journal.after_decision_write", "error").ok());
    absl::Status s = (*j)->LogDecision(MakeDecision("node-a.1.1"));
    failpoint::DisarmAll();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    ASSERT_TRUE(failpoint::Arm("journal.before_decision_sync", "error").ok());
    EXPECT_FALSE((*j)->LogDecision(MakeDecision("node-a.1.2")).ok());
    failpoint::DisarmAll();
  }
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(UnfinishedIds(**j), std::vector<std::string>{"node-a.1.1"});
#endif
}

// RocksDB's WAL sync fails (EIO) on the synced path (no decision log, or
// a large group): later decisions are refused until the reopen, which
// reads what reached the log.
TEST(RocksDbJournalTest, FailedWalSyncStopsDecisionsUntilTheRestart) {
#ifndef TXC_FAILPOINTS_ENABLED
  GTEST_SKIP() << "fault points are compiled out of this build";
#else
  TempDir tmp;
  JournalOptions o = Options(tmp.Sub("j"));
  o.decision_log = false;
  {
    auto j = OpenRocksDbJournal(o);
    ASSERT_TRUE(j.ok()) << j.status();
    ASSERT_TRUE(failpoint::Arm("journal.wal_sync", "error").ok());
    EXPECT_EQ((*j)->LogDecision(MakeDecision("node-a.1.1")).code(), absl::StatusCode::kUnavailable);
    failpoint::DisarmAll();
    absl::Status s = (*j)->LogDecision(MakeDecision("node-a.1.2"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("until txcoord is restarted"));
  }
  auto j = OpenRocksDbJournal(o);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(UnfinishedIds(**j), std::vector<std::string>{"node-a.1.1"});
  EXPECT_TRUE((*j)->LogDecision(MakeDecision("node-a.2.1")).ok());
#endif
}

TEST(RocksDbJournalTest, RejectsBadOptionsAndEmptyTxnId) {
  TempDir tmp;
  EXPECT_EQ(OpenRocksDbJournal(Options("", "n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenRocksDbJournal(Options(tmp.Sub("j"), "")).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto j = OpenRocksDbJournal(Options(tmp.Sub("j")));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)->LogDecision(DecisionRecord()).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txcoord::journal
