#!/bin/sh
# Backfill benchmark: on ROWS rows of the seeds' `checks` shape (1M, or 10M
# with FULL=1), alternating in one run on a throwaway cluster:
#   pgtandem_Nw - `pgtandem migrate resume --backfill-workers N` (N = 1, 2 (the
#               default), 4): the backfill of the three checks_unify renames in key
#               ranges, N batches at once, unthrottled (bench/bench_unify.json renames
#               claim_text with "copy": true, so that three columns are written as by
#               the single UPDATE; a plain rename moves no data)
#   single    - one `UPDATE checks SET claim = claim_text, config_json = aggregation::jsonb, ...`
#   single_tg - the same UPDATE with pgtandem's dual-write triggers in place (as
#               during a real migration; skipped by the session setting): Postgres
#               locks every row a BEFORE ROW trigger may see, so this is the limit
#               for any trigger-based online backfill
#   pgroll    - pgroll's batch statement (1000-row keyset batch, FOR NO KEY UPDATE,
#               `SET id = id`) with a BEFORE UPDATE trigger computing the new columns
# Reports rows/s, ratios and the longest pgtandem batch, with the machine's
# load average (`uptime`) around every run: the machine may be shared, and
# with QUIET_LOAD=L each run first waits (up to QUIET_WAIT seconds, 600) for
# the 1-minute load average to fall below L. Rounds alternate the methods'
# order (reversed every other round). Each run also records the CPU seconds
# the cluster's processes and the pgtandem process spent (which a busy machine
# stretches far less than the wall time), the WAL it wrote and the
# checkpoints during it. Writes bench/results/backfill-<date>.md and .json.
#   ROUNDS=N (default 3)  FULL=1  ROWS=N  WORKERS="1 2 4"  QUIET_LOAD=L  QUIET_WAIT=S
#   OUT=bench/results/backfill-<date>
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
rows=${ROWS:-1000000}
[ "${FULL:-0}" = 1 ] && rows=${ROWS:-10000000}
rounds=${ROUNDS:-3}
. bench/lib.sh
start_bench_cluster
out=${OUT:-bench/results/backfill-$stamp}

ROWS=$rows ROUNDS=$rounds BIN=$bin OUT=$out TOP=$top WORKERS=${WORKERS:-1 2 4} QUIET_LOAD=${QUIET_LOAD:-} \
  QUIET_WAIT=${QUIET_WAIT:-600} PGDATA_DIR="$PGT_PGDIR/data" \
  /usr/bin/python3 - <<'PY'
import functools, json, os, re, statistics, subprocess, sys, time
import psycopg
sys.path.insert(0, os.path.join(os.environ["TOP"], "bench"))
from benchlib import BENCH_MIGRATION, bench_database, run_header

rows, rounds, binary, out = int(os.environ["ROWS"]), int(os.environ["ROUNDS"]), os.environ["BIN"], os.environ["OUT"]
workers = [int(w) for w in os.environ["WORKERS"].split()]
DEFAULT_WORKERS = 2  # backfill_workers' default (proxy/base/settings.c)
top = os.environ["TOP"]
db = bench_database()

def run(sql):
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(sql)

print("loading %d rows" % rows, flush=True)
subprocess.run(["psql", db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=0", "-f",
                os.path.join(top, "config", "examples", "checks_legacy.sql")], check=True, capture_output=True)
run("CREATE TABLE checks_src AS SELECT * FROM checks WITH NO DATA")
run("INSERT INTO checks_src (id, claim_text, aggregation, diagnostics, env, anon_token, created_at)"
    " SELECT g, 'claim number ' || g,"
    " json_build_object('model', 'gpt-5', 'k', g % 7, 'p_true', round((g % 100) / 100.0, 2))::text,"
    " CASE WHEN g % 10 = 0 THEN NULL ELSE json_build_object('template_a', g % 13, 'template_b', g % 5)::text END,"
    " CASE WHEN g % 3 = 0 THEN 'dev' ELSE 'prod' END, CASE WHEN g % 2 = 0 THEN md5(g::text) END,"
    " now() - (g || ' seconds')::interval FROM generate_series(1, " + str(rows) + ") g")

