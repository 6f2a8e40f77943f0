"""The tandem rule over a chain of migrations of one table (`--db`), as a
property: random writes from every live shape, through a random order of
starts, completes and rollbacks the chain allows, checked against a model
after every step.

One table t (id, x). c1 adds y, filled from x for the writes of the
release before it (`up`: x * 2); c2 (parent c1) adds z, filled from c1's
y (`up`: y + 1); c3 (parent c2) drops c1's y, which its release's writes
give the old shapes (`down`: z - 1): a column added with `up`, built on,
then dropped with `down`. Four releases: the one from before c1 and the
ones built with c1, c2 and c3, each on the path the docs give (the new
shapes of its migration and those below it, newest first, then the old
shapes of the others, oldest first). A release writes while its shape is
served: built with a migration, from its start to its rollback; before
it, until its complete.

The model runs the triggers as the tandem rule says, oldest migration
first: on an insert of a shape the direction fills, always; on an update,
when a column its expression reads changed or its target is NULL. A
release's write of a column is never rewritten by another migration's
direction, and nothing loops. After every step every live shape reads
exactly the model, and so does the table itself."""
import os
import random

import psycopg
import pytest

from support import migrate, sql, write_migration
from test_schema_fidelity import leftovers, run_script

ROWS = 40
ORDER = ["c1", "c2", "c3"]
RELEASES = ["old", "c1", "c2", "c3"]
MIGRATIONS = {
    "c1": {"name": "c1", "parent": None, "operations": [
        {"add_column": {"table": "t", "up": "x * 2", "column": {"name": "y", "type": "int"}}}]},
    "c2": {"name": "c2", "parent": "c1", "operations": [
        {"add_column": {"table": "t", "up": "y + 1", "column": {"name": "z", "type": "int"}}}]},
    "c3": {"name": "c3", "parent": "c2", "operations": [
        {"drop_column": {"table": "t", "column": "y", "down": "z - 1"}}]},
}


def rank(release):
    return RELEASES.index(release)


def plus(a, b):
    return None if a is None else a + b


def times(a, b):
    return None if a is None else a * b


