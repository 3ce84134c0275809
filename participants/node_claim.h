// The node claim of the SQL participants that take it as a named lock on a
// connection of their own (Participant::ClaimNode): MariaDB/MySQL's
// GET_LOCK on either driver, PostgreSQL's advisory lock through psqlODBC.
// Generic over the connection type; what differs per backend comes in
// NodeClaimOps.
//
// Thread-safe.
#ifndef TXCOORD_PARTICIPANTS_NODE_CLAIM_H_
#define TXCOORD_PARTICIPANTS_NODE_CLAIM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "participants/participant.h"
#include "participants/sql_common.h"
#include "participants/xid.h"
#include "util/status_macros.h"

namespace txcoord::participants {

template <typename Conn>
struct NodeClaimOps {
  std::string bind;
  std::string claim_sql;   // one row, one value: true when taken
  std::string holder_sql;  // one row, one string naming the holder ("connection 42")
  std::string kind;        // for messages, e.g. "MariaDB/MySQL GET_LOCK"
  bool take_over = false;  // BindOptions::take_over_node_claims
  std::function<absl::StatusOr<std::unique_ptr<Conn>>()> open;
  // OK while the claiming session lives.
  std::function<absl::Status(Conn&)> check;
  std::function<absl::StatusOr<ResultSet>(Conn&, const std::string&)> query;
  std::function<int64_t(const Conn&)> session_id;
  // The statement that ends server session `id`; "" when there is none.
  std::function<std::string(int64_t)> end_session_sql;
};

template <typename Conn>
class NodeClaim {
 public:
  // Participant::ClaimNode's contract, for `node_id` (already validated).
  absl::Status Claim(absl::string_view node_id, const NodeClaimOps<Conn>& ops) {
    absl::MutexLock lock(&mu_);
    if (claim_ != nullptr) {
      // Held while the claiming session lives.
      if (ops.check(*claim_).ok()) return absl::OkStatus();
      // The session and its lock are gone — or, behind a partition, the
      // server still keeps them: remember whose it was.
      stale_session_ = ops.session_id(*claim_);
      claim_.reset();
    }
    absl::StatusOr<std::unique_ptr<Conn>> opened = ops.open();
    // Not connected (a refused login included): not claimed yet, which is
    // never the FAILED_PRECONDITION of a claim held by someone else.
    if (!opened.ok()) return absl::UnavailableError(opened.status().message());
    std::unique_ptr<Conn> c = *std::move(opened);
    TXC_ASSIGN_OR_RETURN(ResultSet got, ops.query(*c, ops.claim_sql));
    if (got.rows.empty() || got.rows[0].empty() || !TruthyValue(got.rows[0][0])) {
      std::string holder;
      absl::StatusOr<ResultSet> who = ops.query(*c, ops.holder_sql);
      if (who.ok() && !who->rows.empty() && !who->rows[0].empty() && who->rows[0][0].kind == Value::Kind::kString) {
        holder = who->rows[0][0].text;
      }
      const std::string end_stale = stale_session_ > 0 ? ops.end_session_sql(stale_session_) : "";
      if (!end_stale.empty() && HolderIsSession(holder, stale_session_)) {
        TXC_RETURN_IF_ERROR(ops.query(*c, end_stale).status());
        return StaleClaimTerminated(ops.bind, stale_session_);
      }
      if (ops.take_over) {
        // An adopter: the dead node's sessions go; the next attempt claims.
        for (int64_t session : HolderSessions(holder)) {
          const std::string end = session > 0 ? ops.end_session_sql(session) : "";
          if (!end.empty()) (void)ops.query(*c, end);
        }
      }
      return NodeClaimConflict(ops.bind, node_id, absl::StrCat(ops.kind, " ", NodeClaimName(node_id, ops.bind)),
                               holder);
    }
    claim_ = std::move(c);
    stale_session_ = 0;
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  std::unique_ptr<Conn> claim_ ABSL_GUARDED_BY(mu_);  // holds the node's lock
  int64_t stale_session_ ABSL_GUARDED_BY(mu_) = 0;    // the session of a claim given up (0: none)
};

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_NODE_CLAIM_H_
