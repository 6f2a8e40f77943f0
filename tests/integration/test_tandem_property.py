"""The tandem rule as a property: random writes from several writers against a
model of every row, for each kind of operation that keeps two shapes.

Writers (direct connections; `pgtandem.version` and `search_path` do the
routing the proxy would do):
- old:    no version, the old shape's schema first (`pgtandem_<name>_old`);
- new:    `pgtandem.version=<name>`, the new shape's schema first;
- bypass: no version, the base table itself (an old-shape write);
- bypass_v: the base table itself with `pgtandem.version=<name>` (a
  new-shape write), for the kinds whose new-shape columns the base table
  has under their own names (add_column, drop_column, split, merge, a
  rename with "copy");
- routed: while `complete --revert-window-s` keeps both shapes, a session
  through the proxy without a version: the proxy has switched it to the new
  shape, which it reads and writes (a new-shape write).

The model applies the rule: an old-shape write sets the old shape's values
as written and the new shape's to up(row); a new-shape write sets the new
shape's values as written and the old shape's to down(row); neither ever
goes back onto the writer's own columns, and a NULL source is not special.
Every INSERT runs its direction; an UPDATE runs it for a column of the
other shape when it changed a column the expression reads or finds that
column NULL (so an unrelated write does not replace the other release's
value with a lossy round trip of it). A write on the base table without a
version is an old-shape write.

Each kind goes through two lifecycles:
  start -> writes -> complete with a revert window (every shape still
  written in tandem) -> writes -> revert -> writes on the old table;
  start again -> writes -> complete (with a window, then finalize) ->
  writes on the new table.
A kind that drops a column cannot be reverted when the engine says so: its
first lifecycle ends with a rollback instead. The proxy runs the lifecycle
commands (a revert window needs one); the writers stay direct. Every ~50
steps and at the end, every row read through every shape must equal the
model.

PGT_PROPERTY_SEED (default 20240611) and PGT_PROPERTY_STEPS (steps per kind,
default 400) make a run reproducible and longer; a failure names the seed,
the kind, the step and the history of the row that differs."""
import decimal
import json
import os
import random

import psycopg
import pytest
from psycopg.types.json import Jsonb

from support import new_shape_options, pmigrate, proxy_start, proxy_uri, write_migration
from test_tandem_rule import APP, app_sql, old_shape_options, sessions_gone

SEED = int(os.environ.get("PGT_PROPERTY_SEED", "20240611"))
STEPS = int(os.environ.get("PGT_PROPERTY_STEPS", "400"))
CHECK_EVERY = 50
INITIAL_ROWS = 60

# share of the steps per phase
PHASES = (("active", 0.30), ("switched", 0.15), ("reverted", 0.10), ("active2", 0.25), ("switched2", 0.05),
          ("completed", 0.15))

CENT = decimal.Decimal("0.01")
TOKENS = ["ada", "grace", "alan", "edsger", "barbara", "ken", "dennis", "x"]


# ---- Postgres functions in Python ---------------------------------------------------

def split_part(s, sep, n):
    if s is None:
        return None
    parts = s.split(sep)
    return parts[n - 1] if n <= len(parts) else ""


def concat(*parts, sep):
    """a || sep || b: NULL when any part is NULL."""
    return None if any(p is None for p in parts) else sep.join(str(p) for p in parts)


def jsonb_text(v):
    """jsonb's text form (jsonb::text): object keys by length, then bytes."""
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        return "{" + ", ".join(json.dumps(k) + ": " + jsonb_text(x) for k, x in items) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    return json.dumps(v)


def numeric2(s):
    """text::numeric(10,2): rounds half away from zero."""
    return None if s is None else decimal.Decimal(s).quantize(CENT, rounding=decimal.ROUND_HALF_UP)


# ---- value generators --------------------------------------------------------------

def maybe_null(rng, p, gen):
    return None if rng.random() < p else gen()


def gen_text(rng):
    return maybe_null(rng, 0.1, lambda: rng.choice(TOKENS) + str(rng.randrange(100)))


def gen_int(rng):
    return maybe_null(rng, 0.1, lambda: rng.randrange(-1000, 1000))


def gen_json_text(rng):
    """JSON as an application writes it into a text column: not normalised."""
    def one():
        k = rng.randrange(100)
        return rng.choice(['{"zz":%d,"a":%d}' % (k, k + 1), '{ "k" : %d }' % k, '[%d,%d]' % (k, -k),
                           '{"long_key":[1,2,{"b":%d,"a":true}],"s":"t%d"}' % (k, k), '%d' % k])
    return maybe_null(rng, 0.1, one)


