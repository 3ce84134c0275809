// Status propagation helpers. The packaged Abseil (20220623) has none.
#ifndef TXCOORD_UTIL_STATUS_MACROS_H_
#define TXCOORD_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TXC_STATUS_CONCAT_INNER_(a, b) a##b
#define TXC_STATUS_CONCAT_(a, b) TXC_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define TXC_RETURN_IF_ERROR(expr)                \
  do {                                           \
    ::absl::Status txc_status_ = (expr);         \
    if (!txc_status_.ok()) return txc_status_;   \
  } while (0)

// `lhs = *expr` when `expr` (an absl::StatusOr) is OK, else returns its status.
// `lhs` may be a declaration: TXC_ASSIGN_OR_RETURN(auto x, F());
#define TXC_ASSIGN_OR_RETURN(lhs, expr) \
  TXC_ASSIGN_OR_RETURN_IMPL_(TXC_STATUS_CONCAT_(txc_statusor_, __LINE__), lhs, expr)
#define TXC_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                               \
  if (!var.ok()) return std::move(var).status();   \
  lhs = std::move(var).value()

#endif  // TXCOORD_UTIL_STATUS_MACROS_H_
