"""The PROXY protocol on the client listener: a load balancer in
proxy_protocol_trusted sends a header (v2 binary, or v1 text) naming the
real client before the client's first byte, and the proxy sees that
client everywhere it names one: the per-source limits, the log, /status
(with the balancer as `proxied_by`).

The rule chosen (HAProxy's accept-proxy): a connection from a trusted
source must start with a header, so a client the balancer passes through
untouched can never choose its own address; a header from any other
source is refused with a clear error. v2 LOCAL (the balancer's own health
check) keeps the balancer's address.

Raw sockets send the headers with made-up sources; psql and psycopg go
through a small forwarder that adds a v2 header as HAProxy's send-proxy-v2
does, on plain TCP and on TLS."""
import re
import socket
import ssl
import struct
import subprocess
import threading

import psycopg
import pytest

from support import (CANCEL_CODE, pg_error_fields, pg_login, pg_read_message, pg_simple_query, SSL_REQUEST,
                     wait_for, wait_log)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst="127.0.0.1", dport=6432, local=False):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        block = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
        fam = 0x21
    else:
        block = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
        fam = 0x11
    block += struct.pack("!HH", sport, dport)
    block += bytes([0x04, 0x00, 0x01, 0x00])  # a TLV (PP2_TYPE_NOOP), skipped
    return SIG + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


@pytest.fixture
def pp_proxy(proxy_factory):
    return proxy_factory(extra_args=["--proxy-protocol-trusted", "10.0.0.0/8,127.0.0.1/32",
                                     "--source-failures-per-s", "1"])


def sessions_by_client(p):
    code, st = p.admin("GET", "/status")
    assert code == 200, st
    return {s["client"]: s for s in st["sessions"]}


def login_after(port, header, user="trustuser", tls=False):
    """A socket that sent `header`, then (SSLRequest, TLS and) a startup
    packet, logged in: (socket, messages of the login)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(header)
    if tls:
        s.sendall(SSL_REQUEST)
        assert s.recv(1) == b"S"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    return s, pg_login(s, user)


def refusal(port, data):
    """What the proxy answers to `data` (then our end closed): the error's fields."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        t, p = pg_read_message(s)
        assert t == b"E", (t, p)
        return pg_error_fields(p)
    finally:
        s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_trusted_v2_header_names_the_client(needs_proxy, pp_proxy, tls):
    s, msgs = login_after(pp_proxy.port, v2_header("203.0.113.7", 40001), tls=tls)
    try:
        assert msgs[-1][0] == b"Z", msgs[-1]
        assert pg_simple_query(s, "SELECT 1") == ([["1"]], None)
        seen = wait_for(lambda: sessions_by_client(pp_proxy).get("203.0.113.7:40001"), what="the session in /status")
        assert re.match(r"127\.0\.0\.1:\d+$", seen["proxied_by"]), seen
        assert seen["tls"] == tls
    finally:
        s.close()


