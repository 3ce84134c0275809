// Records and options the RocksDB journal's tests build (rocksdb_journal_test.cc,
// rocksdb_journal_group_test.cc).
#ifndef TXCOORD_TESTS_JOURNAL_JOURNAL_RECORDS_H_
#define TXCOORD_TESTS_JOURNAL_JOURNAL_RECORDS_H_

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "journal/journal.h"

namespace txcoord::journal::test_records {

inline DecisionRecord MakeDecision(const std::string& txn_id, int branches = 3) {
  DecisionRecord r;
  r.set_txn_id(txn_id);
  r.set_state(COMMITTING);
  r.set_decided_at_unix_micros(absl::ToUnixMicros(absl::Now()));
  for (int i = 0; i < branches; ++i) {
    BranchRecord* b = r.add_branches();
    b->set_bind(absl::StrCat("bind_", i));
    b->set_format_id(0x54584331);
    b->set_gtrid(txn_id);
    b->set_bqual(absl::StrCat(i, "-bind_", i));
    b->set_state(BRANCH_PREPARED);
  }
  return r;
}

// The unfinished records' ids, sorted.
inline std::vector<std::string> UnfinishedIds(Journal& j) {
  std::vector<std::string> ids;
  auto records = j.ScanUnfinished();
  EXPECT_TRUE(records.ok()) << records.status();
  if (records.ok()) {
    for (const DecisionRecord& r : *records) ids.push_back(r.txn_id());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

inline JournalOptions Options(const std::string& dir, const std::string& node = "node-a") {
  JournalOptions o;
  o.dir = dir;
  o.node_id = node;
  return o;
}

}  // namespace txcoord::journal::test_records

#endif  // TXCOORD_TESTS_JOURNAL_JOURNAL_RECORDS_H_
