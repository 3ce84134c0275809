// RunCommand: a shell command's exit code and output, for tests that drive
// the real binaries (txcoord, txctl).
#ifndef TXCOORD_TESTS_TESTING_RUN_COMMAND_H_
#define TXCOORD_TESTS_TESTING_RUN_COMMAND_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>

namespace txcoord::testing {

// Runs `cmd` with sh; returns its exit code (-1 if it did not exit) and
// stdout+stderr.
inline std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_RUN_COMMAND_H_
