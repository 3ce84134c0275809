// Participants against the real local databases (deploy/local/start.sh):
// one parameterized suite over PostgreSQL (libpqxx), PostgreSQL (psqlODBC),
// MariaDB (Connector/C, the native driver, and Connector/ODBC) and SQLite
// (ODBC, last resource only). The native MariaDB driver reads the ODBC DSN.
//
// Tests may run in parallel with other test binaries on the same databases:
// every test uses its own node id and table names (random suffix), and only
// ever lists or finishes branches of its own node ids.
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

namespace txcoord::participants {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Backend {
  std::string name;     // test name suffix
  const char* env;      // the variable holding its DSN
  std::string driver;   // BindOptions::driver
  std::string dialect;  // expected Capabilities::dialect
};

void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

std::string PrintBackend(const ::testing::TestParamInfo<Backend>& info) {
  return info.param.name;
}

std::string RandomSuffix() {
  static std::mt19937_64 rng(std::random_device{}() ^
                             static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  return absl::StrCat(rng() % 1000000000000ULL);
}

std::string AllBytes() {
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

TEST_P(ParticipantTest, ReportsItsDialect) {
  Capabilities caps = participant_->capabilities();
  EXPECT_EQ(caps.dialect, dialect());
  EXPECT_EQ(caps.two_phase, TwoPhase());
  EXPECT_EQ(participant_->bind(), bind_name_);
  EXPECT_TRUE(participant_->CheckHealth().ok());
}

// Every parameter kind, and NULL, goes in through a parameter and comes back
// from a typed column as the same Value.
TEST_P(ParticipantTest, EveryParameterTypeAndNullRoundTrip) {
  struct Col {
    std::string name, pg_type, mariadb_type, sqlite_type;
    Value in, out;  // out: what a typed column gives back
  };
  const std::string utf8 = "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9D\x84\x9E '\"\\";  // é ✓ 𝄞
  std::vector<Col> cols = {
      {"c_bool", "boolean", "BOOLEAN", "BOOLEAN", Value::Bool(true), Value::Bool(true)},
      {"c_int", "bigint", "BIGINT", "INTEGER", Value::Int64(INT64_MIN + 1),
       Value::Int64(INT64_MIN + 1)},
      {"c_double", "double precision", "DOUBLE", "REAL", Value::Double(-3.0e-7),
       Value::Double(-3.0e-7)},
      {"c_decimal", "numeric(20,3)", "DECIMAL(20,3)", "TEXT",
       Value::Text(Value::Kind::kDecimal, "-12345678901234.500"),
       Value::Text(Value::Kind::kDecimal, "-12345678901234.500")},
      {"c_string", "text", "TEXT", "TEXT", Value::String(utf8), Value::String(utf8)},
      {"c_bytes", "bytea", "BLOB", "BLOB", Value::Text(Value::Kind::kBytes, AllBytes()),
       Value::Text(Value::Kind::kBytes, AllBytes())},
      {"c_date", "date", "DATE", "DATE", Value::Text(Value::Kind::kDate, "2026-11-25"),
       Value::Text(Value::Kind::kDate, "2026-11-25")},
      {"c_time", "time(3)", "TIME(3)", "TIME", Value::Text(Value::Kind::kTime, "13:45:00.123"),
       Value::Text(Value::Kind::kTime, "13:45:00.123")},
      {"c_timestamp", "timestamp(3)", "DATETIME(3)", "TIMESTAMP",
       Value::Text(Value::Kind::kTimestamp, "2026-11-25T13:45:00.123"),
       Value::Text(Value::Kind::kTimestamp, "2026-11-25T13:45:00.123")},
  };
  if (IsPostgres()) {
    cols.push_back({"c_timestamptz", "timestamptz", "", "",
                    Value::Text(Value::Kind::kTimestamp, "2026-11-25T13:45:00.123Z"),
                    Value::Text(Value::Kind::kTimestamp, "2026-11-25T13:45:00.123Z")});
  }
  if (IsMariadb()) {
    // MariaDB's BOOLEAN is TINYINT(1): true comes back as the integer 1.
    cols[0].out = Value::Int64(1);
  }
  if (IsSqlite()) {
    // SQLite has no decimal type: TEXT keeps the digits.
    cols[3].out = Value::String("-12345678901234.500");
  }

  std::string ddl = "id INT PRIMARY KEY";
  std::string insert_cols = "id", placeholders = P(1), select_cols;
  std::vector<Value> params = {Value::Int64(1)}, nulls = {Value::Int64(2)};
  int n = 1;
  for (const Col& c : cols) {
    const std::string& type =
        IsPostgres() ? c.pg_type : (IsMariadb() ? c.mariadb_type : c.sqlite_type);
    absl::StrAppend(&ddl, ", ", c.name, " ", type);
    absl::StrAppend(&insert_cols, ", ", c.name);
    absl::StrAppend(&placeholders, ", ", P(++n));
    absl::StrAppend(&select_cols, select_cols.empty() ? "" : ", ", c.name);
    params.push_back(c.in);
    nulls.push_back(Value::Null());
  }
  CreateTable(table_, ddl);
  const std::string insert =
      absl::StrCat("INSERT INTO ", table_, " (", insert_cols, ") VALUES (", placeholders, ")");
  auto inserted = ExecOnePhase(insert, params);
  ASSERT_TRUE(inserted.ok()) << inserted.status();
  EXPECT_EQ(inserted->rows_affected, 1);
  ASSERT_TRUE(ExecOnePhase(insert, nulls).ok());
  // Row 3: the values of row 1 through RunBatch (on libpqxx: quoted into the
  // one pipelined string as EXECUTE arguments).
  std::vector<Value> batch_params = params;
  batch_params[0] = Value::Int64(3);
  auto batch = participant_->RunBatch(NewXid(), absl::Seconds(10), {{insert, batch_params}}, 0,
                                      /*prepare=*/false);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_NE(batch->branch, nullptr);
  ASSERT_EQ(batch->results.size(), 1u);
  EXPECT_EQ(batch->results[0].rows_affected, 1);
  ASSERT_TRUE(batch->branch->CommitOnePhase().ok());

  auto rs = ExecOnePhase(absl::StrCat("SELECT ", select_cols, " FROM ", table_, " ORDER BY id"));
  ASSERT_TRUE(rs.ok()) << rs.status();
  ASSERT_EQ(rs->columns.size(), cols.size());
  ASSERT_EQ(rs->rows.size(), 3u);
  for (size_t i = 0; i < cols.size(); ++i) {
    EXPECT_EQ(rs->rows[2][i], cols[i].out) << cols[i].name << " through RunBatch: got text \""
                                           << rs->rows[2][i].text << "\"";
    EXPECT_EQ(rs->columns[i].name, cols[i].name);
    EXPECT_FALSE(rs->columns[i].type.empty()) << cols[i].name;
    const Value& got = rs->rows[0][i];
    EXPECT_EQ(static_cast<int>(got.kind), static_cast<int>(cols[i].out.kind))
        << cols[i].name << " (" << rs->columns[i].type << ") text=" << got.text;
    EXPECT_EQ(got, cols[i].out) << cols[i].name << " (" << rs->columns[i].type
                                << "): got text \"" << got.text << "\" int " << got.int_value
                                << " double " << got.double_value << " bool "
                                << got.bool_value;
    EXPECT_EQ(rs->rows[1][i], Value::Null()) << cols[i].name;
  }
}

TEST_P(ParticipantTest, RunBatchPreparesAndReturnsEveryResult) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  ASSERT_TRUE(ExecOnePhase("INSERT INTO " + table_ + " VALUES (1, 'a')").ok());
  const std::string tricky = "it's; -- not a comment /* nor this */ $1 \\";
  Xid xid = NewXid();
  auto batch = participant_->RunBatch(
      xid, absl::Seconds(10),
      {{absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ");"),
        {Value::Int64(2), Value::String(tricky)}},
       {absl::StrCat("UPDATE ", table_, " SET v = ", P(1), " WHERE id = 1"), {Value::String("b")}},
       {"SELECT id, v FROM " + table_ + " WHERE v <> 'x;y' ORDER BY id", {}}},
      0, /*prepare=*/true);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->branch, nullptr) << "a prepared batch leaves no active branch";
  EXPECT_EQ(batch->vote, Vote::kPrepared);
  ASSERT_EQ(batch->results.size(), 3u);
  EXPECT_EQ(batch->results[0].rows_affected, 1);
  EXPECT_EQ(batch->results[1].rows_affected, 1);
  ASSERT_EQ(batch->results[2].rows.size(), 2u);
  EXPECT_EQ(batch->results[2].rows[0][0], Value::Int64(1));
  EXPECT_EQ(batch->results[2].rows[0][1], Value::String("b"));
  EXPECT_EQ(batch->results[2].rows[1][1], Value::String(tricky));
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), ::testing::Contains(xid.gtrid));
  ASSERT_TRUE(participant_->CommitPrepared(xid).ok());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
  EXPECT_EQ(KvValues(), (std::vector<std::string>{"b", tricky}));
}

