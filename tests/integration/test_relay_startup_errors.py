"""Bytes that are not a valid startup packet are answered as Postgres answers
them (issue 10, item 14).

Postgres (ProcessStartupPacket) treats a communication error before the
startup packet (no data, a partial length word, a length below 8 or above
10004, a packet cut short by EOF, a CancelRequest of the wrong size) as
nothing to talk about: it logs and closes without sending a byte. Only once
it has a whole packet does it answer with a FATAL: an unsupported protocol
version (0A000, in the 2.0 format for versions below 3), a parameter list
without its terminator (08P01), no user name (28000). node-postgres relies on
the silence: end() before the connection is up sends Terminate ('X', read as
an impossible length) and must not get an ErrorResponse back.

Each case sends the same bytes to Postgres directly and to the target (the
proxy, or Postgres again with PGT_RELAY_DIRECT=1) and compares what comes
back: the bytes of anything that is not a v3 ErrorResponse, and severity,
SQLSTATE and message of ErrorResponses (Postgres adds file, line and routine).
"""
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

from support import pg_error_fields, pg_raw_session, pg_simple_query, pg_tls_socket, TOP

NODE_DIR = os.path.join(TOP, "tests", "node")
V3 = 196608
SSL_CODE, CANCEL_CODE = 80877103, 80877102


def startup(params, code=V3, length=None):
    body = struct.pack("!I", code) + params
    return struct.pack("!I", len(body) + 4 if length is None else length) + body


USER = b"user\0trustuser\0database\0appdb\0"

# name -> (bytes, close our writing side afterwards)
CASES = {
    "nothing": (b"", True),
    "partial_length_word": (b"\0\0", True),
    "zero_length": (b"\0\0\0\0", False),
    "length_4": (struct.pack("!I", 4), False),
    "length_7": (struct.pack("!I", 7) + b"\0\0\0", False),
    "length_over_max": (struct.pack("!II", 10005, V3) + b"\0" * 64, False),
    "huge_length": (struct.pack("!I", 0x7FFFFFFF) + b"\0" * 16, False),
    "truncated_packet": (startup(USER + b"\0")[:20], True),
    "header_only": (struct.pack("!II", 64, V3), True),
    "node_early_end": (b"X\0\0\0\x04", False),
    "terminate_then_startup": (b"X\0\0\0\x04" + startup(USER + b"\0"), False),
    "http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    "tls_client_hello": (bytes.fromhex("16030100a5010000a10303") + b"\0" * 32, False),
    "cancel_12_bytes": (struct.pack("!III", 12, CANCEL_CODE, 1), False),
    "cancel_20_bytes": (struct.pack("!IIIII", 20, CANCEL_CODE, 1, 2, 3), False),
    "cancel_unknown_pid": (struct.pack("!IIII", 16, CANCEL_CODE, 1, 2), False),
    "protocol_2": (startup(USER + b"\0", code=0x00020000), False),
    "protocol_1": (startup(b"", code=0x00010000), False),
    "protocol_4": (startup(USER + b"\0", code=0x00040000), False),
    "protocol_0": (struct.pack("!II", 8, 0), False),
    "bad_code": (struct.pack("!II", 8, 0x12345678), False),
    "no_terminator": (startup(USER), False),
    "value_missing": (startup(b"user\0"), False),
    "no_user": (startup(b"database\0appdb\0\0"), False),
    "empty_user": (startup(b"user\0\0\0"), False),
    "ssl_request_with_padding": (struct.pack("!III", 12, SSL_CODE, 0), False),
    "ssl_request": (struct.pack("!II", 8, SSL_CODE), False),
}


def exchange(port, data, shut, wait=1.0, tls=False):
    """Sends data (after an SSLRequest and a TLS handshake with tls=True);
    returns (bytes received, how the connection ended: 'closed', 'reset' or
    'open' when still open after `wait` seconds of silence)."""
    s = pg_tls_socket(port) if tls else socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if data:
            s.sendall(data)
        if shut:  # on TLS: a plain FIN, the TLS layer stays to read the answer
            socket.socket.shutdown(s, socket.SHUT_WR)
        s.settimeout(wait)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, "open"
            except ConnectionResetError:
                return got, "reset"
            except ssl.SSLError:  # EOF without close_notify
                return got, "closed"
            if not chunk:
                return got, "closed"
            got += chunk
    finally:
        s.close()


