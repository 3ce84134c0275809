// Helpers the coordinator's files share (coordinator.cc, coordinator_outcomes.cc,
// coordinator_global.cc, coordinator_recovery.cc): not part of its interface.
#ifndef TXCOORD_COORDINATOR_COORDINATOR_INTERNAL_H_
#define TXCOORD_COORDINATOR_COORDINATOR_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "journal/journal.h"
#include "participants/xid.h"

namespace txcoord::coordinator::internal {

// Parses "<node>.<epoch>.<seq>".
inline bool ParseTxnId(absl::string_view id, std::string* node, uint64_t* epoch, uint64_t* seq) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '.');
  if (parts.size() != 3) return false;
  *node = std::string(parts[0]);
  return absl::SimpleAtoi(parts[1], epoch) && absl::SimpleAtoi(parts[2], seq);
}

// True when (epoch, seq) is at or before the journal's collected marker:
// the id of this node's newest transaction whose history record the
// retention deleted ("" for none).
inline bool CollectedBefore(uint64_t epoch, uint64_t seq, absl::string_view marker) {
  std::string node;
  uint64_t me = 0, ms = 0;
  if (!ParseTxnId(marker, &node, &me, &ms)) return false;
  return epoch < me || (epoch == me && seq <= ms);
}

inline std::string BranchStateName(journal::BranchState s) {
  switch (s) {
    case journal::BRANCH_PREPARED: return "prepared";
    case journal::BRANCH_COMMITTED: return "committed";
    case journal::BRANCH_ROLLED_BACK: return "rolled_back";
    case journal::BRANCH_HEURISTIC_HAZARD: return "heuristic_hazard";
    case journal::BRANCH_READ_ONLY: return "read_only";
    default: return "unknown";
  }
}

inline participants::Xid XidOf(const journal::BranchRecord& b) {
  participants::Xid x;
  x.format_id = b.format_id();
  x.gtrid = b.gtrid();
  x.bqual = b.bqual();
  return x;
}

}  // namespace txcoord::coordinator::internal

#endif  // TXCOORD_COORDINATOR_COORDINATOR_INTERNAL_H_
