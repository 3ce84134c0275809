// The Journal on RocksDB.
//
// Column families:
//   default          "node" → NodeIdentity
//   unfinished       txn id → DecisionRecord (no END yet)
//   history          txn id → DecisionRecord (finished)
//   history_by_time  big-endian finished_at µs + txn id → "" (GC order)
//
//   default also holds "decision_log_applied" → the sequence number (8 bytes,
//   big-endian) of the last decision-log group written to `unfinished`.
//
// Group commit: LogDecision callers queue up; the first in line (the
// leader) writes every queued record as one group, then hands the lead to
// the next writer in line and the shared result to the others, each woken
// on its own futex word (LevelDB's writer queue, without the condition
// variables' mutex hand-over). One fsync thus covers up to
// JournalOptions::max_group_size decisions.
//
// Where the group becomes durable (JournalOptions::decision_log):
// - decision log (default): the group is appended to decisions.log and
//   fdatasynced (DecisionLog), then written to `unfinished` with the
//   applied sequence number, in one RocksDB WriteBatch *without* sync.
//   RocksDB recovers a prefix of its writes after a power loss, so at open
//   every decision-log entry above the recovered applied number is missing
//   from `unfinished` — and nothing written after it (its END, its
//   withdrawal) survived either: those entries are written back, synced.
//   Before a lap of the decision log overwrites the previous one, RocksDB's
//   WAL is synced (SyncWAL), so the old lap is durable there.
//   A group of more than 32 KiB is written to RocksDB with sync=true
//   instead (per-byte costs dominate it; see WriteGroup).
// - RocksDB only: one WriteBatch with sync=true.
#ifndef TXCOORD_JOURNAL_ROCKSDB_JOURNAL_H_
#define TXCOORD_JOURNAL_ROCKSDB_JOURNAL_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "journal/decision_log.h"
#include "journal/group_commit.h"
#include "journal/journal.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace txcoord::journal {

class RocksDbJournal final : public Journal {
 public:
  // Use OpenRocksDbJournal().
  RocksDbJournal(JournalOptions options, std::unique_ptr<rocksdb::DB> db,
                 std::vector<rocksdb::ColumnFamilyHandle*> handles);
  ~RocksDbJournal() override;

  // Reads the node identity, checks it, stores epoch + 1 (synced), counts
  // history and validates every unfinished record.
  absl::Status Initialize();

  const std::string& node_id() const override { return options_.node_id; }
  uint64_t epoch() const override { return epoch_; }
  absl::Status LogDecision(const DecisionRecord& record) override;
  absl::Status UpdateDecision(const DecisionRecord& record) override;
  absl::Status MarkFinished(const DecisionRecord& final_record) override;
  absl::Status MarkFinishedMany(const std::vector<DecisionRecord>& final_records) override;
  absl::Status MarkDecidedFinished(const std::vector<DecisionRecord>& final_records) override;
  absl::Status RecordFinished(const DecisionRecord& record) override;
  absl::Status Sync() override;
  absl::Status DecisionWriteHealth() const override;
  absl::StatusOr<std::vector<DecisionRecord>> ScanUnfinished() override;
  absl::StatusOr<std::optional<DecisionRecord>> Find(
      absl::string_view txn_id) override;
  absl::StatusOr<std::optional<std::string>> FindIdempotencyKey(absl::string_view key) override;
  absl::StatusOr<std::vector<DecisionRecord>> ListFinished(absl::Time before,
                                                           int limit) override;
  absl::StatusOr<int64_t> CollectGarbage(absl::Time now, const CollectedMarkerFold& fold = nullptr) override;
  std::string CollectedMarker() const override;
  int64_t finished_count() const override;
  JournalStats Stats() const override;

 private:
  // What a finished record may replace: anything (an END replayed after a
  // crash, an operator's note on a finished transaction: the history is
  // read for an earlier entry), only its unfinished record
  // (MarkDecidedFinished), or nothing (RecordFinished).
  enum class Earlier { kAny, kUnfinishedOnly, kNone };
  absl::Status WriteFinished(const DecisionRecord* records, size_t n, Earlier earlier);
  // A decision queued for the group commit.
  struct DecisionWrite {
    std::string key;
    std::string value;
    std::string idempotency_key;  // the record's, or ""
  };

