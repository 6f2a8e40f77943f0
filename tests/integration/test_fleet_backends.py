"""A sidecar fleet: sixteen proxies on one database, one beside each app
pod, and what they cost it in connection slots, sampled every 100 ms from
the migration's start to its end: never more than N + 3 (the fleet's
connection each, the starting proxy's engine connection and its reserved
slot, one more for a step), news of each phase included.

A member with no migration step to run (none in progress, or following one
another proxy runs) keeps only its fleet connection; its engine connection
closes once idle and opens again when a step, a status read or the fleet's
news needs it. The fleet so holds one backend per proxy, plus the starting
proxy's engine connection and its reserved slot while its migration is in
progress (before: two per proxy, so a fleet of 52 took every slot of a
104-slot endpoint before a client connected). The cutover goes through a
follower whose connection was closed, with a new-release pgbench client
writing through every proxy: 0 client errors, every proxy follows, every
transaction found in the table row by row."""
import os
import threading

import psycopg

from support import (admin_url, assert_new_shape, check_data, complete_via, db_uri, make_fleet, NAME, NEW_SCRIPT,
                     assert_each_pgbench_clean, pgbench, pgbench_result, run_pgtandem, start_migration, status, version_options, wait_for,
                     wait_new_release_writes, wait_phase)

N = 16


def own_backends(cluster, dbname):
    """{application_name: count} of the fleet's own backends on dbname."""
    with psycopg.connect(cluster.super_uri, autocommit=True) as c:
        return dict(c.execute("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s"
                              " AND application_name LIKE 'pgtandem%%' GROUP BY 1", (dbname,)).fetchall())


def total(cluster, dbname):
    return sum(own_backends(cluster, dbname).values())


class Sampler:
    """The fleet's own backends every 100 ms on a thread: the peak and when."""

    def __init__(self, cluster, dbname):
        self.peak, self.at, self.samples = 0, None, 0
        self.stop_event = threading.Event()
        self.conn = psycopg.connect(cluster.super_uri, autocommit=True)
        self.dbname = dbname
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.wait(0.1):
            rows = dict(self.conn.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name LIKE 'pgtandem%%' GROUP BY 1", (self.dbname,)).fetchall())
            self.samples += 1
            n = sum(rows.values())
            if n > self.peak:
                self.peak, self.at = n, rows

    def stop(self):
        self.stop_event.set()
        self.thread.join(5)
        self.conn.close()
        return self.peak


def test_sixteen_proxies_hold_one_backend_each_and_cut_over_together(cluster, proxy_factory, legacy_db):
    proxies = make_fleet(proxy_factory, cluster, legacy_db, N, timeout=60)
    # no migration: the fleet's connection each, nothing more
    wait_for(lambda: total(cluster, legacy_db) <= N, 30, "idle members to keep one backend each",
             detail=lambda: own_backends(cluster, legacy_db))
    st = status(proxies[1])["engine"]
    assert st["connected"] is False and st["closed_while_idle"] is True, st
    sampler = Sampler(cluster, legacy_db)
    start_migration(proxies[0])
    for p in proxies:
        wait_phase(p, "active")
    # the starting proxy keeps its engine connection and a reserved slot;
    # the followers go back to one each
    wait_for(lambda: total(cluster, legacy_db) <= N + 2, 30, "followers to keep one backend each",
             detail=lambda: own_backends(cluster, legacy_db))
    assert own_backends(cluster, legacy_db).get("pgtandem fleet") == N
    # a status read through a follower is answered
    r = run_pgtandem(["migrate", "status", "--json", "--proxy", admin_url(proxies[2])])
    assert r.returncode == 0 and '"active"' in r.stdout, r.stdout + r.stderr
    benches = [pgbench(p, legacy_db, NEW_SCRIPT, 15, "prepared", version_options(), clients=1, jobs=1)
               for p in proxies]
    try:
        wait_for(lambda: all(status(p)["versions"].get(NAME, 0) >= 1 for p in proxies), 30,
                 "a new-release session on every proxy")
        wait_new_release_writes(cluster, legacy_db, 50)
        # the cutover through a follower whose engine connection was closed
        r, rep = complete_via(proxies[3])
        assert r.returncode == 0 and rep.get("status") == "completed", r.stdout + r.stderr + proxies[3].log()[-3000:]
    finally:
        results = [pgbench_result(proc, path) for proc, path in benches]
    assert_each_pgbench_clean(proxies, results)
    for p in proxies:
        wait_phase(p, "completed")
    with psycopg.connect(db_uri(proxies[5], legacy_db), prepare_threshold=0, autocommit=True) as c:
        assert_new_shape(c)
    check_data(cluster, legacy_db, sum(res["processed"] for res in results))
    wait_for(lambda: total(cluster, legacy_db) <= N, 30, "every member back to one backend",
             detail=lambda: own_backends(cluster, legacy_db))
    peak = sampler.stop()
    assert sampler.samples > 50 and peak <= N + 3, (peak, sampler.at, sampler.samples)
    # the hold and its release went on the peer port: every participant's
    # "held" came there, and the release too (a participant still held
    # RELEASE_LOOK_MS after its "held", on a machine running both suites,
    # may read it from the hold's row first: a few at most). So may a
    # participant that did not answer the hold within its bound (100 ms) on
    # such a machine: the hold's NOTIFY tells it, and it answers in its row.
    # Under the sanitizer build, several times slower beside the release
    # build's suite, more of the sixteen miss that bound (9 and 12 of 15 by
    # the peer port in two runs of make test, each passing alone): there the
    # peer port must carry most of them; the release build checks the few.
    steps = rep["steps"]
    least = (N - 1) // 2 if os.environ.get("PGT_VARIANT") == "asan" else N - 3
    assert steps["acks_peer"] + steps["acks_database"] == N - 1 and steps["acks_peer"] >= least, rep
    released = [status(p)["fleet"]["last_hold"] for p in proxies if p is not proxies[3]]
    assert all(h and h["committed"] for h in released), released
    assert sum(h["released"] == "peer" for h in released) >= N - 4, released
