"""Every operator action through the admin API (pause, resume, throttle,
migration start, complete with force, rollback) leaves exactly one line in the
proxy log at info: who sent it (the caller's address and port), what it asked
and what changed (a throttle's old -> new values)."""
import http.client
import json
import re

from support import load_legacy, sql, unify, wait_for

BACKFILL = {"max_rows_per_sec": 2000, "batch_rows": 200, "max_rows": 500}


def call_from_port(proxy, method, path, body=None, timeout=120):
    """One request on its own connection; returns (status, answer, the
    caller's port as the proxy sees it)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=timeout)
    conn.connect()
    port = conn.sock.getsockname()[1]
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, json.loads(text), port


def action_lines(log, method, path, port):
    pat = re.compile(r" INFO admin: %s %s from 127\.0\.0\.1:%d: " % (method, re.escape(path), port))
    return [s for s in log.splitlines() if pat.search(s)]


def test_each_admin_action_is_logged_once_with_its_caller(db, proxy_factory):
    load_legacy(db, 20000)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    sent = []

    def act(method, path, body=None, expect=(200,)):
        code, answer, port = call_from_port(proxy, method, path, body)
        assert code in expect, (path, code, answer, proxy.log()[-3000:])
        sent.append((method, path, port))
        return answer

    act("POST", "/pause?timeout_ms=2000")
    act("POST", "/resume")
    act("POST", "/migrations", unify(BACKFILL), expect=(200, 202))
    wait_for(lambda: call_from_port(proxy, "GET", "/migrations/current")[1]["phase"] == "backfilling", timeout=60,
             what="the backfill starts")
    act("POST", "/migrations/current/throttle", {"max_rows_per_sec": 5000, "paused": True})
    act("POST", "/migrations/current/rollback")
    act("POST", "/migrations", unify(BACKFILL), expect=(200, 202))
    wait_for(lambda: call_from_port(proxy, "GET", "/migrations/current")[1]["phase"] == "backfilling", timeout=60,
             what="the backfill starts again")
    act("POST", "/migrations/current/throttle", {"max_rows_per_sec": 0})
    wait_for(lambda: call_from_port(proxy, "GET", "/migrations/current")[1]["phase"] == "active", timeout=120,
             what="the backfill ends")
    act("POST", "/migrations/current/complete?force=1&attempts=3")

    log = proxy.log()
    for method, path, port in sent:
        lines = action_lines(log, method, path, port)
        assert len(lines) == 1, (method, path, port, lines, log[-4000:])
    # what changed, old -> new
    [first_throttle] = action_lines(log, "POST", "/migrations/current/throttle", sent[3][2])
    assert "max_rows_per_sec 2000\u21925000" in first_throttle, first_throttle
    assert "paused false\u2192true" in first_throttle, first_throttle
    [second_throttle] = action_lines(log, "POST", "/migrations/current/throttle", sent[6][2])
    assert re.search("max_rows_per_sec \\d+\u21920", second_throttle), second_throttle
    [pause] = action_lines(log, "POST", "/pause?timeout_ms=2000", sent[0][2])
    assert "paused true" in pause, pause
    [start] = action_lines(log, "POST", "/migrations", sent[2][2])
    assert '"0003_checks_unify"' in start, start
    [complete] = action_lines(log, "POST", "/migrations/current/complete?force=1&attempts=3", sent[7][2])
    assert "completed" in complete, complete
    # reading is not an action
    assert not re.search(r"admin: GET ", log), log[-3000:]
    assert sql(db, "SELECT status FROM pgtandem.migrations WHERE name = '0003_checks_unify'") == [("completed",)]
