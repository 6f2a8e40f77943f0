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

import pytest

from support import sql
from support.line import Line, walk_lifecycle, write_row
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


def plus(a, b):
    return None if a is None else a + b


def times(a, b):
    return None if a is None else a * b


class Chain(Line):
    ORDER, RELEASES, MIGRATIONS = ORDER, RELEASES, MIGRATIONS

    def __init__(self, db, rnd, tmp):
        super().__init__(db, rnd, tmp)
        self.rows = {i: {"x": i} for i in range(1, ROWS + 1)}
        self.next_id = ROWS + 1

    # ---- what exists ----

    def columns(self):
        """The table's columns besides id and x."""
        return [c for c, live in (("y", self.applied("c1") and self.state["c3"] != "completed"),
                                  ("z", self.applied("c2"))) if live]

    def sees(self, release):
        """The columns of t in the release's shape (besides id and x)."""
        new = lambda m: self.rank(release) > ORDER.index(m) or self.state[m] == "completed"  # noqa: E731
        cols = []
        if self.applied("c1") and new("c1") and not (self.applied("c3") and new("c3")):
            cols.append("y")
        if self.applied("c2") and new("c2"):
            cols.append("z")
        return cols

    # ---- the model of the triggers ----
    def fire(self, release, old, new, insert):
        """The triggers of the migrations in flight, oldest first, on a
        row `release` wrote (new) over old (None on an insert)."""
        def changed(col):
            return insert or new.get(col) != old.get(col)
        if self.state["c1"] == "active" and self.rank(release) <= 0:        # c1's up, for the release before it
            if insert or changed("x") or new.get("y") is None:
                new["y"] = times(new["x"], 2)
        if self.state["c2"] == "active" and self.rank(release) <= 1:        # c2's up, for releases before it
            if insert or changed("y") or new.get("z") is None:
                new["z"] = plus(new.get("y"), 1)
        if self.state["c3"] == "active" and self.rank(release) >= 3:        # c3's down, for its release
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
        with self.session(release) as c:
            write_row(c, update, rid, written)
        old = dict(self.rows[rid]) if update else None
        new = dict(old or {}, **written)
        self.fire(release, old or {}, new, not update)
        self.rows[rid] = {k: new.get(k) for k in ["x"] + self.columns()}
        self.log.append("%s %s %d %r" % (release, "update" if update else "insert", rid, written))

    # ---- the lifecycle ----
    def move(self, what, m):
        self.run_move(what, m)
        if what == "start":
            for row in self.rows.values():   # the backfill: every row there was, from the shape below
                if m == "c1":
                    row["y"] = times(row["x"], 2)
                elif m == "c2":
                    row["z"] = plus(row.get("y"), 1)
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
    walk_lifecycle(Chain(db, rnd, str(tmp_path)), rnd)
    assert leftovers(db) == []
