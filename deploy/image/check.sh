#!/usr/bin/env bash
# Checks txcoord's OCI image (deploy/image/build.sh, or the layout in
# $TXC_IMAGE_DIR if it is already built) without a container engine: the
# image is unpacked with umoci and its entrypoint run as its own user in a
# chroot, with its configuration from the image's config (entrypoint,
# arguments, user, environment, working directory), the configuration file
# bind-mounted at /etc/txcoord, the secrets in the environment and a host
# folder mounted on the journal's volume — against fresh local databases on
# loopback. The README's demo transfer must commit, txctl from the image
# must reach it, and SIGTERM must stop it cleanly. Also checks that the
# root holds no compiler and no headers, and prints the image's size.
# Run as root; needs the test build (deploy/build.sh) for the demo client.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${TXC_BUILD_DIR:-$ROOT/build}
IMG=${TXC_IMAGE_DIR:-$ROOT/build-image}
if [ -z "${TXC_IMAGE_DIR:-}" ] || [ ! -d "$IMG/oci" ]; then
  TXC_IMAGE_DIR=$IMG bash "$ROOT/deploy/image/build.sh" >/dev/null
fi
VERSION=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$IMG/oci/index.json")
WORK=$(mktemp -d /tmp/txcoord-image-check.XXXXXX)
chmod 0755 "$WORK"  # the databases run as their own users
DBDIR=$WORK/db
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  umount "$WORK/bundle/rootfs/var/lib/txcoord" 2>/dev/null || true
  umount "$WORK/bundle/rootfs/etc/txcoord" 2>/dev/null || true
  bash "$ROOT/deploy/local/stop.sh" "$DBDIR" --wipe >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "image-check: $*" >&2; exit 1; }

umoci unpack --image "$IMG/oci:$VERSION" "$WORK/bundle" >/dev/null
RFS=$WORK/bundle/rootfs
echo "image-check: txcoord:$VERSION, $(du -sh "$IMG/oci" | cut -f1) compressed, $(du -sh "$RFS" | cut -f1) unpacked"
for tool in gcc cc c++ g++ clang make apt apt-get; do
  [ ! -e "$RFS/usr/bin/$tool" ] || fail "the runtime image holds /usr/bin/$tool"
done
[ -z "$(find "$RFS/usr/include" -name '*.h' 2>/dev/null | head -1)" ] || fail "the runtime image holds headers"

# What the image says to run, from the OCI runtime config umoci wrote.
eval "$(/usr/bin/python3 - "$WORK/bundle/config.json" <<'PY'
import json, shlex, sys
p = json.load(open(sys.argv[1]))["process"]
print("ARGS=(" + " ".join(shlex.quote(a) for a in p["args"]) + ")")
print("ENVS=(" + " ".join(shlex.quote(e) for e in p.get("env", [])) + ")")
print("RUN_UID=%d RUN_GID=%d CWD=%s" % (p["user"]["uid"], p["user"]["gid"], shlex.quote(p.get("cwd", "/"))))
PY
)"
[ "$RUN_UID" != 0 ] || fail "the image runs as root"
echo "image-check: runs ${ARGS[*]} as $RUN_UID:$RUN_GID in $CWD"

bash "$ROOT/deploy/local/start.sh" "$DBDIR" >/dev/null
set -a
. "$DBDIR/env"
set +a
bash "$ROOT/deploy/demo-schema.sh"

# The configuration, mounted read-only; its secrets come from the environment.
mkdir -p "$WORK/config" "$WORK/volume"
cat >"$WORK/config/txcoord.yaml" <<'YAML'
node_id: image-check
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
plaintext: true
journal: {dir: /var/lib/txcoord/journal}
binds:
  pg: {driver: postgres, dsn: "${TXC_PG_URI}", pool: {size: 8}}
  maria: {driver: mariadb, dsn: "${TXC_MARIADB_ODBC}", pool: {size: 8}}
YAML
chown -R "$RUN_UID:$RUN_GID" "$WORK/volume"
mount --bind "$WORK/config" "$RFS/etc/txcoord"
mount -o remount,bind,ro "$RFS/etc/txcoord"
mount --bind "$WORK/volume" "$RFS/var/lib/txcoord"

chroot --userspec="$RUN_UID:$RUN_GID" "$RFS" /usr/bin/env -i --chdir="$CWD" "${ENVS[@]}" \
  TXC_PG_URI="$TXC_PG_URI" TXC_MARIADB_ODBC="$TXC_MARIADB_ODBC" \
  "${ARGS[@]}" --address-file /var/lib/txcoord/address >"$WORK/txcoord.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
  [ -s "$WORK/volume/address" ] && break
  kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/txcoord.log"; fail "txcoord did not start"; }
  sleep 0.1
done
[ -s "$WORK/volume/address" ] || fail "txcoord wrote no address"
ADDRESS=$(cat "$WORK/volume/address")
echo "image-check: txcoord from the image serving on $ADDRESS"

"$BUILD/tools/txcoord_demo" --address "$ADDRESS"
chroot --userspec="$RUN_UID:$RUN_GID" "$RFS" /usr/bin/txctl --address "$ADDRESS" binds
[ -n "$(find "$WORK/volume/journal" -user "$RUN_UID" -type f | head -1)" ] || fail "no journal on the volume"

kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[ "$rc" = 0 ] || { tail -20 "$WORK/txcoord.log"; fail "txcoord exited $rc after SIGTERM"; }
echo "image-check: OK"
