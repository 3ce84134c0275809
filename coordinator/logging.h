// Structured logs on spdlog: text ("txn=<id> message") or JSON lines
// ({"ts":…,"level":…,"txn":…,"msg":…}). Every line about a transaction
// carries its txn id. Messages pass through RedactDsn: a password from a
// connection string never reaches the log.
#ifndef TXCOORD_COORDINATOR_LOGGING_H_
#define TXCOORD_COORDINATOR_LOGGING_H_

#include <string>

#include "absl/strings/string_view.h"
#include "coordinator/redact.h"
#include "spdlog/spdlog.h"

namespace txcoord::coordinator {

// format: "text" or "json"; level: spdlog level name.
void ConfigureLogging(const std::string& format, const std::string& level);

void Log(spdlog::level::level_enum level, absl::string_view txn_id, absl::string_view message);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_LOGGING_H_
