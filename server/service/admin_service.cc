#include "server/service/admin_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "coordinator/logging.h"
#include "participants/xid.h"
#include "server/config.h"
#include "server/service/convert.h"
#include "server/service/unary_call.h"

namespace txcoord::coordinator {
namespace {

// Who resolved: the authenticated identity, the operator's name it sent
// ("x-txcoord-operator", e.g. txctl --operator) and the peer address.
// A call another node forwarded says which ("x-txcoord-forwarded-by").
std::string Metadata(grpc::ServerContextBase* ctx, const char* key) {
  auto md = ctx->client_metadata().find(key);
  return md != ctx->client_metadata().end() ? std::string(md->second.data(), md->second.size()) : "";
}

std::string Journaled(const Identity& who, grpc::ServerContextBase* ctx) {
  std::string name = Metadata(ctx, "x-txcoord-operator");
  if (name.empty()) name = "unnamed";
  const std::string via = Metadata(ctx, "x-txcoord-forwarded-by");
  return absl::StrCat(name, " (identity ", who.name, ") from ", ctx->peer(), via.empty() ? "" : " via node ", via);
}

TxnState FromProtoState(txcoord::v1::TransactionState s) {
  switch (s) {
    case txcoord::v1::ACTIVE: return TxnState::kActive;
    case txcoord::v1::PREPARING: return TxnState::kPreparing;
    case txcoord::v1::COMMITTING: return TxnState::kCommitting;
    case txcoord::v1::COMMITTED: return TxnState::kCommitted;
    case txcoord::v1::ABORTING: return TxnState::kAborting;
    case txcoord::v1::ABORTED: return TxnState::kAborted;
    default: return TxnState::kHeuristic;
  }
}

}  // namespace

// AdminService's writes (resolve, recovery pass, drain): an authenticated admin only.
#define TXC_REQUIRE_ADMIN(who)                                                    \
  TXC_IDENTIFY(who);                                                              \
  if (auto st = Authenticator::RequireAdmin(who); !st.ok()) return ToGrpc(st);   \
  (void)who

// AdminService's reads: an admin or a viewer.
#define TXC_REQUIRE_VIEWER(who)                                                 \
  TXC_IDENTIFY(who);                                                            \
  if (auto st = Authenticator::RequireViewer(who); !st.ok()) return ToGrpc(st); \
  (void)who

AdminServiceImpl::AdminServiceImpl(Coordinator* coordinator, SessionManager* sessions,
                                   const Authenticator* auth)
    : coordinator_(coordinator), sessions_(sessions), auth_(auth) {}

void AdminServiceImpl::ServeOn(AsyncEdge& edge) {
  using Self = AdminServiceImpl;
  ServeUnary(
      edge, [this](auto... a) { RequestListTransactions(a...); }, this, &Self::AnswerListTransactions, FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestGetTransaction(a...); }, this, &Self::AnswerGetTransaction, FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestListInDoubt(a...); }, this, &Self::AnswerListInDoubt, FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestResolveTransaction(a...); }, this, &Self::AnswerResolveTransaction,
      FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestListBinds(a...); }, this, &Self::AnswerListBinds, FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestCheckBinds(a...); }, this, &Self::AnswerCheckBinds, FinishOnThread);
  ServeUnary(
      edge, [this](auto... a) { RequestRecoverNow(a...); }, this, &Self::AnswerRecoverNow, FinishOnThread);
  // Drain waits for transactions in flight until its client gives up.
  ServeUnary(
      edge, [this](auto... a) { RequestDrain(a...); }, this, &Self::AnswerDrain, FinishOnThread,
      /*notify_when_done=*/true);
  ServeUnary(
      edge, [this](auto... a) { RequestListNodes(a...); }, this, &Self::AnswerListNodes, FinishOnThread);
}

