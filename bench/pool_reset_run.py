"""The measuring half of bench/pool_reset.sh (run by it, with both proxies
started): pgbench -S through each, the order rotating every round, and the
results as OUT.md and OUT.json."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import run_header  # noqa: E402

env = os.environ
rounds = int(env.get("ROUNDS", "3"))
duration = int(env.get("DURATION", "10"))
clients = [int(c) for c in env.get("CLIENTS", "10 100").split()]
work, out = env["WORK"], env["OUT"]
ports = {}
for item in env["PORTS"].split():
    reset, port, _admin = item.split(":")
    ports["on" if reset == "true" else "off"] = int(port)
names = ["off", "on"]


def percentile(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def pgbench(name, c, rnd):
    logdir = os.path.join(work, "log-%s-%d-%d" % (name, c, rnd))
    os.makedirs(logdir)
    uri = "postgresql://app:apppass@127.0.0.1:%d/bench?sslmode=disable" % ports[name]
    r = subprocess.run(["pgbench", "-n", "-S", "-c", str(c), "-j", "2", "-T", str(duration), "-l", "--log-prefix",
                        os.path.join(logdir, "tx"), uri], capture_output=True, text=True,
                       timeout=duration * 20 + 120, cwd=logdir)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    lat = []
    for f in os.listdir(logdir):
        with open(os.path.join(logdir, f)) as fh:
            lat.extend(int(line.split()[2]) for line in fh if line.strip())
    lat.sort()
    return {"tps": float(m.group(1)) if m else None, "failed": int(failed.group(1)) if failed else None,
            "rc": r.returncode, "p50_ms": percentile(lat, 0.5) / 1000 if lat else None,
            "p99_ms": percentile(lat, 0.99) / 1000 if lat else None, "transactions": len(lat)}


results = {c: {n: [] for n in names} for c in clients}
for rnd in range(rounds):
    for c in clients:
        order = names if rnd % 2 == 0 else names[::-1]
        for n in order:
            got = pgbench(n, c, rnd)
            results[c][n].append(got)
            print("round %d, %d clients, reset %s: %.0f tps, p50 %.3f ms, p99 %.3f ms, failed %s"
                  % (rnd + 1, c, n, got["tps"] or 0, got["p50_ms"] or 0, got["p99_ms"] or 0, got["failed"]),
                  flush=True)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


summary = {}
for c in clients:
    row = {n: {k: median([r[k] for r in results[c][n]]) for k in ("tps", "p50_ms", "p99_ms")} for n in names}
    row["failed"] = sum((r["failed"] or 0) + (r["rc"] != 0) for n in names for r in results[c][n])
    row["tps_ratio_on_off"] = (row["on"]["tps"] / row["off"]["tps"]) if row["off"]["tps"] and row["on"]["tps"] else None
    summary[c] = row

header = run_header(env["DIRECT_URI"])
lines = [
    "# server_reset_query_always: what it costs (bench/pool_reset.sh)", "",
    "%s, %s, PostgreSQL %s" % (header["date"], header["machine"], header["postgres"]), "",
    "pgbench -S through pgtandem in transaction mode, pool of %s, %d rounds of %d s, order rotating; "
    "medians over the rounds. `on`: RESET ALL ahead of each transaction whose server another client used last."
    % (env.get("POOL", "10"), rounds, duration), "",
    "| clients | TPS off | TPS on | on/off | p50 off (ms) | p50 on (ms) | p99 off (ms) | p99 on (ms) | failed |",
    "|---|---|---|---|---|---|---|---|---|"]
for c in clients:
    s = summary[c]
    lines.append("| %d | %.0f | %.0f | %.2f | %.3f | %.3f | %.3f | %.3f | %d |" % (
        c, s["off"]["tps"], s["on"]["tps"], s["tps_ratio_on_off"], s["off"]["p50_ms"], s["on"]["p50_ms"],
        s["off"]["p99_ms"], s["on"]["p99_ms"], s["failed"]))
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
with open(out + ".json", "w") as f:
    json.dump({"header": header, "rounds": rounds, "duration_s": duration, "summary": summary, "runs": results}, f, indent=1)
print("\n".join(lines))
