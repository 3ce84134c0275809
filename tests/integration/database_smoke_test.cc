// The local databases started by deploy/local/start.sh support what txcoord
// relies on: PostgreSQL's PREPARE TRANSACTION / COMMIT PREPARED from another
// connection, and MariaDB's XA PREPARE / XA COMMIT from another connection
// after the preparing one closed. Uses the client libraries directly.
#include <sql.h>
#include <sqlext.h>

#include <pqxx/pqxx>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/local_db.h"

namespace {

using txcoord::testing::RawOdbc;

std::string UniqueSuffix() {
  std::random_device rd;
  return std::to_string(rd() % 1000000000u);
}

TEST(DatabaseSmokeTest, PostgresPreparedTransactionCommitsFromAnotherConnection) {
  std::string uri;
  TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
  const std::string table = "smoke_pg_" + UniqueSuffix();
  const std::string gid = "txc_smoke_" + UniqueSuffix();
  {
    pqxx::connection c(uri);
    pqxx::nontransaction n(c);
    n.exec("CREATE TABLE " + table + " (id int primary key, v text)");
  }
  {
    pqxx::connection c(uri);
    pqxx::nontransaction n(c);
    n.exec("BEGIN");
    n.exec("INSERT INTO " + table + " VALUES (1, 'prepared')");
    n.exec("PREPARE TRANSACTION " + n.quote(gid));
  }  // the preparing connection closes here
  pqxx::connection c(uri);
  pqxx::nontransaction n(c);
  auto listed = n.exec("SELECT count(*) FROM pg_prepared_xacts WHERE gid = " + n.quote(gid));
  EXPECT_EQ(listed[0][0].as<int>(), 1);
  EXPECT_EQ(n.exec("SELECT count(*) FROM " + table)[0][0].as<int>(), 0)
      << "a prepared transaction's rows must not be visible before COMMIT PREPARED";
  n.exec("COMMIT PREPARED " + n.quote(gid));
  EXPECT_EQ(n.exec("SELECT v FROM " + table + " WHERE id = 1")[0][0].as<std::string>(),
            "prepared");
  EXPECT_EQ(n.exec("SELECT count(*) FROM pg_prepared_xacts WHERE gid = " + n.quote(gid))[0][0]
                .as<int>(),
            0);
  n.exec("DROP TABLE " + table);
}

TEST(DatabaseSmokeTest, MariadbXaPrepareSurvivesDisconnectAndCommitsFromAnotherConnection) {
  std::string dsn;
  TXC_REQUIRE_DB_ENV(dsn, "TXC_MARIADB_ODBC");
  const std::string table = "smoke_my_" + UniqueSuffix();
  const std::string gtrid = "txc_smoke_" + UniqueSuffix();
  {
    RawOdbc c(dsn);
    ASSERT_TRUE(c.ok()) << c.error();
    c.Query("CREATE TABLE " + table + " (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB");
    c.Query("XA START '" + gtrid + "'");
    c.Query("INSERT INTO " + table + " VALUES (1, 'prepared')");
    c.Query("XA END '" + gtrid + "'");
    c.Query("XA PREPARE '" + gtrid + "'");
  }  // the preparing connection closes; the branch must survive
  RawOdbc c(dsn);
  ASSERT_TRUE(c.ok()) << c.error();
  // MariaDB Connector/ODBC 3.1.15 crashes on a plain "XA RECOVER" (seen on
  // Debian 12); the same statement inside a procedure returns its rows:
  // formatID, gtrid_length, bqual_length, data (column 4).
  c.Query("CREATE PROCEDURE IF NOT EXISTS txcoord_smoke_xa_recover() XA RECOVER");
  auto recovered = c.Query("CALL txcoord_smoke_xa_recover()", 4);
  EXPECT_NE(std::find(recovered.begin(), recovered.end(), gtrid), recovered.end())
      << "XA RECOVER does not list the prepared branch " << gtrid;
  c.Query("XA COMMIT '" + gtrid + "'");
  EXPECT_EQ(c.Query("SELECT v FROM " + table + " WHERE id = 1"),
            std::vector<std::string>{"prepared"});
  recovered = c.Query("CALL txcoord_smoke_xa_recover()", 4);
  EXPECT_EQ(std::find(recovered.begin(), recovered.end(), gtrid), recovered.end());
  c.Query("DROP TABLE " + table);
}

}  // namespace
