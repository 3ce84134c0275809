// Checks the tests make directly on the databases, beside txcoord.
#ifndef TXCOORD_TESTS_TESTING_DB_CHECKS_H_
#define TXCOORD_TESTS_TESTING_DB_CHECKS_H_

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/participants/raw_clients.h"

namespace txcoord::testing {

// The first column of the first row of `sql` ("" for none or NULL).
inline std::string PgScalar(const std::string& uri, const std::string& sql) {
  pqxx::connection c(uri);
  pqxx::nontransaction n(c);
  pqxx::result r = n.exec(sql);
  return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
}

// Decision rows (fence tombstones aside) in a PostgreSQL database's
// txcoord_decisions table: of one txn id, or of a whole node when `txn` is
// "<node>." (a txn id never ends with a dot).
inline std::string PgDecisionRows(const std::string& uri, const std::string& txn) {
  const std::string which = !txn.empty() && txn.back() == '.'
                                ? absl::StrCat("left(txn_id, ", txn.size(), ") = '", txn, "'")
                                : absl::StrCat("txn_id = '", txn, "'");
  return PgScalar(uri, absl::StrCat("SELECT count(*) FROM txcoord_decisions WHERE ", which,
                                    " AND payload IS DISTINCT FROM 'ROLLED_BACK'"));
}

// Prepared branches of node `node` left on the PostgreSQL databases
// `pg_uris` (pg_prepared_xacts) and the MariaDB server of `maria_dsn`
// (XA RECOVER, through a procedure: Connector/ODBC 3.1.15 crashes on it).
inline int PreparedBranchesOfNode(const std::string& node, const std::vector<std::string>& pg_uris,
                                  const std::string& maria_dsn) {
  int n = 0;
  for (const std::string& uri : pg_uris) {
    n += std::stoi(PgScalar(uri, absl::StrCat("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'txc1_",
                                              node, ".%'")));
  }
  RawOdbc my(maria_dsn);
  my.Query("CREATE PROCEDURE IF NOT EXISTS txcoord_test_xa_recover() XA RECOVER");
  for (const std::string& data : my.Query("CALL txcoord_test_xa_recover()", 4)) {
    if (data.rfind(node + ".", 0) == 0) ++n;  // data = gtrid + bqual; gtrid = "<node>.<epoch>.<seq>"
  }
  return n;
}

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_DB_CHECKS_H_
