"""Engine faults of issue 10, each reproduced with `--db` and, where the proxy
has its own path, through the proxy's engine (`--proxy`):

- 5: alter_column on a NOT NULL column completes (the contract used to set
  NOT NULL on the shadow column after renaming it away);
- 6: a check that existing rows violate makes `complete` refuse before the
  cutover (exit 1, the number of offending rows and a sample key); nothing
  changes, and once the rows are fixed `complete` succeeds;
- 3: a failed backfill batch names the row (its key) and the expression;
- 9: no negative or meaningless rates in the CLI's output, a non-lock
  contract error does not claim ten attempts, and a lock timeout keeps its
  reason.

Every scenario that moves data ends with a row-by-row comparison."""
import json
import re
import threading
import time

import psycopg
import pytest

from support import (dbname, engine_proxy, migrate, new_shape_options, pmigrate, proxy_start, proxy_uri, rows,
                     shape, sql, write_migration)

NROWS = 2000

BASE = """
CREATE TABLE items (id bigserial PRIMARY KEY, env text NOT NULL, qty int, price text, note text);
INSERT INTO items (env, qty, price, note)
  SELECT 'env' || g, g - 3, (g / 4.0)::text, 'n' || g FROM generate_series(1, %d) g;
""" % NROWS

RATE = re.compile(r"(-?[\d.]+|\?|nan|-?inf) rows/s")


# ---- helpers -----------------------------------------------------------------

