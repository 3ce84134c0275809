// One MariaDB/MySQL connection on MariaDB Connector/C's non-blocking API
// (mysql_real_connect_start / mysql_real_query_start / mysql_store_result_start
// / mysql_next_result_start and their _cont), text protocol only: no
// server-side prepared statements. Each call sends its SQL and waits for the
// socket with poll() up to the call's deadline; the same start/_cont calls
// are what an event loop drives without a waiting thread.
//
// A query string may hold several statements (CLIENT_MULTI_STATEMENTS):
// Query() returns one StatementResult per statement the server ran, in
// order, and stops at the first failing statement (the server runs nothing
// after it).
//
// DSN: "key=value;…" with the keys of MariaDB Connector/ODBC, so that a
// bind switches between the two drivers by its `driver:` alone
// (case-insensitive): Server (or Host), Port, Socket, Database (or DB),
// User (or UID), Password (or PWD), SSLCA, SSLCERT, SSLKEY, SSLVERIFY (1:
// verify the server's certificate and name). Driver=, Option= and the
// ODBC timeout keys are accepted and ignored (the timeouts come from
// `io_timeout`). Unknown keys are INVALID_ARGUMENT. Values may be wrapped
// in {…} as in ODBC.
//
// Errors: "bind <name>: SQLSTATE <s> (native <n>): <message>", mapped by
// MariadbStatus (participants/mariadb_common.h). A lost connection, a call
// that got no reply before its deadline (the connection is closed then),
// or any error after which the client library says the connection is gone
// marks the connection broken().
//
// Thread safety: one thread at a time; thread_id() may be read from any
// thread.
#ifndef TXCOORD_PARTICIPANTS_MARIADB_MARIADB_CONNECTION_H_
#define TXCOORD_PARTICIPANTS_MARIADB_MARIADB_CONNECTION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/participant.h"
#include "participants/sql_common.h"

typedef struct st_mysql MYSQL;

namespace txcoord::participants::mariadb {

// Parsed connection settings.
struct MariadbDsn {
  std::string host = "localhost";
  unsigned int port = 0;  // 0: the library's default (3306)
  std::string socket;
  std::string database;
  std::string user;
  std::string password;
  std::string ssl_ca, ssl_cert, ssl_key;
  bool ssl_verify = false;
};

// INVALID_ARGUMENT naming the bind and the offending key.
absl::StatusOr<MariadbDsn> ParseMariadbDsn(absl::string_view bind, absl::string_view dsn);

// One statement's outcome within a Query().
struct StatementResult {
  // Rows (up to max_rows; `truncated` when more came) for a statement that
  // returned a result set; columns empty and rows_affected set otherwise.
  ResultSet result;
  // mysql_affected_rows() for statements without a result set; -1 else.
  int64_t affected_rows = -1;
};

struct QueryOutcome {
  // OK when every statement of the string ran. Otherwise the first
  // failure; `results` then holds the statements that ran before it.
  absl::Status status;
  // Index (0-based, in the string) of the failed statement: results.size()
  // when a statement failed; -1 when the status is OK or nothing is known
  // (the connection broke or the deadline passed before any reply).
  int failed_statement = -1;
  std::vector<StatementResult> results;
};

class MariadbConnection {
 public:
  // Connects (non-blocking handshake bounded by `io_timeout`; zero or
  // infinite: no bound), with CLIENT_MULTI_STATEMENTS, utf8mb4, autocommit
  // on. A refused login is FAILED_PRECONDITION, an unreachable server
  // UNAVAILABLE, both naming the bind.
  static absl::StatusOr<std::unique_ptr<MariadbConnection>> Open(const std::string& bind, const MariadbDsn& dsn,
                                                                 absl::Duration io_timeout);
  ~MariadbConnection();
  MariadbConnection(const MariadbConnection&) = delete;
  MariadbConnection& operator=(const MariadbConnection&) = delete;

