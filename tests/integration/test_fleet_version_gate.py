"""A release that declares a migration its proxy has not heard of yet.

A migration started through one proxy reaches the others by a notification
or their next heartbeat. A session of the new release that connects to one
of them in between declared the migration; served the old shape, its new
names fail and its `SELECT *` reads the old columns (the nemesis found it:
a rename's new name missing through a proxy whose engine path had just
been reset). Its first transaction now waits for that proxy's next look at
the database, a lease at most."""
import threading
import time

import psycopg
import pytest

from support import (db_uri, fleet_proxy, LEASE_MS, NAME, result_columns, start_migration, status, version_options,
                     write_migration,
                     wait_fleet, wait_for, wait_phase)
from tcp_forwarder import Forwarder


class TwoProxies:
    """A fleet of two on legacy_db: `first`, and `late`, whose engine
    connection passes through `fwd` (a forwarder the test freezes, so that
    `late` hears nothing from the database: not on the connections it has,
    nor on a new one, which a member that closed its idle engine connection
    opens)."""

    def __init__(self, cluster, proxy_factory, legacy_db, fwd):
        self.fwd = fwd
        self.first = fleet_proxy(proxy_factory, cluster, legacy_db)
        self.late = fleet_proxy(proxy_factory, cluster, legacy_db, engine_db="postgresql://postgres:postgres@"
                                "127.0.0.1:%d/%s?sslmode=require" % (fwd.port, legacy_db))
        wait_fleet([self.first, self.late])


def read_as_new_release(proxy, legacy_db, got):
    """A new-release session's `SELECT *` through `proxy`, in a thread:
    its columns in got["columns"], or its error in got["error"]."""
    def run():
        try:
            with psycopg.connect(db_uri(proxy, legacy_db), autocommit=True, prepare_threshold=0,
                                 options=version_options(), connect_timeout=10) as c:
                got["columns"] = result_columns(c.execute("SELECT * FROM checks WHERE id = 1"))
        except psycopg.Error as e:
            got["error"] = e
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


@pytest.fixture
def two(cluster, proxy_factory, legacy_db):
    fwd = Forwarder(cluster.host, cluster.port)
    try:
        yield TwoProxies(cluster, proxy_factory, legacy_db, fwd)
    finally:
        fwd.stop()


def test_new_release_through_a_proxy_that_has_not_heard_of_the_migration(cluster, two, legacy_db):
    first, late, fwd = two.first, two.late, two.fwd
    fwd.freeze()   # `late` hears nothing from the database for now, on no connection
    start_migration(first)
    wait_phase(first, "active", 60)
    got = {}
    th = read_as_new_release(late, legacy_db, got)
    wait_for(lambda: any(s["state"] == "held" for s in status(late)["sessions"]), 10.0,
             "the new release's first statement held by the proxy that has not heard of %s" % NAME,
             detail=lambda: got)
    fwd.thaw()
    th.join(15)
    assert not th.is_alive() and "error" not in got, got
    assert "claim" in got["columns"] and "claim_text" not in got["columns"], got
    assert "declares version" not in late.log(), late.log()[-2000:]   # answered, not timed out


def test_new_release_waits_for_the_route_when_the_engine_connection_was_closed_idle(cluster, two, legacy_db):
    """The same, once `late` has closed its idle engine connection (a fleet
    member keeps one backend): the look that finds the migration starts the
    load on a connection still opening. Full runs found the session let go
    then, before the load, and served the old shape; it waits for the
    route now."""
    first, late, fwd = two.first, two.late, two.fwd
    fwd.freeze()
    start_migration(first)
    wait_phase(first, "active", 60)
    wait_for(lambda: status(late)["engine"]["closed_while_idle"], 30,
             "the late proxy closing its idle engine connection", detail=lambda: status(late)["engine"])
    got = {}
    th = read_as_new_release(late, legacy_db, got)
    wait_for(lambda: any(s["state"] == "held" for s in status(late)["sessions"]), 10.0,
             "the new release's first statement held", detail=lambda: got)
    fwd.thaw()
    th.join(15)
    assert not th.is_alive() and "error" not in got, got
    assert "claim" in got["columns"] and "claim_text" not in got["columns"], got


def test_refused_when_the_proxy_cannot_ask_the_database(cluster, two, legacy_db):
    """The database out of the proxy's reach for longer than its lease: the
    session of the unknown version is refused with 57P03 (to connect again),
    not served the old shape."""
    first, late, fwd = two.first, two.late, two.fwd
    fwd.freeze()
    start_migration(first)
    wait_phase(first, "active", 60)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        with psycopg.connect(db_uri(late, legacy_db), autocommit=True, options=version_options(),
                             connect_timeout=10) as c:
            c.execute("SELECT * FROM checks WHERE id = 1")
    # a FATAL mid-query: libpq reports it as the connection lost, with its text
    assert "has not heard of version" in str(e.value) and "connect again" in str(e.value), e.value
    assert e.value.sqlstate in (None, "57P03"), e.value
    assert time.monotonic() - t0 < LEASE_MS / 1000 + 3, time.monotonic() - t0
    fwd.thaw()


