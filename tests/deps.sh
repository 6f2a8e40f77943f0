#!/bin/sh
# Installs what pgtandem needs to build, test, demo and benchmark on Debian 12.
# Idempotent: does nothing when everything is present. Works as root, or
# through sudo for a normal user.
set -e
PKGS="build-essential pkg-config libevent-dev libssl-dev libpq-dev libjansson-dev
postgresql postgresql-contrib pgbouncer openssl python3-psycopg python3-pytest python3-pytest-xdist
clang libclang-rt-14-dev procps iproute2 cppcheck clang-tidy shellcheck
libpg-query-dev alembic libidn-dev python3-asyncpg libdbd-pg-perl python3-sqlalchemy
libpostgresql-jdbc-java openjdk-17-jdk-headless chromium python3-websocket prometheus
podman runc debootstrap podman-compose python3-yaml catatonit"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm  >/dev/null 2>&1 || missing="$missing npm"
# kubectl checks docker/kubernetes offline; Debian's is kubernetes-client
# (a kubectl from elsewhere, such as Google's package, does as well)
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# node-postgres and drizzle-kit (with drizzle-orm for its schema files) for the
# integration tests, pinned by package.json in tests/node.
if [ ! -d tests/node/node_modules/pg ] || [ ! -x tests/node/node_modules/.bin/drizzle-kit ]; then
  echo "deps: npm install (tests/node)"
  (cd tests/node && npm install --no-audit --no-fund --silent >/dev/null)
fi
