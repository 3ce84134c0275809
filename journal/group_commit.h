// GroupCommit: the group commit both journals write their decisions with.
//
// Submit queues an entry; the call at the queue's front leads a group — the
// entries at the front that the journal takes in one write (Take) — writes
// it (Write), and hands every member its result and the next group's lead.
// The others wait, each on its own word (util::WaitWord: a futex on a
// thread, a parked fiber on a fiber), not on the queue's mutex: the leader
// hands out the results itself, the next leader first, so the next group's
// write starts while the followers are still being woken, and woken
// followers run at once instead of each waiting for the mutex the one
// before it holds (a condition variable's wake-up goes through its mutex:
// 64 writers were woken one after another, the next leader last).
//
// A call on a fiber (util/fiber.h) never leads: a group's write (an fsync,
// an etcd round trip) would hold its event loop's thread, and the loop's
// other fibers could not join the next group. The queue's lead thread,
// started by the first such call, leads in its place.
#ifndef TXCOORD_JOURNAL_GROUP_COMMIT_H_
#define TXCOORD_JOURNAL_GROUP_COMMIT_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "util/fiber.h"
#include "util/thread_name.h"

namespace txcoord::journal {

template <typename Entry>
class GroupCommit {
 public:
  // How many of `queued` (never empty; the queue's front first, at most
  // `max_group` of it) make the next group; at least 1 is taken. Called
  // with the queue's lock held.
  using Take = std::function<size_t(const std::vector<const Entry*>& queued)>;
  // Writes a group; its status is every member's.
  using Write = std::function<absl::Status(const std::vector<const Entry*>& group)>;

  // REQUIRES: max_group >= 1.
  GroupCommit(size_t max_group, Take take, Write write)
      : max_group_(max_group), take_(std::move(take)), write_(std::move(write)) {}
  ~GroupCommit() { Stop(); }
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Queues `entry` (which must live until this returns) and returns the
  // status of the group that wrote it.
  absl::Status Submit(const Entry& entry) {
    Writer w(entry);
    bool lead;
    {
      absl::MutexLock lock(&mu_);
      writers_.push_back(&w);
      lead = writers_.front() == &w;
    }
    if (lead && w.on_fiber) {
      HandLead(&w);  // to the lead thread
      lead = false;
    }
    // Otherwise the front writer leads; it either writes this entry in its
    // group or hands the lead to this writer, once it is the front.
    if (!lead && w.Await() == Writer::kDone) return w.status;
    return LeadGroup(&w);
  }

  // Ends the lead thread (once nothing is queued). REQUIRES: no Submit
  // after, or running.
  void Stop() {
    std::thread lead;
    {
      absl::MutexLock lock(&lead_mu_);
      lead_stopping_ = true;
      lead.swap(lead_thread_);
    }
    if (lead.joinable()) lead.join();
  }

 private:
  struct Writer {
    enum : uint32_t { kWaiting = 0, kLead = 1, kDone = 2 };
    explicit Writer(const Entry& e) : entry(e) {}
    const Entry& entry;
    absl::Status status;  // written before `turn` becomes kDone
    util::WaitWord turn{kWaiting};
    const bool on_fiber = util::OnFiber();  // never leads

    // Returns kLead or kDone once the leader has set it.
    uint32_t Await() { return turn.WaitWhile(kWaiting); }
    // Hands `t` to the waiting writer `w`, which may return, and its frame
    // be reused, as soon as it sees it (WaitWord::Set allows it).
    static void Hand(Writer* w, uint32_t t) { util::WaitWord::Set(&w->turn, t); }
  };

  // Writes the group at the front of the queue and hands out its results
  // (not to `self`, which gets the return value) and the next lead.
  absl::Status LeadGroup(Writer* self) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<const Entry*> entries;
    std::vector<Writer*> group;
    {
      absl::MutexLock lock(&mu_);
      if (writers_.empty()) return absl::OkStatus();
      const size_t candidates = std::min(writers_.size(), max_group_);
      entries.reserve(candidates);
      for (size_t i = 0; i < candidates; ++i) entries.push_back(&writers_[i]->entry);
      const size_t n = std::clamp<size_t>(take_(entries), 1, entries.size());
      entries.resize(n);
      group.assign(writers_.begin(), writers_.begin() + n);
    }
    const absl::Status status = write_(entries);
    Writer* next_leader = nullptr;
    {
      absl::MutexLock lock(&mu_);
      writers_.erase(writers_.begin(), writers_.begin() + group.size());
      if (!writers_.empty()) next_leader = writers_.front();
    }
    if (next_leader != nullptr) HandLead(next_leader);
    for (Writer* done : group) {
      if (done == self) continue;
      done->status = status;
      Writer::Hand(done, Writer::kDone);
    }
    return status;
  }

  // Gives the lead to `next`, or to the lead thread when `next` waits on a
  // fiber.
  void HandLead(Writer* next) ABSL_LOCKS_EXCLUDED(lead_mu_) {
    if (!next->on_fiber) {
      Writer::Hand(next, Writer::kLead);
      return;
    }
    absl::MutexLock lock(&lead_mu_);
    ++leads_wanted_;
    if (!lead_thread_.joinable()) lead_thread_ = std::thread([this] {
        util::NameThisThread("txc-journal");
        LeadLoop();
      });
  }

  void LeadLoop() {
    for (;;) {
      {
        absl::MutexLock lock(&lead_mu_);
        lead_mu_.Await(absl::Condition(
            +[](GroupCommit* g)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->lead_mu_) { return g->leads_wanted_ > 0 || g->lead_stopping_; },
            this));
        if (leads_wanted_ == 0) return;  // stopping, nothing left to lead
        --leads_wanted_;
      }
      (void)LeadGroup(nullptr);
    }
  }

  const size_t max_group_;
  const Take take_;
  const Write write_;
  absl::Mutex mu_;
  std::deque<Writer*> writers_ ABSL_GUARDED_BY(mu_);
  absl::Mutex lead_mu_;
  int leads_wanted_ ABSL_GUARDED_BY(lead_mu_) = 0;
  bool lead_stopping_ ABSL_GUARDED_BY(lead_mu_) = false;
  std::thread lead_thread_ ABSL_GUARDED_BY(lead_mu_);  // started by the first fiber's entry
};

}  // namespace txcoord::journal

#endif  // TXCOORD_JOURNAL_GROUP_COMMIT_H_
