"""The backfill's latency budget, on by default (app_p99_budget = 1.5):

- a synthetic slow app (clients through the proxy whose updates take a few
  milliseconds and wait on the rows a backfill batch holds: each reads a
  row the backfill has yet to write FOR SHARE) and a backfill allowed
  200 ms batches, under the default budget: the proxy measures the app's
  p99 without the backfill, the budget engages (status, /metrics and the
  log say so), the app's p99 measured by this test while the backfill
  runs stays within the budget of the baseline the proxy reported (with
  slack for the one window the budget needs to react), the backfill
  finishes, every row has new == up(old), and every write of the app is
  there;
- a budget the app cannot be kept within (an absolute limit under its own
  baseline): the backfill says it is starved, with the rate it gets, and
  goes on; widened live, it is released and finishes.

Shown to fail without the budget (the first test with app_p99_budget set to
0 once the baseline was measured, 2026-11-25): the app's p99 was 86.6 ms
against a baseline of 9.7 ms and the 34.1 ms the test allows. Before the
app read rows FOR SHARE it updated only its hot rows, which its own writes
(through the tandem triggers) had already carried, so the batches skipped
them and unthrottled its p99 stayed at its baseline (10.5 ms against
10.7 ms): the test could not fail."""
import json
import random
import threading
import time

import psycopg
import pytest

from support import (ClientThreads, dbname, engine_proxy, Progress, proxy_uri, Scrape, sql, throttle, wait_for,
                     wait_log)
from test_backfill_parallel import NAME, assert_new_equals_up_old, payload_migration

ROWS = 12000
CLIENTS = 4

TABLE_SQL = """
CREATE TABLE readings (id bigint PRIMARY KEY, payload text);
INSERT INTO readings SELECT g, json_build_object('v', g)::text FROM generate_series(1, %d) g;
ANALYZE readings;
CREATE FUNCTION slow_payload(id bigint, w int) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_sleep(0.004); SELECT json_build_object('v', id, 'w', w)::text $$;
-- the backfill's batches take 1 ms every 5 rows: a batch of hundreds
-- holds its rows (and the app's hot rows among them) for a while
CREATE FUNCTION slow_backfill() RETURNS trigger LANGUAGE plpgsql AS $$
 BEGIN IF NEW.id %% 5 = 0 THEN PERFORM pg_sleep(0.001); END IF; RETURN NEW; END $$;
CREATE TRIGGER zz_slow BEFORE UPDATE ON readings FOR EACH ROW
 WHEN (current_setting('pgtandem.backfill', true) = 'on') EXECUTE FUNCTION slow_backfill();
""" % ROWS
HOT = 100  # the app updates every HOT-th row: a batch of n rows holds n / HOT of them
# batches of about 200 ms (some 400 rows): unthrottled, 1 in 60 of the app's
# statements waits for one; the budget's batches of 50 rows hold for 10 ms
BIG_BATCHES = {"min_rows": 50, "target_ms": 200}


class SlowApp(ClientThreads):
    """CLIENTS sessions of the old release, each updating its own hot rows
    (every HOT-th, offset by its number), every statement timed by the
    test: a batch that holds one of them makes the app wait for it."""

    def __init__(self, uri):
        self.uri, self.stop, self.errors = uri, threading.Event(), []
        self.samples = []  # (end time, seconds)
        self.written = {}  # id -> the last w written
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]

    def run(self, k):
        rnd = random.Random(k)
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                w = 0
                while not self.stop.is_set():
                    w += 1
                    i = rnd.randrange(ROWS // HOT) * HOT + k + 1
                    if i > ROWS:
                        continue
                    # a row anywhere, read FOR SHARE: unlike the hot rows, which the
                    # app's own writes have already carried, the backfill still
                    # writes it, so the app waits whenever a batch holds it
                    j = rnd.randrange(ROWS) + 1
                    t0 = time.monotonic()
                    c.execute("WITH r AS (SELECT id FROM readings WHERE id = %s FOR SHARE)"
                              " UPDATE readings SET payload = slow_payload(%s, %s) WHERE id = %s"
                              " AND EXISTS (SELECT 1 FROM r)", (j, i, w, i))
                    t1 = time.monotonic()
                    with self.lock:
                        self.samples.append((t1, t1 - t0))
                        self.written[i] = w
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)


    def p99_ms(self, start, end):
        with self.lock:
            d = sorted(s for t, s in self.samples if start <= t <= end)
        assert len(d) >= 100, len(d)
        return d[min(len(d) - 1, int(0.99 * len(d)))] * 1000, len(d)

    def window_p99s_ms(self, start, end, width=1.0, min_n=50):
        """The p99 of each `width`-second window from start to end with at
        least min_n statements: what the budget measures and keeps."""
        with self.lock:
            samples = [(t, s) for t, s in self.samples if start <= t <= end]
        out, t = [], start
        while t < end:
            d = sorted(s for tt, s in samples if t <= tt < t + width)
            if len(d) >= min_n:
                out.append(d[min(len(d) - 1, int(0.99 * len(d)))] * 1000)
            t += width
        return out