def fresh_table():
    """The legacy table, freshly written and vacuumed, so every method starts
    from the same physical state."""
    run("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP SCHEMA IF EXISTS pgtandem_bench_unify CASCADE;"
        " DROP SCHEMA IF EXISTS pgtandem_bench_unify_old CASCADE; DROP TABLE IF EXISTS checks CASCADE")
    run("CREATE TABLE checks (id bigint PRIMARY KEY, claim_text text, aggregation text, diagnostics text,"
        " env text NOT NULL DEFAULT 'prod', anon_token text, created_at timestamptz NOT NULL DEFAULT now())")
    run("INSERT INTO checks SELECT * FROM checks_src ORDER BY id")
    # the cluster commits asynchronously: until the WAL is flushed VACUUM
    # cannot mark the pages all-visible, as it would on a server in use
    run("CHECKPOINT")
    run("VACUUM (ANALYZE) checks")
    run("CHECKPOINT")

NEW_COLS = ("ALTER TABLE checks ADD COLUMN claim text, ADD COLUMN config_json jsonb,"
            " ADD COLUMN counts_by_template_json jsonb")
UP = "claim = claim_text, config_json = aggregation::jsonb, counts_by_template_json = diagnostics::jsonb"

CLK = os.sysconf("SC_CLK_TCK")

def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rindex(")") + 2:].split()

def cluster_cpu():
    """CPU seconds of the cluster's processes so far: the postmaster's own,
    its children's that still run, and what the ended ones left in its
    totals. A child reaped while the children are read would be counted in
    neither or in both, so the reading is taken again until the
    postmaster's totals did not move during it."""
    with open(os.path.join(os.environ["PGDATA_DIR"], "postmaster.pid")) as f:
        pm = int(f.readline())
    while True:
        before = proc_stat(pm)
        total = 0.0
        for d in os.listdir("/proc"):
            fields = proc_stat(d) if d.isdigit() and int(d) != pm else None
            if fields and int(fields[1]) == pm:
                total += (int(fields[11]) + int(fields[12])) / CLK
        after = proc_stat(pm)
        if before[11:15] == after[11:15]:
            return total + sum(int(x) for x in after[11:15]) / CLK

def server_counters():
    """WAL bytes written and checkpoints started, as the server counts them."""
    with psycopg.connect(db, autocommit=True) as c:
        wal, ckpt = c.execute("SELECT (SELECT wal_bytes FROM pg_stat_wal),"
                              " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)").fetchone()
    return float(wal), int(ckpt)

def timed(work):
    """Runs work(), returning its wall seconds, the CPU seconds of the
    cluster and of the processes this script started meanwhile, the WAL
    written and the checkpoints begun, and whatever work() returned."""
    wal0, ckpt0 = server_counters()
    cpu0, child0 = cluster_cpu(), os.times()
    t0 = time.perf_counter()
    extra = work() or {}
    secs = time.perf_counter() - t0
    cpu1, child1 = cluster_cpu(), os.times()
    wal1, ckpt1 = server_counters()
    return dict(extra, seconds=secs, cluster_cpu_s=cpu1 - cpu0,
                pgtandem_cpu_s=child1.children_user + child1.children_system
                - child0.children_user - child0.children_system,
                wal_mb=(wal1 - wal0) / 1e6, checkpoints=ckpt1 - ckpt0)

def bench_single():
    fresh_table()
    run(NEW_COLS)
    return timed(lambda: run("UPDATE checks SET " + UP))