  rocksdb::ColumnFamilyHandle* meta() const { return handles_[0]; }
  rocksdb::ColumnFamilyHandle* unfinished() const { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* history() const { return handles_[2]; }
  rocksdb::ColumnFamilyHandle* history_by_time() const { return handles_[3]; }
  // Idempotency key → txn id, for records that carry one; history_by_time's
  // value is the record's key, so that the retention deletes both.
  rocksdb::ColumnFamilyHandle* idempotency_keys() const { return handles_[4]; }

  // How many of the queued decisions share the next group:
  // JournalOptions::max_group_size, and what the decision log takes.
  size_t TakeGroup(const std::vector<const DecisionWrite*>& queued) const;
  // Writes one group (its fault points around WriteGroupDurably), counting
  // it when written.
  absl::Status WriteGroup(const std::vector<const DecisionWrite*>& group) ABSL_LOCKS_EXCLUDED(log_mu_);
  // Writes one group durably (see the file comment) and into `unfinished`.
  absl::Status WriteGroupDurably(const std::vector<const DecisionWrite*>& group) ABSL_LOCKS_EXCLUDED(log_mu_);
  // Records `s`, a failed decision-log or index write, as the reason every
  // later group is refused; returns `s`.
  absl::Status Fail(absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_mu_)
      ABSL_LOCKS_EXCLUDED(failure_mu_);
  // Opens the decision log and writes back what RocksDB lost of it; then
  // starts its next lap, or removes it when the decision log is off.
  absl::Status RecoverDecisionLog();
  std::string DecisionLogPath() const;

  absl::StatusOr<DecisionRecord> Parse(absl::string_view cf,
                                       absl::string_view key,
                                       const std::string& value) const;

  const JournalOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  uint64_t epoch_ = 0;

  // The group commit (journal/group_commit.h): a group of queued decisions
  // shares one write and sync (WriteGroup).
  GroupCommit<DecisionWrite> group_commit_;

  // The decision log (null when JournalOptions::decision_log is false).
  // Held by a group's leader across its writes (the group commit's queue
  // lock is not held meanwhile).
  absl::Mutex log_mu_;
  std::unique_ptr<DecisionLog> decision_log_ ABSL_GUARDED_BY(log_mu_);
  uint64_t max_group_payload_ = 0;  // set by Initialize, then read-only
  uint64_t next_seq_ ABSL_GUARDED_BY(log_mu_) = 1;
  // Not OK after a failed decision-log or index write: the log's tail is
  // then unknown, so no later group may follow it (restart to recover).
  // Its own mutex, never held across I/O: DecisionWriteHealth is asked at
  // every two-phase commit and must not wait for a group's fsync. Lock
  // order: log_mu_, then failure_mu_.
  mutable absl::Mutex failure_mu_;
  absl::Status log_failure_ ABSL_GUARDED_BY(failure_mu_);

  // Stats(): written by a group's leader, read by anyone.
  std::atomic<uint64_t> decision_groups_{0};
  std::atomic<uint64_t> decisions_{0};
  std::atomic<uint64_t> decision_log_laps_{0};

  // Guards finished_count_, kept exact by MarkFinished and CollectGarbage.
  // Lock order: gc_mu_, then history_mu_ or marker_mu_.
  mutable absl::Mutex history_mu_;
  int64_t finished_count_ ABSL_GUARDED_BY(history_mu_) = 0;
  // One CollectGarbage at a time; where the last pass stopped (a
  // history_by_time key; "" after an open: the first key).
  absl::Mutex gc_mu_;
  std::string gc_from_ ABSL_GUARDED_BY(gc_mu_);
  mutable absl::Mutex marker_mu_;
  std::string collected_marker_ ABSL_GUARDED_BY(marker_mu_);
};

}  // namespace txcoord::journal

#endif  // TXCOORD_JOURNAL_ROCKSDB_JOURNAL_H_
