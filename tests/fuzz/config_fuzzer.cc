// libFuzzer target: the YAML configuration parser must answer every input
// with a Config or INVALID_ARGUMENT, never crash or hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "coordinator/redact.h"
#include "server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto config = txcoord::coordinator::ParseConfig(text);
  if (!config.ok() && config.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  (void)txcoord::coordinator::RedactDsn(text);
  (void)txcoord::coordinator::ParseDuration(text);
  return 0;
}
