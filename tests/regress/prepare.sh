#!/bin/sh
# Gets what PostgreSQL's own regression suite needs to run against the
# installed server, for tests/integration/test_pg_regress.py: the server's
# source (`apt-get source postgresql-15=<installed version>`, for the
# schedule, the SQL files and their data) and, built from it against the
# installed server's headers (postgresql-server-dev-15, tests/deps.sh),
# regress.so and contrib/spi's autoinc.so and refint.so. pg_regress itself
# is Debian's (postgresql-client-15). Done once per server version into a
# cache outside the repository; a second run only prints where it is.
#
#   tests/regress/prepare.sh   -> prints PGT_REGRESS_* lines (sourceable)
#
# PGT_REGRESS_CACHE: the cache (default /var/cache/pgtandem-regress when it
# can be written, else ~/.cache/pgtandem-regress).
set -e
major=15
pgbin=/usr/lib/postgresql/$major/bin
pgxs=/usr/lib/postgresql/$major/lib/pgxs
pg_regress=$pgxs/src/test/regress/pg_regress

version=$(dpkg-query -W -f='${Version}' "postgresql-$major" 2>/dev/null) || {
  echo "prepare: postgresql-$major is not installed (make deps)" >&2; exit 1; }
[ -x "$pg_regress" ] || { echo "prepare: no $pg_regress (postgresql-client-$major)" >&2; exit 1; }
[ -f "$pgxs/src/makefiles/pgxs.mk" ] || {
  echo "prepare: no PGXS: postgresql-server-dev-$major is not installed (make deps)" >&2; exit 1; }

cache=${PGT_REGRESS_CACHE:-}
if [ -z "$cache" ]; then
  cache=/var/cache/pgtandem-regress
  if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/pgtandem-regress
  fi
fi
dir=$cache/$version

if [ ! -f "$dir/ready" ]; then
  mkdir -p "$cache"
  # built aside and renamed into place: two runs at once (two checkouts'
  # make test) each build their own, the first rename wins
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  mkdir "$tmp/src" "$tmp/lib"
  # The installed version first. A mirror that no longer has its source (a
  # later security update superseded it) gives the nearest it lists: the
  # suite is compared with itself, direct and pooled, so the SQL files of
  # a minor release apart still measure the same thing; regress.so is
  # always built against the installed server's headers.
  others=$(apt-cache showsrc "postgresql-$major" 2>/dev/null | sed -n 's/^Version: //p' | sort -V -r | grep -vxF "$version" || true)
  got=""
  for v in $version $others; do
    if (cd "$tmp/src" && apt-get source -qq "postgresql-$major=$v") >"$tmp/apt.log" 2>&1; then
      got=$v; break
    fi
    rm -rf "${tmp:?}"/src/*
  done
  if [ -z "$got" ]; then
    cat "$tmp/apt.log" >&2
    echo "prepare: no source of postgresql-$major from apt (deb-src lines: make deps)" >&2
    exit 1
  fi
  [ "$got" = "$version" ] || echo "prepare: source $got (the mirror has none of the installed $version)" >&2
  src=$(ls -d "$tmp"/src/postgresql-$major-*/ | head -1)
  src=${src%/}
  cp "$src/src/test/regress/regress.c" "$src/contrib/spi/autoinc.c" "$src/contrib/spi/refint.c" "$tmp/lib/"
  # as contrib/spi's own Makefile builds them: refint verbose, the suite
  # expects its NOTICEs (triggers)
  cat >"$tmp/lib/Makefile" <<MAKE
MODULES = regress autoinc refint
PG_CPPFLAGS = -DREFINT_VERBOSE
PG_CONFIG = $pgbin/pg_config
PGXS := \$(shell \$(PG_CONFIG) --pgxs)
include \$(PGXS)
MAKE
  if ! make -s -C "$tmp/lib" with_llvm=no >"$tmp/make.log" 2>&1; then
    cat "$tmp/make.log" >&2; exit 1
  fi
  printf 'PGT_REGRESS_VERSION=%s\nPGT_REGRESS_SRC=%s\n' "$got" "$dir/src/${src##*/}/src/test/regress" >"$tmp/env"
  touch "$tmp/ready"
  if mv -T "$tmp" "$dir" 2>/dev/null; then trap - EXIT; fi
fi
cat "$dir/env"
printf 'PGT_REGRESS_LIB=%s\nPGT_REGRESS_BIN=%s\nPGT_REGRESS_PGBIN=%s\n' "$dir/lib" "$pg_regress" "$pgbin"
