"""Every connection the proxy owns has a timeout story.

A TCP forwarder (tcp_forwarder.py) sits between the proxy's --engine-db and
Postgres and stops forwarding bytes without closing anything, as a
suspended compute, a NAT that dropped the flow or a frozen network path do.
Client traffic (--upstream) goes to Postgres directly.

- the flows freeze, new ones work: the proxy finds its connections dead
  within seconds (no answer to a statement), says so in the log and in
  GET /status, reconnects, and new clients are served;
- the whole path freezes: the same detection, and once the path is back the
  proxy reconnects by itself;
- a session holds the fleet's leases (pgtandem.fleet_leases): the lease's
  renewal gives up after its lock_timeout, the log names the blocked
  statement, and clients are held no longer than the lock. (A lock on
  pgtandem.proxies delays no renewal: test_fleet_heartbeat.py.)
"""
import json
import re
import threading
import time

import psycopg
import pytest

from support import (call, current, Env, items_migration, login_through, pg_error_fields,
                     pg_raw_session, pg_read_until, pg_simple_query, post_in_background, Proxy, start_until_active,
                     status, throwaway_cluster, wait_for, wait_phase)
from tcp_forwarder import Forwarder

DETECT = 8.0    # the watchdog (5 s) plus slack on a busy machine
SERVE = 12.0    # detection, reconnect, register, renew the lease


@pytest.fixture
def forwarder(cluster):
    f = Forwarder(cluster.host, cluster.port)
    yield f
    f.stop()


def engine_via_forwarder(e, fw):
    uri = e.uri.replace("@%s:%d/" % (e.cluster.host, e.cluster.port), "@127.0.0.1:%d/" % fw.port)
    assert uri != e.uri
    p = Proxy(e.cluster, extra_args=["--engine-db", uri, "--shutdown-timeout", "2"])
    e.proxies.append(p)
    return p


def registrations(p):
    return len(re.findall(r"fleet: registered as", p.log()))


def test_frozen_flows_are_dropped_and_new_clients_are_served(env, forwarder):
    """A migration is active (the fleet's lease fences the relay), and the
    flows of the engine and the fleet freeze. Before: nothing noticed for
    ~105 s, every new client waited, /status said connected. Now: the
    fleet's statement gets no answer within its watchdog, the connection is
    dropped with a WARN naming it and the statement, the proxy reconnects
    over a new flow, and a new client gets a session within seconds."""
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    start_until_active(p, items_migration())
    wait_for(lambda: registrations(p) >= 1, 10, "the fleet to register", detail=p.log_tail)

    # what a new client takes through this proxy while nothing is frozen
    t = time.time()
    assert login_through(p, e.dbname, timeout=SERVE) is None
    baseline = time.time() - t
    fw.freeze_flows()
    t0, worst = time.time(), 0.0
    while time.time() < t0 + DETECT + 2:  # past the lease, the watchdog and the reconnect
        t = time.time()
        problem = login_through(p, e.dbname, timeout=SERVE)
        took = time.time() - t
        assert problem is None, "%s after %.1f s\nproxy log:\n%s" % (problem, took, p.log()[-3000:])
        worst = max(worst, took)
        time.sleep(0.2)  # pacing: a new client every 0.2 s across the window
    print("frozen flows: the slowest new client waited %.1f s (%.1f s before the freeze)" % (worst, baseline))
    # no new client waits for the watchdog (5 s) to find the frozen connections dead
    assert worst - baseline < 5.0, (worst, baseline)
    log = p.log()
    assert re.search(r"WARN fleet connection: no answer to `.+` within \d+ ms", log), log[-3000:]
    wait_for(lambda: registrations(p) >= 2, SERVE, "the fleet to register again", detail=p.log_tail)
    st = status(p, timeout=5)
    assert st["fleet"]["connected"] is True, st["fleet"]
    assert "engine" in st and "connected" in st["engine"], st.get("engine")


