"""`pgtandem migrate status` as an operator reads it (the human text, both
modes): the ETA while the backfill runs, "paused" instead of an ETA while it
is paused, who blocked the last cutover attempt, and a row count that stays
true when the table held more rows than its estimate (never above 100 %,
never 99.9 % once done)."""
import re
import signal

import psycopg

from support import (current, load_legacy, migrate, pmigrate, proxy_start, sql, throttle, unify, wait_for,
                     write_migration)

NAME = "0003_checks_unify"


def pstatus(proxy, *extra):
    r = pmigrate(proxy, "status", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def dstatus(db):
    r = migrate(db, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def backfill_line(text):
    lines = [s for s in text.splitlines() if s.startswith("backfill:")]
    assert len(lines) == 1, text
    return lines[0]


def load_underestimated(db, analyzed, more):
    """A table whose statistics count `analyzed` rows while it holds
    analyzed + more (autovacuum off, so they stay wrong)."""
    load_legacy(db, analyzed)
    sql(db, "ALTER TABLE checks SET (autovacuum_enabled = off); ANALYZE checks")
    sql(db, "SELECT legacy_fill_checks(%d)" % more)


def submit(proxy, path):
    with open(path) as f:
        code, body = proxy.admin("POST", "/migrations", f.read())
    assert code in (200, 202), body


def pause(proxy):
    throttle(proxy, paused=True)
    wait_for(lambda: current(proxy).get("backfill", {}).get("throttle") == "paused by operator", timeout=30,
             what="the backfill pauses")


def test_completed_shows_the_real_total_at_100_percent(db, proxy_factory):
    # the statistics say 1000 rows; the table holds 4000
    load_underestimated(db, 1000, 3000)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, write_migration(unify()))
    for text in (pstatus(proxy), dstatus(db)):
        line = backfill_line(text)
        assert "4000/4000 rows (100.0%)" in line, text
    c = pmigrate(proxy, "complete")
    assert c.returncode == 0, c.stdout + c.stderr + proxy.log()[-3000:]
    # a proxy started afterwards only follows the finished migration
    proxy.stop()
    follower = proxy_factory(extra_args=["--engine-db", db])
    wait_for(lambda: follower.admin("GET", "/migrations/current")[0] == 200, timeout=30,
             what="the restarted proxy finds the migration")
    for text in (pstatus(follower), dstatus(db)):
        line = backfill_line(text)
        assert "4000/4000 rows (100.0%)" in line, text
        assert "99.9" not in text and "/1000" not in text, text


def test_running_shows_eta_then_paused_instead(db, proxy_factory):
    load_legacy(db, 30000)
    sql(db, "ANALYZE checks")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    submit(proxy, write_migration(unify({"max_rows_per_sec": 2000, "batch_rows": 200, "max_rows": 500})))
    wait_for(lambda: current(proxy)["backfill"]["rows_done"] >= 2000, timeout=60, what="the backfill runs")
    line = backfill_line(pstatus(proxy))
    assert re.search(r"\d+/30000 rows \(\d+\.\d%\), \d+ rows/s, ETA \d", line), line
    pause(proxy)
    line = backfill_line(pstatus(proxy))
    assert "paused" in line and "ETA" not in line, line
    throttle(proxy, paused=False, max_rows_per_sec=0)
    wait_for(lambda: current(proxy)["phase"] == "active", timeout=120, what="the backfill ends")


def test_rows_past_the_estimate_are_not_a_percentage(db, proxy_factory):
    # 1000 rows when the backfill plans the table (it reads the statistics,
    # or samples a table they no longer describe), 19000 more inserted while
    # it runs, under a checkpoint without an end: paused past the estimate. Paused from its start until the
    # 19000 are in: at 500 rows/s the 1000 take 2 s, less than a slow
    # machine may take to insert the rest, and a backfill already done
    # never walks them.
    load_underestimated(db, 1000, 0)
    first = proxy_factory(extra_args=["--engine-db", db])
    submit(first, write_migration(unify({"max_rows_per_sec": 500, "batch_rows": 200, "max_rows": 500,
                                         "app_p99_budget": 0})))
    pause(first)
    wait_for(lambda: sql(db, "SELECT to_regclass('pgtandem.backfill_progress') IS NOT NULL")[0][0]
             and sql(db, "SELECT count(*) FROM pgtandem.backfill_progress WHERE NOT done")[0][0] == 1,
             timeout=60, what="the backfill's checkpoint")
    assert current(first)["backfill"]["rows_done"] < 1000, current(first)
    # A range made now ends at the largest key there was, so rows inserted
    # later are not walked; a checkpoint an earlier version made has no
    # end, and the proxy that takes the backfill over walks them
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    sql(db, "UPDATE pgtandem.backfill_progress SET range_hi = NULL")
    sql(db, "SELECT legacy_fill_checks(19000)")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    wait_for(lambda: current(proxy).get("following") is False and current(proxy)["phase"] == "backfilling",
             timeout=60, what="the backfill taken over", detail=lambda: current(proxy))
    throttle(proxy, paused=False)
    wait_for(lambda: current(proxy)["backfill"]["rows_done"] >= 2000, timeout=60, what="the backfill passes 1000")
    pause(proxy)
    for text in (pstatus(proxy), dstatus(db)):
        line = backfill_line(text)
        assert re.search(r"\d+ rows \(more than the 1000 estimated\)", line), text
        assert "%" not in line and "/1000" not in line, text
    throttle(proxy, paused=False, max_rows_per_sec=0)
    wait_for(lambda: current(proxy)["phase"] == "active", timeout=120, what="the backfill ends")
    assert "20000/20000 rows (100.0%)" in backfill_line(pstatus(proxy))


def test_blocked_cutover_names_its_blocker(db, proxy_factory):
    load_legacy(db, 2000)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, write_migration(unify()))
    # straight to Postgres, so force=1: a transaction that holds a lock on checks
    blocker = psycopg.connect(db, application_name="nightly_report")
    blocker.execute("SELECT count(*) FROM checks /* report query */")
    pid = blocker.info.backend_pid
    try:
        wait_for(lambda: sql(db, "SELECT now() - xact_start > interval '200 ms' FROM pg_stat_activity"
                                 " WHERE pid = %s", (pid,))[0][0], timeout=10, what="the blocker ages")
        code, body = proxy.admin("POST", "/migrations/current/complete?attempts=2&lock_timeout_ms=100&force=1")
        assert code == 409, body
        text = pstatus(proxy)
    finally:
        blocker.close()
    blocked = [s for s in text.splitlines() if s.startswith("blocked:")]
    assert blocked, text
    assert any("pid %d" % pid in s and "nightly_report" in s and "checks" in s for s in blocked), text
    assert any("report query" in s for s in blocked), text
    c = pmigrate(proxy, "complete")
    assert c.returncode == 0, c.stdout + c.stderr + proxy.log()[-3000:]
