#include "journal/etcd_journal.h"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "util/failpoint.h"
#include "util/status_macros.h"
#include "util/thread_name.h"

namespace txcoord::journal {

struct EtcdJournal::Lease {
  int64_t id = 0;
  absl::Duration ttl;
  mutable absl::Mutex mu;
  absl::Status lost ABSL_GUARDED_BY(mu);
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::function<void(const absl::Status&)> on_lost ABSL_GUARDED_BY(mu);
  // No keep-alive succeeded for a whole TTL (etcd unreachable): whether the
  // lease still lives is not known. Written by the lease thread only.
  std::atomic<bool> unconfirmed{false};

  absl::Status Lost() const {
    absl::MutexLock lock(&mu);
    return lost;
  }
  // Records the loss (the first reason stays) and calls the callback once.
  void Lose(const absl::Status& why) {
    std::function<void(const absl::Status&)> callback;
    {
      absl::MutexLock lock(&mu);
      if (!lost.ok()) return;
      lost = why;
      callback = std::move(on_lost);
      on_lost = nullptr;
    }
    if (callback) callback(why);
  }
};

namespace {

constexpr char kActive[] = "active";
constexpr char kSettled[] = "settled";
constexpr char kAdoptedBy[] = "adopted by ";

using etcdserverpb::Compare;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

void AddCompare(TxnRequest& txn, const std::string& key, Compare::CompareTarget target, Compare::CompareResult result,
                int64_t number, const std::string& value = "") {
  Compare* c = txn.add_compare();
  c->set_key(key);
  c->set_target(target);
  c->set_result(result);
  switch (target) {
    case Compare::CREATE: c->set_create_revision(number); break;
    case Compare::VERSION: c->set_version(number); break;
    case Compare::MOD: c->set_mod_revision(number); break;
    case Compare::LEASE: c->set_lease(number); break;
    case Compare::VALUE: c->set_value(value); break;
    default: break;
  }
}

void AddPut(google::protobuf::RepeatedPtrField<RequestOp>* ops, const std::string& key, std::string value,
            int64_t lease = 0, bool prev_kv = false) {
  auto* put = ops->Add()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
  put->set_lease(lease);
  put->set_prev_kv(prev_kv);
}

void AddDelete(google::protobuf::RepeatedPtrField<RequestOp>* ops, const std::string& key) {
  ops->Add()->mutable_request_delete_range()->set_key(key);
}

void AddRange(google::protobuf::RepeatedPtrField<RequestOp>* ops, const std::string& key) {
  ops->Add()->mutable_request_range()->set_key(key);
}

std::string DefaultOwnerDescription() {
  char host[256] = {0};
  (void)::gethostname(host, sizeof host - 1);
  return absl::StrCat("pid ", ::getpid(), " on ", host);
}

// The etcd key after `key` (for paging: the next page starts there).
std::string After(const std::string& key) { return key + std::string(1, '\0'); }

}  // namespace

EtcdJournal::EtcdJournal(const JournalOptions& options, std::shared_ptr<EtcdClient> client,
                         std::shared_ptr<Lease> lease, std::string node_id, int64_t epoch)
    : options_(options),
      client_(std::move(client)),
      lease_(std::move(lease)),
      node_id_(std::move(node_id)),
      epoch_(epoch),
      owner_(node_id_ == options.node_id),
      // Every decision takes at least one of a Txn's operations.
      group_commit_(
          static_cast<size_t>(std::max(1, options_.etcd.max_txn_ops - 2)),
          [this](const std::vector<const DecisionWrite*>& queued) { return TakeGroup(queued); },
          [this](const std::vector<const DecisionWrite*>& group) {
            absl::MutexLock write_lock(&write_mu_);
            return WriteDecisions(group);
          }) {}

EtcdJournal::~EtcdJournal() {
  group_commit_.Stop();
  if (lease_thread_.joinable()) {
    {
      absl::MutexLock lock(&lease_->mu);
      lease_->stopping = true;
    }
    lease_thread_.join();
  }
}

std::string EtcdJournal::Key(absl::string_view kind, absl::string_view node) const {
  return absl::StrCat(options_.etcd.prefix, kind, "/", node);
}
std::string EtcdJournal::DecisionKey(absl::string_view node, absl::string_view txn) const {
  return absl::StrCat(options_.etcd.prefix, "decisions/", node, "/", txn);
}
std::string EtcdJournal::HistoryKey(absl::string_view node, absl::string_view txn) const {
  return absl::StrCat(options_.etcd.prefix, "history/", node, "/", txn);
}
std::string EtcdJournal::TimeKey(absl::string_view node, int64_t micros, absl::string_view txn) const {
  return absl::StrCat(options_.etcd.prefix, "htime/", node, "/", absl::StrFormat("%016x", std::max<int64_t>(0, micros)),
                      "/", txn);
}

absl::StatusOr<std::unique_ptr<EtcdJournal>> EtcdJournal::Open(const JournalOptions& options) {
  const EtcdJournalOptions& eo = options.etcd;
  if (options.node_id.empty() || absl::StrContains(options.node_id, '/')) {
    return absl::InvalidArgumentError(absl::StrCat("journal: node id \"", options.node_id, "\" is not usable in etcd"));
  }
  if (eo.prefix.empty() || eo.prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("journal.etcd.prefix \"", eo.prefix, "\" must end with '/'"));
  }
  if (eo.lease_ttl < absl::Seconds(2)) {
    return absl::InvalidArgumentError("journal.etcd.lease_ttl must be at least 2s");
  }
  if (eo.max_txn_ops < 8) return absl::InvalidArgumentError("journal.etcd.max_txn_ops must be at least 8");
  TXC_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> made, EtcdClient::Create(eo.client));
  std::shared_ptr<EtcdClient> client = std::move(made);
  auto lease = std::make_shared<Lease>();
  lease->ttl = eo.lease_ttl;
  // etcd may still be starting (or electing a leader): a start waits for
  // it up to acquire_timeout, as it waits for a held id.
  const absl::Time give_up = absl::Now() + eo.acquire_timeout;
  for (;;) {
    absl::StatusOr<int64_t> granted = client->GrantLease(eo.lease_ttl);
    if (granted.ok()) {
      lease->id = *granted;
      break;
    }
    if (granted.status().code() != absl::StatusCode::kUnavailable || absl::Now() >= give_up) return granted.status();
    absl::SleepFor(absl::Milliseconds(300));
  }

  // The id: taken when nobody holds it, waited for while somebody does.
  auto journal = std::unique_ptr<EtcdJournal>(new EtcdJournal(options, client, lease, options.node_id, 0));
  const std::string owner_key = journal->Key("nodes", options.node_id);
  const std::string description = eo.owner_description.empty() ? DefaultOwnerDescription() : eo.owner_description;
  int64_t epoch = 0;
  for (;;) {
    TxnRequest txn;
    AddCompare(txn, owner_key, Compare::CREATE, Compare::EQUAL, 0);
    AddPut(txn.mutable_success(), owner_key, description, lease->id);
    AddPut(txn.mutable_success(), journal->Key("members", options.node_id), kActive);
    AddRange(txn.mutable_failure(), owner_key);
    absl::StatusOr<TxnResponse> resp = client->Txn(txn);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kUnavailable && absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(300));
        continue;  // an attempt that applied all the same is recognised by its lease below
      }
      (void)client->RevokeLease(lease->id);
      return resp.status();
    }
    if (resp->succeeded()) {
      epoch = resp->header().revision();
      break;
    }
    std::string holder = "another process";
    if (resp->responses_size() > 0 && resp->responses(0).response_range().kvs_size() > 0) {
      const auto& kv = resp->responses(0).response_range().kvs(0);
      if (kv.lease() == lease->id) {
        epoch = kv.create_revision();  // taken by an earlier attempt whose reply was lost
        break;
      }
      holder = absl::StrCat("\"", kv.value(), "\" (epoch ", kv.create_revision(), ")");
    }
    if (absl::Now() >= give_up) {
      (void)client->RevokeLease(lease->id);
      return absl::FailedPreconditionError(absl::StrCat(
          "journal: node id \"", options.node_id, "\" is held in etcd by ", holder, " and was not let go within ",
          absl::FormatDuration(eo.acquire_timeout),
          " (journal.etcd.acquire_timeout): two processes must never share a node id"));
    }
    // Waiting may outlast the lease: keep it.
    if (absl::StatusOr<absl::Duration> kept = client->KeepAlive(lease->id); !kept.ok()) return kept.status();
    absl::SleepFor(absl::Milliseconds(300));
  }

  journal = std::unique_ptr<EtcdJournal>(new EtcdJournal(options, client, lease, options.node_id, epoch));
  TXC_RETURN_IF_ERROR(journal->LoadState());
  journal->lease_thread_ = std::thread([j = journal.get()] {
    util::NameThisThread("txc-etcd-lease");
    j->LeaseLoop();
  });
  return journal;
}

