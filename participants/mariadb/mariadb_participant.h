// The native MariaDB/MySQL participant: MariaDB Connector/C's text
// protocol (mariadb_connection.h), XA branches, no ODBC in between.
//
// Parameters ('?' markers) are written into the statement's text as
// literals (strings escaped by the client library for the connection's
// character set), so that no statement is prepared on the server; a
// statement whose text cannot be read without doubt (a backslash inside a
// quoted string, an executable comment) is refused when it has parameters.
//
// Round trips: RunTransaction's branch sends XA START, its statements, XA
// END and XA PREPARE as one multi-statement string; a session's branch
// sends XA START with its first use, and XA END with XA PREPARE (or XA
// COMMIT … ONE PHASE). Phase 2 runs on the connection that prepared the
// branch while it is parked here (see parked_connections.h).
#ifndef TXCOORD_PARTICIPANTS_MARIADB_MARIADB_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_MARIADB_MARIADB_PARTICIPANT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "participants/participant.h"

namespace txcoord::participants {

// REQUIRES: options.driver == "mariadb". INVALID_ARGUMENT for a DSN it
// cannot read (mariadb_connection.h lists its keys); connects lazily.
absl::StatusOr<std::unique_ptr<Participant>> CreateMariadbParticipant(const BindOptions& options);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_MARIADB_MARIADB_PARTICIPANT_H_