// On libpqxx the whole batch reaches the server as one query string: one
// round trip. current_query() shows the string the server received.
TEST_P(ParticipantTest, RunBatchIsOneRoundTripOnLibpqxx) {
  if (GetParam().driver != "postgres") GTEST_SKIP() << "pipelined on libpqxx only";
  CreateKvTable();
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES ($1, $2)");
  Xid xid = NewXid();
  auto batch = participant_->RunBatch(xid, absl::Seconds(10),
                                      {{insert, {Value::Int64(1), Value::String("a")}},
                                       {"SELECT current_query()", {}}},
                                      0, /*prepare=*/true);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->results.size(), 2u);
  const std::string seen = batch->results[1].rows.at(0).at(0).text;
  EXPECT_THAT(seen, HasSubstr("BEGIN"));
  EXPECT_THAT(seen, HasSubstr("SET LOCAL lock_timeout"));
  EXPECT_THAT(seen, HasSubstr("PREPARE txc_b0 AS " + insert));
  EXPECT_THAT(seen, HasSubstr("EXECUTE txc_b0('1', 'a')"));
  // A data change: PREPARE TRANSACTION ends the same string.
  EXPECT_THAT(seen, HasSubstr("PREPARE TRANSACTION '"));
  EXPECT_EQ(batch->vote, Vote::kPrepared);
  EXPECT_TRUE(participant_->RollbackPrepared(xid).ok());
  // Only reads: the read-only probe instead, and no branch left.
  auto reads = participant_->RunBatch(NewXid(), absl::Seconds(10), {{"SELECT current_query()", {}}}, 0,
                                      /*prepare=*/true);
  ASSERT_TRUE(reads.ok()) << reads.status();
  EXPECT_THAT(reads->results.at(0).rows.at(0).at(0).text, HasSubstr("txid_current_if_assigned"));
  EXPECT_EQ(reads->vote, Vote::kReadOnly);
  // A data change that changed nothing is prepared all the same, and commits.
  Xid none = NewXid();
  auto nothing = participant_->RunBatch(none, absl::Seconds(10),
                                        {{"UPDATE " + table_ + " SET v = 'x' WHERE id = -1", {}}}, 0,
                                        /*prepare=*/true);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(nothing->vote, Vote::kPrepared);
  EXPECT_TRUE(participant_->CommitPrepared(none).ok());
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
  // SQL outside the batchable subset runs statement by statement.
  auto single = participant_->RunBatch(NewXid(), absl::Seconds(10),
                                       {{"SELECT current_query() -- one by one", {}}}, 0,
                                       /*prepare=*/false);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_THAT(single->results.at(0).rows.at(0).at(0).text, ::testing::Not(HasSubstr("BEGIN")));
  EXPECT_TRUE(single->branch->Rollback().ok());
}

// The native MariaDB driver: a batch that changes data is sent as one
// multi-statement string (XA START … XA PREPARE, or … XA COMMIT ONE PHASE);
// a failing statement names itself and leaves nothing behind; and no
// statement is ever prepared on the server (the session's
// Com_stmt_prepare stays 0 on its only connection).
TEST_P(ParticipantTest, NativeMariadbBatchesSendTextOnly) {
  if (GetParam().driver != "mariadb") GTEST_SKIP() << "the native MariaDB driver";
  CreateKvTable();
  auto p = MakeParticipant(bind_name_, /*pool_size=*/1);
  ASSERT_TRUE(p.ok()) << p.status();
  Xid xid = NewXid();
  auto batch = (*p)->RunBatch(
      xid, absl::Seconds(10),
      {{"INSERT INTO " + table_ + " (id, v) VALUES (?, ?)", {Value::Int64(1), Value::String("a'b\\")}},
       {"SELECT v FROM " + table_ + " WHERE id = ?", {Value::Int64(1)}}},
      0, /*prepare=*/true);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->results.size(), 2u);
  EXPECT_EQ(batch->results[0].rows_affected, 1);
  EXPECT_EQ(batch->results[1].rows.at(0).at(0), Value::String("a'b\\"));
  EXPECT_EQ(batch->vote, Vote::kPrepared);
  ASSERT_TRUE((*p)->CommitPrepared(xid).ok());
  CommitBatchOutcome one = (*p)->RunAndCommit(
      NewXid(), absl::Seconds(10), {{"UPDATE " + table_ + " SET v = ? WHERE id = 1", {Value::String("c")}}}, 0);
  ASSERT_TRUE(one.status.ok()) << one.status;
  EXPECT_EQ(one.results.at(0).rows_affected, 1);
  EXPECT_EQ(KvValues(), std::vector<std::string>{"c"});
  auto failed = (*p)->RunBatch(NewXid(), absl::Seconds(10),
                               {{"UPDATE " + table_ + " SET v = 'd' WHERE id = 1", {}},
                                {"INSERT INTO " + table_ + " (id, v) VALUES (1, 'dup')", {}}},
                               0, /*prepare=*/true);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kFailedPrecondition) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("statement 2"));
  EXPECT_THAT(ListedGtrids(p->get(), node_), IsEmpty());
  EXPECT_EQ((*p)->pool_stats().in_use, 0);
  EXPECT_EQ(KvValues(), std::vector<std::string>{"c"});
  auto prepared = ExecOnePhase(
      "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'", {},
      p->get());
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->rows.at(0).at(0).text, "0");
  EXPECT_EQ((*p)->pool_stats().open, 1) << "one connection throughout";
}

// MariaDB keeps a session attached to the branch it prepared: phase 2 runs
// on that same connection, which then goes back to the pool (no reconnect).
TEST_P(ParticipantTest, PhaseTwoReusesThePreparingConnection) {
  if (!IsMariadb()) GTEST_SKIP() << "MariaDB only (attached prepared branches)";
  CreateKvTable();
  auto p = MakeParticipant(bind_name_, /*pool_size=*/1);
  ASSERT_TRUE(p.ok()) << p.status();
  std::string session;
  for (int round = 0; round < 3; ++round) {
    Xid xid = NewXid();
    auto branch = (*p)->Begin(xid, absl::Seconds(10));
    ASSERT_TRUE(branch.ok()) << branch.status();
    auto id = (*branch)->Execute(SessionIdSql(), {}, 0);
    ASSERT_TRUE(id.ok()) << id.status();
    const Value& cell = id->rows.at(0).at(0);
    const std::string now = cell.text.empty() ? absl::StrCat(cell.int_value) : cell.text;
    if (round == 0) session = now;
    EXPECT_EQ(now, session) << "round " << round << ": a new connection was opened";
    ASSERT_TRUE((*branch)->Execute(absl::StrCat("INSERT INTO ", table_, " VALUES (", round, ", 'r')"), {}, 0).ok());
    auto vote = (*branch)->Prepare();
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ((*p)->pool_stats().in_use, 1) << "kept for phase 2";
    absl::Status finished = round == 1 ? (*p)->RollbackPrepared(xid) : (*p)->CommitPrepared(xid);
    ASSERT_TRUE(finished.ok()) << finished;
    EXPECT_EQ((*p)->pool_stats().in_use, 0);
    EXPECT_EQ((*p)->pool_stats().open, 1);
  }
  EXPECT_EQ(KvValues(), (std::vector<std::string>{"r", "r"}));
  EXPECT_THAT(ListedGtrids(p->get(), node_), IsEmpty());
}

