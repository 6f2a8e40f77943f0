"""`migrate start|complete|rollback --evidence DIR`: the bundle a staging
runbook asks for (schema snapshots and their diff, migration and plan, run
log, row counts, verify, SHA256SUMS), directly and through a proxy; appending
keeps earlier checksums, tampering is caught by `sha256sum -c`, a failed step
still gets its entry, and an unusable DIR is refused before any DDL."""
import glob
import os
import subprocess
import tempfile

from support import engine_proxy, EXAMPLES, load_legacy, migrate, run_pgtandem, shape, sql, write_migration

UNIFY = os.path.join(EXAMPLES, "checks_unify.json")
STEP_FILES = {"migration.json", "plan.txt", "row-counts.txt", "run.log", "schema-before.sql",
              "schema-after.sql", "schema.diff"}


def legacy_rows(db):
    """Every row as the new shape must show it: up(old)."""
    return sql(db, "SELECT id, claim_text, aggregation::jsonb, diagnostics::jsonb, env, anon_token FROM checks"
                   " ORDER BY id")


def new_rows(db):
    return sql(db, "SELECT id, claim, config_json, counts_by_template_json, env, anon_token FROM checks ORDER BY id")


def sha256_check(bundle):
    return subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)


def steps(bundle):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(bundle, "[0-9][0-9]-*")))


def read(bundle, step, name):
    with open(os.path.join(bundle, step, name)) as f:
        return f.read()


def diff_lines(bundle, step, sign):
    return [line[1:].strip() for line in read(bundle, step, "schema.diff").splitlines()
            if line.startswith(sign) and not line.startswith(sign * 3)]


def has_column(lines, column_and_type):
    """A column line of a CREATE TABLE in pg_dump's output ("claim text,")."""
    return any(line.rstrip(",") == column_and_type or line.startswith(column_and_type + " ") for line in lines)


def counts(bundle, step, when):
    out = {}
    for line in read(bundle, step, "row-counts.txt").splitlines():
        if line.startswith(when + "\t"):
            _, table, n = line.split("\t")
            out[table] = n
    return out


def test_direct_start_then_complete_appends_to_one_bundle(db, tmp_path):
    load_legacy(db, 3000)
    before = legacy_rows(db)
    bundle = str(tmp_path / "evidence")
    r = migrate(db, "start", UNIFY, "--evidence", bundle)
    assert r.returncode == 0, r.stderr
    [start] = steps(bundle)
    assert start.startswith("01-start-")
    assert STEP_FILES | {"verify-after.txt"} <= set(os.listdir(os.path.join(bundle, start)))
    assert read(bundle, start, "migration.json") == open(UNIFY).read()
    assert "== expand ==" in read(bundle, start, "plan.txt")
    # the expand adds the columns whose values change next to the old ones;
    # the rename of claim_text moves no data (only the new shape's view names it)
    added = diff_lines(bundle, start, "+")
    assert has_column(added, "config_json jsonb") and not has_column(added, "claim text")
    assert any("claim_text AS claim," in line for line in added), added
    assert counts(bundle, start, "before") == {"public.checks": "3000", "public.anonymous_usage": "absent"}
    assert counts(bundle, start, "after") == {"public.checks": "3000", "public.anonymous_usage": "0"}
    assert "both shapes agree" in read(bundle, start, "verify-after.txt")
    log = read(bundle, start, "run.log")
    for mark in ("phase: step begins", "batch 1 on \"public\".\"checks\"", "backfill of \"public\".\"checks\" done",
                 "phase: step ended (exit status 0)", "schema snapshot schema-after.sql: written"):
        assert mark in log, log
    for path in glob.glob(os.path.join(bundle, start, "*")):
        with open(path) as f:
            assert db not in f.read(), "the database URI (with its password) is in %s" % path
    assert sha256_check(bundle).returncode == 0
    with open(os.path.join(bundle, "SHA256SUMS")) as f:
        first_sums = f.read()
    assert len(first_sums.splitlines()) == len(os.listdir(os.path.join(bundle, start)))

    r = migrate(db, "complete", "--evidence", bundle)
    assert r.returncode == 0, r.stderr
    assert steps(bundle)[0] == start and steps(bundle)[1].startswith("02-complete-")
    complete = steps(bundle)[1]
    with open(os.path.join(bundle, "SHA256SUMS")) as f:
        sums = f.read()
    assert sums.startswith(first_sums) and len(sums) > len(first_sums)
    ok = sha256_check(bundle)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(sums.splitlines())
    # the contract drops the old columns
    removed = diff_lines(bundle, complete, "-")
    assert has_column(removed, "claim_text text") and has_column(removed, "aggregation text")
    assert "contract: committed after 1 attempt(s)" in read(bundle, complete, "run.log")
    assert "both shapes agree" in read(bundle, complete, "verify-before.txt")
    n = str(sql(db, "SELECT count(*) FROM checks")[0][0])
    assert counts(bundle, complete, "after")["public.checks"] == n == "3000"
    assert new_rows(db) == before


