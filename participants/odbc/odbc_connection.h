// One ODBC connection (unixODBC): connect, run a statement with typed
// parameters and read its rows, end a transaction, cancel.
//
// Text crosses the driver as UTF-16 (SQLExecDirectW, SQL_C_WCHAR) and is
// UTF-8 everywhere else, so that non-ASCII text survives whatever the
// process locale is. Long values are read with SQLGetData in a loop.
//
// Errors: every failure is turned into a Status by the ErrorMapper given at
// Open() (the dialect's: native codes differ per DBMS). A failure mapped to
// UNAVAILABLE, or after which the driver says the connection is dead
// (SQL_ATTR_CONNECTION_DEAD), marks the connection broken().
//
// Thread safety: one thread at a time, except Cancel(), which may be called
// from any thread while a statement runs.
//
// Called on a fiber, every call that waits for the driver (Open, the
// statements, the transaction's end, the destructor's disconnect) runs on
// a thread of the blocking pool while the fiber parks (util/blocking.h):
// the driver blocks that thread, not the fiber's event loop. One call at a
// time per connection, so the pool's threads stay within the connections.
// Cancel() runs in place: it only asks the driver to stop a statement.
#ifndef TXCOORD_PARTICIPANTS_ODBC_ODBC_CONNECTION_H_
#define TXCOORD_PARTICIPANTS_ODBC_ODBC_CONNECTION_H_

#include <sql.h>
#include <sqlext.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "participants/participant.h"
#include "participants/sql_common.h"

namespace txcoord::participants::odbc {

// The first diagnostic record of a failed call.
struct Diagnostic {
  std::string sqlstate;  // "" when the driver gave none
  int native_error = 0;
  std::string message;   // all records, "; "-separated
};

using ErrorMapper =
    std::function<absl::Status(const Diagnostic&, SqlErrorContext, bool connection_dead)>;

struct ExecOptions {
  int max_rows = 0;                  // 0: no limit
  bool text_as_bytes = false;        // read character columns as raw bytes
  SqlErrorContext context = SqlErrorContext::kStatement;
};

class OdbcConnection {
 public:
  // Connects with SQLDriverConnect(dsn). Errors go through `mapper` (a
  // failed connect whose SQLSTATE is not class 28/42 is UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<OdbcConnection>> Open(const std::string& bind,
                                                              const std::string& dsn,
                                                              ErrorMapper mapper);
  ~OdbcConnection();
  OdbcConnection(const OdbcConnection&) = delete;
  OdbcConnection& operator=(const OdbcConnection&) = delete;

  // SQLGetInfo(SQL_DBMS_NAME), e.g. "MariaDB", "PostgreSQL", "SQLite".
  absl::StatusOr<std::string> DbmsName();

  // Runs one statement (with `params` bound to its '?' markers in order) and
  // returns the first result set; further result sets are read and dropped.
  absl::StatusOr<ResultSet> Execute(absl::string_view sql, const std::vector<Value>& params,
                                    const ExecOptions& options = {});
  // Execute() for statements whose result does not matter.
  absl::Status Run(absl::string_view sql, SqlErrorContext context = SqlErrorContext::kStatement);

  absl::Status SetAutocommit(bool on);
  // SQLEndTran(SQL_COMMIT / SQL_ROLLBACK).
  absl::Status EndTransaction(bool commit);

  // SQLCancel on the running statement, if any. Thread-safe.
  void Cancel();

  bool broken() const { return broken_; }
  void MarkBroken() { broken_ = true; }
  const std::string& bind() const { return bind_; }

  // Per-connection memos for dialects.
  int64_t session_lock_timeout_ms = -2;  // the session lock timeout last set; -2: never
  // The server's id of this session (MariaDB CONNECTION_ID(), PostgreSQL
  // pg_backend_pid()), read by OnConnect for Dialect::CancelSql; 0: none.
  int64_t server_session_id = 0;
  // MariaDB: Handler_write+update+delete at the end of the last branch;
  // -1: unknown (read at the next Begin); -2: unknown after a branch that
  // skipped the probe (read again only at the next read-only-looking Prepare).
  int64_t write_counter = -1;
  // A statement of the current branch reported changed rows (a DML with
  // rows_affected > 0): it wrote, no probe needed. Reset at Begin.
  bool changed_rows = false;
  // Bind kTime parameters as text (SQL_VARCHAR) instead of SQL_TYPE_TIME,
  // whose C form has no fractional seconds (MariaDB Connector/ODBC refuses
  // "13:45:00.123" with 22008).
  bool time_as_text = false;

 private:
  OdbcConnection(std::string bind, ErrorMapper mapper) : bind_(std::move(bind)), mapper_(std::move(mapper)) {}
  void Close();  // the disconnect
  absl::Status Fail(SQLSMALLINT handle_type, SQLHANDLE handle, SqlErrorContext context);
  bool ConnectionDead();

  const std::string bind_;
  const ErrorMapper mapper_;
  SQLHDBC dbc_ = SQL_NULL_HDBC;
  bool connected_ = false;
  bool broken_ = false;

  absl::Mutex cancel_mu_;
  SQLHSTMT running_ ABSL_GUARDED_BY(cancel_mu_) = SQL_NULL_HSTMT;
};

// UTF-8 ↔ UTF-16 (SQLWCHAR). Invalid UTF-8 bytes become U+FFFD.
std::basic_string<SQLWCHAR> Utf8ToUtf16(absl::string_view utf8);
std::string Utf16ToUtf8(const SQLWCHAR* data, size_t length);

}  // namespace txcoord::participants::odbc

#endif  // TXCOORD_PARTICIPANTS_ODBC_ODBC_CONNECTION_H_
