// The PostgreSQL participant's branch: one local transaction on a pooled
// libpqxx connection, driven by hand (BEGIN was sent by Participant::Begin
// or the batch that created it):
//
//   <statements>                                      (Execute: exec_params, $1…)
//   SELECT txid_current_if_assigned() IS NULL         (Prepare: read-only vote?)
//     true  → COMMIT, vote kReadOnly
//     false → PREPARE TRANSACTION 'txc1_<gtrid>_<bqual>', vote kPrepared
//   COMMIT / ROLLBACK                                 (one phase, rollback)
//   INSERT the decision row; COMMIT                   (last resource)
//
// Internal to participants/postgres/.
#ifndef TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BRANCH_H_
#define TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BRANCH_H_

#include <memory>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/connection_pool.h"
#include "participants/participant.h"
#include "participants/postgres/postgres_connection.h"

namespace txcoord::participants::postgres_internal {

// The table of decision rows a last resource keeps (FenceDecision and the
// last-resource commit create it when missing).
inline constexpr absl::string_view kCreateDecisionsTable =
    "CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id text PRIMARY KEY, payload text, "
    "decided_at timestamptz DEFAULT now())";

// A branch on `lease`'s connection, inside a transaction already begun.
// `statement_limit`: the statement_timeout its statements run under (the
// lock_timeout of its Begin). `session_state`: statements already run on it
// may have left session state (the connection is closed when it ends).
std::unique_ptr<Branch> NewPostgresBranch(std::shared_ptr<PgShared> shared, ConnectionPool<PgConnection>::Lease lease,
                                          Xid xid, absl::Duration statement_limit, bool session_state = false);

}  // namespace txcoord::participants::postgres_internal

#endif  // TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BRANCH_H_
