// A journal directory's RocksDB database opened directly, behind the
// journal's back: for tests that damage or inspect what the journal wrote.
#ifndef TXCOORD_TESTS_TESTING_RAW_JOURNAL_DB_H_
#define TXCOORD_TESTS_TESTING_RAW_JOURNAL_DB_H_

#include <string>
#include <vector>

#include "rocksdb/db.h"

namespace txcoord::testing {

class RawJournalDb {
 public:
  explicit RawJournalDb(const std::string& dir) {
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "unfinished", "history", "history_by_time", "idempotency_keys"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    status_ = rocksdb::DB::Open(rocksdb::DBOptions(), dir, families, &handles_, &db_);
  }
  ~RawJournalDb() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    delete db_;
  }
  RawJournalDb(const RawJournalDb&) = delete;
  RawJournalDb& operator=(const RawJournalDb&) = delete;

  const rocksdb::Status& status() const { return status_; }
  rocksdb::DB* db() { return db_; }
  rocksdb::ColumnFamilyHandle* unfinished() { return handles_[1]; }
  rocksdb::ColumnFamilyHandle* history() { return handles_[2]; }

 private:
  rocksdb::Status status_;
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_RAW_JOURNAL_DB_H_
