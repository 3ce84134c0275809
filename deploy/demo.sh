#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, starts the local
# databases and the coordinator with the default config, and runs the
# cross-database demo (a money transfer from PostgreSQL to MariaDB committed
# atomically). The databases and the coordinator keep running afterwards;
# stop everything with
#   deploy/local/stop.sh /tmp/txcoord-demo
# TXCOORD_BINARY runs another txcoord (the installed one: deploy/deb/check.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
DBDIR=${TXC_DEMO_DB_DIR:-/tmp/txcoord-demo}
TXCOORD=${TXCOORD_BINARY:-$BUILD/server/txcoord}

bash "$ROOT/deploy/build.sh"
bash "$ROOT/deploy/local/start.sh" "$DBDIR" >/dev/null
set -a
. "$DBDIR/env"
set +a

bash "$ROOT/deploy/demo-schema.sh"

# The default config (deploy/config/local.yaml) with the local databases'
# connection strings from the env file; the journal under $DBDIR/data.
mkdir -p "$DBDIR/data"
CONFIG=$DBDIR/txcoord.yaml
sed -e "s|@DATA@|$DBDIR/data|g" "$ROOT/deploy/config/local.yaml" >"$CONFIG"

if [ -f "$DBDIR/txcoord.pid" ] && kill -0 "$(cat "$DBDIR/txcoord.pid")" 2>/dev/null; then
  kill "$(cat "$DBDIR/txcoord.pid")"
  while kill -0 "$(cat "$DBDIR/txcoord.pid")" 2>/dev/null; do sleep 0.1; done
fi
rm -f "$DBDIR/txcoord.address"
setsid "$TXCOORD" --config "$CONFIG" --address-file "$DBDIR/txcoord.address" \
  </dev/null >>"$DBDIR/txcoord.log" 2>&1 &
echo $! >"$DBDIR/txcoord.pid"
for _ in $(seq 1 300); do
  [ -s "$DBDIR/txcoord.address" ] && break
  kill -0 "$(cat "$DBDIR/txcoord.pid")" 2>/dev/null || { echo "demo: txcoord failed to start:"; tail -20 "$DBDIR/txcoord.log"; exit 1; }
  sleep 0.1
done
ADDRESS=$(cat "$DBDIR/txcoord.address")
echo "demo: txcoord serving on $ADDRESS (log: $DBDIR/txcoord.log, config: $CONFIG)"
"$BUILD/tools/txcoord_demo" --address "$ADDRESS"
echo
echo "demo: txcoord and the databases keep running; stop them with: deploy/local/stop.sh $DBDIR"
