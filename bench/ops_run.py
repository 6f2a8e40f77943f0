"""The measuring half of bench/ops.sh (run by it, with the cluster and the
proxy started): every operation kind online (`pgtandem migrate start` and
`complete` through the proxy) and offline (the plain DDL on a twin table),
each under the same small application, and the results as OUT.md and
OUT.json.

For each kind, on a fresh table of ROWS rows copied from one generated
source (so both sides start from the same rows, vacuumed, after a
checkpoint):

  online   the application (one reader: SELECT by id every 10 ms; one
           writer: an UPDATE or an INSERT every 10 ms) runs through the proxy
           as the old release during `migrate start --proxy` (expand and
           backfill, until the migration is active); then it is redeployed
           as the new release (`-c pgtandem.version=<migration>`, the new
           shape's columns) and runs across `migrate complete --proxy`, which
           the proxy refuses while old-release sessions are connected.
  offline  the same application, through the proxy, on the twin table while
           the equivalent DDL runs as one transaction (as Alembic and Rails
           run a migration); it writes the old shape until the transaction
           commits and the new shape after it, so statements that waited on
           the DDL's lock and name a column that is gone fail, as they would.

Each step records its wall time, the WAL it caused (pg_current_wal_lsn
before and after, the application's own writes included), the growth of
pg_total_relation_size of the table (indexes and TOAST included), and the
worst and p99 latency of the application's statements that overlapped it.
A kind that fails keeps its error in its row; the migration is rolled back
and the tables dropped before the next kind.
"""
import datetime
import json
import os
import platform
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg

env = os.environ
rows = int(env.get("ROWS", "1000000"))
binary = env["BIN"]
db = env["DB"]                      # the bench database, directly (superuser)
proxy_uri = env["PROXY_URI"]        # the same database through the proxy
admin = env["ADMIN"]                # http://127.0.0.1:PORT
token = env["PGTANDEM_ADMIN_TOKEN"]
out = env["OUT"]
work = env["WORK"]
command = env.get("COMMAND", "sh bench/ops.sh")
only = env.get("KINDS", "").split()
TABLE, TWIN = "accounts", "accounts_twin"
TICK = 0.010                        # one statement per 10 ms per client
WARMUP = 1.5                        # seconds of traffic before each step

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken",
         "Radia", "Dennis", "Leslie", "Niklaus", "Sophie", "Tony", "Adele", "Butler", "Hedy", "Guido"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton",
        "Thompson", "Perlman", "Ritchie", "Lamport", "Wirth", "Wilson", "Hoare", "Goldberg", "Lampson",
        "Lamarr", "Rossum"]


def sql_array(names):
    return "ARRAY[%s]" % ", ".join("'%s'" % n for n in names)


# ---- the kinds -----------------------------------------------------------------

# A shape is what one release of the application reads and writes:
#   read:   the columns its SELECT by id names
#   insert: column -> (placeholder, value(n)) for its INSERTs (id comes first)
#   update: the same for its UPDATEs by id
def email(n):
    return "user%d@example.com" % n


def payload(n):
    return json.dumps({"plan": ("free", "pro", "team")[n % 3], "seats": n % 50, "tags": ["w%d" % (n % 7)]})


P = "%s"
BASE_READ = ["a", "b", "email", "first", "last", "payload"]
BASE_INSERT = {"a": (P, lambda n: "note %d" % n), "b": (P, lambda n: n % 100000),
               "email": (P, lambda n: None if n % 20 == 0 else email(n)),
               "first": (P, lambda n: FIRST[n % 20]), "last": (P, lambda n: LAST[n % 19]),
               "payload": (P, payload)}


def shape(read=None, insert=None, update=None, drop=(), rename=None):
    """A shape derived from the base table's: `rename` maps old column names
    to new ones, `drop` removes columns, `insert`/`update` add or replace."""
    rename = rename or {}
    r = [rename.get(c, c) for c in BASE_READ if c not in drop] + list(read or [])
    ins = {rename.get(c, c): v for c, v in BASE_INSERT.items() if c not in drop}
    ins.update(insert or {})
    return {"read": r, "insert": ins, "update": update or {}}


