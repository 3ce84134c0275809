#!/usr/bin/env bash
# The cluster demo: three txcoord nodes (n1, n2, n3) sharing their journal
# on etcd, in front of the local databases (PostgreSQL txcoord_a and
# txcoord_b, MariaDB); a client (deploy/cluster_demo_client.py) spreads
# money transfers over the nodes from several threads, each transfer one
# RunTransaction that debits an account in one database and credits one in
# another. Mid-run, n1 is killed (SIGKILL) and its directory deleted; a
# survivor adopts it (finishes or rolls back what n1 left); n1 is started
# again from an empty directory. At the end: the balances (their total must
# not have moved), the adoption, and the prepared branches left in the
# databases (none).
#
#   usage: deploy/cluster-demo.sh [DIR]     (default /tmp/txcoord-cluster-demo)
#
# DIR holds the databases (deploy/local/start.sh DIR: reused when already
# running there, otherwise started and stopped again at the end) and
# DIR/cluster/<node>/ each node's config, log and address file. The nodes
# are always stopped at the end. Uses the built binaries ($TXC_BUILD_DIR,
# default build/: server/txcoord, tools/txctl); builds nothing.
# TXC_CLUSTER_DEMO_SECONDS (20), _THREADS (6) and _KILL_AFTER (6) tune the run.
# The last line: cluster-demo: nodes=3 transfers_acked=N adopted=K total=T
# prepared_left=P result=ok|BROKEN; the exit code is 1 when BROKEN.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
case ${1:-} in -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
[ $# -le 1 ] || { echo "usage: $0 [DIR]" >&2; exit 2; }
DIR=${1:-/tmp/txcoord-cluster-demo}
SECONDS_RUN=${TXC_CLUSTER_DEMO_SECONDS:-20}
THREADS=${TXC_CLUSTER_DEMO_THREADS:-6}
KILL_AFTER=${TXC_CLUSTER_DEMO_KILL_AFTER:-6}
PY=/usr/bin/python3
CLIENT=$ROOT/deploy/cluster_demo_client.py
NODES="n1 n2 n3"
ACCOUNTS=10
INITIAL=1000
START_TOTAL=$((3 * ACCOUNTS * INITIAL))
LEASE_TTL=5
CLUSTER=demo-$$-$(date +%s)
log() { echo "cluster-demo: $*"; }
die() { echo "cluster-demo: $*" >&2; exit 1; }

for f in "$BUILD/server/txcoord" "$BUILD/tools/txctl"; do
  [ -x "$f" ] || die "$f is not built (deploy/build.sh builds it)"
done
[ -x "$PY" ] || die "$PY is missing (Debian's python3 with python3-grpcio)"

# ---------------------------------------------------------------- databases
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
alive_pidfile() { [ -f "$1" ] && kill -0 "$(head -1 "$1")" 2>/dev/null; }
dbs_running() {
  [ -f "$DIR/env" ] && alive_pidfile "$DIR/pg/data/postmaster.pid" \
    && alive_pidfile "$DIR/mariadb/run/mariadbd.pid" && alive_pidfile "$DIR/etcd/m1/pid"
}
STARTED_DBS=0
if dbs_running; then
  log "reusing the databases and etcd running under $DIR (they keep running)"
else
  log "starting PostgreSQL, MariaDB and etcd under $DIR (deploy/local/start.sh)"
  STARTED_DBS=1
fi

NODE_PIDS=()      # "name:pid" of every txcoord this script started
CLIENT_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then kill "$CLIENT_PID" 2>/dev/null || true; fi
  local entry pid
  for entry in "${NODE_PIDS[@]}"; do
    pid=${entry#*:}
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
  done
  for entry in "${NODE_PIDS[@]}"; do
    pid=${entry#*:}
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "${entry%%:*} (pid $pid) did not stop within 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  [ ${#NODE_PIDS[@]} -gt 0 ] && log "txcoord nodes stopped"
  # The run's keys in etcd (its cluster name is used once).
  if [ -n "${TXC_ETCD_ENDPOINTS:-}" ]; then
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints "$TXC_ETCD_ENDPOINTS" --command-timeout=5s \
      del --prefix "/txcoord/$CLUSTER/" >/dev/null 2>&1 || true
  fi
  if [ "$STARTED_DBS" = 1 ]; then
    bash "$ROOT/deploy/local/stop.sh" "$DIR" 2>/dev/null || true
    log "databases and etcd stopped (started by this run; data kept under $DIR)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$STARTED_DBS" = 1 ]; then
  timeout 300 bash "$ROOT/deploy/local/start.sh" "$DIR" >/dev/null 2>"$DIR/start.log" \
    || { cat "$DIR/start.log" >&2; die "deploy/local/start.sh $DIR failed"; }
fi
set -a
. "$DIR/env"
set +a

pg() { timeout 30 psql "$1" -X -v ON_ERROR_STOP=1 -qtA -F $'\t' "${@:2}"; }
my() { timeout 30 mariadb --no-defaults -S "$TXC_MARIADB_SOCKET" -u root txcoord -N -B "$@"; }
prepared_count() {  # "ALL PG_A PG_B MARIADB": prepared branches in the three databases ("?": no answer)
  local a b m
  a=$(pg "$TXC_PG_URI" -c "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()") || a='?'
  b=$(pg "$TXC_PG2_URI" -c "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()") || b='?'
  m=$(my -e "XA RECOVER") && m=$(printf '%s' "$m" | grep -c . || true) || m='?'
  case "$a$b$m" in *'?'*) echo "? $a $b $m" ;; *) echo "$((a + b + m)) $a $b $m" ;; esac
}

