// MariadbConnection against the real local MariaDB (deploy/local/start.sh,
// TXC_MARIADB_ODBC); the DSN parser without a database. Tables are
// TEMPORARY (per session), so runs in parallel do not meet.
#include "participants/mariadb/mariadb_connection.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/local_db.h"

namespace txcoord::participants::mariadb {
namespace {

using ::testing::HasSubstr;
using Kind = Value::Kind;

constexpr absl::Duration kTimeout = absl::Seconds(10);

TEST(ParseMariadbDsnTest, ReadsOdbcKeys) {
  absl::StatusOr<MariadbDsn> dsn =
      ParseMariadbDsn("b",
                      "Driver=MariaDB Unicode;Server=127.0.0.1;Port=3307;Database=txcoord;User=txcoord;Password=xyz;;"
                      "OPTION=3;READ_TIMEOUT=5;sslca=/ca.pem;SSLCert=/c.pem;SSLKEY=/k.pem;SSLVERIFY=1");
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_EQ(dsn->host, "127.0.0.1");
  EXPECT_EQ(dsn->port, 3307u);
  EXPECT_EQ(dsn->database, "txcoord");
  EXPECT_EQ(dsn->user, "txcoord");
  EXPECT_EQ(dsn->password, "xyz");
  EXPECT_EQ(dsn->ssl_ca, "/ca.pem");
  EXPECT_EQ(dsn->ssl_cert, "/c.pem");
  EXPECT_EQ(dsn->ssl_key, "/k.pem");
  EXPECT_TRUE(dsn->ssl_verify);
  EXPECT_TRUE(dsn->socket.empty());
}

TEST(ParseMariadbDsnTest, AliasesAndBracedValues) {
  absl::StatusOr<MariadbDsn> dsn = ParseMariadbDsn("b", " host = db1 ; UID=u;PWD={a;b}}c} ; DB={x};Socket=/run/s.sock");
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_EQ(dsn->host, "db1");
  EXPECT_EQ(dsn->user, "u");
  EXPECT_EQ(dsn->password, "a;b}c");
  EXPECT_EQ(dsn->database, "x");
  EXPECT_EQ(dsn->socket, "/run/s.sock");
  EXPECT_EQ(dsn->port, 0u);
  EXPECT_FALSE(dsn->ssl_verify);
}

TEST(ParseMariadbDsnTest, RejectsUnknownKey) {
  absl::StatusOr<MariadbDsn> dsn = ParseMariadbDsn("orders", "Server=h;NO_CACHE=1");
  ASSERT_FALSE(dsn.ok());
  EXPECT_EQ(dsn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dsn.status().message(), HasSubstr("bind orders"));
  EXPECT_THAT(dsn.status().message(), HasSubstr("unknown DSN key 'NO_CACHE'"));
}

TEST(ParseMariadbDsnTest, RejectsBadPortsAndSyntax) {
  for (const char* dsn : {"Port=0", "Port=65536", "Port=abc", "Port=", "Server", "Password={open", "PWD={a}b"}) {
    absl::StatusOr<MariadbDsn> parsed = ParseMariadbDsn("b", dsn);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << dsn;
  }
  EXPECT_TRUE(ParseMariadbDsn("b", "Port=65535").ok());
}

class MariadbConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string text;
    TXC_REQUIRE_DB_ENV(text, "TXC_MARIADB_ODBC");
    absl::StatusOr<MariadbDsn> dsn = ParseMariadbDsn("m", text);
    ASSERT_TRUE(dsn.ok()) << dsn.status();
    dsn_ = *dsn;
    absl::StatusOr<std::unique_ptr<MariadbConnection>> c = MariadbConnection::Open("m", dsn_, kTimeout);
    ASSERT_TRUE(c.ok()) << c.status();
    conn_ = *std::move(c);
  }

  ResultSet MustExecute(const std::string& sql, int max_rows = 0) {
    absl::StatusOr<ResultSet> r = conn_->Execute(sql, kTimeout, max_rows);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status();
    return r.ok() ? *std::move(r) : ResultSet{};
  }