void EtcdJournal::SetLeaseLostCallback(std::function<void(const absl::Status&)> callback) {
  absl::Status lost;
  {
    absl::MutexLock lock(&lease_->mu);
    if (lease_->lost.ok()) {
      lease_->on_lost = std::move(callback);
      return;
    }
    lost = lease_->lost;
  }
  callback(lost);
}

void EtcdJournal::LeaseLoop() {
  const absl::Duration period = lease_->ttl / 3;
  absl::Time last_kept = absl::Now();
  for (;;) {
    {
      absl::MutexLock lock(&lease_->mu);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(lease_->mu) { return lease_->stopping; };
      lease_->mu.AwaitWithTimeout(absl::Condition(&stop), period);
      if (lease_->stopping || !lease_->lost.ok()) return;
    }
    const absl::Time sent = absl::Now();
    absl::StatusOr<absl::Duration> kept = client_->KeepAlive(lease_->id);
    if (kept.ok()) {
      last_kept = sent;
    } else if (kept.status().code() == absl::StatusCode::kNotFound) {
      lease_->Lose(absl::FailedPreconditionError(absl::StrCat(
          "node \"", node_id_, "\" lost its etcd lease (it expired: ", kept.status().message(),
          "); its id may now be adopted by another node, so this process takes no decision")));
      return;
    } else if (absl::Now() - last_kept >= lease_->ttl) {
      // etcd unreachable for a whole TTL: the lease may have expired, or
      // etcd may have been down (it renews every lease when it elects a
      // leader again). Decisions wait until a keep-alive tells which; the
      // fence keeps every write safe meanwhile.
      lease_->unconfirmed.store(true);
    }
    if (kept.ok()) lease_->unconfirmed.store(false);
    if (unsettled_.load()) {
      absl::MutexLock lock(&write_mu_);
      (void)Settle();
    }
  }
}

