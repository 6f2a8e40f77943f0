"""Shared fixtures for the integration suite.

`tests/run.sh` starts one throwaway cluster (TLS + SCRAM) and exports PGT_ENV;
when it is not set (running pytest by hand) a cluster is started here.
PGTANDEM_BIN selects the binary under test (plain or sanitizer build).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PGTANDEM_BIN", os.path.join(TOP, "bin", "pgtandem"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: runs after the parallel suite, one test at a time, on the"
                            " runner's shared cluster (tests/run.sh)")
    config.addinivalue_line("markers", "image: the container image (podman); tests/run.sh runs these once,"
                            " after the two suites")


PORTS_PER_WORKER = 200
_ports_handed_out = [0]


def _port_range():
    """This process's own range of ports: one per (variant, xdist worker),
    below the kernel's ephemeral range (32768-60999), so a port chosen here
    cannot be taken by another worker, or by an outgoing connection, between
    choosing it and the proxy or Postgres binding it."""
    variant = {"rel": 0, "asan": 1}.get(os.environ.get("PGT_VARIANT", ""), 2)
    # PGT_RUN_SLOT=1: a second `make test` of another checkout at the same
    # time (the suite run beside itself as a CPU hog) takes ranges of its own
    variant += 3 * (os.environ.get("PGT_RUN_SLOT", "0") == "1")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    # a run without xdist (one file by hand) takes one of the upper slots by
    # its pid, so that several such runs at once rarely pick the same ports
    n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 8 + os.getpid() % 8
    return 10000 + (variant * 16 + n % 16) * PORTS_PER_WORKER


def free_port():
    """A port for a server that binds later (a proxy, a cluster)."""
    base = _port_range()
    for _ in range(PORTS_PER_WORKER):
        port = base + _ports_handed_out[0] % PORTS_PER_WORKER
        _ports_handed_out[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in %d-%d" % (base, base + PORTS_PER_WORKER - 1))


def cluster_env():
    """The environment for tests/pgcluster.sh: its port from this process's range."""
    return dict(os.environ, PGT_PGPORT=str(free_port()))


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def port_open(port, host="127.0.0.1"):
    """Whether something accepts connections on host:port right now."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def wait_for(cond, timeout=10.0, what="condition", interval=0.05, detail=None):
    """Polls cond() until it returns something true, for at most `timeout`
    seconds; returns that value, or fails the test naming `what` (and
    detail(), when given: what the test saw last). The way a test waits for
    something to happen (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %.1f s waiting for %s%s"
                        % (timeout, what, "\n" + str(detail()) if detail else ""))
        time.sleep(interval)


class PeakSampler:
    """Reads fn() in a thread, every `interval` seconds, until the `with`
    block ends; .peak is the largest value read. It waits on its stop
    event, not a sleep, so leaving the block ends it at once."""

    def __init__(self, fn, interval=0.05):
        self.fn, self.interval, self.peak = fn, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        while True:
            self.peak = max(self.peak, self.fn())
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def running_statements(super_uri, like, db=None):
    """pids of backends (other than ours) running a statement matching the
    LIKE pattern `like`, in database `db` when given."""
    import psycopg
    q = ("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
         " AND query LIKE %s")
    args = [like]
    if db:
        q += " AND datname = %s"
        args.append(db)
    with psycopg.connect(super_uri, autocommit=True) as c:
        return [r[0] for r in c.execute(q, args).fetchall()]


def tagged(sql):
    """`sql` with a unique leading comment, so that wait_statement finds this
    statement and not one another test left running."""
    import uuid
    return "/* t%s */ %s" % (uuid.uuid4().hex[:12], sql)


def wait_statement(cluster, sql, timeout=10.0):
    """Waits until a backend of `cluster` is running exactly `sql` (see
    tagged), e.g. before cancelling it; returns its pid."""
    q = ("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = '%s' LIMIT 1"
         % sql.replace("'", "''"))
    return int(wait_for(lambda: cluster.psql(q), timeout, "a backend running %r" % sql, interval=0.02))


def _proc_pids():
    return [d for d in os.listdir("/proc") if d.isdigit()]


