#!/bin/sh
# Fleet benchmark, on a throwaway cluster (tests/pgcluster.sh), in one run:
#
#   cutover   three `pgtandem proxy` processes with --engine-db on the same
#             database. Per round: a fresh copy of a database loaded with
#             checks_legacy.sql (CREATE DATABASE ... TEMPLATE), three fresh
#             proxies on it, `migrate start` through proxy 1, new-release
#             pgbench (-M prepared, pgtandem.version) spread over the three
#             proxies (CLIENTS/3 each), `migrate complete --json` through
#             proxy 2 while the load runs. Traffic held per proxy: proxy 2
#             (the coordinator) from the answer's max_pause_ms, proxies 1 and
#             3 from their log ("fleet: hold E ended (...): traffic held X ms");
#             fleet-wide = the largest of the three. Reports p50 and p100 per
#             proxy and fleet-wide, attempts and client errors per client count,
#             the coordinator's steps (the answer's `steps`) and how each
#             participant learnt of the hold and of its release (peer port or
#             database). With COMPARE_BIN, every round runs both binaries one
#             after the other (the order alternating), so that a change is
#             measured against its base under the same load.
#   reuseport pgbench select-only (-S) through: a direct connection, one
#             pgtandem process, two pgtandem processes sharing one port
#             (SO_REUSEPORT is always set on the proxy's listener), PgBouncer
#             (session mode). TPS and the ratio to direct.
#
# Writes bench/results/fleet-<date>.md and .json and prints the tables.
#   ROUNDS=20  CLIENTS_LIST="32 64"  CUT_ROWS=20000  CUT_SECONDS=30  CUT_WORKLOAD=tx|autocommit
#   TARGET_MS=20             (the fleet-wide p100 the verdict checks)
#   COMPARE_BIN=PATH COMPARE_LABEL=base  (a second binary, e.g. built from the base of a change)
#   FLEET_LEASE_MS=           (--fleet-lease-ms; empty: the proxy's default)
#   REUSE_ROUNDS=3  REUSE_CLIENTS=32  REUSE_JOBS=4  REUSE_SECONDS=10
#   REUSE_MODE=simple  SCALE=10  UPSTREAM_SSLMODE=require
#   PARTS="cutover reuseport"  OUT=bench/results/fleet-<date>  KEEP_LOGS=DIR (copy the logs there)
#   PGTANDEM_BIN=bin/pgtandem  (a copy is fine: nothing here rebuilds it)
#   PGTANDEM_BIN_FROM=COMMIT   (noted in the results: what the binary was built from)
#   FROM_JSON=bench/results/fleet-DATE.json   rewrite that run's .md from its .json
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=/dev/null
. "$top/bench/lib.sh"
bin=${PGTANDEM_BIN:-$top/bin/pgtandem}
[ -x "$bin" ] || { echo "no pgtandem binary at $bin (make, or PGTANDEM_BIN=...)" >&2; exit 1; }
for tool in pgbench psql pgbouncer; do
  command -v "$tool" >/dev/null || { echo "$tool not installed (make deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pgtandem-fleetbench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs"
: >"$work/pids"
cleanup() {
  rc=$?
  # every process this run started, by its id (the Python driver records them)
  while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
  if [ -f "$work/pgbouncer.pid" ]; then kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true; fi
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp -r "$work/logs/." "$KEEP_LOGS/" && echo "logs copied to $KEEP_LOGS" >&2
  fi
  if [ "$rc" = 0 ]; then
    rm -rf "$work"
  else
    rm -rf "$work/pg"
    echo "fleet.sh failed (exit $rc); proxy and pgbench logs kept in $work/logs" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sslmode=${UPSTREAM_SSLMODE:-require}
parts=${PARTS:-cutover reuseport}
bport=0
if [ -n "${FROM_JSON:-}" ]; then  # FROM_JSON=bench/results/fleet-DATE.json: rebuild its .md only
  PGT_SUPER_URI=unused; PGT_PGPORT=0; parts=""
else
  echo "== starting a throwaway cluster"
  sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
  # shellcheck source=/dev/null
  . "$work/pg/env"
fi

# ---- the reuseport part's database and PgBouncer (session mode, as bench/proxy.sh) ----
case " $parts " in *" reuseport "*)
  psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
  echo "== pgbench -i -s ${SCALE:-10} (database bench)"
  pgbench -i -q -s "${SCALE:-10}" "postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=$sslmode" \
    >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }
  scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
  bport=$(free_port)
  write_pgbouncer_ini "$work" "$scram" "$bport" "$sslmode" 2000 200 "$work/logs/pgbouncer.log"
  [ -n "$RUN" ] && chown postgres "$work" "$work/logs" "$work/pgbouncer.ini" "$work/userlist.txt"
  $RUN pgbouncer -d "$work/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 || {
    cat "$work/pgbouncer.out" "$work/logs/pgbouncer.log" 2>/dev/null; exit 1; }
  wait_port "$bport"
  ;;
esac

stamp=$(date +%F)
WORK=$work TOP=$top BIN=$bin PARTS=$parts SSLMODE=$sslmode BPORT=$bport \
OUT=${OUT:-bench/results/fleet-$stamp} PGT_SUPER_URI=$PGT_SUPER_URI PGT_PGPORT=$PGT_PGPORT \
/usr/bin/python3 - <<'PY'
import datetime, hashlib, json, os, platform, re, signal, socket, statistics, subprocess, sys, time
import urllib.error, urllib.request

