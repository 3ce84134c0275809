// What differs between databases behind ODBC: how a branch begins, prepares
// and ends, how prepared branches are finished and listed, how errors map.
//
//   dialect     SQL_DBMS_NAME           2PC                       tested here
//   mariadb     MariaDB, MySQL          XA START/END/PREPARE/…    yes (MariaDB 10.11, Connector/ODBC 3.1.15)
//   postgresql  PostgreSQL              PREPARE TRANSACTION       yes (psqlODBC)
//   oracle      Oracle                  DBMS_XA (PL/SQL)          NO: written from Oracle's documentation
//   sqlserver   Microsoft SQL Server    none: last resource       NO: written from Microsoft's documentation
//   sqlite      SQLite                  none: last resource       yes (sqliteodbc)
//
// Dialects are stateless apart from one-time set-up memos; they are shared
// by all connections of a bind and are thread-safe.
#ifndef TXCOORD_PARTICIPANTS_ODBC_ODBC_DIALECT_H_
#define TXCOORD_PARTICIPANTS_ODBC_ODBC_DIALECT_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/odbc/odbc_connection.h"
#include "participants/participant.h"

namespace txcoord::participants::odbc {

class Dialect {
 public:
  virtual ~Dialect() = default;

  // Capabilities::dialect: "mariadb", "postgresql", "oracle", "sqlserver", "sqlite".
  virtual const char* name() const = 0;
  virtual bool two_phase() const = 0;

  // Maps a driver diagnostic (default: sql_common.h's SQLSTATE mapping; a
  // dead connection is UNAVAILABLE).
  virtual absl::Status MapError(absl::string_view bind, const Diagnostic& d,
                                SqlErrorContext context, bool connection_dead) const;

  // The connection string the pool connects with (default: as configured),
  // given the bind's io_timeout (BindOptions) for drivers that can apply it.
  virtual std::string AdjustDsn(const std::string& dsn, absl::Duration io_timeout) const {
    (void)io_timeout;
    return dsn;
  }

  // A trivial query for Participant::CheckHealth.
  virtual std::string HealthCheckSql() const { return "SELECT 1"; }

  // Once per new pooled connection, before its first use.
  virtual absl::Status OnConnect(OdbcConnection& c) const { (void)c; return absl::OkStatus(); }

  // Starts the local transaction / XA branch. lock_timeout 0: no limit.
  virtual absl::Status Begin(OdbcConnection& c, const Xid& xid,
                             absl::Duration lock_timeout) const = 0;
  // Phase 1 (two_phase() only). On error the caller calls Rollback().
  // REQUIRES: c.write_counter is the value before Begin or older (MariaDB).
  virtual absl::StatusOr<Vote> Prepare(OdbcConnection& c, const Xid& xid) const;
  virtual absl::Status CommitOnePhase(OdbcConnection& c, const Xid& xid) const = 0;
  // Ends an active (unprepared) branch; best effort: an error makes the
  // caller close the connection, which rolls the branch back.
  virtual absl::Status Rollback(OdbcConnection& c, const Xid& xid) const = 0;

  // The statement that cancels what the server session `session_id`
  // (OdbcConnection::server_session_id, set by OnConnect) is running,
  // sent by Branch::Cancel from a thread of its own on a new connection;
  // "" (the default): SQLCancel on the caller's thread instead. Used where
  // the driver's SQLCancel opens a connection of its own without any time
  // limit (MariaDB Connector/ODBC, psqlODBC): a server that accepts
  // connections but does not answer would hold the canceller forever.
  virtual std::string CancelSql(int64_t session_id) const {
    (void)session_id;
    return "";
  }
  // The statement that ends server session `session_id` (MariaDB KILL,
  // PostgreSQL pg_terminate_backend): ClaimNode ends its own previous claim
  // session with it when a partition left that session holding the claim.
  // "" (the default, and for session id 0): not done.
  virtual std::string EndSessionSql(int64_t session_id) const {
    (void)session_id;
    return "";
  }

