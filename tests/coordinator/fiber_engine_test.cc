// RunTransaction on fibers: which calls run on the event loops, and that a
// loop's fibers never wait for each other through its thread (a pool
// smaller than the calls, rows locked by another fiber's prepared branch).
// A real gRPC server on loopback, real PostgreSQL and MariaDB.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "util/blocking.h"
#include "util/fiber.h"

namespace txcoord::testing {
namespace {

uint64_t OneShotCalls(coordinator::TxcoordServer& server, const char* runs_on) {
  return server.coordinator()->metrics().CounterValue("txcoord_one_shot_calls_total", {{"runs_on", runs_on}});
}

uint64_t SessionCalls(coordinator::TxcoordServer& server, const char* runs_on) {
  return server.coordinator()->metrics().CounterValue("txcoord_session_calls_total", {{"runs_on", runs_on}});
}

TEST_F(CoordinatorTest, RunTransactionRunsOnAFiberOnEveryDriver) {
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 1, 3)}}, {"maria", {Credit(my_table_, 1, 3)}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(OneShotCalls(*server_, "fiber"), 1u);
  EXPECT_EQ(OneShotCalls(*server_, "thread"), 0u);
  // SQLite through ODBC blocks in its driver: the call runs on a fiber, its
  // driver calls on the blocking pool's threads.
  st = RunWork(*stub_,
               {{"pg", {Debit(pg_table_, 1, 3)}},
                {"lite", {absl::StrCat("INSERT INTO ", lite_table_, " VALUES (1, 'from a fiber')")}}},
               &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(OneShotCalls(*server_, "fiber"), 2u);
  EXPECT_EQ(OneShotCalls(*server_, "thread"), 0u);
  EXPECT_GE(util::BlockingThreads().threads(), 1);
  EXPECT_EQ(PgBalance(pg_uri_, 1), kInitial - 6);
  EXPECT_EQ(MyBalance(1), kInitial + 3);
  // A refused request runs nowhere.
  st = RunWork(*stub_, {{"nope", {"SELECT 1"}}}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(OneShotCalls(*server_, "fiber") + OneShotCalls(*server_, "thread"), 2u);
  // Session calls too, with "lite" configured.
  ASSERT_FALSE(Open().empty());
  EXPECT_EQ(SessionCalls(*server_, "fiber"), 1u);
  EXPECT_EQ(SessionCalls(*server_, "thread"), 0u);
}

// libpqxx's blocking calls wait in libpq's poll(), which util/fiber.cc
// interposes: on a fiber, a 300 ms statement lets the loop's other fiber
// tick meanwhile (holding the thread, it would tick 0 times).
TEST_F(CoordinatorTest, ALibpqxxCallOnAFiberWaitsOnTheLoop) {
  std::atomic<bool> done{false};
  int ticks_during = -1;
  std::string error;
  std::atomic<int> ticks{0};
  {
    util::FiberLoops loops(1);
    loops.Spawn([&] {
      try {
        pqxx::connection c(pg_uri_);
        pqxx::nontransaction n(c);
        ticks = 0;
        n.exec("SELECT pg_sleep(0.3)");
        ticks_during = ticks.load();
      } catch (const std::exception& e) {
        error = e.what();
      }
      done = true;
    });
    loops.Spawn([&] {
      for (int i = 0; i < 400 && !done; ++i) {
        util::Sleep(absl::Milliseconds(5));
        ++ticks;
      }
    });
  }
  EXPECT_EQ(error, "");
  EXPECT_GE(ticks_during, 20);
}

// 16 clients move money between the same two PostgreSQL rows (and rows
// of their own on MariaDB) with two pooled connections on PostgreSQL: most
// calls wait for a connection, and most batches wait for a row lock held by
// another call's prepared branch.
// - On one event loop, a wait that held the loop's thread would stop the
//   fiber that holds what it waits for.
// - On threads and fibers alike, the calls waiting for the locks could hold
//   both pooled connections while the COMMIT PREPARED that releases the
//   locks waits for one (PostgreSQL's finish reserve prevents it).
// Either way calls would fail at the pool's acquire timeout (5 s) or the
// statement timeout instead of committing. (MariaDB keeps 40 connections: a
// pool smaller than the calls on both binds can deadlock through the pools
// on any engine — a call holding one bind's connection waits for the
// other's, held by calls waiting for its locks — until the acquire timeout
// ends it.)
class ContendedTest : public CoordinatorTest {
 protected:
  // `clients` threads each call `one(client, stub)` `each` times; every call
  // must return OK (the transaction committed).
  void AllCommit(int clients, int each, const std::function<grpc::Status(int, v1::SessionService::Stub&)>& one) {
    std::vector<std::string> errors(clients);
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto stub = v1::SessionService::NewStub(channel_);
        for (int i = 0; i < each; ++i) {
          grpc::Status st = one(c, *stub);
          if (!st.ok() && errors[c].empty()) errors[c] = st.error_message();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int c = 0; c < clients; ++c) EXPECT_EQ(errors[c], "") << "client " << c;
  }

  static grpc::Status Committed(const grpc::Status& st, v1::TransactionState state) {
    if (!st.ok() || state == v1::COMMITTED) return st;
    return grpc::Status(grpc::StatusCode::UNKNOWN, absl::StrCat("not COMMITTED: ", v1::TransactionState_Name(state)));
  }

  // Every client moves 1 from PostgreSQL row 7 to row 8 and credits its
  // own MariaDB row 20 + client.
  void ExpectTransferred(int clients, int each) {
    EXPECT_EQ(PgBalance(pg_uri_, 7), kInitial - clients * each);
    EXPECT_EQ(PgBalance(pg_uri_, 8), kInitial + clients * each);
    for (int c = 0; c < clients; ++c) EXPECT_EQ(MyBalance(20 + c), kInitial + each) << "client " << c;
    EXPECT_EQ(PreparedLeft(), 0);
  }

  void ContendedTransfersAllCommit(const char* runs_on) {
    constexpr int kClients = 16;
    constexpr int kEach = 5;
    AllCommit(kClients, kEach, [&](int c, v1::SessionService::Stub& stub) {
      v1::RunTransactionResponse resp;
      grpc::Status st = RunWork(
          stub, {{"pg", {Debit(pg_table_, 7, 1), Credit(pg_table_, 8, 1)}}, {"maria", {Credit(my_table_, 20 + c, 1)}}},
          &resp);
      return Committed(st, resp.state());
    });
    EXPECT_EQ(OneShotCalls(*server_, runs_on), static_cast<uint64_t>(kClients * kEach));
    ExpectTransferred(kClients, kEach);
  }
};

// The fixture with `loops` event loops, `pg_pool` PostgreSQL connections and
// the SQLite bind or not.
template <int loops, int pg_pool, bool lite>
class Configured : public ContendedTest {
 protected:
  void SetUp() override {
    event_loops_ = loops;
    pg_pool_size_ = pg_pool;
    with_lite_ = lite;
    CoordinatorTest::SetUp();
  }
};

class OneLoopTest : public Configured<1, 2, true> {};
TEST_F(OneLoopTest, ContendedCallsOnOneLoopWithATwoConnectionPoolAllCommit) {
  ContendedTransfersAllCommit("fiber");
}

class ThreadsSmallPoolTest : public Configured<0, 2, true> {};

TEST_F(ThreadsSmallPoolTest, ContendedCallsOnThreadsWithATwoConnectionPoolAllCommit) {
  ContendedTransfersAllCommit("thread");
}

// The session calls of 16 clients on one event loop (no bind whose driver
// blocks is configured), moving money between the same two PostgreSQL rows
// with two pooled connections: Execute waits for a row lock held by another
// session's open or prepared branch, Commit prepares both binds at once on
// fibers of the loop. Holding the loop's thread in any of those waits would
// stop the fiber that holds the lock.
class SessionsOnOneLoopTest : public Configured<1, 4, false> {};

TEST_F(SessionsOnOneLoopTest, ContendedSessionTransfersOnOneLoopAllCommit) {
  constexpr int kClients = 16;
  constexpr int kEach = 4;
  std::vector<std::string> sessions(kClients);
  AllCommit(kClients, kEach, [&](int c, v1::SessionService::Stub& stub) {
    if (sessions[c].empty()) {
      grpc::ClientContext ctx;
      v1::OpenSessionResponse resp;
      grpc::Status st = stub.OpenSession(&ctx, v1::OpenSessionRequest(), &resp);
      if (!st.ok()) return st;
      sessions[c] = resp.session_id();
    }
    auto exec = [&](const std::string& bind, const std::string& sql) {
      grpc::ClientContext ctx;
      v1::ExecuteRequest req;
      req.set_session_id(sessions[c]);
      req.set_bind(bind);
      *req.add_statements() = Sql(sql);
      v1::ExecuteResponse resp;
      return stub.Execute(&ctx, req, &resp);
    };
    grpc::Status st = exec("pg", Debit(pg_table_, 7, 1));
    if (st.ok()) st = exec("pg", Credit(pg_table_, 8, 1));
    if (st.ok()) st = exec("maria", Credit(my_table_, 20 + c, 1));
    if (!st.ok()) return st;
    grpc::ClientContext ctx;
    v1::CommitRequest req;
    req.set_session_id(sessions[c]);
    v1::CommitResponse resp;
    st = stub.Commit(&ctx, req, &resp);
    return Committed(st, resp.state());
  });
  EXPECT_EQ(SessionCalls(*server_, "thread"), 0u);
  EXPECT_EQ(SessionCalls(*server_, "fiber"), static_cast<uint64_t>(kClients * (1 + kEach * 4)));
  ExpectTransferred(kClients, kEach);
}

// The threads txcoord starts are named "txc-<role>" (util/thread_name.h).
// Counted by role while `clients` clients run one-shot transfers on
// PostgreSQL and MariaDB (sampled every 2 ms), with 4 and then 32
// clients: the count is the same. On binds whose drivers wait through the
// loop no call takes a branch worker.
std::map<std::string, int> PeakThreadsByRole(const std::function<void()>& load) {
  std::map<std::string, int> peak;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done.load()) {
      std::map<std::string, int> now;
      for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        if (std::getline(comm, name) && absl::StartsWith(name, "txc-")) ++now[name];
      }
      for (const auto& [role, n] : now) peak[role] = std::max(peak[role], n);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  load();
  done = true;
  sampler.join();
  return peak;
}

class ThreadBudgetTest : public Configured<2, 40, false> {};

TEST_F(ThreadBudgetTest, TxcoordsThreadsDoNotGrowWithClients) {
  auto transfers = [&](int clients) {
    return [&, clients] {
      AllCommit(clients, 6, [&](int c, v1::SessionService::Stub& stub) {
        v1::RunTransactionResponse resp;
        grpc::Status st = RunWork(stub, {{"pg", {Debit(pg_table_, 30 + c, 1)}}, {"maria", {Credit(my_table_, 30 + c, 1)}}},
                                  &resp);
        return Committed(st, resp.state());
      });
    };
  };
  transfers(2)();  // starts the threads that start with the first decision
  const std::map<std::string, int> few = PeakThreadsByRole(transfers(4));
  const std::map<std::string, int> many = PeakThreadsByRole(transfers(32));
  EXPECT_EQ(many, few);
  EXPECT_EQ(many.count("txc-branch"), 0u);
  EXPECT_EQ(many.at("txc-loop0"), 1);
  EXPECT_EQ(many.at("txc-loop1"), 1);
  EXPECT_EQ(many.at("txc-journal"), 1);
  EXPECT_EQ(OneShotCalls(*server_, "fiber"), static_cast<uint64_t>((2 + 4 + 32) * 6));
  EXPECT_EQ(PreparedLeft(), 0);
}

// ODBC binds on fibers: 24 clients run one-shot transfers and session
// transactions between PostgreSQL through psqlODBC (a pool of 4) and
// MariaDB. Every call runs on a fiber and no call takes a branch worker;
// the ODBC driver calls run on the blocking pool, whose threads stay
// within the bind's 4 connections (one call at a time per connection),
// however many clients wait.
class OdbcOnFibersTest : public ContendedTest {
 protected:
  void SetUp() override {
    with_pg_odbc_ = true;
    pg_pool_size_ = 4;
    event_loops_ = 2;
    CoordinatorTest::SetUp();
  }
};

TEST_F(OdbcOnFibersTest, BlockingThreadsStayWithinTheOdbcPool) {
  constexpr int kClients = 24;
  constexpr int kEach = 3;
  const std::map<std::string, int> peak = PeakThreadsByRole([&] {
    AllCommit(kClients, kEach, [&](int c, v1::SessionService::Stub& stub) {
      v1::RunTransactionResponse resp;
      grpc::Status st =
          RunWork(stub, {{"pgodbc", {Debit(pg_table_, 30 + c, 1)}}, {"maria", {Credit(my_table_, 30 + c, 1)}}}, &resp);
      if (!st.ok() || resp.state() != v1::COMMITTED) return Committed(st, resp.state());
      grpc::ClientContext open_ctx;
      v1::OpenSessionRequest open;
      v1::OpenSessionResponse opened;
      st = stub.OpenSession(&open_ctx, open, &opened);
      for (const auto& [bind, sql] : {std::pair<std::string, std::string>{"pgodbc", Debit(pg_table_, 30 + c, 1)},
                                      {"maria", Credit(my_table_, 30 + c, 1)}}) {
        if (!st.ok()) return st;
        grpc::ClientContext ctx;
        v1::ExecuteRequest req;
        req.set_session_id(opened.session_id());
        req.set_bind(bind);
        *req.add_statements() = Sql(sql);
        v1::ExecuteResponse out;
        st = stub.Execute(&ctx, req, &out);
      }
      if (!st.ok()) return st;
      grpc::ClientContext ctx;
      v1::CommitRequest req;
      req.set_session_id(opened.session_id());
      v1::CommitResponse out;
      st = stub.Commit(&ctx, req, &out);
      return Committed(st, out.state());
    });
  });
  EXPECT_EQ(peak.count("txc-branch"), 0u);
  ASSERT_EQ(peak.count("txc-blocking"), 1u);
  EXPECT_GE(peak.at("txc-blocking"), 1);
  EXPECT_LE(peak.at("txc-blocking"), 4);
  EXPECT_EQ(OneShotCalls(*server_, "fiber"), static_cast<uint64_t>(kClients * kEach));
  EXPECT_EQ(OneShotCalls(*server_, "thread"), 0u);
  EXPECT_EQ(SessionCalls(*server_, "thread"), 0u);
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(PgBalance(pg_uri_, 30 + c), kInitial - 2 * kEach) << "client " << c;
    EXPECT_EQ(MyBalance(30 + c), kInitial + 2 * kEach) << "client " << c;
  }
  EXPECT_EQ(PreparedLeft(), 0);
}

