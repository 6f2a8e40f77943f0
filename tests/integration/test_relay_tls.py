"""TLS on both legs: client TLS modes (allow, require, disable, none
configured), upstream sslmode disable/require/verify-ca/verify-full, and SNI
sent to the upstream."""
import os
import socket
import ssl
import struct
import threading

import psycopg
import pytest

from support import pg_error_fields, pg_read_until, pg_startup_packet

CB = "channel_binding=disable"


def ssl_answer(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack("!II", 8, 80877103))
        return s.recv(1)


def plain_startup_error(port, user="trustuser"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(pg_startup_packet(user, "appdb"))
        t, p = pg_read_until(s)[-1]
        return pg_error_fields(p) if t == b"E" else {"type": t}


def upstream_ssl(conn):
    return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def test_client_tls_allow_default(proxy, cluster):
    assert ssl_answer(proxy.port) == b"S"
    with psycopg.connect(proxy.uri(sslmode="disable")) as c:
        assert not c.pgconn.ssl_in_use
        assert upstream_ssl(c) is True
    with psycopg.connect(proxy.uri(sslmode="verify-full", extra=CB + "&sslrootcert=" + cluster.ca)) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT 'tls'").fetchone() == ("tls",)
    # psql over TLS to the proxy
    import subprocess
    r = subprocess.run(["psql", proxy.uri(sslmode="require", extra=CB), "-XAt", "-c", "SELECT 7*6"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr


def test_client_tls_require(proxy_factory, cluster):
    p = proxy_factory(extra_args=["--client-tls", "require"])
    assert ssl_answer(p.port) == b"S"
    err = plain_startup_error(p.port)
    assert err.get("C") == "28000", err
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.uri(sslmode="disable"))
    with psycopg.connect(p.uri(sslmode="require", extra=CB)) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT current_user").fetchone() == ("app",)


def test_client_tls_disable(proxy_factory):
    p = proxy_factory(extra_args=["--client-tls", "disable"])
    assert ssl_answer(p.port) == b"N"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.uri(sslmode="require", extra=CB))
    with psycopg.connect(p.uri(sslmode="prefer")) as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_no_certificate_answers_n(proxy_factory):
    p = proxy_factory(tls=False)
    assert ssl_answer(p.port) == b"N"
    with psycopg.connect(p.uri(sslmode="prefer")) as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT current_user").fetchone() == ("app",)


@pytest.mark.parametrize("mode,host,ssl_expected", [
    ("disable", "127.0.0.1", False),
    ("require", "127.0.0.1", True),
    ("verify-ca", "127.0.0.1", True),
    ("verify-full", "localhost", True),
])
def test_upstream_sslmodes(proxy_factory, cluster, mode, host, ssl_expected):
    up = "postgresql://%s:%d/?sslmode=%s" % (host, cluster.port, mode)
    if mode.startswith("verify"):
        up += "&sslrootcert=" + cluster.ca
    p = proxy_factory(upstream=up)
    with psycopg.connect(p.uri()) as c:
        assert upstream_ssl(c) is ssl_expected
        assert c.execute("SELECT current_user").fetchone() == ("app",)


def test_upstream_verify_fails_with_wrong_ca(proxy_factory, cluster, tmp_path):
    # the server certificate is not a CA: verification against it must fail
    up = "postgresql://localhost:%d/?sslmode=verify-full&sslrootcert=%s" % (
        cluster.port, os.path.join(cluster.tlsdir, "server.crt"))
    p = proxy_factory(upstream=up)
    err = plain_startup_error(p.port, user="trustuser")
    assert err.get("C") == "08006", err
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.uri())


def test_upstream_verify_full_refuses_a_certificate_for_another_name(proxy_factory, cluster):
    """The cluster's certificate (trusted CA) names localhost and 127.0.0.1.
    Reached by address under another name, verify-full must refuse it; the
    same upstream in verify-ca connects, so the refusal is the name check
    and nothing else."""
    up = "postgresql://db.not-this-name.test:%d/?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=%s" % (
        cluster.port, cluster.ca)
    p = proxy_factory(upstream=up)
    for _ in range(2):
        err = plain_startup_error(p.port, user="trustuser")
        assert err.get("C") == "08006", err
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.uri(), connect_timeout=20)
    assert "hostname mismatch" in p.log(), p.log()[-2000:]
    ca = proxy_factory(upstream=up.replace("verify-full", "verify-ca"))
    with psycopg.connect(ca.uri(), connect_timeout=20) as c:
        assert upstream_ssl(c) is True


def test_upstream_verify_full_by_ip_address(proxy_factory, cluster):
    """verify-full against an IP literal checks the certificate's IP SAN:
    127.0.0.1 is in it and connects."""
    up = "postgresql://127.0.0.1:%d/?sslmode=verify-full&sslrootcert=%s" % (cluster.port, cluster.ca)
    p = proxy_factory(upstream=up)
    with psycopg.connect(p.uri(), connect_timeout=20) as c:
        assert upstream_ssl(c) is True


def test_upstream_sni_is_host_name(proxy_factory, cluster):
    """A fake TLS upstream records the SNI the proxy sends (require mode)."""
    seen = {}
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(cluster.tlsdir, "server.crt"), os.path.join(cluster.tlsdir, "server.key"))

    def sni(sslobj, name, _ctx):
        seen["sni"] = name

    ctx.sni_callback = sni
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(15)
    port = srv.getsockname()[1]

    def serve():
        try:
            conn, _ = srv.accept()
            conn.settimeout(10)
            req = conn.recv(8)
            seen["sslrequest"] = req == struct.pack("!II", 8, 80877103)
            conn.sendall(b"S")
            tconn = ctx.wrap_socket(conn, server_side=True)
            hdr = tconn.recv(4)
            n = struct.unpack("!I", hdr)[0]
            body = b""
            while len(body) < n - 4:
                body += tconn.recv(n - 4 - len(body))
            seen["startup_user"] = body[4:].split(b"\0")[1].decode()
            msg = b"SFATAL\0VFATAL\0C28000\0Mfake upstream says no\0\0"
            tconn.sendall(b"E" + struct.pack("!I", len(msg) + 4) + msg)
            tconn.close()
        except Exception as e:  # reported through `seen`
            seen["error"] = repr(e)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        p = proxy_factory(upstream="postgresql://localhost:%d/?sslmode=require" % port)
        err = plain_startup_error(p.port, user="trustuser")
        th.join(15)
        assert seen.get("sslrequest"), seen
        assert seen.get("sni") == "localhost", seen
        assert seen.get("startup_user") == "trustuser", seen
        assert err.get("M") == "fake upstream says no", err
    finally:
        srv.close()
