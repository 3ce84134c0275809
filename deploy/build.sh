#!/usr/bin/env bash
# Installs what is missing and builds txcoord into BUILD_DIR (default build/).
# Test builds (TXC_FAILPOINTS=ON) carry the named fault points.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
bash "$ROOT/deploy/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTXC_FAILPOINTS="${TXC_FAILPOINTS:-ON}" >/dev/null
cmake --build "$BUILD" -j "${TXC_JOBS:-2}"
