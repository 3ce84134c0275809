// PostgreSQL participant on libpqxx 6.4.
//
// Each pooled connection is a pqxx::connection (automatic reactivation off:
// a broken connection is evicted from the pool and a new one is opened on
// the next use). A Branch drives the local transaction by hand through
// pqxx::nontransaction (postgres_branch.h):
//
//   BEGIN; SELECT set_config(lock_timeout, …, true)…  (Participant::Begin)
//   <statements>                                      (Execute: exec_params, $1…)
//   SELECT txid_current_if_assigned() IS NULL         (Prepare: read-only vote?)
//     true  → COMMIT, vote kReadOnly
//     false → PREPARE TRANSACTION 'txc1_<gtrid>_<bqual>', vote kPrepared
//   COMMIT PREPARED / ROLLBACK PREPARED 'gid'         (any pooled connection)
//
// Parameters are sent in text form with unspecified types (as libpqxx's
// exec_params does): the server infers each $n's type from its context, so a
// bare `SELECT $1` yields text; write `$1::int8` where there is no context.
// Bytes are sent in bytea hex form ("\x…"). Every session runs with
// TimeZone=UTC so that timestamptz values come back as "…Z".
//
// RunBatch (RunTransaction's path) sends BEGIN, the limits, every
// statement and the read-only probe as one simple-query string with libpq's
// PQsendQuery (postgres_batch.h): one round trip, then PREPARE TRANSACTION
// (or COMMIT for a read-only branch) as a second. A batch that changes data
// ends in PREPARE TRANSACTION instead: one round trip, which StartBatch
// begins without waiting for the reply. Only SQL that PostgresBatchableSql
// accepts is put in the string; any other batch runs statement by
// statement. After a failed batch the branch is rolled back and DEALLOCATE
// ALL drops the named statements (txcoord itself uses no other named
// prepared statements).
//
// No pqxx exception leaves these files: they become absl::Status values
// (sql_common.h's mapping; a lost connection is UNAVAILABLE).
#ifndef TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "participants/participant.h"

namespace txcoord::participants {

// REQUIRES: options.driver == "postgres". Does not connect.
absl::StatusOr<std::unique_ptr<Participant>> CreatePostgresParticipant(
    const BindOptions& options);

// `sql` made fit to be one statement of a multi-statement string (trailing
// semicolons and white space removed), or nullopt when it is not: it must
// lex as one statement in a conservative subset of PostgreSQL's syntax —
// no `;` outside quotes, no comments, no backslash, no dollar quoting ($n
// parameters only), every quote closed.
std::optional<std::string> PostgresBatchableSql(absl::string_view sql);

// The conninfo a connection is opened with: `dsn` (URI or key=value) as
// key='value' pairs plus connect_timeout from `timeout` (whole seconds, at
// least 2) when the DSN does not set one, so that a server that accepts
// connections but never answers fails the connect. A DSN libpq cannot
// parse, or one that sets connect_timeout, is returned as it is.
std::string PostgresConninfoWithConnectTimeout(const std::string& dsn, absl::Duration timeout);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_
