"""How the engine inside the proxy recovers: Postgres restarted or down
under it, a backfill batch that fails, a proxy killed during the contract,
and a cutover that gives up rather than hold traffic behind a blocker; each
reproduced as an operator met it (issue 10: faults 1, 2, 3, 4 and "the
cutover never stalls traffic in vain").

Processes are really killed (SIGKILL) and Postgres is really restarted or
stopped. The tests that restart Postgres do it on a cluster of their own
(tests/pgcluster.sh, one per module), so the suite's shared cluster is never
disturbed; the others use the shared cluster.

Every wait is bounded: an admin request that is never answered fails its test
after a few seconds instead of hanging the suite.

Each test works on the items table of a database of its own, migrated by
one rename_column val -> val_int (support/items.py).
"""
import contextlib
import json
import re
import signal
import threading
import time

import psycopg

from support import (ANSWER, SANITIZER_MARKS, call, child_processes, current, items_migration, KeepAlive, login_through, MIGRATION,
                     run_pgtandem, SHORT, start, start_until_active, wait_for, wait_log, wait_phase)

BAD_ID = 1234          # the row whose `up` fails in the batch-failure tests


def sessions_summary(p):
    try:
        code, st = call(p, "GET", "/status", timeout=SHORT)
    except AssertionError as e:
        return "GET /status did not answer either: %s" % str(e).split("\n")[0]
    return json.dumps([{k: s.get(k) for k in ("id", "state", "user", "connected_s")} for s in st.get("sessions", [])])


def children(pid):
    """The child processes of pid for a failure message ("none" when none)."""
    return child_processes(pid) or "none"


# ---- fault 1: a Postgres restart while the engine connection is idle ------------------------

def test_postgres_restart_while_backfill_paused_new_clients_get_a_session(own_env):
    """Fault 1. A migration is backfilling through the proxy, paused by the
    operator, so the proxy's engine connection sits idle; Postgres restarts.
    New clients must get a working session through the proxy within a few
    seconds (today the first accepted socket reuses the descriptor libpq
    closed, whose libevent event is still registered, and is never read: the
    client waits in `startup` forever), GET /status answers, and the
    migration is not wedged: resumed, it reaches `active`."""
    e = own_env
    p = e.proxy()
    mig = items_migration(backfill={"batch_rows": 100, "min_rows": 100, "max_rows": 100, "max_rows_per_sec": 100})
    start(p, mig)
    wait_phase(p, ("backfilling",), 30, what="expand")
    code, ans = call(p, "POST", "/migrations/current/throttle", {"paused": True})
    assert code == 200, ans
    wait_for(lambda: current(p)["backfill"]["throttle"] == "paused by operator", 10, "the backfill to pause")

    e.cluster.restart()
    wait_log(p, "fleet: connection to the database lost", timeout=SHORT)  # the proxy has read the EOF

    for i in range(3):
        problem = login_through(p, e.dbname)
        assert problem is None, ("client %d after the Postgres restart: %s; sessions seen by GET /status: %s"
                                 % (i + 1, problem, sessions_summary(p)))
    code, st = call(p, "GET", "/status", timeout=SHORT)
    assert code == 200, st

    # the migration goes on: unpaused and unthrottled (and resubmitted, the
    # documented recovery, if the proxy reported the lost connection as a
    # failure) it reaches `active`
    cur = finish_backfill(p, mig, 40)
    assert cur["phase"] == "active", cur
    assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0


def finish_backfill(p, mig, timeout):
    """Lifts the operator pause and the rate limit of a backfill, resubmits
    the same migration once if it failed, and waits for `active`; returns
    the last GET /migrations/current."""
    deadline, resubmitted = time.time() + timeout, False
    while True:
        cur = current(p)
        settings = (cur.get("backfill") or {}).get("settings") or {}
        if cur.get("phase") == "active":
            return cur
        if cur.get("phase") == "backfilling" and (settings.get("paused") or settings.get("max_rows_per_sec")):
            code, ans = call(p, "POST", "/migrations/current/throttle", {"paused": False, "max_rows_per_sec": 0},
                             timeout=SHORT)
            assert code == 200, (code, ans)
        elif cur.get("phase") == "failed" and not resubmitted:
            assert cur.get("error"), cur
            start(p, mig)
            resubmitted = True
        elif cur.get("phase") == "failed":
            return cur
        if time.time() > deadline:
            raise AssertionError("the backfill did not finish after the Postgres restart within %.0f s: %s"
                                 % (timeout, json.dumps(cur)[:1500]))
        time.sleep(0.3)


