// A temporary directory removed (recursively) when it goes out of scope —
// unless the running test has failed: then it is kept (logs, journals) and
// its path printed.
#ifndef TXCOORD_TESTS_TESTING_TEMP_DIR_H_
#define TXCOORD_TESTS_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <cstdio>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace txcoord::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "txcoord-test.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    if (!path_.empty() && ::testing::Test::HasFailure()) {
      std::fprintf(stderr, "kept %s: the test failed\n", path_.c_str());
      return;
    }
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_TEMP_DIR_H_
