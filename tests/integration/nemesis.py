"""The nemesis: whole migrations run through a fleet of three proxies while
a seeded random schedule breaks things, and a checker that proves nothing
was lost, nothing wedged and nothing left unanswered.

The world: one Postgres (restartable), a forwarder between every proxy and
Postgres (their upstream and engine connections both go through it), three
fleet proxies, and the table

    notes(id serial PRIMARY KEY, tag text UNIQUE, n integer, body text)

loaded with ROWS rows. Migrations follow one another on it, each the parent
of the next: first the key widening (id -> bigint), then a cycle of the
everyday operations (rename body <-> content, n integer <-> bigint, add and
drop a column, create and drop an index). Each is started through a random
proxy and then completed or rolled back (the schedule's coin), and the same
DDL is applied offline to a twin database whenever one completes.

Several migrations in flight: by the schedule's coin (half of them), once
the migration of notes is active, a migration of a second table

    tags(id serial PRIMARY KEY, tag text UNIQUE, n integer, body text)

(a column `extra` added, the next time dropped) is started beside it
through a random proxy, each the parent of the next, as a team ships them:
it runs on an engine of its own in that proxy. The notes migration is then
completed through the proxies first (they complete the oldest in flight;
the one of tags follows) or, when the coin says roll back, the one of tags
is rolled back first with `migrate rollback NAME --db` (the proxies roll
back only the oldest), newest first. tags's writers of the release from
before write all along, those of the release built with its migration
(pgtandem.version) while it is in flight.

Writers of every live shape insert and update their own rows through random
proxies the whole time (the old release without pgtandem.version, the new
release with it while a migration is in flight); every write whose answer
came back is kept in the model, a write whose answer was lost with its
connection is kept as "may or may not have happened".

Faults, one every FAULT_GAP seconds or so, by the seed: kill -9 and SIGTERM
of a proxy (restarted on new ports), Postgres stopped -m immediate and
started, the forwarder's flows black-holed, frozen or reset, a session
holding a lock on the table, the fleet's lease rows locked, and admin
requests racing the driver's (the same request to another proxy, throttle
changes, status reads).

The checker, after each migration, while both are in flight and at the
end: every row of every live shape of both tables is a row somebody wrote, with what was last acknowledged (or one of
the values a lost answer may have written), every acknowledged row is
there; every migration ended completed or rolled_back within WEDGE_S of its
driver's first request, or, when faults come too fast for it to get there,
within HEAL_S of the schedule pausing (Jepsen's heal: a migration that does
not end once the faults stop is wedged; one that does is counted as slowed);
every admin request was answered (or its proxy was
killed under it); the schema (pg_dump --schema-only of both tables) is the
offline twin's (both tables); and the longest time a writer could not
commit is reported.

    /usr/bin/python3 tests/integration/nemesis.py --seed 7 --migrations 12

prints the seed, every fault and request as it happens, and the summary;
exits 1 when a check failed. test_nemesis.py runs a short fixed-seed run,
bench/nemesis.sh the long one."""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support.migrations import run_pgtandem  # noqa: E402
from support.pg import PGCLUSTER, RestartableCluster, read_env, start_cluster  # noqa: E402
from support.proxy import Proxy  # noqa: E402
from support.wait import poll  # noqa: E402
from tcp_forwarder import Forwarder  # noqa: E402

ROWS = 5000
WEDGE_S = 240.0          # a migration ends within this many seconds of its driver's first request...
HEAL_S = 120.0           # ...or, the faults stopped then, within this many more (else it is wedged)
ANSWER_S = 180.0         # an admin request is answered within this (complete and rollback wait for their end)
FAULT_KINDS = ("kill9", "sigterm", "pg_restart", "blackhole", "freeze", "reset", "table_lock", "lease_lock",
               "admin_race")

LOAD_SQL = """
CREATE TABLE notes (id serial PRIMARY KEY, tag text NOT NULL UNIQUE, n integer NOT NULL, body text);
INSERT INTO notes (tag, n, body) SELECT 'l' || g, g, 'b' || g FROM generate_series(1, %(rows)d) g;
ANALYZE notes;
CREATE TABLE tags (id serial PRIMARY KEY, tag text NOT NULL UNIQUE, n integer NOT NULL, body text);
INSERT INTO tags (tag, n, body) SELECT 'l' || g, g, 'b' || g FROM generate_series(1, %(rows)d) g;
ANALYZE tags;
"""


# ---- the migrations: each (operations, offline SQL, the shape after it) ----

