"""An expand whose proxy was killed (kill -9) while the expand waited on a lock.

A session that talks to Postgres directly (not through the proxy) holds
`LOCK TABLE items IN ACCESS SHARE MODE` in an open transaction: expand's
ALTER TABLE needs ACCESS EXCLUSIVE, so it retries with its short
lock_timeout. The proxy doing it is killed; a new proxy starts on the same
--engine-db. Before: it logged "migration ... is expanding in the database;
following it" and stayed `expanding` for good, and a rollback through it
was refused (409 "try again when that step has finished") while nothing
ran that step any more. Now the new proxy sees that nobody holds the
engine lock, the expand's owner, and takes the expand over as `pgtandem
migrate resume` does: once the blocker is gone the migration goes on to
`active`, with the schema a clean start leaves; a rollback asked for while
the taken-over expand waits is accepted and ends with the starting schema.
"""
import os
import signal

import psycopg
import pytest

from support import current, Env, items_migration, post_in_background, start, wait_for, wait_phase

WAIT = 20.0     # a state to be reached, a log line to appear
ACTIVE = 60.0   # the redone expand, the backfill of 2000 rows and the validations


@pytest.fixture
def twin(cluster):
    e = Env(cluster)
    yield e
    e.close()


def catalog_shape(e):
    """What a migration changes in a database, pgtandem's own tables left out:
    columns (of tables and views), triggers, views, functions, constraints and
    indexes."""
    skip = "('pg_catalog', 'information_schema', 'pgtandem', 'pg_toast')"
    return {
        "columns": e.sql("SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default"
                         " FROM information_schema.columns WHERE table_schema NOT IN %s ORDER BY 1, 2,"
                         " ordinal_position" % skip),
        "triggers": e.sql("SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal"
                          " ORDER BY 1, 2"),
        "views": e.sql("SELECT schemaname, viewname, definition FROM pg_views WHERE schemaname NOT IN %s"
                       " ORDER BY 1, 2" % skip),
        "functions": e.sql("SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                           " WHERE n.nspname NOT IN %s ORDER BY 1, 2" % skip),
        "constraints": e.sql("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                             " WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN %s)"
                             " ORDER BY 1, 2" % skip),
        "indexes": e.sql("SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname NOT IN %s"
                         " ORDER BY 1, 2, 3" % skip),
    }


def status_row(e):
    """The migration's status in the database; None until the proxy has
    created its state table (it does so when it takes the request, which a
    busy machine may not have reached yet)."""
    try:
        row = e.state_row()
    except psycopg.errors.UndefinedTable:
        return None
    return row[0] if row else None


def kill_the_blocked_expand(e):
    """Starts the migration through a proxy while `holder` blocks its expand,
    kills that proxy with SIGKILL once the expand retries on the lock, and
    starts a new proxy on the same engine database. Returns (holder, proxy)."""
    holder = psycopg.connect(e.uri, connect_timeout=10)
    holder.execute("SET application_name = 'forgotten console'")
    holder.execute("LOCK TABLE items IN ACCESS SHARE MODE")  # psycopg opened a transaction: it stays open
    first = e.proxy()
    start(first, items_migration())
    wait_for(lambda: status_row(e) == "expanding" and current(first).get("phase") == "expanding", WAIT,
             "the migration to be expanding", detail=lambda: first.log()[-3000:])
    wait_for(lambda: "lock not available within" in first.log(), WAIT, "the expand to retry on the lock",
             detail=lambda: first.log()[-3000:])
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert status_row(e) == "expanding"

    second = e.proxy()
    wait_for(lambda: "is expanding in the database; following it" in second.log(), WAIT,
             "the new proxy to find the expanding migration", detail=lambda: second.log()[-3000:])

    def taken_over():
        cur = current(second)
        return cur.get("phase") == "expanding" and cur.get("following") is False and \
            "interrupted during expand" in second.log()
    wait_for(taken_over, WAIT, "the new proxy to take the expand over (nobody holds the engine lock any more)",
             detail=lambda: (current(second), e.state_row(), second.log()[-3000:]))
    # the redone expand waits on the same lock, and says who holds it
    who = wait_for(lambda: current(second).get("blocked_by"), WAIT, "the taken-over expand to name its blocker",
                   detail=lambda: second.log()[-3000:])
    assert who[0]["application_name"] == "forgotten console", who
    return holder, second


def test_expand_of_a_killed_proxy_is_taken_over_and_reaches_active(env, twin):
    # the schema a clean start leaves, on a twin database
    clean = twin.proxy()
    start(clean, items_migration())
    cur = wait_phase(clean, ("active", "failed"), ACTIVE, what="the clean start")
    assert cur["phase"] == "active", cur
    want = catalog_shape(twin)

    e = env
    holder, p = kill_the_blocked_expand(e)
    try:
        holder.rollback()  # the blocker is gone: the taken-over expand goes through
        cur = wait_phase(p, ("active", "failed", "rolled_back"), ACTIVE, what="the taken-over migration")
        assert cur["phase"] == "active", (cur, p.log()[-3000:])
    finally:
        holder.close()
    assert status_row(e) == "active"
    assert catalog_shape(e) == want
    assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0
    assert "val_int" in e.items_columns()


def test_rollback_while_the_taken_over_expand_waits_is_carried_out(env):
    e = env
    before = catalog_shape(e)
    holder, p = kill_the_blocked_expand(e)
    try:
        rollback = post_in_background(p, "/migrations/current/rollback", timeout=60)
        wait_for(lambda: current(p).get("phase") == "rolling_back", WAIT, "the rollback to stop the expand",
                 detail=lambda: (current(p), p.log()[-3000:]))
        holder.rollback()  # the rollback's own steps need the same lock
        code, ans = rollback()
        assert 200 <= code < 300, (code, ans, p.log()[-3000:])
        cur = wait_phase(p, ("rolled_back", "failed"), ACTIVE, what="the rollback")
        assert cur["phase"] == "rolled_back", cur
    finally:
        holder.close()
    assert status_row(e) == "rolled_back"
    assert catalog_shape(e) == before
