"""Several migrations in flight on separate tables (`--db`).

A team's history moves on while a migration is in flight: `a1` renames a
column of `users`, `b2` (parent `a1`) adds a computed column to `orders`,
`c3` (parent `b2`) creates `audit`. Each starts while the ones before it
are `active`; three releases write the whole time (the one from before
`a1`, the one built with `a1`, the one built with `c3`), each on its own
shape of every table, the way the proxy would route them (here each sets
its own search_path, as `--db` routes nobody). A fourth migration that
renames the column of `users` `a1` renames is refused before any DDL,
saying to complete `a1` first (one that changes other columns is built on
`a1`'s shape: test_a_migration_is_built_on_one_in_flight_that_renames_...). The
three complete out of their order of start; every row every release wrote
is then read back against a model, and the schema is the one the same
DDL run offline gives (`pg_dump --schema-only`).

The lifecycle between them: a command that names no migration is refused
while several are in flight, naming them; `rollback` of a migration with
one built on it in flight is refused naming it, and so is one whose child
completed already; the newest rolls back and leaves the others running.
With proxies serving the database they route every migration in flight
(test_flight_proxy.py).

Beside a backfill: the backfilling engine lets the engine lock go and
holds its migration's own lock, so a migration of another table starts
and completes meanwhile, while that migration's other commands, and a
proxy following it, find it taken."""
import json
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from support import (BIN, current, LEASE_MS, load_legacy, migrate, run_pgtandem, schema_dump, sql, unify, wait_for,
                     write_migration)
from support.fleet import fleet_proxy, live_members
from support.pg import dbname
from support.proxy import proxy_uri
from test_schema_fidelity import diff, leftovers, run_script

BASE = """
CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), amount int NOT NULL);
INSERT INTO users (name, email) SELECT 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO orders (user_id, amount) SELECT 1 + g % 2000, g FROM generate_series(1, 3000) g;
"""

A1 = {"name": "a1", "parent": None, "operations": [
    {"rename_column": {"table": "users", "from": "name", "to": "full_name"}}]}
B2 = {"name": "b2", "parent": "a1", "operations": [
    {"add_column": {"table": "orders", "up": "amount * 100",
                    "column": {"name": "amount_cents", "type": "bigint", "nullable": False, "default": "0"}}}],
      "backfill": {"batch_rows": 500}}
C3 = {"name": "c3", "parent": "b2", "operations": [
    {"create_table": {"table": "audit", "columns": [
        {"name": "id", "type": "bigserial", "primary_key": True},
        {"name": "what", "type": "text", "nullable": False}]}}]}
D4 = {"name": "d4", "parent": "c3", "operations": [
    {"rename_column": {"table": "users", "from": "name", "to": "display_name"}}]}

OFFLINE = """
ALTER TABLE users RENAME COLUMN name TO full_name;
ALTER TABLE orders ADD COLUMN amount_cents bigint NOT NULL DEFAULT 0;
CREATE TABLE audit (id bigserial PRIMARY KEY, what text NOT NULL);
"""

# Each release's shape of every table, as the proxy would route it: the
# new shape of the migration it declares and of each one below it, the
# old shape of the others (a schema not made yet is skipped by Postgres).
PATHS = {
    None: "pgtandem_a1_old, pgtandem_b2_old, pgtandem_c3_old, public",
    "a1": "pgtandem_a1, pgtandem_b2_old, pgtandem_c3_old, public",
    "c3": "pgtandem_a1, pgtandem_b2, pgtandem_c3, public",
}


def options(release):
    declared = "-c pgtandem.version=%s " % release if release else ""
    return declared + "-c search_path=" + PATHS[release].replace(" ", "")


class Release(threading.Thread):
    """One release's writes in a loop: new users and orders in its shape,
    renames of its own users; what it wrote is kept for the check."""

    def __init__(self, db, release, first_id):
        super().__init__(daemon=True)
        self.db, self.release, self.next_user = db, release, first_id
        self.users, self.orders, self.audit, self.errors = {}, {}, 0, []
        self.stop, self.rounds = threading.Event(), 0

    def connect(self):
        return psycopg.connect(self.db, autocommit=True, options=options(self.release))

    def before_round(self, c):
        """A check of each round before its writes (test_flight_proxy's
        releases check their shape)."""

    def run(self):
        name_col = "name" if self.release is None else "full_name"
        try:
            with self.connect() as c:
                while not self.stop.is_set():
                    self.before_round(c)
                    uid = self.next_user
                    self.next_user += 1
                    label = "%s user %d" % (self.release or "old", uid)
                    c.execute("INSERT INTO users (id, %s, email) VALUES (%%s, %%s, %%s)" % name_col,
                              (uid, label, "x%d@example.com" % uid))
                    self.users[uid] = label
                    amount = uid % 997 + 1
                    if self.release == "c3":
                        oid = c.execute("INSERT INTO orders (user_id, amount, amount_cents) VALUES (%s, %s, %s)"
                                        " RETURNING id", (uid, amount, amount * 100)).fetchone()[0]
                        c.execute("INSERT INTO audit (what) VALUES (%s)", ("order %d" % oid,))
                        self.audit += 1
                    else:
                        oid = c.execute("INSERT INTO orders (user_id, amount) VALUES (%s, %s) RETURNING id",
                                        (uid, amount)).fetchone()[0]
                    self.orders[oid] = amount
                    # an update of an older row of its own, in its own shape
                    old = uid - 5
                    if old in self.users:
                        self.users[old] += " renamed"
                        c.execute("UPDATE users SET %s = %s || ' renamed' WHERE id = %%s" % (name_col, name_col),
                                  (old,))
                    self.rounds += 1
        except Exception as e:  # reported by the test
            self.errors.append(e)


def write_json(path, m):
    path.write_text(json.dumps(m))


def start_file(db, m, tmp_path):
    r = migrate(db, "start", write_migration(m, str(tmp_path)), "--quiet")
    return r


def statuses(db):
    """{name: status}, {} before the first start made the state table."""
    if not sql(db, "SELECT to_regclass('pgtandem.backfill_progress') IS NOT NULL")[0][0]:
        return {}
    return dict(sql(db, "SELECT name, status FROM pgtandem.migrations"))


def complete_while_it_writes(db, name, release):
    """`complete name`, which must succeed, and `release` (a thread with
    rounds and errors) writing on after it."""
    rounds = release.rounds
    r = migrate(db, "complete", name)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: release.rounds >= rounds + 10 or release.errors, 60,
             "the newest release writing after %s completed" % name)


def end_all(cluster, releases, procs, offline_name):
    """A test's end, passed or not: its releases stopped, its processes
    killed, its offline twin dropped."""
    for x in releases:
        x.stop.set()
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % offline_name, check=False)


def complete_each_retiring(db, order, releases):
    """`complete` of each (name, release retired before it) in order while
    the newest release (the last) writes on; then every release ended
    without an error, after 20 rounds of writes or more."""
    for n, retired in order:
        if retired:
            retired.stop.set()
            retired.join(30)
        complete_while_it_writes(db, n, releases[-1])
    releases[-1].stop.set()
    releases[-1].join(30)
    for x in releases:
        assert not x.errors, (x.release, x.errors)
        assert x.rounds >= 20, (x.release, x.rounds)