def describe(got, end):
    """What a client can tell from the answer. A reset after nothing is a
    close without a word (Postgres resets when it leaves bytes unread)."""
    if got[:1] == b"E" and len(got) >= 5 and struct.unpack("!I", got[1:5])[0] == len(got) - 1 \
            and got.endswith(b"\0\0"):
        f = pg_error_fields(got[5:])
        answer = ("ErrorResponse", f.get("S"), f.get("V"), f.get("C"), f.get("M"))
    else:
        answer = got
    return answer, "closed" if end == "reset" and not got else end


def answer(port, data, shut, tls=False):
    """What a client can tell; silence, or a FATAL error with the connection
    still open (a FATAL always ends it: the backend is still on its way
    out), is asked again with a longer wait, so that a Postgres (or proxy)
    slowed by a loaded machine is not taken for a silent or lingering one.
    Once seen under ASan load: Postgres's backend still open a second after
    its FATAL for an unknown protocol version."""
    got = describe(*exchange(port, data, shut, tls=tls))
    fatal_open = got[1] == "open" and isinstance(got[0], tuple) and got[0][1] == "FATAL"
    if got == (b"", "open") or fatal_open:
        got = describe(*exchange(port, data, shut, wait=5.0, tls=tls))
    return got


@pytest.mark.parametrize("case", sorted(CASES))
def test_answer_like_postgres(relay, cluster, case):
    data, shut = CASES[case]
    want = answer(cluster.port, data, shut)
    got = answer(relay.port, data, shut)
    assert got == want, "%s: target answered %r, Postgres %r" % (case, got, want)


@pytest.mark.parametrize("case", sorted(CASES))
def test_answer_like_postgres_on_tls(relay, cluster, case):
    """The same bytes once TLS is up; a second SSLRequest is one of them
    (Postgres negotiates encryption once and reads another request as a
    protocol version)."""
    data, shut = CASES[case]
    want = answer(cluster.port, data, shut, tls=True)
    got = answer(relay.port, data, shut, tls=True)
    assert got == want, "%s: target answered %r, Postgres %r" % (case, got, want)


def test_silent_cases_are_silent(relay):
    """The cases Postgres closes without a word (a check of the table above
    against the rule, so a change in the comparison cannot hide them)."""
    for case in ("nothing", "partial_length_word", "zero_length", "length_7", "huge_length", "truncated_packet",
                 "node_early_end", "cancel_12_bytes", "cancel_20_bytes", "http"):
        data, shut = CASES[case]
        assert exchange(relay.port, data, shut)[0] == b"", case


def test_others_keep_working_after_garbage(relay):
    bystander = pg_raw_session(relay.port)
    try:
        for case in sorted(CASES):
            exchange(relay.port, CASES[case][0], CASES[case][1], wait=0.2)
        rows, err = pg_simple_query(bystander, "SELECT 'bystander ok'")
        assert err is None and rows == [["bystander ok"]]
        fresh = pg_raw_session(relay.port)
        try:
            assert pg_simple_query(fresh, "SELECT 'new ok'") == ([["new ok"]], None)
        finally:
            fresh.close()
    finally:
        bystander.close()


def test_silent_close_is_logged(relay, needs_proxy):
    exchange(relay.port, b"X\0\0\0\x04", False)
    deadline = time.time() + 5
    while "invalid length of startup packet" not in relay.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "invalid length of startup packet" in relay.log()


@pytest.mark.parametrize("sslmode", ["disable", "no-verify"])
def test_node_postgres_end_before_connected(relay, sslmode):
    r = subprocess.run(["node", os.path.join(NODE_DIR, "early_end.js"), relay.uri(sslmode=sslmode)],
                       capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert r.stdout.count("ok ") == 3 and "FAIL" not in r.stdout, r.stdout


def test_many_startup_parameters_are_served_as_postgres_serves_them(relay, cluster):
    """Postgres bounds a startup packet by its size (10000 bytes), not by a
    count of parameters: 600 placeholder settings (about 9 KB) log in and
    are set, through the proxy as directly. It refused past 64."""
    params = {"pgt.p%03d" % i: "v%d" % i for i in range(600)}
    for port in (cluster.port, relay.port):
        s = pg_raw_session(port, **params)
        try:
            assert pg_simple_query(s, "SELECT current_setting('pgt.p599'), current_setting('pgt.p000')") == \
                ([["v599", "v0"]], None), port
        finally:
            s.close()
