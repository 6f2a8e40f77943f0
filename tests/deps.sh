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
podman runc debootstrap podman-compose python3-yaml catatonit dpkg-dev"
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
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  $SUDO apt-get update -qq; updated=1
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# PostgreSQL's regression suite through the pool (tests/integration/test_pg_regress.py)
# needs the installed server's source (apt-get source: deb-src lines, made
# from the binary ones of Debian's own sources) and its headers to build
# regress.so: postgresql-server-dev-15 of exactly the installed server's
# version (a newer one would upgrade the server with it).
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deps: adding deb-src sources"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
      $SUDO tee /etc/apt/sources.list.d/pgtandem-src.sources >/dev/null
  else
    sed -n 's/^deb \(.*debian.*\)/deb-src \1/p' /etc/apt/sources.list |
      $SUDO tee /etc/apt/sources.list.d/pgtandem-src.list >/dev/null
  fi
  $SUDO apt-get update -qq; updated=1
fi
pgver=$(dpkg-query -W -f='${Version}' postgresql-15)
if [ "$(dpkg-query -W -f='${Version}' postgresql-server-dev-15 2>/dev/null)" != "$pgver" ]; then
  echo "deps: installing postgresql-server-dev-15=$pgver"
  [ "$updated" = 1 ] || $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "postgresql-server-dev-15=$pgver" >/dev/null ||
    echo "deps: no postgresql-server-dev-15 of the installed server's version $pgver: test_pg_regress will fail"
fi
# the source fetched and regress.so built once, into a cache outside the
# repository; a failure here is the test's to report
sh tests/regress/prepare.sh >/dev/null || echo "deps: pg_regress not prepared: test_pg_regress will fail"
# node-postgres, drizzle-kit (with drizzle-orm for its schema files) and
# node-pg-migrate for the integration tests, pinned by package.json in tests/node.
if [ ! -d tests/node/node_modules/pg ] || [ ! -x tests/node/node_modules/.bin/drizzle-kit ] ||
   [ ! -x tests/node/node_modules/.bin/node-pg-migrate ]; then
  echo "deps: npm install (tests/node)"
  (cd tests/node && npm install --no-audit --no-fund --silent >/dev/null)
fi