def assert_app_writes_kept(db, app):
    """Every row the app wrote holds its last write, in both shapes (the
    tandem rule on top of the backfill)."""
    old = dict(sql(db, "SELECT id, payload FROM public.readings"))
    lost = [i for i, w in app.written.items() if json.loads(old[i]).get("w") != w]
    assert not lost, (len(lost), [(i, app.written[i], old[i]) for i in lost[:5]])
    touched = sum(1 for v in old.values() if "w" in json.loads(v))
    assert touched == len(app.written), (touched, len(app.written))


def scrape(proxy):
    code, text = proxy.admin("GET", "/metrics")
    assert code == 200, text
    return Scrape(text)


# serial: a judgement of latencies too; beside two other workers under
# AddressSanitizer the app's p99 over the backfill went past its bound in
# two full runs of five (61 ms against 52, 85 against 81) while the
# budget held the backfill back as it should
@pytest.mark.serial
def test_the_default_budget_keeps_a_slow_apps_p99_and_the_backfill_finishes(db, cluster, proxy_factory):
    sql(db, TABLE_SQL)
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    cur = lambda: proxy.admin("GET", "/migrations/current")[1]  # noqa: E731
    engaged, scrapes = [], []
    with SlowApp(proxy_uri(proxy, db)) as app:
        wait_for(lambda: len(app.samples) >= 300, 30, "the app's first queries")
        code, body = proxy.admin("POST", "/migrations", json.dumps(payload_migration(["readings"], BIG_BATCHES)))
        assert code == 202, body
        wait_for(lambda: cur().get("phase") == "backfilling" and cur()["backfill"]["budget"]["baseline_p99_ms"]["old"],
                 60, "the baseline", detail=proxy.log_tail)
        started = time.monotonic()
        budget = cur()["backfill"]["budget"]
        assert budget["kind"] == "ratio" and budget["ratio"] == 1.5, budget
        baseline = budget["baseline_p99_ms"]["old"]
        assert budget["baseline_p99_ms"]["new"] is None, budget  # no new-release traffic

        # the backfill finishes: it never stops walking rows. How long it
        # takes is the budget's choice on this machine (60 s was once not
        # enough, at 120 rows/s beside the other suite), not the test's
        walking = Progress("the backfill's rows done")

        def watch():
            c = cur()
            if c["backfill"]["budget"]["engaged"]:
                engaged.append(c)
                m = scrape(proxy) if not scrapes else None
                if m and m.get("pgtandem_migration_app_p99_seconds", migration=NAME, route="old"):
                    scrapes.append(m)
            walking.moved(c["backfill"]["rows_done"], detail=proxy.log_tail)
            return c["backfill"]["done"] or c["phase"] not in ("backfilling", "finishing")
        wait_for(watch, 600, "the backfill's end", interval=0.1, detail=proxy.log_tail)
        ended = time.monotonic()
        p99, n = app.p99_ms(started, ended)
        windows = app.window_p99s_ms(started, ended)
        assert not app.errors, app.errors
    wait_for(lambda: cur()["phase"] != "finishing", 30, "the validations", detail=proxy.log_tail)
    final = cur()
    assert final["phase"] == "active", final
    assert final["backfill"]["budget"]["engagements"] >= 1 and engaged, "the budget never held the backfill back"
    assert scrapes, "no /metrics while the budget held the backfill back and had a window"
    limit = max(baseline * 1.5, baseline + 1.0)
    # The budget keeps the p99 of each window (1 s) at its limit: it lets
    # the batches grow while a window is under it and cuts them when one
    # goes over, so a window now and then is over by a batch's hold before
    # the cut. The whole run's p99 is the windows' tails put together, and
    # with ~1% of each window's statements allowed past the limit it sits
    # on that edge (52 ms against 48 in one full run in three on 2 cores).
    # So the windows are judged: most keep the limit. Slack: the baseline
    # is one second's on a machine shared with other work, and the test's
    # clock includes the client's own time. A window's p99 is its 7 slowest
    # statements of ~700: under AddressSanitizer half the windows once had
    # them at 30-40 ms (a batch's hold there) against a limit of 8.2, with
    # the whole run's p99 at 7.4, within the limit. Unthrottled, every
    # window's p99 is a big batch's hold (140-400 ms here against a limit
    # of 12) and the whole run's 177 ms.
    median_window = sorted(windows)[len(windows) // 2] if windows else None
    assert windows and median_window <= limit * 3 + 10.0, (windows, p99, n, baseline, limit, ended - started)
    assert p99 <= limit * 4 + 10.0, (p99, n, windows, baseline, limit, ended - started)
    assert final["backfill"]["done"] and final["backfill"]["rows_done"] >= ROWS, final["backfill"]
    assert_new_equals_up_old(db, "readings", ROWS)
    assert_app_writes_kept(db, app)
    assert "the app's p99 without the backfill: old release" in proxy.log()
    assert "latency budget engaged: " in proxy.log(), proxy.log_tail()
    m, lbl = scrapes[0], {"migration": NAME, "route": "old"}
    assert m.get("pgtandem_migration_app_p99_baseline_seconds", **lbl) == round(baseline / 1000, 6), m.text
    assert m.get("pgtandem_migration_app_p99_budget_seconds", **lbl) > 0, m.text
    assert m.get("pgtandem_migration_app_p99_seconds", **lbl) > 0, m.text
    assert m.get("pgtandem_migration_budget_engaged", migration=NAME, kind="ratio") == 1, m.text
    print("app p99 %.1f ms over %d queries (windows' p99 %s; baseline %.1f, limit %.1f) in %.1f s; %d throttled polls"
          % (p99, n, " ".join("%.0f" % w for w in windows), baseline, limit, ended - started, len(engaged)))


def test_a_budget_the_app_cannot_keep_says_so_and_widening_it_live_releases_it(db, cluster, proxy_factory):
    sql(db, TABLE_SQL)
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    cur = lambda: proxy.admin("GET", "/migrations/current")[1]  # noqa: E731

    with SlowApp(proxy_uri(proxy, db)) as app:
        wait_for(lambda: len(app.samples) >= 100, 30, "the app's first queries")
        code, body = proxy.admin("POST", "/migrations", json.dumps(payload_migration(["readings"], {"min_rows": 50})))
        assert code == 202, body
        # 1 ms: under the app's own latency, whatever the backfill does
        throttle(proxy, max_app_p99_ms=1)
        wait_for(lambda: cur()["backfill"]["budget"]["starved"], 60, "the starved report", detail=proxy.log_tail)
        b = cur()["backfill"]
        assert b["budget"]["kind"] == "absolute" and b["budget"]["limit_ms"]["old"] == 1, b
        assert b["budget"]["starved_rows_per_s"] is not None and "rows/s" in b["throttle"], b
        assert b["workers"] == 1 and b["budget"]["batch_cap"] == 50, b
        wait_log(proxy, "cannot keep the app within its latency budget", 10)
        m = scrape(proxy)
        assert m.get("pgtandem_migration_budget_starved", migration=NAME) == 1, m.text
        assert m.get("pgtandem_migration_budget_engaged", migration=NAME, kind="absolute") == 1, m.text
        done = b["rows_done"]
        # widened live: back to a ratio of the baseline, a wide one
        throttle(proxy, max_app_p99_ms=0, app_p99_budget=10)
        wait_for(lambda: not cur()["backfill"]["budget"]["starved"], 10, "the starved report gone",
                 detail=proxy.log_tail)
        wait_for(lambda: cur()["backfill"]["done"], 60, "the backfill's end", detail=proxy.log_tail)
        assert not app.errors, app.errors
    wait_for(lambda: cur()["phase"] == "active", 30, "the migration active", detail=proxy.log_tail)
    b = cur()["backfill"]
    assert b["budget"]["kind"] == "ratio" and b["settings"]["app_p99_budget"] == 10, b
    assert b["rows_done"] > done
    assert "the app is within its latency budget again" in proxy.log(), proxy.log_tail()
    assert_new_equals_up_old(db, "readings", ROWS)
    assert_app_writes_kept(db, app)


class SelfSlowingApp(ClientThreads):
    """CLIENTS sessions of the old release whose queries take as long as
    the app_delay table says: the app slows by itself when the test raises
    it, whatever the backfill does (they touch no row it writes)."""

    def __init__(self, uri):
        self.uri, self.stop, self.errors = uri, threading.Event(), []
        self.count = 0
        self.threads = [threading.Thread(target=self.run) for _ in range(CLIENTS)]

    def run(self):
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                while not self.stop.is_set():
                    c.execute("SELECT pg_sleep((SELECT seconds FROM app_delay))")
                    self.count += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)


