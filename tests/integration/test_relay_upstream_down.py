"""Upstream unreachable or refusing: the client gets ErrorResponse 08006
naming the upstream, not a dropped socket; the proxy keeps running. A
backend terminated under a live session is reported to that client only."""
import socket
import subprocess
import threading

import psycopg
import pytest

from support import free_port, pg_error_fields, pg_raw_session, pg_read_until, pg_simple_query, pg_startup_packet


def login_error(port, user="trustuser"):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(pg_startup_packet(user, "appdb"))
        t, p = pg_read_until(s, timeout=30)[-1]
        assert t == b"E", "expected an ErrorResponse, got %r" % (t,)
        return pg_error_fields(p)


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_upstream_port_closed(proxy_factory, sslmode):
    dead = free_port()
    p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=%s" % (dead, sslmode))
    for _ in range(3):
        err = login_error(p.port)
        assert err["C"] == "08006", err
        assert "127.0.0.1:%d" % dead in err["M"], err
    r = subprocess.run(["psql", p.uri(), "-XAt", "-c", "SELECT 1"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "127.0.0.1:%d" % dead in r.stderr, r.stderr
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(p.uri(), connect_timeout=30)
    assert "127.0.0.1:%d" % dead in str(e.value)
    assert p.proc.poll() is None
    assert p.admin("GET", "/status")[0] == 200


def _fake_upstream(behaviour):
    """A TCP server that misbehaves as an upstream; returns (port, closer)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def loop():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            try:
                c.settimeout(5)
                if behaviour == "close":
                    pass
                elif behaviour == "no_tls":
                    c.recv(8)
                    c.sendall(b"N")
                elif behaviour == "garbage":
                    c.recv(8)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            except OSError:
                pass
            finally:
                c.close()

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def closer():
        stop.set()
        th.join(5)
        srv.close()

    return srv.getsockname()[1], closer


@pytest.mark.parametrize("behaviour", ["close", "no_tls", "garbage"])
def test_upstream_refusing(proxy_factory, behaviour):
    port, closer = _fake_upstream(behaviour)
    try:
        p = proxy_factory(upstream="postgresql://127.0.0.1:%d/?sslmode=require" % port)
        err = login_error(p.port)
        assert err["C"] == "08006", err
        assert "127.0.0.1:%d" % port in err["M"], err
        assert p.proc.poll() is None
    finally:
        closer()


def test_backend_terminated_under_session(relay, cluster):
    victim = pg_raw_session(relay.port, application_name="to-terminate")
    bystander = pg_raw_session(relay.port, application_name="bystander")
    try:
        n = cluster.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE application_name = 'to-terminate'")
        assert n == "1"
        msgs = pg_read_until(victim, types=(), timeout=15)
        errs = [pg_error_fields(p) for t, p in msgs if t == b"E"]
        assert errs and errs[0]["C"] == "57P01", msgs
        rows, err = pg_simple_query(bystander, "SELECT 'fine'")
        assert err is None and rows == [["fine"]]
    finally:
        victim.close()
        bystander.close()
