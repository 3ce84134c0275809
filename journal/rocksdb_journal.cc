#include "journal/rocksdb_journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/cache.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "util/failpoint.h"
#include "util/fiber.h"
#include "util/status_macros.h"

namespace txcoord::journal {
namespace {

constexpr char kNodeKey[] = "node";
constexpr char kAppliedKey[] = "decision_log_applied";
constexpr char kCollectedKey[] = "collected_marker";  // CollectGarbage's marker
constexpr char kDecisionLogFile[] = "decisions.log";
constexpr uint64_t kLargeGroupBytes = 32 << 10;

// 8 bytes, big-endian (so that keys sort by the number).
std::string BigEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

// The number in the first (up to) 8 bytes of `bytes`, big-endian.
uint64_t ReadBigEndian64(absl::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return v;
}
const char* const kColumnFamilies[] = {"default", "unfinished", "history",
                                       "history_by_time", "idempotency_keys"};

std::string RepairHint(const std::string& dir) {
  return absl::StrCat(
      " Do not delete the directory: it holds commit decisions. Stop the "
      "coordinator, copy ",
      dir,
      " aside, inspect it with `ldb --db=<copy> scan --column_family=unfinished` "
      "(Debian package rocksdb-tools) and, if RocksDB itself is damaged, run "
      "`ldb --db=<copy> repair` on the copy; restart on the repaired copy only "
      "after checking that every unfinished decision is intact.");
}

// Maps a RocksDB status to an absl::Status whose message names `what`.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("journal: ", what, ": ", s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsInvalidArgument() || s.IsNotSupported()) {
    return absl::FailedPreconditionError(msg);
  }
  return absl::UnavailableError(msg);
}

std::string TimeKey(int64_t finished_us, absl::string_view txn_id) {
  std::string key = BigEndian64(static_cast<uint64_t>(finished_us));
  key.append(txn_id.data(), txn_id.size());
  return key;
}

int64_t TimeOfKey(const rocksdb::Slice& key) {
  return static_cast<int64_t>(ReadBigEndian64(absl::string_view(key.data(), key.size())));
}

rocksdb::Slice ToSlice(absl::string_view s) { return {s.data(), s.size()}; }

// `record`'s bytes with schema_version set to kSchemaVersion, without
// copying the record (a copy per decision was a few % of a commit's CPU):
// protobuf writes fields in number order and schema_version is field 1, so
// for a record without one — the coordinator's own — the bytes are that
// field's tag and value followed by the record's.
std::string SerializeCurrent(const DecisionRecord& record) {
  static_assert(kSchemaVersion > 0 && kSchemaVersion < 128, "one varint byte");
  if (record.schema_version() == kSchemaVersion) return record.SerializeAsString();
  if (record.schema_version() != 0) {
    DecisionRecord copy = record;
    copy.set_schema_version(kSchemaVersion);
    return copy.SerializeAsString();
  }
  std::string out;
  out.push_back(static_cast<char>(DecisionRecord::kSchemaVersionFieldNumber << 3));  // varint
  out.push_back(static_cast<char>(kSchemaVersion));
  record.AppendToString(&out);
  return out;
}

}  // namespace