// MariaDB: a branch whose statement reported changed rows prepares without
// the read-only probe; the next branch on that connection has no baseline,
// so a read-only one is prepared (empty) and committed on its own parked
// connection; the one after it votes read-only again. An empty prepared
// branch whose session ended is gone: finishing it is NOT_FOUND.
TEST_P(ParticipantTest, MariadbSkipsTheReadOnlyProbeAfterChangedRows) {
  if (!IsMariadb()) GTEST_SKIP() << "MariaDB's read-only probe";
  CreateKvTable();
  ASSERT_TRUE(ExecOnePhase("INSERT INTO " + table_ + " VALUES (1, 'x')").ok());
  auto p = MakeParticipant(bind_name_, /*pool_size=*/1);
  ASSERT_TRUE(p.ok()) << p.status();
  auto run = [&](const std::string& sql) -> std::pair<Xid, Vote> {
    Xid xid = NewXid();
    auto branch = (*p)->Begin(xid, absl::Seconds(10));
    EXPECT_TRUE(branch.ok()) << branch.status();
    if (!branch.ok()) return {xid, Vote::kReadOnly};
    EXPECT_TRUE((*branch)->Execute(sql, {}, 0).ok());
    auto vote = (*branch)->Prepare();
    EXPECT_TRUE(vote.ok()) << vote.status();
    return {xid, vote.ok() ? *vote : Vote::kReadOnly};
  };
  const std::string read = "SELECT v FROM " + table_;
  EXPECT_EQ(run(read).second, Vote::kReadOnly) << "fresh connection: baseline read at Begin";
  auto [written, wvote] = run("UPDATE " + table_ + " SET v = 'y' WHERE id = 1");
  EXPECT_EQ(wvote, Vote::kPrepared);
  ASSERT_TRUE((*p)->CommitPrepared(written).ok());
  auto [empty, evote] = run(read);
  EXPECT_EQ(evote, Vote::kPrepared) << "no baseline after a branch that skipped the probe";
  ASSERT_TRUE((*p)->CommitPrepared(empty).ok()) << "an empty prepared branch commits on its own connection";
  EXPECT_EQ(run(read).second, Vote::kReadOnly) << "the baseline is back";
  // An empty prepared branch outlives neither its session nor its participant.
  auto [orphan, ovote] = run("UPDATE " + table_ + " SET v = 'z' WHERE id = 1");
  ASSERT_TRUE((*p)->CommitPrepared(orphan).ok());
  auto [lost, lvote] = run(read);
  EXPECT_EQ(lvote, Vote::kPrepared);
  p->reset();  // closes the parked connection
  absl::Status s = participant_->CommitPrepared(lost);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(KvValues(), std::vector<std::string>{"z"});
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
}

TEST_P(ParticipantTest, RunBatchReadOnlyVotesReadOnly) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  auto batch = participant_->RunBatch(NewXid(), absl::Seconds(10),
                                      {{"SELECT count(*) FROM " + table_, {}}}, 0, /*prepare=*/true);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->vote, Vote::kReadOnly);
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
}

// A failed statement (constraint violation, then a syntax error) leaves no
// branch, no rows and no lock; the one pooled connection stays usable for
// the same batch shape (the named statements were dropped).
TEST_P(ParticipantTest, RunBatchStatementErrorLeavesNothingBehind) {
  CreateKvTable();
  auto p = MakeParticipant(bind_name_, /*pool_size=*/1);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ")");
  for (bool prepare : {true, false}) {
    if (prepare && !TwoPhase()) continue;
    auto dup = (*p)->RunBatch(NewXid(), absl::Seconds(10),
                              {{insert, {Value::Int64(1), Value::String("a")}},
                               {insert, {Value::Int64(1), Value::String("b")}}},
                              0, prepare);
    ASSERT_FALSE(dup.ok());
    EXPECT_THAT(std::string(dup.status().message()), HasSubstr("statement 2"));
    EXPECT_THAT(std::string(dup.status().message()), HasSubstr(bind_name_));
    auto syntax = (*p)->RunBatch(NewXid(), absl::Seconds(10),
                                 {{insert, {Value::Int64(1), Value::String("a")}}, {"SELEC nonsense", {}}},
                                 0, prepare);
    ASSERT_FALSE(syntax.ok());
    EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument) << syntax.status();
    EXPECT_THAT(std::string(syntax.status().message()), HasSubstr("statement 2"));
    EXPECT_EQ((*p)->pool_stats().in_use, 0);
    EXPECT_THAT(KvValues(), IsEmpty());
  }
  EXPECT_THAT(ListedGtrids(p->get(), node_), IsEmpty());
  auto ok = (*p)->RunBatch(NewXid(), absl::Seconds(10),
                           {{insert, {Value::Int64(1), Value::String("a")}},
                            {insert, {Value::Int64(2), Value::String("b")}}},
                           0, /*prepare=*/false);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(ok->branch->CommitOnePhase().ok());
  EXPECT_EQ(KvValues(), (std::vector<std::string>{"a", "b"}));
}

TEST(NodeClaimHolderTest, NamesASessionOnlyAsAWholeNumber) {
  EXPECT_TRUE(HolderIsSession("pid 4242 from 127.0.0.1", 4242));
  EXPECT_TRUE(HolderIsSession("pid 7 from 10.0.0.1, pid 4242", 4242));
  EXPECT_TRUE(HolderIsSession("connection 4581", 4581));
  EXPECT_FALSE(HolderIsSession("pid 42420 from 127.0.0.1", 4242));
  EXPECT_FALSE(HolderIsSession("pid 14242", 4242));
  EXPECT_FALSE(HolderIsSession("connection 4581", 458));
  EXPECT_FALSE(HolderIsSession("pid 0", 0));
  EXPECT_FALSE(HolderIsSession("", 4242));
}

TEST(PostgresConninfoTest, AddsAConnectTimeoutUnlessTheDsnSetsOne) {
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("postgresql://u:p@127.0.0.1:5432/db?sslmode=disable",
                                               absl::Milliseconds(2500)),
            "user='u' password='p' dbname='db' host='127.0.0.1' port='5432' sslmode='disable' connect_timeout=3");
  // Quotes and backslashes in a value survive.
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("host=h password='it\\'s a \\\\ pw'", absl::Seconds(60)),
            "password='it\\'s a \\\\ pw' host='h' connect_timeout=60");
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("host=h", absl::Milliseconds(100)), "host='h' connect_timeout=2");
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("host=h connect_timeout=7", absl::Seconds(60)),
            "host=h connect_timeout=7");
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("host=h", absl::ZeroDuration()), "host=h");
  EXPECT_EQ(PostgresConninfoWithConnectTimeout("not a dsn =", absl::Seconds(5)), "not a dsn =");
}

