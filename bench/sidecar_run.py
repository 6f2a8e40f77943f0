"""The sidecar fleet benchmark's driver (bench/sidecar.sh says what it
measures): per fleet size, a fresh database with the seeds' `checks`, N
proxies, the migration started and completed under one client per proxy,
the fleet's own backends counted idle, active and after. Every wait is for
a condition, with a deadline. Writes OUT.md and OUT.json."""
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg

from benchlib import free_port, run_header

E = os.environ
work, top, binpath, out = E["WORK"], E["TOP"], E["BIN"], E["OUT"]
pgport, super_uri = int(E["PGT_PGPORT"]), E["PGT_SUPER_URI"]
sizes = [int(n) for n in E.get("PROXIES_LIST", "3 16 64").split()]
rows = int(E.get("CUT_ROWS", "20000"))
pace_s = float(E.get("CLIENT_PACE_MS", "20")) / 1000.0
keep_logs = E.get("KEEP_LOGS", "")
unify = os.path.join(top, "config", "examples", "checks_unify.json")
legacy_sql = os.path.join(top, "config", "examples", "checks_legacy.sql")
name = json.load(open(unify))["name"]
upstream = "postgresql://127.0.0.1:%d/?sslmode=require" % pgport
logs = os.path.join(work, "logs")
HOLD_RE = re.compile(r"fleet: hold \d+ ended \([^)]*\): traffic held ([\d.]+) ms")


def app_uri(db, port=pgport, sslmode="require"):
    return "postgresql://app:apppass@127.0.0.1:%d/%s?sslmode=%s" % (port, db, sslmode)


def own_backends(db):
    with psycopg.connect(super_uri, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                         " AND application_name LIKE 'pgtandem%%'", (db,)).fetchone()[0]


class BackendSampler(threading.Thread):
    """The fleet's own backends every 100 ms from the migration's start to
    the count settled after it: the peak, and what it was made of."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db, self.peak, self.at, self.samples = db, 0, {}, 0
        self.stop = threading.Event()
        self.conn = psycopg.connect(super_uri, autocommit=True)

    def run(self):
        while not self.stop.wait(0.1):
            rows = dict(self.conn.execute("SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s"
                                          " AND application_name LIKE 'pgtandem%%' GROUP BY 1", (self.db,)).fetchall())
            self.samples += 1
            if sum(rows.values()) > self.peak:
                self.peak, self.at = sum(rows.values()), rows

    def finish(self):
        self.stop.set()
        self.join(5)
        self.conn.close()
        return self.peak


def wait(cond, timeout, what):
    """cond() until true, for at most `timeout` seconds; its value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.2)  # polling interval


def settled_backends(db, most, timeout=30):
    """The fleet's own backends once they are at most `most` (the idle close
    takes 5 s and a health check), or what they are at the deadline."""
    end = time.monotonic() + timeout
    while True:
        n = own_backends(db)
        if n <= most or time.monotonic() >= end:
            return n
        time.sleep(0.2)  # polling interval


