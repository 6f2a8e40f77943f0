"""Postgres as tests reach it without the proxy: the suite's cluster
(tests/pgcluster.sh) and one that may be restarted, psql as a client runs
it, one-shot SQL through psycopg (and a connection kept for polls), and
the snapshots tests compare: a database's shape (what a rollback must
restore) and a table's rows."""
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import psycopg
import pytest

from .ports import TOP, cluster_env

__all__ = ["cancel_hits_only_its_backend", "Cluster", "RestartableCluster", "read_env", "start_cluster", "throwaway_cluster", "PGCLUSTER", "LIBPQ_ENV", "psql", "sql", "kept_query",
           "dbname", "SHAPE_SQL", "shape", "schema_dump", "offline_twin", "rows", "columns"]

PGCLUSTER = os.path.join(TOP, "tests", "pgcluster.sh")


class Cluster:
    """A running cluster as tests/pgcluster.sh describes it in its env file."""

    def __init__(self, env):
        self.env = env
        self.host = env["PGT_PGHOST"]
        self.port = int(env["PGT_PGPORT"])
        self.ca = env["PGT_CA"]
        self.tlsdir = env["PGT_TLSDIR"]
        self.bindir = env["PGT_PGBIN"]
        self.super_uri = env["PGT_SUPER_URI"]
        self.app_uri = env["PGT_APP_URI"]

    def uri(self, user="postgres", password="postgres", db="appdb", sslmode="require"):
        return "postgresql://%s:%s@%s:%d/%s?sslmode=%s" % (user, password, self.host, self.port, db, sslmode)

    def psql(self, sql, uri=None, check=True):
        r = subprocess.run(["psql", uri or self.super_uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return r.stdout.strip()


class RestartableCluster(Cluster):
    """A throwaway cluster of this module's own, which the tests may restart
    or stop (pg_ctl, as the cluster's owner when running as root)."""

    def __init__(self, env):
        super().__init__(env)
        self.dir = env["PGT_PGDIR"]
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def pg_ctl(self, *args, check=True):
        cmd = self.run_as + [os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                             "-l", os.path.join(self.dir, "postgres.log"), "-w", "-t", "60"] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        if check and r.returncode != 0:
            raise RuntimeError("pg_ctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def running(self):
        return self.pg_ctl("status", check=False).returncode == 0

    def restart(self):
        self.pg_ctl("restart", "-m", "fast")

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")

    def start(self):
        if not self.running():
            self.pg_ctl("start")


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v
    return env


def start_cluster(parent, prefix="pgtandem-pg-"):
    """Starts a throwaway cluster (tests/pgcluster.sh) under a new directory
    in `parent`; returns its directory."""
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    r = subprocess.run(["sh", PGCLUSTER, "start", d + "/pg"],
                       capture_output=True, text=True, timeout=300, env=cluster_env())
    if r.returncode != 0:
        raise RuntimeError("cannot start a cluster: %s%s" % (r.stdout, r.stderr))
    return d


@contextlib.contextmanager
def throwaway_cluster(prefix):
    """A cluster of the caller's own (a module's, which its tests may
    restart or stop) for the length of the `with` block, then stopped and
    removed; a start that fails fails the test."""
    try:
        d = start_cluster(None, prefix)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield RestartableCluster(read_env(d + "/pg/env"))
    finally:
        subprocess.run(["sh", PGCLUSTER, "stop", d + "/pg"], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


# libpq settings of the caller's environment that would change what a test's
# URI asks for; psql() runs without them (unless its `env` sets them).
LIBPQ_ENV = ("PGCHANNELBINDING", "PGSSLMODE", "PGSSLROOTCERT", "PGPASSWORD", "PGOPTIONS", "PGHOSTADDR")


def psql(uri, sql, env=None, check=False, timeout=60):
    """psql -XAtq -c sql against `uri`, as a client would run it: none of
    LIBPQ_ENV from the environment but what `env` sets (e.g. PGPASSWORD,
    PGOPTIONS). Returns the CompletedProcess (text); with check, fails the
    test unless psql exits 0. Cluster.psql is the suite's own superuser
    connection instead."""
    e = {k: v for k, v in os.environ.items() if k not in LIBPQ_ENV}
    e.update(env or {})
    r = subprocess.run(["psql", uri, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check:
        assert r.returncode == 0, "psql failed: %s" % r.stderr
    return r


def sql(db, text, params=None, options=None, application_name=None):
    """Runs `text` on a connection of its own (autocommit) to `db`, with
    `options` and `application_name` when given; returns its rows, or None
    for a statement that returns none."""
    kw = {"application_name": application_name} if application_name else {}
    with psycopg.connect(db, autocommit=True, options=options or "", **kw) as c:
        cur = c.execute(text, params)
        try:
            return cur.fetchall()
        except psycopg.ProgrammingError:
            return None


_kept = {}
_kept_lock = threading.Lock()


def kept_query(uri, text, args=()):
    """The rows of `text` run on one connection kept per `uri` for the test
    process (from any thread, one at a time): what a poll or a sampler
    reads every few milliseconds. A connection per read took seconds beside
    a CPU hog, long enough to miss what was polled for."""
    with _kept_lock:
        c = _kept.get(uri)
        if c is not None and not c.closed and not c.broken:
            try:
                return c.execute(text, args).fetchall()
            except psycopg.OperationalError:
                c.close()  # the server restarted since: once more on a new connection
        c = _kept[uri] = psycopg.connect(uri, autocommit=True, connect_timeout=10)
        return c.execute(text, args).fetchall()


def dbname(uri):
    return urllib.parse.urlparse(uri).path.lstrip("/")


SHAPE_SQL = [
    "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
    "  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
    "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i"
    "  JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
    "  WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtandem_%' ORDER BY 1",
    "SELECT proname FROM pg_proc WHERE pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'pgtandem')",
    "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    "  AND relkind IN ('r', 'v') ORDER BY 1",
]


def shape(db):
    """Everything a rollback must restore: columns, indexes, constraints,
    triggers, version schemas, pgtandem functions, tables and views."""
    return [sql(db, q) for q in SHAPE_SQL]


# Lines of pg_dump's output that differ between two dumps of one schema.
DUMP_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config|\\restrict|\\unrestrict)")


def sort_table_columns(lines):
    """Column order is not part of the rule: the lines inside each CREATE
    TABLE are sorted (without their trailing commas)."""
    out, block = [], None
    for line in lines:
        if block is not None:
            if line.startswith(")"):
                out.extend(sorted(x.rstrip(",") for x in block))
                out.append(line)
                block = None
            else:
                block.append(line)
        else:
            out.append(line)
            if line.startswith("CREATE TABLE ") and line.endswith("("):
                block = []
    return out


def schema_dump(cluster, uri):
    """`pg_dump --schema-only` of database URI `uri` without pgtandem's own
    schema, the lines that differ on every dump, and the order of each
    table's columns: what an online migration and the same DDL run offline
    are compared by."""
    r = subprocess.run([os.path.join(cluster.bindir, "pg_dump"), "--schema-only", "--no-owner",
                        "--exclude-schema=pgtandem", "-d", uri], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip() and not DUMP_NOISE.match(line)]
    return "\n".join(sort_table_columns(lines) + partition_foreign_keys(uri)) + "\n"


def partition_foreign_keys(uri):
    """Each partition's foreign key, which pg_dump leaves out (the table's
    key makes it), as a comment line: its name and definition as Postgres
    made them, and whether it is validated."""
    with psycopg.connect(uri, autocommit=True) as c:
        return ["-- key of partition %s: %s %s%s" % (r[0], r[1], r[2], "" if r[3] else " (not validated)")
                for r in c.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated"
                                   " FROM pg_constraint WHERE contype = 'f' AND conparentid <> 0 ORDER BY 1, 2")]


@contextlib.contextmanager
def offline_twin(cluster, *scripts):
    """A database of its own with `scripts` run on it, one after the other
    (the base, then the migration's DDL as written): the oracle an online
    migration's end is compared with (schema_dump). Yields its URI; dropped
    afterwards."""
    name = "twin_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    try:
        uri = cluster.uri(db=name)
        for text in scripts:
            sql(uri, text)
        yield uri
    finally:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


def rows(db, table, order="1"):
    """Every row of `table` as JSON, in `order`: what two databases (or a
    database before and after) are compared by, row by row."""
    return sql(db, "SELECT to_jsonb(t) FROM %s t ORDER BY %s" % (table, order))


def columns(db, table):
    """The columns of public.`table`, in order."""
    return [r[0] for r in sql(db, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                                  " AND table_name = %s ORDER BY ordinal_position", (table,))]


def cancel_hits_only_its_backend(victim, other, bound_s):
    """Cancels `victim`'s statement half a second in (psycopg's cancel, a
    CancelRequest on a connection of its own) while `other` runs one on the
    same path: the victim's ends with 57014 within bound_s of the cancel,
    the other's finishes, and the victim's connection stays usable."""
    res = {}

    def run_other():
        try:
            res["other"] = other.execute("SELECT pg_sleep(2), 'other done'").fetchone()[1]
        except Exception as e:  # kept for the assert below
            res["other"] = repr(e)
    th = threading.Thread(target=run_other)
    th.start()
    timer = threading.Timer(0.5, victim.cancel)
    timer.start()
    t0 = time.time()
    with pytest.raises(psycopg.errors.QueryCanceled) as e:
        victim.execute("SELECT pg_sleep(60)")
    elapsed = time.time() - t0
    timer.join()
    th.join(30)
    assert e.value.sqlstate == "57014"
    assert elapsed < 0.5 + bound_s, elapsed
    assert res.get("other") == "other done", res
    assert victim.execute("SELECT 'victim alive'").fetchone() == ("victim alive",)
