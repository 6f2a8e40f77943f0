#!/bin/sh
# A sidecar fleet: N `pgtandem proxy` processes with --engine-db on one
# database (one beside each application pod), one new-release psycopg 3
# client per proxy (prepared `SELECT *` by id, 20 ms between transactions),
# the seeds' migration (config/examples/checks_unify.json) on CUT_ROWS rows
# started through proxy 1 and completed (--force) through proxy 2. Per fleet
# size: the backends the fleet holds of its own (application_name
# 'pgtandem ...') with no migration, with the migration active and after
# the cutover, and their peak sampled every 100 ms from the start to the
# count settled after; the traffic held (the coordinator's max_pause_ms, each
# participant's "traffic held X ms" log line: p50 and p100 over the fleet);
# the time `complete` took; the worst client transaction that overlapped
# the `complete` request, and the worst in the 5 s around it; client errors; whether every proxy followed to completed.
# See bench/sidecar_run.py for each step.
#
#   PROXIES_LIST="3 16 64"  CUT_ROWS=20000  CLIENT_PACE_MS=20 (between a client's transactions)
#   OUT=bench/results/sidecar-<date>  (writes OUT.md and OUT.json)
#   PGTANDEM_BIN=bin/pgtandem  KEEP_LOGS=DIR (the proxies' logs copied there)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=/dev/null
. "$top/bench/lib.sh"
start_bench_cluster
[ -n "${PGTANDEM_BIN:-}" ] && bin=$PGTANDEM_BIN

# shellcheck disable=SC2154  # start_bench_cluster sets work and stamp
WORK=$work TOP=$top BIN=$bin OUT=${OUT:-bench/results/sidecar-$stamp} PGT_PGPORT=$PGT_PGPORT \
  /usr/bin/python3 bench/sidecar_run.py
