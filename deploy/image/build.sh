#!/usr/bin/env bash
# Builds txcoord's OCI image without a container engine, from Debian
# packages only: mmdebstrap makes a minimal Debian 12 root (the "essential"
# set — no apt, no compilers, no headers) with the txcoord .deb
# (deploy/deb/build.sh), its runtime libraries and the ODBC drivers; umoci
# makes it an OCI image. Output in $TXC_IMAGE_DIR (default build-image/):
#   oci/                  the OCI layout, tag "<version>" (the image txcoord:<version>)
#   txcoord-<version>.oci.tar   the same as one archive (podman load,
#                         skopeo copy oci-archive:…)
# The image runs /usr/bin/txcoord --config /etc/txcoord/txcoord.yaml as
# user 10001 (txcoord), with the journal on the volume /var/lib/txcoord.
# Needs root (mmdebstrap's root mode) and Debian's mirror.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${TXC_IMAGE_DIR:-$ROOT/build-image}
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$tool" >&2
done
DEB=$(bash "$ROOT/deploy/deb/build.sh")
VERSION=$(dpkg-deb --field "$DEB" Version)
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$DEB" "$OUT/txcoord.deb"
chmod 0644 "$OUT/txcoord.deb"

# The root: Debian's essential packages, txcoord and what it needs, nothing
# else; documentation, manuals and locales left out.
mmdebstrap --mode=root --variant=essential --format=tar \
  --include="$OUT/txcoord.deb" --include=odbc-mariadb,odbc-postgresql,libsqliteodbc,ca-certificates,tzdata \
  --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/txcoord/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='echo "txcoord:x:10001:10001:txcoord:/var/lib/txcoord:/usr/sbin/nologin" >>"$1/etc/passwd"' \
  --customize-hook='echo "txcoord:x:10001:" >>"$1/etc/group"' \
  --customize-hook='install -d -m 0750 -o 10001 -g 10001 "$1/var/lib/txcoord"' \
  --customize-hook='install -d -m 0755 "$1/etc/txcoord"' \
  --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/var/log/"*' \
  bookworm "$OUT/rootfs.tar" >&2

# The OCI image: one layer, the root above; the configuration.
umoci init --layout "$OUT/oci" >&2
umoci new --image "$OUT/oci:$VERSION" >&2
umoci unpack --image "$OUT/oci:$VERSION" "$OUT/bundle" >&2
tar -C "$OUT/bundle/rootfs" -xpf "$OUT/rootfs.tar"
umoci repack --image "$OUT/oci:$VERSION" "$OUT/bundle" >&2
umoci config --image "$OUT/oci:$VERSION" \
  --config.user 10001:10001 \
  --config.entrypoint /usr/bin/txcoord --config.cmd --config --config.cmd /etc/txcoord/txcoord.yaml \
  --config.workingdir /var/lib/txcoord --config.volume /var/lib/txcoord \
  --config.exposedports 7600/tcp --config.exposedports 7601/tcp \
  --config.env TZ=UTC \
  --config.label org.opencontainers.image.title=txcoord \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.description=two-phase-commit transaction coordinator" \
  --author txcoord --os linux --architecture amd64 >&2
umoci gc --layout "$OUT/oci" >&2
rm -rf "$OUT/bundle" "$OUT/rootfs.tar" "$OUT/txcoord.deb"
tar -C "$OUT/oci" -cf "$OUT/txcoord-$VERSION.oci.tar" .
echo "$OUT/oci:$VERSION"