read -r left left_a left_b left_m < <(prepared_count)
if [ "$left" != 0 ]; then
  die "the databases under $DIR already hold prepared branches (txcoord_a $left_a, txcoord_b $left_b, MariaDB $left_m),
  left by something else; the demo counts what it leaves, so it needs none to start with.
  Resolve them (txctl in-doubt / resolve) or, for a throwaway DIR: deploy/local/stop.sh $DIR --wipe"
fi

# Fresh accounts (10 of 1000 in each database) and ledgers.
log "accounts: $ACCOUNTS of $INITIAL in each of txcoord_a (pg), txcoord_b (pg2) and MariaDB txcoord (maria)"
for uri in "$TXC_PG_URI" "$TXC_PG2_URI"; do
  pg "$uri" -c "SET lock_timeout = '10s'" -c "SET client_min_messages = warning" \
    -c "DROP TABLE IF EXISTS cluster_demo_accounts, cluster_demo_ledger" \
    -c "CREATE TABLE cluster_demo_accounts (id int PRIMARY KEY, balance bigint NOT NULL)" \
    -c "CREATE TABLE cluster_demo_ledger (k varchar(64) NOT NULL, leg char(1) NOT NULL, acct int NOT NULL, amount bigint NOT NULL)" \
    -c "INSERT INTO cluster_demo_accounts SELECT g, $INITIAL FROM generate_series(1, $ACCOUNTS) g"
done
my -e "SET SESSION lock_wait_timeout = 10;
  DROP TABLE IF EXISTS cluster_demo_accounts, cluster_demo_ledger;
  CREATE TABLE cluster_demo_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
  CREATE TABLE cluster_demo_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(64) NOT NULL,
    leg CHAR(1) NOT NULL, acct INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB;
  INSERT INTO cluster_demo_accounts SELECT seq, $INITIAL FROM seq_1_to_$ACCOUNTS;"

# ---------------------------------------------------------------- the nodes
CL=$DIR/cluster
rm -rf "$CL"
mkdir -p "$CL/bin"
# The nodes run a copy of the binary, so that a rebuild during the run
# cannot mix versions (n1 is started again half-way).
cp "$BUILD/server/txcoord" "$CL/bin/txcoord"
TXCTL=$BUILD/tools/txctl
ENDPOINTS=$(echo "$TXC_ETCD_ENDPOINTS" | tr ',' '\n' | sed 's/.*/"&"/' | paste -sd, -)