def test_frozen_path_is_reported_and_reconnected_when_it_comes_back(env, forwarder):
    """Nothing moves on the path, new connections neither. /status must say
    the fleet is not connected and why within seconds (before: `connected:
    true` for minutes), clients without a migration in progress are not
    affected, and once the path is back the proxy reconnects by itself."""
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    wait_for(lambda: registrations(p) >= 1, 10, "the fleet to register", detail=p.log_tail)

    fw.freeze()
    t0 = time.time()
    wait_for(lambda: status(p, timeout=5)["fleet"]["connected"] is False,
             DETECT, "/status to say the fleet is not connected", detail=p.log_tail)
    detected = time.time() - t0
    assert "fleet connection: no answer" in p.log()
    assert login_through(p, e.dbname) is None

    fw.thaw()
    t1 = time.time()
    wait_for(lambda: status(p, timeout=5)["fleet"]["connected"] is True, SERVE, "the fleet to reconnect", detail=p.log_tail)
    print("detected in %.1f s, reconnected %.1f s after the path came back" % (detected, time.time() - t1))
    assert len(re.findall(r"fleet: connection to the database lost", p.log())) == 1, \
        "one WARN per outage, not per retry:\n" + p.log()[-3000:]


def test_locked_lease_rows_name_the_blocked_statement(env, cluster):
    """A session holds SELECT ... FOR UPDATE on pgtandem.fleet_leases. Before:
    the heartbeat waited silently behind it and clients were held 17.6 s.
    Now the renewal gives up after its lock_timeout, the log names the
    statement that was blocked, and clients are held no longer than the
    lock (plus a heartbeat)."""
    e = env
    p = e.proxy()
    start_until_active(p, items_migration())
    wait_for(lambda: registrations(p) >= 1, 10, "the fleet to register", detail=p.log_tail)
    held_for = 8.0
    locked = threading.Event()

    def hold():
        with psycopg.connect(e.uri, connect_timeout=10) as c:
            c.execute("SELECT * FROM pgtandem.fleet_leases FOR UPDATE")
            locked.set()
            time.sleep(held_for)  # the fault: the lock is held this long
            c.rollback()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(10)
        t0 = time.time()
        wait_for(lambda: re.search(r"lock timeout", p.log()),
                 DETECT, "the log to name the blocked heartbeat", detail=p.log_tail)
        named = time.time() - t0
        worst = 0.0
        while t.is_alive():
            t1 = time.time()
            problem = login_through(p, e.dbname, timeout=held_for + 6)
            assert problem is None, problem
            worst = max(worst, time.time() - t1)
            time.sleep(0.2)  # pacing: a new client every 0.2 s while the lock is held
        print("blocked statement named after %.1f s; slowest client %.1f s (lock held %.0f s)"
              % (named, worst, held_for))
        assert worst < held_for + 3, worst
        assert re.search(r"WARN fleet: .*lock timeout", p.log()), p.log()[-3000:]
    finally:
        t.join()


