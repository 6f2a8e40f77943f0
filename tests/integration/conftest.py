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
