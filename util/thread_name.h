// Names the calling thread, as `top -H`, `ps -L`, gdb and perf show it.
// Every thread txcoord starts names itself "txc-<role>"; the budget of
// threads by role is in docs/operations.md ("Threads").
#ifndef TXCOORD_UTIL_THREAD_NAME_H_
#define TXCOORD_UTIL_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace txcoord::util {

// Linux keeps at most 15 characters of a thread's name; longer names are cut.
inline void NameThisThread(const std::string& name) {
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace txcoord::util

#endif  // TXCOORD_UTIL_THREAD_NAME_H_
