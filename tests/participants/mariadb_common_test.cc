// What both MariaDB drivers share, without a database: parameter inlining
// (the native driver joins statements into one multi-statement string, so
// a statement that is really several, or whose end is unclear, must be
// told apart), and the session limits of a branch.
#include "participants/mariadb_common.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace txcoord::participants {
namespace {

std::optional<MysqlInlined> Plain(const std::string& sql, const std::vector<Value>& params = {}) {
  return InlineMysqlParameters(sql, params, MysqlPlainLiteral);
}

TEST(InlineMysqlParametersTest, ReplacesMarkersOutsideQuotesAndComments) {
  auto r = Plain("UPDATE t SET a = ? WHERE b = '?' AND c = ? -- ?\n AND d = ? /* ? */ # ?",
                 {Value::Int64(-1), Value::Bool(true), Value::Null()});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sql, "UPDATE t SET a = (-1) WHERE b = '?' AND c = TRUE -- ?\n AND d = NULL /* ? */ # ?");
  EXPECT_FALSE(r->several_statements);
}

TEST(InlineMysqlParametersTest, TellsSeveralStatementsFromATrailingSemicolon) {
  auto one = Plain("INSERT INTO t VALUES (1);  ");
  ASSERT_TRUE(one.has_value());
  EXPECT_FALSE(one->several_statements);
  EXPECT_EQ(one->sql.find(';'), std::string::npos) << one->sql;
  auto commented = Plain("SELECT 1; -- the end\n /* really */");
  ASSERT_TRUE(commented.has_value());
  EXPECT_FALSE(commented->several_statements);
  auto quoted = Plain("SELECT 'a;b', `c;d`, \"e;f\"");
  ASSERT_TRUE(quoted.has_value());
  EXPECT_FALSE(quoted->several_statements);
  auto two = Plain("UPDATE t SET a = 1; XA END 'x'");
  ASSERT_TRUE(two.has_value());
  EXPECT_TRUE(two->several_statements);
  auto doubled = Plain("SELECT 1;; ");
  ASSERT_TRUE(doubled.has_value());
  EXPECT_FALSE(doubled->several_statements);
  EXPECT_EQ(doubled->sql.find(';'), std::string::npos) << "every trailing ';' dropped: " << doubled->sql;
  auto inner = Plain("SELECT 1;; SELECT 2");
  ASSERT_TRUE(inner.has_value());
  EXPECT_TRUE(inner->several_statements);
}

TEST(InlineMysqlParametersTest, RefusesWhatItCannotReadWithoutDoubt) {
  EXPECT_FALSE(Plain("SELECT 'a\\'b', ?", {Value::Int64(1)}).has_value()) << "backslash inside quotes";
  EXPECT_FALSE(Plain("SELECT 1 /*! , ? */", {Value::Int64(1)}).has_value()) << "executable comment";
  EXPECT_FALSE(Plain("SELECT 1 /* unterminated").has_value());
  EXPECT_FALSE(Plain("SELECT 'unterminated").has_value());
  EXPECT_FALSE(Plain("SELECT ?1", {Value::Int64(1)}).has_value()) << "marker glued to a word";
  EXPECT_FALSE(Plain("SELECT ?, ?", {Value::Int64(1)}).has_value()) << "too few values";
  EXPECT_FALSE(Plain("SELECT ?", {Value::String("x")}).has_value()) << "the plain literal refuses strings";
  EXPECT_FALSE(Plain(std::string("SELECT 1\0", 9)).has_value()) << "NUL";
}

TEST(InlineMysqlParametersTest, UsesTheGivenLiteral) {
  auto strings_only = [](const Value& v) -> std::optional<std::string> {
    if (v.kind == Value::Kind::kString) return "'it''s'";
    return std::nullopt;
  };
  auto r = InlineMysqlParameters("SELECT ? AS a", {Value::String("it's")}, strings_only);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sql, "SELECT 'it''s' AS a");
  EXPECT_FALSE(InlineMysqlParameters("SELECT ?, ?", {Value::String("it's"), Value::Double(0.5)}, strings_only))
      << "a value the literal refuses refuses the statement";
}

TEST(MariadbSessionLimitsTest, RoundsLongLimitsDownToSeconds) {
  EXPECT_EQ(MariadbTimeoutMillis(absl::ZeroDuration()), 0);
  EXPECT_EQ(MariadbTimeoutMillis(absl::Microseconds(10)), 1);
  EXPECT_EQ(MariadbTimeoutMillis(absl::Milliseconds(1500)), 1500);
  EXPECT_EQ(MariadbTimeoutMillis(absl::Milliseconds(29987)), 29000) << "never above what is left";
  // Branches a few milliseconds apart ask for the same limits: not set again.
  const int64_t first = MariadbTimeoutMillis(absl::Milliseconds(29990));
  const int64_t next = MariadbTimeoutMillis(absl::Milliseconds(29984));
  EXPECT_TRUE(MariadbSessionLimitsCloseEnough(first, next));
  EXPECT_FALSE(MariadbSessionLimitsCloseEnough(30000, 29000)) << "longer than the branch allows";
  EXPECT_FALSE(MariadbSessionLimitsCloseEnough(-2, 29000)) << "never set";
  EXPECT_EQ(MariadbSessionLimitsSql(29000),
            "SET SESSION innodb_lock_wait_timeout = 29, max_statement_time = 29.000");
  EXPECT_EQ(MariadbSessionLimitsSql(1500), "SET SESSION innodb_lock_wait_timeout = 2, max_statement_time = 1.500");
}

TEST(MysqlChangesDataTest, KnowsTheVerbsThatWrite) {
  EXPECT_TRUE(MysqlChangesData("  update t set a = 1"));
  EXPECT_TRUE(MysqlChangesData("INSERT INTO t VALUES (1)"));
  EXPECT_TRUE(MysqlChangesData("REPLACE INTO t VALUES (1)"));
  EXPECT_TRUE(MysqlChangesData("DELETE FROM t"));
  EXPECT_FALSE(MysqlChangesData("SELECT * FROM t FOR UPDATE"));
  EXPECT_FALSE(MysqlChangesData("updated"));
}

}  // namespace
}  // namespace txcoord::participants
