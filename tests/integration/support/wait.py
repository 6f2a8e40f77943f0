"""Waiting for a condition, never for time: wait_for(cond, timeout, what) and
the waits built on it (a port, a log line, a running statement), and a
sampler of a value's peak while a block runs, and a watch on a count that
must keep moving."""
import socket
import threading
import time
import uuid

import pytest

from .pg import kept_query

__all__ = ["poll", "wait_for", "wait_port", "wait_log", "tagged", "wait_statement", "running_statements",
           "PeakSampler", "ClientThreads", "Progress"]


def poll(cond, timeout, interval=0.05, give_up=None):
    """cond() until it returns something true, for at most `timeout`
    seconds, or until give_up() is true: cond()'s last value (false when it
    never came). What the waits below are made of; a harness that decides
    itself what a missed condition means (the nemesis) calls it directly."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline or (give_up is not None and give_up()):
            return v
        time.sleep(interval)


def wait_for(cond, timeout=10.0, what="condition", interval=0.05, detail=None, proc=None):
    """Polls cond() until it returns something true, for at most `timeout`
    seconds; returns that value, or fails the test naming `what` (and
    detail(), when given: what the test saw last). With `proc` (a Popen
    whose output is piped) it fails at once, with that output, when the
    process exits first: a client that died will not bring the condition.
    The way a test waits for something to happen (never a fixed sleep)."""
    v = poll(cond, timeout, interval, give_up=(lambda: proc.poll() is not None) if proc is not None else None)
    if v:
        return v
    if proc is not None and proc.poll() is not None:
        pytest.fail("waiting for %s: the process exited (%s): %s" % (what, proc.returncode, proc.communicate()[0]))
    pytest.fail("timed out after %.1f s waiting for %s%s" % (timeout, what, "\n" + str(detail()) if detail else ""))


class Progress:
    """A wait bounded by progress rather than by a guess of the machine's
    speed: moved(n) fails the test when the count n (rows a backfill walked,
    say) has not changed for `stall` seconds. A throttled backfill on a busy
    machine may take minutes and still be right; one that stopped is not."""

    def __init__(self, what, stall=20.0):
        self.what, self.stall = what, stall
        self.value, self.since = None, time.monotonic()

    def moved(self, n, detail=None):
        now = time.monotonic()
        if n != self.value:
            self.value, self.since = n, now
        elif now - self.since >= self.stall:
            pytest.fail("%s stopped at %r for %.1f s%s" % (self.what, n, self.stall,
                                                          "\n" + str(detail()) if detail else ""))


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def wait_log(proc, text, timeout=10.0, count=1):
    """Waits until the log of `proc` (a Proxy) has `text` at least `count`
    times; returns the log."""
    return wait_for(lambda: (lambda log: log if log.count(text) >= count else None)(proc.log()),
                    timeout, "%r in the log" % text)


def tagged(sql):
    """`sql` with a unique leading comment, so that wait_statement finds this
    statement and not one another test left running."""
    return "/* t%s */ %s" % (uuid.uuid4().hex[:12], sql)


def wait_statement(cluster, sql, timeout=10.0):
    """Waits until a backend of `cluster` is running exactly `sql` (see
    tagged), e.g. before cancelling it; returns its pid."""
    q = "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = %s LIMIT 1"

    def pid():
        rows = kept_query(cluster.super_uri, q, (sql,))
        return rows[0][0] if rows else None
    return int(wait_for(pid, timeout, "a backend running %r" % sql, interval=0.02))


def running_statements(super_uri, like, db=None):
    """pids of backends (other than ours) running a statement matching the
    LIKE pattern `like`, in database `db` when given."""
    q = ("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
         " AND query LIKE %s")
    args = [like]
    if db:
        q += " AND datname = %s"
        args.append(db)
    return [r[0] for r in kept_query(super_uri, q, args)]


class ClientThreads:
    """Client threads for the length of a `with` block: a subclass makes
    self.stop (an Event its threads loop until) and self.threads; entering
    starts them, leaving stops and joins them."""

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()
        return False


class PeakSampler:
    """Reads fn() in a thread, every `interval` seconds, until the `with`
    block ends; .peak is the largest value read, .values all of them. It waits on its stop
    event, not a sleep, so leaving the block ends it at once."""

    def __init__(self, fn, interval=0.05):
        self.fn, self.interval, self.peak, self.values = fn, interval, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        while True:
            v = self.fn()
            self.values.append(v)
            self.peak = max(self.peak, v)
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
