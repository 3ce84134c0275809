#include "participants/statement_guard.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txcoord::participants {
namespace {

bool Refused(absl::string_view dialect, absl::string_view sql) {
  absl::Status s = CheckBranchSql("b1", dialect, sql);
  if (!s.ok()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  return !s.ok();
}

TEST(StatementGuardTest, PostgresRefusesEveryTransactionControlSpelling) {
  for (const char* sql : {"COMMIT", "commit", "END", "end transaction", "ABORT", "ROLLBACK", "rollback work",
                          "COMMIT AND CHAIN", "ROLLBACK AND CHAIN", "/* c */ commit", "-- note\ncommit",
                          "/* a /* nested */ still */ COMMIT", "BEGIN", "begin isolation level serializable",
                          "START TRANSACTION", "PREPARE TRANSACTION 'x1'", "prepare transaction 'x1'",
                          "COMMIT PREPARED 'x1'", "ROLLBACK PREPARED 'x1'", "  \n\tCoMmIt ;",
                          "UPDATE t SET v = 1; COMMIT", "UPDATE t SET v = 1;COMMIT;", "SELECT 1; END",
                          "SELECT ';'; COMMIT", "RESET ALL", "SELECT $$;$$; COMMIT", "SELECT $t$ $$ ; $t$; ABORT",
                          "SELECT E'\\';'; COMMIT", "SELECT \"a;b\" FROM t; COMMIT", "SELECT 1 /* ; */; commit",
                          "COPY t FROM STDIN", "copy t (a, b) from stdin with (format csv)",
                          "COPY (SELECT 1) TO STDOUT", "UPDATE t SET v = 1; COPY t TO stdout"}) {
    EXPECT_TRUE(Refused("postgresql", sql)) << sql;
  }
}

TEST(StatementGuardTest, PostgresAllowsWorkSavepointsAndLookalikes) {
  for (const char* sql : {"UPDATE accounts SET balance = balance - 1 WHERE id = $1", "SAVEPOINT s1",
                          "ROLLBACK TO SAVEPOINT s1", "ROLLBACK TO s1", "rollback work to savepoint s1",
                          "ROLLBACK TRANSACTION TO SAVEPOINT s1", "RELEASE SAVEPOINT s1",
                          "SELECT 'COMMIT'", "SELECT $$; COMMIT$$", "SELECT 1 -- ; COMMIT",
                          "SELECT 1 /* ; COMMIT */", "INSERT INTO log(msg) VALUES ('end; begin')",
                          "SELECT \"commit\" FROM t", "SET LOCAL lock_timeout = 100",
                          "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 "
                          "END; SELECT 2; END",
                          "DO $$ BEGIN PERFORM 1; END $$", "SELECT a$b FROM t", "SELECT $1::int + $2::int",
                          "COPY t FROM '/srv/data.csv'", "SELECT 'COPY t FROM STDIN'", "SELECT stdin FROM t"}) {
    EXPECT_FALSE(Refused("postgresql", sql)) << sql;
  }
}

TEST(StatementGuardTest, BackslashReadingsBothChecked) {
  // With standard_conforming_strings off (or NO_BACKSLASH_ESCAPES on in
  // MariaDB) the quote ends at a different place: either reading counts.
  EXPECT_TRUE(Refused("postgresql", "SELECT 'a\\'; COMMIT; -- '"));
  EXPECT_TRUE(Refused("mariadb", "SELECT 'a\\'; COMMIT; -- '"));
  EXPECT_TRUE(Refused("mariadb", "SELECT 'a\\'; SELECT '; COMMIT; SELECT '"));
}

TEST(StatementGuardTest, MariadbRefusesTransactionControlAndImplicitCommits) {
  for (const char* sql : {"COMMIT", "ROLLBACK", "BEGIN", "START TRANSACTION", "XA END 'x'", "XA COMMIT 'x'",
                          "/*!COMMIT*/", "/*!50000 COMMIT */", "/*M!100000 COMMIT */", "SELECT 1; COMMIT",
                          "# comment\nCOMMIT", "SET autocommit = 1", "SET @@session.autocommit=1",
                          "SET STATEMENT max_statement_time=1 FOR COMMIT", "CREATE TABLE t (a int)",
                          "ALTER TABLE t ADD b int", "DROP TABLE t", "TRUNCATE t", "LOCK TABLES t WRITE",
                          "UNLOCK TABLES", "GRANT SELECT ON t TO u", "RENAME TABLE a TO b", "ANALYZE TABLE t",
                          "FLUSH TABLES", "SET PASSWORD = PASSWORD('x')", "CREATE INDEX i ON t(a)"}) {
    EXPECT_TRUE(Refused("mariadb", sql)) << sql;
  }
  for (const char* sql : {"UPDATE bi SET v = 'y' WHERE id = 1", "SAVEPOINT s", "ROLLBACK TO SAVEPOINT s",
                          "ROLLBACK WORK TO s", "CREATE TEMPORARY TABLE tt (a int)", "DROP TEMPORARY TABLE tt",
                          "SELECT 1 --comment-less minus\n", "SELECT `commit` FROM t", "SELECT \"COMMIT\"",
                          "SELECT 1 /* COMMIT */", "LOAD DATA INFILE 'f' INTO TABLE t"}) {
    EXPECT_FALSE(Refused("mariadb", sql)) << sql;
  }
}

TEST(StatementGuardTest, SqliteRefusesTransactionControl) {
  for (const char* sql : {"COMMIT", "END", "BEGIN", "BEGIN IMMEDIATE", "ROLLBACK", "ROLLBACK TRANSACTION",
                          "INSERT INTO t VALUES (1); COMMIT"}) {
    EXPECT_TRUE(Refused("sqlite", sql)) << sql;
  }
  for (const char* sql : {"INSERT INTO t VALUES (1)", "SAVEPOINT a", "ROLLBACK TO a", "ROLLBACK TRANSACTION TO a",
                          "RELEASE a", "SELECT [commit] FROM t"}) {
    EXPECT_FALSE(Refused("sqlite", sql)) << sql;
  }
}

TEST(StatementGuardTest, OracleAndSqlServerDialects) {
  EXPECT_TRUE(Refused("oracle", "COMMIT"));
  EXPECT_TRUE(Refused("oracle", "BEGIN UPDATE t SET a = 1; COMMIT; END;"));
  EXPECT_TRUE(Refused("oracle", "CREATE TABLE t (a NUMBER)"));
  EXPECT_FALSE(Refused("oracle", "BEGIN UPDATE t SET a = 1; ROLLBACK TO SAVEPOINT s; END;"));
  EXPECT_FALSE(Refused("oracle", "UPDATE t SET a = 1"));
  EXPECT_TRUE(Refused("sqlserver", "UPDATE t SET a = 1 COMMIT"));
  EXPECT_TRUE(Refused("sqlserver", "BEGIN TRAN"));
  EXPECT_TRUE(Refused("sqlserver", "SET IMPLICIT_TRANSACTIONS ON"));
  EXPECT_FALSE(Refused("sqlserver", "SAVE TRANSACTION s"));
  EXPECT_FALSE(Refused("sqlserver", "IF 1 = 1 BEGIN UPDATE t SET a = 1 END"));
  EXPECT_FALSE(Refused("sqlserver", "SELECT [commit] FROM t"));
}

TEST(StatementGuardTest, ErrorNamesTheStatement) {
  absl::Status s = CheckBranchSql("pg1", "postgresql", "UPDATE t SET v = 1; /* x */ COMMIT AND CHAIN");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pg1"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("statement 2"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("\"COMMIT AND CHAIN\""), absl::string_view::npos) << s;
}

