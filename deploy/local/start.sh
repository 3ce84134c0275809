#!/usr/bin/env bash
# Starts throwaway PostgreSQL 15 and MariaDB 10.11 servers and an etcd
# cluster (for cluster mode) on free loopback ports under DIR (default
# /tmp/txcoord-local), creates the test databases and users, and writes
# DIR/env with connection strings:
#   TXC_PG_URI, TXC_PG2_URI      libpq URIs (databases txcoord_a, txcoord_b)
#   TXC_PG_ODBC                  PostgreSQL over psqlODBC
#   TXC_MARIADB_ODBC             MariaDB over MariaDB Connector/ODBC
#   TXC_SQLITE_ODBC              SQLite3 ODBC (a file under DIR)
#   TXC_ETCD_ENDPOINTS           etcd's client endpoints, host:port,…
# TXC_ETCD_MEMBERS=3 starts a three-member etcd cluster (default: one
# member); a cluster already running under DIR keeps its size.
# TXC_LOCAL_ETCD_ONLY=1 starts etcd alone (DIR/env then holds only
# TXC_LOCAL_DIR and TXC_ETCD_ENDPOINTS), e.g. a second etcd cluster.
# Safe to run twice: servers already running under DIR are reused.
# Works as root: PostgreSQL runs as "postgres", MariaDB as "mysql".
# Stop with deploy/local/stop.sh DIR.
set -euo pipefail

DIR=${1:-${TXC_LOCAL_DIR:-/tmp/txcoord-local}}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
chmod 755 "$DIR"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# PostgreSQL's connection limit (TXC_PG_MAX_CONNECTIONS, default 300); a
# server already running under DIR keeps the one it was started with.
PG_MAX_CONNECTIONS=${TXC_PG_MAX_CONNECTIONS:-300}
PASSWORD=txcoord_local_pw
log() { echo "local-db: $*" >&2; }

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
as_user() {  # as_user USER CMD... : run as USER when root, else as ourselves
  local u=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$u" -- "$@"; else "$@"; fi
}
wait_for() {  # wait_for WHAT SECONDS CMD...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up within ${secs}s"; return 1
}

ETCD_ONLY=${TXC_LOCAL_ETCD_ONLY:-0}
if [ "$ETCD_ONLY" != 1 ]; then
# ---------------------------------------------------------------- PostgreSQL
PG_DATA=$DIR/pg/data
PG_SOCK=$DIR/pg/sock
mkdir -p "$DIR/pg" "$PG_SOCK"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$DIR/pg"
if [ -f "$DIR/pg/port" ]; then PG_PORT=$(cat "$DIR/pg/port"); else PG_PORT=$(free_port); echo "$PG_PORT" >"$DIR/pg/port"; fi
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
  log "initdb $PG_DATA"
  rm -rf "$PG_DATA"
  as_user postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log" 2>&1
fi
if as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
  log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
else
  # A free port can be taken by someone else between our probe and the
  # server's bind (parallel test runs): try again on another port.
  for attempt in 1 2 3; do
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    if as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$DIR/pg/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c max_prepared_transactions=200 -c max_connections=$PG_MAX_CONNECTIONS -c fsync=on -c synchronous_commit=on -c full_page_writes=on" \
      start >/dev/null; then
      break
    fi
    [ "$attempt" = 3 ] && { log "PostgreSQL did not start; see $DIR/pg/server.log"; exit 1; }
    PG_PORT=$(free_port); echo "$PG_PORT" >"$DIR/pg/port"
  done