write_config() {  # write_config NODE: DIR/cluster/NODE/txcoord.yaml
  local d=$CL/$1
  mkdir -p "$d"
  cat >"$d/txcoord.yaml" <<YAML
# deploy/cluster-demo.sh: node $1 of cluster $CLUSTER
node_id: $1
listen: 127.0.0.1:0
plaintext: true
journal:
  backend: etcd
  etcd: {endpoints: [$ENDPOINTS], cluster: $CLUSTER, lease_ttl: ${LEASE_TTL}s, call_timeout: 2s}
timeouts: {transaction: 30s, idle: 60s, orphan_safety: 30s}
recovery: {interval: 2s}
binds:
  pg:    {driver: postgres, dsn: "\${TXC_PG_URI}"}
  pg2:   {driver: postgres, dsn: "\${TXC_PG2_URI}"}
  maria: {driver: odbc, dsn: "\${TXC_MARIADB_ODBC}"}
YAML
}
pid_of() { local e p=""; for e in "${NODE_PIDS[@]}"; do [ "${e%%:*}" = "$1" ] && p=${e#*:}; done; echo "$p"; }
start_node() {  # start_node NODE: in the background, its directory as working directory
  local d=$CL/$1
  rm -f "$d/address"
  (cd "$d" && exec "$CL/bin/txcoord" --config "$d/txcoord.yaml" --address-file "$d/address") \
    </dev/null >>"$d/txcoord.log" 2>&1 &
  NODE_PIDS+=("$1:$!")
}
wait_serving() {  # wait_serving NODE PID: up to 60 s for its address file
  local d=$CL/$1
  for _ in $(seq 1 600); do
    [ -s "$d/address" ] && return 0
    kill -0 "$2" 2>/dev/null || { log "$1 exited while starting:"; tail -20 "$d/txcoord.log"; return 1; }
    sleep 0.1
  done
  log "$1 did not serve within 60s:"; tail -20 "$d/txcoord.log"; return 1
}
serving_line() {  # "n1 serving on ADDR (pid P, epoch E)"
  local epoch
  epoch=$(grep -o 'journal etcd opened: node_id=[^ ]* epoch=[0-9]*' "$CL/$1/txcoord.log" | tail -1 | sed 's/.*epoch=//')
  echo "$1 serving on $(cat "$CL/$1/address") (pid $2, epoch ${epoch:-?}, log $CL/$1/txcoord.log)"
}

log "cluster \"$CLUSTER\" on etcd $TXC_ETCD_ENDPOINTS: starting $NODES (lease_ttl ${LEASE_TTL}s)"
for n in $NODES; do write_config "$n"; start_node "$n"; done
for n in $NODES; do
  p=$(pid_of "$n")
  wait_serving "$n" "$p" || die "$n did not start"
  log "  $(serving_line "$n" "$p")"
done
ADDR_N2=$(cat "$CL/n2/address")
echo
timeout 15 "$TXCTL" -a "$ADDR_N2" --rpc-timeout 10 nodes | sed 's/^/  /' || log "(txctl nodes failed)"
echo

# ---------------------------------------------------------------- the run
RESULTS=$CL/results.json
"$PY" "$CLIENT" transfers --seconds "$SECONDS_RUN" --threads "$THREADS" --accounts "$ACCOUNTS" \
  --run-id "$CLUSTER" --out "$RESULTS" \
  --node "n1=$CL/n1/address" --node "n2=$CL/n2/address" --node "n3=$CL/n3/address" &
CLIENT_PID=$!
T0=$EPOCHREALTIME
elapsed() { awk -v now="$EPOCHREALTIME" -v t0="$T0" 'BEGIN { printf "%.1f", now - t0 }'; }

sleep "$KILL_AFTER"
kill -0 "$CLIENT_PID" 2>/dev/null || die "the client ended early"
N1_PID=$(pid_of n1)
kill -KILL "$N1_PID"
wait "$N1_PID" 2>/dev/null || true  # (SIGKILL: gone at once; also keeps bash's "Killed" notice quiet)
rm -rf "$CL/n1"
log "[$(elapsed)s] n1 (pid $N1_PID) killed with SIGKILL; its directory $CL/n1 deleted"

# Adoption: n1's lease expires after lease_ttl; a survivor takes its id,
# finishes its decisions and rolls back its orphaned branches.
adoption_lines() { grep -h 'adopting node "n1"\|adoption of node "n1"' "$CL/n2/txcoord.log" "$CL/n3/txcoord.log" 2>/dev/null || true; }
for _ in $(seq 1 $(((LEASE_TTL + 10) * 10))); do
  adoption_lines | grep -q 'adoption of node "n1"' && break
  sleep 0.1
done
if adoption_lines | grep -q 'adoption of node "n1"'; then
  log "[$(elapsed)s] n1 adopted:"
  for n in n2 n3; do
    grep 'adopting node "n1"\|adoption of node "n1"' "$CL/$n/txcoord.log" | sed "s/^/  $n: /" || true
  done
else
  log "[$(elapsed)s] NO adoption of n1 within $((LEASE_TTL + 10))s"
fi

# n1 again, from an empty directory: it takes its id back with a new epoch.
write_config n1
start_node n1
if wait_serving n1 "$(pid_of n1)"; then
  log "[$(elapsed)s] n1 started again from an empty directory: $(serving_line n1 "$(pid_of n1)")"
  grep -h 'journal etcd opened' "$CL/n1/txcoord.log" | tail -1 | sed 's/^/  n1: /'
else
  log "[$(elapsed)s] n1 did not start again"
fi

# The client ends by itself (every call bounded); a hard limit all the same.
for _ in $(seq 1 $(((SECONDS_RUN + 400) * 10))); do kill -0 "$CLIENT_PID" 2>/dev/null || break; sleep 0.1; done
CLIENT_RC=0
if kill -0 "$CLIENT_PID" 2>/dev/null; then
  log "the client did not end: stopping it"; kill "$CLIENT_PID"; CLIENT_RC=1
fi
wait "$CLIENT_PID" || CLIENT_RC=$?
CLIENT_PID=""
[ -f "$RESULTS" ] || die "the client wrote no results"

# Phase 2 can run on after the reply (COMMITTING): wait until no branch is
# left prepared, up to the orphan safety margin and a bit.
read -r left _ < <(prepared_count)
for _ in $(seq 1 90); do
  [ "$left" = 0 ] && break
  sleep 0.5
  read -r left _ < <(prepared_count)
done

# ---------------------------------------------------------------- the results
echo
timeout 15 "$TXCTL" -a "$ADDR_N2" --rpc-timeout 10 nodes | sed 's/^/  /' || log "(txctl nodes failed)"
echo
log "balances:"
BAL=$CL/balances
mkdir -p "$BAL"
pg "$TXC_PG_URI" -c "SELECT id, balance FROM cluster_demo_accounts ORDER BY id" >"$BAL/pg.accounts"
pg "$TXC_PG_URI" -c "SELECT k, leg, acct, amount FROM cluster_demo_ledger" >"$BAL/pg.ledger"
pg "$TXC_PG2_URI" -c "SELECT id, balance FROM cluster_demo_accounts ORDER BY id" >"$BAL/pg2.accounts"
pg "$TXC_PG2_URI" -c "SELECT k, leg, acct, amount FROM cluster_demo_ledger" >"$BAL/pg2.ledger"
my -e "SELECT id, balance FROM cluster_demo_accounts ORDER BY id" >"$BAL/maria.accounts"
my -e "SELECT k, leg, acct, amount FROM cluster_demo_ledger" >"$BAL/maria.ledger"
TOTAL=0
for b in pg pg2 maria; do
  case $b in pg) what="PostgreSQL txcoord_a" ;; pg2) what="PostgreSQL txcoord_b" ;; maria) what="MariaDB txcoord" ;; esac
  sum=$(awk -F'\t' '{s += $2} END {print s + 0}' "$BAL/$b.accounts")
  TOTAL=$((TOTAL + sum))
  printf '  %-5s (%-20s) total %6d: %s\n' "$b" "$what" "$sum" "$(awk -F'\t' '{printf "%s%d", (NR > 1 ? " " : ""), $2}' "$BAL/$b.accounts")"
