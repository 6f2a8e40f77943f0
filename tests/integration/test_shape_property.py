"""The tandem rule over two migrations of one table in flight, the second
planned on the first one's shape (`--db`), as a property: random writes
from every live shape, through a random order of starts, completes and
rollbacks the chain allows, checked against a model after every step.

One table t (id, a, b, c). s1 retypes a to bigint (`up` a * 10, `down`
a / 10) and renames c to cc (in its views alone until its complete); s2
(parent s1), built on s1's shape, retypes b to bigint (`up` b + 1000,
`down` b - 1000) and adds d (`up` b * 3). Three releases: the one from
before s1 and the ones built with s1 and s2, each on the path the docs
give (the new shapes of its migration and those below it, newest first,
then the old shapes of the others, oldest first). A release writes while
its shape is served.

The model runs the triggers as the tandem rule says, s1's before s2's: on
an insert of a shape a direction fills, always; on an update, when a
column its expression reads changed or its target is NULL. s2 changes no
column s1 changes or reads, so each fills columns of its own. After every
step every live shape reads exactly the model, names and types: a column
s1 retyped is bigint in s1's shape and s2's, `cc` is c in both."""
import os
import random

import pytest

from support.line import ShapedLine, lift, walk_lifecycle
from test_schema_fidelity import leftovers, run_script

ROWS = 40
ORDER = ["s1", "s2"]
RELEASES = ["old", "s1", "s2"]
MIGRATIONS = {
    "s1": {"name": "s1", "parent": None, "operations": [
        {"alter_column": {"table": "t", "column": "a", "type": "bigint", "up": "a * 10", "down": "(a / 10)::int"}},
        {"rename_column": {"table": "t", "from": "c", "to": "cc"}}]},
    "s2": {"name": "s2", "parent": "s1", "operations": [
        {"alter_column": {"table": "t", "column": "b", "type": "bigint", "up": "b + 1000",
                          "down": "(b - 1000)::int"}},
        {"add_column": {"table": "t", "up": "b * 3", "column": {"name": "d", "type": "int"}}}]},
}


class Shapes(ShapedLine):
    ORDER, RELEASES, MIGRATIONS = ORDER, RELEASES, MIGRATIONS

    def __init__(self, db, rnd, tmp):
        super().__init__(db, rnd, tmp)
        self.rows = {i: {"a": i, "b": 2 * i, "c": 3 * i} for i in range(1, ROWS + 1)}
        self.next_id = ROWS + 1

    def sees(self, release):
        """The release's columns: (name in its shape, the model's column, type)."""
        if release == "old":
            return [("a", "a", "integer"), ("b", "b", "integer"), ("c", "c", "integer")]
        a = ("a", "A1" if self.state["s1"] == "active" else "a", "bigint")
        if release == "s1":
            return [a, ("b", "b", "integer"), ("cc", "c", "integer")]
        return [a, ("b", "B2" if self.state["s2"] == "active" else "b", "bigint"), ("cc", "c", "integer"),
                ("d", "d", "integer")]

    # ---- the model of the triggers ----
    def fire(self, release, old, new, insert):
        def runs(reads, target):
            return insert or any(new.get(r) != old.get(r) for r in reads) or new.get(target) is None
        if self.state["s1"] == "active":
            if self.rank(release) < 1 and runs(["a"], "A1"):
                new["A1"] = lift(lambda v: v * 10, new.get("a"))
            elif self.rank(release) >= 1 and runs(["A1"], "a"):
                new["a"] = lift(lambda v: int(v / 10), new.get("A1"))
        if self.state["s2"] == "active":
            if self.rank(release) < 2:
                if runs(["b"], "B2"):
                    new["B2"] = lift(lambda v: v + 1000, new.get("b"))
                if runs(["b"], "d"):
                    new["d"] = lift(lambda v: v * 3, new.get("b"))
            elif runs(["B2"], "b"):
                new["b"] = lift(lambda v: v - 1000, new.get("B2"))

    # ---- the lifecycle ----
    def move(self, what, m):
        self.run_move(what, m)
        for row in self.rows.values():
            if (what, m) == ("start", "s1"):      # the backfill, from the shape below
                row["A1"] = lift(lambda v: v * 10, row.get("a"))
            elif (what, m) == ("start", "s2"):
                row["B2"] = lift(lambda v: v + 1000, row.get("b"))
                row["d"] = lift(lambda v: v * 3, row.get("b"))
            elif (what, m) == ("complete", "s1"):  # the second column takes the name
                row["a"] = row.pop("A1", None)
            elif (what, m) == ("complete", "s2"):
                row["b"] = row.pop("B2", None)
            elif (what, m) == ("rollback", "s1"):
                row.pop("A1", None)
            elif (what, m) == ("rollback", "s2"):
                row.pop("B2", None)
                row.pop("d", None)


SEEDS = [int(s) for s in os.environ.get("PGT_SHAPE_SEEDS", "1,2,3,4,5,6").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_migration_on_the_shape_of_one_in_flight_tandem_rule_property(db, tmp_path, seed):
    run_script(db, "CREATE TABLE t (id int PRIMARY KEY, a int, b int, c int);"
                   " INSERT INTO t SELECT g, g, 2 * g, 3 * g FROM generate_series(1, %d) g;" % ROWS)
    rnd = random.Random(seed)
    # starts weighted, so that both are often in flight when s1 completes
    walk_lifecycle(Shapes(db, rnd, str(tmp_path)), rnd, weight_starts=2)
    assert leftovers(db) == []