E = os.environ
work, top, binpath, out = E["WORK"], E["TOP"], E["BIN"], E["OUT"]
parts = E["PARTS"].split()
pgport, sslmode = int(E["PGT_PGPORT"]), E["SSLMODE"]
rounds = int(E.get("ROUNDS", "20"))
clients_list = [int(c) for c in E.get("CLIENTS_LIST", "32 64").split()]
cut_rows = int(E.get("CUT_ROWS", "20000"))
cut_seconds = int(E.get("CUT_SECONDS", "30"))
lease_ms = E.get("FLEET_LEASE_MS", "")
target_ms = float(E.get("TARGET_MS", "20"))
compare_bin = E.get("COMPARE_BIN", "")
compare_label = E.get("COMPARE_LABEL", "base")
MAIN_LABEL = "this"
reuse_rounds = int(E.get("REUSE_ROUNDS", "3"))
reuse_clients = int(E.get("REUSE_CLIENTS", "32"))
reuse_jobs = int(E.get("REUSE_JOBS", "4"))
reuse_seconds = int(E.get("REUSE_SECONDS", "10"))
reuse_mode = E.get("REUSE_MODE", "simple")
scale = int(E.get("SCALE", "10"))
super_uri = E["PGT_SUPER_URI"]
upstream = "postgresql://127.0.0.1:%d/?sslmode=%s" % (pgport, sslmode)
unify = os.path.join(top, "config", "examples", "checks_unify.json")
legacy_sql = os.path.join(top, "config", "examples", "checks_legacy.sql")
name = json.load(open(unify))["name"]
logs = os.path.join(work, "logs")
TEMPLATE = "fleet_tpl"
COORD = 1  # index of the proxy `complete` goes to (proxy 2); proxy 1 (index 0) starts the migration

# tx: one transaction of two statements (as bench/cutover.sh); autocommit:
# the same two statements, each its own transaction.
WORKLOADS = {
    "tx": r"""
\set lid random(1, %(rows)d)
\set r random(1, 1000000000)
BEGIN;
UPDATE checks SET config_json = jsonb_build_object('bench', :r::int) WHERE id = :lid::bigint;
SELECT * FROM checks WHERE id = :lid::bigint;
END;
""",
    "autocommit": r"""
\set lid random(1, %(rows)d)
\set r random(1, 1000000000)
UPDATE checks SET config_json = jsonb_build_object('bench', :r::int) WHERE id = :lid::bigint;
SELECT * FROM checks WHERE id = :lid::bigint;
"""}
workload = E.get("CUT_WORKLOAD", "tx")
if workload not in WORKLOADS:
    sys.exit("CUT_WORKLOAD must be one of %s" % ", ".join(WORKLOADS))
NEW_SQL = WORKLOADS[workload]


class RoundError(Exception):
    pass


# ---- processes -----------------------------------------------------------------

