#!/bin/sh
# Connection setup benchmark for auth "scram": connections per second when
# every client connection does a full TLS handshake + SCRAM login to the proxy
# and the proxy does a full TLS handshake + SCRAM login upstream, then runs
# SELECT 1 and disconnects (pgbench -C). pgtandem in auth scram mode against
# Debian's PgBouncer in its SCRAM mode, same throwaway cluster, same machine,
# one run.
#
# Targets:
#   pgtandem          --auth scram, users file holding the role's verifier
#                     (ClientKey technique), client TLS, upstream sslmode=require
#   pgtandem-auth-query  the same with no users file: the role's verifier
#                     from --auth-query (a SECURITY DEFINER function over
#                     pg_authid), answers cached (the default 60 s)
#   pgtandem-auth-query-nocache  --auth-query-cache 0: one lookup per login
#   pgbouncer         auth_type scram-sha-256, auth_file with the same verifier,
#                     client_tls_sslmode=require, server_tls_sslmode=require,
#                     server_lifetime=0: each server connection is used once, so
#                     every client connection costs an upstream login too
#   pgbouncer-pooled  the same with PgBouncer's default pooling (server
#                     connections reused: no upstream login per client); shown
#                     for reference, it is not the same work
#   direct            pgbench straight to Postgres (TLS + SCRAM, one leg)
# Each row reports the upstream logins Postgres counted (pg_stat_database.sessions)
# per client connection, which shows whether both legs were really done.
#
# Environment:
#   DURATION=10 CLIENTS="1 8" ROUNDS=1
#   TARGETS="pgtandem pgtandem-auth-query pgtandem-auth-query-nocache pgbouncer pgbouncer-pooled direct"
#   OUT=bench/results/auth-<date>  (writes OUT.md and OUT.json)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin="$top/bin/pgtandem"
[ -x "$bin" ] || make -s all
command -v pgbouncer >/dev/null || { echo "pgbouncer not installed (make deps)" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/pgtandem-authbench.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/pgbouncer-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

. "$top/bench/lib.sh"

echo "== starting a throwaway cluster"
sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
. "$work/pg/env"
scram=$(psql "$PGT_SUPER_URI" -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
case "$scram" in SCRAM-SHA-256\$*) ;; *) echo "app has no SCRAM verifier: $scram" >&2; exit 1 ;; esac

# ---- pgtandem, auth scram ----------------------------------------------------
printf '{"app": "%s"}\n' "$scram" >"$work/users.json"
chmod 600 "$work/users.json"
tport=$(free_port); taport=$(free_port)
"$bin" proxy --listen "127.0.0.1:$tport" --admin "127.0.0.1:$taport" --log-level warn \
  --tls-cert "$PGT_TLSDIR/server.crt" --tls-key "$PGT_TLSDIR/server.key" \
  --auth scram --users-file "$work/users.json" \
  --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" >"$work/pgtandem.log" 2>&1 &
tpid=$!
pids="$pids $tpid"

# ---- pgtandem, roles from the database -----------------------------------------
psql "$PGT_SUPER_URI" -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE SCHEMA pgtandem_auth;
CREATE FUNCTION pgtandem_auth.user_lookup(i_username text, OUT uname name, OUT phash text)
RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = i_username AND rolcanlogin $$;
REVOKE ALL ON FUNCTION pgtandem_auth.user_lookup(text) FROM PUBLIC;
CREATE ROLE pgtandem_lookup LOGIN PASSWORD 'lookuppw';
GRANT USAGE ON SCHEMA pgtandem_auth TO pgtandem_lookup;
GRANT EXECUTE ON FUNCTION pgtandem_auth.user_lookup(text) TO pgtandem_lookup;
SQL
start_auth_query() {  # port admin-port cache-seconds
  "$bin" proxy --listen "127.0.0.1:$1" --admin "127.0.0.1:$2" --log-level warn \
    --tls-cert "$PGT_TLSDIR/server.crt" --tls-key "$PGT_TLSDIR/server.key" --auth scram \
    --auth-query 'SELECT uname, phash FROM pgtandem_auth.user_lookup($1)' --auth-query-cache "$3" \
    --auth-query-db "postgresql://pgtandem_lookup:lookuppw@127.0.0.1:$PGT_PGPORT/appdb?sslmode=require" \
    --upstream "postgresql://127.0.0.1:$PGT_PGPORT/?sslmode=require" >"$work/pgtandem-aq-$3.log" 2>&1 &
  pids="$pids $!"
}
aqport=$(free_port); aq0port=$(free_port)
start_auth_query "$aqport" "$(free_port)" 60
start_auth_query "$aq0port" "$(free_port)" 0