def test_every_backend_terminated_mid_backfill_like_a_neon_suspend(env):
    """Neon suspends an idle compute by terminating every session (57P01).
    During a throttled backfill through the proxy every backend of the
    database is terminated: the engine and the fleet reconnect by
    themselves (one WARN each per outage), the backfill continues from its
    checkpoint and completes with every row right, an idle client of the
    proxy hears Postgres's own FATAL 57P01, and a new client works."""
    e = env
    p = e.proxy()
    mig = items_migration(backfill={"batch_rows": 100, "min_rows": 100, "max_rows": 100,
                                    "max_rows_per_sec": 400})
    idle = pg_raw_session(p.port, database=e.dbname)
    try:
        code, ans = call(p, "POST", "/migrations", mig)
        assert code == 202, ans
        wait_for(lambda: (current(p).get("backfill") or {}).get("rows_done", 0) > 200,
                 30, "the backfill to be under way", detail=p.log_tail)
        killed = e.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                          " WHERE pid <> pg_backend_pid() AND datname = %s", (e.dbname,))
        assert killed >= 3, killed  # engine, fleet, the idle client

        msgs = pg_read_until(idle, types=(b"E",), timeout=10)
        t, payload = msgs[-1]
        assert t == b"E", msgs
        fields = pg_error_fields(payload)
        assert fields.get("C") == "57P01" and fields.get("S") == "FATAL", fields

        assert login_through(p, e.dbname) is None
        cur = wait_phase(p, ("active", "failed"), 60, what="the backfill after the termination")
        assert cur["phase"] == "active", cur
        assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0
        wait_for(lambda: status(p, timeout=5)["fleet"]["connected"] is True, SERVE, "the fleet to reconnect", detail=p.log_tail)
        # once more with the migration active and the engine connection idle:
        # it is opened again by itself, /status says so
        e.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                 " WHERE pid <> pg_backend_pid() AND datname = %s", (e.dbname,))
        wait_for(lambda: status(p, timeout=5)["engine"]["connected"] is False,
                 DETECT, "/status to see the engine connection gone", detail=p.log_tail)
        t0 = time.time()
        wait_for(lambda: status(p, timeout=5)["engine"]["connected"] is True,
                 DETECT, "the engine connection to come back", detail=p.log_tail)
        print("engine connection back %.1f s after it was seen gone" % (time.time() - t0))
        # the fleet's connection, lost in the same second, says so in its own
        # time (its socket read first, its line after): one line per outage
        wait_for(lambda: p.log().count("fleet: connection to the database lost") >= 2, DETECT,
                 "the fleet to report the second outage", detail=p.log_tail)
        log = p.log()
        assert log.count("fleet: connection to the database lost") == 2, log[-3000:]
        assert len(re.findall(r"migration \S+: backfill waiting for the database", log)) <= 1, log[-3000:]
    finally:
        idle.close()


# ---- connection slots ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small_cluster():
    """A cluster of this module's own with max_connections = 12, so that
    every slot can be taken."""
    with throwaway_cluster("pgtandem-slots-") as c:
        c.psql("ALTER SYSTEM SET max_connections = 12")
        c.restart()
        yield c


def test_start_without_a_free_connection_slot_is_refused_with_nothing_changed(small_cluster):
    """Every slot is taken (Neon's 0.25 CU direct endpoint: 104). Before:
    the start was accepted, its expand process could not connect
    (`remaining connection slots are reserved`) and the migration was left
    `failed`. Now the start is refused before anything changes (503, the
    free and needed slot counts), the catalog has no trace of it, and once a
    slot is free the same start goes through."""
    e = Env(small_cluster)
    fillers = []
    try:
        p = e.proxy()
        wait_for(lambda: registrations(p) >= 1, 10, "the fleet to register", detail=p.log_tail)
        wait_for(lambda: (status(p, timeout=5).get("engine") or {}).get("connected", True),
                 10, "the engine connection", detail=p.log_tail)
        while True:
            try:
                fillers.append(psycopg.connect(e.uri, autocommit=True, connect_timeout=5))
            except psycopg.OperationalError as err:
                assert "too many clients" in str(err) or "reserved" in str(err), err
                break
            assert len(fillers) < 20
        code, ans = call(p, "POST", "/migrations", items_migration())
        assert code == 503, (code, ans, p.log()[-2000:])
        assert "free connection slots" in ans["error"] and "needs 1" in ans["error"], ans
        assert current(p).get("phase") != "failed"
        row = fillers[0].execute("SELECT count(*) FROM pgtandem.migrations").fetchone()[0]
        assert row == 0, "the refused start left a row in pgtandem.migrations"

        # a closed connection's backend exits on its own time: the slot is
        # free once it has left pg_stat_activity
        freed = fillers.pop()
        pid = freed.info.backend_pid
        freed.close()
        wait_for(lambda: fillers[0].execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s",
                                            (pid,)).fetchone()[0],
                 10, "the closed connection's backend to exit", detail=p.log_tail)
        code, ans = call(p, "POST", "/migrations", items_migration())
        assert code == 202, (code, ans)
        cur = wait_phase(p, ("active", "failed"), 60, what="the start once a slot is free")
        assert cur["phase"] == "active", cur
    finally:
        for c in fillers:
            c.close()
        e.close()