def gen_jsonb(rng):
    return maybe_null(rng, 0.1, lambda: rng.choice([{"new": rng.randrange(100), "a": [1, None]},
                                                    [rng.randrange(10), "v"], {"k": {"z": 1, "yy": 2}},
                                                    rng.randrange(1000)]))


def gen_price_text(rng):
    return maybe_null(rng, 0.1, lambda: rng.choice(["%d" % rng.randrange(1000),
                                                    "%d.%03d" % (rng.randrange(1000), rng.randrange(1000)),
                                                    "%d.5" % rng.randrange(100), "0.005", "12.345"]))


def gen_price(rng):
    return maybe_null(rng, 0.1, lambda: decimal.Decimal(rng.randrange(-99999, 99999)) * CENT)


def gen_email(rng):
    return maybe_null(rng, 0.3, lambda: "%s@example.org" % gen_token(rng))


def gen_email_new(rng):
    return "%s@example.net" % gen_token(rng)   # the new shape's column is NOT NULL


def gen_token(rng):
    return rng.choice(TOKENS) + str(rng.randrange(100))


def gen_status(rng):
    return maybe_null(rng, 0.1, lambda: "s%d" % rng.randrange(50))


def gen_qty_new(rng):
    return maybe_null(rng, 0.1, lambda: rng.randrange(0, 1000))   # the new shape's CHECK (qty >= 0)


def gen_full_name(rng):
    return maybe_null(rng, 0.1, lambda: rng.choice([
        "%s %s" % (gen_token(rng), gen_token(rng)), "%s %s" % (gen_token(rng), gen_token(rng)),
        "%s %s %s" % (gen_token(rng), gen_token(rng), gen_token(rng)), gen_token(rng), ""]))


def gen_merged(rng):
    return maybe_null(rng, 0.1, lambda: "%d:%s" % (rng.randrange(-500, 500), gen_token(rng)))


def gen_name_part(rng):
    return maybe_null(rng, 0.1, lambda: gen_token(rng))


# ---- the kinds -------------------------------------------------------------------------

class Kind:
    """One migration on table t and its rule in Python.

    old / new: {column: generator} of each shape (id aside); shared columns
    appear in both and are the same value. up(old row) -> the new shape's
    own columns; down(new row) -> the old shape's own columns. jsonb: the
    new shape's columns holding jsonb (parameters wrapped). omit: columns an
    insert may leave out, with each shape's default."""

    def __init__(self, name, setup, ops, old, new, up, down, jsonb=(), omit=None, old_defaults=None,
                 new_defaults=None, bypass_new=False, up_reads=None, down_reads=None):
        self.name, self.setup, self.ops = name, setup, ops
        # {column the direction fills: the columns its expression reads};
        # None: no trigger (both shapes name the same column), always in step
        self.up_reads, self.down_reads = up_reads, down_reads
        self.bypass_new = bypass_new
        self.old, self.new, self.up, self.down = old, new, up, down
        self.jsonb = set(jsonb)
        self.omit = omit or set()
        self.old_defaults, self.new_defaults = old_defaults or {}, new_defaults or {}
        self.shared = [c for c in old if c in new]

    def to_new(self, old):
        row = {c: old[c] for c in self.shared}
        row.update(self.up(old))
        return row

    def to_old(self, new):
        row = {c: new[c] for c in self.shared}
        row.update(self.down(new))
        return row


def T(**cols):
    return cols


