"""Several pending migrations in one window.

`migrate start DIR` with three pending migrations (a rename on `checks`, a
new table, a rename with a type change on `checks`) runs them as one: one
expand, one backfill, one cutover, while the old release (from before
`start` until just before `complete`) and the new release (declaring the
head, from `start` to after `complete`) keep writing. Every row each wrote
is then read back, and each of the three migrations is recorded as applied
with its own file's checksum, so `migrate lint DIR --db` agrees."""
import json
import os
import tempfile

from support import admin_url, engine_proxy, LEGACY_ROWS, run_pgtandem, scalar, wait_for
from test_lifecycle_shapes import Client, table_columns

CHAIN = [
    {"name": "0001_claim", "parent": None, "operations": [
        {"rename_column": {"table": "checks", "from": "claim_text", "to": "claim"}}]},
    {"name": "0002_usage", "parent": "0001_claim", "operations": [
        {"create_table": {"table": "anonymous_usage", "columns": [
            {"name": "token", "type": "text", "primary_key": True},
            {"name": "checks_used", "type": "integer", "nullable": False, "default": "0"}]}}]},
    {"name": "0003_config", "parent": "0002_usage", "operations": [
        {"rename_column": {"table": "checks", "from": "aggregation", "to": "config_json", "type": "jsonb",
                           "up": "aggregation::jsonb", "down": "config_json::text"}}],
     "backfill": {"max_rows_per_sec": 5000}},
]
HEAD = CHAIN[-1]["name"]


def write_chain(d):
    for m in CHAIN:
        with open(os.path.join(d, m["name"] + ".json"), "w") as f:
            json.dump(m, f, indent=2)


def test_three_pending_migrations_in_one_window_under_both_releases(cluster, proxy_factory, legacy_db):
    proxy = engine_proxy(proxy_factory, cluster, legacy_db)
    via = proxy.uri(user="postgres", password="postgres", db=legacy_db)
    old_columns = table_columns(cluster, legacy_db)
    with tempfile.TemporaryDirectory() as d:
        write_chain(d)
        old = Client(via, "claim_text")
        old.start()
        wait_for(lambda: old.rounds >= 20 or old.errors, what="the old release under way")
        r = run_pgtandem(["migrate", "start", d, "--proxy", admin_url(proxy)])
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
        assert "3 pending migrations (0001_claim .. 0003_config) run as one" in proxy.log(), proxy.log()[-3000:]
        code, cur = proxy.admin("GET", "/migrations/current")
        assert cur["name"] == HEAD and cur["phase"] == "active", cur
        new = Client(via, "claim", options="-c pgtandem.version=" + HEAD)
        new.start()
        wait_for(lambda: new.rounds >= 20 or new.errors, what="the new release under way")
        rounds = old.rounds
        wait_for(lambda: old.rounds >= rounds + 20 or old.errors, what="the old release after start")
        old.finish()
        r = run_pgtandem(["migrate", "complete", "--proxy", admin_url(proxy)])
        assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-3000:]
        rounds = new.rounds
        wait_for(lambda: new.rounds >= rounds + 20 or new.errors, what="the new release after complete")
        new.finish()
        assert old.errors == [] and new.errors == []
        assert set(old.shapes) == {old_columns}, old.shapes
        new_columns = table_columns(cluster, legacy_db)
        assert set(new.shapes) == {new_columns}, new.shapes
        assert {"claim", "config_json"} <= set(new_columns) and not {"claim_text", "aggregation"} & set(new_columns)
        assert scalar(cluster, legacy_db, "SELECT to_regclass('public.anonymous_usage') IS NOT NULL") == "t"
        # every row both releases wrote, under the new name
        written = {**old.written, **new.written}
        ids = ",".join(str(i) for i in written)
        rows = scalar(cluster, legacy_db, "SELECT string_agg(id || '=' || claim, '|') FROM checks WHERE id IN (%s)"
                      % ids)
        assert {int(k): v for k, v in (x.split("=", 1) for x in rows.split("|"))} == written
        # the loaded rows' JSON went through the type change
        assert scalar(cluster, legacy_db, "SELECT count(*) FROM checks WHERE id <= %d AND config_json IS NULL"
                      % LEGACY_ROWS) == "0"
        # each migration is recorded with its own file, so the chain lints clean against the database
        recorded = scalar(cluster, legacy_db, "SELECT string_agg(name || ':' || status, ',' ORDER BY name)"
                                              " FROM pgtandem.migrations")
        assert recorded == "0001_claim:completed,0002_usage:completed,0003_config:completed", recorded
        r = run_pgtandem(["migrate", "lint", d, "--db", cluster.uri(db=legacy_db)])
        assert r.returncode == 0, r.stdout + r.stderr
        # and a second start of the same directory has nothing to do
        r = run_pgtandem(["migrate", "start", d, "--db", cluster.uri(db=legacy_db)])
        assert r.returncode == 0 and "nothing to do" in r.stderr, r.stdout + r.stderr


