"""An integer primary key running out of room, widened online through the
proxy: accounts(id serial) with orders(account_id integer REFERENCES
accounts) -> bigint, both columns in one migration.

Both releases insert and update through the proxy (the old release
through its integer columns from before `start` until it is retired, the
new one through bigint from `start` to after `complete`), and none of their
statements fails. At the end every row
is checked against what the clients wrote (the rows loaded at the start by
their formula, the clients' rows one by one), the columns and the key are
bigint, the foreign key is valid, and an insert past 2,147,483,647 works.

Until the contract the sequence keeps its integer bounds: it never hands
the old release a value its column cannot hold. When it runs out before the
contract, inserts fail for both releases as they would without the
migration (2200H), and the contract lifts the bound.

The size: PGT_KEY_ROWS accounts (three orders each); 1,000,000 in the
release build's run, 100,000 under the sanitizers."""
import os
import random
import threading
import time

import psycopg
import pytest

from support import pmigrate, proxy_start, proxy_uri, sql, wait_for, write_migration

NAME = "widen_keys"
# the backfill unthrottled: this test is about the keys, under clients busy
# enough that the latency budget (test_backfill_budget.py) would stretch it
MIGRATION = {"name": NAME, "parent": None, "backfill": {"app_p99_budget": 0}, "operations": [
    {"alter_column": {"table": "accounts", "column": "id", "type": "bigint", "up": "id::bigint",
                      "down": "id::int"}},
    {"alter_column": {"table": "orders", "column": "account_id", "type": "bigint", "up": "account_id::bigint",
                      "down": "account_id::int"}}]}
INT_MAX = 2147483647


def key_rows():
    default = 1000000 if os.environ.get("PGT_VARIANT", "rel") == "rel" else 100000
    return int(os.environ.get("PGT_KEY_ROWS", default))


def load(db, n, key="serial", notes=False):
    sql(db, "CREATE TABLE accounts (id %s PRIMARY KEY, name text NOT NULL);" % key)
    if notes:   # a second referencing table, whose column stays integer
        sql(db, "CREATE TABLE notes (id bigserial PRIMARY KEY, account_id integer REFERENCES accounts (id)"
                " ON DELETE CASCADE, body text);")
    sql(db, 
            "CREATE TABLE orders (id bigserial PRIMARY KEY,"
            " account_id integer NOT NULL REFERENCES accounts (id), amount integer NOT NULL);"
            "ALTER TABLE accounts SET (autovacuum_enabled = false);"
            "ALTER TABLE orders SET (autovacuum_enabled = false);"
            "INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, %d) g;"
            "INSERT INTO orders (account_id, amount) SELECT g %% %d + 1, g FROM generate_series(1, %d) g;"
            "CREATE INDEX orders_account ON orders (account_id);" % (n, n, 3 * n))
    if notes:
        sql(db, "INSERT INTO notes (account_id, body) SELECT g, 'n' FROM generate_series(1, %d, 10) g" % n)
    sql(db, "VACUUM ANALYZE accounts")
    sql(db, "VACUUM ANALYZE orders")


class Writer(threading.Thread):
    """One release's client through the proxy: inserts an account and an
    order for it, moves an order of the loaded ones to another account,
    renames an account; each write kept in the model, each error kept."""

    def __init__(self, uri, n, seed, options=""):
        super().__init__(daemon=True)
        self.uri, self.n, self.options = uri, n, options
        self.rnd = random.Random(seed)
        self.stop = threading.Event()
        self.accounts, self.orders, self.moved, self.renamed = {}, {}, {}, {}
        self.errors = []
        self.writes = 0

    def run(self):
        with psycopg.connect(self.uri, autocommit=True, options=self.options, application_name="keys") as c:
            while not self.stop.is_set():
                try:
                    self.once(c)
                except psycopg.Error as e:
                    self.errors.append(repr(e))
                    if len(self.errors) > 20:
                        return

    def once(self, c):
        with c.transaction():
            aid = c.execute("INSERT INTO accounts (name) VALUES ('w') RETURNING id").fetchone()[0]
            oid = c.execute("INSERT INTO orders (account_id, amount) VALUES (%s, 7) RETURNING id",
                            (aid,)).fetchone()[0]
        self.accounts[aid] = "w"
        self.orders[oid] = (aid, 7)
        k = self.rnd.randint(1, 3 * self.n)
        to = self.rnd.randint(1, self.n)
        c.execute("UPDATE orders SET account_id = %s WHERE id = %s", (to, k))
        self.moved[k] = to
        a = self.rnd.randint(1, self.n)
        c.execute("UPDATE accounts SET name = %s WHERE id = %s", ("r%d" % a, a))
        self.renamed[a] = "r%d" % a
        self.writes += 1