def test_postgres_restart_while_engine_idle_migration_does_not_stay_expanding(own_env):
    """Fault 1, the other victim: the proxy's engine connection is idle (no
    migration yet), Postgres restarts, then POST /migrations starts one. The
    admin connection was opened before the restart, so the first descriptor
    allocated afterwards is the expand child's pipe: today it reuses the
    number libpq closed, its event is never delivered, the child is never
    reaped and the migration stays `expanding` for good."""
    e = own_env
    p = e.proxy()
    conn = KeepAlive(p)
    try:
        code, st = conn.request("GET", "/status")
        assert code == 200, st
        assert current(p, conn)["phase"] is None
        wait_for(lambda: e.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <>"
                                    " pg_backend_pid()", (e.dbname,)) >= 1, 10, "the proxy's engine connection")

        e.cluster.restart()
        wait_log(p, "fleet: connection to the database lost", timeout=SHORT)

        start(p, items_migration(), conn)
        try:
            cur = wait_phase(p, ("active", "failed", "idle"), 20, conn=conn, what="start after the Postgres restart")
        except AssertionError as ex:
            raise AssertionError("%s\nthe proxy's child processes: %s; state row: %s"
                                 % (str(ex).split("\nproxy log")[0], children(p.proc.pid), e.state_row()))
        assert cur["phase"] == "active", cur
        code, st = conn.request("GET", "/status", timeout=SHORT)
        assert code == 200, st
    finally:
        conn.close()
    assert "val_int" in e.items_columns()


# ---- fault 2: admin requests that are never answered ------------------------------------------

def test_complete_while_postgres_is_down_is_answered_then_completes(own_env):
    """Fault 2. The migration is active; Postgres is stopped, so the engine
    connection cannot be reopened. POST /migrations/current/complete must get
    an HTTP answer (5xx, a JSON error) within a bounded time (today it is
    never answered and the runner is left `failed`). Once Postgres is back,
    the migration can still be completed through the same proxy."""
    e = own_env
    p = e.proxy()
    start_until_active(p, items_migration())
    conn = KeepAlive(p)
    try:
        e.cluster.stop()
        wait_log(p, "fleet: connection to the database lost", timeout=SHORT)
        t0 = time.time()
        code, ans = conn.request("POST", "/migrations/current/complete?attempts=2&drain_timeout_ms=500",
                                 timeout=ANSWER)
        took = time.time() - t0
        assert 500 <= code < 600, (code, ans)
        assert isinstance(ans, dict) and ans.get("error"), ans
        print("complete with Postgres down: %d in %.1f s: %s" % (code, took, ans))
    finally:
        conn.close()
        e.cluster.start()

    code, ans = call(p, "POST", "/migrations/current/complete", timeout=30)
    assert code == 200 and ans.get("status") == "completed", (code, ans)
    assert "val" not in e.items_columns() and "val_int" in e.items_columns()


SLOW_FAIL_SQL = """
CREATE FUNCTION slow_int(v text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  IF v = 'bad' THEN PERFORM pg_sleep(3); END IF;
  RETURN v::integer;
END $$;
UPDATE items SET val = 'bad' WHERE id = %d;
""" % BAD_ID