TEST(PostgresBatchableSqlTest, AcceptsOnlyWhatLexesAsOneStatement) {
  EXPECT_EQ(PostgresBatchableSql("UPDATE a SET b = $1 WHERE c = $12;; \n"),
            std::optional<std::string>("UPDATE a SET b = $1 WHERE c = $12"));
  for (const char* ok : {"SELECT 'a;b'", "SELECT \"x;y\" FROM t", "SELECT 'it''s'",
                         "SELECT 'a-- b', '/* c */'", "SELECT '$$', '\"'"}) {
    EXPECT_EQ(PostgresBatchableSql(ok), std::optional<std::string>(ok)) << ok;
  }
  for (const char* bad : {"", " ;; ", "SELECT 1; SELECT 2", "SELECT 1 -- c", "SELECT /* c */ 1",
                          "SELECT E'a\\'b'", "SELECT $$x$$", "SELECT $tag$x$tag$", "SELECT 'abc",
                          "SELECT '\"' AS \"x", "SELECT \"a"}) {
    EXPECT_EQ(PostgresBatchableSql(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(PostgresBatchableSql(std::string("SELECT '\0'", 11)), std::nullopt);
}

TEST(MysqlInlinedSqlTest, WritesIntegersBooleansAndNullsWhereTheMarkersAre) {
  const std::vector<Value> three = {Value::Int64(-1), Value::Bool(true), Value::Null()};
  EXPECT_EQ(odbc::MysqlInlinedSql("UPDATE t SET a = a -?, b = ?, c = ? WHERE id = 7", three),
            std::optional<std::string>("UPDATE t SET a = a -(-1), b = TRUE, c = NULL WHERE id = 7"));
  EXPECT_EQ(odbc::MysqlInlinedSql("SELECT ?, ?", {Value::Int64(INT64_MAX), Value::Bool(false)}),
            std::optional<std::string>("SELECT 9223372036854775807, FALSE"));
  // Markers inside quotes and comments are text, not markers.
  EXPECT_EQ(odbc::MysqlInlinedSql("SELECT '?', \"?\", `?`, 'it''s ?' # ?\n, ? -- ?\n/* ? */", {Value::Int64(5)}),
            std::optional<std::string>("SELECT '?', \"?\", `?`, 'it''s ?' # ?\n, 5 -- ?\n/* ? */"));
  EXPECT_EQ(odbc::MysqlInlinedSql("SELECT 1--?\n, ?", {Value::Int64(2), Value::Int64(3)}),
            std::optional<std::string>("SELECT 1--2\n, 3"))
      << "\"--\" without a space after it is two minus signs";
}

TEST(MysqlInlinedSqlTest, LeavesEverythingElseToBoundParameters) {
  const std::vector<Value> one = {Value::Int64(1)};
  for (const char* bad : {"SELECT 1",  // fewer markers than values
                          "SELECT ?, ?", "SELECT '\\'', ?", "SELECT \"a\\\" ?\"", "SELECT 'open ?",
                          "SELECT ? /* open", "SELECT /*! ? */ 1", "SELECT /*M!100000 ? */ 1", "SELECT ?1",
                          "SELECT x?", "SELECT @?", "SELECT `open ?"}) {
    EXPECT_EQ(odbc::MysqlInlinedSql(bad, one), std::nullopt) << bad;
  }
  EXPECT_EQ(odbc::MysqlInlinedSql(std::string("SELECT ?, '\0'", 13), one), std::nullopt);
  EXPECT_EQ(odbc::MysqlInlinedSql("SELECT ?", {}), std::nullopt);
  for (const Value& v : {Value::Int64(INT64_MIN), Value::Double(1.5), Value::String("x"),
                         Value::Text(Value::Kind::kDecimal, "1.5"), Value::Text(Value::Kind::kBytes, "x"),
                         Value::Text(Value::Kind::kDate, "2026-11-26")}) {
    EXPECT_EQ(odbc::MysqlInlinedSql("SELECT ?", {v}), std::nullopt) << static_cast<int>(v.kind);
  }
}

// Integer parameters of a data change reach MariaDB in the statement's
// text: the server prepares nothing for it (its Com_stmt_prepare counter
// moves only for the SHOW that reads it: Connector/ODBC 3.1 prepares every
// SELECT and SHOW on the server, parameters or not) and the values land as
// bound ones would; a string parameter is still bound.
TEST_P(ParticipantTest, MariadbWritesIntegerParametersIntoTheText) {
  if (!IsMariadb()) GTEST_SKIP() << "MariaDB's text protocol";
  CreateKvTable();
  auto p = MakeParticipant(bind_name_, /*pool_size=*/1);
  ASSERT_TRUE(p.ok()) << p.status();
  auto branch = (*p)->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok()) << branch.status();
  auto prepares = [&]() -> int64_t {
    auto rs = (*branch)->Execute("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'", {}, 0);
    EXPECT_TRUE(rs.ok()) << rs.status();
    if (!rs.ok() || rs->rows.size() != 1) return -1;
    return std::stoll(rs->rows[0][1].text);
  };
  const int64_t first = prepares();
  const int64_t per_show = prepares() - first;  // what reading the counter adds
  const int64_t before = prepares();
  auto ins = (*branch)->Execute("INSERT INTO " + table_ + " (id, v) VALUES (?, ?), (?, '?')",
                                {Value::Int64(-7), Value::Null(), Value::Int64(8)}, 0);
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_EQ(ins->rows_affected, 2);
  auto upd = (*branch)->Execute("UPDATE " + table_ + " SET id = id * ? WHERE id = ? AND ?",
                                {Value::Int64(-1), Value::Int64(-7), Value::Bool(true)}, 0);
  ASSERT_TRUE(upd.ok()) << upd.status();
  EXPECT_EQ(upd->rows_affected, 1);
  EXPECT_EQ(prepares() - before, per_show) << "integer parameters were sent as a prepared statement";
  const int64_t before_string = prepares();
  ASSERT_TRUE((*branch)->Execute("UPDATE " + table_ + " SET v = ? WHERE id = ?",
                                 {Value::String("x"), Value::Int64(8)}, 0).ok());
  // Connector/ODBC binds a string parameter (a server-side prepare); the
  // native driver escapes it into the text.
  const bool native = GetParam().driver == "mariadb";
  EXPECT_EQ(prepares() - before_string, per_show + (native ? 0 : 1))
      << (native ? "the native driver prepared a statement" : "a string parameter is bound");
  auto sel = (*branch)->Execute("SELECT id, v FROM " + table_ + " WHERE id IN (?, ?) ORDER BY id",
                                {Value::Int64(7), Value::Int64(8)}, 0);
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_EQ(sel->rows.size(), 2u);
  EXPECT_EQ(sel->rows[0][0], Value::Int64(7));
  EXPECT_EQ(sel->rows[0][1], Value::Null());
  EXPECT_EQ(sel->rows[1][0], Value::Int64(8));
  EXPECT_EQ(sel->rows[1][1], Value::String("x"));
  ASSERT_TRUE((*branch)->CommitOnePhase().ok());
  EXPECT_EQ(KvValues(), (std::vector<std::string>{"<null>", "x"}));
}

// RunAndCommit: the whole of a one-bind transaction. On libpqxx BEGIN, the
// statements and COMMIT go in one round trip (the statement sees COMMIT in
// the query text); elsewhere RunBatch then CommitOnePhase.
TEST_P(ParticipantTest, RunAndCommitCommitsOrLeavesNothing) {
  CreateKvTable();
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ")");
  std::vector<Statement> work = {{insert, {Value::Int64(1), Value::String("a")}}};
  if (IsPostgres()) work.push_back({"SELECT current_query()", {}});
  CommitBatchOutcome done = participant_->RunAndCommit(NewXid(), absl::Seconds(10), work, 0);
  ASSERT_TRUE(done.status.ok()) << done.status;
  EXPECT_FALSE(done.commit_failed);
  ASSERT_EQ(done.results.size(), work.size());
  EXPECT_EQ(done.results[0].rows_affected, 1);
  if (GetParam().driver == "postgres") {
    EXPECT_THAT(done.results[1].rows.at(0).at(0).text, HasSubstr("COMMIT")) << "one round trip";
  }
  EXPECT_EQ(KvValues(), std::vector<std::string>{"a"});

  // A failing statement: nothing committed, the connection usable again.
  CommitBatchOutcome bad = participant_->RunAndCommit(
      NewXid(), absl::Seconds(10),
      {{insert, {Value::Int64(2), Value::String("b")}}, {"SELECT * FROM no_such_table_" + suffix_, {}}}, 0);
  EXPECT_FALSE(bad.status.ok());
  EXPECT_FALSE(bad.commit_failed);
  EXPECT_FALSE(bad.outcome_unknown);
  EXPECT_EQ(KvValues(), std::vector<std::string>{"a"});
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
}

// A COMMIT the database refuses (a deferred unique constraint): known
// rolled back, not unknown.
TEST_P(ParticipantTest, RunAndCommitReportsARefusedCommit) {
  if (!IsPostgres()) GTEST_SKIP() << "deferred constraints: PostgreSQL";
  CreateTable(table_, "id INT, CONSTRAINT u_" + suffix_ + " UNIQUE (id) DEFERRABLE INITIALLY DEFERRED");
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id) VALUES (", P(1), ")");
  CommitBatchOutcome out = participant_->RunAndCommit(
      NewXid(), absl::Seconds(10), {{insert, {Value::Int64(7)}}, {insert, {Value::Int64(7)}}}, 0);
  EXPECT_FALSE(out.status.ok());
  EXPECT_TRUE(out.commit_failed);
  EXPECT_FALSE(out.outcome_unknown);
  EXPECT_THAT(out.status.message(), HasSubstr("23505"));
  auto rs = ExecOnePhase("SELECT COUNT(*) FROM " + table_);
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->rows.at(0).at(0), Value::Int64(0));
}

