#!/bin/sh
# What a backfill costs the application: pgbench at 16 clients through
# bin/pgtandem proxy (the old release: no version declared), each
# transaction's latency logged, per second p50/p99/max BEFORE (the baseline),
# DURING a backfill of ROWS rows of the seeds' `checks` shape
# (bench/bench_unify.json, three columns written, as bench/backfill.sh does)
# and AFTER it, for three budgets: the default (app_p99_budget = 1.5 x the
# baseline the proxy measures), unthrottled (app_p99_budget = 0) and an
# absolute max_app_p99_ms of twice the baseline p99 measured in the run;
# beside them the same app during one bare `UPDATE` of the same rows, sent
# straight to Postgres (what doing it by hand costs). The machine's load
# average is recorded around every case. See bench/impact_run.py.
#
# Environment:
#   ROWS=1000000          rows of `checks`
#   SECONDS_BEFORE=15     the baseline; SECONDS_AFTER=10 after the backfill
#   WORKLOADS="tpcb select"  pgbench's TPC-B-like script and -S (select-only)
#   CASES="default unthrottled absolute update"  (also: nofloor = app_p99_floor_ms 0;
#                         selfslow = the app slows by itself SLOW_AFTER=5 s into the backfill,
#                         SLOW_FRAC=0.05 of its transactions sleeping 30 ms)
#   WORKLOADS may name `fast`: FAST_CLIENTS=4 clients at FAST_RATE=800 tps in all, select-only
#   CLIENTS=16  SCALE=16 (pgbench -i -s)
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/impact-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
start_bench_cluster
[ -n "${PGT_BIN:-}" ] && bin=$PGT_BIN

shown=$(shown_command impact.sh ROWS WORKLOADS CASES SECONDS_BEFORE SECONDS_AFTER CLIENTS SCALE FAST_CLIENTS FAST_RATE SLOW_AFTER SLOW_FRAC)
PGTANDEM_ADMIN_TOKEN=$(openssl rand -hex 16)
export PGTANDEM_ADMIN_TOKEN
# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
PGT_PGPORT=$PGT_PGPORT ROWS=${ROWS:-1000000} SECONDS_BEFORE=${SECONDS_BEFORE:-15} SECONDS_AFTER=${SECONDS_AFTER:-10} \
WORKLOADS=${WORKLOADS:-tpcb select} CASES=${CASES:-default unthrottled absolute update} \
CLIENTS=${CLIENTS:-16} SCALE=${SCALE:-16} BIN=$bin WORK=$work TOP=$top COMMAND=$shown \
OUT=${OUT:-bench/results/impact-$stamp} \
  /usr/bin/python3 bench/impact_run.py
