#!/bin/sh
# System calls per transaction: pgtandem's session relay against PgBouncer
# (Debian's, session mode), both over TLS to a throwaway cluster, counted
# by `strace -c -f` attached to each proxy over the same pgbench run.
#
# Three quarters of either proxy's CPU per transaction is kernel time
# (bench/proxy.sh, doc/benchmarks.md), so the calls into the kernel, not
# the instructions between them, are what a cheaper transaction has to
# cut. The counts hold steady on a shared machine; the time strace
# reports beside them does not (strace slows each call) and is left out.
#
# Environment:
#   CLIENTS=4 TRANSACTIONS=2000 (per client) WORKLOAD=select (or tpcb)
#   OUT=bench/results/syscalls-<date>  (writes OUT.md)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/bin/pgtandem"
[ -x "$bin" ] || make -s all
for c in pgbouncer strace pgbench; do
  command -v $c >/dev/null || { echo "$c not installed (make deps; apt-get install -y strace)" >&2; exit 1; }
done
. "$top/bench/lib.sh"

work=$(mktemp -d /tmp/pgtandem-syscalls.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

clients=${CLIENTS:-4}
tx=${TRANSACTIONS:-2000}
case ${WORKLOAD:-select} in
  select) wl=-S ;;
  tpcb) wl= ;;
  *) echo "WORKLOAD is select or tpcb" >&2; exit 2 ;;
esac

echo "== a throwaway cluster"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
. "$work/pg/env"
psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
pgbench -i -q -s 1 "postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=require" >"$work/init.log" 2>&1 ||
  { cat "$work/init.log"; exit 1; }

printf '{"app": {"password": "apppass"}}' >"$work/users.json"
chmod 600 "$work/users.json"
tport=$(free_port)
"$bin" proxy --listen "127.0.0.1:$tport" --log-level warn --auth scram --users-file "$work/users.json" \
  --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" >"$work/pgtandem.log" 2>&1 &
tpid=$!
pids="$pids $tpid"
bport=$(free_port)
write_pgbouncer_ini "$work" "$scram" "$bport" require 200 "$clients" "$work/pgbouncer.log"
[ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer.ini" "$work/userlist.txt"
$RUN pgbouncer -d "$work/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 || { cat "$work/pgbouncer.out"; exit 1; }
wait_port "$tport"; wait_port "$bport"
bpid=$(cat "$work/pgbouncer.pid")

# count NAME PID PORT: strace -c over one pgbench run (the servers already
# connected by a warm-up run, so logins are not counted)
count() {
  uri="postgresql://app:apppass@127.0.0.1:$3/bench?sslmode=disable"
  # shellcheck disable=SC2086  # $wl is one flag or none
  pgbench -n $wl -c "$clients" -t 50 "$uri" >/dev/null 2>&1
  strace -c -f -q -p "$2" -o "$work/$1.strace" &
  spid=$!
  sleep 0.5 # strace attached
  # shellcheck disable=SC2086
  pgbench -n $wl -c "$clients" -t "$tx" "$uri" >"$work/$1.pgbench" 2>&1
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
}
echo "== pgbench ${WORKLOAD:-select}, $clients clients x $tx transactions, through each proxy under strace -c"
count pgtandem "$tpid" "$tport"
count pgbouncer "$bpid" "$bport"

stamp=$(date -u +%Y-%m-%d)
out=${OUT:-bench/results/syscalls-$stamp}
n=$((clients * tx))
{
  echo "# System calls per transaction, $stamp"
  echo
  echo "\`$(shown_command syscalls.sh CLIENTS TRANSACTIONS WORKLOAD OUT)\`: pgbench ${WORKLOAD:-select}, $clients clients x $tx"
  echo "transactions, session mode, TLS to Postgres, load $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| call | pgtandem | PgBouncer |"
  echo "|---|---:|---:|"
  for call in $(awk '/^ *[0-9]/ && $NF != "total" {print $NF}' "$work/pgtandem.strace" "$work/pgbouncer.strace" | sort -u); do
    a=$(awk -v c="$call" -v n="$n" '$NF == c {printf "%.2f", $4 / n}' "$work/pgtandem.strace")
    b=$(awk -v c="$call" -v n="$n" '$NF == c {printf "%.2f", $4 / n}' "$work/pgbouncer.strace")
    [ "${a:-0.00}" = 0.00 ] && [ "${b:-0.00}" = 0.00 ] && continue
    echo "| \`$call\` | ${a:-0} | ${b:-0} |"
  done
  a=$(awk -v n="$n" '$NF == "total" {printf "%.2f", $4 / n}' "$work/pgtandem.strace")
  b=$(awk -v n="$n" '$NF == "total" {printf "%.2f", $4 / n}' "$work/pgbouncer.strace")
  echo "| **all** | **$a** | **$b** |"
} >"$out.md"
cat "$out.md"
