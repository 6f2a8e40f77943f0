"""Helpers shared by the migration engine's integration tests (no tests here):
a fresh database per test, running `pgtandem migrate` (directly or through a
proxy's admin API), shape snapshots."""
import json
import os
import tempfile
import urllib.parse
import uuid

import psycopg
import pytest

from conftest import run_pgtandem, TOP

EXAMPLES = os.path.join(TOP, "config", "examples")


@pytest.fixture
def db(cluster):
    name = "mig_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    yield cluster.uri(db=name)
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


def migrate(db, *args, timeout=600):
    return run_pgtandem(["migrate"] + list(args) + ["--db", db], timeout=timeout)


def pmigrate(proxy, *args, timeout=300, env=None):
    """`pgtandem migrate ARGS --proxy` against the proxy's admin API."""
    return run_pgtandem(["migrate"] + list(args) + ["--proxy", "http://127.0.0.1:%d" % proxy.admin_port],
                        env=env, timeout=timeout)


def proxy_start(proxy, path):
    r = pmigrate(proxy, "start", path)
    if r.returncode == 1 and "advisory lock" in r.stderr:
        # right after the expand child exits its backend may still hold the
        # engine lock when the proxy takes it; submitting again resumes
        r = pmigrate(proxy, "start", path)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    return r


def dbname(uri):
    return urllib.parse.urlparse(uri).path.lstrip("/")


def proxy_uri(proxy, db):
    """The database `db` (a URI) reached through the proxy, as postgres."""
    return proxy.uri(user="postgres", password="postgres", db=dbname(db))


def write_migration(obj, directory=None):
    fd, path = tempfile.mkstemp(prefix="mig-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    return path


def unify(backfill=None):
    """config/examples/checks_unify.json as a dict, its backfill settings
    replaced by `backfill` when given (write_migration makes it a file)."""
    with open(os.path.join(EXAMPLES, "checks_unify.json")) as f:
        m = json.load(f)
    if backfill is not None:
        m["backfill"] = backfill
    return m


def engine_proxy(proxy_factory, cluster, name, upstream=None):
    """A proxy whose engine (--engine-db) works on the database `name` of
    the cluster, reached through `upstream` (conftest.Upstream: Postgres or
    the Neon-like front) when given."""
    if upstream is not None:
        return proxy_factory(upstream=upstream.uri, extra_args=["--engine-db", upstream.db_uri(name)])
    return proxy_factory(extra_args=["--engine-db", cluster.uri(db=name)])


def sql(db, text, params=None, options=None):
    with psycopg.connect(db, autocommit=True, options=options or "") as c:
        cur = c.execute(text, params)
        try:
            return cur.fetchall()
        except psycopg.ProgrammingError:
            return None


def new_shape_options(name):
    return "-c pgtandem.version=%s -c search_path=pgtandem_%s,public" % (name, name)


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


def rows(db, table, order="1"):
    return sql(db, "SELECT to_jsonb(t) FROM %s t ORDER BY %s" % (table, order))


def columns(db, table):
    return [r[0] for r in sql(db, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                                  " AND table_name = %s ORDER BY ordinal_position", (table,))]


def load_legacy(db, nrows=5000):
    import subprocess
    subprocess.run(["psql", db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % nrows,
                    "-f", os.path.join(EXAMPLES, "checks_legacy.sql")], check=True, capture_output=True)