def kinds(t):
    """name -> (label, migration operations, offline statements, old shape,
    new shape) for table t (the online table or its twin)."""
    up_email = {"email": (P, lambda n: None if n % 20 == 0 else email(n))}
    return {
        "rename_column": (
            "rename_column, same type (`a` -> `label`)",
            [{"rename_column": {"table": t, "from": "a", "to": "label"}}],
            ["ALTER TABLE %s RENAME COLUMN a TO label" % t],
            shape(update={"a": (P, lambda n: "renamed %d" % n)}),
            shape(rename={"a": "label"}, update={"label": (P, lambda n: "renamed %d" % n)})),
        "rename_column_jsonb": (
            "rename_column to jsonb (`payload` text -> `doc` jsonb, up/down casts)",
            [{"rename_column": {"table": t, "from": "payload", "to": "doc", "type": "jsonb",
                                "up": "payload::jsonb", "down": "doc::text"}}],
            ["ALTER TABLE %s ALTER COLUMN payload TYPE jsonb USING payload::jsonb" % t,
             "ALTER TABLE %s RENAME COLUMN payload TO doc" % t],
            shape(update={"payload": (P, payload)}),
            shape(rename={"payload": "doc"}, insert={"doc": ("%s::jsonb", payload)},
                  update={"doc": ("%s::jsonb", payload)})),
        "add_column_default": (
            "add_column, nullable, constant default (`status text DEFAULT 'active'`)",
            [{"add_column": {"table": t, "column": {"name": "status", "type": "text", "default": "'active'"}}}],
            ["ALTER TABLE %s ADD COLUMN status text DEFAULT 'active'" % t],
            shape(update={"a": (P, lambda n: "touched %d" % n)}),
            shape(read=["status"], insert={"status": (P, lambda n: "trial")},
                  update={"status": (P, lambda n: ("active", "closed")[n % 2])})),
        "add_column_uuid": (
            "add_column `uid uuid NOT NULL DEFAULT gen_random_uuid()`",
            [{"add_column": {"table": t, "column": {"name": "uid", "type": "uuid", "nullable": False,
                                                    "default": "gen_random_uuid()"}}}],
            ["ALTER TABLE %s ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid()" % t],
            shape(update={"a": (P, lambda n: "touched %d" % n)}),
            shape(read=["uid"], update={"a": (P, lambda n: "touched %d" % n)})),
        "add_column_up": (
            "add_column with up (`email_domain` = `split_part(email, '@', 2)`)",
            [{"add_column": {"table": t, "column": {"name": "email_domain", "type": "text"},
                             "up": "split_part(email, '@', 2)"}}],
            ["ALTER TABLE %s ADD COLUMN email_domain text" % t,
             "UPDATE %s SET email_domain = split_part(email, '@', 2)" % t],
            shape(update=up_email),
            shape(read=["email_domain"], insert={"email_domain": (P, lambda n: "example.com")},
                  update={"email": (P, email), "email_domain": (P, lambda n: "example.com")})),
        "alter_column_not_null": (
            "alter_column `email` nullable: false, up `COALESCE(email, 'unknown@example.com')`",
            [{"alter_column": {"table": t, "column": "email", "nullable": False,
                               "up": "COALESCE(email, 'unknown@example.com')", "down": "email"}}],
            # without the lock the old release's NULL inserts that commit after the UPDATE make SET NOT NULL fail
            ["LOCK TABLE %s IN SHARE MODE" % t,
             "UPDATE %s SET email = 'unknown@example.com' WHERE email IS NULL" % t,
             "ALTER TABLE %s ALTER COLUMN email SET NOT NULL" % t],
            shape(update=up_email),
            shape(insert={"email": (P, email)}, update={"email": (P, email)})),
        "alter_column_type": (
            "alter_column `b` int -> bigint (up `b::bigint`, down `b::int`)",
            [{"alter_column": {"table": t, "column": "b", "type": "bigint", "up": "b::bigint", "down": "b::int"}}],
            ["ALTER TABLE %s ALTER COLUMN b TYPE bigint" % t],
            shape(update={"b": (P, lambda n: n % 100000)}),
            shape(update={"b": (P, lambda n: n % 100000)})),
        "alter_column_in_place": (
            "alter_column `a` text -> varchar and default `'none'` (no up/down: in place)",
            [{"alter_column": {"table": t, "column": "a", "type": "varchar", "default": "'none'"}}],
            ["ALTER TABLE %s ALTER COLUMN a TYPE varchar, ALTER COLUMN a SET DEFAULT 'none'" % t],
            shape(update={"a": (P, lambda n: "touched %d" % n)}),
            shape(update={"a": (P, lambda n: "touched %d" % n)})),
        "drop_column": (
            "drop_column `payload` (down `'{}'`)",
            [{"drop_column": {"table": t, "column": "payload", "down": "'{}'"}}],
            ["ALTER TABLE %s DROP COLUMN payload" % t],
            shape(update={"payload": (P, payload)}),
            shape(drop=("payload",), update={"a": (P, lambda n: "touched %d" % n)})),
        "create_index": (
            "create_index on `email`",
            [{"create_index": {"table": t, "name": "%s_email_idx" % t, "columns": ["email"]}}],
            ["CREATE INDEX %s_email_idx ON %s (email)" % (t, t)],
            shape(update={"email": (P, email)}),
            shape(update={"email": (P, email)})),
        "create_constraint_check": (
            "create_constraint check `b >= 0`",
            [{"create_constraint": {"table": t, "name": "%s_b_nonneg" % t, "type": "check", "check": "b >= 0"}}],
            ["ALTER TABLE %s ADD CONSTRAINT %s_b_nonneg CHECK (b >= 0)" % (t, t)],
            shape(update={"b": (P, lambda n: n % 100000)}),
            shape(update={"b": (P, lambda n: n % 100000)})),
        "split": (
            "split: add `full_name` = `first || ' ' || last`, drop `first` and `last` (split_part downs), "
            "one migration",
            [{"add_column": {"table": t, "column": {"name": "full_name", "type": "text"},
                             "up": "first || ' ' || last"}},
             {"drop_column": {"table": t, "column": "first", "down": "split_part(full_name, ' ', 1)"}},
             {"drop_column": {"table": t, "column": "last", "down": "split_part(full_name, ' ', 2)"}}],
            ["ALTER TABLE %s ADD COLUMN full_name text" % t,
             "UPDATE %s SET full_name = first || ' ' || last" % t,
             "ALTER TABLE %s DROP COLUMN first, DROP COLUMN last" % t],
            shape(update={"first": (P, lambda n: FIRST[n % 20])}),
            shape(drop=("first", "last"), read=["full_name"],
                  insert={"full_name": (P, lambda n: "%s %s" % (FIRST[n % 20], LAST[n % 19]))},
                  update={"full_name": (P, lambda n: "%s %s" % (FIRST[n % 20], LAST[n % 19]))})),
    }


