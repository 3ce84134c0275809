// libFuzzer target: gids read back from pg_prepared_xacts (any transaction
// manager's, any bytes) must parse into a valid xid or be refused.
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
  (void)txcoord::participants::XaLiteral(txcoord::participants::Xid{0, gid, gid});
  return 0;
}
