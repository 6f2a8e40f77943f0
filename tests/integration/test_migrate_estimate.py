"""`migrate plan FILE --estimate`: the backfill measured on a sample copied to
a scratch schema. The figures are sane, the JSON has its shape, the live
table is neither written nor changed (schema dump, rows and the table's
write counters are the same before and after), the scratch schema is gone
after success, failure and SIGINT, and the estimate is compared with a real
`migrate start` backfill of the same table."""
import json
import os
import signal
import subprocess
import time

from support import (BIN, EXAMPLES, load_legacy, migrate, rows, running_statements, SANITIZER_MARKS, sql, wait_for,
                     write_migration)

UNIFY = os.path.join(EXAMPLES, "checks_unify.json")


def dump(cluster, db):
    r = subprocess.run([os.path.join(cluster.bindir, "pg_dump"), "--schema-only", "--no-comments", db],
                       capture_output=True, text=True, check=True)
    # \restrict carries a random key per run
    return [line for line in r.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]


def writes(db):
    """The live table's insert/update/delete counters (flushed by the
    estimate's backend when it disconnects)."""
    sql(db, "SELECT pg_stat_clear_snapshot()")
    return sql(db, "SELECT n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables"
                   " WHERE relid = 'public.checks'::regclass")[0]


def snapshot(cluster, db):
    return {"dump": dump(cluster, db), "rows": rows(db, "checks"),
            "namespaces": sql(db, "SELECT nspname FROM pg_namespace ORDER BY 1"),
            "relations": sql(db, "SELECT count(*) FROM pg_class")}


