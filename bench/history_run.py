"""The replaying half of bench/history.sh (run by it, with the cluster
started and the databases `online` and `twin` created): a project's real
migration history, its later migrations online through the proxy and
offline on the twin, and the results as OUT.md and OUT.json.

  base     the first BASE migrations (default: half) run offline (psql
           -v ON_ERROR_STOP=1 -f) on both databases; then every table gets
           ROWS rows made from its columns' types (NOT NULL filled, foreign
           keys pointing at rows already made, enums from their labels); a
           table where no row could be made stays empty and is counted.
           With FILL_NEW=1, after each replayed migration the tables still
           empty (those it created) get rows the same way, on both
           databases (off by default: histories add NOT NULL columns without
           a default to tables that were still empty in production, and the
           failures then cascade).
  replay   each later migration, in the directory's order (the layouts
           `pgtandem migrate start DIR` reads), is copied out to its own
           file and run online: `migrate start FILE --name N --parent P
           --proxy` while a writer of the old release (a SELECT and an
           INSERT every 20 ms on a table the file names, through the proxy)
           runs, then `migrate complete --revert-window-s` and `migrate
           finalize`. The same file runs offline on the twin. Then both
           schemas are dumped (pg_dump --schema-only, pgtandem's schemas
           left out) and compared statement by statement.
  rows     before each migration its file is tried offline on the twin
           inside a transaction that is rolled back; when it fails there
           on a data error (SQLSTATE class 22 or 23: a unique index built
           from generated keys, a NOT NULL column added without a default
           to a table that was empty in production), the rows are the
           harness's own, not the history's: every table of both databases
           is emptied, the migration is replayed on the empty tables (with
           no writer), and the tables get their rows again after it. Such
           migrations are marked in the notes and counted apart. Likewise
           when a file that did not run online, applied offline to the
           online database, would fail on the rows the old-release writer
           added there (the twin has none): both are emptied first, so the
           two databases do not part for the harness's own rows.
  outcome  `online, identical`; `refused before DDL` (start exited 2);
           `failed after DDL` (any other failure of start, complete or
           finalize, or a timeout); `differed` (both ran, the schemas do
           not match). A refused or failed migration is rolled back and run
           offline on the online database too, so the chain goes on.

Every migrate command is bounded (MIG_TIMEOUT_S); a proxy that died is
started again on the same ports, and counted.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (beside this file)

env = os.environ
hdir = env["HISTORY_DIR"]
binary = env["BIN"]
work = env["WORK"]
pgbin = env["PGBIN"]
online_db, twin_db = env["ONLINE_DB"], env["TWIN_DB"]
port, aport = int(env["PORT"]), int(env["APORT"])
admin = "http://127.0.0.1:%d" % aport
proxy_uri = "postgresql://postgres:postgres@127.0.0.1:%d/online?sslmode=disable" % port
out = env["OUT"]
command = env.get("COMMAND", "sh bench/history.sh DIR")
rows_per_table = int(env.get("ROWS", "5"))
mig_timeout = int(env.get("MIG_TIMEOUT_S", "300"))
fill_new = env.get("FILL_NEW", "0") == "1"
TICK = float(env.get("WRITER_TICK_MS", "20")) / 1000.0


# ---- the history -------------------------------------------------------------------

def version_key(v):
    """Flyway's and golang-migrate's versions by value, part by part."""
    return [int(p) if p.isdigit() else p for p in re.split(r"[._]", v)]


def history(d):
    """(layout, [(name, path)]) in the order the tool that wrote them runs them."""
    files = sorted(os.listdir(d))
    journal = os.path.join(d, "meta", "_journal.json")
    if os.path.exists(journal):
        with open(journal) as f:
            tags = [e["tag"] for e in json.load(f)["entries"]]
        return "drizzle-kit", [(t, os.path.join(d, t + ".sql")) for t in tags]
    prisma = [f for f in files if os.path.isfile(os.path.join(d, f, "migration.sql"))]
    if prisma:
        return "Prisma", [(f, os.path.join(d, f, "migration.sql")) for f in sorted(prisma)]
    flyway = [f for f in files if re.match(r"^V[0-9][0-9._]*__.*\.sql$", f)]
    if flyway:
        flyway.sort(key=lambda f: version_key(f[1:].split("__")[0]))
        return "Flyway", [(f[:-4], os.path.join(d, f)) for f in flyway]
    gm = [f for f in files if re.match(r"^[0-9]+_.*\.up\.sql$", f)]
    if gm:
        gm.sort(key=lambda f: int(f.split("_")[0]))
        return "golang-migrate", [(f[:-7], os.path.join(d, f)) for f in gm]
    num = [f for f in files if f.endswith(".sql")]
    num.sort(key=lambda f: (int(re.match(r"^([0-9]*)", f).group(1) or 0), f))
    return "numbered files", [(f[:-4], os.path.join(d, f)) for f in num]


# ---- the databases --------------------------------------------------------------------

def short(text, n=400):
    text = " ".join((text or "").split())
    return text[:n]


def psql_file(db, path):
    """Runs a migration file offline; None or the error."""
    r = subprocess.run([os.path.join(pgbin, "psql"), db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-f", path],
                       capture_output=True, text=True, timeout=mig_timeout)
    if r.returncode == 0:
        return None
    errs = [l for l in r.stderr.splitlines() if "ERROR" in l] or r.stderr.splitlines() or ["exit %d" % r.returncode]
    return short(errs[0])


def psql_dry_run(db, path):
    """The file run in one transaction that is rolled back: None, or
    (SQLSTATE, error) of its first error."""
    r = subprocess.run([os.path.join(pgbin, "psql"), db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                        "-c", "BEGIN", "-f", path, "-c", "ROLLBACK"],
                       capture_output=True, text=True, timeout=mig_timeout)
    if r.returncode == 0:
        return None
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):\s*(.*)", r.stderr)
    return (m.group(1), short(m.group(2), 300)) if m else (None, short(r.stderr, 300))


def empty_tables(db):
    """Every user table emptied (the harness's generated rows gone)."""
    names = [t[1] for t in query(db, USER_TABLES)]
    if names:
        query(db, "TRUNCATE %s CASCADE" % ", ".join(names))


def query(db, sql, params=None):
    with psycopg.connect(db, autocommit=True, application_name="history-probe") as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else None


USER_TABLES = """
SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
   AND n.nspname NOT LIKE 'pgtandem%%'
 ORDER BY 2"""

COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
       coalesce(bt.typcategory, t.typcategory), coalesce(bt.typname, t.typname), t.typtype,
       CASE WHEN a.atttypmod > 4 THEN a.atttypmod - 4 END,
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = coalesce(nullif(t.typbasetype, 0), a.atttypid))
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type bt ON bt.oid = nullif(t.typbasetype, 0)
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""