def write_both_shapes(uri, name, old_sql, new_sql, n=30):
    """Concurrent writers through the old and the new shape; returns nothing,
    raises what a writer hit."""
    errors = []

    def writer(statement, options):
        try:
            with psycopg.connect(uri, autocommit=True, options=options) as c:
                for i in range(n):
                    c.execute(statement.format(i=i))
        except Exception as e:  # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(old_sql, "")),
               threading.Thread(target=writer, args=(new_sql, new_shape_options(name)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def column_info(db, column):
    return sql(db, "SELECT data_type, is_nullable FROM information_schema.columns"
                   " WHERE table_schema = 'public' AND table_name = 'items' AND column_name = %s", (column,))[0]


def assert_rows(db, before, field, convert, written):
    """Row by row: every loaded row kept its values (field converted as the
    migration's `up` does), and exactly the written rows were added."""
    after = {r[0]["id"]: r[0] for r in rows(db, "items", order="t.id")}
    for (old,) in before:
        new = after.pop(old["id"])
        expect = dict(old)
        expect[field] = convert(old[field])
        assert new == expect, (old, new)
    assert sorted(r[field] for r in after.values()) == sorted(written), (sorted(after.values(), key=str)[:5])


def alter_env():
    return {"name": "env_varchar", "parent": None, "operations": [
        {"alter_column": {"table": "items", "column": "env", "type": "varchar(64)",
                          "up": "env::varchar(64)", "down": "env::text"}}]}


def alter_qty_with_check():
    return {"name": "qty_bigint_positive", "parent": None, "operations": [
        {"alter_column": {"table": "items", "column": "qty", "type": "bigint",
                          "up": "qty::bigint", "down": "qty::int", "check": "qty > 0"}}]}


# ---- 5: alter_column on a NOT NULL column --------------------------------------

def check_env_completed(db, before):
    assert column_info(db, "env") == ("character varying", "NO")
    with pytest.raises(psycopg.errors.NotNullViolation):
        sql(db, "INSERT INTO items (env) VALUES (NULL)")
    assert sql(db, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'c'") == [(0,)]
    written = ["old%d" % i for i in range(30)] + ["new%d" % i for i in range(30)]
    assert_rows(db, before, "env", lambda v: v, written)


class Driver:
    """One migration driven either by the CLI on the database (`db`) or by a
    proxy's engine (`proxy`): the engine core is the same, so one test body
    checks both; what only one path has (the proxy's phase, its cutover
    report) is checked on that path."""

    def __init__(self, via, db, proxy_factory, cluster):
        self.via, self.db = via, db
        self.proxy = engine_proxy(proxy_factory, cluster, dbname(db)) if via == "proxy" else None

    def start(self, m):
        if self.proxy:
            proxy_start(self.proxy, write_migration(m))
            return
        r = migrate(self.db, "start", write_migration(m))
        assert r.returncode == 0, r.stderr

    def uri(self):
        return proxy_uri(self.proxy, self.db) if self.proxy else self.db

    def complete(self):
        if self.proxy:
            return pmigrate(self.proxy, "complete")
        return migrate(self.db, "complete")

    def log(self):
        return self.proxy.log()[-3000:] if self.proxy else ""

    def current(self):
        if self.proxy:
            code, cur = self.proxy.admin("GET", "/migrations/current")
            assert code == 200, cur
            return cur
        r = migrate(self.db, "status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture(params=["db", "proxy"])
def driver(request, db, proxy_factory, cluster):
    return Driver(request.param, db, proxy_factory, cluster)


def test_alter_not_null_column_completes(db, driver):
    sql(db, BASE)
    before = rows(db, "items", order="t.id")
    m = alter_env()
    driver.start(m)
    write_both_shapes(driver.uri(), m["name"], "INSERT INTO items (env) VALUES ('old{i}')",
                      "INSERT INTO items (env) VALUES ('new{i}')")
    if driver.via == "db":
        v = migrate(db, "verify")
        assert v.returncode == 0, v.stdout + v.stderr
    c = driver.complete()
    assert c.returncode == 0, c.stdout + c.stderr + driver.log()
    assert "migration complete" in c.stdout
    if driver.via == "proxy":
        assert driver.current()["phase"] == "completed"
    check_env_completed(db, before)


# ---- 6: a check that existing rows violate ------------------------------------

def assert_refused_for_violations(text):
    # rows 1..3 have qty -2, -1, 0
    assert re.search(r"\b3 (existing )?rows?\b", text), text
    assert re.search(r'\("?id"?\)=\(1\)', text), text
    assert "qty > 0" in text, text
    assert "migration complete" not in text, text


def check_qty_completed(db, before):
    assert column_info(db, "qty")[0] == "bigint"
    assert sql(db, "SELECT convalidated FROM pg_constraint WHERE conrelid = 'items'::regclass"
                   " AND contype = 'c'") == [(True,)]
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(db, "INSERT INTO items (env, qty) VALUES ('bad', -5)")
    fixed = [dict(r[0], qty=1) if r[0]["qty"] <= 0 else r[0] for r in before]
    assert_rows(db, [(r,) for r in fixed], "qty", lambda v: v, [])


def test_violated_check_refuses_complete(db, driver):
    sql(db, BASE)
    before = rows(db, "items", order="t.id")
    m = alter_qty_with_check()
    driver.start(m)
    shape_active = shape(db)
    c = driver.complete()
    assert c.returncode == 1, c.stdout + c.stderr + driver.log()
    assert_refused_for_violations(c.stdout + c.stderr)
    # nothing changed: still active, same shape, and no contract was attempted
    cur = driver.current()
    assert cur.get("phase", cur.get("status")) == "active", cur
    assert shape(db) == shape_active
    if driver.via == "db":
        assert "contract:" not in c.stderr, c.stderr
    else:
        assert not cur.get("cutover"), cur   # traffic was never paused for it
    # the operator fixes the rows through the old shape; complete now succeeds
    sql(db, "UPDATE items SET qty = 1 WHERE qty <= 0")
    c = driver.complete()
    assert c.returncode == 0, c.stdout + c.stderr + driver.log()
    assert "migration complete" in c.stdout
    check_qty_completed(db, before)


def test_alter_column_check_is_written_for_the_new_type(db):
    """`down` and `check` of alter_column see the column with its new type."""
    sql(db, BASE)
    before = rows(db, "items", order="t.id")
    m = {"name": "price_positive", "parent": None, "operations": [
        {"alter_column": {"table": "items", "column": "price", "type": "numeric(10,2)",
                          "up": "price::numeric(10,2)", "down": "to_char(price, 'FM9999990.00')",
                          "check": "price > 0"}}]}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 0, r.stderr
    sql(db, "INSERT INTO items (env, price) VALUES ('new', 7.5)", options=new_shape_options(m["name"]))
    assert sql(db, "SELECT price FROM items WHERE env = 'new'") == [("7.50",)]
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    assert sql(db, "SELECT convalidated FROM pg_constraint WHERE conrelid = 'items'::regclass"
                   " AND contype = 'c'") == [(True,)]
    expect = [dict(o, price=float(o["price"])) for (o,) in before] + [None]
    got = [dict(x[0], price=float(x[0]["price"])) for x in rows(db, "items", order="t.id")]
    assert got[:-1] == expect[:-1] and got[-1]["env"] == "new" and got[-1]["price"] == 7.5, got[-3:]


# ---- 3: a failed batch names the row and the expression -----------------------

def test_failed_batch_names_row_and_expression(db):
    sql(db, BASE)
    sql(db, "UPDATE items SET price = 'n/a' WHERE id = 1234")
    before = rows(db, "items", order="t.id")
    m = {"name": "price_numeric", "parent": None, "backfill": {"batch_rows": 500, "max_rows": 500},
         "operations": [
             {"rename_column": {"table": "items", "from": "note", "to": "remark"}},
             {"alter_column": {"table": "items", "column": "price", "type": "numeric(10,2)",
                               "up": "price::numeric(10,2)", "down": "price::text"}}]}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 1, r.stderr
    err = r.stderr
    assert re.search(r'\("?id"?\)=\(1234\)', err), err
    assert "price::numeric(10,2)" in err, err
    assert "operations[1]" in err, err
    assert 'invalid input syntax for type numeric: "n/a"' in err, err
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "backfilling" and "1234" in st["error"], st
    # fixed, the backfill continues from its checkpoint and the migration completes
    sql(db, "UPDATE items SET price = '308.50' WHERE id = 1234")
    r = migrate(db, "resume")
    assert r.returncode == 0, r.stderr
    v = migrate(db, "verify")
    assert v.returncode == 0 and "0 where the new shape disagrees" in v.stdout, v.stdout
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    expect = []
    for (old,) in before:
        e = dict(old)
        e["price"] = 308.5 if old["id"] == 1234 else round(float(old["price"]), 2)
        e["remark"] = e.pop("note")
        expect.append(e)
    got = [dict(r[0], price=float(r[0]["price"])) for r in rows(db, "items", order="t.id")]
    assert got == expect


# ---- 9: rates and contract messages ----------------------------------------------

def rates(text):
    return [m.group(1) for m in RATE.finditer(text)]


def assert_sensible_rates(text):
    for rate in rates(text):
        assert rate != "?" and float(rate) > 0, text


def test_rates_are_per_table_and_positive_db(db):
    sql(db, "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, w text);"
            "INSERT INTO a SELECT g, 'x' || g FROM generate_series(1, 5000) g;"
            "INSERT INTO b SELECT g, 'y' || g FROM generate_series(1, 10) g")
    before_a, before_b = rows(db, "a", order="t.id"), rows(db, "b", order="t.id")
    m = {"name": "two_tables", "parent": None, "backfill": {"batch_rows": 500, "max_rows": 500},
         "operations": [{"rename_column": {"table": "a", "from": "v", "to": "v2", "copy": True}},
                        {"rename_column": {"table": "b", "from": "w", "to": "w2", "copy": True}}]}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 0, r.stderr
    assert len(rates(r.stderr)) >= 2, r.stderr
    assert_sensible_rates(r.stderr)
    assert migrate(db, "complete").returncode == 0
    assert [dict(x[0], v=x[0].pop("v2")) for x in rows(db, "a", order="t.id")] == [x[0] for x in before_a]
    assert [dict(x[0], w=x[0].pop("w2")) for x in rows(db, "b", order="t.id")] == [x[0] for x in before_b]


def test_rates_after_a_resubmit_through_proxy(db, proxy_factory, cluster):
    """A backfill begun by the CLI, continued by the proxy, failing on a bad
    row, then submitted again: whatever the proxy's counters say, the CLI never
    shows a negative rate."""
    sql(db, BASE)
    sql(db, "UPDATE items SET price = 'n/a' WHERE id = 1900")
    before = rows(db, "items", order="t.id")
    m = {"name": "price_numeric_p", "parent": None, "backfill": {"batch_rows": 200, "max_rows": 200},
         "operations": [{"alter_column": {"table": "items", "column": "price", "type": "numeric(10,2)",
                                          "up": "price::numeric(10,2)", "down": "price::text"}}]}
    path = write_migration(m)
    r = migrate(db, "start", path, "--stop-after-batches", "5")
    assert r.returncode == 0, r.stderr
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))   # picks the backfill up at its checkpoint
    deadline = time.time() + 60
    while True:
        code, cur = proxy.admin("GET", "/migrations/current")
        if code == 200 and cur["phase"] == "failed":
            break
        assert time.time() < deadline, cur
        time.sleep(0.1)
    outputs = []
    s = pmigrate(proxy, "status")
    outputs.append(s.stdout + s.stderr)
    again = pmigrate(proxy, "start", path)
    outputs.append(again.stdout + again.stderr)
    for _ in range(3):
        s = pmigrate(proxy, "status")
        outputs.append(s.stdout + s.stderr)
        time.sleep(0.2)  # sampling: the status is read three times over a while
    for text in outputs:
        for rate in rates(text):
            assert rate != "nan" and "inf" not in rate and float(rate if rate != "?" else 0) >= 0, text
    assert any("rows/s" in t for t in outputs), outputs
    # the data: fix the row and finish with the CLI (the proxy no longer runs it)
    proxy.stop()
    sql(db, "UPDATE items SET price = '475.00' WHERE id = 1900")
    r = migrate(db, "resume")
    assert r.returncode == 0, r.stderr
    assert migrate(db, "complete").returncode == 0
    got = {x[0]["id"]: float(x[0]["price"]) for x in rows(db, "items", order="t.id")}
    assert got == {o["id"]: (475.0 if o["id"] == 1900 else round(float(o["price"]), 2)) for (o,) in before}


def contract_error_migration(name):
    return {"name": name, "parent": None, "operations": [
        {"rename_column": {"table": "items", "from": "note", "to": "remark"}},
        {"sql": {"up": "SELECT 1 / (SELECT count(*) FROM items WHERE remark = 'zero')", "on": "complete"}}]}


def test_non_lock_contract_error_counts_one_attempt(db, proxy_factory, cluster):
    sql(db, BASE)
    before = rows(db, "items", order="t.id")
    m = contract_error_migration("contract_div0")
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    proxy_start(proxy, write_migration(m))
    c = pmigrate(proxy, "complete")
    text = c.stdout + c.stderr
    assert c.returncode == 1, text + proxy.log()[-3000:]
    assert "division by zero" in text, text
    assert "10 attempt" not in text, text
    assert re.search(r"after 1 attempt", text), text
    code, cur = proxy.admin("GET", "/migrations/current")
    assert cur["phase"] == "active" and cur["cutover"]["attempts"] == 1, cur
    proxy.stop()
    # and the same with --db
    c = migrate(db, "complete", "--retries", "10")
    assert c.returncode == 1
    assert "10 attempt" not in c.stderr and "after 1 attempt" in c.stderr, c.stderr
    # once the statement can run, the migration completes
    sql(db, "UPDATE items SET note = 'zero' WHERE id = 1")
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    expect = [dict(o, remark=("zero" if o["id"] == 1 else o["note"])) for (o,) in before]
    for e in expect:
        del e["note"]
    assert [x[0] for x in rows(db, "items", order="t.id")] == expect


def test_lock_timeouts_keep_their_reason_through_proxy(db, proxy_factory, cluster):
    sql(db, BASE)
    before = rows(db, "items", order="t.id")
    m = {"name": "rename_note", "parent": None,
         "operations": [{"rename_column": {"table": "items", "from": "note", "to": "remark"}}]}
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    proxy_start(proxy, write_migration(m))
    # straight to Postgres: the pause does not wait for it (and it bypasses
    # the proxies on purpose, hence force=1)
    blocker = psycopg.connect(db)
    blocker.execute("LOCK TABLE items IN ACCESS SHARE MODE")
    try:
        code, body = proxy.admin("POST", "/migrations/current/complete?attempts=2&lock_timeout_ms=50&force=1")
    finally:
        blocker.close()
    assert code == 409, body
    assert body["attempts"] == 2, body
    # The reason survives: a lock timeout, or (once the blocker's transaction
    # is older than the lock timeout) the blocker itself, named before anyone
    # is held.
    assert ("lock timeout" in body["error"] or "blocked by pid" in body["error"]), body
    assert "attempts: ;" not in body["error"], body
    log = proxy.log()
    assert "abandoned ()" not in log, log[-3000:]
    assert re.search(r"abandoned \((lock timeout|blocked by)", log), log[-3000:]
    c = pmigrate(proxy, "complete")
    assert c.returncode == 0, c.stdout + c.stderr + proxy.log()[-3000:]
    expect = [dict(o, remark=o["note"]) for (o,) in before]
    for e in expect:
        del e["note"]
    assert [x[0] for x in rows(db, "items", order="t.id")] == expect
