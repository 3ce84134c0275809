// The Journal on etcd: cluster mode (journal.backend: etcd).
//
// Keyspace, under EtcdJournalOptions::prefix (P):
//   P nodes/<id>                 the id's owner key, on the holder's lease; its
//                                create_revision is the holder's epoch
//   P members/<id>               "active" while the id has work that a survivor
//                                must finish if its process dies; "settled" after
//                                a clean stop or a finished adoption
//   P adopt/<id>                 the adopting node, on the adopter's lease
//   P decisions/<id>/<txn>       an unfinished DecisionRecord
//   P history/<id>/<txn>         a finished DecisionRecord
//   P htime/<id>/<µs hex>/<txn>  the history in finishing order; the value is
//                                the record's idempotency key (retention)
//   P keys/<idempotency key>     the txn id recorded with that key
//   P collected/<id>             CollectGarbage's marker
//
// Fencing: every write is one etcd Txn that applies only while
// create_revision(nodes/<id>) equals this journal's epoch, so a process that
// lost its id (its lease expired, an adopter took the id) can never write.
// Decisions are also fenced on the owner key's version: a decision Txn whose
// reply never came may still be applied by etcd later, so before the next
// decision (or at the next lease tick) the journal bumps that version with a
// Put of the owner key; from then on the lost Txn can never apply, and Find
// answers for it for good (SettlesFailedDecisions). Until then
// DecisionWriteHealth is UNAVAILABLE.
//
// Group commit: concurrent LogDecision calls share one Txn (within
// max_txn_ops and max_txn_bytes); etcd makes it durable on a quorum before
// it answers.
//
// The lease: kept alive every lease_ttl / 3. When etcd says it expired (or
// a write finds the id fenced), the journal stops taking decisions for good
// (DecisionWriteHealth FAILED_PRECONDITION) and calls the lease-lost
// callback: the process must stop and start again, taking its id with a
// new epoch once whoever holds it lets go. While no keep-alive has
// succeeded for a whole TTL (etcd unreachable: the lease may have expired,
// or etcd was down, and etcd renews every lease when it elects a leader
// again), DecisionWriteHealth is UNAVAILABLE until one does.
//
// Adoption: a survivor finds a member whose id nobody holds (Orphans),
// takes it (TryAdopt: adopt/<id> and nodes/<id> on its own lease, a new
// epoch that fences the dead process), recovers it through an attached
// journal (Attach) that writes as that node, and gives it back
// (ReleaseAdopted).
#ifndef TXCOORD_JOURNAL_ETCD_JOURNAL_H_
#define TXCOORD_JOURNAL_ETCD_JOURNAL_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "journal/etcd_client.h"
#include "journal/group_commit.h"
#include "journal/journal.h"

namespace txcoord::journal {

class EtcdJournal final : public Journal {
 public:
  // The lease a process holds, shared with the journals it attaches.
  struct Lease;

  // Joins the cluster as options.node_id: grants a lease, takes
  // nodes/<id> (waiting up to acquire_timeout while another process or an
  // adopter holds it, or while etcd cannot be reached), marks the id an
  // active member, counts its history and starts keeping the lease alive.
  // Errors: INVALID_ARGUMENT bad options; FAILED_PRECONDITION the id stayed
  // held (the message names the holder); UNAVAILABLE etcd unreachable.
  static absl::StatusOr<std::unique_ptr<EtcdJournal>> Open(const JournalOptions& options);

  ~EtcdJournal() override;

  const std::string& node_id() const override { return node_id_; }
  uint64_t epoch() const override { return static_cast<uint64_t>(epoch_); }
  absl::Status LogDecision(const DecisionRecord& record) override;
  absl::Status UpdateDecision(const DecisionRecord& record) override;
  absl::Status MarkFinished(const DecisionRecord& final_record) override;
  absl::Status MarkFinishedMany(const std::vector<DecisionRecord>& final_records) override;
  absl::Status RecordFinished(const DecisionRecord& record) override;
  absl::Status DecisionWriteHealth() const override;
  absl::Status Sync() override { return absl::OkStatus(); }  // every write returns durable
  absl::StatusOr<std::vector<DecisionRecord>> ScanUnfinished() override;
  absl::StatusOr<std::optional<DecisionRecord>> Find(absl::string_view txn_id) override;
  absl::StatusOr<std::optional<std::string>> FindIdempotencyKey(absl::string_view key) override;
  absl::StatusOr<std::optional<std::string>> ReserveIdempotencyKey(absl::string_view key,
                                                                   absl::string_view txn_id) override;
  absl::StatusOr<std::vector<DecisionRecord>> ListFinished(absl::Time before, int limit) override;
  absl::StatusOr<int64_t> CollectGarbage(absl::Time now, const CollectedMarkerFold& fold = nullptr) override;
  std::string CollectedMarker() const override;
  int64_t finished_count() const override;
  JournalStats Stats() const override;
  bool SettlesFailedDecisions() const override { return true; }
  bool clustered() const override { return true; }
  absl::StatusOr<std::optional<DecisionRecord>> FindOnNode(absl::string_view node,
                                                           absl::string_view txn_id) override;
  // addresses/<id>, under this process's lease: gone with it.
  absl::Status Advertise(const std::string& address) override;
  absl::StatusOr<NodeStatus> NodeOf(absl::string_view node) override;
  absl::StatusOr<std::vector<NodeStatus>> ListNodes() override;
  absl::StatusOr<std::string> CollectedMarkerOf(absl::string_view node) override;