TEST_P(ParticipantTest, LongValuesRoundTrip) {
  std::string long_text;
  for (int i = 0; i < 30000; ++i) long_text += "\xC3\xA9" "a\xE2\x9C\x93";  // 6 bytes
  std::string long_bytes;
  for (int i = 0; i < 100000; ++i) long_bytes.push_back(static_cast<char>((i * 7) % 256));
  CreateTable(table_, absl::StrCat("id INT PRIMARY KEY, t ", IsMariadb() ? "LONGTEXT" : "TEXT",
                                   ", b ", IsPostgres() ? "bytea" : (IsMariadb() ? "LONGBLOB" : "BLOB")));
  ASSERT_TRUE(ExecOnePhase(absl::StrCat("INSERT INTO ", table_, " VALUES (1, ", P(1), ", ",
                                        P(2), ")"),
                           {Value::String(long_text), Value::Text(Value::Kind::kBytes, long_bytes)})
                  .ok());
  auto rs = ExecOnePhase("SELECT t, b FROM " + table_);
  ASSERT_TRUE(rs.ok()) << rs.status();
  ASSERT_EQ(rs->rows.size(), 1u);
  EXPECT_EQ(rs->rows[0][0].text.size(), long_text.size());
  EXPECT_TRUE(rs->rows[0][0].text == long_text);
  EXPECT_EQ(rs->rows[0][1].text.size(), long_bytes.size());
  EXPECT_TRUE(rs->rows[0][1].text == long_bytes);
}

TEST_P(ParticipantTest, MaxRowsTruncates) {
  CreateKvTable();
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(ExecOnePhase(absl::StrCat("INSERT INTO ", table_, " VALUES (", i, ", 'x')")).ok());
  }
  auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok());
  auto rs = (*branch)->Execute("SELECT id FROM " + table_ + " ORDER BY id", {}, 3);
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->rows.size(), 3u);
  EXPECT_TRUE(rs->truncated);
  rs = (*branch)->Execute("SELECT id FROM " + table_ + " ORDER BY id", {}, 5);
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->rows.size(), 5u);
  EXPECT_FALSE(rs->truncated);
  EXPECT_TRUE((*branch)->Rollback().ok());
}

TEST_P(ParticipantTest, OnePhaseCommitAndRollback) {
  CreateKvTable();
  {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok()) << branch.status();
    auto rs = (*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'committed')", {}, 0);
    ASSERT_TRUE(rs.ok()) << rs.status();
    EXPECT_EQ(rs->rows_affected, 1);
    EXPECT_TRUE((*branch)->CommitOnePhase().ok());
  }
  {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (2, 'rolled back')", {}, 0).ok());
    EXPECT_TRUE((*branch)->Rollback().ok());
    EXPECT_TRUE((*branch)->Rollback().ok()) << "Rollback is idempotent";
  }
  {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (3, 'abandoned')", {}, 0).ok());
  }  // destroyed unfinished: rolled back
  EXPECT_EQ(KvValues(), std::vector<std::string>{"committed"});
  PoolStats stats = participant_->pool_stats();
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_GE(stats.open, 1);
}

TEST_P(ParticipantTest, FailedStatementFailsTheBranch) {
  CreateKvTable();
  auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok());
  ASSERT_TRUE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'a')", {}, 0).ok());
  auto dup = (*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'b')", {}, 0);
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr(bind_name_));
  auto bad = (*branch)->Execute("SELEC nonsense", {}, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition) << bad.status();
  EXPECT_FALSE((*branch)->CommitOnePhase().ok());
  EXPECT_THAT(KvValues(), IsEmpty());

  auto syntax = ExecOnePhase("SELEC nonsense");
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument) << syntax.status();
  EXPECT_THAT(std::string(syntax.status().message()), HasSubstr(bind_name_));
}

// Prepare, close every connection (destroy the participant), list from a new
// participant, finish there, and check the data.
TEST_P(ParticipantTest, PreparedBranchSurvivesItsConnectionAndIsFinishedFromANewOne) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  Xid to_commit = PrepareInsert(1, "committed");
  Xid to_roll_back = PrepareInsert(2, "rolled back");
  participant_.reset();  // closes the preparing connections

  auto fresh = MakeParticipant(bind_name_);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  participant_ = *std::move(fresh);
  auto listed = participant_->ListPrepared(node_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  std::vector<Xid> xids = {(*listed)[0].xid, (*listed)[1].xid};
  EXPECT_THAT(xids, ::testing::UnorderedElementsAre(to_commit, to_roll_back));
  for (const auto& b : *listed) {
    EXPECT_FALSE(b.raw.empty());
    if (IsPostgres()) {
      EXPECT_GT(b.prepared_at, absl::Now() - absl::Minutes(5));
      EXPECT_LT(b.prepared_at, absl::Now() + absl::Minutes(5));
    }
  }
  // Prepared rows are invisible until phase 2.
  EXPECT_THAT(KvValues(), IsEmpty());

  EXPECT_TRUE(participant_->CommitPrepared(to_commit).ok());
  EXPECT_TRUE(participant_->RollbackPrepared(to_roll_back).ok());
  EXPECT_EQ(KvValues(), std::vector<std::string>{"committed"});
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
}

// Phase 2 begun without waiting (Participant::StartFinishPrepared, where the
// driver has it: PostgreSQL on libpqxx, the native MariaDB driver on the
// connection that prepared the branch) ends like the blocking call.
TEST_P(ParticipantTest, StartFinishPreparedEndsLikeTheBlockingCall) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  auto prepare = [&](int id) -> Xid {
    Xid xid = NewXid();
    auto batch = participant_->RunBatch(
        xid, absl::Seconds(10), {{absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", id, ", 'p')"), {}}}, 0,
        /*prepare=*/true);
    EXPECT_TRUE(batch.ok()) << batch.status();
    return xid;
  };
  Xid committed = prepare(1), rolled_back = prepare(2);
  auto commit = participant_->StartFinishPrepared(committed, /*commit=*/true);
  auto rollback = participant_->StartFinishPrepared(rolled_back, /*commit=*/false);
  const bool started = GetParam().driver == "postgres" || GetParam().driver == "mariadb";
  ASSERT_EQ(commit != nullptr, started);
  ASSERT_EQ(rollback != nullptr, started);
  if (!started) {
    // Nothing sent: the blocking calls end them (the table is dropped after).
    EXPECT_TRUE(participant_->CommitPrepared(committed).ok());
    EXPECT_TRUE(participant_->RollbackPrepared(rolled_back).ok());
    GTEST_SKIP() << "the blocking calls only on " << GetParam().name;
  }
  // Both in flight at once, finished in the other order.
  EXPECT_TRUE(rollback->Finish().ok());
  EXPECT_TRUE(commit->Finish().ok());
  EXPECT_EQ(KvValues(), std::vector<std::string>{"p"});
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
  // Finished already: NOT_FOUND, begun without waiting or not.
  auto again = participant_->StartFinishPrepared(committed, /*commit=*/true);
  absl::Status s = again ? again->Finish() : participant_->CommitPrepared(committed);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

// A batch begun without waiting (StartBatch) ends like RunBatch: batches
// in flight at once, finished in another order, prepared with their
// results; a failing one names its statement — also a syntax error after a
// non-ASCII literal, which PostgreSQL reports for the whole string with a
// position in characters — and leaves nothing behind.
TEST_P(ParticipantTest, StartBatchEndsLikeTheBlockingCall) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ")");
  Xid a = NewXid(), b = NewXid();
  auto first = participant_->StartBatch(a, absl::Seconds(10), {{insert, {Value::Int64(1), Value::String("é")}}}, 0,
                                        /*prepare=*/true);
  auto second = participant_->StartBatch(
      b, absl::Seconds(10),
      {{insert, {Value::Int64(2), Value::String("b")}}, {"SELECT v FROM " + table_ + " WHERE id = 2", {}}}, 0,
      /*prepare=*/true);
  auto failing = participant_->StartBatch(
      NewXid(), absl::Seconds(10),
      {{"INSERT INTO " + table_ + " (id, v) VALUES (3, 'üü€')", {}}, {"SELEC nonsense", {}}}, 0, /*prepare=*/true);
  const bool started = GetParam().driver == "postgres" || GetParam().driver == "mariadb";
  ASSERT_EQ(first != nullptr, started);
  ASSERT_EQ(second != nullptr, started);
  ASSERT_EQ(failing != nullptr, started);
  if (!started) GTEST_SKIP() << "RunBatch only on " << GetParam().name;
  absl::StatusOr<BatchOutcome> failed = failing->Finish();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("statement 2"));
  absl::StatusOr<BatchOutcome> two = second->Finish();
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->vote, Vote::kPrepared);
  EXPECT_EQ(two->branch, nullptr);
  ASSERT_EQ(two->results.size(), 2u);
  EXPECT_EQ(two->results[0].rows_affected, 1);
  ASSERT_EQ(two->results[1].rows.size(), 1u);
  EXPECT_EQ(two->results[1].rows[0].at(0).text, "b");
  absl::StatusOr<BatchOutcome> one = first->Finish();
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->vote, Vote::kPrepared);
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), ::testing::UnorderedElementsAre(a.gtrid, b.gtrid));
  ASSERT_TRUE(participant_->CommitPrepared(a).ok());
  ASSERT_TRUE(participant_->CommitPrepared(b).ok());
  EXPECT_EQ(KvValues(), (std::vector<std::string>{"é", "b"}));
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
}