KINDS = {
    "rename_same_type": Kind(
        "rename_same_type", "CREATE TABLE t (id int PRIMARY KEY, a text, n int)",
        [{"rename_column": {"table": "t", "from": "a", "to": "b"}}],
        T(a=gen_text, n=gen_int), T(b=gen_text, n=gen_int),
        lambda o: {"b": o["a"]}, lambda n: {"a": n["b"]}),
    "rename_same_type_copy": Kind(
        # "copy": a second column under the new name on the table itself,
        # for writers of the base table by the new name
        "rename_same_type_copy", "CREATE TABLE t (id int PRIMARY KEY, a text, n int)",
        [{"rename_column": {"table": "t", "from": "a", "to": "b", "copy": True}}],
        T(a=gen_text, n=gen_int), T(b=gen_text, n=gen_int),
        lambda o: {"b": o["a"]}, lambda n: {"a": n["b"]}, bypass_new=True),
    "rename_text_to_jsonb": Kind(
        "rename_text_to_jsonb", "CREATE TABLE t (id int PRIMARY KEY, a text, n int)",
        [{"rename_column": {"table": "t", "from": "a", "to": "b", "type": "jsonb", "up": "a::jsonb",
                            "down": "b::text"}}],
        T(a=gen_json_text, n=gen_int), T(b=gen_jsonb, n=gen_int),
        lambda o: {"b": None if o["a"] is None else json.loads(o["a"])},
        lambda n: {"a": None if n["b"] is None else jsonb_text(n["b"])}, jsonb=["b"],
        up_reads={"b": ["a"]}, down_reads={"a": ["b"]}),
    "add_column_up": Kind(
        "add_column_up", "CREATE TABLE t (id int PRIMARY KEY, a text, n int)",
        [{"add_column": {"table": "t", "column": {"name": "alen", "type": "int"}, "up": "length(a) + n"}}],
        T(a=gen_text, n=gen_int), T(a=gen_text, n=gen_int, alen=gen_int),
        lambda o: {"alen": None if o["a"] is None or o["n"] is None else len(o["a"]) + o["n"]},
        lambda n: {}, bypass_new=True, up_reads={"alen": ["a", "n"]}, down_reads={}),
    "drop_column_down": Kind(
        "drop_column_down", "CREATE TABLE t (id int PRIMARY KEY, a text, b int)",
        [{"drop_column": {"table": "t", "column": "b", "down": "coalesce(length(a), -1)"}}],
        T(a=gen_text, b=gen_int), T(a=gen_text),
        lambda o: {}, lambda n: {"b": -1 if n["a"] is None else len(n["a"])}, bypass_new=True,
        up_reads={}, down_reads={"b": ["a"]}),
    "alter_type": Kind(
        "alter_type", "CREATE TABLE t (id int PRIMARY KEY, price text, n int)",
        [{"alter_column": {"table": "t", "column": "price", "type": "numeric(10,2)",
                           "up": "price::numeric(10,2)", "down": "price::text"}}],
        T(price=gen_price_text, n=gen_int), T(price=gen_price, n=gen_int),
        lambda o: {"price": numeric2(o["price"])},
        lambda n: {"price": None if n["price"] is None else str(n["price"])},
        up_reads={"price": ["price"]}, down_reads={"price": ["price"]}),
    "alter_not_null_fill": Kind(
        "alter_not_null_fill", "CREATE TABLE t (id int PRIMARY KEY, email text, n int)",
        [{"alter_column": {"table": "t", "column": "email", "nullable": False,
                           "up": "COALESCE(email, 'unknown@example.com')", "down": "email"}}],
        T(email=gen_email, n=gen_int), T(email=gen_email_new, n=gen_int),
        lambda o: {"email": "unknown@example.com" if o["email"] is None else o["email"]},
        lambda n: {"email": n["email"]}, up_reads={"email": ["email"]}, down_reads={"email": ["email"]}),
    "alter_default": Kind(
        "alter_default", "CREATE TABLE t (id int PRIMARY KEY, status text DEFAULT 'old', n int)",
        [{"alter_column": {"table": "t", "column": "status", "default": "'new'"}}],
        T(status=gen_status, n=gen_int), T(status=gen_status, n=gen_int),
        lambda o: {"status": o["status"]}, lambda n: {"status": n["status"]},
        omit={"status"}, old_defaults={"status": "old"}, new_defaults={"status": "new"}),
    "alter_check": Kind(
        "alter_check", "CREATE TABLE t (id int PRIMARY KEY, qty int, n int)",
        [{"alter_column": {"table": "t", "column": "qty", "check": "qty >= 0", "up": "greatest(qty, 0)",
                           "down": "qty"}}],
        T(qty=gen_int, n=gen_int), T(qty=gen_qty_new, n=gen_int),
        # greatest() skips NULLs: greatest(NULL, 0) is 0
        lambda o: {"qty": 0 if o["qty"] is None else max(o["qty"], 0)}, lambda n: {"qty": n["qty"]},
        up_reads={"qty": ["qty"]}, down_reads={"qty": ["qty"]}),
    "split": Kind(
        "split", "CREATE TABLE t (id int PRIMARY KEY, first text, last text, note text)",
        [{"add_column": {"table": "t", "column": {"name": "full_name", "type": "text"},
                         "up": "first || ' ' || last"}},
         {"drop_column": {"table": "t", "column": "first", "down": "split_part(full_name, ' ', 1)"}},
         {"drop_column": {"table": "t", "column": "last", "down": "split_part(full_name, ' ', 2)"}}],
        T(first=gen_name_part, last=gen_name_part, note=gen_text), T(full_name=gen_full_name, note=gen_text),
        lambda o: {"full_name": concat(o["first"], o["last"], sep=" ")},
        lambda n: {"first": split_part(n["full_name"], " ", 1), "last": split_part(n["full_name"], " ", 2)},
        bypass_new=True, up_reads={"full_name": ["first", "last"]},
        down_reads={"first": ["full_name"], "last": ["full_name"]}),
    "merge": Kind(
        "merge", "CREATE TABLE t (id int PRIMARY KEY, a int, b text, note text)",
        [{"add_column": {"table": "t", "column": {"name": "ab", "type": "text"}, "up": "a::text || ':' || b"}},
         {"drop_column": {"table": "t", "column": "a", "down": "nullif(split_part(ab, ':', 1), '')::int"}},
         {"drop_column": {"table": "t", "column": "b", "down": "split_part(ab, ':', 2)"}}],
        T(a=gen_int, b=gen_name_part, note=gen_text), T(ab=gen_merged, note=gen_text),
        lambda o: {"ab": concat(o["a"], o["b"], sep=":")},
        lambda n: {"a": None if n["ab"] is None or split_part(n["ab"], ":", 1) == "" else
                   int(split_part(n["ab"], ":", 1)), "b": split_part(n["ab"], ":", 2)}, bypass_new=True,
        up_reads={"ab": ["a", "b"]}, down_reads={"a": ["ab"], "b": ["ab"]}),
}


