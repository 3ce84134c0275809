// A database that stops answering (its server stopped, or a link that
// still accepts but carries nothing): the real databases behind a
// FreezingProxy (tests/testing/freezing_proxy.h, the injected fault).
// txcoord must fail the calls on that bind within timeouts.database_reply,
// keep serving every other bind meanwhile, and leave nothing locked or
// prepared once the transactions touching it have ended.
#include <chrono>
#include <future>
#include <thread>

#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/freezing_proxy.h"

namespace txcoord::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr absl::Duration kTxnTimeout = absl::Milliseconds(1500);
constexpr absl::Duration kReply = absl::Seconds(3);
// A call on a frozen bind must end within this (the reply timeout, a
// connect timeout of the same length, and scheduling slack).
constexpr auto kBound = std::chrono::seconds(20);

class FrozenDatabaseTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    CoordinatorTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_GT(PortOf(pg_uri_), 0) << pg_uri_;
    ASSERT_GT(PortOf(maria_dsn_), 0) << maria_dsn_;
    pg_proxy_ = std::make_unique<FreezingProxy>(PortOf(pg_uri_));
    my_proxy_ = std::make_unique<FreezingProxy>(PortOf(maria_dsn_));
    // The same server again, with the proxied binds "pgf" and "myf".
    StopServer();
    coordinator::Config c = MakeConfig();
    c.timeouts.transaction = kTxnTimeout;
    c.timeouts.database_reply = kReply;
    for (auto [name, driver, dsn] : {std::tuple{"pgf", "postgres", WithPort(pg_uri_, pg_proxy_->port())},
                                     std::tuple{"myf", "odbc", WithPort(maria_dsn_, my_proxy_->port())},
                                     std::tuple{"myn", "mariadb", WithPort(maria_dsn_, my_proxy_->port())}}) {
      participants::BindOptions b;
      b.name = name;
      b.driver = driver;
      b.dsn = dsn;
      b.pool_size = 8;
      b.acquire_timeout = absl::Seconds(5);
      b.io_timeout = kReply;
      c.binds.push_back(b);
    }
    auto server = coordinator::TxcoordServer::Start(c);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::SessionService::NewStub(channel_);
  }

  void TearDown() override {
    if (pg_proxy_) pg_proxy_->Thaw();
    if (my_proxy_) my_proxy_->Thaw();
    CoordinatorTest::TearDown();
    pg_proxy_.reset();
    my_proxy_.reset();
  }

  // Execute with a client deadline far beyond kBound: only txcoord ends it.
  grpc::Status ExecWithin(const std::string& session, const std::string& bind, const std::string& sql,
                          std::chrono::seconds deadline = std::chrono::seconds(60)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::ExecuteRequest req;
    req.set_session_id(session);
    req.set_bind(bind);
    *req.add_statements() = Sql(sql);
    v1::ExecuteResponse resp;
    return stub_->Execute(&ctx, req, &resp);
  }

  grpc::Status RunWithin(const std::vector<std::pair<std::string, std::string>>& work, std::chrono::seconds deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::RunTransactionRequest req;
    for (const auto& [bind, sql] : work) {
      auto* w = req.add_work();
      w->set_bind(bind);
      *w->add_statements() = Sql(sql);
    }
    v1::RunTransactionResponse resp;
    return stub_->RunTransaction(&ctx, req, &resp);
  }

  // True once row `id` of pg_table_ on pg2 can be locked at once (no
  // transaction holds it), polled for up to 15 s.
  bool Pg2RowFreed(int id) {
    for (int i = 0; i < 150; ++i) {
      try {
        RawPostgres(pg2_uri_, absl::StrCat("BEGIN; SELECT 1 FROM ", pg_table_, " WHERE id = ", id,
                                           " FOR UPDATE NOWAIT; ROLLBACK"));
        return true;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return false;
  }

  // The proxied bind's call fails within kBound while other binds keep
  // committing, and the transaction's lock on pg2 is released.
  void ExpectFrozenBindFailsAlone(const std::string& bind, FreezingProxy& proxy, const std::string& sql,
                                  bool strand_at_thaw = false) {
    std::string s1 = Open();
    ASSERT_TRUE(ExecWithin(s1, "pg2", Debit(pg_table_, 1, 10)).ok());  // holds row 1 on pg2
    grpc::Status warm = ExecWithin(s1, bind, "SELECT 1");
    ASSERT_TRUE(warm.ok()) << warm.error_message();
    proxy.Freeze();
    auto started = Clock::now();
    auto stuck = std::async(std::launch::async, [&] { return ExecWithin(s1, bind, sql); });

    // Past the transaction's deadline the session reaper cancels it; none
    // of that may hold up a transaction on other databases.
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));
    ASSERT_EQ(stuck.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
        << "the call on the frozen bind ended before its reply timeout";
    for (int i = 2; i <= 4; ++i) {
      auto t0 = Clock::now();
      grpc::Status other = RunWithin({{"pg2", Debit(pg_table_, i, 1)}, {"maria", Credit(my_table_, i, 1)}},
                                     std::chrono::seconds(10));
      EXPECT_TRUE(other.ok()) << "a transaction on pg2 + maria while " << bind << " is frozen: "
                              << other.error_code() << " " << other.error_message();
      EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    }

    ASSERT_EQ(stuck.wait_for(kBound), std::future_status::ready) << "the call on the frozen bind never ended";
    grpc::Status st = stuck.get();
    EXPECT_FALSE(st.ok());
    // txcoord's answer (the transaction's deadline has passed by then, so
    // DEADLINE_EXCEEDED naming the bind), not the client's own deadline.
    EXPECT_THAT(st.error_message(), ::testing::HasSubstr("bind \"" + bind + "\""));
    EXPECT_LT(Clock::now() - started, kBound);
    EXPECT_TRUE(Pg2RowFreed(1)) << "the frozen transaction still holds its row on pg2";
    EXPECT_EQ(PgBalance(pg2_uri_, 1), kInitial);

    // A new connection to the frozen server fails too (connect timeout).
    std::string s2 = Open();
    auto t0 = Clock::now();
    grpc::Status fresh = ExecWithin(s2, bind, "SELECT 1");
    EXPECT_FALSE(fresh.ok());
    EXPECT_THAT(fresh.error_message(), ::testing::HasSubstr(bind));
    EXPECT_LT(Clock::now() - t0, kBound);
    (void)Close(s2);

    // Thawed, the bind serves again, two-phase commits included: the node's
    // claim on it (lost with its connection) is taken again, not mistaken
    // for another coordinator's (which would halt every commit decision).
    if (strand_at_thaw) {
      proxy.ThawStrandingOldConnections();
    } else {
      proxy.Thaw();
    }
    std::string s3 = Open();
    grpc::Status again = ExecWithin(s3, bind, "SELECT 1");
    EXPECT_TRUE(again.ok()) << again.error_message();
    (void)Rollback(s3);
    (void)Close(s3);
    (void)Close(s1);
    grpc::Status two_phase;
    for (int i = 0; i < 40; ++i) {
      two_phase = RunWithin({{"pg2", Debit(pg_table_, 6, 1)}, {bind, sql}}, std::chrono::seconds(30));
      if (two_phase.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    EXPECT_TRUE(two_phase.ok()) << two_phase.error_message();
    // Several recovery passes later (each checks the claim), still.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    two_phase = RunWithin({{"pg2", Debit(pg_table_, 6, 1)}, {bind, sql}}, std::chrono::seconds(30));
    EXPECT_TRUE(two_phase.ok()) << two_phase.error_message();
  }

  std::unique_ptr<FreezingProxy> pg_proxy_, my_proxy_;
};

TEST_F(FrozenDatabaseTest, AFrozenPostgresServerFailsItsCallsAndHoldsUpNoOtherBind) {
  ExpectFrozenBindFailsAlone("pgf", *pg_proxy_, Debit(pg_table_, 5, 10));
}

TEST_F(FrozenDatabaseTest, AFrozenMariadbServerFailsItsCallsAndHoldsUpNoOtherBind) {
  ExpectFrozenBindFailsAlone("myf", *my_proxy_, Credit(my_table_, 5, 10));
}

// A partition rather than a freeze: the server never learns that the old
// connections are gone, so the node's claim stays with txcoord's previous
// claim session; txcoord must take it back, not halt its commit decisions
// as if another coordinator held it.
TEST_F(FrozenDatabaseTest, APartitionedPostgresServerKeepsTheOldClaimSessionAndItIsTakenBack) {
  ExpectFrozenBindFailsAlone("pgf", *pg_proxy_, Debit(pg_table_, 5, 10), /*strand_at_thaw=*/true);
}

TEST_F(FrozenDatabaseTest, APartitionedMariadbServerKeepsTheOldClaimSessionAndItIsTakenBack) {
  ExpectFrozenBindFailsAlone("myf", *my_proxy_, Credit(my_table_, 5, 10), /*strand_at_thaw=*/true);
}

// The same on the native MariaDB driver (Connector/C, one deadline per call).
TEST_F(FrozenDatabaseTest, AFrozenMariadbServerFailsTheNativeDriversCallsAndHoldsUpNoOtherBind) {
  ExpectFrozenBindFailsAlone("myn", *my_proxy_, Credit(my_table_, 5, 10));
}

TEST_F(FrozenDatabaseTest, APartitionedMariadbServerKeepsTheNativeDriversOldClaimSessionAndItIsTakenBack) {
  ExpectFrozenBindFailsAlone("myn", *my_proxy_, Credit(my_table_, 5, 10), /*strand_at_thaw=*/true);
}

// Frozen while the commit's batch (BEGIN, the statement, PREPARE) is on
// its way: the commit fails within the reply timeout; once the server
// runs again, whatever of the batch reached it is rolled back (an orphan
// PREPARE by recovery) and no money moved.
TEST_F(FrozenDatabaseTest, AServerFrozenDuringCommitAbortsTheTransaction) {
  // A pooled connection to the proxied bind, so that the batch is sent.
  ASSERT_TRUE(RunWithin({{"pgf", "SELECT 1"}}, std::chrono::seconds(10)).ok());
  pg_proxy_->Freeze();
  auto t0 = Clock::now();
  grpc::Status st = RunWithin({{"pg2", Debit(pg_table_, 7, 10)}, {"pgf", Credit(pg_table_, 7, 10)}},
                              std::chrono::seconds(60));
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.error_message(), ::testing::HasSubstr("pgf"));
  EXPECT_LT(Clock::now() - t0, kBound);
  EXPECT_TRUE(Pg2RowFreed(7));
  pg_proxy_->Thaw();
  // Recovery rolls back an orphan prepared branch after orphan_safety (2 s).
  int left = -1;
  for (int i = 0; i < 200 && left != 0; ++i) {
    left = PreparedLeft();
    if (left != 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, 0);
  EXPECT_EQ(PgBalance(pg2_uri_, 7), kInitial);
  EXPECT_EQ(PgBalance(pg_uri_, 7), kInitial);
}

// The reply timeout never cuts off a statement the transaction allows: a
// session asking for a longer transaction timeout than database_reply
// runs a PostgreSQL statement longer than database_reply.
TEST_F(FrozenDatabaseTest, AStatementTheTransactionAllowsOutlastsTheReplyTimeoutOnPostgres) {
  std::string s = Open(/*txn_timeout_ms=*/15000);
  auto t0 = Clock::now();
  grpc::Status st = ExecWithin(s, "pgf", "SELECT pg_sleep(5)");
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_GE(Clock::now() - t0, std::chrono::seconds(5));
  (void)Rollback(s);
  (void)Close(s);
}

}  // namespace
}  // namespace txcoord::testing
