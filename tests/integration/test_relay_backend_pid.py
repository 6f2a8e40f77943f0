"""The backend PID a client is told is the backend's own (issue 10, item 12).

BackendKeyData through the relay carries the upstream backend's process id,
so what libpq (PQbackendPID), psql (%p), psycopg (conn.info.backend_pid) and
node-postgres (client.processID) report is pg_backend_pid(), the session's
pg_stat_activity.pid and the sender PID of its notifications;
pg_terminate_backend(<reported pid>) ends that client's own session and no
other. The secret key stays the proxy's own, and a CancelRequest is routed
by the (pid, key) pair: the right PID with another session's key cancels
nothing. The same in auth mode "scram", where the proxy logs in upstream
itself. Every assertion holds directly against Postgres (PGT_RELAY_DIRECT=1).
"""
import os
import pty
import re
import select
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from support import (CANCEL_CODE, DirectTarget, LIBPQ_CLIENT, login_with_key, pg_error_fields, pg_read_until,
                     relay_direct, tagged, TOP, wait_statement, write_users_file)

pytestmark = pytest.mark.usefixtures("built")
NODE_DIR = os.path.join(TOP, "tests", "node")
CANCEL_BOUND_S = 3.0


def tls_uri(target):
    # TLS on the client leg; SCRAM channel binding cannot cross a TLS hop
    # that ends at a pass-through proxy (see doc/operators-guide.md), so it is off both ways
    return target.uri(sslmode="require", extra="channel_binding=disable")


@pytest.fixture
def scram_relay(cluster, proxy_factory, tmp_path):
    """A proxy in auth mode "scram" (it logs in upstream itself), or the
    cluster when PGT_RELAY_DIRECT=1."""
    if relay_direct():
        return DirectTarget(cluster)
    users = write_users_file(str(tmp_path / "users.json"), {"app": {"password": "apppass"}})
    return proxy_factory(extra_args=["--auth", "scram", "--users-file", users])


# ---------------------------------------------------------------------------
# what each client library reports

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_libpq_backend_pid(relay, tls):
    r = subprocess.run([LIBPQ_CLIENT, "backend_pid", tls_uri(relay) if tls else relay.uri()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert r.stdout.count("ok ") == 3, r.stdout


def psycopg_pids(uri, app):
    with psycopg.connect(uri, autocommit=True, application_name=app) as conn:
        reported = conn.info.backend_pid
        own = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        listed = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
        senders = []
        conn.add_notify_handler(lambda n: senders.append(n.pid))
        conn.execute("LISTEN pgt_psycopg_pid")
        # a session's own notification arrives before the NOTIFY's ReadyForQuery
        conn.execute("NOTIFY pgt_psycopg_pid, 'self'")
    return reported, own, [x[0] for x in listed], senders


def test_psycopg_backend_pid(relay):
    reported, own, listed, senders = psycopg_pids(relay.uri(), "pgt_psycopg_pid")
    assert reported == own, (reported, own)
    assert listed == [reported], (listed, reported)
    assert senders == [reported], (senders, reported)


def psql_prompt_pid(uri):
    """Runs psql interactively (on a pty, so it prompts) with %p, libpq's
    PQbackendPID, in its prompt; returns (prompt pid, pg_backend_pid())."""
    master, slave = pty.openpty()
    env = dict(os.environ, PAGER="cat")
    p = subprocess.Popen(["psql", uri, "-X", "-v", "PROMPT1=<pid %p>"], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True)
    os.close(slave)
    os.write(master, b"SELECT 'backend ' || pg_backend_pid();\n\\q\n")
    out = b""
    deadline = time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: psql exited and the pty closed
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(10)
    os.close(master)
    text = out.decode(errors="replace")
    prompt = re.search(r"<pid (\d+)>", text)
    backend = re.search(r"backend (\d+)\s*$", text, re.M)
    assert prompt and backend, text
    return int(prompt.group(1)), int(backend.group(1))


def test_psql_prompt_pid(relay):
    prompt, backend = psql_prompt_pid(relay.uri())
    assert prompt == backend, (prompt, backend)


@pytest.mark.parametrize("sslmode", ["disable", "no-verify"])
def test_node_postgres_backend_pid(relay, sslmode):
    r = subprocess.run(["node", os.path.join(NODE_DIR, "backend_pid.js"), relay.uri(sslmode=sslmode)],
                       capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert r.stdout.count("ok ") == 3 and "FAIL" not in r.stdout, r.stdout


# ---------------------------------------------------------------------------
# pg_terminate_backend of the reported PID

def test_terminate_own_reported_pid_ends_only_that_session(relay):
    bystanders = [psycopg.connect(relay.uri(), autocommit=True) for _ in range(3)]
    me = psycopg.connect(relay.uri(), autocommit=True)
    try:
        before = {c.info.backend_pid for c in bystanders}
        with pytest.raises(psycopg.OperationalError) as e:
            me.execute("SELECT pg_terminate_backend(%s)", (me.info.backend_pid,))
        assert getattr(e.value, "sqlstate", None) in ("57P01", None), e.value
        assert me.broken or me.closed
        for c in bystanders:
            assert c.execute("SELECT 'alive'").fetchone() == ("alive",)
        with psycopg.connect(relay.uri(), autocommit=True) as probe:
            live = {r[0] for r in probe.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)",
                                                (list(before),)).fetchall()}
        assert live == before, (live, before)
    finally:
        me.close()
        for c in bystanders:
            c.close()


# ---------------------------------------------------------------------------
# cancel requests are routed by the (pid, key) pair

def send_cancel(port, pid, key):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, key))
        c.settimeout(5)
        assert c.recv(16) == b""  # answered by a close, never a message


