"""Protocol version negotiation as Postgres does it: a StartupMessage of
protocol 3.x above 3.0 (libpq 18's max_protocol_version=3.2), or one with
"_pq_." protocol options, is answered with NegotiateProtocolVersion ('v':
the newest version served, 3.0, and the options not recognized) and then
served at 3.0; another major version is still refused with 0A000.

Debian 12's libpq (15) cannot ask for 3.2, so the startup packets are
written here. The 'v' message is compared byte for byte with what Postgres
itself answers to the same packet, through the proxy in session and
transaction pooling, on plain TCP and on TLS; a query then runs. The
upstream leg stays at 3.0 without the options: a recording TLS front
between the proxy and Postgres sees the StartupMessages the proxy sends,
and the client gets exactly one 'v' (Postgres would add its own for a 3.2
or "_pq_." startup that reached it)."""
import os
import socket
import struct

import pytest

from support import (pg_error_fields, pg_read_message, pg_simple_query, pg_tls_socket, scram_exchange, TlsFront,
                     write_users_file)

V30 = 3 << 16
V32 = (3 << 16) | 2
POOL_USERS = {"app": "apppass"}


def startup(code, user, password=None, options=(), database="appdb"):
    body = struct.pack("!I", code)
    for k, v in [("user", user), ("database", database)] + list(options):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def negotiate(port, packet, password=None, tls=False):
    """Sends `packet` and logs in; returns (socket, messages before
    ReadyForQuery or the first ErrorResponse, that last message)."""
    s = pg_tls_socket(port) if tls else socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(20)
    s.sendall(packet)
    seen = []
    while True:
        t, p = pg_read_message(s)
        if t is None or t in (b"Z", b"E"):
            return s, seen, (t, p)
        seen.append((t, p))
        if t == b"R" and struct.unpack("!I", p[:4])[0] == 10:
            scram_exchange(s, password)


def v_messages(seen):
    return [p for t, p in seen if t == b"v"]


def v_payload(newest, options):
    return struct.pack("!II", newest, len(options)) + b"".join(o.encode() + b"\0" for o in options)


@pytest.fixture
def pooled_proxy(proxy_factory, tmp_path):
    users = write_users_file(str(tmp_path / "negotiation-users.json"), {u: {"password": pw}
                                                                         for u, pw in POOL_USERS.items()})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users, "--pool-mode", "transaction",
                                     "--pool-size", "2"])


CASES = {
    "3.2": (V32, ()),
    "3.2_with_options": (V32, (("_pq_.compression", "on"), ("_pq_.test", "1"))),
    "3.0_with_an_option": (V30, (("_pq_.unknown", "x"),)),
    "3.65535": ((3 << 16) | 0xFFFF, ()),
}


def postgres_answer(cluster, code, options):
    """The 'v' Postgres itself sends for the packet (trust login as trustuser)."""
    s, seen, last = negotiate(cluster.port, startup(code, "trustuser", options=options))
    s.close()
    assert last[0] == b"Z", pg_error_fields(last[1]) if last[0] == b"E" else last
    return v_messages(seen)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_session_mode_negotiates_like_postgres(needs_proxy, cluster, proxy, case, tls):
    code, options = CASES[case]
    want = postgres_answer(cluster, code, options)
    assert want == [v_payload(V30, [k for k, _ in options])], want
    s, seen, last = negotiate(proxy.port, startup(code, "trustuser", options=options), tls=tls)
    try:
        assert last[0] == b"Z", pg_error_fields(last[1]) if last[0] == b"E" else last
        assert v_messages(seen) == want, seen
        assert seen[0][0] == b"v", "NegotiateProtocolVersion comes first, as from Postgres: %r" % seen[:2]
        assert pg_simple_query(s, "SELECT current_user, 40 + 2") == ([["trustuser", "42"]], None)
    finally:
        s.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_transaction_pooling_negotiates_like_postgres(needs_proxy, cluster, pooled_proxy, case, tls):
    code, options = CASES[case]
    want = postgres_answer(cluster, code, options)
    socks = []
    try:
        # more clients than servers: the second pair runs on servers the first used
        for i in range(4):
            s, seen, last = negotiate(pooled_proxy.port, startup(code, "app", options=options),
                                      password=POOL_USERS["app"], tls=tls)
            socks.append(s)
            assert last[0] == b"Z", pg_error_fields(last[1]) if last[0] == b"E" else last
            assert v_messages(seen) == want and seen[0][0] == b"v", seen
        for i, s in enumerate(socks):
            assert pg_simple_query(s, "SELECT current_user, %d" % i) == ([["app", str(i)]], None)
    finally:
        for s in socks:
            s.close()


def test_another_major_version_is_still_refused(needs_proxy, cluster, proxy):
    for code in (4 << 16, (4 << 16) | 2, (2 << 16)):
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        try:
            s.sendall(startup(code, "trustuser"))
            first = s.recv(1)
            assert first == b"E", (hex(code), first)
        finally:
            s.close()


@pytest.fixture
def recording_front(cluster):
    front = TlsFront(os.path.join(cluster.tlsdir, "server.crt"), os.path.join(cluster.tlsdir, "server.key"),
                     cluster.port)
    yield front
    front.stop()


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_the_upstream_is_opened_at_3_0_without_the_options(needs_proxy, proxy_factory, recording_front, tmp_path,
                                                            mode):
    upstream = "postgresql://127.0.0.1:%d/?sslmode=require" % recording_front.port
    if mode == "transaction":
        users = write_users_file(str(tmp_path / "front-users.json"), {"app": {"password": POOL_USERS["app"]}})
        p = proxy_factory(upstream=upstream, extra_args=["--auth", "scram", "--users-file", users,
                                                         "--pool-mode", "transaction", "--pool-size", "2"])
        user, password = "app", POOL_USERS["app"]
    else:
        p = proxy_factory(upstream=upstream)
        user, password = "trustuser", None
    options = (("_pq_.compression", "on"), ("application_name", "negotiated"))
    s, seen, last = negotiate(p.port, startup(V32, user, options=options), password=password)
    try:
        assert last[0] == b"Z", pg_error_fields(last[1]) if last[0] == b"E" else last
        # one 'v': the proxy's; Postgres, asked at 3.0 without options, adds none
        assert v_messages(seen) == [v_payload(V30, ["_pq_.compression"])], seen
        assert pg_simple_query(s, "SHOW application_name") == ([["negotiated"]], None)
    finally:
        s.close()
    recording_front.settle(timeout=0.5)
    with recording_front.lock:
        startups = [c for c in recording_front.conns if "code" in c]
    assert startups, recording_front.conns
    for c in startups:
        assert c["code"] == V30, c
        assert not [k for k in c["startup"] if k.startswith("_pq_.")], c
