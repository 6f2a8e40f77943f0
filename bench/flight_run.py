"""Driver of bench/flight.sh: three migrations of three tables (a column
added with `up` on each, ROWS rows each, parents chained a1 <- b2 <- c3),
run with `--db` one at a time (start, complete, then the next) and in
flight (each started as soon as the one before it is backfilling, then
the three completed), on two databases of the same rows, while an
application writes all three tables. Reports the time from the first
start to the last complete, and the application's p50/p99/worst per
phase. Every row is checked after each mode (v2 = v * 2 everywhere).

ONE_TABLE=1: the three are a chain of one table t1 instead: a1 adds v2
(up v * 2), b2 adds v3 (up v2 + 1, built on a1's shape), c3 indexes v3.
In flight, b2 expands at once and its backfill waits for a1's; c3 builds
its index beside them. Checked: v2 = v * 2 and v3 = v2 + 1 on every row."""
import json
import os
import random
import subprocess
import sys
import threading
import time

import psycopg

from benchlib import run_header

ROWS = int(os.environ.get("ROWS", "300000"))
TICK_MS = float(os.environ.get("APP_TICK_MS", "5"))
# each migration's backfill cap (0: none). A team's backfills are throttled
# to spare the app; running them in flight overlaps their hours
MAX_ROWS_PER_SEC = int(os.environ.get("MAX_ROWS_PER_SEC", "0"))
BIN = os.environ["PGT_BIN"]
ONE_TABLE = os.environ.get("ONE_TABLE", "0") == "1"
TABLES = ("t1",) if ONE_TABLE else ("t1", "t2", "t3")
NAMES = ("a1", "b2", "c3")
MIGRATION_LOCK_CLASS = 1885693282
CHAIN_OPS = (
    {"add_column": {"table": "t1", "up": "v * 2", "column": {"name": "v2", "type": "bigint"}}},
    {"add_column": {"table": "t1", "up": "v2 + 1", "column": {"name": "v3", "type": "bigint"}}},
    {"create_index": {"table": "t1", "name": "t1_v3", "columns": ["v3"]}},
)


def migration(i):
    op = CHAIN_OPS[i] if ONE_TABLE else {
        "add_column": {"table": TABLES[i], "up": "v * 2", "column": {"name": "v2", "type": "bigint"}}}
    m = {"name": NAMES[i], "parent": NAMES[i - 1] if i else None, "operations": [op]}
    if MAX_ROWS_PER_SEC:
        m["backfill"] = {"max_rows_per_sec": MAX_ROWS_PER_SEC}
    return m


def new_columns(table, completed):
    """The columns the application writes itself in `table` once the
    migrations in `completed` are out (as their triggers would)."""
    if ONE_TABLE:
        return [c for c, n in (("v2", "a1"), ("v3", "b2")) if n in completed]
    return ["v2"] if NAMES[TABLES.index(table)] in completed else []


def make_database(admin, name):
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s" % name)
        c.execute("CREATE DATABASE %s" % name)
    db = admin.replace("/appdb?", "/%s?" % name)
    with psycopg.connect(db, autocommit=True) as c:
        for t in TABLES:
            c.execute("CREATE TABLE %s (id bigserial PRIMARY KEY, v int NOT NULL, body text NOT NULL)" % t)
            c.execute("INSERT INTO %s (v, body) SELECT g, repeat('x', 40) FROM generate_series(1, %d) g" % (t, ROWS))
            c.execute("VACUUM ANALYZE %s" % t)
    return db


