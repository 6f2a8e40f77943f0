#!/bin/sh
# Proxy benchmark: pgbench through pgtandem vs PgBouncer (Debian's, session
# mode) vs a direct connection, alternating in one run on a throwaway cluster,
# plus resident memory of both proxies holding idle client connections.
#
#   select-only (-S) and TPC-B-like, 1/16/64 clients, ROUNDS rounds of DURATION s
#   each; the order of the three targets rotates every round. For each proxy
#   run also its CPU per transaction: utime+stime of the whole process (every
#   thread) from /proc/PID/stat before and after, over the transactions
#   pgbench completed; steadier than TPS on a shared machine.
#   Both proxies reach Postgres over TLS (UPSTREAM_SSLMODE, default require),
#   and the direct runs use the same sslmode, so the only difference is the hop.
#   Client legs to the proxies are plain TCP on loopback.
#
# Environment:
#   ROUNDS=3 DURATION=10 CLIENTS="1 16 64" SCALE=10 MODE=simple
#   TARGETS="pgtandem pgbouncer direct" WORKLOADS="select tpcb"
#   MEM_CONNS="1000 2000 10000"   idle connections held for the memory measurement
#   MAX_CONNECTIONS=2300     the bench cluster's max_connections
#   UPSTREAM_SSLMODE=require
#   OUT=bench/results/proxy-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/bin/pgtandem"
[ -x "$bin" ] || make -s all
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/pgtandem-proxybench.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

. "$top/bench/lib.sh"

# ---- cluster --------------------------------------------------------------
echo "== starting a throwaway cluster"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
. "$work/pg/env"
maxconn=${MAX_CONNECTIONS:-2300}
echo "max_connections = $maxconn" | $RUN tee -a "$PGT_PGDIR/data/postgresql.conf" >/dev/null
$RUN "$PGT_PGBIN/pg_ctl" -D "$PGT_PGDIR/data" -l "$PGT_PGDIR/postgres.log" -w -t 120 restart >/dev/null
psql "$PGT_SUPER_URI" -qAtX -c "CREATE DATABASE bench OWNER app" >/dev/null
scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
sslmode=${UPSTREAM_SSLMODE:-require}
direct_uri="postgresql://app:apppass@127.0.0.1:$PGT_PGPORT/bench?sslmode=$sslmode"

# ---- pgtandem ---------------------------------------------------------------
tport=$(free_port); taport=$(free_port)
# shellcheck disable=SC3045  # dash and bash both have ulimit -n/-H
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn \
  --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=$sslmode" >"$work/pgtandem.log" 2>&1 &
tpid=$!
pids="$pids $tpid"

# ---- pgbouncer (session mode, SCRAM secret in its auth_file) ----------------
bport=$(free_port)
write_pgbouncer_ini "$work" "$scram" "$bport" "$sslmode" 12000 "$maxconn" "$work/pgbouncer.log"
cat >>"$work/pgbouncer.ini" <<INI
; idle server connections go soon, so the memory rounds find free backend slots
server_idle_timeout = 3
INI
[ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer.ini" "$work/userlist.txt"
$RUN sh -c "ulimit -n \$(ulimit -Hn); exec pgbouncer -d '$work/pgbouncer.ini'" >"$work/pgbouncer.out" 2>&1 || {
  cat "$work/pgbouncer.out" "$work/pgbouncer.log" 2>/dev/null; exit 1; }

wait_port "$tport"; wait_port "$bport"
bpid=$(cat "$work/pgbouncer.pid")

echo "== pgbench -i -s ${SCALE:-10}"
pgbench -i -q -s "${SCALE:-10}" "$direct_uri" >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }

stamp=$(date -u +%Y-%m-%d)
TPID=$tpid BPID=$bpid TPORT=$tport BPORT=$bport DIRECT_URI="$direct_uri" WORK="$work" PGT_SUPER_URI="$PGT_SUPER_URI" \
OUT=${OUT:-bench/results/proxy-$stamp} MAXCONN=$maxconn SSLMODE=$sslmode /usr/bin/python3 - <<'PY'
import datetime, json, os, platform, re, resource, statistics, subprocess, sys, time

import psycopg

env = os.environ
rounds = int(env.get("ROUNDS", "3"))
duration = int(env.get("DURATION", "10"))
clients = [int(c) for c in env.get("CLIENTS", "1 16 64").split()]
targets = env.get("TARGETS", "pgtandem pgbouncer direct").split()
workloads = env.get("WORKLOADS", "select tpcb").split()
mode = env.get("MODE", "simple")
mem_conns = [int(n) for n in env.get("MEM_CONNS", "1000 2000 10000").split()]
maxconn = int(env["MAXCONN"])
tpid, bpid = int(env["TPID"]), int(env["BPID"])
uris = {
    "pgtandem": "postgresql://app:apppass@127.0.0.1:%s/bench?sslmode=disable" % env["TPORT"],
    "pgbouncer": "postgresql://app:apppass@127.0.0.1:%s/bench?sslmode=disable" % env["BPORT"],
    "direct": env["DIRECT_URI"],
}
pids = {"pgtandem": tpid, "pgbouncer": bpid}
ncpu = os.cpu_count() or 1


