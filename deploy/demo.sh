#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, starts the local
# databases and the coordinator with the default config, and runs the
# cross-database demo (a money transfer from PostgreSQL to MariaDB committed
# atomically). Leaves the databases running; stop them with
#   deploy/local/stop.sh /tmp/txcoord-demo
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
DBDIR=${TXC_DEMO_DB_DIR:-/tmp/txcoord-demo}

TXC_FAILPOINTS=${TXC_FAILPOINTS:-ON} bash "$ROOT/deploy/build.sh"
bash "$ROOT/deploy/local/start.sh" "$DBDIR" >/dev/null
set -a
. "$DBDIR/env"
set +a

if [ -x "$BUILD/tools/txcoord_demo" ]; then
  exec "$BUILD/tools/txcoord_demo" --workdir "$DBDIR"
fi
echo "demo: databases are up ($DBDIR/env); the coordinator is not built yet in this tree"
