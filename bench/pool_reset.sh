#!/bin/sh
# shellcheck disable=SC2154  # start_bench_cluster (bench/lib.sh) sets work, bin and stamp
# What server_reset_query_always costs: pgbench -S through two pgtandem
# proxies in transaction mode on one throwaway cluster, one with the reset
# off (the default) and one with it on (RESET ALL each time a server passes
# to another client), side by side in one run, the order rotating every
# round. TPS and p50/p99 latency from pgbench's per-transaction log.
#
#   ROUNDS=3 DURATION=10 CLIENTS="10 100" POOL=10 SCALE=10
#   OUT=bench/results/pool-reset-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=/dev/null
. "$top/bench/lib.sh"
start_bench_cluster

psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
direct_uri="postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=require"
pgbench -i -q -s "${SCALE:-10}" "$direct_uri" >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }
printf '{"app": {"password": "apppass"}}' >"$work/users.json"
chmod 600 "$work/users.json"
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done; sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1; rm -rf "$work"' EXIT INT TERM
ports=""
for reset in false true; do
  port=$(free_port); aport=$(free_port)
  "$bin" proxy --listen "127.0.0.1:$port" --admin "127.0.0.1:$aport" --log-level warn \
    --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" --auth scram --users-file "$work/users.json" \
    --pool-mode transaction --pool-size "${POOL:-10}" --server-reset-query-always "$reset" \
    >"$work/pgtandem-$reset.log" 2>&1 &
  pids="$pids $!"
  wait_port "$port"
  ports="$ports $reset:$port:$aport"
done

WORK=$work PORTS=$ports DIRECT_URI=$direct_uri OUT=${OUT:-bench/results/pool-reset-$stamp} /usr/bin/python3 bench/pool_reset_run.py
