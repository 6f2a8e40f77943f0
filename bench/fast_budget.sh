#!/bin/sh
# The latency budget against a millisecond-fast app: one client through
# bin/pgtandem proxy (the old release) doing a SELECT by id and an UPDATE
# of the migrated table every TICK_MS, beside the backfill of an
# `add_column` with `up` on ROWS rows; the default budget against
# unthrottled (app_p99_budget = 0), alternated ROUNDS times in one run.
# Backfill rows/s per case and their ratio, the app's p99 before and during
# (the client's, and the proxy's own as its status says it), how many status
# polls found the backfill held back, the load average around every case.
# See bench/fast_budget_run.py.
#
# Environment:
#   ROWS=300000  TICK_MS=5  ROUNDS=2  CASES="default unthrottled"
#     (also short-N: unthrottled with batches sized for N ms, target_ms = N)
#   SECONDS_BEFORE=10  SECONDS_AFTER=3
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/fast-budget-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
start_bench_cluster
[ -n "${PGT_BIN:-}" ] && bin=$PGT_BIN

shown=$(shown_command fast_budget.sh ROWS TICK_MS ROUNDS CASES SECONDS_BEFORE SECONDS_AFTER)
PGTANDEM_ADMIN_TOKEN=$(openssl rand -hex 16)
export PGTANDEM_ADMIN_TOKEN
# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
PGT_PGPORT=$PGT_PGPORT ROWS=${ROWS:-300000} TICK_MS=${TICK_MS:-5} ROUNDS=${ROUNDS:-2} \
CASES=${CASES:-default unthrottled} SECONDS_BEFORE=${SECONDS_BEFORE:-10} SECONDS_AFTER=${SECONDS_AFTER:-3} \
BIN=$bin WORK=$work TOP=$top COMMAND=$shown OUT=${OUT:-bench/results/fast-budget-$stamp} \
  /usr/bin/python3 bench/fast_budget_run.py