def cpu_s(pid):
    """User + system CPU seconds the process has used (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def pgbench(target, workload, c):
    args = ["pgbench", "-n", "-c", str(c), "-j", str(min(c, ncpu)), "-T", str(duration), "-M", mode]
    if workload == "select":
        args.append("-S")
    args.append(uris[target])
    cpu_before = cpu_s(pids[target]) if target in pids else None
    r = subprocess.run(args, capture_output=True, text=True, timeout=duration * 10 + 120)
    cpu_used = cpu_s(pids[target]) - cpu_before if target in pids else None
    out = r.stdout + r.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    if r.returncode != 0 or not tps:
        print("pgbench failed (%s %s %d):\n%s" % (target, workload, c, out[-2000:]), file=sys.stderr)
        return None
    res = {"tps": float(tps.group(1)), "latency_ms": float(lat.group(1)) if lat else None,
           "failed": int(failed.group(1)) if failed else None}
    if cpu_used is not None and done and int(done.group(1)):
        # the proxy's own CPU per transaction: what the hop costs, whatever
        # else shares the machine (TPS moves with the load, this far less)
        res["cpu_us_per_tx"] = round(cpu_used * 1e6 / int(done.group(1)), 1)
    return res


load_before = os.getloadavg()
runs = []
print("== %d rounds x %d s, targets %s, clients %s, -M %s" % (rounds, duration, targets, clients, mode))
for rnd in range(rounds):
    order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
    for workload in workloads:
        for c in clients:
            for t in order:
                res = pgbench(t, workload, c)
                if res:
                    res["load_1min"] = round(os.getloadavg()[0], 2)
                print("round %d %-6s %2d clients %-9s %s" % (rnd + 1, workload, c, t, res), flush=True)
                if res:
                    runs.append(dict(res, round=rnd + 1, workload=workload, clients=c, target=t))


sys.path.insert(0, "bench")
from benchlib import rss_kb, rss_with_idle_clients  # noqa: E402

mem = []
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
cap = maxconn - 50


def wait_for_backends_to_leave(limit_s=60):
    """Waits until the app role's backends are gone (PgBouncer closes its idle
    server connections after server_idle_timeout), so the next holder finds slots."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        with psycopg.connect(env["PGT_SUPER_URI"], autocommit=True) as c:
            if c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").fetchone()[0] < 20:
                return
        time.sleep(1.0)

# Each proxy's RSS before the first holder is the base of every count: memory
# freed after a round is kept by the process and reused by the next, larger one.
bases = {"pgtandem": rss_kb(tpid), "pgbouncer": rss_kb(bpid)}
for n in sorted(mem_conns):
    for t in ("pgtandem", "pgbouncer"):
        if n > cap:
            mem.append({"target": t, "connections": n, "measured": False,
                        "why": "needs %d Postgres backends in session mode; the cluster allows %d" % (n, maxconn)})
            continue
        time.sleep(1.0)
        base = bases[t]
        held = rss_with_idle_clients(pids[t], uris[t], n)
        if held is None:
            mem.append({"target": t, "connections": n, "measured": False, "why": "holder failed"})
            continue
        per = (held - base) * 1024.0 / n
        mem.append({"target": t, "connections": n, "measured": True, "rss_idle_kb": base,
                    "rss_held_kb": held, "bytes_per_connection": round(per)})
        print("memory %-9s %5d connections: RSS %d kB -> %d kB, %.0f bytes/connection" % (t, n, base, held, per),
              flush=True)
        wait_for_backends_to_leave()

# ---- summary ----------------------------------------------------------------
summary = []
for workload in workloads:
    for c in clients:
        row = {"workload": workload, "clients": c}
        for t in targets:
            tps = [r["tps"] for r in runs if r["workload"] == workload and r["clients"] == c and r["target"] == t]
            lat = [r["latency_ms"] for r in runs if r["workload"] == workload and r["clients"] == c
                   and r["target"] == t and r["latency_ms"] is not None]
            cpu = [r["cpu_us_per_tx"] for r in runs if r["workload"] == workload and r["clients"] == c
                   and r["target"] == t and r.get("cpu_us_per_tx") is not None]
            row[t] = {"tps_median": statistics.median(tps) if tps else None,
                      "tps_all": tps, "latency_ms_mean": statistics.mean(lat) if lat else None,
                      "cpu_us_per_tx_median": statistics.median(cpu) if cpu else None, "cpu_us_per_tx_all": cpu}

        def ratio(a, b):
            x = row.get(a, {}).get("tps_median")
            y = row.get(b, {}).get("tps_median")
            return round(x / y, 3) if x and y else None

        def cpu_ratio(a, b):
            x = row.get(a, {}).get("cpu_us_per_tx_median")
            y = row.get(b, {}).get("cpu_us_per_tx_median")
            return round(x / y, 3) if x and y else None

        row["pgtandem/pgbouncer"] = ratio("pgtandem", "pgbouncer")
        row["cpu pgtandem/pgbouncer"] = cpu_ratio("pgtandem", "pgbouncer")
        row["pgtandem/direct"] = ratio("pgtandem", "direct")
        row["pgbouncer/direct"] = ratio("pgbouncer", "direct")
        summary.append(row)

