// TransactionService on the event loops: every call runs on a fiber, those
// that wait for a callback participant's RPC too. The tests on one loop
// catch a call that held the loop's thread while it waited (for a row
// lock, for a participant service): the loop's other calls would stop.
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "tests/coordinator/transaction_service_fixture.h"

namespace txcoord::testing {
namespace {

template <int loops>
class TransactionServiceOnLoops : public TransactionServiceTest {
 protected:
  void SetUp() override {
    with_lite_ = false;
    event_loops_ = loops;
    TransactionServiceTest::SetUp();
  }
  uint64_t Calls(const char* runs_on) {
    return server_->coordinator()->metrics().CounterValue("txcoord_transaction_calls_total", {{"runs_on", runs_on}});
  }
};

using TransactionServiceOnFibersTest = TransactionServiceOnLoops<2>;

TEST_F(TransactionServiceOnFibersTest, RegisteredBranchesCommitWithEveryCallOnAFiber) {
  v1::BeginGlobalResponse g = BeginGlobal({"pg", "maria"});
  PreparePg(XidOf(g, "pg"), 1, 30);
  PrepareMaria(XidOf(g, "maria"), 1, 30);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  ASSERT_TRUE(Register(g.txn_id(), "maria", XidOf(g, "maria")).ok());
  v1::Transaction t;
  grpc::Status s = CommitGlobal(g.txn_id(), &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 30);
  EXPECT_EQ(MyBalance(1), kInitial + 30);
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(Calls("fiber"), 4u);  // BeginGlobal, RegisterBranch twice, CommitGlobal
  EXPECT_EQ(Calls("thread"), 0u);
}

using TransactionServiceOnOneLoopTest = TransactionServiceOnLoops<1>;

// A CommitGlobal waiting for a participant service's Commit parks its
// fiber: on the one loop, another call (BeginGlobal) is answered while the
// service holds the Commit; the commit then completes.
TEST_F(TransactionServiceOnOneLoopTest, ACallWaitingForAParticipantServiceLeavesTheLoopFree) {
  KvState kv;
  KvServer kv_server(&kv, 0);
  v1::BeginGlobalResponse g = BeginGlobal({"pg"});
  PreparePg(XidOf(g, "pg"), 2, 5);
  ASSERT_TRUE(Register(g.txn_id(), "pg", XidOf(g, "pg")).ok());
  ASSERT_TRUE(RegisterCallback(g.txn_id(), "key-7", absl::StrCat("127.0.0.1:", kv_server.port())).ok());
  {
    absl::MutexLock lock(&kv.mu);
    kv.hold_commits = true;
  }
  v1::Transaction t;
  grpc::Status committed;
  std::thread committer([&] { committed = CommitGlobal(g.txn_id(), &t); });
  {
    absl::MutexLock lock(&kv.mu);
    ASSERT_TRUE(kv.mu.AwaitWithTimeout(
        absl::Condition(
            +[](KvState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->commits_held == 1; }, &kv),
        absl::Seconds(10)));
  }
  // The service holds the Commit; the loop answers another call.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::BeginGlobalResponse other;
  grpc::Status answered = txs_->BeginGlobal(&ctx, v1::BeginGlobalRequest(), &other);
  {
    absl::MutexLock lock(&kv.mu);
    kv.hold_commits = false;
  }
  committer.join();
  EXPECT_TRUE(answered.ok()) << answered.error_message();
  ASSERT_TRUE(committed.ok()) << committed.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  {
    absl::MutexLock lock(&kv.mu);
    EXPECT_EQ(kv.branches[g.txn_id() + "/key-7"], "committed");
  }
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial - 5);
  EXPECT_EQ(Calls("thread"), 0u);
  EXPECT_EQ(Calls("fiber"), 5u);  // BeginGlobal twice, RegisterBranch twice, CommitGlobal
}

// 12 clients, 3 global transactions each, all debiting PostgreSQL row 7
// through TransactionService.Execute (txcoord runs the branch) and
// crediting their own MariaDB row: each Execute on row 7 waits for the
// lock held by another client's open transaction, whose CommitGlobal runs
// on a fiber of the same loop.
TEST_F(TransactionServiceOnOneLoopTest, ContendedExecutesAndCommitsOnOneLoopAllCommit) {
  constexpr int kClients = 12;
  constexpr int kEach = 3;
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kEach && errors[c].empty(); ++i) {
        v1::BeginGlobalResponse g = BeginGlobal({});
        grpc::Status st = ExecuteGlobal(g.txn_id(), "pg", Debit(pg_table_, 7, 1));
        if (st.ok()) st = ExecuteGlobal(g.txn_id(), "maria", Credit(my_table_, 40 + c, 1));
        v1::Transaction t;
        if (st.ok()) st = CommitGlobal(g.txn_id(), &t);
        if (!st.ok())
          errors[c] = st.error_message();
        else if (t.state() != v1::COMMITTED)
          errors[c] = v1::TransactionState_Name(t.state());
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(errors[c], "") << "client " << c;
  EXPECT_EQ(PgBalance(pg_uri_, 7), kInitial - kClients * kEach);
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(MyBalance(40 + c), kInitial + kEach) << "client " << c;
  EXPECT_EQ(PreparedLeft(), 0);
  EXPECT_EQ(Calls("thread"), 0u);
  EXPECT_EQ(Calls("fiber"), static_cast<uint64_t>(kClients * kEach * 4));
}

}  // namespace
}  // namespace txcoord::testing
