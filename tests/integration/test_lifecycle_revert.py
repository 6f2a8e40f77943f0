"""Revert after complete: the old shape kept in tandem until finalize.

The seeds' migration through the proxy, completed with a revert window:
every session sees the new shape, and the new release writes in it
(inserts, updates, deletes). `migrate revert` then switches every session
back to the old shape under the cutover's hold and rolls the migration
back. The database must end exactly where a twin that never migrated ends
after the same writes made in the old shape: `pg_dump --schema-only` equal
to the one taken before `start`, and every row equal. Then the migration is
started again, completed with a window and finalized.

A migration that drops a column cannot be reverted without losing what
the new release wrote: complete with a window is refused, and says why."""
import json
import os
import tempfile

import psycopg

from support import (active_fleet, engine_proxy, pmigrate, run_pgtandem, scalar, start_migration, UNIFY,
                     version_options, wait_for, wait_phase)
from test_lifecycle_shapes import Client
from test_schema_fidelity import schema_dump

WRITES = 40


# The same writes in each shape: an insert, an update of a loaded row, a delete.
WRITES_IN = {
    "new": ("INSERT INTO checks (claim, config_json, counts_by_template_json, env, created_at)"
            " VALUES (%s, %s::jsonb, %s::jsonb, 'prod', '2026-01-01'::timestamptz + %s * interval '1 s')",
            "UPDATE checks SET claim = 'upd-' || id, config_json = jsonb_build_object('u', id) WHERE id = %s"),
    "old": ("INSERT INTO checks (claim_text, aggregation, diagnostics, env, created_at)"
            " VALUES (%s, %s::jsonb::text, %s::jsonb::text, 'prod', '2026-01-01'::timestamptz + %s * interval '1 s')",
            "UPDATE checks SET claim_text = 'upd-' || id, aggregation = jsonb_build_object('u', id)::text"
            " WHERE id = %s"),
}


def shape_writes(conn, shape):
    insert, update = WRITES_IN[shape]
    for i in range(WRITES):
        conn.execute(insert, ("n-%d" % i, json.dumps({"i": i}), json.dumps({"t": i}), i))
        conn.execute(update, (7 * (i + 1),))
        conn.execute("DELETE FROM checks WHERE id = %s", (3000 + i,))


def checks_rows(uri):
    with psycopg.connect(uri) as c:
        return [r[0] for r in c.execute("SELECT to_jsonb(x) FROM checks x ORDER BY id")]


