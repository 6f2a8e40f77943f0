"""GET /healthz and GET /readyz on the admin port, as a load balancer or an
orchestrator's probes use them: no token, nothing else answered without
one, nothing told but ready or not and one reason word.

- /healthz: 200 "ok" while the process runs its loop;
- /readyz: 200 "ready" when the upstream answers and the proxy is not
  fenced; 503 "not ready: <reason>" when Postgres is really stopped (and
  200 again once it is back), while the fleet's fence holds traffic, and
  while the proxy shuts down;
- a burst of probes makes one connection to the upstream, not one each,
  and an upstream that accepts and never answers gets a bounded wait."""
import concurrent.futures
import os
import signal
import socket
import threading
import time

import psycopg

from support import fleet_proxy, pg_raw_session, pg_simple_query, start_migration, status, wait_for
from test_admin_security import raw_request

TOKEN = "health-check-token"
LEASE_MS = 2000


def get(p, path, headers=None, method="GET"):
    h = {"Host": "127.0.0.1:%d" % p.admin_port}
    h.update(headers or {})
    return raw_request(p.admin_port, method, path, headers=h)


def readyz(p):
    return get(p, "/readyz")


def assert_plain(body, text):
    assert isinstance(body, str) and body.strip() == text, body


def test_health_without_a_token_configured(proxy_factory):
    p = proxy_factory(env={"PGTANDEM_ADMIN_TOKEN": ""})
    code, body = get(p, "/healthz")
    assert code == 200
    assert_plain(body, "ok")
    code, body = readyz(p)
    assert code == 200, body
    assert_plain(body, "ready")


def test_health_needs_no_token_and_opens_nothing_else(proxy_factory):
    p = proxy_factory(token=TOKEN)
    for path, want in (("/healthz", "ok"), ("/readyz", "ready")):
        code, body = get(p, path)
        assert code == 200, (path, body)
        assert_plain(body, want)
        # a probe comes by the pod's address, not a loopback name
        code, body = raw_request(p.admin_port, "GET", path, headers={"Host": "10.1.2.3:%d" % p.admin_port})
        assert code == 200, (path, body)
        # the token does no harm
        code, body = get(p, path, {"Authorization": "Bearer " + TOKEN})
        assert code == 200, (path, body)
    # nothing else answers without the token: other methods, paths that
    # only look alike, query strings do not change the path
    for method, path in (("POST", "/healthz"), ("POST", "/readyz"), ("GET", "/healthz/"), ("GET", "/readyz/x"),
                         ("GET", "/HEALTHZ"), ("GET", "/status"), ("GET", "/metrics"), ("GET", "/pools"),
                         ("GET", "/migrations/current"), ("POST", "/pause"), ("GET", "/nosuch")):
        code, body = get(p, path, method=method)
        assert code == 401, (method, path, code, body)
    code, body = get(p, "/readyz?verbose=1")
    assert code == 200
    assert_plain(body, "ready")
    assert get(p, "/status", {"Authorization": "Bearer " + TOKEN})[0] == 200


