"""The nemesis's short fixed-seed run (nemesis.py: whole migrations through
a fleet of three proxies while faults are injected at random, and the
checker of what every writer was told). A failure prints the seed and the
schedule; `bench/nemesis.sh` runs the long one.

On a cluster of its own: the schedule stops and starts Postgres."""
import os

import pytest

import nemesis
from support import throwaway_cluster

SEED = int(os.environ.get("PGT_NEMESIS_SEED", "20261126"))


def test_nemesis_short_run():
    lines = []

    def log(msg):
        lines.append(msg)
    with throwaway_cluster("pgtandem-nemesis-") as cluster:
        try:
            s = nemesis.run(SEED, migrations=int(os.environ.get("PGT_NEMESIS_MIGRATIONS", "6")), gap=1.0, log=log,
                            cluster=cluster)
        except nemesis.Check as e:
            pytest.fail("%s\n\nthe run (seed %d):\n%s" % (e, SEED, "\n".join(lines[-150:])))
    assert sum(s["outcomes"].values()) == s["migrations"], s
    assert s["faults_total"] >= 10, s
    assert s["unanswered"] == 0, s
    assert s["writes_acknowledged"] > 1000 and s["rows_checked"] > 0, s