grpc::Status AdminServiceImpl::AnswerListTransactions(grpc::ServerContextBase* ctx,
                                                      const txcoord::v1::ListTransactionsRequest* req,
                                                      txcoord::v1::ListTransactionsResponse* resp) {
  TXC_REQUIRE_VIEWER(who);
  ListTransactionsFilter f;
  for (int s : req->states()) {
    if (s == txcoord::v1::TRANSACTION_STATE_UNSPECIFIED || !txcoord::v1::TransactionState_IsValid(s)) {
      return ToGrpc(absl::InvalidArgumentError(absl::StrCat("unknown transaction state ", s)));
    }
    f.states.push_back(FromProtoState(static_cast<txcoord::v1::TransactionState>(s)));
  }
  if (!req->bind().empty() && !coordinator_->HasBind(req->bind())) {
    return ToGrpc(absl::InvalidArgumentError(absl::StrCat("unknown bind \"", req->bind(), "\"")));
  }
  if (req->page_size() < 0) return ToGrpc(absl::InvalidArgumentError("page_size must not be negative"));
  f.bind = req->bind();
  f.older_than = FromProto(req->older_than());
  f.page_size = req->page_size();
  f.page_token = req->page_token();
  auto page = coordinator_->ListTransactions(f);
  if (!page.ok()) return ToGrpc(page.status());
  for (const TxnInfo& t : page->first) ToProto(t, resp->add_transactions());
  resp->set_next_page_token(page->second);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerGetTransaction(grpc::ServerContextBase* ctx,
                                                    const txcoord::v1::GetTransactionRequest* req,
                                                    txcoord::v1::Transaction* resp) {
  TXC_REQUIRE_VIEWER(who);
  return coordinator::AnswerGetTransaction(*coordinator_, *req, resp);
}

grpc::Status AdminServiceImpl::AnswerListInDoubt(grpc::ServerContextBase* ctx,
                                                 const txcoord::v1::ListInDoubtRequest* req,
                                                 txcoord::v1::ListInDoubtResponse* resp) {
  TXC_REQUIRE_VIEWER(who);
  std::vector<std::string> binds(req->binds().begin(), req->binds().end());
  auto branches = coordinator_->ListInDoubt(binds);
  if (!branches.ok()) return ToGrpc(branches.status());
  for (const InDoubtBranch& b : *branches) {
    auto* out = resp->add_branches();
    out->set_bind(b.bind);
    out->set_xid(b.xid);
    out->set_txn_id(b.txn_id);
    out->set_node_id(b.node_id);
    out->set_kind(b.kind == InDoubtBranch::Kind::kDecided    ? txcoord::v1::InDoubtBranch::DECIDED
                  : b.kind == InDoubtBranch::Kind::kOrphaned ? txcoord::v1::InDoubtBranch::ORPHANED
                  : b.kind == InDoubtBranch::Kind::kPeer     ? txcoord::v1::InDoubtBranch::PEER
                                                             : txcoord::v1::InDoubtBranch::FOREIGN);
    if (b.age_known) {
      int64_t us = absl::ToInt64Microseconds(b.age);
      out->mutable_age()->set_seconds(us / 1000000);
      out->mutable_age()->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
    }
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerResolveTransaction(grpc::ServerContextBase* ctx,
                                                        const txcoord::v1::ResolveTransactionRequest* req,
                                                        txcoord::v1::Transaction* resp) {
  TXC_REQUIRE_ADMIN(who);
  if (req->txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  if (req->decision() != txcoord::v1::ResolveTransactionRequest::COMMIT &&
      req->decision() != txcoord::v1::ResolveTransactionRequest::ROLLBACK) {
    return ToGrpc(absl::InvalidArgumentError("decision must be COMMIT or ROLLBACK"));
  }
  if (req->reason().empty()) {
    return ToGrpc(absl::InvalidArgumentError("reason is required: it is journaled with your identity"));
  }
  if (coordinator_->journal()->clustered()) {
    const std::string owner = participants::NodeIdOfGtrid(req->txn_id());
    if (!owner.empty() && owner != coordinator_->journal()->node_id()) return ForwardResolve(owner, ctx, *req, resp);
  }
  auto info = coordinator_->Resolve(req->txn_id(), req->decision() == txcoord::v1::ResolveTransactionRequest::COMMIT,
                                    Journaled(who, ctx), req->reason());
  if (!info.ok()) return ToGrpc(info.status());
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ForwardResolve(const std::string& owner, grpc::ServerContextBase* ctx,
                                              const txcoord::v1::ResolveTransactionRequest& req,
                                              txcoord::v1::Transaction* resp) {
  const std::string self = coordinator_->journal()->node_id();
  const std::string from = Metadata(ctx, "x-txcoord-forwarded-by");
  if (!from.empty()) {
    // Node `from` took this node for the owner: its view of the cluster is
    // stale. One hop only, never a loop.
    return ToGrpc(
        absl::FailedPreconditionError(absl::StrCat("transaction ", req.txn_id(), " belongs to node \"", owner,
                                                   "\", not to \"", self, "\" (forwarded by \"", from, "\")")));
  }
  const std::string token = Metadata(ctx, "authorization");
  absl::StatusOr<journal::NodeStatus> node = coordinator_->journal()->NodeOf(owner);
  if (!node.ok()) return ToGrpc(node.status());
  if (!node->adopted_by.empty()) {
    return ToGrpc(absl::FailedPreconditionError(
        absl::StrCat("transaction ", req.txn_id(), " belongs to node \"", owner, "\", which node \"", node->adopted_by,
                     "\" is adopting: the adoption re-drives its decisions and rolls back its orphaned branches "
                     "(txctl nodes shows how it ends)")));
  }
  if (node->epoch == 0 || node->address.empty()) {
    return ToGrpc(absl::FailedPreconditionError(absl::StrCat(
        "transaction ", req.txn_id(), " belongs to node \"", owner, "\", which is not running: ",
        node->settled ? "it stopped with nothing left to finish"
                      : "a surviving node adopts it, re-drives its decisions and rolls back its orphaned branches "
                        "(txctl nodes)")));
  }
  if (auth_->enabled() && token.empty()) {
    return ToGrpc(absl::FailedPreconditionError(
        absl::StrCat("transaction ", req.txn_id(), " belongs to node \"", owner, "\" at ", node->address,
                     ": resolve it there (a client certificate's identity cannot be forwarded; a bearer token can)")));
  }
  PeerChannels* peers = peers_.load();
  if (peers == nullptr) return ToGrpc(absl::UnavailableError("this node is not serving yet"));
  grpc::ClientContext forwarded;
  if (!token.empty()) forwarded.AddMetadata("authorization", token);
  const std::string operator_name = Metadata(ctx, "x-txcoord-operator");
  if (!operator_name.empty()) forwarded.AddMetadata("x-txcoord-operator", operator_name);
  forwarded.AddMetadata("x-txcoord-forwarded-by", self);
  forwarded.set_deadline(std::min(ctx->deadline(), std::chrono::system_clock::now() + std::chrono::seconds(60)));
  grpc::Status st =
      txcoord::v1::AdminService::NewStub(peers->To(node->address))->ResolveTransaction(&forwarded, req, resp);
  if (st.ok()) return st;
  return grpc::Status(st.error_code(),
                      absl::StrCat("node \"", owner, "\" (", node->address, "): ", st.error_message()));
}

void AdminServiceImpl::FillBinds(bool check, txcoord::v1::ListBindsResponse* out) {
  for (const std::string& name : coordinator_->BindNames()) {
    participants::Participant* p = coordinator_->FindBind(name);
    auto* b = out->add_binds();
    participants::Capabilities caps = p->capabilities();
    participants::PoolStats pool = p->pool_stats();
    b->set_name(name);
    b->set_driver(caps.driver);
    b->set_dialect(caps.dialect);
    b->set_two_phase(caps.two_phase);
    b->set_last_resource(coordinator_->ConfiguredLastResource(name));
    b->set_pool_size(pool.size);
    b->set_pool_in_use(pool.in_use);
    if (check) {
      absl::Time start = absl::Now();
      absl::Status s = p->CheckHealth();
      int64_t us = absl::ToInt64Microseconds(absl::Now() - start);
      b->mutable_latency()->set_seconds(us / 1000000);
      b->mutable_latency()->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
      b->set_reachable(s.ok());
      if (!s.ok()) b->set_last_error(RedactDsn(std::string(s.message())));
    }
  }
}

grpc::Status AdminServiceImpl::AnswerListBinds(grpc::ServerContextBase* ctx, const txcoord::v1::ListBindsRequest*,
                                               txcoord::v1::ListBindsResponse* resp) {
  TXC_REQUIRE_VIEWER(who);
  FillBinds(/*check=*/false, resp);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerCheckBinds(grpc::ServerContextBase* ctx, const txcoord::v1::CheckBindsRequest*,
                                                txcoord::v1::ListBindsResponse* resp) {
  TXC_REQUIRE_VIEWER(who);
  FillBinds(/*check=*/true, resp);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerRecoverNow(grpc::ServerContextBase* ctx, const txcoord::v1::RecoverNowRequest*,
                                                txcoord::v1::RecoverNowResponse* resp) {
  TXC_REQUIRE_ADMIN(who);
  Log(spdlog::level::info, "", absl::StrCat("admin: recovery pass asked for by ", Journaled(who, ctx)));
  RecoveryReport r = coordinator_->RecoverNow();
  resp->set_redriven(r.redriven + r.decided_committed);
  resp->set_orphans_rolled_back(r.orphans_rolled_back);
  resp->set_still_pending(r.still_pending);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerDrain(grpc::ServerContextBase* ctx, const txcoord::v1::DrainRequest* req,
                                           txcoord::v1::DrainResponse* resp) {
  TXC_REQUIRE_ADMIN(who);
  Log(spdlog::level::warn, "", absl::StrCat("admin: drain asked for by ", Journaled(who, ctx)));
  sessions_->StopAccepting();
  absl::Duration timeout = FromProto(req->timeout());
  if (timeout <= absl::ZeroDuration()) timeout = absl::Seconds(30);
  absl::Time deadline = absl::Now() + timeout;
  // In-flight transactions finish (their sessions commit or roll back, or
  // their timeouts do); then the sessions left are reported.
  while (coordinator_->live_count() > 0 && absl::Now() < deadline && !ctx->IsCancelled()) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  resp->set_sessions_left(sessions_->size());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::AnswerListNodes(grpc::ServerContextBase* ctx, const txcoord::v1::ListNodesRequest*,
                                               txcoord::v1::ListNodesResponse* resp) {
  TXC_REQUIRE_VIEWER(who);
  journal::Journal& journal = *coordinator_->journal();
  resp->set_backend(journal.clustered() ? "etcd" : "rocksdb");
  absl::StatusOr<std::vector<journal::NodeStatus>> nodes = journal.ListNodes();
  if (!nodes.ok()) return ToGrpc(nodes.status());
  for (const journal::NodeStatus& n : *nodes) {
    txcoord::v1::Node* out = resp->add_nodes();
    out->set_node_id(n.node_id);
    out->set_self(n.node_id == journal.node_id());
    out->set_member(n.member);
    out->set_settled(n.settled);
    out->set_epoch(n.epoch);
    out->set_lease_id(n.lease);
    out->set_holder(n.holder);
    out->set_adopted_by(n.adopted_by);
    out->set_unfinished_decisions(n.unfinished);
    out->set_address(n.address);
  }
  if (const ClusterMember* cluster = cluster_.load(); cluster != nullptr) {
    for (const AdoptionReport& a : cluster->RecentAdoptions()) {
      txcoord::v1::Adoption* out = resp->add_adoptions();
      out->set_node_id(a.node_id);
      out->set_epoch(a.epoch);
      out->set_settled(a.settled);
      out->set_redriven(a.redriven);
      out->set_decided_committed(a.decided_committed);
      out->set_orphans_rolled_back(a.orphans_rolled_back);
      out->mutable_started_at()->set_seconds(absl::ToUnixSeconds(a.started));
      const int64_t took_ns = absl::ToInt64Nanoseconds(a.took);
      out->mutable_took()->set_seconds(took_ns / 1000000000);
      out->mutable_took()->set_nanos(static_cast<int32_t>(took_ns % 1000000000));
      out->set_error(a.error);
    }
  }
  return grpc::Status::OK;
}

}  // namespace txcoord::coordinator
