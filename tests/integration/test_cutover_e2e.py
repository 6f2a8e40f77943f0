"""The seeds' migration (config/examples/checks_unify.json) run by the proxy
under live traffic, driven by `pgtandem migrate ... --proxy URL`:

- pgbench at 16 clients writing through the old names during the backfill,
  then through the new names (pgtandem.version, -M prepared) across
  `complete`; every transaction records what it wrote in a ledger table in the
  same transaction, and the ledger is compared with `checks` row by row;
- prepared statements across the cutover: psycopg 3 (prepare_threshold=0) and
  node-postgres named statements running `SELECT * FROM checks`;
- version routing (startup option and application_name) and the per-version
  session counts of GET /status;
- the CLI's answers: invalid migration (exit 2), unreachable proxy (exit 1).

Each test gets its own database loaded from checks_legacy.sql; the proxy's
engine works on that database (--engine-db)."""
import json
import os
import subprocess
import tempfile

import psycopg
import pytest

from support import (admin_url, CLIENTS, complete_migration, engine_proxy, LEGACY_DIFF_SQL, LEGACY_ROWS, NAME,
                     NEW_SCRIPT, OLD_SCRIPT, pgbench, pgbench_result, pmigrate, result_columns, run_pgtandem,
                     scalar, start_migration, throttled_migration, TOP, UNIFY, upstream_params, version_options,
                     versions, VSCHEMA, wait_for, wait_new_release_writes)

# One transaction = insert a check + record it in the ledger, update a loaded
# row + record the update, read. Old release: old names, JSON as text.
# New release: new names (jsonb), through the version schema, SELECT *.
# Rows as checks_legacy.sql generates them, under the new names.
# ---- helpers ---------------------------------------------------------------

# ---- end to end under pgbench ------------------------------------------------

def test_pgbench_16_clients_across_backfill_and_complete(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    mig = throttled_migration(4000)
    try:
        # the old release writes during expand and backfill
        old, old_path = pgbench(proxy, legacy_db, OLD_SCRIPT, 8, "simple")
        wait_for(lambda: versions(proxy).get("old", 0) >= CLIENTS, 30.0, "old-release sessions", proc=old)
        start = start_migration(proxy, mig)
        assert "backfill %s" % NAME in start.stderr, start.stderr
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["backfill"]["rows_done"] >= LEGACY_ROWS, cur
        old_res = pgbench_result(old, old_path)
    finally:
        os.unlink(mig)
    assert old_res["rc"] == 0 and not old_res["aborted"], old_res["out"] + proxy.log()[-3000:]
    assert old_res["failed"] in (None, 0), old_res["out"]
    assert old_res["processed"] > 0, old_res["out"]

    # the old release is gone; the new release runs across the cutover
    wait_for(lambda: versions(proxy).get("old", 0) == 0, 30.0, "old-release sessions to leave")
    new, new_path = pgbench(proxy, legacy_db, NEW_SCRIPT, 6, "prepared", version_options())
    wait_for(lambda: versions(proxy).get(NAME, 0) >= CLIENTS, 30.0, "new-release sessions", proc=new)
    wait_new_release_writes(cluster, legacy_db, 100, proc=new)  # the cutover comes under its traffic
    rep = complete_migration(proxy)
    new_res = pgbench_result(new, new_path)
    print("old: %s tx, new: %s tx, cutover: %s" % (old_res["processed"], new_res["processed"], rep))
    assert new_res["rc"] == 0 and not new_res["aborted"], new_res["out"] + proxy.log()[-3000:]
    assert new_res["failed"] in (None, 0), new_res["out"]
    assert new_res["processed"] > 0, new_res["out"]
    assert rep["attempts"] >= 1

    # every transaction a client reported is in the ledger, and the ledger
    # agrees with checks row by row under the new names
    ledger = int(scalar(cluster, legacy_db, "SELECT count(*) FROM cut_ledger"))
    assert ledger == old_res["processed"] + new_res["processed"]
    assert scalar(cluster, legacy_db, "SELECT count(*) FROM cut_ledger WHERE release = 'old'") == \
        str(old_res["processed"])
    missing = scalar(cluster, legacy_db, "SELECT count(*) FROM cut_ledger l LEFT JOIN checks c ON c.id = l.check_id"
                                         " WHERE c.id IS NULL")
    mismatched = scalar(cluster, legacy_db, """
        SELECT count(*) FROM cut_ledger l JOIN checks c ON c.id = l.check_id
         WHERE c.claim IS DISTINCT FROM l.claim OR c.config_json IS DISTINCT FROM l.config
            OR c.counts_by_template_json IS DISTINCT FROM l.counts""")
    updates_bad = scalar(cluster, legacy_db, "SELECT count(*) FROM cut_updates u LEFT JOIN checks c ON c.id ="
                                             " u.check_id WHERE c.config_json IS DISTINCT FROM u.config")
    legacy_bad = scalar(cluster, legacy_db, LEGACY_DIFF_SQL % {"rows": LEGACY_ROWS})
    assert (missing, mismatched, updates_bad, legacy_bad) == ("0", "0", "0", "0")
    assert int(scalar(cluster, legacy_db, "SELECT count(*) FROM cut_updates")) > 0
    cols = scalar(cluster, legacy_db, "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM"
                                      " information_schema.columns WHERE table_schema = 'public' AND"
                                      " table_name = 'checks'")
    assert cols.split(",") == sorted(["id", "claim", "config_json", "counts_by_template_json", "env",
                                      "anon_token", "created_at"])
    assert scalar(cluster, legacy_db, "SELECT version_num FROM alembic_version") == "b73c9aa4f0c3"


# ---- prepared statements across the cutover ----------------------------------

@pytest.mark.parametrize("upstream", upstream_params(), indirect=True)
def test_psycopg_prepared_select_star_across_complete(cluster, proxy_factory, legacy_db, upstream):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db, upstream)
    start_migration(proxy)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    with psycopg.connect(uri, prepare_threshold=0, autocommit=True) as old, \
            psycopg.connect(uri, prepare_threshold=0, autocommit=True, options=version_options()) as new:
        for i in (1, 2, 3):
            cur = old.execute("SELECT * FROM checks WHERE id = %s", (i,))
            assert cur.fetchone() is not None
            assert "claim_text" in result_columns(cur)
            cur = new.execute("SELECT * FROM checks WHERE id = %s", (i,))
            assert cur.fetchone() is not None
            assert "claim" in result_columns(cur) and "claim_text" not in result_columns(cur)
        rep = complete_migration(proxy, force=True)  # the old session stays on purpose
        assert rep["reprepared"] >= 2, rep
        for conn in (old, new):
            for i in (1, 2, 3):
                cur = conn.execute("SELECT * FROM checks WHERE id = %s", (i,))
                row = cur.fetchone()
                assert row is not None
                cols = result_columns(cur)
                assert "claim" in cols and "claim_text" not in cols, cols
                assert row[cols.index("claim")] == "claim number %d" % i


