// IoWatchdog: a bound on blocking network calls made through client
// libraries that have no read timeout of their own (libpq waits in poll(2)
// without one). A call arms a deadline for its socket; if the call has not
// disarmed it by then, one background thread shuts the socket down
// (shutdown(2), both directions): the blocked read returns end-of-file and
// the library reports a lost connection. The socket is not closed — its
// owner still closes it — so the number can never be reused under a watch.
//
//   IoWatchdog::Watch w(fd, absl::Seconds(60));   // before the call
//   ... blocking call on fd ...
//   if (w.Disarm()) { /* the deadline passed: the connection is gone */ }
//
// Thread-safe. The thread starts with the first watch and lives for the
// process. Arming wakes it only for a deadline earlier than its next look
// (with nothing armed it looks once a second), so a call costs no thread
// wake-up.
#ifndef TXCOORD_UTIL_IO_WATCHDOG_H_
#define TXCOORD_UTIL_IO_WATCHDOG_H_

#include <cstdint>

#include "absl/time/time.h"

namespace txcoord::util {

class IoWatchdog {
 public:
  // Arms a deadline `timeout` from now for socket `fd` until Disarm() or
  // destruction. A timeout <= 0 or an fd < 0 arms nothing.
  class Watch {
   public:
    Watch(int fd, absl::Duration timeout);
    ~Watch() { (void)Disarm(); }
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    // Ends the watch (once); true if the deadline had passed and the socket
    // was shut down.
    bool Disarm();

   private:
    uint64_t id_ = 0;  // 0: nothing armed
    bool fired_ = false;
  };

  // Sockets shut down so far (for tests).
  static uint64_t fired_total();
};

}  // namespace txcoord::util

#endif  // TXCOORD_UTIL_IO_WATCHDOG_H_