def test_rollback_sent_while_a_batch_fails_is_answered_and_rolls_back(env):
    """Fault 2. POST /migrations/current/rollback arrives while a backfill
    batch is running and that batch then fails (its `up` errors on one row,
    after a pause so the request is surely in flight). The rollback must be
    answered and must undo the expand without restarting the proxy (today
    the request is never answered, and a second rollback is refused as
    "between steps")."""
    e = env
    e.cluster.psql(SLOW_FAIL_SQL, uri=e.uri)
    before = e.items_columns()
    p = e.proxy()
    start(p, items_migration(up="slow_int(val)", backfill={"batch_rows": 500, "min_rows": 500, "max_rows": 500}))
    wait_for(lambda: e.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event ="
                                " 'PgSleep'", (e.dbname,)) == 1, 30, "the failing batch to run")
    code, ans = call(p, "POST", "/migrations/current/rollback", timeout=ANSWER)
    if code != 200:
        # an honest refusal is an answer; the rollback must then work when asked again
        assert isinstance(ans, dict) and ans.get("error"), (code, ans)
        code, ans = call(p, "POST", "/migrations/current/rollback", timeout=ANSWER)
    assert code == 200, (code, ans)
    cur = wait_phase(p, ("rolled_back",), 10, what="rollback")
    assert e.items_columns() == before, e.items_columns()
    assert e.scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal") == 0
    assert cur["phase"] == "rolled_back"


# ---- fault 3: the engine advisory lock left behind after a failed batch ----------------------

def failed_batch(e):
    """Starts the migration through a proxy with one row whose `up` fails;
    returns the proxy once GET /migrations/current reports the failure."""
    e.sql("UPDATE items SET val = 'bad' WHERE id = %s", (BAD_ID,))
    p = e.proxy()
    start(p, items_migration(backfill={"batch_rows": 500, "min_rows": 500, "max_rows": 500}))
    cur = wait_phase(p, ("failed", "active"), 30, what="the failing backfill")
    assert cur["phase"] == "failed", cur
    return p, cur


