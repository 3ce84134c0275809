// The fixture of the participant suite (participant_test.cc,
// participant_batch_test.cc): one parameterized suite over PostgreSQL
// (libpqxx), PostgreSQL (psqlODBC), MariaDB (the native driver and
// Connector/ODBC) and SQLite (ODBC), against the real local databases
// (deploy/local/start.sh). Every test uses its own node id and table names
// (a random suffix) and only lists or finishes branches of its own node ids.
#ifndef TXCOORD_TESTS_PARTICIPANTS_PARTICIPANT_FIXTURE_H_
#define TXCOORD_TESTS_PARTICIPANTS_PARTICIPANT_FIXTURE_H_

#include "participants/participant.h"

#include <pqxx/pqxx>

#include <chrono>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participants/odbc/odbc_dialect.h"
#include "participants/postgres/postgres_participant.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/local_db.h"

namespace txcoord::participants::participant_testing {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Backend {
  std::string name;     // test name suffix
  const char* env;      // the variable holding its DSN
  std::string driver;   // BindOptions::driver
  std::string dialect;  // expected Capabilities::dialect
};

inline void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

inline std::string PrintBackend(const ::testing::TestParamInfo<Backend>& info) {
  return info.param.name;
}

inline std::string RandomSuffix() {
  static std::mt19937_64 rng(std::random_device{}() ^
                             static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  return absl::StrCat(rng() % 1000000000000ULL);
}

inline std::string AllBytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

class ParticipantTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    TXC_REQUIRE_DB_ENV(dsn_, GetParam().env);
    suffix_ = RandomSuffix();
    node_ = "pt-" + suffix_;
    table_ = "txc_pt_" + suffix_;
    auto p = MakeParticipant(bind_name_);
    ASSERT_TRUE(p.ok()) << p.status();
    participant_ = *std::move(p);
  }

  void TearDown() override {
    if (participant_ == nullptr) return;
    participant_.reset();
    for (const std::string& t : dropped_tables_) Ddl("DROP TABLE " + t);
  }

  const std::string& dialect() const { return GetParam().dialect; }
  bool IsPostgres() const { return dialect() == "postgresql"; }
  bool IsMariadb() const { return dialect() == "mariadb"; }
  bool IsSqlite() const { return dialect() == "sqlite"; }
  bool TwoPhase() const { return !IsSqlite(); }

  absl::StatusOr<std::unique_ptr<Participant>> MakeParticipant(
      const std::string& bind, int pool_size = 4,
      absl::Duration acquire_timeout = absl::Seconds(2)) {
    BindOptions o;
    o.name = bind;
    o.driver = GetParam().driver;
    o.dsn = dsn_;
    o.pool_size = pool_size;
    o.acquire_timeout = acquire_timeout;
    return CreateParticipant(o);
  }

  // "$n" on libpqxx, "?" on ODBC.
  std::string P(int n) const {
    return GetParam().driver == "postgres" ? absl::StrCat("$", n) : std::string("?");
  }

  // A new xid of this test's node.
  Xid NewXid(const std::string& node = "") {
    absl::StatusOr<Xid> xid =
        MakeXid(absl::StrCat(node.empty() ? node_ : node, ".1.", ++seq_), 0, bind_name_);
    EXPECT_TRUE(xid.ok()) << xid.status();
    return *xid;
  }

  // Runs DDL by hand, in autocommit mode (MariaDB refuses DDL inside XA).
  void Ddl(const std::string& sql) {
    if (GetParam().driver == "postgres") {
      testing::RawPostgres(dsn_, sql);
    } else {
      testing::RawOdbc raw(dsn_);
      ASSERT_TRUE(raw.ok()) << raw.error();
      raw.Query(sql);
    }
  }

  // Creates a table (dropped at the end of the test) with `columns`.
  void CreateTable(const std::string& name, const std::string& columns) {
    Ddl(absl::StrCat("CREATE TABLE ", name, " (", columns, ")"));
    dropped_tables_.insert(dropped_tables_.begin(), name);
  }
  void CreateKvTable() { CreateTable(table_, "id INT PRIMARY KEY, v VARCHAR(100)"); }

  // Runs one statement in its own one-phase transaction.
  absl::StatusOr<ResultSet> ExecOnePhase(const std::string& sql,
                                         const std::vector<Value>& params = {},
                                         Participant* p = nullptr) {
    if (p == nullptr) p = participant_.get();
    auto branch = p->Begin(NewXid(), absl::Seconds(10));
    if (!branch.ok()) return branch.status();
    auto rs = (*branch)->Execute(sql, params, 0);
    if (!rs.ok()) return rs.status();
    absl::Status s = (*branch)->CommitOnePhase();
    if (!s.ok()) return s;
    return rs;
  }

  // The values of column `v` of table_ ordered by id ("<null>" for NULL).
  std::vector<std::string> KvValues(Participant* p = nullptr) {
    auto rs = ExecOnePhase("SELECT v FROM " + table_ + " ORDER BY id", {}, p);
    EXPECT_TRUE(rs.ok()) << rs.status();
    std::vector<std::string> out;
    if (!rs.ok()) return out;
    for (const auto& row : rs->rows) {
      out.push_back(row[0].kind == Value::Kind::kNull ? "<null>" : row[0].text);
    }
    return out;
  }

  std::vector<std::string> ListedGtrids(Participant* p, const std::string& node) {
    auto listed = p->ListPrepared(node);
    EXPECT_TRUE(listed.ok()) << listed.status();
    std::vector<std::string> out;
    if (!listed.ok()) return out;
    for (const auto& b : *listed) out.push_back(b.xid.gtrid);
    return out;
  }

  // Begins a branch, inserts (id, v) into table_, and prepares it.
  Xid PrepareInsert(int id, const std::string& v, const std::string& node = "") {
    Xid xid = NewXid(node);
    auto branch = participant_->Begin(xid, absl::Seconds(10));
    EXPECT_TRUE(branch.ok()) << branch.status();
    if (!branch.ok()) return xid;
    auto rs = (*branch)->Execute(
        absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ")"),
        {Value::Int64(id), Value::String(v)}, 0);
    EXPECT_TRUE(rs.ok()) << rs.status();
    auto vote = (*branch)->Prepare();
    EXPECT_TRUE(vote.ok()) << vote.status();
    if (vote.ok()) {
      EXPECT_EQ(*vote, Vote::kPrepared);
    }
    return xid;
  }

  // What an idle pooled connection's server session is called (pid / id).
  std::string SessionIdSql() const {
    return IsPostgres() ? "SELECT pg_backend_pid()" : "SELECT CONNECTION_ID()";
  }

  // Kills a server session from outside the participant.
  void KillSession(int64_t id) {
    if (IsPostgres()) {
      std::string uri;
      TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
      testing::RawPostgres(uri, absl::StrCat("SELECT pg_terminate_backend(", id, ")"));
    } else {
      testing::RawOdbc raw(dsn_);
      ASSERT_TRUE(raw.ok()) << raw.error();
      raw.Query(absl::StrCat("KILL ", id));
    }
  }

  std::string dsn_;
  std::string suffix_;
  std::string node_;
  std::string table_;
  std::string bind_name_ = "test-bind";
  int seq_ = 0;
  std::vector<std::string> dropped_tables_;
  std::unique_ptr<Participant> participant_;
};

}  // namespace txcoord::participants::participant_testing

#endif  // TXCOORD_TESTS_PARTICIPANTS_PARTICIPANT_FIXTURE_H_
