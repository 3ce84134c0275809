#!/usr/bin/env bash
# Runs the example with one command: local PostgreSQL + MariaDB
# (deploy/local/start.sh), a txcoord with binds "pg" and "maria" on them, and
# the Flask app on 127.0.0.1:${PORT:-5000}. Ctrl-C stops txcoord and the app;
# the databases keep running: deploy/local/stop.sh "$DIR" [--wipe].
#   DIR=/tmp/txc-flask-example examples/flask_binds/run.sh
#   curl -s -XPOST 127.0.0.1:5000/orders -H 'content-type: application/json' -d '{"id":1,"item":"bolt","quantity":3}'
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DIR=${DIR:-/tmp/txc-flask-example}
BIN=${TXCOORD_BINARY:-$REPO/build/server/txcoord}
[ -x "$BIN" ] || bash "$REPO/deploy/build.sh"
bash "$REPO/deploy/local/start.sh" "$DIR"
. "$DIR/env"
mkdir -p "$DIR/txcoord"
cat >"$DIR/txcoord/txcoord.yaml" <<YAML
node_id: flask-example
listen: 127.0.0.1:0
plaintext: true
journal: {dir: $DIR/txcoord/journal}
binds:
  pg: {driver: postgres, dsn: "$TXC_PG_URI"}
  maria: {driver: odbc, dsn: "$TXC_MARIADB_ODBC"}
YAML
rm -f "$DIR/txcoord/address"
"$BIN" --config "$DIR/txcoord/txcoord.yaml" --address-file "$DIR/txcoord/address" >>"$DIR/txcoord/txcoord.log" 2>&1 &
TXC_PID=$!
trap 'kill $TXC_PID 2>/dev/null; wait $TXC_PID 2>/dev/null' EXIT
for _ in $(seq 1 300); do [ -s "$DIR/txcoord/address" ] && break; sleep 0.1; done
[ -s "$DIR/txcoord/address" ] || { echo "txcoord did not start; see $DIR/txcoord/txcoord.log" >&2; exit 1; }
export TXCOORD_ADDRESS=$(cat "$DIR/txcoord/address")
export DATABASE_URL=${TXC_PG_URI/postgresql:\/\//postgresql+psycopg2://}
export MARIADB_URL="mysql+pymysql://txcoord:txcoord_local_pw@127.0.0.1:$TXC_MARIADB_PORT/txcoord"
# The client as a package, in a virtual environment on Debian's Python.
PY=$(bash "$REPO/clients/python/install_venv.sh" "$DIR/venv")
echo "txcoord on $TXCOORD_ADDRESS; app on http://127.0.0.1:${PORT:-5000}" >&2
"$PY" "$HERE/app.py"
