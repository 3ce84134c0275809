// What the native MariaDB participant (mariadb_participant.cc) and its
// session branches (mariadb_branch.cc) share: the bind's pool and parked
// connections, how long a reply is awaited, and the helpers both use to
// write parameters into SQL text and to roll a branch back.
#ifndef TXCOORD_PARTICIPANTS_MARIADB_MARIADB_BRANCH_H_
#define TXCOORD_PARTICIPANTS_MARIADB_MARIADB_BRANCH_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "participants/connection_pool.h"
#include "participants/mariadb/mariadb_connection.h"
#include "participants/parked_connections.h"
#include "participants/participant.h"
#include "participants/sql_common.h"

namespace txcoord::participants::mariadb {

using Lease = ConnectionPool<MariadbConnection>::Lease;

// What a participant and its branches share (branches may outlive it).
struct MariadbShared {
  BindOptions options;
  MariadbDsn dsn;
  std::shared_ptr<ConnectionPool<MariadbConnection>> pool;
  ParkedConnections<MariadbConnection> parked;
  DecisionsTableFlag decisions_table;
  // The wait for one call's reply outside a branch's statements.
  absl::Duration io_timeout() const { return options.io_timeout; }
  // The wait for a reply to a branch's statements, which run under
  // max_statement_time = `lock_timeout` (ReplyBound).
  absl::Duration statement_timeout(absl::Duration lock_timeout) const { return ReplyBound(options, lock_timeout); }
};

absl::StatusOr<std::unique_ptr<MariadbConnection>> OpenConnection(const MariadbShared& shared);

// A parameter as a literal of this connection's SQL text; nullopt for a
// value MariaDB cannot read back exactly (NaN, infinities, a malformed
// decimal).
std::optional<std::string> NativeLiteral(const MariadbConnection& c, const Value& v);

// Rolls back the branch `xid` on `c` (XA END may fail when the branch is
// already idle or was rolled back by a deadlock; XA ROLLBACK decides). The
// connection is marked broken when that cannot be done.
absl::Status RollbackOn(MariadbShared& shared, MariadbConnection& c, const Xid& xid);

// A session's branch on `lease`, XA START already sent: its statements
// one call each, then XA END with XA PREPARE (or XA COMMIT … ONE PHASE, or
// the rollback). `session_state`: a statement may have left session state
// on the connection, which is then closed instead of pooled.
std::unique_ptr<Branch> NewMariadbBranch(std::shared_ptr<MariadbShared> shared, Lease lease, Xid xid,
                                         absl::Duration lock_timeout, bool session_state = false);

}  // namespace txcoord::participants::mariadb

#endif  // TXCOORD_PARTICIPANTS_MARIADB_MARIADB_BRANCH_H_
