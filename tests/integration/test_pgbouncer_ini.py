"""`pgtandem proxy --pgbouncer-ini FILE`: a team moving from PgBouncer starts
the proxy on the pgbouncer.ini and userlist.txt it already has.

- the benchmarks' own PgBouncer configuration (bench/lib.sh writes it, and
  PgBouncer runs on it in bench/) starts the proxy as it is: the log says
  what each setting became, clients log in with the userlist's SCRAM
  secrets, in session and in transaction mode;
- the settings PgBouncer's documentation lists: each is mapped, ignored
  with its reason, or refused; a file with refused settings does not start
  the proxy, and the error names every one (file, line, why);
- userlist.txt as PgBouncer reads it: SCRAM secrets, plain passwords, ""
  escapes; an md5 secret is refused with what to give instead.
"""
import os
import subprocess

import psycopg
import pytest

import socket

from support import BIN, free_port, TOP, wait_port

PW = "inipass"


@pytest.fixture
def role(cluster):
    name = "inirole"
    cluster.psql("DROP ROLE IF EXISTS %s" % name)
    cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (name, PW))
    secret = cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % name).strip()
    assert secret.startswith("SCRAM-SHA-256$"), secret
    return name, secret


class IniProxy:
    def __init__(self, ini, extra=()):
        self.admin_port = free_port()
        self.logpath = ini + ".proxy.log"
        with open(self.logpath, "w") as log:
            self.proc = subprocess.Popen([BIN, "proxy", "--pgbouncer-ini", ini, "--admin",
                                          "127.0.0.1:%d" % self.admin_port] + list(extra),
                                         stdout=log, stderr=log)

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def start_with_ini(tmp_path):
    started = []

    def make(ini, extra=()):
        p = IniProxy(ini, extra)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def bench_ini(tmp_path, cluster, secret_line, port, pool_size=100):
    """bench/lib.sh's write_pgbouncer_ini: the file PgBouncer runs on in the
    benchmarks (database `bench`; clients here ask for appdb through it)."""
    d = str(tmp_path)
    env = dict(os.environ, PGT_PGPORT=str(cluster.port))
    subprocess.run(["sh", "-c", '. bench/lib.sh; write_pgbouncer_ini "$1" "$2" "$3" require 1000 "$4" "$5"', "sh",
                    d, "SECRET", str(port), str(pool_size), d + "/pgbouncer.log"],
                   cwd=TOP, env=env, check=True)
    # the userlist line with this test's role (lib.sh writes user "app")
    with open(d + "/userlist.txt", "w") as f:
        f.write(secret_line)
    os.chmod(d + "/userlist.txt", 0o600)
    return d + "/pgbouncer.ini"


def test_the_benchmarks_pgbouncer_ini_runs_as_it_is(cluster, role, tmp_path, start_with_ini):
    name, secret = role
    port = free_port()
    ini = bench_ini(tmp_path, cluster, '"%s" "%s"\n' % (name, secret), port, pool_size=7)
    p = start_with_ini(ini)
    wait_port(port, proc=p.proc)
    log = p.log()
    for want in ("ini:8: [pgbouncer] auth_type -> auth = scram",
                 "[pgbouncer] auth_file -> users_file = %s/userlist.txt" % tmp_path,
                 "[pgbouncer] default_pool_size -> pool_size = 7",
                 "[pgbouncer] max_client_conn -> max_client_conn = 1000",
                 "[pgbouncer] logfile: ignored: logs go to stderr",
                 "[pgbouncer] pidfile: ignored",
                 "[pgbouncer] ignore_startup_parameters: ignored",
                 "-> listen = 127.0.0.1:%d" % port,
                 "-> upstream = postgresql:///?host=127.0.0.1&port=%d&sslmode=require (PgBouncer serves only the "
                 "databases [databases] lists" % cluster.port):
        assert want in log, (want, log)
    uri = "postgresql://%s:%s@127.0.0.1:%d/appdb?sslmode=disable" % (name, PW, port)
    with psycopg.connect(uri, connect_timeout=10) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == name
        # the upstream is reached with TLS, as server_tls_sslmode = require says
        assert c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(uri.replace(PW, "wrong"), connect_timeout=10)
    assert "password authentication failed" in str(e.value)


