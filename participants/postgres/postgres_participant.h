// PostgreSQL participant on libpqxx 6.4.
//
// Each pooled connection is a pqxx::connection (automatic reactivation off:
// a broken connection is evicted from the pool and a new one is opened on
// the next use). A Branch drives the local transaction by hand through
// pqxx::nontransaction:
//
//   BEGIN; SET LOCAL lock_timeout/statement_timeout   (Participant::Begin)
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
// No pqxx exception leaves this file: they become absl::Status values
// (sql_common.h's mapping; a lost connection is UNAVAILABLE).
#ifndef TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "participants/participant.h"

namespace txcoord::participants {

// REQUIRES: options.driver == "postgres". Does not connect.
absl::StatusOr<std::unique_ptr<Participant>> CreatePostgresParticipant(
    const BindOptions& options);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_PARTICIPANT_H_
