#!/usr/bin/env bash
# Builds the .deb (deploy/deb/build.sh), installs it with apt-get, checks
# what it installed, runs the README's demo against the installed
# /usr/bin/txcoord (the transfer must commit, the overdraft roll back) and
# txctl against it, then removes the package. Run as root; needs the
# test build (deploy/build.sh) for the demo's client.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DBDIR=${TXC_DEB_DB_DIR:-/tmp/txcoord-deb-check}
DEB=$(bash "$ROOT/deploy/deb/build.sh")
echo "deb-check: $DEB ($(du -h "$DEB" | cut -f1))"
dpkg-deb --field "$DEB" Package Version Depends
if dpkg-query -W txcoord >/dev/null 2>&1; then
  echo "deb-check: txcoord is already installed; not touching it" >&2
  exit 1
fi
cleanup() {
  bash "$ROOT/deploy/local/stop.sh" "$DBDIR" --wipe >/dev/null 2>&1 || true
  apt-get remove -y -q txcoord >/dev/null 2>&1 || true
}
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$DEB" >/dev/null
for f in /usr/bin/txcoord /usr/bin/txctl /usr/lib/systemd/system/txcoord.service \
         /usr/share/doc/txcoord/txcoord.example.yaml; do
  [ -e "$f" ] || { echo "deb-check: $f not installed" >&2; exit 1; }
done
out=$(systemd-analyze verify /usr/lib/systemd/system/txcoord.service 2>&1) || true
[ -z "$out" ] || { echo "deb-check: systemd-analyze verify: $out" >&2; exit 1; }
/usr/bin/txcoord --version
/usr/bin/txctl --version
# The demo against the installed coordinator.
TXCOORD_BINARY=/usr/bin/txcoord TXC_DEMO_DB_DIR=$DBDIR bash "$ROOT/deploy/demo.sh"
/usr/bin/txctl --address "$(cat "$DBDIR/txcoord.address")" binds
kill "$(cat "$DBDIR/txcoord.pid")"
echo "deb-check: OK"
