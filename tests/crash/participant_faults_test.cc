// Database faults under a running coordinator, on databases of this test's
// own (deploy/local/start.sh into a temp dir), so that stopping and killing
// them does not disturb other tests:
//   - PostgreSQL stopped (fast shutdown) during phase 2, then restarted;
//   - MariaDB SIGKILLed during phase 1 and during phase 2, then restarted;
//   - a connection cut in the middle of a statement.
// The coordinator keeps serving the other binds, retries phase 2 with
// backoff until the database is back, and ends every transaction correctly.
#include <signal.h>

#include <fstream>
#include <sstream>
#include <future>

#include "gmock/gmock.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "util/failpoint.h"

#ifndef TXC_SOURCE_DIR
#error "TXC_SOURCE_DIR must name the source tree"
#endif

namespace txcoord::testing {
namespace {

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("export ", 0) != 0) continue;
    auto eq = line.find('=');
    std::string key = line.substr(7, eq - 7);
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'') value = value.substr(1, value.size() - 2);
    env[key] = value;
  }
  return env;
}

int Shell(const std::string& cmd) { return std::system(cmd.c_str()); }

class ParticipantFaultsTest : public CoordinatorTest {
 protected:
  static void SetUpTestSuite() {
    if (EnvOrEmpty("TXC_PG_URI").empty() && !UnderCi()) return;  // SetUp skips
    dir_ = new TempDir();
    Shell("chmod 755 " + dir_->path());
    // No ASSERT here: a fatal failure in SetUpTestSuite makes GoogleTest
    // report the tests as skipped. SetUp fails them with this message.
    if (Shell(absl::StrCat("bash ", TXC_SOURCE_DIR, "/deploy/local/start.sh ", dir_->path(), " >",
                           dir_->path(), "/start.log 2>&1")) != 0) {
      // The directory goes with the suite: the logs go into the message.
      std::string logs;
      for (const char* f : {"/start.log", "/pg/initdb.log", "/pg/server.log", "/mariadb/install.log", "/mariadb/server.log"}) {
        std::ifstream in(dir_->path() + f);
        std::stringstream text;
        text << in.rdbuf();
        std::string all = text.str();
        if (all.size() > 3000) all = all.substr(all.size() - 3000);
        if (!all.empty()) absl::StrAppend(&logs, "\n--- ", f, " (end) ---\n", all);
      }
      start_error_ = new std::string("deploy/local/start.sh failed" + logs);
      return;
    }
    env_ = new std::map<std::string, std::string>(ReadEnvFile(dir_->path() + "/env"));
  }
  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    Shell(absl::StrCat("bash ", TXC_SOURCE_DIR, "/deploy/local/stop.sh ", dir_->path(), " >/dev/null 2>&1"));
    delete env_;
    delete dir_;
    delete start_error_;
    dir_ = nullptr;
    env_ = nullptr;
    start_error_ = nullptr;
  }

  void SetUp() override {
    if (start_error_ != nullptr) FAIL() << *start_error_;
    if (env_ == nullptr) {
      if (UnderCi()) FAIL() << "databases missing under CI";
      GTEST_SKIP() << "local databases not configured";
    }
    // Point the common fixture at this suite's own databases.
    ::setenv("TXC_PG_URI", (*env_)["TXC_PG_URI"].c_str(), 1);
    ::setenv("TXC_PG2_URI", (*env_)["TXC_PG2_URI"].c_str(), 1);
    ::setenv("TXC_MARIADB_ODBC", (*env_)["TXC_MARIADB_ODBC"].c_str(), 1);
    failpoint::DisarmAll();
    CoordinatorTest::SetUp();
  }
  void TearDown() override {
    failpoint::DisarmAll();
    CoordinatorTest::TearDown();
  }

  static void StopPostgres() {
    ASSERT_EQ(Shell(absl::StrCat("runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D ", dir_->path(),
                                 "/pg/data -m fast -w stop >/dev/null 2>&1")),
              0);
  }
  static void KillMariadb() {
    std::ifstream in(dir_->path() + "/mariadb/run/mariadbd.pid");
    int pid = 0;
    in >> pid;
    ASSERT_GT(pid, 0);
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) absl::SleepFor(absl::Milliseconds(50));
  }
  static void RestartDatabases() {
    ASSERT_EQ(Shell(absl::StrCat("bash ", TXC_SOURCE_DIR, "/deploy/local/start.sh ", dir_->path(),
                                 " >/dev/null 2>&1")),
              0);
  }
  // Waits until `fn` holds, up to `seconds`.
  template <typename Fn>
  static bool Eventually(Fn fn, int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      try {
        if (fn()) return true;
      } catch (const std::exception&) {
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }
  // Arms `point` with a delay and returns once a commit has reached it.
  static void WaitForHit(const std::string& point) {
    for (int i = 0; i < 200 && failpoint::HitCount(point) == 0; ++i) absl::SleepFor(absl::Milliseconds(25));
    ASSERT_GT(failpoint::HitCount(point), 0) << point << " not reached";
  }

  static TempDir* dir_;
  static std::map<std::string, std::string>* env_;
  static std::string* start_error_;
};

TempDir* ParticipantFaultsTest::dir_ = nullptr;
std::map<std::string, std::string>* ParticipantFaultsTest::env_ = nullptr;
std::string* ParticipantFaultsTest::start_error_ = nullptr;

