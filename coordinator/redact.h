// Passwords kept out of logs and error messages.
#ifndef TXCOORD_COORDINATOR_REDACT_H_
#define TXCOORD_COORDINATOR_REDACT_H_

#include <string>

namespace txcoord::coordinator {

// `dsn` with its password replaced by "***" (URI user:password@, and
// password= / pwd= in key=value forms).
std::string RedactDsn(const std::string& dsn);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_COORDINATOR_REDACT_H_
