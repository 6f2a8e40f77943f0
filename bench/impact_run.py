"""The backfill-impact benchmark's measuring part (bench/impact.sh starts the
cluster): pgbench through a proxy started afresh for every case, each
transaction's latency from pgbench's log, before, during and after a
backfill of the bench migration (or one bare UPDATE of the same rows), with
the budget state the proxy reported while it ran.

pgbench runs in back-to-back chunks of CHUNK seconds (its log is written
only when it exits, and a backfill's length is not known in advance); each
chunk reconnects its clients, which the first second of a chunk shows.

The `fast` workload is a millisecond-fast app (FAST_CLIENTS clients at
FAST_RATE transactions per second in all, pgbench's select-only transaction):
what the budget's floor is for. In the `selfslow` case, from the first chunk
that begins SLOW_AFTER seconds into the backfill, SLOW_FRAC of its
transactions sleep 30 ms instead: an app slowing for reasons of its own, that
the backfill must not be held back for."""
import glob
import json
import os
import subprocess
import threading
import time

import psycopg

from benchlib import BENCH_MIGRATION, bench_database, EngineProxy, run_header

ROWS = int(os.environ["ROWS"])
BEFORE, AFTER = float(os.environ["SECONDS_BEFORE"]), float(os.environ["SECONDS_AFTER"])
WORKLOADS = os.environ["WORKLOADS"].split()
CASES = os.environ["CASES"].split()
CLIENTS, SCALE = int(os.environ["CLIENTS"]), int(os.environ["SCALE"])
BIN, WORK, TOP, OUT = os.environ["BIN"], os.environ["WORK"], os.environ["TOP"], os.environ["OUT"]
TOKEN = os.environ["PGTANDEM_ADMIN_TOKEN"]
CHUNK = 5
FAST_CLIENTS, FAST_RATE = int(os.environ.get("FAST_CLIENTS", "4")), int(os.environ.get("FAST_RATE", "800"))
SLOW_AFTER, SLOW_FRAC = float(os.environ.get("SLOW_AFTER", "5")), float(os.environ.get("SLOW_FRAC", "0.05"))
POLL_S = 0.2
GOAL_RATIO = 1.5  # the goal: p99 during <= 1.5 x the baseline with the default budget
UP = "claim = claim_text, config_json = aggregation::jsonb, counts_by_template_json = diagnostics::jsonb"
NEW_COLS = ("ALTER TABLE checks ADD COLUMN claim text, ADD COLUMN config_json jsonb,"
            " ADD COLUMN counts_by_template_json jsonb")
DB = bench_database()
SLOW_SCRIPT = os.path.join(WORK, "slow.sql")


def run(sql):
    with psycopg.connect(DB, autocommit=True) as c:
        c.execute(sql)


def load():
    return [round(x, 2) for x in os.getloadavg()]


def prepare():
    print("== loading %d rows of checks and pgbench at scale %d" % (ROWS, SCALE), flush=True)
    subprocess.run(["pgbench", "-i", "-q", "-s", str(SCALE), DB], check=True, capture_output=True)
    run("CREATE TABLE checks_src (id bigint, claim_text text, aggregation text, diagnostics text, env text,"
        " anon_token text, created_at timestamptz)")
    run("INSERT INTO checks_src SELECT g, 'claim number ' || g,"
        " json_build_object('model', 'gpt-5', 'k', g % 7, 'p_true', round((g % 100) / 100.0, 2))::text,"
        " CASE WHEN g % 10 = 0 THEN NULL ELSE json_build_object('template_a', g % 13, 'template_b', g % 5)::text END,"
        " CASE WHEN g % 3 = 0 THEN 'dev' ELSE 'prod' END, CASE WHEN g % 2 = 0 THEN md5(g::text) END,"
        " now() - (g || ' seconds')::interval FROM generate_series(1, " + str(ROWS) + ") g")
    with open(SLOW_SCRIPT, "w") as f:
        f.write("SELECT pg_sleep(0.03);\n")


def fresh_table():
    """The legacy table freshly written and vacuumed, no migration state: every
    case starts from the same physical state (as bench/backfill.sh does)."""
    run("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP SCHEMA IF EXISTS pgtandem_bench_unify CASCADE;"
        " DROP SCHEMA IF EXISTS pgtandem_bench_unify_old CASCADE; DROP TABLE IF EXISTS checks CASCADE")
    run("CREATE TABLE checks (id bigint PRIMARY KEY, claim_text text, aggregation text, diagnostics text,"
        " env text NOT NULL DEFAULT 'prod', anon_token text, created_at timestamptz NOT NULL DEFAULT now())")
    run("INSERT INTO checks SELECT * FROM checks_src ORDER BY id")
    run("CHECKPOINT")
    run("VACUUM (ANALYZE) checks")
    run("VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")
    run("CHECKPOINT")


