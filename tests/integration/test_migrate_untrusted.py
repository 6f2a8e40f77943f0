"""Migration files are untrusted input: every SQL fragment they carry (a
default, an up/down/check/where expression, a type) must be exactly one
expression (or one type name) before any DDL runs, `migrate lint` must refuse
what `migrate start` would refuse, and version routing must work for every
name a migration may have."""
import json
import os
import tempfile
import uuid

import psycopg
import pytest

from support import engine_proxy, migrate, run_pgtandem, sql, write_migration

INJECTION = "'x'; DROP TABLE canary; SELECT 'y'"


def _canary_db(db):
    sql(db, "CREATE TABLE canary (id int PRIMARY KEY); INSERT INTO canary VALUES (1);"
            "CREATE TABLE items (id bigint PRIMARY KEY, title text); INSERT INTO items VALUES (1, 't')")


def _untouched(db):
    assert sql(db, "SELECT to_regclass('public.canary') IS NOT NULL")[0][0], "the canary table was dropped"
    assert sql(db, "SELECT count(*) FROM canary")[0][0] == 1
    cols = [r[0] for r in sql(db, "SELECT column_name FROM information_schema.columns"
                                  " WHERE table_schema = 'public' AND table_name = 'items' ORDER BY 1")]
    assert cols == ["id", "title"], cols
    assert sql(db, "SELECT to_regclass('public.fresh') IS NULL")[0][0]
    state = sql(db, "SELECT to_regclass('pgtandem.migrations') IS NOT NULL")[0][0]
    if state:
        assert sql(db, "SELECT count(*) FROM pgtandem.migrations")[0][0] == 0


INJECTED_OPS = {
    "add_column": {"add_column": {"table": "items", "column": {"name": "extra", "type": "text",
                                                               "default": INJECTION}}},
    "alter_column": {"alter_column": {"table": "items", "column": "title", "default": INJECTION}},
    "rename_column": {"rename_column": {"table": "items", "from": "title", "to": "headline",
                                        "default": INJECTION}},
    "create_table": {"create_table": {"table": "fresh", "columns": [
        {"name": "id", "type": "bigint", "primary_key": True},
        {"name": "v", "type": "text", "default": INJECTION}]}},
}