def migration_of(kind):
    return {"name": "prop_" + kind.name, "parent": None, "operations": kind.ops}


# ---- the model -------------------------------------------------------------------------

class Model:
    """Every row's values in each shape that exists now, and who wrote it."""

    def __init__(self, kind):
        self.kind = kind
        self.old = {}        # id -> {column: value} while the old shape exists
        self.new = {}        # id -> {column: value} while the new shape exists
        self.history = {}    # id -> [(phase, step, writer, what, values)]
        self.has_old, self.has_new = True, False

    # lifecycle
    def started(self):
        self.new = {k: self.kind.to_new(v) for k, v in self.old.items()}
        self.has_new = True

    def completed(self):
        self.old, self.has_old = {}, False

    def reverted(self):
        self.new, self.has_new = {}, False

    def ids(self):
        return list((self.old if self.has_old else self.new).keys())

    def write(self, shape, key, values, insert):
        """shape: 'old' or 'new' (the shape whose columns were written)."""
        k = self.kind
        mine = self.old if shape == "old" else self.new
        row = {} if insert else dict(mine[key])
        if insert:
            defaults = k.old_defaults if shape == "old" else k.new_defaults
            for c in (k.old if shape == "old" else k.new):
                row[c] = defaults.get(c)
        before = {} if insert else dict(mine[key])
        row.update(values)
        mine[key] = row
        if shape == "old" and self.has_new:
            self.new[key] = self.follow(k.to_new(row), self.new.get(key), k.up_reads, before, row, insert)
        elif shape == "new" and self.has_old:
            self.old[key] = self.follow(k.to_old(row), self.old.get(key), k.down_reads, before, row, insert)

    def follow(self, computed, other, reads, before, row, insert):
        """The other shape's row after a write: its columns shared with the
        writer's shape as written; each column a direction fills recomputed
        on an INSERT, or when the write changed what the expression reads,
        or when it was NULL; otherwise as it was."""
        if insert or reads is None or other is None:
            return computed
        out = dict(computed)
        for col, inputs in reads.items():
            changed = any(before.get(c) != row.get(c) for c in inputs)
            if not changed and other.get(col) is not None:
                out[col] = other[col]
        return out

    def delete(self, key):
        self.old.pop(key, None)
        self.new.pop(key, None)


# ---- the run ---------------------------------------------------------------------------

