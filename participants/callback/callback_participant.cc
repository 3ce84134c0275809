#include "participants/callback/callback_participant.h"

#include <grpcpp/grpcpp.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "txcoord/v1/transaction.grpc.pb.h"
#include "util/fiber.h"

namespace txcoord::participants {

struct CallbackParticipant::Rpc {
  std::unique_ptr<txcoord::v1::ParticipantService::Stub> stub;
};

namespace {

constexpr auto kCallTimeout = std::chrono::seconds(10);

// Makes one unary call with gRPC's callback API, `start(ctx, response,
// on_done)`, and waits for its end (util::AwaitCompletion: on a fiber the
// fiber parks, on a thread the thread sleeps). No thread is held for the
// call.
template <typename Response, typename Start>
grpc::Status CallAndWait(Response* response, Start start) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return util::AwaitCompletion<grpc::Status>(
      [&](std::function<void(grpc::Status)> done) { start(&ctx, response, std::move(done)); });
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& name) {
  if (s.ok()) return absl::OkStatus();
  // Every failure to reach the service is retried by phase 2.
  absl::StatusCode code = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                  s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                              ? absl::StatusCode::kUnavailable
                              : static_cast<absl::StatusCode>(s.error_code());
  return absl::Status(code, absl::StrCat(name, ": ", s.error_message()));
}

txcoord::v1::ParticipantRequest Request(const Xid& xid) {
  txcoord::v1::ParticipantRequest r;
  r.set_txn_id(xid.gtrid);
  r.set_branch_id(xid.bqual);
  return r;
}

}  // namespace

CallbackParticipant::CallbackParticipant(std::string address)
    : address_(std::move(address)),
      name_(absl::StrCat(kCallbackPrefix, address_)),
      rpc_(new Rpc{txcoord::v1::ParticipantService::NewStub(
          grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()))}) {}

CallbackParticipant::~CallbackParticipant() = default;

Capabilities CallbackParticipant::capabilities() const {
  Capabilities c;
  c.driver = "callback";
  c.dialect = "callback";
  c.two_phase = true;
  return c;
}

absl::StatusOr<std::unique_ptr<Branch>> CallbackParticipant::Begin(const Xid&,
                                                                                 absl::Duration) {
  return absl::FailedPreconditionError(absl::StrCat(name_, ": a callback participant runs no SQL"));
}

absl::StatusOr<Vote> CallbackParticipant::Prepare(const Xid& xid) {
  const txcoord::v1::ParticipantRequest req = Request(xid);
  txcoord::v1::ParticipantVote vote;
  grpc::Status s = CallAndWait(&vote, [&](grpc::ClientContext* ctx, auto* out, auto done) {
    rpc_->stub->async()->Prepare(ctx, &req, out, std::move(done));
  });
  if (!s.ok()) return FromGrpc(s, name_);
  switch (vote.vote()) {
    case txcoord::v1::ParticipantVote::YES: return Vote::kPrepared;
    case txcoord::v1::ParticipantVote::READ_ONLY: return Vote::kReadOnly;
    default:
      return absl::AbortedError(absl::StrCat(name_, " voted NO: ", vote.reason()));
  }
}

absl::Status CallbackParticipant::Finish(bool commit, const Xid& xid) {
  const txcoord::v1::ParticipantRequest req = Request(xid);
  txcoord::v1::ParticipantAck ack;
  grpc::Status s = CallAndWait(&ack, [&](grpc::ClientContext* ctx, auto* out, auto done) {
    if (commit) {
      rpc_->stub->async()->Commit(ctx, &req, out, std::move(done));
    } else {
      rpc_->stub->async()->Rollback(ctx, &req, out, std::move(done));
    }
  });
  if (!s.ok()) return FromGrpc(s, name_);
  if (ack.unknown_branch()) {
    return absl::NotFoundError(absl::StrCat(name_, ": branch ", xid.bqual, " of ", xid.gtrid, " is unknown"));
  }
  return absl::OkStatus();
}

absl::Status CallbackParticipant::CommitPrepared(const Xid& xid) { return Finish(true, xid); }
absl::Status CallbackParticipant::RollbackPrepared(const Xid& xid) { return Finish(false, xid); }

absl::StatusOr<std::vector<PreparedBranch>> CallbackParticipant::ListAllPrepared() {
  const txcoord::v1::ListPreparedRequest req;
  txcoord::v1::ListPreparedResponse resp;
  grpc::Status s = CallAndWait(&resp, [&](grpc::ClientContext* ctx, auto* out, auto done) {
    rpc_->stub->async()->ListPrepared(ctx, &req, out, std::move(done));
  });
  if (!s.ok()) return FromGrpc(s, name_);
  std::vector<PreparedBranch> out;
  for (const auto& b : resp.branches()) {
    PreparedBranch p;
    p.xid.gtrid = b.txn_id();
    p.xid.bqual = b.branch_id();
    p.raw = absl::StrCat(b.txn_id(), "/", b.branch_id());
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<std::vector<PreparedBranch>> CallbackParticipant::ListPrepared(
    absl::string_view node_id) {
  auto all = ListAllPrepared();
  if (!all.ok()) return all.status();
  std::vector<PreparedBranch> out;
  for (auto& b : *all) {
    if (NodeIdOfGtrid(b.xid.gtrid) == node_id) out.push_back(std::move(b));
  }
  return out;
}

absl::Status CallbackParticipant::CheckHealth() { return ListAllPrepared().status(); }

}  // namespace txcoord::participants