def Proxy(tag):  # noqa: N802 - reads as the class it makes
    return EngineProxy(tag, WORK, BIN, DB, TOKEN)


class App(threading.Thread):
    """pgbench in back-to-back chunks until stopped; samples are (end time
    as epoch seconds, latency ms) from every chunk's transaction log."""

    def __init__(self, uri, workload, tag):
        super().__init__(daemon=True)
        self.uri, self.workload, self.tag = uri, workload, tag
        self.stopping, self.samples, self.failed, self.chunks = threading.Event(), [], 0, 0
        self.lock = threading.Lock()
        self.slow_asked, self.slow_since = False, None

    def run(self):
        while not self.stopping.is_set():
            self.chunks += 1
            prefix = os.path.join(WORK, "pgb-%s-%d" % (self.tag, self.chunks))
            cmd = ["pgbench", "-n", "-j", "2", "-T", str(CHUNK), "-l", "--log-prefix", prefix]
            if self.workload == "fast":
                cmd += ["-c", str(FAST_CLIENTS), "-R", str(FAST_RATE)]
                if self.slow_asked:
                    weight = round(100 * SLOW_FRAC)
                    cmd += ["-b", "select-only@%d" % (100 - weight), "-f", "%s@%d" % (SLOW_SCRIPT, weight)]
                    if self.slow_since is None:
                        self.slow_since = time.time()
                else:
                    cmd.append("-S")
            else:
                cmd += ["-c", str(CLIENTS)] + (["-S"] if self.workload == "select" else [])
            r = subprocess.run(cmd + [self.uri], capture_output=True, text=True)
            if r.returncode != 0:
                self.failed += 1
            rows = []
            for path in glob.glob(prefix + ".*"):
                with open(path) as f:
                    for line in f:
                        p = line.split()
                        # client_id transaction_no time script_no time_epoch time_us
                        if len(p) >= 6 and p[2] != "skipped":
                            rows.append((int(p[4]) + int(p[5]) / 1e6, int(p[2]) / 1000.0))
                os.unlink(path)
            with self.lock:
                self.samples.extend(rows)

    def stop(self):
        self.stopping.set()
        self.join()

    def window(self, t0, t1):
        with self.lock:
            return sorted(ms for t, ms in self.samples if t0 <= t < t1)


