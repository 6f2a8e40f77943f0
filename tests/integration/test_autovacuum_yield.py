"""An autovacuum worker holding the table does not make a migration give
up. The backfill leaves dead tuples, autovacuum arrives and holds SHARE
UPDATE EXCLUSIVE, which conflicts with the engine's ADD CONSTRAINT,
VALIDATE and contract; Postgres cancels such a worker only after
deadlock_timeout (1 s), longer than the engine's lock_timeout lets it wait.
The engine cancels it itself when a lock attempt gives up, and says so.

The test makes autovacuum slow on one table (a cost limit of 1 with a
delay: it keeps its lock for minutes), waits until a worker is on it, then
starts a migration whose expand needs a conflicting lock."""
import psycopg

from support import migrate, sql, wait_for, write_migration

MIGRATION = {"name": "yield_av", "parent": None, "operations": [
    {"create_constraint": {"table": "slow", "name": "slow_n_positive", "type": "check", "check": "n > 0"}}]}


def autovacuum_on(db, table):
    with psycopg.connect(db, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a USING (pid)"
                         " WHERE a.backend_type = 'autovacuum worker' AND p.relid = %s::regclass",
                         (table,)).fetchone()[0] > 0


def test_a_migration_does_not_give_up_behind_autovacuum(db, cluster):
    sql(db, "CREATE TABLE slow (id bigint PRIMARY KEY, n int NOT NULL)"
            " WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,"
            " autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_cost_delay = 100);"
            "INSERT INTO slow SELECT g, 1 + g % 5 FROM generate_series(1, 200000) g;"
            "UPDATE slow SET n = n + 1;")
    cluster.psql("ALTER SYSTEM SET autovacuum_naptime = 1")
    cluster.psql("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: autovacuum_on(db, "slow"), 90, "an autovacuum worker on the table")
    finally:
        cluster.psql("ALTER SYSTEM RESET autovacuum_naptime")
        cluster.psql("SELECT pg_reload_conf()")
    r = migrate(db, "start", write_migration(MIGRATION))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cancelled 1 autovacuum worker(s) (slow)" in r.stderr, r.stderr[-3000:]
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr[-3000:]
    assert sql(db, "SELECT convalidated FROM pg_constraint WHERE conname = 'slow_n_positive'") == [(True,)]


def test_the_cutover_does_not_wait_behind_autovacuum(db, cluster, proxy_factory):
    """Through the proxy: an autovacuum worker arrives between start and
    complete (the operator may wait hours); the cutover cancels it instead
    of reporting it as a blocker until it finishes."""
    from support import pmigrate, proxy_start
    sql(db, "CREATE TABLE slow (id bigint PRIMARY KEY, n int NOT NULL)"
            " WITH (autovacuum_enabled = false);"
            "INSERT INTO slow SELECT g, 1 + g % 5 FROM generate_series(1, 200000) g;")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    # a same-type rename: nothing before the cutover takes a lock on the
    # table, so only the cutover meets the worker
    proxy_start(proxy, write_migration({"name": "yield_av_proxy", "parent": None, "operations": [
        {"rename_column": {"table": "slow", "from": "n", "to": "amount"}}]}))
    sql(db, "UPDATE slow SET n = n + 1;"
            "ALTER TABLE slow SET (autovacuum_enabled = true, autovacuum_vacuum_threshold = 0,"
            " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_limit = 1,"
            " autovacuum_vacuum_cost_delay = 100)")
    cluster.psql("ALTER SYSTEM SET autovacuum_naptime = 1")
    cluster.psql("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: autovacuum_on(db, "slow"), 90, "an autovacuum worker on the table")
    finally:
        cluster.psql("ALTER SYSTEM RESET autovacuum_naptime")
        cluster.psql("SELECT pg_reload_conf()")
    r = pmigrate(proxy, "complete", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert sql(db, "SELECT attname FROM pg_attribute WHERE attrelid = 'slow'::regclass AND attnum = 2") == \
        [("amount",)]
