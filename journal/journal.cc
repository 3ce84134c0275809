// Journal's defaults for a single-node journal, and the helpers shared by
// every journal.
#include "journal/journal.h"

#include "journal/etcd_journal.h"
#include "util/status_macros.h"

namespace txcoord::journal {
namespace {
constexpr char kNotWrittenPayload[] = "txcoord.journal/decision_not_written";
}  // namespace

absl::Status DecisionNotWritten(absl::Status status) {
  status.SetPayload(kNotWrittenPayload, absl::Cord("1"));
  return status;
}

bool IsDecisionNotWritten(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNotWrittenPayload).has_value();
}

absl::StatusOr<NodeStatus> Journal::NodeOf(absl::string_view node) {
  if (node != node_id()) {
    return absl::NotFoundError(absl::StrCat("this journal holds only node \"", node_id(), "\"'s records"));
  }
  NodeStatus n;
  n.node_id = node_id();
  n.member = true;
  n.epoch = static_cast<int64_t>(epoch());
  n.holder = "this process";
  TXC_ASSIGN_OR_RETURN(std::vector<DecisionRecord> unfinished, ScanUnfinished());
  n.unfinished = static_cast<int64_t>(unfinished.size());
  return n;
}

absl::StatusOr<std::vector<NodeStatus>> Journal::ListNodes() {
  TXC_ASSIGN_OR_RETURN(NodeStatus self, NodeOf(node_id()));
  return std::vector<NodeStatus>{std::move(self)};
}

absl::StatusOr<std::unique_ptr<Journal>> OpenJournal(const JournalOptions& options) {
  if (options.backend == Backend::kEtcd) {
    TXC_ASSIGN_OR_RETURN(std::unique_ptr<EtcdJournal> j, EtcdJournal::Open(options));
    return std::unique_ptr<Journal>(std::move(j));
  }
  return OpenRocksDbJournal(options);
}

}  // namespace txcoord::journal