void EtcdJournal::Fence(TxnRequest& txn, int64_t version) const {
  const std::string owner_key = Key("nodes", node_id_);
  AddCompare(txn, owner_key, Compare::CREATE, Compare::EQUAL, epoch_);
  if (version > 0) AddCompare(txn, owner_key, Compare::VERSION, Compare::EQUAL, version);
}

absl::Status EtcdJournal::RunFenced(TxnRequest& txn, TxnResponse* resp, int64_t version) {
  TXC_RETURN_IF_ERROR(lease_->Lost());
  Fence(txn, version);
  AddRange(txn.mutable_failure(), Key("nodes", node_id_));
  TXC_ASSIGN_OR_RETURN(TxnResponse got, client_->Txn(txn));
  if (!got.succeeded()) {
    // The owner key's range is the failure branch's last reply.
    const auto& range = got.responses(got.responses_size() - 1).response_range();
    if (range.kvs_size() == 0 || range.kvs(0).create_revision() != epoch_) {
      absl::Status fenced = absl::FailedPreconditionError(absl::StrCat(
          "node \"", node_id_, "\" epoch ", epoch_, " is fenced: its id in etcd is ",
          range.kvs_size() == 0 ? std::string("held by nobody")
                                : absl::StrCat("held by \"", range.kvs(0).value(), "\" (epoch ",
                                               range.kvs(0).create_revision(), ")"),
          "; nothing was written"));
      lease_->Lose(fenced);
      return DecisionNotWritten(fenced);
    }
  }
  if (resp != nullptr) *resp = std::move(got);
  return absl::OkStatus();
}

absl::Status EtcdJournal::DecisionWriteHealth() const {
  TXC_RETURN_IF_ERROR(lease_->Lost());
  if (lease_->unconfirmed.load()) {
    return absl::UnavailableError(absl::StrCat("etcd has not confirmed node \"", node_id_, "\"'s lease for ",
                                               absl::FormatDuration(lease_->ttl),
                                               " (journal.etcd.lease_ttl): no decision until it answers"));
  }
  if (unsettled_.load()) {
    return absl::UnavailableError(absl::StrCat(
        "a commit decision was sent to etcd without a reply; decisions wait until etcd answers again and its "
        "outcome is settled"));
  }
  return absl::OkStatus();
}

