// A PostgreSQL batch in one round trip, in libpq's pipeline mode on the
// connection libpqxx opened: BEGIN and the branch's limits, the statements,
// a check that they left the transaction open, and a tail (PREPARE
// TRANSACTION, COMMIT or the read-only probe), each query its own
// extended-protocol message (Parse, Bind, Execute), one Sync after the
// last. Sending does not wait for the reply: a caller can have batches on
// several binds in flight and read their results later
// (Participant::StartBatch).
//
// A statement's parameters travel as the protocol's own parameters, in
// text form: the server infers their types as for any unnamed prepared
// statement, no parameter text is parsed as SQL, and no named statement is
// left behind. After an error the server skips the queries up to the Sync;
// the transaction block is then left aborted unless the failed query was a
// COMMIT (the caller cleans up). Internal to participants/postgres/.
#ifndef TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BATCH_H_
#define TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BATCH_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "participants/participant.h"
#include "participants/postgres/postgres_connection.h"

namespace txcoord::participants::postgres_internal {

// Query numbers in Pipelined::failed besides statement indexes.
constexpr int kBeginQueries = -1;    // BEGIN and the SET LOCALs
constexpr int kFirstTail = -2;       // the first query after the statements
constexpr int kBranchCheck = -1000;  // the branch-open check, before the tail

// What a batch got back.
struct Pipelined {
  absl::Status status;
  bool broken = false;  // the connection is lost (or unusable)
  // Whose result failed: a statement index, kBeginQueries, kBranchCheck, or
  // kFirstTail - k for tail query k.
  int failed = kBeginQueries;
  std::vector<ResultSet> results;  // one per statement, when OK
  // Per tail query, the first column of its first row ("" when it has
  // none or it is NULL), when OK.
  std::vector<std::string> tail;
};

// A batch sent on `c` (which must stay leased until Finish), its results
// not read yet. Not thread-safe.
class SentBatch {
 public:
  // Sends `begin`, the statements (`sqls`: PostgresBatchableSql of each
  // statement's text; parameters from `statements`), the branch-open check
  // and `tail`. `statement_limit`: the statement_timeout the batch runs
  // under (the reply bound is extended past it, as GuardOn does).
  SentBatch(PgShared& shared, PgConnection& c, const std::vector<std::string>& begin,
            const std::vector<std::string>& sqls, const std::vector<Statement>& statements,
            const std::vector<std::string>& tail, absl::Duration statement_limit);
  SentBatch(const SentBatch&) = delete;
  SentBatch& operator=(const SentBatch&) = delete;

  // Reads every result (the connection is idle after, or broken), waiting
  // for the reply at most the reply bound (util::IoWatchdog); statement
  // results are cut to `max_rows` rows (0: all). REQUIRES: at most once.
  Pipelined Finish(int max_rows);

 private:
  struct Query {
    int index;    // see Pipelined::failed
    bool result;  // its result is statement `index`'s
  };

  // Queues one query (its parameters' texts: nullopt for NULL); false when
  // libpq refuses it (the connection is lost).
  bool Send(const std::string& sql, const std::vector<std::optional<std::string>>& params, int index, bool result);

  PgShared& shared_;
  PgConnection& c_;
  std::vector<Query> order_;
  size_t statements_ = 0;
  absl::Duration bound_;
  absl::Status send_error_;  // not sent: the connection is lost
};

// SentBatch and Finish at once.
Pipelined RunPipelined(PgShared& shared, PgConnection& c, const std::vector<std::string>& begin,
                       const std::vector<std::string>& sqls, const std::vector<Statement>& statements,
                       const std::vector<std::string>& tail, int max_rows, absl::Duration statement_limit);

// The branch's time limits as SET LOCALs after BEGIN (0: none), and the
// mark the branch-open check looks for.
std::vector<std::string> BeginStatements(absl::Duration lock_timeout);

}  // namespace txcoord::participants::postgres_internal

#endif  // TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_BATCH_H_
