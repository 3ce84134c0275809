#!/usr/bin/env bash
# Installs the client as a package into a fresh virtual environment made
# from Debian's /usr/bin/python3 (install_venv.sh: offline, never the
# python3 on PATH) and runs the Python client's tests with it against the
# installed package, not this folder. The tests start their own databases
# (deploy/local/start.sh into a temp dir) and txcoord (build/server/txcoord,
# or $TXCOORD_BINARY). Arguments go to pytest.
# Exit status: pytest's, except that "no tests collected" (5) is a failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
WORK=$(mktemp -d /tmp/txcoord-py.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PY=$(./install_venv.sh "$WORK/venv") || exit 1
export PYTHONDONTWRITEBYTECODE=1
export TXCOORD_REQUIRE_INSTALLED=1
# From tests/ and with -P (no current directory on sys.path): `import
# txcoord` finds the installed package only.
cd tests
timeout --kill-after=30 "${TXC_PY_TEST_TIMEOUT:-900}" "$PY" -P -m pytest -p no:cacheprovider . "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