RocksDbJournal::RocksDbJournal(JournalOptions options, std::unique_ptr<rocksdb::DB> db,
                               std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : options_(std::move(options)),
      db_(std::move(db)),
      handles_(std::move(handles)),
      group_commit_(
          static_cast<size_t>(std::max(1, options_.max_group_size)),
          [this](const std::vector<const DecisionWrite*>& queued) { return TakeGroup(queued); },
          [this](const std::vector<const DecisionWrite*>& group) { return WriteGroup(group); }) {}

RocksDbJournal::~RocksDbJournal() {
  group_commit_.Stop();
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

absl::Status RocksDbJournal::Initialize() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta(), kNodeKey, &value);
  NodeIdentity identity;
  if (s.IsNotFound()) {
    identity.set_schema_version(kSchemaVersion);
    identity.set_node_id(options_.node_id);
  } else if (!s.ok()) {
    return FromRocks(s, "reading the node identity");
  } else if (!identity.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("journal ", options_.dir, ": the node identity (key \"",
                     kNodeKey, "\") cannot be parsed.", RepairHint(options_.dir)));
  } else if (identity.schema_version() > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", options_.dir, " has schema version ",
        identity.schema_version(), "; this txcoord reads up to ", kSchemaVersion));
  } else if (identity.node_id() != options_.node_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", options_.dir, " belongs to node_id \"", identity.node_id(),
        "\", but this coordinator is configured as \"", options_.node_id,
        "\": a journal directory must never change hands. Point this node at "
        "its own directory, or restore node_id \"", identity.node_id(), "\""));
  }
  identity.set_epoch(identity.epoch() + 1);
  rocksdb::WriteOptions wo;
  wo.sync = true;  // a new epoch must never be handed out twice
  TXC_RETURN_IF_ERROR(FromRocks(
      db_->Put(wo, meta(), kNodeKey, identity.SerializeAsString()),
      "storing the epoch"));
  epoch_ = identity.epoch();

  int64_t count = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), history_by_time()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
  TXC_RETURN_IF_ERROR(FromRocks(it->status(), "counting history"));
  {
    std::string marker;
    rocksdb::Status ms = db_->Get(rocksdb::ReadOptions(), meta(), kCollectedKey, &marker);
    if (!ms.ok() && !ms.IsNotFound()) return FromRocks(ms, "reading the collected marker");
    absl::MutexLock lock(&marker_mu_);
    collected_marker_ = ms.ok() ? marker : "";
  }
  {
    absl::MutexLock lock(&history_mu_);
    finished_count_ = count;
  }
  // With the decision log switched off, one left by an earlier start is
  // still read back once (RocksDB may have lost its tail), then removed.
  if (options_.decision_log || std::filesystem::exists(DecisionLogPath())) {
    TXC_RETURN_IF_ERROR(RecoverDecisionLog());
  }
  // Refuse to start on an unreadable decision: never drop one silently.
  return ScanUnfinished().status();
}

absl::Status RocksDbJournal::RecoverDecisionLog() {
  std::string value;
  uint64_t applied = 0;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta(), kAppliedKey, &value);
  if (s.ok()) {
    if (value.size() != 8) {
      return absl::DataLossError(absl::StrCat(
          "journal ", options_.dir, ": the key \"", kAppliedKey, "\" holds ",
          value.size(), " bytes instead of 8.", RepairHint(options_.dir)));
    }
    applied = ReadBigEndian64(value);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading the decision log's applied position");
  }
  const std::string path = DecisionLogPath();
  std::vector<DecisionLog::Entry> lap;
  absl::MutexLock lock(&log_mu_);
  TXC_ASSIGN_OR_RETURN(decision_log_, DecisionLog::Open(path, options_.decision_log_bytes, &lap));
  max_group_payload_ = decision_log_->max_payload_bytes();
  rocksdb::WriteBatch batch;
  uint64_t last = applied;
  for (const DecisionLog::Entry& entry : lap) {
    last = std::max(last, entry.seq);
    if (entry.seq <= applied) continue;
    DecisionRecord record;
    if (!record.ParseFromString(entry.bytes) || record.txn_id().empty()) {
      return absl::DataLossError(absl::StrCat(
          "journal ", options_.dir, ": entry ", entry.seq, " of ", path,
          " cannot be parsed as a decision.", RepairHint(options_.dir)));
    }
    // Lost by RocksDB in a power cut, with everything written after it.
    batch.Put(unfinished(), record.txn_id(), entry.bytes);
    if (!record.idempotency_key().empty()) batch.Put(idempotency_keys(), record.idempotency_key(), record.txn_id());
  }
  batch.Put(meta(), kAppliedKey, BigEndian64(last));
  rocksdb::WriteOptions wo;
  wo.sync = true;  // the lap about to be overwritten must be durable here first
  TXC_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "writing back the decision log"));
  next_seq_ = last + 1;
  if (!options_.decision_log) {
    decision_log_.reset();
    max_group_payload_ = 0;
    std::error_code ec;
    std::filesystem::remove(path, ec);  // its entries are durable in RocksDB now
    if (ec) {
      return absl::UnavailableError(absl::StrCat("journal: cannot remove ", path, ": ", ec.message()));
    }
    return absl::OkStatus();
  }
  return decision_log_->StartLap();
}