class Proxy:
    def __init__(self, label, db):
        self.log_path = os.path.join(logs, label + ".log")
        self.log = open(self.log_path, "w")
        self.db = db
        self.spawn()

    def spawn(self):
        # a free port can be taken by another process of the run before the
        # proxy binds it: see started()
        self.port, self.aport = free_port(), free_port()
        self.proc = subprocess.Popen([binpath, "proxy", "--listen", "127.0.0.1:%d" % self.port, "--admin",
                                      "127.0.0.1:%d" % self.aport, "--upstream", upstream, "--engine-db",
                                      app_uri(self.db)], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def started(self):
        """True once its admin API answers; a proxy that exited (a port taken
        meanwhile) is started again on other ports."""
        if self.proc.poll() is not None:
            self.spawn()
            return False
        return self.get("/status") is not None

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.aport, path), timeout=10) as r:
                return json.loads(r.read() or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def phase(self):
        return (self.get("/migrations/current") or {}).get("phase")

    def live_members(self):
        fleet = (self.get("/status") or {}).get("fleet") or {}
        return len([m for m in fleet.get("members", []) if m.get("live")])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Client(threading.Thread):
    """A new-release client: prepared SELECT * by id, CLIENT_PACE_MS apart; every
    transaction timed with its start, errors counted."""

    def __init__(self, proxy, db):
        super().__init__(daemon=True)
        self.uri = app_uri(db, proxy.port, "disable")
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
                    self.stop.wait(pace_s)  # the app's pace
        except Exception as e:  # noqa: BLE001 - counted
            self.errors.append(str(e))


def migrate(*args):
    return subprocess.run([binpath, "migrate"] + list(args), capture_output=True, text=True, timeout=600)


def held_ms(proxies, report):
    """Traffic held per proxy: the coordinator's (proxy 2) from the answer,
    the others' from their log (the largest hold, None when none logged)."""
    held = [float(report.get("max_pause_ms") or 0)]
    for i, p in enumerate(proxies):
        if i != 1:
            with open(p.log_path) as f:
                got = [float(x) for x in HOLD_RE.findall(f.read())]
            held.append(max(got) if got else None)
    return held


def one(n, k):
    db = "sidecar_%d_%d" % (n, k)
    with psycopg.connect(super_uri, autocommit=True) as c:
        c.execute("CREATE DATABASE %s OWNER app" % db)
    subprocess.run(["psql", app_uri(db), "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % rows, "-f", legacy_sql],
                   check=True, capture_output=True)
    proxies = [Proxy("r%d-n%d-p%d" % (k, n, i + 1), db) for i in range(n)]
    res = {"proxies": n}
    try:
        wait(lambda: all([p.started() for p in proxies]), 60 + n, "%d proxies to start" % n)
        wait(lambda: all(p.live_members() == n for p in proxies), 60 + n, "the fleet of %d" % n)
        res["backends_idle"] = settled_backends(db, n)
        sampler = BackendSampler(db)
        sampler.start()
        r = migrate("start", unify, "--proxy", "http://127.0.0.1:%d" % proxies[0].aport)
        if r.returncode != 0:
            raise SystemExit("start: " + r.stderr[-2000:])
        wait(lambda: all(p.phase() == "active" for p in proxies), 120, "every proxy active")
        clients = [Client(p, db) for p in proxies]
        for c in clients:
            c.start()
        wait(lambda: all(len(c.times) >= 10 for c in clients), 60, "every client running")
        res["backends_active"] = settled_backends(db, n + 2)
        t0 = time.monotonic()
        r = migrate("complete", "--force", "--json", "--proxy", "http://127.0.0.1:%d" % proxies[1].aport)
        t1 = time.monotonic()
        res["complete_s"] = round(t1 - t0, 2)
        rep = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        res["complete_status"] = rep.get("status", "exit %d" % r.returncode)
        # the clients go on until each has run past the cutover's window
        wait(lambda: all(c.times and c.times[-1][0] > t1 + 5 for c in clients), 60, "traffic after the cutover")
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(10)
        held = held_ms(proxies, rep)
        told = [h for h in held if h is not None]
        res["held_p50_ms"] = round(statistics.median(told), 1) if told else None
        res["held_p100_ms"] = round(max(told), 1) if told else None
        res["participants_without_a_hold_line"] = len([h for h in held if h is None])
        around = [d for c in clients for (s, d) in c.times if t0 - 5 <= s <= t1 + 5]
        res["worst_client_ms"] = round(1000 * max(around), 1) if around else None
        # those that overlapped the `complete` request (the hold is inside it)
        during = [d for c in clients for (s, d) in c.times if s <= t1 and s + d >= t0]
        res["worst_client_during_ms"] = round(1000 * max(during), 1) if during else None
        # which proxy's client, and when it began against the complete request
        worst = max(((d, s, i) for i, c in enumerate(clients) for (s, d) in c.times if t0 - 5 <= s <= t1 + 5),
                    default=None)
        if worst:
            res["worst_client"] = {"proxy": worst[2] + 1, "port": proxies[worst[2]].port,
                                   "began_s_after_complete_sent": round(worst[1] - t0, 3), "complete_s": res["complete_s"]}
        res["client_errors"] = sum(len(c.errors) for c in clients)
        res["error_examples"] = [e for c in clients for e in c.errors][:3]
        wait(lambda: all(p.phase() == "completed" for p in proxies), 60, "every proxy completed")
        res["all_followed"] = True
        res["backends_after"] = settled_backends(db, n)
        res["backends_peak"] = sampler.finish()
        res["backends_peak_made_of"] = sampler.at
        res["backends_samples"] = sampler.samples
    finally:
        for p in proxies:
            p.stop()
        if keep_logs:
            shutil.copytree(logs, keep_logs, dirs_exist_ok=True)
    print(json.dumps(res), flush=True)
    return res


def main():
    os.makedirs(logs, exist_ok=True)
    results = [one(n, k) for k, n in enumerate(sizes)]
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    doc = dict(run_header(super_uri), rows=rows, loadavg_end=load, results=results)
    with open(out + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    lines = ["# Sidecar fleet", "",
             "`PROXIES_LIST=\"%s\" CUT_ROWS=%d CLIENT_PACE_MS=%g sh bench/sidecar.sh`, %s, %s, Postgres %s, load "
             "average at the end %s." % (" ".join(map(str, sizes)), rows, pace_s * 1000, doc["date"], doc["machine"],
                                         doc["postgres"], " ".join(load)),
             "",
             "| proxies | fleet backends: idle / migration active / after / peak (every 100 ms) | traffic held p50 / p100 "
             "| `complete` took | worst client transaction: during `complete` / within 5 s | client errors "
             "| every proxy followed |",
             "|---:|---|---|---:|---:|---:|---|"]
    for r in results:
        lines.append("| %d | %s / %s / %s / %s | %s / %s ms | %.2f s | %s / %s ms | %d | %s |" % (
            r["proxies"], r["backends_idle"], r["backends_active"], r["backends_after"], r.get("backends_peak"),
            r["held_p50_ms"],
            r["held_p100_ms"], r["complete_s"], r.get("worst_client_during_ms"), r["worst_client_ms"], r["client_errors"],
            "yes" if r.get("all_followed") else "no"))
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