ORDER = list(kinds(TABLE))


# ---- the database ------------------------------------------------------------------

def run(sql, params=None):
    with psycopg.connect(db, autocommit=True, application_name="ops-setup") as c:
        c.execute(sql, params)


def probe(table):
    """(WAL position, table+index size) from a connection opened for it and
    closed at once, so the proxy never finds a session that bypasses it."""
    with psycopg.connect(db, autocommit=True, application_name="ops-probe") as c:
        lsn, size = c.execute("SELECT pg_current_wal_lsn()::text, coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
                              (table,)).fetchone()
    return lsn, size


def wal_bytes(a, b):
    with psycopg.connect(db, autocommit=True, application_name="ops-probe") as c:
        return int(c.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (b, a)).fetchone()[0])


def load_source():
    run("DROP TABLE IF EXISTS ops_src")
    run("CREATE TABLE ops_src (id bigint, a text, b int, email text, first text, last text, payload text)")
    run("INSERT INTO ops_src SELECT g, 'note ' || g, (g * 7919::bigint) %% 100000,"
        " CASE WHEN g %% 20 = 0 THEN NULL ELSE 'user' || g || '@example.com' END,"
        " (" + sql_array(FIRST) + ")[g %% 20 + 1], (" + sql_array(LAST) + ")[g %% 19 + 1],"
        " json_build_object('plan', (ARRAY['free', 'pro', 'team'])[g %% 3 + 1], 'seats', g %% 50,"
        "   'tags', json_build_array('w' || g %% 7, 'x' || g %% 11), 'since', date '2020-01-01' + g %% 1500)::text"
        " FROM generate_series(1, %s) g", (rows,))


