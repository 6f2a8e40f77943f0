"""pgtandem in front of Neon, with the Neon-like front of neonfront.py
standing in for Neon's proxy.

1. The front itself, checked with psql and psycopg alone: no SNI and no
   endpoint option is refused as Neon refuses it, plain TCP is refused, PLUS
   is not offered, backend keys are random 32-bit (>= 2^31 when asked), a
   libpq cancel reaches the right backend, suspend ends every connection with
   57P01 and wakes up again, the connection cap answers 53300, and a few
   hundred connections go through at once.
2. pgtandem with --upstream (and --engine-db) through the front: queries,
   cancel, the backend pid a client sees, a suspended compute, and a
   migration with a client whose pid is >= 2^31 connected while it is active.
"""
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from support import (admin_url, assert_terminated_on_the_wire, cancel_hits_only_its_backend, CANCEL_CODE,
                     pg_error_fields, pg_raw_session, pg_read_message, pg_read_until, pg_simple_query,
                     pg_startup_packet, Proxy, psql, raise_nofile, result_columns, run_pgtandem, scalar, SSL_REQUEST,
                     start_migration, u32, version_options, wait_for)
from neonfront import COMPUTE_DOWN_MSG, NO_ENDPOINT_MSG, TERMINATED_MSG, neon_uri

HIGH = 1 << 31
CONNECT_BOUND_S = 5.0
CANCEL_BOUND_S = 3.0


def wait_active(cluster, query, n=1, timeout=10.0):
    wait_for(lambda: int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                                        " AND query = '%s'" % query.replace("'", "''"))) >= n, timeout, "%d backend(s) running %r" % (n, query))


def front_uri(front, **kw):
    kw.setdefault("extra", "hostaddr=127.0.0.1")
    return neon_uri(front.port, **kw)


def tls_login_raw(port, sni, params, timeout=10.0):
    """SSLRequest, TLS with `sni` (None: none sent), a startup packet with
    user trustuser (trust auth); returns (ssl socket, messages until Z/E/EOF)."""
    import ssl
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(SSL_REQUEST)
    assert s.recv(1) == b"S"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(pg_startup_packet("trustuser", **params))
    return t, pg_read_until(t, timeout=timeout)


# ---------------------------------------------------------------------------
# 1. the front itself

def test_front_refuses_without_sni_or_endpoint_option(neon_front, cluster):
    front = neon_front()
    r = psql(front_uri(front, host="127.0.0.1", extra=""), "SELECT 1")
    assert r.returncode != 0
    assert "Endpoint ID is not specified" in r.stderr, r.stderr
    refused = [c for c in front.snapshot() if c["refused"]]
    assert refused and refused[-1]["refused"] == ("XX000", NO_ENDPOINT_MSG) and refused[-1]["sni"] is None, refused

    # host=localhost: libpq sends SNI "localhost", the endpoint id
    r = psql(front_uri(front), "SELECT current_user")
    assert r.returncode == 0 and r.stdout.strip() == "postgres", r.stderr
    ok = [c for c in front.snapshot() if c["ready"]]
    assert ok[-1]["sni"] == "localhost" and ok[-1]["endpoint"] == "localhost", ok[-1]

    # no SNI, the endpoint in options: accepted, and the option does not
    # reach Postgres (it would refuse "endpoint=..." as a command-line switch)
    r = psql(front_uri(front, host="127.0.0.1", extra="", endpoint="ep-quiet-tree-123"), "SELECT 2")
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    ok = [c for c in front.snapshot() if c["ready"]]
    assert ok[-1]["sni"] is None and ok[-1]["endpoint"] == "ep-quiet-tree-123", ok[-1]

    # SNI and a different endpoint option: refused as Neon refuses it
    r = psql(front_uri(front, endpoint="ep-other"), "SELECT 3")
    assert r.returncode != 0 and "Inconsistent project name" in r.stderr, r.stderr

    # no TLS at all
    r = psql(front_uri(front, sslmode="disable"), "SELECT 4")
    assert r.returncode != 0 and "connection is insecure" in r.stderr, r.stderr


