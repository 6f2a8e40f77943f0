"""The steps that run after a contract commits (a drop_index's DROP INDEX
CONCURRENTLY, the rename of an index built under a temporary name) are
the migration's as much as its contract: losing one with its connection
or with the proxy must not leave the index behind for good. The nemesis
found it (a drop_index completed, its index still there): the step ran
once, on the engine's connection, and its loss was only logged.

Each test makes the step wait (DROP INDEX CONCURRENTLY waits for every
transaction that uses the table: a statement still running on it), cuts
the step's backend off as a fault would, lets the table go, and waits for
the index to go. Nothing here is timed: every wait is for a condition.
"""
import json
import signal
import threading

import psycopg

from support import KeepAlive, post_in_background, start_until_active, wait_for, wait_log, wait_phase
from support.migrations import migrate, write_migration

MIGRATION = "0001_drop_items_note_ix"
DROP_NOTE_INDEX = {"name": MIGRATION, "parent": None, "operations": [{"drop_index": {"name": "items_note_ix"}}]}


def _ignore(fn, *args):
    try:
        fn(*args)
    except (psycopg.Error, OSError):
        pass


class TableInUse:
    """A statement that runs on items until cancelled: a DROP INDEX
    CONCURRENTLY on items waits for it. A running statement, not an idle
    transaction, so the cutover's look for blockers lets the contract go."""

    def __init__(self, e):
        self.e = e
        self.app = "post-step-blocker"
        self.conn = psycopg.connect(e.uri, connect_timeout=10, application_name=self.app, autocommit=True)
        self.thread = threading.Thread(target=_ignore, args=(
            self.conn.execute, "SELECT pg_sleep(120) FROM (SELECT 1 FROM items LIMIT 1) s"), daemon=True)
        self.thread.start()
        wait_for(lambda: e.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                  " AND state = 'active'", (self.app,)) == 1, 15, "the statement on items")

    def release(self):
        self.e.scalar("SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                      (self.app,))
        self.thread.join(15)
        self.conn.close()


def drop_index_backend(e):
    """The backend running the post step's DROP INDEX CONCURRENTLY, once it waits."""
    return e.scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query ILIKE 'DROP INDEX CONCURRENTLY%%' AND wait_event_type = 'Lock'")


def index_exists(e):
    return e.scalar("SELECT to_regclass('items_note_ix') IS NOT NULL")


def setup_waiting_post_step(e, answer_lost=False):
    """The index, the migration active through a proxy, a statement on the
    table, complete sent: returns (proxy, blocker, complete's answer, the
    waiting step's backend). answer_lost: the proxy will be killed, and
    complete's answer is not waited for."""
    e.sql("CREATE INDEX items_note_ix ON items (note)")
    p = e.proxy()
    start_until_active(p, DROP_NOTE_INDEX)
    blocker = TableInUse(e)
    if answer_lost:
        answer = None
        threading.Thread(target=lambda: _ignore(p.admin, "POST", "/migrations/current/complete?force=1", None, 120),
                         daemon=True).start()
    else:
        answer = post_in_background(p, "/migrations/current/complete?force=1", timeout=120)
    pid = wait_for(lambda: drop_index_backend(e), 30, "the post step's DROP INDEX CONCURRENTLY to wait",
                   detail=lambda: p.log_tail())
    assert e.scalar("SELECT status FROM pgtandem.migrations WHERE name = %s", (MIGRATION,)) == "completed"
    return p, blocker, answer, pid


def test_post_step_lost_with_its_connection_runs_again(env):
    """The step's backend is terminated while it waits (a connection reset,
    a restarted pooler in between). complete still answers completed; once
    the table is free the index goes without anyone asking again. Before:
    the loss was logged as a failed validation and the index stayed."""
    e = env
    p, blocker, answer, pid = setup_waiting_post_step(e)
    try:
        assert e.scalar("SELECT pg_terminate_backend(%s)", (pid,))
        code, body = answer()
        assert code == 200 and body.get("status") == "completed", (code, body)
    finally:
        blocker.release()
    wait_for(lambda: not index_exists(e), 60, "the index to be dropped by the step run again",
             detail=lambda: p.log_tail())
    wait_for(lambda: e.scalar("SELECT post_done IS NULL FROM pgtandem.migrations WHERE name = %s", (MIGRATION,)),
             15, "the state row to record the steps done")
    # nothing else was dropped: the table and its key index stay
    assert e.scalar("SELECT count(*) FROM items") > 0
    assert e.scalar("SELECT to_regclass('items_pkey') IS NOT NULL")


def test_post_step_lost_with_a_killed_proxy_runs_on_the_next(env):
    """The proxy is killed (SIGKILL) while the step waits, and the step's
    backend goes with it (the connection cut). A proxy started afterwards
    reads the migration as completed with a step left, and runs it."""
    e = env
    p, blocker, _, pid = setup_waiting_post_step(e, answer_lost=True)
    try:
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(timeout=10)
        assert e.scalar("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(lambda: not e.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)), 15,
                 "the step's backend to end")
        assert index_exists(e)
        b = e.proxy()
        wait_log(b, "following it", timeout=15)
    finally:
        blocker.release()
    wait_for(lambda: not index_exists(e), 60, "the restarted proxy to run the step left",
             detail=lambda: b.log_tail())
    ka = KeepAlive(b)
    try:
        code, cur = ka.request("GET", "/migrations/current")
        assert code == 200 and cur["phase"] == "completed", (code, cur)
    finally:
        ka.close()


def test_next_migration_runs_the_step_left_first(env):
    """A step left (its backend terminated, the table still in use, so no
    retry can finish it yet) and the next migration is started once the
    table is free: the index is gone before the next migration's expand,
    and the next migration runs."""
    e = env
    p, blocker, answer, pid = setup_waiting_post_step(e)
    try:
        assert e.scalar("SELECT pg_terminate_backend(%s)", (pid,))
        code, body = answer()
        assert code == 200, (code, body)
    finally:
        blocker.release()
    nxt = {"name": "0002_items_flag", "parent": MIGRATION,
           "operations": [{"add_column": {"table": "items", "column": {"name": "flag", "type": "boolean",
                                                                        "nullable": True}}}]}
    start_until_active_or_retry(p, nxt)
    assert not index_exists(e)


def start_until_active_or_retry(p, mig):
    """A start refused with 409 while the step left runs is asked again."""
    last = {}

    def started():
        code, ans = p.admin("POST", "/migrations", json.dumps(mig), timeout=30)
        assert code in (202, 409), (code, ans)
        last["answer"] = ans
        return code == 202
    wait_for(started, 60, "the next migration to be accepted", interval=0.5,
             detail=lambda: "last refusal: %r\n%s" % (last.get("answer"), p.log_tail()))
    cur = wait_phase(p, ("active", "failed"), 60, what="the next start")
    assert cur["phase"] == "active", cur


def test_a_step_after_the_contract_that_fails_for_good_makes_complete_exit_non_zero(env, tmp_path):
    """A step after the contract that fails for a reason no later try
    removes (its index now backs a foreign key made meanwhile) is recorded
    and not run again, as before; `complete --db` says so and exits 1
    (it exited 0 with a log line, and the index stayed), while the
    contract stays committed and the migration completed."""
    e = env
    e.sql("CREATE UNIQUE INDEX items_val_ix ON items (val)")
    name = "0001_drop_items_val_ix"
    path = write_migration({"name": name, "parent": None, "operations": [{"drop_index": {"name": "items_val_ix"}}]},
                           str(tmp_path))
    r = migrate(e.uri, "start", path)
    assert r.returncode == 0, r.stdout + r.stderr
    e.sql("CREATE TABLE val_refs (val text REFERENCES items (val))")
    r = migrate(e.uri, "complete")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is complete but its step after the contract" in r.stderr and "not run again" in r.stderr, r.stderr
    assert "contract: committed" in r.stderr, r.stderr
    assert e.scalar("SELECT status FROM pgtandem.migrations WHERE name = %s", (name,)) == "completed"
    assert e.scalar("SELECT to_regclass('items_val_ix') IS NOT NULL")
    # nothing is left to run again: the state row holds no step left
    assert e.scalar("SELECT post_done IS NULL FROM pgtandem.migrations WHERE name = %s", (name,))
