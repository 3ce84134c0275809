#!/usr/bin/env bash
# deploy/systemd/txcoord.service: `systemd-analyze verify` finds nothing to
# say (an unknown key or a bad value is only a warning there, so any output
# fails this test), and `systemd-analyze security` rates its exposure 2.0
# or less (0 = fully locked down, 10 = unprotected). The unit's ExecStart is
# pointed at the built binary, as verify checks that it is executable.
# Usage: systemd_unit_test.sh ROOT TXCOORD_BINARY
set -euo pipefail
ROOT=$1
BINARY=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
sed "s|/usr/bin/txcoord|$BINARY|" "$ROOT/deploy/systemd/txcoord.service" > "$TMP/txcoord.service"
if ! out=$(systemd-analyze verify --man=no "$TMP/txcoord.service" 2>&1) || [ -n "$out" ]; then
  echo "systemd-analyze verify: ${out:-failed}" >&2
  exit 1
fi
level=$(systemd-analyze security --offline=true "$TMP/txcoord.service" 2>&1 |
  sed -n 's/.*Overall exposure level for txcoord.service: \([0-9.]*\).*/\1/p')
if [ -z "$level" ]; then
  echo "systemd-analyze security printed no exposure level" >&2
  exit 1
fi
if ! awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
  echo "exposure level $level is above 2.0" >&2
  exit 1
fi
echo "systemd unit: verify clean, exposure $level"
