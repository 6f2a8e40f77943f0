"""The first `migrate plan --estimate` on a table nobody has read yet lands
near the real backfill's rate: the sample is warmed before it is timed, and
its copy has the indexes the migration builds before the backfill, so the
first run is not the outlier (15x off) that later runs are not.

How near is measured in bench/estimate.sh on an idle machine (the issue's
bar: within 25 %); here, with the suite's other variant running beside it,
the test holds the estimate to a factor of three, which a cold sample or a
missing index misses. It runs in the serial part of the suite."""
import json
import os

import pytest

from support import EXAMPLES, load_legacy, migrate, proxy_start, wait_for

ROWS = 300000


@pytest.mark.serial
def test_first_estimate_is_within_a_factor_of_three_of_the_backfill(db, proxy_factory):
    load_legacy(db, ROWS)
    r = migrate(db, "plan", os.path.join(EXAMPLES, "checks_unify.json"), "--estimate", "--json")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["tables"][0]
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, os.path.join(EXAMPLES, "checks_unify.json"))
    cur = wait_for(lambda: (lambda c: c if c[1].get("phase") == "active" else None)(
        proxy.admin("GET", "/migrations/current")), timeout=60, what="the migration to be active")[1]
    real = cur["backfill"]["rows_per_s"]
    assert cur["backfill"]["rows_done"] == ROWS, cur
    guess = est["throttled_rows_per_s"]
    print("first estimate: %.0f rows/s (batches alone %.0f rows/s, sample %d rows in %d batches, %.0f ms); "
          "real backfill: %.0f rows/s; estimate/real = %.2f"
          % (guess, est["rows_per_s"], est["sample_rows"], est["sample_batches"], est["sample_ms"], real,
             guess / real))
    assert real / 3 <= guess <= 3 * real, (guess, real)
