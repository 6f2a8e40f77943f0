#!/bin/sh
# Starts or stops a throwaway PostgreSQL cluster configured like Neon's edge:
# TLS on, scram-sha-256 password storage, scram required for TCP logins.
#
#   tests/pgcluster.sh start DIR   -> writes DIR/env (sourceable) and prints it
#   tests/pgcluster.sh stop  DIR
#
# Postgres refuses to run as root, so as root the cluster belongs to the
# `postgres` user and is driven through runuser.
set -e
cmd=$1; dir=$2
[ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then RUN="runuser -u postgres --"; else RUN=""; fi

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_tls() {  # a private CA and a server certificate for localhost/127.0.0.1
  t=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=pgtandem test CA" \
    -keyout "$t/ca.key" -out "$t/ca.crt" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1
  printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > "$t/san.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
    -days 30 -extfile "$t/san.ext" -out "$t/server.crt" >/dev/null 2>&1
  chmod 600 "$t/server.key" "$t/ca.key"
}

case "$cmd" in
start)
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  port=${PGT_PGPORT:-$(free_port)}
  mkdir -p "$dir/tls" "$dir/sock"
  make_tls "$dir/tls"
  [ -n "$RUN" ] && chown -R postgres "$dir" && chmod 755 "$dir"
  $RUN "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
  $RUN cp "$dir/tls/server.crt" "$dir/tls/server.key" "$dir/data/"
  $RUN chmod 600 "$dir/data/server.key"
  $RUN tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
max_connections = 1200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
wal_level = replica
max_wal_senders = 4
log_min_messages = warning
log_connections = off
CONF
  $RUN tee "$dir/data/pg_hba.conf" >/dev/null <<HBA
local   all  all                    trust
host    all  md5user     127.0.0.1/32  md5
host    all  pwuser      127.0.0.1/32  password
host    all  trustuser   127.0.0.1/32  trust
host    all  all         127.0.0.1/32  scram-sha-256
HBA
  $RUN "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  psql_local() { $RUN "$PGBIN/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
  psql_local <<SQL
ALTER ROLE postgres PASSWORD 'postgres';
CREATE ROLE app LOGIN PASSWORD 'apppass';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
SET password_encryption = 'scram-sha-256';
CREATE ROLE pwuser LOGIN PASSWORD 'pwpass';
CREATE ROLE trustuser LOGIN;
CREATE DATABASE appdb OWNER app;
GRANT ALL ON DATABASE appdb TO md5user, pwuser, trustuser;
SQL
  psql_local -d appdb -c "GRANT ALL ON SCHEMA public TO PUBLIC"
  cat > "$dir/env" <<ENV
PGT_PGDIR=$dir
PGT_PGBIN=$PGBIN
PGT_PGHOST=127.0.0.1
PGT_PGPORT=$port
PGT_PGSOCK=$dir/sock
PGT_CA=$dir/tls/ca.crt
PGT_TLSDIR=$dir/tls
PGT_SUPER_URI=postgresql://postgres:postgres@127.0.0.1:$port/appdb?sslmode=require
PGT_APP_URI=postgresql://app:apppass@127.0.0.1:$port/appdb?sslmode=require
ENV
  cat "$dir/env"
  ;;
stop)
  [ -d "$dir/data" ] && $RUN "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
