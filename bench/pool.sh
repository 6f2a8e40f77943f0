#!/bin/sh
# Transaction pooling benchmark: pgbench through pgtandem in transaction mode
# vs PgBouncer (Debian's) in transaction mode vs a direct connection, side by
# side in one run on a throwaway cluster with max_connections = 50 and pools
# of 20, plus resident memory per idle client of both poolers.
#
#   select-only (-S), CLIENTS clients, ROUNDS rounds of DURATION s; the order
#   of the targets rotates every round. For each: TPS, p50/p99 latency from
#   pgbench's per-transaction log, failed transactions and aborted clients,
#   and the pooler's CPU per transaction (/proc/PID/stat user+system over the
#   run / transactions). Then pgbench -M prepared at PREPARED_CLIENTS through
#   pgtandem (PgBouncer 1.18 cannot), and idle memory at MEM_CONNS clients.
#   Both poolers reach Postgres over TLS; client legs are plain TCP on loopback.
#
# Environment:
#   ROUNDS=2 DURATION=10 CLIENTS="10 100 1000 5000" PREPARED_CLIENTS=1000
#   MEM_CONNS=10000 POOL=20 MAX_CONNECTIONS=50 SCALE=10
#   SPLIT_CLIENTS=1000 SPLIT_WINDOW=15  (the CPU split, one window per round)
#   PGT_BIN=bin/pgtandem  (another build, e.g. an older commit's, to compare)
#   OUT=bench/results/pool-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${PGT_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/pgtandem-poolbench.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

. "$top/bench/lib.sh"

echo "== starting a throwaway cluster (max_connections ${MAX_CONNECTIONS:-50})"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
. "$work/pg/env"
echo "max_connections = ${MAX_CONNECTIONS:-50}" | $RUN tee -a "$PGT_PGDIR/data/postgresql.conf" >/dev/null
$RUN "$PGT_PGBIN/pg_ctl" -D "$PGT_PGDIR/data" -l "$PGT_PGDIR/postgres.log" -w -t 120 restart >/dev/null
psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
direct_uri="postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=require"
pool=${POOL:-20}

# shellcheck disable=SC3045  # dash and bash both have ulimit -n/-H
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
printf '{"app": {"password": "apppass"}}' >"$work/users.json"
chmod 600 "$work/users.json"
tport=$(free_port); taport=$(free_port)
"$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn \
  --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" --auth scram --users-file "$work/users.json" \
  --pool-mode transaction --pool-size "$pool" --max-client-conn 20000 --query-wait-timeout 300 \
  >"$work/pgtandem.log" 2>&1 &
tpid=$!
pids="$pids $tpid"

bport=$(free_port)
write_pgbouncer_ini "$work" "$scram" "$bport" require 20000 "$pool" "$work/pgbouncer.log"
sed -i 's/^pool_mode = session/pool_mode = transaction/' "$work/pgbouncer.ini"
echo "query_wait_timeout = 300" >>"$work/pgbouncer.ini"
[ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer.ini" "$work/userlist.txt"
$RUN sh -c "ulimit -n \$(ulimit -Hn); exec pgbouncer -d '$work/pgbouncer.ini'" >"$work/pgbouncer.out" 2>&1 || {
  cat "$work/pgbouncer.out" "$work/pgbouncer.log" 2>/dev/null; exit 1; }
wait_port "$tport"; wait_port "$bport"
bpid=$(cat "$work/pgbouncer.pid")

echo "== pgbench -i -s ${SCALE:-10}"
pgbench -i -q -s "${SCALE:-10}" "$direct_uri" >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }

stamp=$(date -u +%Y-%m-%d)
TPID=$tpid BPID=$bpid TPORT=$tport BPORT=$bport DIRECT_URI="$direct_uri" WORK="$work" POOLSIZE=$pool \
OUT=${OUT:-bench/results/pool-$stamp} /usr/bin/python3 bench/pool_run.py
