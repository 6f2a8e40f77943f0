"""A backfill batch never waits for a row while it holds others, so it is
never one side of a deadlock with the app, and Postgres never picks the
app's transaction as the victim.

The app's transaction here locks rows in another order than a batch does:
it reads row J FOR SHARE, then updates row I < J. A batch that walks the
rows in key order and has already updated I reaches J and waits for the
app, which waits for the batch: a deadlock. Postgres looks for one only
after deadlock_timeout (1 s) of waiting, in the session that waited that
long first, and that was the app (it started waiting first, the batch's
lock_timeout of 1 s ran from later). So the app got `40P01 deadlock
detected` and lost its transaction because a migration ran: seen once under
AddressSanitizer in `test_backfill_budget.py` (the slow app there locks a
random row FOR SHARE and updates its own), and reproduced here every time,
2026-11-26: `psycopg.errors.DeadlockDetected` on the app's UPDATE.

Now a batch first locks the rows it will write, NOWAIT, before it writes
any: a row the app holds makes the batch give up at once holding nothing,
and it tries again smaller after a pause (the app's transaction is not
held up by it, and nothing is written twice or skipped)."""
import json

import psycopg
import pytest

from support import dbname, engine_proxy, sql, wait_for
from test_backfill_parallel import NAME, assert_new_equals_up_old, payload_migration

ROWS = 150
# the app locks J while the first batch (rows 1 to 50) runs, and updates I
# once the second batch (51 to 100) holds it: that batch reaches I 0.2 s
# into its second, J at 0.6 s
I, J = 60, 80
TABLE_SQL = """
CREATE TABLE readings (id bigint PRIMARY KEY, payload text);
INSERT INTO readings SELECT g, json_build_object('v', g)::text FROM generate_series(1, %d) g;
-- every row a batch writes takes 20 ms: a batch holds the rows it has
-- written while it walks on (ALWAYS: replica mode skips no trigger so set)
CREATE FUNCTION slow_backfill() RETURNS trigger LANGUAGE plpgsql AS $$
 BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$;
CREATE TRIGGER zz_slow BEFORE UPDATE ON readings FOR EACH ROW
 WHEN (current_setting('pgtandem.backfill', true) = 'on') EXECUTE FUNCTION slow_backfill();
ALTER TABLE readings ENABLE ALWAYS TRIGGER zz_slow;
""" % ROWS
# batches of 50 rows that stay so (no adapting to a target), one worker,
# no latency budget: the second batch's window holds both I and J
BATCHES = {"batch_rows": 50, "min_rows": 5, "max_rows": 50, "target_ms": 60000, "workers": 1,
           "app_p99_budget": 0}


def row_held(db, i):
    """Whether another transaction holds row i (a FOR SHARE NOWAIT fails)."""
    try:
        sql(db, "SELECT 1 FROM readings WHERE id = %s FOR SHARE NOWAIT", (i,))
        return False
    except psycopg.errors.LockNotAvailable:
        return True


@pytest.mark.serial
def test_an_app_transaction_that_locks_rows_in_another_order_is_never_the_deadlock_victim(db, cluster,
                                                                                            proxy_factory):
    sql(db, TABLE_SQL)
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    cur = lambda: proxy.admin("GET", "/migrations/current")[1]  # noqa: E731
    code, body = proxy.admin("POST", "/migrations", json.dumps(payload_migration(["readings"], BATCHES)))
    assert code == 202, body
    wait_for(lambda: row_held(db, 1), 30, "the first batch", interval=0.01, detail=proxy.log_tail)
    with psycopg.connect(db) as app:
        app.execute("SELECT 1 FROM readings WHERE id = %s FOR SHARE", (J,))
        assert row_held(db, 1), "the first batch ended before the app held row %d" % J
        # the second batch has written I (and walks on towards J), or it has
        # met J held and given way
        wait_for(lambda: row_held(db, I) or (cur().get("backfill") or {}).get("lock_conflicts"), 30,
                 "a batch holding row %d or giving way to row %d" % (I, J), interval=0.01, detail=proxy.log_tail)
        app.execute("UPDATE readings SET payload = %s WHERE id = %s", (json.dumps({"v": I, "app": 1}), I))
        app.commit()
    wait_for(lambda: cur().get("phase") == "active", 120, "the backfill's end", detail=proxy.log_tail)
    final = cur()["backfill"]
    assert final["done"] and final["rows_done"] >= ROWS, final
    assert final["lock_conflicts"] >= 1, final  # the batch did meet J held
    old, new = assert_new_equals_up_old(db, "readings", ROWS)
    assert json.loads(old[I]) == {"v": I, "app": 1} == new[I], (old[I], new[I])
    print("lock conflicts %d, batches %d" % (final["lock_conflicts"], final["batches"]))