done
printf '  grand total %d (at the start: %d)\n' "$TOTAL" "$START_TOTAL"
echo
log "transfers:"
VERIFY_RC=0
"$PY" "$CLIENT" verify --results "$RESULTS" --accounts "$ACCOUNTS" --initial "$INITIAL" \
  --bind "pg=$BAL/pg.accounts:$BAL/pg.ledger" --bind "pg2=$BAL/pg2.accounts:$BAL/pg2.ledger" \
  --bind "maria=$BAL/maria.accounts:$BAL/maria.ledger" >"$BAL/verify.out" || VERIFY_RC=$?
grep -v '^verify-summary' "$BAL/verify.out" || true
read -r _ ACKED FAILED UNKNOWN UNKNOWN_COMMITTED LEDGER_OK < <(grep '^verify-summary' "$BAL/verify.out" || echo "x 0 0 0 0 0")
"$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))
by = ", ".join("%s %d" % kv for kv in sorted(r["acked_by"].items()))
print("  acknowledged by node: %s; calls asked again on another node: %d" % (by, r["asked_again_elsewhere"]))' "$RESULTS"
echo
log "the adoption:"
adoption_lines | sed 's/^/  /'
ADOPTED=$(adoption_lines | grep -c 'adoption of node "n1" settled' || true)
NOT_SETTLED=$(adoption_lines | grep -c 'adoption of node "n1" NOT settled' || true)
[ "$ADOPTED" -gt 0 ] || echo "  (none)"
echo
read -r PREPARED_LEFT left_a left_b left_m < <(prepared_count)
log "prepared branches left: $PREPARED_LEFT (txcoord_a $left_a, txcoord_b $left_b, MariaDB XA RECOVER $left_m)"
for n in $NODES; do
  errs=$(grep -c '\] \[error\]\|\] \[critical\]' "$CL/$n/txcoord.log" || true)
  note=""; [ "$n" = n1 ] && note=" (since its restart)"
  log "  $n's log$note: $errs error/critical lines ($CL/$n/txcoord.log)"
done

RESULT=ok
why=()
[ "$TOTAL" = "$START_TOTAL" ] || why+=("the total moved")
[ "$PREPARED_LEFT" = 0 ] || why+=("prepared branches left")
[ "$ADOPTED" -ge 1 ] && [ "$NOT_SETTLED" = 0 ] || why+=("n1 not adopted (settled)")
[ "$VERIFY_RC" = 0 ] && [ "$LEDGER_OK" = 1 ] || why+=("the ledgers disagree with the client")
[ "$ACKED" -gt 0 ] || why+=("no transfer acknowledged")
[ "$CLIENT_RC" = 0 ] || why+=("the client failed")
if [ ${#why[@]} -gt 0 ]; then RESULT=BROKEN; log "BROKEN: $(IFS=';'; echo "${why[*]}")"; fi
log "transfers failed=$FAILED unknown=$UNKNOWN (committed: $UNKNOWN_COMMITTED)"
echo "cluster-demo: nodes=3 transfers_acked=$ACKED adopted=$ADOPTED total=$TOTAL prepared_left=$PREPARED_LEFT result=$RESULT"
[ "$RESULT" = ok ]
