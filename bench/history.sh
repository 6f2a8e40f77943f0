#!/bin/sh
# Replay of a real migration history: the later migrations of a project's
# directory (Prisma, drizzle-kit, Flyway, golang-migrate or numbered files,
# as `pgtandem migrate start DIR` reads them) run one by one online through
# bin/pgtandem proxy while an old-release writer runs through it, and the
# same files run offline (psql) on a twin database; after each, the two
# schemas (pg_dump --schema-only, pgtandem's own schemas left out) are
# compared. Per migration: online and identical, refused before DDL (start
# exited 2), failed after DDL, or differed; the writer's errors; totals.
# See bench/history_run.py for each step.
#
#   sh bench/history.sh DIR
#
# Environment:
#   BASE=N           the first N migrations are the base schema, applied
#                    offline to both databases (default: half of the history)
#   LAST=N           replay only the last N migrations online; every one
#                    before them is the base (BASE = all - N)
#   ROWS=5           rows generated per table of the base schema
#   WRITER_TICK_MS=20  the old-release writer's pause between statements
#   LOG_LEVEL=warn   the proxy's; when set, its log is kept as OUT.proxy.log
#   FILL_NEW=1       also give rows to the tables each migration creates
#   MIG_TIMEOUT_S=300  bound of each migrate command
#   TIMEOUT_S=7200   the whole replay stops after this long whatever happens
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/history-<dir name>-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# = 1 ] && [ -d "$1" ] || { echo "usage: sh bench/history.sh DIR (a directory of migrations)" >&2; exit 2; }
dir=$(cd "$1" && pwd)
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
echo "== starting a throwaway cluster"
start_bench_cluster
[ -n "${PGT_BIN:-}" ] && bin=$PGT_BIN
psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE online" -c "CREATE DATABASE twin" >/dev/null

PGTANDEM_ADMIN_TOKEN=$(openssl rand -hex 16)
export PGTANDEM_ADMIN_TOKEN
shown="sh bench/history.sh $1"
[ -n "${LAST:-}" ] && shown="LAST=$LAST $shown"
[ -n "${BASE:-}" ] && shown="BASE=$BASE $shown"
[ -n "${FILL_NEW:-}" ] && shown="FILL_NEW=$FILL_NEW $shown"
rc=0
# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
HISTORY_DIR=$dir BIN=$bin WORK=$work PGBIN=$PGT_PGBIN PGPORT_UP=$PGT_PGPORT \
ONLINE_DB=$(printf '%s' "$PGT_SUPER_URI" | sed 's|/appdb?|/online?|') \
TWIN_DB=$(printf '%s' "$PGT_SUPER_URI" | sed 's|/appdb?|/twin?|') \
PORT=$(free_port) APORT=$(free_port) COMMAND=$shown \
OUT=${OUT:-bench/results/history-$(basename "$dir")-$stamp} \
  timeout -k 10 "${TIMEOUT_S:-7200}" /usr/bin/python3 bench/history_run.py || rc=$?
[ -n "${LOG_LEVEL:-}" ] && { cp "$work/proxy.log" "${OUT:-bench/results/history-$(basename "$dir")-$stamp}.proxy.log" || true; }
if [ "$rc" != 0 ]; then
  echo "history_run.py exited $rc; the proxy's log ends with:" >&2
  tail -n 40 "$work/proxy.log" >&2 || true
fi
exit "$rc"