TEST_F(ParticipantFaultsTest, PostgresDownDuringPhaseTwoIsRetriedUntilItReturns) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 1, 40))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 1, 40))}).ok());
  ASSERT_TRUE(failpoint::Arm("commit.after_decision_logged", "delay(1500)").ok());
  auto commit = std::async(std::launch::async, [&] {
    v1::CommitResponse c;
    grpc::Status st = Commit(s, &c);
    return std::make_pair(st, c);
  });
  WaitForHit("commit.after_decision_logged");
  StopPostgres();
  auto [status, response] = commit.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.state(), v1::COMMITTING);  // decided; PostgreSQL's branch waits
  failpoint::DisarmAll();
  // Other binds keep serving meanwhile.
  std::string other = Open();
  ASSERT_TRUE(Exec(other, "maria", {Sql(Credit(my_table_, 2, 1))}).ok());
  ASSERT_TRUE(Commit(other).ok());
  EXPECT_EQ(MyBalance(1), kInitial + 40);
  absl::SleepFor(absl::Seconds(1));  // a few failed retries with backoff
  RestartDatabases();
  EXPECT_TRUE(Eventually([&] { return PgBalance(pg_uri_, 1) == kInitial - 40 && PreparedLeft() == 0; }, 30));
  EXPECT_TRUE(Eventually([&] { return GetTxn(response.txn_id()).state() == v1::COMMITTED; }, 10));
  EXPECT_GT(server_->coordinator()->stats().phase2_retries, 0);
}

TEST_F(ParticipantFaultsTest, MariadbKilledDuringPrepareAbortsEverywhere) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 3, 5))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 3, 5))}).ok());
  ASSERT_TRUE(failpoint::Arm("commit.before_prepare", "delay(1500)").ok());
  auto commit = std::async(std::launch::async, [&] {
    v1::CommitResponse c;
    return std::make_pair(Commit(s, &c), c);
  });
  WaitForHit("commit.before_prepare");
  KillMariadb();
  auto [status, response] = commit.get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED) << status.error_message();
  failpoint::DisarmAll();
  RestartDatabases();
  EXPECT_TRUE(Eventually([&] { return PreparedLeft() == 0; }, 30));
  EXPECT_EQ(PgBalance(pg_uri_, 3), kInitial);
  EXPECT_EQ(MyBalance(3), kInitial);
  // The pool reconnects: the next transaction on MariaDB works.
  EXPECT_TRUE(Eventually(
      [&] {
        std::string t = Open();
        bool ok = Exec(t, "maria", {Sql(Credit(my_table_, 4, 1))}).ok() && Commit(t).ok();
        (void)Close(t);
        return ok;
      },
      20));
}

TEST_F(ParticipantFaultsTest, MariadbKilledDuringPhaseTwoCommitsAfterItsRestart) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 5, 9))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 5, 9))}).ok());
  ASSERT_TRUE(failpoint::Arm("commit.after_decision_logged", "delay(1500)").ok());
  auto commit = std::async(std::launch::async, [&] {
    v1::CommitResponse c;
    return std::make_pair(Commit(s, &c), c);
  });
  WaitForHit("commit.after_decision_logged");
  KillMariadb();
  auto [status, response] = commit.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  failpoint::DisarmAll();
  EXPECT_EQ(PgBalance(pg_uri_, 5), kInitial - 9);
  RestartDatabases();
  // The XA branch survived MariaDB's crash as prepared; the coordinator
  // commits it once MariaDB is back.
  EXPECT_TRUE(Eventually([&] { return MyBalance(5) == kInitial + 9 && PreparedLeft() == 0; }, 30));
  EXPECT_TRUE(Eventually([&] { return GetTxn(response.txn_id()).state() == v1::COMMITTED; }, 10));
}

TEST_F(ParticipantFaultsTest, ConnectionCutMidStatementFailsTheTransactionCleanly) {
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 6, 1))}).ok());
  auto sleeper = std::async(std::launch::async, [&] {
    return Exec(s, "pg", {Sql(absl::StrCat("SELECT pg_sleep(10) /* cut_me_", suffix_, " */"))});
  });
  ASSERT_TRUE(Eventually(
      [&] {
        return PgScalar(pg_uri_, absl::StrCat("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                              "WHERE query LIKE '%cut_me_",
                                              suffix_, "%' AND pid <> pg_backend_pid()")) == "1";
      },
      10));
  grpc::Status cut = sleeper.get();
  EXPECT_EQ(cut.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.error_message();
  EXPECT_THAT(cut.error_message(), ::testing::HasSubstr("pg"));
  // Rolled back at once (the MariaDB branch too): Commit says so.
  EXPECT_EQ(MyBalance(6), kInitial);
  EXPECT_EQ(Commit(s).error_code(), grpc::StatusCode::ABORTED);
  ASSERT_TRUE(Rollback(s).ok());
  EXPECT_EQ(MyBalance(6), kInitial);
  // The broken connection was not put back into the pool.
  std::string t = Open();
  ASSERT_TRUE(Exec(t, "pg", {Sql(Debit(pg_table_, 6, 1))}).ok());
  ASSERT_TRUE(Exec(t, "maria", {Sql(Credit(my_table_, 6, 1))}).ok());
  ASSERT_TRUE(Commit(t).ok());
  EXPECT_EQ(PgBalance(pg_uri_, 6), kInitial - 1);
}

}  // namespace
}  // namespace txcoord::testing
