#!/bin/sh
# Transaction pooling's session-state property test, long:
# tests/integration/test_pool_session_state.py's model test with more clients
# and steps and a fresh seed, against a throwaway cluster and proxy as in
# `make test` (pools of 2 and 1). Prints, per pool size, the seed, the
# clients, steps and checks and how many were wrong, so a failure can be
# replayed with SEED.
#   STEPS=N (default 10000 per client)  CLIENTS=N (default 8)
#   SEED=N (default: from the clock)  BIN=bin/pgtandem
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
steps=${STEPS:-10000}
clients=${CLIENTS:-8}
seed=${SEED:-$(date +%s)}
bin=${BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
echo "pool state property: seed $seed, $clients clients x $steps steps per pool size"
PGTANDEM_BIN=$bin PGT_VARIANT=rel PGT_STATE_SEED=$seed PGT_STATE_STEPS=$steps PGT_STATE_CLIENTS=$clients \
  /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/integration/test_pool_session_state.py \
    -k against_a_model 2>&1 | grep -E '\[pool state\]|passed|failed|^E '
