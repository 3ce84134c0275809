// Cluster mode (journal.backend: etcd): this node adopts the nodes of its
// cluster that died with work left.
//
// Every adopt_interval the member lists the orphans (EtcdJournal::Orphans:
// members whose id nobody holds and that are not settled). For each one it
// wins (TryAdopt: only one survivor does), it fences the dead node with a
// new epoch, then runs a Coordinator *as that node* on a journal attached
// to that epoch and on participants of its own whose node claims end the
// dead node's claim sessions (BindOptions::take_over_node_claims): the
// coordinator's start-up recovery re-drives the dead node's decisions and
// rolls back its prepared branches without one (the dead node can no
// longer decide them). Passes go on until timeouts.transaction after the
// adoption began (a statement the dead process sent may still end in a
// PREPARE until its deadline). When no decision is left to drive and no
// branch of the node is prepared on any bind, the id is given back
// (ReleaseAdopted, the node settled); otherwise it is given back unsettled
// 5 s later and adopted again.
#ifndef TXCOORD_SERVER_CLUSTER_H_
#define TXCOORD_SERVER_CLUSTER_H_

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "coordinator/metrics.h"
#include "journal/etcd_journal.h"

namespace txcoord::coordinator {

struct CoordinatorOptions;
// The coordinator options a config gives, for node `node_id`.
CoordinatorOptions CoordinatorOptionsFor(const Config& config, const std::string& node_id);

struct AdoptionReport {
  std::string node_id;
  int64_t epoch = 0;
  bool settled = false;
  int redriven = 0;
  int orphans_rolled_back = 0;
  int decided_committed = 0;
  absl::Time started;
  absl::Duration took;
  std::string error;  // why it did not settle
};

class ClusterMember {
 public:
  // REQUIRES: `journal` and `metrics` outlive this object.
  ClusterMember(const Config& config, journal::EtcdJournal* journal, Metrics* metrics);
  ~ClusterMember();

  void Start();
  void Stop();

  // Adopts `node` now if it is an orphan and nobody else does (also what
  // the background loop does); nullopt when there was nothing to do.
  std::optional<AdoptionReport> AdoptIfOrphan(const std::string& node);
  // The most recent adoptions by this node, newest first (at most 20).
  std::vector<AdoptionReport> RecentAdoptions() const;

 private:
  void Loop();
  AdoptionReport Adopt(const std::string& node, int64_t epoch);

  const Config config_;
  journal::EtcdJournal* const journal_;
  Metrics* const metrics_;
  absl::Duration interval_ = absl::Seconds(1);
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<AdoptionReport> recent_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_CLUSTER_H_