def fill_free_slots(uri, fillers):
    """Takes every connection slot left; returns how many it took."""
    n = 0
    while True:
        try:
            fillers.append(psycopg.connect(uri, autocommit=True, connect_timeout=5))
            n += 1
        except psycopg.OperationalError as err:
            assert "too many clients" in str(err) or "reserved" in str(err), err
            return n
        assert n < 20


@pytest.mark.parametrize("step", ["complete", "rollback"])
def test_slots_filled_mid_migration_leave_the_next_step_its_slot(small_cluster, step):
    """Clients take every free slot after the start (a traffic spike on a
    small Neon compute). The proxy keeps one slot reserved for the
    migration's next step and gives it to the step's engine worker just
    before it connects, so the validations of `complete` (and a rollback)
    still run, instead of failing with `too many clients`."""
    e = Env(small_cluster)
    fillers = []
    try:
        p = e.proxy()
        wait_for(lambda: (status(p, timeout=5).get("engine") or {}).get("connected", True),
                 10, "the engine connection", detail=p.log_tail)
        code, ans = call(p, "POST", "/migrations", items_migration())
        assert code == 202, (code, ans)
        cur = wait_phase(p, ("active", "failed"), 60, what="the start")
        assert cur["phase"] == "active", cur
        # one watching connection, taken into the fillers: a connection per
        # poll left to the garbage collector held slots of this 12-slot
        # cluster, and the reserve found none free
        fillers.append(psycopg.connect(e.uri, autocommit=True, connect_timeout=5))
        wait_for(lambda: fillers[0].execute(
                     "SELECT count(*) > 0 FROM pg_stat_activity"
                     " WHERE application_name = 'pgtandem engine reserve'").fetchone()[0],
                 10, "the slot reserve", detail=p.log_tail)
        taken = fill_free_slots(e.uri, fillers)
        assert taken, "no slot was free to take"
        code, ans = call(p, "POST", "/migrations/current/" + step, timeout=120)
        assert code == 200, (code, ans, taken, p.log()[-3000:])
        want = "completed" if step == "complete" else "rolled_back"
        cur = wait_phase(p, (want, "failed"), 60, what="the " + step)
        assert cur["phase"] == want, (cur, p.log()[-3000:])
    finally:
        for c in fillers:
            c.close()
        e.close()


# ---- a step blocked on a lock says who blocks it ------------------------------------------

