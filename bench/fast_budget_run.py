"""The measuring part of bench/fast_budget.sh (which starts the cluster): a
millisecond-fast app, one client doing a SELECT by id and an UPDATE of the
migrated table every TICK_MS through a proxy started afresh for every case,
beside the backfill of an `add_column` with `up` on ROWS rows. Cases
alternate (default, unthrottled, default, ...) so that both see the same
moments of a shared machine.

Per case: the backfill's rows/s (from the first status poll in the
`backfilling` phase to its end), the app's p99 before and during as the
client measures it (each statement, send to result) and as the proxy does
(its status' `budget.p99_ms`, a window of the last second, message to
ReadyForQuery), the limit the budget kept, and the polls (every POLL_S) in
which the budget held the backfill back: engaged, and over its limit."""
import json
import os
import random
import statistics
import subprocess
import threading
import time

import psycopg

from benchlib import bench_database, EngineProxy, run_header

ROWS, TICK_MS, ROUNDS = int(os.environ["ROWS"]), float(os.environ["TICK_MS"]), int(os.environ["ROUNDS"])
CASES = os.environ["CASES"].split()
BEFORE, AFTER = float(os.environ["SECONDS_BEFORE"]), float(os.environ["SECONDS_AFTER"])
BIN, WORK, OUT = os.environ["BIN"], os.environ["WORK"], os.environ["OUT"]
TOKEN = os.environ["PGTANDEM_ADMIN_TOKEN"]
POLL_S = 0.1
GOAL_RATIO = 0.5  # the default budget's backfill against the unthrottled one's
# the cases' live settings (default: none); short-N: unthrottled, batches of N ms
THROTTLES = {"unthrottled": {"app_p99_budget": 0}}
THROTTLES.update({n: {"app_p99_budget": 0, "target_ms": int(n[6:])} for n in CASES if n.startswith("short-")})
MIGRATION = {"name": "fast_v2", "parent": None, "operations": [
    {"add_column": {"table": "t", "up": "v * 2", "column": {"name": "v2", "type": "bigint"}}}]}
DB = bench_database()


def run(sql):
    with psycopg.connect(DB, autocommit=True) as c:
        c.execute(sql)


def load():
    return round(os.getloadavg()[0], 2)


def fresh_table():
    """Every case from the same physical state and no migration state."""
    run("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP TABLE IF EXISTS t CASCADE")
    for s in ("pgtandem_fast_v2", "pgtandem_fast_v2_old"):
        run("DROP SCHEMA IF EXISTS %s CASCADE" % s)
    run("CREATE TABLE t (id bigserial PRIMARY KEY, v int NOT NULL, body text NOT NULL)")
    run("INSERT INTO t (v, body) SELECT g, repeat('x', 40) FROM generate_series(1, %d) g" % ROWS)
    run("VACUUM ANALYZE t")
    run("CHECKPOINT")


def Proxy(tag):  # noqa: N802 - reads as the class it makes
    return EngineProxy(tag, WORK, BIN, DB, TOKEN)


