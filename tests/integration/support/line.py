"""A line of migrations of one table in flight, for the property tests of
the tandem rule over it (test_chain_property, test_shape_property): which
releases a lifecycle state serves, each release's path as the docs give it
(the new shapes of its migration and those below it, newest first, then
the old shapes of the others, oldest first), its session, the moves of
start, complete and rollback the chain allows, and the random walk
through them. A test's subclass holds the model: its migrations, its rows,
what each move does to them, the writes and the check."""
import psycopg

from .migrations import migrate, write_migration

__all__ = ["Line", "ShapedLine", "lift", "walk_lifecycle", "write_row"]


class Line:
    ORDER = ()          # the migrations, oldest first
    RELEASES = ()       # "old", then one built with each migration
    MIGRATIONS = {}     # name -> the migration

    def __init__(self, db, rnd, tmp):
        self.db, self.rnd, self.tmp = db, rnd, tmp
        self.state = {m: "pending" for m in self.ORDER}     # pending, active, completed, rolled_back
        self.log = []

    def rank(self, release):
        return self.RELEASES.index(release)

    def applied(self, m):
        return self.state[m] in ("active", "completed")

    def serves(self, release):
        """Whether the release's shape is served now."""
        for i, m in enumerate(self.ORDER):
            built_on = self.rank(release) > i
            if (built_on and not self.applied(m)) or (not built_on and self.state[m] == "completed"):
                return False
        return True

    def path(self, release):
        live = [m for m in self.ORDER if self.state[m] == "active"]
        newer = [("pgtandem_%s" % m) for m in reversed(live) if self.rank(release) > self.ORDER.index(m)]
        older = [("pgtandem_%s_old" % m) for m in live if self.rank(release) <= self.ORDER.index(m)]
        return ",".join(newer + older + ["public"])

    def session(self, release):
        opts = ("-c pgtandem.version=%s " % release if release != "old" else "") + "-c search_path=" + self.path(release)
        return psycopg.connect(self.db, autocommit=True, options=opts)

    def moves(self):
        out = []
        for i, m in enumerate(self.ORDER):
            below, above = self.ORDER[:i], self.ORDER[i + 1:]
            st = self.state[m]
            if st in ("pending", "rolled_back") and all(self.applied(b) for b in below) and \
                    not any(self.applied(a) for a in above):
                out.append(("start", m))
            if st == "active" and all(self.state[b] == "completed" for b in below):
                out.append(("complete", m))
            if st == "active" and not any(self.applied(a) for a in above):
                out.append(("rollback", m))
        return out

    def run_move(self, what, m):
        """The move through the CLI, which must succeed; the state after it."""
        if what == "start":
            r = migrate(self.db, "start", write_migration(self.MIGRATIONS[m], self.tmp), "--quiet")
        else:
            r = migrate(self.db, what, m)
        assert r.returncode == 0, (what, m, r.stdout + r.stderr, self.log[-5:])
        self.log.append("%s %s" % (what, m))
        self.state[m] = {"start": "active", "complete": "completed", "rollback": "rolled_back"}[what]


def lift(f, v):
    """f(v), NULL in, NULL out: a model's `up` or `down`."""
    return None if v is None else f(v)


def write_row(conn, update, rid, values):
    """One release's INSERT of row rid, or UPDATE of it, giving values
    (column -> value) through its shape."""
    names = sorted(values)
    if update:
        conn.execute("UPDATE t SET %s WHERE id = %%s" % ", ".join("%s = %%s" % n for n in names),
                     [values[n] for n in names] + [rid])
    else:
        conn.execute("INSERT INTO t (id, %s) VALUES (%%s, %s)" % (", ".join(names), ", ".join(["%s"] * len(names))),
                     [rid] + [values[n] for n in names])


class ShapedLine(Line):
    """A line whose model is self.rows (id -> model column -> value) and
    whose subclass says what each release sees (sees: a list of (name in
    its shape, the model's column, type)) and what the triggers do to a
    write (fire)."""

    def sees(self, release):
        raise NotImplementedError

    def fire(self, release, old, new, insert):
        raise NotImplementedError

    def value(self, column):
        """A value a release writes into the model's column."""
        return self.rnd.randint(1, 10000)

    def write(self, release):
        """A random INSERT or UPDATE of random columns of the release's
        shape, and the model's row after the triggers."""
        cols = self.sees(release)
        update = self.rnd.random() < 0.6
        rid = self.rnd.choice(sorted(self.rows)) if update else self.next_id
        written = {c: (k, self.value(k)) for c, k, _ in cols if self.rnd.random() < 0.5}
        if not written:
            c, k, _ = self.rnd.choice(cols)
            written = {c: (k, self.value(k))}
        if not update:
            self.next_id += 1
        with self.session(release) as c:
            write_row(c, update, rid, {n: v for n, (_, v) in written.items()})
        old = dict(self.rows[rid]) if update else {}
        new = dict(old, **{k: v for k, v in written.values()})
        self.fire(release, old, new, not update)
        self.rows[rid] = new
        self.log.append("%s %s %d %r" % (release, "update" if update else "insert", rid, written))

    def check(self):
        """Every release served reads the model: its columns by name
        (SELECT * too), their types, every row."""
        for release in self.RELEASES:
            if not self.serves(release):
                continue
            seen = self.sees(release)
            with self.session(release) as c:
                got = {r[0]: list(r[1:]) for r in c.execute("SELECT id, %s FROM t" % ", ".join(n for n, _, _ in seen))}
                star = sorted(d.name for d in c.execute("SELECT * FROM t LIMIT 0").description)
                types = dict(c.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                                       " WHERE a.attrelid = 't'::regclass AND a.attnum > 0 AND NOT a.attisdropped"))
            assert star == sorted(["id"] + [n for n, _, _ in seen]), (release, star, seen, self.state)
            assert all(types[n] == ty for n, _, ty in seen), (release, types, seen, self.state)
            want = {i: [row.get(k) for _, k, _ in seen] for i, row in self.rows.items()}
            bad = [(i, got.get(i), w) for i, w in want.items() if got.get(i) != w]
            assert not bad and len(got) == len(want), (release, bad[:5], self.state, self.log[-8:])


def walk_lifecycle(w, rnd, weight_starts=0):
    """Up to 12 random moves, each followed by a check and 4 to 10 random
    writes of the releases served and a check; then the rest rolled back
    or completed, checked after each. weight_starts: each start counted
    that many more times in the draw."""
    steps = 0
    while steps < 12 and not all(st == "completed" for st in w.state.values()):
        moves = w.moves()
        what, m = rnd.choice(moves + [mv for mv in moves if mv[0] == "start"] * weight_starts)
        w.move(what, m)
        w.check()
        for _ in range(rnd.randint(4, 10)):
            w.write(rnd.choice([r for r in w.RELEASES if w.serves(r)]))
        w.check()
        steps += 1
    while any(st == "active" for st in w.state.values()):
        what, m = rnd.choice([mv for mv in w.moves() if mv[0] != "start"])
        w.move(what, m)
        w.check()