def test_front_sni_wildcard_name_gives_the_first_label(neon_front):
    front = neon_front()
    s, msgs = tls_login_raw(front.port, "ep-cool-darkness-123456.neon.test", {})
    try:
        assert msgs[-1][0] == b"Z", [(t, pg_error_fields(p) if t == b"E" else p) for t, p in msgs]
    finally:
        s.close()
    c = [c for c in front.snapshot() if c["ready"]][-1]
    assert c["endpoint"] == "ep-cool-darkness-123456", c


@pytest.mark.parametrize("backend_tls", [False, True], ids=["plain-backend", "tls-backend"])
def test_front_relays_scram_and_never_offers_plus(neon_front, backend_tls):
    front = neon_front(backend_tls=backend_tls)
    extra = "hostaddr=127.0.0.1"
    if backend_tls:
        # the client could bind, is not offered PLUS, says "y,,"; Postgres,
        # which could bind on its own TLS session, refuses the downgrade
        r = psql(front_uri(front, user="app", password="apppass"), "SELECT 1")
        assert r.returncode != 0 and "channel binding" in r.stderr, r.stderr
        extra += "&channel_binding=disable"
    with psycopg.connect(front_uri(front, user="app", password="apppass", extra=extra), connect_timeout=10) as c:
        assert c.execute("SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
                         ).fetchone() == ("app", backend_tls)
    r = psql(front_uri(front, user="app", password="apppass", extra="hostaddr=127.0.0.1&channel_binding=require"),
             "SELECT 1")
    assert r.returncode != 0 and "channel binding" in r.stderr, r.stderr
    conns = [c for c in front.snapshot() if c["sasl_offered"]]
    assert conns, front.snapshot()
    for c in conns:
        assert ("SCRAM-SHA-256-PLUS" in c["sasl_offered"]) == backend_tls, c
        assert c["sasl_sent"] == ["SCRAM-SHA-256"], c
    r = psql(front_uri(front, user="app", password="wrong", extra=extra), "SELECT 1")
    assert r.returncode != 0 and "password authentication failed" in r.stderr, r.stderr


def test_front_hands_out_random_keys_and_high_pids_when_asked(neon_front):
    front = neon_front()
    seen = []
    for _ in range(12):
        with psycopg.connect(front_uri(front), connect_timeout=10) as c:
            real = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            rec = front.by_real_pid(real)
            assert rec is not None and u32(c.pgconn.backend_pid) == rec.fake_pid != real
            seen.append(rec.fake_pid)
    assert len(set(seen)) == len(seen)

    high = neon_front(high_pids=True)
    with psycopg.connect(front_uri(high), connect_timeout=10) as c:
        pid = u32(c.pgconn.backend_pid)
        assert pid >= HIGH, pid
        real = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert high.by_real_pid(real).fake_pid == pid


