"""Each release sees exactly its own shape for the whole migration.

The seeds' migration (config/examples/checks_unify.json) started through
the proxy while clients that connected before `start` keep running:

- the old release (no version declared), psycopg with prepare_threshold=0
  (every statement prepared, as Rails and psycopg's default do after a few
  runs) and unprepared `SELECT *` unpacked by position, from before `start`
  to just before `complete`: no error, and every row has exactly the
  columns the table had before `start`, in their order; node-postgres's
  named statement prepared before `start` the same, and pgjdbc's
  (prepareThreshold=1) server-side prepared statement;
- the new release (pgtandem.version) from `start` to after `complete`: no
  error, and every row has exactly the columns the table has afterwards;
- a connection pool of the new release opened before `start`: its pooled
  connections (same backends) see the new shape from their next
  transaction on, with no reconnect;
- `complete` while an old-release session is connected: refused, naming
  it; with --force it goes on.

Every row a client wrote is then compared with the table."""
import os
import re
import subprocess
import threading

import psycopg
from sqlalchemy import pool as sqlalchemy_pool

from support import (complete_migration, engine_proxy, NAME, pmigrate, scalar, start_migration,
                     throttled_migration, TOP, version_options, wait_for)

JDBC_JAR = "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java
COLUMNS_SQL = ("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid ="
               " 'public.checks'::regclass AND attnum > 0 AND NOT attisdropped")


def table_columns(cluster, db):
    return tuple(scalar(cluster, db, COLUMNS_SQL).split(","))


class Client(threading.Thread):
    """A release's client in a loop until stopped: a prepared SELECT * by id,
    the same unprepared (its row unpacked by position), and an insert
    through its own column names whose id it keeps. Errors are kept, not
    raised, so that the test can count them."""

    def __init__(self, uri, claim_column, options=""):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(uri, prepare_threshold=0, autocommit=True, options=options)
        self.claim_column = claim_column
        self.stop = threading.Event()
        self.shapes = {}       # column tuple -> rows seen with it
        self.errors = []
        self.written = {}      # id -> claim written
        self.rounds = 0

    def _select(self, prepare):
        cur = self.conn.cursor()
        cur.execute("SELECT * FROM checks WHERE id = %s", (1 + self.rounds % 50,), prepare=prepare)
        row = cur.fetchone()
        cols = tuple(d.name for d in cur.description)
        self.shapes[cols] = self.shapes.get(cols, 0) + 1
        # code that unpacks by position: as many values as it expects names
        assert row is not None and len(row) == len(cols)

    def _insert(self):
        claim = "%s-%d-%d" % (self.claim_column, id(self), self.rounds)
        cur = self.conn.execute("INSERT INTO checks (%s) VALUES (%%s) RETURNING id" % self.claim_column, (claim,))
        self.written[cur.fetchone()[0]] = claim

    def run(self):
        while not self.stop.is_set():
            try:
                self._select(True)
                self._select(False)
                self._insert()
            except Exception as e:  # noqa: BLE001 - counted by the test
                self.errors.append(repr(e))
                if self.conn.closed:
                    return
            self.rounds += 1

    def finish(self):
        self.stop.set()
        self.join(30)
        assert not self.is_alive()
        self.conn.close()


