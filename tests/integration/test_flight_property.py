"""The tandem rule with several migrations in flight (`--db`), as a
property: random interleavings of writes from every live shape, through
a random order of starts, completes and rollbacks that the lifecycle
allows, checked against a model after every step.

Three tables, one migration each, chained by their parents (m1 <- m2 <-
m3) as an ORM's history would be: m1 renames t1.a to b; m2 adds t2.y
computed from x for the old release's writes (`up`: x * 2), which the new
releases write as they like; m3 retypes t3.s (digits as text) to n
integer (`up` s::int, `down` n::text). Four releases: the one from
before m1 and the ones built with m1, m2 and m3 (each sees the new shape
of its migration and of those below it, the old shape of the others, as
migration_flight's rules say), plus a session that bypasses every shape
and writes t1 and t2 directly. A release writes a table only while its
shape of it exists: its new shape until a rollback retires it, its old
one until a complete does. After every step, every live shape of every
table reads exactly the model.

With the triggers' earlier rule (the writer's shape is the first schema
on its path, whatever migration it belongs to) seeds 1, 4 and 5 fail: the
release built with m3 updates t2.x alone through m2's new shape while m1
is in flight, its path starts with m1's schema, and m2's trigger took it
for an old-shape write and overwrote its y with up(x)."""
import os
import random

import psycopg
import pytest

from support import migrate, sql, write_migration
from test_schema_fidelity import leftovers, run_script

ROWS = 60

BASE = """
CREATE TABLE t1 (id int PRIMARY KEY, a text NOT NULL);
CREATE TABLE t2 (id int PRIMARY KEY, x int NOT NULL);
CREATE TABLE t3 (id int PRIMARY KEY, s text NOT NULL);
INSERT INTO t1 SELECT g, 'a' || g FROM generate_series(1, %(n)d) g;
INSERT INTO t2 SELECT g, g FROM generate_series(1, %(n)d) g;
INSERT INTO t3 SELECT g, g::text FROM generate_series(1, %(n)d) g;
""" % {"n": ROWS}

MIGRATIONS = {
    "m1": {"name": "m1", "parent": None, "operations": [
        {"rename_column": {"table": "t1", "from": "a", "to": "b"}}]},
    "m2": {"name": "m2", "parent": "m1", "operations": [
        {"add_column": {"table": "t2", "up": "x * 2",
                        "column": {"name": "y", "type": "int", "nullable": False, "default": "0"}}}]},
    "m3": {"name": "m3", "parent": "m2", "operations": [
        {"rename_column": {"table": "t3", "from": "s", "to": "n", "type": "int", "up": "s::int",
                           "down": "n::text"}}]},
}
TABLE = {"m1": "t1", "m2": "t2", "m3": "t3"}
ORDER = ["m1", "m2", "m3"]
RELEASES = ["old", "m1", "m2", "m3"]


def sees_new(release, m):
    """A release built with migration r sees the new shape of r and of
    every migration below it (here: every one up to r in ORDER)."""
    return release != "old" and ORDER.index(m) <= ORDER.index(release)


