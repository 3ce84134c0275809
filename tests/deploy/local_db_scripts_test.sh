#!/usr/bin/env bash
# deploy/local/start.sh is safe to run twice (same servers, same ports, etcd
# included), and stop.sh after a killed start leaves no process or port
# behind.
set -euo pipefail
ROOT=$1
DIR=$(mktemp -d /tmp/txcoord-scripts-test.XXXXXX)
chmod 755 "$DIR"
trap 'bash "$ROOT/deploy/local/stop.sh" "$DIR" --wipe >/dev/null 2>&1 || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
port_in_use() { ss -ltnH "sport = :$1" | grep -q .; }

bash "$ROOT/deploy/local/start.sh" "$DIR" >/dev/null
. "$DIR/env"
PG1=$TXC_PG_PORT MY1=$TXC_MARIADB_PORT ETCD1=${TXC_ETCD_ENDPOINTS##*:}
ETCDCTL_API=3 etcdctl --endpoints "$TXC_ETCD_ENDPOINTS" put txcoord-scripts-test ok >/dev/null || fail "etcd does not take a write"
bash "$ROOT/deploy/local/start.sh" "$DIR" >/dev/null
. "$DIR/env"
[ "$PG1" = "$TXC_PG_PORT" ] && [ "$MY1" = "$TXC_MARIADB_PORT" ] && [ "$ETCD1" = "${TXC_ETCD_ENDPOINTS##*:}" ] ||
  fail "second start changed ports"
[ "$(pgrep -a -x etcd | grep -c -- "$DIR/" || true)" -eq 1 ] || fail "second start made a second etcd"
[ "$(pgrep -a -x mariadbd | grep -c -- "$DIR/" || true)" -eq 1 ] || fail "second start made a second MariaDB"
port_in_use "$PG1" || fail "PostgreSQL not listening"
port_in_use "$MY1" || fail "MariaDB not listening"
port_in_use "$ETCD1" || fail "etcd not listening"

bash "$ROOT/deploy/local/stop.sh" "$DIR" >/dev/null
pgrep -f -- "$DIR/" >/dev/null && fail "processes left after stop"
port_in_use "$PG1" && fail "port $PG1 still in use after stop"
port_in_use "$MY1" && fail "port $MY1 still in use after stop"
port_in_use "$ETCD1" && fail "port $ETCD1 still in use after stop"

# A start killed half-way (SIGKILL), then stop: nothing left.
bash "$ROOT/deploy/local/start.sh" "$DIR" >/dev/null 2>&1 &
starter=$!
sleep 1.5
kill -KILL "$starter" 2>/dev/null || true
wait "$starter" 2>/dev/null || true
bash "$ROOT/deploy/local/stop.sh" "$DIR" >/dev/null
sleep 0.5
pgrep -f -- "$DIR/" >/dev/null && fail "processes left after stop of a killed start"
port_in_use "$PG1" && fail "port $PG1 still in use after stop of a killed start"
port_in_use "$MY1" && fail "port $MY1 still in use after stop of a killed start"
port_in_use "$ETCD1" && fail "port $ETCD1 still in use after stop of a killed start"
# And it starts again afterwards, etcd with the data it had.
bash "$ROOT/deploy/local/start.sh" "$DIR" >/dev/null
. "$DIR/env"
[ "$(ETCDCTL_API=3 etcdctl --endpoints "$TXC_ETCD_ENDPOINTS" get --print-value-only txcoord-scripts-test)" = ok ] ||
  fail "etcd lost its data across a restart"
echo "local_db_scripts_test: 1 passed, 0 failed"
