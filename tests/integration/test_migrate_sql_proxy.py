""".sql migrations through a proxy: `migrate start FILE.sql --proxy URL`
sends the file as it is and the proxy's engine converts it, reading the old
type of each type change from the catalog it reaches, so the derived `down`
(new value -> old) is the cast back to the real old type. Before, the CLI
converted the file without a database and stopped ("pass --db URI"), and
`--db` with `--proxy` was refused."""
import decimal
import json

import psycopg

from support import new_shape_options, pmigrate, proxy_uri, sql

BASE = """
DROP TABLE IF EXISTS items;
CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, price numeric(10,2));
INSERT INTO items SELECT g, g, g / 4.0 FROM generate_series(1, 2000) g;
"""

TYPE_CHANGE = """-- widen both columns
ALTER TABLE items ALTER COLUMN qty TYPE bigint;
ALTER TABLE items ALTER COLUMN price TYPE numeric(12,2);
"""


def column_types(db):
    return dict(sql(db, "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c"
                        " JOIN pg_attribute a ON a.attrelid = 'public.items'::regclass AND a.attname = c.column_name"
                        " WHERE c.table_schema = 'public' AND c.table_name = 'items'"))


def start_through(proxy, path, db):
    # the database in the environment is not the proxy's business: it must not get in the way
    r = pmigrate(proxy, "start", str(path), env={"PGTANDEM_DB": db})
    assert r.returncode == 0, r.stdout + r.stderr
    code, cur = proxy.admin("GET", "/migrations/current")
    assert code == 200 and cur["phase"] == "active", cur


def stored_ops(db, name):
    text = sql(db, "SELECT migration FROM pgtandem.migrations WHERE name = %s", (name,))[0][0]
    doc = json.loads(text) if isinstance(text, str) else text
    return [op for o in doc["operations"] for op in o.values()]


def test_type_change_sql_through_proxy_derives_down_from_the_proxys_catalog(db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / "0001_widen.sql"
    path.write_text(TYPE_CHANGE)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    start_through(proxy, path, db)
    downs = {op["column"]: op.get("down") for op in stored_ops(db, "0001_widen")}
    assert downs["qty"].replace(" ", "") in ("qty::integer", "(qty)::integer", "CAST(qtyASinteger)"), downs
    assert "numeric(10,2)" in downs["price"], downs
    # the new release's writes reach the old shape through that down
    through = proxy_uri(proxy, db)
    with psycopg.connect(through, autocommit=True, options=new_shape_options("0001_widen")) as c:
        c.execute("INSERT INTO items (id, qty, price) VALUES (5000, 7, 1.25)")
    with psycopg.connect(through, autocommit=True) as c:
        assert c.execute("SELECT qty, price FROM items WHERE id = 5000").fetchone() == (7, decimal.Decimal("1.25"))
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert column_types(db) == {"id": "bigint", "qty": "bigint", "price": "numeric(12,2)"}
    assert sql(db, "SELECT count(*), sum(qty) FROM items")[0] == (2001, 2000 * 2001 // 2 + 7)


def test_rollback_restores_the_old_types(db, proxy_factory, tmp_path):
    sql(db, BASE)
    before = sql(db, "SELECT id, qty, price FROM items ORDER BY id")
    path = tmp_path / "0001_widen.sql"
    path.write_text(TYPE_CHANGE)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    start_through(proxy, path, db)
    r = pmigrate(proxy, "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert column_types(db) == {"id": "bigint", "qty": "integer", "price": "numeric(10,2)"}
    assert sql(db, "SELECT id, qty, price FROM items ORDER BY id") == before


def test_a_broken_sql_file_is_refused_by_the_proxy_with_its_position(db, proxy_factory, tmp_path):
    sql(db, BASE)
    path = tmp_path / "0002_bad.sql"
    path.write_text("ALTER TABLE items ALTER COLUMN qty TYPE bigint;\nALTER TABLEE items ADD x int;\n")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    r = pmigrate(proxy, "start", str(path), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "0002_bad.sql:2:7: syntax error" in r.stderr, r.stderr
    code, _ = proxy.admin("GET", "/migrations/current")
    assert code == 404
    assert column_types(db)["qty"] == "integer"


def test_a_sql_directory_through_proxy_gets_its_types_from_the_catalog(db, proxy_factory, tmp_path):
    """start DIR --proxy of *.sql files: each file goes as it is, the
    proxy's engine converts each with the catalog, and they run as one."""
    sql(db, BASE)
    (tmp_path / "0001_widen.sql").write_text("ALTER TABLE items ALTER COLUMN qty TYPE bigint;\n")
    (tmp_path / "0002_note.sql").write_text("ALTER TABLE items ADD COLUMN note text;\n")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    start_through(proxy, tmp_path, db)
    # the chain runs as one migration, named by its head
    downs = {op["column"]: op["down"] for op in stored_ops(db, "0002_note") if "down" in op}
    assert "integer" in (downs.get("qty") or ""), downs
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert column_types(db) == {"id": "bigint", "qty": "bigint", "price": "numeric(10,2)", "note": "text"}
    assert sql(db, "SELECT name, status FROM pgtandem.migrations ORDER BY name") == [
        ("0001_widen", "completed"), ("0002_note", "completed")]
