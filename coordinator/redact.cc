#include "coordinator/redact.h"

#include <regex>

namespace txcoord::coordinator {

std::string RedactDsn(const std::string& dsn) {
  // URI form: scheme://user:password@host
  static const std::regex uri_password(R"(([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@\s]*@)");
  // key=value forms: Password=…; Pwd=…; password=… (libpq)
  static const std::regex kv_password(R"(((?:^|[;\s'"])(?:password|pwd)\s*=\s*)(\{[^}]*\}|[^;\s'"]*))",
                                      std::regex::icase);
  std::string out = std::regex_replace(dsn, uri_password, "$1:***@");
  out = std::regex_replace(out, kv_password, "$1***");
  return out;
}

}  // namespace txcoord::coordinator
