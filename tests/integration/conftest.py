"""Shared fixtures for the integration suite.

`tests/run.sh` starts one throwaway cluster (TLS + SCRAM) and exports PGT_ENV;
when it is not set (running pytest by hand) a cluster is started here.
PGTANDEM_BIN selects the binary under test (plain or sanitizer build).
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PGTANDEM_BIN", os.path.join(TOP, "bin", "pgtandem"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="session")
def cluster():
    path = os.environ.get("PGT_ENV")
    if path:
        yield Cluster(_read_env(path))
        return
    d = tempfile.mkdtemp(prefix="pgtandem-pg-")
    os.chmod(d, 0o755)
    subprocess.run(["sh", os.path.join(TOP, "tests", "pgcluster.sh"), "start", d + "/pg"],
                   check=True, capture_output=True)
    try:
        yield Cluster(_read_env(d + "/pg/env"))
    finally:
        subprocess.run(["sh", os.path.join(TOP, "tests", "pgcluster.sh"), "stop", d + "/pg"])


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


def pg_raw_session(port, user="trustuser", database="appdb", host="127.0.0.1", timeout=10.0, **params):
    """A socket logged in (trust auth, no TLS) and ready for query; raises on error."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(pg_startup_packet(user, database, **params))
    msgs = pg_read_until(s, timeout=timeout)
    t, p = msgs[-1]
    if t != b"Z":
        s.close()
        raise RuntimeError("login failed: %r" % (pg_error_fields(p) if t == b"E" else msgs[-3:]))
    return s


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
def relay(cluster, proxy_factory):
    """The proxy under test (default options), or the cluster itself when
    PGT_RELAY_DIRECT=1."""
    if relay_direct():
        return DirectTarget(cluster)
    return proxy_factory()


@pytest.fixture
def needs_proxy():
    if relay_direct():
        pytest.skip("needs the proxy (PGT_RELAY_DIRECT=1)")