absl::Status EtcdJournal::Settle() {
  if (!unsettled_.load()) return absl::OkStatus();
  // A Put of the owner key (same value, same lease) bumps its version: a
  // decision Txn still in flight, fenced on the old version, cannot apply.
  TxnRequest txn;
  const std::string owner_key = Key("nodes", node_id_);
  AddCompare(txn, owner_key, Compare::VERSION, Compare::EQUAL, fence_version_);
  txn.add_success()->mutable_request_put()->set_key(owner_key);
  txn.mutable_success(0)->mutable_request_put()->set_ignore_value(true);
  txn.mutable_success(0)->mutable_request_put()->set_ignore_lease(true);
  AddRange(txn.mutable_success(), owner_key);
  TxnResponse resp;
  TXC_RETURN_IF_ERROR(RunFenced(txn, &resp));
  if (!resp.succeeded()) {
    // The version moved on without us: read it, then bump again next time.
    const auto& range = resp.responses(0).response_range();
    if (range.kvs_size() > 0) fence_version_ = range.kvs(0).version();
    return absl::UnavailableError("the decision fence moved; settling again");
  }
  fence_version_ = resp.responses(1).response_range().kvs(0).version();
  unsettled_.store(false);
  return absl::OkStatus();
}

absl::Status EtcdJournal::LogDecision(const DecisionRecord& record) {
  if (record.txn_id().empty()) return absl::InvalidArgumentError("decision record without txn_id");
  if (absl::Status lost = lease_->Lost(); !lost.ok()) return DecisionNotWritten(lost);
  DecisionWrite w;
  w.record = &record;
  if (!record.SerializeToString(&w.bytes)) return absl::InternalError("cannot serialize a decision record");
  w.ops = record.idempotency_key().empty() ? 1 : 2;
  return group_commit_.Submit(w);
}

size_t EtcdJournal::TakeGroup(const std::vector<const DecisionWrite*>& queued) const {
  size_t n = 0;
  int ops = 0;
  uint64_t bytes = 0;
  for (const DecisionWrite* x : queued) {
    const bool over_ops = ops + x->ops > options_.etcd.max_txn_ops - 2;
    if (n > 0 && (over_ops || bytes + x->bytes.size() > options_.etcd.max_txn_bytes)) break;
    ++n;
    ops += x->ops;
    bytes += x->bytes.size() + 128;
  }
  return n;
}