SQL_CHAIN = {
    "0001_claim.sql": 'ALTER TABLE "checks" RENAME COLUMN "claim_text" TO "claim";\n',
    "0002_usage.sql": 'CREATE TABLE "anonymous_usage" ("token" text PRIMARY KEY, "checks_used" integer DEFAULT 0 NOT NULL);\n',
    "0003_config.sql": 'ALTER TABLE "checks" ALTER COLUMN "aggregation" SET DATA TYPE jsonb USING "aggregation"::jsonb;\n',
}


def test_a_directory_of_sql_files_runs_its_pending_ones_as_one_with_merge(cluster, legacy_db):
    """drizzle-kit's layout: numbered .sql files, each converted, named by
    its file, its parent the file before; with --db (the converter reads
    the old column types there)."""
    db = cluster.uri(db=legacy_db)
    with tempfile.TemporaryDirectory() as d:
        for name, text in SQL_CHAIN.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        r = run_pgtandem(["migrate", "start", d, "--merge", "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 pending migrations (0001_claim .. 0003_config) run as one" in r.stderr, r.stderr
        r = run_pgtandem(["migrate", "complete", "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        cols = table_columns(cluster, legacy_db)
        assert "claim" in cols and "claim_text" not in cols, cols
        assert scalar(cluster, legacy_db, "SELECT data_type FROM information_schema.columns WHERE table_name ="
                                          " 'checks' AND column_name = 'aggregation'") == "jsonb"
        assert scalar(cluster, legacy_db, "SELECT string_agg(name, ',' ORDER BY name) FROM pgtandem.migrations"
                                          " WHERE status = 'completed'") == "0001_claim,0002_usage,0003_config"
        r = run_pgtandem(["migrate", "start", d, "--db", db])
        assert r.returncode == 0 and "nothing to do" in r.stderr, r.stdout + r.stderr


def in_flight(cluster, legacy_db):
    return scalar(cluster, legacy_db, "SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM"
                                      " pgtandem.migrations WHERE status <> 'completed'")


def test_a_directory_of_sql_files_starts_each_pending_file_as_its_own_and_completes_as_a_directory(cluster,
                                                                                                    legacy_db):
    """The default: each pending file its own migration, in order (a plain
    rename of checks.claim_text, a new table, a retype of
    checks.aggregation: other columns of checks), so a release built with
    0001_claim declares it; `complete DIR` completes them oldest first."""
    db = cluster.uri(db=legacy_db)
    with tempfile.TemporaryDirectory() as d:
        for name, text in SQL_CHAIN.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        r = run_pgtandem(["migrate", "start", d, "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 migrations started, each its own: 0001_claim, 0002_usage, 0003_config" in r.stderr, r.stderr
        assert in_flight(cluster, legacy_db) == "0001_claim:active,0002_usage:active,0003_config:active"
        # the release built with 0001_claim: its shape of checks has claim, aggregation still text
        cols = scalar(cluster, legacy_db, "SELECT string_agg(column_name || ' ' || data_type, ',' ORDER BY"
                                          " column_name) FROM information_schema.columns WHERE table_schema ="
                                          " 'pgtandem_0001_claim' AND table_name = 'checks' AND column_name IN"
                                          " ('claim', 'claim_text', 'aggregation')")
        assert cols == "aggregation text,claim text", cols
        # a complete with no name does not guess which
        r = run_pgtandem(["migrate", "complete", "--db", db])
        assert r.returncode == 2 and "3 migrations are in flight" in r.stderr, r.stdout + r.stderr
        r = run_pgtandem(["migrate", "complete", d, "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        order = [l.split()[1] for l in r.stderr.splitlines() if l.startswith("completing ")]
        assert order == ["0001_claim", "0002_usage", "0003_config"], r.stderr
        assert in_flight(cluster, legacy_db) in (None, ""), in_flight(cluster, legacy_db)
        cols = table_columns(cluster, legacy_db)
        assert "claim" in cols and "claim_text" not in cols, cols
        assert scalar(cluster, legacy_db, "SELECT data_type FROM information_schema.columns WHERE table_name ="
                                          " 'checks' AND column_name = 'aggregation'") == "jsonb"
        r = run_pgtandem(["migrate", "complete", d, "--db", db])
        assert r.returncode == 0 and "nothing to complete" in r.stderr, r.stdout + r.stderr
        r = run_pgtandem(["migrate", "start", d, "--db", db])
        assert r.returncode == 0 and "nothing to do" in r.stderr, r.stdout + r.stderr


RETYPE_THEN_RENAME = {
    "0001_config.sql": 'ALTER TABLE "checks" ALTER COLUMN "aggregation" SET DATA TYPE jsonb USING'
                       ' "aggregation"::jsonb;\n',
    "0002_rename.sql": 'ALTER TABLE "checks" RENAME COLUMN "aggregation" TO "config_json";\n',
}
SHARED_CHAIN = {
    "0001_config.sql": RETYPE_THEN_RENAME["0001_config.sql"],
    "0002_drop.sql": 'ALTER TABLE "checks" DROP COLUMN "aggregation";\n',
}


def write_files(d, files):
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


def test_a_retype_then_a_rename_of_one_column_start_each_its_own(cluster, legacy_db):
    """0001 retypes checks.aggregation into a second column, 0002 renames
    it plainly: the rename acts in 0002's contract alone, after 0001's, so
    each is its own migration; `complete DIR` completes both in order."""
    db = cluster.uri(db=legacy_db)
    with tempfile.TemporaryDirectory() as d:
        write_files(d, RETYPE_THEN_RENAME)
        r = run_pgtandem(["migrate", "start", d, "--each", "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 migrations started, each its own: 0001_config, 0002_rename" in r.stderr, r.stderr
        # the release built with 0002 sees 0001's jsonb column as config_json
        cols = scalar(cluster, legacy_db, "SELECT string_agg(column_name || ' ' || data_type, ',' ORDER BY"
                                          " column_name) FROM information_schema.columns WHERE table_schema ="
                                          " 'pgtandem_0002_rename' AND table_name = 'checks' AND column_name IN"
                                          " ('aggregation', 'config_json')")
        assert cols == "config_json jsonb", cols
        r = run_pgtandem(["migrate", "complete", d, "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        cols = table_columns(cluster, legacy_db)
        assert "config_json" in cols and "aggregation" not in cols, cols
        assert scalar(cluster, legacy_db, "SELECT data_type FROM information_schema.columns WHERE table_name ="
                                          " 'checks' AND column_name = 'config_json'") == "jsonb"


def test_files_that_change_one_column_start_as_one_by_default_and_each_refuses_them(cluster, legacy_db):
    """0001 retypes checks.aggregation, 0002 drops it: one file may not
    name a column an earlier one retypes (but to rename it plainly), so the
    default starts the two as one, saying why; --each refuses the
    directory before any DDL."""
    db = cluster.uri(db=legacy_db)
    with tempfile.TemporaryDirectory() as d:
        write_files(d, SHARED_CHAIN)
        before = table_columns(cluster, legacy_db)
        r = run_pgtandem(["migrate", "start", d, "--each", "--db", db])
        assert r.returncode == 2 and "aggregation" in r.stderr and "without --each" in r.stderr, \
            r.stdout + r.stderr
        assert table_columns(cluster, legacy_db) == before
        assert scalar(cluster, legacy_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem_0%'") == "0"
        r = run_pgtandem(["migrate", "start", d, "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "start as one migration, named 0002_drop" in r.stderr, r.stderr
        assert in_flight(cluster, legacy_db) == "0002_drop:active", in_flight(cluster, legacy_db)
        r = run_pgtandem(["migrate", "complete", d, "--db", db])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "aggregation" not in table_columns(cluster, legacy_db)
