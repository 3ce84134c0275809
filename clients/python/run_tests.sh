#!/usr/bin/env bash
# Generates the stubs and runs the Python client's tests with Debian's
# /usr/bin/python3 (never the python3 on PATH). The tests start their own
# databases (deploy/local/start.sh into a temp dir) and txcoord
# (build/server/txcoord, or $TXCOORD_BINARY). Arguments go to pytest.
# Exit status: pytest's, except that "no tests collected" (5) is a failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
./gen_stubs.sh || exit 1
export PYTHONDONTWRITEBYTECODE=1
timeout --kill-after=30 "${TXC_PY_TEST_TIMEOUT:-900}" /usr/bin/python3 -m pytest -p no:cacheprovider tests "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
