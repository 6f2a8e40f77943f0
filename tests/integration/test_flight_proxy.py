"""Several migrations in flight through a proxy: every release its shape.

A proxy of the fleet serves the database while `a1` (a rename of
`users.name`), `b2` (parent `a1`: a column of `orders` filled from
`amount`) and `c3` (parent `b2`: a new table `audit`) start one after
another, either all with `--db`, or all through the proxy
(`migrate start --proxy`, the issue's own steps): `a1` then runs on the
proxy's engine and `b2` and `c3` beside it, each on an engine of its own
in the proxy, as a `--db` start would. Three releases connect through the proxy and declare
only the migration they were built with (`pgtandem.version`), never a
search_path: the one from before `a1`, `a1`'s and `c3`'s. Each checks,
every round, that its prepared `SELECT *` of `users` and of `orders` has
its own shape's columns, and writes in it. The proxy's engine follows the
oldest in flight and routes the two above it from its looks at the
migrations table: a session declaring `c3` sees `pgtandem_c3, pgtandem_b2,
pgtandem_a1, public`. Each start beside waits before its DDL until the
proxy says (in its heartbeat) that it routes it.

`complete b2` through the proxy is refused while `a1` is in flight below
it, naming `a1`; then each completes in its order of start through the
proxy's cutover, the releases it retires stopped first and the newest
writing through all three. Every row every release wrote is read back in
the final shape, and the schema is the one the same DDL run offline
gives. Run in session mode and with transaction pooling (the pools follow
the routes, one per path)."""
import json
import signal
import subprocess
import threading

import psycopg
import pytest

from support import BIN, migrate, pmigrate, schema_dump, sql, wait_for, write_migration, write_users_file
from support.fleet import fleet_proxy, live_members
from support.pg import dbname, offline_twin
from support.proxy import metrics, promtool_check, proxy_uri
from test_flight_db import A1, B2, BASE, C3, D4, OFFLINE, Release, assert_as_offline, start_file, statuses
from test_schema_fidelity import run_script

# what each release's prepared SELECT * must show, by table
SHAPES = {
    None: {"users": ["id", "name", "email"], "orders": ["id", "user_id", "amount"]},
    "a1": {"users": ["id", "full_name", "email"], "orders": ["id", "user_id", "amount"]},
    "c3": {"users": ["id", "full_name", "email"], "orders": ["id", "user_id", "amount", "amount_cents"]},
}


class ProxyRelease(Release):
    """A release through the proxy: it declares its version and nothing
    else (no search_path), and checks its shape with prepared SELECT *
    every round before it writes users, orders (and audit rows, c3) in
    it."""

    def connect(self):
        opts = "-c pgtandem.version=%s" % self.release if self.release else ""
        return psycopg.connect(self.db, autocommit=True, options=opts)

    def before_round(self, c):
        for table, want in SHAPES[self.release].items():
            cur = c.execute("SELECT * FROM %s WHERE id = %%s" % table, (1,), prepare=True)
            cur.fetchall()
            got = [d.name for d in cur.description]
            if got != want:
                raise AssertionError("%s sees %s as %s, not %s" % (self.release, table, got, want))


def following(proxy):
    return (proxy.admin("GET", "/migrations/current")[1] or {}).get("name")


