"""The seeds' migration (config/examples/checks_unify.json) with both
releases writing through a proxy: the legacy `checks` rows and the ledger
every writer's transaction records what it wrote in, the pgbench scripts of
the old and the new release, the CLI driving the migration through the
proxy's admin API, and the row-by-row comparison of the ledger and the
loaded rows with `checks` (check_data), with the count of what the new
release has written so far."""
import json
import os
import re
import subprocess
import tempfile
import warnings

from .migrations import EXAMPLES, pmigrate
from .wait import wait_for

__all__ = ["UNIFY", "NAME", "VSCHEMA", "LEGACY_ROWS", "CLIENTS", "LEDGER_SQL", "OLD_SCRIPT", "NEW_SCRIPT",
           "LEGACY_DIFF_SQL", "load_checks_db", "admin_url", "start_migration", "complete_migration",
           "throttled_migration", "version_options", "versions", "pgbench", "pgbench_result",
           "assert_each_pgbench_clean", "scalar",
           "wait_new_release_writes", "check_data", "result_columns", "assert_new_shape"]

UNIFY = os.path.join(EXAMPLES, "checks_unify.json")
NAME = "0003_checks_unify"
VSCHEMA = "pgtandem_" + NAME
LEGACY_ROWS = 20000
CLIENTS = 16

LEDGER_SQL = """
CREATE TABLE cut_ledger (marker text PRIMARY KEY, check_id bigint NOT NULL, release text NOT NULL,
                         claim text, config jsonb, counts jsonb);
CREATE TABLE cut_updates (check_id bigint PRIMARY KEY, config jsonb NOT NULL);
"""

# One transaction = insert a check + record it in the ledger, update a loaded
# row + record the update, read. Old release: old names, JSON as text.
OLD_SCRIPT = r"""
\set r random(1, 1000000000)
\set lid random(1, %(rows)d)
BEGIN;
WITH ins AS (INSERT INTO checks (claim_text, aggregation, diagnostics) VALUES ('o-' || pg_current_xact_id()::text, json_build_object('c', :client_id::int, 'r', :r::int)::text, json_build_object('t', :r::int %% 13)::text) RETURNING id, claim_text, aggregation, diagnostics) INSERT INTO cut_ledger SELECT claim_text, id, 'old', claim_text, aggregation::jsonb, diagnostics::jsonb FROM ins;
UPDATE checks SET aggregation = json_build_object('old', :client_id::int, 'r', :r::int)::text WHERE id = :lid::bigint;
INSERT INTO cut_updates VALUES (:lid::bigint, json_build_object('old', :client_id::int, 'r', :r::int)::jsonb) ON CONFLICT (check_id) DO UPDATE SET config = EXCLUDED.config;
SELECT claim_text, aggregation, diagnostics FROM checks WHERE id = :lid::bigint;
END;
"""

# New release: new names (jsonb), through the version schema, SELECT *.
NEW_SCRIPT = r"""
\set r random(1, 1000000000)
\set lid random(1, %(rows)d)
BEGIN;
WITH ins AS (INSERT INTO checks (claim, config_json, counts_by_template_json) VALUES ('n-' || pg_current_xact_id()::text, jsonb_build_object('c', :client_id::int, 'r', :r::int), jsonb_build_object('t', :r::int %% 13)) RETURNING id, claim, config_json, counts_by_template_json) INSERT INTO cut_ledger SELECT claim, id, 'new', claim, config_json, counts_by_template_json FROM ins;
UPDATE checks SET config_json = jsonb_build_object('new', :client_id::int, 'r', :r::int) WHERE id = :lid::bigint;
INSERT INTO cut_updates VALUES (:lid::bigint, jsonb_build_object('new', :client_id::int, 'r', :r::int)) ON CONFLICT (check_id) DO UPDATE SET config = EXCLUDED.config;
SELECT * FROM checks WHERE id = :lid::bigint;
END;
"""

# Rows as checks_legacy.sql generates them, under the new names.
LEGACY_DIFF_SQL = """
SELECT count(*) FROM generate_series(1, %(rows)d) g LEFT JOIN checks c ON c.id = g
 WHERE g NOT IN (SELECT check_id FROM cut_updates) AND (c.id IS NULL
    OR c.claim IS DISTINCT FROM 'claim number ' || g
    OR c.config_json IS DISTINCT FROM json_build_object('model', 'gpt-5', 'k', g %% 7,
                                                        'p_true', round((g %% 100) / 100.0, 2))::jsonb
    OR c.counts_by_template_json IS DISTINCT FROM
       (CASE WHEN g %% 10 = 0 THEN NULL ELSE json_build_object('template_a', g %% 13, 'template_b', g %% 5)::jsonb END))
"""


# ---- helpers ---------------------------------------------------------------

