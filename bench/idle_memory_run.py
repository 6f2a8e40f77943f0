"""The measuring half of bench/idle_memory.sh (run by it, with the poolers
started). `measure`: idle clients through pgtandem and PgBouncer at each
count, the poolers' RSS before and while they are held, one JSON line per
measurement appended to $RESULTS; in transaction mode again after a pgbench
run through each pooler. `report`: OUT.md and OUT.json from those lines."""
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import rss_kb  # noqa: E402

env = os.environ
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
TARGETS = ("pgtandem", "pgbouncer")

HOLDER = r'''
import resource, sys, psycopg
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
uri, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    c = psycopg.connect(uri, autocommit=True, connect_timeout=60)
    c.execute("SELECT 1")  # in session mode the client now owns a server connection
    conns.append(c)
print("ready", flush=True)
sys.stdin.readline()
'''


def port_of(uri):
    """The port of a libpq URI or key=value string."""
    if uri.startswith("postgresql://"):
        return int(uri.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    return int(dict(kv.split("=", 1) for kv in uri.split())["port"])


def connections_to(port):
    """Server-side TCP connections of 127.0.0.1:port still open (established, or closed by the peer and
    not yet by the pooler)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "0100007F:%04X" % port and fields[3] in ("01", "08"):
                n += 1
    return n


def settle(port, timeout=300):
    """Waits until the pooler has closed every client connection, then 3 s more (a pooler may give memory
    back once its clients stop leaving)."""
    deadline = time.time() + timeout
    while connections_to(port) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)


def hold(uri, n):
    """Opens n idle clients; returns (holder, seconds the logins took), or (None, why) when they did not
    all get in."""
    start = time.time()
    h = subprocess.Popen([sys.executable, "-c", HOLDER, uri, str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         # psycopg's default wait function uses select(), which stops at fd 1024
                         env=dict(os.environ, PSYCOPG_WAIT_FUNC="wait_epoll"))
    if h.stdout.readline().strip() == "ready":
        return h, time.time() - start
    h.kill()
    err = h.stderr.read().strip().splitlines()
    h.wait()
    return None, (err[-1] if err else "holder failed")[:200]


def release(h, port):
    h.stdin.write("\n")
    h.stdin.flush()
    h.wait(timeout=600)
    settle(port)


def record(row):
    row["load"] = [round(x, 2) for x in os.getloadavg()]
    with open(env["RESULTS"], "a") as f:
        f.write(json.dumps(row) + "\n")
    if row.get("measured"):
        print("%-11s tls=%-7s %-6s %-9s %5d clients: RSS %6d -> %7d kB, %5d B/client (%5d over the fresh base), "
              "logins %.0f s, load %s" % (row["mode"], row["tls"], row["state"], row["target"], row["clients"],
                                          row["rss_before_kb"], row["rss_held_kb"], row["bytes_per_client"],
                                          row["bytes_over_fresh"], row["login_s"], row["load"]), flush=True)
    else:
        print("%s %s %s %s %d clients: not measured: %s" % (row["mode"], row["tls"], row["state"], row["target"],
                                                           row["clients"], row["why"]), flush=True)


def measure_counts(state, counts, pids, uris, fresh):
    """Each count in turn (ascending: memory freed between counts stays in the process and is used again by
    the next), over one base per pooler taken before the first, once the poolers are idle."""
    for t in TARGETS:
        settle(port_of(uris[t]))
    base = {t: rss_kb(pids[t]) for t in TARGETS}
    for n in counts:
        for t in TARGETS:
            port = port_of(uris[t])
            settle(port)
            before = base[t]
            h, took = hold(uris[t], n)
            row = {"mode": env["MODE"], "tls": env.get("TLS", "disable"), "state": state, "target": t,
                   "clients": n}
            if h is None:
                row.update(measured=False, why=took)
                record(row)
                continue
            time.sleep(1.0)  # the last logins' buffers are freed
            held = rss_kb(pids[t])
            release(h, port)
            row.update(measured=True, rss_fresh_kb=fresh[t], rss_before_kb=before, rss_held_kb=held,
                       rss_after_release_kb=rss_kb(pids[t]), login_s=round(took, 1),
                       bytes_per_client=round((held - before) * 1024.0 / n),
                       bytes_over_fresh=round((held - fresh[t]) * 1024.0 / n))
            record(row)


def pgbench_through(t, uri):
    """pgbench -S, simple protocol then -M prepared, through one pooler; its clients all gone after."""
    clients = int(env.get("BENCH_CLIENTS", "1000"))
    seconds = int(env.get("BENCH_SECONDS", "10"))
    out = {}
    for mode, c in (("simple", clients), ("prepared", min(clients, 100))):
        # pgbench's -T includes its clients' SCRAM logins: one more second per 250 clients
        r = subprocess.run(["pgbench", "-n", "-S", "-M", mode, "-c", str(c), "-j", "2", "-T",
                            str(seconds + c // 250), uri], capture_output=True, text=True, timeout=1800)
        tps = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("tps = ")]
        out[mode] = {"clients": c, "ok": r.returncode == 0, "tps": float(tps[0]) if tps else None}
        print("pgbench %-8s %-9s %4d clients: tps %s%s" % (mode, t, c, tps[0] if tps else "-",
                                                           "" if r.returncode == 0 else " ERROR " + r.stderr[-200:]),
              flush=True)
    settle(port_of(uri))
    return out


def measure():
    pids = {"pgtandem": int(env["TPID"]), "pgbouncer": int(env["BPID"])}
    uris = {"pgtandem": env["TURI"], "pgbouncer": env["BURI"]}
    asked = [int(n) for n in env["CONNS"].split()]
    # A session-mode proxy holds two descriptors per client, a transaction-mode pooler one (and the holder
    # one per client too); a count the hard limit cannot hold is lowered to the largest thousand that fits.
    per_client = 2 if env["MODE"] == "session" else 1
    cap = (hard - 200) // per_client // 1000 * 1000
    counts = sorted(min(n, cap) for n in asked)
    if any(n > cap for n in asked):
        record({"mode": env["MODE"], "tls": env.get("TLS", "disable"), "state": "fresh", "target": "both",
                "clients": max(asked), "measured": False,
                "why": "the hard limit of %d open files per process holds %d clients" % (hard, cap)})
    # Warm up: the first clients page in code and grow the event loop's tables, a cost paid once per
    # process, not per client. Then each process's RSS is the fresh base.
    for t in TARGETS:
        h, _ = hold(uris[t], 100)
        if h:
            release(h, port_of(uris[t]))
    fresh = {t: rss_kb(pids[t]) for t in TARGETS}
    state = env.get("STATE", "fresh")
    if state == "after":
        bench = {t: pgbench_through(t, uris[t]) for t in TARGETS}
        with open(env["RESULTS"], "a") as f:
            f.write(json.dumps({"pgbench": bench, "tls": env["TLS"]}) + "\n")
    measure_counts(state, counts, pids, uris, fresh)


def report():
    rows, benches = [], []
    with open(env["RESULTS"]) as f:
        for line in f:
            r = json.loads(line)
            (benches if "pgbench" in r else rows).append(r)
    version = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    git = subprocess.run(["git", "log", "-1", "--format=%h"], capture_output=True, text=True).stdout.strip()
    loads = [r["load"][0] for r in rows if "load" in r]
    lines = ["# Memory per idle client, %s" % date, "",
             "Machine: %d CPUs, %s; %s; pgtandem at `%s`%s. Command: `sh bench/idle_memory.sh`. "
             "Load average (1 min) during the measurements: %s to %s (the machine is shared)." % (
                 os.cpu_count(), platform.platform(), version, git,
                 "" if env["PGT_BIN_USED"].endswith("/bin/pgtandem") else " (binary %s)" % env["PGT_BIN_USED"],
                 min(loads) if loads else "-", max(loads) if loads else "-"), "",
             "Bytes per client = RSS of the pooler while N idle clients are held, over its RSS before the first "
             "count (fresh: after a warm-up of 100 clients; after: once the benchmark's clients are gone and "
             "3 s have passed), / N; counts ascend, so a later count reuses what an earlier one freed. "
             "\"Over fresh\" = the same RSS over the pooler's RSS after the warm-up, before anything else ran, "
             "/ N: after a benchmark it also counts what the benchmark left behind.", ""]
    for why in [r for r in rows if not r.get("measured")]:
        lines += ["Not measured (%s, %s clients): %s." % (why["mode"], why["clients"], why["why"]), ""]
    tx = [r for r in rows if r.get("measured") and r["mode"] == "transaction"]
    if tx:
        lines += ["## Transaction mode",
                  "", "Both poolers: `--pool-mode transaction --auth scram` (PgBouncer: `pool_mode = transaction`, "
                  "`auth_type = scram-sha-256`), pools of 20 over TLS to a throwaway Postgres; each client logs in "
                  "with SCRAM and runs `SELECT 1`, then stays idle. Client TLS off (`sslmode=disable`) or on "
                  "(`sslmode=require`). \"Fresh\": poolers just started. \"After\": poolers started afresh, then "
                  "`pgbench -S` through each (simple protocol, then `-M prepared`: PgBouncer 1.18 does not support "
                  "protocol-level prepared statements in transaction mode, so its `-M prepared` run fails), all "
                  "its clients gone.", "",
                  "| client TLS | state | idle clients | pgtandem B/client | PgBouncer B/client | ratio | "
                  "pgtandem over fresh | PgBouncer over fresh | pgtandem RSS held (kB) | PgBouncer RSS held (kB) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        keys = []
        for r in tx:
            k = (r["tls"], r["state"], r["clients"])
            if k not in keys:
                keys.append(k)
        for k in keys:
            by = {r["target"]: r for r in tx if (r["tls"], r["state"], r["clients"]) == k}
            t, b = by.get("pgtandem"), by.get("pgbouncer")
            ratio = "%.2f×" % (t["bytes_per_client"] / b["bytes_per_client"]) if t and b and b["bytes_per_client"] \
                else "-"
            lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                "on" if k[0] != "disable" else "off", k[1], k[2],
                t["bytes_per_client"] if t else "-", b["bytes_per_client"] if b else "-", ratio,
                t["bytes_over_fresh"] if t else "-", b["bytes_over_fresh"] if b else "-",
                t["rss_held_kb"] if t else "-", b["rss_held_kb"] if b else "-"))
        lines += ["", "The benchmarks run before the \"after\" rows (TPS):", "",
                  "| client TLS | pgbench | clients | pgtandem | PgBouncer |", "|---|---|---:|---:|---:|"]
        for bench in benches:
            for mode in ("simple", "prepared"):
                t, b = bench["pgbench"]["pgtandem"][mode], bench["pgbench"]["pgbouncer"][mode]
                lines.append("| %s | -S -M %s | %d | %s | %s |" % (
                    "on" if bench["tls"] != "disable" else "off", mode, t["clients"],
                    "%.0f" % t["tps"] if t["ok"] else "failed", "%.0f" % b["tps"] if b["ok"] else "failed"))
        lines += ["", "Every row in full (RSS before, held and after release, login time, load):", "",
                  "| client TLS | state | target | clients | RSS fresh | RSS before | RSS held | RSS after release "
                  "| logins s | load 1/5/15 |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in tx:
            lines.append("| %s | %s | %s | %d | %d | %d | %d | %d | %.0f | %s |" % (
                "on" if r["tls"] != "disable" else "off", r["state"], r["target"], r["clients"], r["rss_fresh_kb"],
                r["rss_before_kb"], r["rss_held_kb"], r["rss_after_release_kb"], r["login_s"],
                " / ".join("%.1f" % x for x in r["load"])))
        lines.append("")
    sm = [r for r in rows if r.get("measured") and r["mode"] == "session"]
    if sm:
        lines += ["## Session mode", "",
                  "Both proxies in session mode in front of `bench/idle_upstream.py` (answers like an idle "
                  "Postgres: trust login, no TLS on either leg); each client logs in and runs `SELECT 1`, so it "
                  "owns an upstream connection (two descriptors per client).", "",
                  "| proxy | idle clients | RSS warm, idle (kB) | RSS holding (kB) | bytes per client |",
                  "|---|---:|---:|---:|---:|"]
        for r in sm:
            lines.append("| %s | %d | %d | %d | %d |" % (r["target"], r["clients"], r["rss_before_kb"],
                                                         r["rss_held_kb"], r["bytes_per_client"]))
        lines.append("")
    out = env["OUT"]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(out + ".json", "w") as f:
        json.dump({"date": date, "pgbouncer": version, "commit": git, "binary": env["PGT_BIN_USED"],
                   "results": rows, "pgbench": benches}, f, indent=1)
    print("\n".join(lines))
    print("wrote %s.md and %s.json" % (out, out))


if __name__ == "__main__":
    {"measure": measure, "report": report}[sys.argv[1]]()