absl::Status EtcdJournal::WriteDecisions(const std::vector<const DecisionWrite*>& group) {
  if (absl::Status lost = lease_->Lost(); !lost.ok()) return DecisionNotWritten(lost);
  if (absl::Status settled = Settle(); !settled.ok()) {
    return DecisionNotWritten(absl::UnavailableError(absl::StrCat(
        "etcd: an earlier decision's outcome is not settled yet, so this one was not sent: ", settled.message())));
  }
  TXC_FAILPOINT_RETURN_IF_ERROR("journal.etcd.before_txn");
  TxnRequest txn;
  for (const DecisionWrite* w : group) {
    AddPut(txn.mutable_success(), DecisionKey(node_id_, w->record->txn_id()), w->bytes);
    if (!w->record->idempotency_key().empty()) {
      AddPut(txn.mutable_success(), absl::StrCat(options_.etcd.prefix, "keys/", w->record->idempotency_key()),
             w->record->txn_id());
    }
  }
  TxnResponse resp;
  absl::Status s = RunFenced(txn, &resp, fence_version_);
  if (s.ok() && !resp.succeeded()) {
    // Our own fence version was stale (cannot happen while write_mu_ is
    // held by every writer of the owner key; handled all the same).
    unsettled_.store(true);
    return DecisionNotWritten(absl::UnavailableError("etcd: the decision fence moved; not written"));
  }
  if (!s.ok()) {
    if (IsDecisionNotWritten(s) || s.code() == absl::StatusCode::kInvalidArgument ||
        s.code() == absl::StatusCode::kResourceExhausted || s.code() == absl::StatusCode::kPermissionDenied ||
        s.code() == absl::StatusCode::kUnauthenticated) {
      return DecisionNotWritten(s);  // refused: nothing applied
    }
    unsettled_.store(true);  // no reply: etcd may still apply it
    return s;
  }
  if (absl::Status lost_reply = TXC_FAILPOINT_STATUS("journal.etcd.after_txn"); !lost_reply.ok()) {
    unsettled_.store(true);  // as if the reply was lost: applied, but the caller cannot know
    return lost_reply;
  }
  decision_groups_.fetch_add(1, std::memory_order_relaxed);
  decisions_.fetch_add(group.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status EtcdJournal::UpdateDecision(const DecisionRecord& record) {
  std::string bytes;
  if (!record.SerializeToString(&bytes)) return absl::InternalError("cannot serialize a decision record");
  const std::string key = DecisionKey(node_id_, record.txn_id());
  TxnRequest txn;
  AddCompare(txn, key, Compare::CREATE, Compare::GREATER, 0);  // not finished meanwhile
  AddPut(txn.mutable_success(), key, std::move(bytes));
  return RunFenced(txn);
}

absl::Status EtcdJournal::MarkFinished(const DecisionRecord& final_record) {
  return WriteFinished({final_record}, /*known_new=*/false);
}
absl::Status EtcdJournal::MarkFinishedMany(const std::vector<DecisionRecord>& final_records) {
  return WriteFinished(final_records, /*known_new=*/false);
}
absl::Status EtcdJournal::RecordFinished(const DecisionRecord& record) {
  return WriteFinished({record}, /*known_new=*/true);
}

absl::Status EtcdJournal::WriteFinished(const std::vector<DecisionRecord>& records, bool known_new) {
  const size_t per_txn = static_cast<size_t>(std::max(1, (options_.etcd.max_txn_ops - 2) / 4));
  for (size_t begin = 0; begin < records.size(); begin += per_txn) {
    const size_t end = std::min(records.size(), begin + per_txn);
    TxnRequest txn;
    std::vector<int> history_ops;
    for (size_t i = begin; i < end; ++i) {
      const DecisionRecord& r = records[i];
      if (r.txn_id().empty()) return absl::InvalidArgumentError("decision record without txn_id");
      std::string bytes;
      if (!r.SerializeToString(&bytes)) return absl::InternalError("cannot serialize a decision record");
      if (!known_new) AddDelete(txn.mutable_success(), DecisionKey(node_id_, r.txn_id()));
      history_ops.push_back(txn.success_size());
      AddPut(txn.mutable_success(), HistoryKey(node_id_, r.txn_id()), std::move(bytes), 0, /*prev_kv=*/true);
      AddPut(txn.mutable_success(), TimeKey(node_id_, r.finished_at_unix_micros(), r.txn_id()), r.idempotency_key());
      if (!r.idempotency_key().empty()) {
        AddPut(txn.mutable_success(), absl::StrCat(options_.etcd.prefix, "keys/", r.idempotency_key()), r.txn_id());
      }
    }
    TxnResponse resp;
    TXC_RETURN_IF_ERROR(RunFenced(txn, &resp));
    int64_t added = 0;
    for (int op : history_ops) {
      if (!resp.responses(op).response_put().has_prev_kv()) ++added;
    }
    absl::MutexLock lock(&history_mu_);
    finished_count_ += added;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdJournal::ReadAll(const std::string& prefix, bool keys_only) {
  std::vector<EtcdKeyValue> out;
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(EtcdClient::PrefixEnd(prefix));
  req.set_limit(500);
  req.set_keys_only(keys_only);
  for (;;) {
    TXC_ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, client_->Range(req));
    for (const auto& kv : resp.kvs()) {
      out.push_back(EtcdKeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(),
                                 kv.lease()});
    }
    if (!resp.more() || resp.kvs_size() == 0) return out;
    req.set_key(After(out.back().key));
  }
}

absl::StatusOr<DecisionRecord> EtcdJournal::Parse(const EtcdKeyValue& kv) const {
  DecisionRecord r;
  if (!r.ParseFromString(kv.value) || r.txn_id().empty()) {
    return absl::DataLossError(absl::StrCat("etcd key ", kv.key, " does not hold a readable decision record"));
  }
  if (r.schema_version() > kSchemaVersion) {
    return absl::DataLossError(absl::StrCat("etcd key ", kv.key, " has schema version ", r.schema_version(),
                                            "; this txcoord reads up to ", kSchemaVersion));
  }
  return r;
}

absl::StatusOr<std::vector<DecisionRecord>> EtcdJournal::ScanUnfinished() {
  TXC_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs, ReadAll(DecisionKey(node_id_, "")));
  std::vector<DecisionRecord> out;
  out.reserve(kvs.size());
  for (const EtcdKeyValue& kv : kvs) {
    TXC_ASSIGN_OR_RETURN(DecisionRecord r, Parse(kv));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::optional<DecisionRecord>> EtcdJournal::Find(absl::string_view txn_id) {
  return FindOnNode(node_id_, txn_id);
}

absl::StatusOr<std::optional<DecisionRecord>> EtcdJournal::FindOnNode(absl::string_view node,
                                                                     absl::string_view txn_id) {
  // Unfinished first: a record moves from there to the history, never back.
  for (const std::string& key : {DecisionKey(node, txn_id), HistoryKey(node, txn_id)}) {
    TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, client_->Get(key));
    if (kv.has_value()) {
      TXC_ASSIGN_OR_RETURN(DecisionRecord r, Parse(*kv));
      return std::optional<DecisionRecord>(std::move(r));
    }
  }
  return std::optional<DecisionRecord>();
}

absl::StatusOr<std::optional<std::string>> EtcdJournal::FindIdempotencyKey(absl::string_view key) {
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, client_->Get(absl::StrCat(options_.etcd.prefix, "keys/", key)));
  if (!kv.has_value()) return std::optional<std::string>();
  return std::optional<std::string>(kv->value);
}

absl::StatusOr<std::optional<std::string>> EtcdJournal::ReserveIdempotencyKey(absl::string_view key,
                                                                               absl::string_view txn_id) {
  const std::string k = absl::StrCat(options_.etcd.prefix, "keys/", key);
  TxnRequest txn;
  AddCompare(txn, k, Compare::CREATE, Compare::EQUAL, 0);
  AddPut(txn.mutable_success(), k, std::string(txn_id));
  AddRange(txn.mutable_failure(), k);
  TXC_ASSIGN_OR_RETURN(TxnResponse resp, client_->Txn(txn));
  if (resp.succeeded()) return std::optional<std::string>();
  const auto& range = resp.responses(0).response_range();
  if (range.kvs_size() == 0) return absl::UnavailableError("etcd: the idempotency key vanished while taken; retry");
  return std::optional<std::string>(range.kvs(0).value());
}

absl::StatusOr<std::vector<DecisionRecord>> EtcdJournal::ListFinished(absl::Time before, int limit) {
  const std::string prefix = Key("htime", node_id_) + "/";
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(before == absl::InfiniteFuture()
                        ? EtcdClient::PrefixEnd(prefix)
                        : absl::StrCat(prefix, absl::StrFormat("%016x", std::max<int64_t>(0, absl::ToUnixMicros(before)))));
  req.set_limit(std::max(1, limit));
  req.set_sort_order(2);   // DESCEND
  req.set_sort_target(0);  // KEY
  TXC_ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, client_->Range(req));
  std::vector<DecisionRecord> out;
  for (const auto& kv : resp.kvs()) {
    const std::string txn = kv.key().substr(kv.key().rfind('/') + 1);
    TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> record, client_->Get(HistoryKey(node_id_, txn)));
    if (!record.has_value()) continue;  // collected meanwhile
    TXC_ASSIGN_OR_RETURN(DecisionRecord r, Parse(*record));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<int64_t> EtcdJournal::CollectGarbage(absl::Time now, const CollectedMarkerFold& fold) {
  absl::MutexLock gc_lock(&gc_mu_);
  const Retention& retention = options_.retention;
  const int64_t excess = finished_count() - retention.finished_max;
  const int64_t cutoff = absl::ToUnixMicros(now - retention.finished_max_age);
  const std::string prefix = Key("htime", node_id_) + "/";
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(EtcdClient::PrefixEnd(prefix));
  req.set_limit(std::max<int64_t>(1, retention.max_per_pass));
  TXC_ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, client_->Range(req));
  struct Doomed {
    std::string time_key, txn, idempotency_key;
  };
  std::vector<Doomed> doomed;
  for (int i = 0; i < resp.kvs_size(); ++i) {
    const auto& kv = resp.kvs(i);
    absl::string_view rest = absl::string_view(kv.key()).substr(prefix.size());
    int64_t micros = 0;
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos || !absl::SimpleHexAtoi(rest.substr(0, slash), &micros)) continue;
    if (i >= excess && micros >= cutoff) break;
    doomed.push_back({kv.key(), std::string(rest.substr(slash + 1)), kv.value()});
  }
  std::string marker = CollectedMarker();
  const size_t per_txn = static_cast<size_t>(std::max(1, (options_.etcd.max_txn_ops - 3) / 3));
  int64_t deleted = 0;
  for (size_t begin = 0; begin < doomed.size(); begin += per_txn) {
    const size_t end = std::min(doomed.size(), begin + per_txn);
    TxnRequest txn;
    std::vector<int> history_ops;
    for (size_t i = begin; i < end; ++i) {
      history_ops.push_back(txn.success_size());
      AddDelete(txn.mutable_success(), HistoryKey(node_id_, doomed[i].txn));
      AddDelete(txn.mutable_success(), doomed[i].time_key);
      if (!doomed[i].idempotency_key.empty()) {
        AddDelete(txn.mutable_success(), absl::StrCat(options_.etcd.prefix, "keys/", doomed[i].idempotency_key));
      }
      if (fold) marker = fold(marker, doomed[i].txn);
    }
    if (fold) AddPut(txn.mutable_success(), Key("collected", node_id_), marker);
    TXC_RETURN_IF_ERROR(TXC_FAILPOINT_STATUS("journal.collect_garbage_write"));
    TxnResponse done;
    TXC_RETURN_IF_ERROR(RunFenced(txn, &done));
    int64_t gone = 0;
    for (int op : history_ops) gone += done.responses(op).response_delete_range().deleted();
    {
      absl::MutexLock lock(&history_mu_);
      finished_count_ -= gone;
    }
    if (fold) {
      absl::MutexLock lock(&marker_mu_);
      collected_marker_ = marker;
    }
    deleted += static_cast<int64_t>(end - begin);
  }
  return deleted;
}

