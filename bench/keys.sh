#!/bin/sh
# Key-widening benchmark: an integer primary key (accounts.id serial) and the
# foreign key pointing at it (orders.account_id) made bigint, online through
# bin/pgtandem proxy against the offline ALTER TABLE ... TYPE bigint of both
# tables (which rewrites them under ACCESS EXCLUSIVE), each on its own
# database of the same rows, under the same application through the proxy.
# Figures: how long the app is held, the contract's lock wait, the app's
# worst and p99 latency during each step, its errors. See bench/keys_run.py.
#
# Environment:
#   ROWS=1000000     accounts (orders: three times as many)
#   TIMEOUT_S=3600   the measuring part stops after this long whatever happens
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/keys-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${PGT_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
rows=${ROWS:-1000000}

work=$(mktemp -d /tmp/pgtandem-keysbench.XXXXXX)
chmod 755 "$work"
proxy_pid=""
# shellcheck disable=SC2317  # run by the trap
cleanup() {
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null; fi
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"

echo "== starting a throwaway cluster"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
# shellcheck disable=SC1091  # written by tests/pgcluster.sh at run time
. "$work/pg/env"
psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench" >/dev/null
db=$(printf '%s' "$PGT_SUPER_URI" | sed 's|/appdb?|/bench?|')

PGTANDEM_ADMIN_TOKEN=$(openssl rand -hex 16)
export PGTANDEM_ADMIN_TOKEN
port=$(free_port); aport=$(free_port)
"$bin" proxy --listen "127.0.0.1:$port" --admin "127.0.0.1:$aport" --log-level warn \
  --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" --engine-db "$db" \
  >"$work/proxy.log" 2>&1 &
proxy_pid=$!
wait_port "$port"; wait_port "$aport"

stamp=$(date -u +%Y-%m-%d)
echo "== $rows accounts; proxy on 127.0.0.1:$port, admin 127.0.0.1:$aport"
shown="sh bench/keys.sh"
[ -n "${ROWS:-}" ] && shown="ROWS=$ROWS $shown"
rc=0
PGT_SUPER_URI=$PGT_SUPER_URI ROWS=$rows BIN=$bin WORK=$work ADMIN="http://127.0.0.1:$aport" \
PROXY_URI="postgresql://postgres:postgres@127.0.0.1:$port/bench?sslmode=disable" \
COMMAND=$shown \
OUT=${OUT:-bench/results/keys-$stamp} \
  timeout -k 10 "${TIMEOUT_S:-3600}" /usr/bin/python3 bench/keys_run.py || rc=$?
if [ "$rc" != 0 ]; then
  echo "keys_run.py exited $rc; the proxy's log ends with:" >&2
  tail -n 40 "$work/proxy.log" >&2
fi
exit "$rc"
