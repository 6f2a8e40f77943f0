"""The engine tests' small world: a database of its own per test holding

    items(id bigserial PRIMARY KEY, val text NOT NULL, note text)

(and an unrelated table `other`), the proxies whose engine (--engine-db)
works on it, and the one migration they run, rename_column val -> val_int
(integer, up "val::integer"), started and followed through the admin API."""
import os
import socket
import time
import uuid

import psycopg

from .pg import RestartableCluster
from .proxy import Proxy, call, wait_phase
from .wire import pg_raw_session, pg_simple_query

__all__ = ["MIGRATION", "ROWS", "SHORT", "Env", "items_migration", "start", "start_until_active", "login_through"]

MIGRATION = "0001_items_val_int"
ROWS = 2000
SHORT = 5.0            # "within a few seconds"

ITEMS_SQL = """
CREATE TABLE items (id bigserial PRIMARY KEY, val text NOT NULL, note text);
INSERT INTO items (val, note) SELECT g::text, 'row ' || g FROM generate_series(1, %(rows)d) g;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other VALUES (1, 'unrelated');
ANALYZE items;
"""


class Env:
    """One database with the items table on `cluster`, and the proxies of a
    test (engine on that database, short shutdown timeout). Teardown stops
    the proxies (or what is left of them), then drops the database."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.dbname = "flt_" + uuid.uuid4().hex[:10]
        cluster.psql("CREATE DATABASE %s" % self.dbname)
        self.uri = cluster.uri(db=self.dbname)
        cluster.psql(ITEMS_SQL % {"rows": ROWS}, uri=self.uri)
        self.proxies = []

    def sql(self, text, params=None):
        with psycopg.connect(self.uri, autocommit=True, connect_timeout=10) as c:
            cur = c.execute(text, params)
            return cur.fetchall() if cur.description else None

    def scalar(self, text, params=None):
        rows = self.sql(text, params)
        return rows[0][0] if rows else None

    def proxy(self, *extra):
        p = Proxy(self.cluster, extra_args=["--engine-db", self.uri, "--shutdown-timeout", "2"] + list(extra))
        self.proxies.append(p)
        return p

    def items_columns(self):
        return [r[0] for r in self.sql("SELECT column_name FROM information_schema.columns WHERE table_schema ="
                                       " 'public' AND table_name = 'items' ORDER BY ordinal_position")]

    def state_row(self):
        rows = self.sql("SELECT status, error FROM pgtandem.migrations WHERE name = %s", (MIGRATION,))
        return rows[0] if rows else None

    def close(self):
        for p in self.proxies:
            try:
                p.stop(timeout=10)
            finally:
                # a proxy's log can be large after a fault: keep the disk tidy
                try:
                    os.unlink(p.logfile.name)
                except OSError:
                    pass
        if isinstance(self.cluster, RestartableCluster):
            self.cluster.start()
        self.cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.dbname, check=False)


def items_migration(up="val::integer", backfill=None):
    """The migration val -> val_int as a dict, with `up` and `backfill` settings when given."""
    m = {"name": MIGRATION, "parent": None,
         "operations": [{"rename_column": {"table": "items", "from": "val", "to": "val_int", "type": "integer",
                                           "up": up, "down": "val_int::text"}}]}
    if backfill:
        m["backfill"] = backfill
    return m


def start(p, mig, conn=None):
    """POST /migrations (on `conn` when given), which must be accepted (202)."""
    code, ans = (conn.request if conn else lambda m, path, b: call(p, m, path, b))("POST", "/migrations", mig)
    assert code == 202, (code, ans)
    return ans


def start_until_active(p, mig):
    """start, then wait until the migration is active (a failure fails the test)."""
    start(p, mig)
    cur = wait_phase(p, ("active", "failed"), 60, what="start")
    assert cur["phase"] == "active", cur
    return cur


def login_through(p, dbname, timeout=SHORT):
    """A raw login (trust user) and one query through the proxy, bounded by
    timeout; returns None, or what went wrong."""
    t0 = time.time()
    try:
        s = pg_raw_session(p.port, user="trustuser", database=dbname, timeout=timeout)
        try:
            rows, err = pg_simple_query(s, "SELECT 1", timeout=timeout)
        finally:
            s.close()
        if err or rows != [["1"]]:
            return "query failed: %r %r" % (rows, err)
        return None
    except (socket.timeout, TimeoutError):
        return "no answer to the startup packet within %.0f s (%.1f s)" % (timeout, time.time() - t0)
    except (OSError, RuntimeError) as e:
        return "login failed: %r" % (e,)