// pool.min_open: the binds' connections are open before the first call
// (opened by the health refresh txcoord runs when it starts), and the
// first transaction takes them instead of opening its own.
class MinOpenTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    pool_min_open_ = 3;
    CoordinatorTest::SetUp();
  }
};

TEST_F(MinOpenTest, PoolsOpenTheirMinimumBeforeTheFirstCall) {
  auto open = [&](const char* bind) { return server_->coordinator()->FindBind(bind)->pool_stats().open; };
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((open("pg") < 3 || open("pg2") < 3 || open("maria") < 3 || open("lite") < 3) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(open("pg"), 3);
  EXPECT_EQ(open("pg2"), 3);
  EXPECT_EQ(open("maria"), 3);
  EXPECT_EQ(open("lite"), 3);
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 3, 1)}}, {"maria", {Credit(my_table_, 3, 1)}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  EXPECT_EQ(open("pg"), 3) << "the call took an open connection";
  EXPECT_EQ(open("maria"), 3);
}

class NoLoopsTest : public Configured<0, 40, true> {};

TEST_F(NoLoopsTest, WithoutEventLoopsEveryCallRunsOnAThread) {
  v1::RunTransactionResponse resp;
  grpc::Status st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 2, 4)}}, {"maria", {Credit(my_table_, 2, 4)}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.state(), v1::COMMITTED);
  EXPECT_EQ(OneShotCalls(*server_, "fiber"), 0u);
  EXPECT_EQ(OneShotCalls(*server_, "thread"), 1u);
  EXPECT_EQ(PgBalance(pg_uri_, 2), kInitial - 4);
  EXPECT_EQ(MyBalance(2), kInitial + 4);
}

}  // namespace
}  // namespace txcoord::testing
