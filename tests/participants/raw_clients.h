// Raw database access for the participant tests: what a test does "by hand"
// next to the participant under test (foreign branches, killing sessions).
#ifndef TXCOORD_TESTS_PARTICIPANTS_RAW_CLIENTS_H_
#define TXCOORD_TESTS_PARTICIPANTS_RAW_CLIENTS_H_

#include <sql.h>
#include <sqlext.h>

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace txcoord::testing {

// Runs `sql` on a fresh libpqxx connection outside any transaction.
inline void RawPostgres(const std::string& uri, const std::string& sql) {
  pqxx::connection c(uri);
  pqxx::nontransaction n(c);
  n.exec(sql);
}

// A minimal ODBC connection (autocommit on).
class RawOdbc {
 public:
  explicit RawOdbc(const std::string& dsn) {
    SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env_);
    SQLSetEnvAttr(env_, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    SQLAllocHandle(SQL_HANDLE_DBC, env_, &dbc_);
    SQLRETURN rc = SQLDriverConnect(dbc_, nullptr, (SQLCHAR*)dsn.c_str(), SQL_NTS, nullptr, 0,
                                    nullptr, SQL_DRIVER_NOPROMPT);
    ok_ = SQL_SUCCEEDED(rc);
    if (!ok_) error_ = Diag(SQL_HANDLE_DBC, dbc_);
  }
  ~RawOdbc() {
    if (ok_) SQLDisconnect(dbc_);
    SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
    SQLFreeHandle(SQL_HANDLE_ENV, env_);
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  // Runs `sql`; returns column `col` (1-based) of every row ("" for NULL).
  // An error is returned in *err when given, else it fails the test.
  std::vector<std::string> Query(const std::string& sql, int col = 1, std::string* err = nullptr) {
    std::vector<std::string> out;
    SQLHSTMT st;
    SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &st);
    SQLRETURN rc = SQLExecDirect(st, (SQLCHAR*)sql.c_str(), SQL_NTS);
    if (!SQL_SUCCEEDED(rc) && rc != SQL_NO_DATA) {
      std::string e = Diag(SQL_HANDLE_STMT, st);
      if (err) {
        *err = e;
      } else {
        ADD_FAILURE() << sql << ": " << e;
      }
    } else {
      do {
        SQLSMALLINT cols = 0;
        SQLNumResultCols(st, &cols);
        while (cols > 0 && SQL_SUCCEEDED(SQLFetch(st))) {
          char buf[1024];
          SQLLEN len = 0;
          SQLGetData(st, col, SQL_C_CHAR, buf, sizeof buf, &len);
          out.emplace_back(len == SQL_NULL_DATA ? "" : std::string(buf));
        }
      } while (SQL_SUCCEEDED(SQLMoreResults(st)));
    }
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    return out;
  }

 private:
  static std::string Diag(SQLSMALLINT type, SQLHANDLE h) {
    SQLCHAR state[6] = {0}, msg[512] = {0};
    SQLINTEGER native = 0;
    SQLSMALLINT len = 0;
    SQLGetDiagRec(type, h, 1, state, &native, msg, sizeof msg, &len);
    return std::string((char*)state) + " " + std::string((char*)msg);
  }
  SQLHENV env_ = SQL_NULL_HENV;
  SQLHDBC dbc_ = SQL_NULL_HDBC;
  bool ok_ = false;
  std::string error_;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_PARTICIPANTS_RAW_CLIENTS_H_