def test_node_postgres_named_statement_across_complete(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    start_migration(proxy)
    node_dir = os.path.join(TOP, "tests", "node")
    procs = []
    for extra in ("", "options=" + version_options().replace(" ", "%20").replace("=", "%3D")):
        uri = proxy.uri(user="postgres", password="postgres", db=legacy_db, extra=extra)
        p = subprocess.Popen(["node", os.path.join(node_dir, "cutover.js"), uri, "7"], cwd=node_dir,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
    try:
        ready = [p.stdout.readline().split() for p in procs]
        for p, line in zip(procs, ready):
            assert line and line[0] == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        assert "claim_text" in ready[0][1].split(",")
        assert "claim" in ready[1][1].split(",") and "claim_text" not in ready[1][1].split(",")
        rep = complete_migration(proxy, force=True)  # the old session stays on purpose
        assert rep["reprepared"] >= 2, rep
        for p in procs:
            out, err = p.communicate("go\n", timeout=60)
            assert p.returncode == 0, err + proxy.log()[-3000:]
            after = out.split("\n")[0].split()
            assert after[0] == "after", out
            cols = after[1].split(",")
            assert "claim" in cols and "claim_text" not in cols, cols
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# ---- version routing ----------------------------------------------------------

def test_version_routing_and_status_counts(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    start_migration(proxy)
    uri = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    app_name_uri = proxy.uri(user="postgres", password="postgres", db=legacy_db,
                             extra="application_name=web@" + NAME)
    with psycopg.connect(uri, autocommit=True) as old, \
            psycopg.connect(uri, autocommit=True, options=version_options()) as new, \
            psycopg.connect(app_name_uri, autocommit=True) as by_app_name:
        old_path = old.execute("SHOW search_path").fetchone()[0]
        assert old_path.split(",")[0].strip().strip('"') == VSCHEMA + "_old", old_path  # the old shape
        old_cols = result_columns(old.execute("SELECT * FROM checks LIMIT 1"))
        assert "claim_text" in old_cols and "aggregation" in old_cols
        assert old.execute("SELECT claim_text FROM checks WHERE id = 1").fetchone()[0] == "claim number 1"
        for conn in (new, by_app_name):
            path = conn.execute("SHOW search_path").fetchone()[0]
            assert path.split(",")[0].strip().strip('"') == VSCHEMA, path
            cols = result_columns(conn.execute("SELECT * FROM checks LIMIT 1"))
            assert "claim" in cols and "config_json" in cols and "claim_text" not in cols, cols
            assert conn.execute("SELECT claim FROM checks WHERE id = 1").fetchone()[0] == "claim number 1"
            assert isinstance(conn.execute("SELECT config_json FROM checks WHERE id = 1").fetchone()[0], dict)
        v = wait_for(lambda: versions(proxy) if versions(proxy).get(NAME) == 2 else None, 30.0, "status counts")
        assert v.get("old") == 1, v
        code, st = proxy.admin("GET", "/status")
        declared = sorted(s.get("version") or "" for s in st["sessions"])
        assert declared == ["", NAME, NAME], st["sessions"]

        complete_migration(proxy, force=True)  # the old session stays on purpose
        # after the cutover the versioned sessions resolve names in the base
        # tables (the version schema is gone from the effective path)
        for conn in (new, by_app_name):
            assert conn.execute("SELECT current_schemas(false)").fetchone()[0] == ["public"]
            cols = result_columns(conn.execute("SELECT * FROM checks LIMIT 1"))
            assert "claim" in cols and "claim_text" not in cols, cols
            assert conn.execute("SELECT claim FROM checks WHERE id = 1").fetchone()[0] == "claim number 1"
    # a session declaring the completed version gets the plain path
    with psycopg.connect(uri, autocommit=True, options=version_options()) as late:
        path = late.execute("SHOW search_path").fetchone()[0]
        assert VSCHEMA not in path, path
        assert late.execute("SELECT claim FROM checks WHERE id = 1").fetchone()[0] == "claim number 1"
    assert scalar(cluster, legacy_db, "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'" % VSCHEMA) == "0"


# ---- the CLI's answers ---------------------------------------------------------

def test_cli_status_rollback_and_errors(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    r = pmigrate(proxy, "status")
    assert r.returncode == 0 and "(none)" in r.stdout, r.stdout + r.stderr

    bad = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    bad.write('{"name": "0009_bad", "operations": [{"rename_colum": {"table": "checks"}}]}')
    bad.close()
    try:
        r = pmigrate(proxy, "start", bad.name)
    finally:
        os.unlink(bad.name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "rename_colum" in r.stderr, r.stderr

    # valid JSON, refused against the live catalog: exit 2, nothing changed
    before = scalar(cluster, legacy_db, "SELECT count(*) FROM information_schema.columns"
                                        " WHERE table_schema = 'public'")
    bad = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    bad.write('{"name": "0009_bad", "parent": null, "operations": ['
              '{"rename_column": {"table": "no_such_table", "from": "a", "to": "b"}}]}')
    bad.close()
    try:
        r = pmigrate(proxy, "start", bad.name)
    finally:
        os.unlink(bad.name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no_such_table" in r.stderr, r.stderr
    assert scalar(cluster, legacy_db, "SELECT count(*) FROM information_schema.columns"
                                      " WHERE table_schema = 'public'") == before

    r = run_pgtandem(["migrate", "status", "--proxy", "http://127.0.0.1:1"])
    assert r.returncode == 1 and "cannot reach" in r.stderr, r.stderr

    start_migration(proxy)
    r = pmigrate(proxy, "status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["name"] == NAME and st["phase"] == "active" and st["backfill"]["rows_done"] >= LEGACY_ROWS
    r = pmigrate(proxy, "start", UNIFY)
    assert r.returncode == 1 and "409" in r.stderr, r.stderr
    r = pmigrate(proxy, "rollback")
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    cols = scalar(cluster, legacy_db, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM"
                                      " information_schema.columns WHERE table_schema = 'public' AND"
                                      " table_name = 'checks'")
    assert cols == "id,claim_text,aggregation,diagnostics,env,anon_token,created_at", cols
    r = pmigrate(proxy, "complete")
    assert r.returncode == 1, r.stdout + r.stderr


def test_cli_sends_the_admin_token(cluster, proxy_factory, legacy_db):
    proxy = proxy_factory(extra_args=["--engine-db", cluster.uri(db=legacy_db)], token="cut-s3cret")
    url = admin_url(proxy)
    r = run_pgtandem(["migrate", "status", "--proxy", url], env={"PGTANDEM_ADMIN_TOKEN": ""})
    assert r.returncode == 1 and "401" in r.stderr, r.stdout + r.stderr
    r = run_pgtandem(["migrate", "status", "--proxy", url], env={"PGTANDEM_ADMIN_TOKEN": "wrong"})
    assert r.returncode == 1 and "PGTANDEM_ADMIN_TOKEN" in r.stderr, r.stdout + r.stderr
    r = run_pgtandem(["migrate", "status", "--proxy", url, "--json"], env={"PGTANDEM_ADMIN_TOKEN": "cut-s3cret"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["name"] is None