def migration_cycle():
    """The key widening once, then the everyday operations in a cycle; each
    step a function of the shape before it: (ops, offline SQL, shape after).
    A shape is {"body": its column's name, "n": type, "flag": bool, "index": bool}."""
    def widen(s):
        return ([{"alter_column": {"table": "notes", "column": "id", "type": "bigint", "up": "id::bigint",
                                   "down": "id::integer"}}],
                "ALTER TABLE notes ALTER COLUMN id TYPE bigint; ALTER SEQUENCE notes_id_seq AS bigint;", dict(s))

    def rename(s):
        to = "content" if s["body"] == "body" else "body"
        return ([{"rename_column": {"table": "notes", "from": s["body"], "to": to}}],
                "ALTER TABLE notes RENAME COLUMN %s TO %s;" % (s["body"], to), dict(s, body=to))

    def retype(s):
        to = "bigint" if s["n"] == "integer" else "integer"
        return ([{"alter_column": {"table": "notes", "column": "n", "type": to, "up": "n::" + to,
                                   "down": "n::" + s["n"]}}],
                "ALTER TABLE notes ALTER COLUMN n TYPE %s;" % to, dict(s, n=to))

    def flag(s):
        if not s["flag"]:
            return ([{"add_column": {"table": "notes", "column": {"name": "flag", "type": "boolean",
                                                                  "nullable": False, "default": "false"}}}],
                    "ALTER TABLE notes ADD COLUMN flag boolean NOT NULL DEFAULT false;", dict(s, flag=True))
        return ([{"drop_column": {"table": "notes", "column": "flag", "down": "false"}}],
                "ALTER TABLE notes DROP COLUMN flag;", dict(s, flag=False))

    def index(s):
        if not s["index"]:
            return ([{"create_index": {"table": "notes", "name": "notes_n_idx", "columns": ["n"]}}],
                    "CREATE INDEX notes_n_idx ON notes (n);", dict(s, index=True))
        return ([{"drop_index": {"name": "notes_n_idx"}}], "DROP INDEX notes_n_idx;", dict(s, index=False))
    return widen, [rename, retype, flag, index]


def side_step(s):
    """A migration of tags, started beside the one of notes in flight (on
    separate tables, each on its own schedule): a column added, then
    dropped. s: {"extra": bool}."""
    if not s["extra"]:
        return ([{"add_column": {"table": "tags", "column": {"name": "extra", "type": "boolean", "nullable": False,
                                                             "default": "false"}}}],
                "ALTER TABLE tags ADD COLUMN extra boolean NOT NULL DEFAULT false;", dict(s, extra=True))
    return ([{"drop_column": {"table": "tags", "column": "extra", "down": "false"}}],
            "ALTER TABLE tags DROP COLUMN extra;", dict(s, extra=False))


# ---- the world ----

class World:
    def __init__(self, cluster, rnd, log):
        self.cluster, self.rnd, self.say = cluster, rnd, log
        self.dbname, self.twin = "nemesis", "nemesis_twin"
        for d in (self.dbname, self.twin):
            cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % d)
            cluster.psql("CREATE DATABASE %s" % d)
            cluster.psql(LOAD_SQL % {"rows": ROWS}, uri=cluster.uri(db=d))
        # the test clusters run with synchronous_commit off, which loses the
        # last commits on an immediate stop by design: this world promises
        # every acknowledged commit, so it asks Postgres for the same
        cluster.psql("ALTER DATABASE %s SET synchronous_commit = on" % self.dbname)
        self.uri = cluster.uri(db=self.dbname)
        self.fwd = Forwarder(cluster.host, cluster.port)
        self.lock = threading.Lock()
        self.slots = [None, None, None]
        self.killed_under = 0          # admin requests whose proxy was killed under them
        for i in range(3):
            self.slots[i] = self.new_proxy()

    def new_proxy(self):
        via = "postgresql://%s:%d/%%s?sslmode=require" % ("127.0.0.1", self.fwd.port)
        return Proxy(self.cluster, upstream=via % "", extra_args=[
            "--engine-db", "postgresql://postgres:postgres@127.0.0.1:%d/%s?sslmode=require&connect_timeout=5"
            % (self.fwd.port, self.dbname),
            "--fleet-lease-ms", "2000", "--shutdown-timeout", "2"])

    def live(self):
        with self.lock:
            return [p for p in self.slots if p is not None and p.proc.poll() is None]

    def any_proxy(self):
        ps = poll(self.live, 120, 0.05)   # a proxy the nemesis killed is back within seconds
        if not ps:
            raise Check("no proxy live for 120 s")
        return random.choice(ps)

    def restart_slot(self, i, how):
        with self.lock:
            p = self.slots[i]
            self.slots[i] = None
        if how == "kill9":
            p.proc.kill()
        else:
            p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Check("proxy %d did not exit within 30 s of SIGTERM" % p.port)
        log = p.log()
        for mark in ("ERROR: AddressSanitizer", "runtime error:", "BUG:"):
            if mark in log:
                raise Check("proxy %d's log has %r:\n%s" % (p.port, mark, log[-3000:]))
        os.unlink(p.logfile.name)
        q = self.new_proxy()
        with self.lock:
            self.slots[i] = q
        return p, q

    def stop(self):
        for p in self.slots:
            if p is not None:
                p.stop(timeout=30)
                os.unlink(p.logfile.name)
        self.fwd.stop()


