// EtcdJournal against the real etcd of deploy/local/start.sh
// (TXC_ETCD_ENDPOINTS): records, group commit, retention, one id per
// process, fencing after an adoption, and a decision whose reply was lost.
// Every test works under a prefix of its own.
#include "journal/etcd_journal.h"

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/testing/etcd_cluster.h"
#include "tests/testing/local_db.h"
#include "util/failpoint.h"
#include "util/fiber.h"

namespace txcoord::journal {
namespace {

DecisionRecord Committing(const std::string& txn_id, const std::string& key = "") {
  DecisionRecord r;
  r.set_schema_version(kSchemaVersion);
  r.set_txn_id(txn_id);
  r.set_state(COMMITTING);
  r.set_idempotency_key(key);
  BranchRecord* b = r.add_branches();
  b->set_bind("pg");
  b->set_gtrid(txn_id);
  b->set_state(BRANCH_PREPARED);
  return r;
}

class EtcdJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TXC_REQUIRE_DB_ENV(endpoints_, "TXC_ETCD_ENDPOINTS");
    prefix_ = absl::StrCat("/txcoord-test/", std::random_device{}(), "/");
  }
  void TearDown() override { failpoint::DisarmAll(); }

  JournalOptions Options(const std::string& node, absl::Duration acquire = absl::Seconds(5)) {
    JournalOptions o;
    o.backend = Backend::kEtcd;
    o.node_id = node;
    o.etcd.client.endpoints = absl::StrSplit(endpoints_, ',');
    o.etcd.client.call_timeout = absl::Seconds(3);
    o.etcd.prefix = prefix_;
    o.etcd.lease_ttl = absl::Seconds(3);
    o.etcd.acquire_timeout = acquire;
    o.etcd.owner_description = absl::StrCat("test ", node);
    return o;
  }
  std::unique_ptr<EtcdJournal> Open(const std::string& node) {
    auto j = EtcdJournal::Open(Options(node));
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *std::move(j) : nullptr;
  }

  std::string endpoints_;
  std::string prefix_;
};

TEST_F(EtcdJournalTest, RecordsMoveFromDecisionsToHistoryAndAreCollected) {
  auto j = Open("n1");
  ASSERT_NE(j, nullptr);
  EXPECT_GT(j->epoch(), 0u);
  const std::string a = absl::StrCat("n1.", j->epoch(), ".1"), b = absl::StrCat("n1.", j->epoch(), ".2");
  ASSERT_TRUE(j->LogDecision(Committing(a, "alice/k1")).ok());
  ASSERT_TRUE(j->LogDecision(Committing(b)).ok());
  auto unfinished = j->ScanUnfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_EQ(unfinished->size(), 2u);
  EXPECT_EQ(**j->FindIdempotencyKey("alice/k1"), a);
  EXPECT_FALSE(j->FindIdempotencyKey("alice/k2")->has_value());

  DecisionRecord done = Committing(a, "alice/k1");
  done.set_state(COMMITTED);
  done.set_finished_at_unix_micros(1000);
  ASSERT_TRUE(j->MarkFinished(done).ok());
  ASSERT_TRUE(j->MarkFinished(done).ok());  // twice: counted once
  DecisionRecord done_b = Committing(b);
  done_b.set_state(COMMITTED);
  done_b.set_finished_at_unix_micros(2000);
  ASSERT_TRUE(j->MarkFinishedMany({done_b}).ok());
  EXPECT_EQ(j->finished_count(), 2);
  EXPECT_TRUE(j->ScanUnfinished()->empty());
  auto found = j->Find(a);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->state(), COMMITTED);
  // UpdateDecision of a finished record does not bring it back.
  ASSERT_TRUE(j->UpdateDecision(Committing(a)).ok());
  EXPECT_TRUE(j->ScanUnfinished()->empty());

  auto listed = j->ListFinished(absl::InfiniteFuture(), 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].txn_id(), b);  // newest first
  listed = j->ListFinished(absl::FromUnixMicros(2000), 10);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].txn_id(), a);

  // Everything is older than the max age: both go, with a's key; the
  // marker is folded over the deleted ids and kept in etcd.
  auto deleted = j->CollectGarbage(absl::Now(), [](const std::string& m, absl::string_view id) {
    return m.empty() ? std::string(id) : absl::StrCat(m, ",", id);
  });
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(j->finished_count(), 0);
  EXPECT_FALSE(j->Find(a)->has_value());
  EXPECT_FALSE(j->FindIdempotencyKey("alice/k1")->has_value());
  EXPECT_EQ(j->CollectedMarker(), absl::StrCat(a, ",", b));
  EXPECT_EQ(*j->CollectedMarkerOf("n1"), absl::StrCat(a, ",", b));
}

