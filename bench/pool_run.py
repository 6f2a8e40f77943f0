"""The measuring half of bench/pool.sh (run by it, with the poolers started):
pgbench through each target, CPU per transaction from /proc, idle memory,
and the results as OUT.md and OUT.json."""
import datetime
import glob
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import rss_kb, rss_with_idle_clients  # noqa: E402

env = os.environ
rounds = int(env.get("ROUNDS", "2"))
duration = int(env.get("DURATION", "10"))
clients = [int(c) for c in env.get("CLIENTS", "10 100 1000 5000").split()]
prepared_clients = int(env.get("PREPARED_CLIENTS", "1000"))
mem_conns = int(env.get("MEM_CONNS", "10000"))
work = env["WORK"]
pids = {"pgtandem": int(env["TPID"]), "pgbouncer": int(env["BPID"])}
ports = {"pgtandem": int(env["TPORT"]), "pgbouncer": int(env["BPORT"])}
uris = {t: "postgresql://app:apppass@127.0.0.1:%d/bench?sslmode=disable" % port for t, port in ports.items()}
uris["direct"] = env["DIRECT_URI"]
targets = ["pgtandem", "pgbouncer", "direct"]
ncpu = os.cpu_count() or 1
tick = os.sysconf("SC_CLK_TCK")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_s(pid):
    """(user, system) CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def run_seconds(c):
    """pgbench's -T counts the clients' logins (SCRAM: 4,096 PBKDF2 iterations
    each, on the client side; 5,000 take about 17 s here): one more second per
    250 clients, so that every count runs about `duration` seconds of
    transactions (TPS is pgbench's, without the initial connection time)."""
    return duration + c // 250


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def pgbench_command(target, c, seconds, logdir, mode="simple", jobs=None):
    """pgbench -S with a per-transaction log in logdir (read by transaction_log)."""
    os.makedirs(logdir, exist_ok=True)
    return ["pgbench", "-n", "-S", "-c", str(c), "-j", str(jobs or min(c, ncpu)), "-T", str(seconds), "-M", mode,
            "-l", "--log-prefix", os.path.join(logdir, "tx"), uris[target]]


def transaction_log(logdir):
    """The fields of each line of pgbench's per-transaction logs in logdir
    (client, transaction, latency us, script, epoch s, us); the logs are
    removed once read."""
    for path in glob.glob(os.path.join(logdir, "tx*")):
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
        os.unlink(path)
        yield from lines


def pgbench(target, c, mode="simple", jobs=None):
    logdir = os.path.join(work, "log-%s-%d-%s" % (target, c, mode))
    args = pgbench_command(target, c, run_seconds(c), logdir, mode, jobs)
    before = cpu_s(pids[target]) if target in pids else None
    r = subprocess.run(args, capture_output=True, text=True, timeout=run_seconds(c) * 20 + 300, cwd=logdir)
    after = cpu_s(pids[target]) if target in pids else None
    out = r.stdout + r.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    done = re.search(r"actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    aborted = len(re.findall(r"aborted", out))
    lat = sorted(int(fields[2]) for fields in transaction_log(logdir))
    res = {"target": target, "clients": c, "mode": mode, "ok": r.returncode == 0 and bool(tps),
           "tps": float(tps.group(1)) if tps else 0.0, "transactions": int(done.group(1)) if done else 0,
           "failed": int(failed.group(1)) if failed else None, "aborted_lines": aborted,
           "p50_ms": percentile(lat, 0.50) / 1000.0 if lat else None,
           "p99_ms": percentile(lat, 0.99) / 1000.0 if lat else None}
    if before is not None and res["transactions"]:
        user, system = ((a - b) * 1e6 / res["transactions"] for a, b in zip(after, before))
        res["cpu_us_per_tx"] = round(user + system, 2)
        res["cpu_system_share"] = round(system / (user + system), 3) if user + system else None
    if not res["ok"]:
        errs = [l for l in out.splitlines() if "error" in l.lower()]
        # one line: it goes into a Markdown table cell
        res["error"] = " ".join((errs[0][:200] if errs else out[-200:]).split())
    return res


def all_pids_named(name):
    found = []
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(comm) as f:
                if f.read().strip() == name:
                    found.append(int(comm.split("/")[2]))
        except OSError:
            pass
    return found


def machine_counters():
    """Idle CPU seconds (all CPUs) and context switches since boot."""
    idle = ctxt = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                idle = int(line.split()[4]) / tick
            elif line.startswith("ctxt "):
                ctxt = int(line.split()[1])
    return idle, ctxt


def sample(target, bench_pid):
    """CPU seconds of the pooler (user, system), pgbench, every Postgres
    process, the machine's idle time and context switches, and the time."""
    pg = {}
    for pid in all_pids_named("postgres"):
        try:
            pg[pid] = sum(cpu_s(pid))
        except OSError:
            pass
    idle, ctxt = machine_counters()
    return {"t": time.time(), "pooler": cpu_s(pids[target]), "pgbench": sum(cpu_s(bench_pid)), "postgres": pg,
            "idle": idle, "ctxt": ctxt}


def established_to(port):
    """Established TCP connections to 127.0.0.1:port, counted from the client side."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2] == "0100007F:%04X" % port and fields[3] == "01":
                n += 1
    return n


def breakdown(target, c, window):
    """Where the machine's CPU goes per transaction once every client is in
    (logins excluded): pgbench runs on; /proc is sampled at the start and the
    end of a window, and the transactions in it are counted from pgbench's
    per-transaction log (completion times)."""
    logdir = os.path.join(work, "breakdown-%s-%d" % (target, c))
    port = ports[target]
    total = run_seconds(c) + window + 4
    bench = subprocess.Popen(pgbench_command(target, c, total, logdir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=logdir)
    deadline = time.time() + total
    while established_to(port) < c and bench.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the first transactions' queue settles
    a = sample(target, bench.pid)
    time.sleep(window)
    b = sample(target, bench.pid)
    bench.wait(timeout=total * 5 + 300)
    tx = sum(1 for fields in transaction_log(logdir)
             if len(fields) >= 6 and a["t"] <= int(fields[4]) + int(fields[5]) / 1e6 < b["t"])
    if not tx:
        return {"target": target, "clients": c, "ok": False}
    per = 1e6 / tx
    pg = sum(b["postgres"][p] - a["postgres"][p] for p in b["postgres"] if p in a["postgres"])
    return {"target": target, "clients": c, "ok": True, "window_s": round(b["t"] - a["t"], 2),
            "tps": round(tx / (b["t"] - a["t"])),
            "pooler_user_us": round((b["pooler"][0] - a["pooler"][0]) * per, 1),
            "pooler_kernel_us": round((b["pooler"][1] - a["pooler"][1]) * per, 1),
            "pgbench_us": round((b["pgbench"] - a["pgbench"]) * per, 1), "postgres_us": round(pg * per, 1),
            "idle_us": round((b["idle"] - a["idle"]) * per, 1),
            "context_switches": round((b["ctxt"] - a["ctxt"]) / tx, 2)}


load_before = os.getloadavg()
runs = []
print("== %d rounds x %d s, -S, clients %s, pool %s" % (rounds, duration, clients, env["POOLSIZE"]), flush=True)
for rnd in range(rounds):
    order = targets[rnd % 3:] + targets[:rnd % 3]
    for c in clients:
        for t in order:
            res = pgbench(t, c)
            res["round"] = rnd + 1
            res["load_1min"] = round(os.getloadavg()[0], 2)
            runs.append(res)
            print("round %d %5d clients %-9s tps %9.0f p50 %s p99 %s cpu/tx %s failed %s%s" % (
                rnd + 1, c, t, res["tps"], res["p50_ms"], res["p99_ms"], res.get("cpu_us_per_tx"), res["failed"],
                "" if res["ok"] else "  ERROR " + res.get("error", "")), flush=True)

prepared = []
for t in targets:
    # one thread per client: -M prepared prepares with a blocking call on first use
    res = pgbench(t, prepared_clients, "prepared", jobs=prepared_clients)
    prepared.append(res)
    print("prepared %5d clients %-9s tps %9.0f p99 %s failed %s%s" % (
        prepared_clients, t, res["tps"], res["p99_ms"], res["failed"],
        "" if res["ok"] else "  ERROR " + res.get("error", "")), flush=True)


split_clients = int(env.get("SPLIT_CLIENTS", "1000"))
split_window = int(env.get("SPLIT_WINDOW", "15"))
split = []
for rnd in range(rounds):
    for t in ("pgtandem", "pgbouncer") if rnd % 2 == 0 else ("pgbouncer", "pgtandem"):
        res = breakdown(t, split_clients, split_window)
        res["round"] = rnd + 1
        split.append(res)
        print("split %d clients %-9s %s" % (split_clients, t, json.dumps(res)), flush=True)

memory = []
for t in ("pgtandem", "pgbouncer"):
    base = rss_kb(pids[t])
    held = rss_with_idle_clients(pids[t], uris[t], mem_conns)
    if held is None:
        memory.append({"target": t, "connections": mem_conns, "measured": False})
        continue
    per = (held - base) * 1024.0 / mem_conns
    memory.append({"target": t, "connections": mem_conns, "measured": True, "rss_base_kb": base,
                   "rss_held_kb": held, "bytes_per_client": round(per)})
    print("memory %-9s %d idle clients: RSS %d kB -> %d kB, %.0f bytes/client" % (t, mem_conns, base, held, per),
          flush=True)


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


summary = []
for c in clients:
    row = {"clients": c}
    for t in targets:
        mine = [r for r in runs if r["target"] == t and r["clients"] == c]
        ok = [r for r in mine if r["ok"]]
        row[t] = {"tps": median([r["tps"] for r in ok]), "p50_ms": median([r["p50_ms"] for r in ok]),
                  "p99_ms": median([r["p99_ms"] for r in ok]), "cpu_us_per_tx": median([r.get("cpu_us_per_tx")
                                                                                       for r in ok]),
                  "cpu_system_share": median([r.get("cpu_system_share") for r in ok]),
                  "failed_runs": len(mine) - len(ok), "failed_tx": sum(r["failed"] or 0 for r in ok),
                  "error": next((r.get("error") for r in mine if not r["ok"]), None)}

    def ratio(key):
        x, y = row["pgtandem"][key], row["pgbouncer"][key]
        return round(x / y, 3) if x and y else None

    row["tps pgtandem/pgbouncer"] = ratio("tps")
    row["cpu pgtandem/pgbouncer"] = ratio("cpu_us_per_tx")
    summary.append(row)

out = env["OUT"]
meta = {"date": datetime.datetime.utcnow().isoformat() + "Z", "host": platform.node(), "cpus": ncpu,
        "rounds": rounds, "duration_s": duration, "pool_size": int(env["POOLSIZE"]), "max_connections": 50,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()]}
with open(out + ".json", "w") as f:
    json.dump({"meta": meta, "runs": runs, "summary": summary, "prepared": prepared, "split": split,
               "memory": memory}, f, indent=1)


def fmt(v, spec="%.0f"):
    return "—" if v is None else spec % v


lines = ["# Transaction pooling: pgtandem vs PgBouncer vs direct (`sh bench/pool.sh`)", "",
         "%s, %d CPUs, Postgres max_connections 50, pools of %s, pgbench -S, median of %d rounds x %d s "
         "(+1 s per 250 clients for their logins). Pooler CPU: user+system from /proc over the run "
         "(logins included) / transactions; kernel: the system part of it." % (
             meta["date"], ncpu, env["POOLSIZE"], rounds, duration), "",
         "| clients | target | TPS | p50 ms | p99 ms | pooler CPU µs/tx | kernel | failed |",
         "|---|---|---|---|---|---|---|---|"]
for row in summary:
    for t in targets:
        r = row[t]
        failed = r["error"] if r["failed_runs"] else str(r["failed_tx"])
        share = r["cpu_system_share"]
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
            row["clients"], t, fmt(r["tps"]), fmt(r["p50_ms"], "%.2f"), fmt(r["p99_ms"], "%.2f"),
            fmt(r["cpu_us_per_tx"], "%.1f"), fmt(share * 100 if share is not None else None, "%.0f %%"), failed))
lines += ["", "pgtandem against PgBouncer, each a ratio of the medians above (CPU below 1: pgtandem spends "
          "less per transaction). Load average (1, 5, 15 min) before the runs %s, after everything %s; each "
          "run's 1-minute load is in the JSON." % (meta["load_before"], meta["load_after"]), "",
          "| clients | TPS pgtandem/PgBouncer | CPU per transaction pgtandem/PgBouncer |", "|---|---|---|"]
for row in summary:
    lines.append("| %d | %s | %s |" % (row["clients"], fmt(row["tps pgtandem/pgbouncer"], "%.2f"),
                                      fmt(row["cpu pgtandem/pgbouncer"], "%.2f")))
lines += ["", "pgbench -S -M prepared, %d clients (one thread each):" % prepared_clients, "",
          "| target | TPS | p99 ms | failed |", "|---|---|---|---|"]
for r in prepared:
    lines.append("| %s | %s | %s | %s |" % (r["target"], fmt(r["tps"]), fmt(r["p99_ms"], "%.2f"),
                                           r.get("error") if not r["ok"] else r["failed"]))
lines += ["", "Where the machine's %d CPUs go per transaction at %d clients once all are logged in: each window "
          "of %d s, CPU from /proc, transactions from pgbench's log. \"Ceiling\": the TPS a pooler that cost "
          "nothing would reach with that window's pgbench, Postgres and idle time, %d CPUs / their sum." % (
              ncpu, split_clients, split_window, ncpu), "",
          "| round | target | TPS | pooler user µs | pooler kernel µs | pgbench µs | Postgres µs | idle µs | "
          "context switches | ceiling TPS |", "|---|---|---|---|---|---|---|---|---|---|"]
for r in split:
    if not r["ok"]:
        lines.append("| %d | %s | no transactions counted | | | | | | | |" % (r["round"], r["target"]))
        continue
    rest = r["pgbench_us"] + r["postgres_us"] + r["idle_us"]
    r["ceiling_tps"] = round(ncpu * 1e6 / rest) if rest else None
    lines.append("| %d | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %s |" % (
        r["round"], r["target"], r["tps"], r["pooler_user_us"], r["pooler_kernel_us"], r["pgbench_us"],
        r["postgres_us"], r["idle_us"], r["context_switches"], fmt(r["ceiling_tps"])))
lines += ["", "Idle clients (each ran one `SELECT 1`), resident memory of the pooler:", "",
          "| target | clients | bytes per client |", "|---|---|---|"]
for m in memory:
    lines.append("| %s | %d | %s |" % (m["target"], m["connections"],
                                       m["bytes_per_client"] if m["measured"] else "not measured"))
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
print("wrote %s.md and %s.json" % (out, out))