std::string EtcdJournal::CollectedMarker() const {
  absl::MutexLock lock(&marker_mu_);
  return collected_marker_;
}

absl::StatusOr<std::string> EtcdJournal::CollectedMarkerOf(absl::string_view node) {
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, client_->Get(Key("collected", node)));
  return kv.has_value() ? kv->value : std::string();
}

int64_t EtcdJournal::finished_count() const {
  absl::MutexLock lock(&history_mu_);
  return finished_count_;
}

JournalStats EtcdJournal::Stats() const {
  JournalStats s;
  s.decision_groups = decision_groups_.load(std::memory_order_relaxed);
  s.decisions = decisions_.load(std::memory_order_relaxed);
  return s;
}

absl::StatusOr<int64_t> EtcdJournal::CountPrefix(const std::string& prefix) {
  etcdserverpb::RangeRequest count;
  count.set_key(prefix);
  count.set_range_end(EtcdClient::PrefixEnd(prefix));
  count.set_count_only(true);
  TXC_ASSIGN_OR_RETURN(etcdserverpb::RangeResponse counted, client_->Range(count));
  return counted.count();
}

absl::Status EtcdJournal::LoadState() {
  TXC_ASSIGN_OR_RETURN(int64_t finished, CountPrefix(HistoryKey(node_id_, "")));
  TXC_ASSIGN_OR_RETURN(std::string marker, CollectedMarkerOf(node_id_));
  {
    absl::MutexLock lock(&history_mu_);
    finished_count_ = finished;
  }
  absl::MutexLock lock(&marker_mu_);
  collected_marker_ = std::move(marker);
  return absl::OkStatus();
}