# ---- pgbouncer, SCRAM mode, TLS on both sides --------------------------------
printf '"app" "%s"\n' "$scram" >"$work/userlist.txt"
start_pgbouncer() {  # name port lifetime
  cat >"$work/pgbouncer-$1.ini" <<INI
[databases]
appdb = host=127.0.0.1 port=$PGT_PGPORT dbname=appdb

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 100
client_tls_sslmode = require
client_tls_cert_file = $PGT_TLSDIR/server.crt
client_tls_key_file = $PGT_TLSDIR/server.key
server_tls_sslmode = require
server_lifetime = $3
logfile = $work/pgbouncer-$1.log
pidfile = $work/pgbouncer-$1.pid
log_connections = 0
log_disconnections = 0
INI
  [ -n "$RUN" ] && chown postgres "$work" "$work/pgbouncer-$1.ini" "$work/userlist.txt"
  $RUN pgbouncer -d "$work/pgbouncer-$1.ini" >"$work/pgbouncer-$1.out" 2>&1 || {
    cat "$work/pgbouncer-$1.out" "$work/pgbouncer-$1.log" 2>/dev/null; exit 1; }
}
bport=$(free_port); bpport=$(free_port)
start_pgbouncer once "$bport" 0
start_pgbouncer pooled "$bpport" 3600
wait_port "$tport"; wait_port "$bport"; wait_port "$bpport"; wait_port "$aqport"; wait_port "$aq0port"

stamp=$(date -u +%Y-%m-%d)
PGT_PGPORT=$PGT_PGPORT PGT_SUPER_URI="$PGT_SUPER_URI" TPORT=$tport AQPORT=$aqport AQ0PORT=$aq0port BPORT=$bport BPPORT=$bpport WORK="$work" OUT=${OUT:-bench/results/auth-$stamp} \
/usr/bin/python3 - <<'PY'
import datetime, json, os, platform, re, statistics, subprocess, sys

env = os.environ
duration = int(env.get("DURATION", "10"))
clients = [int(c) for c in env.get("CLIENTS", "1 8").split()]
rounds = int(env.get("ROUNDS", "1"))
targets = env.get("TARGETS", "pgtandem pgtandem-auth-query pgtandem-auth-query-nocache pgbouncer pgbouncer-pooled"
                  " direct").split()
ports = {"pgtandem": env["TPORT"], "pgtandem-auth-query": env["AQPORT"], "pgtandem-auth-query-nocache": env["AQ0PORT"], "pgbouncer": env["BPORT"], "pgbouncer-pooled": env["BPPORT"],
         "direct": env["PGT_PGPORT"]}
script = os.path.join(env["WORK"], "select1.sql")
with open(script, "w") as f:
    f.write("SELECT 1;\n")
ncpu = os.cpu_count() or 1
super_uri = env["PGT_SUPER_URI"]