def track(pid):
    with open(os.path.join(work, "pids"), "a") as f:
        f.write("%d\n" % pid)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proxy:
    def __init__(self, label, listen_port, engine_db=None, log_level=None, binary=None):
        self.label, self.port, self.aport = label, listen_port, free_port()
        self.admin = "http://127.0.0.1:%d" % self.aport
        self.log_path = os.path.join(logs, label + ".log")
        args = [binary or binpath, "proxy", "--listen", "127.0.0.1:%d" % self.port, "--admin", "127.0.0.1:%d" % self.aport,
                "--upstream", upstream]
        if engine_db:
            args += ["--engine-db", engine_db]
            if lease_ms:
                args += ["--fleet-lease-ms", lease_ms]
        if log_level:
            args += ["--log-level", log_level]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        track(self.proc.pid)

    def get(self, path, timeout=10):
        try:
            with urllib.request.urlopen(self.admin + path, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def tail(self, n=40):
        return "\n".join(self.text().splitlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_admin(p, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.proc.poll() is not None:
            raise RoundError("%s exited (%s):\n%s" % (p.label, p.proc.returncode, p.tail()))
        try:
            socket.create_connection(("127.0.0.1", p.aport), 0.5).close()
            socket.create_connection(("127.0.0.1", p.port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RoundError("%s: admin or listen port did not open:\n%s" % (p.label, p.tail()))


def wait_until(what, fn, timeout, proxies=(), procs=()):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        for p in proxies:
            if p.proc.poll() is not None:
                raise RoundError("waiting for %s: %s exited:\n%s" % (what, p.label, p.tail()))
        for pr in procs:
            if pr.poll() is not None:
                raise RoundError("waiting for %s: a pgbench exited early:\n%s" % (what, pr.communicate()[0][-2000:]))
        if time.time() > deadline:
            raise RoundError("timed out (%d s) waiting for %s\n%s" % (
                timeout, what, "\n".join("--- %s\n%s" % (p.label, p.tail(15)) for p in proxies)))
        time.sleep(0.05)


def psql(sql, db="appdb"):
    uri = "postgresql://postgres:postgres@127.0.0.1:%d/%s?sslmode=%s" % (pgport, db, sslmode)
    r = subprocess.run(["psql", uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise RoundError("psql %r: %s" % (sql, r.stderr))
    return r.stdout.strip()


def db_uri(db):
    return "postgresql://postgres:postgres@127.0.0.1:%d/%s?sslmode=%s" % (pgport, db, sslmode)


def cli(*args, timeout=300, binary=None):
    return subprocess.run([binary or binpath] + list(args), capture_output=True, text=True, timeout=timeout)


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def others_running():
    """Other test or benchmark runs sharing the machine: pytest processes,
    Postgres clusters and pgtandem proxies that are not this run's."""
    try:
        mine = {int(l) for l in open(os.path.join(work, "pids")) if l.strip()}
    except OSError:
        mine = set()
    n = {"pytest_processes": 0, "other_postgres_clusters": 0, "other_pgtandem_proxies": 0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine or int(pid) == os.getpid():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmd if a]
        if not args:
            continue
        if any("pytest" in a for a in args[:3]):
            n["pytest_processes"] += 1
        elif args[0].endswith("/postgres") and "-D" in args and work not in " ".join(args):
            n["other_postgres_clusters"] += 1
        elif args[0].endswith("pgtandem") or os.path.basename(args[0]).startswith("pgtandem"):
            if len(args) > 1 and args[1] == "proxy":
                n["other_pgtandem_proxies"] += 1
    return n


def machine_note():
    return dict(others_running(), loadavg=[round(x, 2) for x in os.getloadavg()])


def machine_text(before, after):
    def one(m):
        return "load average %s; %d pytest processes, %d other Postgres clusters, %d other pgtandem proxies" % (
            m["loadavg"], m["pytest_processes"], m["other_postgres_clusters"], m["other_pgtandem_proxies"])
    return "before: %s; after: %s" % (one(before), one(after))


# ---- part 1: the fleet cutover ---------------------------------------------------

HOLD_RE = re.compile(r"fleet: hold (\d+) ended \(([^)]*)\): traffic held ([\d.]+) ms, (\d+) statements prepared again")
ATTEMPT_RE = re.compile(r"cutover attempt (\d+) held traffic for ([\d.]+) ms")
VIA_RE = re.compile(r"fleet: hold \d+ ended \(contract committed\).*\(learnt of on the (peer port|database), released "
                    r"by the (coordinator on the peer port|database|proxy itself)\)")
WARN_RE = re.compile(r" (WARN|ERROR) (fleet: .*|cutover.*)")


TS_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC ")


def ts(line):
    m = TS_RE.match(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def first(lines, needle, after=None):
    for l in lines:
        t = ts(l)
        if needle in l and t is not None and (after is None or t >= after):
            return t
    return None


def timeline(proxies):
    """From the log timestamps (ms): the coordinator's last hold before the
    commit, and each participant's committed hold."""
    lines = [p.text().splitlines() for p in proxies]
    co = lines[COORD]
    committed_at = first(co, "cutover committed on attempt")
    holds = [ts(l) for l in co if "pause: holding new transactions" in l and ts(l) is not None
             and committed_at is not None and ts(l) <= committed_at]
    if committed_at is None or not holds:
        return None
    c0 = holds[-1]
    out = {"coordinator_hold_to_commit_ms": round((committed_at - c0) * 1000), "participants": []}
    for i, ls in enumerate(lines):
        if i == COORD:
            continue
        ended = [l for l in ls if HOLD_RE.search(l) and "contract committed" in l]
        if not ended:
            continue
        epoch = HOLD_RE.search(ended[-1]).group(1)
        asked = first(ls, "fleet: hold %s asked for" % epoch)
        drained = first(ls, "fleet: hold %s: drained after" % epoch)
        end = ts(ended[-1])
        out["participants"].append({
            "asked_after_coordinator_hold_ms": round((asked - c0) * 1000) if asked else None,
            "asked_to_drained_ms": round((drained - asked) * 1000) if asked and drained else None,
            "resumed_after_commit_ms": round((end - committed_at) * 1000) if end else None})
    starts = [c0] + [c0 + p["asked_after_coordinator_hold_ms"] / 1000.0 for p in out["participants"]
                     if p["asked_after_coordinator_hold_ms"] is not None]
    ends = [committed_at] + [committed_at + p["resumed_after_commit_ms"] / 1000.0 for p in out["participants"]
                             if p["resumed_after_commit_ms"] is not None]
    out["any_proxy_holding_ms"] = round((max(ends) - min(starts)) * 1000)
    return out


def split_clients(total, n=3):
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def pgbench_result(proc):
    text, _ = proc.communicate(timeout=cut_seconds * 4 + 120)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    processed = re.search(r"number of transactions actually processed: (\d+)", text)
    aborted = len(re.findall(r"client \d+ aborted", text))
    errors = (int(failed.group(1)) if failed else 0) + aborted
    if proc.returncode != 0 and errors == 0:
        errors = 1  # a failure pgbench did not itemize
    lines = [l for l in text.splitlines() if "aborted" in l or "ERROR" in l or "error" in l.lower()][:5]
    return {"rc": proc.returncode, "processed": int(processed.group(1)) if processed else 0,
            "failed": int(failed.group(1)) if failed else None, "aborted_clients": aborted, "errors": errors,
            "error_lines": lines}


def fleet_round(clients, rnd, label=MAIN_LABEL, binary=None):
    tag = "c%d-r%02d%s" % (clients, rnd, "" if label == MAIN_LABEL else "-" + label)
    db = "fleet_%s" % re.sub(r"[^a-z0-9_]", "_", tag.lower())
    psql("CREATE DATABASE %s TEMPLATE %s" % (db, TEMPLATE))
    proxies = [Proxy("%s-proxy%d" % (tag, i + 1), free_port(), engine_db=db_uri(db), binary=binary)
               for i in range(3)]
    pgb = []
    try:
        for p in proxies:
            wait_admin(p)
        listens = sorted("127.0.0.1:%d" % p.port for p in proxies)

        def fleet_formed():
            for p in proxies:
                code, st = p.get("/status")
                members = (st or {}).get("fleet", {}).get("members", []) if code == 200 else []
                if sorted(m["listen"] for m in members if m.get("live")) != listens:
                    return False
            return True
        wait_until("every proxy to list the three members live", fleet_formed, 30, proxies)

        # start through proxy 1; the engine can lose a race for its advisory
        # lock right after the expand child exits: submitted once more
        start_retries = 0
        r = cli("migrate", "start", unify, "--proxy", proxies[0].admin, binary=binary)
        if r.returncode != 0 and "advisory lock" in r.stdout + r.stderr:
            start_retries = 1
            r = cli("migrate", "start", unify, "--proxy", proxies[0].admin, binary=binary)
        if r.returncode != 0:
            raise RoundError("migrate start via proxy 1 failed (exit %d):\n%s%s\n--- proxy 1\n%s" % (
                r.returncode, r.stdout, r.stderr[-3000:], proxies[0].tail()))

        def all_active():
            for p in proxies:
                code, cur = p.get("/migrations/current")
                if code != 200:
                    return False
                if cur.get("phase") == "failed":
                    raise RoundError("%s: migration failed: %s" % (p.label, cur.get("error")))
                if cur.get("phase") != "active":
                    return False
            return True
        wait_until("every proxy to see the migration active", all_active, 60, proxies)

        script = os.path.join(work, "new-%d.sql" % cut_rows)
        with open(script, "w") as f:
            f.write(NEW_SQL % {"rows": cut_rows})
        env = dict(os.environ, PGOPTIONS="-c pgtandem.version=" + name)
        share = split_clients(clients)
        t_load = time.time()
        for p, n in zip(proxies, share):
            pr = subprocess.Popen(
                ["pgbench", "-n", "-c", str(n), "-j", str(min(n, 2)), "-T", str(cut_seconds), "-M", "prepared",
                 "-f", script, "postgresql://postgres:postgres@127.0.0.1:%d/%s?sslmode=disable" % (p.port, db)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
            track(pr.pid)
            pgb.append(pr)

        def connected():
            for p, n in zip(proxies, share):
                code, st = p.get("/status")
                if code != 200 or st.get("versions", {}).get(name, 0) < n:
                    return False
            return True
        wait_until("every pgbench client to connect", connected, 30, proxies, pgb)
        time.sleep(1.0)

        t0 = time.time()
        r = cli("migrate", "complete", "--json", "--proxy", proxies[COORD].admin, timeout=600, binary=binary)
        t1 = time.time()
        rep = None
        try:
            rep = json.loads(r.stdout)
        except ValueError:
            pass
        if r.returncode != 0 or not rep or rep.get("status") != "completed":
            raise RoundError("migrate complete via proxy 2 failed (exit %d):\n%s\n%s\n%s" % (
                r.returncode, r.stdout[-3000:], r.stderr[-3000:],
                "\n".join("--- %s\n%s" % (p.label, p.tail(30)) for p in proxies)))
        res = [pgbench_result(pr) for pr in pgb]
        t_end = time.time()
        if t1 > t_load + cut_seconds - 0.2:
            # held ms measured without traffic would say nothing: the round fails
            raise RoundError(
                "the complete call (issued %.1f s into the load) returned %.1f s after the load started, at or "
                "after its end (-T %d): attempts %s, blocked checks %s, blockers: %s\n--- coordinator (proxy 2)\n%s"
                % (t0 - t_load, t1 - t_load, cut_seconds, rep.get("attempts"), rep.get("blocked_checks"),
                   rep.get("blockers"), "\n".join(l[:400] for l in proxies[COORD].text().splitlines()
                                                  if "cutover" in l or "WARN" in l)[-6000:]))
        if psql("SELECT version_num FROM alembic_version", db) != "b73c9aa4f0c3":
            raise RoundError("complete answered 'completed' but alembic_version was not moved")

        # per proxy: held ms (coordinator from the answer, participants from their logs)
        per = []
        for i, p in enumerate(proxies):
            text = p.text()
            warns = [m.group(0).strip() for m in WARN_RE.finditer(text)]
            code, st = p.get("/status")
            status_held = (st or {}).get("last_pause", {}).get("held_ms") if code == 200 else None
            if i == COORD:
                attempts_logged = [float(m.group(2)) for m in ATTEMPT_RE.finditer(text)]
                per.append({"role": "coordinator", "held_ms": rep["max_pause_ms"], "holds_logged": attempts_logged,
                            "status_held_ms": status_held, "reprepared": rep.get("reprepared"), "warnings": warns})
            else:
                holds = [(int(m.group(1)), m.group(2), float(m.group(3)), int(m.group(4)))
                         for m in HOLD_RE.finditer(text)]
                committed = [h for h in holds if h[1] == "contract committed"]
                if not committed:
                    raise RoundError("%s logged no committed hold (holds: %s)\n%s" % (p.label, holds, p.tail(30)))
                via = [m.groups() for m in VIA_RE.finditer(text)]
                per.append({"role": "participant", "held_ms": max(h[2] for h in holds),
                            "holds_logged": [h[2] for h in holds], "status_held_ms": status_held,
                            "reprepared": sum(h[3] for h in committed), "warnings": warns,
                            "learned": via[-1][0].split()[0] if via else None,
                            "released": {"coordinator on the peer port": "peer", "proxy itself": "self"}.get(
                                via[-1][1], via[-1][1]) if via else None})
        return {"clients": clients, "round": rnd, "binary": label, "steps": rep.get("steps"),
                "share": share, "proxies": per, "timeline": timeline(proxies),
                "fleet_held_ms": max(x["held_ms"] for x in per), "attempts": rep["attempts"],
                "blocked_checks": rep.get("blocked_checks", 0), "held_messages": rep.get("held_messages"),
                "pause_ms_total": rep.get("pause_ms"), "reprepared_coordinator": rep.get("reprepared"),
                "bypassing": rep.get("bypassing"), "blockers": rep.get("blockers"),
                "complete_call_ms": round((t1 - t0) * 1000.0, 1), "complete_at_s": round(t0 - t_load, 2),
                "load_s": round(t_end - t_load, 2), "start_retries": start_retries,
                "client_errors": sum(x["errors"] for x in res), "transactions": sum(x["processed"] for x in res),
                "pgbench": [{k: x[k] for k in ("rc", "processed", "failed", "aborted_clients", "error_lines")}
                            for x in res]}
    finally:
        for pr in pgb:
            if pr.poll() is None:
                pr.kill()
                pr.communicate()
        for p in proxies:
            p.stop()
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


def cutover_round(results, clients, rnd, label, binary):
    x = fleet_round(clients, rnd, label, binary)
    results["cutover"].append(x)
    hp = " / ".join("%.1f" % p["held_ms"] for p in x["proxies"])
    print("fleet 3x%-3d round %2d%s: held ms p1/p2(coord)/p3 %s -> fleet %.1f, attempts %d, "
          "client errors %d, complete %.0f ms%s" % (
              clients, rnd, "" if not compare_bin else " [%s]" % label, hp, x["fleet_held_ms"],
              x["attempts"], x["client_errors"], x["complete_call_ms"],
              "; warnings: " + " | ".join(w for p in x["proxies"] for w in p["warnings"])[:400]
              if any(p["warnings"] for p in x["proxies"]) else ""), flush=True)
    for pb in x["pgbench"]:
        for line in pb["error_lines"]:
            print("    client error: " + line, flush=True)


def cutover_part(results):
    psql("CREATE DATABASE %s" % TEMPLATE)
    r = subprocess.run(["psql", db_uri(TEMPLATE), "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % cut_rows,
                        "-f", legacy_sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise RoundError("loading checks_legacy.sql: " + r.stderr)
    psql("VACUUM ANALYZE checks", TEMPLATE)
    results["cutover_machine_before"] = machine_note()
    runs = [(MAIN_LABEL, None)] + ([(compare_label, compare_bin)] if compare_bin else [])
    for clients in clients_list:
        for rnd in range(1, rounds + 1):
            for label, binary in (runs if rnd % 2 else runs[::-1]):
                cutover_round(results, clients, rnd, label, binary)
    results["cutover_machine_after"] = machine_note()


# ---- part 2: many processes, one port --------------------------------------------

def reuseport_part(results):
    one = Proxy("reuse-single", free_port(), log_level="warn")
    shared = free_port()
    two = [Proxy("reuse-shared%d" % (i + 1), shared, log_level="warn") for i in range(2)]
    try:
        for p in [one] + two:
            wait_admin(p)
        time.sleep(0.5)
        for p in two:
            if p.proc.poll() is not None:
                raise RoundError("%s could not share port %d:\n%s" % (p.label, shared, p.tail()))
        uris = {
            "direct": "postgresql://app:apppass@127.0.0.1:%d/bench?sslmode=%s" % (pgport, sslmode),
            "pgtandem x1": "postgresql://app:apppass@127.0.0.1:%d/bench?sslmode=disable" % one.port,
            "pgtandem x2 (one port)": "postgresql://app:apppass@127.0.0.1:%d/bench?sslmode=disable" % shared,
            "pgbouncer": "postgresql://app:apppass@127.0.0.1:%s/bench?sslmode=disable" % E["BPORT"],
        }
        targets = list(uris)
        results["reuseport_machine_before"] = machine_note()
        for rnd in range(reuse_rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for t in order:
                args = ["pgbench", "-n", "-S", "-c", str(reuse_clients), "-j", str(reuse_jobs), "-T",
                        str(reuse_seconds), "-M", reuse_mode, uris[t]]
                pr = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
                track(pr.pid)
                split = None
                if t.startswith("pgtandem x2"):
                    time.sleep(reuse_seconds / 2.0)
                    split = [p.get("/status")[1].get("connections") for p in two]
                text, _ = pr.communicate(timeout=reuse_seconds * 10 + 120)
                tps = re.search(r"tps = ([\d.]+)", text)
                lat = re.search(r"latency average = ([\d.]+) ms", text)
                if pr.returncode != 0 or not tps:
                    raise RoundError("pgbench -S through %s failed:\n%s" % (t, text[-2000:]))
                run = {"round": rnd + 1, "target": t, "tps": float(tps.group(1)),
                       "latency_ms": float(lat.group(1)) if lat else None, "connections_per_process": split}
                results["reuseport"].append(run)
                print("reuseport round %d %-24s %8.0f tps%s" % (
                    rnd + 1, t, run["tps"], "  (connections per process mid-run: %s)" % split if split else ""),
                    flush=True)
        results["reuseport_machine_after"] = machine_note()
    finally:
        for p in [one] + two:
            p.stop()


# ---- run ---------------------------------------------------------------------------

with open(binpath, "rb") as f:
    bin_sha = hashlib.sha256(f.read()).hexdigest()[:16]
head = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
results = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M %Z").strip(), "host": platform.node(),
           "cpus": os.cpu_count(), "kernel": platform.release(), "git_head": head, "binary_sha256_16": bin_sha,
           "binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(binpath)).isoformat(timespec="seconds"),
           "postgres": subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip(),
           "pgbouncer": subprocess.run(["pgbouncer", "--version"], capture_output=True,
                                       text=True).stdout.split("\n")[0],
           "settings": {"ROUNDS": rounds, "CLIENTS_LIST": " ".join(map(str, clients_list)), "CUT_ROWS": cut_rows,
                        "CUT_SECONDS": cut_seconds, "CUT_WORKLOAD": workload, "FLEET_LEASE_MS": lease_ms,
                        "REUSE_ROUNDS": reuse_rounds,
                        "REUSE_CLIENTS": reuse_clients, "REUSE_JOBS": reuse_jobs, "REUSE_SECONDS": reuse_seconds,
                        "REUSE_MODE": reuse_mode, "SCALE": scale, "UPSTREAM_SSLMODE": sslmode,
                        "PARTS": " ".join(parts), "TARGET_MS": target_ms},
           "cutover": [], "reuseport": []}
if compare_bin:
    results["settings"].update(COMPARE_BIN=compare_bin, COMPARE_LABEL=compare_label)
    with open(compare_bin, "rb") as f:
        results["compare_binary_sha256_16"] = hashlib.sha256(f.read()).hexdigest()[:16]
    if E.get("COMPARE_BIN_FROM"):
        results["compare_binary_from"] = E["COMPARE_BIN_FROM"]
if E.get("PGTANDEM_BIN_FROM"):
    results["binary_from"] = E["PGTANDEM_BIN_FROM"]
if E.get("FROM_JSON"):
    results = dict(json.load(open(E["FROM_JSON"])), **({"binary_from": E["PGTANDEM_BIN_FROM"]}
                                                         if E.get("PGTANDEM_BIN_FROM") else {}))
    out = os.path.splitext(E["FROM_JSON"])[0]
    st = results["settings"]
    rounds, cut_rows, cut_seconds, workload = st["ROUNDS"], st["CUT_ROWS"], st["CUT_SECONDS"], st["CUT_WORKLOAD"]
    clients_list = [int(c) for c in st["CLIENTS_LIST"].split()]
    lease_ms, reuse_rounds, reuse_clients = st["FLEET_LEASE_MS"], st["REUSE_ROUNDS"], st["REUSE_CLIENTS"]
    reuse_jobs, reuse_seconds, reuse_mode = st["REUSE_JOBS"], st["REUSE_SECONDS"], st["REUSE_MODE"]
    scale, sslmode = st["SCALE"], st["UPSTREAM_SSLMODE"]
else:
    try:
        if "cutover" in parts:
            cutover_part(results)
        if "reuseport" in parts:
            reuseport_part(results)
    except RoundError as e:
        print("\nFAILED: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)


# ---- report --------------------------------------------------------------------------

def f1(v):
    return "-" if v is None else "%.1f" % v


TARGET_MS = float(results["settings"].get("TARGET_MS", 50.0))
LABELS = [MAIN_LABEL] + ([results["settings"]["COMPARE_LABEL"]] if results["settings"].get("COMPARE_BIN") else [])
lines = ["# Fleet benchmark (%s)" % results["date"], "",
         "%s, %d CPUs, kernel %s; %s; %s. pgtandem binary sha256 %s…%s; worktree HEAD at the start of the "
         "run %s.%s" % (
             results["host"], results["cpus"], results["kernel"], results["postgres"], results["pgbouncer"],
             results["binary_sha256_16"], " (built from %s)" % results["binary_from"]
             if results.get("binary_from") else "", results["git_head"],
             " Compared in the same rounds with \"%s\", sha256 %s…%s (each round runs both, the order "
             "alternating); \"%s\" is the binary above." % (
                 LABELS[1], results["compare_binary_sha256_16"], " (built from %s)" % results["compare_binary_from"]
                 if results.get("compare_binary_from") else "", MAIN_LABEL) if len(LABELS) > 1 else ""), "",
         "Command: `%s sh bench/fleet.sh`" % " ".join(
             "%s=%s" % (k, ("'%s'" % v) if " " in str(v) or v == "" else v)
             for k, v in results["settings"].items()), ""]

if results["cutover"]:
    mb, ma = results["cutover_machine_before"], results["cutover_machine_after"]
    lines += ["## Fleet cutover: three proxies, `complete` through a proxy that did not start the migration", "",
              "Per round: a fresh copy (CREATE DATABASE … TEMPLATE) of a database with `checks_legacy.sql` loaded "
              "(%d rows); three fresh `pgtandem proxy` processes with `--engine-db` on it%s; all three list the "
              "three members live; `pgtandem migrate start` through proxy 1; every proxy reports the migration "
              "active; new-release pgbench (`-M prepared`, `PGOPTIONS='-c pgtandem.version=%s'`, %s, "
              "-T %d) with the clients split over the three proxies; once every client is "
              "connected and 1 s later, `pgtandem migrate complete --json` through proxy 2 (the coordinator). "
              "Traffic held: proxy 2 from the answer's `max_pause_ms`, proxies 1 and 3 from their logs "
              "(`fleet: hold E ended (…): traffic held X ms`, the largest if a round had several holds); "
              "fleet-wide = the largest of the three in the round. Client errors = pgbench failed transactions "
              "+ aborted clients (+1 for a non-zero exit it did not itemize)." % (
                  cut_rows, " (--fleet-lease-ms %s)" % lease_ms if lease_ms else "", name,
                  "BEGIN; UPDATE by id; `SELECT *` by id; END" if workload == "tx"
                  else "UPDATE by id and `SELECT *` by id, each in its own transaction (no BEGIN/END)",
                  cut_seconds), "",
              "**Target: fleet-wide held p100 ≤ %.0f ms, zero client errors.**" % TARGET_MS, "",
              "| clients (per proxy) | binary | rounds | proxy 1 held p50 / p100 ms | proxy 2 (coordinator) p50 / p100 "
              "ms | proxy 3 p50 / p100 ms | fleet-wide p50 / p100 ms | attempts mean / max | blocked checks "
              "(total) | complete call p50 ms | client errors | target met |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    groups = [(c, b) for c in clients_list for b in LABELS]
    for clients, binary in groups:
        rs = [r for r in results["cutover"] if r["clients"] == clients and r.get("binary", MAIN_LABEL) == binary]
        if not rs:
            continue
        cols = []
        for i in range(3):
            v = [r["proxies"][i]["held_ms"] for r in rs]
            cols.append("%.1f / %.1f" % (statistics.median(v), max(v)))
        fw = [r["fleet_held_ms"] for r in rs]
        errs = sum(r["client_errors"] for r in rs)
        ok = max(fw) <= TARGET_MS and errs == 0
        verdicts.append((clients, binary, ok, max(fw), errs))
        lines.append("| 3×%d (%s) | %s | %d | %s | %s | %s | %.1f / %.1f | %.2f / %d | %d | %.0f | %d | %s |" % (
            clients, "+".join(map(str, rs[0]["share"])), binary, len(rs), cols[0], cols[1], cols[2],
            statistics.median(fw), max(fw), statistics.mean(r["attempts"] for r in rs),
            max(r["attempts"] for r in rs), sum(r["blocked_checks"] for r in rs),
            statistics.median(r["complete_call_ms"] for r in rs), errs, "yes" if ok else "**no**"))
    lines += ["", "Per round (held ms per proxy p1 / p2 / p3, fleet-wide; attempts; re-prepared statements "
              "coordinator / participants; client errors; `last_pause.held_ms` from each proxy's /status):", "",
              "| clients | round | binary | p1 | p2 (coord) | p3 | fleet | attempts | blocked checks | re-prepared | "
              "complete call ms | transactions | client errors | /status held_ms p1/p2/p3 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["cutover"]:
        pp = r["proxies"]
        lines.append("| %d | %d | %s | %.1f | %.1f | %.1f | %.1f | %d | %d | %s / %s+%s | %.0f | %d | %d | %s |" % (
            r["clients"], r["round"], r.get("binary", MAIN_LABEL), pp[0]["held_ms"], pp[1]["held_ms"], pp[2]["held_ms"], r["fleet_held_ms"],
            r["attempts"], r["blocked_checks"], pp[1]["reprepared"], pp[0]["reprepared"], pp[2]["reprepared"],
            r["complete_call_ms"], r["transactions"], r["client_errors"],
            "/".join(str(p["status_held_ms"]) for p in pp)))
    warned = [(r["clients"], r["round"], w) for r in results["cutover"] for p in r["proxies"] for w in p["warnings"]]
    if warned:
        lines += ["", "Warnings the proxies logged (first 15):", ""]
        lines += ["- 3×%d round %d: `%s`" % (c, n, w[:300]) for c, n, w in warned[:15]]
    errs = [(r["clients"], r["round"], l) for r in results["cutover"] for pb in r["pgbench"] for l in pb["error_lines"]]
    if errs:
        lines += ["", "Client errors (first 10):", ""]
        lines += ["- 3×%d round %d: `%s`" % (c, n, l[:300]) for c, n, l in errs[:10]]
    tl = [r for r in results["cutover"] if r.get("timeline")]
    if tl:
        lines += ["", "Where the fleet-wide hold goes (log timestamps, ms resolution; median / max over rounds): "
                  "the later participant's `hold E asked for` after the coordinator's own `pause: holding`; "
                  "from there to the later participant's `drained`; the coordinator's hold to its commit; the "
                  "later participant's resume (after re-preparing) after the commit; the span during which any "
                  "proxy held:", "",
                  "| clients | binary | participants told ms | participants drained ms | coordinator hold → commit ms | "
                  "participants resumed ms after commit | any proxy holding ms |", "|---|---|---|---|---|---|---|"]

        def mm(values, fmt="%.0f / %.0f"):
            v = [x for x in values if x is not None]
            return fmt % (statistics.median(v), max(v)) if v else "-"
        for clients, binary in groups:
            rs = [r["timeline"] for r in tl if r["clients"] == clients and r.get("binary", MAIN_LABEL) == binary]
            if not rs:
                continue
            lines.append("| 3×%d | %s | %s | %s | %s | %s | %s |" % (
                clients, binary,
                mm([max((p["asked_after_coordinator_hold_ms"] for p in t["participants"]
                         if p["asked_after_coordinator_hold_ms"] is not None), default=None) for t in rs]),
                mm([max((p["asked_to_drained_ms"] for p in t["participants"]
                         if p["asked_to_drained_ms"] is not None), default=None) for t in rs]),
                mm([t["coordinator_hold_to_commit_ms"] for t in rs]),
                mm([max((p["resumed_after_commit_ms"] for p in t["participants"]
                         if p["resumed_after_commit_ms"] is not None), default=None) for t in rs]),
                mm([t["any_proxy_holding_ms"] for t in rs])))
    st_rows = [r for r in results["cutover"] if r.get("steps")]
    if st_rows:
        lines += ["", "The coordinator's own steps in the committed attempt (the `complete` answer's `steps`, "
                  "monotonic clock, ms; median / max over rounds): writing the hold's row (before anyone holds); "
                  "from its hold to every proxy held, and its own drain within that; the contract's first round "
                  "trip (BEGIN, the DDL, the wait for every participant's acknowledgement in its row, the look "
                  "at sessions that bypass the fleet); the second (commit check, state update, COMMIT); traffic "
                  "flowing again after the COMMIT's answer. Then how the participants' \"held\" reached the "
                  "coordinator first, and how each participant learnt of the hold and of its release first "
                  "(counts over rounds and participants; a binary without the peer port reports nothing here):",
                  "", "| clients | binary | hold row | all held | own drain | body | commit | release | "
                  "held via peer / database | learnt of via peer / database | released via peer / database |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for clients, binary in groups:
            rs = [r for r in st_rows if r["clients"] == clients and r.get("binary", MAIN_LABEL) == binary]
            if not rs:
                continue
            f2 = "%.1f / %.1f"
            parts_ = [p for r in rs for p in r["proxies"] if p["role"] == "participant"]
            lines.append("| 3×%d | %s | %s | %s | %s | %s | %s | %s | %d / %d | %d / %d | %d / %d |" % (
                clients, binary, mm([r["steps"]["announce_ms"] for r in rs], f2),
                mm([r["steps"]["all_held_ms"] for r in rs], f2), mm([r["steps"]["local_drain_ms"] for r in rs], f2),
                mm([r["steps"]["body_ms"] for r in rs], f2), mm([r["steps"]["commit_ms"] for r in rs], f2),
                mm([r["steps"]["release_ms"] for r in rs], f2), sum(r["steps"]["acks_peer"] for r in rs),
                sum(r["steps"]["acks_database"] for r in rs), sum(p.get("learned") == "peer" for p in parts_),
                sum(p.get("learned") == "database" for p in parts_), sum(p.get("released") == "peer" for p in parts_),
                sum(p.get("released") == "database" for p in parts_)))
    lines += ["", "Machine during the cutover rounds (other work on these %d CPUs disturbs the timings; this "
              "run's own pgbench clients count in the load average): %s." % (results["cpus"], machine_text(mb, ma))]
    for clients, binary, ok, worst, errs in verdicts:
        lines.append("")
        lines.append("3×%d%s: fleet-wide held p100 %.1f ms (target ≤ %.0f), %d client errors: %s." % (
            clients, " (%s)" % binary if len(LABELS) > 1 else "", worst, TARGET_MS, errs,
            "target met" if ok else "target NOT met"))

if results["reuseport"]:
    mb, ma = results["reuseport_machine_before"], results["reuseport_machine_after"]
    runs = results["reuseport"]
    targets = []
    for r in runs:
        if r["target"] not in targets:
            targets.append(r["target"])
    med = {t: statistics.median(r["tps"] for r in runs if r["target"] == t) for t in targets}
    lines += ["", "## Many processes, one port: pgbench select-only", "",
              "`pgbench -n -S -c %d -j %d -T %d -M %s`, scale %d (database `bench`), %d rounds, the order of "
              "the targets rotating every round; median TPS. The proxies and PgBouncer (session mode) reach "
              "Postgres over TLS (`sslmode=%s`), and the direct runs use the same sslmode; clients reach the "
              "proxies over plain TCP on loopback. \"pgtandem x2\" is two `pgtandem proxy` processes with the "
              "same `--listen` port (the listener always sets SO_REUSEPORT; the kernel spreads the connections) "
              "and their own `--admin` ports; no `--engine-db` in this part." % (
                  reuse_clients, reuse_jobs, reuse_seconds, reuse_mode, scale, reuse_rounds, sslmode), "",
              "| target | TPS (median) | TPS per round | vs direct | latency avg ms (mean) |",
              "|---|---|---|---|---|"]
    for t in targets:
        rs = [r for r in runs if r["target"] == t]
        lat = [r["latency_ms"] for r in rs if r["latency_ms"] is not None]
        lines.append("| %s | %.0f | %s | %.2f | %s |" % (
            t, med[t], ", ".join("%.0f" % r["tps"] for r in rs), med[t] / med["direct"],
            f1(statistics.mean(lat)) if lat else "-"))
    splits = [r["connections_per_process"] for r in runs if r["connections_per_process"]]
    lines += ["", "Connections per process of \"pgtandem x2\" halfway through each run: %s. Machine %s." % (
        ", ".join("/".join(map(str, s)) for s in splits), machine_text(mb, ma))]

text = "\n".join(lines) + "\n"
os.makedirs(os.path.dirname(os.path.join(top, out)), exist_ok=True)
with open(os.path.join(top, out + ".md"), "w") as f:
    f.write(text)
with open(os.path.join(top, out + ".json"), "w") as f:
    json.dump(results, f, indent=2)
print()
print(text)
print("wrote %s.md and %s.json" % (out, out))
PY