fi
psql_admin() { as_user postgres psql -h "$PG_SOCK" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
wait_for PostgreSQL 60 psql_admin -c 'select 1'
if [ "$(psql_admin -c "select count(*) from pg_roles where rolname='txcoord'")" = 0 ]; then
  psql_admin -c "create role txcoord login password '$PASSWORD'"
fi
for db in txcoord_a txcoord_b; do
  if [ "$(psql_admin -c "select count(*) from pg_database where datname='$db'")" = 0 ]; then
    psql_admin -c "create database $db owner txcoord"
  fi
done

# ---------------------------------------------------------------- MariaDB
MY_DIR=$DIR/mariadb
MY_DATA=$MY_DIR/data
# Its own temporary directory: two installs sharing /tmp at once (parallel
# test suites) collided on MariaDB's "#sql-temptable-…" files ("Unknown
# table 'mysql.tmp_user_sys'", install aborted).
mkdir -p "$MY_DIR/run" "$MY_DIR/tmp"
[ "$(id -u)" -eq 0 ] && chown -R mysql:mysql "$MY_DIR"
if [ -f "$MY_DIR/port" ]; then MY_PORT=$(cat "$MY_DIR/port"); else MY_PORT=$(free_port); echo "$MY_PORT" >"$MY_DIR/port"; fi
MY_SOCK=$MY_DIR/run/mysql.sock
if [ ! -d "$MY_DATA/mysql" ]; then
  log "mariadb-install-db $MY_DATA"
  rm -rf "$MY_DATA"
  as_user mysql mariadb-install-db --no-defaults --user=mysql --datadir="$MY_DATA" \
    --tmpdir="$MY_DIR/tmp" --auth-root-authentication-method=normal --skip-test-db >"$MY_DIR/install.log" 2>&1
fi
my_admin() { mariadb --no-defaults -S "$MY_SOCK" -u root "$@"; }
start_mariadb() {
  log "starting MariaDB on 127.0.0.1:$MY_PORT"
  # Durable settings: flush the redo log at every commit, sync the binlog
  # (XA across binlog and InnoDB), and keep XA PREPAREd branches on disk.
  as_user mysql setsid mariadbd --no-defaults --user=mysql --datadir="$MY_DATA" \
    --socket="$MY_SOCK" --port="$MY_PORT" --bind-address=127.0.0.1 --tmpdir="$MY_DIR/tmp" \
    --pid-file="$MY_DIR/run/mariadbd.pid" --log-error="$MY_DIR/server.log" \
    --default-storage-engine=InnoDB --innodb-flush-log-at-trx-commit=1 \
    --innodb-doublewrite=1 --log-bin="$MY_DATA/binlog" --sync-binlog=1 \
    --max-connections=500 --innodb-lock-wait-timeout=50 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    </dev/null >/dev/null 2>&1 &
}
if [ -f "$MY_DIR/run/mariadbd.pid" ] && kill -0 "$(cat "$MY_DIR/run/mariadbd.pid")" 2>/dev/null; then
  log "MariaDB already running on 127.0.0.1:$MY_PORT"
  wait_for MariaDB 60 my_admin -e 'select 1'
else
  for attempt in 1 2 3; do
    start_mariadb
    if wait_for MariaDB 30 my_admin -e 'select 1'; then break; fi
    # Not up (e.g. the port was taken meanwhile): stop what started, new port.
    pkill -KILL -f -- "--datadir=$MY_DATA" 2>/dev/null || true
    sleep 0.5
    [ "$attempt" = 3 ] && { log "MariaDB did not start; see $MY_DIR/server.log"; exit 1; }
    MY_PORT=$(free_port); echo "$MY_PORT" >"$MY_DIR/port"
  done
fi
my_admin -e "
  DELETE FROM mysql.global_priv WHERE User='';
  CREATE DATABASE IF NOT EXISTS txcoord;
  CREATE USER IF NOT EXISTS 'txcoord'@'localhost' IDENTIFIED BY '$PASSWORD';
  CREATE USER IF NOT EXISTS 'txcoord'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
  CREATE USER IF NOT EXISTS 'txcoord'@'%' IDENTIFIED BY '$PASSWORD';
  GRANT ALL PRIVILEGES ON *.* TO 'txcoord'@'localhost';
  GRANT ALL PRIVILEGES ON *.* TO 'txcoord'@'127.0.0.1';
  GRANT ALL PRIVILEGES ON *.* TO 'txcoord'@'%';
  FLUSH PRIVILEGES;"

fi  # ETCD_ONLY

# ---------------------------------------------------------------- etcd
# Each member's ports are kept in DIR/etcd/<name>/ports, so that a second
# start reuses the running members (and a stopped cluster restarts with the
# peer addresses its data remembers).
ETCD_DIR=$DIR/etcd
mkdir -p "$ETCD_DIR"
if [ -f "$ETCD_DIR/members" ]; then ETCD_MEMBERS=$(cat "$ETCD_DIR/members"); else
  ETCD_MEMBERS=${TXC_ETCD_MEMBERS:-1}
  case $ETCD_MEMBERS in 1|3|5) ;; *) log "TXC_ETCD_MEMBERS must be 1, 3 or 5"; exit 1 ;; esac
  echo "$ETCD_MEMBERS" >"$ETCD_DIR/members"
