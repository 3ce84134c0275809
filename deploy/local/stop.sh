#!/usr/bin/env bash
# Stops the servers (PostgreSQL, MariaDB, etcd) that deploy/local/start.sh
# started under DIR and leaves nothing running, also after a failed or
# killed start. Keeps the data unless --wipe is given.
set -uo pipefail

DIR=${1:-${TXC_LOCAL_DIR:-/tmp/txcoord-local}}
WIPE=${2:-}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
log() { echo "local-db: $*" >&2; }
[ -d "$DIR" ] || { log "$DIR does not exist: nothing to stop"; exit 0; }
DIR=$(cd "$DIR" && pwd)

as_user() {
  local u=$1; shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$u" -- "$@"; else "$@"; fi
}

if [ -f "$DIR/pg/data/postmaster.pid" ]; then
  as_user postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
    && log "PostgreSQL stopped"
fi
if [ -f "$DIR/mariadb/run/mariadbd.pid" ]; then
  pid=$(cat "$DIR/mariadb/run/mariadbd.pid")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  log "MariaDB stopped"
fi
for pidfile in "$DIR"/etcd/m*/pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$pidfile"
  log "etcd member $(basename "$(dirname "$pidfile")") stopped"
done
# A server still running from this directory (a start killed half-way, a
# server that ignored the polite stop) is killed outright, and so is a
# txcoord whose command line names it (the demo's). Only those: a script or
# wrapper whose command line names DIR is left alone.
for _ in 1 2 3; do
  pids=""
  for pid in $(pgrep -f -- "$DIR/" || true); do
    [ "$pid" = "$$" ] && continue
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
      postgres|mariadbd|mysqld|etcd|txcoord) pids="$pids $pid" ;;
    esac
  done
  [ -z "$pids" ] && break
  kill -KILL $pids 2>/dev/null
  sleep 0.3
done
rm -f "$DIR/mariadb/run/mariadbd.pid" "$DIR/mariadb/run/mysql.sock"
if [ "$WIPE" = "--wipe" ]; then rm -rf "$DIR"; log "removed $DIR"; fi
exit 0