def complete_through_the_proxy(db, name, newest):
    """`complete name --db`, which goes through the proxy's cutover, with
    the newest release writing on after it."""
    rounds = newest.rounds
    r = migrate(db, "complete", name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "completing through the one at" in r.stderr, r.stderr
    wait_for(lambda: newest.rounds >= rounds + 10 or newest.errors, 60,
             "the newest release writing after %s completed" % name)


def retire(release):
    release.stop.set()
    release.join(30)
    assert not release.errors, (release.release, release.errors)


def routed_before_the_ddl(log, name):
    """The start's log says it waited for the proxy's route, or found it
    routed at its first look (the proxy heard of the new row and said so
    in a heartbeat before the start asked): no "waiting" line then."""
    return "every proxy serving this database routes %s" % name in log or \
        "waiting for the proxies serving this database to route %s" % name not in log


def start_with_db(db, proxy, m, tmp_path):
    """`migrate start --db` beside the proxy: its DDL waits for the proxy's route."""
    r = migrate(db, "start", write_migration(m, str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert routed_before_the_ddl(r.stderr, m["name"]), r.stderr


def start_through_the_proxy(db, proxy, m, tmp_path):
    """`migrate start --proxy` while the proxy's engine runs a1: the proxy
    starts it beside, on an engine of its own, which waits for the route."""
    r = pmigrate(proxy, "start", write_migration(m, str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert "submitted to the proxy at http://127.0.0.1:%d, beside a1" % proxy.admin_port in r.stderr, r.stderr
    assert "migration %s is active beside a1" % m["name"] in r.stderr, r.stderr
    log = proxy.log()
    assert "migration %s: started beside a1, which this proxy's engine runs" % m["name"] in log, log[-3000:]
    assert routed_before_the_ddl(log, m["name"]), log[-3000:]


@pytest.mark.parametrize("pool_mode,started", [("session", "db"), ("transaction", "db"), ("session", "proxy"),
                                               ("transaction", "proxy")])
def test_three_migrations_in_flight_through_a_proxy_each_release_on_its_shape(cluster, db, proxy_factory,
                                                                               tmp_path, pool_mode, started):
    run_script(db, BASE)
    releases = []
    start = start_with_db if started == "db" else start_through_the_proxy
    with offline_twin(cluster, BASE, OFFLINE) as offline:
        try:
            run_three_through_a_proxy(cluster, db, proxy_factory, tmp_path, pool_mode, offline, releases, start)
        finally:
            for x in releases:
                x.stop.set()


def run_three_through_a_proxy(cluster, db, proxy_factory, tmp_path, pool_mode, offline, releases, start):
    extra = []
    if pool_mode == "transaction":
        users = write_users_file(str(tmp_path / "users.json"), {"postgres": {"password": "postgres"}})
        extra = ["--auth", "scram", "--users-file", users, "--pool-mode", "transaction", "--pool-size", "6"]
    proxy = fleet_proxy(proxy_factory, cluster, dbname(db), extra=extra)
    wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
    uri = proxy_uri(proxy, db)

    if start is start_with_db:
        r = start_file(db, A1, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    else:   # the proxy's engine runs a1
        r = pmigrate(proxy, "start", write_migration(A1, str(tmp_path)))
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    releases.append(ProxyRelease(uri, None, 100000))
    releases.append(ProxyRelease(uri, "a1", 200000))
    for x in releases:
        x.start()
    # beside a1, with the proxy serving the database: it routes them
    for m in (B2, C3):
        start(db, proxy, m, tmp_path)
    if start is start_through_the_proxy:
        # one that may not be built beside them is refused before any DDL, saying why
        before = schema_dump(cluster, db)
        r = pmigrate(proxy, "start", write_migration(D4, str(tmp_path)))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "migration d4 refused" in r.stderr and 'names column "name" of "users", which migration a1' \
            in r.stderr, r.stderr
        assert schema_dump(cluster, db) == before
    assert statuses(db) == {"a1": "active", "b2": "active", "c3": "active"}
    releases.append(ProxyRelease(uri, "c3", 300000))
    releases[-1].start()
    wait_for(lambda: all(x.rounds >= 20 or x.errors for x in releases), 60, "every release writing",
             detail=lambda: proxy.log()[-3000:])
    for x in releases:
        assert not x.errors, (x.release, x.errors)
    assert following(proxy) == "a1"
    # the proxy says what it routes: each in flight, its status, its path
    flight = proxy.admin("GET", "/migrations/current")[1]["in_flight"]
    assert [(m["name"], m["status"], m["engine"]) for m in flight] == [
        ("a1", "active", "this proxy"), ("b2", "active", "elsewhere"), ("c3", "active", "elsewhere")], flight
    assert flight[2]["path"] == "pgtandem_c3,pgtandem_b2,pgtandem_a1" and flight[0]["sessions"] == 1, flight
    st = pmigrate(proxy, "status")
    assert "c3: active, another engine, 1 session(s) here; pgtandem_c3,pgtandem_b2,pgtandem_a1" in st.stdout, \
        st.stdout + st.stderr
    # and /metrics: one sample each, by status and engine, and the sessions declaring it
    scrape = metrics(proxy)
    assert [scrape.get("pgtandem_migration_in_flight", migration=m["name"], status=m["status"], engine=m["engine"])
            for m in flight] == [1, 1, 1], scrape.text
    assert [scrape.get("pgtandem_migration_in_flight_sessions", migration=n) for n in ("a1", "b2", "c3")] == \
        [m["sessions"] for m in flight], scrape.text
    promtool_check(scrape.text)
    log = proxy.log()
    assert "sessions declaring c3 see pgtandem_c3,pgtandem_b2,pgtandem_a1" in log, log[-3000:]

    # complete goes oldest first through the proxies
    before = statuses(db)
    r = migrate(db, "complete", "b2")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "b2 is in flight above a1" in r.stderr and "complete a1 first" in r.stderr, r.stderr
    assert statuses(db) == before

    retire(releases[0])
    complete_through_the_proxy(db, "a1", releases[2])
    retire(releases[1])
    complete_through_the_proxy(db, "b2", releases[2])
    complete_through_the_proxy(db, "c3", releases[2])
    retire(releases[2])
    assert statuses(db) == {"a1": "completed", "b2": "completed", "c3": "completed"}
    for x in releases:
        assert x.rounds >= 20, (x.release, x.rounds)

    # every row every release wrote, in the final shape
    users = dict(sql(db, "SELECT id, full_name FROM users"))
    want = {g: "user %d" % g for g in range(1, 2001)}
    for x in releases:
        want.update(x.users)
    orders = {i: (a, c) for i, a, c in sql(db, "SELECT id, amount, amount_cents FROM orders")}
    assert len(orders) == 3000 + sum(len(x.orders) for x in releases)
    assert not [(i, a, c) for i, (a, c) in orders.items() if c != a * 100]
    for x in releases:
        for oid, amount in x.orders.items():
            assert orders[oid][0] == amount
    assert sql(db, "SELECT count(*) FROM audit")[0][0] == releases[2].audit > 0
    assert_as_offline(cluster, db, offline, users, want)


def test_a_start_through_the_proxy_beside_its_own_backfill_waits_for_it_then_runs(cluster, db, proxy_factory,
                                                                                   tmp_path):
    """The proxy's engine backfills `a1` (big, capped at 20,000 rows/s)
    holding the engine lock, which a `--db` engine lets go of for its
    backfill: `b2` (another table) started through the proxy meanwhile is
    accepted at once, says it waits for that backfill, and runs once it
    ends. Both complete through the proxy, oldest first."""
    run_script(db, "CREATE TABLE big (id bigserial PRIMARY KEY, v int NOT NULL);"
                   " INSERT INTO big (v) SELECT g FROM generate_series(1, 100000) g;"
                   " CREATE TABLE other (id bigserial PRIMARY KEY, w int);")
    proxy = fleet_proxy(proxy_factory, cluster, dbname(db))
    wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
    a1 = {"name": "a1", "operations": [{"add_column": {"table": "big", "up": "v * 2",
                                                       "column": {"name": "v2", "type": "int"}}}],
          "backfill": {"batch_rows": 1000, "max_rows_per_sec": 20000}}
    b2 = {"name": "b2", "parent": "a1", "operations": [{"add_column": {"table": "other",
                                                                       "column": {"name": "x", "type": "int"}}}]}
    r = proxy.admin("POST", "/migrations", json.dumps(a1))
    assert r[0] == 202, r
    wait_for(lambda: (proxy.admin("GET", "/migrations/current")[1] or {}).get("phase") == "backfilling", 30,
             "a1 backfilling on the proxy's engine")
    r = pmigrate(proxy, "start", write_migration(b2, str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert "migration b2 waits for the backfill of a1, which holds the engine lock on this proxy until it ends" \
        in r.stderr, r.stderr
    assert statuses(db) == {"a1": "active", "b2": "active"}
    beside = proxy.admin("GET", "/migrations/current")[1]["beside"]
    assert [(b["name"], b["state"]) for b in beside] == [("b2", "started")], beside
    for name in ("a1", "b2"):
        r = pmigrate(proxy, "complete", name)
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert statuses(db) == {"a1": "completed", "b2": "completed"}
    assert sql(db, "SELECT count(*), count(*) FILTER (WHERE v2 = v * 2) FROM big") == [(100000, 100000)]
    assert sql(db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'other'"
                   " AND column_name = 'x'") == [(1,)]


def a1_through_a_proxy_beside_big(cluster, db, proxy_factory, tmp_path, rows):
    """BASE and a table big of `rows` rows; a proxy of the fleet, with
    `a1` started through it and active."""
    run_script(db, BASE + "CREATE TABLE big (id bigserial PRIMARY KEY, v int NOT NULL);"
                   " INSERT INTO big (v) SELECT g FROM generate_series(1, %d) g;" % rows)
    proxy = fleet_proxy(proxy_factory, cluster, dbname(db))
    wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
    r = pmigrate(proxy, "start", write_migration(A1, str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    return proxy


def test_a_proxy_stopped_while_a_start_beside_backfills_lets_it_go_and_resume_finishes_it(cluster, db,
                                                                                        proxy_factory, tmp_path):
    """`b2`, started through the proxy beside `a1` (a rename, active),
    backfills big on its own engine in the proxy, capped at 20,000 rows/s.
    The proxy stopped meanwhile (SIGTERM) stops that engine between two
    batches, exits 0 and leaves no lock: `resume b2 --db` finishes the
    backfill from its checkpoint, and every row holds its value."""
    proxy = a1_through_a_proxy_beside_big(cluster, db, proxy_factory, tmp_path, 200000)
    b2 = {"name": "b2", "parent": "a1", "operations": [{"add_column": {"table": "big", "up": "v * 2",
                                                                       "column": {"name": "v2", "type": "int"}}}],
          "backfill": {"batch_rows": 1000, "max_rows_per_sec": 20000}}
    r = proxy.admin("POST", "/migrations", json.dumps(b2))
    assert r[0] == 202 and r[1]["beside"] == "a1", r
    wait_for(lambda: sql(db, "SELECT coalesce(sum(rows_done), 0) FROM pgtandem.backfill_progress"
                             " WHERE migration = 'b2'")[0][0] > 0, 30, "b2 backfilling beside a1",
             detail=lambda: proxy.log()[-2000:])
    assert statuses(db) == {"a1": "active", "b2": "backfilling"}
    proxy.stop()
    assert proxy.proc.returncode == 0, proxy.log()[-3000:]
    assert "migration b2, started beside: stopping its engine" in proxy.log(), proxy.log()[-3000:]
    assert sql(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    r = migrate(db, "resume", "b2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert statuses(db) == {"a1": "active", "b2": "active"}
    assert sql(db, "SELECT count(*), count(*) FILTER (WHERE v2 = v * 2) FROM big") == [(200000, 200000)]


class SlowApp(threading.Thread):
    """The old release through the proxy: a query of about 4 ms, over and
    over, so the proxy has the app's p99 to keep."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.uri, self.stop, self.errors, self.queries = uri, threading.Event(), [], 0

    def run(self):
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                while not self.stop.is_set():
                    c.execute("SELECT pg_sleep(0.004), count(*) FROM users WHERE id < 10").fetchall()
                    self.queries += 1
        except Exception as e:  # noqa: BLE001 - kept for the assertion
            self.errors.append(repr(e))


def beside_budget(proxy):
    return (proxy.admin("GET", "/migrations/current")[1] or {}).get("beside_budget")


def test_a_start_beside_backfills_under_the_proxys_latency_budget(cluster, db, proxy_factory, tmp_path):
    """`b2`, started through the proxy beside `a1` (active), backfills big
    (300,000 rows, at most 40,000 a second: 7.5 s unthrottled) on an
    engine of its own in a thread,
    where the app's latency is not seen: the proxy's loop keeps its
    latency budget over it. The app's p99 (about 4 ms a query) over an
    absolute limit of 1 ms engages the budget: one worker, the smallest
    batches, the pause doubled up to a second, then starved (5 s at
    those), with half of big still to fill. The limit taken away (the
    throttle request of the proxy's own migration, the one budget's
    settings), it finishes, every row filled."""
    proxy = a1_through_a_proxy_beside_big(cluster, db, proxy_factory, tmp_path, 300000)
    app = SlowApp(proxy_uri(proxy, db))
    app.start()
    try:
        r = proxy.admin("POST", "/migrations/current/throttle", json.dumps({"max_app_p99_ms": 1}))
        assert r[0] == 200, r
        b2 = {"name": "b2", "parent": "a1", "operations": [{"add_column": {"table": "big", "up": "v * 2",
                                                                           "column": {"name": "v2", "type": "int"}}}],
              "backfill": {"batch_rows": 1000, "max_rows_per_sec": 40000}}
        r = proxy.admin("POST", "/migrations", json.dumps(b2))
        assert r[0] == 202 and r[1]["beside"] == "a1", r
        wait_for(lambda: (beside_budget(proxy) or {}).get("starved"), 60, "the budget over b2's backfill starved",
                 detail=lambda: "%s\n%s" % (beside_budget(proxy), proxy.log()[-2000:]))
        kept = beside_budget(proxy)
        assert kept["kind"] == "absolute" and kept["engaged"] and kept["workers"] == 1, kept
        assert kept["batch_cap"] == 100 and kept["pause_ms"] >= 500, kept
        assert statuses(db) == {"a1": "active", "b2": "backfilling"}
        done = sql(db, "SELECT coalesce(sum(rows_done), 0) FROM pgtandem.backfill_progress WHERE migration = 'b2'")
        assert done[0][0] < 150000, (done, kept)
        assert "migration b2: latency budget engaged" in proxy.log(), proxy.log()[-3000:]
        r = proxy.admin("POST", "/migrations/current/throttle", json.dumps({"max_app_p99_ms": 0,
                                                                            "app_p99_budget": 0}))
        assert r[0] == 200, r
        wait_for(lambda: statuses(db).get("b2") == "active", 120, "b2's backfill finished once the limit went",
                 detail=lambda: "%s\n%s" % (beside_budget(proxy), proxy.log()[-2000:]))
        assert beside_budget(proxy) is None
    finally:
        app.stop.set()
        app.join(30)
    assert not app.errors and app.queries > 100, (app.errors, app.queries)
    assert sql(db, "SELECT count(*), count(*) FILTER (WHERE v2 = v * 2) FROM big") == [(300000, 300000)]


def test_the_proxys_own_steps_act_on_its_own_migration_with_another_in_flight_beside_it(cluster, db, proxy_factory,
                                                                                         tmp_path):
    """`a1`, the proxy's own, retypes `big.v` with a `check` its complete
    validates on the proxy's worker before the cutover; `b2`, started
    through the proxy beside it, is in flight when `a1` completes. The
    worker's engine acts on `a1` by name: with two in flight, an engine
    step that names none is refused (`name the one`)."""
    run_script(db, "CREATE TABLE big (id bigserial PRIMARY KEY, v int NOT NULL);"
                   " INSERT INTO big (v) SELECT g FROM generate_series(1, 1000) g;"
                   " CREATE TABLE other (id bigserial PRIMARY KEY, w int);")
    proxy = fleet_proxy(proxy_factory, cluster, dbname(db))
    wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
    a1 = {"name": "a1", "operations": [{"alter_column": {"table": "big", "column": "v", "type": "bigint",
                                                         "check": "v > 0"}}]}
    b2 = {"name": "b2", "parent": "a1", "operations": [{"add_column": {"table": "other",
                                                                       "column": {"name": "x", "type": "int"}}}]}
    for m in (a1, b2):
        r = pmigrate(proxy, "start", write_migration(m, str(tmp_path)))
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert statuses(db) == {"a1": "active", "b2": "active"}
    for name in ("a1", "b2"):
        r = pmigrate(proxy, "complete", name)
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    assert statuses(db) == {"a1": "completed", "b2": "completed"}
    assert sql(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'big'::regclass"
                   " AND attname = 'v'") == [("bigint",)]
    assert sql(db, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'big'::regclass AND contype = 'c'") == [(1,)]


# r2, built on a1, retypes the name a1 renames to: a1's rename moves to r2's expand
R2 = {"name": "r2", "parent": "a1", "operations": [
    {"alter_column": {"table": "users", "column": "full_name", "type": "varchar(120)", "up": "full_name",
                      "down": "full_name"}}]}
R2_OFFLINE = """
ALTER TABLE users RENAME COLUMN name TO full_name;
ALTER TABLE users ALTER COLUMN full_name TYPE varchar(120);
"""
SHAPES["r2"] = {"users": ["id", "email", "full_name"], "orders": ["id", "user_id", "amount"]}


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_a_rename_brought_forward_under_three_releases_through_the_proxy(cluster, db, proxy_factory, tmp_path,
                                                                         pool_mode):
    """a1 renames users.name to full_name on the proxy's engine; r2,
    started through the proxy beside it, retypes full_name: its expand
    renames the column in the table first, under the release from before
    a1 and a1's, which go on writing through the proxy with their prepared
    `SELECT *` of users (Postgres plans them again on the views, which
    follow the column). a1 completes with r2's release writing (its
    contract finds the rename done), then r2; every row in the final
    shape, the schema the same DDL run offline gives."""
    run_script(db, BASE)
    releases = []
    extra = []
    if pool_mode == "transaction":
        users = write_users_file(str(tmp_path / "users.json"), {"postgres": {"password": "postgres"}})
        extra = ["--auth", "scram", "--users-file", users, "--pool-mode", "transaction", "--pool-size", "6"]
    with offline_twin(cluster, BASE, R2_OFFLINE) as offline:
        try:
            proxy = fleet_proxy(proxy_factory, cluster, dbname(db), extra=extra)
            wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
            uri = proxy_uri(proxy, db)
            r = pmigrate(proxy, "start", write_migration(A1, str(tmp_path)))
            assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
            releases += [ProxyRelease(uri, None, 100000), ProxyRelease(uri, "a1", 200000)]
            for x in releases:
                x.start()
            wait_for(lambda: all(x.rounds >= 10 or x.errors for x in releases), 60, "two releases writing")
            column = "SELECT attname FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum = 2"
            assert sql(db, column) == [("name",)]
            start_through_the_proxy(db, proxy, R2, tmp_path)
            assert sql(db, column) == [("full_name",)]  # brought forward
            releases.append(ProxyRelease(uri, "r2", 300000))
            releases[-1].start()
            counts = [x.rounds for x in releases]
            wait_for(lambda: all(x.rounds >= n + 20 or x.errors for x, n in zip(releases, counts + [0])), 60,
                     "every release writing after r2's start", detail=lambda: proxy.log()[-3000:])
            for x in releases:
                assert not x.errors, (x.release, x.errors)
            with psycopg.connect(uri, autocommit=True, options="-c pgtandem.version=r2") as c:
                assert c.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
                                 " 'users'::regclass AND attname = 'full_name'").fetchall() == \
                    [("character varying(120)",)]
            retire(releases[0])
            complete_through_the_proxy(db, "a1", releases[2])
            retire(releases[1])
            complete_through_the_proxy(db, "r2", releases[2])
            retire(releases[2])
            assert statuses(db) == {"a1": "completed", "r2": "completed"}
            got = dict(sql(db, "SELECT id, full_name FROM users"))
            want = {g: "user %d" % g for g in range(1, 2001)}
            for x in releases:
                want.update(x.users)
            assert len(sql(db, "SELECT id FROM orders")) == 3000 + sum(len(x.orders) for x in releases)
            assert_as_offline(cluster, db, offline, got, want)
        finally:
            for x in releases:
                x.stop.set()



def admin_connections(proxy):
    """Connections established to the proxy's admin port (from /proc)."""
    port = "%04X" % proxy.admin_port
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, remote, state = line.split()[1:4]
                n += remote.endswith(":" + port) and state == "01"
    return n


def test_complete_with_db_right_after_the_backfill_waits_for_the_following_proxys_next_look(cluster, db,
                                                                                            proxy_factory, tmp_path):
    """A proxy serving the database follows a migration `--db` runs from its
    row, a look behind. `complete --db` right after the backfill ended goes
    through that proxy, which still says backfilling: it answered 409 "let
    the backfill finish" (found under the sanitizers by
    test_prisma_directories_and_a_long_name_declared_whole, a few hundred
    ms after `start --db`). Made certain here: the proxy is stopped
    (SIGSTOP) while `resume --db` backfills, and asked to complete the
    moment it runs again. Now it says to ask again, and the CLI does until
    its next look sees the migration active."""
    sql(db, "CREATE TABLE jobs (id int PRIMARY KEY, kind text)")
    sql(db, "INSERT INTO jobs SELECT g, 'k' || g FROM generate_series(1, 200) g")
    proxy = fleet_proxy(proxy_factory, cluster, dbname(db), lease_ms=20000)
    wait_for(lambda: live_members(proxy), what="the proxy in the fleet")
    m = write_migration({"name": "tag_jobs", "operations": [
        {"add_column": {"table": "jobs", "column": {"name": "tag", "type": "text"}, "up": "upper(kind)"}}]},
        str(tmp_path))
    r = migrate(db, "start", m, "--no-backfill")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: proxy.admin("GET", "/migrations/current")[1].get("phase") not in (None, "expanding"),
             what="the proxy following the migration past its expand")
    proxy.proc.send_signal(signal.SIGSTOP)
    try:
        r = migrate(db, "resume")
        assert r.returncode == 0, r.stdout + r.stderr
        # the request reaches the stopped proxy's admin port before it can look again
        complete = subprocess.Popen([BIN, "migrate", "complete", "--db", db], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        wait_for(lambda: admin_connections(proxy) > 0, what="complete --db connected to the stopped proxy")
    finally:
        proxy.proc.send_signal(signal.SIGCONT)
    out, err = complete.communicate(timeout=120)
    assert complete.returncode == 0, out + err + proxy.log()[-2000:]
    assert sql(db, "SELECT count(*) FROM jobs WHERE tag = upper(kind)") == [(200,)]
    with psycopg.connect(proxy_uri(proxy, db), autocommit=True) as c:
        assert c.execute("SELECT count(tag) FROM jobs").fetchone() == (200,)
