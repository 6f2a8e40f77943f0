#!/bin/sh
# Cutover benchmark, on a throwaway cluster, through bin/pgtandem proxy with
# the engine inside (--engine-db):
#
#   cutover    ROUNDS times for 16 and 64 pgbench clients (new-release script,
#              -M prepared, pgtandem.version): load checks_legacy.sql
#              (CUT_ROWS rows), POST /migrations, wait for active, run pgbench,
#              POST /migrations/current/complete in the middle of it. Reports
#              the pause (traffic held), attempts, held messages, re-prepared
#              statements, and the client-observed latency of transactions
#              that overlapped the complete vs the rest (pgbench -l logs).
#   backfill   ROWS rows: backfill rows/s with no load, with 16 old-release
#              pgbench clients writing, and with the same load plus the latency
#              throttle (max_app_p99_ms = THROTTLE_P99_MS, default 1.2x the
#              measured baseline p99); the application's p99 in each case and
#              the throttle reasons the proxy reported.
#
# Writes bench/results/cutover-<date>.md and .json and prints the table.
#   ROUNDS=20  CUT_ROWS=20000  ROWS=500000  CUT_SECONDS=4  THROTTLE_P99_MS=N
#   FROM_JSON=bench/results/cutover-DATE.json   rewrite that run's .md from its .json
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${PGTANDEM_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || make -s all
work=$(mktemp -d /tmp/pgtandem-bench.XXXXXX)
chmod 755 "$work"
proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "${FROM_JSON:-}" ]; then  # FROM_JSON=bench/results/cutover-DATE.json: rebuild its .md only
  export PGT_SUPER_URI=unused; port=0; aport=0
else
  sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
  . "$work/pg/env"
  export PGT_SUPER_URI
  free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  port=$(free_port); aport=$(free_port)
  "$bin" proxy --listen "127.0.0.1:$port" --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" \
    --admin "127.0.0.1:$aport" --engine-db "$PGT_SUPER_URI" >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
fi
stamp=$(date -u +%Y-%m-%d)

WORK=$work TOP=$top PORT=$port APORT=$aport OUT="bench/results/cutover-$stamp" \
ROUNDS=${ROUNDS:-20} CUT_ROWS=${CUT_ROWS:-20000} ROWS=${ROWS:-500000} CUT_SECONDS=${CUT_SECONDS:-4} \
THROTTLE_P99_MS=${THROTTLE_P99_MS:-0} /usr/bin/python3 - <<'PY'
import datetime, glob, json, os, platform, socket, statistics, subprocess, threading, time
import urllib.error, urllib.request

E = os.environ
work, top, out = E["WORK"], E["TOP"], E["OUT"]
rounds, cut_rows, rows = int(E["ROUNDS"]), int(E["CUT_ROWS"]), int(E["ROWS"])
cut_seconds, throttle_p99 = int(E["CUT_SECONDS"]), int(E["THROTTLE_P99_MS"])
super_uri = E["PGT_SUPER_URI"]
admin = "http://127.0.0.1:%s" % E["APORT"]
proxy_uri = "postgresql://postgres:postgres@127.0.0.1:%s/appdb?sslmode=disable" % E["PORT"]
unify = os.path.join(top, "config", "examples", "checks_unify.json")
name = json.load(open(unify))["name"]

NEW_SQL = r"""
\set lid random(1, %(rows)d)
\set r random(1, 1000000000)
BEGIN;
UPDATE checks SET config_json = jsonb_build_object('bench', :r::int) WHERE id = :lid::bigint;
SELECT * FROM checks WHERE id = :lid::bigint;
END;
"""
OLD_SQL = r"""
\set lid random(1, %(rows)d)
\set r random(1, 1000000000)
BEGIN;
UPDATE checks SET aggregation = json_build_object('bench', :r::int)::text WHERE id = :lid::bigint;
SELECT claim_text, aggregation FROM checks WHERE id = :lid::bigint;
END;
"""


