""".sql migrations through a proxy: `migrate start FILE.sql --proxy URL`
sends the file as it is and the proxy's engine converts it, reading the old
type of each type change from the catalog it reaches, so the derived `down`
(new value -> old) is the cast back to the real old type. Before, the CLI
converted the file without a database and stopped ("pass --db URI"), and
`--db` with `--proxy` was refused."""
import decimal
import json

import psycopg

from support import new_shape_options, pmigrate, proxy_uri, sql, wait_for

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


def heartbeats(db):
    return sql(db, "SELECT heartbeat_at FROM pgtandem.proxies")


def test_a_refused_start_after_a_completed_one_reports_the_refusal(db, proxy_factory, tmp_path):
    """A refused `start FILE.sql --parent P` after P completed: the CLI says
    why the engine refused (exit 2), and GET /migrations/current keeps
    saying it after the fleet's heartbeats, which read P, completed, as the
    most recent migration in the table. Before, that news replaced the
    refused migration with P, and the CLI answered `the proxy is now
    running migration "P"` (exit 1), the reason only in the proxy's log."""
    sql(db, BASE)
    first = tmp_path / "0001_note.sql"
    first.write_text("ALTER TABLE items ADD COLUMN note text;\n")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    start_through(proxy, first, db)
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    refused = tmp_path / "0002_drop.sql"
    refused.write_text("ALTER TABLE items DROP CONSTRAINT items_nope;\n")
    r = pmigrate(proxy, "start", str(refused), "--parent", "0001_note", timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr + proxy.log()[-3000:]
    assert 'constraint "items_nope" of table "public.items" does not exist' in r.stderr, r.stderr
    seen = heartbeats(db)
    wait_for(lambda: heartbeats(db) != seen, timeout=20, what="a heartbeat after the refusal")
    seen = heartbeats(db)
    wait_for(lambda: heartbeats(db) != seen, timeout=20, what="a second heartbeat")
    code, cur = proxy.admin("GET", "/migrations/current")
    assert code == 200 and cur["name"] == "0002_drop" and cur["phase"] == "failed" and cur["invalid"], cur
    assert "items_nope" in cur["error"], cur