TEST(StatementGuardTest, SessionStateStatements) {
  for (const char* sql : {"SET search_path = x", "SET SESSION statement_timeout = 0", "SET ROLE r",
                          "SET SESSION AUTHORIZATION u", "RESET work_mem", "CREATE TEMP TABLE t (a int)",
                          "CREATE TEMPORARY TABLE t (a int)", "SELECT pg_advisory_lock(1)",
                          "SELECT pg_try_advisory_lock(1)", "SELECT set_config('a.b', 'c', false)", "LISTEN ch",
                          "PREPARE p AS SELECT 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                          "SELECT 1; SET work_mem = '1MB'"}) {
    EXPECT_TRUE(SessionStateSql("postgresql", sql)) << sql;
  }
  for (const char* sql : {"SET LOCAL work_mem = '1MB'", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                          "SELECT pg_advisory_xact_lock(1)", "UPDATE t SET v = 1", "SELECT 'SET ROLE x'"}) {
    EXPECT_FALSE(SessionStateSql("postgresql", sql)) << sql;
  }
  for (const char* sql : {"SET @x = 1", "SET NAMES latin1", "SELECT GET_LOCK('a', 1)", "USE other",
                          "SELECT @x := 1", "SELECT 1 INTO @x", "CREATE TEMPORARY TABLE t (a int)"}) {
    EXPECT_TRUE(SessionStateSql("mariadb", sql)) << sql;
  }
  EXPECT_FALSE(SessionStateSql("mariadb", "UPDATE t SET v = 1 WHERE id = ?"));
  EXPECT_TRUE(SessionStateSql("sqlite", "PRAGMA foreign_keys = ON"));
  EXPECT_TRUE(SessionStateSql("sqlite", "ATTACH 'x.db' AS x"));
}

TEST(StatementGuardTest, ParameterMarkersAreCountedOutsideLiteralsAndComments) {
  EXPECT_TRUE(CheckParameterMarkers("b", "mariadb", "SELECT ? + ?", 2).ok());
  EXPECT_TRUE(CheckParameterMarkers("b", "mariadb", "SELECT '?', `?`, \"?\" /* ? */ -- ?\n, ?", 1).ok());
  EXPECT_TRUE(CheckParameterMarkers("b", "sqlite", "SELECT 1", 0).ok());
  absl::Status few = CheckParameterMarkers("b1", "postgresql", "SELECT CAST(? AS INT) + CAST(? AS INT)", 1);
  EXPECT_EQ(few.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(few.message()), ::testing::HasSubstr("2 parameter markers (?) but 1 value was given"));
  EXPECT_EQ(CheckParameterMarkers("b", "sqlite", "SELECT ?", 3).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatementGuardTest, GuardBranchSqlRefusesAndFlagsSessionStateInOneReading) {
  bool session_state = false;
  EXPECT_TRUE(GuardBranchSql("b", "postgresql", "UPDATE t SET v = 1", &session_state).ok());
  EXPECT_FALSE(session_state);
  EXPECT_TRUE(GuardBranchSql("b", "postgresql", "SET search_path = x", &session_state).ok());
  EXPECT_TRUE(session_state);
  EXPECT_TRUE(GuardBranchSql("b", "postgresql", "SELECT 1", &session_state).ok());
  EXPECT_TRUE(session_state) << "never cleared";
  EXPECT_EQ(GuardBranchSql("b", "mariadb", "COMMIT", nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// The guard keeps what it read of each recent text: a repeated text, the
// same text on another dialect or with another number of values, and more
// texts than it keeps must each get the answer a first reading gives.
TEST(StatementGuardTest, RepeatedTextsGetTheAnswersOfAFirstReading) {
  for (int round = 0; round < 3; ++round) {
    // Refused on MariaDB (an implicit commit), allowed on PostgreSQL.
    EXPECT_TRUE(CheckBranchSql("b", "postgresql", "CREATE TABLE t (a int)").ok()) << round;
    EXPECT_TRUE(Refused("mariadb", "CREATE TABLE t (a int)")) << round;
    absl::Status s = CheckBranchSql("pg1", "postgresql", "UPDATE t SET v = 1; /* x */ COMMIT AND CHAIN");
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("statement 2 of the SQL text (\"COMMIT AND CHAIN\")"))
        << round;
    // The markers are kept, not the verdict on a number of values.
    EXPECT_TRUE(CheckParameterMarkers("b", "mariadb", "SELECT ? + ?", 2).ok()) << round;
    EXPECT_FALSE(CheckParameterMarkers("b", "mariadb", "SELECT ? + ?", 1).ok()) << round;
    EXPECT_FALSE(CheckParameterMarkers("b", "mariadb", "SELECT ? + ?", 3).ok()) << round;
    // Session state before a refused statement is flagged, as a first
    // reading flags it.
    bool session_state = false;
    EXPECT_FALSE(GuardBranchSql("b", "postgresql", "SET search_path = x; COMMIT", &session_state).ok()) << round;
    EXPECT_TRUE(session_state) << round;
    session_state = false;
    EXPECT_TRUE(GuardBranchSql("b", "postgresql", "SET search_path = x", &session_state).ok()) << round;
    EXPECT_TRUE(session_state) << round;
    // Ends with the transaction on PostgreSQL; a session variable on MariaDB.
    session_state = false;
    EXPECT_TRUE(GuardBranchSql("b", "postgresql", "SET LOCAL work_mem = '1MB'", &session_state).ok()) << round;
    EXPECT_FALSE(session_state) << round;
    EXPECT_TRUE(GuardBranchSql("b", "mariadb", "SET LOCAL work_mem = '1MB'", &session_state).ok()) << round;
    EXPECT_TRUE(session_state) << round;
  }
}

TEST(StatementGuardTest, MoreTextsThanTheGuardKeepsStayCorrect) {
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5000; ++i) {
      const std::string n = std::to_string(i);
      if (i % 3 == 0) {
        EXPECT_TRUE(Refused("postgresql", "COMMIT /* " + n + " */")) << i;
      } else if (i % 3 == 1) {
        EXPECT_FALSE(Refused("postgresql", "SELECT " + n)) << i;
      } else {
        EXPECT_TRUE(SessionStateSql("postgresql", "SET work_mem = '" + n + "kB'")) << i;
        EXPECT_EQ(CheckParameterMarkers("b", "mariadb", "SELECT ?, " + n, 1).ok(), true) << i;
      }
    }
  }
}

TEST(StatementGuardTest, SplitReadsLikeTheServer) {
  auto split = SplitStatementsForTest("postgresql", "SELECT 'a;b'; -- x;\nSELECT $q$;$q$ ;", false);
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0], (std::vector<std::string>{"SELECT", "'"}));
  EXPECT_EQ(split[1], (std::vector<std::string>{"SELECT", "'"}));
  EXPECT_EQ(SplitStatementsForTest("mariadb", "SELECT 1 -- ; x\n", false).size(), 1u);
  EXPECT_EQ(SplitStatementsForTest("mariadb", "SELECT 1--1; SELECT 2", false).size(), 2u);
}

}  // namespace
}  // namespace txcoord::participants