def test_a_release_of_a_known_or_no_version_does_not_wait(cluster, proxy_factory, legacy_db):
    """The old release (no version) and a release that declares a migration
    the table has are not held; a name no migration has waits one look."""
    first = fleet_proxy(proxy_factory, cluster, legacy_db)
    start_migration(first)
    wait_phase(first, "active", 60)
    other = fleet_proxy(proxy_factory, cluster, legacy_db, extra=("--log-level", "debug"))
    wait_phase(other, "active")
    for opts in ("", version_options()):
        with psycopg.connect(db_uri(other, legacy_db), autocommit=True, options=opts) as c:
            c.execute("SELECT 1")
    assert "waits for the fleet" not in other.log()
    with psycopg.connect(db_uri(other, legacy_db), autocommit=True, options="-c pgtandem.version=nosuch") as c:
        assert "claim_text" in result_columns(c.execute("SELECT * FROM checks WHERE id = 1"))
    assert "waits for the fleet's next look before serving version nosuch" in other.log()


def test_a_proxy_that_starts_mid_migration_routes_before_it_serves_the_new_release(cluster, proxy_factory,
                                                                                   legacy_db):
    """A proxy started (or restarted) while a migration is active learns the
    names the table has at once, and loads the migration in progress with a
    second query. The nemesis found the window in between: the name was
    already known, so a new-release session passed the gate and read the
    old shape (`column "body" does not exist`). The load is held here by a
    lock on what it reads; the session waits for it, or for the fleet's
    first look, which routes every migration in flight from its status
    alone, and then sees its own shape."""
    first = fleet_proxy(proxy_factory, cluster, legacy_db)
    start_migration(first)
    wait_phase(first, "active", 60)
    got = {}
    with psycopg.connect(cluster.uri(db=legacy_db)) as locker:
        locker.execute("LOCK TABLE pgtandem.backfill_progress IN ACCESS EXCLUSIVE MODE")
        other = fleet_proxy(proxy_factory, cluster, legacy_db)
        wait_for(lambda: "in the database; following it" in other.log(), 30, "the restarted proxy finding %s" % NAME,
                 detail=lambda: other.log()[-2000:])
        th = read_as_new_release(other, legacy_db, got)
        wait_for(lambda: "columns" in got or "error" in got or
                 any(s["state"] == "held" for s in status(other)["sessions"]), 10.0,
                 "the new release's first statement held until %s is loaded" % NAME)
        # served before its route was in place, it would read the old shape
        assert not got or ("claim" in got.get("columns", []) and "claim_text" not in got["columns"]), got
        locker.rollback()
    th.join(15)
    assert not th.is_alive() and "error" not in got, got
    assert "claim" in got["columns"] and "claim_text" not in got["columns"], got


def test_a_session_of_the_new_release_not_yet_routed_writes_as_what_it_sees(cluster, two, legacy_db):
    """A new-release session connected before the migration reached its
    proxy sees the base table (the old column) until it is routed; its
    write there is an old-shape write, carried to the new column by `up`.
    Taken for a new-shape write (pgtandem.version reached Postgres with it),
    `down` wrote the new column's old value back over it and the write was
    lost in both shapes (found by the nemesis: an n retyped to bigint)."""
    cluster.psql("CREATE TABLE tv (id int PRIMARY KEY, n integer NOT NULL);"
                 "INSERT INTO tv SELECT g, g FROM generate_series(1, 50) g", uri=cluster.uri(db=legacy_db))
    name = "0101_tv_bigint"
    path = write_migration({"name": name, "parent": None, "operations": [
        {"alter_column": {"table": "tv", "column": "n", "type": "bigint", "up": "n::bigint", "down": "n::integer"}}]})
    first, late, fwd = two.first, two.late, two.fwd
    with psycopg.connect(db_uri(late, legacy_db), autocommit=True,
                         options="-c pgtandem.version=%s" % name) as early:
        early.execute("SELECT 1")      # connected and past its first transaction
        fwd.freeze()             # `late` hears nothing of what follows
        start_migration(first, path)
        wait_phase(first, "active", 60)
        early.execute("UPDATE tv SET n = 777 WHERE id = 1")
        fwd.thaw()
    with psycopg.connect(db_uri(first, legacy_db), autocommit=True,
                         options="-c pgtandem.version=%s" % name) as new, \
            psycopg.connect(db_uri(first, legacy_db), autocommit=True) as old:
        assert new.execute("SELECT n FROM tv WHERE id = 1").fetchone()[0] == 777
        assert old.execute("SELECT n FROM tv WHERE id = 1").fetchone()[0] == 777