class World:
    def __init__(self, db, rnd):
        self.db, self.rnd = db, rnd
        self.state = {m: "pending" for m in ORDER}    # pending, active, completed, rolled_back
        self.model = {t: {i: i for i in range(1, ROWS + 1)} for t in ("t1", "t2", "t3")}
        self.next_id = ROWS + 1
        self.conns = {}
        self.log = []

    # ---- shapes ----
    def path(self, release):
        schemas = []
        for m in ORDER:
            if self.state[m] == "active":
                schemas.append("pgtandem_%s" % m if sees_new(release, m) else "pgtandem_%s_old" % m)
        return ", ".join(schemas + ["public"])

    def shape_exists(self, release, m):
        """Whether the release's shape of m's table is still served."""
        st = self.state[m]
        if release == "bypass":
            return st in ("pending", "active", "rolled_back") or st == "completed"
        if sees_new(release, m):
            return st in ("active", "completed")
        return st in ("pending", "active", "rolled_back")

    def new_shape(self, release, m):
        st = self.state[m]
        if release == "bypass":
            return st == "completed"
        if st in ("pending", "rolled_back"):
            return False
        return st == "completed" or sees_new(release, m)

    def conn(self, release):
        c = self.conns.get(release)
        if c is None:
            opts = "" if release in ("old", "bypass") else "-c pgtandem.version=%s" % release
            c = self.conns[release] = psycopg.connect(self.db, autocommit=True, options=opts)
        if release != "bypass":
            c.execute("SELECT set_config('search_path', %s, false)", (self.path(release),))
        return c

    # ---- writes: (table, id, value) through the release's shape ----
    def write(self, release, m):
        t = TABLE[m]
        new = self.new_shape(release, m)
        c = self.conn(release)
        if release == "bypass" and m == "m3":
            return  # a retype's two columns have no bypass writer here
        rows = self.model[t]
        update = rows and self.rnd.random() < 0.5
        rid = self.rnd.choice(sorted(rows)) if update else self.next_id
        if not update:
            self.next_id += 1
        v = self.rnd.randint(1, 100000)
        if t == "t1":
            col = "b" if new else "a"
            stmt = ("UPDATE t1 SET {c} = %s WHERE id = %s" if update else "INSERT INTO t1 (id, {c}) VALUES (%s, %s)")
            args = ("v%d" % v, rid) if update else (rid, "v%d" % v)
            c.execute(stmt.format(c=col), args)
        elif t == "t2":
            if new and update and self.rnd.random() < 0.5:  # x alone: the new release keeps its y
                c.execute("UPDATE t2 SET x = %s WHERE id = %s", (v, rid))
                old = rows[rid]
                v = (v, old[1] if isinstance(old, tuple) else old * 2)
            elif new:  # the new release's y is its own, not up(x)
                y = self.rnd.randint(1, 100000)
                stmt = "UPDATE t2 SET x = %s, y = %s WHERE id = %s" if update else \
                    "INSERT INTO t2 (x, y, id) VALUES (%s, %s, %s)"
                c.execute(stmt, (v, y, rid))
                v = (v, y)
            else:  # up fills y from the x it wrote
                stmt = "UPDATE t2 SET x = %s WHERE id = %s" if update else "INSERT INTO t2 (x, id) VALUES (%s, %s)"
                c.execute(stmt, (v, rid))
                v = (v, v * 2)
        else:
            col, val = ("n", v) if new else ("s", str(v))
            stmt = ("UPDATE t3 SET {c} = %s WHERE id = %s" if update else "INSERT INTO t3 ({c}, id) VALUES (%s, %s)")
            c.execute(stmt.format(c=col), (val, rid))
        rows[rid] = v if t != "t1" else "v%d" % v
        self.log.append("%s writes %s id %d (%s shape)" % (release, t, rid, "new" if new else "old"))

    def release_live(self, release):
        """A release built with a migration runs from its start until its
        rollback; the old one and the bypassing session always."""
        return release in ("old", "bypass") or self.state[release] in ("active", "completed")

    def random_writes(self, n):
        for _ in range(n):
            release = self.rnd.choice(RELEASES + ["bypass"])
            m = self.rnd.choice(ORDER)
            if self.release_live(release) and self.shape_exists(release, m):
                self.write(release, m)

    # ---- the check ----
    def expected(self, t, rid, new):
        v = self.model[t][rid]
        if t == "t1":
            return v if isinstance(v, str) else "a%d" % v
        if t == "t2":
            x, y = v if isinstance(v, tuple) else (v, v * 2)
            return (x, y) if new else (x,)
        return v if new else str(v)

    def check(self):
        for release in RELEASES:
            if not self.release_live(release):
                continue
            c = self.conn(release)
            for m in ORDER:
                if not self.shape_exists(release, m):
                    continue
                t, new = TABLE[m], self.new_shape(release, m)
                cols = {"t1": "b" if new else "a", "t2": "x, y" if new else "x", "t3": "n" if new else "s"}[t]
                got = {r[0]: (r[1] if len(r) == 2 and t != "t2" else tuple(r[1:]))
                       for r in c.execute("SELECT id, %s FROM %s" % (cols, t)).fetchall()}
                want = {rid: self.expected(t, rid, new) for rid in self.model[t]}
                bad = [(rid, got.get(rid), want[rid]) for rid in want if got.get(rid) != want[rid]]
                extra = set(got) - set(want)
                assert not bad and not extra, (release, m, t, self.state, bad[:5], sorted(extra)[:5],
                                               self.log[-10:])

    # ---- the lifecycle ----
    def allowed(self):
        acts = []
        for i, m in enumerate(ORDER):
            st = self.state[m]
            parent_ok = i == 0 or self.state[ORDER[i - 1]] in ("active", "completed")
            if st == "pending" and parent_ok:
                acts.append(("start", m))
            if st == "active":
                acts.append(("complete", m))
                children = ORDER[i + 1:i + 2]
                if all(self.state[k] in ("pending", "rolled_back") for k in children):
                    acts.append(("rollback", m))
        return acts

    def step(self, tmp_path):
        # starts weigh more: the interesting states have all three in flight
        acts = self.allowed()
        act, m = self.rnd.choices(acts, weights=[4 if a == "start" else 1 for a, _ in acts])[0]
        if act == "start":
            r = migrate(self.db, "start", write_migration(MIGRATIONS[m], str(tmp_path)), "--quiet")
        else:
            r = migrate(self.db, act, m)
        assert r.returncode == 0, (act, m, self.state, r.stdout + r.stderr)
        self.state[m] = {"start": "active", "complete": "completed", "rollback": "rolled_back"}[act]
        self.log.append("%s %s" % (act, m))
        return act, m

    def done(self):
        """Every migration ended, or never to start: one below it was rolled back."""
        return all(s in ("completed", "rolled_back") or
                   any(self.state[k] == "rolled_back" for k in ORDER[:ORDER.index(m)])
                   for m, s in self.state.items())


SEEDS = [int(s) for s in os.environ.get("PGT_FLIGHT_SEEDS", "1,2,3,4,5,6,7,8").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_live_shape_reads_the_model_through_any_lifecycle_order(db, tmp_path, seed):
    run_script(db, BASE)
    w = World(db, random.Random(seed))
    try:
        w.check()
        steps = 0
        while not w.done() and steps < 12:
            w.random_writes(80)
            w.check()
            w.step(tmp_path)
            w.check()
            steps += 1
        w.random_writes(80)
        w.check()
        assert w.done(), w.state
    finally:
        for c in w.conns.values():
            c.close()
    print("seed %d: %s" % (seed, " -> ".join(x for x in w.log if not x.startswith(tuple(RELEASES + ["bypass"])))))
    assert leftovers(db) == []
    assert sql(db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'") == []
