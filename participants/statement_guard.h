// The statement guard: what client SQL may not do inside a branch.
//
// A branch is one local transaction that txcoord begins, prepares and ends.
// A statement that ends it (COMMIT, ROLLBACK, PREPARE TRANSACTION…), starts
// another, or commits implicitly (MariaDB's DDL) would let one database
// commit on its own and split the global transaction. CheckBranchSql refuses
// such statements before anything is sent, for the bind's dialect, in every
// statement of a multi-statement string, reading past comments, string
// literals and quoted identifiers the way the server does (and both ways
// where a server setting changes it: backslash escapes).
//
// SessionStateSql tells whether a statement may leave state on its
// connection beyond the transaction (SET without LOCAL, SET ROLE, temporary
// tables, session advisory locks, LISTEN, named prepared statements…): the
// branch's connection is then closed when the branch ends instead of going
// back to the pool, so that nothing leaks into the next transaction.
//
// Both are lexical: a function or procedure that does such things inside
// its body is not seen (PostgreSQL refuses transaction control inside a
// transaction block, and MariaDB inside an XA branch; the participants
// check the branch's transaction status after each statement where the
// client library tells it).
//
// Thread-safe (pure functions).
#ifndef TXCOORD_PARTICIPANTS_STATEMENT_GUARD_H_
#define TXCOORD_PARTICIPANTS_STATEMENT_GUARD_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace txcoord::participants {

// Dialect names as in Capabilities::dialect: "postgresql", "mariadb",
// "oracle", "sqlserver", "sqlite". An unknown dialect gets the union of
// every dialect's rules.
//
// INVALID_ARGUMENT naming the bind and the refused statement (its first
// words) when `sql` holds a statement that starts, ends or prepares a
// transaction, or commits implicitly, on that dialect. OK otherwise.
absl::Status CheckBranchSql(absl::string_view bind, absl::string_view dialect, absl::string_view sql);

// CheckBranchSql and SessionStateSql in one reading of the text (what a
// participant needs before sending): sets *session_state (when not null)
// if a statement may leave session state; never clears it.
absl::Status GuardBranchSql(absl::string_view bind, absl::string_view dialect, absl::string_view sql,
                            bool* session_state);

// True when `sql` may leave session-level state on its connection.
bool SessionStateSql(absl::string_view dialect, absl::string_view sql);

// For binds whose driver takes "?" parameter markers (ODBC): INVALID_ARGUMENT
// naming the statement when it holds a different number of markers (outside
// literals, quoted names and comments) than `given` values. Some drivers
// (psqlODBC, SQLite's) ignore extra values or bind missing ones as NULL.
absl::Status CheckParameterMarkers(absl::string_view bind, absl::string_view dialect, absl::string_view sql,
                                   size_t given);

// The statements of `sql` as the guard reads them: each statement's words,
// upper-cased, with literals and quoted identifiers as "'" and '"' tokens
// and punctuation as itself; comments dropped. For tests and diagnostics.
// `backslash_escapes`: whether a backslash escapes a quote inside '…'.
std::vector<std::vector<std::string>> SplitStatementsForTest(absl::string_view dialect, absl::string_view sql,
                                                             bool backslash_escapes);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_STATEMENT_GUARD_H_
