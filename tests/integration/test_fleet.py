"""A fleet: three pgtandem proxies (real processes) in front of one database,
each with an engine connection, following one migration.

- a migration started through one proxy (or by the CLI with --db) is
  followed by the others: status, version routing, re-prepare at the cutover;
- `complete` through another proxy holds every proxy's traffic: psycopg 3
  (prepare_threshold=0), node-postgres named statements and pgbench -M
  prepared with pgtandem.version, spread over the three, see no error, and
  the ledger matches the table row by row;
- faults: kill -9 of a participant and of the coordinator mid-cutover, a
  proxy started after the migration began, a session that bypasses every
  proxy."""
import json
import os
import signal
import threading
import time

import psycopg
import pytest

from support import (active_fleet, assert_new_shape, check_data, CLIENTS, complete_in_background, current,
                     complete_migration, complete_via, db_uri, fleet_proxy, hold_open_transaction, live_members,
                     make_fleet, NAME, NEW_SCRIPT, node_after, node_client, assert_each_pgbench_clean, pgbench, pgbench_result,
                     result_columns, run_pgtandem, scalar, start_migration, status, throttle, UNIFY, upstream_params,
                     version_options, VSCHEMA, wait_fleet, wait_for, wait_new_release_writes, wait_phase)

# ---- following and the fleet-wide cutover ------------------------------------

