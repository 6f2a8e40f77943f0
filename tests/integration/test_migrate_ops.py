"""Every operation, twice: start -> writes through the old and the new shape
at the same time -> complete; and start -> rollback (original shape and data
exactly restored) -> start -> complete. Each ends with a row-by-row
comparison against what the writers wrote and a schema check."""
import threading

import psycopg
import pytest

from support import migrate, new_shape_options, rows, shape, sql, write_migration

BASE = """
CREATE TABLE items (id bigserial PRIMARY KEY, a text NOT NULL DEFAULT 'x', b int, price text,
                    label text);
CREATE INDEX items_a ON items (a);
CREATE UNIQUE INDEX items_label ON items (label);
CREATE TABLE scratch (id int PRIMARY KEY, note text);
INSERT INTO items (a, b, price, label) SELECT 'a' || g, g, (g / 4.0)::text, 'L' || g FROM generate_series(1, 500) g;
INSERT INTO scratch SELECT g, 'n' || g FROM generate_series(1, 10) g;
"""

# name -> (operation, old-shape writes, new-shape writes, final checks)
# Writes are lists of SQL run by concurrent sessions; {i} is the iteration.
CASES = {
    "rename_column": (
        {"rename_column": {"table": "items", "from": "a", "to": "a2"}},
        ["INSERT INTO items (a, b) VALUES ('old{i}', {i})", "UPDATE items SET a = 'oldu{i}' WHERE id = {i} + 1"],
        ["INSERT INTO items (a2, b) VALUES ('new{i}', {i})", "UPDATE items SET a2 = 'newu{i}' WHERE id = {i} + 100"],
        [("SELECT count(*) FROM items WHERE a2 LIKE 'old%' OR a2 LIKE 'new%'", 160),
         ("SELECT a2 FROM items WHERE id = 101", "newu1"), ("SELECT a2 FROM items WHERE id = 2", "oldu1"),
         ("SELECT is_nullable FROM information_schema.columns WHERE table_name='items' AND column_name='a2'", "NO"),
         ("SELECT column_default FROM information_schema.columns WHERE table_name='items' AND column_name='a2'",
          "'x'::text"),
         ("SELECT indexdef LIKE '%(a2)' FROM pg_indexes WHERE indexname = 'items_a'", True)]),
    "alter_column": (
        {"alter_column": {"table": "items", "column": "price", "type": "numeric(10,2)",
                          "up": "price::numeric(10,2)", "down": "price::text"}},
        ["INSERT INTO items (a, price) VALUES ('o{i}', '{i}.5')"],
        ["INSERT INTO items (a, price) VALUES ('n{i}', {i}.25)"],
        [("SELECT data_type FROM information_schema.columns WHERE table_name='items' AND column_name='price'",
          "numeric"),
         ("SELECT sum(price) FROM items WHERE a LIKE 'o%' AND id > 500", sum(i + 0.5 for i in range(40))),
         ("SELECT sum(price) FROM items WHERE a LIKE 'n%' AND id > 500", sum(i + 0.25 for i in range(40))),
         ("SELECT price FROM items WHERE id = 3", 0.75)]),
    "add_column": (
        {"add_column": {"table": "items", "column": {"name": "alen", "type": "int", "nullable": False,
                                                     "default": "0"}, "up": "length(a)"}},
        ["INSERT INTO items (a) VALUES ('abc{i}')"],
        ["INSERT INTO items (a, alen) VALUES ('n{i}', 1000 + {i})"],
        [("SELECT count(*) FROM items WHERE alen IS NULL", 0),
         ("SELECT alen FROM items WHERE id = 1", 2),
         ("SELECT count(*) FROM items WHERE a LIKE 'abc%' AND alen = length(a)", 40),
         ("SELECT count(*) FROM items WHERE alen >= 1000", 40),
         ("SELECT is_nullable FROM information_schema.columns WHERE table_name='items' AND column_name='alen'",
          "NO")]),
    "drop_column": (
        {"drop_column": {"table": "items", "column": "b", "down": "-1"}},
        ["INSERT INTO items (a, b) VALUES ('o{i}', {i})"],
        ["INSERT INTO items (a) VALUES ('n{i}')"],
        [("SELECT count(*) FROM information_schema.columns WHERE table_name='items' AND column_name='b'", 0),
         ("SELECT count(*) FROM items WHERE a LIKE 'n%'", 40)]),
    "create_table": (
        {"create_table": {"table": "tags", "columns": [{"name": "id", "type": "bigserial", "primary_key": True},
                                                       {"name": "item_id", "type": "bigint", "references": "items(id)"},
                                                       {"name": "tag", "type": "text", "nullable": False}]}},
        ["INSERT INTO items (a) VALUES ('o{i}')"],
        ["INSERT INTO tags (item_id, tag) VALUES ({i} + 1, 't{i}')"],
        [("SELECT count(*) FROM tags", 40)]),
    "drop_table": (
        {"drop_table": {"table": "scratch"}},
        ["INSERT INTO scratch VALUES (100 + {i}, 'o')"],
        ["INSERT INTO items (a) VALUES ('n{i}')"],
        [("SELECT to_regclass('scratch') IS NULL", True)]),
    "rename_table": (
        {"rename_table": {"from": "scratch", "to": "notes"}},
        ["INSERT INTO scratch VALUES (100 + {i}, 'old{i}')"],
        ["INSERT INTO notes VALUES (200 + {i}, 'new{i}')"],
        [("SELECT count(*) FROM notes", 90), ("SELECT to_regclass('scratch') IS NULL", True)]),
    "create_index": (
        {"create_index": {"table": "items", "name": "items_b_price", "columns": ["b", "price"]}},
        ["INSERT INTO items (a, b) VALUES ('o{i}', {i})"],
        ["UPDATE items SET b = b + 1 WHERE id = {i} + 1"],
        [("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_b_price'::regclass", True)]),
    "drop_index": (
        {"drop_index": {"name": "items_a"}},
        ["INSERT INTO items (a) VALUES ('o{i}')"],
        ["INSERT INTO items (a) VALUES ('n{i}')"],
        [("SELECT to_regclass('items_a') IS NULL", True)]),
    "create_constraint": (
        {"create_constraint": {"table": "items", "name": "items_b_positive", "type": "check",
                               "check": "b IS NULL OR b > 0"}},
        ["INSERT INTO items (a, b) VALUES ('o{i}', {i} + 1)"],
        ["INSERT INTO items (a, b) VALUES ('n{i}', {i} + 1)"],
        [("SELECT convalidated FROM pg_constraint WHERE conname = 'items_b_positive'", True)]),
    "create_constraint_fk": (
        {"create_constraint": {"table": "scratch", "name": "scratch_item", "type": "foreign_key",
                               "columns": ["id"], "references": {"table": "items", "columns": ["id"]}}},
        ["INSERT INTO scratch VALUES (400 + {i}, 'o')"],
        ["INSERT INTO scratch VALUES (300 + {i}, 'n')"],
        [("SELECT convalidated FROM pg_constraint WHERE conname = 'scratch_item'", True)]),
    "create_constraint_unique": (
        {"create_constraint": {"table": "items", "name": "items_a_b_unique", "type": "unique",
                               "columns": ["a", "b"]}},
        ["INSERT INTO items (a, b) VALUES ('o{i}', {i})"],
        ["INSERT INTO items (a, b) VALUES ('n{i}', {i})"],
        [("SELECT contype FROM pg_constraint WHERE conname = 'items_a_b_unique'", "u")]),
    "sql": (
        {"sql": {"up": "CREATE TABLE audit (id int)", "down": "DROP TABLE audit", "on": "start"}},
        ["INSERT INTO items (a) VALUES ('o{i}')"],
        ["INSERT INTO audit VALUES ({i})"],
        [("SELECT count(*) FROM audit", 40)]),
}