namespace {
// What a node's member, owner and adopter keys say of it.
void ReadMember(const EtcdKeyValue& kv, NodeStatus& n) {
  n.member = true;
  n.settled = kv.value == kSettled;
}
void ReadOwner(const EtcdKeyValue& kv, NodeStatus& n) {
  n.epoch = kv.create_revision;
  n.lease = kv.lease;
  n.holder = kv.value;
}
}  // namespace

absl::StatusOr<std::vector<NodeStatus>> EtcdJournal::NodeTable(bool count_unfinished) {
  TXC_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> members, ReadAll(options_.etcd.prefix + "members/"));
  TXC_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> owners, ReadAll(options_.etcd.prefix + "nodes/"));
  TXC_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> adopters, ReadAll(options_.etcd.prefix + "adopt/"));
  TXC_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> addresses, ReadAll(options_.etcd.prefix + "addresses/"));
  std::map<std::string, NodeStatus> nodes;
  auto id_of = [](const std::string& key) { return key.substr(key.rfind('/') + 1); };
  for (const EtcdKeyValue& kv : members) ReadMember(kv, nodes[id_of(kv.key)]);
  for (const EtcdKeyValue& kv : owners) ReadOwner(kv, nodes[id_of(kv.key)]);
  for (const EtcdKeyValue& kv : adopters) nodes[id_of(kv.key)].adopted_by = kv.value;
  for (const EtcdKeyValue& kv : addresses) {
    auto it = nodes.find(id_of(kv.key));
    if (it != nodes.end()) it->second.address = kv.value;
  }
  std::vector<NodeStatus> out;
  for (auto& [id, n] : nodes) {
    n.node_id = id;
    if (count_unfinished) {
      TXC_ASSIGN_OR_RETURN(n.unfinished, CountPrefix(DecisionKey(id, "")));
    }
    out.push_back(std::move(n));
  }
  return out;
}

absl::StatusOr<std::vector<NodeStatus>> EtcdJournal::ListNodes() { return NodeTable(/*count_unfinished=*/true); }

