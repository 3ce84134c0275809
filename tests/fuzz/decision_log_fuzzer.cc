// libFuzzer target: any bytes as the journal's decision log file must make
// DecisionLog::Open fail with DATA_LOSS or return a lap whose entries have
// consecutive sequence numbers — never crash or read out of bounds. The
// input is zero-padded to a multiple of 4096 (at least 64 KiB) when its
// length is even, and written as it is when odd (sizes the log refuses).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "journal/decision_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/txcoord-decision-log-fuzz." + std::to_string(::getpid());
  std::string file(reinterpret_cast<const char*>(data), size);
  if (size % 2 == 0) {
    uint64_t padded = (file.size() + 4095) / 4096 * 4096;
    if (padded < (64 << 10)) padded = 64 << 10;
    file.resize(padded, '\0');
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  std::vector<txcoord::journal::DecisionLog::Entry> lap;
  auto log = txcoord::journal::DecisionLog::Open(path, 64 << 10, &lap);
  if (!log.ok()) {
    if (log.status().code() != absl::StatusCode::kDataLoss) __builtin_trap();
    return 0;
  }
  for (size_t i = 1; i < lap.size(); ++i) {
    if (lap[i].seq != lap[i - 1].seq + 1) __builtin_trap();
  }
  return 0;
}
