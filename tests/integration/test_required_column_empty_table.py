"""A required column added without a value to a table that is empty, as
Prisma and golang-migrate histories do for tables made a release ago
(OpenMeter: 8 files, `ALTER TABLE "x" ADD COLUMN "y" text NOT NULL;`).
Offline it passes: no row needs a value. It used to be refused ("existing
rows would violate it"). Online now: no row needs a value at start, the
NOT NULL is checked by complete (not from expand on, where every insert of
the old release, which cannot give the column a value, would fail), and
complete refuses while a row the old release inserted meanwhile has none,
naming it; once filled, complete ends in the offline schema. A table with
rows is still refused before any DDL."""
import psycopg

from support import new_shape_options, offline_twin, pmigrate, proxy_start, proxy_uri, schema_dump, sql

BASE = """
CREATE TABLE ledger_routes (id bigint PRIMARY KEY, namespace text NOT NULL);
CREATE TABLE ledger_accounts (id bigint PRIMARY KEY, namespace text NOT NULL);
INSERT INTO ledger_accounts VALUES (1, 'ns');
"""
ADD = 'ALTER TABLE "ledger_routes" ADD COLUMN "currency" character varying NOT NULL;\n'
NAME = "0042_route_currency"


def test_empty_table_gets_its_required_column_online(cluster, db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / (NAME + ".sql")
    path.write_text(ADD)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    with offline_twin(cluster, BASE, ADD) as twin:
        proxy_start(proxy, str(path))
        through = proxy_uri(proxy, db)
        # the old release inserts without the column: accepted, no error
        with psycopg.connect(through, autocommit=True) as c:
            c.execute("INSERT INTO ledger_routes (id, namespace) VALUES (7, 'old')")
        # the new release gives it
        with psycopg.connect(through, autocommit=True, options=new_shape_options(NAME)) as c:
            c.execute("INSERT INTO ledger_routes (id, namespace, currency) VALUES (8, 'new', 'EUR')")
        # complete refuses while the old release's row has no value, naming it, and changes nothing
        r = pmigrate(proxy, "complete")
        assert r.returncode != 0, r.stdout
        out = r.stdout + r.stderr
        assert 'NOT NULL of "currency"' in out and '("id")=(7)' in out, out
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["phase"] == "active", cur
        with psycopg.connect(through, autocommit=True, options=new_shape_options(NAME)) as c:
            c.execute("UPDATE ledger_routes SET currency = 'USD' WHERE id = 7")
        r = pmigrate(proxy, "complete")
        assert r.returncode == 0, r.stdout + r.stderr
        assert schema_dump(cluster, db) == schema_dump(cluster, twin)
        assert sql(db, "SELECT id, currency FROM ledger_routes ORDER BY id") == [(7, "USD"), (8, "EUR")]


def test_a_table_with_rows_is_refused_before_any_ddl(db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / "0043_account_currency.sql"
    path.write_text('ALTER TABLE "ledger_accounts" ADD COLUMN "currency" text NOT NULL;\n')
    proxy = proxy_factory(extra_args=["--engine-db", db])
    before = sql(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_accounts'"
                     " ORDER BY ordinal_position")
    r = pmigrate(proxy, "start", str(path), env={"PGTANDEM_DB": db})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "NOT NULL but has neither" in r.stderr and "the rows already there" in r.stderr, r.stderr
    assert sql(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger_accounts'"
                   " ORDER BY ordinal_position") == before