def scratch_schemas(db):
    return sql(db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgtandem%' ORDER BY 1")


def estimate_json(db, path=UNIFY, *extra):
    r = migrate(db, "plan", path, "--estimate", "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def counters_settled(db, before):
    """The stats of the estimate's own backend reach the shared counters when
    it exits; wait for ours to be readable (they must not move at all)."""
    deadline = time.time() + 5
    now = writes(db)
    while now == before and time.time() < deadline:
        time.sleep(0.2)
        now = writes(db)
    return now


def test_estimate_figures_and_nothing_left_behind(cluster, db):
    load_legacy(db, 50000)
    sql(db, "VACUUM (ANALYZE) checks")
    before = snapshot(cluster, db)
    w0 = writes(db)
    text = migrate(db, "plan", UNIFY, "--estimate", "--estimate-rows", "10000")
    assert text.returncode == 0, text.stderr
    assert "-- == expand ==" in text.stdout            # the plan, then the estimate
    assert "-- == estimate" in text.stdout
    assert "rows/s" in text.stdout and "dead tuples left for vacuum" in text.stdout
    est = estimate_json(db, UNIFY, "--estimate-rows", "10000")
    print("estimate on 50000 rows:", json.dumps(est["tables"][0], indent=1))
    assert est["migration"] == "0003_checks_unify"
    assert est["scratch_schema"].startswith("pgtandem_estimate_")
    assert set(est["throttle"]) == {"batch_rows", "min_rows", "max_rows", "target_ms", "max_rows_per_sec",
                                    "sleep_ratio"}
    assert len(est["tables"]) == 1
    t = est["tables"][0]
    assert (t["schema"], t["table"]) == ("public", "checks")
    # operations[0] renames claim_text without changing it: nothing to backfill
    assert t["operations"] == ["operations[1].rename_column", "operations[2].rename_column"]
    assert t["rows_source"] == "reltuples" and t["table_rows"] == 50000
    assert t["sample_rows"] == 10000 and t["sample_rows_updated"] == 10000   # aggregation is never NULL
    assert t["sample_batches"] >= 1 and t["sample_ms"] > 0
    assert t["rows_per_s"] > 0 and t["throttled_rows_per_s"] == t["rows_per_s"]   # unthrottled migration
    assert 50 < t["wal_bytes_per_row"] < 100000
    assert t["eta_s"] > 0 and t["wal_bytes"] > t["sample_wal_bytes"]
    assert t["dead_tuples"] == 50000
    assert est["total"]["dead_tuples"] == 50000
    after = snapshot(cluster, db)
    assert after == before
    assert counters_settled(db, w0) == w0              # not one row of the live table written
    assert scratch_schemas(db) == []


def test_estimate_sample_capped_by_table_and_count_when_never_analyzed(db):
    load_legacy(db, 0)
    # a new table, never analyzed (autovacuum kept away from it)
    sql(db, "ALTER TABLE checks RENAME TO checks_before; CREATE TABLE checks (LIKE checks_before INCLUDING ALL)"
            " WITH (autovacuum_enabled = false)")
    sql(db, "INSERT INTO checks (claim_text, aggregation) SELECT 'c' || g, '{}' FROM generate_series(1, 700) g")
    # a table never analyzed has reltuples -1: a small one is counted
    assert sql(db, "SELECT reltuples FROM pg_class WHERE oid = 'checks'::regclass")[0][0] == -1
    t = estimate_json(db, UNIFY, "--estimate-rows", "100000")["tables"][0]
    assert t["sample_rows"] == 700 and t["table_rows"] == 700 and t["rows_source"] == "count(*)"
    assert t["dead_tuples"] == 700


def test_estimate_follows_the_throttle(db):
    load_legacy(db, 20000)
    sql(db, "VACUUM (ANALYZE) checks")
    with open(UNIFY) as f:
        m = json.load(f)
    m["backfill"] = {"max_rows_per_sec": 5000}
    t = estimate_json(db, write_migration(m))["tables"][0]
    assert t["throttle_sleep_ms"] > 0
    assert t["throttled_rows_per_s"] < t["rows_per_s"]
    assert t["throttled_rows_per_s"] <= 5000 * 1.5          # the cap, give or take the adaptive batch size
    assert t["eta_s"] >= 20000 / (5000 * 1.5)


def test_estimate_needs_db(db):
    env = {"PGTANDEM_DB": "", "DATABASE_URL": ""}
    penv = {k: v for k, v in os.environ.items() if k not in env}
    r = subprocess.run([BIN, "migrate", "plan", UNIFY, "--estimate"], capture_output=True, text=True, env=penv)
    assert r.returncode == 2, r.stderr
    assert "--estimate" in r.stderr and "--db" in r.stderr
    assert r.stdout == ""
    # the flag belongs to plan: start does not silently ignore it
    for flags in (["--estimate"], ["--estimate-rows", "100000"]):   # the default value too
        r = migrate(db, "start", UNIFY, *flags)
        assert r.returncode == 2 and "belong to `migrate plan`" in r.stderr, r.stderr
    assert scratch_schemas(db) == []


def test_estimate_refuses_invalid_migration_before_creating_anything(cluster, db):
    load_legacy(db, 1000)
    before = snapshot(cluster, db)
    bad = write_migration({"name": "bad", "operations": [
        {"rename_column": {"table": "checks", "from": "no_such_column", "to": "x"}}]})
    r = migrate(db, "plan", bad, "--estimate")
    assert r.returncode == 2, r.stderr
    assert "no_such_column" in r.stderr and "operations[0]" in r.stderr
    assert snapshot(cluster, db) == before


def test_estimate_failure_drops_the_scratch_schema(cluster, db):
    load_legacy(db, 3000)
    before = snapshot(cluster, db)
    failing = write_migration({"name": "failing", "operations": [
        {"add_column": {"table": "checks", "column": {"name": "n", "type": "integer"}, "up": "claim_text::integer"}}]})
    r = migrate(db, "plan", failing, "--estimate")
    assert r.returncode == 1, r.stderr
    assert "claim_text::integer" in r.stderr             # the batch's failure, named as the backfill names it
    assert "scratch schema pgtandem_estimate_" in r.stderr and "was dropped" in r.stderr
    assert snapshot(cluster, db) == before


def test_estimate_interrupted_leaves_nothing(cluster, db):
    load_legacy(db, 20000)
    before = snapshot(cluster, db)
    # an `up` slow enough that SIGINT finds the sample's batches running: the
    # subquery refers to the row, so Postgres runs it (and sleeps) per row,
    # not once per statement as an uncorrelated one
    slow = write_migration({"name": "slow", "operations": [
        {"add_column": {"table": "checks", "column": {"name": "slow_len", "type": "integer"},
                        "up": "length(claim_text || (SELECT pg_sleep(0.002) WHERE claim_text IS NOT NULL)::text)"}}]})
    proc = subprocess.Popen([BIN, "migrate", "plan", slow, "--estimate", "--estimate-rows", "20000", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: scratch_schemas(db) or proc.poll() is not None, 60, "the scratch schema")
    assert proc.poll() is None and scratch_schemas(db), "the estimate ended before its scratch schema was seen"
    wait_for(lambda: running_statements(cluster.super_uri, "%pg_sleep(0.002)%", db_name(db)) or proc.poll() is not None,
             60, "a batch of the sample running")
    assert proc.poll() is None, "the estimate ended before its batches were seen running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert not any(mark in err for mark in SANITIZER_MARKS), err
    assert "interrupted" in err and "was dropped" in err
    assert scratch_schemas(db) == []
    assert snapshot(cluster, db) == before


def db_name(uri):
    return uri.rsplit("/", 1)[1].split("?", 1)[0]


def wal_lsn(db):
    return sql(db, "SELECT pg_current_wal_insert_lsn()::text")[0][0]


def test_estimate_against_the_real_backfill(db):
    load_legacy(db, 50000)
    sql(db, "VACUUM (ANALYZE) checks")
    est = estimate_json(db)["tables"][0]
    lsn = wal_lsn(db)
    t0 = time.perf_counter()
    r = migrate(db, "start", UNIFY)
    secs = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    wal = sql(db, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (lsn,))[0][0]
    done, updated = sql(db, "SELECT sum(rows_done)::bigint, sum(rows_updated)::bigint"
                            " FROM pgtandem.backfill_progress")[0]
    print("estimate: %.0f rows/s, %.2f s, %.0f bytes of WAL, %.0f dead tuples"
          % (est["throttled_rows_per_s"], est["eta_s"], est["wal_bytes"], est["dead_tuples"]))
    print("backfill: %.0f rows/s, %.2f s (whole `migrate start`), %.0f bytes of WAL, %d rows updated"
          % (done / secs, secs, float(wal), updated))
    assert est["throttled_rows_per_s"] > 0 and done / secs > 0
    assert est["wal_bytes"] > 0 and float(wal) > 0
    assert est["dead_tuples"] == updated == done == 50000
    assert migrate(db, "verify").returncode == 0
    old = sql(db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb FROM checks ORDER BY id")
    new = sql(db, "SELECT id, claim, config_json, counts_by_template_json FROM pgtandem_0003_checks_unify.checks"
                  " ORDER BY id")
    assert len(old) == 50000 and old == new              # the two shapes agree row by row
