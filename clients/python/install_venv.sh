#!/usr/bin/env bash
# Installs the txcoord package (this folder) into a virtual environment at
# $1, made from Debian's /usr/bin/python3 with --system-site-packages so
# that Debian's grpcio, protobuf, SQLAlchemy, Flask… serve its
# dependencies. Offline: pip builds with Debian's setuptools and grpc_tools
# (--no-build-isolation) and looks at no index (--no-index). Prints the
# environment's python.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${1:?usage: install_venv.sh VENV_DIR}
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-index \
  --force-reinstall --no-deps "$HERE" >&2
# The dependencies come from the system (not checked by pip: --no-deps):
# importing the package fails clearly if one is missing.
(cd / && "$VENV/bin/python" -P -c 'import txcoord') >&2
echo "$VENV/bin/python"