def test_readyz_follows_postgres_stopped_and_started(own_cluster, proxy_factory):  # noqa: F811
    c = own_cluster
    p = proxy_factory(upstream="postgresql://%s:%d/?sslmode=require" % (c.host, c.port), token=TOKEN)
    log = os.path.join(c.dir, "postgres.log")
    lines = len(open(log, errors="replace").read().splitlines())
    # a few probes (one a second at most), each a TLS handshake and a hang-up
    # before any startup packet: Postgres logs none of them
    t0 = time.time()
    took = []
    while time.time() - t0 < 2.5:
        t1 = time.time()
        assert readyz(p)[0] == 200
        took.append(time.time() - t1)
    took.sort()
    print("readyz with Postgres up: %d answers in 2.5 s, median %.2f ms, max %.1f ms (a probe)"
          % (len(took), 1000 * took[len(took) // 2], 1000 * took[-1]))
    with psycopg.connect(c.uri(db="postgres")) as conn:  # a line of our own, written after the probes'
        conn.execute("DO $$ BEGIN RAISE LOG 'pgtandem readyz marker'; END $$")
    new = wait_for(lambda: (lambda t: "pgtandem readyz marker" in t and t)(
        "\n".join(open(log, errors="replace").read().splitlines()[lines:])), 10, "the marker in the log")
    assert "could not" not in new and "EOF" not in new, new
    c.stop()
    try:
        t0 = time.time()
        code, body = readyz(p)
        took = time.time() - t0
        # within the second the last answer is kept for, or at once
        if code == 200:
            code, body = wait_for(lambda: (lambda r: r[0] == 503 and r)(readyz(p)), 3, "readyz 503")
        assert code == 503, body
        assert_plain(body, "not ready: upstream_unreachable")
        assert get(p, "/healthz")[0] == 200
        print("readyz with Postgres stopped: 503 in %.3f s" % took)
    finally:
        c.start()
    wait_for(lambda: readyz(p)[0] == 200, 5, "readyz 200 again")
    assert_plain(readyz(p)[1], "ready")


def _counting_upstream(answer):
    """A TCP server standing in for Postgres: counts connections, answers
    an SSLRequest with `answer` (None: reads it and never answers)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()
    state = {"accepted": 0, "open": []}

    def loop():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            state["accepted"] += 1
            state["open"].append(c)
            try:
                c.settimeout(2)
                if c.recv(8) and answer:
                    c.sendall(answer)
            except OSError:
                pass

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def closer():
        stop.set()
        th.join(5)
        for c in state["open"]:
            c.close()
        srv.close()

    return srv.getsockname()[1], state, closer


def burst(p, n, path="/readyz"):
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        return list(ex.map(lambda _: get(p, path), range(n)))


# The proxy's readiness probe gives an upstream this long to connect
# (PROBE_TIMEOUT_MS in proxy/admin/admin_health.c).
PROBE_TIMEOUT_S = 1.0


def test_a_burst_of_probes_shares_one_upstream_connection(proxy_factory):
    port, state, closer = _counting_upstream(b"N")
    try:
        p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=disable" % port)
        wait_for(lambda: get(p, "/healthz")[0] == 200, 5, "proxy up")
        base = state["accepted"]
        answers = burst(p, 40)
        assert all(code == 200 for code, _ in answers), answers
        probes = state["accepted"] - base
        assert 1 <= probes <= 2, probes
        print("40 concurrent readyz: %d upstream connection(s)" % probes)
    finally:
        closer()


def test_an_upstream_that_never_answers_is_not_ready_within_a_bound(proxy_factory):
    port, state, closer = _counting_upstream(None)
    try:
        p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=require" % port)
        # the same burst on /healthz (no probe): what 20 requests cost here
        t0 = time.time()
        assert all(code == 200 for code, _ in burst(p, 20, "/healthz"))
        baseline = time.time() - t0
        t0 = time.time()
        answers = burst(p, 20)
        took = time.time() - t0
        assert all(code == 503 for code, _ in answers), answers
        assert_plain(answers[0][1], "not ready: upstream_unreachable")
        # at most two probes (below), each given up after the probe timeout
        assert took < baseline + 2 * PROBE_TIMEOUT_S, (took, baseline)
        assert state["accepted"] <= 2, state["accepted"]
        print("20 concurrent readyz against a silent upstream: 503 in %.2f s, %d connection(s)"
              % (took, state["accepted"]))
    finally:
        closer()


def test_readyz_503_while_fenced(cluster, proxy_factory, legacy_db):  # noqa: F811
    p = fleet_proxy(proxy_factory, cluster, legacy_db, LEASE_MS)
    start_migration(p)
    # ready before the fence: its upstream probe may not have answered yet
    # on a machine running both suites (503 upstream_unreachable)
    wait_for(lambda: readyz(p)[0] == 200, 10, "readyz 200 before the fence", detail=lambda: readyz(p))
    # the lease's renewal waits behind this lock: the lease runs out
    locker = psycopg.connect(cluster.uri(db=legacy_db))
    locker.execute("LOCK TABLE pgtandem.fleet_leases IN ACCESS EXCLUSIVE MODE")
    try:
        wait_for(lambda: status(p)["hold"]["fenced"], 2 * LEASE_MS / 1000.0 + 2, "fenced")
        code, body = readyz(p)
        assert code == 503, body
        assert_plain(body, "not ready: fenced")
        assert get(p, "/healthz")[0] == 200
    finally:
        locker.rollback()
        locker.close()
    wait_for(lambda: not status(p)["hold"]["fenced"], 10, "fence lifted")
    wait_for(lambda: readyz(p)[0] == 200, 3, "readyz 200 again")


def test_readyz_503_while_shutting_down(proxy_factory):
    """SIGTERM with a transaction open: the proxy lets it finish and says
    it is not ready meanwhile."""
    p = proxy_factory(extra_args=["--shutdown-timeout", "10"])
    s = pg_raw_session(p.port)
    try:
        pg_simple_query(s, "BEGIN")
        p.proc.send_signal(signal.SIGTERM)
        code, body = wait_for(lambda: (lambda r: r[0] == 503 and r)(readyz(p)), 3, "readyz 503")
        assert_plain(body, "not ready: shutting_down")
        assert get(p, "/healthz")[0] == 200
    finally:
        s.close()


def test_a_probe_that_leaves_or_outlives_the_proxy_is_forgotten(proxy_factory):
    """A caller that hangs up while its readyz waits for the probe, and a
    proxy told to stop while one waits: nothing is answered into freed
    memory (the ASan build reports it), the proxy exits cleanly."""
    port, state, closer = _counting_upstream(None)
    try:
        p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=require" % port)
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", p.admin_port), timeout=5)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.close()
        # the probe they started lasts its whole second (the upstream never
        # answers): a readyz sent now waits on it
        wait_for(lambda: state["accepted"] >= 1, 5, "the probe under way")
        waiting = socket.create_connection(("127.0.0.1", p.admin_port), timeout=5)
        waiting.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=10) == 0
        waiting.close()
        assert p.stop() == 0
    finally:
        closer()
