#include "coordinator/logging.h"

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "coordinator/redact.h"
#include "nlohmann/json.hpp"

namespace txcoord::coordinator {
namespace {
std::atomic<bool> g_json{false};
}

void ConfigureLogging(const std::string& format, const std::string& level) {
  g_json = format == "json";
  if (g_json) {
    spdlog::set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
  } else {
    spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  }
  spdlog::set_level(spdlog::level::from_str(level));
}


void Log(spdlog::level::level_enum level, absl::string_view txn_id, absl::string_view message) {
  if (!spdlog::should_log(level)) return;
  std::string msg(message);
  std::string lower = absl::AsciiStrToLower(msg);
  if (absl::StrContains(lower, "password") || absl::StrContains(lower, "pwd") ||
      absl::StrContains(lower, "://")) {
    msg = RedactDsn(msg);
  }
  if (g_json) {
    nlohmann::json j;
    if (!txn_id.empty()) j["txn"] = std::string(txn_id);
    j["msg"] = msg;
    std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    spdlog::log(level, "{}", body.substr(1, body.size() - 2));  // without the braces
  } else if (txn_id.empty()) {
    spdlog::log(level, "{}", msg);
  } else {
    spdlog::log(level, "txn={} {}", std::string(txn_id), msg);
  }
}

}  // namespace txcoord::coordinator
