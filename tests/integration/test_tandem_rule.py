"""The tandem rule, on the four cases of the issue that reported it broken.

The rule: a session's shape is its `pgtandem.version` (the migration's name:
the new shape; anything else: the old one). Every write from the old shape
runs `up` into the new shape's columns, every write from the new shape runs
`down` into the old shape's, and never onto the writer's own columns; a
NULL source is not special. `up` and `down` may read columns the same
migration adds or drops. A volatile default is added without rewriting the
table; a rename that keeps the type moves no data.

1. add_column uuid NOT NULL DEFAULT gen_random_uuid() on 300,000 rows: a
   reader through the proxy never waits a second (no table rewrite under
   ACCESS EXCLUSIVE), every row gets a distinct uuid, and `complete` ends
   where the offline DDL ends.
2. alter_column nullable:false with a COALESCE fill: old-shape writes of
   NULL, and old-shape updates of other columns of rows whose email is
   NULL, are filled instead of refused; start and complete succeed.
3. A split in one migration (add full_name from first and last, drop
   first and last with split_part): accepted, and both shapes read each
   other's writes.
4. A rename that keeps the type: no second column, no backfill, almost no
   WAL; both names work, complete renames and rollback restores.

Each case ends by comparing both shapes row by row with what the clients
wrote, and counting the rows."""
import functools
import threading
import time
import uuid

import psycopg

from support import (migrate, new_shape_options, pmigrate, proxy_start, proxy_uri, shape, sql, wait_for,
                     write_migration)

APP = "tandem-test"   # the application_name of every connection these tests open


def old_shape_options(name):
    """A session of the old release without the proxy: no version, the old
    shape's schema first (what the proxy's route gives it)."""
    return "-c search_path=pgtandem_%s_old,public" % name


# every statement of these tests names the application, so that sessions_gone
# can tell their sessions from others
app_sql = functools.partial(sql, application_name=APP)


def connect(uri, options=""):
    return psycopg.connect(uri, autocommit=True, options=options, application_name=APP)


def sessions_gone(db):
    """Waits until no connection these tests opened is left in
    pg_stat_activity. A backend leaves a moment after its client closes the
    connection, and the proxy's cutover refuses while a session that
    bypasses it has touched the migrated tables."""
    def gone():
        with psycopg.connect(db, autocommit=True, application_name="tandem-wait") as c:
            return c.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = %s",
                             (APP,)).fetchone()[0]
    wait_for(gone, 30, "the test's connections to leave pg_stat_activity")