  MariadbDsn dsn_;
  std::unique_ptr<MariadbConnection> conn_;
};

TEST_F(MariadbConnectionTest, SelectsTypedValues) {
  ResultSet r = MustExecute(
      "SELECT 42 AS i, CAST(-9000000000 AS SIGNED) AS big, 2.5e0 AS d, CAST(12.30 AS DECIMAL(10,2)) AS dec_v, "
      "'caf\xC3\xA9 \xF0\x9F\x98\x80' AS s, X'00FF00' AS b, DATE '2026-11-25' AS dt, "
      "CAST('13:45:00.123' AS TIME(3)) AS t, CAST('2026-11-25 13:45:00.123' AS DATETIME(3)) AS ts, NULL AS n, "
      "CAST(18446744073709551615 AS UNSIGNED) AS u");
  ASSERT_EQ(r.rows.size(), 1u);
  ASSERT_EQ(r.columns.size(), 11u);
  EXPECT_EQ(r.rows_affected, -1);
  EXPECT_FALSE(r.truncated);
  const std::vector<Value>& row = r.rows[0];
  EXPECT_EQ(row[0], Value::Int64(42));
  EXPECT_EQ(row[1], Value::Int64(-9000000000LL));
  EXPECT_EQ(row[2], Value::Double(2.5));
  EXPECT_EQ(row[3], Value::Text(Kind::kDecimal, "12.30"));
  EXPECT_EQ(row[4], Value::String("caf\xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_EQ(row[5], Value::Text(Kind::kBytes, std::string("\x00\xFF\x00", 3)));
  EXPECT_EQ(row[6], Value::Text(Kind::kDate, "2026-11-25"));
  EXPECT_EQ(row[7], Value::Text(Kind::kTime, "13:45:00.123"));
  EXPECT_EQ(row[8], Value::Text(Kind::kTimestamp, "2026-11-25T13:45:00.123"));
  EXPECT_EQ(row[9], Value::Null());
  EXPECT_EQ(row[10], Value::Text(Kind::kDecimal, "18446744073709551615"));
  EXPECT_EQ(r.columns[0].name, "i");
  EXPECT_EQ(r.columns[3].type, "DECIMAL");
  EXPECT_EQ(r.columns[6].type, "DATE");
  EXPECT_EQ(r.columns[7].type, "TIME");
  EXPECT_EQ(r.columns[8].type, "DATETIME");
  EXPECT_EQ(r.columns[10].type, "BIGINT UNSIGNED");
  for (const Column& c : r.columns) EXPECT_FALSE(c.type.empty()) << c.name;
}

TEST_F(MariadbConnectionTest, NamesColumnTypesOfTables) {
  MustExecute(
      "CREATE TEMPORARY TABLE mc_types (a BIGINT, b INT, c TINYINT, d DOUBLE, e VARCHAR(10), f TEXT, g BLOB, "
      "h TIMESTAMP(6) NULL, k VARBINARY(4))");
  MustExecute("INSERT INTO mc_types VALUES (1, 2, 3, 4.5, 'x', 'y', X'01', '2026-01-02 03:04:05.5', 'ab')");
  ResultSet r = MustExecute("SELECT * FROM mc_types");
  ASSERT_EQ(r.columns.size(), 9u);
  std::vector<std::string> types;
  for (const Column& c : r.columns) types.push_back(c.type);
  EXPECT_EQ(types, (std::vector<std::string>{"BIGINT", "INT", "TINYINT", "DOUBLE", "VARCHAR", "TEXT", "BLOB",
                                             "TIMESTAMP", "VARBINARY"}));
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0][5], Value::String("y"));
  EXPECT_EQ(r.rows[0][6], Value::Text(Kind::kBytes, "\x01"));
  EXPECT_EQ(r.rows[0][7], Value::Text(Kind::kTimestamp, "2026-01-02T03:04:05.500000"));
  EXPECT_EQ(r.rows[0][8], Value::Text(Kind::kBytes, "ab"));

  QueryOutcome as_bytes = conn_->Query("SELECT e, f FROM mc_types", kTimeout, 0, SqlErrorContext::kStatement,
                                       /*text_as_bytes=*/true);
  ASSERT_TRUE(as_bytes.status.ok()) << as_bytes.status;
  ASSERT_EQ(as_bytes.results.size(), 1u);
  EXPECT_EQ(as_bytes.results[0].result.rows[0][0], Value::Text(Kind::kBytes, "x"));
  EXPECT_EQ(as_bytes.results[0].result.rows[0][1], Value::Text(Kind::kBytes, "y"));
}

