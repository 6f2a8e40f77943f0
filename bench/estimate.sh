#!/bin/sh
# Estimate benchmark: `pgtandem migrate plan --estimate` against the measured
# backfill of the same table. ROWS rows (default 1M) of the seeds' `checks`
# shape, filled by config/examples/checks_legacy.sql's generator (the one the
# demo and bench/backfill.sh's schema use), vacuumed and analyzed; each round
# re-creates the table, estimates bench/bench_unify.json (bench/backfill.sh's
# migration: three renames, two of them to jsonb) with samples of SAMPLES rows, then
# expands (--no-backfill) and times `migrate resume`, reading the WAL position
# before and after and the table's dead tuples after.
# Writes bench/results/estimate-<date>.md and .json.
#   ROUNDS=N (default 2)  ROWS=N  SAMPLES="10000 100000"  OUT=bench/results/estimate-<date>
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
rows=${ROWS:-1000000}
rounds=${ROUNDS:-2}
samples=${SAMPLES:-10000 100000}
. bench/lib.sh
start_bench_cluster
out=${OUT:-bench/results/estimate-$stamp}

ROWS=$rows ROUNDS=$rounds SAMPLES=$samples BIN=$bin OUT=$out TOP=$top /usr/bin/python3 - <<'PY'
import json, os, statistics, subprocess, sys, time
import psycopg
sys.path.insert(0, os.path.join(os.environ["TOP"], "bench"))
from benchlib import BENCH_MIGRATION, bench_database, run_header

rows, rounds, binary, out = int(os.environ["ROWS"]), int(os.environ["ROUNDS"]), os.environ["BIN"], os.environ["OUT"]
samples = [int(s) for s in os.environ["SAMPLES"].split()]
top = os.environ["TOP"]
db = bench_database()

def q(sql, params=None):
    with psycopg.connect(db, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else None

path = BENCH_MIGRATION

def fresh_table():
    q("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP SCHEMA IF EXISTS pgtandem_bench_unify CASCADE;"
      " DROP SCHEMA IF EXISTS pgtandem_bench_unify_old CASCADE")
    subprocess.run(["psql", db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % rows, "-f",
                    os.path.join(top, "config", "examples", "checks_legacy.sql")], check=True, capture_output=True)
    q("VACUUM (ANALYZE) checks")
    q("CHECKPOINT")

def pgt(*args):
    r = subprocess.run([binary, "migrate"] + list(args) + ["--db", db], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout

runs = []
for rnd in range(rounds):
    print("round %d: loading %d rows" % (rnd + 1, rows), flush=True)
    fresh_table()
    est = {}
    for n in samples:
        t0 = time.perf_counter()
        e = json.loads(pgt("plan", path, "--estimate", "--estimate-rows", str(n), "--json"))["tables"][0]
        e["command_s"] = time.perf_counter() - t0
        est[n] = e
        print("  estimate (sample %d): %.0f rows/s, ETA %.1f s, %.0f B WAL/row, %.1f MB WAL, %.0f dead tuples,"
              " command %.1f s" % (n, e["throttled_rows_per_s"], e["eta_s"], e["wal_bytes_per_row"],
                                   e["wal_bytes"] / 1048576, e["dead_tuples"], e["command_s"]), flush=True)
    pgt("start", path, "--no-backfill")
    q("CHECKPOINT")
    lsn = q("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    t0 = time.perf_counter()
    # one worker: what the estimate measures (its sample is walked on one connection)
    subprocess.run([binary, "migrate", "resume", "--db", db, "--backfill-workers", "1"], check=True,
                   capture_output=True)
    secs = time.perf_counter() - t0
    wal = float(q("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (lsn,))[0][0])
    done, updated = q("SELECT sum(rows_done)::bigint, sum(rows_updated)::bigint FROM pgtandem.backfill_progress")[0]
    # the backfill's backend flushes its statistics as it exits; read them once they arrived
    for _ in range(50):
        dead = q("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'checks'::regclass")[0][0]
        if dead >= updated:
            break
        time.sleep(0.2)
    real = {"seconds": secs, "rows_per_s": done / secs, "wal_bytes": wal, "wal_bytes_per_row": wal / done,
            "rows_updated": updated, "n_dead_tup": dead}
    print("  backfill: %.0f rows/s, %.1f s, %.0f B WAL/row, %.1f MB WAL, %d rows updated, n_dead_tup %d"
          % (real["rows_per_s"], secs, real["wal_bytes_per_row"], wal / 1048576, updated, dead), flush=True)
    runs.append({"estimates": {str(k): v for k, v in est.items()}, "backfill": real})

def med(f):
    return statistics.median(f(r) for r in runs)

summary = dict(run_header(db), rows=rows, rounds=rounds, runs=runs)
with open(out + ".json", "w") as f:
    json.dump(summary, f, indent=2)
with open(out + ".md", "w") as f:
    f.write("# Estimate against the measured backfill, %s\n\n" % summary["date"])
    f.write("%d rows of the seeds' `checks` shape (three renames, two to jsonb: bench/bench_unify.json, the backfill benchmark's migration), "
            "unthrottled defaults, %d rounds (medians below), Postgres %s, %s.\n"
            "Command: `sh bench/estimate.sh`%s.\n\n"
            % (rows, rounds, summary["postgres"], summary["machine"],
               "" if rows == 1000000 else " (ROWS=%d)" % rows))
    f.write("| | rows/s | backfill duration | WAL per row | WAL | dead tuples | estimate's own run time |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    for n in samples:
        k = str(n)
        f.write("| estimate, sample %d rows | %.0f | %.1f s | %.0f B | %.1f MB | %.0f | %.1f s |\n" % (
            n, med(lambda r: r["estimates"][k]["throttled_rows_per_s"]), med(lambda r: r["estimates"][k]["eta_s"]),
            med(lambda r: r["estimates"][k]["wal_bytes_per_row"]),
            med(lambda r: r["estimates"][k]["wal_bytes"]) / 1048576, med(lambda r: r["estimates"][k]["dead_tuples"]),
            med(lambda r: r["estimates"][k]["command_s"])))
    f.write("| measured backfill (`migrate resume --backfill-workers 1`) | %.0f | %.1f s | %.0f B | %.1f MB | %.0f (n_dead_tup %.0f) | - |\n"
            % (med(lambda r: r["backfill"]["rows_per_s"]), med(lambda r: r["backfill"]["seconds"]),
               med(lambda r: r["backfill"]["wal_bytes_per_row"]), med(lambda r: r["backfill"]["wal_bytes"]) / 1048576,
               med(lambda r: r["backfill"]["rows_updated"]), med(lambda r: r["backfill"]["n_dead_tup"])))
    f.write("\nPer round:\n\n")
    for i, r in enumerate(runs):
        f.write("- round %d: backfill %.1f s; " % (i + 1, r["backfill"]["seconds"]) + "; ".join(
            "estimate (sample %s) %.1f s" % (k, v["eta_s"]) for k, v in r["estimates"].items()) + "\n")
print("wrote %s.md and %s.json" % (out, out))
PY