def lock_holders(e):
    return e.sql("SELECT l.pid, a.application_name, a.state FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                 " WHERE l.locktype = 'advisory' AND l.objid = (7020637716434665572 & 4294967295)")


def test_resubmit_after_failed_batch_takes_the_engine_lock(env):
    """Fault 3. A batch fails on one row; the operator fixes the row and
    submits the migration again (POST /migrations). The new engine step
    must be able to take the engine advisory lock and the migration must
    reach `active` (today the proxy's own engine connection still holds the
    lock and the resubmission fails with "advisory lock ... is held")."""
    e = env
    p, cur = failed_batch(e)
    e.sql("UPDATE items SET val = %s WHERE id = %s", (str(BAD_ID), BAD_ID))
    start(p, items_migration(backfill={"batch_rows": 500, "min_rows": 500, "max_rows": 500}))
    cur = wait_phase(p, ("active", "failed"), 30, what="resubmitted migration")
    assert cur["phase"] == "active", "resubmission failed: %s (engine lock holders: %s)" % (
        cur.get("error"), lock_holders(e))
    assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0


def test_resume_with_db_after_failed_batch_takes_the_engine_lock(env):
    """Fault 3. Same failure; the operator fixes the row and runs
    `pgtandem migrate resume --db URI` directly. It must take the engine
    lock and finish the backfill (today: exit 1, "another pgtandem engine
    is working on this database (advisory lock ... is held)", the holder
    being the proxy's idle engine connection)."""
    e = env
    failed_batch(e)
    e.sql("UPDATE items SET val = %s WHERE id = %s", (str(BAD_ID), BAD_ID))
    r = run_pgtandem(["migrate", "resume", "--db", e.uri], timeout=60)
    assert r.returncode == 0, "resume exited %d: %s (engine lock holders: %s)" % (
        r.returncode, (r.stdout + r.stderr).strip()[-1500:], lock_holders(e))
    assert e.state_row()[0] == "active", e.state_row()
    assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0


def test_failed_batch_error_names_the_row_and_the_expression(env):
    """Fault 3, second half: the failed batch's error names the row (its key)
    and the expression that failed on it."""
    p, cur = failed_batch(env)
    err = cur.get("error") or ""
    assert str(BAD_ID) in err and "val::integer" in err, "error does not name the row/expression: %r" % err


def test_failed_batch_stays_failed_while_the_fleet_polls(env):
    """The state row still says `backfilling` after the proxy's own batch
    failed. The fleet's poll (every quarter lease) must not read that as
    news: the migration used to flip back to `backfilling`, run the failing
    batch again, and answer a resubmission with 409 in between."""
    p, cur = failed_batch(env)
    seen = set()
    deadline = time.time() + 3.0  # four heartbeats at the default 3 s lease
    while time.time() < deadline:
        now = current(p)
        seen.add(now["phase"])
        assert str(BAD_ID) in (now.get("error") or ""), now
        time.sleep(0.05)  # sampling: the phase is watched across the whole window
    assert seen == {"failed"}, seen

# ---- fault 4: a contract that commits after its coordinator died --------------------------------

def test_contract_does_not_outlive_a_killed_proxy_unnoticed(env):
    """Fault 4. `complete` with a long lock_timeout waits for the lock held
    by another session; the proxy is killed with SIGKILL and restarted; then
    the blocker lets go. Either the orphaned contract must not commit, or the
    restarted proxy must report the migration completed: GET
    /migrations/current must agree with the catalog (old column present or
    not) and with the state row, and the next complete/rollback must give a
    clear answer. Today the contract commits after its coordinator died and
    the restarted proxy keeps reporting `active`."""
    e = env
    a = e.proxy()
    start_until_active(a, items_migration())
    with complete_behind_a_blocker(e, a, "fault4-blocker") as (contract, let_go):
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)

        b = e.proxy()
        wait_phase(b, ("active", "completing", "completed", "failed"), 15, what="the restarted proxy's recovery")
        let_go()
    # the orphaned contract got its lock and went as far as it goes (committed or not)
    wait_for(lambda: e.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                                (contract,)) == 0, 15, "the orphaned contract to stop running")

    def consistent():
        cols = e.items_columns()
        dropped = "val" not in cols
        row = e.state_row()
        cur = current(b)
        ok = (cur.get("phase") == ("completed" if dropped else "active")
              and row is not None and (row[0] == "completed") == dropped)
        return (dropped, row, cur) if ok else None

    deadline = time.time() + 15
    while True:
        got = consistent()
        if got:
            break
        if time.time() > deadline:
            raise AssertionError("after the proxy was killed, the restarted proxy reports %r but the catalog has"
                                 " items columns %s and the state row says %r" % (
                                     current(b).get("phase"), e.items_columns(), e.state_row()))
        time.sleep(0.3)
    dropped, row, cur = got
    if dropped:
        for what in ("complete", "rollback"):
            code, ans = call(b, "POST", "/migrations/current/" + what)
            assert code == 409 and "complete" in json.dumps(ans), (what, code, ans)
    else:
        code, ans = call(b, "POST", "/migrations/current/complete", timeout=30)
        assert code == 200 and ans.get("status") == "completed", (code, ans)
        assert "val" not in e.items_columns()


def _ignore(fn, *args):
    try:
        fn(*args)
    except Exception:  # the proxy died under the request: expected
        pass


@contextlib.contextmanager
def complete_behind_a_blocker(e, proxy, app_name):
    """An admin `complete` through proxy that waits for its contract's lock:
    yields (the contract's pid, let_go). A statement still running holds its
    ACCESS SHARE lock: the cutover's look for blockers does not count it
    (young, not idle in a transaction), so the contract really waits for its
    lock (an idle-in-transaction holder would be named as a blocker before
    anyone is held). The request is sent from a thread, its answer ignored
    (it may be lost with the proxy); let_go() cancels the blocker, as
    leaving the block does."""
    blocker = psycopg.connect(e.uri, connect_timeout=10, application_name=app_name, autocommit=True)
    blocking = threading.Thread(target=_ignore, args=(
        blocker.execute, "SELECT pg_sleep(60) FROM (SELECT 1 FROM items LIMIT 1) s"), daemon=True)
    sender = threading.Thread(target=lambda: _ignore(proxy.admin, "POST", "/migrations/current/complete"
                              "?lock_timeout_ms=60000&drain_timeout_ms=2000&attempts=1&force=1", None, 90),
                              daemon=True)

    def let_go():
        e.scalar("SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                 (app_name,))
        blocking.join(15)
    try:
        blocking.start()
        wait_for(lambda: e.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                  " AND state = 'active'", (app_name,)) == 1, 15, "the blocker's lock")
        sender.start()
        contract = wait_for(lambda: e.scalar("SELECT min(pid) FROM pg_stat_activity WHERE datname = %s AND"
                                             " wait_event_type = 'Lock' HAVING count(*) = 1", (e.dbname,)), 15,
                            "the contract to wait for its lock")
        yield contract, let_go
    finally:
        let_go()
        if sender.is_alive():
            sender.join(15)
        blocker.close()


