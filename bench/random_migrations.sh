#!/bin/sh
# Random migrations with Postgres as the oracle (issue 60): COUNT random
# migration files from SEED (tests/integration/support/randmig.py), each
# on a random base schema with rows, run offline on a twin (psql -1) and
# online (`pgtandem migrate start FILE.sql --db`, then complete or rollback
# by the seed), compared by pg_dump --schema-only, every table's rows and
# what the engine must not leave behind. A line per file; failures are
# shrunk to their smallest file and written to FAILDIR; then refusals by
# reason and the last line
#   N files: A online and identical, R refused before DDL, F failures
# (N leaves out the files Postgres itself refuses offline). See
# bench/random_migrations_run.py for each step.
#
#   sh bench/random_migrations.sh SEED COUNT
#
# Environment:
#   KINDS=k1,k2,...   statement kinds drawn (default: all; "today": those
#                     `make test` draws, the ones carried today)
#   WRITERS=1         during each migration that completes, writers of the old and
#                     the new release insert rows (the twin takes them before and
#                     after the file); not shrunk
#   FAILDIR=DIR       where shrunk failures go (default bench/results/random-migrations-SEED-failures)
#   JOBS=N            N files at once (default 1)
#   PGT_BIN=bin/pgtandem
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# = 2 ] || { echo "usage: sh bench/random_migrations.sh SEED COUNT" >&2; exit 2; }
cd "$top"
# shellcheck disable=SC1091  # the helpers beside this script
. "$top/bench/lib.sh"
echo "== starting a throwaway cluster"
start_bench_cluster
[ -n "${PGT_BIN:-}" ] && bin=$PGT_BIN
faildir=${FAILDIR:-$top/bench/results/random-migrations-$1-failures}
echo "== $2 random migration files from seed $1; failures shrunk into $faildir"
# shellcheck disable=SC2154  # start_bench_cluster sets work
PGTANDEM_BIN=$bin /usr/bin/python3 bench/random_migrations_run.py "$work/pg/env" "$1" "$2" "$faildir" "${KINDS:-}"
