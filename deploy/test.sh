#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, starts fresh
# local databases, runs every test with ctest, and stops the databases.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
DBDIR=${TXC_TEST_DB_DIR:-/tmp/txcoord-test}

bash "$ROOT/deploy/build.sh"
# Bounded fuzzing of the parsers of untrusted bytes (TXC_FUZZ_SECONDS=0 skips).
if [ "${TXC_FUZZ_SECONDS:-15}" != 0 ]; then
  bash "$ROOT/deploy/fuzz.sh" "${TXC_FUZZ_SECONDS:-15}"
fi

bash "$ROOT/deploy/local/stop.sh" "$DBDIR" --wipe >/dev/null 2>&1 || true
trap 'bash "$ROOT/deploy/local/stop.sh" "$DBDIR" --wipe >/dev/null 2>&1 || true' EXIT
bash "$ROOT/deploy/local/start.sh" "$DBDIR" >/dev/null
set -a
. "$DBDIR/env"
set +a
ctest --test-dir "$BUILD" --output-on-failure -j "${TXC_TEST_JOBS:-2}" "$@"