class Check(Exception):
    """A checker's finding: the run fails with it."""


class Unavailable(Exception):
    """The database could not be reached (a fault): tried again."""


def sql(uri, text, params=None, timeout=10):
    with psycopg.connect(uri, autocommit=True, connect_timeout=timeout) as c:
        cur = c.execute(text, params)
        return cur.fetchall() if cur.description else None


def retrying(fn, what, bound=120.0):
    """fn() retried while the database is coming back (a fault may have
    just stopped it), for at most `bound` seconds."""
    last = {}

    def attempt():
        try:
            return (fn(),)
        except (psycopg.OperationalError, Unavailable) as e:
            last["error"] = e
            return None
    got = poll(attempt, bound, 0.2)
    if got is None:
        raise Check("%s: the database did not come back in %.0f s: %s" % (what, bound, last.get("error")))
    return got[0]


# ---- the writers ----

class Writer(threading.Thread):
    """One client of a release: `role` "old" (no pgtandem.version) or "new"
    (the migration in flight's). Inserts rows of its own and updates them;
    what was acknowledged goes into `acked`, what a lost answer may have
    written into `maybe` (tag -> set of (n, body)); a row with a lost answer
    is not written again."""

    def __init__(self, world, role, idx, seed, table="notes"):
        super().__init__(daemon=True)
        self.world, self.role, self.idx, self.table = world, role, idx, table
        self.rnd = random.Random(seed)
        self.acked, self.maybe, self.frozen = {}, {}, set()
        self.seq = 0
        self.writes = self.errors = 0
        self.longest_outage = 0.0
        self.last_ok = None
        self.done = threading.Event()
        self.idle = threading.Event()
        self.error_kinds = {}
        self.failure = None

    def shape(self):
        return self.world.roles[self.role]    # (options or None: paused, body column)

    def run(self):
        try:
            self.loop()
        except Check as e:
            self.failure = str(e)
            self.idle.set()

    def loop(self):
        conn, conn_opts = None, None
        while not self.done.is_set():
            opts = self.shape()
            if opts is None or self.world.quiet.is_set():
                if conn is not None:
                    conn.close()
                    conn = None
                self.last_ok = None
                self.idle.set()
                # until its release writes again (or the run ends)
                poll(lambda: self.done.is_set() or (self.shape() is not None and not self.world.quiet.is_set()),
                     3600, 0.02)
                continue
            self.idle.clear()
            options, body = opts
            try:
                if conn is None or conn.closed or conn_opts != options:
                    if conn is not None:
                        conn.close()
                    p = self.world.any_proxy()
                    conn = psycopg.connect(p.uri(user="postgres", password="postgres", db=self.world.dbname), autocommit=True, connect_timeout=5,
                                           options=options or "", application_name="nemesis-%s" % self.role)
                    conn_opts = options
                    if self.last_ok is None:
                        self.last_ok = time.monotonic()
                self.once(conn, body)
                now = time.monotonic()
                if self.last_ok is not None:
                    self.longest_outage = max(self.longest_outage, now - self.last_ok)
                self.last_ok = now
            except psycopg.Error as e:
                self.errors += 1
                k = "%s %s" % (type(e).__name__, (e.sqlstate or ""))
                self.error_kinds[k] = self.error_kinds.get(k, 0) + 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                self.done.wait(0.05)   # a breath before connecting again
        if conn is not None:
            conn.close()

    def once(self, conn, body):
        own = [t for t in self.acked if t not in self.frozen]
        if own and self.rnd.random() < 0.4:
            tag = self.rnd.choice(own)
            val = (self.rnd.randint(1, 2 ** 31 - 1), "u%d" % self.rnd.randint(0, 10 ** 6))
            stmt = "UPDATE %s SET n = %%s, %s = %%s WHERE tag = %%s" % (self.table, body)
            args = (val[0], val[1], tag)
        else:
            self.seq += 1
            tag = "%s%d-%d" % (self.role[0], self.idx, self.seq)
            val = (self.rnd.randint(1, 2 ** 31 - 1), "i%d" % self.rnd.randint(0, 10 ** 6))
            stmt = "INSERT INTO %s (tag, n, %s) VALUES (%%s, %%s, %%s)" % (self.table, body)
            args = (tag, val[0], val[1])
        try:
            cur = conn.execute(stmt, args)
        except psycopg.OperationalError:
            # the answer was lost: it may or may not have happened
            self.maybe.setdefault(tag, set()).add(val)
            self.frozen.add(tag)
            raise
        if stmt.startswith("UPDATE") and cur.rowcount != 1:
            raise Check("writer %s%d: UPDATE of its own row %s matched %d rows" % (self.role, self.idx, tag,
                                                                                  cur.rowcount))
        self.acked[tag] = val
        self.writes += 1