TEST_F(MariadbConnectionTest, ThreadIdIsTheSession) {
  ResultSet r = MustExecute("SELECT CONNECTION_ID()");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_GT(conn_->thread_id(), 0);
  EXPECT_EQ(r.rows[0][0], Value::Int64(conn_->thread_id()));
}

TEST_F(MariadbConnectionTest, ReturnsOneResultPerStatement) {
  MustExecute("CREATE TEMPORARY TABLE mc_multi (id INT PRIMARY KEY)");
  QueryOutcome out =
      conn_->Query("INSERT INTO mc_multi VALUES (1), (2); SELECT id FROM mc_multi ORDER BY id", kTimeout);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.failed_statement, -1);
  ASSERT_EQ(out.results.size(), 2u);
  EXPECT_EQ(out.results[0].affected_rows, 2);
  EXPECT_EQ(out.results[0].result.rows_affected, 2);
  EXPECT_TRUE(out.results[0].result.columns.empty());
  EXPECT_EQ(out.results[1].affected_rows, -1);
  EXPECT_EQ(out.results[1].result.rows_affected, -1);
  ASSERT_EQ(out.results[1].result.rows.size(), 2u);
  EXPECT_EQ(out.results[1].result.rows[1][0], Value::Int64(2));
}

TEST_F(MariadbConnectionTest, StopsAtTheFailingStatement) {
  MustExecute("CREATE TEMPORARY TABLE mc_fail (id INT PRIMARY KEY)");
  QueryOutcome out = conn_->Query(
      "INSERT INTO mc_fail VALUES (3); INSERT INTO mc_fail VALUES (3); INSERT INTO mc_fail VALUES (4)", kTimeout);
  EXPECT_FALSE(out.status.ok());
  EXPECT_THAT(out.status.message(), HasSubstr("bind m"));
  EXPECT_THAT(out.status.message(), HasSubstr("1062"));
  EXPECT_EQ(out.failed_statement, 1);
  ASSERT_EQ(out.results.size(), 1u);
  EXPECT_EQ(out.results[0].affected_rows, 1);
  EXPECT_FALSE(conn_->broken());
  // Usable afterwards, and the server ran nothing after the failure.
  EXPECT_EQ(MustExecute("SELECT 1").rows, (std::vector<std::vector<Value>>{{Value::Int64(1)}}));
  EXPECT_EQ(MustExecute("SELECT COUNT(*) FROM mc_fail WHERE id = 4").rows[0][0], Value::Int64(0));

  QueryOutcome first = conn_->Query("SELEKT 1; SELECT 2", kTimeout);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kInvalidArgument) << first.status;
  EXPECT_EQ(first.failed_statement, 0);
  EXPECT_TRUE(first.results.empty());
  EXPECT_TRUE(conn_->Run("DO 1", kTimeout).ok());
}

TEST_F(MariadbConnectionTest, TruncatesAtMaxRowsAndDrainsTheRest) {
  const std::string five = "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5";
  ResultSet two = MustExecute(five, 2);
  EXPECT_EQ(two.rows.size(), 2u);
  EXPECT_TRUE(two.truncated);
  QueryOutcome both = conn_->Query(five + "; " + five, kTimeout, 3);
  ASSERT_TRUE(both.status.ok()) << both.status;
  ASSERT_EQ(both.results.size(), 2u);
  EXPECT_EQ(both.results[1].result.rows.size(), 3u);
  EXPECT_TRUE(both.results[1].result.truncated);
  ResultSet all = MustExecute(five);
  EXPECT_EQ(all.rows.size(), 5u);
  EXPECT_FALSE(all.truncated);
}

