#!/bin/sh
# A data migration of ROWS rows under both releases' writes: the SQL an ORM
# writes for a required column filled from another and a data fix
# (`ADD COLUMN`, `UPDATE ... WHERE`, `SET NOT NULL`, `UPDATE ... WHERE`) run
# through bin/pgtandem proxy by `migrate start FILE --proxy`, while writers
# of the old and the new release insert and change rows through it. Reports
# the writers' p50/p99/max before and while the batches run, per release,
# the batches' rows/s and the budget the proxy kept, then checks every row
# in both shapes and every acknowledged write, and runs `complete`. Exits 1
# when a check fails. See bench/data_migration_run.py.
#
# Environment:
#   ROWS=1000000  WRITERS=4 (per release)  PAUSE_MS=5 (between a writer's statements)
#   SECONDS_BEFORE=10 (the old release's baseline)
#   PGT_BIN=bin/pgtandem
#   OUT=bench/results/data-migration-<date>  (writes OUT.md and OUT.json)
# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
start_bench_cluster
[ -n "${PGT_BIN:-}" ] && bin=$PGT_BIN

shown=$(shown_command data_migration.sh ROWS WRITERS PAUSE_MS SECONDS_BEFORE)
PGTANDEM_ADMIN_TOKEN=$(openssl rand -hex 16)
export PGTANDEM_ADMIN_TOKEN
PGT_PGPORT=$PGT_PGPORT ROWS=${ROWS:-1000000} WRITERS=${WRITERS:-4} PAUSE_MS=${PAUSE_MS:-5} \
SECONDS_BEFORE=${SECONDS_BEFORE:-10} BIN=$bin WORK=$work COMMAND=$shown \
OUT=${OUT:-bench/results/data-migration-$stamp} \
  /usr/bin/python3 bench/data_migration_run.py