# serial: a judgement of latencies; beside two other workers under
# AddressSanitizer the app's 1 ms query measured 273 ms once, the budget
# (1.5 x that) let the backfill go before the app slowed, and the app,
# slowed to three times that, ended too few queries a window to judge
@pytest.mark.serial
def test_an_app_slow_by_itself_releases_the_budget_within_seconds(db, cluster, proxy_factory):
    """The app slows by itself mid-backfill (its queries go from 1 ms to
    30 ms, touching nothing the backfill writes): the budget engages, sees
    the app as slow in the pauses between batches, takes that as the
    baseline and lets the backfill go, in seconds rather than at the next
    baseline measurement a minute later. Failed before (2026-11-25): still
    held back 30 s after the app slowed."""
    sql(db, TABLE_SQL + "CREATE TABLE app_delay (seconds float8); INSERT INTO app_delay VALUES (0.001);")
    proxy = engine_proxy(proxy_factory, cluster, dbname(db))
    cur = lambda: proxy.admin("GET", "/migrations/current")[1]  # noqa: E731
    with SelfSlowingApp(proxy_uri(proxy, db)) as app:
        wait_for(lambda: app.count >= 200, 30, "the app's first queries")
        # slow enough to outlast the test: 12,000 rows at 200 rows/s
        code, body = proxy.admin("POST", "/migrations", json.dumps(payload_migration(
            ["readings"], {"min_rows": 20, "max_rows": 100, "max_rows_per_sec": 200})))
        assert code == 202, body
        wait_for(lambda: cur().get("phase") == "backfilling" and cur()["backfill"]["budget"]["baseline_p99_ms"]["old"],
                 60, "the baseline", detail=proxy.log_tail)
        baseline = cur()["backfill"]["budget"]["baseline_p99_ms"]["old"]
        # 30 ms, or three times a baseline a loaded machine made slow
        # already (54 ms once, when 30 ms stayed within its 1.5 x budget)
        sql(db, "UPDATE app_delay SET seconds = %s", (max(0.03, 3 * baseline / 1000.0),))
        slowed = time.monotonic()
        # ~10 s is the goal on a quiet machine; the bound leaves room for a
        # CPU hog, and is half the minute to the next baseline measurement
        wait_for(lambda: "it is slow by itself, so that is its baseline now" in proxy.log(), 30,
                 "the app taken as slow by itself", detail=proxy.log_tail)
        wait_for(lambda: not cur()["backfill"]["budget"]["engaged"], 30, "the budget released",
                 detail=proxy.log_tail)
        held_s = time.monotonic() - slowed
        b = cur()["backfill"]["budget"]
        assert b["baseline_p99_ms"]["old"] >= 25, (baseline, b)
        throttle(proxy, max_rows_per_sec=0)
        wait_for(lambda: cur()["backfill"]["done"], 120, "the backfill's end", detail=proxy.log_tail)
        assert not app.errors, app.errors
    print("baseline %.1f ms; held back %.1f s after the app slowed by itself" % (baseline, held_s))
    wait_for(lambda: cur()["phase"] == "active", 30, "the migration active", detail=proxy.log_tail)
    assert_new_equals_up_old(db, "readings", ROWS)
