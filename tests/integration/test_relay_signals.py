"""Signals: SIGTERM stops accepting, lets running queries finish (up to
--shutdown-timeout) and exits 0; SIGHUP keeps the proxy serving."""
import signal
import socket
import threading

import psycopg
import pytest

from support import (pg_error_fields, pg_raw_session, pg_read_until, pg_simple_query, pg_startup_packet, tagged,
                     wait_log, wait_statement)


def test_sigterm_idle_exits_zero(proxy_factory):
    p = proxy_factory(extra_args=["--shutdown-timeout", "10"])
    s = pg_raw_session(p.port)
    pg_simple_query(s, "SELECT 1")
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(timeout=20) == 0, p.log()[-2000:]
    s.close()
    assert "AddressSanitizer" not in p.log()


def test_sigterm_lets_running_query_finish(cluster, proxy_factory):
    p = proxy_factory(extra_args=["--shutdown-timeout", "20"])
    conn = psycopg.connect(p.uri(), autocommit=True)
    res = {}

    def run():
        try:
            res["v"] = conn.execute(q).fetchone()[1]
        except Exception as e:
            res["v"] = repr(e)

    q = tagged("SELECT pg_sleep(4), 'finished'")  # long enough for a poll on a loaded machine to see it
    th = threading.Thread(target=run)
    th.start()
    wait_statement(cluster, q)
    p.proc.send_signal(signal.SIGTERM)
    wait_log(p, "shutdown: no new connections")
    # no longer accepting: a new client cannot log in
    refused = False
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(pg_startup_packet("trustuser", "appdb"))
            t, _ = pg_read_until(s, timeout=10)[-1]
            refused = t != b"Z"
    except OSError:
        refused = True
    assert refused, "proxy accepted a new session after SIGTERM"
    th.join(30)
    assert res.get("v") == "finished", res
    assert p.proc.wait(timeout=30) == 0, p.log()[-2000:]
    conn.close()


def test_sigterm_open_transaction_bounded_by_timeout(proxy_factory):
    p = proxy_factory(extra_args=["--shutdown-timeout", "2"])
    conn = psycopg.connect(p.uri())
    conn.execute("SELECT 1")  # leaves a transaction open
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(timeout=30) == 0, p.log()[-2000:]
    conn.close()


def test_sigterm_transaction_cut_by_timeout_hears_why(proxy_factory):
    """A transaction still open when --shutdown-timeout passes is cut; the
    client gets FATAL 57P01 saying the proxy is shutting down, as from a
    Postgres stopped with -m fast, not a bare EOF."""
    p = proxy_factory(extra_args=["--shutdown-timeout", "1"])
    s = pg_raw_session(p.port)
    try:
        rows, err = pg_simple_query(s, "BEGIN")
        assert err is None
        p.proc.send_signal(signal.SIGTERM)
        msgs = pg_read_until(s, types=(b"E",), timeout=15)
        t, payload = msgs[-1]
        assert t == b"E", msgs
        fields = pg_error_fields(payload)
        assert fields.get("S") == "FATAL" and fields.get("C") == "57P01", fields
        assert "shutting down" in fields.get("M", ""), fields
    finally:
        s.close()
    assert p.proc.wait(timeout=30) == 0, p.log()[-2000:]


def test_sighup_keeps_serving(proxy_factory):
    p = proxy_factory()
    s = pg_raw_session(p.port)
    try:
        for i in range(2):
            p.proc.send_signal(signal.SIGHUP)
            wait_log(p, "reload: configuration and TLS certificate reloaded", count=i + 1)
            assert p.proc.poll() is None, p.log()[-2000:]
            rows, err = pg_simple_query(s, "SELECT 'after hup'")
            assert err is None and rows == [["after hup"]]
        with psycopg.connect(p.uri(sslmode="require", extra="channel_binding=disable")) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    finally:
        s.close()