def call(method, path, body=None, timeout=600):
    req = urllib.request.Request(admin + path, method=method, data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def psql(sql, *extra):
    subprocess.run(["psql", super_uri, "-qAtX", "-v", "ON_ERROR_STOP=1"] + list(extra) + ["-c", sql],
                   check=True, capture_output=True)


def load(n):
    psql("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP SCHEMA IF EXISTS pgtandem_%s CASCADE" % name)
    subprocess.run(["psql", super_uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % n, "-f",
                    os.path.join(top, "config", "examples", "checks_legacy.sql")], check=True, capture_output=True)
    psql("VACUUM ANALYZE checks")


LOCK_RACE = "advisory lock"


def wait_for(phases, timeout=1800, seen=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, cur = call("GET", "/migrations/current")
        if code == 200:
            if seen is not None and cur["phase"] == "backfilling":
                t = cur["backfill"].get("throttle") or "none"
                seen["polls"] = seen.get("polls", 0) + 1
                if t != "none":
                    seen["throttled"] = seen.get("throttled", 0) + 1
                    seen.setdefault("samples", [])
                    if len(seen["samples"]) < 3 and t not in seen["samples"]:
                        seen["samples"].append(t)
            if cur["phase"] in phases:
                return cur
            if cur["phase"] == "failed":
                return cur
        time.sleep(0.1)
    raise SystemExit("timed out waiting for %s" % (phases,))


def run_migration(throttle=None, seen=None):
    """POST /migrations and wait for active. The proxy can lose a race for
    the engine's advisory lock right after its expand child exits (the
    child's backend has not released it yet): that start fails and is
    submitted again, which resumes from the recorded state."""
    for attempt in range(3):
        start_migration(throttle)
        cur = wait_for(("active", "failed"), seen=seen)
        if cur["phase"] == "active":
            results["start_retries"] = results.get("start_retries", 0) + attempt
            return cur
        if LOCK_RACE not in (cur.get("error") or ""):
            break
        time.sleep(0.2)
    raise SystemExit("migration failed: %s" % cur.get("error"))


def start_migration(throttle=None):
    code, body = call("POST", "/migrations", open(unify, "rb").read())
    if code != 202:
        raise SystemExit("POST /migrations: %s %s" % (code, body))
    if throttle:
        code, body = call("POST", "/migrations/current/throttle", json.dumps(throttle).encode())
        if code != 200:
            raise SystemExit("POST /migrations/current/throttle: %s %s" % (code, body))


class Pgbench:
    def __init__(self, script, clients, seconds, mode, options, tag, nrows):
        self.dir = os.path.join(work, tag)
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "script.sql")
        with open(path, "w") as f:
            f.write(script % {"rows": nrows})
        env = dict(os.environ, PGOPTIONS=options)
        self.proc = subprocess.Popen(
            ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 8)), "-T", str(seconds), "-M", mode,
             "-f", path, "-l", "--log-prefix=" + os.path.join(self.dir, "tx"), proxy_uri],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=self.dir)

    def finish(self):
        out, _ = self.proc.communicate(timeout=3600)
        res = {"rc": self.proc.returncode, "aborted": "aborted" in out, "processed": 0, "failed": 0, "out": out}
        for line in out.splitlines():
            if line.startswith("number of transactions actually processed:"):
                res["processed"] = int(line.split(":")[1].split("/")[0])
            if line.startswith("number of failed transactions:"):
                res["failed"] = int(line.split(":")[1].split()[0])
        self.tx = []  # (end time s, latency ms)
        for f in glob.glob(os.path.join(self.dir, "tx.*")):
            for line in open(f):
                p = line.split()
                if len(p) >= 6 and p[2].isdigit():
                    self.tx.append((int(p[4]) + int(p[5]) / 1e6, int(p[2]) / 1000.0))
        return res


class LoadLoop:
    """pgbench in 2-second chunks until stopped (pgbench has no clean stop
    signal; each chunk's per-transaction log is complete)."""

    def __init__(self, clients, tag):
        self.clients, self.tag, self.stop, self.tx, self.failed, self.errors = clients, tag, False, [], 0, []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        n = 0
        while not self.stop:
            n += 1
            pg = Pgbench(OLD_SQL, self.clients, 2, "prepared", "", "%s-%d" % (self.tag, n), rows)
            res = pg.finish()
            self.tx += pg.tx
            self.failed += res["failed"] + (1 if res["rc"] != 0 or res["aborted"] else 0)
            if res["rc"] != 0 and len(self.errors) < 3:
                self.errors.append(res["out"][-1500:])

    def finish(self):
        self.stop = True
        self.thread.join()


