"""CancelRequest through the relay reaches the right upstream backend:
pg_sleep(60) cancelled returns 57014 promptly, over plain and TLS client
connections, and a neighbouring session is untouched."""
import os
import re
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import TOP

CLIENT = os.path.join(TOP, "build", "clients", "libpq_client")
BOUND_S = 3.0  # the issue asks for "within a second"; generous for sanitizer builds


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.access(CLIENT, os.X_OK):
        r = subprocess.run(["make", "-C", TOP, "clients"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_libpq_cancel_pg_sleep(relay, cluster, tls):
    if tls and getattr(relay, "direct", False):
        pytest.skip("TLS variant needs the proxy")
    uri = relay.uri(sslmode="verify-full", extra="channel_binding=disable&sslrootcert=" + cluster.ca) \
        if tls else relay.uri()
    r = subprocess.run([CLIENT, "cancel", uri], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    m = re.search(r"^elapsed ([\d.]+)$", r.stdout, re.M)
    assert m, r.stdout
    assert float(m.group(1)) < BOUND_S, r.stdout


def test_psycopg_cancel_hits_only_its_backend(upstream_relay):
    relay = upstream_relay
    victim = psycopg.connect(relay.uri(), autocommit=True)
    other = psycopg.connect(relay.uri(), autocommit=True)
    try:
        res = {}

        def run_other():
            try:
                res["other"] = other.execute("SELECT pg_sleep(2), 'other done'").fetchone()[1]
            except Exception as e:
                res["other"] = repr(e)

        th = threading.Thread(target=run_other)
        th.start()
        timer = threading.Timer(0.5, victim.cancel)
        timer.start()
        t0 = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled) as e:
            victim.execute("SELECT pg_sleep(60)")
        elapsed = time.time() - t0
        assert e.value.sqlstate == "57014"
        assert elapsed < 0.5 + BOUND_S, elapsed
        th.join(30)
        assert res.get("other") == "other done", res
        assert victim.execute("SELECT 'victim alive'").fetchone() == ("victim alive",)
    finally:
        victim.close()
        other.close()


def test_cancel_with_bad_key_is_ignored(relay):
    """A CancelRequest with a wrong key must not cancel anything."""
    import socket
    import struct
    conn = psycopg.connect(relay.uri(), autocommit=True)
    try:
        pid = conn.pgconn.backend_pid
        res = {}

        def run():
            try:
                res["v"] = conn.execute("SELECT pg_sleep(1.5), 'finished'").fetchone()[1]
            except Exception as e:
                res["v"] = repr(e)

        th = threading.Thread(target=run)
        th.start()
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as s:
            s.sendall(struct.pack("!IIII", 16, 80877102, pid, 12345))
            s.settimeout(5)
            assert s.recv(16) == b""  # the proxy closes without a reply
        th.join(30)
        assert res.get("v") == "finished", res
    finally:
        conn.close()