def test_started_through_one_completed_through_another_under_load(cluster, proxy_factory, legacy_db):
    proxies = make_fleet(proxy_factory, cluster, legacy_db)
    start_migration(proxies[0])
    for p in proxies[1:]:
        wait_phase(p, "active")
        code, cur = p.admin("GET", "/migrations/current")
        assert cur["name"] == NAME and cur["following"] is True, cur

    # psycopg 3 prepared, both shapes, on every proxy
    conns = []
    for p in proxies:
        uri = db_uri(p, legacy_db)
        old = psycopg.connect(uri, prepare_threshold=0, autocommit=True)
        new = psycopg.connect(uri, prepare_threshold=0, autocommit=True, options=version_options())
        assert "claim_text" in result_columns(old.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        cols = result_columns(new.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        assert "claim" in cols and "claim_text" not in cols, (p.port, cols)
        conns += [old, new]
    nodes = [node_client(p, legacy_db) for p in proxies]
    benches = [pgbench(p, legacy_db, NEW_SCRIPT, 6, "prepared", version_options(), clients=CLIENTS // 4, jobs=2)
               for p in proxies]
    try:
        for p in proxies:
            wait_for(lambda p=p: status(p)["versions"].get(NAME, 0) >= CLIENTS // 4 + 2, 30.0, "versioned sessions on %d" % p.port)
        wait_new_release_writes(cluster, legacy_db, 100)  # the cutover comes under their traffic
        r, rep = complete_via(proxies[1], "--force")  # old-release sessions stay on purpose
        assert r.returncode == 0 and rep.get("status") == "completed", r.stdout + r.stderr + proxies[1].log()[-3000:]
        results = [pgbench_result(proc, path) for proc, path in benches]
        assert_each_pgbench_clean(proxies, results)
        for conn in conns:
            assert_new_shape(conn)
        for n in nodes:
            node_after(n)
    finally:
        for c in conns:
            c.close()
        for n in nodes:
            if n.poll() is None:
                n.kill()
    for p in proxies:
        wait_phase(p, "completed")
        assert status(p)["paused"] is False
    # every proxy took part: the participants logged the committed hold
    for p in (proxies[0], proxies[2]):
        assert "contract committed" in p.log(), p.log()[-3000:]
    check_data(cluster, legacy_db, sum(r["processed"] for r in results))


def test_a_complete_waits_for_the_engine_connection_another_statement_of_its_proxy_uses(cluster, proxy_factory,
                                                                                         legacy_db):
    """The engine connection a proxy's runner shares (a state read, a
    throttle save, the settings after a reconnect) is busy when a complete
    arrives: the complete waits for it, not `503 engine connection is busy`
    (seen once after a Neon compute's restart). Here the follower's save of
    a throttle waits on a row lock a session holds on the migration's state
    row; the complete through that follower waits with it, and completes
    once the lock goes."""
    proxies = quick_fleet(proxy_factory, cluster, legacy_db, 2)
    start_migration(proxies[0])
    for p in proxies:
        wait_phase(p, "active")
    # the follower: the second proxy, unless a machine stalled the first for
    # two leases (300 ms) mid-backfill and the second took the work over
    follower = next((p for p in proxies[::-1] if current(p).get("following")), None)
    assert follower is not None, [p.log()[-2000:] for p in proxies]
    locker = psycopg.connect(cluster.uri(db=legacy_db))
    done = None
    try:
        locker.execute("SELECT 1 FROM pgtandem.migrations WHERE name = %s FOR UPDATE", (NAME,))
        assert throttle(follower, max_rows_per_sec=4321)["backfill_here"] is False, follower.log()[-3000:]
        wait_for(lambda: scalar(cluster, legacy_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                " 'pgtandem engine' AND wait_event_type = 'Lock'") == "1", 20.0,
                 "the follower's throttle save waiting on the row lock")
        done = complete_in_background(follower)
        wait_for(lambda: done.poll() is not None or current(follower).get("phase") == "completing", 20.0,
                 "the complete under way")
        assert done.poll() is None, (done.communicate(), follower.log()[-3000:])
        locker.rollback()
        out, err = done.communicate(timeout=60)
        assert done.returncode == 0 and json.loads(out)["status"] == "completed", (out, err, follower.log()[-3000:])
    finally:
        locker.close()
        if done is not None and done.poll() is None:
            done.kill()
            done.communicate()
    for p in proxies:
        wait_phase(p, "completed")
    assert scalar(cluster, legacy_db, "SELECT throttle->>'max_rows_per_sec' FROM pgtandem.migrations WHERE name = %s"
                  % "'%s'" % NAME) == "4321"
    check_data(cluster, legacy_db, 0)


# ---- who runs the migration: the proxy it was started on, while it lives ----

def quick_fleet(proxy_factory, cluster, dbname, n):
    """n proxies on a 300 ms lease: each follower polls every 75 ms."""
    return wait_fleet([fleet_proxy(proxy_factory, cluster, dbname, lease_ms=300) for _ in range(n)])


def slowed_unify(batch_rows, max_rows_per_sec):
    """The seeds' migration with its backfill capped (20,000 rows)."""
    mig = json.load(open(UNIFY))
    mig["backfill"] = {"batch_rows": batch_rows, "max_rows_per_sec": max_rows_per_sec}
    return mig


def assert_run_by_the_first(proxies):
    """proxies[0] ran the migration to active; every other one followed."""
    for p in proxies:
        wait_phase(p, "active")
    _, cur = proxies[0].admin("GET", "/migrations/current")
    assert cur["following"] is False, (cur["following"], proxies[0].log()[-3000:])
    assert "took the engine lock" not in proxies[0].log(), proxies[0].log()[-3000:]
    for p in proxies[1:]:
        _, cur = p.admin("GET", "/migrations/current")
        assert cur["following"] is True and "this proxy continues" not in p.log(), (p.port, cur["following"],
                                                                                      p.log()[-3000:])


def test_the_proxy_that_backfilled_finishes_it(cluster, proxy_factory, legacy_db, tmp_path):
    """The engine lock passes from the last batch to the finish's
    validations without a gap: four followers that poll every 75 ms and
    have seen the backfill run for two leases would take a lock that is
    free for a moment and finish it themselves, and the proxy that
    backfilled would end up following its own migration."""
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(slowed_unify(500, 10000)))  # about 2 s: over two leases
    proxies = quick_fleet(proxy_factory, cluster, legacy_db, 5)
    start_migration(proxies[0], str(path))
    assert_run_by_the_first(proxies)


def test_the_proxy_that_expanded_backfills(cluster, proxy_factory, legacy_db):
    """The same at the expand's end: an expand held up for longer than two
    leases (a session outside the fleet holds the table for 1.5 s) ends
    with the engine lock free for a moment before this proxy's backfill
    takes it, and every follower polls right then (the status change's
    notification). The followers wait until the status is two leases old."""
    proxies = quick_fleet(proxy_factory, cluster, legacy_db, 5)
    blocker = psycopg.connect(cluster.uri(db=legacy_db))
    blocker.execute("LOCK TABLE checks IN ACCESS SHARE MODE")
    timer = threading.Timer(1.5, blocker.rollback)
    timer.start()
    try:
        start_migration(proxies[0])
    finally:
        timer.join()
        blocker.close()
    assert "waiting" in proxies[0].log() or "lock" in proxies[0].log(), proxies[0].log()[-3000:]
    assert_run_by_the_first(proxies)


def test_a_follower_takes_over_only_a_backfill_left_for_two_leases(cluster, proxy_factory, legacy_db):
    """The engine that backfills is killed; while its status keeps changing
    (a session stands in for an engine that is alive and between two
    steps) the follower leaves the free lock alone until the fleet has
    seen the killed proxy's lease run out, and takes the backfill over once
    the status has been left alone for two leases."""
    proxies = quick_fleet(proxy_factory, cluster, legacy_db, 2)
    code, body = proxies[0].admin("POST", "/migrations", json.dumps(slowed_unify(200, 2000)))  # about 10 s
    assert code == 202, body
    wait_for(lambda: int(scalar(cluster, legacy_db, "SELECT coalesce(sum(rows_done), 0) FROM pgtandem.backfill_progress"))
             > 0, 30, "the backfill under way")
    stop, touched = threading.Event(), threading.Event()

    def touch():
        with psycopg.connect(cluster.uri(db=legacy_db), autocommit=True) as conn:
            while True:
                conn.execute("UPDATE pgtandem.migrations SET updated_at = now() WHERE name = %s", (NAME,))
                touched.set()
                if stop.wait(0.05):
                    return

    toucher = threading.Thread(target=touch)
    toucher.start()
    try:
        assert touched.wait(30), "the status touched"  # from before the kill: never two leases old while it lasts
        os.kill(proxies[0].proc.pid, signal.SIGKILL)
        proxies[0].proc.wait()
        # the lock free for a lease at least: the follower polled it four times and more
        follower = "127.0.0.1:%d" % proxies[1].port
        wait_for(lambda: live_members(proxies[1]) == [follower], 30, "the killed proxy's lease run out")
        log = proxies[1].log()
        assert "this proxy continues" not in log, log[-3000:]
    finally:
        stop.set()
        toucher.join()
    wait_phase(proxies[1], "active", timeout=60)
    assert "no engine is backfilling; this proxy continues from the checkpoint" in proxies[1].log()
    _, cur = proxies[1].admin("GET", "/migrations/current")
    assert cur["following"] is False, cur


def test_cli_db_start_is_followed_and_cli_complete_goes_through_the_fleet(cluster, proxy_factory, legacy_db):
    proxies = make_fleet(proxy_factory, cluster, legacy_db)
    r = run_pgtandem(["migrate", "start", UNIFY, "--db", cluster.uri(db=legacy_db)])
    assert r.returncode == 0, r.stdout + r.stderr
    for p in proxies:
        wait_phase(p, "active")
    r = run_pgtandem(["migrate", "status", "--db", cluster.uri(db=legacy_db), "--json"])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert sorted(m["listen"] for m in st["fleet"]) == sorted("127.0.0.1:%d" % p.port for p in proxies)
    conns = [psycopg.connect(db_uri(p, legacy_db), prepare_threshold=0, autocommit=True,
                             options=version_options()) for p in proxies]
    try:
        for c in conns:
            assert "claim" in result_columns(c.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        r = run_pgtandem(["migrate", "complete", "--db", cluster.uri(db=legacy_db)])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "completing through the one at" in r.stderr, r.stderr
        for c in conns:
            assert_new_shape(c)
    finally:
        for c in conns:
            c.close()
    for p in proxies:
        wait_phase(p, "completed")


@pytest.mark.parametrize("upstream", upstream_params(), indirect=True)
def test_proxy_started_after_the_migration_began_joins_it(cluster, proxy_factory, legacy_db, upstream):
    first = fleet_proxy(proxy_factory, cluster, legacy_db, upstream=upstream)
    start_migration(first)
    late = fleet_proxy(proxy_factory, cluster, legacy_db, upstream=upstream)
    wait_phase(late, "active")
    with psycopg.connect(db_uri(late, legacy_db), prepare_threshold=0, autocommit=True,
                         options=version_options()) as new, \
            psycopg.connect(db_uri(late, legacy_db), prepare_threshold=0, autocommit=True) as old:
        assert new.execute("SHOW search_path").fetchone()[0].split(",")[0].strip().strip('"') == VSCHEMA
        assert "claim_text" in result_columns(old.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        assert "claim" in result_columns(new.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        wait_for(lambda: len(live_members(first)) == 2, 30.0, "both in the fleet")
        complete_migration(first, force=True)  # the old session stays on purpose
        assert_new_shape(new)
        assert_new_shape(old)
    wait_phase(late, "completed")


# ---- faults ----------------------------------------------------------------------

def test_kill_participant_mid_cutover(cluster, proxy_factory, legacy_db):
    proxies = active_fleet(proxy_factory, cluster, legacy_db)
    stuck = hold_open_transaction(proxies[2], legacy_db)
    with psycopg.connect(db_uri(proxies[0], legacy_db), prepare_threshold=0, autocommit=True,
                         options=version_options()) as watcher:
        complete = complete_in_background(proxies[1])
        # the coordinator holds everyone but proxy 2, which cannot drain
        wait_for(lambda: status(proxies[0])["paused"], 10, "proxy 0 held")
        os.kill(proxies[2].proc.pid, signal.SIGKILL)
        proxies[2].proc.wait()
        t0 = time.time()
        out, err = complete.communicate(timeout=120)
        rep = json.loads(out)
        # once proxy 2's lease ran out (within the drain timeout, or an
        # attempt later) the contract ran with the live proxies held
        assert complete.returncode == 0 and rep["status"] == "completed", out + err + proxies[1].log()[-4000:]
        # and nobody was held past the drain timeout (2000 ms) by the dead
        # one, give or take the fleet's answer, which travels through the
        # database and a heartbeat (lease/4); with both sanitizer and release
        # suites on two cores it took 3.35 s once. Held until the dead one's
        # lease ran out would be 3 s more, until the fence bound 6 s more.
        assert rep["max_pause_ms"] < 2000 + 1500, rep
        assert time.time() - t0 < 60
        assert_new_shape(watcher)
    stuck.close()
    for p in proxies[:2]:
        assert status(p)["paused"] is False
        wait_phase(p, "completed")


def test_kill_coordinator_mid_cutover(cluster, proxy_factory, legacy_db):
    proxies = active_fleet(proxy_factory, cluster, legacy_db)
    stuck = hold_open_transaction(proxies[0], legacy_db)
    complete = complete_in_background(proxies[1])
    try:
        # proxy 2 drains and acknowledges; proxy 0 cannot drain yet
        wait_for(lambda: status(proxies[2])["paused"], 10, "proxy 2 held")
        os.kill(proxies[1].proc.pid, signal.SIGKILL)
        proxies[1].proc.wait()
        complete.communicate(timeout=30)
        # nobody stays held: the participants give the hold up by themselves
        for p in (proxies[0], proxies[2]):
            wait_for(lambda p=p: status(p)["paused"] is False, 15, "proxy %d resumed" % p.port)
        with psycopg.connect(db_uri(proxies[2], legacy_db), autocommit=True) as c:
            assert c.execute("SELECT count(*) > 0 FROM checks").fetchone()[0]
        assert scalar(cluster, legacy_db, "SELECT status FROM pgtandem.migrations WHERE name = '%s'" % NAME) \
            == "active"
    finally:
        stuck.close()
        if complete.poll() is None:
            complete.kill()
    # the migration is still completable through a survivor
    with psycopg.connect(db_uri(proxies[0], legacy_db), prepare_threshold=0, autocommit=True,
                         options=version_options()) as new:
        assert "claim" in result_columns(new.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        complete_migration(proxies[2])
        assert_new_shape(new)


def test_session_bypassing_the_proxies_refuses_complete_unless_forced(cluster, proxy_factory, legacy_db):
    proxies = make_fleet(proxy_factory, cluster, legacy_db, n=2)
    start_migration(proxies[0])
    wait_phase(proxies[1], "active")
    direct = psycopg.connect(cluster.uri(db=legacy_db), autocommit=True)
    try:
        pid = direct.execute("SELECT pg_backend_pid()").fetchone()[0]
        direct.execute("SELECT count(*) FROM checks")  # touched a migrated table, now idle
        wait_for(lambda: pid in [b["pid"] for b in status(proxies[1])["fleet"]["bypassing"]], 30.0, "bypassing session in status")
        r, rep = complete_via(proxies[1])
        assert r.returncode == 1, r.stdout + r.stderr
        assert "refused" in r.stdout + r.stderr and "pid %d" % pid in r.stdout + r.stderr, r.stdout + r.stderr
        assert scalar(cluster, legacy_db, "SELECT status FROM pgtandem.migrations") == "active"
        for p in proxies:
            assert status(p)["paused"] is False
        # a transaction through no proxy refuses it as well
        direct.execute("BEGIN")
        direct.execute("SELECT 1")
        r, rep = complete_via(proxies[0])
        assert r.returncode == 1 and "in a transaction" in r.stdout + r.stderr, r.stdout + r.stderr
        direct.execute("ROLLBACK")
        r, rep = complete_via(proxies[1], "--force")
        assert r.returncode == 0 and rep["status"] == "completed", r.stdout + r.stderr + proxies[1].log()[-3000:]
        assert "pid %d" % pid in rep.get("bypassing", ""), rep
    finally:
        direct.close()


def test_stopped_proxy_fences_itself_and_prepares_again_after_a_cutover_without_it(cluster, proxy_factory,
                                                                                    legacy_db):
    proxies = active_fleet(proxy_factory, cluster, legacy_db)
    with psycopg.connect(db_uri(proxies[2], legacy_db), prepare_threshold=0, autocommit=True,
                         options=version_options()) as new:
        cols = result_columns(new.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        assert "claim" in cols and "config_json" in cols, cols
        os.kill(proxies[2].proc.pid, signal.SIGSTOP)
        try:
            # the fleet waits for proxy 2 until its lease runs out; its
            # session then counts as bypassing the fleet (it touched the
            # table), so the cutover is refused unless forced
            r, rep = complete_via(proxies[1])
            assert r.returncode == 1 and "refused" in rep.get("error", ""), r.stdout + r.stderr
            r, rep = complete_via(proxies[1], "--force")
            assert r.returncode == 0 and rep["status"] == "completed", r.stdout + r.stderr
        finally:
            os.kill(proxies[2].proc.pid, signal.SIGCONT)
        # proxy 2 wakes up past its lease: its session waits at the boundary
        # until it has learnt of the contract and prepared its statements
        # again, so the prepared SELECT * sees the new table, not 0A000
        assert_new_shape(new)
    assert "statements prepared again" in proxies[2].log(), proxies[2].log()[-3000:]
    wait_phase(proxies[2], "completed")
