// Helpers shared by the adapters: SQLSTATE → absl::Status mapping, value
// text normalisation, SQL literal quoting.
#ifndef TXCOORD_PARTICIPANTS_SQL_COMMON_H_
#define TXCOORD_PARTICIPANTS_SQL_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/participant.h"

namespace txcoord::participants {

// Whether a bind's decisions table is known to exist: looked for (and made)
// until it is, then remembered. Shared by a participant and its branches.
class DecisionsTableFlag {
 public:
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  void Set() { ready_.store(true, std::memory_order_release); }

 private:
  std::atomic<bool> ready_{false};
};

// Where an error happened: a 42704 (undefined object) while finishing a
// prepared branch means "no such prepared transaction" and is NOT_FOUND.
enum class SqlErrorContext { kStatement, kFinishPrepared };

// Maps a database error to a Status (see docs/participants.md):
//   40001 40P01 55P03 57014 HY008 (canceled), class 40 → ABORTED
//   53200 53300 53000 (class 53)                → RESOURCE_EXHAUSTED
//   08P01 (protocol violation), class 07         → INVALID_ARGUMENT
//   class 08, 57P01..57P03                      → UNAVAILABLE
//   42704 in kFinishPrepared                    → NOT_FOUND
//   class 22 and 42 (data, syntax, undefined)   → INVALID_ARGUMENT
//   anything else (class 23 constraints, 25…)   → FAILED_PRECONDITION
// The message names the bind, the SQLSTATE and the native code (if not 0).
absl::Status StatusFromSqlstate(absl::string_view bind, absl::string_view sqlstate,
                                int native_error, absl::string_view message,
                                SqlErrorContext context = SqlErrorContext::kStatement);

// Whether a failed connection's message says the server refused this
// login or database (PostgreSQL's libpq gives no SQLSTATE then, and
// psqlODBC reports 08001 with libpq's text): a configuration mistake that
// a retry cannot fix.
bool LoginRefusedMessage(absl::string_view message);

// "2026-11-25 13:45:00.5+00" → "2026-11-25T13:45:00.5Z": the Value text
// form of timestamps (a zero offset becomes Z; other offsets are kept).
std::string NormalizeTimestampText(absl::string_view text);

// 'text' with embedded quotes doubled (standard SQL string literal; callers
// only pass text without backslashes or NULs, e.g. gids and txn ids).
std::string QuoteSqlLiteral(absl::string_view text);

// Removes trailing whitespace and NULs (ODBC diagnostics, CHAR columns).
std::string TrimRight(absl::string_view text);

// Participant::ClaimNode on PostgreSQL (libpqxx and psqlODBC alike): takes
// the advisory lock of NodeClaimKey(node_id, bind), one row true/false; and
// names the sessions holding it ("pid N from HOST, …"; NULL when none).
std::string PostgresNodeClaimSql(absl::string_view node_id, absl::string_view bind);
std::string PostgresNodeClaimHolderSql(absl::string_view node_id, absl::string_view bind);

// The FAILED_PRECONDITION of a ClaimNode that found the lock `lock` taken
// by `holder` (empty: not known).
absl::Status NodeClaimConflict(absl::string_view bind, absl::string_view node_id, absl::string_view lock,
                               absl::string_view holder);

// Whether a node claim's holder text (PostgresNodeClaimHolderSql's "pid N
// from HOST, …", MariaDB's "connection N") names server session `session`.
bool HolderIsSession(absl::string_view holder, int64_t session);

// The server sessions a node claim's holder text names ("pid N", "connection N").
std::vector<int64_t> HolderSessions(absl::string_view holder);

// The UNAVAILABLE of a ClaimNode that found the lock still held by this
// participant's own previous claim session `session` (given up when its
// connection stopped answering; a server cut off by a partition does not
// notice for hours) and asked the server to end it: claimed again at a
// later pass, never mistaken for another coordinator's claim.
absl::Status StaleClaimTerminated(absl::string_view bind, int64_t session);

// Ends PostgreSQL backend `pid` (libpqxx and psqlODBC alike).
std::string PostgresEndSessionSql(int64_t pid);

// Run once per PostgreSQL connection (libpqxx and psqlODBC alike): from
// PostgreSQL 14 on, the server checks the client's socket every second
// while a statement runs and ends the statement and its transaction when
// the client is gone. When txcoord dies, a statement of its waiting for a
// row lock ends then, instead of when the lock is released or its deadline
// passes — and a batch ending in PREPARE TRANSACTION does not prepare a
// branch behind the recovery already rolling back the dead process's
// others. The WHERE keeps older servers, which lack the setting, from
// evaluating set_config at all.
inline constexpr char kPostgresClientCheckSql[] =
    "SELECT set_config('client_connection_check_interval', '1000', false) "
    "WHERE current_setting('server_version_num')::int >= 140000";

// Runs `send` (a statement cancel that may wait on the network without a
// limit of its own) on a detached thread, so that a server that accepts
// but does not answer holds up neither the caller nor the branch. `send`
// must own everything it uses. At most kMaxCancelsInFlight run at once (a
// frozen server holds each until it answers); beyond that the cancel is
// dropped and false returned.
inline constexpr int kMaxCancelsInFlight = 64;
bool SendCancelInBackground(std::function<void()> send);

// How much longer than its statements' own time limit a call may wait.
inline constexpr absl::Duration kStatementReplyMargin = absl::Seconds(5);

// How long a call waits for the server's reply: options.io_timeout, or
// `statement_limit` (the time limit its statements run under: PostgreSQL's
// statement_timeout, MariaDB's max_statement_time) plus
// kStatementReplyMargin when that is longer — a statement the server still
// allows is never cut off.
inline absl::Duration ReplyBound(const BindOptions& options, absl::Duration statement_limit) {
  absl::Duration bound = options.io_timeout;
  if (bound > absl::ZeroDuration() && statement_limit > absl::ZeroDuration()) {
    bound = std::max(bound, statement_limit + kStatementReplyMargin);
  }
  return bound;
}

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_SQL_COMMON_H_
