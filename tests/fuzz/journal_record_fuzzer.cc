// libFuzzer target: a journal whose unfinished record holds arbitrary bytes
// must refuse to open with DATA_LOSS (or FAILED_PRECONDITION for a newer
// schema) or open and return the record, never crash.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "journal/journal.h"
#include "rocksdb/db.h"

namespace {

const std::string& Dir() {
  static const std::string dir = [] {
    std::string d = "/tmp/txcoord-journal-fuzz." + std::to_string(::getpid());
    std::filesystem::remove_all(d);
    txcoord::journal::JournalOptions o;
    o.dir = d;
    o.node_id = "fuzz";
    o.decision_log_bytes = 64 << 10;
    (void)txcoord::journal::OpenRocksDbJournal(o);  // creates the column families
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = Dir();
  {
    rocksdb::DBOptions opts;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* n : {"default", "unfinished", "history", "history_by_time", "idempotency_keys"}) {
      cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    if (!rocksdb::DB::Open(opts, dir, cfs, &handles, &db).ok()) __builtin_trap();
    std::string value(reinterpret_cast<const char*>(data), size);
    (void)db->Put(rocksdb::WriteOptions(), handles[1], "fuzz.1.1", value);
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  txcoord::journal::JournalOptions o;
  o.dir = dir;
  o.node_id = "fuzz";
  o.decision_log_bytes = 64 << 10;  // read at every open: keep it small
  auto j = txcoord::journal::OpenRocksDbJournal(o);
  if (!j.ok()) {
    auto code = j.status().code();
    if (code != absl::StatusCode::kDataLoss && code != absl::StatusCode::kFailedPrecondition) __builtin_trap();
  } else {
    auto records = (*j)->ScanUnfinished();
    if (!records.ok() || records->size() != 1 || (*records)[0].txn_id() != "fuzz.1.1") __builtin_trap();
  }
  return 0;
}
