"""The tandem rule over three migrations of one column in flight (`--db`),
as a property: random writes from every live shape, through a random
order of starts, completes and rollbacks the chain allows, checked against
a model after every step.

One table t (id, name). q1 renames name to full_name; q2 (parent q1)
renames full_name to display; q3 (parent q2) retypes display to
varchar(60) (`up` upper(display), `down` lower(display)). A plain rename
moves no data and renames in the catalog at its complete; a migration
built on it that names the new name brings the rename forward to its own
expand (q2 renames name to full_name in the table, q3 full_name to
display), the views of every shape below follow the column, the contract
below finds the rename done, and a rollback renames it back unless the
migration below has completed meanwhile. Four releases: the one from
before q1 and the ones built with q1, q2 and q3.

The model: one column N (the table's name, full_name or display, as the
line has renamed it) and q3's second column S. Only q3 has a trigger: a
write of q3's release fills N from S through `down`, any other fills S
from N through `up` (on an insert always; on an update when the column
read changed or the target is NULL). After every step every live shape
reads exactly the model, names and types; at the end nothing of any
migration is left, and the table is what the completed ones say.

The second property: a retype, then a plain rename of the same column
(r1, r2; below)."""
import os
import random

import psycopg
import pytest

from support.line import ShapedLine, lift, walk_lifecycle
from test_schema_fidelity import leftovers, run_script

ROWS = 40
ORDER = ["q1", "q2", "q3"]
RELEASES = ["old", "q1", "q2", "q3"]
MIGRATIONS = {
    "q1": {"name": "q1", "parent": None, "operations": [
        {"rename_column": {"table": "t", "from": "name", "to": "full_name"}}]},
    "q2": {"name": "q2", "parent": "q1", "operations": [
        {"rename_column": {"table": "t", "from": "full_name", "to": "display"}}]},
    "q3": {"name": "q3", "parent": "q2", "operations": [
        {"alter_column": {"table": "t", "column": "display", "type": "varchar(60)", "up": "upper(display)",
                          "down": "lower(display)"}}]},
}
NAMES = {"old": "name", "q1": "full_name", "q2": "display", "q3": "display"}


class RenameChain(ShapedLine):
    ORDER, RELEASES, MIGRATIONS = ORDER, RELEASES, MIGRATIONS
    RETYPER = "q3"      # the migration whose trigger there is: a release from it on writes S

    def __init__(self, db, rnd, tmp):
        super().__init__(db, rnd, tmp)
        self.rows = {i: {"N": "n%d" % i} for i in range(1, ROWS + 1)}
        self.next_id = ROWS + 1

    def sees(self, release):
        if release == "q3":
            return [("display", "S" if self.state["q3"] == "active" else "N", "character varying(60)")]
        return [(NAMES[release], "N", "text")]

    def fire(self, release, old, new, insert):
        def runs(reads, target):
            return insert or any(new.get(r) != old.get(r) for r in reads) or new.get(target) is None
        if self.state[self.RETYPER] != "active":
            return
        if self.rank(release) > self.ORDER.index(self.RETYPER):
            if runs(["S"], "N"):
                new["N"] = lift(str.lower, new.get("S"))
        elif runs(["N"], "S"):
            new["S"] = lift(str.upper, new.get("N"))

    def value(self, column):
        return ("X%d" if column == "S" else "x%d") % self.rnd.randint(1, 9999)

    def move(self, what, m):
        self.run_move(what, m)
        if m != self.RETYPER:
            return
        for row in self.rows.values():
            if what == "start":         # the backfill
                row["S"] = lift(str.upper, row.get("N"))
            elif what == "complete":    # the second column takes the name
                row["N"] = row.pop("S", None)
            else:
                row.pop("S", None)

    def table_column(self):
        """The column's name in the table once nothing is in flight."""
        return "display" if self.state["q2"] == "completed" else \
            "full_name" if self.state["q1"] == "completed" else "name"


SEEDS = [int(s) for s in os.environ.get("PGT_RENAME_SEEDS", "1,2,3,4").split(",")]


def walk_and_check(line_class, db, tmp_path, seed):
    """t of ROWS rows walked through the line's lifecycle by the seed; at
    the end nothing of any migration left, and the table's column named
    and typed as the completed ones say."""
    run_script(db, "CREATE TABLE t (id int PRIMARY KEY, name text);"
                   " INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, %d) g;" % ROWS)
    rnd = random.Random(seed)
    line = line_class(db, rnd, str(tmp_path))
    walk_lifecycle(line, rnd, weight_starts=2)
    assert leftovers(db) == []
    with psycopg.connect(db, autocommit=True) as c:
        cols = c.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
                         " 't'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()
    want = "character varying(60)" if line.state[line.RETYPER] == "completed" else "text"
    assert cols == [("id", "integer"), (line.table_column(), want)], (cols, line.state, line.log[-8:])


@pytest.mark.parametrize("seed", SEEDS)
def test_renames_and_a_retype_of_one_column_in_flight_tandem_rule_property(db, tmp_path, seed):
    walk_and_check(RenameChain, db, tmp_path, seed)


# A retype, then a rename of the same column: r1 retypes name to
# varchar(60) into a second column (`up` upper(name), `down` lower(name)),
# which its views show as name; r2 (parent r1) renames name to display
# plainly. r2 acts only in its contract, which runs after r1's has given
# the second column the name: its views show r1's second column as
# display. Three releases: the one from before r1 and the ones built with
# r1 and r2. The model: the column N and r1's second column S, r1's
# trigger the only one (a write of r1's or r2's release fills N from S
# through `down`, the old release's fills S from N through `up`).
RETYPE_THEN_RENAME = {
    "r1": {"name": "r1", "parent": None, "operations": [
        {"alter_column": {"table": "t", "column": "name", "type": "varchar(60)", "up": "upper(name)",
                          "down": "lower(name)"}}]},
    "r2": {"name": "r2", "parent": "r1", "operations": [
        {"rename_column": {"table": "t", "from": "name", "to": "display"}}]},
}


class RetypeThenRename(RenameChain):
    ORDER, RELEASES, MIGRATIONS = ["r1", "r2"], ["old", "r1", "r2"], RETYPE_THEN_RENAME
    RETYPER = "r1"

    def sees(self, release):
        if release == "old":
            return [("name", "N", "text")]
        col = "S" if self.state["r1"] == "active" else "N"
        return [("name" if release == "r1" else "display", col, "character varying(60)")]

    def table_column(self):
        return "display" if self.state["r2"] == "completed" else "name"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_retype_then_a_rename_of_one_column_in_flight_tandem_rule_property(db, tmp_path, seed):
    walk_and_check(RetypeThenRename, db, tmp_path, seed)