TEST_F(MariadbConnectionTest, QuoteStringRoundTrips) {
  for (const std::string& text : {std::string("it's \\ \" ;"), std::string("nul\0here'", 9), std::string()}) {
    ResultSet r = MustExecute("SELECT " + conn_->QuoteString(text));
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(r.rows[0][0], Value::String(text));
  }
}

TEST_F(MariadbConnectionTest, KilledSessionIsBroken) {
  absl::StatusOr<std::unique_ptr<MariadbConnection>> killer = MariadbConnection::Open("m", dsn_, kTimeout);
  ASSERT_TRUE(killer.ok()) << killer.status();
  ASSERT_TRUE((*killer)->Run("KILL " + std::to_string(conn_->thread_id()), kTimeout).ok());
  QueryOutcome out = conn_->Query("SELECT 1", kTimeout);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
  EXPECT_TRUE(conn_->broken());
  EXPECT_EQ(conn_->Run("SELECT 1", kTimeout).code(), absl::StatusCode::kUnavailable);
}

TEST_F(MariadbConnectionTest, DeadlineClosesTheConnection) {
  const absl::Time start = absl::Now();
  QueryOutcome out = conn_->Query("SELECT SLEEP(5)", absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("bind m: no reply from MariaDB within 300ms"));
  EXPECT_EQ(out.failed_statement, -1);
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_TRUE(conn_->broken());
  EXPECT_EQ(conn_->Run("SELECT 1", kTimeout).code(), absl::StatusCode::kUnavailable);
  conn_.reset();  // closing an abandoned connection must not block or crash
}

TEST_F(MariadbConnectionTest, DeadlineWhileReadingRows) {
  // Rows of 20 kB fill the server's network buffer, so the first ones
  // arrive before the third row's SLEEP: the deadline hits mid-result.
  const absl::Time start = absl::Now();
  QueryOutcome out = conn_->Query("SELECT 1; SELECT seq, REPEAT('x', 20000), SLEEP(IF(seq = 3, 5, 0)) FROM seq_1_to_4",
                                  absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
  EXPECT_EQ(out.failed_statement, 1);
  EXPECT_EQ(out.results.size(), 1u);
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_TRUE(conn_->broken());
}

TEST_F(MariadbConnectionTest, WrongPasswordIsFailedPrecondition) {
  MariadbDsn wrong = dsn_;
  wrong.password = "not-the-password";
  absl::StatusOr<std::unique_ptr<MariadbConnection>> c = MariadbConnection::Open("m", wrong, kTimeout);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("bind m"));
  EXPECT_THAT(c.status().message(), HasSubstr("1045"));
}

TEST(MariadbConnectTest, UnreachablePortIsUnavailable) {
  MariadbDsn dsn;
  dsn.host = "127.0.0.1";
  dsn.port = 1;
  dsn.user = "nobody";
  absl::StatusOr<std::unique_ptr<MariadbConnection>> c = MariadbConnection::Open("far", dsn, absl::Seconds(5));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("bind far"));
}

TEST(MariadbConnectTest, SilentServerHitsTheConnectDeadline) {
  // A listening socket that never accepts: the TCP connect succeeds, the
  // server's greeting never comes.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  MariadbDsn dsn;
  dsn.host = "127.0.0.1";
  dsn.port = ntohs(addr.sin_port);
  dsn.user = "nobody";
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<MariadbConnection>> c =
      MariadbConnection::Open("silent", dsn, absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  close(listener);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("bind silent"));
  EXPECT_LT(took, absl::Seconds(1));
}

}  // namespace
}  // namespace txcoord::participants::mariadb
