"""Settings: one table, one validation, one error format for flags, the config
file and the admin API; throttle settings kept with the migration's state.

Before this, `max_app_p99_ms: 1e300` was stored as a negative integer (which
turned the throttle off), `sleep_ratio: 1e308` was accepted, `--buffer-bytes`
had no upper bound while the file's `buffer_bytes` had one, and
`--max-message-bytes` clamped silently."""
import json
import signal
import time

import psycopg
import pytest

from support import current, rows, run_pgtandem, sql, throttle, wait_for

BASE = """
DROP TABLE IF EXISTS gadgets;
CREATE TABLE gadgets (id bigint PRIMARY KEY, label text);
INSERT INTO gadgets SELECT g, 'g' || g FROM generate_series(1, 20000) g;
"""


def proxy_args(*extra):
    return ["proxy", "--listen", "127.0.0.1:1", "--upstream", "postgresql://127.0.0.1:1/?sslmode=disable"] + list(extra)


@pytest.mark.parametrize("flag,value", [
    ("--buffer-bytes", "1000000000000"),
    ("--buffer-bytes", "1e300"),
    ("--max-message-bytes", "10"),
    ("--max-message-bytes", "99999999999"),
    ("--shutdown-timeout", "-1"),
    ("--client-login-timeout", "abc"),
])
def test_out_of_range_flags_are_refused_not_clamped(flag, value):
    r = run_pgtandem(proxy_args(flag, value), timeout=20)
    assert r.returncode == 2, r.stdout + r.stderr
    name = flag[2:].replace("-", "_")
    assert "is not an integer from" in r.stderr, r.stderr
    assert value in r.stderr, r.stderr
    assert name.split("_")[0] in r.stderr, r.stderr


def test_config_file_uses_the_same_words(tmp_path):
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text('{\n  "upstream": "postgresql://127.0.0.1:1/",\n  "buffer_bytes": 1e300\n}\n')
    r = run_pgtandem(["proxy", "--config", str(cfg)], timeout=20)
    assert r.returncode == 2, r.stderr
    assert str(cfg) + ":3:" in r.stderr, r.stderr       # file, line, column
    assert 'setting "buffer_bytes": 1.0000000000000001e300 is not an integer from 4096 to 67108864' in r.stderr, \
        r.stderr
    flag = run_pgtandem(proxy_args("--buffer-bytes", "1e300"), timeout=20)
    assert 'setting "buffer_bytes": \'1e300\' is not an integer from 4096 to 67108864' in flag.stderr, flag.stderr


MIGRATION = {"name": "gadgets_rename", "parent": None,
             "operations": [{"rename_column": {"table": "gadgets", "from": "label", "to": "title", "copy": True}}],
             "backfill": {"batch_rows": 200, "max_rows": 200, "max_rows_per_sec": 2000}}


def test_throttle_is_validated_and_survives_a_restart(db, proxy_factory):
    sql(db, BASE)
    before = rows(db, "gadgets", order="t.id")
    proxy = proxy_factory(extra_args=["--engine-db", db])
    code, body = proxy.admin("POST", "/migrations", json.dumps(MIGRATION))
    assert code == 202, body
    # numbers a throttle cannot mean are refused, and nothing of the request applies
    for bad in ({"max_app_p99_ms": 1e300}, {"sleep_ratio": 1e308}, {"max_rows_per_sec": -1},
                {"target_ms": 1.5}, {"paused": "yes"}, {"paused": True, "max_replica_lag_ms": 1e300},
                {"no_such_setting": 1}):
        code, body = proxy.admin("POST", "/migrations/current/throttle", json.dumps(bad))
        assert code == 400, (bad, body)
        assert "setting" in body["error"], body
    settings = throttle(proxy, paused=True, max_app_p99_ms=40)
    assert settings["paused"] is True and settings["max_app_p99_ms"] == 40, settings
    cur = wait_for(lambda: (lambda c: c if c and c["phase"] == "backfilling"
                            and c["backfill"]["throttle"] == "paused by operator" else None)(current(proxy)),
                   timeout=60, what="a paused backfill")
    assert cur["backfill"]["settings"]["max_rows_per_sec"] == 2000, cur
    # the settings live with the migration's state: a proxy killed and started
    # again (or another one) continues with them
    saved = wait_for(lambda: sql(db, "SELECT throttle::text FROM pgtandem.migrations WHERE name = 'gadgets_rename'")
                     [0][0], timeout=60, what="saved throttle")
    assert json.loads(saved)["paused"] is True, saved
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait()
    again = proxy_factory(extra_args=["--engine-db", db])
    cur = wait_for(lambda: (lambda c: c if c and c["phase"] == "backfilling" else None)(current(again)),
                   timeout=60, what="the restarted proxy to follow the migration")
    assert cur["backfill"]["settings"]["paused"] is True, cur
    assert cur["backfill"]["settings"]["max_app_p99_ms"] == 40, cur
    assert cur["backfill"]["settings"]["max_rows_per_sec"] == 2000, cur
    done_before = cur["backfill"]["rows_done"]
    time.sleep(1.0)  # the observed window: nothing moves while paused
    assert current(again)["backfill"]["rows_done"] == done_before   # still paused
    throttle(again, paused=False, max_rows_per_sec=0)
    wait_for(lambda: (lambda c: c if c and c["phase"] == "active" else None)(current(again)),
             timeout=120, what="the backfill to finish")
    code, body = again.admin("POST", "/migrations/current/complete")
    assert code == 200, body
    after = rows(db, "gadgets", order="t.id")
    assert len(after) == len(before)
    for (o,), (n,) in zip(before, after):
        assert n["title"] == o["label"] and n["id"] == o["id"], (o, n)


def test_a_migration_started_again_after_a_rollback_starts_with_its_own_throttle(db, proxy_factory):
    """The throttle lives with the migration's row, and the row is reused when
    a rolled-back migration of the same name starts again: the new run must
    not inherit the old run's operator pause (or its limits) and sit still."""
    sql(db, BASE)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    code, body = proxy.admin("POST", "/migrations", json.dumps(MIGRATION))
    assert code == 202, body
    settings = throttle(proxy, paused=True, max_app_p99_ms=40)
    assert settings["paused"] is True, settings
    def saved_pause():
        try:  # the state schema comes with the engine's first statements
            return (sql(db, "SELECT throttle->>'paused' FROM pgtandem.migrations WHERE name = 'gadgets_rename'")
                    or [[None]])[0][0]
        except psycopg.errors.UndefinedTable:
            return None
    wait_for(lambda: saved_pause() == "true", timeout=60, what="the pause saved with the migration")
    code, body = proxy.admin("POST", "/migrations/current/rollback")
    assert code == 200, body
    code, body = proxy.admin("POST", "/migrations", json.dumps(MIGRATION))
    assert code == 202, body
    again = proxy_factory(extra_args=["--engine-db", db])  # one that learns the throttle from the row
    for p in (proxy, again):
        cur = wait_for(lambda: (lambda c: c if c and c["phase"] in ("backfilling", "active") else None)(current(p)),
                       timeout=60, what="the new run")
        assert cur["backfill"]["settings"]["paused"] is False, (p is again, saved_pause(), cur["backfill"])
        assert cur["backfill"]["settings"]["max_app_p99_ms"] in (0, None), cur
    assert saved_pause() != "true"
    wait_for(lambda: (lambda c: c if c and c["phase"] == "active" else None)(current(proxy)),
             timeout=120, what="the backfill to finish")