def test_each_release_sees_its_own_shape_from_start_to_complete(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    old_columns = table_columns(cluster, legacy_db)
    old = Client(uri, "claim_text")
    old.start()
    wait_for(lambda: old.rounds >= 20 or old.errors, what="the old release under way")
    mig = throttled_migration(4000)  # a backfill of a few seconds under the old release's traffic
    start_migration(proxy, mig)
    new = Client(uri, "claim", options=version_options())
    new.start()
    wait_for(lambda: new.rounds >= 20 or new.errors, what="the new release under way")
    rounds = old.rounds
    wait_for(lambda: old.rounds >= rounds + 20 or old.errors, what="the old release after start")
    old.finish()  # the old release is retired before complete
    rep = complete_migration(proxy)
    rounds = new.rounds
    wait_for(lambda: new.rounds >= rounds + 20 or new.errors, what="the new release after complete")
    new.finish()
    new_columns = table_columns(cluster, legacy_db)
    print("old: %d rounds %s; new: %d rounds %s; cutover %s" % (old.rounds, old.shapes, new.rounds, new.shapes, rep))
    assert old.errors == [] and new.errors == []
    assert set(old.shapes) == {old_columns}, old.shapes
    assert set(new.shapes) == {new_columns}, new.shapes
    assert "claim_text" not in new_columns and "claim" in new_columns
    # every row a client wrote is there, under the new name
    written = {**old.written, **new.written}
    assert len(written) == len(old.written) + len(new.written) > 0
    ids = ",".join(str(i) for i in written)
    rows = scalar(cluster, legacy_db, "SELECT string_agg(id || '=' || claim, '|') FROM checks WHERE id IN (%s)" % ids)
    found = dict(r.split("=", 1) for r in rows.split("|"))
    assert {int(k): v for k, v in found.items()} == written
    # nothing of the migration is left behind
    assert scalar(cluster, legacy_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem_%'") == "0"


def test_pool_opened_before_start_is_routed_at_its_next_transaction(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    # SQLAlchemy's connection pool over psycopg 3, every statement prepared
    pool = sqlalchemy_pool.QueuePool(lambda: psycopg.connect(uri, prepare_threshold=0, options=version_options()),
                              pool_size=1, max_overflow=0, reset_on_return="rollback")

    def shape_and_pid():
        conn = pool.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT * FROM checks WHERE id = 1")
            cols = tuple(d[0] for d in cur.description)
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            conn.commit()
            return cols, pid
        finally:
            conn.close()  # back to the pool

    try:
        before, pid_before = shape_and_pid()
        assert "claim_text" in before and "claim" not in before
        start_migration(proxy)
        after, pid_after = shape_and_pid()
        assert pid_after == pid_before  # the same pooled connection, not a new one
        assert "claim" in after and "claim_text" not in after and "aggregation" not in after, after
        code, st = proxy.admin("GET", "/status")
        assert st["versions"].get(NAME) == 1, st
    finally:
        pool.dispose()


def test_complete_refuses_while_the_old_release_is_connected(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    start_migration(proxy)
    with psycopg.connect(uri, autocommit=True, application_name="billing-worker") as old:
        old.execute("SELECT claim_text FROM checks WHERE id = 7").fetchone()
        r = pmigrate(proxy, "complete")
        assert r.returncode == 1, r.stdout + r.stderr
        # named: who, from where, what it last ran, and how long ago
        assert "1 session of the old release" in r.stderr, r.stderr
        assert "billing-worker" in r.stderr and "SELECT claim_text FROM checks WHERE id = 7" in r.stderr, r.stderr
        assert re.search(r"idle for \d+ ms", r.stderr), r.stderr
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["phase"] == "active", cur  # nothing changed
        # the old release still reads its shape, untouched
        cols = [d.name for d in old.execute("SELECT * FROM checks WHERE id = 7").description]
        assert "claim_text" in cols and "claim" not in cols
        rep = complete_migration(proxy, force=True)
        assert rep["status"] == "completed"
    assert "completing with force while 1 session of the old release is connected" in proxy.log()


def same_columns_across_start(cluster, proxy_factory, legacy_db, client_argv, cwd=None):
    """A client (tests/node/cutover.js, tests/clients/PreparedStar.java)
    prepares `SELECT * FROM checks WHERE id = ...` before `start`, prints
    "ready <columns>", and after a line on stdin runs it again on the same
    connection and prints "after <columns>": the old release's columns both
    times, with no error."""
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    old_columns = ",".join(table_columns(cluster, legacy_db))
    p = subprocess.Popen(client_argv(proxy), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        ready = p.stdout.readline().split()
        assert ready and ready[0] == "ready", (ready, p.stderr.read() if p.poll() is not None else "")
        assert ready[1] == old_columns
        start_migration(proxy)
        out, err = p.communicate("go\n", timeout=60)
        assert p.returncode == 0, err + proxy.log()[-3000:]
        assert out.split("\n")[0].split() == ["after", old_columns], out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_node_postgres_named_statement_of_the_old_release_across_start(cluster, proxy_factory, legacy_db):
    """node-postgres's named statement prepared before `start`."""
    node_dir = os.path.join(TOP, "tests", "node")
    same_columns_across_start(cluster, proxy_factory, legacy_db, lambda proxy: [
        "node", os.path.join(node_dir, "cutover.js"), proxy.uri(user="postgres", password="postgres", db=legacy_db),
        "7"], cwd=node_dir)


def test_pgjdbc_prepared_select_star_of_the_old_release_across_start(cluster, proxy_factory, legacy_db):
    """pgjdbc with prepareThreshold=1: a server-side prepared statement from
    its first run, before `start`; no `cached plan must not change result type`."""
    same_columns_across_start(cluster, proxy_factory, legacy_db, lambda proxy: [
        "java", "-cp", JDBC_JAR, os.path.join(TOP, "tests", "clients", "PreparedStar.java"),
        "jdbc:postgresql://127.0.0.1:%d/%s?sslmode=disable" % (proxy.port, legacy_db), "postgres", "postgres", "7"])