  // Sends `sql` (one or more statements) and reads every result. Each
  // result set keeps at most `max_rows` rows (0: all). Waits at most
  // `timeout` for the whole exchange (zero or infinite: no bound); past it
  // the connection is closed and the status is UNAVAILABLE ("no reply
  // within …"). `context` selects the error mapping (NOT_FOUND for an
  // unknown xid only in kFinishPrepared). Character columns of the binary
  // character set come back as kBytes; with `text_as_bytes` every
  // character column does (XA RECOVER's data column).
  QueryOutcome Query(absl::string_view sql, absl::Duration timeout, int max_rows = 0,
                     SqlErrorContext context = SqlErrorContext::kStatement, bool text_as_bytes = false);
  // Query() in two halves, so that one thread can have calls on several
  // connections in flight: StartQuery sends `sql` (waiting only while the
  // socket cannot take it) and returns without waiting for the reply;
  // FinishQuery waits for and reads it. `timeout` counts from StartQuery.
  // REQUIRES: FinishQuery exactly once after each StartQuery, before any
  // other call on this connection.
  void StartQuery(absl::string_view sql, absl::Duration timeout);
  QueryOutcome FinishQuery(int max_rows = 0, SqlErrorContext context = SqlErrorContext::kStatement,
                           bool text_as_bytes = false);
  // Query() of a single statement: its result (of several statements: the
  // last one's), or the error.
  absl::StatusOr<ResultSet> Execute(absl::string_view sql, absl::Duration timeout, int max_rows = 0,
                                    SqlErrorContext context = SqlErrorContext::kStatement);
  // Execute() for statements whose result does not matter.
  absl::Status Run(absl::string_view sql, absl::Duration timeout,
                   SqlErrorContext context = SqlErrorContext::kStatement);

  // A quoted string literal for this connection's character set
  // (mysql_real_escape_string): 'it''s' style escaping done by the library.
  std::string QuoteString(absl::string_view text) const;

  // False when the idle connection was already closed by the server
  // (restart, killed session): its goodbye is waiting in the socket. No
  // round trip; a connection lost silently (network) is not caught. Marks
  // the connection broken when false.
  bool LooksAlive();

  // The server's id of this session (CONNECTION_ID()), for KILL QUERY.
  int64_t thread_id() const { return thread_id_.load(std::memory_order_relaxed); }
  // False once the session is known to be unusable.
  bool broken() const { return broken_; }
  void MarkBroken() { broken_ = true; }
  const std::string& bind() const { return bind_; }

  // Per-connection memos for the participant (see mariadb_participant.cc).
  int64_t session_lock_timeout_ms = -2;  // the session lock timeout last set; -2: never
  int64_t write_counter = -1;            // Handler_* sum at the last branch end; -1/-2 unknown
  bool changed_rows = false;             // a statement of the current branch changed rows

 private:
  explicit MariadbConnection(std::string bind) : bind_(std::move(bind)) {}
  // Waits until the socket is ready for `status` (MYSQL_WAIT_* bits) or
  // `deadline` passes; returns the ready bits, MYSQL_WAIT_TIMEOUT when the
  // library's own timeout (asked for with that bit) passed first, or 0
  // after the deadline.
  int Wait(int status, absl::Time deadline);
  // The status of the handle's last error; marks the connection broken
  // when the session is gone.
  absl::Status Fail(SqlErrorContext context);
  // Marks the connection broken, shuts its socket down and closes the
  // handle (mysql_ becomes null) without waiting for the server, also in
  // the middle of a suspended non-blocking call.
  void Abandon();

  const std::string bind_;
  MYSQL* mysql_ = nullptr;
  // The call StartQuery began: its text (kept until sent), the library's
  // wait status (0: the query call is done), its result, deadline and
  // timeout; `started_ok_` false when it could not start (broken).
  std::string pending_sql_;
  int pending_status_ = 0;
  int pending_ret_ = 0;
  absl::Time pending_deadline_;
  absl::Duration pending_timeout_;
  bool started_ok_ = false;
  bool broken_ = false;
  std::atomic<int64_t> thread_id_{0};
};

}  // namespace txcoord::participants::mariadb

#endif  // TXCOORD_PARTICIPANTS_MARIADB_MARIADB_CONNECTION_H_
