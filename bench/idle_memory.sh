#!/bin/sh
# Memory per idle client, pgtandem vs PgBouncer, in both pool modes.
#
# Transaction mode is what serverless and worker-pool apps run: tens of
# thousands of mostly idle clients over a few server connections. Both
# poolers authenticate clients with SCRAM, reach a throwaway Postgres over
# TLS with pools of 20, and hold N idle clients (each logged in and ran
# SELECT 1), with the clients' TLS off and on, in two states: "fresh"
# (poolers just started), and "after" (poolers started afresh that ran
# pgbench through them first, all its clients gone and the poolers idle
# again).
#
# Session mode: every idle client keeps an upstream connection, and this
# machine cannot run 10,000 Postgres backends, so both proxies sit in front
# of bench/idle_upstream.py, which answers like an idle Postgres (trust
# login, no TLS); two descriptors per client cap the count.
#
# The proxy's RSS growth / N is the figure, after a warm-up of 100 clients.
#
#   TX_CONNS="10000 18000"  TX_TLS="disable require"  BENCH_CLIENTS=1000  BENCH_SECONDS=10
#   SESSION_CONNS="1000 9000"  (empty: that part is skipped)
#   PGT_BIN=bin/pgtandem  (another build, e.g. an older commit's, to compare)
#   OUT=bench/results/idle-memory-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${PGT_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (make deps)" >&2; exit 1; }
# The holder, the proxies and PgBouncer each need a descriptor per client:
# the soft limit goes up to the hard one (20,000 here, which cannot be raised).
# shellcheck disable=SC3045  # dash and bash both have ulimit -n/-H
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/pgtandem-idlemem.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  [ -d "$work/pg" ] && sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$top/bench/lib.sh"
results="$work/results.jsonl"
: >"$results"

# Starts PgBouncer from $work/pgbouncer.ini; sets bpid.
start_pgbouncer() {
  [ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer.ini" "$work/userlist.txt"
  $RUN sh -c "ulimit -n 65536 2>/dev/null || ulimit -n \$(ulimit -Hn); exec pgbouncer -d '$work/pgbouncer.ini'" \
    >"$work/pgbouncer.out" 2>&1 || { cat "$work/pgbouncer.out" "$work/pgbouncer.log" 2>/dev/null; exit 1; }
  i=0
  until [ -s "$work/pgbouncer.pid" ]; do i=$((i + 1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done
  bpid=$(cat "$work/pgbouncer.pid")
}

# Stops pgtandem ($1) and PgBouncer, waiting until both are gone.
stop_poolers() {
  kill "$1" 2>/dev/null || true
  kill "$bpid" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null || kill -0 "$bpid" 2>/dev/null; do sleep 0.1; done
  rm -f "$work/pgbouncer.pid"
}

# ---- session mode, in front of the stub ----
if [ -n "${SESSION_CONNS-1000 9000}" ]; then
  echo "== session mode (bench/idle_upstream.py upstream)"
  uport=$(free_port)
  /usr/bin/python3 bench/idle_upstream.py "$uport" >"$work/upstream.log" 2>&1 &
  upid=$!
  pids="$pids $upid"
  wait_port "$uport"
  tport=$(free_port); taport=$(free_port)
  "$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn --max-client-conn 30000 \
    --upstream "postgresql://127.0.0.1:$uport/?sslmode=disable" >"$work/pgtandem.log" 2>&1 &
  tpid=$!
  pids="$pids $tpid"
  bport=$(free_port)
  printf '"app" ""\n' >"$work/userlist.txt"
  cat >"$work/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$uport dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 30000
default_pool_size = 30000
max_db_connections = 0
server_tls_sslmode = disable
server_reset_query =
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
log_connections = 0
log_disconnections = 0
INI
  start_pgbouncer
  wait_port "$tport"; wait_port "$bport"
  MODE=session CONNS="${SESSION_CONNS-1000 9000}" TPID=$tpid BPID=$bpid \
    TURI="host=127.0.0.1 port=$tport dbname=bench user=app sslmode=disable" \
    BURI="host=127.0.0.1 port=$bport dbname=bench user=app sslmode=disable" \
    RESULTS="$results" /usr/bin/python3 bench/idle_memory_run.py measure
  stop_poolers "$tpid"
  kill "$upid" 2>/dev/null || true
fi

# ---- transaction mode, SCRAM, in front of a real cluster ----
if [ -n "${TX_CONNS-10000 18000}" ]; then
  echo "== transaction mode (throwaway cluster)"
  sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
  . "$work/pg/env"
  psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
  pgbench -i -q -s 1 "postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=require" >"$work/init.log" 2>&1 ||
    { cat "$work/init.log"; exit 1; }
  scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
  printf '{"app": {"password": "apppass"}}' >"$work/users.json"
  chmod 600 "$work/users.json"
  cert="$work/pg/tls/server.crt"; key="$work/pg/tls/server.key"
  for tls in ${TX_TLS:-disable require}; do for state in fresh after; do
    tport=$(free_port); taport=$(free_port)
    "$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn \
      --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" --auth scram --users-file "$work/users.json" \
      --pool-mode transaction --pool-size 20 --max-client-conn 20000 --query-wait-timeout 300 \
      --tls-cert "$cert" --tls-key "$key" >"$work/pgtandem-$tls-$state.log" 2>&1 &
    tpid=$!
    pids="$pids $tpid"
    bport=$(free_port)
    write_pgbouncer_ini "$work" "$scram" "$bport" require 20000 20 "$work/pgbouncer.log"
    sed -i 's/^pool_mode = session/pool_mode = transaction/' "$work/pgbouncer.ini"
    cat >>"$work/pgbouncer.ini" <<INI
query_wait_timeout = 300
client_tls_sslmode = allow
client_tls_cert_file = $cert
client_tls_key_file = $key
INI
    start_pgbouncer
    wait_port "$tport"; wait_port "$bport"
    MODE=transaction STATE=$state TLS=$tls CONNS="${TX_CONNS-10000 18000}" TPID=$tpid BPID=$bpid \
      TURI="postgresql://app:apppass@127.0.0.1:$tport/bench?sslmode=$tls" \
      BURI="postgresql://app:apppass@127.0.0.1:$bport/bench?sslmode=$tls" \
      RESULTS="$results" /usr/bin/python3 bench/idle_memory_run.py measure
    stop_poolers "$tpid"
  done; done
fi

RESULTS="$results" PGT_BIN_USED="$bin" OUT=${OUT:-bench/results/idle-memory-$(date -u +%Y-%m-%d)} \
  /usr/bin/python3 bench/idle_memory_run.py report