ITER = 40


def migration(case, suffix=""):
    return {"name": "m_" + case + suffix, "parent": None, "operations": [CASES[case][0]]}


def run_concurrent_writes(db, name, case):
    _, old_writes, new_writes, _ = CASES[case]
    errors = []

    def writer(statements, options):
        try:
            with psycopg.connect(db, autocommit=True, options=options) as c:
                for i in range(ITER):
                    for s in statements:
                        c.execute(s.format(i=i))
        except Exception as e:  # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(old_writes, "")),
               threading.Thread(target=writer, args=(new_writes, new_shape_options(name)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def verify_and_complete(db, name, case):
    v = migrate(db, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    for query, want in CASES[case][3]:
        got = sql(db, query)[0][0]
        if isinstance(want, float):
            got = float(got)
        assert got == want, (query, got, want)
    assert sql(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'") == [(0,)]
    assert sql(db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_start_writes_complete(db, case):
    sql(db, BASE)
    m = migration(case)
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 0, r.stderr
    run_concurrent_writes(db, m["name"], case)
    verify_and_complete(db, m["name"], case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_start_rollback_start_complete(db, case):
    sql(db, BASE)
    before_shape, before_items, before_scratch = shape(db), rows(db, "items"), rows(db, "scratch")
    m = migration(case)
    path = write_migration(m)
    r = migrate(db, "start", path)
    assert r.returncode == 0, r.stderr
    rb = migrate(db, "rollback")
    assert rb.returncode == 0, rb.stderr
    assert shape(db) == before_shape
    assert rows(db, "items") == before_items
    assert rows(db, "scratch") == before_scratch
    r = migrate(db, "start", path)
    assert r.returncode == 0, r.stderr
    run_concurrent_writes(db, m["name"], case)
    verify_and_complete(db, m["name"], case)


def test_rename_referenced_column_keeps_foreign_keys(db):
    sql(db, "CREATE TABLE accounts (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE);"
            "CREATE TABLE orders (id bigserial PRIMARY KEY, account_code text REFERENCES accounts (code)"
            " ON DELETE CASCADE, owner_code text);"
            "ALTER TABLE accounts ADD COLUMN parent_code text REFERENCES accounts (code);"
            "INSERT INTO accounts (code) SELECT 'c' || g FROM generate_series(1, 300) g;"
            "INSERT INTO orders (account_code) SELECT 'c' || (g % 300 + 1) FROM generate_series(1, 900) g")
    before_shape = shape(db)
    m = {"name": "accounts_ref", "parent": None,
         "operations": [{"rename_column": {"table": "accounts", "from": "code", "to": "ref"}}]}
    path = write_migration(m)
    assert migrate(db, "start", path).returncode == 0
    # during the migration both names are enforced for new referencing rows
    sql(db, "INSERT INTO orders (account_code) VALUES ('c7')")
    try:
        sql(db, "INSERT INTO orders (account_code) VALUES ('nope')")
        assert False, "foreign key not enforced"
    except psycopg.errors.ForeignKeyViolation:
        pass
    assert migrate(db, "rollback").returncode == 0
    assert shape(db) == before_shape
    assert migrate(db, "start", path).returncode == 0
    sql(db, "INSERT INTO accounts (ref) VALUES ('new1')", options=new_shape_options("accounts_ref"))
    r = migrate(db, "complete")
    assert r.returncode == 0, r.stderr
    fks = sql(db, "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                  " WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1")
    assert fks == [("accounts_parent_code_fkey", "FOREIGN KEY (parent_code) REFERENCES accounts(ref)", True),
                   ("orders_account_code_fkey",
                    "FOREIGN KEY (account_code) REFERENCES accounts(ref) ON DELETE CASCADE", True)]
    assert sql(db, "SELECT conname FROM pg_constraint WHERE contype = 'u' AND connamespace = 'public'::regnamespace") == [("accounts_code_key",)]
    sql(db, "DELETE FROM accounts WHERE ref = 'c7'")
    assert sql(db, "SELECT count(*) FROM orders WHERE account_code = 'c7'") == [(0,)]


def test_failed_unique_index_build_is_cleaned_up(db):
    sql(db, BASE + "UPDATE items SET b = 1 WHERE id < 5")
    before = shape(db)
    m = {"name": "uniq_b", "parent": None,
         "operations": [{"create_index": {"table": "items", "name": "items_b_unique", "columns": ["b"],
                                          "unique": True}}]}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 1
    assert "could not create unique index" in r.stderr
    assert "dropping the invalid index and retrying" in r.stderr
    assert shape(db) == before
    assert sql(db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]


def test_dual_write_triggers_fire_in_operation_order(db):
    """Eleven operations on one table: the last one's `up` reads c2, which
    operation 2 dual-writes from d2, so its trigger must fire after operation
    2's (Postgres fires triggers in name order: op 10 must not sort before op 2)."""
    sql(db, "CREATE TABLE wide (id bigserial PRIMARY KEY, a text, %s);"
            "INSERT INTO wide (a, %s) VALUES ('a0', %s)"
            % (", ".join("c%d text" % i for i in range(10)), ", ".join("c%d" % i for i in range(10)),
               ", ".join("'v%d'" % i for i in range(10))))
    # "copy": the writer below uses the base table by the new name
    ops = [{"rename_column": {"table": "wide", "from": "c%d" % i, "to": "d%d" % i, "copy": True}}
           for i in range(10)]
    ops.append({"rename_column": {"table": "wide", "from": "a", "to": "b",
                                  "up": "a || '+' || coalesce(c2, 'missing')", "down": "split_part(b, '+', 1)"}})
    m = {"name": "wide_order", "parent": None, "operations": ops}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 0, r.stderr
    assert sql(db, "SELECT b FROM wide WHERE id = 1") == [("a0+v2",)]
    sql(db, "INSERT INTO wide (a, d2) VALUES ('a1', 'w2')")  # one old name, one new name
    assert sql(db, "SELECT b, d2 FROM wide WHERE a = 'a1'") == [("a1+w2", "w2")]
    r = migrate(db, "complete")
    assert r.returncode == 0, r.stderr
    assert sql(db, "SELECT b, d2 FROM wide ORDER BY id") == [("a0+v2", "v2"), ("a1+w2", "w2")]