absl::StatusOr<NodeStatus> EtcdJournal::NodeOf(absl::string_view node) {
  NodeStatus n;
  n.node_id = std::string(node);
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> member, client_->Get(Key("members", node)));
  if (!member.has_value()) {
    return absl::NotFoundError(absl::StrCat("node \"", node, "\" has never joined this cluster (journal.etcd.prefix ",
                                            options_.etcd.prefix, ")"));
  }
  ReadMember(*member, n);
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> owner, client_->Get(Key("nodes", node)));
  if (owner.has_value()) ReadOwner(*owner, n);
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> adopter, client_->Get(Key("adopt", node)));
  if (adopter.has_value()) n.adopted_by = adopter->value;
  TXC_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> address, client_->Get(Key("addresses", node)));
  if (address.has_value()) n.address = address->value;
  TXC_ASSIGN_OR_RETURN(n.unfinished, CountPrefix(DecisionKey(node, "")));
  return n;
}

absl::Status EtcdJournal::Advertise(const std::string& address) {
  if (!owner_) return absl::FailedPreconditionError("an adopter's journal advertises no address");
  return client_->Put(Key("addresses", node_id_), address, lease_->id).status();
}

absl::StatusOr<std::vector<std::string>> EtcdJournal::Orphans() {
  TXC_ASSIGN_OR_RETURN(std::vector<NodeStatus> all, NodeTable(/*count_unfinished=*/false));
  std::vector<std::string> out;
  for (const NodeStatus& n : all) {
    if (n.member && !n.settled && n.epoch == 0 && n.adopted_by.empty() && n.node_id != node_id_) {
      out.push_back(n.node_id);
    }
  }
  return out;
}

absl::StatusOr<std::optional<int64_t>> EtcdJournal::TryAdopt(const std::string& node) {
  TXC_RETURN_IF_ERROR(lease_->Lost());
  const std::string owner_key = Key("nodes", node);
  const std::string adopt_key = Key("adopt", node);
  TxnRequest txn;
  AddCompare(txn, owner_key, Compare::CREATE, Compare::EQUAL, 0);
  AddCompare(txn, adopt_key, Compare::CREATE, Compare::EQUAL, 0);
  AddCompare(txn, Key("members", node), Compare::VALUE, Compare::EQUAL, 0, kActive);
  AddPut(txn.mutable_success(), adopt_key, node_id_, lease_->id);
  AddPut(txn.mutable_success(), owner_key, absl::StrCat(kAdoptedBy, node_id_), lease_->id);
  TXC_ASSIGN_OR_RETURN(TxnResponse resp, client_->Txn(txn));
  if (!resp.succeeded()) return std::optional<int64_t>();
  return std::optional<int64_t>(resp.header().revision());
}

absl::StatusOr<std::unique_ptr<EtcdJournal>> EtcdJournal::Attach(const std::string& node, int64_t epoch) {
  auto attached = std::unique_ptr<EtcdJournal>(new EtcdJournal(options_, client_, lease_, node, epoch));
  TXC_RETURN_IF_ERROR(attached->LoadState());
  return attached;
}

absl::Status EtcdJournal::ReleaseAdopted(const std::string& node, int64_t epoch, bool settled) {
  TxnRequest txn;
  AddCompare(txn, Key("nodes", node), Compare::CREATE, Compare::EQUAL, epoch);
  AddDelete(txn.mutable_success(), Key("nodes", node));
  AddDelete(txn.mutable_success(), Key("adopt", node));
  if (settled) AddPut(txn.mutable_success(), Key("members", node), kSettled);
  TXC_ASSIGN_OR_RETURN(TxnResponse resp, client_->Txn(txn));
  if (!resp.succeeded()) {
    return absl::FailedPreconditionError(absl::StrCat("node \"", node, "\" epoch ", epoch,
                                                      " is no longer held by this adoption"));
  }
  return absl::OkStatus();
}

absl::Status EtcdJournal::Leave() {
  if (!owner_) return absl::OkStatus();
  absl::Status s;
  if (!unsettled_.load()) {
    absl::StatusOr<std::vector<DecisionRecord>> unfinished = ScanUnfinished();
    if (unfinished.ok() && unfinished->empty()) {
      TxnRequest txn;
      AddPut(txn.mutable_success(), Key("members", node_id_), kSettled);
      s = RunFenced(txn);
    }
  }
  if (lease_thread_.joinable()) {
    {
      absl::MutexLock lock(&lease_->mu);
      lease_->stopping = true;
    }
    lease_thread_.join();
  }
  {
    absl::MutexLock lock(&lease_->mu);
    lease_->on_lost = nullptr;  // leaving is not losing
  }
  absl::Status revoked = client_->RevokeLease(lease_->id);
  lease_->Lose(absl::FailedPreconditionError(absl::StrCat("node \"", node_id_, "\" has left the cluster")));
  return s.ok() ? revoked : s;
}

}  // namespace txcoord::journal
