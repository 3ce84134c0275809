// The journal: txcoord's durable memory of commit decisions.
//
// Presumed abort: only COMMIT decisions (and operators' resolutions) are
// written. A transaction without a record aborted. A record lives in the
// "unfinished" set from LogDecision until MarkFinished, then in a history
// kept for a configurable retention, then it is deleted.
//
// Thread safety: every method is thread-safe.
#ifndef TXCOORD_JOURNAL_JOURNAL_H_
#define TXCOORD_JOURNAL_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "journal/etcd_client.h"
#include "journal/journal.pb.h"

namespace txcoord::journal {

inline constexpr uint32_t kSchemaVersion = 1;

struct Retention {
  int64_t finished_max = 100000;                  // history records kept at most
  absl::Duration finished_max_age = absl::Hours(24 * 7);
  int64_t max_per_pass = 10000;                   // records one CollectGarbage call deletes at most
};

// CollectGarbage's marker: given the marker so far ("" at first) and the id
// of a record being deleted, the marker after it (e.g. the newest id
// collected). Stored in the same writes as the deletions.
using CollectedMarkerFold = std::function<std::string(const std::string& marker, absl::string_view txn_id)>;

// Where the journal keeps its records.
enum class Backend { kRocksDb, kEtcd };

// The cluster journal on etcd (journal.backend: etcd; see etcd_journal.h).
struct EtcdJournalOptions {
  EtcdOptions client;
  std::string prefix = "/txcoord/default/";  // every key lives under it; ends with '/'
  absl::Duration lease_ttl = absl::Seconds(10);
  // How long a start waits for its node id while another process or an
  // adopter holds it, before it gives up (FAILED_PRECONDITION).
  absl::Duration acquire_timeout = absl::Seconds(60);
  int max_txn_ops = 128;                  // etcd's --max-txn-ops
  uint64_t max_txn_bytes = 1 << 20;       // below etcd's --max-request-bytes (1.5 MiB)
  // How this process describes itself in its node key (for txctl nodes).
  std::string owner_description;
};

struct JournalOptions {
  Backend backend = Backend::kRocksDb;
  EtcdJournalOptions etcd;  // backend kEtcd
  std::string dir;          // created 0700 when missing
  std::string node_id;      // must match the one stored at first open
  Retention retention;
  int max_group_size = 512; // decisions sharing one fsync at most
  // Where a decision becomes durable. true: the decision log (a zero-filled
  // file overwritten in place and fdatasynced, see decision_log.h), RocksDB
  // then written without a sync as the index; false: RocksDB's own WAL
  // (a synced WriteBatch per group).
  bool decision_log = true;
  uint64_t decision_log_bytes = 16 << 20;  // a multiple of 4096, 64 KiB to 1 GiB
  // RocksDB's memory, bounded: every column family's memtables together
  // (db_write_buffer_size; each family's memtable a quarter of it), and the
  // block cache shared by the families (index and filter blocks included).
  uint64_t memtable_bytes = 16 << 20;
  uint64_t block_cache_bytes = 8 << 20;
};

// What a journal has done since it was opened (for metrics).
struct JournalStats {
  uint64_t decision_groups = 0;  // groups of decisions made durable, one sync each
  uint64_t decisions = 0;        // decisions in those groups
  uint64_t decision_log_laps = 0;  // laps of the decision log begun when it was full
};

// A node of a cluster journal, as txctl nodes shows it.
struct NodeStatus {
  std::string node_id;
  bool member = false;       // has joined the cluster at least once
  bool settled = false;      // its last process stopped or was adopted with nothing left to do
  int64_t epoch = 0;         // of the process or adopter holding the id (0: nobody holds it)
  int64_t lease = 0;
  std::string holder;        // who holds the id: the owner's description, or "adopted by <node>"
  std::string adopted_by;    // the adopting node, while an adoption runs
  int64_t unfinished = 0;    // its unfinished decisions in the journal
  std::string address;       // where its gRPC listener is reached (Advertise), while a process holds the id
};

// A LogDecision error that says the decision was certainly not written
// (the journal refused it before sending it, or the store refused it): the
// caller may roll the branches back. Every other LogDecision error leaves
// the outcome unknown.
absl::Status DecisionNotWritten(absl::Status status);
bool IsDecisionNotWritten(const absl::Status& status);

class Journal {
 public:
  virtual ~Journal() = default;