class Run:
    def __init__(self, kind, db, proxy, rng):
        self.kind, self.db, self.proxy, self.rng = kind, db, proxy, rng
        self.name = "prop_" + kind.name
        self.model = Model(kind)
        self.conns = {}
        self.phase = "setup"
        self.step = 0
        self.next_id = 1
        self.switches = 0
        self.last_writer = None
        self.checks = 0

    # connections
    def open(self, writers):
        self.close()
        opts = {"old": old_shape_options(self.name), "new": new_shape_options(self.name), "bypass": "",
                "bypass_v": "-c pgtandem.version=%s" % self.name}
        for w in writers:
            if w == "routed":
                self.conns[w] = psycopg.connect(proxy_uri(self.proxy, self.db), autocommit=True,
                                                application_name=APP)
            else:
                self.conns[w] = psycopg.connect(self.db, autocommit=True, options=opts[w], application_name=APP)

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    def fail(self, what, key=None):
        hist = self.model.history.get(key, []) if key is not None else []
        pytest.fail("seed %d, kind %s, phase %s, step %d: %s%s" % (
            SEED, self.kind.name, self.phase, self.step, what,
            "\nhistory of row %s:\n  %s" % (key, "\n  ".join(repr(h) for h in hist[-12:])) if key is not None
            else ""))

    # one write
    def shape_of(self, writer):
        """Which shape's columns the writer sees and writes now."""
        if self.phase in ("reverted",):
            return "old"
        if self.phase == "completed":
            return "new"
        return "new" if writer in ("new", "routed", "bypass_v") else "old"

    def write(self, writer):
        rng, k, m = self.rng, self.kind, self.model
        shape = self.shape_of(writer)
        cols = k.old if shape == "old" else k.new
        ids = m.ids()
        action = rng.choices(["insert", "update", "delete"], [3, 6, 1])[0] if ids else "insert"
        if action == "insert":
            key = self.next_id
            self.next_id += 1
            names = [c for c in cols if not (c in k.omit and rng.random() < 0.4)]
            values = {c: cols[c](rng) for c in names}
            stmt = "INSERT INTO t (id%s) VALUES (%%s%s)" % ("".join(", " + c for c in names), ", %s" * len(names))
            args = [key] + [self.param(shape, c, values[c]) for c in names]
        elif action == "update":
            key = rng.choice(ids)
            names = rng.sample(list(cols), rng.randint(1, len(cols)))
            values = {c: cols[c](rng) for c in names}
            stmt = "UPDATE t SET %s WHERE id = %%s" % ", ".join("%s = %%s" % c for c in names)
            args = [self.param(shape, c, values[c]) for c in names] + [key]
        else:
            key = rng.choice(ids)
            values = {}
            stmt, args = "DELETE FROM t WHERE id = %s", [key]
        m.history.setdefault(key, []).append((self.phase, self.step, writer, action, values))
        try:
            cur = self.conns[writer].execute(stmt, args)
        except psycopg.Error as e:
            self.fail("%s refused %s %r: %s" % (writer, stmt, args, e), key)
        if cur.rowcount != 1:
            self.fail("%s %s %r changed %d rows" % (writer, stmt, args, cur.rowcount), key)
        if action == "delete":
            m.delete(key)
        else:
            m.write(shape, key, values, action == "insert")
        if self.last_writer is not None and writer != self.last_writer:
            self.switches += 1
        self.last_writer = writer

    def param(self, shape, col, v):
        if shape == "new" and col in self.kind.jsonb and v is not None:
            return Jsonb(v)
        return v

    # reading every shape
    def read(self, writer, shape):
        cols = list(self.kind.old if shape == "old" else self.kind.new)
        q = "SELECT id, %s FROM t ORDER BY id" % ", ".join(cols)
        return {r[0]: dict(zip(cols, r[1:])) for r in self.conns[writer].execute(q)}

    def check(self):
        self.checks += 1
        m = self.model
        views = []
        if self.phase in ("active", "switched", "active2", "switched2"):
            views = [("old", "old", m.old), ("bypass", "old", m.old), ("new", "new", m.new)]
            views += [(w, "new", m.new) for w in ("routed", "bypass_v") if w in self.conns]
        elif self.phase == "reverted":
            views = [("old", "old", m.old), ("bypass", "old", m.old)]
        elif self.phase == "completed":
            views = [("new", "new", m.new), ("bypass", "new", m.new)]
        for writer, shape, want in views:
            got = self.read(writer, shape)
            if got != want:
                keys = sorted(set(got) | set(want))
                bad = [k for k in keys if got.get(k) != want.get(k)]
                k = bad[0]
                self.fail("%d rows differ read by %s in the %s shape (%d read, %d in the model); first: id %s"
                          " read %r, model %r" % (len(bad), writer, shape, len(got), len(want), k,
                                                  got.get(k, "<missing>"), want.get(k, "<missing>")), k)
        # what the clients wrote is what the table holds
        n = app_sql(self.db, "SELECT count(*) FROM public.t")[0][0]
        if n != len(m.ids()):
            self.fail("the table holds %d rows, the clients wrote %d" % (n, len(m.ids())))

    def steps(self, phase, n, writers):
        self.phase = phase
        self.open(writers)
        for _ in range(n):
            self.step += 1
            self.write(self.rng.choice(writers))
            if self.step % CHECK_EVERY == 0:
                self.check()
        self.check()
        self.close()

    # the lifecycle, through the proxy
    def migrate(self, *args):
        sessions_gone(self.db)
        return pmigrate(self.proxy, *args)

    def must(self, *args):
        r = self.migrate(*args)
        if r.returncode != 0:
            self.fail("migrate %s exited %d: %s%s\n%s" % (" ".join(args), r.returncode, r.stdout[-2000:],
                                                          r.stderr[-2000:], self.proxy.log()[-2000:]))
        return r


