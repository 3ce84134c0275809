// What MariaDB/MySQL binds share, whichever client library carries them
// (the native participant on Connector/C in mariadb/, or Connector/ODBC
// through odbc/odbc_dialect.cc): error mapping, parameter inlining, the
// SQL of session limits, the read-only probe and the decisions table.
//
// Thread-safe (pure functions).
#ifndef TXCOORD_PARTICIPANTS_MARIADB_COMMON_H_
#define TXCOORD_PARTICIPANTS_MARIADB_COMMON_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/participant.h"
#include "participants/sql_common.h"

namespace txcoord::participants {

// A MariaDB/MySQL error as a Status: "bind <bind>: SQLSTATE <s> (native
// <n>): <message>". The native code decides where it is known (deadlock
// and lock wait timeout ABORTED, unknown xid NOT_FOUND in
// kFinishPrepared, lost connection UNAVAILABLE, too many connections
// RESOURCE_EXHAUSTED…); otherwise `connection_dead` gives UNAVAILABLE and
// the SQLSTATE decides (StatusFromSqlstate).
absl::Status MariadbStatus(absl::string_view bind, absl::string_view sqlstate, int native_error,
                           absl::string_view message, SqlErrorContext context, bool connection_dead);

// A parameter value as a literal of the statement's text, or nullopt when
// it cannot be written exactly.
using MysqlLiteral = std::function<std::optional<std::string>(const Value&)>;

// The literal of NULL, a boolean or a 64-bit integer other than INT64_MIN
// (NULL, TRUE/FALSE, 42 or (-42)): values that need no escaping. Nullopt
// for any other value.
std::optional<std::string> MysqlPlainLiteral(const Value& v);

struct MysqlInlined {
  std::string sql;  // the text with every marker replaced; trailing ';' removed
  // A ';' outside quotes and comments is followed by more SQL: the text
  // holds more than one statement.
  bool several_statements = false;
};

// `sql` with each `?` parameter marker replaced by literal(value), when the
// text lexes without doubt: quoted strings and identifiers ('…', "…", `…`,
// quotes doubled inside) and comments (#, "-- ", /* */) are skipped; a
// backslash inside quotes (its meaning depends on sql_mode), an executable
// comment (/*! or /*M!), a NUL, an unterminated quote or comment, a marker
// glued to a word, a marker count other than params.size(), or a value
// `literal` refuses gives nullopt.
std::optional<MysqlInlined> InlineMysqlParameters(absl::string_view sql, const std::vector<Value>& params,
                                                  const MysqlLiteral& literal);

// Milliseconds of a branch's lock timeout for its session limits (0:
// none; at least 1 otherwise). From 2 s up it is rounded down to whole
// seconds: never longer than what is left of the transaction, and the
// same for most branches that reuse a connection within a second of each
// other, so that their session limits need not be set again.
int64_t MariadbTimeoutMillis(absl::Duration d);

// The session settings that bound a branch's lock waits and statements to
// `ms` milliseconds (0: the server's defaults): innodb_lock_wait_timeout
// in whole seconds (at least 1) and max_statement_time.
std::string MariadbSessionLimitsSql(int64_t ms);

// Whether limits already set on a session (`have` ms, -2: never set) are
// close enough to a branch's `want` that setting them again is skipped:
// equal, or no longer and not much shorter.
bool MariadbSessionLimitsCloseEnough(int64_t have, int64_t want);

// The read-only probe: the session's Handler_write + Handler_update +
// Handler_delete (exact and per session), one row, one integer. Compared
// with a value read earlier on the same connection: unchanged means the
// branch changed no row.
inline constexpr absl::string_view kMariadbWriteCounterSql =
    "SELECT CAST(SUM(VARIABLE_VALUE) AS SIGNED) FROM information_schema.SESSION_STATUS "
    "WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE')";

// The last-resource decisions table (DDL: never inside an XA branch).
inline constexpr absl::string_view kMariadbDecisionsTableDdl =
    "CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id VARCHAR(64) CHARACTER SET ascii "
    "PRIMARY KEY, payload LONGTEXT, decided_at TIMESTAMP(6) NOT NULL DEFAULT "
    "CURRENT_TIMESTAMP(6)) ENGINE=InnoDB";
inline constexpr absl::string_view kMariadbDecisionsTableExistsSql =
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
    "AND table_name = 'txcoord_decisions'";

// The node claim: a named lock per node id and bind (NodeClaimName: 24
// characters of the 64 MariaDB allows), released by the server when the
// session ends; and the query naming its holder ("connection <id>").
std::string MariadbClaimNodeSql(absl::string_view node_id, absl::string_view bind);
std::string MariadbNodeClaimHolderSql(absl::string_view node_id, absl::string_view bind);
inline constexpr absl::string_view kMariadbNodeClaimKind = "MariaDB/MySQL GET_LOCK";

// True when a (comment-free, inlined) statement begins with a verb that
// changes rows: INSERT, UPDATE, DELETE, REPLACE.
bool MysqlChangesData(absl::string_view sql);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_MARIADB_COMMON_H_
