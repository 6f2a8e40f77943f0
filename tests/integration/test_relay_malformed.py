"""Malformed bytes on the wire: a message length below 4, a message over
--max-message-bytes, and garbage in place of a startup packet close only
that connection (with ErrorResponse 08P01 once the session is up); other
sessions keep working and the proxy keeps accepting."""
import socket
import struct

import pytest

from support import pg_error_fields, pg_raw_session, pg_read_message, pg_simple_query

MAX = 65536


@pytest.fixture
def mproxy(proxy_factory):
    return proxy_factory(extra_args=["--max-message-bytes", str(MAX)])


def read_to_eof(s, timeout=10):
    """Messages until the connection closes; raises if it stays open."""
    s.settimeout(timeout)
    msgs = []
    while True:
        t, p = pg_read_message(s)
        if t is None:
            return msgs
        msgs.append((t, p))


def assert_others_fine(port, bystander):
    rows, err = pg_simple_query(bystander, "SELECT 'bystander ok'")
    assert err is None and rows == [["bystander ok"]]
    fresh = pg_raw_session(port)
    try:
        rows, err = pg_simple_query(fresh, "SELECT 'new ok'")
        assert err is None and rows == [["new ok"]]
    finally:
        fresh.close()


@pytest.mark.parametrize("case", ["length_2", "length_0", "over_max", "huge_length"])
def test_bad_message_closes_only_that_session(mproxy, case):
    bystander = pg_raw_session(mproxy.port, application_name="bystander")
    victim = pg_raw_session(mproxy.port, application_name="victim")
    try:
        if case == "length_2":
            victim.sendall(b"Q" + struct.pack("!I", 2) + b"garbage garbage")
        elif case == "length_0":
            victim.sendall(b"P" + struct.pack("!I", 0))
        elif case == "over_max":
            # the header announces MAX + 100 bytes; only the start follows, so no
            # unread bytes are left for a reset to discard the error with
            victim.sendall(b"Q" + struct.pack("!I", MAX + 100) + b"SELECT '" + b"x" * 1000)
        else:
            victim.sendall(b"Q" + struct.pack("!I", 0x7FFFFFF0) + b"SELECT 1")
        msgs = read_to_eof(victim)
        errs = [pg_error_fields(p) for t, p in msgs if t == b"E"]
        assert len(errs) == 1, msgs
        assert errs[0]["C"] == "08P01", errs
        assert errs[0]["S"] == "FATAL", errs
        assert_others_fine(mproxy.port, bystander)
        # the upstream session of the victim went away too (no leaked backend)
        code, st = mproxy.admin("GET", "/status")
        assert [x["application_name"] for x in st["sessions"]] == ["bystander"], st
    finally:
        victim.close()
        bystander.close()


def test_message_at_max_is_accepted(mproxy):
    s = pg_raw_session(mproxy.port)
    try:
        # a Query of exactly MAX bytes including the length word
        sql = b"SELECT length('" + b"y" * 100 + b"')"
        pad = MAX - 4 - len(sql) - 1 - len(b" --")
        body = sql + b" --" + b"z" * pad + b"\0"
        assert len(body) + 4 == MAX
        s.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        s.settimeout(10)
        rows = []
        while True:
            t, p = pg_read_message(s)
            assert t is not None and t != b"E", pg_error_fields(p) if t == b"E" else "EOF"
            if t == b"D":
                rows.append(p)
            if t == b"Z":
                break
        assert len(rows) == 1 and rows[0].endswith(b"100")
    finally:
        s.close()


@pytest.mark.parametrize("garbage", [
    struct.pack("!I", 2),                              # startup length below the minimum
    struct.pack("!II", 8, 0x12345678),                 # unknown protocol code
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",               # wrong protocol entirely
    struct.pack("!I", 0x7FFFFFFF) + b"\0" * 16,        # absurd startup length
], ids=["len2", "badcode", "http", "huge"])
def test_garbage_instead_of_startup(proxy, garbage):
    bystander = pg_raw_session(proxy.port)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        s.sendall(garbage)
        msgs = read_to_eof(s)  # the proxy closes (possibly after an ErrorResponse)
        errs = [pg_error_fields(p) for t, p in msgs if t == b"E"]
        assert all(e.get("C") in ("08P01", "0A000") for e in errs), errs
        assert_others_fine(proxy.port, bystander)
    finally:
        s.close()
        bystander.close()


def test_abrupt_disconnects_do_not_disturb_others(proxy):
    bystander = pg_raw_session(proxy.port)
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            if i % 2:
                s.sendall(struct.pack("!I", 40)[:3])  # half a header, then gone
            s.close()
            v = pg_raw_session(proxy.port)
            v.sendall(b"Q" + struct.pack("!I", 13) + b"SELECT pg_")  # half a query, then gone
            v.close()
        assert_others_fine(proxy.port, bystander)
    finally:
        bystander.close()