std::string RocksDbJournal::DecisionLogPath() const {
  return (std::filesystem::path(options_.dir) / kDecisionLogFile).string();
}

absl::Status RocksDbJournal::Fail(absl::Status s) {
  absl::MutexLock lock(&failure_mu_);
  log_failure_ = absl::UnavailableError(absl::StrCat(
      "journal: an earlier decision write failed (", s.message(),
      "); no further decision can be recorded until txcoord is restarted"));
  return s;
}

size_t RocksDbJournal::TakeGroup(const std::vector<const DecisionWrite*>& queued) const {
  size_t n = 0;
  uint64_t payload = 0;
  for (const DecisionWrite* w : queued) {  // at most max_group_size of them
    const uint64_t bytes = DecisionLog::RecordBytes(w->value.size());
    if (max_group_payload_ > 0 && payload + bytes > max_group_payload_) break;
    payload += bytes;
    ++n;
  }
  return n;
}

absl::Status RocksDbJournal::WriteGroup(const std::vector<const DecisionWrite*>& group) {
  absl::Status status = TXC_FAILPOINT_STATUS("journal.before_decision_sync");
  if (status.ok()) {
    status = WriteGroupDurably(group);
    // A sync reported failed after the group reached the log.
    if (status.ok()) status = TXC_FAILPOINT_STATUS("journal.after_decision_write");
  }
  if (status.ok()) {
    decision_groups_.fetch_add(1, std::memory_order_relaxed);
    decisions_.fetch_add(group.size(), std::memory_order_relaxed);
  }
  return status;
}

