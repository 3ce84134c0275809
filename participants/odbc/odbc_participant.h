// Participants over unixODBC. CreateOdbcParticipant connects once to learn
// the DBMS (SQLGetInfo(SQL_DBMS_NAME)) and picks its Dialect
// (odbc_dialect.h); the pool then opens connections lazily. Statements use
// '?' parameter markers.
#ifndef TXCOORD_PARTICIPANTS_ODBC_ODBC_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_ODBC_ODBC_PARTICIPANT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "participants/participant.h"

namespace txcoord::participants {

// REQUIRES: options.driver == "odbc". UNAVAILABLE when the DSN cannot be
// reached, UNIMPLEMENTED for a DBMS without a dialect.
absl::StatusOr<std::unique_ptr<Participant>> CreateOdbcParticipant(const BindOptions& options);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_ODBC_ODBC_PARTICIPANT_H_