def new_options():
    return "-c pgtandem.version=%s" % NAME


def check_rows(db, n, writers):
    """Every row: the loaded ones by their formula unless a client changed
    them, the clients' own one by one."""
    moved, renamed, accounts, orders = {}, {}, {}, {}
    for w in writers:      # disjoint keys between writers except moves and renames: last writer wins is
        moved.update(w.moved)     # not decidable, so each writer moves and renames its own keys
        renamed.update(w.renamed)
        accounts.update(w.accounts)
        orders.update(w.orders)
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("CREATE TEMP TABLE moved (id bigint PRIMARY KEY, account_id bigint)")
        c.execute("CREATE TEMP TABLE renamed (id bigint PRIMARY KEY, name text)")
        with c.cursor().copy("COPY moved FROM STDIN") as cp:
            for k, v in moved.items():
                cp.write_row((k, v))
        with c.cursor().copy("COPY renamed FROM STDIN") as cp:
            for k, v in renamed.items():
                cp.write_row((k, v))
        bad_orders = c.execute(
            "SELECT count(*) FROM orders o LEFT JOIN moved m USING (id) WHERE o.id <= %s"
            " AND (o.account_id <> coalesce(m.account_id, o.id %% %s + 1) OR o.amount <> o.id)",
            (3 * n, n)).fetchone()[0]
        bad_accounts = c.execute(
            "SELECT count(*) FROM accounts a LEFT JOIN renamed r USING (id) WHERE a.id <= %s"
            " AND a.name <> coalesce(r.name, 'a' || a.id)", (n,)).fetchone()[0]
        assert (bad_orders, bad_accounts) == (0, 0), "loaded rows changed: %d orders, %d accounts" % (
            bad_orders, bad_accounts)
        assert c.execute("SELECT count(*) FROM orders WHERE id <= %s", (3 * n,)).fetchone()[0] == 3 * n
        assert c.execute("SELECT count(*) FROM accounts WHERE id <= %s", (n,)).fetchone()[0] == n
        got_a = dict(c.execute("SELECT id, name FROM accounts WHERE id > %s", (n,)).fetchall())
        got_o = {r[0]: (r[1], r[2]) for r in c.execute(
            "SELECT o.id, o.account_id, o.amount FROM orders o LEFT JOIN moved m USING (id)"
            " WHERE o.id > %s AND m.id IS NULL", (3 * n,))}
        want_o = {k: v for k, v in orders.items() if k not in moved}
        assert got_a == accounts, "accounts the clients inserted: %d read, %d written" % (len(got_a), len(accounts))
        assert got_o == want_o, "orders the clients inserted: %d read, %d written" % (len(got_o), len(want_o))