# ---- the cutover never stalls traffic in vain ------------------------------------------------

HOLD_S = 8.0
DRAIN_MS = 2000


def test_cutover_does_not_hold_traffic_while_a_blocker_holds_the_table(env):
    """"The cutover never stalls traffic in vain". One client through the
    proxy holds SELECT ... FOR UPDATE on the migrated table for 8 s; complete
    is asked with a 2 s drain timeout. Another client, doing SELECT 1 on an
    unrelated table in a loop, must not be held anywhere near the drain
    timeout while the blocker is there (before, each attempt held it for the
    full 2 s), and the answer or the status names who blocked (the blocker's
    backend pid or application_name). Both clients are of the new release,
    so that complete is not refused for them before any cutover.

    How long traffic was held is what the proxy reports for each attempt
    ("cutover attempt N held traffic for X ms"): every attempt stays below
    the drain timeout. The bystander's own latencies are compared with that:
    beyond what the proxy says it held, and beyond the worst latency the
    bystander saw before complete was asked (the machine's own noise), it
    was not delayed by as much as the drain timeout."""
    e = env
    p = e.proxy()
    start_until_active(p, items_migration())
    latencies, stop, errors = [], threading.Event(), []

    new_release = "-c pgtandem.version=%s" % MIGRATION

    def loop():
        try:
            with psycopg.connect(p.uri(user="postgres", password="postgres", db=e.dbname), autocommit=True,
                                 connect_timeout=10, application_name="fault-bystander", options=new_release) as c:
                while not stop.is_set():
                    t0 = time.monotonic()
                    c.execute("SELECT 1 FROM other WHERE id = 1").fetchall()
                    latencies.append(time.monotonic() - t0)
                    time.sleep(0.02)  # pacing: the bystander's statement rate
        except Exception as ex:
            errors.append(repr(ex))

    bystander = threading.Thread(target=loop, daemon=True)
    bystander.start()
    blocker = psycopg.connect(p.uri(user="postgres", password="postgres", db=e.dbname), connect_timeout=10,
                              application_name="fault-blocker", options=new_release)
    released = threading.Event()
    timer = None
    try:
        blocker.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE").fetchall()
        blocker_pid = e.scalar("SELECT pid FROM pg_stat_activity WHERE application_name = 'fault-blocker'")
        timer = threading.Timer(HOLD_S, lambda: (blocker.commit(), released.set()))
        timer.start()
        wait_for(lambda: len(latencies) >= 25, 30, "the bystander's first queries")
        before = len(latencies)
        baseline = max(latencies)
        answer, seen = [], []

        def complete():
            t0 = time.time()
            answer.append(call(p, "POST", "/migrations/current/complete?drain_timeout_ms=%d" % DRAIN_MS,
                               timeout=45))
            answer.append(time.time() - t0)

        asker = threading.Thread(target=complete, daemon=True)
        asker.start()
        while asker.is_alive():          # what the status says while complete waits
            seen.append(json.dumps(call(p, "GET", "/migrations/current", timeout=SHORT)[1]))
            st = call(p, "GET", "/status", timeout=SHORT)[1]
            st.pop("sessions", None)     # lists every session by name anyway
            seen.append(json.dumps(st))
            asker.join(0.5)
        assert len(answer) == 2, "POST complete: no answer within 45 s"
        (code, ans), took = answer
        seen.append(json.dumps(call(p, "GET", "/migrations/current", timeout=SHORT)[1]))
    finally:
        stop.set()
        bystander.join(15)
        if not released.is_set():
            if timer:
                timer.cancel()
            blocker.rollback()
        blocker.close()
    assert not errors, errors
    holds = [float(ms) for ms in re.findall(r"cutover attempt \d+ held traffic for ([\d.]+) ms", p.log())]
    worst = max(latencies[before:])
    print("complete: %d in %.1f s: %s; proxy holds (ms): %s; bystander: %d queries, max %.3f s (before"
          " complete: max %.3f s)" % (code, took, ans, holds, len(latencies), worst, baseline))
    assert holds, "no cutover attempt was made: complete answered %d: %s" % (code, json.dumps(ans)[:600])
    assert max(holds) < DRAIN_MS, ("an attempt held traffic %.0f ms, the whole drain timeout (%d ms), while the"
                                   " blocker held its row lock: %s" % (max(holds), DRAIN_MS, holds))
    unexplained = worst - max(holds) / 1000.0 - baseline
    assert unexplained < DRAIN_MS / 1000.0, (
        "an unrelated client waited %.2f s: %.2f s more than the longest hold the proxy reports (%.0f ms) and"
        " its own worst latency before complete (%.2f s); drain timeout %.1f s; complete answered %d after"
        " %.1f s: %s" % (worst, unexplained, max(holds), baseline, DRAIN_MS / 1000.0, code, took,
                         json.dumps(ans)[:600]))
    # who blocked: in the answer, or in the status while complete waited
    said = json.dumps(ans) + "".join(seen)
    assert re.search(r"(?<![\d.])%d(?![\d.])" % blocker_pid, said) or "fault-blocker" in said, \
        "neither the answer nor the status names the blocker (pid %s): %s" % (blocker_pid, said[-1500:])


