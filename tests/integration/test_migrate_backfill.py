"""The backfill under stress: kill -9 mid-backfill then resume (no row skipped,
none done twice, checked per row), and writers updating the table through
both shapes during a large backfill (zero lost or mismatched rows)."""
import json
import random
import signal
import subprocess
import threading
import time

import psycopg

from support import BIN, load_legacy, migrate, new_shape_options, sql, unify, wait_for, write_migration

NAME = "0003_checks_unify"


def progress(db):
    r = sql(db, "SELECT coalesce(sum(rows_done), 0), coalesce(sum(rows_updated), 0), bool_and(done)"
                " FROM pgtandem.backfill_progress")
    return r[0]


def watch_backfill_updates(db):
    """Records every row the backfill's own session updates (the pgtandem
    triggers stand aside for it, this one does not)."""
    sql(db, "CREATE TABLE touched (id bigint NOT NULL);"
            "CREATE FUNCTION note_touch() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO touched VALUES (NEW.id); RETURN NEW; END $$;"
            "CREATE TRIGGER zz_touch AFTER UPDATE ON checks FOR EACH ROW"
            " WHEN (current_setting('pgtandem.backfill', true) = 'on') EXECUTE FUNCTION note_touch();"
            # fires even when the backfill runs with session_replication_role = replica
            "ALTER TABLE checks ENABLE ALWAYS TRIGGER zz_touch")