@pytest.mark.parametrize("high_pids", [False, True], ids=["random", "high"])
def test_front_routes_psql_cancel(neon_front, cluster, high_pids):
    front = neon_front(high_pids=high_pids)
    other = psycopg.connect(front_uri(front), autocommit=True, connect_timeout=10)
    p = subprocess.Popen(["psql", front_uri(front), "-XAtq", "-c", "SELECT pg_sleep(60)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_active(cluster, "SELECT pg_sleep(60)")
        t0 = time.time()
        p.send_signal(signal.SIGINT)  # psql sends a CancelRequest (libpq PQcancel)
        out, err = p.communicate(timeout=30)
        assert time.time() - t0 < CANCEL_BOUND_S
        assert "canceling statement due to user request" in err, err
        assert other.execute("SELECT 'other alive'").fetchone() == ("other alive",)
        assert any(fwd for _, _, fwd in front.cancels), front.cancels
        if high_pids:
            assert all(pid >= HIGH for pid, _, _ in front.cancels), front.cancels
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        other.close()


def test_front_psycopg_cancel_and_unknown_key(neon_front):
    front = neon_front(high_pids=True)
    with psycopg.connect(front_uri(front), autocommit=True, connect_timeout=10) as victim:
        timer = threading.Timer(0.5, victim.cancel)
        timer.start()
        t0 = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT pg_sleep(60)")
        assert time.time() - t0 < 0.5 + CANCEL_BOUND_S
        # The cancel's postmaster child signals the backend twice (its pid,
        # then its process group) and closes the cancel connection after
        # both. The first signal's error can reach us between the two on a
        # loaded machine, so the next query waits for the cancel call to
        # return, or the second signal cancels it.
        timer.join(30)
        # a key the front never handed out cancels nothing; the front closes
        res = {}
        th = threading.Thread(target=lambda: res.update(v=victim.execute("SELECT pg_sleep(1), 'done'").fetchone()))
        th.start()
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
            s.sendall(struct.pack("!IIII", 16, CANCEL_CODE, u32(victim.pgconn.backend_pid), 12345))
            s.settimeout(5)
            assert s.recv(16) == b""
        th.join(30)
        assert res.get("v") == ("", "done"), res


def test_front_suspend_ends_connections_with_57p01_and_wakes_up(neon_front, cluster):
    front = neon_front()
    idle = [psycopg.connect(front_uri(front), autocommit=True, connect_timeout=10) for _ in range(3)]
    raw, msgs = tls_login_raw(front.port, "localhost", {})
    assert msgs[-1][0] == b"Z"
    busy = psycopg.connect(front_uri(front), autocommit=True, connect_timeout=10)
    res = {}

    def run_busy():
        try:
            busy.execute("SELECT pg_sleep(60)")
        except psycopg.Error as e:
            res["busy"] = e
    th = threading.Thread(target=run_busy)
    th.start()
    try:
        wait_active(cluster, "SELECT pg_sleep(60)")
        # a window the steps below fit in on a loaded machine: the kills,
        # the FATALs read and the busy thread's join took over 1.5 s once
        # beside the sanitizer build's suite, and the front was awake again
        victims = front.suspend(refuse_ms=6000)
        assert len(victims) == 5
        # the raw socket reads the FATAL itself, then EOF
        assert_terminated_on_the_wire(raw)
        for c in idle:
            with pytest.raises(psycopg.OperationalError) as e:
                c.execute("SELECT 1")
            assert "terminating connection due to administrator command" in str(e.value) or \
                "server closed the connection" in str(e.value), e.value
        th.join(10)
        assert TERMINATED_MSG in str(res.get("busy")), res
        # asleep: refused as Neon refuses while the compute cannot be reached
        r = psql(front_uri(front), "SELECT 1")
        assert r.returncode != 0 and COMPUTE_DOWN_MSG in r.stderr, r.stderr
        # awake again
        front.wait("wake-up", lambda: not front.suspended, timeout=12)
        t0 = time.time()
        r = psql(front_uri(front), "SELECT 'awake'")
        assert r.returncode == 0 and r.stdout.strip() == "awake", r.stderr
        assert time.time() - t0 < CONNECT_BOUND_S
    finally:
        raw.close()
        for c in idle + [busy]:
            c.close()


def test_front_suspend_delay_mode_holds_new_connections_until_wake_up(neon_front):
    front = neon_front()
    front.suspend(refuse_ms=1000, mode="delay")
    t0 = time.time()
    r = psql(front_uri(front), "SELECT 'cold start'")
    took = time.time() - t0
    assert r.returncode == 0 and r.stdout.strip() == "cold start", r.stderr
    assert 0.7 < took < 0.7 + CONNECT_BOUND_S, took


def test_front_connection_cap_gives_53300(neon_front):
    front = neon_front(max_connections=3)
    conns = [psycopg.connect(front_uri(front), connect_timeout=10) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(front_uri(front), connect_timeout=10)
        assert "too many connections" in str(e.value), e.value
        assert any(c["refused"] == ("53300", "too many connections") for c in front.snapshot())
        conns.pop().close()
        front.wait("a slot to free", lambda: len(front.relayed()) == 2)
        conns.append(psycopg.connect(front_uri(front), connect_timeout=10))
    finally:
        for c in conns:
            c.close()


def test_front_carries_hundreds_of_connections(neon_front):
    raise_nofile(4096)
    front = neon_front()
    n = 300
    conns, errors = [], []
    lock = threading.Lock()

    def opener(k):
        for _ in range(k):
            try:
                c = psycopg.connect(front_uri(front, user="trustuser"), autocommit=True, connect_timeout=30)
                with lock:
                    conns.append(c)
            except Exception as e:
                with lock:
                    errors.append(repr(e))
    ths = [threading.Thread(target=opener, args=(n // 10,)) for _ in range(10)]
    t0 = time.time()
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    try:
        assert not errors, errors[:3]
        assert len(conns) == n
        assert len(front.relayed()) == n
        for i, c in enumerate(conns):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        print("%d connections through the front in %.1f s" % (n, time.time() - t0))
    finally:
        for c in conns:
            c.close()
    front.wait("every connection to close", lambda: not front.relayed(), timeout=20)


# ---------------------------------------------------------------------------
# 2. pgtandem through the front

def pgt_through(proxy_factory, front, extra_args=()):
    up = "postgresql://localhost:%d/?hostaddr=127.0.0.1&sslmode=require" % front.port
    return proxy_factory(upstream=up, extra_args=list(extra_args))


def test_pgtandem_queries_through_the_front(neon_front, proxy_factory):
    front = neon_front()
    proxy = pgt_through(proxy_factory, front)
    r = psql(proxy.uri(), "SELECT current_user, 6 * 7")
    assert r.returncode == 0 and r.stdout.strip() == "app|42", r.stderr + proxy.log()[-2000:]
    with psycopg.connect(proxy.uri(sslmode="require"), autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT current_database()").fetchone() == ("appdb",)
        cur = c.execute("SELECT g, repeat('x', 100000) FROM generate_series(1, 50) g")
        assert len(cur.fetchall()) == 50
    snap = [c for c in front.snapshot() if c["ready"]]
    assert snap and all(c["sni"] == "localhost" and c["tls"] for c in snap), snap


@pytest.mark.parametrize("high_pids", [False, True], ids=["random", "high"])
def test_pgtandem_client_sees_the_pid_the_front_handed_out(neon_front, proxy_factory, high_pids):
    front = neon_front(high_pids=high_pids)
    proxy = pgt_through(proxy_factory, front)
    for _ in range(4):
        with psycopg.connect(proxy.uri(), connect_timeout=10) as c:
            real = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            rec = front.by_real_pid(real)
            assert rec is not None
            # what the client would have seen connecting to the front directly
            assert u32(c.pgconn.backend_pid) == rec.fake_pid
            if high_pids:
                assert rec.fake_pid >= HIGH


@pytest.mark.parametrize("high_pids", [False, True], ids=["random", "high"])
def test_pgtandem_cancel_through_the_front(neon_front, proxy_factory, cluster, high_pids):
    front = neon_front(high_pids=high_pids)
    proxy = pgt_through(proxy_factory, front)
    victim = psycopg.connect(proxy.uri(), autocommit=True, connect_timeout=10)
    other = psycopg.connect(proxy.uri(), autocommit=True, connect_timeout=10)
    try:
        cancel_hits_only_its_backend(victim, other, CANCEL_BOUND_S)
        # the cancel went to the front with the key the front handed out
        fwd = [(pid, key) for pid, key, ok in front.cancels if ok]
        assert fwd and fwd[0][0] == u32(victim.pgconn.backend_pid), front.cancels
        cancels_done(front)
    finally:
        victim.close()
        other.close()

    # psql through pgtandem, SIGINT
    p = subprocess.Popen(["psql", proxy.uri(), "-XAtq", "-c", "SELECT pg_sleep(61)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_active(cluster, "SELECT pg_sleep(61)")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert "canceling statement due to user request" in err, err
        cancels_done(front)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def cancel_conns_open(front):
    return [c for c in front.snapshot() if c["cancel"] and not c["closed"]]


def cancels_done(front):
    """The front closed every cancel connection (test_pgtandem_stops_cleanly_
    with_a_cancel_in_flight is about stopping before that)."""
    # bounded by the front's own limits on a cancel connection (neonfront.py:
    # its TLS handshake and the packet after it, 30 s each; the connect to
    # Postgres and Postgres closing it, 10 s each; then the close, 2 s), not
    # by a guess: 15 s ran out once under ASan beside a CPU hog, 35 s once
    # with two suites and two builds on the machine's 2 cores
    front.wait("cancel connections to close", lambda: not cancel_conns_open(front), timeout=85)


def test_pgtandem_stops_cleanly_with_a_cancel_in_flight(neon_front, cluster):
    front = neon_front(cancel_delay_ms=10000)
    proxy = Proxy(cluster, upstream="postgresql://localhost:%d/?hostaddr=127.0.0.1&sslmode=require" % front.port)
    try:
        with psycopg.connect(proxy.uri(), autocommit=True, connect_timeout=10) as conn:
            threading.Timer(0.5, conn.cancel).start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(60)")
        front.wait("the cancel connection held open", lambda: cancel_conns_open(front))
    finally:
        # SIGTERM with the cancel connection open; stop() fails the test on
        # any sanitizer report in the log
        assert proxy.stop() == 0, proxy.log()[-2000:]


def test_pgtandem_after_suspend_idle_client_gets_57p01_and_new_client_works(neon_front, proxy_factory):
    """Today pgtandem passes the compute's 57P01 on to an idle client (no
    transparent reconnect); a client arriving after the wake-up logs in."""
    front = neon_front()
    proxy = pgt_through(proxy_factory, front)
    idle = psycopg.connect(proxy.uri(), autocommit=True, connect_timeout=10)
    raw = pg_raw_session(proxy.port)
    try:
        assert idle.execute("SELECT 1").fetchone() == (1,)
        assert len(front.suspend(refuse_ms=1000)) == 2
        with pytest.raises(psycopg.OperationalError) as e:
            idle.execute("SELECT 1")
        assert TERMINATED_MSG in str(e.value), e.value
        # on the wire: the FATAL with its SQLSTATE, then the end
        assert_terminated_on_the_wire(raw)
    finally:
        idle.close()
        raw.close()
    # during the refusal a client is told why
    r = psql(proxy.uri(), "SELECT 1")
    assert r.returncode != 0 and COMPUTE_DOWN_MSG in r.stderr, r.stdout + r.stderr
    front.wait("wake-up", lambda: not front.suspended, timeout=5)
    t0 = time.time()
    r = psql(proxy.uri(), "SELECT 'awake'")
    assert r.returncode == 0 and r.stdout.strip() == "awake", r.stderr + proxy.log()[-2000:]
    assert time.time() - t0 < CONNECT_BOUND_S


def test_pgtandem_passes_the_connection_cap_on(neon_front, proxy_factory):
    """Beyond Neon's cap the client is told 53300 "too many connections";
    once a connection ends, a new one gets in."""
    front = neon_front(max_connections=2)
    proxy = pgt_through(proxy_factory, front)
    conns = [pg_raw_session(proxy.port) for _ in range(2)]
    try:
        with pytest.raises(RuntimeError) as e:
            pg_raw_session(proxy.port)
        assert "'C': '53300'" in str(e.value) and "too many connections" in str(e.value), e.value
        conns.pop().close()
        front.wait("a slot to free", lambda: len(front.relayed()) == 1)
        conns.append(pg_raw_session(proxy.port))
        assert pg_simple_query(conns[-1], "SELECT 'in'") == ([["in"]], None)
    finally:
        for c in conns:
            c.close()


def test_pgtandem_ends_the_session_when_the_upstream_closes_tls_and_lingers(neon_front, proxy_factory, cluster):
    """An upstream that ends TLS with close_notify and then waits for the
    peer's close_notify before closing TCP (linger_close): each client
    still sees the FATAL and then the end of its connection at once."""
    front = neon_front(linger_close=True)
    proxy = pgt_through(proxy_factory, front)
    hung = []
    for i in range(20):
        raw = pg_raw_session(proxy.port)
        try:
            rows, _ = pg_simple_query(raw, "SELECT pg_backend_pid()")
            cluster.psql("SELECT pg_terminate_backend(%s)" % rows[0][0])
            raw.settimeout(5)
            t, p = pg_read_message(raw)
            assert t == b"E" and pg_error_fields(p)["C"] == "57P01", (t, p)
            raw.settimeout(2)
            try:
                end = pg_read_message(raw)
            except socket.timeout:
                end = "no end after 2 s"
            if end != (None, None):
                hung.append((i, end))
        finally:
            raw.close()
    assert not hung, hung


# ---- a migration through the front ------------------------------------------

def engine_through(proxy_factory, front, dbname, extra_args=()):
    engine = neon_uri(front.port, db=dbname, extra="hostaddr=127.0.0.1")
    return pgt_through(proxy_factory, front, ["--engine-db", engine] + list(extra_args))


def fleet_status(proxy):
    t0 = time.time()
    try:
        code, st = proxy.admin("GET", "/status", timeout=10)
    except OSError as e:
        raise AssertionError("admin API: no answer in %.1f s (%r); proxy log:\n%s"
                             % (time.time() - t0, e, proxy.log()[-3000:]))
    assert code == 200, st
    return st


def fresh_psql_ok(proxy, dbname):
    t0 = time.time()
    try:
        r = psql(proxy.uri(user="postgres", password="postgres", db=dbname), "SELECT 'fresh'",
                 timeout=CONNECT_BOUND_S)
    except subprocess.TimeoutExpired:
        return False, "no answer in %.0f s" % CONNECT_BOUND_S
    return r.returncode == 0 and r.stdout.strip() == "fresh", "%.1f s: %s" % (time.time() - t0, r.stderr)


def test_pgtandem_engine_through_the_front_runs_a_migration(neon_front, proxy_factory, cluster, legacy_db):
    """The engine's own connections go through the front (SNI, SCRAM, random
    keys) and run expand, backfill and the cutover, with no client
    connected."""
    front = neon_front()
    proxy = engine_through(proxy_factory, front, legacy_db)
    start_migration(proxy)
    ok, why = fresh_psql_ok(proxy, legacy_db)
    assert ok, why + proxy.log()[-2000:]
    engine = [c for c in front.snapshot() if c["ready"] and c["startup"].get("database") == legacy_db]
    assert engine, "the engine never came through the front"
    r = run_pgtandem(["migrate", "complete", "--json", "--proxy", admin_url(proxy)], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    cols = scalar(cluster, legacy_db, "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM"
                                      " information_schema.columns WHERE table_schema = 'public' AND"
                                      " table_name = 'checks'")
    assert "claim" in cols.split(",") and "claim_text" not in cols.split(","), cols


def test_pgtandem_engine_survives_a_compute_restart_mid_migration(neon_front, proxy_factory, cluster, legacy_db):
    """The compute restarts while a migration is active: the engine's and
    the fleet's connections through the front get 57P01 like everyone
    else's; after the wake-up the proxy is back in the fleet, serves new
    clients and completes the migration."""
    front = neon_front(low_pids=True)
    proxy = engine_through(proxy_factory, front, legacy_db, ["--fleet-lease-ms", "2000"])
    start_migration(proxy)
    wait_for(lambda: (fleet_status(proxy).get("fleet") or {}).get("connected"), 10, "fleet connected")
    ended = front.suspend(refuse_ms=1000)
    assert ended, "the proxy had no connection through the front"
    front.wait("wake-up", lambda: not front.suspended, timeout=5)
    wait_for(lambda: (fleet_status(proxy).get("fleet") or {}).get("connected"), 15, "fleet connected again")
    wait_heartbeats(cluster, legacy_db, proxy)
    ok, why = fresh_psql_ok(proxy, legacy_db)
    assert ok, why + proxy.log()[-2000:]
    code, cur = proxy.admin("GET", "/migrations/current")
    assert code == 200 and cur["phase"] == "active", cur
    r = run_pgtandem(["migrate", "complete", "--json", "--proxy", admin_url(proxy)], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]


def test_pgtandem_migration_with_a_high_pid_client_connected(neon_front, proxy_factory, cluster, legacy_db):
    front = neon_front(high_pids=True)
    proxy = engine_through(proxy_factory, front, legacy_db, ["--fleet-lease-ms", "2000"])
    start_migration(proxy)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    with psycopg.connect(uri, prepare_threshold=0, autocommit=True, connect_timeout=10) as old, \
            psycopg.connect(uri, prepare_threshold=0, autocommit=True, connect_timeout=10,
                            options=version_options()) as new:
        assert u32(old.pgconn.backend_pid) >= HIGH and u32(new.pgconn.backend_pid) >= HIGH
        assert "claim_text" in result_columns(old.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        assert "claim" in result_columns(new.execute("SELECT * FROM checks WHERE id = %s", (1,)))
        # a new client still gets in, and the heartbeat keeps running with
        # these sessions' pids in it
        ok, why = fresh_psql_ok(proxy, legacy_db)
        assert ok, why + proxy.log()[-2000:]
        wait_heartbeats(cluster, legacy_db, proxy)
        st = fleet_status(proxy)
        assert st["fleet"]["bypassing"] == [], st["fleet"]
        # the old session stays on purpose
        r = run_pgtandem(["migrate", "complete", "--json", "--force", "--proxy", admin_url(proxy)], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
        for conn in (old, new):
            cols = result_columns(conn.execute("SELECT * FROM checks WHERE id = %s", (2,)))
            assert "claim" in cols and "claim_text" not in cols, cols


def test_pgtandem_sessions_through_the_front_are_not_bypassing(neon_front, proxy_factory, cluster, legacy_db):
    # pids < 2^31 only, so that the int[] heartbeat is not what fails here
    front = neon_front(low_pids=True)
    proxy = engine_through(proxy_factory, front, legacy_db, ["--fleet-lease-ms", "2000"])
    start_migration(proxy)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    with psycopg.connect(uri, autocommit=True, connect_timeout=10, options=version_options()) as c:
        c.execute("SELECT count(*) FROM checks")  # touched a migrated table, now idle
        wait_heartbeats(cluster, legacy_db, proxy)
        st = fleet_status(proxy)
        assert st["fleet"]["bypassing"] == [], st["fleet"]["bypassing"]
        r = run_pgtandem(["migrate", "complete", "--json", "--proxy", admin_url(proxy)], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]


def wait_heartbeats(cluster, dbname, proxy, timeout=15.0):
    """Waits until the proxy's heartbeat ran at least twice (lease 2 s: one
    every 500 ms) after now, with the sessions now connected in it.

    It looks from a connection of its own straight to the database, which a
    heartbeat would report among the sessions bypassing the proxies (a
    heartbeat that runs while it is connected): it goes by a pgtandem
    application_name, which the bypass check leaves out, so that the tests
    see only what the proxy's own sessions make of it."""
    def observe(sql):
        return cluster.psql(sql, uri=cluster.uri(db=dbname) + "&application_name=pgtandem-test-observer")

    t0 = observe("SELECT clock_timestamp()")
    try:
        wait_for(lambda: observe("SELECT coalesce(bool_or(heartbeat_at > '%s'::timestamptz"
                                   " + interval '600 ms'), false) FROM pgtandem.proxies" % t0) == "t", timeout, "two heartbeats after " + t0)
    except AssertionError as e:
        log = [ln for ln in proxy.log().splitlines() if "fleet" in ln or "heartbeat" in ln]
        raise AssertionError("%s; proxy log:\n%s" % (e, "\n".join(log[-10:])))