def test_transaction_pooling_from_the_ini(cluster, role, tmp_path, start_with_ini):
    """The drivers append their own settings (`>>`); the last one wins, as in
    PgBouncer. A plain password in userlist.txt logs the pool in upstream."""
    name, _ = role
    port = free_port()
    ini = bench_ini(tmp_path, cluster, '"%s" "%s"\n' % (name, PW), port, pool_size=2)
    with open(ini, "a") as f:
        f.write("pool_mode = transaction\nquery_wait_timeout = 12.5\n")
    p = start_with_ini(ini)
    wait_port(port, proc=p.proc)
    log = p.log()
    assert "[pgbouncer] pool_mode -> pool_mode = transaction" in log, log
    assert "[pgbouncer] query_wait_timeout -> query_wait_timeout_s = 13 (rounded up to whole seconds)" in log, log
    uri = "postgresql://%s:%s@127.0.0.1:%d/appdb?sslmode=disable" % (name, PW, port)
    clients = [psycopg.connect(uri, autocommit=True, prepare_threshold=None) for _ in range(6)]
    try:
        pids = set()
        for _ in range(5):
            for c in clients:
                pids.add(c.execute("SELECT pg_backend_pid()").fetchone()[0])
        # six clients shared the pool of two server connections
        assert 1 <= len(pids) <= 2, pids
    finally:
        for c in clients:
            c.close()


# Every setting of PgBouncer's documentation ([pgbouncer] section), with a value
# a real file might have, and what the proxy does with it.
DOC_SETTINGS = """
[databases]
appdb = host=127.0.0.1 port={pgport} dbname=appdb
* = host=127.0.0.1 port={pgport}

[pgbouncer]
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
listen_addr = *
listen_port = {port}
unix_socket_dir =
user = postgres
auth_file = userlist.txt
auth_type = scram-sha-256
pool_mode = transaction
max_client_conn = 500
default_pool_size = 15
min_pool_size = 0
reserve_pool_size = 0
reserve_pool_timeout = 5
max_db_connections = 40
max_user_connections = 0
server_round_robin = 0
ignore_startup_parameters = extra_float_digits,options
track_extra_parameters = IntervalStyle
disable_pqexec = 0
application_name_add_host = 0
stats_period = 60
max_prepared_statements = 100
log_connections = 1
log_disconnections = 1
log_pooler_errors = 1
log_stats = 1
verbose = 0
admin_users = postgres
stats_users = stats, postgres
server_reset_query = DISCARD ALL
server_reset_query_always = 0
server_check_delay = 30
server_check_query = select 1
server_fast_close = 0
server_lifetime = 1800
server_idle_timeout = 300
server_connect_timeout = 15
server_login_retry = 15
client_login_timeout = 30
autodb_idle_timeout = 3600
dns_max_ttl = 15
dns_nxdomain_ttl = 15
dns_zone_check_period = 0
client_tls_sslmode = disable
server_tls_sslmode = verify-ca
server_tls_ca_file = {ca}
server_tls_protocols = secure
query_timeout = 0
query_wait_timeout = 120
cancel_wait_timeout = 10
client_idle_timeout = 0
idle_transaction_timeout = 0
suspend_timeout = 10
pkt_buf = 4096
max_packet_size = 2147483647
listen_backlog = 128
sbuf_loopcnt = 5
so_reuseport = 1
tcp_defer_accept = 45
tcp_socket_buffer = 0
tcp_keepalive = 1
tcp_keepcnt = 0
tcp_keepidle = 0
tcp_keepintvl = 0
tcp_user_timeout = 0
"""

REFUSED = """
[databases]
appdb = host=127.0.0.1 port={pgport} dbname=appdb
legacy = host=127.0.0.1 port={pgport} dbname=appdb
other = host=10.1.2.3 port=5432
fixed = host=127.0.0.1 port={pgport} user=app password=secret

[pgbouncer]
listen_port = {port}
auth_type = hba
auth_file = userlist.txt
auth_user = pgbouncer
pool_mode = statement
query_timeout = 30
max_user_connections = 10
server_tls_cert_file = /etc/pgbouncer/client.crt
client_tls_sslmode = verify-full
no_such_setting = 1

[users]
app = pool_mode=session
"""


def write(tmp_path, text, **kw):
    path = str(tmp_path / "pgbouncer.ini")
    with open(path, "w") as f:
        f.write(text.format(**kw))
    return path