def load(run, n):
    """The table before the migration, written by an old-shape client."""
    app_sql(run.db, run.kind.setup)
    run.phase = "setup"
    run.conns = {"bypass": psycopg.connect(run.db, autocommit=True, application_name=APP)}
    for _ in range(n):
        key = run.next_id
        run.next_id += 1
        values = {c: g(run.rng) for c, g in run.kind.old.items()}
        run.conns["bypass"].execute("INSERT INTO t (id, %s) VALUES (%%s%s)" % (", ".join(values), ", %s" * len(values)),
                                    [key] + list(values.values()))
        run.model.write("old", key, values, True)
        run.model.history.setdefault(key, []).append(("setup", 0, "bypass", "insert", values))
    run.close()


def interleavings(model):
    """Distinct sequences of writers (consecutive repeats collapsed) that
    wrote one row, among rows written by more than one writer."""
    seqs = set()
    for hist in model.history.values():
        seq = []
        for h in hist:
            if not seq or seq[-1] != h[2]:
                seq.append(h[2])
        if len(set(seq)) > 1:
            seqs.add(tuple(seq))
    return seqs


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tandem_rule_property(db, proxy_factory, kind, capsys):
    k = KINDS[kind]
    rng = random.Random("%d-%s" % (SEED, kind))
    proxy = proxy_factory(extra_args=["--engine-db", db])
    run = Run(k, db, proxy, rng)
    load(run, INITIAL_ROWS)
    path = write_migration(migration_of(k))
    share = dict(PHASES)
    writers = ["old", "new", "bypass"] + (["bypass_v"] if k.bypass_new else [])

    # first lifecycle: start, a revert window, revert (or a rollback)
    sessions_gone(db)
    proxy_start(proxy, path)
    run.model.started()
    run.steps("active", int(STEPS * share["active"]), writers)
    r = run.migrate("complete", "--revert-window-s", "3600")
    if r.returncode == 0:
        run.steps("switched", int(STEPS * share["switched"]), writers + ["routed"])
        run.must("revert")
        reverted_by = "revert"
    else:
        if not (any("drop_column" in op for op in k.ops) and "cannot be reverted" in r.stderr):
            run.fail("complete --revert-window-s exited %d: %s" % (r.returncode, r.stderr[-2000:]))
        run.must("rollback")
        reverted_by = "rollback (no revert window: %s)" % r.stderr.strip().splitlines()[-1][:120]
    run.model.reverted()
    run.steps("reverted", int(STEPS * share["reverted"]), ["old", "bypass"])

    # second lifecycle: start again, then complete (with a window and finalize when the kind allows it)
    sessions_gone(db)
    proxy_start(proxy, path)
    run.model.started()
    run.steps("active2", int(STEPS * share["active2"]), writers)
    r = run.migrate("complete", "--revert-window-s", "3600")
    if r.returncode == 0:
        run.steps("switched2", int(STEPS * share["switched2"]), writers + ["routed"])
        run.must("finalize")
    else:
        run.must("complete")
    run.model.completed()
    run.steps("completed", int(STEPS * share["completed"]), ["new", "bypass"])

    seqs = interleavings(run.model)
    with capsys.disabled():
        print("\n[tandem property] seed %d kind %s: %d steps, %d checks, %d writer switches, %d rows written by"
              " more than one writer in %d distinct interleavings; first lifecycle ended by %s"
              % (SEED, kind, run.step, run.checks, run.switches,
                 sum(1 for h in run.model.history.values() if len({x[2] for x in h}) > 1), len(seqs),
                 reverted_by))