TEST_F(EtcdJournalTest, ConcurrentDecisionsShareTransactions) {
  auto j = Open("n1");
  ASSERT_NE(j, nullptr);
  constexpr int kThreads = 48, kEach = 20;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!j->LogDecision(Committing(absl::StrCat("n1.", j->epoch(), ".", t * 1000 + i), absl::StrCat("u/", t, "-", i)))
                 .ok()) {
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(j->ScanUnfinished()->size(), size_t{kThreads * kEach});
  JournalStats stats = j->Stats();
  EXPECT_EQ(stats.decisions, uint64_t{kThreads * kEach});
  EXPECT_LT(stats.decision_groups, stats.decisions) << "no two decisions ever shared a Txn";
}

#if TXC_FAILPOINTS_ENABLED
// Fibers of one event loop: a decision waits without holding the loop's
// thread (the group commit's lead thread writes the Txn in its place), so
// the loop's other fibers join the next group instead of taking one Txn
// each while the loop waits for etcd.
TEST_F(EtcdJournalTest, FibersOfOneLoopShareTxnsWrittenByTheLeadThread) {
  auto j = Open("n1");
  ASSERT_NE(j, nullptr);
  ASSERT_TRUE(failpoint::Arm("journal.etcd.before_txn", "delay(200)@1").ok());
  constexpr int kFibers = 40;
  std::vector<absl::Status> results(kFibers);
  {
    util::FiberLoops loops(1);
    for (int i = 0; i < kFibers; ++i) {
      loops.Spawn([&, i] { results[i] = j->LogDecision(Committing(absl::StrCat("n1.", j->epoch(), ".", i))); });
    }
  }
  failpoint::DisarmAll();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(j->Stats().decisions, uint64_t{kFibers});
  EXPECT_LE(j->Stats().decision_groups, 3u);
  EXPECT_EQ(j->ScanUnfinished()->size(), size_t{kFibers});
}
#endif  // TXC_FAILPOINTS_ENABLED

TEST_F(EtcdJournalTest, ASecondProcessWithTheSameIdNeverGetsIt) {
  auto first = Open("n1");
  ASSERT_NE(first, nullptr);
  auto second = EtcdJournal::Open(Options("n1", absl::Seconds(1)));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().message().find("test n1"), std::string::npos) << second.status();
  EXPECT_TRUE(first->LogDecision(Committing(absl::StrCat("n1.", first->epoch(), ".1"))).ok());
  // A clean stop lets the id go at once; the next process has a newer epoch.
  const uint64_t old_epoch = first->epoch();
  ASSERT_TRUE(first->Leave().ok());
  auto third = Open("n1");
  ASSERT_NE(third, nullptr);
  EXPECT_GT(third->epoch(), old_epoch);
  // It left a decision unfinished: not settled.
  auto node = third->NodeOf("n1");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_FALSE(node->settled);
  EXPECT_EQ(node->unfinished, 1);
}

