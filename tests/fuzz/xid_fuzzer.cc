// libFuzzer target: gids read back from pg_prepared_xacts and rows of
// MariaDB's XA RECOVER (any transaction manager's, any bytes) must parse
// into a valid xid or be refused.
#include <cstddef>
#include <cstdint>
#include <string>

#include "participants/xid.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string gid(reinterpret_cast<const char*>(data), size);
  auto xid = txcoord::participants::ParsePostgresGid(gid);
  if (xid.ok()) {
    // What parses must round-trip and respect the limits.
    if (txcoord::participants::PostgresGid(*xid) != gid) __builtin_trap();
    if (xid->gtrid.size() > txcoord::participants::kMaxGtridBytes) __builtin_trap();
    if (xid->bqual.size() > txcoord::participants::kMaxBqualBytes) __builtin_trap();
  }
  (void)txcoord::participants::NodeIdOfGtrid(gid);
  // The same bytes as an XA RECOVER row: lengths taken from the first bytes.
  if (size >= 2) {
    auto row = txcoord::participants::ParseXaRecoverRow(0x54584331, data[0] % 80, data[1] % 80, gid.substr(2));
    if (row.ok() && row->gtrid.size() + row->bqual.size() != size - 2) __builtin_trap();
  }
  (void)txcoord::participants::XaLiteral(txcoord::participants::Xid{0, gid, gid});
  return 0;
}