pgv = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
meta = {
    "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
    "host": platform.node(), "cpus": ncpu, "kernel": platform.release(),
    "postgres": subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip(),
    "pgbouncer": pgv, "rounds": rounds, "duration_s": duration, "query_mode": mode,
    "load_average_before": [round(x, 2) for x in load_before],
    "load_average_after": [round(x, 2) for x in os.getloadavg()],
    "scale": int(env.get("SCALE", "10")), "upstream_sslmode": env["SSLMODE"], "max_connections": maxconn,
}


def fmt(x, spec="%.0f"):
    return spec % x if x is not None else "-"


lines = ["| workload | clients | pgtandem TPS | PgBouncer TPS | direct TPS | pgtandem/PgBouncer | "
         "pgtandem/direct | PgBouncer/direct | latency ms (pgtandem / PgBouncer / direct) | "
         "proxy CPU µs per transaction (pgtandem / PgBouncer) | CPU per transaction pgtandem/PgBouncer |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
for r in summary:
    g = lambda t, k: r.get(t, {}).get(k)
    lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s | %s |" % (
        "select-only" if r["workload"] == "select" else "TPC-B-like", r["clients"],
        fmt(g("pgtandem", "tps_median")), fmt(g("pgbouncer", "tps_median")), fmt(g("direct", "tps_median")),
        fmt(r["pgtandem/pgbouncer"], "%.2f"), fmt(r["pgtandem/direct"], "%.2f"), fmt(r["pgbouncer/direct"], "%.2f"),
        fmt(g("pgtandem", "latency_ms_mean"), "%.3f"), fmt(g("pgbouncer", "latency_ms_mean"), "%.3f"),
        fmt(g("direct", "latency_ms_mean"), "%.3f"),
        fmt(g("pgtandem", "cpu_us_per_tx_median"), "%.1f"), fmt(g("pgbouncer", "cpu_us_per_tx_median"), "%.1f"),
        fmt(r["cpu pgtandem/pgbouncer"], "%.2f")))
mlines = ["| proxy | idle connections | RSS before (kB) | RSS holding (kB) | bytes per connection |",
          "|---|---:|---:|---:|---:|"]
for m in mem:
    if m["measured"]:
        mlines.append("| %s | %d | %d | %d | %d |" % (m["target"], m["connections"], m["rss_idle_kb"],
                                                      m["rss_held_kb"], m["bytes_per_connection"]))
    else:
        mlines.append("| %s | %d | - | - | not measured: %s |" % (m["target"], m["connections"], m["why"]))
table = "\n".join(lines)
mtable = "\n".join(mlines)

md = """# Proxy benchmark, %(date)s

Machine: %(cpus)d CPUs, kernel %(kernel)s; %(postgres)s; %(pgbouncer)s.
pgbench scale %(scale)d, query mode `%(query_mode)s`, %(rounds)d rounds x %(duration_s)d s per cell; the order
of pgtandem / PgBouncer / direct rotates every round and the table shows the median TPS of the rounds and
the mean of pgbench's average latency; the proxy's CPU per transaction is its user + system time
(/proc/PID/stat fields 14 and 15, every thread of the process) over the run divided by the transactions
pgbench completed (median of the rounds), and its ratio is pgtandem's median over PgBouncer's (below 1:
pgtandem spends less CPU per transaction). Each run's 1-minute load average is in the JSON.
Both proxies run in session mode and reach Postgres over TLS
(`sslmode=%(upstream_sslmode)s`); direct runs use the same sslmode, so the extra hop is the only difference.
Clients reach the proxies over plain TCP on loopback. Everything (Postgres, proxies, pgbench) shares the
same %(cpus)d CPUs, so at high client counts the proxies compete with Postgres for CPU. Load average
before / after the pgbench runs: %(load_average_before)s / %(load_average_after)s (anything well above the CPU
count means other work shared the machine and the figures are noisy).

""" % meta
md += table + "\n\n## Memory per idle connection\n\n"
md += """Method: RSS (VmRSS from /proc) of the proxy process before the first memory round and while a holder process keeps N
clients connected, each logged in (SCRAM) and having run one query, so that in session mode each client
owns an upstream connection in both proxies. Per-connection bytes = (RSS holding - RSS before) / N.
Each client therefore costs a Postgres backend; the bench cluster runs with max_connections = %(max_connections)d,
and counts above that cannot be held this way on this machine (10,000 backends would need far more memory
than it has), so they are reported as not measured rather than simulated.

""" % meta
md += mtable + "\n"

out = env["OUT"]
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out + ".md", "w") as f:
    f.write(md)
with open(out + ".json", "w") as f:
    json.dump({"meta": meta, "summary": summary, "runs": runs, "memory": mem}, f, indent=2)
print()
print(table)
print()
print(mtable)
print("\nwrote %s.md and %s.json" % (out, out))
PY
