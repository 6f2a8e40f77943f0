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

__all__ = ["Line", "walk_lifecycle"]


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
