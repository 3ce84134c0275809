// TEST-ONLY no-op participant (driver "noop").
//
// Exists to measure the coordinator's own overhead (txbench's `noop`
// workload, bench/engine_bench): Begin, Execute, Prepare and every commit
// or rollback do nothing and succeed, without touching any database.
// Execute returns rows_affected = 1 and no rows; Prepare votes kPrepared
// (two_phase = true), so a transaction with two noop binds runs the full
// two-phase path including the fsynced journal decision. ListPrepared,
// ListAllPrepared and ListDecisions are empty.
//
// It stores NOTHING: never configure a noop bind for real data — every
// "committed" statement is simply discarded.
#ifndef TXCOORD_PARTICIPANTS_NOOP_NOOP_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_NOOP_NOOP_PARTICIPANT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "participants/participant.h"

namespace txcoord::participants {

// REQUIRES: options.driver == "noop". The DSN is ignored.
absl::StatusOr<std::unique_ptr<Participant>> CreateNoopParticipant(const BindOptions& options);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_NOOP_NOOP_PARTICIPANT_H_
