"""The proxy's log during a real migration through it: with --log-format json
every line is one JSON object (time, level, component, msg, and the
migration or session it concerns); in text the backfill's progress shows as
a plain line every few seconds (rows done/total, rate, ETA); text a client
sends (a user name with a newline and terminal escapes) cannot forge a
line."""
import json
import re
import socket

import pytest

from support import (load_legacy, pg_login, pmigrate, proxy_start, relay_direct, run_pgtandem, sql, unify, wait_for,
                     write_migration, write_users_file)

NAME = "0003_checks_unify"
ROWS = 20000
PROGRESS = re.compile(r"backfill \"?public\"?\.\"?checks\"?: (?P<done>\d+)/(?P<total>\d+) rows \([\d.]+%\), "
                      r"(?P<rate>\d+|\?) rows/s, ETA (?P<eta>\S+), batch \d+ rows")
# about five seconds of backfill: a few progress lines
BACKFILL = {"max_rows_per_sec": 4000, "batch_rows": 500, "max_rows": 1000}


def migrate_through(proxy):
    """start, a session that errors, complete: the log's main events."""
    proxy_start(proxy, write_migration(unify(BACKFILL)))
    # a client that sends garbage instead of a startup packet: a session error
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"\x00\x00\x00\x08\x00\x00\x00\x00")
        try:
            sock.recv(1024)
        except OSError:
            pass
    wait_for(lambda: re.search(r"session \d+ \(127\.0\.0\.1", proxy.log()), timeout=10,
             what="the session's failure in the log")
    c = pmigrate(proxy, "complete")
    assert c.returncode == 0, c.stdout + c.stderr + proxy.log()[-3000:]


def test_every_line_is_json_during_a_migration(db, proxy_factory):
    load_legacy(db, ROWS)
    proxy = proxy_factory(extra_args=["--engine-db", db, "--log-format", "json"])
    migrate_through(proxy)
    proxy.stop()
    events = []
    for line in proxy.log().splitlines():
        ev = json.loads(line)           # every line, or the test fails here
        assert isinstance(ev, dict), line
        assert set(ev) >= {"time", "level", "component", "msg"}, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ev["time"]), line
        assert ev["level"] in ("error", "warn", "info", "debug"), line
        events.append(ev)
    assert len(events) > 10, events
    progress = [e for e in events if PROGRESS.search(e["msg"])]
    assert progress, [e["msg"] for e in events]
    assert all(e["component"] == "backfill" and e["migration"] == NAME and e["level"] == "info"
               for e in progress), progress
    cutover = [e for e in events if e["msg"].startswith("cutover ")]
    assert cutover and all(e["component"] == "cutover" and e["migration"] == NAME for e in cutover), cutover
    closed = [e for e in events if re.match(r"session \d+ \(127\.0\.0\.1", e["msg"])]
    assert closed and all(isinstance(e.get("session"), int) and e["component"] == "relay" for e in closed), closed
    admin = [e for e in events if e["msg"].startswith("admin: POST /migrations ")]
    assert len(admin) == 1 and admin[0]["component"] == "admin", admin
    assert any(e.get("migration") == NAME and e["component"] == "engine" for e in events), events


def test_backfill_progress_lines_in_the_text_log(db, proxy_factory):
    load_legacy(db, ROWS)
    sql(db, "ANALYZE checks")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, write_migration(unify(BACKFILL)))
    lines = [s for s in proxy.log().splitlines() if PROGRESS.search(s)]
    assert len(lines) >= 2, proxy.log()[-3000:]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC INFO backfill ", s) for s in lines), lines
    found = [PROGRESS.search(s) for s in lines]
    done = [int(m.group("done")) for m in found]
    assert done == sorted(done) and done[-1] <= ROWS, lines
    assert all(int(m.group("total")) == ROWS for m in found), lines
    assert any(m.group("eta") != "?" and m.group("rate") != "?" for m in found), lines
    # every few seconds, not per batch
    assert len(lines) < 10, lines


def test_log_format_from_the_config_file(proxy_factory, tmp_path):
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text('{"log_format": "json"}')
    proxy = proxy_factory(extra_args=["--config", str(cfg)])
    # its port can open before its first line is written; a stop in between
    # left nothing to read under load
    wait_for(lambda: proxy.log().strip(), 10, "the proxy's first log line")
    proxy.stop()
    lines = proxy.log().splitlines()
    assert lines and all(json.loads(s)["msg"] for s in lines), lines
    bad = run_pgtandem(["proxy", "--log-format", "yaml"], timeout=20)
    assert bad.returncode == 2 and "--log-format: 'yaml' is not text or json" in bad.stderr, bad.stderr


FORGED = "2026-01-01 00:00:00.000 UTC ERROR forged by a client"


def test_client_text_cannot_forge_a_log_line(proxy_factory, tmp_path):
    """A user name with a newline and terminal escapes: in the text log the
    line stays one line, its control characters written as escapes."""
    if relay_direct():
        pytest.skip("authentication at the proxy")
    users = write_users_file(str(tmp_path / "users.json"), {"logged": {"password": "right"}})
    proxy = proxy_factory(extra_args=["--auth", "scram", "--users-file", users])
    evil = "evil\n" + FORGED + "\x1b[2J\x7f"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        msgs = pg_login(sock, user=evil, database="app\r\ndb", password="wrong")
    assert msgs[-1][0] == b"E", msgs
    wait_for(lambda: "authentication of user" in proxy.log(), timeout=10, what="the refusal in the log")
    proxy.stop()
    with open(proxy.logfile.name, "rb") as f:
        raw = f.read()
    assert b"\x1b" not in raw and b"\x7f" not in raw and b"\r" not in raw, raw[-2000:]
    lines = raw.decode().splitlines()
    assert not [s for s in lines if s.startswith(FORGED)], lines
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC [A-Z]+ ", s) for s in lines), lines
    assert any('user "evil\\n%s\\x1b[2J\\x7f"' % FORGED in s for s in lines), lines