def facts(db):
    return sql(db, "SELECT table_name, column_name, data_type FROM information_schema.columns"
                   " WHERE table_schema = 'public' AND column_name IN ('id', 'account_id') ORDER BY 1, 2") + \
        sql(db, "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                " WHERE connamespace = 'public'::regnamespace ORDER BY 1") + \
        sql(db, "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'accounts_id_seq'::regclass")


def expected_facts(key, notes):
    f = [("accounts", "id", "bigint")]
    f += [("notes", "account_id", "integer"), ("notes", "id", "bigint")] if notes else []
    f += [("orders", "account_id", "bigint"), ("orders", "id", "bigint"),
          ("accounts_pkey", "PRIMARY KEY (id)", True)]
    f += [("notes_account_id_fkey", "FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE CASCADE", True),
          ("notes_pkey", "PRIMARY KEY (id)", True)] if notes else []
    f += [("orders_account_id_fkey", "FOREIGN KEY (account_id) REFERENCES accounts(id)", True),
          ("orders_pkey", "PRIMARY KEY (id)", True), ("bigint",)]
    return f


# serial at full size; an identity key referenced by a second table (whose
# column stays integer) at a tenth of it
VARIANTS = [pytest.param("serial", 1, False, id="serial"),
            pytest.param("int GENERATED BY DEFAULT AS IDENTITY", 10, True, id="identity-two-referencing")]


@pytest.mark.parametrize("key,fraction,notes", VARIANTS)
def test_int_key_and_its_foreign_keys_widen_under_both_releases(db, proxy_factory, capsys, key, fraction, notes):
    n = max(1000, key_rows() // fraction)
    load(db, n, key, notes)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    via = proxy_uri(proxy, db)
    # each writer moves and renames only keys of its own residue, so the
    # model knows the last write of every key
    old = Writer(via, n, 1)
    old.start()
    wait_for(lambda: old.writes >= 20 or old.errors, 60, "the old release's first writes")
    t0 = time.monotonic()
    proxy_start(proxy, write_migration(MIGRATION))
    started = time.monotonic() - t0
    new = Writer(via, n, 2, new_options())
    new.start()
    wait_for(lambda: new.writes >= 20 and old.writes >= 40 or new.errors, 60, "both releases' writes")
    # the rolling deploy retires the old release, then the cutover runs
    # under the new release's writes
    old.stop.set()
    old.join(60)
    t1 = time.monotonic()
    r = pmigrate(proxy, "complete")
    completed = time.monotonic() - t1
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    writes = new.writes
    wait_for(lambda: new.writes >= writes + 20 or new.errors, 60, "the new release writing after complete")
    new.stop.set()
    new.join(60)
    assert old.errors == [] and new.errors == [], (old.errors[:3], new.errors[:3])
    with capsys.disabled():
        print("\n[key widening, %s] %d accounts, %d orders: start %.1f s, complete %.1f s; writes: old release %d,"
              " new release %d, 0 errors" % (key, n, 3 * n, started, completed, old.writes, new.writes))

    # the moves and renames of both writers touch random keys: the later
    # write of a key wins, and the two writers' order is not known, so the
    # rows they both touched are checked as either's value
    both_moved = set(old.moved) & set(new.moved)
    both_renamed = set(old.renamed) & set(new.renamed)
    with psycopg.connect(db, autocommit=True) as c:
        for k in both_moved:
            got = c.execute("SELECT account_id FROM orders WHERE id = %s", (k,)).fetchone()[0]
            assert got in (old.moved[k], new.moved[k])
            old.moved[k] = new.moved[k] = got
        for k in both_renamed:
            got = c.execute("SELECT name FROM accounts WHERE id = %s", (k,)).fetchone()[0]
            assert got in (old.renamed[k], new.renamed[k])
            old.renamed[k] = new.renamed[k] = got
    check_rows(db, n, (old, new))

    assert facts(db) == expected_facts(key, notes)
    if notes:
        assert sql(db, "SELECT count(*) FROM notes n LEFT JOIN accounts a ON a.id = n.account_id"
                       " WHERE a.id IS NULL") == [(0,)]
    # past the integer's room, through the proxy
    sql(db, "SELECT setval('accounts_id_seq', %d)" % INT_MAX)
    with psycopg.connect(via, autocommit=True) as c:
        aid = c.execute("INSERT INTO accounts (name) VALUES ('big') RETURNING id").fetchone()[0]
        c.execute("INSERT INTO orders (account_id, amount) VALUES (%s, 1)", (aid,))
    assert aid == INT_MAX + 1
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem_widen%'") == [(0,)]


def test_the_sequence_keeps_the_old_bound_until_the_contract(db, proxy_factory):
    sql(db, "CREATE TABLE accounts (id serial PRIMARY KEY, name text);"
            "CREATE TABLE orders (id bigserial PRIMARY KEY, account_id integer REFERENCES accounts (id),"
            " amount integer);"
            "INSERT INTO accounts (name) SELECT 'a' FROM generate_series(1, 100);"
            "SELECT setval('accounts_id_seq', %d)" % (INT_MAX - 2))
    proxy = proxy_factory(extra_args=["--engine-db", db])
    via = proxy_uri(proxy, db)
    proxy_start(proxy, write_migration(MIGRATION))
    with psycopg.connect(via, autocommit=True) as old, \
            psycopg.connect(via, autocommit=True, options=new_options()) as new:
        assert old.execute("INSERT INTO accounts (name) VALUES ('o') RETURNING id").fetchone()[0] == INT_MAX - 1
        assert new.execute("INSERT INTO accounts (name) VALUES ('n') RETURNING id").fetchone()[0] == INT_MAX
        # the sequence is spent for both releases, as it would be without the
        # migration; no release gets a value the old column cannot hold
        for c in (old, new):
            with pytest.raises(psycopg.errors.SequenceGeneratorLimitExceeded):
                c.execute("INSERT INTO accounts (name) VALUES ('x')")
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    with psycopg.connect(via, autocommit=True) as c:
        assert c.execute("INSERT INTO accounts (name) VALUES ('after') RETURNING id").fetchone()[0] == INT_MAX + 1
    assert sql(db, "SELECT count(*) FROM accounts WHERE id >= %d" % (INT_MAX - 1)) == [(3,)]
