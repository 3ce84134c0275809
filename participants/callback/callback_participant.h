// A participant that is not a database bind: a service implementing
// txcoord.v1.ParticipantService (a message queue, a key-value store,
// another service), registered per transaction with its address.
//
// Its branches are named "callback:<address>" in the journal; the xid's
// gtrid is the txn id and its bqual the branch id the service chose.
// Prepare/Commit/Rollback are called with a deadline and retried by the
// coordinator's phase-2 machinery; the service must make them idempotent
// ("unknown_branch" in an ack means: already finished, or never prepared).
// Each call is made on gRPC's callback API and waited for with a WaitWord
// (util/fiber.h): on a fiber it parks the fiber, and no thread is held.
// Thread-safe. The only participant that speaks gRPC (txcoord_participants
// links gRPC for it).
#ifndef TXCOORD_PARTICIPANTS_CALLBACK_CALLBACK_PARTICIPANT_H_
#define TXCOORD_PARTICIPANTS_CALLBACK_CALLBACK_PARTICIPANT_H_

#include <memory>
#include <string>

#include "participants/participant.h"

namespace txcoord::participants {

inline constexpr absl::string_view kCallbackPrefix = "callback:";

class CallbackParticipant final : public participants::Participant {
 public:
  explicit CallbackParticipant(std::string address);
  ~CallbackParticipant() override;

  const std::string& bind() const override { return name_; }
  participants::Capabilities capabilities() const override;
  participants::PoolStats pool_stats() const override { return {}; }
  absl::StatusOr<std::unique_ptr<participants::Branch>> Begin(const participants::Xid& xid,
                                                              absl::Duration lock_timeout) override;
  // Phase 1 for a callback branch: YES → kPrepared, READ_ONLY → kReadOnly,
  // NO → ABORTED with the service's reason.
  absl::StatusOr<participants::Vote> Prepare(const participants::Xid& xid);
  absl::Status CommitPrepared(const participants::Xid& xid) override;
  absl::Status RollbackPrepared(const participants::Xid& xid) override;
  absl::StatusOr<std::vector<participants::PreparedBranch>> ListPrepared(absl::string_view node_id) override;
  absl::StatusOr<std::vector<participants::PreparedBranch>> ListAllPrepared() override;
  absl::StatusOr<std::vector<std::string>> ListDecisions(absl::string_view) override { return std::vector<std::string>{}; }
  absl::Status ForgetDecision(absl::string_view) override { return absl::OkStatus(); }
  absl::Status CheckHealth() override;

 private:
  absl::Status Finish(bool commit, const participants::Xid& xid);
  const std::string address_;
  const std::string name_;
  // The generated gRPC stub, kept out of this header: the engine that
  // includes it sees no generated code.
  struct Rpc;
  std::unique_ptr<Rpc> rpc_;
};

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_CALLBACK_CALLBACK_PARTICIPANT_H_
