#!/usr/bin/env bash
# Builds the Debian package of txcoord — txcoord and txctl in /usr/bin, the
# systemd unit, the example configuration and docs in /usr/share/doc —
# from a release build (no fault points, no tests) in $TXC_DEB_BUILD_DIR
# (default build-deb/), with CPack's DEB generator (runtime dependencies
# from dpkg-shlibdeps). Prints the package's path.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${TXC_DEB_BUILD_DIR:-$ROOT/build-deb}
bash "$ROOT/deploy/install-deps.sh" >&2
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTXC_FAILPOINTS=OFF \
  -DTXC_BUILD_TESTS=OFF -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
cmake --build "$BUILD" -j "${TXC_JOBS:-2}" --target txcoord txctl >&2
rm -f "$BUILD"/txcoord_*.deb
(cd "$BUILD" && cpack -G DEB >&2)
ls "$BUILD"/txcoord_*.deb