def fresh_table(t):
    run("DROP TABLE IF EXISTS %s CASCADE" % t)
    run("CREATE TABLE %s (id bigint PRIMARY KEY, a text, b int, email text, first text, last text, payload text)" % t)
    run("INSERT INTO %s SELECT * FROM ops_src ORDER BY id" % t)
    run("VACUUM (ANALYZE) %s" % t)
    run("CHECKPOINT")


# ---- the application ---------------------------------------------------------------

class Client(threading.Thread):
    """One connection through the proxy, one statement every 10 ms, each
    timed as (start, end, error or None). The statements follow app.shape,
    which the offline run switches when the DDL commits."""

    def __init__(self, app, role):
        super().__init__(daemon=True)
        self.app, self.role, self.samples, self.conn = app, role, [], None

    def connect(self):
        self.conn = psycopg.connect(proxy_uri, autocommit=True, options=self.app.options,
                                    application_name="ops-" + self.role, connect_timeout=10)

    def statement(self, n):
        t, sh = self.app.table, self.app.shape
        if self.role == "reader":
            return "SELECT id, %s FROM %s WHERE id = %%s" % (", ".join(sh["read"]), t), (1 + (n * 7919) % rows,)
        if n % 2 == 0 and sh["update"]:
            cols = list(sh["update"].items())
            sets = ", ".join("%s = %s" % (c, ph) for c, (ph, _) in cols)
            return ("UPDATE %s SET %s WHERE id = %%s" % (t, sets),
                    tuple(f(n) for _, (_, f) in cols) + (1 + (n * 104729) % rows,))
        cols = list(sh["insert"].items())
        return ("INSERT INTO %s (id, %s) VALUES (%%s, %s)" % (t, ", ".join(c for c, _ in cols),
                                                           ", ".join(ph for _, (ph, _) in cols)),
                (self.app.next_id(),) + tuple(f(n) for _, (_, f) in cols))

    def run(self):
        n, nxt = 0, time.monotonic()
        while not self.app.stopping:
            n += 1
            t0 = time.monotonic()
            err = None
            try:
                if self.conn is None or self.conn.closed:
                    self.connect()
                sql, params = self.statement(n)
                cur = self.conn.execute(sql, params)
                if cur.description:
                    cur.fetchall()
            except Exception as e:  # kept with the sample, the run goes on
                err = ("%s: %s" % (type(e).__name__, e)).strip().splitlines()[0][:300]
                if self.conn is not None and (self.conn.closed or self.conn.broken):
                    self.conn = None
            self.samples.append((t0, time.monotonic(), err))
            nxt += TICK
            now = time.monotonic()
            if nxt < now - TICK:
                nxt = now  # late (a held or blocked statement): no burst to catch up
            else:
                time.sleep(max(0.0, nxt - now))
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass


