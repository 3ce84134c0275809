// Named fault points for deterministic crash and fault tests.
//
//   TXC_FAILPOINT("commit.after_decision_logged");
//   TXC_FAILPOINT_RETURN_IF_ERROR("journal.before_sync");
//
// Compiled only when the build defines TXC_FAILPOINTS_ENABLED (CMake option
// TXC_FAILPOINTS, on in test builds): release builds have no fault points and
// the macros expand to nothing.
//
// A point is armed from the environment at first use,
//   TXC_FAILPOINTS="commit.after_decision_logged=crash;prepare.before=delay(50)"
// or from code with failpoint::Arm(). Actions:
//   crash        SIGKILL this process at once (no destructors, no flush)
//   error        TXC_FAILPOINT_RETURN_IF_ERROR returns UNAVAILABLE
//   delay(N)     sleep N milliseconds (util::Sleep: on a fiber, only that
//                fiber waits), then go on
//   An action may carry "@K": fire only at the K-th hit (1-based), e.g.
//   "commit.after_branch_committed=crash@2".
// Thread safety: every function here is thread-safe.
#ifndef TXCOORD_UTIL_FAILPOINT_H_
#define TXCOORD_UTIL_FAILPOINT_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace txcoord::failpoint {

// Arms `name` with `action` (see above). Returns INVALID_ARGUMENT for an
// unknown action.
absl::Status Arm(absl::string_view name, absl::string_view action);
// Disarms `name`; a no-op when it is not armed.
void Disarm(absl::string_view name);
void DisarmAll();
// Hits `name`: performs its action if armed. Returns an error only for the
// "error" action.
absl::Status Hit(absl::string_view name);
// How many times `name` was hit since it was armed (0 when not armed).
int HitCount(absl::string_view name);

}  // namespace txcoord::failpoint

// TXC_FAILPOINT_STATUS(name): the point's status (OK when not armed, and
// always OK in builds without fault points).
#ifdef TXC_FAILPOINTS_ENABLED
#define TXC_FAILPOINT_STATUS(name) ::txcoord::failpoint::Hit(name)
#define TXC_FAILPOINT(name) (void)::txcoord::failpoint::Hit(name)
#define TXC_FAILPOINT_RETURN_IF_ERROR(name)                       \
  do {                                                            \
    ::absl::Status txc_fp_ = ::txcoord::failpoint::Hit(name);     \
    if (!txc_fp_.ok()) return txc_fp_;                            \
  } while (0)
#else
#define TXC_FAILPOINT_STATUS(name) ::absl::OkStatus()
#define TXC_FAILPOINT(name) \
  do {                      \
  } while (0)
#define TXC_FAILPOINT_RETURN_IF_ERROR(name) \
  do {                                      \
  } while (0)
#endif

#endif  // TXCOORD_UTIL_FAILPOINT_H_