def pct(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else None


def stats(ms):
    return {"n": len(ms), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": ms[-1] if ms else None}


def per_second(app, t0, t1):
    out, t = [], t0
    while t < t1:
        s = stats(app.window(t, t + 1))
        s["t"] = round(t - t0, 0)
        out.append(s)
        t += 1
    return out


def wait_samples(app, until):
    """Until the app's log covers `until` (a chunk's log arrives when it ends)."""
    deadline = time.time() + CHUNK * 3 + 30
    while time.time() < deadline:
        with app.lock:
            if app.samples and max(t for t, _ in app.samples[-1000:]) >= until:
                return
        time.sleep(0.5)


def held_back(polls, t_slow):
    """Seconds after t_slow in which the budget held the backfill back, and
    the backfill's rows/s before and after t_slow (from its rows_done)."""
    after = [(t, b) for t, b in polls if t >= t_slow]
    before = [(t, b) for t, b in polls if t < t_slow]
    engaged = sum(min(POLL_S * 2, t1 - t0) for (t0, b0), (t1, _) in zip(after, after[1:])
                  if (b0.get("budget") or {}).get("engaged"))
    last = max((t for t, b in after if (b.get("budget") or {}).get("engaged")), default=None)

    def rate(ps):
        return ((ps[-1][1]["rows_done"] - ps[0][1]["rows_done"]) / (ps[-1][0] - ps[0][0])
                if len(ps) > 1 and ps[-1][0] > ps[0][0] else None)
    return {"slowed_at_s": None, "held_back_s": round(engaged, 1),
            "last_held_back_s_after_slowdown": round(last - t_slow, 1) if last is not None else None,
            "rows_per_sec_before_slowdown": rate(before), "rows_per_sec_after_slowdown": rate(after)}


def case(workload, name):
    fresh_table()
    if name == "update":
        run(NEW_COLS)
    proxy = Proxy("%s-%s" % (workload, name))
    res = {"workload": workload, "case": name, "load_before": load()}
    app = App(proxy.uri, workload, "%s-%s" % (workload, name))
    polls = []
    try:
        app.start()
        time.sleep(BEFORE)
        t_start = time.time()
        wait_samples(app, t_start - 1)
        base = stats(app.window(t_start - BEFORE + 1, t_start))  # the chunk's first second is a reconnect
        if name == "update":
            with psycopg.connect(DB, autocommit=True) as c:
                c.execute("UPDATE checks SET " + UP)
        else:
            with open(BENCH_MIGRATION) as f:
                code, body = proxy.api("POST", "/migrations", json.load(f))
            assert code == 202, (code, body)
            if name in ("unthrottled", "nofloor"):
                code, body = proxy.api("POST", "/migrations/current/throttle",
                                       {"app_p99_budget": 0} if name == "unthrottled" else {"app_p99_floor_ms": 0})
                assert code == 200, (code, body)
            elif name == "absolute":
                res["max_app_p99_ms"] = max(1, round(2 * base["p99_ms"]))
                code, body = proxy.api("POST", "/migrations/current/throttle",
                                       {"max_app_p99_ms": res["max_app_p99_ms"]})
                assert code == 200, (code, body)
            t_slow = None
            while True:
                code, cur = proxy.api("GET", "/migrations/current")
                assert code == 200, (code, cur)
                if cur.get("backfill"):
                    polls.append((time.time(), cur["backfill"]))
                if (name == "selfslow" and not app.slow_asked and cur.get("phase") == "backfilling"
                        and time.time() - t_start >= SLOW_AFTER):
                    app.slow_asked = True
                t_slow = app.slow_since
                if cur.get("backfill", {}).get("done") or cur.get("phase") not in ("validating", "expanding",
                                                                                     "backfilling"):
                    break
                time.sleep(POLL_S)
            assert cur["backfill"]["rows_done"] >= ROWS, cur
            if t_slow is not None:
                res["selfslow"] = held_back(polls, t_slow)
                res["selfslow"]["slowed_at_s"] = round(t_slow - t_start, 1)
        t_end = time.time()
        time.sleep(AFTER)
        wait_samples(app, t_end + AFTER - 1)
    finally:
        app.stop()
        log = proxy.log()
        proxy.stop()
    res["load_after"] = load()
    during = stats(app.window(t_start, t_end))
    after = stats(app.window(t_end, t_end + AFTER))
    secs = t_end - t_start
    res.update(baseline=base, during=during, after=after, seconds=secs, rows_per_sec=ROWS / secs,
               ratio_p99=during["p99_ms"] / base["p99_ms"] if during["n"] and base["n"] else None,
               pgbench_chunks=app.chunks, pgbench_failed_chunks=app.failed,
               per_second=per_second(app, t_start - BEFORE, t_end + AFTER))
    if polls:
        b = [p.get("budget") or {} for _, p in polls]
        last = b[-1]
        res["budget"] = {"kind": last.get("kind"), "ratio": last.get("ratio"),
                         "baseline_p99_ms": last.get("baseline_p99_ms"), "limit_ms": last.get("limit_ms"),
                         "polls": len(b), "engaged_polls": sum(1 for x in b if x.get("engaged")),
                         "starved_polls": sum(1 for x in b if x.get("starved")),
                         "engagements": last.get("engagements"),
                         "starved_rows_per_s": [x.get("starved_rows_per_s") for x in b if x.get("starved")][-1:],
                         "log_engaged": log.count("latency budget engaged"),
                         "log_starved": log.count("cannot keep the app within its latency budget")}
    print("%-6s %-11s base p99 %6.1f  during p99 %6.1f (%.2fx) max %7.1f  after p99 %6.1f  %6.1fs %8.0f rows/s"
          "  load %.2f -> %.2f%s" % (workload, name, base["p99_ms"], during["p99_ms"] or 0, res["ratio_p99"] or 0,
                                    during["max_ms"] or 0, after["p99_ms"] or 0, secs, res["rows_per_sec"],
                                    res["load_before"][0], res["load_after"][0],
                                    ("  budget %s engaged %d/%d starved %d" % (
                                        res["budget"]["kind"], res["budget"]["engaged_polls"], res["budget"]["polls"],
                                        res["budget"]["starved_polls"])) if polls else ""), flush=True)
    if res.get("selfslow"):
        print("       the app slowed %.1f s into the backfill: held back %.1f s after it (last %s s after), rows/s"
              " %s before, %s after" % (res["selfslow"]["slowed_at_s"], res["selfslow"]["held_back_s"],
                                        res["selfslow"]["last_held_back_s_after_slowdown"],
                                        fmt(res["selfslow"]["rows_per_sec_before_slowdown"], "%.0f"),
                                        fmt(res["selfslow"]["rows_per_sec_after_slowdown"], "%.0f")), flush=True)
    return res


def fmt(x, spec="%.1f"):
    return spec % x if x is not None else "-"


def write(results, uptime_before, uptime_after, show=False):
    summary = dict(run_header(DB), rows=ROWS, clients=CLIENTS, scale=SCALE, seconds_before=BEFORE,
                   seconds_after=AFTER, command=os.environ["COMMAND"], uptime_before=uptime_before,
                   uptime_after=uptime_after, cases=results)
    goal = {w: r["ratio_p99"] <= GOAL_RATIO for r in results for w in [r["workload"]] if r["case"] == "default"
            and r["ratio_p99"] is not None}
    summary["goal_default_p99_within_1.5x"] = goal
    with open(OUT + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    md = ["# What a backfill costs the app, %s" % summary["date"], "",
          "`%s`; %s; Postgres %s." % (summary["command"], summary["machine"], summary["postgres"]), "",
          "pgbench at %d clients (2 threads, scale %d; the `fast` workload's are below) through `pgtandem proxy` as the old release (no version "
          "declared), every transaction's latency from pgbench's log. %d rows of the seeds' `checks` shape, "
          "backfilled by `bench/bench_unify.json` (three columns written) through the proxy, or written by one "
          "bare `UPDATE checks SET %s` sent straight to Postgres. Baseline: the %g s before (the first second "
          "of pgbench's reconnect left out); after: %g s. Each case runs on a fresh table and a fresh proxy." % (
              CLIENTS, SCALE, ROWS, UP, BEFORE, AFTER), "",
          "The machine is shared: `uptime` before the run: `%s`; after: `%s`." % (uptime_before, uptime_after), "",
          "| workload | case | baseline p99 | p99 during | during / baseline | max during | p50 during | p99 after "
          "| duration | rows/s | budget (proxy's status) | load before → after |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        b = r.get("budget")
        if b:
            lim = b["limit_ms"].get("old") if isinstance(b.get("limit_ms"), dict) else b.get("limit_ms")
            base = b["baseline_p99_ms"].get("old") if isinstance(b.get("baseline_p99_ms"), dict) else None
            bud = "%s, its baseline %s ms, limit %s ms, engaged %d / %d polls, starved %d" % (
                b["kind"], fmt(base), fmt(lim), b["engaged_polls"], b["polls"], b["starved_polls"])
        else:
            bud = "-"
        label = r["case"] + (" (%d ms)" % r["max_app_p99_ms"] if r["case"] == "absolute" else "")
        md.append("| %s | %s | %s ms | %s ms | **%sx** | %s ms | %s ms | %s ms | %.1f s | %.0f | %s | %.2f → %.2f |" % (
            r["workload"], label, fmt(r["baseline"]["p99_ms"]), fmt(r["during"]["p99_ms"]),
            fmt(r["ratio_p99"], "%.2f"), fmt(r["during"]["max_ms"]), fmt(r["during"]["p50_ms"]),
            fmt(r["after"]["p99_ms"]), r["seconds"], r["rows_per_sec"], bud, r["load_before"][0],
            r["load_after"][0]))
    for r in results:
        ss = r.get("selfslow")
        if ss:
            md += ["", "%s, %s: the app's own slowdown (%g of its queries sleeping 30 ms) began %.1f s into the "
                   "backfill; the budget held the backfill back %.1f s after it, the last time %s s after it; the "
                   "backfill ran %s rows/s before it and %s rows/s after it." % (
                       r["workload"], r["case"], SLOW_FRAC, ss["slowed_at_s"], ss["held_back_s"],
                       fmt(ss["last_held_back_s_after_slowdown"]), fmt(ss["rows_per_sec_before_slowdown"], "%.0f"),
                       fmt(ss["rows_per_sec_after_slowdown"], "%.0f"))]
    if any(r["workload"] == "fast" for r in results):
        md += ["", "`fast`: a millisecond-fast app, %d pgbench clients at %d transactions per second in all, one "
               "SELECT by key per transaction (pgbench's select-only; in `selfslow` %g of its transactions sleep 30 ms "
               "from the first 5 s chunk of pgbench that begins %g s into the backfill). `nofloor`: the default budget with `app_p99_floor_ms` = 0 (the "
               "ratio alone)." % (FAST_CLIENTS, FAST_RATE, SLOW_FRAC, SLOW_AFTER)]
    md += ["", "Goal, p99 during the backfill <= %.1fx the baseline with the default budget: %s." % (
        GOAL_RATIO, ", ".join("%s %s" % (w, "met" if ok else "not met") for w, ok in goal.items()) or "not run"),
        "", "The budget column: what the proxy's status said while the backfill ran (`backfill.budget`: its kind, "
        "the baseline p99 the proxy measured itself, from message to ReadyForQuery, the limit it kept, the "
        "polls every 0.2 s in which it held the backfill back or was starved). Duration: from the request "
        "to the backfill's end, the expand included.",
        "", "Per-second p50 / p99 / max of every case are in the .json (`per_second`, t = 0 at the start of "
        "the baseline)."]
    with open(OUT + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    if show:
        print("\n".join(md))


def main():
    prepare()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results = []
    for w in WORKLOADS:
        for name in CASES:
            results.append(case(w, name))
            write(results, uptime_before, "(running)")
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    write(results, uptime_before, uptime_after, show=True)


if __name__ == "__main__":
    main()