class App:
    def __init__(self, table, shape_, options, id_base):
        self.table, self.shape, self.options = table, shape_, options
        self.stopping, self._id, self._lock = False, id_base, threading.Lock()
        self.clients = [Client(self, "reader"), Client(self, "writer")]

    def next_id(self):
        with self._lock:
            self._id += 1
            return self._id

    def start(self):
        for c in self.clients:
            c.start()
        return self

    def stop(self):
        self.stopping = True
        for c in self.clients:
            c.join(timeout=120)

    def samples(self):
        return [s for c in self.clients for s in c.samples]


def latency(samples, t0, t1):
    """Worst and p99 (ms) of the statements that overlapped [t0, t1], their
    count, errors and the first error."""
    lat = sorted((e - s) * 1000.0 for s, e, _ in samples if s <= t1 and e >= t0)
    errs = [err for s, e, err in samples if s <= t1 and e >= t0 and err]
    if not lat:
        return {"n": 0, "worst_ms": None, "p99_ms": None, "errors": 0, "first_error": None}
    slowest = sorted(((e - s) * 1000.0, s - t0, err) for s, e, err in samples if s <= t1 and e >= t0)[-3:]
    return {"n": len(lat), "worst_ms": lat[-1], "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "errors": len(errs), "first_error": errs[0] if errs else None,
            "slowest": [{"ms": round(m, 1), "started_s_into_step": round(o, 3), "error": err}
                        for m, o, err in reversed(slowest)]}


# ---- the proxy and the CLI -----------------------------------------------------------

def api(method, path, timeout=60):
    req = urllib.request.Request(admin + path, method=method, data=b"" if method == "POST" else None,
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body or b"null")
        except ValueError:
            return e.code, body.decode(errors="replace")


