"""What arrives together leaves together on TLS (issue 10, item 13).

libpq decrypts one TLS record per read. Postgres writes the output of one
go (here the two notifications one transaction's commit delivers) with one
SSL_write, so a client that waits for readability, reads once and then
drains PQnotifies sees both. The proxy must not split that output into one
record per buffer segment. Checked with libpq (tests/clients/libpq_client.c)
on TLS and, as a control, in plain text; directly (PGT_RELAY_DIRECT=1) the
same assertions hold against Postgres.
"""
import socket
import ssl
import struct
import subprocess

import pytest

from support import LIBPQ_CLIENT, pg_startup_packet

pytestmark = pytest.mark.usefixtures("built")


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_notifications_of_one_commit_in_one_read(relay, tls):
    uri = relay.uri(sslmode="require", extra="channel_binding=disable") if tls else relay.uri()
    for attempt in range(3):
        r = subprocess.run([LIBPQ_CLIENT, "notify_one_read", uri], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "attempt %d: %s" % (attempt, r.stdout + r.stderr + relay.log()[-2000:])
        assert ("ssl on" if tls else "ssl off") in r.stdout, r.stdout


class RecordReader:
    """A TLS client that sees the records themselves: the bytes from the
    socket are split at each record header before OpenSSL (a MemoryBIO)
    decrypts them, and the length of every record is kept."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(struct.pack("!II", 8, 80877103))   # SSLRequest
        assert self.sock.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out)
        self.raw, self.records = b"", []
        self._call(self.tls.do_handshake)

    def _send_pending(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        chunk = self.sock.recv(65536)
        assert chunk, "the connection closed"
        self.raw += chunk
        while len(self.raw) >= 5:
            kind, length = self.raw[0], struct.unpack("!H", self.raw[3:5])[0]
            if len(self.raw) < 5 + length:
                break
            self.records.append((kind, length))
            self.inc.write(self.raw[:5 + length])
            self.raw = self.raw[5 + length:]

    def _call(self, fn, *args):
        while True:
            try:
                r = fn(*args)
                self._send_pending()
                return r
            except ssl.SSLWantReadError:
                self._send_pending()
                self._feed()

    def send(self, data):
        self._call(self.tls.write, data)

    def until_ready(self):
        """Reads messages up to ReadyForQuery; returns their types."""
        buf, types = b"", []
        while True:
            buf += self._call(self.tls.read, 65536)
            while len(buf) >= 5:
                n = struct.unpack("!I", buf[1:5])[0]
                if len(buf) < n + 1:
                    break
                types.append(buf[0:1])
                buf = buf[n + 1:]
                if types[-1] == b"Z":
                    return types


@pytest.mark.parametrize("sql", ["SELECT repeat('x', 300000)",
                                 "SELECT g, repeat('y', 700) FROM generate_series(1, 600) g"],
                         ids=["one-large-row", "many-rows"])
def test_records_no_larger_than_postgres_writes(relay, sql):
    """libpq reads into its input buffer with at least 8 KB free and
    decrypts what one SSL_read gives; the rest of a larger record stays
    inside OpenSSL, where a client that then waits on the socket (psycopg,
    libpq's async API) never looks: it hangs although everything arrived
    (psycopg's own suite hung through the pool this way, one run in four).
    Postgres writes records of at most 8 KB, so the proxy does too."""
    if getattr(relay, "pooled", False):
        pytest.skip("the trust user logs in through session mode")
    r = RecordReader(relay.port)
    r.send(pg_startup_packet("trustuser"))
    assert r.until_ready()[-1] == b"Z"
    r.records.clear()
    q = sql.encode() + b"\0"
    for _ in range(3):   # how the answer's bytes arrive at the proxy varies: several rounds
        r.send(b"Q" + struct.pack("!I", len(q) + 4) + q)
        types = r.until_ready()
        assert b"D" in types and b"E" not in types, types
    data = [n for kind, n in r.records if kind == 23]     # application_data
    # a record's payload plus what TLS adds to it (1.3: content type and a
    # 16-byte tag; 1.2 with AES-GCM: 24 bytes)
    assert data and max(data) <= 8192 + 64, "records of %d bytes (largest of %d)" % (max(data), len(data))
