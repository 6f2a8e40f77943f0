"""A view dropped and made again in one migration (how OpenMeter's history
changes a reporting view: `DROP VIEW IF EXISTS v; CREATE VIEW v AS ...`
with new columns, often beside the ALTER TABLE that adds them). The drop
waits for complete, since the old release reads the view until then; the
CREATE used to run at expand and fail there ("relation ... already
exists") after DDL had run. Now each release reads its own view: the old
release the old definition until complete, the new release the new one
from the start (made in its version's schema), and after complete the
database is the one the file gives offline; a rollback leaves what was
there."""
import psycopg

from support import new_shape_options, offline_twin, pmigrate, proxy_start, proxy_uri, schema_dump, shape, sql

BASE = """
CREATE TABLE charges (id bigint PRIMARY KEY, amount numeric NOT NULL, currency text NOT NULL DEFAULT 'EUR');
INSERT INTO charges SELECT g, g * 1.5, 'EUR' FROM generate_series(1, 500) g;
CREATE VIEW charges_search AS SELECT id, amount FROM charges;
"""

MADE_AGAIN = """-- the view gets the new column
ALTER TABLE charges ADD COLUMN tax_code text;
DROP VIEW IF EXISTS "charges_search";
CREATE VIEW "charges_search" AS SELECT "id", "amount", "currency", "tax_code" FROM "charges";
"""

NAME = "0002_view_tax_code"


def view_columns(uri, options=""):
    with psycopg.connect(uri, autocommit=True, options=options) as c:
        cur = c.execute("SELECT * FROM charges_search ORDER BY id LIMIT 1")
        return [d.name for d in cur.description]


def test_each_release_reads_its_own_view_then_the_offline_one(cluster, db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / (NAME + ".sql")
    path.write_text(MADE_AGAIN)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    with offline_twin(cluster, BASE, MADE_AGAIN) as twin:
        proxy_start(proxy, str(path))
        through = proxy_uri(proxy, db)
        # the old release: the old view, and its writes (without the new column) go on
        assert view_columns(through) == ["id", "amount"]
        with psycopg.connect(through, autocommit=True) as c:
            c.execute("INSERT INTO charges (id, amount) VALUES (10001, 2.5)")
        # the new release: the new view from the start, its rows with the new column in it
        new = new_shape_options(NAME)
        assert view_columns(through, new) == ["id", "amount", "currency", "tax_code"]
        with psycopg.connect(through, autocommit=True, options=new) as c:
            c.execute("INSERT INTO charges (id, amount, tax_code) VALUES (20001, 3.5, 'VAT')")
            assert c.execute("SELECT tax_code FROM charges_search WHERE id = 20001").fetchone() == ("VAT",)
        r = pmigrate(proxy, "complete")
        assert r.returncode == 0, r.stdout + r.stderr
        assert view_columns(through) == ["id", "amount", "currency", "tax_code"]
        assert schema_dump(cluster, db) == schema_dump(cluster, twin)
        assert sql(db, "SELECT count(*), count(tax_code) FROM charges_search")[0] == (502, 1)


def test_rollback_leaves_the_old_view(db, proxy_factory, tmp_path):
    sql(db, BASE)
    before = shape(db)
    path = tmp_path / (NAME + ".sql")
    path.write_text(MADE_AGAIN)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, str(path))
    r = pmigrate(proxy, "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert shape(db) == before
    assert view_columns(db) == ["id", "amount"]