def test_tampering_is_detected_and_appending_keeps_old_entries(db, tmp_path):
    load_legacy(db, 500)
    before = legacy_rows(db)
    bundle = str(tmp_path / "evidence")
    assert migrate(db, "start", UNIFY, "--evidence", bundle).returncode == 0
    [start] = steps(bundle)
    with open(os.path.join(bundle, start, "row-counts.txt"), "a") as f:
        f.write("after\tpublic.checks\t1\n")
    bad = sha256_check(bundle)
    assert bad.returncode != 0 and "%s/row-counts.txt: FAILED" % start in bad.stdout
    with open(os.path.join(bundle, "SHA256SUMS")) as f:
        first_sums = f.read()
    # the next step appends: the old entry is not recomputed, the change stays visible
    assert migrate(db, "rollback", "--evidence", bundle).returncode == 0
    with open(os.path.join(bundle, "SHA256SUMS")) as f:
        assert f.read().startswith(first_sums)
    again = sha256_check(bundle)
    assert again.returncode != 0 and "%s/row-counts.txt: FAILED" % start in again.stdout
    assert again.stdout.count("FAILED") == 1
    rollback = steps(bundle)[1]
    assert rollback.startswith("02-rollback-")
    removed = diff_lines(bundle, rollback, "-")
    assert has_column(removed, "config_json jsonb") and not has_column(removed, "claim text")
    assert "migration rolled back" in read(bundle, rollback, "run.log")
    assert legacy_rows(db) == before


def test_failed_step_still_writes_its_entry(db, tmp_path):
    load_legacy(db, 100)
    before = legacy_rows(db)
    bundle = str(tmp_path / "evidence")
    bad = os.path.join(str(tmp_path), "bad.json")
    with open(bad, "w") as f:
        f.write('{"name": "0004_bad", "operations": [{"rename_column": {"table": "checks", "from": "nope",'
                ' "to": "yes"}}]}')
    r = migrate(db, "start", bad, "--evidence", bundle)
    assert r.returncode == 2, r.stderr
    [step] = steps(bundle)
    log = read(bundle, step, "run.log")
    assert "nope" in log and "phase: step ended (exit status 2)" in log
    assert "no plan" in read(bundle, step, "plan.txt")
    # the engine's state schema may appear; the application's tables do not change
    changed = diff_lines(bundle, step, "+") + diff_lines(bundle, step, "-")
    assert not any("public." in line or line.startswith("yes ") for line in changed), changed
    assert sha256_check(bundle).returncode == 0
    assert legacy_rows(db) == before


def test_unusable_directory_is_refused_before_any_ddl(db, tmp_path):
    load_legacy(db, 100)
    before_shape, before = shape(db), legacy_rows(db)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for target, why in ((str(afile), "exists and is not a directory"),
                        (str(afile / "sub"), "cannot create the directory")):
        r = migrate(db, "start", UNIFY, "--evidence", target)
        assert r.returncode == 2, r.stderr
        assert "--evidence %s: %s" % (target, why) in r.stderr
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        r = migrate(db, "start", UNIFY, "--evidence", str(ro))
        assert r.returncode == 2 and "cannot write SHA256SUMS" in r.stderr
    r = migrate(db, "verify", "--evidence", str(tmp_path / "x"))
    assert r.returncode == 2 and "--evidence is for start, complete and rollback" in r.stderr
    assert shape(db) == before_shape
    assert legacy_rows(db) == before