def test_the_documented_settings_are_each_mapped_or_ignored_with_a_reason(cluster, role, tmp_path, start_with_ini):
    name, secret = role
    port = free_port()
    ini = write(tmp_path, DOC_SETTINGS, pgport=cluster.port, port=port, ca=cluster.ca)
    with open(str(tmp_path / "userlist.txt"), "w") as f:
        f.write(';; a comment, as PgBouncer allows\n"%s" "%s"\n"quo""ted" "pw"\n' % (name, PW))
    os.chmod(str(tmp_path / "userlist.txt"), 0o600)
    p = start_with_ini(ini)
    wait_port(port, proc=p.proc)
    log = p.log()
    lines = [ln for ln in log.splitlines() if "pgbouncer.ini: " in ln]
    # every line of the [pgbouncer] section is accounted for
    keys = [ln.split("=")[0].strip() for ln in DOC_SETTINGS.split("[pgbouncer]")[1].splitlines() if "=" in ln]
    for k in keys:
        assert any("] %s " % k in ln or "] %s:" % k in ln or " %s," % k in ln or " %s -> " % k in ln
                   for ln in lines), (k, lines)
    for want in ("listen_addr, listen_port -> listen = 0.0.0.0:%d" % port,
                 "max_db_connections -> max_db_connections = 40",
                 "server_lifetime -> server_lifetime_s = 1800",
                 "client_login_timeout -> client_login_timeout_s = 30",
                 "max_packet_size -> max_message_bytes = 2147483647",
                 "-> upstream = postgresql:///?host=127.0.0.1&port=%d&sslmode=verify-ca&sslrootcert=%s"
                 % (cluster.port, cluster.ca),
                 "[pgbouncer] server_reset_query: ignored: a client's SETs follow it from server to server",
                 "server_reset_query_always -> server_reset_query_always = 0",
                 "[pgbouncer] query_timeout: ignored: the proxy does not cancel long queries",
                 "[databases] *: ignored: the same upstream as line 3"):
        assert want in log, (want, lines)
    uri = "postgresql://%s:%s@127.0.0.1:%d/appdb?sslmode=disable" % (name, PW, port)
    with psycopg.connect(uri, connect_timeout=10) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_settings_it_cannot_honour_refuse_the_start_each_named(cluster, tmp_path):
    port = free_port()
    ini = write(tmp_path, REFUSED, pgport=cluster.port, port=port)
    r = subprocess.run([BIN, "proxy", "--pgbouncer-ini", ini, "--admin", "off"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    err = r.stderr
    for want in ("pgbouncer.ini:4: [databases] legacy: dbname=appdb renames database legacy",
                 "pgbouncer.ini:5: [databases] other: host=10.1.2.3 port=5432: a proxy has one upstream",
                 "pgbouncer.ini:6: [databases] fixed: user=: the proxy logs in upstream as the client's own user",
                 "pgbouncer.ini:10: [pgbouncer] auth_type: auth_type hba",
                 "pgbouncer.ini:12: [pgbouncer] auth_user: the auth query runs on --auth-query-db",
                 "pgbouncer.ini:13: [pgbouncer] pool_mode: pool_mode statement",
                 "pgbouncer.ini:14: [pgbouncer] query_timeout: the proxy does not cancel long queries",
                 "pgbouncer.ini:15: [pgbouncer] max_user_connections",
                 "pgbouncer.ini:16: [pgbouncer] server_tls_cert_file",
                 "pgbouncer.ini:17: [pgbouncer] client_tls_sslmode: client_tls_sslmode verify-full",
                 "pgbouncer.ini:18: [pgbouncer] no_such_setting: not a setting the proxy knows",
                 "pgbouncer.ini:21: [users] app: per-user pool settings"):
        assert want in err, (want, err)
    # nothing listens: the proxy did not start
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_an_md5_secret_in_the_userlist_is_refused_with_what_to_give(cluster, tmp_path):
    port = free_port()
    ini = bench_ini(tmp_path, cluster, '"app" "md5%s"\n' % ("0" * 32), port)
    r = subprocess.run([BIN, "proxy", "--pgbouncer-ini", ini, "--admin", "off"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert 'line 1, user "app": an md5 secret: the proxy authenticates with SCRAM-SHA-256' in r.stderr, r.stderr


def test_flags_override_the_ini(cluster, role, tmp_path, start_with_ini):
    name, secret = role
    port, other = free_port(), free_port()
    ini = bench_ini(tmp_path, cluster, '"%s" "%s"\n' % (name, secret), port)
    p = start_with_ini(ini, extra=["--listen", "127.0.0.1:%d" % other])
    wait_port(other, proc=p.proc)
    uri = "postgresql://%s:%s@127.0.0.1:%d/appdb?sslmode=disable" % (name, PW, other)
    with psycopg.connect(uri, connect_timeout=10) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    # the ini's own port was not taken
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
