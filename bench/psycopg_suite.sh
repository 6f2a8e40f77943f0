#!/bin/sh
# psycopg 3's own test suite (the installed python3-psycopg's version) run
# against a throwaway cluster directly, through `pgtandem proxy` in session
# mode and through its transaction pool, for doc/testing.md's table. Run by
# hand, not by make test (about 12 minutes a mode on 2 cores).
#
#   bench/psycopg_suite.sh [direct|session|transaction ...]   (default: all three)
#
# Prints, per mode, passed / failed / skipped, then every test that fails
# in a mode but not directly. Results (JUnit XML, pytest's output, the
# proxies' logs) stay in $PSY_OUT (default /tmp/pgtandem-psycopg-suite).
#
#   PSYCOPG_SRC   a psycopg source tree of that version (default: fetched
#                 into /var/cache/pgtandem-psycopg with apt-get source
#                 psycopg3=<version>, else the upstream tag from GitHub)
#   PGTANDEM_BIN  the proxy (default bin/pgtandem)
#   POOL_SIZE     the transaction pool's size (default 10)
#   PSY_TIMEOUT   seconds before pytest-timeout fails a hung test (default 300)
#
# Needs python3-pytest-asyncio, python3-psycopg-pool and python3-pytest-timeout
# (a test that hangs fails after 5 minutes; installed here
# when missing). Left out: the tests marked mypy (mypy), proxy (pproxy,
# not in Debian) and dns (dnspython).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
modes=${*:-direct session transaction}
out=${PSY_OUT:-/tmp/pgtandem-psycopg-suite}
bin=${PGTANDEM_BIN:-$top/bin/pgtandem}
pool_size=${POOL_SIZE:-10}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

for p in python3-pytest-asyncio python3-psycopg-pool python3-pytest-timeout; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done

pkgver=$(dpkg-query -W -f='${Version}' python3-psycopg)
upver=${pkgver%-*}
src=${PSYCOPG_SRC:-}
if [ -z "$src" ]; then
  cache=/var/cache/pgtandem-psycopg
  mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/pgtandem-psycopg
  src=$cache/psycopg-$upver
  if [ ! -d "$src/tests" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
    if (cd "$tmp" && apt-get source -qq "psycopg3=$pkgver") >"$tmp/apt.log" 2>&1; then
      mv "$tmp"/psycopg3-"$upver" "$src"
    elif git clone -q --depth 1 --branch "$upver" https://github.com/psycopg/psycopg "$tmp/git"; then
      mv "$tmp/git" "$src"
    else
      cat "$tmp/apt.log" >&2; rm -rf "$tmp"
      echo "psycopg_suite: no psycopg $upver source (deb-src lines: make deps; or set PSYCOPG_SRC)" >&2; exit 1
    fi
    rm -rf "$tmp"
  fi
fi

rm -rf "$out"; mkdir -p "$out"; chmod 755 "$out"
sh "$top/tests/pgcluster.sh" start "$out/pg" >/dev/null
proxies=""
cleanup() {
  for pid in $proxies; do kill "$pid" 2>/dev/null || true; done
  sh "$top/tests/pgcluster.sh" stop "$out/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC1091
. "$out/pg/env"
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
printf '{"postgres": {"password": "postgres"}}' >"$out/users.json"; chmod 600 "$out/users.json"

for mode in $modes; do
  db=psycopg_$mode
  psql "postgresql://postgres:postgres@127.0.0.1:$PGT_PGPORT/postgres?sslmode=require" -qAtX \
    -c "CREATE DATABASE $db"
  port=$PGT_PGPORT
  if [ "$mode" != direct ]; then
    port=$(free_port)
    set -- --listen "127.0.0.1:$port" --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" \
      --admin "127.0.0.1:$(free_port)" --tls-cert "$PGT_TLSDIR/server.crt" --tls-key "$PGT_TLSDIR/server.key"
    [ "$mode" = transaction ] &&
      set -- "$@" --auth scram --users-file "$out/users.json" --pool-mode transaction --pool-size "$pool_size"
    "$bin" proxy "$@" >"$out/proxy-$mode.log" 2>&1 &
    proxies="$proxies $!"
    for _ in $(seq 100); do
      /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
      sleep 0.1  # polls for the proxy's port, bounded
    done
  fi
  echo "== psycopg $upver's suite: $mode"
  (cd "$src" && PSYCOPG_TEST_DSN="host=127.0.0.1 port=$port user=postgres password=postgres dbname=$db" \
    /usr/bin/python3 -m pytest -q -p no:randomly -o cache_dir="$out/cache-$mode" -rfE --timeout "${PSY_TIMEOUT:-300}" \
      -m "not mypy and not proxy and not dns" --junitxml="$out/$mode.xml" >"$out/$mode.log" 2>&1) || true
  tail -1 "$out/$mode.log"
done

/usr/bin/python3 - "$out" $modes <<'PY'
import sys
import xml.etree.ElementTree as ET

out, modes = sys.argv[1], sys.argv[2:]
results = {}
for m in modes:
    r = {}
    for case in ET.parse("%s/%s.xml" % (out, m)).iter("testcase"):
        name = "%s::%s" % (case.get("classname"), case.get("name"))
        kinds = [c.tag for c in case]
        r[name] = ("failed" if "failure" in kinds or "error" in kinds
                   else "skipped" if "skipped" in kinds else "passed")
    results[m] = r
print("\n| mode | passed | failed | skipped |\n|---|---|---|---|")
for m in modes:
    v = list(results[m].values())
    print("| %s | %d | %d | %d |" % (m, v.count("passed"), v.count("failed"), v.count("skipped")))
if "direct" in results:
    for m in modes:
        if m == "direct":
            continue
        only = sorted(n for n, s in results[m].items() if s == "failed" and results["direct"].get(n) != "failed")
        print("\nfailing %s but not direct: %d" % (m, len(only)))
        for n in only:
            print("  " + n)
PY