def test_through_the_proxy_with_db(cluster, proxy_factory, db, tmp_path):
    load_legacy(db, 2000)
    before, before_shape = legacy_rows(db), shape(db)
    dbname = db.rsplit("/", 1)[1].split("?")[0]
    proxy = engine_proxy(proxy_factory, cluster, dbname)
    url = "http://127.0.0.1:%d" % proxy.admin_port
    bundle = str(tmp_path / "evidence")
    # the proxy's upstream is not known to the CLI: the snapshots need --db
    r = run_pgtandem(["migrate", "start", UNIFY, "--proxy", url, "--evidence", bundle],
                     env={"PGTANDEM_DB": "", "DATABASE_URL": ""})
    assert r.returncode == 2 and "pass --db URI" in r.stderr
    assert not os.path.exists(bundle) and shape(db) == before_shape

    r = run_pgtandem(["migrate", "start", UNIFY, "--proxy", url, "--db", db, "--evidence", bundle])
    assert r.returncode == 0, r.stderr
    [start] = steps(bundle)
    log = read(bundle, start, "run.log")
    assert "submitted to the proxy" in log and "backfill:  2000/2000 rows" in log, log
    assert has_column(diff_lines(bundle, start, "+"), "config_json jsonb")

    r = run_pgtandem(["migrate", "complete", "--proxy", url, "--db", db, "--evidence", bundle])
    assert r.returncode == 0, r.stderr
    complete = steps(bundle)[1]
    log = read(bundle, complete, "run.log")
    assert "stdout| contract: committed after 1 attempt(s); traffic held" in log, log
    assert "held messages" in log and "re-prepared statements" in log
    assert "cutover:   1 attempt(s)" in log
    assert counts(bundle, complete, "after")["public.checks"] == "2000"
    assert sha256_check(bundle).returncode == 0
    assert new_rows(db) == before


def test_sql_file_keeps_the_source_and_the_converted_migration(db, tmp_path):
    load_legacy(db, 200)
    before = sql(db, "SELECT id, claim_text FROM checks ORDER BY id")
    src = tmp_path / "0004_rename.sql"
    src.write_text("ALTER TABLE checks RENAME COLUMN claim_text TO claim_body;\n")
    bundle = str(tmp_path / "evidence")
    r = migrate(db, "start", str(src), "--evidence", bundle)
    assert r.returncode == 0, r.stderr
    [start] = steps(bundle)
    assert read(bundle, start, "0004_rename.sql") == src.read_text()
    assert '"claim_body"' in read(bundle, start, "migration.json")
    # a rename moves no data: only the new shape's view names the column
    added = diff_lines(bundle, start, "+")
    assert not has_column(added, "claim_body text")
    assert any("claim_text AS claim_body" in line for line in added), added
    assert sha256_check(bundle).returncode == 0
    assert migrate(db, "complete").returncode == 0
    assert sql(db, "SELECT id, claim_body FROM checks ORDER BY id") == before


def test_rename_table_counts_the_table_under_both_names(db, tmp_path):
    sql(db, "CREATE TABLE scratch (id int PRIMARY KEY, note text)")
    sql(db, "INSERT INTO scratch SELECT g, 'n' || g FROM generate_series(1, 42) g")
    path = write_migration({"name": "0005_rename_scratch",
                            "operations": [{"rename_table": {"from": "scratch", "to": "notes"}}]},
                           directory=str(tmp_path))
    bundle = str(tmp_path / "evidence")
    r = migrate(db, "start", path, "--evidence", bundle)
    assert r.returncode == 0, r.stderr
    [start] = steps(bundle)
    assert counts(bundle, start, "before") == {"public.scratch": "42", "public.notes": "absent"}
    after = counts(bundle, start, "after")
    assert after["public.notes"] == "42", after
    assert set(after) == {"public.scratch", "public.notes"}
    assert sha256_check(bundle).returncode == 0


def test_empty_pgtandem_db_falls_back_to_database_url_for_step_and_evidence(db, tmp_path):
    load_legacy(db, 100)
    bundle = str(tmp_path / "evidence")
    r = run_pgtandem(["migrate", "start", UNIFY, "--evidence", bundle],
                     env={"PGTANDEM_DB": "", "DATABASE_URL": db})
    assert r.returncode == 0, r.stderr
    [start] = steps(bundle)
    assert counts(bundle, start, "after") == {"public.checks": "100", "public.anonymous_usage": "0"}
    assert has_column(diff_lines(bundle, start, "+"), "config_json jsonb")
    assert sql(db, "SELECT count(*) FROM pgtandem.migrations")[0][0] == 1


def test_missing_dir_is_created_and_an_unreachable_database_still_leaves_an_entry():
    # a DIR that does not exist yet is created (its parent must exist)
    with tempfile.TemporaryDirectory() as d:
        target = os.path.join(d, "new")
        r = run_pgtandem(["migrate", "rollback", "--db", "postgresql://127.0.0.1:1/x?connect_timeout=1",
                          "--evidence", target])
        assert os.path.isdir(target)
        assert r.returncode != 0
        assert sha256_check(target).returncode == 0
