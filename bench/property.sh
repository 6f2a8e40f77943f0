#!/bin/sh
# The tandem rule's property test, long: tests/integration/test_tandem_property.py
# with many more steps per kind and a fresh seed, against a throwaway cluster
# and proxy as in `make test`. Prints, per kind, how many steps, checks and
# distinct interleavings of writers on one row it tried, and the seed, so a
# failure can be replayed with PGT_PROPERTY_SEED.
#   STEPS=N (default 4000 per kind)  SEED=N (default: from the clock)  BIN=bin/pgtandem
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
steps=${STEPS:-4000}
seed=${SEED:-$(date +%s)}
bin=${BIN:-$top/bin/pgtandem}
echo "tandem property: seed $seed, $steps steps per kind"
PGTANDEM_BIN=$bin PGT_VARIANT=rel PGT_PROPERTY_SEED=$seed PGT_PROPERTY_STEPS=$steps \
  /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/integration/test_tandem_property.py 2>&1 |
  grep -E '^\[tandem property\]|passed|failed|^E '
