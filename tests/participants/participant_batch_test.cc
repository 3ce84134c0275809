// The participant suite's batch tests (fixture: participant_fixture.h):
// RunBatch, StartBatch, RunAndCommit and StartFinishPrepared on every
// backend, and the lexing and inlining their drivers rely on.
#include <chrono>
#include <future>
#include <pqxx/pqxx>
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
#include "participants/participant.h"
#include "participants/postgres/postgres_participant.h"
#include "tests/participants/participant_fixture.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/freezing_proxy.h"
#include "tests/testing/local_db.h"

namespace txcoord::participants {
namespace {

using namespace participant_testing;  // NOLINT(build/namespaces): the suite's fixture

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

// On libpqxx the whole batch — BEGIN and the limits, the statements, the
// branch-open check and PREPARE TRANSACTION or COMMIT — reaches the server
// in one turn of the client (libpq's pipeline mode): one round trip,
// counted by a relay in front of the server. Parameters travel as protocol
// parameters: no named statement is left on the connection.
TEST_P(ParticipantTest, RunBatchIsOneRoundTripOnLibpqxx) {
  if (GetParam().driver != "postgres") GTEST_SKIP() << "pipelined on libpqxx only";
  CreateKvTable();
  testing::FreezingProxy relay(testing::PortOf(dsn_));
  BindOptions o;
  o.name = bind_name_;
  o.driver = "postgres";
  o.dsn = testing::WithPort(dsn_, relay.port());
  o.pool_size = 1;  // every call on one connection, opened by the first
  absl::StatusOr<std::unique_ptr<Participant>> proxied = CreateParticipant(o);
  ASSERT_TRUE(proxied.ok()) << proxied.status();
  Participant& p = **proxied;
  ASSERT_TRUE(ExecOnePhase("SELECT 1", {}, &p).ok());
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES ($1, $2)");
  const std::string named = "SELECT count(*) FROM pg_prepared_statements";

  int turns = relay.client_turns();
  Xid xid = NewXid();
  auto batch = p.RunBatch(xid, absl::Seconds(10), {{insert, {Value::Int64(1), Value::String("a")}}, {named, {}}}, 0,
                          /*prepare=*/true);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(relay.client_turns() - turns, 1) << "a data change: PREPARE TRANSACTION in the same round trip";
  ASSERT_EQ(batch->results.size(), 2u);
  EXPECT_EQ(batch->results[1].rows.at(0).at(0), Value::Int64(0)) << "no named statement";
  EXPECT_EQ(batch->vote, Vote::kPrepared);
  EXPECT_THAT(ListedGtrids(&p, node_), ::testing::Contains(xid.gtrid));
  EXPECT_TRUE(p.RollbackPrepared(xid).ok());

  // A one-bind transaction: BEGIN … COMMIT, one round trip.
  turns = relay.client_turns();
  CommitBatchOutcome done =
      p.RunAndCommit(NewXid(), absl::Seconds(10), {{insert, {Value::Int64(2), Value::String("b")}}}, 0);
  ASSERT_TRUE(done.status.ok()) << done.status;
  EXPECT_EQ(relay.client_turns() - turns, 1);
  EXPECT_EQ(KvValues(), std::vector<std::string>{"b"});

  // Only reads: the read-only probe ends the batch, then COMMIT (the vote
  // is READ_ONLY, no branch is left).
  turns = relay.client_turns();
  auto reads = p.RunBatch(NewXid(), absl::Seconds(10), {{"SELECT 1", {}}}, 0, /*prepare=*/true);
  ASSERT_TRUE(reads.ok()) << reads.status();
  EXPECT_EQ(reads->vote, Vote::kReadOnly);
  EXPECT_EQ(relay.client_turns() - turns, 2);
  EXPECT_EQ(p.pool_stats().in_use, 0);
}

// A batch's statements and their parameters: a data change that changed
// nothing is prepared all the same, and commits; SQL outside the batchable
// subset runs statement by statement; a parameter PostgreSQL text cannot
// hold (a NUL byte) is refused before anything is sent.
TEST_P(ParticipantTest, RunBatchEdgesOnLibpqxx) {
  if (GetParam().driver != "postgres") GTEST_SKIP() << "libpqxx's batch";
  CreateKvTable();
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
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES ($1, $2)");
  for (bool prepare : {true, false}) {
    auto nul = participant_->RunBatch(NewXid(), absl::Seconds(10),
                                      {{insert, {Value::Int64(1), Value::String(std::string("a\0b", 3))}}}, 0, prepare);
    ASSERT_FALSE(nul.ok());
    EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument) << nul.status();
    EXPECT_THAT(nul.status().message(), HasSubstr("statement 1: bind " + bind_name_ + ": parameter 2 holds a NUL"));
  }
  auto branch = participant_->Begin(NewXid(), absl::Seconds(10));
  ASSERT_TRUE(branch.ok()) << branch.status();
  auto nul = (*branch)->Execute(insert, {Value::Int64(1), Value::String(std::string("a\0b", 3))}, 0);
  EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument) << nul.status();
  EXPECT_TRUE((*branch)->Rollback().ok());
  EXPECT_EQ(participant_->pool_stats().in_use, 0);
  EXPECT_THAT(KvValues(), IsEmpty());
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
// statements and COMMIT go in one round trip (RunBatchIsOneRoundTripOnLibpqxx);
// elsewhere RunBatch then CommitOnePhase.
TEST_P(ParticipantTest, RunAndCommitCommitsOrLeavesNothing) {
  CreateKvTable();
  const std::string insert = absl::StrCat("INSERT INTO ", table_, " (id, v) VALUES (", P(1), ", ", P(2), ")");
  std::vector<Statement> work = {{insert, {Value::Int64(1), Value::String("a")}}};
  CommitBatchOutcome done = participant_->RunAndCommit(NewXid(), absl::Seconds(10), work, 0);
  ASSERT_TRUE(done.status.ok()) << done.status;
  EXPECT_FALSE(done.commit_failed);
  ASSERT_EQ(done.results.size(), work.size());
  EXPECT_EQ(done.results[0].rows_affected, 1);
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

}  // namespace
}  // namespace txcoord::participants