def table_columns(db, table):
    return [r[0] for r in app_sql(db, "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                                  " AND NOT attisdropped ORDER BY attnum", ("public." + table,))]


def read_rows(conn, table, cols, key="id"):
    """{key: (cols...)} read through conn's shape."""
    q = "SELECT %s, %s FROM %s ORDER BY 1" % (key, ", ".join(cols), table)
    return {r[0]: tuple(r[1:]) for r in conn.execute(q)}


def run_ok(r, what):
    assert r.returncode == 0, "%s exited %d:\n%s%s" % (what, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    return r


def first_differences(got, want, n=5):
    keys = sorted(set(got) | set(want))
    return [(k, got.get(k, "<missing>"), want.get(k, "<missing>")) for k in keys if got.get(k) != want.get(k)][:n]


def assert_rows(got, want, what):
    assert got == want, "%s: %d rows read, %d expected; first differences (key, read, expected): %r" % (
        what, len(got), len(want), first_differences(got, want))


# ---- 1. a volatile default ------------------------------------------------------

ITEMS = 300000
UID_NAME = "items_uid"
UID_MIGRATION = {"name": UID_NAME, "parent": None, "operations": [
    {"add_column": {"table": "items", "column": {"name": "uid", "type": "uuid", "nullable": False,
                                                 "default": "gen_random_uuid()"}}}]}


PAD = 800   # bytes of payload per row: a table of about 270 MB


def payload(i):
    return "p%d-%s" % (i, "x" * PAD)


class Reader(threading.Thread):
    """An old-release client through the proxy: a prepared SELECT by key every
    10 ms (paced by waiting on its stop event), each one's latency kept."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(uri, autocommit=True, prepare_threshold=0, application_name=APP)
        self.stop = threading.Event()
        self.latencies = []   # (started at, seconds)
        self.errors = []
        self.wrong = []

    def run(self):
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                key = 1 + (i * 7919) % ITEMS
                t0 = time.monotonic()
                try:
                    row = self.conn.execute("SELECT payload FROM items WHERE id = %s", (key,)).fetchone()
                except psycopg.Error as e:
                    self.errors.append(repr(e))
                    continue
                took = time.monotonic() - t0
                self.latencies.append((t0, took))
                if row != (payload(key),):
                    self.wrong.append((key, row))
                self.stop.wait(max(0.0, 0.01 - took))
        finally:
            self.conn.close()


class PayloadModel(dict):
    """id -> payload for the rows clients changed or added; every other id
    in 1..ITEMS holds payload(id). Compared with a shape's rows as they
    stream in, without holding the table in memory."""

    def __len__(self):
        return ITEMS + sum(1 for k in self.keys() if k > ITEMS)

    def ids(self):
        yield from range(1, ITEMS + 1)
        yield from sorted(k for k in self.keys() if k > ITEMS)

    def compare(self, conn, query, what):
        """query: id, payload[, uid] ordered by id; a uid must be there."""
        wrong, n = [], 0
        rows = conn.cursor().stream(query)
        for want_id, row in zip(self.ids(), rows):
            n += 1
            want = self.get(want_id, payload(want_id))
            if (row[0], row[1]) != (want_id, want) or (len(row) > 2 and row[2] is None):
                wrong.append((want_id, row[:1] + (row[1][:20],) + row[2:], want[:20]))
                if len(wrong) >= 5:
                    break
        rest = list(rows) if not wrong else []
        assert not wrong and not rest and n == len(self), \
            "%s: %d rows read (+%d more), %d written by the clients; first differences (id, read, written): %r" % (
                what, n, len(rest), len(self), wrong)


def uid_facts(db, table):
    return app_sql(db, "SELECT c.data_type, c.is_nullable, c.column_default FROM information_schema.columns c"
                   " WHERE c.table_schema = 'public' AND c.table_name = %s AND c.column_name = 'uid'", (table,))


def test_volatile_default_adds_the_column_without_rewriting_the_table(db, proxy_factory, capsys):
    app_sql(db, "CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);"
            "INSERT INTO items SELECT g, 'p' || g || '-' || repeat('x', %d) FROM generate_series(1, %d) g"
            % (PAD, ITEMS))
    app_sql(db, "VACUUM ANALYZE items")
    # An autovacuum of the backfilled table holds SHARE UPDATE EXCLUSIVE, which
    # the NOT NULL check's VALIDATE waits for longer than its lock_timeout on a
    # busy machine (a known limit, doc/choices-and-limits.md); this test is
    # about the app's latency, so it keeps autovacuum away from the table.
    app_sql(db, "ALTER TABLE items SET (autovacuum_enabled = false)")
    # the offline DDL, on a twin table: what complete must end in
    app_sql(db, "CREATE TABLE items_offline (id bigint PRIMARY KEY, payload text NOT NULL);"
            "INSERT INTO items_offline SELECT g, 'p' || g FROM generate_series(1, 10) g;"
            "ALTER TABLE items_offline ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid()")
    filenode = app_sql(db, "SELECT relfilenode FROM pg_class WHERE oid = 'public.items'::regclass")[0][0]
    proxy = proxy_factory(extra_args=["--engine-db", db])
    via = proxy_uri(proxy, db)
    # what the clients wrote: payload(id) for ids 1..ITEMS, except these
    model = PayloadModel()

    reader = Reader(via)
    reader.start()
    try:
        wait_for(lambda: len(reader.latencies) >= 20 or reader.errors, 30, "the reader's first reads")
        t_start = time.monotonic()
        proxy_start(proxy, write_migration(UID_MIGRATION))
        t_end = time.monotonic()
        n = len(reader.latencies)
        wait_for(lambda: len(reader.latencies) >= n + 20 or reader.errors, 30, "the reader after start")
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.errors == [] and reader.wrong == [], (reader.errors[:5], reader.wrong[:5])
    during = [d for t0, d in reader.latencies if t_start - 1 <= t0 <= t_end]
    worst = max(d for _, d in reader.latencies)
    assert during, "no read while start ran (%.1f s)" % (t_end - t_start)
    assert worst < 1.0, ("a read through the proxy waited %.0f ms while start ran (%.1f s, %d reads): the"
                         " table was locked, e.g. rewritten to add a volatile default" %
                         (worst * 1000, t_end - t_start, len(during)))
    with capsys.disabled():
        print("\n[tandem rule] start took %.2f s; %d reads through the proxy meanwhile, the slowest %.1f ms"
              % (t_end - t_start, len(during), worst * 1000))
    # the table was not rewritten: same file
    assert app_sql(db, "SELECT relfilenode FROM pg_class WHERE oid = 'public.items'::regclass")[0][0] == filenode, \
        "items was rewritten by start"

    # every row has its own uuid once start is done
    assert app_sql(db, "SELECT count(*), count(uid), count(DISTINCT uid) FROM items") == [(ITEMS, ITEMS, ITEMS)]

    # old-shape writes while the migration is active, through the proxy
    with connect(via) as old:
        assert [d.name for d in old.execute("SELECT * FROM items LIMIT 1").description] == ["id", "payload"]
        for i in range(ITEMS + 1, ITEMS + 51):
            old.execute("INSERT INTO items (id, payload) VALUES (%s, %s)", (i, payload(i)))
            model[i] = payload(i)
        for i in range(1, 500, 10):
            old.execute("UPDATE items SET payload = %s WHERE id = %s", ("old-update-%d" % i, i))
            model[i] = "old-update-%d" % i
    explicit = {}
    with connect(via, new_shape_options(UID_NAME)) as new:
        assert [d.name for d in new.execute("SELECT * FROM items LIMIT 1").description] == ["id", "payload", "uid"]
        for i in range(ITEMS + 51, ITEMS + 71):     # the default
            new.execute("INSERT INTO items (id, payload) VALUES (%s, %s)", (i, payload(i)))
            model[i] = payload(i)
        for i in range(ITEMS + 71, ITEMS + 76):     # their own
            explicit[i] = uuid.uuid4()
            new.execute("INSERT INTO items (id, payload, uid) VALUES (%s, %s, %s)", (i, payload(i), explicit[i]))
            model[i] = payload(i)
    assert app_sql(db, "SELECT count(*) FROM items WHERE uid IS NULL") == [(0,)], "an old-shape insert got no uid"
    for i, u in explicit.items():
        assert app_sql(db, "SELECT uid FROM items WHERE id = %s", (i,)) == [(u,)]

    # row by row: the old shape, the new shape, and what the clients wrote
    with connect(via) as old, connect(via, new_shape_options(UID_NAME)) as new:
        model.compare(old, "SELECT id, payload FROM items ORDER BY id", "old shape")
        model.compare(new, "SELECT id, payload, uid FROM items ORDER BY id", "new shape")
    assert app_sql(db, "SELECT count(*), count(uid), count(DISTINCT uid) FROM items") == [(len(model),) * 3]
    app_sql(db, "CREATE TABLE uid_before AS SELECT id, uid FROM items")

    sessions_gone(db)
    run_ok(pmigrate(proxy, "complete"), "complete")
    assert uid_facts(db, "items") == uid_facts(db, "items_offline") == [("uuid", "NO", "gen_random_uuid()")]
    constraints = app_sql(db, "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint"
                          " WHERE conrelid IN ('public.items'::regclass, 'public.items_offline'::regclass)"
                          " ORDER BY 1, 2")
    assert [c[1:] for c in constraints if c[0] == "items"] == [c[1:] for c in constraints if c[0] == "items_offline"]
    assert table_columns(db, "items") == ["id", "payload", "uid"]
    with connect(db) as c:
        c.execute("INSERT INTO items (id, payload) VALUES (%s, %s)", (ITEMS + 100, payload(ITEMS + 100)))
        model[ITEMS + 100] = payload(ITEMS + 100)
        model.compare(c, "SELECT id, payload, uid FROM items ORDER BY id", "after complete")
    # complete kept every row's uuid
    assert app_sql(db, "SELECT count(*) FROM items i JOIN uid_before b USING (id) WHERE i.uid = b.uid") == \
        [(len(model) - 1,)]
    assert app_sql(db, "SELECT count(*), count(uid), count(DISTINCT uid) FROM items") == [(len(model),) * 3]


# ---- 2. NOT NULL with a fill -----------------------------------------------------

USERS = 20000
EMAIL_NAME = "users_email"
FILL = "unknown@example.com"
EMAIL_MIGRATION = {"name": EMAIL_NAME, "parent": None, "operations": [
    {"alter_column": {"table": "users", "column": "email", "nullable": False,
                      "up": "COALESCE(email, '%s')" % FILL, "down": "email"}}]}


def email_of(i):
    return None if i % 10 == 0 else "u%d@example.org" % i


def test_not_null_fill_runs_up_on_every_old_shape_write(db):
    """Old-shape writes while the migration is active: an insert with a
    NULL email, and updates of another column of rows whose email is NULL
    (first before the backfill has run, `start --no-backfill`, then after
    it): none is refused, and the new shape reads the fill."""
    app_sql(db, "CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
            "INSERT INTO users SELECT g, CASE WHEN g %% 10 = 0 THEN NULL ELSE 'u' || g || '@example.org' END,"
            " 'name' || g FROM generate_series(1, %d) g" % USERS)
    model = {i: (email_of(i), "name%d" % i) for i in range(1, USERS + 1)}   # the old shape's values
    old_opts, new_opts = old_shape_options(EMAIL_NAME), new_shape_options(EMAIL_NAME)
    path = write_migration(EMAIL_MIGRATION)

    run_ok(migrate(db, "start", path, "--no-backfill"), "start --no-backfill")
    errors = []
    with connect(db, old_opts) as old:
        for sql_text, args, key, value in [
                ("INSERT INTO users (id, email, name) VALUES (%s, NULL, 'inserted')", (USERS + 1,), USERS + 1,
                 (None, "inserted")),
                ("UPDATE users SET name = 'touched' WHERE id = %s", (20,), 20, (None, "touched")),
                ("UPDATE users SET name = 'touched' WHERE id = %s", (21,), 21, (email_of(21), "touched"))]:
            try:
                old.execute(sql_text, args)
                model[key] = value
            except psycopg.Error as e:
                errors.append("%s %r: %s" % (sql_text, args, e))
    assert errors == [], "old-shape writes refused before the backfill:\n" + "\n".join(errors)
    with connect(db, new_opts) as new:
        got = dict(new.execute("SELECT id, email FROM users WHERE id IN (20, 21, %s)", (USERS + 1,)).fetchall())
    assert got == {20: FILL, 21: email_of(21), USERS + 1: FILL}, got

    run_ok(migrate(db, "resume"), "resume (the backfill and its validations)")
    with connect(db, old_opts) as old:
        for sql_text, args, key, value in [
                ("INSERT INTO users (id, email, name) VALUES (%s, NULL, 'inserted')", (USERS + 2,), USERS + 2,
                 (None, "inserted")),
                ("UPDATE users SET name = 'touched' WHERE id = %s", (30,), 30, (None, "touched")),
                ("UPDATE users SET email = NULL WHERE id = %s", (31,), 31, (None, "name31"))]:
            try:
                old.execute(sql_text, args)
                model[key] = value
            except psycopg.Error as e:
                errors.append("%s %r: %s" % (sql_text, args, e))
    assert errors == [], "old-shape writes refused while active:\n" + "\n".join(errors)
    with connect(db, new_opts) as new:
        # the new shape's own write: the old shape reads it as written
        new.execute("UPDATE users SET email = 'new@example.net' WHERE id = 40")
        model[40] = ("new@example.net", "name40")
    check_email_shapes(db, model)
    run_ok(migrate(db, "complete"), "complete")
    check_email_after_complete(db, model)


def test_not_null_fill_start_and_complete(db):
    """The same fill with a plain `start` (backfill included): accepted,
    and old-shape NULL writes while active are filled."""
    app_sql(db, "CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
            "INSERT INTO users SELECT g, CASE WHEN g %% 10 = 0 THEN NULL ELSE 'u' || g || '@example.org' END,"
            " 'name' || g FROM generate_series(1, %d) g" % USERS)
    model = {i: (email_of(i), "name%d" % i) for i in range(1, USERS + 1)}
    run_ok(migrate(db, "start", write_migration(EMAIL_MIGRATION)), "start")
    assert app_sql(db, "SELECT count(*) FROM pgtandem_%s.users WHERE email IS NULL" % EMAIL_NAME) == [(0,)]
    with connect(db, old_shape_options(EMAIL_NAME)) as old:
        old.execute("INSERT INTO users (id, email, name) VALUES (%s, NULL, 'inserted')", (USERS + 1,))
        model[USERS + 1] = (None, "inserted")
        old.execute("UPDATE users SET name = 'touched' WHERE id = 50")
        model[50] = (None, "touched")
    check_email_shapes(db, model)
    run_ok(migrate(db, "complete"), "complete")
    check_email_after_complete(db, model)


def check_email_shapes(db, model):
    """Old shape: exactly what it wrote (NULL stays NULL there); new shape:
    the fill where the old shape has NULL; the base table's email is the old
    shape's."""
    with connect(db, old_shape_options(EMAIL_NAME)) as old, connect(db, new_shape_options(EMAIL_NAME)) as new, \
            connect(db) as base:
        assert_rows(read_rows(old, "users", ["email", "name"]), model, "old shape")
        want_new = {k: (e if e is not None else FILL, n) for k, (e, n) in model.items()}
        assert_rows(read_rows(new, "users", ["email", "name"]), want_new, "new shape")
        assert_rows(read_rows(base, "users", ["email", "name"]), model, "base table (old names)")
    assert app_sql(db, "SELECT count(*) FROM users") == [(len(model),)]


def check_email_after_complete(db, model):
    assert app_sql(db, "SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public'"
                   " AND table_name = 'users' AND column_name = 'email'") == [("NO",)]
    assert set(table_columns(db, "users")) == {"id", "email", "name"}
    assert app_sql(db, "SELECT count(*) FROM users WHERE email IS NULL") == [(0,)]
    want = {k: (e if e is not None else FILL, n) for k, (e, n) in model.items()}
    with connect(db) as c:
        assert_rows(read_rows(c, "users", ["email", "name"]), want, "after complete")
    formerly_null = [k for k, (e, _) in model.items() if e is None]
    assert app_sql(db, "SELECT count(*) FROM users WHERE id = ANY(%s) AND email = %s", (formerly_null, FILL)) == \
        [(len(formerly_null),)]
    assert app_sql(db, "SELECT count(*) FROM users") == [(len(model),)]


# ---- 3. a split in one migration ---------------------------------------------------

SPLIT_NAME = "people_full_name"
SPLIT_MIGRATION = {"name": SPLIT_NAME, "parent": None, "operations": [
    {"add_column": {"table": "people", "column": {"name": "full_name", "type": "text"},
                    "up": "first || ' ' || last"}},
    {"drop_column": {"table": "people", "column": "first", "down": "split_part(full_name, ' ', 1)"}},
    {"drop_column": {"table": "people", "column": "last", "down": "split_part(full_name, ' ', 2)"}}]}


def split_part(s, n):
    if s is None:
        return None
    parts = s.split(" ")
    return parts[n - 1] if n <= len(parts) else ""


def test_split_in_one_migration(db):
    app_sql(db, "CREATE TABLE people (id int PRIMARY KEY, first text, last text, note text);"
            "INSERT INTO people SELECT g, 'F' || g, 'L' || g, 'n' || g FROM generate_series(1, 1000) g")
    old_model = {i: ("F%d" % i, "L%d" % i, "n%d" % i) for i in range(1, 1001)}   # first, last, note
    new_model = {i: ("F%d L%d" % (i, i), "n%d" % i) for i in range(1, 1001)}     # full_name, note
    run_ok(migrate(db, "start", write_migration(SPLIT_MIGRATION)), "start")
    old_opts, new_opts = old_shape_options(SPLIT_NAME), new_shape_options(SPLIT_NAME)
    with connect(db, old_opts) as old, connect(db, new_opts) as new:
        assert [d.name for d in old.execute("SELECT * FROM people LIMIT 1").description] == \
            ["id", "first", "last", "note"]
        assert sorted(d.name for d in new.execute("SELECT * FROM people LIMIT 1").description) == \
            ["full_name", "id", "note"]
        # the new shape writes full_name, then the old shape writes another column of that row
        new.execute("UPDATE people SET full_name = 'Ada Lovelace' WHERE id = 1")
        old.execute("UPDATE people SET note = 'touched' WHERE id = 1")
        old_model[1], new_model[1] = ("Ada", "Lovelace", "touched"), ("Ada Lovelace", "touched")
        assert new.execute("SELECT full_name FROM people WHERE id = 1").fetchone() == ("Ada Lovelace",)
        assert old.execute("SELECT first, last, note FROM people WHERE id = 1").fetchone() == \
            ("Ada", "Lovelace", "touched")
        # the old shape writes first and last
        old.execute("UPDATE people SET first = 'Grace', last = 'Hopper' WHERE id = 2")
        old_model[2], new_model[2] = ("Grace", "Hopper", "n2"), ("Grace Hopper", "n2")
        assert new.execute("SELECT full_name FROM people WHERE id = 2").fetchone() == ("Grace Hopper",)
        # inserts from both
        new.execute("INSERT INTO people (id, full_name, note) VALUES (1001, 'Alan Turing', 'new')")
        old_model[1001], new_model[1001] = ("Alan", "Turing", "new"), ("Alan Turing", "new")
        assert old.execute("SELECT first, last FROM people WHERE id = 1001").fetchone() == ("Alan", "Turing")
        old.execute("INSERT INTO people (id, first, last, note) VALUES (1002, 'Barbara', 'Liskov', 'old')")
        old_model[1002], new_model[1002] = ("Barbara", "Liskov", "old"), ("Barbara Liskov", "old")
        assert new.execute("SELECT full_name FROM people WHERE id = 1002").fetchone() == ("Barbara Liskov",)
        # the new shape updates only note: first and last are its full_name's parts again
        new.execute("UPDATE people SET note = 'new-note' WHERE id = 3")
        old_model[3], new_model[3] = ("F3", "L3", "new-note"), ("F3 L3", "new-note")
        new.execute("DELETE FROM people WHERE id = 4")
        old.execute("DELETE FROM people WHERE id = 5")
        for m in (old_model, new_model):
            del m[4], m[5]
        assert_rows(read_rows(old, "people", ["first", "last", "note"]), old_model, "old shape")
        assert_rows(read_rows(new, "people", ["full_name", "note"]), new_model, "new shape")
    with connect(db) as base:
        assert_rows(read_rows(base, "people", ["first", "last", "note"]), old_model, "base table (old names)")
    # the model's two shapes agree with each other through up and down
    for k, (first, last, note) in old_model.items():
        full, note2 = new_model[k]
        assert (split_part(full, 1), split_part(full, 2), note2) == (first, last, note), k
    assert app_sql(db, "SELECT count(*) FROM people") == [(len(old_model),)]

    run_ok(migrate(db, "complete"), "complete")
    assert set(table_columns(db, "people")) == {"id", "note", "full_name"}
    with connect(db) as c:
        assert_rows(read_rows(c, "people", ["full_name", "note"]), new_model, "after complete")
    assert app_sql(db, "SELECT count(*) FROM people") == [(len(new_model),)]


# ---- 4. a rename that keeps the type ---------------------------------------------------

RENAMED = 200000
RENAME_NAME = "t_rename_a"
RENAME_MIGRATION = {"name": RENAME_NAME, "parent": None, "operations": [
    {"rename_column": {"table": "t", "from": "a", "to": "b"}}]}


def test_rename_keeping_the_type_writes_no_copy(db, capsys):
    app_sql(db, "CREATE TABLE t (id bigint PRIMARY KEY, a text, n int);"
            "INSERT INTO t SELECT g, 'a' || g, g FROM generate_series(1, %d) g" % RENAMED)
    # settle the table first (hint bits, visibility map), so that WAL after
    # this is the migration's own
    app_sql(db, "VACUUM (FREEZE, ANALYZE) t")
    app_sql(db, "CHECKPOINT")
    model = {i: ("a%d" % i, i) for i in range(1, RENAMED + 1)}   # id -> (a/b, n)
    before_shape = shape(db)
    size0 = app_sql(db, "SELECT pg_total_relation_size('public.t')")[0][0]
    lsn0 = app_sql(db, "SELECT pg_current_wal_lsn()")[0][0]
    path = write_migration(RENAME_MIGRATION)
    run_ok(migrate(db, "start", path), "start")
    wal = float(app_sql(db, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn0,))[0][0])
    size1 = app_sql(db, "SELECT pg_total_relation_size('public.t')")[0][0]
    with capsys.disabled():
        print("\n[tandem rule] start of the rename: %.0f kB of WAL, table %d -> %d bytes" % (wal / 1024, size0, size1))
    assert wal < 1024 * 1024, "start of a same-type rename wrote %.1f MB of WAL" % (wal / 1048576.0)
    assert abs(size1 - size0) <= size0 * 0.05, "the table grew from %d to %d bytes" % (size0, size1)
    assert table_columns(db, "t") == ["id", "a", "n"], "a column was added for the rename"
    assert app_sql(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t'::regclass AND NOT tgisinternal") \
        == [(0,)]
    exercise_rename(db, model)

    run_ok(migrate(db, "rollback"), "rollback")
    assert shape(db) == before_shape
    with connect(db) as c:
        assert_rows(read_rows(c, "t", ["a", "n"]), model, "after rollback")

    run_ok(migrate(db, "start", path), "start again")
    exercise_rename(db, model, base=1000)
    run_ok(migrate(db, "complete"), "complete")
    assert table_columns(db, "t") == ["id", "b", "n"]
    with connect(db, new_shape_options(RENAME_NAME)) as c:
        c.execute("UPDATE t SET b = 'after' WHERE id = 3")
        model[3] = ("after", model[3][1])
        assert_rows(read_rows(c, "t", ["b", "n"]), model, "after complete")
    assert app_sql(db, "SELECT count(*) FROM t") == [(len(model),)]


def exercise_rename(db, model, base=0):
    """Writes through both names, each read through the other."""
    with connect(db, old_shape_options(RENAME_NAME)) as old, connect(db, new_shape_options(RENAME_NAME)) as new:
        assert [d.name for d in old.execute("SELECT * FROM t LIMIT 1").description] == ["id", "a", "n"]
        assert [d.name for d in new.execute("SELECT * FROM t LIMIT 1").description] == ["id", "b", "n"]
        for k in range(1, 21):
            i = base + k
            old.execute("UPDATE t SET a = %s WHERE id = %s", ("old%d" % i, i))
            model[i] = ("old%d" % i, model[i][1])
            j = base + 100 + k
            new.execute("UPDATE t SET b = %s, n = -n WHERE id = %s", ("new%d" % j, j))
            model[j] = ("new%d" % j, -model[j][1])
            old.execute("INSERT INTO t (id, a, n) VALUES (%s, %s, 1)", (RENAMED + base + k, "oi%d" % i))
            model[RENAMED + base + k] = ("oi%d" % i, 1)
            new.execute("INSERT INTO t (id, b, n) VALUES (%s, %s, 2)", (RENAMED + base + 500 + k, "ni%d" % i))
            model[RENAMED + base + 500 + k] = ("ni%d" % i, 2)
        old.execute("DELETE FROM t WHERE id = %s", (base + 50,))
        new.execute("DELETE FROM t WHERE id = %s", (base + 51,))
        del model[base + 50], model[base + 51]
        assert new.execute("SELECT b FROM t WHERE id = %s", (base + 1,)).fetchone() == ("old%d" % (base + 1),)
        assert old.execute("SELECT a FROM t WHERE id = %s", (base + 101,)).fetchone() == ("new%d" % (base + 101),)
        assert_rows(read_rows(old, "t", ["a", "n"]), model, "old shape")
        assert_rows(read_rows(new, "t", ["b", "n"]), model, "new shape")
    with connect(db) as c:
        assert_rows(read_rows(c, "t", ["a", "n"]), model, "base table")
    assert table_columns(db, "t") == ["id", "a", "n"]
    assert app_sql(db, "SELECT count(*) FROM t") == [(len(model),)]
