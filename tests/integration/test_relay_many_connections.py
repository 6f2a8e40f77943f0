"""1,000 concurrent client connections through the relay (each with its own
upstream backend), all logged in and querying at once. The proxy is started
with a low soft RLIMIT_NOFILE, so it has to raise its own limit."""
import re
import resource
import socket
import struct
import time

import pytest

from support import pg_error_fields, pg_read_message, pg_startup_packet, raise_nofile, relay_direct

N = 1000
WAVE = 100


def _metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})?\s+(\S+)" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def test_thousand_concurrent_connections(proxy_factory, cluster):
    if relay_direct():
        pytest.skip("needs the proxy")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * N + 200:
        pytest.skip("hard RLIMIT_NOFILE %d is too low for %d connections" % (hard, N))
    # the proxy inherits a soft limit of 1024 and must raise it itself
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, soft), hard))
    try:
        p = proxy_factory()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert raise_nofile(N + 500) >= N + 100
    socks = []
    try:
        # logins go in waves of WAVE so that a burst of upstream TLS handshakes on
        # a busy machine does not run into the proxy's upstream connect timeout;
        # the connections stay open, so all N are concurrent afterwards
        for start in range(0, N, WAVE):
            wave = []
            for i in range(start, min(N, start + WAVE)):
                s = socket.create_connection(("127.0.0.1", p.port), timeout=60)
                s.sendall(pg_startup_packet("trustuser", "appdb", application_name="many-%d" % i))
                wave.append(s)
                socks.append(s)
            for k, s in enumerate(wave):
                s.settimeout(120)
                while True:
                    t, payload = pg_read_message(s)
                    assert t is not None, "connection %d closed during login\n%s" % (start + k, p.log()[-3000:])
                    assert t != b"E", "connection %d: %s" % (start + k, pg_error_fields(payload))
                    if t == b"Z":
                        break
        # every session queries at the same time
        for i, s in enumerate(socks):
            body = ("SELECT %d, pg_backend_pid()" % i).encode() + b"\0"
            s.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        pids = set()
        for i, s in enumerate(socks):
            got = None
            while True:
                t, payload = pg_read_message(s)
                assert t is not None and t != b"E", (i, payload)
                if t == b"D":
                    n1 = struct.unpack("!i", payload[2:6])[0]
                    got = payload[6:6 + n1].decode()
                    n2 = struct.unpack("!i", payload[6 + n1:10 + n1])[0]
                    pids.add(payload[10 + n1:10 + n1 + n2])
                if t == b"Z":
                    break
            assert got == str(i)
        assert len(pids) == N  # one upstream backend per client
        code, st = p.admin("GET", "/status")
        assert code == 200
        assert len(st["sessions"]) >= N, len(st["sessions"])
        code, metrics = p.admin("GET", "/metrics")
        assert _metric(metrics, "pgtandem_client_connections") >= N, metrics[:2000]
        backends = int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'many-%'"))
        assert backends == N
    finally:
        for s in socks:
            s.close()
    # all sessions and their backends go away
    deadline = time.time() + 60
    left = None
    while time.time() < deadline:
        left = int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'many-%'"))
        if left == 0:
            break
        time.sleep(0.2)
    assert left == 0, "%d upstream backends left after clients closed" % left
    code, st = p.admin("GET", "/status")
    assert [x for x in st["sessions"] if x.get("application_name", "").startswith("many-")] == []