def load_checks_db(cluster, name):
    """Creates database `name` with checks_legacy.sql loaded (LEGACY_ROWS
    rows) and the ledger tables (conftest's legacy_db fixture)."""
    cluster.psql("CREATE DATABASE %s" % name)
    uri = cluster.uri(db=name)
    r = subprocess.run(["psql", uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-v", "rows=%d" % LEGACY_ROWS,
                        "-f", os.path.join(EXAMPLES, "checks_legacy.sql")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cluster.psql(LEDGER_SQL, uri=uri)


def admin_url(proxy):
    return "http://127.0.0.1:%d" % proxy.admin_port


def start_migration(proxy, path=UNIFY):
    r = pmigrate(proxy, "start", path)
    if r.returncode == 1 and "advisory lock" in r.stderr:
        # Known race: right after the engine worker's expand closes its
        # connection, that backend may not have exited yet and still hold
        # the engine's advisory lock when the proxy takes it.
        # Submitting again resumes the migration from its recorded state.
        warnings.warn("proxy lost the race for the engine advisory lock; start submitted again")
        r = pmigrate(proxy, "start", path)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    code, cur = proxy.admin("GET", "/migrations/current")
    assert code == 200 and cur["phase"] == "active", cur
    return r


def complete_migration(proxy, force=False):
    """force: old-release sessions are still connected on purpose."""
    r = pmigrate(proxy, "complete", "--json", *(["--force"] if force else []))
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
    rep = json.loads(r.stdout)
    assert rep["status"] == "completed", rep
    return rep


def throttled_migration(max_rows_per_sec):
    """checks_unify.json with a backfill rate limit, so that the backfill
    overlaps the load even on a fast machine."""
    with open(UNIFY) as f:
        mig = json.load(f)
    mig["backfill"] = {"max_rows_per_sec": max_rows_per_sec}
    fd, path = tempfile.mkstemp(prefix="cutover-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(mig, f)
    return path


def version_options(name=NAME):
    return "-c pgtandem.version=%s" % name


def versions(proxy):
    code, st = proxy.admin("GET", "/status")
    assert code == 200, st
    return st.get("versions", {})


def pgbench(proxy, dbname, script, duration, mode, options="", clients=CLIENTS, jobs=4, transactions=None):
    """pgbench for `duration` seconds, or `transactions` per client: a count
    cannot run out while slow logins (many clients, a loaded machine) are
    still being made, and pgbench starts its clients only once all are in."""
    fd, path = tempfile.mkstemp(prefix="cutover-", suffix=".sql")
    with os.fdopen(fd, "w") as f:
        f.write(script % {"rows": LEGACY_ROWS})
    env = dict(os.environ, PGOPTIONS=options)
    length = ["-t", str(transactions)] if transactions else ["-T", str(duration)]
    args = ["pgbench", "-n", "-c", str(clients), "-j", str(jobs)] + length + ["-M", mode, "-f", path,
            proxy.uri(user="postgres", password="postgres", db=dbname)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env), path


def pgbench_result(proc, path, timeout=120):
    out, _ = proc.communicate(timeout=timeout)
    os.unlink(path)
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    f = re.search(r"number of failed transactions: (\d+)", out)
    return {"rc": proc.returncode, "processed": int(m.group(1)) if m else None,
            "failed": int(f.group(1)) if f else None, "aborted": "aborted" in out, "out": out}


def assert_each_pgbench_clean(proxies, results):
    """Each proxy's pgbench (results in the same order) ended without an
    error, an abort or a failed transaction, and committed some: what a
    cutover under their traffic must leave."""
    for p, res in zip(proxies, results):
        assert res["rc"] == 0 and not res["aborted"] and res["failed"] in (None, 0), res["out"] + p.log()[-3000:]
        assert (res["processed"] or 0) > 0, res["out"]


def scalar(cluster, dbname, sql):
    return cluster.psql(sql, uri=cluster.uri(db=dbname))


NEW_WRITES_SQL = "SELECT count(*) FROM cut_ledger WHERE release = 'new'"


def wait_new_release_writes(cluster, dbname, n, proc=None):
    """Waits until the new release has committed n more transactions (rows
    of its ledger), so that the cutover comes with its traffic under way."""
    start = int(scalar(cluster, dbname, NEW_WRITES_SQL))
    wait_for(lambda: int(scalar(cluster, dbname, NEW_WRITES_SQL)) >= start + n, 30.0,
             "%d new-release transactions" % n, proc=proc)


def check_data(cluster, dbname, processed):
    """Every transaction pgbench reported is in the ledger, and the ledger
    and the loaded rows agree with checks row by row."""
    assert int(scalar(cluster, dbname, "SELECT count(*) FROM cut_ledger")) == processed
    mismatched = scalar(cluster, dbname, """
        SELECT count(*) FROM cut_ledger l LEFT JOIN checks c ON c.id = l.check_id
         WHERE c.id IS NULL OR c.claim IS DISTINCT FROM l.claim OR c.config_json IS DISTINCT FROM l.config
            OR c.counts_by_template_json IS DISTINCT FROM l.counts""")
    updates_bad = scalar(cluster, dbname, "SELECT count(*) FROM cut_updates u LEFT JOIN checks c ON c.id ="
                                          " u.check_id WHERE c.config_json IS DISTINCT FROM u.config")
    legacy_bad = scalar(cluster, dbname, LEGACY_DIFF_SQL % {"rows": LEGACY_ROWS})
    assert (mismatched, updates_bad, legacy_bad) == ("0", "0", "0")


def result_columns(cur):
    return [d.name for d in cur.description]


def assert_new_shape(conn):
    for i in (1, 2):
        cur = conn.execute("SELECT * FROM checks WHERE id = %s", (i,))
        row = cur.fetchone()
        cols = result_columns(cur)
        assert "claim" in cols and "claim_text" not in cols, cols
        assert row[cols.index("claim")] == "claim number %d" % i