fi
ETCD_CLUSTER=""
ETCD_ENDPOINTS=""
for i in $(seq 1 "$ETCD_MEMBERS"); do
  m=$ETCD_DIR/m$i
  mkdir -p "$m"
  [ -f "$m/ports" ] || echo "$(free_port) $(free_port)" >"$m/ports"
  read -r client peer <"$m/ports"
  ETCD_CLUSTER="${ETCD_CLUSTER:+$ETCD_CLUSTER,}m$i=http://127.0.0.1:$peer"
  ETCD_ENDPOINTS="${ETCD_ENDPOINTS:+$ETCD_ENDPOINTS,}127.0.0.1:$client"
done
for i in $(seq 1 "$ETCD_MEMBERS"); do
  m=$ETCD_DIR/m$i
  read -r client peer <"$m/ports"
  if [ -f "$m/pid" ] && kill -0 "$(cat "$m/pid")" 2>/dev/null; then
    log "etcd member m$i already running on 127.0.0.1:$client"
    continue
  fi
  log "starting etcd member m$i on 127.0.0.1:$client"
  setsid etcd --name "m$i" --data-dir "$m/data" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new \
    --initial-cluster-token "txcoord-local-$(echo "$DIR" | cksum | cut -d' ' -f1)" \
    </dev/null >>"$m/server.log" 2>&1 &
  echo $! >"$m/pid"
done
etcd_healthy() { ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --command-timeout=2s endpoint health; }
wait_for etcd 60 etcd_healthy || { log "see $ETCD_DIR/m*/server.log"; exit 1; }

if [ "$ETCD_ONLY" = 1 ]; then
  printf "# written by deploy/local/start.sh (etcd only); source it\nexport TXC_LOCAL_DIR='%s'\nexport TXC_ETCD_ENDPOINTS='%s'\n" \
    "$DIR" "$ETCD_ENDPOINTS" >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
  log "ready (etcd only); source $DIR/env"
  echo "$DIR/env"
  exit 0
fi

# ---------------------------------------------------------------- SQLite
mkdir -p "$DIR/sqlite"

cat >"$DIR/env.tmp" <<ENV
# written by deploy/local/start.sh; source it
export TXC_LOCAL_DIR='$DIR'
export TXC_PG_PORT='$PG_PORT'
export TXC_PG_SOCKET_DIR='$PG_SOCK'
export TXC_PG_URI='postgresql://txcoord:$PASSWORD@127.0.0.1:$PG_PORT/txcoord_a'
export TXC_PG2_URI='postgresql://txcoord:$PASSWORD@127.0.0.1:$PG_PORT/txcoord_b'
export TXC_PG_ODBC='Driver=PostgreSQL Unicode;Server=127.0.0.1;Port=$PG_PORT;Database=txcoord_a;Uid=txcoord;Pwd=$PASSWORD'
export TXC_MARIADB_PORT='$MY_PORT'
export TXC_MARIADB_SOCKET='$MY_SOCK'
export TXC_MARIADB_ODBC='Driver=MariaDB Unicode;Server=127.0.0.1;Port=$MY_PORT;Database=txcoord;User=txcoord;Password=$PASSWORD'
export TXC_SQLITE_ODBC='Driver=SQLite3;Database=$DIR/sqlite/txcoord.db'
export TXC_ETCD_ENDPOINTS='$ETCD_ENDPOINTS'
ENV
mv "$DIR/env.tmp" "$DIR/env"
log "ready; source $DIR/env"
echo "$DIR/env"
