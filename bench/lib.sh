# shellcheck shell=sh disable=SC2034  # sourced: the drivers use what it sets
# Helpers shared by the benchmark drivers (sourced, not run): who runs
# Postgres-side commands, a free loopback port, waiting for a port to open,
# PgBouncer's configuration.

# Postgres and PgBouncer refuse to run as root: as root they run as `postgres`.
if [ "$(id -u)" = 0 ]; then RUN="runuser -u postgres --"; else RUN=""; fi

# The command line that runs this benchmark again: `sh bench/$1` after each
# of the variables named in the other arguments that is set, as VAR="value".
shown_command() {
  cmd="sh bench/$1"
  shift
  for v in "$@"; do
    eval "val=\${$v:-}"
    # shellcheck disable=SC2154  # set by the eval above
    [ -n "$val" ] && cmd="$v=\"$val\" $cmd"
  done
  printf '%s\n' "$cmd"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits up to 10 s for 127.0.0.1:$1 to accept connections; exits the script otherwise.
wait_port() {
  i=0
  until /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "port $1 did not open" >&2; exit 1; }; sleep 0.1
  done
}

# Writes DIR/userlist.txt (user app with SCRAM secret $2) and DIR/pgbouncer.ini:
# session mode, database `bench` on the cluster at $PGT_PGPORT, listening on
# 127.0.0.1:$3. $4 server sslmode, $5 max_client_conn, $6 default_pool_size,
# $7 logfile. Drivers append settings of their own with `>>`.
write_pgbouncer_ini() {
  printf '"app" "%s"\n' "$2" >"$1/userlist.txt"
  cat >"$1/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PGT_PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $3
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $1/userlist.txt
pool_mode = session
max_client_conn = $5
default_pool_size = $6
max_db_connections = 0
server_tls_sslmode = $4
logfile = $7
pidfile = $1/pgbouncer.pid
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
INI
}

# Starts a throwaway cluster for a driver that needs nothing else: builds
# bin/pgtandem if missing, makes $work, stops the cluster and removes $work on
# exit, and exports the cluster's settings (PGT_PGPORT, PGT_SUPER_URI, ...).
# Sets bin, work and stamp (today's UTC date for the results' file names).
start_bench_cluster() {
  # shellcheck disable=SC2154  # top: the driver's checkout, set before sourcing
  bin="$top/bin/pgtandem"
  [ -x "$bin" ] || make -s all
  work=$(mktemp -d /tmp/pgtandem-bench.XXXXXX)
  chmod 755 "$work"
  trap 'sh tests/pgcluster.sh stop "$work/pg" >/dev/null 2>&1; rm -rf "$work"' EXIT INT TERM
  sh tests/pgcluster.sh start "$work/pg" >"$work/cluster.log" 2>&1 || { cat "$work/cluster.log"; exit 1; }
  # shellcheck disable=SC1091  # written by tests/pgcluster.sh at run time
  . "$work/pg/env"
  export PGT_SUPER_URI
  stamp=$(date -u +%Y-%m-%d)
}