def send_query(sock, sql):
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)


def query_result(sock, timeout=10):
    msgs = pg_read_until(sock, timeout=timeout)
    errs = [pg_error_fields(p) for t, p in msgs if t == b"E"]
    if errs:
        pg_read_until(sock, timeout=timeout)  # up to its ReadyForQuery
    return errs


def test_cancel_is_routed_by_pid_and_key(cluster, relay):
    a, a_pid, a_key = login_with_key(relay.port)
    b, b_pid, b_key = login_with_key(relay.port)
    try:
        send_query(a, "SELECT pg_backend_pid()")
        msgs = pg_read_until(a)
        rows = [p for t, p in msgs if t == b"D"]
        assert len(rows) == 1 and int(rows[0][6:].decode()) == a_pid, (rows, a_pid)
        assert a_pid != b_pid

        q = tagged("SELECT pg_sleep(30)")
        send_query(a, q)
        wait_statement(cluster, q)
        send_cancel(relay.port, a_pid, b_key)        # the right PID, another session's key
        send_cancel(relay.port, b_pid, a_key)        # the right key, another session's PID
        send_cancel(relay.port, a_pid, a_key ^ 1)    # a guessed key
        ready, _, _ = select.select([a], [], [], 1.5)
        assert not ready, "a cancel request with a wrong pair interrupted the query"

        t0 = time.time()
        send_cancel(relay.port, a_pid, a_key)
        errs = query_result(a, timeout=30)
        assert [e.get("C") for e in errs] == ["57014"], errs
        assert time.time() - t0 < CANCEL_BOUND_S
        assert select.select([b], [], [], 0.2)[0] == []  # b idle and untouched
        send_query(b, "SELECT 1")
        assert query_result(b) == []
    finally:
        a.close()
        b.close()


def test_cancel_keys_differ_between_sessions(relay):
    socks = [login_with_key(relay.port) for _ in range(20)]
    try:
        assert len({k for _, _, k in socks}) == len(socks)
        assert len({p for _, p, _ in socks}) == len(socks)
    finally:
        for s, _, _ in socks:
            s.close()


# ---------------------------------------------------------------------------
# auth mode "scram": the proxy logs in upstream itself

def test_scram_mode_reports_the_backend_pid_and_cancels_by_pair(cluster, scram_relay):
    for uri in (scram_relay.uri(), tls_uri(scram_relay)):
        reported, own, listed, senders = psycopg_pids(uri, "pgt_scram_pid")
        assert reported == own and listed == [reported] and senders == [reported], (reported, own, listed, senders)
    conn = psycopg.connect(scram_relay.uri(), autocommit=True)
    try:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        t0 = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.time() - t0 < 0.5 + CANCEL_BOUND_S
        # Postgres signals the backend twice (its pid, then its process
        # group) before closing the cancel connection, and the proxy answers
        # the client's cancel only then: wait for that answer, or the second
        # signal can cancel the next query.
        timer.join(30)
        assert conn.execute("SELECT 'usable'").fetchone() == ("usable",)
        res = {}

        def run():
            try:
                res["v"] = conn.execute(q).fetchone()[1]
            except Exception as e:  # recorded for the assertion below
                res["v"] = repr(e)

        q = tagged("SELECT pg_sleep(4), 'finished'")  # long enough for a poll on a loaded machine to see it
        th = threading.Thread(target=run)
        th.start()
        wait_statement(cluster, q)
        send_cancel(scram_relay.port, conn.info.backend_pid, 12345)
        th.join(30)
        assert res.get("v") == "finished", res
    finally:
        conn.close()