def pct(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def cutover_round(clients):
    load(cut_rows)
    run_migration()
    pg = Pgbench(NEW_SQL, clients, cut_seconds, "prepared", "-c pgtandem.version=" + name,
                 "cut-%d-%d" % (clients, time.time_ns()), cut_rows)
    time.sleep(cut_seconds / 2.0)
    t0 = time.time()
    code, rep = call("POST", "/migrations/current/complete")
    t1 = time.time()
    res = pg.finish()
    if code != 200 or res["rc"] != 0 or res["aborted"]:
        raise SystemExit("round failed: complete %s %s\n%s" % (code, rep, res["out"][-3000:]))
    # transactions that were in flight at any moment of the complete call
    during = [lat for end, lat in pg.tx if end >= t0 and end - lat / 1000.0 <= t1]
    rest = [lat for end, lat in pg.tx if not (end >= t0 and end - lat / 1000.0 <= t1)]
    slow = sorted(((lat, end - lat / 1000.0 - t0) for end, lat in pg.tx if end >= t0 and end - lat / 1000.0 <= t1),
                  reverse=True)[:5]
    return {"clients": clients, "pause_ms": rep["pause_ms"],
            "slowest_during": [{"latency_ms": l, "started_s_after_complete_call": round(st, 4)} for l, st in slow], "max_pause_ms": rep["max_pause_ms"],
            "attempts": rep["attempts"], "held_messages": rep["held_messages"], "reprepared": rep["reprepared"],
            "complete_call_ms": (t1 - t0) * 1000.0, "max_latency_during_ms": max(during, default=0.0),
            "p99_latency_rest_ms": pct(rest, 0.99), "max_latency_rest_ms": max(rest, default=0.0),
            "transactions": res["processed"], "failed": res["failed"]}


def backfill_case(label, load_clients, throttle):
    psql("DROP SCHEMA IF EXISTS pgtandem CASCADE; DROP SCHEMA IF EXISTS pgtandem_%s CASCADE" % name)
    pg, seen, base = None, {}, None
    if load_clients:
        # a baseline window without the backfill, then the same load during it
        base_pg = Pgbench(OLD_SQL, load_clients, 5, "prepared", "", "base-%s" % label.replace(" ", "_").replace(",", ""), rows)
        base_pg.finish()
        base = pct([lat for _, lat in base_pg.tx], 0.99)
        pg = LoadLoop(load_clients, "load-%s" % label.replace(" ", "_").replace(",", ""))
        time.sleep(1)
    if throttle is not None and base is not None:
        throttle = {"max_app_p99_ms": throttle or max(2, int(round(base * 1.2)))}
    t0 = time.time()
    cur = run_migration(throttle, seen)
    t1 = time.time()
    if pg:
        pg.finish()
        if pg.errors:
            print("load errors:\n" + "\n".join(pg.errors), flush=True)
    during = [lat for end, lat in (pg.tx if pg else []) if t0 <= end <= t1]
    code, _ = call("POST", "/migrations/current/rollback")
    if code != 200:
        raise SystemExit("rollback failed: %s" % code)
    bf = cur["backfill"]
    return {"case": label, "load_clients": load_clients, "rows": bf["rows_done"], "rows_per_s": bf["rows_per_s"],
            "batches": bf["batches"], "max_batch_ms": bf["max_batch_ms"], "seconds": t1 - t0,
            "throttle_setting": throttle, "throttle_seen": seen,
            "app_p99_baseline_ms": base, "app_p99_during_ms": pct(during, 0.99) if during else None,
            "app_tx_during": len(during), "app_failed": pg.failed if pg else 0}


def measure():
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", int(E["APORT"])), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    for clients in (16, 64):
        for i in range(rounds):
            r = cutover_round(clients)
            results["cutover"].append(r)
            print("cutover %2d clients round %2d: pause %.1f ms, attempts %d, max client latency during complete "
                  "%.1f ms (p99 otherwise %.1f ms)" % (clients, i + 1, r["pause_ms"], r["attempts"],
                                                       r["max_latency_during_ms"], r["p99_latency_rest_ms"]),
                  flush=True)
    load(rows)
    for label, clients, throttle in (("no load", 0, None), ("16 clients", 16, None),
                                     ("16 clients, p99 throttle", 16, throttle_p99)):
        r = backfill_case(label, clients, throttle)
        results["backfill"].append(r)
        print("backfill %s: %.0f rows/s, app p99 %s ms (baseline %s ms), throttle %s" % (
            label, r["rows_per_s"], r["app_p99_during_ms"], r["app_p99_baseline_ms"], r["throttle_seen"]),
            flush=True)


results = {"date": datetime.datetime.utcnow().isoformat() + "Z", "host": platform.node(),
           "cpus": os.cpu_count(), "rounds": rounds, "cut_rows": cut_rows, "rows": rows, "cutover": [],
           "backfill": []}
if E.get("FROM_JSON"):
    results = json.load(open(E["FROM_JSON"]))
    rounds = results["rounds"]
    out = os.path.splitext(E["FROM_JSON"])[0]
else:
    measure()


def summary(clients):
    rs = [r for r in results["cutover"] if r["clients"] == clients]
    pauses = [r["max_pause_ms"] for r in rs]
    lat = [r["max_latency_during_ms"] for r in rs]
    return ("| %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %.1f | %d |" % (
        clients, len(rs), statistics.median(pauses), max(pauses), statistics.median(lat), max(lat),
        statistics.median([r["p99_latency_rest_ms"] for r in rs]),
        statistics.median([r["max_latency_rest_ms"] for r in rs]), statistics.mean([r["attempts"] for r in rs]),
        max(r["reprepared"] for r in rs), statistics.median([r["complete_call_ms"] for r in rs]),
        sum(r["failed"] for r in rs)))


def throttled(seen):
    if isinstance(seen, list):  # older result files
        return ", ".join(seen) or "-"
    if not seen.get("polls"):
        return "-"
    return "%d of %d polls%s" % (seen.get("throttled", 0), seen["polls"],
                                 ": " + "; ".join(seen["samples"]) if seen.get("samples") else "")


def fmt(v):
    return "-" if v is None else "%.1f" % v


lines = ["# Cutover benchmark (%s)" % results["date"][:10], "",
         "%s, %d CPUs; proxy with the engine inside; pgbench through the proxy (new-release script: UPDATE + "
         "`SELECT *` by id, `-M prepared`, pgtandem.version); %d rounds per client count, %d-row `checks` per "
         "round; complete issued mid-run." % (results["host"], results["cpus"], rounds, cut_rows), "",
         "| clients | rounds | pause p50 ms | pause max ms | client max latency across complete p50 ms | "
         "… max ms | client p99 otherwise p50 ms | client max otherwise p50 ms | attempts (mean) | "
         "re-prepared (max) | complete call p50 ms | failed tx |", "|---|---|---|---|---|---|---|---|---|---|---|---|",
         summary(16), summary(64), "",
         "Backfill of %d rows (three renames, two to jsonb); load = 16 old-release pgbench clients "
         "(UPDATE + SELECT by id, `-M prepared`):" % rows, "",
         "| case | rows/s | batches | longest batch ms | app p99 baseline ms | app p99 during backfill ms | "
         "throttle setting | throttled (status polls), sample reasons |", "|---|---|---|---|---|---|---|---|"]
for r in results["backfill"]:
    lines.append("| %s | %.0f | %d | %.0f | %s | %s | %s | %s |" % (
        r["case"], r["rows_per_s"], r["batches"], r["max_batch_ms"], fmt(r["app_p99_baseline_ms"]),
        fmt(r["app_p99_during_ms"]), json.dumps(r["throttle_setting"]) if r["throttle_setting"] else "-",
        throttled(r["throttle_seen"])))
lines += ["", "App p99 here is pgbench's, per transaction (BEGIN, UPDATE, SELECT, END: four round trips). "
          "The proxy's throttle compares its own p99, per message to ReadyForQuery, taken as the upper bound "
          "of a Prometheus bucket (10, 25, 50, 100 ms ...) over a decaying window, so \"app p99 50.0 ms\" "
          "means the statement p99 fell in (25, 50] ms."]
text = "\n".join(lines) + "\n"
os.makedirs(os.path.dirname(os.path.join(top, out)), exist_ok=True)
with open(os.path.join(top, out + ".md"), "w") as f:
    f.write(text)
with open(os.path.join(top, out + ".json"), "w") as f:
    json.dump(results, f, indent=2)
print()
print(text)
PY
