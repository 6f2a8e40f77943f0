"""The proxy as tests run it: a `pgtandem proxy` process (Proxy) or the
cluster standing in for it (PGT_RELAY_DIRECT=1), where its --upstream points
(Upstream), and its admin API with bounded waits: the current migration,
requests answered within a limit, a kept-open connection, a POST on a thread
of its own, waiting for a phase, /metrics parsed."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request

import pytest

from neonfront import neon_uri
from .pg import dbname
from .ports import BIN, SANITIZER_MARKS, TOP, free_port
from .wait import wait_for, wait_port

__all__ = ["Proxy", "DirectTarget", "relay_direct", "POOLED_USERS", "relay_login", "Upstream", "upstream_params", "LIBPQ_CLIENT",
           "ANSWER", "current", "call", "KeepAlive", "post_in_background", "status", "held_now", "throttle", "metrics", "wait_phase", "engine_proxy",
           "proxy_uri", "PROMTOOL", "Scrape", "promtool_check"]

# An admin request must be answered within this many seconds (call, KeepAlive).
ANSWER = 15.0

# The libpq test client (tests/clients/libpq_client.c: pipeline mode, cancel,
# NOTIFY, large rows), built by `make clients` (conftest's `built` fixture).
LIBPQ_CLIENT = os.path.join(TOP, "build", "clients", "libpq_client")


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


POOLED_USERS = {"app": "apppass", "postgres": "postgres", "md5user": "md5pass", "pwuser": "pwpass"}


def relay_login(relay):
    """Who a raw session logs in as: trustuser (no password) through the
    relay in session mode, a SCRAM user through transaction pooling."""
    if getattr(relay, "pooled", False):
        return {"user": "app", "password": POOLED_USERS["app"]}
    return {}


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


def upstream_params(neon_marks=()):
    """Params for @pytest.mark.parametrize("upstream", ..., indirect=True)."""
    return ["postgres", pytest.param("neon", marks=list(neon_marks))]


def current(proxy, conn=None, timeout=30.0):
    """GET /migrations/current of `proxy` (on `conn` when given: a connection
    kept open, such as KeepAlive below): the migration's
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


def call(p, method, path, body=None, timeout=ANSWER):
    """An admin request on a connection of its own; fails the test when no
    answer comes within timeout."""
    if isinstance(body, dict):
        body = json.dumps(body)
    try:
        return p.admin(method, path, body, timeout=timeout)
    except (socket.timeout, TimeoutError) as e:
        raise AssertionError("%s %s: no answer within %.0f s (%r)\nproxy log:\n%s"
                             % (method, path, timeout, e, p.log()[-3000:]))
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise AssertionError("%s %s: no answer within %.0f s\nproxy log:\n%s"
                                 % (method, path, timeout, p.log()[-3000:]))
        raise


class KeepAlive:
    """One HTTP/1.1 connection to the admin API kept open across requests.
    Opened before Postgres goes away, it keeps its descriptor, so a stale
    event left on a reused descriptor (fault 1) cannot swallow the request
    of a test that is about another fault."""

    def __init__(self, p, timeout=ANSWER):
        self.p = p
        self.c = http.client.HTTPConnection("127.0.0.1", p.admin_port, timeout=timeout)
        self.c.auto_open = 0          # never reconnect behind the test's back
        self.c.connect()

    def request(self, method, path, body=None, timeout=ANSWER):
        if isinstance(body, dict):
            body = json.dumps(body)
        self.c.sock.settimeout(timeout)
        try:
            self.c.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = self.c.getresponse()
            data = r.read().decode()
        except (socket.timeout, TimeoutError):
            raise AssertionError("%s %s: no answer within %.0f s\nproxy log:\n%s"
                                 % (method, path, timeout, self.p.log()[-3000:]))
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data

    def close(self):
        self.c.close()


def post_in_background(p, path, timeout=ANSWER):
    """POSTs `path` on a thread of its own (rollback and complete answer only
    when they end); returns a function that waits for the answer, (code,
    body); its `thread` is there to join on a failure path."""
    result = {}
    th = threading.Thread(target=lambda: result.update(ans=call(p, "POST", path, timeout=timeout)))
    th.start()

    def answer():
        th.join(timeout + 5)
        assert "ans" in result, "POST %s: no answer within %.0f s" % (path, timeout)
        return result["ans"]
    answer.thread = th
    return answer


def status(proxy, timeout=ANSWER):
    """GET /status, which must answer 200 within `timeout` seconds."""
    code, st = call(proxy, "GET", "/status", timeout=timeout)
    assert code == 200, st
    return st


def held_now(proxy):
    """Sessions the proxy holds now (a pause, a fleet hold, the fence), plus
    one while it is fenced: 0 when it holds nobody."""
    hold = status(proxy)["hold"]
    return hold["held_sessions"] + (1 if hold["fenced"] else 0)


def throttle(proxy, **settings):
    """POST /migrations/current/throttle with `settings` (paused=True,
    max_rows_per_sec=0, ...), which must answer 200; returns the settings
    it answered with."""
    code, body = call(proxy, "POST", "/migrations/current/throttle", settings)
    assert code == 200, body
    return body


def metrics(proxy, timeout=ANSWER):
    """GET /metrics, which must answer 200 within `timeout`, parsed (Scrape)."""
    code, text = call(proxy, "GET", "/metrics", timeout=timeout)
    assert code == 200, text
    return Scrape(text)


def wait_phase(proxy, phases, timeout=20.0, conn=None, what=None):
    """Polls GET /migrations/current (on `conn` when given, see KeepAlive)
    until its phase is `phases` (one phase, or any of a tuple); returns the
    last answer. On timeout fails with that answer and the proxy's log."""
    want = (phases,) if isinstance(phases, str) else tuple(phases)
    last = {}

    def reached():
        last["cur"] = current(proxy, conn)
        return last["cur"] if last["cur"].get("phase") in want else None
    return wait_for(reached, timeout, "%s: phase %s on proxy %d" % (what or "waiting", "/".join(want), proxy.port),
                    interval=0.1, detail=lambda: "the migration stayed %r: %s\n%s" % (
                        last["cur"].get("phase"), json.dumps(last["cur"])[:1500], proxy.log_tail()))


def engine_proxy(proxy_factory, cluster, name, upstream=None):
    """A proxy whose engine (--engine-db) works on the database `name` of
    the cluster, reached through `upstream` (Upstream: Postgres or
    the Neon-like front) when given."""
    if upstream is not None:
        return proxy_factory(upstream=upstream.uri, extra_args=["--engine-db", upstream.db_uri(name)])
    return proxy_factory(extra_args=["--engine-db", cluster.uri(db=name)])


def proxy_uri(proxy, db):
    """The database `db` (a URI) reached through the proxy, as postgres."""
    return proxy.uri(user="postgres", password="postgres", db=dbname(db))


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