class App(threading.Thread):
    """Every TICK_MS (a fixed schedule, not caught up when late): a SELECT by
    a random id, then an UPDATE of another; samples are (end time, kind, ms)."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.uri, self.stopping, self.samples, self.errors = uri, threading.Event(), [], []

    def run(self):
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                nxt = time.monotonic()
                while not self.stopping.is_set():
                    for kind, sql in (("select", "SELECT v, body FROM t WHERE id = %s"),
                                      ("update", "UPDATE t SET v = v + 1 WHERE id = %s")):
                        t0 = time.monotonic()
                        c.execute(sql, (random.randint(1, ROWS),))
                        self.samples.append((time.time(), kind, (time.monotonic() - t0) * 1000))
                    nxt += TICK_MS / 1000
                    now = time.monotonic()
                    if nxt > now:
                        time.sleep(nxt - now)
                    else:
                        nxt = now
        except psycopg.Error as e:
            self.errors.append(str(e))

    def window(self, t0, t1, kind=None):
        return sorted(ms for t, k, ms in list(self.samples) if t0 <= t < t1 and (kind is None or k == kind))


def p99(ms):
    return ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None


def old(d, key):
    v = (d or {}).get(key)
    return v.get("old") if isinstance(v, dict) else v


def case(name, rnd):
    fresh_table()
    proxy = Proxy("%s-%d" % (name, rnd))
    res = {"case": name, "round": rnd, "load_before": load()}
    app = App(proxy.uri)
    polls = []
    try:
        app.start()
        time.sleep(BEFORE)
        t_start = time.time()
        code, body = proxy.api("POST", "/migrations", MIGRATION)
        assert code == 202, (code, body)
        if name in THROTTLES:
            code, body = proxy.api("POST", "/migrations/current/throttle", THROTTLES[name])
            assert code == 200, (code, body)
        while True:
            code, cur = proxy.api("GET", "/migrations/current")
            assert code == 200, (code, cur)
            if cur.get("backfill"):
                polls.append((time.time(), cur.get("phase"), cur["backfill"]))
            if cur.get("backfill", {}).get("done") or cur.get("phase") not in ("validating", "expanding",
                                                                                 "backfilling"):
                break
            time.sleep(POLL_S)
        assert cur["backfill"]["rows_done"] >= ROWS, cur
        t_end = time.time()
        time.sleep(AFTER)
    finally:
        app.stopping.set()
        app.join()
        log = proxy.log()
        proxy.stop()
    assert not app.errors, app.errors
    res["load_after"] = load()
    filling = [(t, b) for t, ph, b in polls if ph == "backfilling" or b.get("done")]
    t_fill = filling[0][0] if filling else t_start
    secs = t_end - t_fill
    rows = ROWS - (filling[0][1].get("rows_done") or 0 if filling else 0)
    budgets = [b.get("budget") or {} for _, b in filling]
    windows = [old(x, "p99_ms") for x in budgets if old(x, "p99_ms")]
    limits = [old(x, "limit_ms") for x in budgets if old(x, "limit_ms")]
    before, during = app.window(t_start - BEFORE + 1, t_start), app.window(t_fill, t_end)
    res.update(seconds=round(secs, 2), rows_per_sec=round(rows / secs), total_seconds=round(t_end - t_start, 2),
               rows_per_sec_total=round(ROWS / (t_end - t_start)),
               client_p99_before_ms=p99(before), client_p99_during_ms=p99(during),
               client_update_p99_during_ms=p99(app.window(t_fill, t_end, "update")),
               client_select_p99_during_ms=p99(app.window(t_fill, t_end, "select")),
               client_statements_during=len(during),
               proxy_baseline_p99_ms=next((old(x, "baseline_p99_ms") for x in reversed(budgets)
                                           if old(x, "baseline_p99_ms")), None),
               proxy_limit_ms=limits[-1] if limits else None,
               proxy_window_p99_median_ms=statistics.median(windows) if windows else None,
               proxy_window_p99_max_ms=max(windows) if windows else None,
               proxy_windows_over_limit=sum(1 for x in budgets if old(x, "p99_ms") and old(x, "limit_ms")
                                            and old(x, "p99_ms") > old(x, "limit_ms")),
               polls=len(budgets), polls_engaged=sum(1 for x in budgets if x.get("engaged")),
               polls_over=sum(1 for x in budgets if x.get("state") == "over"),
               batch_caps=sorted({x.get("batch_cap") for x in budgets if x.get("batch_cap")}),
               pauses_ms=sorted({x.get("pause_ms") for x in budgets if x.get("pause_ms")}),
               log_engaged=log.count("latency budget engaged"), log_released=log.count("latency budget released"),
               trace=[[round(t - t_start, 2), ph, b.get("rows_done"), b.get("workers"), b.get("batch_rows"),
                       (b.get("budget") or {}).get("batch_cap"), (b.get("budget") or {}).get("pause_ms"),
                       (b.get("budget") or {}).get("state"), old(b.get("budget"), "p99_ms"),
                       (b.get("budget") or {}).get("measuring")] for t, ph, b in polls])
    print("%-11s r%d %6.0f rows/s (%5.2f s; from the request %6.0f rows/s)  client p99 %5.2f -> %6.2f ms  proxy base %s limit %s window p99 "
          "median %s max %s over-limit %d  held back %d/%d (over %d)  load %.2f -> %.2f" % (
              name, rnd, res["rows_per_sec"], secs, res["rows_per_sec_total"], res["client_p99_before_ms"], res["client_p99_during_ms"],
              fmt(res["proxy_baseline_p99_ms"]), fmt(res["proxy_limit_ms"]), fmt(res["proxy_window_p99_median_ms"]),
              fmt(res["proxy_window_p99_max_ms"]), res["proxy_windows_over_limit"], res["polls_engaged"],
              res["polls"], res["polls_over"], res["load_before"], res["load_after"]), flush=True)
    return res


def fmt(x, spec="%.2f"):
    return spec % x if x is not None else "-"


def mean(rs, key):
    v = [r[key] for r in rs if r.get(key) is not None]
    return sum(v) / len(v) if v else None


def write(results, uptime_before, uptime_after):
    by = {n: [r for r in results if r["case"] == n] for n in CASES}
    rate = {n: mean(rs, "rows_per_sec") for n, rs in by.items()}
    total = {n: mean(rs, "rows_per_sec_total") for n, rs in by.items()}

    def ratio_of(r):
        return r["default"] / r["unthrottled"] if r.get("default") and r.get("unthrottled") else None
    ratio, ratio_total = ratio_of(rate), ratio_of(total)
    summary = dict(run_header(DB), rows=ROWS, tick_ms=TICK_MS, rounds=ROUNDS, command=os.environ["COMMAND"],
                   uptime_before=uptime_before, uptime_after=uptime_after, rows_per_sec=rate,
                   ratio_default_to_unthrottled=ratio, rows_per_sec_from_request=total,
                   ratio_from_request=ratio_total, cases=results)
    with open(OUT + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    md = ["# The default latency budget against a millisecond-fast app, %s" % summary["date"], "",
          "`%s`; %s; Postgres %s." % (summary["command"], summary["machine"], summary["postgres"]), "",
          "One client through `pgtandem proxy` (the old release), every %g ms a `SELECT` by a random id and an "
          "`UPDATE` of another row of `t`, beside the backfill of `add_column v2 bigint, up: v * 2` on %d rows. "
          "Cases alternated, each on a fresh table and a fresh proxy. The machine is shared: `uptime` before: `%s`; "
          "after: `%s`." % (TICK_MS, ROWS, uptime_before, uptime_after), "",
          "| case | round | backfill rows/s (from the request) | client p99 before → during | proxy's baseline → limit | proxy's "
          "window p99 during, median / max (windows over the limit) | polls held back (over) | load before → after |",
          "|---|---:|---:|---|---|---|---|---|"]
    for r in results:
        md.append("| %s | %d | %d (%d) | %s → %s ms | %s → %s ms | %s / %s ms (%d) | %d / %d (%d) | %.2f → %.2f |" % (
            r["case"], r["round"], r["rows_per_sec"], r["rows_per_sec_total"], fmt(r["client_p99_before_ms"]), fmt(r["client_p99_during_ms"]),
            fmt(r["proxy_baseline_p99_ms"]), fmt(r["proxy_limit_ms"]), fmt(r["proxy_window_p99_median_ms"]),
            fmt(r["proxy_window_p99_max_ms"]), r["proxy_windows_over_limit"], r["polls_engaged"], r["polls"],
            r["polls_over"], r["load_before"], r["load_after"]))
    md += ["", "Mean rows/s: %s; default / unthrottled: **%s** (goal >= %.1f). From the request (the expand "
           "included): %s; **%s**." % (
               ", ".join("%s %s" % (n, fmt(v, "%.0f")) for n, v in rate.items()), fmt(ratio), GOAL_RATIO,
               ", ".join("%s %s" % (n, fmt(v, "%.0f")) for n, v in total.items()), fmt(ratio_total)),
        "", "Rows/s from the first status poll in the `backfilling` phase to the backfill's end (the budget's "
        "baseline measurement included). The proxy's window p99 is its status' `budget.p99_ms` (the old "
        "release's, over the last second), polled every %.1f s; held back: polls in which the budget was "
        "engaged (over: its state said over the limit). Once the budget tightens, its window starts afresh: a poll "
        "then shows the p99 of the queries since, so the windows over the limit are undercounted; the polls over "
        "count every decision over the limit until the next." % POLL_S]
    with open(OUT + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results = []
    for rnd in range(1, ROUNDS + 1):
        for name in CASES:
            results.append(case(name, rnd))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    write(results, uptime_before, uptime_after)


if __name__ == "__main__":
    main()
