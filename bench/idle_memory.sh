#!/bin/sh
# Memory per idle client at 1,000 and 10,000 clients, pgtandem vs PgBouncer.
#
# In session mode every idle client keeps an upstream connection, and this
# machine cannot run 10,000 Postgres backends; bench/proxy.sh measures up to
# what the real cluster holds. Here both proxies sit in front of
# bench/idle_upstream.py, which answers like an idle Postgres (trust login, no
# TLS), so the count is limited only by descriptors. A holder process opens N
# clients (each logs in and runs SELECT 1, so each owns an upstream
# connection) and the proxy's RSS growth / N is the figure.
#
#   MEM_CONNS="1000 10000"   OUT=bench/results/idle-memory-<date>
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/bin/pgtandem"
[ -x "$bin" ] || make -s all
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (make deps)" >&2; exit 1; }
# shellcheck disable=SC3045  # dash and bash both have ulimit -n/-H
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/pgtandem-idlemem.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$top/bench/lib.sh"

uport=$(free_port)
/usr/bin/python3 bench/idle_upstream.py "$uport" >"$work/upstream.log" 2>&1 &
pids="$pids $!"
wait_port "$uport"

tport=$(free_port); taport=$(free_port)
"$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn \
  --upstream "postgresql://127.0.0.1:$uport/?sslmode=disable" >"$work/pgtandem.log" 2>&1 &
tpid=$!
pids="$pids $tpid"

bport=$(free_port)
printf '"app" ""\n' >"$work/userlist.txt"
cat >"$work/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$uport dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 30000
default_pool_size = 30000
max_db_connections = 0
server_tls_sslmode = disable
server_reset_query =
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
log_connections = 0
log_disconnections = 0
INI
[ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer.ini" "$work/userlist.txt"
$RUN sh -c "ulimit -n 65536 2>/dev/null || ulimit -n \$(ulimit -Hn); exec pgbouncer -d '$work/pgbouncer.ini'" \
  >"$work/pgbouncer.out" 2>&1 || { cat "$work/pgbouncer.out" "$work/pgbouncer.log" 2>/dev/null; exit 1; }
wait_port "$tport"; wait_port "$bport"
bpid=$(cat "$work/pgbouncer.pid")

TPID=$tpid BPID=$bpid TPORT=$tport BPORT=$bport OUT=${OUT:-bench/results/idle-memory-$(date -u +%Y-%m-%d)} \
/usr/bin/python3 - <<'PY'
import datetime, json, os, platform, resource, subprocess, sys, time

env = os.environ
# A session-mode proxy holds two descriptors per client (client and upstream);
# a count the hard descriptor limit cannot hold is lowered to the largest
# thousand that fits, and the report says so.
fd_cap = (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2 // 1000 * 1000
asked = [int(n) for n in env.get("MEM_CONNS", "1000 10000").split()]
counts = sorted(min(n, fd_cap) for n in asked)
capped = [(a, min(a, fd_cap)) for a in asked if a > fd_cap]
pids = {"pgtandem": int(env["TPID"]), "pgbouncer": int(env["BPID"])}
uris = {"pgtandem": "host=127.0.0.1 port=%s dbname=bench user=app sslmode=disable" % env["TPORT"],
        "pgbouncer": "host=127.0.0.1 port=%s dbname=bench user=app sslmode=disable" % env["BPORT"]}

HOLDER = r'''
import resource, sys, psycopg
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
uri, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    c = psycopg.connect(uri, autocommit=True, connect_timeout=20)
    c.execute("SELECT 1")
    conns.append(c)
print("ready", flush=True)
sys.stdin.readline()
'''


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def hold(t, n):
    """Opens n idle clients through t; returns the holder once they are all in, or None."""
    h = subprocess.Popen([sys.executable, "-c", HOLDER, uris[t], str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, PSYCOPG_WAIT_FUNC="wait_epoll"))
    if h.stdout.readline().strip() == "ready":
        return h
    h.kill()
    return None


def release(h):
    h.stdin.write("\n")
    h.stdin.flush()
    h.wait(timeout=300)
    time.sleep(3.0)  # let the proxy close the upstream side


results = []
# Warm up: the first clients page in code and grow the event loop's tables,
# a cost paid once per process, not per client. Then each process's RSS is
# the base of every count (counts ascend; memory freed between counts is not
# given back to the system, so it is reused by the next count).
for t in pids:
    warm = hold(t, 100)
    if warm:
        release(warm)
bases = {t: rss_kb(pid) for t, pid in pids.items()}
for n in counts:
    for t in ("pgtandem", "pgbouncer"):
        time.sleep(1.0)
        base = bases[t]
        h = hold(t, n)
        if not h:
            results.append({"target": t, "connections": n, "measured": False, "why": "holder failed"})
            print("memory %-9s %5d connections: holder failed" % (t, n), flush=True)
            continue
        time.sleep(1.0)
        held = rss_kb(pids[t])
        release(h)
        per = (held - base) * 1024.0 / n
        results.append({"target": t, "connections": n, "measured": True, "rss_before_kb": base,
                        "rss_holding_kb": held, "bytes_per_connection": round(per)})
        print("memory %-9s %5d connections: RSS %d kB -> %d kB, %.0f bytes/connection" % (t, n, base, held, per),
              flush=True)

version = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
lines = ["# Memory per idle client, %s" % date, "",
         "Machine: %d CPUs, %s; %s. Command: `sh bench/idle_memory.sh`." % (os.cpu_count(), platform.platform(), version),
         "",
         "Both proxies in session mode in front of `bench/idle_upstream.py` (answers like an idle Postgres: trust",
         "login, no TLS on either leg), so 10,000 clients do not need 10,000 Postgres backends. Each client logs in",
         "and runs `SELECT 1`, so in both proxies it owns an upstream connection. Bytes per connection = RSS growth",
         "of the proxy process over its RSS after a warm-up of 100 clients / N. With TLS to a real Postgres see `bench/results/proxy-*.md` (up to 2,000).", ""]
for a, c in capped:
    lines += ["%d clients were asked for; the hard limit of %d open files per process (it cannot be raised here)"
              " holds two descriptors per client up to %d, so %d were measured." % (
                  a, resource.getrlimit(resource.RLIMIT_NOFILE)[1], c, c), ""]
lines += [
         "| proxy | idle clients | RSS warm, idle (kB) | RSS holding (kB) | bytes per client |",
         "|---|---:|---:|---:|---:|"]
for r in results:
    if r["measured"]:
        lines.append("| %s | %d | %d | %d | %d |" % (r["target"], r["connections"], r["rss_before_kb"],
                                                    r["rss_holding_kb"], r["bytes_per_connection"]))
    else:
        lines.append("| %s | %d | - | - | not measured: %s |" % (r["target"], r["connections"], r["why"]))
out = env["OUT"]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
with open(out + ".json", "w") as f:
    json.dump({"date": date, "pgbouncer": version, "results": results}, f, indent=2)
print("\n".join(lines[-2 - len(results):]))
print("wrote %s.md and %s.json" % (out, out))
PY