def sessions():
    r = subprocess.run(["psql", super_uri, "-qAtX", "-c",
                        "SELECT sessions FROM pg_stat_database WHERE datname = 'appdb'"],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


def probe(target):
    """One connection with libpq's defaults over TLS: what was negotiated."""
    uri = "host=127.0.0.1 port=%s dbname=appdb user=app password=apppass sslmode=require" % ports[target]
    r = subprocess.run(["psql", uri, "-qAtX", "-c",
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                       capture_output=True, text=True, timeout=60)
    return "ok (upstream ssl=%s)" % r.stdout.strip() if r.returncode == 0 else "FAILED: " + r.stderr.strip()


def run(target, c):
    uri = "host=127.0.0.1 port=%s dbname=appdb user=app sslmode=require" % ports[target]
    penv = dict(env, PGPASSWORD="apppass")
    before = sessions()
    r = subprocess.run(["pgbench", "-n", "-C", "-f", script, "-c", str(c), "-j", str(min(c, ncpu)),
                        "-T", str(duration), uri], capture_output=True, text=True, env=penv,
                       timeout=duration * 10 + 120)
    after = sessions()
    out = r.stdout + r.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    conn_ms = re.search(r"average connection time = ([\d.]+) ms", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    if r.returncode != 0 or not tps or not done:
        print("pgbench failed (%s, %d clients):\n%s" % (target, c, out[-2000:]), file=sys.stderr)
        return None
    n = int(done.group(1))
    return {"conn_per_s": float(tps.group(1)), "connections": n,
            "avg_connect_ms": float(conn_ms.group(1)) if conn_ms else None,
            "latency_ms": float(lat.group(1)) if lat else None,
            "upstream_logins_per_conn": round((after - before) / n, 3) if n else None}


load_before = os.getloadavg()
checks = {t: probe(t) for t in targets}
for t, v in checks.items():
    print("%-17s %s" % (t, v))
runs = []
for rnd in range(rounds):
    order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
    for c in clients:
        for t in order:
            res = run(t, c)
            print("round %d %2d clients %-17s %s" % (rnd + 1, c, t, res), flush=True)
            if res:
                runs.append(dict(res, round=rnd + 1, clients=c, target=t))

rows = []
for c in clients:
    for t in targets:
        rs = [r for r in runs if r["clients"] == c and r["target"] == t]
        if not rs:
            rows.append({"clients": c, "target": t})
            continue
        med = lambda k: statistics.median([r[k] for r in rs if r[k] is not None]) \
            if any(r[k] is not None for r in rs) else None
        rows.append({"clients": c, "target": t, "conn_per_s": med("conn_per_s"),
                     "avg_connect_ms": med("avg_connect_ms"), "latency_ms": med("latency_ms"),
                     "upstream_logins_per_conn": med("upstream_logins_per_conn"),
                     "connections": sum(r["connections"] for r in rs)})
for r in rows:
    ref = next((x for x in rows if x["clients"] == r["clients"] and x["target"] == "pgbouncer"), None)
    r["vs_pgbouncer"] = round(r["conn_per_s"] / ref["conn_per_s"], 2) \
        if r.get("conn_per_s") and ref and ref.get("conn_per_s") else None


def fmt(x, spec="%.0f"):
    return spec % x if x is not None else "-"


lines = ["| clients | target | connections/s | vs PgBouncer | avg connect ms | upstream logins per connection |",
         "|---:|---|---:|---:|---:|---:|"]
for r in rows:
    lines.append("| %d | %s | %s | %s | %s | %s |" % (
        r["clients"], r["target"], fmt(r.get("conn_per_s")), fmt(r.get("vs_pgbouncer"), "%.2f"),
        fmt(r.get("avg_connect_ms"), "%.2f"), fmt(r.get("upstream_logins_per_conn"), "%.2f")))
table = "\n".join(lines)

meta = {
    "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
    "host": platform.node(), "cpus": ncpu, "kernel": platform.release(),
    "postgres": subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip(),
    "pgbouncer": subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
    "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
    "duration_s": duration, "rounds": rounds,
    "loadavg_before": " ".join("%.2f" % x for x in load_before),
    "loadavg_after": " ".join("%.2f" % x for x in os.getloadavg()),
}
md = """# Connection setup with TLS + SCRAM, %(date)s

Machine: %(cpus)d CPUs, kernel %(kernel)s; %(postgres)s; %(pgbouncer)s; %(openssl)s.
`pgbench -n -C -f select1.sql -T %(duration_s)d` (`SELECT 1`, a new connection per transaction), libpq
defaults apart from `sslmode=require` (so `channel_binding=prefer`), %(rounds)d round(s); the figure is
pgbench's tps, i.e. connections per second including connection setup.

- pgtandem: `--auth scram`, users file holding the role's verifier from pg_authid (ClientKey
  technique); client TLS with the cluster's certificate; upstream `sslmode=require`. Clients log in
  with SCRAM-SHA-256-PLUS, the proxy logs in upstream with SCRAM-SHA-256-PLUS.
- pgtandem-auth-query: no users file; the verifier from `--auth-query` (a `SECURITY DEFINER` function over
  `pg_authid`, called over the proxy's own connection), its answer cached 60 s; -nocache: one lookup per
  login (`--auth-query-cache 0`).
- pgbouncer: `auth_type = scram-sha-256`, `auth_file` with the same verifier,
  `client_tls_sslmode = require`, `server_tls_sslmode = require`, session pooling with
  `server_lifetime = 0` (a server connection is used once), so every client connection also costs a TLS
  handshake and a SCRAM login upstream, like pgtandem. PgBouncer does not offer channel binding.
- pgbouncer-pooled: the same with PgBouncer's default `server_lifetime`: server connections are reused,
  no upstream login per client (reference only; it is not the same work).
- direct: straight to Postgres, TLS + SCRAM-SHA-256-PLUS, one leg.

"upstream logins per connection" is the growth of `pg_stat_database.sessions` divided by the client
connections pgbench made. Everything (Postgres, proxies, pgbench) shares the same %(cpus)d CPUs; load
average before the runs %(loadavg_before)s, after %(loadavg_after)s (other work on the machine makes
single runs noisy: compare rows of the same run only).

Login check with psql (libpq defaults, sslmode=require) before the runs:

""" % meta
md += "\n".join("- %s: %s" % (t, v) for t, v in checks.items()) + "\n\n" + table + "\n"
out = env["OUT"]
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out + ".md", "w") as f:
    f.write(md)
with open(out + ".json", "w") as f:
    json.dump({"meta": meta, "checks": checks, "rows": rows, "runs": runs}, f, indent=2)
print()
print(table)
print("\nwrote %s.md and %s.json" % (out, out))
PY