TEST_F(EtcdJournalTest, AnAdoptedNodeIsFencedAndItsIdComesBack) {
  auto n1 = Open("n1");
  auto n2 = Open("n2");
  ASSERT_NE(n1, nullptr);
  ASSERT_NE(n2, nullptr);
  std::atomic<bool> lost_called{false};
  n1->SetLeaseLostCallback([&](const absl::Status&) { lost_called = true; });
  const std::string decided = absl::StrCat("n1.", n1->epoch(), ".1");
  ASSERT_TRUE(n1->LogDecision(Committing(decided)).ok());
  EXPECT_TRUE(n2->Orphans()->empty());

  // n1's lease ends as if it had stopped answering (revoked from outside).
  auto status = n2->NodeOf("n1");
  ASSERT_TRUE(status.ok()) << status.status();
  EtcdOptions eo;
  eo.endpoints = absl::StrSplit(endpoints_, ',');
  auto outside = EtcdClient::Create(eo);
  ASSERT_TRUE(outside.ok());
  ASSERT_TRUE((*outside)->RevokeLease(status->lease).ok());
  auto orphans = n2->Orphans();
  ASSERT_TRUE(orphans.ok()) << orphans.status();
  ASSERT_EQ(*orphans, std::vector<std::string>{"n1"});
  auto epoch = n2->TryAdopt("n1");
  ASSERT_TRUE(epoch.ok() && epoch->has_value()) << epoch.status();
  EXPECT_FALSE(n2->TryAdopt("n1")->has_value()) << "adopted twice";
  EXPECT_GT(**epoch, int64_t(n1->epoch()));

  // n1's late decision is refused by the fence, and known not written.
  absl::Status late = n1->LogDecision(Committing(absl::StrCat("n1.", n1->epoch(), ".2")));
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
  EXPECT_TRUE(IsDecisionNotWritten(late)) << late;
  EXPECT_FALSE(n1->DecisionWriteHealth().ok());
  EXPECT_TRUE(lost_called.load());

  // The adopter writes as n1 and finds n1's decision.
  auto as_n1 = n2->Attach("n1", **epoch);
  ASSERT_TRUE(as_n1.ok()) << as_n1.status();
  auto unfinished = (*as_n1)->ScanUnfinished();
  ASSERT_TRUE(unfinished.ok());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].txn_id(), decided);
  DecisionRecord done = (*unfinished)[0];
  done.set_state(COMMITTED);
  ASSERT_TRUE((*as_n1)->MarkFinished(done).ok());
  auto seen = n2->FindOnNode("n1", decided);
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->state(), COMMITTED);
  auto listing = n2->ListNodes();
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->size(), 2u);
  EXPECT_EQ((*listing)[0].adopted_by, "n2");
  EXPECT_EQ((*listing)[0].epoch, **epoch);

  ASSERT_TRUE(n2->ReleaseAdopted("n1", **epoch, /*settled=*/true).ok());
  EXPECT_TRUE(n2->Orphans()->empty());
  n1.reset();
  auto back = Open("n1");
  ASSERT_NE(back, nullptr);
  EXPECT_GT(int64_t(back->epoch()), **epoch);
}

TEST_F(EtcdJournalTest, ADecisionWhoseReplyWasLostIsSettledBeforeTheNext) {
  auto j = Open("n1");
  ASSERT_NE(j, nullptr);
  const std::string first = absl::StrCat("n1.", j->epoch(), ".1");
  ASSERT_TRUE(failpoint::Arm("journal.etcd.after_txn", "error@1").ok());
  absl::Status lost = j->LogDecision(Committing(first));
  EXPECT_FALSE(lost.ok());
  EXPECT_FALSE(IsDecisionNotWritten(lost)) << "the outcome of a lost reply is unknown";
  EXPECT_EQ(j->DecisionWriteHealth().code(), absl::StatusCode::kUnavailable);
  // The next decision first fences the lost one off, then goes through.
  ASSERT_TRUE(j->LogDecision(Committing(absl::StrCat("n1.", j->epoch(), ".2"))).ok());
  EXPECT_TRUE(j->DecisionWriteHealth().ok());
  EXPECT_TRUE(j->Find(first)->has_value()) << "the lost reply's Txn was applied";
}

// A start while etcd is not up yet (a cluster starting, a leader being
// elected) waits for it within acquire_timeout; without etcd it gives up.
TEST(EtcdJournalStartTest, WaitsForAnEtcdStillStartingAndGivesUpWithoutOne) {
  std::string unused;
  TXC_REQUIRE_DB_ENV(unused, "TXC_ETCD_ENDPOINTS");
  testing::EtcdCluster etcd(1);
  JournalOptions o;
  o.backend = Backend::kEtcd;
  o.node_id = "early";
  o.etcd.client.endpoints = etcd.endpoint_list();
  o.etcd.client.call_timeout = absl::Seconds(1);
  o.etcd.prefix = "/txcoord-test-start/";
  o.etcd.lease_ttl = absl::Seconds(3);
  o.etcd.acquire_timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  auto none = EtcdJournal::Open(o);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  o.etcd.acquire_timeout = absl::Seconds(30);
  // The open waits on another thread; etcd is started from this one (a
  // member dies with the thread that started it: PR_SET_PDEATHSIG).
  absl::StatusOr<std::unique_ptr<EtcdJournal>> j = absl::UnknownError("not opened");
  std::thread opener([&] { j = EtcdJournal::Open(o); });
  absl::SleepFor(absl::Seconds(2));
  etcd.StartAll();
  opener.join();
  ASSERT_TRUE(j.ok()) << j.status() << "\n" << etcd.Logs();
  EXPECT_GT((*j)->epoch(), 0u);
  EXPECT_TRUE((*j)->LogDecision(Committing(absl::StrCat("early.", (*j)->epoch(), ".1"))).ok());
}

}  // namespace
}  // namespace txcoord::journal
