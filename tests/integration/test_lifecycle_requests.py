"""The migration's requests (start, complete, rollback) answered in every
phase, and the fence during a revert window, as an operator meets them
through the admin API of a proxy that runs the engine (--engine-db). Each
case was a fault once:

- A rollback of a step blocked by another session's lock: before, the
  request sat unanswered (the step stopped, the rollback's own statements
  waiting on the same lock) until the caller gave up; now it is answered at
  once, 202 naming the blocker, and the rollback goes on by itself.
- A rollback a few milliseconds after `start`: before, the expand was
  stopped before it recorded anything, the rollback found "no migration is
  in progress", the migration ended `failed` and every later rollback was
  refused; now it ends `rolled_back`, with nothing changed.
- A complete while the engine connection is stalled: before, it was refused
  after the connection's watchdog saying "0 sessions of the old release ...
  are still connected: ;"; now the refusal says the engine connection gave
  no answer, and comes within the cutover's own budgets. With no session
  of the old release the complete reads the state row again on the
  stalled connection: that refusal was 409, now 503 as for the first.
- A proxy whose lease runs out during a revert window (switched): before,
  it went on relaying unfenced (the fleet's own list of statuses in
  progress left switched out); now it fences itself as during active,
  since finalize or revert may run without it at any moment.

Each test works on a database of its own with the items table of
support/items.py.
"""
import subprocess
import time

import psycopg
import pytest

from support import (ANSWER, BIN, call, current, items_migration, post_in_background, Scrape, SHORT, start,
                     start_until_active, status, wait_for, wait_phase)
from tcp_forwarder import Forwarder
from test_conn_timeouts import engine_via_forwarder

WAIT = 20.0     # a state to be reached
DONE = 60.0     # a rollback or an expand to end


@pytest.fixture
def forwarder(cluster):
    f = Forwarder(cluster.host, cluster.port)
    yield f
    f.stop()


def lock_items(e, app="forgotten console"):
    """A session straight to Postgres that holds a lock on items in an open
    transaction: every DDL of the migration on items waits for it."""
    holder = psycopg.connect(e.uri, connect_timeout=10)
    holder.execute("SET application_name = '%s'" % app)
    holder.execute("LOCK TABLE items IN ACCESS SHARE MODE")  # psycopg opened a transaction: it stays open
    return holder


def timed(fn):
    t0 = time.time()
    out = fn()
    return out, time.time() - t0


def test_rollback_of_an_expand_blocked_by_a_lock_is_answered_at_once(env):
    e = env
    before = e.items_columns()
    holder = lock_items(e)
    pid = holder.info.backend_pid
    try:
        p = e.proxy()
        start(p, items_migration())
        wait_for(lambda: current(p).get("phase") == "expanding" and current(p).get("blocked_by"), WAIT,
                 "the expand to wait on the lock", detail=p.log_tail)
        (code, ans), took = timed(lambda: call(p, "POST", "/migrations/current/rollback", timeout=SHORT))
        print("rollback of the blocked expand answered %d after %.2f s: %s" % (code, took, ans))
        assert code == 202, (code, ans, p.log_tail())
        assert ans["blocked_by"][0]["pid"] == pid and ans["blocked_by"][0]["application_name"] == "forgotten console"
        assert "pid %d" % pid in ans["message"] and "forgotten console" in ans["message"], ans
        # the rollback goes on by itself: once the blocker lets go, it ends
        wait_for(lambda: current(p).get("phase") == "rolling_back", WAIT, "the rollback to run", detail=p.log_tail)
        code, again = call(p, "POST", "/migrations/current/rollback", timeout=SHORT)
        assert code == 409 and "already rolling back" in again["error"], (code, again)
        holder.rollback()
        cur = wait_phase(p, ("rolled_back", "failed"), DONE, what="the rollback")
        assert cur["phase"] == "rolled_back", cur
    finally:
        holder.close()
    assert e.items_columns() == before
    assert e.state_row()[0] == "rolled_back"


def test_rollback_whose_own_step_blocks_is_answered_once_it_waits(env):
    """From active, the rollback's first statement is what meets the lock:
    the request is answered 202 as soon as the rollback is seen waiting."""
    e = env
    p = e.proxy()
    before = e.items_columns()
    start_until_active(p, items_migration())
    holder = lock_items(e, app="report job")
    pid = holder.info.backend_pid
    try:
        (code, ans), took = timed(lambda: call(p, "POST", "/migrations/current/rollback", timeout=SHORT + 5))
        print("rollback blocked on its own step answered %d after %.2f s" % (code, took))
        assert code == 202, (code, ans, p.log_tail())
        assert any(b["pid"] == pid and b["application_name"] == "report job" for b in ans["blocked_by"]), ans
        assert current(p)["phase"] == "rolling_back"
        holder.rollback()
        cur = wait_phase(p, ("rolled_back", "failed"), DONE, what="the rollback")
        assert cur["phase"] == "rolled_back", cur
    finally:
        holder.close()
    assert e.items_columns() == before