def child_processes(pid):
    """The child processes of pid as "PID (state)", e.g. a zombie nobody
    reaped: "4242 (Z)"."""
    out = []
    for d in _proc_pids():
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append("%s (%s)" % (d, fields[0]))
    return out


def command_lines_with(secret):
    """(pid, command line) of every process whose argv contains secret."""
    found = []
    for d in _proc_pids():
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if secret.encode() in cmd:
            found.append((int(d), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


def wait_log(proc, text, timeout=10.0, count=1):
    """Waits until the log of `proc` (a Proxy) has `text` at least `count`
    times; returns the log."""
    return wait_for(lambda: (lambda log: log if log.count(text) >= count else None)(proc.log()),
                    timeout, "%r in the log" % text)


class Cluster:
    def __init__(self, env):
        self.env = env
        self.host = env["PGT_PGHOST"]
        self.port = int(env["PGT_PGPORT"])
        self.ca = env["PGT_CA"]
        self.tlsdir = env["PGT_TLSDIR"]
        self.bindir = env["PGT_PGBIN"]
        self.super_uri = env["PGT_SUPER_URI"]
        self.app_uri = env["PGT_APP_URI"]

    def uri(self, user="postgres", password="postgres", db="appdb", sslmode="require"):
        return "postgresql://%s:%s@%s:%d/%s?sslmode=%s" % (user, password, self.host, self.port, db, sslmode)

    def psql(self, sql, uri=None, check=True):
        r = subprocess.run(["psql", uri or self.super_uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return r.stdout.strip()


def _read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v
    return env


def _start_cluster(parent):
    """Starts a throwaway cluster (tests/pgcluster.sh) under a new directory
    in `parent`; returns its directory."""
    d = tempfile.mkdtemp(prefix="pgtandem-pg-", dir=parent)
    os.chmod(d, 0o755)
    r = subprocess.run(["sh", os.path.join(TOP, "tests", "pgcluster.sh"), "start", d + "/pg"],
                       capture_output=True, text=True, timeout=300, env=cluster_env())
    if r.returncode != 0:
        raise RuntimeError("cannot start a cluster: %s%s" % (r.stdout, r.stderr))
    return d


@pytest.fixture(scope="session")
def cluster():
    """The suite's Postgres. Run serially under tests/run.sh: the runner's
    cluster (PGT_ENV). Under pytest-xdist (-n): one cluster per worker,
    started here (in PGT_WORKDIR when set, so that the runner can stop what a
    crashed worker left behind), so that the tests of different workers share
    no database, role, setting or pg_stat_activity and each worker sees the
    suite exactly as a serial run does."""
    path = os.environ.get("PGT_ENV")
    if path and not os.environ.get("PYTEST_XDIST_WORKER"):
        yield Cluster(_read_env(path))
        return
    d = _start_cluster(os.environ.get("PGT_WORKDIR") or None)
    try:
        yield Cluster(_read_env(d + "/pg/env"))
    finally:
        subprocess.run(["sh", os.path.join(TOP, "tests", "pgcluster.sh"), "stop", d + "/pg"],
                       capture_output=True, timeout=120)


class Proxy:
    """A running `pgtandem proxy` with its listen and admin ports."""

    def __init__(self, cluster, extra_args=(), upstream=None, tls=True, env=None, token=None):
        self.port = free_port()
        self.admin_port = free_port()
        self.token = token
        self.logfile = tempfile.NamedTemporaryFile(prefix="pgtandem-proxy-", suffix=".log", delete=False)
        upstream = upstream or "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)
        args = [BIN, "proxy", "--listen", "127.0.0.1:%d" % self.port,
                "--upstream", upstream, "--admin", "127.0.0.1:%d" % self.admin_port]
        if tls:
            args += ["--tls-cert", os.path.join(cluster.tlsdir, "server.crt"),
                     "--tls-key", os.path.join(cluster.tlsdir, "server.key")]
        if token:
            args += ["--admin-token", token]
        args += list(extra_args)
        penv = dict(os.environ)
        penv.update(env or {})
        self.proc = subprocess.Popen(args, stdout=self.logfile, stderr=self.logfile, env=penv)
        wait_port(self.port, proc=self.proc)
        wait_port(self.admin_port, proc=self.proc)

    def uri(self, user="app", password="apppass", db="appdb", sslmode="disable", extra=""):
        u = "postgresql://%s:%s@127.0.0.1:%d/%s?sslmode=%s" % (user, password, self.port, db, sslmode)
        return u + ("&" + extra if extra else "")

    def admin(self, method, path, body=None, timeout=30):
        import json
        import urllib.request
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path), method=method,
                                     data=body.encode() if isinstance(body, str) else body)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read().decode()
                code = r.status
        except urllib.error.HTTPError as e:
            data = e.read().decode()
            code = e.code
        try:
            return code, json.loads(data)
        except ValueError:
            return code, data

    def log(self):
        with open(self.logfile.name, errors="replace") as f:
            return f.read()

    def log_tail(self, n=3000):
        """The end of the log, for a failure's message (wait_for's detail)."""
        return "proxy log:\n" + self.log()[-n:]

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log = self.log()
        for mark in SANITIZER_MARKS:
            assert mark not in log, "sanitizer report in proxy log:\n" + log[-4000:]
        return self.proc.returncode


@pytest.fixture
def proxy_factory(cluster):
    started = []

    def make(**kw):
        p = Proxy(cluster, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def proxy(proxy_factory):
    return proxy_factory()


def run_pgtandem(args, env=None, timeout=600, input=None):
    """Runs bin/pgtandem with args; returns CompletedProcess (text). Fails the
    test if a sanitizer reported anything."""
    penv = dict(os.environ)
    penv.update(env or {})
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=penv, timeout=timeout,
                       input=input)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, "sanitizer report:\n" + r.stderr[-4000:]
    return r


# The libpq test client (tests/clients/libpq_client.c: pipeline mode, cancel,
# NOTIFY, large rows), built by `make clients`.
LIBPQ_CLIENT = os.path.join(TOP, "build", "clients", "libpq_client")


@pytest.fixture(scope="module")
def built():
    """Builds LIBPQ_CLIENT (make clients) when it is not there; a module that
    runs it says pytestmark = pytest.mark.usefixtures("built")."""
    if not os.access(LIBPQ_CLIENT, os.X_OK):
        r = subprocess.run(["make", "-C", TOP, "clients"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


# libpq settings of the caller's environment that would change what a test's
# URI asks for; psql() runs without them (unless its `env` sets them).
LIBPQ_ENV = ("PGCHANNELBINDING", "PGSSLMODE", "PGSSLROOTCERT", "PGPASSWORD", "PGOPTIONS", "PGHOSTADDR")


def psql(uri, sql, env=None, check=False, timeout=60):
    """psql -XAtq -c sql against `uri`, as a client would run it: none of
    LIBPQ_ENV from the environment but what `env` sets (e.g. PGPASSWORD,
    PGOPTIONS). Returns the CompletedProcess (text); with check, fails the
    test unless psql exits 0. Cluster.psql is the suite's own superuser
    connection instead."""
    e = {k: v for k, v in os.environ.items() if k not in LIBPQ_ENV}
    e.update(env or {})
    r = subprocess.run(["psql", uri, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check:
        assert r.returncode == 0, "psql failed: %s" % r.stderr
    return r


def current(proxy, conn=None, timeout=30.0):
    """GET /migrations/current of `proxy` (on `conn` when given: a connection
    kept open, such as test_proxy_engine_faults.KeepAlive): the migration's
    state, or {"phase": None, "error": ...} when the proxy has none (404).
    Any other status, or no answer within `timeout` seconds, fails the test
    with the end of the proxy's log."""
    try:
        if conn is not None:
            code, body = conn.request("GET", "/migrations/current", timeout=timeout)
        else:
            code, body = proxy.admin("GET", "/migrations/current", timeout=timeout)
    except (socket.timeout, TimeoutError, urllib.error.URLError) as e:
        if isinstance(e, urllib.error.URLError) and not isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise
        raise AssertionError("GET /migrations/current: no answer within %.0f s (%r)\nproxy log:\n%s"
                             % (timeout, e, proxy.log()[-3000:]))
    assert code in (200, 404), "GET /migrations/current: %s %r\nproxy log:\n%s" % (code, body, proxy.log()[-3000:])
    return body if code == 200 else {"phase": None, "error": body}


# ---------------------------------------------------------------------------
# Relay test helpers: raw wire protocol, file-descriptor limits, and a target
# that is either a running proxy or (PGT_RELAY_DIRECT=1) the cluster itself,
# which is how a relay test is checked against Postgres alone.

import resource
import struct


def raise_nofile(want):
    """Raises this process's RLIMIT_NOFILE soft limit towards `want` (capped by
    the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def pg_startup_packet(user, database="appdb", **params):
    body = struct.pack("!I", 196608)
    for k, v in [("user", user), ("database", database)] + sorted(params.items()):
        body += k.encode() + b"\0" + str(v).encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def stop_thread_front(front, threads=()):
    """Stops a thread-per-connection test front (TlsFront, KeyFront): its
    stop flag, its listener `srv`, every socket in `_socks` (under `lock`),
    then waits for `threads`; returns those still alive."""
    front._stop.set()
    try:
        front.srv.close()
    except OSError:
        pass
    with front.lock:
        socks = list(front._socks)
        threads = list(threads)
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
    for t in threads:
        t.join(10)
    return [t for t in threads if t.is_alive()]


def pg_read_message(sock):
    """Reads one backend message: (type, payload), or (None, None) at EOF."""
    hdr = _recv_exact(sock, 5)
    if hdr is None:
        return None, None
    length = struct.unpack("!I", hdr[1:5])[0]
    payload = _recv_exact(sock, length - 4) if length > 4 else b""
    if payload is None:
        return None, None
    return hdr[0:1], payload


def pg_error_fields(payload):
    """ErrorResponse/NoticeResponse payload -> {'C': sqlstate, 'M': message, ...}."""
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[part[0:1].decode()] = part[1:].decode(errors="replace")
    return out


def assert_terminated_on_the_wire(sock, timeout=5.0):
    """The next message is Postgres's FATAL 57P01 (a terminated backend:
    pg_terminate_backend, a Neon compute suspended), then the end."""
    from neonfront import TERMINATED_MSG
    sock.settimeout(timeout)
    t, p = pg_read_message(sock)
    assert t == b"E", (t, p)
    f = pg_error_fields(p)
    assert (f["S"], f["C"], f["M"]) == ("FATAL", "57P01", TERMINATED_MSG), f
    assert pg_read_message(sock) == (None, None)


def pg_read_until(sock, types=(b"Z",), timeout=10.0):
    """Reads messages until one whose type is in `types`, an ErrorResponse, or
    EOF. Returns the list of (type, payload) read; EOF appears as (None, None)."""
    sock.settimeout(timeout)
    msgs = []
    while True:
        t, p = pg_read_message(sock)
        msgs.append((t, p))
        if t is None or t in types or t == b"E":
            return msgs


def _scram_exchange(sock, password):
    """Answers AuthenticationSASL with SCRAM-SHA-256 (no channel binding)."""
    import base64
    import hashlib
    import hmac
    import secrets
    first_bare = "n=,r=" + base64.b64encode(secrets.token_bytes(18)).decode()
    data, mech = ("n,," + first_bare).encode(), b"SCRAM-SHA-256\0"
    sock.sendall(b"p" + struct.pack("!I", 8 + len(mech) + len(data)) + mech + struct.pack("!I", len(data)) + data)
    t, p = pg_read_message(sock)
    if t != b"R" or struct.unpack("!I", p[:4])[0] != 11:
        raise RuntimeError("no SASL continue: %r" % ((t, p),))
    server_first = p[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = "c=biws,r=" + attrs["r"]
    auth_message = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    final = (without_proof + ",p=" + proof).encode()
    sock.sendall(b"p" + struct.pack("!I", 4 + len(final)) + final)


def pg_login(sock, user="trustuser", database="appdb", password=None, timeout=10.0, **params):
    """Sends the startup packet and logs in (trust, or SCRAM with password);
    returns the messages up to ReadyForQuery or the first ErrorResponse."""
    sock.sendall(pg_startup_packet(user, database, **params))
    sock.settimeout(timeout)
    msgs = []
    while True:
        t, p = pg_read_message(sock)
        msgs.append((t, p))
        if t is None or t in (b"Z", b"E"):
            return msgs
        if t == b"R" and struct.unpack("!I", p[:4])[0] == 10:
            if password is None:
                raise RuntimeError("the server asks for SCRAM and no password was given")
            _scram_exchange(sock, password)


def pg_raw_session(port, user="trustuser", database="appdb", host="127.0.0.1", timeout=10.0, password=None,
                   **params):
    """A socket logged in (trust, or SCRAM with password; no TLS) and ready
    for query; raises on error."""
    s = socket.create_connection((host, port), timeout=timeout)
    msgs = pg_login(s, user, database, password, timeout, **params)
    t, p = msgs[-1]
    if t != b"Z":
        s.close()
        raise RuntimeError("login failed: %r" % (pg_error_fields(p) if t == b"E" else msgs[-3:]))
    return s


def relay_login(relay):
    """Who a raw session logs in as: trustuser (no password) through the
    relay in session mode, a SCRAM user through transaction pooling."""
    if getattr(relay, "pooled", False):
        return {"user": "app", "password": POOLED_USERS["app"]}
    return {}


def pg_simple_query(sock, sql, timeout=10.0):
    """Sends a simple Query; returns (rows as lists of str/None, error fields or None)."""
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
    rows, err = [], None
    sock.settimeout(timeout)
    while True:
        t, p = pg_read_message(sock)
        if t is None:
            raise RuntimeError("connection closed during query")
        if t == b"D":
            n = struct.unpack("!H", p[:2])[0]
            off, row = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", p[off:off + 4])[0]
                off += 4
                if ln < 0:
                    row.append(None)
                else:
                    row.append(p[off:off + ln].decode())
                    off += ln
            rows.append(row)
        elif t == b"E":
            err = pg_error_fields(p)
        elif t == b"Z":
            return rows, err


def query_outcome(sock, sql, timeout):
    """Sends a simple Query; returns ("ok", None) at ReadyForQuery,
    ("error", fields) for an ErrorResponse or ("closed", None) when the
    server closed the session, and the seconds it took."""
    t0 = time.time()
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
    sock.settimeout(timeout)
    while True:
        t, payload = pg_read_message(sock)
        if t is None:
            return "closed", None, time.time() - t0
        if t == b"E":
            return "error", pg_error_fields(payload), time.time() - t0
        if t == b"Z":
            return "ok", None, time.time() - t0


# ---- Prometheus text ----------------------------------------------------------

PROMTOOL = shutil.which("promtool")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


class Scrape:
    """One /metrics answer (Prometheus text) and its samples."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def get(self, name, **labels):
        """The value of the one sample named name with these labels (None: absent)."""
        found = [v for n, ls, v in self.samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def names(self):
        return {n for n, _, _ in self.samples}


def promtool_check(text):
    """`promtool check metrics` passes the text with nothing to say."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool check metrics:\n%s%s\n---\n%s" % (r.stdout, r.stderr, text)


class DirectTarget:
    """Stands in for a proxy when PGT_RELAY_DIRECT=1: clients go straight to the
    cluster. Tests that need the admin API or proxy options skip."""

    direct = True

    def __init__(self, cluster):
        self.cluster = cluster
        self.port = cluster.port
        self.admin_port = None

    def uri(self, user="app", password="apppass", db="appdb", sslmode="disable", extra=""):
        u = "postgresql://%s:%s@127.0.0.1:%d/%s?sslmode=%s" % (user, password, self.port, db, sslmode)
        return u + ("&" + extra if extra else "")

    def admin(self, *a, **kw):
        pytest.skip("admin API needs the proxy")

    def log(self):
        return ""

    def stop(self, timeout=30):
        return 0


def relay_direct():
    return os.environ.get("PGT_RELAY_DIRECT") == "1"


@pytest.fixture
def relay(cluster, proxy_factory, relay_mode, tmp_path):
    """The proxy under test (default options), or the cluster itself when
    PGT_RELAY_DIRECT=1; in the suites of POOLED_SUITES also a proxy in
    transaction pooling mode (relay_mode "transaction")."""
    if relay_direct():
        return DirectTarget(cluster)
    if relay_mode == "transaction":
        users = write_users_file(str(tmp_path / "pooled-users.json"), {
            u: {"password": pw} for u, pw in POOLED_USERS.items()})
        p = proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                      "--pool-size", "4"])
        p.pooled = True
        return p
    return proxy_factory()


# The client suites run through transaction pooling too (issue 23): each of
# their tests that uses `relay` runs once per mode.
POOLED_SUITES = {"test_relay_clients", "test_relay_basic", "test_relay_copy", "test_relay_libpq"}
POOLED_USERS = {"app": "apppass", "postgres": "postgres", "md5user": "md5pass", "pwuser": "pwpass"}


@pytest.fixture
def relay_mode():
    return "session"


def pytest_generate_tests(metafunc):
    if "relay" in metafunc.fixturenames and metafunc.module.__name__ in POOLED_SUITES and not relay_direct():
        metafunc.parametrize("relay_mode", ["session", "transaction"])


@pytest.fixture
def needs_proxy():
    if relay_direct():
        pytest.skip("needs the proxy (PGT_RELAY_DIRECT=1)")


# ---------------------------------------------------------------------------
# SCRAM / TLS helpers (auth "scram"): test certificates, users files, raw TLS
# sockets, and a Neon-like TLS front that records what it sees and relays to
# Postgres.

import json
import select
import ssl
import threading

SSL_REQUEST = struct.pack("!II", 8, 80877103)
CANCEL_CODE = 80877102


def make_test_ca(d, cn="pgtandem test front CA"):
    """A private CA in directory d; returns (ca.crt, ca.key)."""
    crt, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


def make_cert(d, name, ca, sans):
    """A certificate for `sans` (e.g. ["DNS:*.pgtandem.test"]) signed by ca =
    (crt, key); returns (name.crt, name.key)."""
    crt, key, csr = (os.path.join(d, name + ext) for ext in (".crt", ".key", ".csr"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % ",".join(sans))
    cn = sans[0].split(":", 1)[1]
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return crt, key


def write_users_file(path, users, mode=0o600):
    """Writes a users file ({name: verifier or {"password": ...}}) with `mode`."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f)
    os.chmod(path, mode)
    return path


def pg_tls_socket(port, host="127.0.0.1", server_hostname=None, timeout=10.0):
    """SSLRequest + TLS handshake without verification; returns the SSL socket."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(SSL_REQUEST)
    ans = s.recv(1)
    if ans != b"S":
        s.close()
        raise RuntimeError("server answered %r to SSLRequest" % ans)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname=server_hostname)


def _parse_startup(body):
    """Startup packet body (after the length) -> (code, {param: value})."""
    code = struct.unpack("!I", body[:4])[0]
    params = {}
    if code == 196608:
        parts = body[4:].split(b"\0")
        for i in range(0, len(parts) - 1, 2):
            if not parts[i]:
                break
            params[parts[i].decode()] = parts[i + 1].decode()
    return code, params


class TlsFront:
    """A Neon-like edge in front of Postgres: answers SSLRequest with 'S',
    completes TLS with its own certificate, records the SNI server name of
    every connection (connections without TLS are refused and recorded), the
    startup parameters, the endpoint id taken out of `options` (as Neon's
    proxy does), and the client's SASLInitialResponse (mechanism and gs2
    header). Then relays bytes to Postgres at backend_port, over plain TCP or,
    with backend_tls, over TLS (a re-encrypting middlebox)."""

    def __init__(self, certfile, keyfile, backend_port, backend_tls=False):
        self.backend_port = backend_port
        self.backend_tls = backend_tls
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.ctx.sni_callback = self._sni
        self.lock = threading.Lock()
        self.conns = []       # one dict per accepted connection
        self.errors = []
        self._tls_sni = {}
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="tlsfront-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _sni(self, sslobj, name, _ctx):
        self._tls_sni[id(sslobj)] = name

    def snis(self):
        """SNI of every connection that got as far as a TLS handshake."""
        self.settle()
        with self.lock:
            return [c.get("sni") for c in self.conns if c.get("tls") or "handshake_error" in c]

    def settle(self, timeout=10.0):
        """Waits (bounded) for connection handlers whose peers have gone."""
        deadline = time.time() + timeout
        with self.lock:
            threads = [t for t in self._threads if t.name == "tlsfront-conn"]
        for t in threads:
            t.join(max(0.0, deadline - time.time()))

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"tls": False}
            with self.lock:
                self.conns.append(rec)
                self._socks.add(conn)
            t = threading.Thread(target=self._handle, args=(conn, rec), name="tlsfront-conn", daemon=True)
            t.start()
            with self.lock:
                self._threads.append(t)

    def _track(self, s):
        with self.lock:
            self._socks.add(s)
        return s

    def _handle(self, conn, rec):
        back = None
        try:
            conn.settimeout(30)
            first = _recv_exact(conn, 8)
            if first != SSL_REQUEST:
                rec["refused"] = "no SSLRequest: %r" % (first,)
                return
            conn.sendall(b"S")
            tconn = self._track(self.ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False))
            try:
                tconn.do_handshake()
            except (ssl.SSLError, OSError) as e:
                rec["handshake_error"] = repr(e)
                return
            finally:
                # the callback is called with the SSLSocket; no entry: no SNI sent
                rec["sni"] = self._tls_sni.pop(id(tconn), None)
            rec["tls"] = True
            hdr = _recv_exact(tconn, 4)
            if hdr is None:
                return
            n = struct.unpack("!I", hdr)[0]
            body = _recv_exact(tconn, n - 4)
            code, params = _parse_startup(body)
            rec["code"] = code
            if code == 196608:
                opts = params.get("options", "").split()
                eps = [o[len("endpoint="):] for o in opts if o.startswith("endpoint=")]
                rec["startup"] = dict(params)
                rec["endpoints"] = eps
                rest = [o for o in opts if not o.startswith("endpoint=")]
                if rest:
                    params["options"] = " ".join(rest)
                else:
                    params.pop("options", None)
                nb = struct.pack("!I", 196608)
                for k, v in params.items():
                    nb += k.encode() + b"\0" + v.encode() + b"\0"
                nb += b"\0"
                startup = struct.pack("!I", len(nb) + 4) + nb
            else:
                startup = hdr + body
            back = socket.create_connection(("127.0.0.1", self.backend_port), timeout=30)
            self._track(back)
            if self.backend_tls:
                back.sendall(SSL_REQUEST)
                if back.recv(1) != b"S":
                    rec["backend_error"] = "backend refused TLS"
                    return
                bctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                bctx.check_hostname = False
                bctx.verify_mode = ssl.CERT_NONE
                back = self._track(bctx.wrap_socket(back, server_hostname="localhost"))
            back.sendall(startup)
            self._relay(tconn, back, rec)
        except Exception as e:  # recorded for the test to look at
            if not self._stop.is_set():
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            for s in (conn, back):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _relay(self, client, back, rec):
        cbuf = b""
        for s in (client, back):
            s.settimeout(30)
        while not self._stop.is_set():
            ready = [s for s in (client, back) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([client, back], [], [], 0.2)
            for s in ready:
                try:
                    data = s.recv(65536)
                except (ssl.SSLError, OSError):
                    return
                if not data:
                    return
                if s is client:
                    if "sasl_mechanism" not in rec:
                        cbuf += data
                        while len(cbuf) >= 5:
                            ln = struct.unpack("!I", cbuf[1:5])[0]
                            if len(cbuf) < 1 + ln:
                                break
                            t, payload, cbuf = cbuf[0:1], cbuf[5:1 + ln], cbuf[1 + ln:]
                            if t == b"p" and "sasl_mechanism" not in rec:
                                mech, _, rest = payload.partition(b"\0")
                                data_len = struct.unpack("!i", rest[:4])[0]
                                first = rest[4:4 + data_len] if data_len > 0 else b""
                                rec["sasl_mechanism"] = mech.decode(errors="replace")
                                rec["gs2_header"] = b",".join(first.split(b",")[:2]).decode(errors="replace") + ","
                                cbuf = b""
                                break
                    back.sendall(data)
                else:
                    client.sendall(data)

    def stop(self):
        return stop_thread_front(self, self._threads)


# ---------------------------------------------------------------------------
# A Neon-like upstream (neonfront.NeonFront): random 32-bit backend keys,
# SNI or options endpoint= required, suspend with 57P01, a connection cap.
# `upstream` runs a test against plain Postgres and against the front.

from neonfront import NeonFront, neon_uri  # noqa: E402,F401


@pytest.fixture(scope="session")
def neon_pki(tmp_path_factory):
    """The front's CA and a certificate for localhost, 127.0.0.1 and *.neon.test."""
    d = str(tmp_path_factory.mktemp("neon-pki"))
    ca = make_test_ca(d, cn="pgtandem neon front CA")
    cert = make_cert(d, "front", ca, ["DNS:localhost", "DNS:*.neon.test", "IP:127.0.0.1"])
    return {"ca": ca[0], "cert": cert}


@pytest.fixture
def neon_front(cluster, neon_pki):
    """neon_front(high_pids=False, backend_tls=False, max_connections=None)
    -> a running NeonFront relaying to the cluster; stopped at teardown."""
    started = []

    def make(**kw):
        kw.setdefault("super_uri", cluster.super_uri)
        f = NeonFront(neon_pki["cert"][0], neon_pki["cert"][1], cluster.port, **kw)
        started.append(f)
        return f

    yield make
    for f in started:
        assert f.stop(), "neon front thread still running"
        assert not f.errors, "neon front errors: %r" % f.errors


class Upstream:
    """Where a proxy's --upstream and --engine-db point: the cluster itself
    ("postgres") or a NeonFront in front of it ("neon")."""

    def __init__(self, kind, cluster, front=None):
        self.kind = kind
        self.cluster = cluster
        self.front = front
        if front is None:
            self.uri = "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)
        else:
            # a host name, so that pgtandem sends SNI "localhost" (the endpoint id)
            self.uri = "postgresql://localhost:%d/?hostaddr=127.0.0.1&sslmode=require" % front.port

    def db_uri(self, db="appdb", user="postgres", password="postgres"):
        """What a client (or the proxy's engine) uses to reach the database
        without pgtandem."""
        if self.front is None:
            return self.cluster.uri(user=user, password=password, db=db)
        return neon_uri(self.front.port, user=user, password=password, db=db, extra="hostaddr=127.0.0.1")


@pytest.fixture(params=["postgres", "neon"])
def upstream(request, cluster, neon_front):
    """Runs a test against plain Postgres and against a NeonFront (random
    keys, about half of them >= 2^31). Override the params with
    @pytest.mark.parametrize("upstream", [...], indirect=True), e.g. to mark
    the "neon" variant."""
    if request.param == "postgres":
        return Upstream("postgres", cluster)
    return Upstream("neon", cluster, neon_front())


@pytest.fixture
def upstream_relay(upstream, cluster, proxy_factory):
    """Like `relay`, with the proxy's --upstream from `upstream`. With
    PGT_RELAY_DIRECT=1 the postgres variant is the cluster itself and the
    neon variant is skipped (the front wants TLS and SNI)."""
    if relay_direct():
        if upstream.front is not None:
            pytest.skip("direct runs go to the cluster itself")
        return DirectTarget(cluster)
    return proxy_factory(upstream=upstream.uri)


def upstream_params(neon_marks=()):
    """Params for @pytest.mark.parametrize("upstream", ..., indirect=True)."""
    return ["postgres", pytest.param("neon", marks=list(neon_marks))]
