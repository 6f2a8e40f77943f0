"""The tandem rule over two migrations of one table in flight where the
second changes columns the first one's triggers read (`--db`), as a
property: random writes from every live shape, through a random order of
starts, completes and rollbacks the chain allows, checked against a model
after every step.

One table t (id, name). p1 splits name into first and last (each added
with an `up` of split_part, name dropped with a `down` joining them); p2
(parent p1), built on p1's shape, retypes first to varchar(60) (`up`
upper(first), `down` lower(first)) and renames last to surname. p1's
`down` reads first and last, which p2 changes: a write of p2's release
must reach p1's `down` after p2's own `down` filled first, and a write of
the release before p1 must reach p2's `up` after p1's `up` filled it. So
the triggers run the `down`s newest migration first, then the `up`s
oldest first. Three releases: the one from before p1 and the ones built
with p1 and p2, each on the path the docs give.

The model runs the triggers in that order: on an insert of a shape a
direction fills, always; on an update, when a column its expression
reads changed or its target is NULL. After every step every live shape
reads exactly the model, names and types; at the end nothing of either
migration is left."""
import os
import random

import pytest

from support.line import ShapedLine, lift, walk_lifecycle
from test_schema_fidelity import leftovers, run_script

ROWS = 40
ORDER = ["p1", "p2"]
RELEASES = ["old", "p1", "p2"]
MIGRATIONS = {
    "p1": {"name": "p1", "parent": None, "operations": [
        {"add_column": {"table": "t", "up": "split_part(name, ' ', 1)", "column": {"name": "first", "type": "text"}}},
        {"add_column": {"table": "t", "up": "split_part(name, ' ', 2)", "column": {"name": "last", "type": "text"}}},
        {"drop_column": {"table": "t", "column": "name", "down": "first || ' ' || last"}}]},
    "p2": {"name": "p2", "parent": "p1", "operations": [
        {"alter_column": {"table": "t", "column": "first", "type": "varchar(60)", "up": "upper(first)",
                          "down": "lower(first)"}},
        {"rename_column": {"table": "t", "from": "last", "to": "surname"}}]},
}


def part(v, n):
    if v is None:
        return None
    parts = v.split(" ")
    return parts[n - 1] if len(parts) >= n else ""


def join(a, b):
    return None if a is None or b is None else a + " " + b


class Split(ShapedLine):
    ORDER, RELEASES, MIGRATIONS = ORDER, RELEASES, MIGRATIONS

    def __init__(self, db, rnd, tmp):
        super().__init__(db, rnd, tmp)
        self.rows = {i: {"name": "a%d b%d" % (i, i)} for i in range(1, ROWS + 1)}
        self.next_id = ROWS + 1

    def sees(self, release):
        """The release's columns: (name in its shape, the model's column, type)."""
        if release == "old":
            return [("name", "name", "text")]
        if release == "p1":
            return [("first", "first", "text"), ("last", "last", "text")]
        return [("first", "F2" if self.state["p2"] == "active" else "first", "character varying(60)"),
                ("surname", "last", "text")]

    # ---- the model of the triggers: the downs newest first, then the ups oldest first ----
    def fire(self, release, old, new, insert):
        def runs(reads, target):
            return insert or any(new.get(r) != old.get(r) for r in reads) or new.get(target) is None
        p1, p2 = self.state["p1"] == "active", self.state["p2"] == "active"
        rank = self.rank(release)
        if p2 and rank >= 2 and runs(["F2"], "first"):
            new["first"] = lift(str.lower, new.get("F2"))
        if p1 and rank >= 1 and runs(["first", "last"], "name"):
            new["name"] = join(new.get("first"), new.get("last"))
        if p1 and rank < 1:
            if runs(["name"], "first"):
                new["first"] = part(new.get("name"), 1)
            if runs(["name"], "last"):
                new["last"] = part(new.get("name"), 2)
        if p2 and rank < 2 and runs(["first"], "F2"):
            new["F2"] = lift(str.upper, new.get("first"))

    def value(self, column):
        if column == "name":
            return "w%d v%d" % (self.rnd.randint(1, 999), self.rnd.randint(1, 999))
        return ("X%d" if column == "F2" else "x%d") % self.rnd.randint(1, 9999)

    # ---- the lifecycle ----
    def move(self, what, m):
        self.run_move(what, m)
        for row in self.rows.values():
            if (what, m) == ("start", "p1"):      # the backfill, from the shape below
                row["first"], row["last"] = part(row.get("name"), 1), part(row.get("name"), 2)
            elif (what, m) == ("start", "p2"):
                row["F2"] = lift(str.upper, row.get("first"))
            elif (what, m) == ("complete", "p1"):
                row.pop("name", None)
            elif (what, m) == ("complete", "p2"):  # the second column takes the name
                row["first"] = row.pop("F2", None)
            elif (what, m) == ("rollback", "p1"):
                row.pop("first", None)
                row.pop("last", None)
            elif (what, m) == ("rollback", "p2"):
                row.pop("F2", None)


SEEDS = [int(s) for s in os.environ.get("PGT_SPLIT_SEEDS", "1,2,3,4").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_migration_changing_columns_the_one_below_reads_tandem_rule_property(db, tmp_path, seed):
    run_script(db, "CREATE TABLE t (id int PRIMARY KEY, name text);"
                   " INSERT INTO t SELECT g, 'a' || g || ' b' || g FROM generate_series(1, %d) g;" % ROWS)
    rnd = random.Random(seed)
    # starts weighted, so that both are often in flight when p1 completes
    walk_lifecycle(Split(db, rnd, str(tmp_path)), rnd, weight_starts=2)
    assert leftovers(db) == []