class App(threading.Thread):
    """The application: every tick, an update of a random row and an insert,
    on a table in turn; each statement's latency with its time. The old
    release until its table's migration is about to complete, the new one
    from then (it writes v2 itself, as the old release's trigger would)."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db, self.stop, self.samples, self.errors, self.inserted = db, threading.Event(), [], [], 0
        self.completed = set()

    def run(self):
        fill = {"v2": "(%s)::bigint * 2", "v3": "(%s)::bigint * 2 + 1"}
        try:
            with psycopg.connect(self.db, autocommit=True) as c:
                i = 0
                while not self.stop.is_set():
                    t = TABLES[i % len(TABLES)]
                    i += 1
                    cols = new_columns(t, self.completed)
                    update = "UPDATE %s SET v = v + 1%s WHERE id = %%s" % (
                        t, "".join(", %s = %s" % (col, fill[col] % "v + 1") for col in cols))
                    insert = "INSERT INTO %s (v, body%s) VALUES (%%s, 'app'%s)" % (
                        t, "".join(", " + col for col in cols), "".join(", " + fill[col] % "%s" for col in cols))
                    for stmt, args in ((update, (random.randint(1, ROWS),)), (insert, (i,) * (1 + len(cols)))):
                        t0 = time.monotonic()
                        c.execute(stmt, args)
                        self.samples.append((t0, (time.monotonic() - t0) * 1000))
                    self.inserted += 1
                    time.sleep(TICK_MS / 1000)
        except psycopg.Error as e:
            self.errors.append(str(e))


def migrate(db, *args, wait=True):
    cmd = [BIN, "migrate"] + list(args) + ["--db", db]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit("migrate %s failed: %s" % (" ".join(args), (r.stdout + r.stderr)[-2000:]))
    return r


def backfilling_engines(db):
    with psycopg.connect(db, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                         " AND classid = %s AND objsubid = 2", (MIGRATION_LOCK_CLASS,)).fetchone()[0]


def one_at_a_time(db, files, app):
    phases = []
    for i, f in enumerate(files):
        t0 = time.monotonic()
        migrate(db, "start", f)
        t1 = time.monotonic()
        app.completed.add(NAMES[i])   # the new release is out (it writes its columns itself), then complete
        migrate(db, "complete", NAMES[i])
        phases += [("start %s (expand, backfill)" % NAMES[i], t0, t1), ("complete %s" % NAMES[i], t1, time.monotonic())]
    return phases


def in_flight(db, files, app):
    t0 = time.monotonic()
    procs = []
    for f in files:
        for attempt in range(50):
            procs.append(migrate(db, "start", f, wait=False))
            # the next starts once this one backfills (its engine let the engine
            # lock go) or is done
            while backfilling_engines(db) < len([p for p in procs if p.poll() is None]) and procs[-1].poll() is None:
                time.sleep(0.05)
            if procs[-1].poll() is None or procs[-1].returncode == 0:
                break
            out = procs.pop().communicate()[0]
            if "another pgtandem engine is working" not in out:
                raise SystemExit("start failed: %s" % out[-2000:])
            time.sleep(0.2)  # an earlier one validates its backfill: a moment
    for p in procs:
        out = p.communicate(timeout=3600)[0]
        if p.returncode != 0:
            raise SystemExit("start failed: %s" % out[-2000:])
    t1 = time.monotonic()
    for n in NAMES:
        app.completed.add(n)
        migrate(db, "complete", n)
    how = "b2's backfill after a1's, c3's index after both" if ONE_TABLE else "expands, backfills at once"
    return [("start a1, b2, c3 (%s)" % how, t0, t1), ("complete a1, b2, c3", t1, time.monotonic())]


def pct(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def check(db, app):
    with psycopg.connect(db, autocommit=True) as c:
        wrong = "v2 IS DISTINCT FROM v::bigint * 2" + (" OR v3 IS DISTINCT FROM v2 + 1" if ONE_TABLE else "")
        for t in TABLES:
            bad = c.execute("SELECT count(*) FROM %s WHERE %s" % (t, wrong)).fetchone()[0]
            if bad:
                raise SystemExit("%s: %d rows wrong (%s): %s" % (t, bad, wrong, c.execute(
                    "SELECT * FROM %s WHERE %s LIMIT 5" % (t, wrong)).fetchall()))
        total = sum(c.execute("SELECT count(*) FROM %s" % t).fetchone()[0] for t in TABLES)
    if total != len(TABLES) * ROWS + app.inserted:
        raise SystemExit("rows: %d in the tables, %d written" % (total, len(TABLES) * ROWS + app.inserted))


def run_mode(admin, name, how, tmp):
    db = make_database(admin, name)
    files = []
    for i in range(3):
        path = os.path.join(tmp, "%s-%s.json" % (name, NAMES[i]))
        with open(path, "w") as f:
            json.dump(migration(i), f)
        files.append(path)
    app = App(db)
    app.start()
    time.sleep(1.0)  # the application's own pace before the first start, for the baseline
    base_end = time.monotonic()
    phases = how(db, files, app)
    app.stop.set()
    app.join(30)
    if app.errors:
        raise SystemExit("application errors: %s" % app.errors[:3])
    check(db, app)
    rows = [("before (the app alone)", app.samples[0][0] if app.samples else base_end, base_end)] + phases
    out = []
    for label, a, b in rows:
        lat = [ms for t, ms in app.samples if a <= t < b]
        out.append({"phase": label, "s": round(b - a, 2), "statements": len(lat), "p50_ms": round(pct(lat, 0.5), 2),
                    "p99_ms": round(pct(lat, 0.99), 2), "max_ms": round(max(lat) if lat else 0, 2)})
    return {"total_s": round(phases[-1][2] - phases[0][1], 2), "phases": out}


def main():
    admin, out, tmp = os.environ["PGT_SUPER_URI"], sys.argv[1], sys.argv[2]
    res = dict(run_header(admin), rows=ROWS, app_tick_ms=TICK_MS, max_rows_per_sec=MAX_ROWS_PER_SEC)
    res["one_at_a_time"] = run_mode(admin, "seq", one_at_a_time, tmp)
    print("one at a time: %.1f s" % res["one_at_a_time"]["total_s"], flush=True)
    res["in_flight"] = run_mode(admin, "flight", in_flight, tmp)
    print("in flight: %.1f s" % res["in_flight"]["total_s"], flush=True)
    res["ratio"] = round(res["one_at_a_time"]["total_s"] / max(res["in_flight"]["total_s"], 0.001), 2)
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=2)
    what = ("a chain of one table (a1 adds v2, b2 adds v3 from v2, c3 indexes v3)" if ONE_TABLE
            else "three tables")
    lines = ["# Three migrations of %s: one at a time against in flight (`--db`)" % what, "",
             "%s; %s; Postgres %s; %d rows per table; each backfill %s; an application writing the tables "
             "every %.0f ms (an UPDATE of a random row and an INSERT per tick)." % (
                 res["date"], res["machine"], res["postgres"], ROWS,
                 "capped at %d rows/s" % MAX_ROWS_PER_SEC if MAX_ROWS_PER_SEC else "unthrottled", TICK_MS), "",
             "Command: `%sROWS=%d MAX_ROWS_PER_SEC=%d sh bench/flight.sh`" % (
                 "ONE_TABLE=1 " if ONE_TABLE else "", ROWS, MAX_ROWS_PER_SEC), "",
             "| mode | first start to last complete |", "|---|---|",
             "| one at a time (start, complete, then the next) | %.1f s |" % res["one_at_a_time"]["total_s"],
             "| in flight (each started once the one before backfills) | %.1f s (one at a time / in flight: %.2f) |" % (
                 res["in_flight"]["total_s"], res["ratio"]), "",
             "The application's latency per phase (its own statements, measured by the client):", "",
             "| mode | phase | s | statements | p50 ms | p99 ms | worst ms |", "|---|---|---|---|---|---|---|"]
    for mode in ("one_at_a_time", "in_flight"):
        for p in res[mode]["phases"]:
            lines.append("| %s | %s | %.1f | %d | %.2f | %.2f | %.2f |" % (
                mode.replace("_", " "), p["phase"], p["s"], p["statements"], p["p50_ms"], p["p99_ms"], p["max_ms"]))
    lines += ["", "Every row checked after each mode (`v2 = v * 2`%s, and as many rows as were written)." % (
        ", `v3 = v2 + 1`" if ONE_TABLE else "")]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