def finish(proxy, what, *extra):
    r = pmigrate(proxy, what, "--json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    return json.loads(r.stdout)


def test_revert_after_complete_ends_where_a_twin_that_never_migrated_ends(cluster, proxy_factory, legacy_db):
    twin = legacy_db + "_twin"
    cluster.psql("CREATE DATABASE %s TEMPLATE %s" % (twin, legacy_db))
    try:
        uri, twin_uri = cluster.uri(db=legacy_db), cluster.uri(db=twin)
        before = schema_dump(cluster, uri)
        proxy = engine_proxy(proxy_factory, cluster, legacy_db)
        via = proxy.uri(user="postgres", password="postgres", db=legacy_db)
        start_migration(proxy)
        rep = finish(proxy, "complete", "--revert-window-s", "3600")
        assert rep["status"] == "switched" and rep["revert_window_s"] == 3600, rep
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["phase"] == "switched", cur
        # every session sees the new shape now, with or without a version
        for options in ("", version_options()):
            with psycopg.connect(via, autocommit=True, options=options) as c:
                cols = [d.name for d in c.execute("SELECT * FROM checks LIMIT 1").description]
                assert "claim" in cols and "claim_text" not in cols and "aggregation" not in cols, cols
        with psycopg.connect(via, autocommit=True, options=version_options()) as c:
            shape_writes(c, "new")
        with psycopg.connect(twin_uri, autocommit=True) as c:
            shape_writes(c, "old")

        rep = finish(proxy, "revert")
        assert rep["status"] == "rolled_back", rep
        # the old release is back, and reads every row the new one wrote
        with psycopg.connect(via, autocommit=True) as c:
            cols = [d.name for d in c.execute("SELECT * FROM checks LIMIT 1").description]
            assert "claim_text" in cols and "claim" not in cols, cols
            assert c.execute("SELECT claim_text FROM checks WHERE id = 7").fetchone()[0] == "upd-7"
        assert schema_dump(cluster, uri) == before
        assert schema_dump(cluster, twin_uri) == before
        assert checks_rows(uri) == checks_rows(twin_uri)
        assert scalar(cluster, legacy_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem_%'") == "0"

        # and again, this time to the end, with the old release writing
        # until complete and the new one across it
        old = Client(via, "claim_text")
        old.start()
        wait_for(lambda: old.rounds >= 10 or old.errors, what="the old release writing")
        start_migration(proxy)
        rounds = old.rounds
        wait_for(lambda: old.rounds >= rounds + 10 or old.errors, what="the old release after start")
        old.finish()
        assert old.errors == [], old.errors
        rep = finish(proxy, "complete", "--revert-window-s", "3600")
        assert rep["status"] == "switched", rep
        rep = finish(proxy, "finalize")
        assert rep["status"] == "completed", rep
        cols = scalar(cluster, legacy_db, "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                                          " WHERE attrelid = 'public.checks'::regclass AND attnum > 0"
                                          " AND NOT attisdropped").split(",")
        assert "claim" in cols and "claim_text" not in cols and "aggregation" not in cols, cols
        ids = ",".join(str(i) for i in old.written)
        got = scalar(cluster, legacy_db, "SELECT count(*) FROM checks WHERE id IN (%s) AND claim LIKE 'claim_text-%%'"
                     % ids)
        assert int(got) == len(old.written) > 0
        assert scalar(cluster, legacy_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem_%'") == "0"
    finally:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % twin, check=False)


def test_complete_with_a_revert_window_refused_for_a_dropped_column(cluster, proxy_factory, legacy_db):
    with open(UNIFY) as f:
        mig = json.load(f)
    # without "down": rows the new release writes get no anon_token
    mig["operations"].append({"drop_column": {"table": "checks", "column": "anon_token"}})
    fd, path = tempfile.mkstemp(prefix="revert-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(mig, f)
    try:
        r = run_pgtandem(["migrate", "plan", path])  # the plan says so before anything runs
        assert r.returncode == 0, r.stderr
        assert "-- NOT REVERTIBLE after complete: operations[6].drop_column" in r.stdout, r.stdout[:2000]
        assert "REVERTIBLE" in run_pgtandem(["migrate", "plan", UNIFY]).stdout
        proxy = engine_proxy(proxy_factory, cluster, legacy_db)
        start_migration(proxy, path)
        r = pmigrate(proxy, "complete", "--revert-window-s", "60")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "cannot be reverted after complete" in r.stderr and "drop_column" in r.stderr, r.stderr
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["phase"] == "active", cur
        r = pmigrate(proxy, "complete")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        os.unlink(path)


def test_revert_through_a_fleet_under_writers(cluster, proxy_factory, legacy_db):
    """Three proxies: complete (with a window) through one while the new
    release writes through another, revert through the third; every proxy
    follows, and the database ends where its never-migrated twin ends."""
    twin = legacy_db + "_twin"
    cluster.psql("CREATE DATABASE %s TEMPLATE %s" % (twin, legacy_db))
    try:
        uri, twin_uri = cluster.uri(db=legacy_db), cluster.uri(db=twin)
        before = schema_dump(cluster, uri)
        proxies = active_fleet(proxy_factory, cluster, legacy_db)
        via = [p.uri(user="postgres", password="postgres", db=legacy_db) for p in proxies]
        writer = Client(via[2], "claim", options=version_options())  # the new release, across the switch
        writer.start()
        wait_for(lambda: writer.rounds >= 10 or writer.errors, what="the new release writing")
        rep = finish(proxies[1], "complete", "--revert-window-s", "600")
        assert rep["status"] == "switched", rep
        for p in proxies:
            wait_phase(p, "switched")
        rounds = writer.rounds
        wait_for(lambda: writer.rounds >= rounds + 10 or writer.errors, what="the new release after the switch")
        writer.finish()
        assert writer.errors == [], writer.errors
        with psycopg.connect(via[0], autocommit=True, options=version_options()) as c:
            shape_writes(c, "new")
        with psycopg.connect(twin_uri, autocommit=True) as c:
            # the writer's inserts took ids first; the twin's next ones must match
            c.execute("SELECT setval('checks_id_seq', %s)", (max(writer.written),))
            shape_writes(c, "old")
        rep = finish(proxies[0], "revert")
        assert rep["status"] == "rolled_back", rep
        for p in proxies:
            try:
                wait_phase(p, "rolled_back")
            except AssertionError as e:
                raise AssertionError("%s: %s\n%s" % (e, p.admin("GET", "/migrations/current"), p.log()[-4000:]))
        for v in via:  # the old release reads every row the new one wrote, through any proxy
            with psycopg.connect(v, autocommit=True) as c:
                assert c.execute("SELECT claim_text FROM checks WHERE id = 7").fetchone()[0] == "upd-7"
                got = c.execute("SELECT id, claim_text FROM checks WHERE id = ANY(%s)",
                                (list(writer.written),)).fetchall()
                assert dict(got) == writer.written
        assert schema_dump(cluster, uri) == before
        # the rows equal the twin's, but for the writer's own inserts, which the twin never got
        ids = list(writer.written)
        with psycopg.connect(uri) as c:
            mine = [r[0] for r in c.execute("SELECT to_jsonb(x) FROM checks x WHERE NOT id = ANY(%s) ORDER BY id",
                                            (ids,))]
        assert mine == checks_rows(twin_uri)
    finally:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % twin, check=False)