  // True when the preparing connection stays attached to its prepared
  // branch (MariaDB: a session can start no other XA branch until it ends
  // this one or disconnects, and no other session can finish it meanwhile).
  // The participant then keeps the connection for phase 2 (XA COMMIT on it,
  // then back to the pool) and closes it if phase 2 does not come from this
  // process within seconds.
  // When such a connection is closed, the server detaches the branch from the session asynchronously:
  // an XA COMMIT arriving first fails with XAER_NOTA although XA RECOVER
  // already lists the branch (seen under load, about 1 in 150 prepares), so
  // the MariaDB dialect's CommitPrepared/RollbackPrepared retry XAER_NOTA
  // while XA RECOVER lists the xid.
  virtual bool close_after_prepare() const { return false; }

  // Phase 2 from any connection; NOT_FOUND when no such prepared branch.
  virtual absl::Status CommitPrepared(OdbcConnection& c, const Xid& xid) const;
  virtual absl::Status RollbackPrepared(OdbcConnection& c, const Xid& xid) const;
  // This node's prepared branches (node_id already validated); every
  // prepared branch, whoever made it, when node_id is empty.
  virtual absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(
      OdbcConnection& c, absl::string_view node_id) const;

  // The decisions table of the logging last resource. If
  // decisions_ddl_in_transaction(), EnsureDecisionsTable runs on the
  // branch's connection inside its transaction; otherwise (MariaDB and
  // Oracle, where DDL commits or is refused inside XA) on a separate
  // connection in autocommit mode.
  virtual bool decisions_ddl_in_transaction() const = 0;
  virtual absl::Status EnsureDecisionsTable(OdbcConnection& c) const = 0;
  // One row, one column: non-zero / true when the table exists.
  virtual std::string DecisionsTableExistsSql() const = 0;

  // Participant::ClaimNode: one row whose first column is non-zero / true
  // when the session took the node's lock (it holds it until it ends), and
  // a query naming the holder otherwise. Empty: this backend is not
  // guarded (SQLite; Oracle and SQL Server are not written).
  virtual std::string ClaimNodeSql(absl::string_view /*node_id*/, absl::string_view /*bind*/) const {
    return "";
  }
  virtual std::string NodeClaimHolderSql(absl::string_view /*node_id*/, absl::string_view /*bind*/) const {
    return "";
  }
  virtual std::string node_claim_kind() const { return ""; }

  // A statement's parameters written into its text, when the dialect can do
  // so exactly; nullopt: bind them (the default). MariaDB: see
  // MysqlInlinedSql.
  virtual std::optional<std::string> InlineParameters(absl::string_view /*sql*/,
                                                      const std::vector<Value>& /*params*/) const {
    return std::nullopt;
  }
};

// MariaDB/MySQL: `sql` with each `?` parameter marker replaced by its value,
// when every value is NULL, a boolean or a 64-bit integer (written NULL,
// TRUE/FALSE, 42 or (-42)) and the text lexes without doubt: quoted strings
// and identifiers ('…', "…", `…`, quotes doubled inside) and comments (#,
// "-- ", /* */) are skipped; a backslash inside quotes (its meaning depends
// on sql_mode), an executable comment (/*! or /*M!), a NUL, an unterminated
// quote or comment, INT64_MIN, or a marker count other than params.size()
// gives nullopt. Connector/ODBC 3.1 sends a statement with bound parameters
// as a server-side prepared statement (prepare, execute, close: a server
// round of work the text protocol does not pay); these values need no
// escaping, so the text is exactly what the server would bind.
std::optional<std::string> MysqlInlinedSql(absl::string_view sql, const std::vector<Value>& params);

// The dialect for SQL_DBMS_NAME `dbms_name`; UNIMPLEMENTED for others.
absl::StatusOr<std::unique_ptr<Dialect>> DialectForDbms(absl::string_view dbms_name);

// `dsn` with MariaDB Connector/ODBC's CONN_TIMEOUT, READ_TIMEOUT and
// WRITE_TIMEOUT set from `io_timeout` (whole seconds) where it does not set
// them. Also used before the DBMS is known (the first connection) when the
// driver's name says MariaDB or MySQL.
std::string MariadbDsnWithTimeouts(const std::string& dsn, absl::Duration io_timeout);

}  // namespace txcoord::participants::odbc

#endif  // TXCOORD_PARTICIPANTS_ODBC_ODBC_DIALECT_H_