@pytest.mark.parametrize("kind", sorted(INJECTED_OPS))
def test_default_injection_is_refused_before_any_ddl(db, kind):
    _canary_db(db)
    path = write_migration({"name": "0001_inject", "operations": [
        {"add_column": {"table": "items", "column": {"name": "harmless", "type": "int"}}},
        INJECTED_OPS[kind]]})
    try:
        r = run_pgtandem(["migrate", "lint", path])
        assert r.returncode == 2, r.stdout + r.stderr
        assert "operations[1]" in r.stderr and '"default"' in r.stderr, r.stderr
        assert path + ":" in r.stderr, r.stderr
        r = migrate(db, "start", path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert '"default"' in r.stderr, r.stderr
        _untouched(db)
    finally:
        os.unlink(path)


# (key path in the operation, fragment): each must be refused at lint,
# naming the key.
BAD_FRAGMENTS = [
    ("rename_column", {"table": "items", "from": "title", "to": "headline", "type": "text",
                       "up": "title) ; DROP TABLE canary ; SELECT (1", "down": "headline"}, "up"),
    ("rename_column", {"table": "items", "from": "title", "to": "headline", "type": "text",
                       "up": "title", "down": "headline) FROM canary WHERE (true"}, "down"),
    ("alter_column", {"table": "items", "column": "title", "check": "true) OR (true"}, "check"),
    ("alter_column", {"table": "items", "column": "title", "default": "'a'), ('b'"}, "default"),
    ("alter_column", {"table": "items", "column": "title", "default": "1 -- trailing"}, "default"),
    ("alter_column", {"table": "items", "column": "title", "type": "text) ; DROP TABLE canary ; SELECT (1",
                      "up": "title", "down": "title"}, "type"),
    ("alter_column", {"table": "items", "column": "title", "type": "SETOF text",
                      "up": "title", "down": "title"}, "type"),
    ("create_index", {"table": "items", "name": "ix", "columns": ["title"],
                      "where": "true) ; DROP TABLE canary ; SELECT (true"}, "where"),
    ("create_constraint", {"table": "items", "name": "ck", "type": "check", "check": "1, 2"}, "check"),
    ("create_table", {"table": "fresh", "columns": [{"name": "id", "type": "int", "default": "1)"}]},
     "default"),
    ("create_table", {"table": "fresh", "columns": [{"name": "id", "type": "int", "check": "id > 0) OR (true"}]},
     "check"),
    ("create_table", {"table": "fresh", "columns": [{"name": "id", "type": "int",
                                                     "references": "items(id) garbage"}]}, "references"),
    ("add_column", {"table": "items", "column": {"name": "n", "type": "int"}, "up": "SELECT 1"}, "up"),
    ("drop_column", {"table": "items", "column": "title", "down": "'a' UNION SELECT 'b'"}, "down"),
]


@pytest.mark.parametrize("op,body,key", BAD_FRAGMENTS,
                         ids=["%s-%s-%d" % (o, k, i) for i, (o, _, k) in enumerate(BAD_FRAGMENTS)])
def test_fragment_that_is_not_one_expression_is_refused_at_lint(op, body, key):
    path = write_migration({"name": "0001_frag", "operations": [{op: body}]})
    try:
        r = run_pgtandem(["migrate", "lint", path])
        assert r.returncode == 2, r.stdout + r.stderr
        assert "operations[0]" in r.stderr and '"%s"' % key in r.stderr, r.stderr
    finally:
        os.unlink(path)


GOOD_FRAGMENTS = [
    {"alter_column": {"table": "items", "column": "title", "default": "'a' || 'b'"}},
    {"alter_column": {"table": "items", "column": "title", "check": "title IS NOT NULL AND length(title) < 100"}},
    {"add_column": {"table": "items", "column": {"name": "n", "type": "numeric(10,2)", "default": "(1 + 2) * 3"}}},
    {"add_column": {"table": "items", "column": {"name": "ts", "type": "timestamp with time zone",
                                                 "default": "now()"}}},
    {"add_column": {"table": "items", "column": {"name": "tags", "type": "text[]",
                                                 "default": "ARRAY['a', 'b;c']::text[]"}}},
    {"add_column": {"table": "items", "column": {"name": "flag", "type": "boolean",
                                                 "default": "true AND NOT false"}}},
    {"add_column": {"table": "items", "column": {"name": "label", "type": "text",
                                                 "default": "$$it's; fine$$"}}},
]


@pytest.mark.parametrize("op", GOOD_FRAGMENTS, ids=[str(i) for i in range(len(GOOD_FRAGMENTS))])
def test_plain_expressions_still_pass_lint(op):
    path = write_migration({"name": "0001_good", "operations": [op]})
    try:
        r = run_pgtandem(["migrate", "lint", path])
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        os.unlink(path)


def test_boolean_default_on_create_table_runs(db):
    """A default that is an a_expr but not a b_expr (AND) is embedded so that
    CREATE TABLE accepts it."""
    path = write_migration({"name": "0001_booldef", "operations": [{"create_table": {"table": "fresh", "columns": [
        {"name": "id", "type": "bigint", "primary_key": True},
        {"name": "ok", "type": "boolean", "default": "true AND NOT false"}]}}]})
    try:
        r = migrate(db, "start", path)
        assert r.returncode == 0, r.stdout + r.stderr
        r = migrate(db, "complete")
        assert r.returncode == 0, r.stdout + r.stderr
        sql(db, "INSERT INTO fresh (id) VALUES (1)")
        assert sql(db, "SELECT ok FROM fresh")[0][0] is True
    finally:
        os.unlink(path)


def test_dollar_tag_in_column_name(db):
    """The trigger functions quote their bodies with a dollar tag that occurs
    nowhere in them, column names included."""
    sql(db, 'CREATE TABLE t (id bigint PRIMARY KEY, "a$pgtandem$b" text, "c$pgtandem1$d" int)')
    sql(db, "INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 50) g")
    path = write_migration({"name": "0001_dollar", "operations": [
        {"rename_column": {"table": "t", "from": "a$pgtandem$b", "to": "renamed", "type": "text",
                           "up": 'upper("a$pgtandem$b")', "down": "lower(renamed)"}}]})
    try:
        r = migrate(db, "start", path)
        assert r.returncode == 0, r.stdout + r.stderr
        sql(db, """INSERT INTO t (id, "a$pgtandem$b") VALUES (100, 'x')""")
        r = migrate(db, "complete")
        assert r.returncode == 0, r.stdout + r.stderr
        assert sql(db, "SELECT renamed FROM t WHERE id = 1")[0][0] == "V1"
        assert sql(db, "SELECT renamed FROM t WHERE id = 100")[0][0] == "X"
    finally:
        os.unlink(path)


@pytest.mark.parametrize("name", ["0003_Checks_Unify", "0003-checks-unify"])
def test_version_routing_for_mixed_case_and_hyphenated_names(cluster, proxy_factory, name):
    dbname = "route_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % dbname)
    uri = cluster.uri(db=dbname)
    path = write_migration({"name": name, "operations": [
        {"rename_column": {"table": "items", "from": "title", "to": "headline"}}]})
    try:
        sql(uri, "CREATE TABLE items (id bigint PRIMARY KEY, title text); INSERT INTO items VALUES (1, 't')")
        proxy = engine_proxy(proxy_factory, cluster, dbname)
        r = run_pgtandem(["migrate", "start", path, "--proxy", "http://127.0.0.1:%d" % proxy.admin_port])
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
        puri = proxy.uri(user="postgres", password="postgres", db=dbname)
        with psycopg.connect(puri, autocommit=True, options="-c pgtandem.version=" + name) as new, \
                psycopg.connect(puri, autocommit=True) as old:
            cur = new.execute("SELECT * FROM items")
            assert [d.name for d in cur.description] == ["id", "headline"], new.execute("SHOW search_path").fetchone()
            cur = old.execute("SELECT * FROM items")
            assert "title" in [d.name for d in cur.description]
            assert new.execute("SELECT headline FROM items").fetchone()[0] == "t"
    finally:
        os.unlink(path)
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname, check=False)