// COPY from or to the client cannot run through txcoord (its data would
// travel between the server and txcoord's connection): a clear
// INVALID_ARGUMENT in a batch and in a branch, nothing left behind, the bind
// usable after.
TEST_P(ParticipantTest, CopyFromOrToTheClientIsRefused) {
  if (GetParam().driver != "postgres") GTEST_SKIP() << "PostgreSQL's COPY protocol";
  CreateKvTable();
  for (const std::string& copy : {"COPY " + table_ + " FROM STDIN", "COPY " + table_ + " TO STDOUT"}) {
    auto batch = participant_->RunBatch(NewXid(), absl::Seconds(10), {{copy, {}}}, 0, /*prepare=*/false);
    ASSERT_FALSE(batch.ok()) << copy;
    EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument) << batch.status();
    EXPECT_EQ(participant_->pool_stats().in_use, 0);
  }
  for (const std::string& copy : {"COPY " + table_ + " FROM STDIN", "COPY " + table_ + " TO STDOUT"}) {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok()) << branch.status();
    auto executed = (*branch)->Execute(copy, {}, 0);
    ASSERT_FALSE(executed.ok()) << copy;
    EXPECT_EQ(executed.status().code(), absl::StatusCode::kInvalidArgument) << executed.status();
    (void)(*branch)->Rollback();
  }
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
  auto after = participant_->RunBatch(NewXid(), absl::Seconds(10),
                                      {{"INSERT INTO " + table_ + " (id, v) VALUES (1, 'after')", {}}}, 0,
                                      /*prepare=*/true);
  ASSERT_TRUE(after.ok()) << after.status();
  auto listed = participant_->ListPrepared(node_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE(participant_->RollbackPrepared(listed->front().xid).ok());
}

TEST_P(ParticipantTest, FinishingTwiceIsNotFound) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  Xid committed = PrepareInsert(1, "a");
  ASSERT_TRUE(participant_->CommitPrepared(committed).ok());
  absl::Status again = participant_->CommitPrepared(committed);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
  EXPECT_THAT(std::string(again.message()), HasSubstr(bind_name_));
  EXPECT_EQ(participant_->RollbackPrepared(committed).code(), absl::StatusCode::kNotFound);

  Xid rolled_back = PrepareInsert(2, "b");
  ASSERT_TRUE(participant_->RollbackPrepared(rolled_back).ok());
  EXPECT_EQ(participant_->RollbackPrepared(rolled_back).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(participant_->CommitPrepared(rolled_back).code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(participant_->CommitPrepared(NewXid()).code(), absl::StatusCode::kNotFound)
      << "never prepared";
  EXPECT_EQ(KvValues(), std::vector<std::string>{"a"});
}

// Phase 2 right after phase 1, many times: on MariaDB the prepared branch is
// detached from its (closed) session asynchronously, and an XA COMMIT that
// comes first must not report NOT_FOUND (it did, about 1 in 150, before the
// dialect retried XAER_NOTA while XA RECOVER lists the xid).
TEST_P(ParticipantTest, FinishingRightAfterPrepareNeverReportsNotFound) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  int committed = 0;
  for (int i = 0; i < 150; ++i) {
    Xid xid = PrepareInsert(i, "v");
    absl::Status s = (i % 2 == 0) ? participant_->CommitPrepared(xid)
                                  : participant_->RollbackPrepared(xid);
    ASSERT_TRUE(s.ok()) << "iteration " << i << ": " << s;
    committed += (i % 2 == 0);
  }
  EXPECT_EQ(KvValues().size(), static_cast<size_t>(committed));
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
}

TEST_P(ParticipantTest, ReadOnlyBranchVotesReadOnly) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  ASSERT_TRUE(ExecOnePhase("INSERT INTO " + table_ + " VALUES (1, 'x')").ok());
  {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    auto rs = (*branch)->Execute("SELECT v FROM " + table_, {}, 0);
    ASSERT_TRUE(rs.ok()) << rs.status();
    auto vote = (*branch)->Prepare();
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ(*vote, Vote::kReadOnly);
  }
  {
    // An UPDATE that matches no row wrote nothing either.
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("UPDATE " + table_ + " SET v = 'y' WHERE id = 99", {}, 0).ok());
    auto vote = (*branch)->Prepare();
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ(*vote, Vote::kReadOnly);
  }
  {
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("UPDATE " + table_ + " SET v = 'z' WHERE id = 1", {}, 0).ok());
    auto vote = (*branch)->Prepare();
    ASSERT_TRUE(vote.ok()) << vote.status();
    EXPECT_EQ(*vote, Vote::kPrepared);
    EXPECT_TRUE(participant_->RollbackPrepared((*branch)->xid()).ok());
  }
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
  EXPECT_EQ(KvValues(), std::vector<std::string>{"x"});
}

// A prepare that fails (here: a deferred foreign key checked at PREPARE
// TRANSACTION) returns an error and leaves no prepared branch behind.
TEST_P(ParticipantTest, FailingPrepareLeavesNoBranch) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  const std::string parent = table_ + "_parent", child = table_ + "_child";
  CreateTable(parent, "id INT PRIMARY KEY");
  Xid xid = NewXid();
  absl::StatusOr<std::unique_ptr<Branch>> branch = absl::UnknownError("not begun");
  if (IsPostgres()) {
    CreateTable(child, "id INT PRIMARY KEY, parent_id INT REFERENCES " + parent +
                           " (id) DEFERRABLE INITIALLY DEFERRED");
    branch = participant_->Begin(xid, absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    // Accepted now, checked at PREPARE TRANSACTION.
    ASSERT_TRUE((*branch)->Execute("INSERT INTO " + child + " VALUES (1, 42)", {}, 0).ok());
  } else {
    // MariaDB has no deferred constraints: a branch whose statement failed
    // must not prepare either.
    CreateTable(child, "id INT PRIMARY KEY");
    branch = participant_->Begin(xid, absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("INSERT INTO " + child + " VALUES (1)", {}, 0).ok());
    ASSERT_FALSE((*branch)->Execute("INSERT INTO " + child + " VALUES (1)", {}, 0).ok());
  }
  auto vote = (*branch)->Prepare();
  ASSERT_FALSE(vote.ok());
  EXPECT_THAT(std::string(vote.status().message()), HasSubstr(bind_name_));
  if (IsPostgres()) {
    EXPECT_THAT(std::string(vote.status().message()), HasSubstr("23503"));
  }
  branch->reset();
  EXPECT_THAT(ListedGtrids(participant_.get(), node_), IsEmpty());
  EXPECT_EQ(participant_->RollbackPrepared(xid).code(), absl::StatusCode::kNotFound);
  auto rows = ExecOnePhase("SELECT id FROM " + child);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(rows->rows, IsEmpty());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
}

