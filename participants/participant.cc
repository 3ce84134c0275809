#include "participants/participant.h"

#include "absl/strings/str_cat.h"
#include "participants/noop/noop_participant.h"
#include "participants/odbc/odbc_participant.h"
#include "participants/postgres/postgres_participant.h"

namespace txcoord::participants {

absl::StatusOr<std::unique_ptr<Participant>> CreateParticipant(const BindOptions& options) {
  if (options.name.empty()) return absl::InvalidArgumentError("bind name is empty");
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bind ", options.name, ": pool_size must be at least 1"));
  }
  if (options.driver == "postgres") return CreatePostgresParticipant(options);
  if (options.driver == "odbc") return CreateOdbcParticipant(options);
  if (options.driver == "noop") return CreateNoopParticipant(options);  // test-only
  return absl::InvalidArgumentError(absl::StrCat("bind ", options.name, ": unknown driver \"",
                                                 options.driver, "\" (postgres, odbc or the test-only noop)"));
}

}  // namespace txcoord::participants