# ---- the checker ----

def check_rows(world, writers, shapes, table="notes"):
    """Every row of every live shape of table against the model; shapes:
    list of (options, body column)."""
    acked, maybe = {}, {}
    for w in writers:
        if w.table != table:
            continue
        acked.update(w.acked)
        for t, vals in w.maybe.items():
            maybe.setdefault(t, set()).update(vals)
    checked = 0
    for options, body in shapes:
        def read():
            p = world.any_proxy()
            with psycopg.connect(p.uri(user="postgres", password="postgres", db=world.dbname),
                                 autocommit=True, connect_timeout=10,
                                 options=options or "") as c:
                return {r[0]: (int(r[1]), r[2]) for r in c.execute("SELECT tag, n, %s FROM %s" % (body, table))}
        try:
            got = retrying(read, "reading the rows")
        except psycopg.Error as e:
            # a release that cannot read its own names: the proxy served it another shape
            raise Check("reading %s in shape %r (%s): %s" % (table, options, body, str(e).splitlines()[0]))
        for i in range(1, ROWS + 1):
            want = acked.get("l%d" % i, (i, "b%d" % i))
            if got.get("l%d" % i) != want:
                raise Check("loaded row l%d reads %r in shape %r, wrote %r" % (i, got.get("l%d" % i), options, want))
        for tag, val in got.items():
            if tag.startswith("l"):
                continue
            if tag in maybe:
                ok = val in maybe[tag] or val == acked.get(tag)
            else:
                ok = val == acked.get(tag)
            if not ok:
                raise Check("row %s reads %r in shape %r; acknowledged %r, maybe %r"
                            % (tag, val, options, acked.get(tag), maybe.get(tag)))
        missing = [t for t in acked if t not in got]
        if missing:
            raise Check("%d acknowledged rows missing in shape %r, e.g. %s" % (len(missing), options, missing[:5]))
        checked += len(got)
    return checked