def test_v6_v1_and_local_headers(needs_proxy, pp_proxy):
    socks = []
    try:
        for header, client in ((v2_header("2001:db8::7", 5000), "2001:db8::7:5000"),
                               (b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 6432\r\n", "198.51.100.9:5555"),
                               (b"PROXY TCP6 2001:db8::9 ::1 6000 6432\r\n", "2001:db8::9:6000")):
            s, msgs = login_after(pp_proxy.port, header)
            socks.append(s)
            assert msgs[-1][0] == b"Z", (client, msgs[-1])
            wait_for(lambda: client in sessions_by_client(pp_proxy), what=client)
        # the balancer's own health check: its address stands
        s, msgs = login_after(pp_proxy.port, v2_header(None, 0, local=True))
        socks.append(s)
        assert msgs[-1][0] == b"Z", msgs[-1]
        local = [c for c, v in sessions_by_client(pp_proxy).items() if c.startswith("127.0.0.1:")]
        assert local and "proxied_by" not in sessions_by_client(pp_proxy)[local[0]], local
    finally:
        for s in socks:
            s.close()


def test_the_per_source_limit_counts_the_real_client(needs_proxy, pp_proxy):
    """Cancel requests for no session cost their source a token
    (source_failures_per_s 1, a burst of 5): the client named in the header
    runs out, not the balancer, and another client behind the same
    balancer still gets its lines logged one by one."""
    def bad_cancel(src, port):
        s = socket.create_connection(("127.0.0.1", pp_proxy.port), timeout=10)
        s.sendall(v2_header(src, port) + struct.pack("!IIII", 16, CANCEL_CODE, 1, 2))
        s.settimeout(10)
        try:
            while s.recv(64):
                pass
        except OSError:
            pass
        s.close()
    for i in range(12):
        bad_cancel("203.0.113.50", 41000 + i)
    wait_log(pp_proxy, "from 203.0.113.50, not logged one by one")
    assert "(203.0.113.50:41000): cancel request for an unknown session ignored" in pp_proxy.log()
    bad_cancel("198.51.100.77", 42000)
    wait_log(pp_proxy, "(198.51.100.77:42000): cancel request for an unknown session ignored")
    # the balancer itself was never throttled: a client through it still logs in
    s, msgs = login_after(pp_proxy.port, v2_header("192.0.2.1", 43000))
    s.close()
    assert msgs[-1][0] == b"Z", msgs[-1]
    assert "from 127.0.0.1, not logged" not in pp_proxy.log()


def test_a_header_from_an_untrusted_source_is_refused(needs_proxy, proxy_factory):
    # the feature off, and on for other sources only
    for extra in ([], ["--proxy-protocol-trusted", "10.0.0.0/8"]):
        p = proxy_factory(extra_args=extra)
        for header in (v2_header("203.0.113.7", 40001), b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 6432\r\n"):
            f = refusal(p.port, header + b"\0\0\0\x08\x04\xd2\x16\x2f")
            assert f["C"] == "08P01", f
            assert re.match(r"PROXY protocol header refused: 127\.0\.0\.1:\d+ is not in proxy_protocol_trusted$",
                            f["M"]), f
        assert "PROXY protocol header refused" in p.log()
        # and plain clients are served as before
        with psycopg.connect(p.uri(user="trustuser", password="")) as c:
            assert c.execute("SELECT 1").fetchone()[0] == 1


def test_a_trusted_source_without_a_header_is_refused(needs_proxy, pp_proxy):
    f = refusal(pp_proxy.port, SSL_REQUEST)
    assert f["C"] == "08P01" and "must start with a PROXY protocol header" in f["M"], f
    f = refusal(pp_proxy.port, SIG + bytes([0x21, 0x12, 0, 12]) + b"\0" * 12)
    assert f["C"] == "08P01" and f["M"] == "invalid PROXY protocol v2 header for a datagram", f
    r = subprocess.run(["psql", pp_proxy.uri(user="trustuser", password=""), "-c", "SELECT 1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "must start with a PROXY protocol header" in r.stderr, r.stderr


class SendProxyV2:
    """A balancer in front of the proxy: accepts clients, connects to the
    proxy and sends a v2 header naming `source` (with the client's port)
    before relaying bytes both ways, as HAProxy's send-proxy-v2."""

    def __init__(self, target_port, source):
        self.target_port, self.source = target_port, source
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        self.srv.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, (_, cport) = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target_port))
            b.sendall(v2_header(self.source, cport))
            for x, y in ((c, b), (b, c)):
                t = threading.Thread(target=self._pipe, args=(x, y), daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.srv.close()
        for t in self.threads:
            t.join(5)


@pytest.mark.parametrize("sslmode", ["disable", "require"])
def test_psql_and_psycopg_through_a_balancer(needs_proxy, pp_proxy, sslmode):
    lb = SendProxyV2(pp_proxy.port, "10.20.30.40")
    try:
        uri = "postgresql://trustuser@127.0.0.1:%d/appdb?sslmode=%s" % (lb.port, sslmode)
        r = subprocess.run(["psql", uri, "-Atc", "SELECT 'through'"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == "through", r.stderr
        with psycopg.connect(uri, application_name="behind-lb") as c:
            assert c.execute("SELECT 2").fetchone()[0] == 2
            st = pp_proxy.admin("GET", "/status")[1]
            mine = [s for s in st["sessions"] if s["application_name"] == "behind-lb"]
            assert mine and mine[0]["client"].startswith("10.20.30.40:"), mine
            assert mine[0]["tls"] == (sslmode == "require")
    finally:
        lb.close()
