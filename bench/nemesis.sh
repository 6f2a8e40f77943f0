#!/bin/sh
# The nemesis's long run (tests/integration/nemesis.py): whole migrations
# through a fleet of three proxies while a seeded random schedule kills
# proxies, restarts Postgres, black-holes, freezes and resets the network
# path, holds locks and races admin requests; the checker proves every
# acknowledged write, every migration's end and every admin answer. By
# hand, not in make test (which runs a short fixed-seed run).
#
#   bench/nemesis.sh [SEED [MIGRATIONS [GAP_S]]]   (defaults: 20261126 120 0.8)
#
# Prints the schedule as it runs and the summary; writes the summary to
# bench/results/nemesis-<date>.json. Exits 1 when a check failed (the seed
# and the schedule say how to replay it).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
seed=${1:-20261126}
migrations=${2:-120}
gap=${3:-0.8}
out="$top/bench/results/nemesis-$(date +%F).json"
mkdir -p "$top/bench/results"
cd "$top/tests/integration"
exec /usr/bin/python3 nemesis.py --seed "$seed" --migrations "$migrations" --gap "$gap" --json "$out"