def expand_only():
    """A fresh table with the bench migration expanded (new columns and the
    dual-write triggers in place), nothing backfilled yet."""
    fresh_table()
    r = subprocess.run([binary, "migrate", "start", BENCH_MIGRATION, "--db", db, "--no-backfill"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def bench_single_tg():
    expand_only()
    return timed(lambda: run("SET pgtandem.backfill = 'on'; UPDATE checks SET " + UP))

def bench_pgroll():
    fresh_table()
    run(NEW_COLS)
    run("CREATE FUNCTION pgroll_like() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " NEW.claim := NEW.claim_text; NEW.config_json := NEW.aggregation::jsonb;"
        " NEW.counts_by_template_json := NEW.diagnostics::jsonb; RETURN NEW; END $$;"
        "CREATE TRIGGER pgroll_like BEFORE UPDATE ON checks FOR EACH ROW EXECUTE FUNCTION pgroll_like()")
    stmt = ("WITH batch AS (SELECT id FROM checks WHERE id > %s ORDER BY id LIMIT 1000 FOR NO KEY UPDATE)"
            " UPDATE checks SET id = checks.id FROM batch WHERE checks.id = batch.id RETURNING checks.id")
    def batches():
        last, longest, n = 0, 0.0, 0
        with psycopg.connect(db, autocommit=True) as c:
            while True:
                b0 = time.perf_counter()
                ids = [r[0] for r in c.execute(stmt, (last,)).fetchall()]
                longest = max(longest, time.perf_counter() - b0)
                if not ids:
                    break
                n += 1
                last = max(ids)
        return {"longest_batch_ms": longest * 1000, "batches": n}
    res = timed(batches)
    run("DROP TRIGGER pgroll_like ON checks; DROP FUNCTION pgroll_like()")
    return res

def bench_pgtandem(n):
    expand_only()
    out = []
    res = timed(lambda: out.append(subprocess.run([binary, "migrate", "resume", "--db", db, "--backfill-workers",
                                                   str(n)], capture_output=True, text=True)))
    r = out[0]
    assert r.returncode == 0, r.stderr
    m = re.findall(r"max (\d+)ms\), throttle \S+, done", r.stderr)
    with psycopg.connect(db) as c:
        done, batches, ranges = c.execute("SELECT sum(rows_done)::bigint, sum(batches)::bigint, count(*)"
                                          " FROM pgtandem.backfill_progress").fetchone()
    assert done == rows, (done, rows)
    return dict(res, longest_batch_ms=float(m[-1]) if m else None, batches=int(batches), ranges=ranges)

def load():
    """The load averages (1, 5, 15 min) as `uptime` shows them."""
    return [round(x, 2) for x in os.getloadavg()]

quiet = float(os.environ["QUIET_LOAD"]) if os.environ["QUIET_LOAD"] else None

def wait_quiet():
    """With QUIET_LOAD, until the 1-minute load average is below it (QUIET_WAIT seconds at most)."""
    deadline = time.monotonic() + float(os.environ["QUIET_WAIT"])
    while quiet is not None and os.getloadavg()[0] >= quiet and time.monotonic() < deadline:
        time.sleep(5)

uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
methods = {"pgtandem_%dw" % n: functools.partial(bench_pgtandem, n) for n in workers}
methods.update({"single": bench_single, "single_tg": bench_single_tg, "pgroll": bench_pgroll})
results = {k: [] for k in methods}
for rnd in range(rounds):
    # alternating order: no method always runs first after the load step
    # or always after the same neighbour
    for name in (list(methods) if rnd % 2 == 0 else list(reversed(methods))):
        wait_quiet()
        before = load()
        res = methods[name]()
        res["rows_per_sec"] = rows / res["seconds"]
        res["load_before"], res["load_after"] = before, load()
        results[name].append(res)
        print("round %d %-12s %7.2fs %9.0f rows/s  load %.2f%s" % (rnd + 1, name, res["seconds"], res["rows_per_sec"],
              res["load_before"][0], ("  longest batch %.0fms" % res["longest_batch_ms"])
              if res.get("longest_batch_ms") else ""), flush=True)
uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

med = {k: statistics.median(r["rows_per_sec"] for r in v) for k, v in results.items()}
default = "pgtandem_%dw" % (DEFAULT_WORKERS if DEFAULT_WORKERS in workers else workers[0])
pg = [k for k in methods if k.startswith("pgtandem_")]
longest = {k: max(r["longest_batch_ms"] or 0 for r in results[k]) for k in pg}
cpu = {k: statistics.median(r["cluster_cpu_s"] + r["pgtandem_cpu_s"] for r in v) for k, v in results.items()}
summary = dict(run_header(db), rows=rows, rounds=rounds, **{
    "uptime_before": uptime_before, "uptime_after": uptime_after, "quiet_load": quiet,
    "default_workers": DEFAULT_WORKERS,
    "median_rows_per_sec": med,
    "ratio_vs_single_update": {k: med[k] / med["single"] for k in pg},
    "ratio_vs_single_update_with_triggers": {k: med[k] / med["single_tg"] for k in pg},
    "ratio_vs_pgroll": {k: med[k] / med["pgroll"] for k in pg},
    "trigger_cost_on_single_update": med["single_tg"] / med["single"],
    "median_cluster_cpu_s": cpu,
    "median_wal_mb": {k: statistics.median(r["wal_mb"] for r in v) for k, v in results.items()},
    "checkpoints_during_runs": {k: sum(r["checkpoints"] for r in v) for k, v in results.items()},
    "pgtandem_longest_batch_ms": longest,
    "targets": {"default workers vs single >= 1.3": med[default] / med["single"] >= 1.3,
                "default workers vs pgroll >= 2": med[default] / med["pgroll"] >= 2.0,
                "longest batch <= 100ms (default workers)": longest[default] <= 100},
    "runs": results,
})
with open(out + ".json", "w") as f:
    json.dump(summary, f, indent=2)
with open(out + ".md", "w") as f:
    f.write("# Backfill benchmark, %s\n\n" % summary["date"])
    f.write("%d rows of the seeds' `checks` shape (three renames: `claim_text -> claim`, "
            "`aggregation -> config_json` jsonb, `diagnostics -> counts_by_template_json` jsonb), "
            "%d alternating rounds, Postgres %s, %s. Command: `sh bench/backfill.sh`%s.\n\n"
            % (rows, rounds, summary["postgres"], summary["machine"], " (FULL=1)" if rows >= 10000000 else ""))
    f.write("The machine is shared: `uptime` before the run: `%s`; after: `%s`. Each run's 1-minute load "
            "average before it is in the table%s.\n\n" % (uptime_before, uptime_after, (
                "; each run waited for it to fall below %g (QUIET_LOAD)" % quiet) if quiet is not None else ""))
    f.write("CPU s: the median CPU seconds the cluster's processes and the pgtandem process spent during a run "
            "(what the work costs, which a busy machine stretches far less than the wall time); WAL: median MB "
            "written; checkpoints: begun during the method's runs, all rounds.\n\n")
    f.write("| method | median rows/s | runs (s) | load before each run | CPU s | WAL MB | checkpoints | longest batch |\n"
            "|---|---:|---|---|---:|---:|---:|---:|\n")
    for k in methods:
        f.write("| %s | %.0f | %s | %s | %.2f | %.0f | %d | %s |\n" % (
                k, med[k], ", ".join("%.2f" % r["seconds"] for r in results[k]),
                ", ".join("%.2f" % r["load_before"][0] for r in results[k]), cpu[k],
                summary["median_wal_mb"][k], summary["checkpoints_during_runs"][k],
                ("%.0f ms" % max(r.get("longest_batch_ms") or 0 for r in results[k])) if any(x.get("longest_batch_ms") for x in results[k]) else "-"))
    f.write("\n| pgtandem workers | / single UPDATE | / UPDATE with triggers | / pgroll batch | longest batch |\n"
            "|---:|---:|---:|---:|---:|\n")
    for k in pg:
        f.write("| %s%s | **%.2fx** | %.2fx | %.2fx | %.0f ms |\n"
                % (k[len("pgtandem_"):-1], " (default)" if k == default else "", summary["ratio_vs_single_update"][k],
                   summary["ratio_vs_single_update_with_triggers"][k], summary["ratio_vs_pgroll"][k], longest[k]))
    f.write("\nTargets, at the default %d workers: >= 1.3x one bare UPDATE (%s), >= 2x pgroll's batches (%s), "
            "longest batch <= 100 ms (%s).  \n" % (DEFAULT_WORKERS, *("met" if v else "not met"
                                                                     for v in summary["targets"].values())))
    f.write("single UPDATE with triggers / without: %.2fx (the row lock Postgres takes for a BEFORE ROW trigger)\n"
            % summary["trigger_cost_on_single_update"])
print(json.dumps({k: summary[k] for k in ("median_rows_per_sec", "median_cluster_cpu_s", "ratio_vs_single_update",
                                           "ratio_vs_pgroll",
                                           "ratio_vs_single_update_with_triggers",
                                           "pgtandem_longest_batch_ms", "targets", "uptime_before",
                                           "uptime_after")}, indent=2))
print("wrote %s.md and %s.json" % (out, out))
PY