@pytest.mark.parametrize("delay_ms", [0, 14, 40])
def test_rollback_straight_after_start_rolls_back(env, delay_ms):
    """Rolled back, whatever moment of the expand the rollback meets (before
    the expand recorded anything, or during it), and again and again."""
    e = env
    before = e.items_columns()
    p = e.proxy()
    for attempt in range(3):
        start(p, items_migration())
        time.sleep(delay_ms / 1000.0)  # the moment under test, not a wait for a condition
        code, ans = call(p, "POST", "/migrations/current/rollback", timeout=DONE)
        assert code in (200, 202), (attempt, code, ans, p.log_tail())
        cur = wait_phase(p, ("rolled_back", "failed"), DONE, what="the rollback")
        assert cur["phase"] == "rolled_back", (attempt, cur, p.log_tail())
        assert e.items_columns() == before, attempt
        code, ans = call(p, "POST", "/migrations/current/rollback", timeout=SHORT)
        assert code == 409 and "already rolled back" in ans["error"], (attempt, code, ans)
    assert "no migration is in progress" not in p.log()
    # and the migration still runs to active afterwards
    start_until_active(p, items_migration())


def test_complete_with_the_engine_connection_stalled_names_the_connection(env, forwarder):
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    start_until_active(p, items_migration())
    # a session of the old release (no pgtandem.version) through the proxy
    old = psycopg.connect(p.uri(user="postgres", password="postgres", db=e.dbname), connect_timeout=10,
                          application_name="old-release-worker", autocommit=True)
    old.execute("SELECT count(*) FROM items")
    fw.freeze_flows()  # the engine's connection (and the fleet's) stop forwarding bytes
    t0 = time.time()
    complete = post_in_background(p, "/migrations/current/complete", timeout=60)
    try:
        # the complete asks Postgres what the old release's sessions last ran;
        # the session leaves meanwhile
        wait_for(lambda: current(p).get("phase") == "completing", WAIT, "the complete to begin", detail=p.log_tail)
    finally:
        old.close()
    code, ans = complete()
    took = time.time() - t0
    print("complete with the engine connection stalled: %d after %.1f s: %s" % (code, took, ans.get("error")))
    assert code == 503, (code, ans)
    assert "engine connection" in ans["error"] and "no answer" in ans["error"], ans
    assert "0 sessions" not in ans["error"], ans
    assert took < 20, "answered after %.1f s" % took
    cur = wait_phase(p, ("active",), WAIT, what="back to active")
    assert "engine connection" in (cur.get("error") or ""), cur
    fw.thaw_flows()


def test_complete_with_no_old_release_and_the_engine_connection_stalled_is_503(env, forwarder):
    """No session of the old release: the complete goes on to read the
    migration's state again, on the stalled connection. It cannot tell
    whether another proxy moved the migration: 503, as the operator's guide
    says of a complete that cannot ask the database (it was 409)."""
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    start_until_active(p, items_migration())
    fw.freeze_flows()
    t0 = time.time()
    code, ans = call(p, "POST", "/migrations/current/complete", timeout=60)
    took = time.time() - t0
    assert code == 503, (code, ans, p.log_tail())
    assert "engine connection" in ans["error"] and "no answer" in ans["error"], ans
    assert took < 20, "answered after %.1f s" % took
    wait_phase(p, ("active",), WAIT, what="back to active")
    fw.thaw_flows()


def test_lease_run_out_during_a_revert_window_fences_the_relay(env, forwarder):
    e, fw = env, forwarder
    p = engine_via_forwarder(e, fw)
    start_until_active(p, items_migration())
    code, rep = call(p, "POST", "/migrations/current/complete?revert_window_s=3600", timeout=ANSWER)
    assert code == 200 and rep["status"] == "switched", (code, rep)
    switched = time.time()

    def renewed_since_switched():
        age = Scrape(p.admin("GET", "/metrics", timeout=SHORT)[1]).get("pgtandem_fleet_lease_age_seconds")
        return age is not None and age < time.time() - switched
    # a heartbeat sent once the status was switched renewed the lease
    wait_for(renewed_since_switched, WAIT, "a heartbeat to renew the lease once switched", detail=p.log_tail)
    assert not status(p, timeout=5)["hold"]["fenced"]
    fw.freeze()  # nothing reaches the database: the lease is not renewed
    try:
        wait_for(lambda: status(p, timeout=5)["hold"]["fenced"], WAIT, "the relay to fence itself once its lease ran out",
                 detail=lambda: (status(p, timeout=5)["hold"], p.log_tail()))
        code, body = p.admin("GET", "/readyz", timeout=SHORT)
        assert code == 503 and "fenced" in str(body), (code, body)
    finally:
        fw.thaw()
    wait_for(lambda: not status(p, timeout=5)["hold"]["fenced"], WAIT, "the fence to lift once the database is back",
             detail=p.log_tail)
    assert current(p)["phase"] == "switched"


def test_migrate_rollback_through_the_proxy_follows_a_blocked_rollback_to_its_end(env):
    """`migrate rollback --proxy` takes the 202, says who blocks the
    rollback, and follows it until it has ended (exit 0)."""
    e = env
    before = e.items_columns()
    holder = lock_items(e)
    pid = holder.info.backend_pid
    try:
        p = e.proxy()
        start(p, items_migration())
        wait_for(lambda: current(p).get("phase") == "expanding" and current(p).get("blocked_by"), WAIT,
                 "the expand to wait on the lock", detail=p.log_tail)
        cli = subprocess.Popen([BIN, "migrate", "rollback", "--proxy", "http://127.0.0.1:%d" % p.admin_port],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: current(p).get("phase") == "rolling_back", WAIT, "the rollback to run",
                     detail=p.log_tail)
            assert cli.poll() is None, cli.communicate()  # it follows the rollback, which waits for the lock
            holder.rollback()
            out, err = cli.communicate(timeout=DONE)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, (out, err)
        assert "pid %d" % pid in err and "forgotten console" in err, err
        assert "migration rolled back" in out, out
    finally:
        holder.close()
    assert current(p)["phase"] == "rolled_back"
    assert e.items_columns() == before