absl::Status RocksDbJournal::WriteGroupDurably(const std::vector<const DecisionWrite*>& group) {
  uint64_t payload = 0;
  for (const DecisionWrite* w : group) payload += DecisionLog::RecordBytes(w->value.size());
  absl::MutexLock lock(&log_mu_);
  TXC_RETURN_IF_ERROR(DecisionWriteHealth());
  rocksdb::WriteBatch batch;
  for (const DecisionWrite* w : group) {
    batch.Put(unfinished(), w->key, w->value);
    if (!w->idempotency_key.empty()) batch.Put(idempotency_keys(), w->idempotency_key, w->key);
  }
  // A large group (hundreds of waiting writers) goes to RocksDB synced
  // instead: its bytes, not the sync's fixed cost, dominate its write, and
  // through the decision log they would reach the disk twice (RocksDB's
  // unsynced WAL is written back too, all at once at the lap's end). The
  // applied number needs no update: the synced write makes every earlier
  // index write durable as well.
  if (decision_log_ == nullptr || payload > kLargeGroupBytes) {
    rocksdb::WriteOptions wo;
    wo.sync = true;  // the decision must survive power loss before phase 2
    absl::Status s = FromRocks(db_->Write(wo, &batch), "writing commit decisions");
    // The WAL's sync failed after the group's write (EIO).
    if (s.ok()) s = TXC_FAILPOINT_STATUS("journal.wal_sync");
    if (!s.ok()) return Fail(s);
    return absl::OkStatus();
  }
  if (!decision_log_->Fits(payload)) {
    // The file is full. Every decision in it is in RocksDB (below each
    // Append): make them durable there, then start over at the beginning.
    absl::Status synced = FromRocks(db_->SyncWAL(), "syncing the decisions before the decision log's next lap");
    if (synced.ok()) synced = TXC_FAILPOINT_STATUS("journal.lap_wal_sync");
    if (!synced.ok()) return Fail(synced);
    absl::Status s = decision_log_->StartLap();
    if (!s.ok()) return Fail(s);
    decision_log_laps_.fetch_add(1, std::memory_order_relaxed);
  }
  std::vector<absl::string_view> records;
  records.reserve(group.size());
  for (const DecisionWrite* w : group) records.push_back(w->value);
  const uint64_t first = next_seq_;
  next_seq_ += group.size();
  // Durable when Append returns: the decision log is synced.
  absl::Status s = decision_log_->Append(first, records);
  // A failed fdatasync after the group's write: it may or may not be durable.
  if (s.ok()) s = TXC_FAILPOINT_STATUS("journal.decision_log_sync");
  if (!s.ok()) return Fail(s);
  // A power cut that loses RocksDB's unsynced tail (armed until the journal
  // is closed: nothing is written to RocksDB, as if lost).
  if (!TXC_FAILPOINT_STATUS("journal.lose_index_writes").ok()) return absl::OkStatus();
  batch.Put(meta(), kAppliedKey, BigEndian64(next_seq_ - 1));
  rocksdb::WriteOptions wo;  // not synced: the decision log holds the decisions
  s = FromRocks(db_->Write(wo, &batch), "writing commit decisions");
  if (!s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::StatusOr<DecisionRecord> RocksDbJournal::Parse(
    absl::string_view cf, absl::string_view key, const std::string& value) const {
  DecisionRecord record;
  if (!record.ParseFromString(value) || record.txn_id() != key) {
    return absl::DataLossError(absl::StrCat(
        "journal ", options_.dir, ": the record at key \"", key,
        "\" in column family ", cf, " cannot be parsed as a decision.",
        RepairHint(options_.dir)));
  }
  if (record.schema_version() > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", options_.dir, ": the record at key \"", key,
        "\" has schema version ", record.schema_version(),
        "; this txcoord reads up to ", kSchemaVersion));
  }
  return record;
}

absl::Status RocksDbJournal::LogDecision(const DecisionRecord& record) {
  if (record.txn_id().empty()) {
    return absl::InvalidArgumentError("journal: a decision needs a txn id");
  }
  DecisionWrite w;
  w.key = record.txn_id();
  w.value = SerializeCurrent(record);
  w.idempotency_key = record.idempotency_key();
  if (max_group_payload_ > 0 &&
      DecisionLog::RecordBytes(w.value.size()) > max_group_payload_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "journal: the decision of ", record.txn_id(), " takes ", w.value.size(),
        " bytes; the decision log takes at most ", max_group_payload_ - 4,
        " (raise journal.decision_log_bytes)"));
  }

  return group_commit_.Submit(w);
}

absl::Status RocksDbJournal::UpdateDecision(const DecisionRecord& record) {
  rocksdb::WriteOptions wo;  // not synced: a lost update only repeats work
  return FromRocks(db_->Put(wo, unfinished(), record.txn_id(), SerializeCurrent(record)),
                   absl::StrCat("updating ", record.txn_id()));
}

absl::Status RocksDbJournal::MarkFinished(const DecisionRecord& final_record) {
  return MarkFinishedMany({final_record});
}

absl::Status RocksDbJournal::MarkFinishedMany(const std::vector<DecisionRecord>& final_records) {
  return WriteFinished(final_records.data(), final_records.size(), Earlier::kAny);
}

absl::Status RocksDbJournal::MarkDecidedFinished(const std::vector<DecisionRecord>& final_records) {
  return WriteFinished(final_records.data(), final_records.size(), Earlier::kUnfinishedOnly);
}

absl::Status RocksDbJournal::RecordFinished(const DecisionRecord& record) {
  return WriteFinished(&record, 1, Earlier::kNone);
}