def assert_as_offline(cluster, db, offline, got, want):
    """Every row as the model wants it (id -> values), no other, and the
    schema the same DDL run offline gives, with nothing of ours left."""
    wrong = [(i, got.get(i), w) for i, w in want.items() if got.get(i) != w]
    assert not wrong and len(got) == len(want), (len(wrong), wrong[:5], len(got), len(want))
    online_dump, offline_dump = schema_dump(cluster, db), schema_dump(cluster, offline)
    assert online_dump == offline_dump, diff(offline_dump, online_dump)
    assert leftovers(db) == []
    assert sql(db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'") == []


def test_three_migrations_on_separate_tables_in_flight_each_release_on_its_shape(cluster, db, tmp_path):
    run_script(db, BASE)
    offline_name = "fl_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % offline_name)
    offline = cluster.uri(db=offline_name)
    try:
        run_script(offline, BASE)
        run_script(offline, OFFLINE)
        releases = []
        r = start_file(db, A1, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        releases.append(Release(db, None, 100000))
        releases[-1].start()
        r = start_file(db, B2, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        releases.append(Release(db, "a1", 200000))
        releases[-1].start()
        r = start_file(db, C3, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert statuses(db) == {"a1": "active", "b2": "active", "c3": "active"}
        releases.append(Release(db, "c3", 300000))
        releases[-1].start()
        wait_for(lambda: all(x.rounds >= 20 or x.errors for x in releases), 60, "every release writing")

        # a fourth on a table in flight: refused before any DDL
        before = schema_dump(cluster, db)
        r = start_file(db, D4, tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert 'names column "name" of "users", which migration a1, in flight below d4, renames' in r.stderr, \
            r.stderr
        assert "complete a1 first" in r.stderr, r.stderr
        assert schema_dump(cluster, db) == before
        assert "d4" not in statuses(db)

        # a command that names none cannot mean one of three
        r = migrate(db, "complete")
        assert r.returncode == 2 and "3 migrations are in flight" in r.stderr, r.stdout + r.stderr
        for n in ("a1", "b2", "c3"):
            assert "%s (active)" % n in r.stderr, r.stderr
        st = migrate(db, "status")
        assert "in flight: a1 (active), b2 (active), c3 (active)" in st.stdout, st.stdout + st.stderr

        # the releases built before b2 are retired (complete's gate, with a
        # proxy); the newest keeps writing through every complete, which go
        # out of their order of start: each on its own tables
        for x in releases[:2]:
            x.stop.set()
            x.join(30)
        for n in ("b2", "c3", "a1"):
            complete_while_it_writes(db, n, releases[2])
        releases[2].stop.set()
        releases[2].join(30)
        assert statuses(db) == {"a1": "completed", "b2": "completed", "c3": "completed"}
        for x in releases:
            assert not x.errors, (x.release, x.errors)
            assert x.rounds >= 20, (x.release, x.rounds)

        # every row every release wrote, in the final shape
        users = dict(sql(db, "SELECT id, full_name FROM users"))
        for x in releases:
            for uid, label in x.users.items():
                assert users.get(uid) == label, (x.release, uid, users.get(uid), label)
        assert len(users) == 2000 + sum(len(x.users) for x in releases)
        orders = {i: (a, c) for i, a, c in sql(db, "SELECT id, amount, amount_cents FROM orders")}
        assert len(orders) == 3000 + sum(len(x.orders) for x in releases)
        wrong = [(i, a, c) for i, (a, c) in orders.items() if c != a * 100]
        assert not wrong, wrong[:10]
        for x in releases:
            for oid, amount in x.orders.items():
                assert orders[oid][0] == amount
        assert sql(db, "SELECT count(*) FROM audit")[0][0] == releases[2].audit > 0

        online_dump, offline_dump = schema_dump(cluster, db), schema_dump(cluster, offline)
        assert online_dump == offline_dump, diff(offline_dump, online_dump)
        assert leftovers(db) == []
        assert sql(db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'") == []
    finally:
        for x in locals().get("releases", []):
            x.stop.set()
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % offline_name, check=False)


def test_rollback_and_complete_follow_what_is_built_on_what(cluster, db, tmp_path):
    run_script(db, BASE)
    base = schema_dump(cluster, db)
    for m in (A1, B2):
        r = start_file(db, m, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    with_both = schema_dump(cluster, db)

    r = migrate(db, "rollback")
    assert r.returncode == 2 and "2 migrations are in flight (a1 (active), b2 (active))" in r.stderr, r.stderr
    r = migrate(db, "rollback", "a1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "migrations built on a1 are in flight (b2)" in r.stderr, r.stderr
    assert schema_dump(cluster, db) == with_both
    assert statuses(db) == {"a1": "active", "b2": "active"}

    # the newest rolls back; the one below keeps running
    r = migrate(db, "rollback", "b2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert statuses(db) == {"a1": "active", "b2": "rolled_back"}
    new_users = sql(db, "SELECT full_name FROM pgtandem_a1.users WHERE id = 7",
                    options="-c pgtandem.version=a1 -c search_path=pgtandem_a1,public")
    assert new_users == [("user 7",)]
    orders_cols = sql(db, "SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0"
                          " AND NOT attisdropped ORDER BY attnum")
    assert [c for (c,) in orders_cols] == ["id", "user_id", "amount"]

    # started again, it completes before the one it is built on
    r = start_file(db, B2, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = migrate(db, "complete", "b2")
    assert r.returncode == 0, r.stdout + r.stderr
    r = migrate(db, "rollback", "a1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "b2, built on a1, is completed already" in r.stderr, r.stderr
    assert statuses(db)["a1"] == "active"
    r = migrate(db, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert statuses(db) == {"a1": "completed", "b2": "completed"}

    # the history's end is b2, though a1 completed last
    r = start_file(db, C3, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    wrong = {"name": "c3b", "parent": "a1", "operations": [
        {"create_table": {"table": "notes", "columns": [{"name": "id", "type": "int", "primary_key": True}]}}]}
    r = start_file(db, wrong, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'it must be a migration in flight here ("c3")' in r.stderr, r.stderr
    r = migrate(db, "complete", "c3")
    assert r.returncode == 0, r.stdout + r.stderr
    r = start_file(db, wrong, tmp_path)
    assert r.returncode == 2 and 'the last migration completed here is "c3"' in r.stderr, r.stderr
    assert base != schema_dump(cluster, db)


def test_the_seeds_migration_and_one_on_another_table_in_flight(cluster, db, tmp_path):
    """checks_unify's `sql` step writes alembic_version, which Postgres's
    parser reads out of its statement: a migration of users starts beside
    it; one of checks that indexes the column checks_unify renames is
    refused, one that adds to checks starts on checks_unify's shape; the
    first two complete in reverse, then the one of checks."""
    load_legacy(db, 3000)
    run_script(db, "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);"
                   " INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 500) g;")
    r = start_file(db, unify(), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    e5 = {"name": "e5", "parent": "0003_checks_unify", "operations": [
        {"rename_column": {"table": "users", "from": "name", "to": "full_name"}}]}
    r = start_file(db, e5, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    f6 = {"name": "f6", "parent": "e5", "operations": [
        {"create_index": {"table": "checks", "name": "ix_checks_claim", "columns": ["claim"]}}]}
    before = schema_dump(cluster, db)
    r = start_file(db, f6, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'names column "claim" of "checks", which migration 0003_checks_unify, in flight below f6, renames'\
        in r.stderr, r.stderr
    assert schema_dump(cluster, db) == before
    g7 = {"name": "g7", "parent": "e5", "operations": [
        {"add_column": {"table": "checks", "up": "anon_token IS NOT NULL",
                        "column": {"name": "is_anonymous", "type": "boolean", "nullable": False, "default": "false"}}},
        {"create_index": {"table": "checks", "name": "ix_checks_created_at", "columns": ["created_at"]}}]}
    r = start_file(db, g7, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = migrate(db, "complete", "g7")
    assert r.returncode != 0 and "complete 0003_checks_unify first" in r.stderr, r.stdout + r.stderr
    r = migrate(db, "complete", "e5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT version_num FROM alembic_version") == [("9e15719c5c3c",)]
    r = migrate(db, "complete", "0003_checks_unify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT version_num FROM alembic_version") == [("b73c9aa4f0c3",)]
    assert sql(db, "SELECT count(*) FROM users WHERE full_name LIKE 'user %'") == [(500,)]
    assert sql(db, "SELECT count(*) FROM checks WHERE claim IS NOT NULL") == [(3000,)]
    r = migrate(db, "complete", "g7")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT count(*) FROM checks WHERE is_anonymous IS DISTINCT FROM (anon_token IS NOT NULL)") \
        == [(0,)]
    r = start_file(db, dict(f6, parent="g7"), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


class PathRelease(threading.Thread):
    """A release writing in its shape, routed by its own search_path (the
    table PATHS, release -> path) as the proxy would route it: what it
    wrote (rows), the errors it met, its rounds of writes so far."""
    PATHS = {}

    def __init__(self, db, release, first_id):
        super().__init__(daemon=True)
        self.db, self.release, self.next_id = db, release, first_id
        self.rows, self.errors, self.rounds = {}, [], 0
        self.stop = threading.Event()

    def options(self):
        declared = "-c pgtandem.version=%s " % self.release if self.release else ""
        return declared + "-c search_path=" + self.PATHS[self.release]


# The seeds' history as a team ships it: 0003_checks_unify (renames and
# retypes of checks, a table, an index, an `sql` step), e5 (parent 0003)
# renaming users.name, g7 (parent e5) adding to checks on 0003's shape.
SEED_E5 = {"name": "e5", "parent": "0003_checks_unify", "operations": [
    {"rename_column": {"table": "users", "from": "name", "to": "full_name"}}]}
SEED_G7 = {"name": "g7", "parent": "e5", "operations": [
    {"add_column": {"table": "checks", "up": "anon_token IS NOT NULL",
                    "column": {"name": "is_anonymous", "type": "boolean", "nullable": False, "default": "false"}}},
    {"create_index": {"table": "checks", "name": "ix_checks_created_at", "columns": ["created_at"]}}]}
SEED_OFFLINE = """
ALTER TABLE checks RENAME COLUMN claim_text TO claim;
ALTER TABLE checks RENAME COLUMN aggregation TO config_json;
ALTER TABLE checks ALTER COLUMN config_json TYPE jsonb USING config_json::jsonb;
ALTER TABLE checks RENAME COLUMN diagnostics TO counts_by_template_json;
ALTER TABLE checks ALTER COLUMN counts_by_template_json TYPE jsonb USING counts_by_template_json::jsonb;
CREATE TABLE anonymous_usage (token text PRIMARY KEY, checks_allowed integer NOT NULL DEFAULT 3,
    checks_used integer NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ix_checks_env_anon_token ON checks (env, anon_token);
ALTER TABLE users RENAME COLUMN name TO full_name;
ALTER TABLE checks ADD COLUMN is_anonymous boolean NOT NULL DEFAULT false;
CREATE INDEX ix_checks_created_at ON checks (created_at);
"""
SEED_USERS = ("CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);"
              " INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 500) g;")
SEED_PATHS = {
    None: "pgtandem_0003_checks_unify_old,pgtandem_e5_old,pgtandem_g7_old,public",
    "e5": "pgtandem_e5,pgtandem_0003_checks_unify,pgtandem_g7_old,public",
    "g7": "pgtandem_g7,pgtandem_e5,pgtandem_0003_checks_unify,public",
}
SEED_OLD = {"claim": "claim_text", "config": "aggregation", "counts": "diagnostics"}
SEED_NEW = {"claim": "claim", "config": "config_json", "counts": "counts_by_template_json"}
SEED_SHAPES = {None: {"id", "claim_text", "aggregation", "diagnostics", "env", "anon_token", "created_at"},
               "e5": {"id", "claim", "config_json", "counts_by_template_json", "env", "anon_token", "created_at"}}
SEED_SHAPES["g7"] = SEED_SHAPES["e5"] | {"is_anonymous"}


class SeedRelease(PathRelease):
    """A release of the seeds' app: checks in its shape (a claim, its
    config and counts as JSON, an anon token on one row in three), an
    update of its own older row, a prepared `SELECT *` whose columns must
    be its shape's, and a user under its name column."""
    PATHS = SEED_PATHS

    def run(self):
        opts = self.options()
        col = SEED_OLD if self.release is None else SEED_NEW
        cast = "" if self.release is None else "::jsonb"
        try:
            with psycopg.connect(self.db, autocommit=True, options=opts) as c:
                while not self.stop.is_set():
                    i = self.next_id
                    self.next_id += 1
                    row = {"claim": "%s claim %d" % (self.release or "old", i), "config": {"r": i},
                           "counts": {"t": i % 13}, "anon_token": "tok%d" % i if i % 3 == 0 else None}
                    names = [col["claim"], col["config"], col["counts"], "anon_token"]
                    values = [row["claim"], json.dumps(row["config"]), json.dumps(row["counts"]), row["anon_token"]]
                    marks = ["%s", "%s" + cast, "%s" + cast, "%s"]
                    if self.release == "g7":
                        row["is_anonymous"] = i % 2 == 0
                        names.append("is_anonymous")
                        values.append(row["is_anonymous"])
                        marks.append("%s")
                    c.execute("INSERT INTO checks (id, %s) VALUES (%%s, %s)" % (", ".join(names), ", ".join(marks)),
                              [i] + values)
                    self.rows[i] = row
                    older = self.rows.get(i - 3)
                    if older:
                        older["config"] = {"updated": i}
                        c.execute("UPDATE checks SET %s = %%s%s WHERE id = %%s" % (col["config"], cast),
                                  (json.dumps(older["config"]), i - 3))
                    cur = c.execute("SELECT * FROM checks WHERE id = %s", (i,), prepare=True)
                    seen = {d.name for d in cur.description}
                    cur.fetchall()
                    if seen != SEED_SHAPES[self.release]:
                        raise AssertionError((self.release, sorted(seen)))
                    c.execute("INSERT INTO users (id, %s) VALUES (%%s, %%s)" % ("name" if self.release is None
                                                                               else "full_name"),
                              (i, "%s user %d" % (self.release or "old", i)))
                    self.rounds += 1
        except Exception as e:  # reported by the test
            self.errors.append(e)


class ProxySeedRelease(SeedRelease):
    """The same release through a proxy: it declares its version and no
    search_path; the proxy routes it."""

    def options(self):
        return "-c pgtandem.version=%s" % self.release if self.release else ""


@pytest.mark.parametrize("through", ["own_paths", "proxy"])
def test_the_seeds_migration_with_a_second_of_checks_started_while_its_backfill_runs(cluster, db, tmp_path,
                                                                                     proxy_factory, through):
    """The seeds' migration backfills checks; e5 (users) starts beside it
    and g7 (checks, on checks_unify's shape: a column filled from
    anon_token and an index) is started meanwhile, waiting for the
    backfill below before its index and its own backfill. The release
    before them, the one built with e5 and the one built with g7 write the
    whole time, each checking its prepared `SELECT *` is its own shape;
    each migration completes in turn with the newest writing; 0 client
    errors, every row against a model, the schema against the three run
    offline. The releases set their own search_path, or (`proxy`) connect
    through a proxy of the fleet declaring only their version, and the
    completes go through its cutover."""
    load_legacy(db, 3000)
    run_script(db, SEED_USERS)
    base = {i: {"claim": cl, "config": cf, "counts": ct, "anon_token": tok} for i, cl, cf, ct, tok in sql(
        db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb, anon_token FROM checks")}
    offline_name = "fl_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % offline_name)
    offline = cluster.uri(db=offline_name)
    procs, releases = [], []
    try:
        load_legacy(offline, 10)
        run_script(offline, SEED_USERS)
        run_script(offline, SEED_OFFLINE)
        release, uri = SeedRelease, db
        if through == "proxy":
            proxy = fleet_proxy(proxy_factory, cluster, dbname(db))
            wait_for(lambda: len(live_members(proxy)) == 1, 30, "the proxy registered in the fleet")
            release, uri = ProxySeedRelease, proxy_uri(proxy, db)
        slow = unify(backfill={"batch_rows": 100, "min_rows": 100, "max_rows": 100, "max_rows_per_sec": 600})
        first = subprocess.Popen([BIN, "migrate", "start", write_migration(slow, str(tmp_path)), "--db", db],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(first)
        releases.append(release(uri, None, 100000))
        releases[-1].start()
        wait_for(lambda: backfill_started(db, first, "0003_checks_unify"), 60, "checks_unify's backfill under way")
        r = start_file(db, SEED_E5, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        releases.append(release(uri, "e5", 200000))
        releases[-1].start()
        third = subprocess.Popen([BIN, "migrate", "start", write_migration(SEED_G7, str(tmp_path)), "--db", db],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(third)
        try:
            out_first = first.communicate(timeout=180)[0]
            out_third = third.communicate(timeout=180)[0]
        except subprocess.TimeoutExpired:
            raise AssertionError(statuses(db))
        assert first.returncode == 0, out_first
        assert third.returncode == 0, out_third
        assert "waiting for" in out_third, out_third  # it did start while the backfill below ran
        assert statuses(db) == {"0003_checks_unify": "active", "e5": "active", "g7": "active"}, statuses(db)
        releases.append(release(uri, "g7", 300000))
        releases[-1].start()
        wait_for(lambda: all(x.rounds >= 20 or x.errors for x in releases), 60, "every release writing")

        r = migrate(db, "complete", "g7")
        assert r.returncode != 0 and "complete 0003_checks_unify first" in r.stderr, r.stdout + r.stderr
        complete_each_retiring(db, (("0003_checks_unify", releases[0]), ("e5", None), ("g7", releases[1])),
                               releases)

        got = {r[0]: r[1:] for r in sql(db, "SELECT id, claim, config_json, counts_by_template_json, anon_token,"
                                            " is_anonymous FROM checks")}
        want = {i: (b["claim"], b["config"], b["counts"], b["anon_token"], b["anon_token"] is not None)
                for i, b in base.items()}
        for x in releases:
            for i, w in x.rows.items():
                want[i] = (w["claim"], w["config"], w["counts"], w["anon_token"],
                           w.get("is_anonymous", w["anon_token"] is not None))
        users = {i: n for i, n in sql(db, "SELECT id, full_name FROM users WHERE id > 500")}
        assert users == {i: "%s user %d" % (x.release or "old", i) for x in releases for i in x.rows}
        assert sql(db, "SELECT version_num FROM alembic_version") == [("b73c9aa4f0c3",)]
        run_script(offline, "UPDATE alembic_version SET version_num = 'b73c9aa4f0c3'")
        assert_as_offline(cluster, db, offline, got, want)
    finally:
        end_all(cluster, releases, procs, offline_name)


def start_each(db, tmp_path, migrations):
    """BASE, then the migrations as files of one directory, started with
    `start DIR --each`, which must start each: the directory."""
    run_script(db, BASE)
    chain = tmp_path / "chain"
    chain.mkdir()
    for m in migrations:
        write_json(chain / ("%s.json" % m["name"]), m)
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    names = ", ".join(m["name"] for m in migrations)
    assert "%d migrations started, each its own: %s" % (len(migrations), names) in r.stderr, r.stderr
    return chain


def test_start_dir_each_starts_every_pending_file_as_its_own_migration(cluster, db, tmp_path):
    chain = start_each(db, tmp_path, (A1, B2, C3))
    assert statuses(db) == {"a1": "active", "b2": "active", "c3": "active"}
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 0 and "nothing to do" in r.stderr, r.stdout + r.stderr

    # one more file naming a column a migration in flight renames: refused before any DDL
    write_json(chain / "d4.json", D4)
    before = schema_dump(cluster, db)
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'names column "name" of "users", which migration a1, in flight below d4' in r.stderr, r.stderr
    assert schema_dump(cluster, db) == before and "d4" not in statuses(db)
    (chain / "d4.json").unlink()

    for n in ("c3", "a1", "b2"):
        r = migrate(db, "complete", n)
        assert r.returncode == 0, r.stdout + r.stderr
    r = migrate(db, "start", str(chain), "--quiet")
    assert r.returncode == 0 and "nothing to do" in r.stderr, r.stdout + r.stderr
    r = migrate(db, "start", write_migration(A1, str(tmp_path)), "--each")
    assert r.returncode == 2 and "--each is for a directory" in r.stderr, r.stdout + r.stderr
    # through a proxy the files start one by one (each after the first beside the ones in flight)
    r = run_pgtandem(["migrate", "start", str(chain), "--each", "--proxy", "http://127.0.0.1:1"])
    assert r.returncode == 2 and "--each is for --db; through a proxy, start the files one by one" in r.stderr, \
        r.stdout + r.stderr


def test_no_migration_is_built_on_one_that_may_retype_a_column_of_its_table_in_place(cluster, db, tmp_path):
    """q1 widens users.label (varchar(40) to varchar(200), no up or down:
    its complete retypes it in place). Postgres refuses ALTER COLUMN ...
    TYPE on a column a view reads, and a migration built on q1's shape
    would have views reading it: q2 on users is refused before any DDL,
    and q1 completes."""
    run_script(db, "CREATE TABLE users (id bigserial PRIMARY KEY, label varchar(40), email text);"
                   " INSERT INTO users (label, email) SELECT 'l' || g, 'e' || g FROM generate_series(1, 100) g;")
    q1 = {"name": "q1", "parent": None, "operations": [
        {"alter_column": {"table": "users", "column": "label", "type": "varchar(200)"}}]}
    r = start_file(db, q1, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    before = schema_dump(cluster, db)
    q2 = {"name": "q2", "parent": "q1", "operations": [
        {"add_column": {"table": "users", "column": {"name": "tier", "type": "int"}}}]}
    r = start_file(db, q2, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'migration q1, in flight below q2, retypes column "label" of "users" without up or down' in r.stderr, \
        r.stderr
    assert schema_dump(cluster, db) == before and statuses(db) == {"q1": "active"}
    r = migrate(db, "complete", "q1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass"
                   " AND attname = 'label'") == [("character varying(200)",)]


def test_start_dir_each_starts_a_history_whose_files_change_other_columns_of_one_table(cluster, db, tmp_path):
    """`start DIR --each` of p1 (a rename and a retype of users), p2 (on
    p1's shape, other columns) and p3 (a retype of the name p1 renames to,
    which brings p1's rename forward to p3's expand): each its own
    migration; with a file that names the column p1 retypes instead, the
    whole directory is refused before any DDL, read from the files."""
    run_script(db, SHAPE_BASE)
    chain = tmp_path / "shapes"
    chain.mkdir()
    write_json(chain / "p1.json", SHAPE_P1)
    write_json(chain / "p2.json", SHAPE_P2)
    p3 = {"name": "p3", "parent": "p2", "operations": [
        {"alter_column": {"table": "users", "column": "email", "type": "varchar(400)"}}]}
    write_json(chain / "p3.json", p3)
    before = schema_dump(cluster, db)
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'operations[0].alter_column of p3 names column "email" of public.users, which p1 renames, retypes' \
        ' or drops' in r.stderr, r.stderr
    assert schema_dump(cluster, db) == before and statuses(db) == {}
    p3["operations"][0]["alter_column"] = {"table": "users", "column": "full_name", "type": "varchar(200)",
                                           "up": "full_name", "down": "full_name"}
    write_json(chain / "p3.json", p3)
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 migrations started, each its own: p1, p2, p3" in r.stderr, r.stderr
    assert shape_columns(db, "p2") == SHAPE_COLUMNS["p2"], shape_columns(db, "p2")
    assert sql(db, "SELECT attname FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum = 2") == \
        [("full_name",)]  # p1's rename, brought forward to p3's expand
    for n in ("p1", "p2", "p3"):
        r = migrate(db, "complete", n)
        assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT count(*) FROM users WHERE tier IS DISTINCT FROM (id % 3)::int OR email <> lower(email)"
                   " OR remark IS NULL OR full_name IS NULL") == [(0,)]
    assert sql(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass"
                   " AND attname = 'full_name'") == [("character varying(200)",)]


def test_a_foreign_key_carried_to_a_retyped_column_is_a_table_touched(cluster, db, tmp_path):
    """w1 retypes u2.id, which o2's foreign key references: its plan moves
    that key (an ALTER TABLE of o2), so o2 is one of its tables, though no
    operation of it names o2. Both orders are refused before any DDL."""
    run_script(db, "CREATE TABLE u2 (id int PRIMARY KEY, name text);"
                   " CREATE TABLE o2 (id int PRIMARY KEY, uid int REFERENCES u2(id), label text);"
                   " INSERT INTO u2 SELECT g, 'n' || g FROM generate_series(1, 100) g;"
                   " INSERT INTO o2 SELECT g, g FROM generate_series(1, 100) g;")
    w1 = {"name": "w1", "parent": None, "operations": [
        {"alter_column": {"table": "u2", "column": "id", "type": "bigint", "up": "id::bigint", "down": "id::int"}}]}
    # a rename: x2 does more to o2 than add, so nothing is built on it there
    x2 = {"name": "x2", "parent": None, "operations": [
        {"rename_column": {"table": "o2", "from": "label", "to": "title"}}]}
    r = start_file(db, x2, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    before = schema_dump(cluster, db)
    w1["parent"] = "x2"
    r = start_file(db, w1, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "w1 changes public.o2, which migration x2 in flight changes too" in r.stderr, r.stderr
    assert schema_dump(cluster, db) == before and "w1" not in statuses(db)
    r = migrate(db, "rollback", "x2")
    assert r.returncode == 0, r.stdout + r.stderr

    w1["parent"] = None
    r = start_file(db, w1, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    before = schema_dump(cluster, db)
    x2["name"], x2["parent"] = "x3", "w1"
    r = start_file(db, x2, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "x3 changes public.o2, which migration w1 in flight changes too" in r.stderr, r.stderr
    assert schema_dump(cluster, db) == before


SLOW_A1 = {"name": "a1", "parent": None, "operations": [
    {"add_column": {"table": "users", "up": "lower(name)", "column": {"name": "name_lower", "type": "text"}}}],
    "backfill": {"batch_rows": 50, "min_rows": 50, "max_rows": 50, "max_rows_per_sec": 200}}


def backfill_started(db, done=None, name="a1"):
    """Whether the backfill of `name` has checkpointed a batch (or `done`,
    a process, ended)."""
    return (done is not None and done.poll() is not None) or name in statuses(db) and sql(
        db, "SELECT coalesce(sum(rows_done), 0) FROM pgtandem.backfill_progress WHERE migration = %s",
        (name,))[0][0] > 0


def start_a1_paused_in_its_backfill(db, tmp_path):
    """`migrate start` of SLOW_A1 with --db in the background, its backfill
    paused once under way: the process, still running."""
    first = subprocess.Popen([BIN, "migrate", "start", write_migration(SLOW_A1, str(tmp_path)), "--db", db],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: backfill_started(db, first), 60, "a1's backfill under way")
    r = migrate(db, "pause", "a1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert first.poll() is None, first.communicate()[0]
    return first


def test_a_migration_of_another_table_starts_and_completes_while_the_first_one_backfills(cluster, db, tmp_path):
    """`--db` holds the engine lock for a start's expand, not for the hours
    of its backfill: the backfilling engine holds its migration's own lock
    instead, and a migration of another table starts, backfills and
    completes beside it (before, it was refused: another engine held the
    lock). Whoever would work on the backfilling one finds it taken, named
    with its engine's pid. The backfill is held at a batch by `pause`, so
    nothing here depends on how fast it runs; an old release writes both
    tables the whole time."""
    run_script(db, BASE)
    first = start_a1_paused_in_its_backfill(db, tmp_path)
    try:
        old = Release(db, None, 100000)
        old.start()
        b2 = dict(B2, parent="a1")
        r = start_file(db, b2, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert statuses(db) == {"a1": "backfilling", "b2": "active"}, statuses(db)
        for args in (("resume", "a1"), ("rollback", "a1")):
            r = migrate(db, *args)
            assert r.returncode != 0, r.stdout + r.stderr
            assert "the backfill of a1 runs in the engine of backend pid" in r.stderr, r.stderr
        # the old release is retired before the completes (with a proxy,
        # complete's gate waits for that)
        wait_for(lambda: old.rounds >= 20 or old.errors, 60, "the old release writing")
        old.stop.set()
        old.join(30)
        r = migrate(db, "complete", "b2")
        assert r.returncode == 0, r.stdout + r.stderr
        assert first.poll() is None
        r = migrate(db, "unpause", "a1")
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            out = first.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            first.kill()
            raise AssertionError((first.communicate()[0], sql(db, "SELECT pid, locktype, classid, objid, objsubid, granted FROM pg_locks WHERE locktype = 'advisory'"), sql(db, "SELECT * FROM pgtandem.backfill_progress")))
        assert first.returncode == 0, out
        assert "the engine lock is free for migrations of other tables" in out, out
        r = migrate(db, "complete", "a1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert not old.errors, old.errors
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert statuses(db) == {"a1": "completed", "b2": "completed"}
    users = dict(sql(db, "SELECT id, name FROM users"))
    assert len(users) == 2000 + len(old.users)
    for uid, label in old.users.items():
        assert users[uid] == label, (uid, users[uid], label)
    assert sql(db, "SELECT count(*) FROM users WHERE name_lower IS DISTINCT FROM lower(name)")[0][0] == 0
    orders = {i: (a, c) for i, a, c in sql(db, "SELECT id, amount, amount_cents FROM orders")}
    assert len(orders) == 3000 + len(old.orders)
    assert not [(i, a, c) for i, (a, c) in orders.items() if c != a * 100]


def test_a_proxy_does_not_take_over_a_backfill_a_direct_engine_runs(cluster, db, proxy_factory, tmp_path):
    """The direct engine lets go of the engine lock while it backfills; a
    proxy following the migration takes a backfill over when that lock is
    free and the status has not changed for two leases (its engine died).
    Here the engine is alive, its backfill held by `pause` for more than
    two leases: the proxy keeps following, because the migration's own lock
    is taken; once the engine is killed, the proxy finishes the backfill."""
    run_script(db, BASE)
    name = db.rsplit("/", 1)[1].split("?")[0]
    p = fleet_proxy(proxy_factory, cluster, name)
    wait_for(lambda: len(live_members(p)) == 1, 30, "the proxy registered in the fleet")
    first = start_a1_paused_in_its_backfill(db, tmp_path)
    try:
        wait_for(lambda: current(p).get("following") is True, 30, "the proxy following a1")
        # a follower takes over a backfill whose status is two leases old
        # when the engine lock is free, which it is: once the status is
        # three leases old (a lease of polls past due) a follower that
        # could would have taken it (and a takeover is not undone)
        wait_for(lambda: sql(db, "SELECT extract(epoch FROM now() - updated_at) * 1000 FROM pgtandem.migrations"
                                 " WHERE name = 'a1'")[0][0] >= 3 * LEASE_MS, 60, "a1's status three leases old")
        cur = current(p)
        assert cur.get("following") is True and cur.get("phase") == "backfilling", cur
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    # it takes the backfill over as it was left: paused, until `unpause`
    wait_for(lambda: current(p).get("following") is False, 30, "the proxy taking the backfill over",
             detail=lambda: current(p))
    r = migrate(db, "unpause", "a1")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: current(p).get("phase") == "active", 120, "the proxy finishing a1's backfill",
             detail=lambda: current(p))
    assert sql(db, "SELECT count(*) FROM users WHERE name_lower IS DISTINCT FROM lower(name)")[0][0] == 0


def test_a_proxy_backfill_paused_and_unpaused_directly(cluster, db, proxy_factory, tmp_path):
    """`migrate pause --db` sets the switch in the checkpoint rows, which a
    proxy's backfill reads from each batch's answer. Once paused it ran no
    batch, so it never read `unpause`: the backfill stayed paused until the
    proxy restarted (found by the takeover test above). It reads the switch
    while it holds now."""
    run_script(db, BASE)
    name = db.rsplit("/", 1)[1].split("?")[0]
    p = fleet_proxy(proxy_factory, cluster, name)
    # `start --proxy` answers once the migration is active: in the background
    starting = subprocess.Popen([BIN, "migrate", "start", write_migration(SLOW_A1, str(tmp_path)), "--proxy",
                                 "http://127.0.0.1:%d" % p.admin_port], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: backfill_started(db), 60, "a1's backfill under way")
    r = migrate(db, "pause", "a1")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: (current(p).get("backfill") or {}).get("throttle") == "paused by operator", 30,
             "the proxy's backfill paused", detail=lambda: (current(p).get("backfill"), sql(
                 db, "SELECT migration, paused, done, rows_done, updated_at FROM pgtandem.backfill_progress")))
    r = migrate(db, "unpause", "a1")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: current(p).get("phase") == "active", 60, "the proxy's backfill going on to its end",
             detail=lambda: current(p).get("backfill"))
    out = starting.communicate(timeout=60)[0]
    assert starting.returncode == 0, out
    assert sql(db, "SELECT count(*) FROM users WHERE name_lower IS DISTINCT FROM lower(name)")[0][0] == 0


def test_backfills_of_two_migrations_run_at_once_with_workers(cluster, db, tmp_path):
    """A backfill's extra workers hold a lock shared that the next engine
    takes exclusive before its first batch (so two batches of one key range
    never overlap across a restart). It was one lock for every migration:
    beside a1's two workers, b2's backfill waited for a1's to end. It is
    one per migration now."""
    run_script(db, BASE + "CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL);"
                          "INSERT INTO events (kind) SELECT 'kind ' || g FROM generate_series(1, 200000) g;")
    big = {"name": "a1", "parent": None, "operations": [
        {"add_column": {"table": "events", "up": "upper(kind)", "column": {"name": "kind_upper", "type": "text"}}}],
        "backfill": {"batch_rows": 100, "min_rows": 100, "max_rows": 100, "workers": 2}}   # a cap would run one
    first = subprocess.Popen([BIN, "migrate", "start", write_migration(big, str(tmp_path)), "--db", db],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # its second worker is connected, holding a1's workers lock
        wait_for(lambda: first.poll() is not None or sql(
            db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'"
                " AND l.mode = 'ShareLock' AND l.granted AND a.application_name = 'pgtandem-migrate'")[0][0] > 0,
            60, "a1's second backfill worker")
        r = migrate(db, "pause", "a1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert first.poll() is None, first.communicate()[0]
        r = migrate(db, "start", write_migration(B2, str(tmp_path)), timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert statuses(db) == {"a1": "backfilling", "b2": "active"}, statuses(db)
        r = migrate(db, "complete", "b2")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        first.kill()
        first.wait()
    orders = sql(db, "SELECT count(*), count(*) FILTER (WHERE amount_cents = amount * 100) FROM orders")[0]
    assert orders == (3000, 3000), orders


def migrate_until_it_says(db, args, procs, line, what, timeout=60):
    """`pgtandem migrate ARGS --db DB` in the background (added to procs)
    until it logs `line`, still running: (the process, the lines it said,
    the thread that goes on reading them)."""
    lines = []
    p = subprocess.Popen([BIN, "migrate"] + args + ["--db", db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    procs.append(p)
    reading = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
    reading.start()
    wait_for(lambda: any(line in ln for ln in lines) or p.poll() is not None, timeout, what)
    assert p.poll() is None, "".join(lines)
    return p, lines, reading


def test_a_start_waits_while_another_migrate_holds_the_engine_lock(cluster, db, tmp_path):
    """The engine lock is held for seconds by a start's expand, a complete,
    a rollback or the validations that end a backfill. A `--db` start that
    finds another `pgtandem migrate` holding it waits for it (--engine-wait,
    60 s by default) instead of being refused; one that finds anybody else
    holding it (a proxy's engine, any session) is refused at once, naming
    the holder, and so is one whose wait runs out. Here `complete a1` holds
    the lock while its contract waits behind a reader of `users`, b2's start
    waits, and runs once the reader ends and the complete commits."""
    run_script(db, BASE)
    r = start_file(db, A1, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    b2 = write_migration(dict(B2, parent="a1"), str(tmp_path))
    reader = psycopg.connect(db)
    reader.execute("SELECT count(*) FROM users")  # its transaction holds users' AccessShareLock
    complete = subprocess.Popen([BIN, "migrate", "complete", "a1", "--force", "--retries", "1000", "--db", db],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    starts = []
    try:
        wait_for(lambda: sql(db, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                                 " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (7020637716434665572"
                                 " & 4294967295)::oid AND a.application_name = 'pgtandem-migrate'")[0][0] == 1,
                 30, "complete a1 holding the engine lock")
        # a short wait runs out: refused, naming the holder, nothing started
        t0 = time.monotonic()
        r = migrate(db, "start", b2, "--quiet", "--engine-wait", "1")
        assert r.returncode != 0 and "another pgtandem engine is working on this database" in r.stderr, r.stderr
        assert "application_name 'pgtandem-migrate'" in r.stderr and "past the wait for it" in r.stderr, r.stderr
        assert time.monotonic() - t0 >= 1.0
        assert statuses(db) == {"a1": "active"}, statuses(db)
        # the default wait: b2's start waits, saying for whom
        start, lines, reading = migrate_until_it_says(db, ["start", b2, "--quiet"], starts,
                                                      "waiting for the engine lock: pgtandem migrate (backend pid",
                                                      "b2's start waiting for the engine lock")
        assert statuses(db) == {"a1": "active"}, statuses(db)
        reader.rollback()
        assert complete.wait(60) == 0, complete.communicate()[0]
        assert start.wait(60) == 0, "".join(lines)
        reading.join(10)
        assert statuses(db) == {"a1": "completed", "b2": "active"}, statuses(db)
    finally:
        reader.close()
        for p in [complete] + starts:
            if p.poll() is None:
                p.kill()
                p.wait()
    # anybody else holding it (here a session named like a proxy's): refused at once
    holder = psycopg.connect(db, autocommit=True, application_name="pgtandem engine")
    try:
        holder.execute("SELECT pg_advisory_lock(7020637716434665572)")
        t0 = time.monotonic()
        r = migrate(db, "complete", "b2")
        assert r.returncode != 0 and "application_name 'pgtandem engine'" in r.stderr, r.stderr
        assert "past the wait" not in r.stderr and time.monotonic() - t0 < 30, r.stderr
        assert statuses(db) == {"a1": "completed", "b2": "active"}, statuses(db)
    finally:
        holder.close()
    r = migrate(db, "complete", "b2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT count(*) FROM orders WHERE amount_cents IS DISTINCT FROM amount * 100")[0][0] == 0
    assert sql(db, "SELECT count(*) FROM users WHERE full_name IS NULL")[0][0] == 0


# A chain on one table: z1 adds users.verified (filled from email), y2
# (parent z1) adds users.display, filled from z1's verified, x3 (parent y2)
# indexes it. Each only adds, so the next one builds on its shape. Named
# against the alphabet: by name alone y2's trigger would fire before z1's.
CHAIN_A1 = {"name": "z1", "parent": None, "operations": [
    {"add_column": {"table": "users", "up": "coalesce(email LIKE '%@example.com', false)",
                    "column": {"name": "verified", "type": "boolean", "nullable": False, "default": "false"}}}],
    "backfill": {"batch_rows": 50, "min_rows": 50, "max_rows": 50, "max_rows_per_sec": 400}}
CHAIN_B2 = {"name": "y2", "parent": "z1", "operations": [
    {"add_column": {"table": "users", "up": "CASE WHEN verified THEN 'v:' || name ELSE name END",
                    "column": {"name": "display", "type": "text"}}}],
    "backfill": {"batch_rows": 200}}
CHAIN_C3 = {"name": "x3", "parent": "y2", "operations": [
    {"create_index": {"table": "users", "name": "users_display_idx", "columns": ["display"]}}]}
CHAIN_OFFLINE = """
ALTER TABLE users ADD COLUMN verified boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN display text;
CREATE INDEX users_display_idx ON users (display);
"""
# on one table the newest shape comes first: a release's path holds the
# new shapes of its migration and those below it newest first, then the
# old shapes of the others oldest first
CHAIN_PATHS = {
    None: "pgtandem_z1_old,pgtandem_y2_old,pgtandem_x3_old,public",
    "z1": "pgtandem_z1,pgtandem_y2_old,pgtandem_x3_old,public",
    "y2": "pgtandem_y2,pgtandem_z1,pgtandem_x3_old,public",
}


def chain_verified(email):
    return email.endswith("@example.com")


class ChainRelease(PathRelease):
    """A release writing users in its shape of the chain: inserts, and
    renames of its own older rows; the newer ones write the columns their
    shape has. What it wrote is kept for the model."""
    PATHS = CHAIN_PATHS

    def run(self):
        opts = self.options()
        try:
            with psycopg.connect(self.db, autocommit=True, options=opts) as c:
                while not self.stop.is_set():
                    i = self.next_id
                    self.next_id += 1
                    row = {"name": "%s %d" % (self.release or "old", i),
                           "email": "r%d@%s" % (i, "example.com" if i % 3 else "other.org")}
                    if self.release:
                        row["verified"] = i % 2 == 0  # its own say, whatever the email
                    if self.release == "y2":
                        row["display"] = "y2 says %d" % i
                    cols = sorted(row)
                    c.execute("INSERT INTO users (id, %s) VALUES (%%s, %s)" % (", ".join(cols), ", ".join(["%s"] * len(cols))),
                              [i] + [row[k] for k in cols])
                    self.rows[i] = row
                    old = self.rows.get(i - 4) if i % 2 == 0 else None  # half of its rows stay as inserted
                    if old:
                        old["name"] += " renamed"
                        if self.release == "y2":
                            old["display"] += " again"
                            c.execute("UPDATE users SET name = %s, display = %s WHERE id = %s",
                                      (old["name"], old["display"], i - 4))
                        else:
                            c.execute("UPDATE users SET name = %s WHERE id = %s", (old["name"], i - 4))
                    self.rounds += 1
        except Exception as e:  # reported by the test
            self.errors.append(e)


def test_a_chain_of_migrations_on_one_table_in_flight_each_release_on_its_shape(cluster, db, tmp_path):
    """Three migrations of `users` in flight at once, each built on the one
    before, which only adds: z1's backfill is under way (held by `pause`)
    when y2 starts on its shape; y2 expands at once, its backfill waits for
    z1's (y2's `up` reads the column z1 fills); x3, an index of what y2
    fills, waits for both backfills before its expand. Three
    releases write the whole time, each in its own shape; y2's triggers
    fire after z1's, so an old release's row gets z1's verified and then
    y2's display from it. complete goes oldest first (y2 before z1 is
    refused), z1 does not roll back under y2. Every row of every release is
    checked against a model, and the schema is the one the same DDL run
    offline gives."""
    run_script(db, BASE)
    offline_name = "fl_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % offline_name)
    offline = cluster.uri(db=offline_name)
    procs, releases = [], []
    try:
        run_script(offline, BASE)
        run_script(offline, CHAIN_OFFLINE)
        first = subprocess.Popen([BIN, "migrate", "start", write_migration(CHAIN_A1, str(tmp_path)), "--db", db],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(first)
        wait_for(lambda: backfill_started(db, first, "z1"), 60, "z1's backfill under way")
        r = migrate(db, "pause", "z1")
        assert r.returncode == 0, r.stdout + r.stderr
        for rel, first_id in ((None, 100000), ("z1", 200000)):
            releases.append(ChainRelease(db, rel, first_id))
            releases[-1].start()

        second, lines, reading = migrate_until_it_says(db, ["start", write_migration(CHAIN_B2, str(tmp_path))],
                                                       procs, "waiting for the backfill of z1 to end first",
                                                       "y2 expanded, its backfill waiting for z1's")
        assert statuses(db) == {"z1": "backfilling", "y2": "backfilling"}, statuses(db)
        assert sql(db, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname LIKE"
                       " 'pgtandem%' ORDER BY tgname") == [("pgtandem_tg000_z1",), ("pgtandem_tga000_y2",)]
        releases.append(ChainRelease(db, "y2", 300000))
        releases[-1].start()
        # x3 indexes what y2 fills: it expands once the backfills below it end
        third, said, _ = migrate_until_it_says(
            db, ["start", write_migration(CHAIN_C3, str(tmp_path))], procs,
            "x3 indexes public.users, which z1 is still backfilling: waiting for that backfill to end before the expand",
            "x3 waiting to build its index")
        assert "x3" not in statuses(db) and not sql(db, "SELECT to_regclass('users_display_idx')")[0][0]
        wait_for(lambda: all(x.rounds >= 20 or x.errors for x in releases), 60, "every release writing")

        r = migrate(db, "unpause", "z1")
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            out = first.communicate(timeout=120)[0]
            second.wait(120)
            third.wait(120)
        except subprocess.TimeoutExpired:
            raise AssertionError(("".join(lines), "".join(said), statuses(db)))
        reading.join(10)
        assert first.returncode == 0, out
        assert second.returncode == 0, "".join(lines)
        assert third.returncode == 0, "".join(said)
        assert statuses(db) == {"z1": "active", "y2": "active", "x3": "active"}, statuses(db)

        # the order the chain says: complete oldest first, roll back newest first
        r = migrate(db, "complete", "y2")
        assert r.returncode != 0 and "complete z1 first" in r.stderr, r.stdout + r.stderr
        r = migrate(db, "rollback", "z1")
        assert r.returncode != 0 and "migrations built on z1 are in flight" in r.stderr, r.stdout + r.stderr
        # the releases go as their migrations complete; the newest writes on
        complete_each_retiring(db, (("z1", releases[0]), ("y2", releases[1]), ("x3", None)), releases)

        # the model: what each release wrote, what the triggers and the
        # backfills give the columns its shape does not have
        got = {i: (n, e, v, d) for i, n, e, v, d in sql(db, "SELECT id, name, email, verified, display FROM users")}
        want = {}
        for i, n, e in sql(offline, "SELECT id, name, email FROM users"):
            v = chain_verified(e)
            want[i] = (n, e, v, ("v:" + n) if v else n)
        for x in releases:
            for i, row in x.rows.items():
                v = row.get("verified", chain_verified(row["email"]))
                d = row.get("display", ("v:" + row["name"]) if v else row["name"])
                want[i] = (row["name"], row["email"], v, d)
        assert_as_offline(cluster, db, offline, got, want)
    finally:
        end_all(cluster, releases, procs, offline_name)


# A chain on one table whose first migration renames and retypes: p1
# renames users.name and rewrites email (lower case, into a second column
# until its complete); p2 (parent p1), on p1's shape of users, adds a tier
# filled from id and an index of it, retypes score and renames note.
SHAPE_BASE = """
CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, email text, score int, note text);
INSERT INTO users (name, email, score, note)
SELECT 'user ' || g, 'U' || g || '@Example.COM', g, 'n' || g FROM generate_series(1, 2000) g;
"""
SHAPE_P1 = {"name": "p1", "parent": None, "operations": [
    {"rename_column": {"table": "users", "from": "name", "to": "full_name"}},
    {"alter_column": {"table": "users", "column": "email", "type": "varchar(320)", "up": "lower(email)",
                      "down": "email"}}],
    "backfill": {"batch_rows": 500}}
SHAPE_P2 = {"name": "p2", "parent": "p1", "operations": [
    {"add_column": {"table": "users", "up": "(id % 3)::int",
                    "column": {"name": "tier", "type": "int", "nullable": False, "default": "0"}}},
    {"create_index": {"table": "users", "name": "users_tier_idx", "columns": ["tier"]}},
    {"alter_column": {"table": "users", "column": "score", "type": "bigint", "up": "score::bigint",
                      "down": "score::int"}},
    {"rename_column": {"table": "users", "from": "note", "to": "remark"}}],
    "backfill": {"batch_rows": 500}}
SHAPE_OFFLINE = """
ALTER TABLE users RENAME COLUMN name TO full_name;
ALTER TABLE users ALTER COLUMN email TYPE varchar(320);
ALTER TABLE users ADD COLUMN tier int NOT NULL DEFAULT 0;
CREATE INDEX users_tier_idx ON users (tier);
ALTER TABLE users ALTER COLUMN score TYPE bigint;
ALTER TABLE users RENAME COLUMN note TO remark;
"""
SHAPE_PATHS = {
    None: "pgtandem_p1_old,pgtandem_p2_old,public",
    "p1": "pgtandem_p1,pgtandem_p2_old,public",
    "p2": "pgtandem_p2,pgtandem_p1,public",
}
SHAPE_COLUMNS = {None: {"id", "name", "email", "score", "note"}, "p1": {"id", "full_name", "email", "score", "note"},
                 "p2": {"id", "full_name", "email", "score", "remark", "tier"}}


class ShapeRelease(PathRelease):
    """A release writing users in its shape of p1 and p2: inserts with an
    email in mixed case, renames of its own older rows; what it wrote is
    kept for the model."""
    PATHS = SHAPE_PATHS

    def run(self):
        opts = self.options()
        name = "name" if self.release is None else "full_name"
        try:
            with psycopg.connect(self.db, autocommit=True, options=opts) as c:
                while not self.stop.is_set():
                    i = self.next_id
                    self.next_id += 1
                    row = {name: "%s %d" % (self.release or "old", i), "email": "R%d@Mixed.Case" % i,
                           "score": i % 1000}
                    if self.release == "p2":
                        row.update(tier=i % 7, remark="p2 says %d" % i)
                    else:
                        row["note"] = "%s says %d" % (self.release or "old", i)
                    cols = sorted(row)
                    c.execute("INSERT INTO users (id, %s) VALUES (%%s, %s)" % (", ".join(cols), ", ".join(["%s"] * len(cols))),
                              [i] + [row[k] for k in cols])
                    self.rows[i] = row
                    old = self.rows.get(i - 4) if i % 2 == 0 else None
                    if old:
                        old[name] += " renamed"
                        c.execute("UPDATE users SET %s = %%s WHERE id = %%s" % name, (old[name], i - 4))
                    self.rounds += 1
        except Exception as e:  # reported by the test
            self.errors.append(e)


def shape_columns(db, release):
    """The columns a release's `SELECT *` of users gets."""
    opts = ("-c pgtandem.version=%s " % release if release else "") + "-c search_path=" + SHAPE_PATHS[release]
    with psycopg.connect(db, autocommit=True, options=opts) as c:
        return {d.name for d in c.execute("SELECT * FROM users LIMIT 0").description}


def test_a_migration_is_built_on_one_in_flight_that_renames_and_retypes_other_columns_of_its_table(cluster, db,
                                                                                                  tmp_path):
    """p1 renames users.name to full_name and retypes email (lower case, a
    second column until its complete); p2, built on p1 while p1 is in
    flight, adds tier and indexes it, retypes score and renames note, on
    p1's shape: its views show full_name and p1's email, and hide what p1
    hides. Three releases write the whole time (the one before p1, p1's,
    p2's), each reading exactly its own shape; p2 reading or naming a column
    p1 changes, or doing more than column changes to users, is refused
    before any DDL, saying why. p1 completes (renaming and dropping in the
    catalog under p2's views and triggers), then p2; every row is checked
    against a model, the schema against the same DDL run offline."""
    run_script(db, SHAPE_BASE)
    offline_name = "fl_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % offline_name)
    offline = cluster.uri(db=offline_name)
    releases = []
    try:
        run_script(offline, SHAPE_BASE)
        run_script(offline, SHAPE_OFFLINE)
        r = start_file(db, SHAPE_P1, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        for rel, first_id in ((None, 100000), ("p1", 200000)):
            releases.append(ShapeRelease(db, rel, first_id))
            releases[-1].start()
        wait_for(lambda: all(x.rounds >= 10 or x.errors for x in releases), 60, "two releases writing")

        # refused before any DDL: naming what p1 changes, doing more than add
        before = schema_dump(cluster, db)
        refusals = (
            ({"add_column": {"table": "users", "up": "upper(name)", "column": {"name": "shout", "type": "text"}}},
             'names column "name" of "users", which migration p1, in flight below p3, renames, retypes or drops'),
            ({"create_index": {"table": "users", "name": "users_email_idx", "columns": ["email"]}},
             'names column "email" of "users", which migration p1'),
            ({"add_column": {"table": "users", "up": "row_to_json(users)::text",
                             "column": {"name": "snap", "type": "text"}}},
             'reads a whole row of "users"'),
            ({"create_constraint": {"table": "users", "type": "check", "check": "score > 0"}},
             "migration p1, in flight below p3, changes \"users\": a migration built on it may only add, rename,"
             " retype or drop columns of that table"),
        )
        for op, said in refusals:
            r = start_file(db, {"name": "p3", "parent": "p1", "operations": [op]}, tmp_path)
            assert r.returncode == 2 and said in r.stderr, (op, r.stdout + r.stderr)
        assert schema_dump(cluster, db) == before and statuses(db) == {"p1": "active"}

        r = start_file(db, SHAPE_P2, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert statuses(db) == {"p1": "active", "p2": "active"}, statuses(db)
        releases.append(ShapeRelease(db, "p2", 300000))
        releases[-1].start()
        for rel, cols in SHAPE_COLUMNS.items():
            assert shape_columns(db, rel) == cols, (rel, shape_columns(db, rel))
        assert sql(db, "SELECT table_schema, data_type FROM information_schema.columns WHERE table_name = 'users'"
                       " AND column_name = 'score' AND table_schema LIKE 'pgtandem\\_p_' ORDER BY 1") == \
            [("pgtandem_p1", "integer"), ("pgtandem_p2", "bigint")]
        wait_for(lambda: releases[2].rounds >= 20 or releases[2].errors, 60, "p2's release writing")

        r = migrate(db, "complete", "p2")
        assert r.returncode != 0 and "complete p1 first" in r.stderr, r.stdout + r.stderr
        releases[0].stop.set()
        releases[0].join(30)
        # p1's contract renames and drops under p2's views and triggers
        complete_while_it_writes(db, "p1", releases[2])
        assert releases[1].rounds and not releases[1].errors, releases[1].errors
        for rel in ("p1", "p2"):
            assert shape_columns(db, rel) == SHAPE_COLUMNS[rel], (rel, shape_columns(db, rel))
        rounds = releases[1].rounds
        wait_for(lambda: releases[1].rounds >= rounds + 10 or releases[1].errors, 60, "p1's release after p1")
        releases[1].stop.set()
        releases[1].join(30)
        complete_while_it_writes(db, "p2", releases[2])
        releases[2].stop.set()
        releases[2].join(30)
        for x in releases:
            assert not x.errors, (x.release, x.errors)
            assert x.rounds >= 10, (x.release, x.rounds)

        # the model: p1's new shape lower-cases what the old release wrote
        # and keeps what its own and p2's wrote; tier is p2's, else id % 3
        got = {r[0]: r[1:] for r in sql(db, "SELECT id, full_name, email, tier, score, remark FROM users")}
        want = {i: ("user %d" % i, "u%d@example.com" % i, i % 3, i, "n%d" % i) for i in range(1, 2001)}
        for x in releases:
            for i, row in x.rows.items():
                name = row.get("name", row.get("full_name"))
                email = row["email"].lower() if x.release is None else row["email"]
                want[i] = (name, email, row.get("tier", i % 3), row["score"], row.get("remark", row.get("note")))
        assert_as_offline(cluster, db, offline, got, want)
    finally:
        for x in releases:
            x.stop.set()
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % offline_name, check=False)


def test_start_dir_each_starts_a_chain_of_one_table_when_the_earlier_ones_only_add(cluster, db, tmp_path):
    """`start DIR --each` on a history of one table whose earlier files
    only add: each file its own migration, each built on the one before;
    completed oldest first, every row filled in both columns."""
    chain = start_each(db, tmp_path, (CHAIN_A1, CHAIN_B2, CHAIN_C3))
    assert statuses(db) == {"z1": "active", "y2": "active", "x3": "active"}, statuses(db)
    # rolled back newest first, z1 stays; started again on top of it
    for n in ("x3", "y2"):
        r = migrate(db, "rollback", n)
        assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
                   " AND column_name = 'display'")[0][0] == 0
    assert statuses(db) == {"z1": "active", "y2": "rolled_back", "x3": "rolled_back"}, statuses(db)
    r = migrate(db, "start", str(chain), "--each", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 migrations started, each its own: y2, x3" in r.stderr, r.stderr
    for n in ("z1", "y2", "x3"):
        r = migrate(db, "complete", n)
        assert r.returncode == 0, r.stdout + r.stderr
    wrong = sql(db, "SELECT id, email, verified, display FROM users WHERE verified IS DISTINCT FROM"
                    " coalesce(email LIKE '%%@example.com', false) OR display IS DISTINCT FROM"
                    " CASE WHEN verified THEN 'v:' || name ELSE name END")
    assert not wrong and sql(db, "SELECT count(*) FROM users")[0][0] == 2000, wrong[:5]


def test_a_chained_backfill_below_that_failed_is_said_at_once_and_waited_for_once_resumed(cluster, db, tmp_path):
    """y2 builds on z1, whose backfill failed on a row (its `up` divides by
    zero there): y2's start expands and then says at once that its backfill
    waits for z1's, which failed. Once the row is fixed and z1 resumed (its
    engine running it again), `resume y2` waits for it instead of failing,
    and both end with every row filled."""
    run_script(db, BASE + "UPDATE users SET email = 'bad' WHERE id = 1500;")
    z1 = dict(CHAIN_A1, operations=[{"add_column": {
        "table": "users", "up": "CASE WHEN email = 'bad' THEN 1 / (length(email) - 3) = 1"
                                " ELSE coalesce(email LIKE '%@example.com', false) END",
        "column": {"name": "verified", "type": "boolean", "nullable": False, "default": "false"}}}])
    r = start_file(db, z1, tmp_path)
    assert r.returncode != 0 and "division by zero" in r.stdout + r.stderr, r.stdout + r.stderr
    r = start_file(db, CHAIN_B2, tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "the backfill of y2 waits for the backfill of z1, which it builds on (public.users), and that one failed" \
        in r.stderr, r.stderr
    assert statuses(db) == {"z1": "backfilling", "y2": "backfilling"}, statuses(db)

    sql(db, "UPDATE users SET email = 'fixed@example.com' WHERE id = 1500")
    procs = []
    try:
        migrate_until_it_says(db, ["resume", "z1"], procs, "backfill of", "z1's backfill running again")
        second, lines, reading = migrate_until_it_says(db, ["resume", "y2"], procs,
                                                       "waiting for the backfill of z1 to end first",
                                                       "y2 waiting for z1's backfill run again")
        for p in procs:
            p.wait(120)
        reading.join(10)
        assert [p.returncode for p in procs] == [0, 0], "".join(lines)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert statuses(db) == {"z1": "active", "y2": "active"}, statuses(db)
    wrong = sql(db, "SELECT id FROM users WHERE verified IS DISTINCT FROM coalesce(email LIKE '%%@example.com', false)"
                    " OR display IS DISTINCT FROM CASE WHEN verified THEN 'v:' || name ELSE name END")
    assert not wrong, wrong[:5]