  virtual const std::string& node_id() const = 0;
  // This process's epoch: one more than at the previous open, synced.
  virtual uint64_t epoch() const = 0;

  // Writes `record` (state COMMITTING, or an operator's decision) to the
  // unfinished set. Durable when it returns OK: the write and an fsync of
  // the log that holds it (the decision log, or RocksDB's write-ahead log)
  // completed; concurrent callers share one fsync.
  // An error (disk full, I/O error) means the record may or may not have
  // been written (an fsync can fail after the write reached the log, and
  // what a failed fsync left on disk cannot be known): the caller must
  // neither commit nor roll back the branches, and leave the decision to
  // the next open, which reads what the log holds (fail-stop).
  // REQUIRES: record.txn_id() is not empty.
  virtual absl::Status LogDecision(const DecisionRecord& record) = 0;


  // Replaces an unfinished record (branch states, attempts, errors) without
  // waiting for an fsync: losing this update in a crash only repeats work.
  virtual absl::Status UpdateDecision(const DecisionRecord& record) = 0;

  // Moves the record to history (END). Need not be durable: a record that
  // reappears as unfinished after a crash is re-driven, and re-driving a
  // finished transaction is harmless.
  virtual absl::Status MarkFinished(const DecisionRecord& final_record) = 0;
  // MarkFinished for several records at once (one write where the journal
  // can). The default finishes them one by one.
  virtual absl::Status MarkFinishedMany(const std::vector<DecisionRecord>& final_records) {
    for (const DecisionRecord& r : final_records) {
      absl::Status s = MarkFinished(r);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // MarkFinishedMany for commits whose decision this journal took and that
  // were never finished before (the END of a commit's first phase 2): the
  // unfinished records go, and no earlier history entry is looked for. The
  // default is MarkFinishedMany.
  // REQUIRES: no record of these transactions was finished in this journal.
  virtual absl::Status MarkDecidedFinished(const std::vector<DecisionRecord>& final_records) {
    return MarkFinishedMany(final_records);
  }

  // MarkFinished for a transaction the journal has never seen (a one-phase
  // commit: no unfinished record, never finished before), so nothing is
  // read or removed first. Same durability as MarkFinished.
  // REQUIRES: record.txn_id() was never written to this journal.
  virtual absl::Status RecordFinished(const DecisionRecord& record) { return MarkFinished(record); }

  // OK, or why every LogDecision fails until the journal is reopened (a
  // write or sync of the decision log failed: its tail is unknown).
  virtual absl::Status DecisionWriteHealth() const { return absl::OkStatus(); }

  // Makes every write that returned before this call durable (UpdateDecision,
  // MarkFinished): one fsync of the log.
  virtual absl::Status Sync() = 0;

  // Every record without an END, for recovery. DATA_LOSS naming the key
  // when a record cannot be read.
  virtual absl::StatusOr<std::vector<DecisionRecord>> ScanUnfinished() = 0;

  // The record of `txn_id`, unfinished or in history; nullopt if none.
  virtual absl::StatusOr<std::optional<DecisionRecord>> Find(
      absl::string_view txn_id) = 0;

  // The txn id recorded with idempotency key `key` (a record written with
  // DecisionRecord.idempotency_key: its decision, or its history record),
  // or nullopt. Kept as long as that record is: the history's retention
  // removes it with the record.
  virtual absl::StatusOr<std::optional<std::string>> FindIdempotencyKey(absl::string_view key) = 0;

  // Takes idempotency key `key` for `txn_id` before its work runs, where
  // several nodes share the journal: returns the txn id that holds the key
  // already (a call with the key ran or runs, here or on another node), or
  // nullopt when `txn_id` now holds it. A single-node journal takes nothing
  // (the node's own memory refuses a second call while one runs).
  virtual absl::StatusOr<std::optional<std::string>> ReserveIdempotencyKey(absl::string_view /*key*/,
                                                                           absl::string_view /*txn_id*/) {
    return std::optional<std::string>();
  }

  // Finished records, newest first, at most `limit`, older than the
  // record finished at `before` (use absl::InfiniteFuture() for the first page).
  virtual absl::StatusOr<std::vector<DecisionRecord>> ListFinished(
      absl::Time before, int limit) = 0;

  // Applies the retention at time `now`: deletes the oldest history
  // records beyond finished_max and those finished before now - max_age,
  // at most retention.max_per_pass of them (call again while it returns
  // that many). Never touches unfinished records. Returns how many were
  // deleted. With `fold`, the marker it computes over the deleted ids is
  // written with the deletions (CollectedMarker): it never lags them, even
  // across a crash.
  virtual absl::StatusOr<int64_t> CollectGarbage(absl::Time now, const CollectedMarkerFold& fold = nullptr) = 0;
  // The marker stored by CollectGarbage ("" when none).
  virtual std::string CollectedMarker() const { return ""; }

  // Number of history records (kept in memory; exact).
  virtual int64_t finished_count() const = 0;

  // Counts since the journal was opened. Thread-safe; never blocks on I/O.
  virtual JournalStats Stats() const { return {}; }

  // How a failed LogDecision is settled. false (RocksDB): what the log
  // holds is known only at the next open, so the caller stops deciding until
  // it is restarted. true (etcd): the journal settles it by itself (a write
  // that cannot be applied any more once DecisionWriteHealth is OK again),
  // after which Find answers for the decision for good.
  virtual bool SettlesFailedDecisions() const { return false; }

  // Cluster journals: the records of every node.
  virtual bool clustered() const { return false; }
  // `txn_id`'s record in node `node`'s journal (this node's: Find).
  virtual absl::StatusOr<std::optional<DecisionRecord>> FindOnNode(absl::string_view node,
                                                                   absl::string_view txn_id) {
    if (node == node_id()) return Find(txn_id);
    return absl::NotFoundError(absl::StrCat("this journal holds only node \"", node_id(), "\"'s records"));
  }
  // Publishes where the other nodes reach this node's gRPC listener, for as
  // long as this process holds its id (cluster journals; others ignore it).
  virtual absl::Status Advertise(const std::string& /*address*/) { return absl::OkStatus(); }
  // Node `node`'s status (this node's only, on a single-node journal).
  virtual absl::StatusOr<NodeStatus> NodeOf(absl::string_view node);
  // Every node of the cluster (this one only, on a single-node journal).
  virtual absl::StatusOr<std::vector<NodeStatus>> ListNodes();
  // Node `node`'s CollectedMarker.
  virtual absl::StatusOr<std::string> CollectedMarkerOf(absl::string_view node) {
    if (node == node_id()) return CollectedMarker();
    return std::string();
  }
};

// Opens (creating if missing) the RocksDB journal in options.dir, checks and
// stores the node identity, increments the epoch (synced), and validates
// every unfinished record. Errors:
//   FAILED_PRECONDITION  another node_id owns the directory; another process
//                        has it open (RocksDB's LOCK); bad options.
//   DATA_LOSS            a record or the database is corrupt (the message
//                        names the key and the repair path).
//   UNAVAILABLE          an I/O error.
absl::StatusOr<std::unique_ptr<Journal>> OpenRocksDbJournal(
    const JournalOptions& options);

// Opens the journal options.backend names: OpenRocksDbJournal, or
// EtcdJournal::Open (etcd_journal.h).
absl::StatusOr<std::unique_ptr<Journal>> OpenJournal(const JournalOptions& options);

}  // namespace txcoord::journal

#endif  // TXCOORD_JOURNAL_JOURNAL_H_