def test_kill_9_mid_backfill_then_resume(db):
    load_legacy(db, 30000)
    watch_backfill_updates(db)
    path = write_migration(unify({"batch_rows": 300, "max_rows": 300, "max_rows_per_sec": 15000}))
    for attempt in range(2):
        proc = subprocess.Popen([BIN, "migrate", "start", path, "--db", db],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                done = progress(db)[0]
            except psycopg.Error:
                done = 0
            if done >= 3000 * (attempt + 1):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st = json.loads(migrate(db, "status", "--json").stdout)
        assert st["status"] == "backfilling"
        assert 0 < st["backfill"][0]["rows_done"] < 30000
    # once through `start` with the same file above, now through `resume`
    r = migrate(db, "resume")
    assert r.returncode == 0, r.stderr
    rows_done, rows_updated, finished = progress(db)
    assert finished
    assert rows_done == 30000                      # every key visited exactly once
    assert rows_updated == 30000
    dup = sql(db, "SELECT count(*), count(DISTINCT id) FROM touched")[0]
    assert dup == (30000, 30000), dup              # no row updated twice, none skipped
    v = migrate(db, "verify")
    assert v.returncode == 0 and "0 not yet backfilled" in v.stdout, v.stdout
    assert migrate(db, "complete").returncode == 0


def test_writers_during_large_backfill(db):
    nrows = 150000
    load_legacy(db, nrows)
    stop = threading.Event()
    expected = [{} for _ in range(3)]
    writes = [0, 0, 0]
    errors = []

    def writer(k):
        options = new_shape_options(NAME) if k == 1 else ""
        rng = random.Random(k)
        try:
            with psycopg.connect(db, autocommit=True, options=options) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    rid = rng.randrange(nrows // 3) * 3 + k + 1   # disjoint ids per writer
                    if k == 1:
                        # new release: writes the jsonb column through the version view
                        exists = sql_exists(c, "pgtandem_%s.checks" % NAME)
                        if not exists:
                            time.sleep(0.01)  # pacing: until the version view exists
                            continue
                        c.execute("UPDATE checks SET config_json = %s, claim = %s WHERE id = %s",
                                  (json.dumps({"w": 1, "i": i}), "new %d" % i, rid))
                    else:
                        c.execute("UPDATE checks SET aggregation = %s, claim_text = %s WHERE id = %s",
                                  (json.dumps({"w": k, "i": i}), "old %d" % i, rid))
                    expected[k][rid] = ("%s %d" % ("new" if k == 1 else "old", i), {"w": k, "i": i})
                    writes[k] += 1
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        r = migrate(db, "start", write_migration(unify({"target_ms": 20})))
        # the writers go on after the backfill: every one writes 20 more rows
        after = list(writes)
        wait_for(lambda: errors or all(writes[k] >= after[k] + 20 for k in range(3)), 30,
                 "writes of every writer after the backfill")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert r.returncode == 0, r.stderr
    assert not errors, errors
    assert sum(len(e) for e in expected) > 100
    v = migrate(db, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
    assert "0 not yet backfilled, 0 where" in v.stdout
    before = {r[0]: (r[1], r[2], r[3]) for r in sql(
        db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb FROM checks")}
    for k in range(3):
        for rid, (claim, cfg) in expected[k].items():
            assert before[rid][:2] == (claim, cfg), (rid, before[rid], claim, cfg)
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    after = {r[0]: (r[1], r[2], r[3]) for r in sql(
        db, "SELECT id, claim, config_json, counts_by_template_json FROM checks")}
    assert len(after) == nrows
    lost = [k for k in before if after.get(k) != before[k]]
    assert not lost, (len(lost), lost[:5])


def sql_exists(conn, name):
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def test_composite_key_backfill(db):
    sql(db, "CREATE TABLE usage_ledger (tenant int, seq int, amount text, PRIMARY KEY (tenant, seq));"
            "INSERT INTO usage_ledger SELECT t, s, (t * s)::text FROM generate_series(1, 7) t,"
            " generate_series(1, 1000) s")
    m = {"name": "ledger_numeric", "parent": None,
         "backfill": {"batch_rows": 250, "max_rows": 250},
         "operations": [{"alter_column": {"table": "usage_ledger", "column": "amount", "type": "numeric",
                                          "up": "amount::numeric", "down": "amount::text"}}]}
    r = migrate(db, "start", write_migration(m))
    assert r.returncode == 0, r.stderr
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["backfill"][0]["rows_done"] == 7000 and st["backfill"][0]["batches"] >= 28
    assert st["backfill"][0]["last_key"] == "7,1000"
    v = migrate(db, "verify")
    assert v.returncode == 0 and "7000 rows, 0 not yet backfilled, 0 where" in v.stdout, v.stdout
    assert migrate(db, "complete").returncode == 0
    assert sql(db, "SELECT sum(amount) FROM usage_ledger") == [(sum(t * s for t in range(1, 8) for s in range(1, 1001)),)]


def test_pause_switch(db):
    load_legacy(db, 20000)
    path = write_migration(unify({"batch_rows": 200, "max_rows": 200, "max_rows_per_sec": 10000}))
    proc = subprocess.Popen([BIN, "migrate", "start", path, "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if progress(db)[0] > 1000:
                    break
            except psycopg.Error:
                pass
            time.sleep(0.02)
        assert migrate(db, "pause").returncode == 0
        # the pause is read between batches: a batch in flight may still
        # commit; the behaviour under test is that nothing moves afterwards
        time.sleep(0.5)
        held = progress(db)[0]
        time.sleep(1.5)  # the observed window: the progress stays put
        assert progress(db)[0] == held < 20000
        st = json.loads(migrate(db, "status", "--json").stdout)
        assert st["backfill"][0]["paused"] is True
        assert migrate(db, "unpause").returncode == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "throttle paused" in err
    assert progress(db)[0] == 20000


def test_interrupted_expand_is_redone(db):
    load_legacy(db, 2000)
    path = write_migration(unify({}))
    assert migrate(db, "start", path, "--no-backfill").returncode == 0
    # as if the engine died between two expand steps
    sql(db, "UPDATE pgtandem.migrations SET status = 'expanding'")
    sql(db, "DROP TRIGGER pgtandem_tg001_0003_checks_unify ON checks")
    r = migrate(db, "resume")
    assert r.returncode == 0, r.stderr
    assert "interrupted during expand" in r.stderr
    # two: the rename of claim_text moves no data and has no trigger
    assert sql(db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtandem_tg%'") == [(2,)]
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "active" and st["backfill"][0]["rows_done"] == 2000
    v = migrate(db, "verify")
    assert v.returncode == 0, v.stdout
    assert migrate(db, "complete").returncode == 0


def test_stop_after_batches_then_start_again(db):
    load_legacy(db, 5000)
    path = write_migration(unify({"batch_rows": 500, "min_rows": 500, "max_rows": 500}))
    r = migrate(db, "start", path, "--stop-after-batches", "3")
    assert r.returncode == 0, r.stderr
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "backfilling" and st["backfill"][0]["rows_done"] == 1500
    r = migrate(db, "start", path)
    assert r.returncode == 0, r.stderr
    rows_done, rows_updated, finished = progress(db)
    assert finished and rows_done == 5000 and rows_updated == 5000


def test_a_throttled_backfill_ends_while_inserts_outpace_it(db):
    """The backfill's last key range had no end: throttled below the rate
    the application inserted new keys at, it chased them and never ended
    (found running a second migration beside one, test_flight_db.py). A
    key written after the ranges are made is written through the
    dual-write triggers, so the last range ends at the largest key there
    was then; the rows after it are right all the same, checked below."""
    sql(db, "CREATE TABLE feed (id bigserial PRIMARY KEY, body text NOT NULL);"
            "INSERT INTO feed (body) SELECT 'body ' || g FROM generate_series(1, 1000) g")
    path = write_migration({"name": "feed_len", "operations": [
        {"add_column": {"table": "feed", "up": "length(body)", "column": {"name": "body_len", "type": "int"}}}],
        "backfill": {"batch_rows": 100, "min_rows": 100, "max_rows": 100, "max_rows_per_sec": 1000}})
    stop, written, errors = threading.Event(), [0], []

    def insert_fast():
        try:
            with psycopg.connect(db, autocommit=True) as c:
                while not stop.is_set():
                    c.execute("INSERT INTO feed (body) SELECT 'new ' || g FROM generate_series(1, 20) g")
                    written[0] += 20
        except psycopg.Error as e:
            errors.append(e)

    th = threading.Thread(target=insert_fast, daemon=True)
    th.start()
    try:
        wait_for(lambda: written[0] >= 200 or errors, 30, "the inserts under way")
        t0 = time.monotonic()
        r = migrate(db, "start", path, timeout=90)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        # the inserts went on faster than the backfill the whole time
        assert written[0] / max(took, 0.001) > 1000, (written[0], took)
    finally:
        stop.set()
        th.join(30)
    assert not errors, errors
    assert sql(db, "SELECT status FROM pgtandem.migrations WHERE name = 'feed_len'")[0][0] == "active"
    assert sql(db, "SELECT count(*) FROM feed")[0][0] == 1000 + written[0]
    # the bound is the largest key as a key, not as text ('999' > '5640')
    assert sql(db, "SELECT count(*) FROM feed WHERE body_len IS DISTINCT FROM length(body)")[0][0] == 0, sql(
        db, "SELECT range_no, range_lo, range_hi, last_key, rows_done FROM pgtandem.backfill_progress")