def wait_versions(want, timeout=30):
    """Waits until the proxy's session counts per version match `want`
    (a dict of version -> count; missing versions must be 0)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, st = api("GET", "/status")
        v = st.get("versions", {}) if code == 200 else {}
        if all(v.get(k, 0) == n for k, n in want.items()):
            return
        time.sleep(0.05)
    raise RuntimeError("the proxy's sessions per version did not become %s: %s" % (want, v))


def migrate(args, timeout):
    t0 = time.monotonic()
    r = subprocess.run([binary, "migrate"] + args + ["--proxy", admin], capture_output=True, text=True,
                       timeout=timeout)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        lines = [l for l in (r.stderr + r.stdout).splitlines() if l.strip()]
        errs = [l for l in lines if "error" in l.lower()] or lines
        raise RuntimeError("migrate %s exited %d: %s" % (args[0], r.returncode, (errs[-1] if errs else "")[:600]))
    return secs, r.stdout + r.stderr


def engine_times(name):
    with psycopg.connect(db, autocommit=True, application_name="ops-probe") as c:
        row = c.execute("SELECT extract(epoch FROM backfilled_at - started_at), contract_attempts,"
                        " contract_lock_wait_ms FROM pgtandem.migrations WHERE name = %s", (name,)).fetchone()
    return {"engine_start_s": float(row[0]) if row and row[0] is not None else None,
            "contract_attempts": row[1] if row else None, "contract_lock_wait_ms": row[2] if row else None}


def last_completed():
    with psycopg.connect(db, autocommit=True, application_name="ops-probe") as c:
        if c.execute("SELECT to_regclass('pgtandem.migrations')").fetchone()[0] is None:
            return None
        row = c.execute("SELECT name FROM pgtandem.migrations WHERE status = 'completed'"
                        " ORDER BY completed_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def clean_online(name):
    """Rolls back whatever of the migration is left, then drops the table."""
    notes = []
    code, cur = api("GET", "/migrations/current")
    if code == 200 and isinstance(cur, dict) and cur.get("name") == name and \
            cur.get("phase") not in ("completed", "rolled_back"):
        c2, body = api("POST", "/migrations/current/rollback", timeout=900)
        if c2 != 200:
            notes.append("rollback through the proxy answered %s: %s" % (c2, body))
            r = subprocess.run([binary, "migrate", "rollback", "--db", db], capture_output=True, text=True,
                               timeout=900)
            if r.returncode != 0:
                notes.append("migrate rollback --db exited %d: %s" % (r.returncode, r.stderr.strip()[-300:]))
    run("DROP TABLE IF EXISTS %s CASCADE" % TABLE)
    run("DROP SCHEMA IF EXISTS pgtandem_%s CASCADE; DROP SCHEMA IF EXISTS pgtandem_%s_old CASCADE" % (name, name))
    return notes


# ---- one kind -------------------------------------------------------------------------

def step_figures(before, after, app, t0, t1):
    return {"wal_bytes": wal_bytes(before[0], after[0]), "size_before": before[1], "size_after": after[1],
            "app": latency(app.samples(), t0, t1), "app_idle": latency(app.samples(), t0 - WARMUP, t0)}


def online(kind):
    label, ops, _, old, new = kinds(TABLE)[kind]
    name = "ops_" + kind
    res = {"error": None}
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:  # migrations are forward-only: each builds on the last one completed
        json.dump({"name": name, "parent": last_completed(), "operations": ops}, f, indent=1)
    fresh_table(TABLE)
    app = None
    try:
        app = App(TABLE, old, "", rows + 1_000_000).start()
        wait_versions({"old": 2})
        time.sleep(WARMUP)
        before = probe(TABLE)
        t0 = time.monotonic()
        try:
            secs, text = migrate(["start", path, "--quiet"], timeout=1800)
        finally:
            t1 = time.monotonic()
            after = probe(TABLE)
            res["start"] = dict(step_figures(before, after, app, t0, t1), seconds=t1 - t0)
        res["start"].update(engine_times(name), cli=text[-3000:])

        # the new release replaces the old one, then the cutover
        app.stop()
        app = App(TABLE, new, "-c pgtandem.version=" + name, rows + 2_000_000).start()
        wait_versions({"old": 0, name: 2})
        time.sleep(WARMUP)
        before = probe(TABLE)
        t0 = time.monotonic()
        try:
            secs, text = migrate(["complete"], timeout=900)
        finally:
            t1 = time.monotonic()
            after2 = probe(TABLE)
            res["complete"] = dict(step_figures(before, after2, app, t0, t1), seconds=t1 - t0,
                                   size_before_start=res["start"]["size_before"])
        res["complete"]["cli"] = text[-3000:]
        res["complete"].update(engine_times(name))
    except Exception as e:
        res["error"] = str(e).splitlines()[0][:600] if str(e) else type(e).__name__
    finally:
        if app is not None:
            app.stop()
        res["cleanup"] = clean_online(name)
    return res


def offline(kind):
    _, _, statements, old, new = kinds(TWIN)[kind]
    res = {"error": None, "statements": statements}
    fresh_table(TWIN)
    app = None
    try:
        app = App(TWIN, old, "", rows + 3_000_000).start()
        wait_versions({"old": 2})
        time.sleep(WARMUP)
        before = probe(TWIN)
        t0 = time.monotonic()
        try:
            with psycopg.connect(db, application_name="ops-offline-ddl") as c:  # one transaction
                for s in statements:
                    c.execute(s)
                c.commit()
                app.shape = new
        finally:
            t1 = time.monotonic()
            time.sleep(0.2)  # the statements released by the commit finish
            after = probe(TWIN)
            res["ddl"] = dict(step_figures(before, after, app, t0, t1), seconds=t1 - t0)
    except Exception as e:
        res["error"] = str(e).splitlines()[0][:600] if str(e) else type(e).__name__
    finally:
        if app is not None:
            app.stop()
        run("DROP TABLE IF EXISTS %s CASCADE" % TWIN)
    return res


# ---- the report -------------------------------------------------------------------------

def mb(b):
    return "%.1f" % (b / 1048576.0)


def ms(a):
    if not a or a["worst_ms"] is None:
        return "-"
    s = "%.0f / %.0f" % (a["worst_ms"], a["p99_ms"])
    return s + (" (%d err)" % a["errors"] if a["errors"] else "")


def cells(kind, r):
    on, off = r["online"], r["offline"]
    st, co, dd = on.get("start"), on.get("complete"), off.get("ddl")
    c = [kind]
    c.append("%.2f" % st["seconds"] if st else "-")
    c.append(("%.2f" % co["seconds"] + (" (%d attempts)" % co["contract_attempts"]
                                         if (co.get("contract_attempts") or 1) > 1 else "")) if co else "-")
    c.append(" / ".join(mb(x["wal_bytes"]) for x in (st, co) if x) or "-")
    c.append(" / ".join(mb(x["size_after"] - st["size_before"]) for x in (st, co) if x) or "-")
    c.append(ms(st["app"]) if st else "-")
    c.append(ms(co["app"]) if co else "-")
    c.append("%.2f" % dd["seconds"] if dd else "-")
    c.append(mb(dd["wal_bytes"]) if dd else "-")
    c.append(mb(dd["size_after"] - dd["size_before"]) if dd else "-")
    c.append(ms(dd["app"]) if dd else "-")
    errs = []
    if on["error"]:
        errs.append("online: " + on["error"])
    if off["error"]:
        errs.append("offline: " + off["error"])
    c.append("; ".join(e.replace("|", "\\|") for e in errs) or "")
    return "| " + " | ".join(c) + " |"


def goals(results):
    lines = []
    worst = []
    for k, r in results.items():
        for step in ("start", "complete"):
            s = r["online"].get(step)
            if s and s["app"]["worst_ms"] is not None:
                worst.append((s["app"]["worst_ms"], k, step))
    over = sorted((w for w in worst if w[0] > 100), reverse=True)
    failed = [k for k, r in results.items() if r["online"]["error"]]
    lines.append("- Worst application latency <= 100 ms during every online step: **%s**%s%s." % (
        "met" if not over and not failed else "not met",
        (" (over: %s)" % ", ".join("%s %s %.0f ms" % (k, s, w) for w, k, s in over)) if over else "",
        (" (no figure for the kinds that failed: %s)" % ", ".join(failed)) if failed else ""))
    r = results.get("rename_column")
    if r:
        st, co = r["online"].get("start"), r["online"].get("complete")
        if st and co:
            wal = st["wal_bytes"] + co["wal_bytes"]
            growth = co["size_after"] - st["size_before"]
            ok = st["seconds"] < 1 and wal < 1048576 and abs(growth) < 524288
            lines.append("- Same-type rename of %d rows: start %.2f s (< 1 s), WAL %.2f MB over start and complete "
                         "(< 1 MB), size %+.2f MB (unchanged, within the application's own inserts): **%s**." % (
                             rows, st["seconds"], wal / 1048576.0, growth / 1048576.0, "met" if ok else "not met"))
        else:
            lines.append("- Same-type rename: **not met** (%s)." % r["online"]["error"])
    return lines


def report(results, header, started):
    lines = ["# Operation kinds online and offline, %s" % header["date"], "",
             "%d rows per table (`id bigint PRIMARY KEY, a text, b int, email text, first text, last text, payload "
             "text`, 5 %% NULL emails, payload JSON as text; %.0f MB with its index), Postgres %s, %s (nproc %d). "
             "Command: `%s`. Whole run %.0f s." % (rows, header["table_mb"], header["postgres"], header["machine"],
                                                   header["nproc"], command, time.time() - started), "",
             "Online: `pgtandem migrate start FILE --proxy` (expand + backfill until active) with the application "
             "running through the proxy as the old release, then the application redeployed as the new release and "
             "`pgtandem migrate complete --proxy` (the proxy refuses the complete while old-release sessions are "
             "connected). Offline: the plain DDL on a twin table of the same rows, as one transaction, with the same "
             "application through the proxy. The application: one reader (`SELECT` by id every 10 ms) and one "
             "writer (an `UPDATE` by id or an `INSERT` every 10 ms, writing the column the operation changes). "
             "Latency: worst / p99 (ms) of the application's statements that overlapped the step; `err`: "
             "statements that failed. WAL: `pg_current_wal_lsn()` before and after the step (the application's own "
             "writes included). Growth: `pg_total_relation_size` (table, TOAST and indexes) after the step minus "
             "before `start` (online) or before the DDL (offline). `start s` is the CLI's wall time, which polls "
             "the proxy every 250 ms (the engine's own expand + backfill time is in the .json as `engine_start_s`); "
             "`complete s` names the contract's attempts when there was more than one.", "",
             "| kind | start s | complete s | WAL MB start / complete | growth MB start / complete | app worst / p99 "
             "ms, start | app worst / p99 ms, complete | offline s | offline WAL MB | offline growth MB | offline app "
             "worst / p99 ms | error |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for k, r in results.items():
        lines.append(cells(k, r))
    lines += ["", "Operations:", ""]
    for k in results:
        lines.append("- `%s`: %s; offline `%s`" % (k, kinds(TABLE)[k][0], "; ".join(kinds(TWIN)[k][2])))
    idle = [s["app_idle"]["p99_ms"] for r in results.values() for s in
            (r["online"].get("start"), r["online"].get("complete"), r["offline"].get("ddl"))
            if s and s["app_idle"]["p99_ms"] is not None]
    if idle:
        idle.sort()
        lines += ["", "The application's p99 in the %.1f s before each step (no migration running): median %.1f ms, "
                      "highest %.1f ms." % (WARMUP, idle[len(idle) // 2], idle[-1])]
    seen = ["- %s, %s: %d statement(s) failed, the first: `%s`" % (k, step, a["errors"], a["first_error"])
            for k, r in results.items()
            for step, a in (("online start", (r["online"].get("start") or {}).get("app")),
                            ("online complete", (r["online"].get("complete") or {}).get("app")),
                            ("offline", (r["offline"].get("ddl") or {}).get("app")))
            if a and a["errors"]]
    if seen:
        lines += ["", "Statements of the application that failed (offline: statements that waited on the DDL's lock "
                      "and then named a column that was gone, or a prepared statement whose result type changed):",
                  ""] + seen
    lines += ["", "Goals (on a quiet machine; load average %s at the start of this run, %s at its end):"
              % (header["load_start"], loadavg()), ""] + goals(results)
    return "\n".join(lines) + "\n"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    started = time.time()
    with psycopg.connect(db, autocommit=True) as c:
        version = c.execute("SHOW server_version").fetchone()[0]
    header = {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
              "machine": "%s, %d cpus" % (platform.platform(), os.cpu_count()), "nproc": os.cpu_count(),
              "postgres": version, "rows": rows, "command": command, "load_start": loadavg()}
    print("loading %d rows" % rows, flush=True)
    load_source()
    fresh_table(TWIN)
    header["table_mb"] = probe(TWIN)[1] / 1048576.0
    run("DROP TABLE %s" % TWIN)
    results = {}
    for kind in ORDER:
        if only and kind not in only:
            continue
        k0 = time.time()
        on = online(kind)
        off = offline(kind)
        results[kind] = {"online": on, "offline": off}
        print(cells(kind, results[kind]), "(%.0f s)" % (time.time() - k0), flush=True)
        for note in on.get("cleanup", []):
            print("  cleanup: " + note, flush=True)
    text = report(results, header, started)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump(dict(header, results=results), f, indent=1, default=str)
    print()
    print(text)
    print("wrote %s.md and %s.json" % (out, out))


main()