// ListPrepared returns this node's branches only: not another node's (even
// one whose id starts with ours), nor gids/xids that are not txcoord's.
TEST_P(ParticipantTest, ListPreparedNeverReturnsForeignBranches) {
  if (!TwoPhase()) GTEST_SKIP() << "no two-phase commit on " << dialect();
  CreateKvTable();
  const std::string other_node = node_ + "x";
  Xid mine = PrepareInsert(1, "mine");
  Xid theirs = PrepareInsert(2, "theirs", other_node);
  // By hand: a branch that is not txcoord's but looks close.
  const std::string foreign = absl::StrCat("txc1_", node_, ".x_0-b", suffix_);
  if (IsPostgres()) {
    std::string uri;
    TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
    testing::RawPostgres(uri, absl::StrCat("BEGIN; INSERT INTO ", table_,
                                           " VALUES (3, 'foreign'); PREPARE TRANSACTION '",
                                           foreign, "'"));
  } else {
    testing::RawOdbc raw(dsn_);
    ASSERT_TRUE(raw.ok()) << raw.error();
    raw.Query("XA START '" + foreign + "'");
    raw.Query("INSERT INTO " + table_ + " VALUES (3, 'foreign')");
    raw.Query("XA END '" + foreign + "'");
    raw.Query("XA PREPARE '" + foreign + "'");
  }

  EXPECT_EQ(ListedGtrids(participant_.get(), node_), std::vector<std::string>{mine.gtrid});
  EXPECT_EQ(ListedGtrids(participant_.get(), other_node), std::vector<std::string>{theirs.gtrid});
  EXPECT_EQ(participant_->ListPrepared("bad_node").status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_TRUE(participant_->RollbackPrepared(mine).ok());
  EXPECT_TRUE(participant_->RollbackPrepared(theirs).ok());
  if (IsPostgres()) {
    std::string uri;
    TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
    testing::RawPostgres(uri, "ROLLBACK PREPARED '" + foreign + "'");
  } else {
    testing::RawOdbc raw(dsn_);
    raw.Query("XA ROLLBACK '" + foreign + "'");
  }
  EXPECT_THAT(KvValues(), IsEmpty());
}

TEST_P(ParticipantTest, PoolExhaustionIsResourceExhaustedAfterTheAcquireTimeout) {
  auto small = MakeParticipant("small-bind", 1, absl::Milliseconds(300));
  ASSERT_TRUE(small.ok()) << small.status();
  auto held = (*small)->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ((*small)->pool_stats().in_use, 1);
  EXPECT_EQ((*small)->pool_stats().size, 1);
  const absl::Time start = absl::Now();
  auto second = (*small)->Begin(NewXid(), absl::Seconds(10));
  const absl::Duration waited = absl::Now() - start;
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("small-bind"));
  EXPECT_GE(waited, absl::Milliseconds(290));
  EXPECT_LT(waited, absl::Seconds(5));
  held->reset();
  auto third = (*small)->Begin(NewXid(), absl::Seconds(10));
  EXPECT_TRUE(third.ok()) << third.status();
}

// The server session under an idle pooled connection is killed (as by a
// database restart); the next use reconnects.
TEST_P(ParticipantTest, KilledPooledConnectionIsReconnectedOnNextUse) {
  if (IsSqlite()) GTEST_SKIP() << "SQLite has no server session to kill";
  auto p = MakeParticipant("kill-bind", 1);
  ASSERT_TRUE(p.ok()) << p.status();
  auto session = [&]() -> int64_t {
    auto rs = ExecOnePhase(SessionIdSql(), {}, p->get());
    EXPECT_TRUE(rs.ok()) << rs.status();
    if (!rs.ok() || rs->rows.empty()) return -1;
    return rs->rows[0][0].int_value;
  };
  const int64_t first = session();
  ASSERT_GT(first, 0);
  EXPECT_EQ(session(), first) << "the idle connection is reused";
  KillSession(first);
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t second = session();
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  EXPECT_EQ((*p)->pool_stats().open, 1);

  // The same for recovery calls: ListPrepared reconnects too.
  KillSession(second);
  absl::SleepFor(absl::Milliseconds(200));
  auto listed = (*p)->ListPrepared(node_);
  EXPECT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE((*p)->CheckHealth().ok());

  // And RunAndCommit's batch, which carries its COMMIT and so is never sent
  // twice: the closed connection is found and replaced before sending.
  auto via_batch = [&]() -> int64_t {
    CommitBatchOutcome out = (*p)->RunAndCommit(NewXid(), absl::Seconds(10), {{SessionIdSql(), {}}}, 0);
    EXPECT_TRUE(out.status.ok()) << out.status;
    if (!out.status.ok() || out.results.empty() || out.results[0].rows.empty()) return -1;
    return out.results[0].rows[0][0].int_value;
  };
  const int64_t third = via_batch();
  ASSERT_GT(third, 0);
  KillSession(third);
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t fourth = via_batch();
  EXPECT_GT(fourth, 0);
  EXPECT_NE(fourth, third);
}

TEST_P(ParticipantTest, LockTimeoutIsAborted) {
  CreateKvTable();
  ASSERT_TRUE(ExecOnePhase("INSERT INTO " + table_ + " VALUES (1, 'x')").ok());
  auto holder = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE((*holder)->Execute("UPDATE " + table_ + " SET v = 'held' WHERE id = 1", {}, 0).ok());
  auto waiter = participant_->Begin(NewXid(), absl::Milliseconds(500));
  ASSERT_TRUE(waiter.ok()) << waiter.status();
  const absl::Time start = absl::Now();
  auto blocked = (*waiter)->Execute("UPDATE " + table_ + " SET v = 'waiter' WHERE id = 1", {}, 0);
  const absl::Duration waited = absl::Now() - start;
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kAborted) << blocked.status();
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_TRUE((*waiter)->Rollback().ok());
  EXPECT_TRUE((*holder)->CommitOnePhase().ok());
  EXPECT_EQ(KvValues(), std::vector<std::string>{"held"});
}

// One node id per bind and database: a second participant of the same bind
// cannot claim it while the first holds it, the holder's claim is
// idempotent, and the claim is free again once the holder is gone.
TEST_P(ParticipantTest, NodeClaimIsExclusiveUntilItsHolderIsGone) {
  const std::string node = "claim-" + std::to_string(absl::ToUnixMicros(absl::Now()) % 1000000000);
  auto first = MakeParticipant(bind_name_);
  auto second = MakeParticipant(bind_name_);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE((*first)->ClaimNode(node).ok());
  absl::Status taken = (*second)->ClaimNode(node);
  if (IsSqlite()) {
    EXPECT_TRUE(taken.ok()) << "SQLite has no claim";
    EXPECT_EQ((*first)->node_claim_kind(), "");
    return;
  }
  EXPECT_EQ(taken.code(), absl::StatusCode::kFailedPrecondition) << taken;
  EXPECT_THAT(std::string(taken.message()), HasSubstr("node_id \"" + node + "\" is in use by another coordinator"));
  EXPECT_THAT(std::string(taken.message()), HasSubstr((*first)->node_claim_kind()));
  EXPECT_TRUE((*first)->ClaimNode(node).ok()) << "claiming again what one holds";
  EXPECT_TRUE((*second)->ClaimNode(node + "-other").ok()) << "another node id is free";
  first->reset();  // its claiming session ends
  absl::Status freed;
  for (int i = 0; i < 50; ++i) {  // the server releases the lock when it sees the session end
    freed = (*second)->ClaimNode(node);
    if (freed.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(freed.ok()) << freed;
}

TEST_P(ParticipantTest, CancelStopsARunningStatement) {
  if (IsSqlite()) GTEST_SKIP() << "no long-running statement to cancel in SQLite";
  auto branch = participant_->Begin(NewXid(), absl::Seconds(0));
  ASSERT_TRUE(branch.ok());
  Branch* b = branch->get();
  const absl::Time start = absl::Now();
  auto running = std::async(std::launch::async, [&] {
    return b->Execute(IsPostgres() ? "SELECT pg_sleep(20)" : "SELECT SLEEP(20)", {}, 0);
  });
  absl::SleepFor(absl::Milliseconds(500));
  b->Cancel();
  auto result = running.get();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  if (IsMariadb()) {
    // MariaDB's SLEEP() returns 1 when killed instead of failing.
    if (result.ok()) {
      ASSERT_EQ(result->rows.size(), 1u);
      EXPECT_EQ(result->rows[0][0].int_value, 1);
    } else {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
    }
  } else {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
  }
  EXPECT_TRUE(b->Rollback().ok());
  branch->reset();
  EXPECT_TRUE(ExecOnePhase("SELECT 1").ok()) << "the connection is usable again";
}

// Logging last resource: the decision row is written in the branch's own
// local transaction, listed per node, and forgotten on request.
TEST_P(ParticipantTest, LastResourceCommitWritesTheDecision) {
  CreateKvTable();
  const std::string txn = absl::StrCat(node_, ".1.", ++seq_);
  auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok());
  ASSERT_TRUE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'lr')", {}, 0).ok());
  if (!TwoPhase()) {
    auto vote = (*branch)->Prepare();
    EXPECT_EQ(vote.status().code(), absl::StatusCode::kFailedPrecondition) << vote.status();
    branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok());
    ASSERT_TRUE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'lr')", {}, 0).ok());
  }
  ASSERT_TRUE((*branch)->CommitAsLastResource(txn, "{\"branches\":2}").ok());
  EXPECT_EQ(KvValues(), std::vector<std::string>{"lr"});

  // A failed last-resource commit writes no decision.
  const std::string failed_txn = absl::StrCat(node_, ".1.", ++seq_);
  branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok());
  ASSERT_FALSE((*branch)->Execute("INSERT INTO " + table_ + " VALUES (1, 'dup')", {}, 0).ok());
  EXPECT_FALSE((*branch)->CommitAsLastResource(failed_txn, "x").ok());

  auto decisions = participant_->ListDecisions(node_);
  ASSERT_TRUE(decisions.ok()) << decisions.status();
  EXPECT_EQ(*decisions, std::vector<std::string>{txn});
  auto others = participant_->ListDecisions(node_ + "x");
  ASSERT_TRUE(others.ok());
  EXPECT_THAT(*others, IsEmpty());
  EXPECT_TRUE(participant_->ForgetDecision(txn).ok());
  EXPECT_TRUE(participant_->ForgetDecision(txn).ok()) << "idempotent";
  decisions = participant_->ListDecisions(node_);
  ASSERT_TRUE(decisions.ok());
  EXPECT_THAT(*decisions, IsEmpty());
}

