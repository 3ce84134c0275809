#!/usr/bin/env bash
# Installs every Debian 12 package txcoord needs to build, test and run its
# local databases. Idempotent: installs only what is missing. Run as root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libpq-dev unixodbc-dev unixodbc odbc-postgresql odbc-mariadb
  libsqliteodbc sqlite3 librocksdb-dev zlib1g-dev libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev nlohmann-json3-dev
  libcpp-httplib-dev libssl-dev clang-14 libclang-rt-14-dev
  postgresql-15 mariadb-server mariadb-client etcd-server etcd-client
  python3-grpcio python3-grpc-tools python3-protobuf python3-sqlalchemy
  python3-psycopg2 python3-pymysql python3-pytest python3-flask python3-flask-sqlalchemy
  python3-venv python3-pip python3-setuptools python3-wheel chromium python3-websocket
  libmariadb-dev libboost-context-dev libgoogle-perftools-dev gnuplot-nox sysstat
  openssl procps iproute2 systemd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Do not let the package scripts start system-wide database services: the
# project runs its own throwaway clusters (deploy/local/).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -q --no-install-recommends "${missing[@]}"