def test_blocked_expand_names_its_blocker_and_rollback_stops_it(env):
    """An idle-in-transaction session holds a lock on the table. Before: the
    expand sat in `expanding`, error null, for 115 s, and rollback answered
    409 "try again when that step has finished". Now /migrations/current and
    /status say who blocks it (pid, application_name, state) and the log
    does every few seconds; a rollback is accepted at once (202, naming the
    blocker): the expand is stopped, then rolled back, with the table as it
    was."""
    e = env
    p = e.proxy()
    before = e.items_columns()
    holder = psycopg.connect(e.uri, connect_timeout=10)
    try:
        holder.execute("SET application_name = 'forgotten console'")
        holder.execute("SELECT * FROM items LIMIT 1")  # AccessShareLock, idle in transaction
        holder_pid = holder.info.backend_pid
        code, ans = call(p, "POST", "/migrations", items_migration())
        assert code == 202, ans

        def blocked():
            cur = current(p)
            return cur.get("blocked_by") if cur.get("phase") == "expanding" else None
        t0 = time.time()
        who = wait_for(blocked, DETECT, "/migrations/current to name the blocker", detail=p.log_tail)
        print("blocker named after %.1f s: %s" % (time.time() - t0, json.dumps(who)[:300]))
        assert who[0]["pid"] == holder_pid, who
        assert who[0]["application_name"] == "forgotten console", who
        assert who[0]["state"] == "idle in transaction", who
        assert status(p, timeout=5)["engine"]["blocked_by"][0]["pid"] == holder_pid
        wait_for(lambda: re.search(r"waits for a lock held by pid %d \(application_name 'forgotten console', "
                                   r"idle in transaction" % holder_pid, p.log()),
                 DETECT, "the log to name the blocker", detail=p.log_tail)

        # the rollback is accepted at once (202, naming the blocker); its own
        # steps need the same lock, so it waits (saying so) until the
        # forgotten transaction ends
        t1 = time.time()
        code, ans = call(p, "POST", "/migrations/current/rollback", timeout=DETECT)
        assert code == 202 and ans["blocked_by"][0]["pid"] == holder_pid, (code, ans, p.log()[-3000:])
        wait_for(lambda: current(p).get("phase") == "rolling_back",
                 DETECT, "the rollback to stop the expand", detail=p.log_tail)
        print("rollback of the blocked expand under way after %.1f s" % (time.time() - t1))
        holder.rollback()
        cur = wait_phase(p, ("rolled_back", "failed"), 60, what="the rollback")
        assert cur["phase"] == "rolled_back", cur
        assert e.items_columns() == before
    finally:
        holder.close()


def test_complete_in_flight_when_the_flows_freeze_does_not_hold_traffic_for_long(env, forwarder):
    """A complete is in flight (its contract runs a 3 s statement, so the
    relay holds traffic meanwhile) when the engine's and the fleet's flows
    freeze. Before: traffic was held ~20 s and more, past the 2 s drain and
    the 5 s statement budget, until TCP gave up. Now the engine connection's
    watchdog during a cutover is the cutover's own budgets plus 2 s, the
    fleet's is 5 s: clients wait no longer than that, and the state row
    says how the complete ended."""
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    mig = items_migration()
    mig["operations"].append({"sql": {"up": "SELECT pg_sleep(3)", "on": "complete"}})
    start_until_active(p, mig)
    wait_for(lambda: registrations(p) >= 1, 10, "the fleet to register", detail=p.log_tail)
    client = pg_raw_session(p.port, database=e.dbname)
    # force: the raw client is of the old release and stays on purpose
    complete = post_in_background(p, "/migrations/current/complete?force=1", timeout=60)
    try:
        # named like pgtandem's own so the cutover does not count it as bypassing the proxy
        with psycopg.connect(e.uri, autocommit=True, application_name="pgtandem test probe") as probe:
            wait_for(lambda: probe.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3)%'"
                                           " AND pid <> pg_backend_pid()").fetchone()[0] > 0,
                     10, "the contract to run", detail=p.log_tail)
        fw.freeze_flows()
        t0, worst = time.time(), 0.0
        while time.time() < t0 + 14:
            t = time.time()
            rows, err = pg_simple_query(client, "SELECT 1", timeout=30)
            worst = max(worst, time.time() - t)
            time.sleep(0.1)  # pacing: a statement every 0.1 s across the window
        print("complete in flight, flows frozen: the slowest statement waited %.1f s" % worst)
        assert worst < 12.0, (worst, p.log()[-3000:])
        code, ans = complete()
        print("complete answered", code, json.dumps(ans)[:300])
        assert code in (200, 409, 500, 503), (code, ans)
        # whatever the answer, the proxy ends up agreeing with the state row
        row = e.state_row()
        wait_for(lambda: current(p).get("phase") == row[0],
                 15, "the proxy to agree with the state row %r" % (row,), detail=p.log_tail)
        # and the contract's transaction, cut off from the proxy, does not
        # stay idle on the server holding its locks over the table
        t1 = time.time()
        e.sql("SET lock_timeout = '15s'; SELECT count(*) FROM items")
        print("the table was free again %.1f s after the complete was answered" % (time.time() - t1))
    finally:
        client.close()
        complete.thread.join(60)