absl::Status RocksDbJournal::WriteFinished(const DecisionRecord* records, size_t n, Earlier earlier) {
  // No lock is held across the write: an unsynced write may wait in
  // RocksDB's write queue behind a group's fsync, and holding a lock there
  // would serialize every transaction's END behind one fsync each. One
  // transaction is finished by one thread at a time (the coordinator's
  // driving set), so the read-then-write below does not race with itself.
  rocksdb::WriteBatch batch;
  int64_t added = 0;
  const int64_t now = absl::ToUnixMicros(absl::Now());
  for (size_t i = 0; i < n; ++i) {
    const DecisionRecord& final_record = records[i];
    const std::string& id = final_record.txn_id();
    // The coordinator's records carry their finished_at: no copy then.
    int64_t finished_at = final_record.finished_at_unix_micros();
    std::string value;
    if (finished_at != 0) {
      value = SerializeCurrent(final_record);
    } else {
      DecisionRecord copy = final_record;
      copy.set_finished_at_unix_micros(finished_at = now);
      value = SerializeCurrent(copy);
    }
    if (earlier != Earlier::kAny) {
      // No earlier history entry to replace: no read (a miss looks into
      // every level: 40 % of the END writer's CPU under engine_bench).
      ++added;
      if (earlier == Earlier::kUnfinishedOnly) batch.Delete(unfinished(), id);
    } else {
      std::string old;
      rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), history(), id, &old);
      if (s.ok()) {
        DecisionRecord previous;
        if (previous.ParseFromString(old)) {
          batch.Delete(history_by_time(), TimeKey(previous.finished_at_unix_micros(), id));
        }
      } else if (s.IsNotFound()) {
        ++added;
      } else {
        return FromRocks(s, absl::StrCat("finishing ", id));
      }
      batch.Delete(unfinished(), id);
    }
    batch.Put(history(), id, value);
    batch.Put(history_by_time(), TimeKey(finished_at, id), final_record.idempotency_key());
    if (!final_record.idempotency_key().empty()) {
      batch.Put(idempotency_keys(), final_record.idempotency_key(), id);
    }
  }
  rocksdb::WriteOptions wo;  // END need not be durable: a lost END re-drives
  TXC_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "finishing transactions"));
  if (added > 0) {
    absl::MutexLock lock(&history_mu_);
    finished_count_ += added;
  }
  return absl::OkStatus();
}

JournalStats RocksDbJournal::Stats() const {
  JournalStats stats;
  stats.decision_groups = decision_groups_.load(std::memory_order_relaxed);
  stats.decisions = decisions_.load(std::memory_order_relaxed);
  stats.decision_log_laps = decision_log_laps_.load(std::memory_order_relaxed);
  return stats;
}

absl::Status RocksDbJournal::DecisionWriteHealth() const {
  absl::MutexLock lock(&failure_mu_);
  return log_failure_;
}

absl::Status RocksDbJournal::Sync() {
  // A write followed by a SyncWAL that starts after it is as durable as a
  // synced write (RocksDB's db.h).
  return FromRocks(db_->SyncWAL(), "syncing the log");
}

absl::StatusOr<std::vector<DecisionRecord>> RocksDbJournal::ScanUnfinished() {
  std::vector<DecisionRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), unfinished()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    TXC_ASSIGN_OR_RETURN(DecisionRecord record,
                         Parse("unfinished", absl::string_view(it->key().data(), it->key().size()),
                               it->value().ToString()));
    out.push_back(std::move(record));
  }
  TXC_RETURN_IF_ERROR(FromRocks(it->status(), "scanning unfinished decisions"));
  return out;
}

