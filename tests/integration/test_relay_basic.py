"""The relay with psql and the raw protocol: queries, errors, notices,
transaction status, GSSENCRequest, Unix socket, and the admin API (status,
metrics, token)."""
import hashlib
import os
import re
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from support import pg_error_fields, pg_login, pg_raw_session, pg_read_message, pg_simple_query, psql, relay_login


def test_psql_queries(relay):
    uri = relay.uri()
    assert psql(uri, "SELECT 1 + 1", check=True).stdout.strip() == "2"
    assert psql(uri, "SELECT current_user, current_database()", check=True).stdout.strip() == "app|appdb"
    r = psql(uri, "SELECT g, md5(g::text) FROM generate_series(1, 5000) g", check=True)
    out = [l for l in r.stdout.split("\n") if l]
    assert out == ["%d|%s" % (g, hashlib.md5(str(g).encode()).hexdigest()) for g in range(1, 5001)]
    # several statements in one simple Query, then a multi-row result
    r = psql(uri, "CREATE TEMP TABLE t (a int, b text); INSERT INTO t SELECT g, 'v' || g FROM "
                  "generate_series(1, 100) g; SELECT count(*), sum(a) FROM t", check=True)
    assert r.stdout.strip().split("\n")[-1] == "100|5050"


def test_psql_script_with_transactions_and_errors(relay, tmp_path):
    script = tmp_path / "s.sql"
    script.write_text("""
DROP TABLE IF EXISTS relay_basic_tx;
CREATE TABLE relay_basic_tx (id int primary key, v text);
BEGIN;
INSERT INTO relay_basic_tx VALUES (1, 'one');
SAVEPOINT s1;
INSERT INTO relay_basic_tx VALUES (1, 'dup');
ROLLBACK TO s1;
INSERT INTO relay_basic_tx VALUES (2, 'two');
COMMIT;
BEGIN;
INSERT INTO relay_basic_tx VALUES (3, 'three');
ROLLBACK;
SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM relay_basic_tx;
DROP TABLE relay_basic_tx;
""")
    r = subprocess.run(["psql", relay.uri(), "-X", "-At", "-f", str(script)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "1=one,2=two" in r.stdout.split("\n")
    assert "duplicate key value violates unique constraint" in r.stderr


def test_error_sqlstate_and_session_survives(relay):
    s = pg_raw_session(relay.port, **relay_login(relay))
    try:
        rows, err = pg_simple_query(s, "SELECT 1/0")
        assert err is not None and err["C"] == "22012", err
        rows, err = pg_simple_query(s, "SELECT * FROM no_such_table_xyz")
        assert err["C"] == "42P01", err
        rows, err = pg_simple_query(s, "SELECT 'still here'")
        assert err is None and rows == [["still here"]]
    finally:
        s.close()


def test_ready_for_query_status_passes_through(relay):
    """ReadyForQuery carries I / T / E unchanged through the relay."""
    s = pg_raw_session(relay.port, **relay_login(relay))

    def status_after(sql):
        body = sql.encode() + b"\0"
        s.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        while True:
            t, p = pg_read_message(s)
            assert t is not None
            if t == b"Z":
                return p.decode()

    try:
        assert status_after("SELECT 1") == "I"
        assert status_after("BEGIN") == "T"
        assert status_after("SELECT 1/0") == "E"
        assert status_after("SELECT 1") == "E"
        assert status_after("ROLLBACK") == "I"
    finally:
        s.close()


def test_notice_and_parameter_status(relay):
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    try:
        params = {}
        for t, p in pg_login(s, application_name="relay-basic", **relay_login(relay)):
            assert t is not None and t != b"E", p
            if t == b"S":
                k, v = p.split(b"\0")[:2]
                params[k.decode()] = v.decode()
        assert params.get("application_name") == "relay-basic"
        assert params.get("server_version", "").startswith("15")
        body = b"DO $$ BEGIN RAISE NOTICE 'relay notice %', 7; END $$\0"
        s.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        notices = []
        while True:
            t, p = pg_read_message(s)
            assert t is not None
            if t == b"N":
                notices.append(pg_error_fields(p))
            if t == b"Z":
                break
        assert [n["M"] for n in notices] == ["relay notice 7"]
    finally:
        s.close()


def test_gssenc_request_answered_n(relay, needs_proxy):
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    try:
        s.sendall(struct.pack("!II", 8, 80877104))
        assert s.recv(1) == b"N"
        # the connection continues with a normal startup
        msgs = pg_login(s, **relay_login(relay))
        assert msgs[-1][0] == b"Z", msgs[-3:]
    finally:
        s.close()


def test_unix_socket(proxy_factory, needs_proxy):
    d = tempfile.mkdtemp(prefix="pgt-sock-")
    p = proxy_factory(extra_args=["--unix-socket", d])
    deadline = time.time() + 10
    while time.time() < deadline and not any(n.startswith(".s.PGSQL.") for n in os.listdir(d)):
        time.sleep(0.05)
    socks = [n for n in os.listdir(d) if n.startswith(".s.PGSQL.") and not n.endswith(".lock")]
    assert socks, "no socket in %s: %s" % (d, os.listdir(d))
    port = socks[0].split(".")[-1]
    r = subprocess.run(["psql", "host=%s port=%s user=app password=apppass dbname=appdb" % (d, port),
                        "-XAt", "-c", "SELECT 'via unix'"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr + p.log()[-2000:]
    assert r.stdout.strip() == "via unix"


# ---- admin API ------------------------------------------------------------

def test_admin_status_lists_sessions(proxy):
    s = pg_raw_session(proxy.port, application_name="status-probe")
    try:
        pg_simple_query(s, "SELECT repeat('x', 10000)")
        code, st = proxy.admin("GET", "/status")
        assert code == 200, st
        assert st["paused"] is False
        mine = [x for x in st["sessions"] if x.get("application_name") == "status-probe"]
        assert len(mine) == 1, st
        m = mine[0]
        for k in ("id", "client", "user", "database", "state", "tx_status", "bytes_in", "bytes_out"):
            assert k in m, (k, m)
        assert m["user"] == "trustuser" and m["database"] == "appdb"
        assert m["tx_status"] == "I"
        assert m["bytes_out"] > 10000, m  # the 10 kB row went to the client
        assert "127.0.0.1" in m["client"]
        pg_simple_query(s, "BEGIN")
        code, st = proxy.admin("GET", "/status")
        m = [x for x in st["sessions"] if x.get("application_name") == "status-probe"][0]
        assert m["tx_status"] == "T"
        pg_simple_query(s, "ROLLBACK")
    finally:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        code, st = proxy.admin("GET", "/status")
        if not [x for x in st["sessions"] if x.get("application_name") == "status-probe"]:
            break
        time.sleep(0.1)
    assert not [x for x in st["sessions"] if x.get("application_name") == "status-probe"], st


def _metric(text, name, labels=None):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        if labels and not all('%s="%s"' % kv in (m.group(2) or "") for kv in labels.items()):
            continue
        return float(m.group(3))
    return None


def test_admin_metrics(proxy):
    code, before = proxy.admin("GET", "/metrics")
    assert code == 200
    assert isinstance(before, str)
    tx0 = _metric(before, "pgtandem_transactions_total") or 0
    s = pg_raw_session(proxy.port)
    try:
        for i in range(5):
            pg_simple_query(s, "SELECT %d" % i)
        pg_simple_query(s, "BEGIN")
        pg_simple_query(s, "SELECT 1")
        pg_simple_query(s, "COMMIT")
        code, text = proxy.admin("GET", "/metrics")
        assert code == 200
        assert _metric(text, "pgtandem_client_connections") >= 1, text
        assert _metric(text, "pgtandem_bytes_received_total", {"side": "client"}) > 0, text
        assert _metric(text, "pgtandem_bytes_received_total", {"side": "server"}) > 0, text
        assert _metric(text, "pgtandem_transactions_total") >= tx0 + 6, text
        count = _metric(text, "pgtandem_query_latency_seconds_count")
        assert count is not None and count >= 8, text
        assert _metric(text, "pgtandem_query_latency_seconds_sum") > 0, text
        assert "pgtandem_query_latency_seconds_bucket" in text
        inf = _metric(text, "pgtandem_query_latency_seconds_bucket", {"le": "+Inf"})
        assert inf == count, text
    finally:
        s.close()


def test_admin_token_required(proxy_factory, needs_proxy):
    p = proxy_factory(token="s3cret")
    code, body = p.admin("GET", "/status")
    assert code == 200, body
    p.token = None
    code, body = p.admin("GET", "/status")
    assert code == 401, body
    code, body = p.admin("POST", "/pause?timeout_ms=100")
    assert code == 401, body
    code, body = p.admin("GET", "/metrics")
    assert code == 401, body
    p.token = "wrong"
    code, body = p.admin("POST", "/resume")
    assert code == 401, body
    p.token = "s3cret"
    code, body = p.admin("GET", "/status")
    assert code == 200 and body["paused"] is False
