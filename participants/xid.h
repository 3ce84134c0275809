// Global transaction identifiers, encoded in one place.
//
//   txn id  "<node_id>.<epoch>.<seq>"   node_id: [A-Za-z0-9-]{1,32}
//   XA xid  formatID = kTxcFormatId, gtrid = txn id (<= 64 bytes),
//           bqual = "<branch index>-<bind>" (<= 64 bytes)
//   PostgreSQL gid "txc1_<gtrid>_<bqual>" (< 200 bytes)
//   MariaDB/MySQL  X'<hex gtrid>',X'<hex bqual>',<formatID>
#ifndef TXCOORD_PARTICIPANTS_XID_H_
#define TXCOORD_PARTICIPANTS_XID_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace txcoord::participants {

inline constexpr int32_t kTxcFormatId = 0x54584331;  // "TXC1"
inline constexpr size_t kMaxGtridBytes = 64;
inline constexpr size_t kMaxBqualBytes = 64;
inline constexpr size_t kMaxPostgresGidBytes = 199;
inline constexpr absl::string_view kPostgresGidPrefix = "txc1_";

struct Xid {
  int32_t format_id = kTxcFormatId;
  std::string gtrid;
  std::string bqual;
  bool operator==(const Xid&) const = default;
};

// Validates a node id: 1–32 characters of [A-Za-z0-9-].
absl::Status ValidateNodeId(absl::string_view node_id);

// The database lock a coordinator holds on its node id for one bind
// (Participant::ClaimNode), from FNV-1a of "<node_id>/<bind>": a name for
// named locks ("txcoord-" and 16 hex digits: MariaDB allows 64 characters)
// and a positive 63-bit key for PostgreSQL's advisory locks. Per bind, so
// that two binds of one coordinator may share a database.
std::string NodeClaimName(absl::string_view node_id, absl::string_view bind);
int64_t NodeClaimKey(absl::string_view node_id, absl::string_view bind);
// The xid of branch `index` on `bind` of transaction `txn_id`; checks the limits.
absl::StatusOr<Xid> MakeXid(absl::string_view txn_id, int index, absl::string_view bind);
// The node id part of a gtrid ("" when it is not a txn id).
std::string NodeIdOfGtrid(absl::string_view gtrid);

std::string PostgresGid(const Xid& xid);
// Parses a gid made by PostgresGid; INVALID_ARGUMENT for any other.
absl::StatusOr<Xid> ParsePostgresGid(absl::string_view gid);

// One row of MariaDB/MySQL's XA RECOVER (formatID, gtrid_length,
// bqual_length, data): the xid, or INVALID_ARGUMENT when the lengths do not
// fit the data or the limits (the row comes from the database: any bytes).
absl::StatusOr<Xid> ParseXaRecoverRow(int64_t format_id, int64_t gtrid_length, int64_t bqual_length,
                                      absl::string_view data);

// "X'…',X'…',<formatID>" for XA statements (MariaDB/MySQL).
std::string XaLiteral(const Xid& xid);
// A readable form for logs and admin replies: "<gtrid>/<bqual>".
std::string XidToString(const Xid& xid);

}  // namespace txcoord::participants

#endif  // TXCOORD_PARTICIPANTS_XID_H_