  // Called once, from the lease thread, when the lease is lost.
  void SetLeaseLostCallback(std::function<void(const absl::Status&)> callback);

  // Members whose id nobody holds and that are not settled: their process
  // died (or lost its lease) with work a survivor must finish.
  absl::StatusOr<std::vector<std::string>> Orphans();
  // Takes `node`'s id on this process's lease when it is still an orphan;
  // returns the new epoch, or nullopt when another survivor (or the node
  // itself) was first.
  absl::StatusOr<std::optional<int64_t>> TryAdopt(const std::string& node);
  // A journal that writes as `node` at `epoch` (from TryAdopt), on this
  // process's lease. Use it only while this journal lives.
  absl::StatusOr<std::unique_ptr<EtcdJournal>> Attach(const std::string& node, int64_t epoch);
  // Ends an adoption: `node`'s id is let go and the node marked settled
  // (when `settled`; otherwise it stays an orphan, to be adopted again).
  absl::Status ReleaseAdopted(const std::string& node, int64_t epoch, bool settled);

  // A clean stop: marks this node settled when it has no unfinished
  // decision, and revokes the lease (which lets the id go at once).
  absl::Status Leave();

 private:
  // A decision queued for the group commit.
  struct DecisionWrite {
    const DecisionRecord* record = nullptr;
    std::string bytes;  // the record serialized
    int ops = 1;        // the Txn operations it takes
  };
  EtcdJournal(const JournalOptions& options, std::shared_ptr<EtcdClient> client, std::shared_ptr<Lease> lease,
              std::string node_id, int64_t epoch);

  // Key names.
  std::string Key(absl::string_view kind, absl::string_view node) const;
  std::string DecisionKey(absl::string_view node, absl::string_view txn) const;
  std::string HistoryKey(absl::string_view node, absl::string_view txn) const;
  std::string TimeKey(absl::string_view node, int64_t micros, absl::string_view txn) const;

  // Adds the fence (the owner key's create_revision is epoch_) to `txn`;
  // with `version`, also the version decision writes are fenced on.
  void Fence(etcdserverpb::TxnRequest& txn, int64_t version) const;
  // Runs a fenced Txn. A refused fence means the id is lost: the journal
  // stops (LoseLease) and FAILED_PRECONDITION is returned, marked
  // DecisionNotWritten.
  absl::Status RunFenced(etcdserverpb::TxnRequest& txn, etcdserverpb::TxnResponse* resp = nullptr,
                         int64_t version = 0);
  // How many of the queued decisions share the next Txn: within etcd's
  // limits on a Txn's operations and bytes.
  size_t TakeGroup(const std::vector<const DecisionWrite*>& queued) const;
  // Writes one group of decisions in one Txn (the group commit's leader).
  absl::Status WriteDecisions(const std::vector<const DecisionWrite*>& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // After a decision Txn without reply: bumps the owner key's version so
  // that it can never apply. OK when nothing is unsettled.
  absl::Status Settle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status WriteFinished(const std::vector<DecisionRecord>& records, bool known_new);
  absl::StatusOr<std::vector<EtcdKeyValue>> ReadAll(const std::string& prefix, bool keys_only = false);
  absl::StatusOr<int64_t> CountPrefix(const std::string& prefix);
  // Reads this journal's history count and retention marker (at open).
  absl::Status LoadState();
  // Every node from the members/, nodes/ and adopt/ keys; with their
  // unfinished decisions counted when asked (one read per node).
  absl::StatusOr<std::vector<NodeStatus>> NodeTable(bool count_unfinished);
  absl::StatusOr<DecisionRecord> Parse(const EtcdKeyValue& kv) const;
  void LeaseLoop();

  const JournalOptions options_;
  const std::shared_ptr<EtcdClient> client_;
  const std::shared_ptr<Lease> lease_;
  const std::string node_id_;
  const int64_t epoch_;
  const bool owner_;  // holds its own lease (Open), not attached

  // The group commit (journal/group_commit.h): queued decisions share one
  // Txn; a caller on a fiber waits without holding its loop's thread.
  GroupCommit<DecisionWrite> group_commit_;
  // Held by the leader of a decision group, and by Settle.
  absl::Mutex write_mu_;
  int64_t fence_version_ ABSL_GUARDED_BY(write_mu_) = 1;
  // A decision Txn went without reply and Settle has not run since.
  std::atomic<bool> unsettled_{false};

  mutable absl::Mutex history_mu_;
  int64_t finished_count_ ABSL_GUARDED_BY(history_mu_) = 0;
  absl::Mutex gc_mu_;
  mutable absl::Mutex marker_mu_;
  std::string collected_marker_ ABSL_GUARDED_BY(marker_mu_);

  std::atomic<uint64_t> decision_groups_{0};
  std::atomic<uint64_t> decisions_{0};

  std::thread lease_thread_;  // owner only
};

}  // namespace txcoord::journal

#endif  // TXCOORD_JOURNAL_ETCD_JOURNAL_H_
