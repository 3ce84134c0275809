// Connection settings of the local test databases (deploy/local/start.sh
// writes them to an env file; deploy/test.sh sources it before ctest).
#ifndef TXCOORD_TESTS_TESTING_LOCAL_DB_H_
#define TXCOORD_TESTS_TESTING_LOCAL_DB_H_

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace txcoord::testing {

// True when the tests run under CI (CI=true): a missing database then fails
// the test instead of skipping it.
inline bool UnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

inline std::string EnvOrEmpty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace txcoord::testing

// Puts the value of environment variable VAR in `out` (a std::string), or
// skips the test (fails it under CI) when VAR is unset.
#define TXC_REQUIRE_DB_ENV(out, VAR)                                       \
  do {                                                                     \
    out = ::txcoord::testing::EnvOrEmpty(VAR);                             \
    if (out.empty()) {                                                     \
      if (::txcoord::testing::UnderCi()) {                                 \
        FAIL() << VAR << " is not set: start deploy/local/start.sh and "   \
                         "source its env file";                            \
      }                                                                    \
      GTEST_SKIP() << VAR << " is not set (run through deploy/test.sh)";   \
    }                                                                      \
  } while (0)

#endif  // TXCOORD_TESTS_TESTING_LOCAL_DB_H_
