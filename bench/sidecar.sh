#!/bin/sh
# A sidecar fleet: N `pgtandem proxy` processes with --engine-db on one
# database (one beside each application pod), one new-release psycopg 3
# client per proxy (prepared `SELECT *` by id, 20 ms between transactions),
# the seeds' migration (config/examples/checks_unify.json) on CUT_ROWS rows
# started through proxy 1 and completed (--force) through proxy 2. Per fleet
# size: the backends the fleet holds of its own (application_name
# 'pgtandem ...') with no migration, with the migration active and after
# the cutover; the traffic held (the coordinator's max_pause_ms, each
# participant's "traffic held X ms" log line: p50 and p100 over the fleet);
# the time `complete` took; the worst client transaction in the 5 s around
# the cutover; client errors; whether every proxy followed to completed.
#
#   PROXIES_LIST="3 16 64"  CUT_ROWS=20000
#   OUT=bench/results/sidecar-<date>  (writes OUT.md and OUT.json)
#   PGTANDEM_BIN=bin/pgtandem  KEEP_LOGS=DIR (the proxies' logs copied there)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=/dev/null
. "$top/bench/lib.sh"
bin=${PGTANDEM_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || { echo "no pgtandem binary at $bin (make, or PGTANDEM_BIN=...)" >&2; exit 1; }

work=$(mktemp -d /tmp/pgtandem-sidecar.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs"
: >"$work/pids"
cleanup() {
  rc=$?
  while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$work/logs/." "$KEEP_LOGS/"; fi
  if [ "$rc" = 0 ]; then rm -rf "$work"; else rm -rf "$work/pg"; echo "sidecar.sh failed (exit $rc); logs in $work/logs" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a throwaway cluster"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
# shellcheck source=/dev/null
. "$work/pg/env"

WORK=$work TOP=$top BIN=$bin OUT=${OUT:-bench/results/sidecar-$(date +%F)} PGT_SUPER_URI=$PGT_SUPER_URI \
PGT_PGPORT=$PGT_PGPORT /usr/bin/python3 - <<'PY'
import datetime, json, os, platform, re, socket, statistics, subprocess, threading, time
import urllib.error, urllib.request

import psycopg

E = os.environ
work, top, binpath, out = E["WORK"], E["TOP"], E["BIN"], E["OUT"]
pgport, super_uri = int(E["PGT_PGPORT"]), E["PGT_SUPER_URI"]
sizes = [int(n) for n in E.get("PROXIES_LIST", "3 16 64").split()]
rows = int(E.get("CUT_ROWS", "20000"))
unify = os.path.join(top, "config", "examples", "checks_unify.json")
legacy_sql = os.path.join(top, "config", "examples", "checks_legacy.sql")
name = json.load(open(unify))["name"]
upstream = "postgresql://127.0.0.1:%d/?sslmode=require" % pgport
HOLD_RE = re.compile(r"fleet: hold \d+ ended \([^)]*\): traffic held ([\d.]+) ms")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def psql(sql, db="postgres"):
    subprocess.run(["psql", super_uri.rsplit("/", 1)[0] + "/" + db + "?sslmode=require", "-qAtX", "-v",
                    "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


def own_backends(db):
    with psycopg.connect(super_uri, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                         " AND application_name LIKE 'pgtandem%%'", (db,)).fetchone()[0]


class Proxy:
    def __init__(self, label, db):
        self.port, self.aport = free_port(), free_port()
        self.log_path = os.path.join(work, "logs", label + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binpath, "proxy", "--listen", "127.0.0.1:%d" % self.port, "--admin",
                                      "127.0.0.1:%d" % self.aport, "--upstream", upstream, "--engine-db",
                                      "postgresql://app:apppass@127.0.0.1:%d/%s?sslmode=require" % (pgport, db)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(work, "pids"), "a") as f:
            f.write("%d\n" % self.proc.pid)

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.aport, path), timeout=10) as r:
                return json.loads(r.read() or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)  # polling interval
    raise SystemExit("timed out waiting for " + what)


def phase(p):
    cur = p.get("/migrations/current") or {}
    return cur.get("phase")


class Client(threading.Thread):
    """A new-release client: prepared SELECT * by id, 20 ms apart; every
    transaction timed with its start, errors counted."""

    def __init__(self, proxy, db):
        super().__init__(daemon=True)
        self.uri = "postgresql://app:apppass@127.0.0.1:%d/%s?sslmode=disable" % (proxy.port, db)
        self.stop, self.times, self.errors = threading.Event(), [], []

    def run(self):
        try:
            with psycopg.connect(self.uri, autocommit=True, prepare_threshold=0,
                                 options="-c pgtandem.version=%s" % name) as c:
                i = 0
                while not self.stop.is_set():
                    i += 1
                    t0 = time.monotonic()
                    try:
                        c.execute("SELECT * FROM checks WHERE id = %s", (1 + i % rows,)).fetchall()
                    except psycopg.Error as e:
                        self.errors.append(str(e))
                    self.times.append((t0, time.monotonic() - t0))
                    time.sleep(0.02)  # the app's pace
        except Exception as e:  # noqa: BLE001 - counted
            self.errors.append(str(e))


def one(n, k):
    db = "sidecar_%d_%d" % (n, k)
    psql("CREATE DATABASE %s OWNER app" % db)
    subprocess.run(["psql", "postgresql://app:apppass@127.0.0.1:%d/%s?sslmode=require" % (pgport, db), "-qAtX",
                    "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % rows, "-f", legacy_sql], check=True,
                   capture_output=True)
    proxies = [Proxy("r%d-n%d-p%d" % (k, n, i + 1), db) for i in range(n)]
    res = {"proxies": n}
    try:
        wait(lambda: all(len([m for m in ((p.get("/status") or {}).get("fleet") or {}).get("members", [])
                              if m.get("live")]) == n for p in proxies), 60 + n, "the fleet of %d" % n)
        time.sleep(8)  # past the idle close (5 s) and a health check (3 s)
        res["backends_idle"] = own_backends(db)
        r = subprocess.run([binpath, "migrate", "start", unify, "--proxy", "http://127.0.0.1:%d" % proxies[0].aport],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit("start: " + r.stderr[-2000:])
        wait(lambda: all(phase(p) == "active" for p in proxies), 120, "every proxy active")
        clients = [Client(p, db) for p in proxies]
        for c in clients:
            c.start()
        wait(lambda: all(len(c.times) >= 10 for c in clients), 60, "every client running")
        time.sleep(8)
        res["backends_active"] = own_backends(db)
        t0 = time.monotonic()
        r = subprocess.run([binpath, "migrate", "complete", "--force", "--json", "--proxy",
                            "http://127.0.0.1:%d" % proxies[1].aport], capture_output=True, text=True, timeout=600)
        t1 = time.monotonic()
        res["complete_s"] = round(t1 - t0, 2)
        rep = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        res["complete_status"] = rep.get("status", "exit %d" % r.returncode)
        time.sleep(2)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        held = [float(rep.get("max_pause_ms") or 0)]
        for i, p in enumerate(proxies):
            if i != 1:
                with open(p.log_path) as f:
                    got = [float(x) for x in HOLD_RE.findall(f.read())]
                held.append(max(got) if got else None)
        told = [h for h in held if h is not None]
        res["held_p50_ms"] = round(statistics.median(told), 1) if told else None
        res["held_p100_ms"] = round(max(told), 1) if told else None
        res["participants_without_a_hold_line"] = len([h for h in held if h is None])
        around = [d for c in clients for (s, d) in c.times if t0 - 5 <= s <= t1 + 5]
        res["worst_client_ms"] = round(1000 * max(around), 1) if around else None
        res["client_errors"] = sum(len(c.errors) for c in clients)
        res["error_examples"] = [e for c in clients for e in c.errors][:3]
        wait(lambda: all(phase(p) == "completed" for p in proxies), 60, "every proxy completed")
        res["all_followed"] = True
        time.sleep(8)
        res["backends_after"] = own_backends(db)
    finally:
        for p in proxies:
            p.stop()
    print(json.dumps(res), flush=True)
    return res


results = [one(n, k) for k, n in enumerate(sizes)]
with open("/proc/loadavg") as f:
    load = f.read().split()[:3]
doc = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "rows": rows, "cpus": os.cpu_count(),
       "platform": platform.platform(), "loadavg_end": load, "results": results}
with open(out + ".json", "w") as f:
    json.dump(doc, f, indent=1)
lines = ["# Sidecar fleet", "",
         "`PROXIES_LIST=\"%s\" CUT_ROWS=%d sh bench/sidecar.sh`, %s, %s cpus, load average at the end %s." %
         (" ".join(map(str, sizes)), rows, doc["date"], doc["cpus"], " ".join(load)), "",
         "| proxies | fleet backends: idle / migration active / after | traffic held p50 / p100 | `complete` took "
         "| worst client transaction | client errors | every proxy followed |",
         "|---:|---|---|---:|---:|---:|---|"]
for r in results:
    lines.append("| %d | %s / %s / %s | %s / %s ms | %.2f s | %s ms | %d | %s |" % (
        r["proxies"], r["backends_idle"], r["backends_active"], r["backends_after"], r["held_p50_ms"],
        r["held_p100_ms"], r["complete_s"], r["worst_client_ms"], r["client_errors"],
        "yes" if r.get("all_followed") else "no"))
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