// Many decision rows forgotten at once (the coordinator's batched removal).
TEST_P(ParticipantTest, ForgetDecisionsRemovesEveryGivenRow) {
  std::vector<std::string> txns;
  for (int i = 0; i < 3; ++i) {
    txns.push_back(absl::StrCat(node_, ".1.", ++seq_));
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok()) << branch.status();
    ASSERT_TRUE((*branch)->CommitAsLastResource(txns.back(), "x").ok());
  }
  ASSERT_TRUE(participant_->ForgetDecisions({txns[0], txns[2], node_ + ".1.999999"}).ok());
  auto decisions = participant_->ListDecisions(node_);
  ASSERT_TRUE(decisions.ok()) << decisions.status();
  EXPECT_EQ(*decisions, std::vector<std::string>{txns[1]});
  EXPECT_TRUE(participant_->ForgetDecisions({}).ok());
}

// A configured last resource on PostgreSQL: recovery's fence waits for a
// transaction still committing the same decision row, then reads its
// outcome (txcoord may have died with that COMMIT in flight).
TEST_P(ParticipantTest, PostgresFenceWaitsForADecisionRowInFlight) {
  if (GetParam().driver != "postgres") GTEST_SKIP() << "libpqxx only";
  ASSERT_TRUE(participant_->EnsureDecisionTable().ok());
  for (bool commits : {true, false}) {
    const std::string txn = absl::StrCat(node_, ".1.", ++seq_);
    pqxx::connection holder(dsn_);
    pqxx::work w(holder);
    w.exec("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (" + w.quote(txn) + ", 'x')");
    auto fence = std::async(std::launch::async, [&] { return participant_->FenceDecision(txn); });
    EXPECT_EQ(fence.wait_for(std::chrono::milliseconds(500)), std::future_status::timeout)
        << "the fence did not wait for the row's transaction";
    if (commits) {
      w.commit();
    } else {
      w.abort();
    }
    absl::StatusOr<bool> fenced = fence.get();
    ASSERT_TRUE(fenced.ok()) << fenced.status();
    EXPECT_EQ(*fenced, !commits) << (commits ? "the committed row means COMMIT" : "the tombstone went in");
  }
}

TEST_P(ParticipantTest, SqliteCannotPrepare) {
  if (TwoPhase()) GTEST_SKIP() << dialect() << " prepares";
  auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok());
  auto vote = (*branch)->Prepare();
  EXPECT_EQ(vote.status().code(), absl::StatusCode::kFailedPrecondition);
  auto listed = participant_->ListPrepared(node_);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, IsEmpty());
  EXPECT_EQ(participant_->CommitPrepared(NewXid()).code(), absl::StatusCode::kFailedPrecondition);
}

// Too few or too many parameters: the caller's mistake (INVALID_ARGUMENT),
// never a lost connection — a retry cannot fix it, and the pooled
// connections stay open.
TEST_P(ParticipantTest, ParameterCountMismatchIsInvalidArgumentAndKeepsTheConnection) {
  const std::string sql = GetParam().driver == "postgres" ? "SELECT $1::int + $2::int"
                                                          : "SELECT CAST(? AS INT) + CAST(? AS INT)";
  ASSERT_TRUE(ExecOnePhase("SELECT 1").ok());
  const int open_before = participant_->pool_stats().open;
  for (const std::vector<Value>& params :
       {std::vector<Value>{Value::Int64(1)}, std::vector<Value>{Value::Int64(1), Value::Int64(2), Value::Int64(3)}}) {
    SCOPED_TRACE(params.size());
    auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
    ASSERT_TRUE(branch.ok()) << branch.status();
    auto rs = (*branch)->Execute(sql, params, 0);
    EXPECT_EQ(rs.status().code(), absl::StatusCode::kInvalidArgument) << rs.status();
    EXPECT_THAT(rs.status().message(), HasSubstr(bind_name_));
    (void)(*branch)->Rollback();
    branch->reset();
    // The same through RunBatch (libpqxx: the pipelined path) and RunAndCommit.
    auto batch = participant_->RunBatch(NewXid(), absl::Seconds(10), {{sql, params}}, 0, /*prepare=*/false);
    EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument) << batch.status();
    CommitBatchOutcome one = participant_->RunAndCommit(NewXid(), absl::Seconds(10), {{sql, params}}, 0);
    EXPECT_EQ(one.status.code(), absl::StatusCode::kInvalidArgument) << one.status;
    EXPECT_FALSE(one.outcome_unknown);
  }
  EXPECT_EQ(participant_->pool_stats().open, open_before) << "a parameter mistake closed pooled connections";
  auto ok = ExecOnePhase(sql, {Value::Int64(1), Value::Int64(2)});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->rows.at(0).at(0), Value::Int64(3));
}

// A refused login is a configuration mistake, not an outage: a retry
// cannot fix it (FAILED_PRECONDITION, not UNAVAILABLE).
TEST_P(ParticipantTest, RefusedLoginIsFailedPreconditionNotUnavailable) {
  if (IsSqlite()) GTEST_SKIP() << "SQLite has no login";
  ASSERT_THAT(dsn_, HasSubstr("txcoord_local_pw")) << "the local harness's password";
  BindOptions o;
  o.name = "refused";
  o.driver = GetParam().driver;
  o.dsn = absl::StrReplaceAll(dsn_, {{"txcoord_local_pw", "not_the_password"}});
  auto p = CreateParticipant(o);
  absl::Status s = p.status();
  if (p.ok()) s = (*p)->Begin(NewXid(), absl::Seconds(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("refused"));
}

INSTANTIATE_TEST_SUITE_P(
    Backends, ParticipantTest,
    ::testing::Values(Backend{"PostgresLibpqxx", "TXC_PG_URI", "postgres", "postgresql"},
                      Backend{"MariadbOdbc", "TXC_MARIADB_ODBC", "odbc", "mariadb"},
                      Backend{"MariadbNative", "TXC_MARIADB_ODBC", "mariadb", "mariadb"},
                      Backend{"PostgresOdbc", "TXC_PG_ODBC", "odbc", "postgresql"},
                      Backend{"SqliteOdbc", "TXC_SQLITE_ODBC", "odbc", "sqlite"}),
    PrintBackend);

TEST(CreateParticipantTest, RejectsBadOptions) {
  BindOptions o;
  o.name = "b";
  o.driver = "nope";
  EXPECT_EQ(CreateParticipant(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.driver = "postgres";
  o.pool_size = 0;
  EXPECT_EQ(CreateParticipant(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.pool_size = 1;
  o.name = "";
  EXPECT_EQ(CreateParticipant(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CreateParticipantTest, UnreachablePostgresIsUnavailableOnUse) {
  BindOptions o;
  o.name = "down-bind";
  o.driver = "postgres";
  o.dsn = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2";
  auto p = CreateParticipant(o);
  ASSERT_TRUE(p.ok()) << p.status();  // connects lazily
  absl::Status health = (*p)->CheckHealth();
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable) << health;
  EXPECT_THAT(std::string(health.message()), HasSubstr("down-bind"));
  auto branch = (*p)->Begin(*MakeXid("n.1.1", 0, "down-bind"), absl::Seconds(1));
  EXPECT_EQ(branch.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*p)->pool_stats().open, 0);
}

}  // namespace
}  // namespace txcoord::participants
