#!/bin/sh
# Operation kinds benchmark: every kind of operation on a table of ROWS rows,
# online and offline side by side in one run, on a throwaway cluster with
# bin/pgtandem proxy (engine inside, --engine-db) in front of it.
#
#   online   `pgtandem migrate start FILE --proxy` and `migrate complete
#            --proxy`, under an application (one SELECT by id and one
#            UPDATE/INSERT every 10 ms) that runs through the proxy as the old
#            release during start and as the new release across complete
#   offline  the equivalent plain DDL on a twin table of the same rows, as one
#            transaction, under the same application
#
# Kinds: rename_column (same type), rename_column to jsonb, add_column with a
# constant default, add_column uuid NOT NULL DEFAULT gen_random_uuid(),
# add_column with up, alter_column nullable: false (COALESCE up), alter_column
# int -> bigint, drop_column, create_index, create_constraint check, split
# (add full_name + drop first/last). Per kind and step: wall time, WAL, table
# + index growth, the application's worst and p99 latency. See
# bench/ops_run.py for how each figure is taken.
#
# Environment:
#   ROWS=1000000     rows per table
#   KINDS="..."      only these kinds (names as in the table), in the usual order
#   TIMEOUT_S=5400   the measuring part stops after this long whatever happens
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/ops-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${PGT_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
rows=${ROWS:-1000000}

work=$(mktemp -d /tmp/pgtandem-opsbench.XXXXXX)
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
echo "== $rows rows per table; proxy on 127.0.0.1:$port, admin 127.0.0.1:$aport"
shown="sh bench/ops.sh"
[ -n "${KINDS:-}" ] && shown="KINDS=\"$KINDS\" $shown"
[ -n "${ROWS:-}" ] && shown="ROWS=$ROWS $shown"
rc=0
ROWS=$rows BIN=$bin DB=$db WORK=$work ADMIN="http://127.0.0.1:$aport" \
PROXY_URI="postgresql://postgres:postgres@127.0.0.1:$port/bench?sslmode=disable" \
COMMAND=$shown \
OUT=${OUT:-bench/results/ops-$stamp} \
  timeout -k 10 "${TIMEOUT_S:-5400}" /usr/bin/python3 bench/ops_run.py || rc=$?
if [ "$rc" != 0 ]; then
  echo "ops_run.py exited $rc; the proxy's log ends with:" >&2
  tail -n 40 "$work/proxy.log" >&2
fi
exit "$rc"
