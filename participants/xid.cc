#include "participants/xid.h"

#include <climits>

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace txcoord::participants {
namespace {

bool IsNodeIdChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
}

bool IsDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Bind names end up inside SQL string literals (gids) and hex literals: keep
// them to printable ASCII without quotes, backslashes or spaces.
bool IsBindChar(char c) {
  return c > 0x20 && c < 0x7f && c != '\'' && c != '"' && c != '\\' && c != '`';
}

}  // namespace

namespace {
uint64_t NodeClaimHash(absl::string_view node_id, absl::string_view bind) {
  uint64_t h = 14695981039346656037ull;
  for (absl::string_view part : {node_id, absl::string_view("/"), bind}) {
    for (char c : part) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
  }
  return h;
}
}  // namespace

std::string NodeClaimName(absl::string_view node_id, absl::string_view bind) {
  return absl::StrCat("txcoord-", absl::Hex(NodeClaimHash(node_id, bind), absl::kZeroPad16));
}

int64_t NodeClaimKey(absl::string_view node_id, absl::string_view bind) {
  return static_cast<int64_t>(NodeClaimHash(node_id, bind) & 0x7fffffffffffffffull);
}

absl::Status ValidateNodeId(absl::string_view node_id) {
  if (node_id.empty() || node_id.size() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("node id \"", node_id, "\" must be 1 to 32 characters long"));
  }
  for (char c : node_id) {
    if (!IsNodeIdChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node id \"", node_id, "\" may hold only letters, digits and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string NodeIdOfGtrid(absl::string_view gtrid) {
  const size_t first = gtrid.find('.');
  if (first == absl::string_view::npos) return "";
  const size_t second = gtrid.find('.', first + 1);
  if (second == absl::string_view::npos) return "";
  absl::string_view node = gtrid.substr(0, first);
  absl::string_view epoch = gtrid.substr(first + 1, second - first - 1);
  absl::string_view seq = gtrid.substr(second + 1);
  if (!ValidateNodeId(node).ok() || !IsDecimal(epoch) || !IsDecimal(seq)) return "";
  return std::string(node);
}

absl::StatusOr<Xid> MakeXid(absl::string_view txn_id, int index, absl::string_view bind) {
  if (NodeIdOfGtrid(txn_id).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "txn id \"", txn_id, "\" is not <node_id>.<epoch>.<seq>"));
  }
  if (txn_id.size() > kMaxGtridBytes) {
    return absl::InvalidArgumentError(absl::StrCat("txn id \"", txn_id, "\" is longer than ",
                                                   kMaxGtridBytes, " bytes"));
  }
  if (index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("branch index ", index, " is negative"));
  }
  if (bind.empty()) return absl::InvalidArgumentError("bind name is empty");
  for (char c : bind) {
    if (!IsBindChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bind name \"", bind,
          "\" may hold only printable ASCII without spaces, quotes or backslashes"));
    }
  }
  Xid xid;
  xid.format_id = kTxcFormatId;
  xid.gtrid = std::string(txn_id);
  xid.bqual = absl::StrCat(index, "-", bind);
  if (xid.bqual.size() > kMaxBqualBytes) {
    return absl::InvalidArgumentError(absl::StrCat("branch qualifier \"", xid.bqual,
                                                   "\" is longer than ", kMaxBqualBytes,
                                                   " bytes (bind name too long)"));
  }
  if (PostgresGid(xid).size() > kMaxPostgresGidBytes) {  // cannot happen with 64+64
    return absl::InvalidArgumentError("PostgreSQL gid would be too long");
  }
  return xid;
}

std::string PostgresGid(const Xid& xid) {
  return absl::StrCat(kPostgresGidPrefix, xid.gtrid, "_", xid.bqual);
}

absl::StatusOr<Xid> ParsePostgresGid(absl::string_view gid) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("gid \"", gid, "\" is not txcoord's: ", why));
  };
  if (gid.size() > kMaxPostgresGidBytes) return invalid("too long");
  if (gid.substr(0, kPostgresGidPrefix.size()) != kPostgresGidPrefix) {
    return invalid("no txc1_ prefix");
  }
  absl::string_view rest = gid.substr(kPostgresGidPrefix.size());
  // A gtrid never contains '_' (node ids are [A-Za-z0-9-]): the first '_'
  // ends it; the bqual (which may hold '_') is the rest.
  const size_t sep = rest.find('_');
  if (sep == absl::string_view::npos) return invalid("no '_' between gtrid and bqual");
  Xid xid;
  xid.format_id = kTxcFormatId;
  xid.gtrid = std::string(rest.substr(0, sep));
  xid.bqual = std::string(rest.substr(sep + 1));
  if (NodeIdOfGtrid(xid.gtrid).empty()) return invalid("gtrid is not a txn id");
  if (xid.gtrid.size() > kMaxGtridBytes) return invalid("gtrid longer than 64 bytes");
  if (xid.bqual.empty() || xid.bqual.size() > kMaxBqualBytes) {
    return invalid("bqual empty or longer than 64 bytes");
  }
  return xid;
}

std::string XaLiteral(const Xid& xid) {
  return absl::StrCat("X'", absl::BytesToHexString(xid.gtrid), "',X'",
                      absl::BytesToHexString(xid.bqual), "',", xid.format_id);
}

std::string XidToString(const Xid& xid) { return absl::StrCat(xid.gtrid, "/", xid.bqual); }

absl::StatusOr<Xid> ParseXaRecoverRow(int64_t format_id, int64_t gtrid_length, int64_t bqual_length,
                                      absl::string_view data) {
  if (gtrid_length < 0 || bqual_length < 0 || gtrid_length > static_cast<int64_t>(kMaxGtridBytes) ||
      bqual_length > static_cast<int64_t>(kMaxBqualBytes) ||
      static_cast<size_t>(gtrid_length + bqual_length) != data.size() || format_id < INT32_MIN ||
      format_id > INT32_MAX) {
    return absl::InvalidArgumentError("an XA RECOVER row whose lengths do not fit its data");
  }
  Xid xid;
  xid.format_id = static_cast<int32_t>(format_id);
  xid.gtrid = std::string(data.substr(0, gtrid_length));
  xid.bqual = std::string(data.substr(gtrid_length));
  return xid;
}

}  // namespace txcoord::participants