class Chain:
    def __init__(self, db, rnd, tmp):
        self.db, self.rnd, self.tmp = db, rnd, tmp
        self.state = {m: "pending" for m in ORDER}     # pending, active, completed, rolled_back
        self.rows = {i: {"x": i} for i in range(1, ROWS + 1)}
        self.next_id = ROWS + 1
        self.log = []

    # ---- what exists ----
    def applied(self, m):
        return self.state[m] in ("active", "completed")

    def columns(self):
        """The table's columns besides id and x."""
        return [c for c, live in (("y", self.applied("c1") and self.state["c3"] != "completed"),
                                  ("z", self.applied("c2"))) if live]

    def serves(self, release):
        """Whether the release's shape is served now."""
        for i, m in enumerate(ORDER):
            built_on = rank(release) > i
            if built_on and not self.applied(m):
                return False
            if not built_on and self.state[m] == "completed":
                return False
        return True

    def sees(self, release):
        """The columns of t in the release's shape (besides id and x)."""
        new = lambda m: rank(release) > ORDER.index(m) or self.state[m] == "completed"  # noqa: E731
        cols = []
        if self.applied("c1") and new("c1") and not (self.applied("c3") and new("c3")):
            cols.append("y")
        if self.applied("c2") and new("c2"):
            cols.append("z")
        return cols

    def path(self, release):
        live = [m for m in ORDER if self.state[m] == "active"]
        newer = [("pgtandem_%s" % m) for m in reversed(live) if rank(release) > ORDER.index(m)]
        older = [("pgtandem_%s_old" % m) for m in live if rank(release) <= ORDER.index(m)]
        return ",".join(newer + older + ["public"])

    def session(self, release):
        opts = ("-c pgtandem.version=%s " % release if release != "old" else "") + "-c search_path=" + self.path(release)
        return psycopg.connect(self.db, autocommit=True, options=opts)

    # ---- the model of the triggers ----
    def fire(self, release, old, new, insert):
        """The triggers of the migrations in flight, oldest first, on a
        row `release` wrote (new) over old (None on an insert)."""
        def changed(col):
            return insert or new.get(col) != old.get(col)
        if self.state["c1"] == "active" and rank(release) <= 0:        # c1's up, for the release before it
            if insert or changed("x") or new.get("y") is None:
                new["y"] = times(new["x"], 2)
        if self.state["c2"] == "active" and rank(release) <= 1:        # c2's up, for releases before it
            if insert or changed("y") or new.get("z") is None:
                new["z"] = plus(new.get("y"), 1)
        if self.state["c3"] == "active" and rank(release) >= 3:        # c3's down, for its release
            if insert or changed("z") or new.get("y") is None:
                new["y"] = plus(new.get("z"), -1)

    def write(self, release):
        cols = ["x"] + self.sees(release)
        update = self.rnd.random() < 0.6
        rid = self.rnd.choice(sorted(self.rows)) if update else self.next_id
        written = {c: self.rnd.randint(1, 10000) for c in cols if not update or self.rnd.random() < 0.5}
        if update and not written:
            written = {"x": self.rnd.randint(1, 10000)}
        if not update:
            self.next_id += 1
            written.setdefault("x", self.rnd.randint(1, 10000))
        names = sorted(written)
        with self.session(release) as c:
            if update:
                c.execute("UPDATE t SET %s WHERE id = %%s" % ", ".join("%s = %%s" % n for n in names),
                          [written[n] for n in names] + [rid])
            else:
                c.execute("INSERT INTO t (id, %s) VALUES (%%s, %s)" % (", ".join(names), ", ".join(["%s"] * len(names))),
                          [rid] + [written[n] for n in names])
        old = dict(self.rows[rid]) if update else None
        new = dict(old or {}, **written)
        self.fire(release, old or {}, new, not update)
        self.rows[rid] = {k: new.get(k) for k in ["x"] + self.columns()}
        self.log.append("%s %s %d %r" % (release, "update" if update else "insert", rid, written))

    # ---- the lifecycle ----
    def moves(self):
        out = []
        for i, m in enumerate(ORDER):
            below, above = ORDER[:i], ORDER[i + 1:]
            st = self.state[m]
            if st in ("pending", "rolled_back") and all(self.applied(b) for b in below) and \
                    not any(self.applied(a) for a in above):
                out.append(("start", m))
            if st == "active" and all(self.state[b] == "completed" for b in below):
                out.append(("complete", m))
            if st == "active" and not any(self.applied(a) for a in above):
                out.append(("rollback", m))
        return out

    def move(self, what, m):
        if what == "start":
            r = migrate(self.db, "start", write_migration(MIGRATIONS[m], self.tmp), "--quiet")
        else:
            r = migrate(self.db, what, m)
        assert r.returncode == 0, (what, m, r.stdout + r.stderr, self.log[-5:])
        self.log.append("%s %s" % (what, m))
        if what == "start":
            self.state[m] = "active"
            for row in self.rows.values():   # the backfill: every row there was, from the shape below
                if m == "c1":
                    row["y"] = times(row["x"], 2)
                elif m == "c2":
                    row["z"] = plus(row.get("y"), 1)
        else:
            self.state[m] = "completed" if what == "complete" else "rolled_back"
        for row in self.rows.values():
            for k in [k for k in row if k != "x" and k not in self.columns()]:
                del row[k]

    # ---- the check ----
    def check(self):
        cols = self.columns()
        table = {r[0]: dict(zip(["x"] + cols, r[1:])) for r in sql(
            self.db, "SELECT id, %s FROM public.t" % ", ".join(["x"] + cols))}
        want = {i: {k: row.get(k) for k in ["x"] + cols} for i, row in self.rows.items()}
        wrong = [(i, table.get(i), w) for i, w in want.items() if table.get(i) != w]
        assert not wrong and len(table) == len(want), (wrong[:5], self.state, self.log[-8:])
        for release in RELEASES:
            if not self.serves(release):
                continue
            seen = ["x"] + self.sees(release)
            with self.session(release) as c:
                got = {r[0]: list(r[1:]) for r in c.execute("SELECT id, %s FROM t" % ", ".join(seen))}
                star = [d.name for d in c.execute("SELECT * FROM t LIMIT 0").description]
            assert star == ["id"] + seen, (release, star, seen, self.state)
            want = {i: [row.get(k) for k in seen] for i, row in self.rows.items()}
            bad = [(i, got.get(i), w) for i, w in want.items() if got.get(i) != w]
            assert not bad, (release, bad[:5], self.state, self.log[-8:])


SEEDS = [int(s) for s in os.environ.get("PGT_CHAIN_SEEDS", "1,2,3,4,5,6").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_chain_of_one_table_tandem_rule_property(db, tmp_path, seed):
    run_script(db, "CREATE TABLE t (id int PRIMARY KEY, x int NOT NULL);"
                   " INSERT INTO t SELECT g, g FROM generate_series(1, %d) g;" % ROWS)
    rnd = random.Random(seed)
    w = Chain(db, rnd, str(tmp_path))
    steps = 0
    while steps < 12 and not all(st == "completed" for st in w.state.values()):
        what, m = rnd.choice(w.moves())
        w.move(what, m)
        w.check()
        for _ in range(rnd.randint(4, 10)):
            w.write(rnd.choice([r for r in RELEASES if w.serves(r)]))
        w.check()
        steps += 1
    # to the end: roll the rest back newest first, or complete it oldest first
    while any(st == "active" for st in w.state.values()):
        what, m = rnd.choice([mv for mv in w.moves() if mv[0] != "start"])
        w.move(what, m)
        w.check()
    assert leftovers(db) == []
