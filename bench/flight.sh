#!/bin/sh
# Several migrations in flight against one at a time (`--db`): three
# migrations of three tables (a column added with `up` on each, ROWS rows
# each; ONE_TABLE=1: a chain of one table), run one at a time (start,
# complete, then the next) and in flight
# (each started as soon as the one before it backfills: its engine holds
# its migration's own lock and lets the engine lock go), on two databases
# of the same rows, while an application writes the three tables. Reports
# the time from the first start to the last complete and the application's
# latency per phase; every row is checked after each mode. See
# bench/flight_run.py.
#
# Environment:
#   ROWS=300000      rows per table
#   ONE_TABLE=0      1: a chain of three migrations of one table instead
#                    (add v2, add v3 from v2, index v3), each built on the last
#   MAX_ROWS_PER_SEC=0  each backfill's cap (0: none)
#   APP_TICK_MS=5    the application's pause between ticks (an UPDATE and an INSERT each)
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/flight-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
echo "== starting a throwaway cluster"
start_bench_cluster
PGT_BIN=${PGT_BIN:-$bin}
export PGT_BIN
# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
out=${OUT:-bench/results/flight-$stamp}
# shellcheck disable=SC2154  # as above
/usr/bin/python3 bench/flight_run.py "$out" "$work"
echo "== results in $out.md"