absl::StatusOr<std::optional<DecisionRecord>> RocksDbJournal::Find(
    absl::string_view txn_id) {
  std::string value;
  for (auto [cf, name] : {std::pair{unfinished(), "unfinished"},
                          std::pair{history(), "history"}}) {
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, ToSlice(txn_id), &value);
    if (s.ok()) {
      TXC_ASSIGN_OR_RETURN(DecisionRecord record, Parse(name, txn_id, value));
      return std::optional<DecisionRecord>(std::move(record));
    }
    if (!s.IsNotFound()) return FromRocks(s, absl::StrCat("reading ", txn_id));
  }
  return std::optional<DecisionRecord>();
}

absl::StatusOr<std::optional<std::string>> RocksDbJournal::FindIdempotencyKey(absl::string_view key) {
  std::string txn_id;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), idempotency_keys(), ToSlice(key), &txn_id);
  if (s.IsNotFound()) return std::optional<std::string>();
  TXC_RETURN_IF_ERROR(FromRocks(s, "reading an idempotency key"));
  return std::optional<std::string>(std::move(txn_id));
}

absl::StatusOr<std::vector<DecisionRecord>> RocksDbJournal::ListFinished(
    absl::Time before, int limit) {
  std::vector<DecisionRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), history_by_time()));
  if (before == absl::InfiniteFuture()) {
    it->SeekToLast();
  } else {
    it->SeekForPrev(TimeKey(absl::ToUnixMicros(before), ""));
    // SeekForPrev lands on a key <= target; keys at exactly `before` sort
    // after the bare time prefix, so this is strictly older.
  }
  for (; it->Valid() && static_cast<int>(out.size()) < limit; it->Prev()) {
    rocksdb::Slice key = it->key();
    std::string id(key.data() + 8, key.size() - 8);
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), history(), id, &value);
    if (s.IsNotFound()) continue;  // deleted by GC meanwhile
    TXC_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading ", id)));
    TXC_ASSIGN_OR_RETURN(DecisionRecord record, Parse("history", id, value));
    out.push_back(std::move(record));
  }
  TXC_RETURN_IF_ERROR(FromRocks(it->status(), "listing history"));
  return out;
}

absl::StatusOr<int64_t> RocksDbJournal::CollectGarbage(absl::Time now, const CollectedMarkerFold& fold) {
  const int64_t cutoff_us = absl::ToUnixMicros(now - options_.retention.finished_max_age);
  // One pass at a time; history_mu_ only for the count, so that ENDs are
  // not held up by a pass's writes.
  absl::MutexLock gc_lock(&gc_mu_);
  int64_t count;
  {
    absl::MutexLock lock(&history_mu_);
    count = finished_count_;
  }
  int64_t deleted = 0;
  std::string marker = CollectedMarker();
  rocksdb::WriteBatch batch;
  int64_t in_batch = 0;
  auto flush = [&]() -> absl::Status {
    if (in_batch == 0) return absl::OkStatus();
    if (fold) batch.Put(meta(), kCollectedKey, marker);
    absl::Status s = TXC_FAILPOINT_STATUS("journal.collect_garbage_write");
    if (s.ok()) s = FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "collecting garbage");
    batch.Clear();
    if (!s.ok()) {
      gc_from_.clear();  // these records are still there: the next pass starts at the first key
      return s;
    }
    {
      absl::MutexLock lock(&history_mu_);
      finished_count_ -= in_batch;
    }
    if (fold) {
      absl::MutexLock lock(&marker_mu_);
      collected_marker_ = marker;
    }
    in_batch = 0;
    return absl::OkStatus();
  };
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), history_by_time()));
  // Deleted keys stay as tombstones until a compaction: starting where the
  // last pass stopped instead of at the first key skips them. (A record
  // finished with a time before that point — a clock stepped back — waits
  // for the next start, which begins at the first key again.)
  if (gc_from_.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(gc_from_);
  }
  for (; it->Valid() && deleted < options_.retention.max_per_pass; it->Next()) {
    bool over_count = count - deleted > options_.retention.finished_max;
    bool too_old = TimeOfKey(it->key()) < cutoff_us;
    if (!over_count && !too_old) break;
    rocksdb::Slice key = it->key();
    const absl::string_view id(key.data() + 8, key.size() - 8);
    batch.Delete(history_by_time(), key);
    batch.Delete(history(), rocksdb::Slice(id.data(), id.size()));
    // The record's idempotency key (history_by_time's value) goes with it,
    // unless a later transaction took the key meanwhile.
    if (!it->value().empty()) {
      std::string holder;
      rocksdb::Status hs = db_->Get(rocksdb::ReadOptions(), idempotency_keys(), it->value(), &holder);
      if (hs.ok() && holder == id) batch.Delete(idempotency_keys(), it->value());
    }
    if (fold) marker = fold(marker, id);
    gc_from_ = key.ToString();
    ++deleted;
    if (++in_batch >= 1024) TXC_RETURN_IF_ERROR(flush());
  }
  if (absl::Status s = FromRocks(it->status(), "collecting garbage"); !s.ok()) {
    gc_from_.clear();
    return s;
  }
  TXC_RETURN_IF_ERROR(flush());
  return deleted;
}