FKEYS = """
SELECT c.confrelid, quote_ident(n.nspname) || '.' || quote_ident(r.relname),
       (SELECT array_agg(attname ORDER BY k.i) FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
          JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n),
       (SELECT array_agg(attname ORDER BY k.i) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
          JOIN pg_attribute ON attrelid = c.confrelid AND attnum = k.n)
  FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE c.conrelid = %s AND c.contype = 'f'"""


def literal(table, col, typ, cat, base, length, labels, i):
    """A text value Postgres casts to the column's type, or None (NULL)."""
    if labels:
        return labels[i % len(labels)]
    if cat == "A":
        return "{}"
    if base in ("uuid",):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "%s.%s.%d" % (table, col, i)))
    if base in ("json", "jsonb"):
        return "{}"
    if cat == "B":
        return "true" if i % 2 == 0 else "false"
    if cat == "N":
        return str(i % 32000 + 1)  # fits a smallint
    if cat == "D":
        return "2024-01-%02d 12:00:00" % (i % 28 + 1) if base != "time" and base != "timetz" else "12:00:00"
    if cat == "T":
        return "%d days" % (i + 1)
    if base == "bytea":
        return "\\x%02x" % (i % 256)
    if base in ("inet", "cidr"):
        return "10.0.%d.%d" % (i // 250 % 250, i % 250 + 1)
    if base in ("macaddr",):
        return "08:00:2b:01:02:%02x" % (i % 256)
    if base == "tsvector":
        return "w%d" % i
    if cat == "S" or base in ("citext",):
        # an identifier-like column holds a uuid (a later migration may cast
        # it to uuid); any other a JSON string (one may cast it to jsonb)
        if re.search(r"(^|_)(at|date|time)$|[a-z](At|Date|Time)$", col) and (not length or length >= 24):
            return "2024-01-%02dT12:00:00.000Z" % (i % 28 + 1)  # a time kept as text, as ORMs write it
        if re.search(r"(^|_)id$|Id$", col) and (not length or length >= 36):
            return str(uuid.uuid5(uuid.NAMESPACE_URL, "%s.%s.%d" % (table, col, i)))
        v = '"%s%d"' % (col[:3], i)
        if length and length < len(v):
            v = ("%d" % i)[-length:]
        return v
    return None


def with_rows(db, tables):
    """The (oid, qname, relname) of `tables` that have at least one row."""
    with psycopg.connect(db, autocommit=True, application_name="history-probe") as c:
        return [t for t in tables if c.execute("SELECT EXISTS (SELECT FROM %s)" % t[1]).fetchone()[0]]


def table_info(db, oid):
    with psycopg.connect(db, autocommit=True, application_name="history-probe") as c:
        cols = c.execute(COLUMNS, (oid,)).fetchall()
        fks = c.execute(FKEYS, (oid,)).fetchall()
    return cols, fks


def row_statement(db, qname, relname, cols, fks, i, refrows):
    """INSERT of row i: every column without a default gets a value; the
    columns of a foreign key copy a row of the table it points at."""
    values = {}
    for ref_oid, ref_qname, local, remote in fks:
        pick = refrows.get((ref_oid, tuple(remote)))
        if pick is None:
            pick = [r for r in query(db, "SELECT %s FROM %s LIMIT 20" % (
                ", ".join('"%s"' % x.replace('"', '""') for x in remote), ref_qname))]
            refrows[(ref_oid, tuple(remote))] = pick
        if not pick:
            for lc in local:
                values[lc] = None
            continue
        row = pick[i % len(pick)]
        for lc, v in zip(local, row):
            values[lc] = v
    names, phs, params = [], [], []
    for name, typ, notnull, hasdef, cat, base, typtype, length, labels in cols:
        if name in values:
            v = values[name]
            if v is None and hasdef:
                continue
            names.append(name)
            phs.append("%s")
            params.append(v)
            continue
        if hasdef:
            continue
        v = literal(relname, name, typ, cat, base, length, labels, i)
        if v is None and not notnull:
            continue
        names.append(name)
        phs.append("%%s::%s" % typ)
        params.append(v)
    if not names:
        return "INSERT INTO %s DEFAULT VALUES" % qname, ()
    return ("INSERT INTO %s (%s) VALUES (%s)" % (qname, ", ".join('"%s"' % n.replace('"', '""') for n in names),
                                                  ", ".join(phs)), tuple(params))


def generate_rows(db, only_empty=False):
    """ROWS rows in every table (only_empty: in every table without rows),
    parents before children; returns {table: rows made} and the first error
    of each table left empty."""
    tables = query(db, USER_TABLES)
    if only_empty:
        full = set(t[0] for t in with_rows(db, tables))
        tables = [t for t in tables if t[0] not in full]
    info = {oid: table_info(db, oid) for oid, _, _ in tables}
    done, order, pending = set(), [], list(tables)
    while pending:  # parents first; what is left is a cycle, taken as it comes
        ready = [t for t in pending if all(f[0] in done or f[0] == t[0] for f in info[t[0]][1])] or pending[:1]
        for t in ready:
            order.append(t)
            done.add(t[0])
            pending.remove(t)
    made, errors = {}, {}
    for oid, qname, relname in order:
        cols, fks = info[oid]
        n, refrows = 0, {}
        with psycopg.connect(db, autocommit=True, application_name="history-setup") as c:
            for i in range(rows_per_table):
                try:
                    sql, params = row_statement(db, qname, relname, cols, fks, i, refrows)
                    c.execute(sql, params)
                    n += 1
                except Exception as e:
                    errors.setdefault(qname, short(str(e), 200))
        made[qname] = n
    return made, {t: e for t, e in errors.items() if made[t] == 0}


def dump(db):
    r = subprocess.run([os.path.join(pgbin, "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
                        "--exclude-schema=pgtandem*", db], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("pg_dump: " + short(r.stderr))
    return r.stdout


def statements(text):
    """The dump's statements, comments and session settings left out; the
    column lines of CREATE TABLE sorted (order kept apart)."""
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("--") and not l.startswith("\\")]
    out, order, cur = [], {}, []
    for l in lines:
        cur.append(l)
        if l.rstrip().endswith(";"):
            st = "\n".join(cur)
            cur = []
            if st.startswith("SET ") or st.startswith("SELECT pg_catalog.set_config"):
                continue
            if st.startswith("CREATE TABLE"):
                head, body = st.split("\n", 1) if "\n" in st else (st, "")
                cols = [c.strip().rstrip(",") for c in body.splitlines()[:-1]]
                order[head] = cols
                st = head + "\n" + ",\n".join(sorted(cols)) + "\n" + body.splitlines()[-1]
            out.append(st)
    return out, order


def compare(a_text, b_text):
    """None when the schemas match, else a summary; and a note when only
    the order of columns differs."""
    a, ao = statements(a_text)
    b, bo = statements(b_text)
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    order = [h.split()[2] for h in ao if h in bo and ao[h] != bo[h]]
    note = ("column order differs in %s" % ", ".join(order[:5])) if order else None
    if not only_a and not only_b:
        return None, note
    first = lambda l: short(l[0], 300) if l else ""  # noqa: E731
    return ("%d statement(s) only online, %d only offline; online: %s | offline: %s"
            % (len(only_a), len(only_b), first(only_a), first(only_b))), note


# ---- the proxy and the CLI -------------------------------------------------------------

class Proxy:
    def __init__(self):
        self.proc, self.restarts, self.log = None, 0, os.path.join(work, "proxy.log")

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([binary, "proxy", "--listen", "127.0.0.1:%d" % port,
                                      "--admin", "127.0.0.1:%d" % aport, "--log-level", env.get("LOG_LEVEL", "warn"),
                                      "--upstream", "postgresql://127.0.0.1:%s/?sslmode=require" % env["PGPORT_UP"],
                                      "--engine-db", online_db], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.time() + 20
        import socket
        while time.time() < deadline:
            for p in (port, aport):
                try:
                    socket.create_connection(("127.0.0.1", p), 1).close()
                except OSError:
                    break
            else:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the proxy did not start: " + self.tail())

    def tail(self, n=1500):
        with open(self.log, errors="replace") as f:
            return f.read()[-n:]

    def ensure(self):
        """Starts the proxy again when it died; True when it had."""
        if self.proc.poll() is None:
            return False
        self.restarts += 1
        print("   the proxy died (exit %s); starting it again" % self.proc.returncode, flush=True)
        self.start()
        return True

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def migrate(args):
    """(exit status, the last error line or the output's tail)."""
    try:
        r = subprocess.run([binary, "migrate"] + args + ["--proxy", admin], capture_output=True, text=True,
                           timeout=mig_timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out after %d s" % mig_timeout
    text = r.stderr + r.stdout
    lines = [l for l in text.splitlines() if l.strip()]
    errs = [l for l in lines if "error" in l.lower()] or lines
    return r.returncode, short(errs[0] if errs else "", 1200)


def last_completed():
    rows = query(online_db, "SELECT CASE WHEN to_regclass('pgtandem.migrations') IS NOT NULL THEN 1 END")
    if not rows[0][0]:
        return None
    r = query(online_db, "SELECT name FROM pgtandem.migrations WHERE status = 'completed'"
                         " ORDER BY completed_at DESC LIMIT 1")
    return r[0][0] if r else None


# ---- the old release's writer ----------------------------------------------------------

class Writer(threading.Thread):
    """One session of the old release through the proxy: a SELECT and an
    INSERT of a generated row in turn, every 20 ms; counts errors."""

    def __init__(self, qname, relname, cols, fks, id_base):
        super().__init__(daemon=True)
        self.qname, self.relname, self.cols, self.fks = qname, relname, cols, fks
        self.i, self.stopping, self.n, self.errors, self.first_error = id_base, False, 0, 0, None
        self.rejected = 0
        self.max_ms = 0.0  # the slowest statement it sent, connecting included
        self.max_what, self.t0 = None, 0.0
        self.refrows = {}
        self.select = ", ".join('"%s"' % c[0].replace('"', '""') for c in cols)

    def took(self, t_stmt):
        ms = (time.monotonic() - t_stmt) * 1000.0
        if ms > self.max_ms:
            self.max_ms = ms
            self.max_what = "statement %d (%s) at +%.2f s" % (
                self.n, "a SELECT" if self.n % 2 == 0 else "an INSERT", t_stmt - self.t0)

    def run(self):
        self.t0 = time.monotonic()
        conn = None
        while not self.stopping:
            t_stmt = time.monotonic()
            try:
                if conn is None:  # a connect counts, as the app waits for it too
                    conn = psycopg.connect(proxy_uri, autocommit=True, application_name="history-writer",
                                           connect_timeout=10)
                if self.n % 2 == 0:  # the columns it knows, by name, as an ORM reads them
                    t_stmt = min(t_stmt, time.monotonic())
                    conn.execute("SELECT %s FROM %s LIMIT 5" % (self.select, self.qname)).fetchall()
                else:
                    self.i += 1
                    made = time.monotonic()
                    sql, params = row_statement(online_db, self.qname, self.relname, self.cols, self.fks,
                                                self.i, self.refrows)
                    t_stmt += time.monotonic() - made  # making the row (it reads parents directly) is ours
                    conn.execute(sql, params)
                self.took(t_stmt)
            except Exception as e:
                self.took(t_stmt)
                if str(getattr(e, "sqlstate", "") or "").startswith("23"):
                    # a generated row the table's constraints reject (a key taken, a check):
                    # the data's fault, not the migration's; counted apart
                    self.rejected += 1
                    if conn is not None and (conn.closed or conn.broken):
                        conn = None
                    self.n += 1
                    time.sleep(TICK)
                    continue
                self.errors += 1
                if self.first_error is None:
                    self.first_error = short("%s: %s" % (type(e).__name__, e), 300)
                if conn is not None and (conn.closed or conn.broken):
                    conn = None
            self.n += 1
            time.sleep(TICK)
        if conn is not None:
            conn.close()


def writer_table(path, filled):
    """A table the file names that has rows (else any table with rows)."""
    with open(path, errors="replace") as f:
        text = f.read()
    for qname, relname in filled:
        if re.search(r'(^|[\s."(])"?%s"?([\s(;,]|$)' % re.escape(relname), text):
            return qname
    return filled[0][0] if filled else None


# ---- one migration ----------------------------------------------------------------------

def rollback_online():
    """Takes a migration that did not end online back; one completed with its
    old shape kept (a failed finalize) is reverted, so that it does not hold
    up every migration after it."""
    code, msg = migrate(["rollback"])
    if code != 0 and "migrate revert" in msg:
        rcode, rmsg = migrate(["revert"])
        if rcode == 0:
            return "reverted (the rollback answered: %s)" % short(msg, 200)
        return "rollback exited %d: %s; revert exited %d: %s" % (code, msg, rcode, rmsg)
    return None if code == 0 else "rollback exited %d: %s" % (code, msg)


def replay_one(name, path, prev, proxy, id_base):
    res = {"name": name, "file": os.path.relpath(path, hdir), "writer_statements": 0, "writer_errors": 0,
           "writer_first_error": None, "notes": []}
    if proxy.ensure():
        res["notes"].append("the proxy had died before it and was started again")
    copy = os.path.join(work, "m", name + ".sql")
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copyfile(path, copy)
    t0 = time.monotonic()

    # the file meets the generated rows first, offline and rolled back
    dry = psql_dry_run(twin_db, path)
    emptied = bool(dry and dry[0] and dry[0][:2] in ("22", "23"))
    if emptied:
        for db in (online_db, twin_db):
            empty_tables(db)
        res["emptied_for"] = "%s %s" % dry
        res["notes"].append("replayed on emptied tables, with no writer: offline the file fails on the generated "
                            "rows (%s %s)" % dry)

    # the writer of the old release, on a table this file names
    tables = query(online_db, USER_TABLES)
    filled = [(q, r) for o, q, r in with_rows(online_db, tables)]
    target = writer_table(path, filled)
    writer = None
    if target:
        oid = [o for o, q, _ in tables if q == target][0]
        cols, fks = table_info(online_db, oid)
        writer = Writer(target, [r for _, q, r in tables if q == target][0], cols, fks, id_base)
        res["writer_table"] = target
        writer.start()
        time.sleep(0.2)

    parent = last_completed() or prev
    args = ["start", copy, "--name", name, "--quiet"]
    if parent:
        args += ["--parent", parent]
    t_start = time.monotonic()
    code, msg = migrate(args)
    if writer is not None:  # where the start fell in the writer's time, to read its slowest statement against
        res["start_window"] = "+%.2f s to +%.2f s" % (t_start - writer.t0, time.monotonic() - writer.t0)
    outcome, detail = None, None
    if code == 2:
        outcome, detail = "refused before DDL", msg
    elif code != 0:
        outcome, detail = "failed after DDL", "start: " + msg
    if writer is not None:
        writer.stopping = True
        writer.join(timeout=60)
        res.update(writer_statements=writer.n, writer_errors=writer.errors, writer_first_error=writer.first_error,
                   writer_rejected_rows=writer.rejected, writer_max_ms=round(writer.max_ms, 1),
                   writer_slowest=writer.max_what)
    if outcome is None:
        code, msg = migrate(["complete", "--revert-window-s", "600"])
        windowed = code == 0
        if code != 0 and "cannot be reverted" in msg:  # refused before the contract: the plain cutover
            res["notes"].append("no revert window: " + short(msg.split("error (HTTP 409): ")[-1], 200))
            code, msg = migrate(["complete"])
        if code != 0:
            outcome, detail = "failed after DDL", "complete: " + msg
        elif windowed:
            code, msg = migrate(["finalize"])
            if code != 0:
                outcome, detail = "failed after DDL", "finalize: " + msg
    if outcome == "failed after DDL" and proxy.ensure():
        res["notes"].append("the proxy died during it and was started again")
    if outcome is not None and outcome != "refused before DDL":
        err = rollback_online()
        if err:
            res["notes"].append(err)

    # offline: the twin always; the online database when it did not run online
    off = psql_file(twin_db, path)
    if off:
        res["notes"].append("offline on the twin failed too: " + off)
    if outcome is not None:
        dry = None if off else psql_dry_run(online_db, path)
        if dry and dry[0] and dry[0][:2] in ("22", "23") and not emptied:
            # the rows the old-release writer added (the twin has none) break it: without them the two
            # databases would part here, and every later file would differ for it
            for db in (online_db, twin_db):
                empty_tables(db)
            emptied = True
            res["notes"].append("tables emptied before applying it offline to the online database: the rows the "
                                "writer added break it (%s %s)" % dry)
        err = psql_file(online_db, path)
        res["notes"].append("applied offline to the online database" + (": failed: " + err if err else ""))
        if off:  # the file fails on the twin's rows too: not a fault of the online path
            res["online_outcome"] = outcome
            outcome = "fails offline too"

    if outcome is None:
        try:
            diff, note = compare(dump(online_db), dump(twin_db))
        except Exception as e:
            diff, note = "could not compare: %s" % short(str(e)), None
        if diff:
            outcome, detail = "differed", diff
        else:
            outcome = "online, identical"
        if note:
            res["notes"].append(note)
    if emptied:  # the migrations after it meet rows again
        made, _ = generate_rows(online_db, only_empty=True)
        generate_rows(twin_db, only_empty=True)
        res["tables_filled_after"] = sum(1 for n in made.values() if n)
    elif fill_new:  # the tables it created get rows too, so the migrations after it meet data
        made, _ = generate_rows(online_db, only_empty=True)
        generate_rows(twin_db, only_empty=True)
        res["tables_filled_after"] = sum(1 for n in made.values() if n)
    res.update(outcome=outcome, detail=detail, seconds=round(time.monotonic() - t0, 2))
    return res


# ---- the report -------------------------------------------------------------------------

OUTCOMES = ["online, identical", "refused before DDL", "failed after DDL", "differed", "fails offline too"]


def reason_group(detail):
    """A reason with its file, positions and names taken out, to count alike ones."""
    d = re.sub(r"^(start|complete|finalize): ", "", detail or "")
    d = re.sub(r"^pgtandem migrate( \w+)?: error( \(HTTP \d+\))?: ", "", d)
    d = re.sub(r"^migration \S+ (failed|cannot be [a-z]+[^:]*): ", "", d)
    d = re.sub(r"\S+\.sql(:\d+)*:?\s*", "", d)
    d = re.sub(r'"[^"]*"', '"…"', d)
    d = re.sub(r"\b[0-9]+\b", "N", d)
    return d[:160]


def write_report(meta, results):
    total = len(results)
    counts = {o: sum(1 for r in results if r["outcome"] == o) for o in OUTCOMES}
    groups = {}
    for r in results:
        if r["outcome"] != "online, identical":
            g = groups.setdefault((r["outcome"], reason_group(r["detail"])), [])
            g.append(r["file"])
    meta.update(counts=counts, total=total,
                writer_errors=sum(r["writer_errors"] for r in results),
                writer_statements=sum(r["writer_statements"] for r in results),
                writer_rejected_rows=sum(r.get("writer_rejected_rows", 0) for r in results),
                writer_max_ms=max([r.get("writer_max_ms", 0.0) for r in results] or [0.0]),
                emptied=sum(1 for r in results if r.get("emptied_for")),
                emptied_identical=sum(1 for r in results if r.get("emptied_for")
                                      and r["outcome"] == "online, identical"))
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "migrations": results,
                   "reasons": [{"outcome": o, "reason": g, "files": fs} for (o, g), fs in groups.items()]},
                  f, indent=1)
    pct = lambda n: "%.0f%%" % (100.0 * n / total) if total else "-"  # noqa: E731
    with open(out + ".md", "w") as f:
        f.write("# Migration history replay: %s\n\n" % meta["dir_name"])
        f.write("`%s`, %s, %s, Postgres %s. %s layout, %d migrations: the first %d the base (offline on both), "
                "%d replayed. Base rows: %d tables filled, %d left empty. Proxy restarts: %d. %.0f s.\n\n"
                % (meta["command"], meta["date"], meta["machine"], meta["postgres"], meta["layout"],
                   meta["migrations"], meta["base"], total, meta["tables_filled"], len(meta["tables_empty"]),
                   meta["proxy_restarts"], meta["seconds"]))
        f.write("| outcome | migrations | share |\n|---|---|---|\n")
        for o in OUTCOMES:
            f.write("| %s | %d | %s |\n" % (o, counts[o], pct(counts[o])))
        f.write("| total | %d | |\n\nThe old release's writer: %d statements, %d errors (and %d generated rows "
                "its table's constraints rejected, 23xxx, not counted as errors); its slowest statement took "
                "%.1f ms.\n\n"
                % (total, meta["writer_statements"], meta["writer_errors"], meta["writer_rejected_rows"],
                   meta["writer_max_ms"]))
        if meta["emptied"]:
            f.write("%d migrations failed offline on the generated rows (a data error, SQLSTATE class 22 or 23) "
                    "and were replayed on emptied tables with no writer (their notes say which); %d of them "
                    "online and identical.\n\n" % (meta["emptied"], meta["emptied_identical"]))
        f.write("## Reasons\n\n| outcome | reason | migrations | example |\n|---|---|---|---|\n")
        for (o, g), fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            f.write("| %s | %s | %d | `%s` |\n" % (o, g.replace("|", "\\|"), len(fs), fs[0]))
        f.write("\n## Migrations\n\n| # | migration | outcome | detail | writer (statements / errors / slowest ms) "
                "| s | notes |\n|---|---|---|---|---|---|---|\n")
        for i, r in enumerate(results):
            f.write("| %d | `%s` | %s | %s | %d / %d / %.1f | %.1f | %s |\n" % (
                meta["base"] + i + 1, r["name"], r["outcome"], (r["detail"] or "").replace("|", "\\|"),
                r["writer_statements"], r["writer_errors"], r.get("writer_max_ms", 0.0), r["seconds"],
                "; ".join(r["notes"] + ([("writer: " + r["writer_first_error"])] if r["writer_first_error"] else [])
                          ).replace("|", "\\|")))
        if meta["tables_empty"]:
            f.write("\n## Tables left empty\n\n")
            for t, e in meta["tables_empty"].items():
                f.write("- `%s`: %s\n" % (t, e.replace("|", "\\|")))


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run stops its proxy too
    t_all = time.monotonic()
    layout, migs = history(hdir)
    if not migs:
        sys.exit("no migrations in %s" % hdir)
    base = int(env["BASE"]) if env.get("BASE") else (len(migs) - int(env["LAST"]) if env.get("LAST")
                                                     else len(migs) // 2)
    base = max(0, min(base, len(migs)))
    print("== %s: %d migrations (%s); the first %d are the base" % (hdir, len(migs), layout, base), flush=True)
    meta = dict(benchlib.run_header(online_db), command=command, dir=hdir, dir_name=os.path.basename(hdir),
                layout=layout, migrations=len(migs), base=base)
    for name, path in migs[:base]:
        for db in (online_db, twin_db):
            err = psql_file(db, path)
            if err:
                print("   base %s on %s: %s" % (name, db.split("/")[-1].split("?")[0], err), flush=True)
    made, empty = generate_rows(online_db)
    generate_rows(twin_db)
    meta.update(tables_filled=sum(1 for n in made.values() if n), tables_empty=empty)
    print("== base rows: %d tables filled, %d empty" % (meta["tables_filled"], len(empty)), flush=True)

    proxy = Proxy()
    proxy.start()
    results = []
    try:
        for i, (name, path) in enumerate(migs[base:]):
            r = replay_one(name, path, migs[base + i - 1][0] if base + i else None, proxy, 1000000 + i * 10000)
            results.append(r)
            print("%4d %-60s %s%s  writer %d/%d err, slowest %.1f ms%s" % (
                base + i + 1, name[:60], r["outcome"], (": " + short(r["detail"], 200)) if r["detail"] else "",
                r["writer_statements"], r["writer_errors"], r.get("writer_max_ms", 0.0), ("  [" + "; ".join(r["notes"]) + "]") if r["notes"]
                else ""), flush=True)
            meta.update(proxy_restarts=proxy.restarts, seconds=time.monotonic() - t_all)
            write_report(meta, results)  # each time: a run stopped midway keeps what it did
    finally:
        proxy.stop()
    meta.update(proxy_restarts=proxy.restarts, seconds=time.monotonic() - t_all)
    write_report(meta, results)
    c = meta["counts"]
    print("== %d replayed: %s; writer errors %d, slowest statement %.1f ms; proxy restarts %d; %s.md" % (
        len(results), ", ".join("%s %d" % (o, c[o]) for o in OUTCOMES), meta["writer_errors"], meta["writer_max_ms"],
        proxy.restarts, out))


if __name__ == "__main__":
    main()
