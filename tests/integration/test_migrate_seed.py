"""The seeds' production migration (config/examples): checks_legacy.sql +
checks_unify.json, start -> writes through both shapes at once -> complete,
and start -> rollback -> start -> complete, each ending with a row-by-row
comparison and a schema check."""
import json
import os
import re
import threading
import time

import psycopg

from support import columns, EXAMPLES, load_legacy, migrate, new_shape_options, rows, shape, sql, write_migration

UNIFY = os.path.join(EXAMPLES, "checks_unify.json")
NAME = "0003_checks_unify"


def legacy_expectation(db):
    """What every row must look like in the new shape: up(old)."""
    return {r[0]: (r[1], r[2], r[3]) for r in sql(
        db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb FROM checks")}


def writers(db, n=40):
    """An old-release writer and a new-release writer running together; each
    returns {id: (claim, config, counts)} of the rows it wrote last."""
    results = {}

    def old_writer():
        seen = {}
        with psycopg.connect(db, autocommit=True) as c:
            for i in range(n):
                rid = c.execute("INSERT INTO checks (claim_text, aggregation, diagnostics) VALUES (%s, %s, %s)"
                                " RETURNING id", ("old %d" % i, json.dumps({"o": i}), json.dumps({"d": i}))).fetchone()[0]
                c.execute("UPDATE checks SET aggregation = %s WHERE id = %s", (json.dumps({"o2": i}), rid))
                c.execute("UPDATE checks SET claim_text = claim_text || '!' WHERE id = %s", (i + 1,))
                seen[rid] = ("old %d" % i, {"o2": i}, {"d": i})
        results["old"] = seen

    def new_writer():
        seen = {}
        with psycopg.connect(db, autocommit=True, options=new_shape_options(NAME)) as c:
            for i in range(n):
                rid = c.execute("INSERT INTO checks (claim, config_json, counts_by_template_json) VALUES (%s, %s, %s)"
                                " RETURNING id", ("new %d" % i, json.dumps({"n": i}), json.dumps({"c": i}))).fetchone()[0]
                c.execute("UPDATE checks SET counts_by_template_json = %s WHERE id = %s",
                          (json.dumps({"c2": i}), rid))
                c.execute("UPDATE checks SET config_json = '{\"touched\": true}' WHERE id = %s", (1000 + i,))
                seen[rid] = ("new %d" % i, {"n": i}, {"c2": i})
        results["new"] = seen

    threads = [threading.Thread(target=old_writer), threading.Thread(target=new_writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_final(db, expected):
    # the renamed claim keeps its position (the original column is kept);
    # the retyped columns are new columns at the end
    assert columns(db, "checks") == ["id", "claim", "env", "anon_token", "created_at", "config_json",
                                     "counts_by_template_json"]
    types = dict(sql(db, "SELECT column_name, data_type FROM information_schema.columns"
                         " WHERE table_name = 'checks'"))
    assert types["config_json"] == "jsonb" and types["counts_by_template_json"] == "jsonb"
    assert sql(db, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'checks'"
                   " AND column_name = 'claim'") == [("NO",)]
    got = {r[0]: (r[1], r[2], r[3]) for r in sql(db, "SELECT id, claim, config_json, counts_by_template_json FROM checks")}
    assert len(got) == len(expected)
    bad = [k for k in expected if got.get(k) != expected[k]]
    assert not bad, "rows differ, e.g. %r: %r vs %r" % (bad[0], got.get(bad[0]), expected[bad[0]])
    assert sql(db, "SELECT version_num FROM alembic_version") == [("b73c9aa4f0c3",)]
    idx = [r[0] for r in sql(db, "SELECT indexname FROM pg_indexes WHERE tablename = 'checks' ORDER BY 1")]
    assert idx == ["checks_pkey", "ix_checks_claim_text", "ix_checks_env_anon_token"]
    assert "claim" in sql(db, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_checks_claim_text'")[0][0]
    assert sql(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_%'") == [(0,)]
    assert sql(db, "SELECT to_regclass('anonymous_usage') IS NOT NULL") == [(True,)]
    assert sql(db, "SELECT col_description('checks'::regclass, attnum) FROM pg_attribute"
                   " WHERE attrelid = 'checks'::regclass AND attname = 'claim'") == [("The claim as submitted by the user",)]


def run_writes_and_complete(db):
    expected = legacy_expectation(db)
    r = migrate(db, "start", UNIFY)
    assert r.returncode == 0, r.stderr
    assert "backfill" in r.stderr
    results = writers(db)
    v = migrate(db, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
    assert "0 where the new shape disagrees" in v.stdout
    # Snapshot the truth just before contract: the rows as the old shape sees them.
    expected = {r[0]: (r[1], r[2], r[3]) for r in sql(
        db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb FROM checks")}
    for seen in results.values():
        for rid, want in seen.items():
            assert expected[rid] == want, (rid, expected[rid], want)
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    assert "attempt" in c.stderr
    check_final(db, expected)
    st = migrate(db, "status", "--json")
    doc = json.loads(st.stdout)
    assert doc["status"] == "completed" and doc["contract_attempts"] == 1


def test_seed_start_writes_complete(db):
    load_legacy(db, 3000)
    run_writes_and_complete(db)


def test_seed_start_rollback_start_complete(db):
    load_legacy(db, 3000)
    before_shape = shape(db)
    before_rows = rows(db, "checks")
    r = migrate(db, "start", UNIFY)
    assert r.returncode == 0, r.stderr
    assert sql(db, "SELECT count(*) FROM pgtandem_0003_checks_unify.checks") == [(3000,)]
    rb = migrate(db, "rollback")
    assert rb.returncode == 0, rb.stderr
    assert shape(db) == before_shape
    assert rows(db, "checks") == before_rows
    assert sql(db, "SELECT version_num FROM alembic_version") == [("9e15719c5c3c",)]
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "rolled_back"
    run_writes_and_complete(db)


def test_seed_second_engine_refused(db):
    load_legacy(db, 100)
    holder = psycopg.connect(db, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(7020637716434665572)")
        r = migrate(db, "start", UNIFY)
        assert r.returncode == 1
        assert "another pgtandem engine" in r.stderr
        assert sql(db, "SELECT to_regclass('pgtandem.migrations')") == [(None,)]
    finally:
        holder.close()


def test_seed_plan_changes_nothing(db):
    load_legacy(db, 100)
    before = shape(db)
    r = migrate(db, "plan", UNIFY)
    assert r.returncode == 0, r.stderr
    assert "CREATE INDEX CONCURRENTLY \"ix_checks_env_anon_token\"" in r.stdout
    assert "UPDATE alembic_version SET version_num = 'b73c9aa4f0c3'" in r.stdout
    assert "== contract" in r.stdout and "== rollback" in r.stdout
    assert shape(db) == before


def release_after_two_lock_waits(db, blocker, timeout=60.0):
    """Rolls `blocker` back once two lock waits (backend, statement start)
    of the contract's first DDL were seen in the database (or after
    `timeout`): a wait of a step before the contract is not an attempt."""
    seen = set()
    deadline = time.monotonic() + timeout
    with psycopg.connect(db, autocommit=True) as c:
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.update(c.execute("SELECT pid, query_start FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%RENAME COLUMN%'")
                        .fetchall())
            time.sleep(0.01)  # polling interval
    blocker.rollback()


def test_contract_retries_while_table_is_locked(db):
    load_legacy(db, 500)
    assert migrate(db, "start", UNIFY).returncode == 0
    blocker = psycopg.connect(db)
    blocker.execute("LOCK TABLE checks IN ACCESS SHARE MODE")   # an open reader transaction
    # the reader lets go once the contract has waited for its lock twice
    # (two attempts seen), not after a fixed delay that a slow start uses up
    release = threading.Thread(target=release_after_two_lock_waits, args=(db, blocker))
    release.start()
    try:
        r = migrate(db, "complete", "--lock-timeout", "100", "--retries", "30")
    finally:
        release.join()
        blocker.close()
    assert r.returncode == 0, r.stderr
    attempts = int(re.search(r"after (\d+) attempt", r.stderr).group(1))
    assert attempts > 1
    assert "lock not available" in r.stderr
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "completed" and st["contract_attempts"] == attempts
    assert st["contract_lock_wait_ms"] > 0


def test_contract_gives_up_and_changes_nothing(db):
    load_legacy(db, 500)
    assert migrate(db, "start", UNIFY).returncode == 0
    before = shape(db)
    blocker = psycopg.connect(db)
    blocker.execute("LOCK TABLE checks IN ACCESS SHARE MODE")
    try:
        r = migrate(db, "complete", "--lock-timeout", "50", "--retries", "3")
    finally:
        blocker.close()
    assert r.returncode == 1
    assert "after 3 attempt(s)" in r.stderr
    assert shape(db) == before
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "active"
    assert migrate(db, "complete").returncode == 0


def test_failed_expand_leaves_nothing_behind(db):
    load_legacy(db, 200)
    before, before_rows = shape(db), rows(db, "checks")
    with open(UNIFY) as f:
        m = json.load(f)
    m["operations"].insert(4, {"sql": {"up": "SELECT 1/0"}})
    path = write_migration(m)
    r = migrate(db, "start", path)
    assert r.returncode == 1
    assert "operations[4]" in r.stderr and "division by zero" in r.stderr
    assert shape(db) == before
    assert rows(db, "checks") == before_rows
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "failed" and "division by zero" in st["error"]
    assert migrate(db, "start", UNIFY).returncode == 0
