# shellcheck shell=sh disable=SC2034  # sourced: the drivers use what it sets
# Helpers shared by the benchmark drivers (sourced, not run): who runs
# Postgres-side commands, a free loopback port, waiting for a port to open.

# Postgres and PgBouncer refuse to run as root: as root they run as `postgres`.
if [ "$(id -u)" = 0 ]; then RUN="runuser -u postgres --"; else RUN=""; fi

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
