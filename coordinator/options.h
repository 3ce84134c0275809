// The engine's timeouts and recovery pacing (config: timeouts, recovery).
#ifndef TXCOORD_COORDINATOR_OPTIONS_H_
#define TXCOORD_COORDINATOR_OPTIONS_H_

#include "absl/time/time.h"

namespace txcoord::coordinator {

struct Timeouts {
  absl::Duration transaction = absl::Seconds(30);
  absl::Duration idle = absl::Seconds(60);
  // Read but NOT applied (txcoord logs a warning when it is set): a
  // branch's PREPARE is bounded by `transaction` (its lock timeout), the
  // database, and `database_reply` when the database stops answering.
  // Kept so that existing configurations still load.
  absl::Duration prepare = absl::Seconds(10);
  bool prepare_set = false;
  absl::Duration orphan_safety = absl::Seconds(30);
  // The longest txcoord waits for one reply from a database (or for a new
  // connection) before it gives the connection up: a server that stops
  // answering fails calls instead of holding them (and their locks on the
  // other databases). Each bind's BindOptions::io_timeout. Unset:
  // `transaction` + kDatabaseReplyMargin; never below `transaction`.
  absl::Duration database_reply = absl::Seconds(60);
};

inline constexpr absl::Duration kDatabaseReplyMargin = absl::Seconds(30);

struct RecoveryOptions {
  absl::Duration interval = absl::Seconds(10);
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(30);
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_OPTIONS_H_