def test_resubmit_while_a_client_transaction_is_open_moves_no_phase_twice(env):
    """Issue 44, fault 1. The batch failed on a bad row; the row is fixed;
    the same migration is POSTed again while a client transaction is open
    through the proxy, so the drain before expand waits for it while the
    fleet's poll goes on. The runner owns its phase meanwhile: no
    `BUG: forbidden phase move` (a PGT_DEBUG build aborted on it), and once
    the transaction ends the migration reaches `active` with every row."""
    e = env
    p, cur = failed_batch(e)
    e.sql("UPDATE items SET val = %s WHERE id = %s", (str(BAD_ID), BAD_ID))
    with psycopg.connect(p.uri(db=e.dbname), autocommit=False) as client:
        client.execute("SELECT 1").fetchone()   # a transaction left open
        start(p, items_migration(backfill={"batch_rows": 500, "min_rows": 500, "max_rows": 500}))
        wait_log(p, "sessions still inside transactions", timeout=15)   # the drain waited, polls went on
        client.rollback()
    cur = wait_phase(p, ("active", "failed"), 60, what="resubmitted migration")
    assert cur["phase"] == "active", cur
    assert "BUG" not in p.log(), p.log()[-3000:]
    assert e.scalar("SELECT count(*) FROM items WHERE val_int IS DISTINCT FROM val::integer") == 0


def test_proxy_stopped_while_a_complete_waits_exits_cleanly(env):
    """SIGTERM while an admin `complete` waits for its lock: the proxy exits
    with the request still open, and freeing it must not touch the runner
    after the runner is gone (the nemesis found a use after free at exit:
    the admin server closed the waiting request into a freed runner)."""
    e = env
    a = e.proxy()
    start_until_active(a, items_migration())
    with complete_behind_a_blocker(e, a, "stop-blocker"):
        a.proc.send_signal(signal.SIGTERM)
        a.proc.wait(timeout=30)
    log = a.log()
    assert not any(mark in log for mark in SANITIZER_MARKS), log[-4000:]
