"""The peer listener: several proxies in front of one database forward a
CancelRequest that reached the wrong proxy to the one holding the session
(PgBouncer's peering). Each proxy announces where its peer listener is bound
(GET /status "peer_address", the startup log line); what arrives there is one
CancelRequest per connection, handled locally only; anything else just gets
the connection closed. The cross-proxy test needs the fleet module (slots and
peer lists) and runs once GET /status has a "fleet" list.

As with Postgres, the close is the answer: the peer listener closes only once
Postgres has closed the connection that carried the request on, and a proxy
that forwarded a client's CancelRequest closes the client's connection only
once the peer has closed; so a cancel of an idle session never reaches the
statement the client sends after it."""
import json
import os
import re
import socket
import struct
import threading
import time

import pytest

from support import (CANCEL_CODE, free_port, login_with_key, pg_error_fields, pg_read_message, pg_simple_query,
                     pg_startup_packet, run_pgtandem, start_query, tagged, wait_for, wait_log, wait_statement)

CANCEL_BOUND_S = 5.0  # a cancel lands in well under a second; generous for sanitizer builds


def host_port(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def peer_address(proxy):
    code, status = proxy.admin("GET", "/status")
    assert code == 200, status
    return status.get("peer_address")


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_CODE, pid, key)


def send_and_expect_close(address, data, timeout=5.0):
    """Sends data to address; returns True when the proxy closed the
    connection without a byte in reply within timeout."""
    host, port = host_port(address)
    with socket.create_connection((host, port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        s.settimeout(timeout)
        try:
            return s.recv(64) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def read_result(sock, timeout):
    """Reads until ReadyForQuery: (error fields or None, seconds taken)."""
    t0 = time.time()
    sock.settimeout(timeout)
    err = None
    while True:
        t, p = pg_read_message(sock)
        assert t is not None, "connection closed during the query"
        if t == b"E":
            err = pg_error_fields(p)
        if t == b"Z":
            return err, time.time() - t0


def assert_cancelled(sock, started):
    err, _ = read_result(sock, timeout=30)
    elapsed = time.time() - started
    assert err is not None and err["C"] == "57014", err
    assert elapsed < CANCEL_BOUND_S, elapsed
    rows, err = pg_simple_query(sock, "SELECT 'still here'")
    assert err is None and rows == [["still here"]], (rows, err)


def test_peer_address_in_status_and_log(proxy_factory):
    p = proxy_factory()
    addr = peer_address(p)
    assert addr, addr
    host, port = host_port(addr)
    assert host == "127.0.0.1" and port not in (0, p.port, p.admin_port), addr  # --listen's host, a port of its own
    assert "peers %s" % addr in p.log(), p.log()[-2000:]
    with socket.create_connection((host, port), timeout=5):
        pass


def test_explicit_peer_listen_address(proxy_factory):
    port = free_port()
    p = proxy_factory(extra_args=["--peer-listen", "127.0.0.1:%d" % port])
    assert peer_address(p) == "127.0.0.1:%d" % port


def test_cancel_through_peer_listener(cluster, proxy_factory):
    p = proxy_factory()
    addr = peer_address(p)
    sock, pid, key = login_with_key(p.port)
    try:
        q = tagged("SELECT pg_sleep(30)")
        start_query(sock, q)
        wait_statement(cluster, q)
        started = time.time()
        assert send_and_expect_close(addr, cancel_request(pid, key))
        assert_cancelled(sock, started)
    finally:
        sock.close()
    assert "forwarded" not in p.log()  # handled where it arrived


def test_peer_listener_ignores_a_wrong_key_and_trailing_bytes(cluster, proxy_factory):
    p = proxy_factory()
    addr = peer_address(p)
    sock, pid, key = login_with_key(p.port)
    try:
        q = tagged("SELECT pg_sleep(4), 'finished'")  # long enough for a poll on a loaded machine to see it
        start_query(sock, q)
        wait_statement(cluster, q)
        assert send_and_expect_close(addr, cancel_request(pid, key ^ 1))
        assert send_and_expect_close(addr, cancel_request(pid, key) + b"\0")  # not exactly one CancelRequest
        err, _ = read_result(sock, timeout=30)
        assert err is None, err
    finally:
        sock.close()
    assert "cancel request from peer 127.0.0.1:" in p.log()


def test_peer_listener_stays_open_while_shutdown_drains(cluster, proxy_factory):
    import signal
    p = proxy_factory(extra_args=["--shutdown-timeout", "60"])
    addr = peer_address(p)
    sock, pid, key = login_with_key(p.port)
    try:
        q = tagged("SELECT pg_sleep(30)")
        start_query(sock, q)
        wait_statement(cluster, q)
        p.proc.send_signal(signal.SIGTERM)
        wait_log(p, "shutdown: no new connections")
        assert p.proc.poll() is None
        started = time.time()
        assert send_and_expect_close(addr, cancel_request(pid, key))
        err, _ = read_result(sock, timeout=30)
        assert err is not None and err["C"] == "57014", err
        assert time.time() - started < CANCEL_BOUND_S
    finally:
        sock.close()
    assert p.proc.wait(30) == 0


def test_garbage_to_peer_listener_is_closed_and_proxy_keeps_serving(cluster, proxy_factory):
    p = proxy_factory()
    addr = peer_address(p)
    garbage = [
        os.urandom(100),
        b"x" * 100,
        pg_startup_packet("trustuser"),
        struct.pack("!II", 8, 80877103),                 # SSLRequest
        struct.pack("!IIII", 17, CANCEL_CODE, 1, 2),      # wrong length
        struct.pack("!IIII", 16, CANCEL_CODE + 1, 1, 2),  # wrong code
    ]
    for data in garbage:
        assert send_and_expect_close(addr, data), data
    host, port = host_port(addr)
    with socket.create_connection((host, port), timeout=5) as s:  # half a request, then gone
        s.sendall(cancel_request(1, 2)[:7])
    sock, pid, key = login_with_key(p.port)
    try:
        rows, err = pg_simple_query(sock, "SELECT 1")
        assert err is None and rows == [["1"]]
        q = tagged("SELECT pg_sleep(30)")
        start_query(sock, q)
        wait_statement(cluster, q)
        started = time.time()
        assert send_and_expect_close(addr, cancel_request(pid, key))
        assert_cancelled(sock, started)
    finally:
        sock.close()
    assert p.proc.poll() is None


def test_silent_peer_connection_closed_after_login_timeout(proxy_factory):
    p = proxy_factory(extra_args=["--client-login-timeout", "1"])
    t0 = time.time()
    assert send_and_expect_close(peer_address(p), b"", timeout=10)
    assert time.time() - t0 < 5
    assert "no CancelRequest in time" in p.log()


def test_peer_listen_off(proxy_factory):
    p = proxy_factory(extra_args=["--peer-listen", "off"])
    assert peer_address(p) in (None, "")
    assert "peers off" in p.log(), p.log()[-2000:]


def test_peer_listen_from_the_config_file(proxy_factory, tmp_path):
    port = free_port()
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text(json.dumps({"peer_listen": "127.0.0.1:%d" % port}))
    p = proxy_factory(extra_args=["--config", str(cfg)])
    assert peer_address(p) == "127.0.0.1:%d" % port


def proxy_args(*extra):
    return ["proxy", "--listen", "127.0.0.1:1", "--upstream", "postgresql://127.0.0.1:1/?sslmode=disable"] + list(extra)


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:99999", "127.0.0.1:port", "", "127.0.0.1:-1"])
def test_bad_peer_listen_is_refused(value):
    r = run_pgtandem(proxy_args("--peer-listen", value), timeout=20)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--peer-listen: '%s'" % value in r.stderr, r.stderr
    assert "or off" in r.stderr, r.stderr


def test_bad_peer_listen_in_the_config_file_is_refused(tmp_path):
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text('{\n  "upstream": "postgresql://127.0.0.1:1/",\n  "peer_listen": "127.0.0.1"\n}\n')
    r = run_pgtandem(["proxy", "--config", str(cfg)], timeout=20)
    assert r.returncode == 2, r.stderr
    assert str(cfg) + ":3:" in r.stderr and '"peer_listen"' in r.stderr, r.stderr


def test_peer_port_in_use_is_refused(proxy_factory):
    p = proxy_factory()
    r = run_pgtandem(proxy_args("--listen", "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port(),
                                "--peer-listen", peer_address(p)), timeout=20)
    assert r.returncode != 0, r.stderr
    assert "cannot listen for peers on" in r.stderr, r.stderr


def wait_live_members(proxy, n, timeout=60.0):
    """Waits until `proxy` sees at least n live members; returns its /status."""
    def enough():
        code, st = proxy.admin("GET", "/status")
        members = (st.get("fleet") or {}).get("members", []) if code == 200 else []
        return st if len([m for m in members if m.get("live")]) >= n else None
    return wait_for(enough, timeout, "a fleet of %d on proxy %d" % (n, proxy.port), interval=0.2,
                    detail=lambda: proxy.admin("GET", "/status"))


def fleet_status(proxy):
    code, status = proxy.admin("GET", "/status")
    return (status.get("fleet") or {}) if code == 200 else {}


def wait_peers(a, b, timeout=60.0):
    """Waits until each of a and b lists the other as a live member with a
    peer listener, and they hold different slots. Counting live members is not enough: the engine database
    is shared with the tests before, and a proxy they stopped stays "live"
    until its lease runs out, so a count of two can be b and a ghost while b
    has not yet seen a (and a cancel for a's slot would have nowhere to go)."""
    last = []

    def knows(f, other):
        return any(m.get("id") == other.get("id") and m.get("live") and m.get("peer")
                   and m.get("slot") == other.get("slot") for m in f.get("members", []))

    def listed():
        fa, fb = last[:] = [fleet_status(a), fleet_status(b)]
        return fa.get("id") and fb.get("id") and knows(fa, fb) and knows(fb, fa) and fa.get("slot") != fb.get("slot")
    wait_for(listed, timeout, "the two proxies to list each other", interval=0.2, detail=lambda: last)


def registrations_waiting_on(watcher, holder_pid):
    """Registrations blocked by the locks of backend holder_pid. Asked on a
    connection of its own: within a transaction pg_stat_activity is a
    snapshot taken at its first use."""
    return watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%INSERT INTO pgtandem.proxies%%'"
                           " AND %s = ANY(pg_blocking_pids(pid))", (holder_pid,)).fetchone()[0]


def test_proxies_that_register_at_the_same_moment_end_with_different_slots(cluster, proxy_factory):
    """Two registrations that run at once both find the same slot free
    (neither sees the other's row before it commits). Left so, a cancel for
    one proxy's session that reaches the other is taken for its own and
    dropped as unknown. The later one (by id) must move to another slot.

    The two are made to run at once for real: each proxy (named with
    --fleet-id) finds a row of its own from a while ago, with the same slot
    and no longer live; this test holds both rows locked, so both
    registrations wait with their snapshots taken (neither sees the other
    live) and go on together when it lets go. Other proxies on the same
    database (tests in other workers) neither touch nor need those rows."""
    import psycopg
    engine = ["--engine-db", cluster.uri(db="appdb")]
    first = proxy_factory(extra_args=engine)  # so that pgtandem.proxies exists
    wait_live_members(first, 1)
    first.stop()
    tag = os.urandom(4).hex()
    ids = ["slot-race-a-" + tag, "slot-race-b-" + tag]
    with psycopg.connect(cluster.uri(db="appdb")) as conn, \
            psycopg.connect(cluster.uri(db="appdb"), autocommit=True) as watcher:
        for i in ids:  # not live (older than a lease), not yet cleaned up (younger than a minute)
            conn.execute("INSERT INTO pgtandem.proxies (id, slot, host, listen, version, pid, started_at, heartbeat_at)"
                         " VALUES (%s, 62, 'gone', 'gone', '0', 1, now() - interval '20 s', now() - interval '20 s')",
                         (i,))
        conn.commit()
        conn.execute("SELECT 1 FROM pgtandem.proxies WHERE id = ANY(%s) FOR UPDATE", (ids,))
        # started together: a registration waits at most the fleet
        # connection's lock_timeout (2 s), then tries again later, so two
        # started one after the other on a slow machine might never wait
        # at the same moment
        started = {}
        threads = [threading.Thread(target=lambda i=i: started.update(
            {i: proxy_factory(extra_args=engine + ["--fleet-id", i])})) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        a, b = started[ids[0]], started[ids[1]]
        wait_for(lambda: registrations_waiting_on(watcher, conn.info.backend_pid) >= 2, 30,
                 "the two registrations to wait on the locked rows",
                 detail=lambda: "%r\n%s\n%s" % (watcher.execute(
                     "SELECT application_name, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity"
                     " WHERE datname = 'appdb'").fetchall(), a.log()[-1500:], b.log()[-1500:]))
        conn.commit()
    wait_peers(a, b)
    assert "fleet: slot 62 is also held by %s" % ids[0] in b.log(), b.log()[-3000:]


def test_cancel_sent_to_the_wrong_proxy_is_forwarded(cluster, proxy_factory):
    engine = ["--engine-db", cluster.uri(db="appdb")]
    a = proxy_factory(extra_args=engine)
    b = proxy_factory(extra_args=engine)
    wait_peers(a, b)
    sock, pid, key = login_with_key(a.port)  # after the slot is known, so the key carries it
    try:
        q = tagged("SELECT pg_sleep(30)")
        start_query(sock, q)
        wait_statement(cluster, q)
        started = time.time()
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
            s.sendall(cancel_request(pid, key))
            s.settimeout(5)
            assert s.recv(16) == b""  # closed without a reply, as today
        err, _ = read_result(sock, timeout=30)
        assert err is not None and err["C"] == "57014", err
        assert time.time() - started < 10
    finally:
        sock.close()
    assert re.search(r"cancel request from 127\.0\.0\.1:\d+ forwarded to proxy slot %d at " % (key >> 26), b.log()), \
        b.log()[-3000:]
    code, metrics = b.admin("GET", "/metrics")
    assert "pgtandem_cancels_forwarded_total 1" in metrics, metrics


IDLE_CANCELS = 50


def idle_cancels_that_hit(sock, cancel):
    """IDLE_CANCELS times: cancel() (returns once the cancel connection is
    closed) on the idle session, then a short statement; how many of those
    statements were cancelled."""
    hit = 0
    for _ in range(IDLE_CANCELS):
        cancel()
        rows, err = pg_simple_query(sock, "SELECT pg_sleep(0.02)", timeout=30)
        if err is not None:
            assert err["C"] == "57014", err
            hit += 1
    return hit


def test_peer_listener_closes_only_once_postgres_has(proxy_factory):
    p = proxy_factory()
    addr = peer_address(p)
    sock, pid, key = login_with_key(p.port)
    try:
        assert idle_cancels_that_hit(sock, lambda: send_and_expect_close(addr, cancel_request(pid, key))) == 0
    finally:
        sock.close()


def test_forwarded_idle_cancel_never_hits_the_next_statement(cluster, proxy_factory):
    engine = ["--engine-db", cluster.uri(db="appdb")]
    a = proxy_factory(extra_args=engine)
    b = proxy_factory(extra_args=engine)
    wait_peers(a, b)
    sock, pid, key = login_with_key(a.port)
    try:
        assert key >> 26, key  # the key carries a's slot
        assert idle_cancels_that_hit(sock, lambda: send_and_expect_close("127.0.0.1:%d" % b.port,
                                                                         cancel_request(pid, key), timeout=30)) == 0
    finally:
        sock.close()
    code, metrics = b.admin("GET", "/metrics")
    assert "pgtandem_cancels_forwarded_total %d" % IDLE_CANCELS in metrics, metrics


def test_forged_cancels_to_the_peer_port_are_throttled(proxy_factory):
    """The peer port is as open as the client port: forged keys sent there
    cost their source the same tokens."""
    p = proxy_factory(extra_args=["--source-failures-per-s", "1"])
    addr = peer_address(p)
    sock, pid, key = login_with_key(p.port)
    sock.close()
    for i in range(500):
        assert send_and_expect_close(addr, cancel_request(pid, key ^ (i + 1)))
    deadline = time.time() + 15
    while time.time() < deadline:
        log = p.log()
        refused = sum(int(n) for n in re.findall(r"(\d+) cancel requests refused over the rate limit", log))
        looked = len(re.findall(r"cancel request from peer \S+ for an unknown session ignored", log)) + \
            sum(int(n) for n in re.findall(r"(\d+) cancel requests for unknown sessions", log))
        if refused + looked >= 500:
            break
        time.sleep(0.1)
    assert refused + looked == 500, log[-2000:]
    assert looked <= 5 + 20, (looked, refused)
    assert len(log.splitlines()) < 30, log[-3000:]
