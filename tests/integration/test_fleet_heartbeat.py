"""The fleet's lease and its fence, apart from the heartbeat's bookkeeping.

A proxy renews its lease in pgtandem.fleet_leases, a row nothing but the
proxy itself writes; its row in pgtandem.proxies (sessions, backend PIDs)
is written when it is not locked. So:

- an operator who holds `SELECT ... FROM pgtandem.proxies FOR UPDATE`
  longer than the lease, while a migration is in progress and clients run,
  costs the clients nothing (before: the relay fenced them after the lease,
  then answered 57P01 to 84 of 109 calls although their upstream worked),
  and the other proxies keep counting this one as live, so no cutover can
  go on without it;
- a lease that truly cannot be renewed (its own row held) still fences
  the relay within the lease, and closes held sessions after the fence's
  bound."""
import threading
import time

import psycopg

from support import db_uri, fleet_proxy, pg_raw_session, query_outcome, start_migration, status, wait_for, wait_phase

LEASE_MS = 2000
FENCE_BOUND_MS = 2 * LEASE_MS
CLIENTS = 4
# a call a fence held waits for the next renewal, a lease away; the fence
# itself is caught by sampling /status and the log. 1.0 s was a guess that
# a busy machine's scheduling alone went past (1.08 s beside a CPU hog)
SLOWEST_CALL_S = LEASE_MS / 1000.0


def run_clients(proxy, dbname, stop, calls, errors, slowest):
    def client():
        try:
            conn = psycopg.connect(db_uri(proxy, dbname), autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            errors.append("connect: %s" % e)
            return
        with conn:
            while not stop.is_set():
                t0 = time.time()
                try:
                    conn.execute("SELECT count(*) FROM checks WHERE id < 50").fetchone()
                    calls.append(1)
                except psycopg.Error as e:
                    errors.append("%s %s" % (e.sqlstate, e))
                    return
                slowest.append(time.time() - t0)
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


def lock_in_background(cluster, dbname, sql, seconds, locked, release):
    """An operator's transaction holding `sql`'s locks for at most `seconds`,
    or until the test sets `release` (it has seen what it waited for, or a
    failure)."""
    def hold():
        with psycopg.connect(cluster.uri(db=dbname), connect_timeout=10) as c:
            c.execute(sql)
            locked.set()
            release.wait(seconds)
            c.rollback()
    t = threading.Thread(target=hold)
    t.start()
    return t


def test_locked_proxies_rows_neither_fence_nor_drop_the_proxy_from_the_fleet(cluster, proxy_factory, legacy_db):
    p, other = fleet_proxy(proxy_factory, cluster, legacy_db), fleet_proxy(proxy_factory, cluster, legacy_db)
    start_migration(p)
    wait_phase(other, "active")
    wait_for(lambda: all(sum(1 for m in status(x)["fleet"]["members"] if m.get("live")) == 2 for x in (p, other)),
             20, "both proxies live in both views")
    stop, calls, errors, slowest = threading.Event(), [], [], []
    clients = run_clients(p, legacy_db, stop, calls, errors, slowest)
    locked, release = threading.Event(), threading.Event()
    held_s = 3 * LEASE_MS / 1000.0
    locker = lock_in_background(cluster, legacy_db, "SELECT * FROM pgtandem.proxies FOR UPDATE", held_s, locked,
                                release)
    try:
        assert locked.wait(10)
        t0 = time.time()
        fenced, not_live = [], []
        while locker.is_alive():
            st = status(p)
            if st["hold"]["fenced"] or st["hold"]["held_sessions"]:
                fenced.append(st["hold"])
            for m in status(other)["fleet"]["members"]:
                if not m.get("live"):
                    not_live.append(m)
            if errors:
                release.set()  # failed already: no need to hold the lock on
            locker.join(0.1)  # the next sample, or the lock's end
        locked_s = time.time() - t0
    finally:
        stop.set()
        release.set()
        locker.join()
        for t in clients:
            t.join(30)
    print("lock held %.1f s: %d calls, slowest %.3f s" % (locked_s, len(calls), max(slowest or [0])))
    assert locked_s >= held_s - 0.5, locked_s  # the lock did outlast the lease
    assert errors == [], errors
    assert not fenced, fenced[:3]
    assert not not_live, not_live[:3]
    assert len(calls) > 20 and max(slowest) < SLOWEST_CALL_S, (len(calls), max(slowest or [0]))
    assert "fence" not in "".join(line for line in p.log().splitlines() if " WARN " in line or " ERROR " in line)


def test_a_lease_that_cannot_be_renewed_still_fences_within_its_bound(cluster, proxy_factory, legacy_db):
    p = fleet_proxy(proxy_factory, cluster, legacy_db)
    start_migration(p)
    held = pg_raw_session(p.port, user="trustuser", database=legacy_db)
    assert query_outcome(held, "SELECT 1", 5)[0] == "ok"
    locked, release = threading.Event(), threading.Event()
    locker = lock_in_background(cluster, legacy_db, "SELECT * FROM pgtandem.fleet_leases FOR UPDATE",
                                (LEASE_MS + FENCE_BOUND_MS) / 1000.0 + 3, locked, release)
    try:
        assert locked.wait(10)
        t0 = time.time()
        wait_for(lambda: status(p)["hold"]["fenced"], LEASE_MS / 1000.0 + 2, "fenced")
        fenced_after = time.time() - t0
        what, fields, took = query_outcome(held, "SELECT 1", FENCE_BOUND_MS / 1000.0 + 5)
        assert what == "error" and fields["C"] == "57P01", (what, fields, took)
        print("fenced %.1f s after the lease's row was locked; a held call answered 57P01 after %.1f s"
              % (fenced_after, took))
    finally:
        release.set()  # seen what it had to: the lease row goes free now
        locker.join()
        held.close()
    wait_for(lambda: not status(p)["hold"]["fenced"], 10, "fence lifted")