def table_schema(cluster, dbname):
    r = subprocess.run([os.path.join(cluster.bindir, "pg_dump"), "--schema-only", "--no-owner", "-t", "notes",
                        "-t", "notes_id_seq", "-t", "tags", "-t", "tags_id_seq", cluster.uri(db=dbname)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Unavailable("pg_dump: %s" % r.stderr.strip().splitlines()[0])
    out, cols = [], None
    for line in r.stdout.splitlines():
        if not line or line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        # column order aside (doc/migrations.md: a column kept in a second
        # column ends last): the table's columns compared as a set
        if line.startswith("CREATE TABLE"):
            cols = []
        elif cols is not None and line.startswith(")"):
            out += sorted(cols)
            cols = None
        elif cols is not None:
            cols.append(line.rstrip(","))
            continue
        out.append(line)
    return "\n".join(out)


def check_schema(world, what):
    online = retrying(lambda: table_schema(world.cluster, world.dbname), "pg_dump")
    offline = retrying(lambda: table_schema(world.cluster, world.twin), "pg_dump")
    if online != offline:
        import difflib
        raise Check("%s: the table's schema is not the offline one's:\n%s" % (what, "\n".join(
            difflib.unified_diff(offline.splitlines(), online.splitlines(), "offline", "online", lineterm=""))))


# ---- the nemesis and the driver ----

class Nemesis(threading.Thread):
    """Injects one fault every gap seconds (by its own seeded random)."""

    def __init__(self, world, driver, seed, gap, kinds):
        super().__init__(daemon=True)
        self.world, self.driver, self.rnd, self.gap, self.kinds = world, driver, random.Random(seed), gap, kinds
        self.done = threading.Event()
        self.counts = {k: 0 for k in kinds}
        self.failure = None

    def run(self):
        try:
            while not self.done.wait(self.rnd.uniform(0.5 * self.gap, 1.5 * self.gap)):
                if self.world.healing.is_set():
                    continue
                kind = self.rnd.choice(self.kinds)
                self.inject(kind)
                self.counts[kind] += 1
        except Check as e:
            self.failure = str(e)
        except Exception as e:   # a bug of the harness is a failure too, said as such
            self.failure = "nemesis: %r" % e

    def inject(self, kind):
        w, rnd = self.world, self.rnd
        if kind in ("kill9", "sigterm"):
            i = rnd.randrange(3)
            old, new = w.restart_slot(i, kind)
            w.say("fault %s: proxy %d -> restarted as %d" % (kind, old.port, new.port))
        elif kind == "pg_restart":
            down = rnd.uniform(0, 2)
            w.say("fault pg_restart: stop -m immediate, %.1f s down" % down)
            w.cluster.pg_ctl("stop", "-m", "immediate", check=False)
            self.done.wait(down)
            w.cluster.pg_ctl("start")
        elif kind in ("blackhole", "freeze"):
            t = rnd.uniform(0.3, 3)
            w.say("fault %s: the forwarder's %s for %.1f s" % (kind, "flows black-holed" if kind == "blackhole"
                                                                else "process stopped", t))
            (w.fwd.freeze_flows if kind == "blackhole" else w.fwd.freeze)()
            self.done.wait(t)
            (w.fwd.thaw_flows if kind == "blackhole" else w.fwd.thaw)()
        elif kind == "reset":
            w.say("fault reset: every flow through the forwarder reset")
            w.fwd.reset_flows()
        elif kind in ("table_lock", "lease_lock"):
            t = rnd.uniform(0.5, 4)
            what = ("SELECT count(*) FROM notes" if kind == "table_lock"
                    else "SELECT * FROM pgtandem.proxies FOR UPDATE")
            w.say("fault %s: a transaction holds %s for %.1f s" % (kind, what, t))
            try:
                with psycopg.connect(w.uri, connect_timeout=5) as c:
                    c.execute("SET statement_timeout = '5s'")
                    c.execute(what)
                    self.done.wait(t)
                    c.rollback()
            except psycopg.Error as e:
                w.say("  (%s: %s)" % (kind, str(e).strip().splitlines()[0]))
        elif kind == "admin_race":
            self.driver.race(rnd)


class Driver:
    """Runs the migrations one after another and records every request."""

    def __init__(self, world, rnd, log):
        self.world, self.rnd, self.say = world, rnd, log
        self.requests = self.unanswered = self.lost_with_proxy = 0
        self.req_lock = threading.Lock()
        self.current = None            # (name, the request the driver makes now: "complete"/"rollback")
        self.outcomes = {"completed": 0, "rolled_back": 0}
        self.side_outcomes = {"completed": 0, "rolled_back": 0}   # the migrations of tags started beside
        self.longest = 0.0
        self.racers = []
        self.failed_starts = 0
        self.healed = 0              # migrations that needed the faults paused to end
        self.heal_started = 0.0

    def request(self, p, method, path, body=None, timeout=ANSWER_S):
        """One admin request; (code, body), or None when its proxy died
        under it. No answer within the bound from a live proxy fails."""
        with self.req_lock:
            self.requests += 1
        try:
            return p.admin(method, path, json.dumps(body) if isinstance(body, dict) else body, timeout=timeout)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            if p.proc.poll() is not None or isinstance(reason, ConnectionRefusedError) or \
                    isinstance(e, (ConnectionResetError, ConnectionRefusedError)) or \
                    "Remote end closed" in str(e):
                with self.req_lock:
                    self.lost_with_proxy += 1
                return None
            if "timed out" in str(e):
                if p.proc.poll() is not None:
                    with self.req_lock:
                        self.lost_with_proxy += 1
                    return None
                with self.req_lock:
                    self.unanswered += 1
                raise Check("%s %s on proxy %d: no answer within %.0f s\n%s" % (method, path, p.port, timeout,
                                                                             p.log()[-3000:]))
            raise

    def race(self, rnd):
        cur = self.current
        kind = rnd.choice(["same", "throttle", "read"])
        if kind == "same" and not cur:
            kind = "read"
        p = self.world.any_proxy()
        body = None
        if kind == "same" and cur[1] == "start":
            path, body = "/migrations", cur[2]
        elif kind == "same":
            path = "/migrations/current/%s" % cur[1]
        elif kind == "throttle":
            path = "/migrations/current/throttle"
        else:
            path = rnd.choice(["/status", "/migrations/current", "/metrics"])
        if kind == "throttle":
            body = {"max_rows_per_sec": rnd.choice([500, 2000, 0])}
        method = "GET" if kind == "read" else "POST"
        self.say("fault admin_race: %s %s to proxy %d" % (method, path, p.port))
        t = threading.Thread(target=self._race_one, args=(p, method, path, body), daemon=True)
        t.start()
        self.racers.append(t)

    def _race_one(self, p, method, path, body):
        try:
            self.request(p, method, path, body)
        except Check as e:
            self.race_failure = str(e)

    def overdue(self, name, t0, what):
        """Past WEDGE_S: the faults pause (the heal) and the migration gets
        HEAL_S more; past that it is wedged."""
        waited = time.monotonic() - t0
        if waited <= WEDGE_S:
            return
        if not self.world.healing.is_set():
            self.world.healing.set()
            self.heal_started = time.monotonic()
            self.healed += 1
            self.say("  %s: %s after %.0f s under faults: faults paused, %.0f s to end" % (name, what, waited, HEAL_S))
        elif time.monotonic() - self.heal_started > HEAL_S:
            raise Check("%s: wedged: %s %.0f s after its start, %.0f s after the faults stopped"
                        % (name, what, waited, time.monotonic() - self.heal_started))

    def status_of(self, name):
        """Its status row, or None. Before any proxy has reached the
        database (a fault at the run's start) the state schema is not there
        yet: no migration is known."""
        def read():
            try:
                return sql(self.world.uri, "SELECT status FROM pgtandem.migrations WHERE name = %s", (name,))
            except psycopg.errors.UndefinedTable:
                return []
        rows = retrying(read, "reading the migration's status")
        return rows[0][0] if rows else None

    def post_steps_done(self, name):
        """The state row says no step after the contract is left (a drop
        lost with its connection or its proxy runs again until it is)."""
        rows = retrying(lambda: sql(self.world.uri, "SELECT post_done IS NULL FROM pgtandem.migrations WHERE name = %s",
                                    (name,)), "reading the migration's steps after its contract")
        return bool(rows and rows[0][0])

    def start(self, mig, t0):
        """Through any proxy until the table knows it (a lost answer may
        have started it); beside the one in flight when one is."""
        name = mig["name"]
        self.current = (name, "start", mig)
        while self.status_of(name) is None:
            ans = self.request(self.world.any_proxy(), "POST", "/migrations", mig)
            self.say("  start %s -> %s" % (name, ans and (ans[0], str(ans[1])[:160])))
            if ans and ans[0] in (400, 422):
                raise Check("start of %s refused: %r" % (name, ans))
            self.overdue(name, t0, "not started")
            # refused or lost: its row may come anyway (another proxy's start), else ask again;
            # accepted: its row comes with the expand (unless a fault ends that first)
            poll(lambda: self.status_of(name), 0.5 if ans is None or ans[0] >= 300 else 30, 0.1)

    def run_one(self, name, parent, ops, want_complete, backfill, side=None):
        """One migration of notes, from its start to its complete or
        rollback; side: (its migration, whether it completes), a migration
        of tags started beside it once it is active, and finished after it
        (rolled back first when it is). Returns the statuses they ended in."""
        mig = {"name": name, "parent": parent, "operations": ops, "backfill": backfill}
        t0 = time.monotonic()
        self.start(mig, t0)
        # wait until it is active everywhere it matters (or it failed)
        def settled():
            st = self.status_of(name)
            if st in ("active", "failed", "rolled_back", "completed"):
                return st
            self.overdue(name, t0, "%s, never active" % st)   # raises once it is wedged
            return None
        st = poll(settled, WEDGE_S + HEAL_S + 60, 0.2)
        if st == "failed":
            err = retrying(lambda: sql(self.world.uri, "SELECT error FROM pgtandem.migrations WHERE name = %s",
                                       (name,)), "reading the migration's error")
            self.say("  %s failed: %s" % (name, err and err[0][0]))
            self.failed_starts += 1
        action = "complete" if (want_complete and st == "active") else "rollback"
        self.say("  %s is %s: %s it" % (name, st, action))
        if st == "active":
            self.world.check_live(name)
        if side is None or st != "active":
            return self.finish(name, action, t0), None
        beside, side_complete = side
        self.world.roles["side"] = ("-c pgtandem.version=%s" % beside["name"], "body")
        self.start(beside, t0)
        if poll(lambda: self.status_of(beside["name"]) in ("active", "failed"), 30, 0.2):
            self.say("  %s started beside %s: %s" % (beside["name"], name, self.status_of(beside["name"])))
        if self.status_of(beside["name"]) == "active":
            self.world.check_live(name)   # both in flight: every live shape of notes and of tags
        if action == "rollback":
            # newest first: the one built on it goes back before it
            side_st = self.rollback_with_db(beside["name"], t0)
            return self.finish(name, action, t0), side_st
        main_st = self.finish(name, action, t0)
        self.world.after_main(main_st)
        side_action = "complete" if side_complete and self.status_of(beside["name"]) != "failed" else "rollback"
        return main_st, self.finish(beside["name"], side_action, t0, named=True)

    def rollback_with_db(self, name, t0):
        """`migrate rollback NAME --db`: the proxies roll back only the
        migration their engine runs, the oldest in flight. Refused while an
        engine still works on it (its start beside, its backfill): asked
        again."""
        self.world.roles["side"] = None
        self.current = (name, "rollback", None)
        while True:
            st = self.status_of(name)
            if st in ("rolled_back", None):
                self.side_outcomes["rolled_back"] += st == "rolled_back"
                return st
            self.overdue(name, t0, "%s (asked to roll back with --db)" % st)
            try:
                r = run_pgtandem(["migrate", "rollback", name, "--db", self.world.uri, "--engine-wait", "5"],
                                 timeout=ANSWER_S)
            except subprocess.TimeoutExpired:
                raise Check("migrate rollback %s --db: no answer within %.0f s" % (name, ANSWER_S))
            self.say("  rollback %s --db -> %d %s" % (name, r.returncode, (r.stderr.strip().splitlines() or [""])[-1][:200]))
            if r.returncode != 0:
                poll(lambda: self.status_of(name) == "rolled_back", 1.0, 0.1)

    def finish(self, name, action, t0, named=False):
        """named: the request names it (one above the oldest in flight,
        which the proxies' engines follow once the oldest has ended)."""
        self.current = (name, action, None)
        self.world.before_finish(action, named)
        while True:
            st = self.status_of(name)
            if st == "completed" and self.post_steps_done(name):
                break
            if st == "rolled_back":
                break
            if st == "completed":   # its steps after the contract (an index drop) still run, or run again
                self.overdue(name, t0, "completed, its steps after the contract not done")
                poll(lambda: self.post_steps_done(name), 0.5, 0.1)
                continue
            self.overdue(name, t0, "%s (asked to %s)" % (st, action))
            if action == "complete" and st not in ("active", "expanding", "backfilling"):
                action = "rollback"
            query = (["force=1"] if action == "complete" else []) + (["name=" + name] if named else [])
            path = "/migrations/current/%s%s" % (action, "?" + "&".join(query) if query else "")
            p = self.world.any_proxy()
            ans = self.request(p, "POST", path)
            self.say("  %s %s via %d -> %s" % (action, name, p.port, ans and (ans[0], str(ans[1])[:200])))
            if ans is None or ans[0] >= 300:   # a moment for it to end anyway, then ask again
                poll(lambda: self.status_of(name) in ("completed", "rolled_back"), 0.5, 0.1)
        took = time.monotonic() - t0
        self.longest = max(self.longest, took)
        if self.world.healing.is_set():
            self.say("  %s ended %.0f s after the faults paused; faults resume" % (name, time.monotonic() - self.heal_started))
            self.world.healing.clear()
        (self.side_outcomes if named else self.outcomes)[st] += 1
        self.current = None
        return st


def run(seed, migrations, gap, log=print, cluster=None, kinds=FAULT_KINDS, writers_per_role=2, beside=0.5):
    """The whole run; returns its summary (a dict). Raises Check on a finding."""
    rnd = random.Random(seed)
    own = None
    if cluster is None:
        own = start_cluster(None, "pgtandem-nemesis-")
        cluster = RestartableCluster(read_env(own + "/pg/env"))
    log("nemesis: seed %d, %d migrations, a fault every ~%.1f s (%s)" % (seed, migrations, gap, ", ".join(kinds)))
    world = World(cluster, rnd, log)
    first, cycle = migration_cycle()
    shape = {"body": "body", "n": "integer", "flag": False, "index": False}
    # tags's columns are the same in every shape: its release from before
    # writes all along, the one built with the migration of tags in flight
    # while it is
    world.roles = {"old": ("", "body"), "new": None, "tags": ("", "body"), "side": None}
    side_shape = {"extra": False}
    world.quiet = threading.Event()
    world.healing = threading.Event()

    def before_finish(action, side):
        # the release the migration leaves behind is retired before the cutover
        if side:
            world.roles["side"] = None if action == "rollback" else world.roles["side"]
        else:
            world.roles["old" if action == "complete" else "new"] = None
    world.before_finish = before_finish

    def after_main(st):
        # the release of the notes shape that lives on writes again
        world.roles["old"] = ("", after_main.shape["body"] if st != "completed" else after_main.after["body"])
        world.roles["new"] = None
    world.after_main = after_main
    checked = [0]

    def quiet_check(shapes):
        world.quiet.set()
        for w in writers:
            if not w.idle.wait(60):
                raise Check("writer %s%d did not go quiet" % (w.role, w.idx))
        checked[0] += check_rows(world, writers, shapes)
        checked[0] += check_rows(world, writers, [("", "body")] + [world.roles["side"]] * bool(world.roles["side"]),
                                 table="tags")
        world.quiet.clear()

    def check_live(name):
        # both live shapes while the migration is in flight: the old
        # release's names without a version, the new one's with it
        quiet_check([world.roles["old"] or ("", shape["body"]), world.roles["new"]])
    world.check_live = check_live
    writers = [Writer(world, role, i, seed * 100 + j, "tags" if role in ("tags", "side") else "notes")
               for j, (role, i) in enumerate([(r, i) for r in ("old", "new", "tags", "side")
                                              for i in range(writers_per_role)])]
    for w in writers:
        w.start()
    driver = Driver(world, rnd, log)
    driver.race_failure = None
    nem = Nemesis(world, driver, seed + 1, gap, list(kinds))
    nem.start()
    t0 = time.monotonic()
    parent = None
    summary = {}
    try:
        for k in range(migrations):
            step = first if k == 0 else cycle[(k - 1) % len(cycle)]
            ops, offline, after = step(shape)
            name = "m%03d" % k
            world.roles["new"] = ("-c pgtandem.version=%s" % name, after["body"])
            complete = rnd.random() < 0.75
            backfill = {"max_rows_per_sec": rnd.choice([1000, 2000, 5000]), "app_p99_budget": 0}
            side, side_step_now = None, None
            if rnd.random() < beside:
                side_step_now = side_step(side_shape)
                side = ({"name": "s%03d" % k, "parent": name, "operations": side_step_now[0],
                         "backfill": {"max_rows_per_sec": rnd.choice([1000, 5000]), "app_p99_budget": 0}},
                        rnd.random() < 0.75)
            after_main.shape, after_main.after = shape, after
            st, side_st = driver.run_one(name, parent, ops, complete, backfill, side)
            log("migration %s (%s): %s%s" % (name, list(ops[0])[0], st, "" if side_st is None else
                                             "; %s beside it (%s): %s" % (side[0]["name"],
                                                                          list(side_step_now[0][0])[0], side_st)))
            if st == "completed":
                retrying(lambda: sql(cluster.uri(db=world.twin), offline), "the offline twin's DDL")
                shape = after
                parent = name
            if side_st == "completed":
                retrying(lambda: sql(cluster.uri(db=world.twin), side_step_now[1]), "the offline twin's DDL")
                side_shape = side_step_now[2]
                parent = side[0]["name"]
            world.roles["side"] = None
            # the release of the shape that lives on writes again, without a version
            world.roles["old"] = ("", shape["body"])
            world.roles["new"] = None
            failure = nem.failure or driver.race_failure or next((w.failure for w in writers if w.failure), None)
            if failure:
                raise Check(failure)
            # the writers quiet, the rows and the schema checked
            quiet_check([("", shape["body"])])
            check_schema(world, "after %s (%s)" % (name, st))
    finally:
        nem.done.set()
        nem.join(120)
        for w in writers:
            w.done.set()
        for w in writers:
            w.join(30)
        for t in driver.racers:
            t.join(ANSWER_S + 10)
        summary = {
            "seed": seed, "migrations": migrations, "outcomes": driver.outcomes, "beside": driver.side_outcomes,
            "failed_starts": driver.failed_starts,
            "ended_after_faults_paused": driver.healed,
            "faults": dict(nem.counts), "faults_total": sum(nem.counts.values()),
            "writes_acknowledged": sum(w.writes for w in writers),
            "writes_lost_answer": sum(len(w.maybe) for w in writers),
            "client_errors": sum(w.errors for w in writers),
            "rows_checked": checked[0], "admin_requests": driver.requests,
            "unanswered": driver.unanswered, "lost_with_proxy": driver.lost_with_proxy,
            "longest_migration_s": round(driver.longest, 1),
            "longest_client_outage_s": round(max(w.longest_outage for w in writers), 2),
            "seconds": round(time.monotonic() - t0, 1),
        }
        log("summary: " + json.dumps(summary))
        world.stop()
        if own:
            subprocess.run(["sh", PGCLUSTER, "stop", own + "/pg"], capture_output=True, timeout=120)
            subprocess.run(["rm", "-rf", own])
    if nem.failure:
        raise Check(nem.failure)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--migrations", type=int, default=12)
    ap.add_argument("--gap", type=float, default=1.0, help="mean seconds between faults")
    ap.add_argument("--json", help="write the summary here")
    a = ap.parse_args()
    start = time.strftime("%H:%M:%S")

    def log(msg):
        print("%s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)
    try:
        s = run(a.seed, a.migrations, a.gap, log)
    except Check as e:
        log("FAILED (seed %d, started %s): %s" % (a.seed, start, e))
        return 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