std::string RocksDbJournal::CollectedMarker() const {
  absl::MutexLock lock(&marker_mu_);
  return collected_marker_;
}

int64_t RocksDbJournal::finished_count() const {
  absl::MutexLock lock(&history_mu_);
  return finished_count_;
}

absl::StatusOr<std::unique_ptr<Journal>> OpenRocksDbJournal(
    const JournalOptions& options) {
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("journal: dir is not set");
  }
  if (options.node_id.empty()) {
    return absl::InvalidArgumentError("journal: node_id is not set");
  }
  if (options.max_group_size < 1) {
    return absl::InvalidArgumentError("journal: max_group_size must be >= 1");
  }
  if (options.decision_log &&
      (options.decision_log_bytes % DecisionLog::kBlock != 0 ||
       options.decision_log_bytes < DecisionLog::kMinBytes ||
       options.decision_log_bytes > DecisionLog::kMaxBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "journal: decision_log_bytes is ", options.decision_log_bytes,
        "; it must be a multiple of 4096 from 65536 (64 KiB) to 1073741824 (1 GiB)"));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "journal: cannot create ", options.dir, ": ", ec.message()));
  }
  // Decisions name every database's transactions: owner-only.
  if (::chmod(options.dir.c_str(), 0700) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "journal: cannot chmod 0700 ", options.dir, ": ", std::strerror(errno)));
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  // Synced writes are never lost; an unsynced torn tail (updates, ENDs) is
  // dropped at recovery, which only repeats phase-2 work.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.keep_log_file_num = 4;
  db_options.max_total_wal_size = 64 << 20;

  // Bounded memory (RocksDB's defaults let each family's memtables grow to
  // 128 MiB and index blocks live outside the cache).
  db_options.db_write_buffer_size = options.memtable_bytes;
  rocksdb::ColumnFamilyOptions family_options;
  family_options.write_buffer_size = std::max<uint64_t>(options.memtable_bytes / 4, 1 << 20);
  family_options.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table_options.cache_index_and_filter_blocks = true;
  family_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : kColumnFamilies) {
    families.emplace_back(name, family_options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.dir, families, &handles, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal ", options.dir,
          " is already open in another process or coordinator (RocksDB LOCK "
          "is held): only one coordinator may use a journal directory (",
          s.ToString(), ")"));
    }
    if (s.IsCorruption()) {
      return absl::DataLossError(absl::StrCat("journal ", options.dir,
                                              " is corrupt: ", s.ToString(), ".",
                                              RepairHint(options.dir)));
    }
    return FromRocks(s, absl::StrCat("opening ", options.dir));
  }
  auto journal = std::make_unique<RocksDbJournal>(
      options, std::unique_ptr<rocksdb::DB>(raw), std::move(handles));
  TXC_RETURN_IF_ERROR(journal->Initialize());
  return std::unique_ptr<Journal>(std::move(journal));
}

}  // namespace txcoord::journal
