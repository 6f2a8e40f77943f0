"""Bad input: the corpus in tests/migrations/bad (each *.json with the error
it must produce in *.expect), directory chains, files changed after being
applied, validation against the live catalog, and Alembic versions/
directories made by Debian's alembic held to the same chain rules — all
exit 2 and change nothing."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from support import load_legacy, migrate, run_pgtandem, shape, sql, TOP, write_migration

CORPUS = os.path.join(TOP, "tests", "migrations")
BAD = sorted(glob.glob(os.path.join(CORPUS, "bad", "*.json")))


@pytest.mark.parametrize("path", BAD, ids=[os.path.basename(p)[:-5] for p in BAD])
def test_bad_file_is_rejected_with_its_error(path):
    with open(path[:-5] + ".expect") as f:
        expected = f.read().strip()
    for cmd in ("lint", "plan"):
        r = run_pgtandem(["migrate", cmd, path])
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert expected in r.stderr, (cmd, r.stderr)
        assert path in r.stderr


def test_error_names_line_and_column():
    r = run_pgtandem(["migrate", "lint", os.path.join(CORPUS, "bad", "unknown_op_key.json")])
    assert ":1:95: operations[1].rename_column" in r.stderr


def test_chain_multiple_heads():
    r = run_pgtandem(["migrate", "lint", os.path.join(CORPUS, "chain_heads")])
    assert r.returncode == 2
    assert "multiple heads" in r.stderr and "0002_b" in r.stderr and "0002_c" in r.stderr


def test_chain_missing_parent():
    r = run_pgtandem(["migrate", "lint", os.path.join(CORPUS, "chain_missing")])
    assert r.returncode == 2
    assert 'parent "0002_b" of "0003_c" is not in the directory' in r.stderr


def test_chain_good():
    r = run_pgtandem(["migrate", "lint", os.path.join(CORPUS, "good")])
    assert r.returncode == 0, r.stderr
    assert "3 migration(s) OK, head 0003_d" in r.stdout


def test_applied_file_changed(db):
    d = tempfile.mkdtemp()
    shutil.copy(os.path.join(CORPUS, "good", "0001.json"), d)
    r = migrate(db, "start", os.path.join(d, "0001.json"))
    assert r.returncode == 0, r.stderr
    assert migrate(db, "complete").returncode == 0
    assert migrate(db, "lint", d).returncode == 0
    with open(os.path.join(d, "0001.json"), "a") as f:
        f.write(" ")
    r = migrate(db, "lint", d)
    assert r.returncode == 2
    assert "was applied" in r.stderr and "checksum" in r.stderr
    # Forward-only: a completed migration cannot be started again, and the
    # next one must name it as parent.
    r = migrate(db, "start", write_migration({"name": "0002_x", "parent": "nope",
                                              "operations": [{"sql": {"up": "SELECT 1"}}]}))
    assert r.returncode == 2 and "forward-only" in r.stderr


LIVE_CASES = [
    ({"rename_column": {"table": "nope", "from": "a", "to": "b"}}, 'table "public.nope" does not exist'),
    ({"rename_column": {"table": "checks", "from": "claim_txt", "to": "claim"}},
     'column "claim_txt" does not exist in table "public.checks"'),
    ({"rename_column": {"table": "checks", "from": "claim_text", "to": "env"}}, 'column "env" already exists'),
    ({"rename_column": {"table": "checks", "from": "aggregation", "to": "c", "type": "jsonbb",
                        "up": "aggregation::jsonb", "down": "c::text"}}, 'type "jsonbb" does not exist'),
    ({"rename_column": {"table": "checks", "from": "aggregation", "to": "c", "type": "jsonb",
                        "up": "aggregaton::jsonb", "down": "c::text"}}, '"up" expression "aggregaton::jsonb"'),
    ({"rename_column": {"table": "checks", "from": "aggregation", "to": "c", "type": "jsonb",
                        "up": "1); DROP TABLE checks; SELECT (1", "down": "c::text"}},
     '"up" must be exactly one SQL expression'),
    ({"rename_column": {"table": "nokey", "from": "a", "to": "b", "copy": True}}, "has no primary key"),
    ({"rename_column": {"table": "checks", "from": "id", "to": "check_id", "copy": True}}, "part of the key"),
    ({"create_table": {"table": "checks", "columns": [{"name": "id", "type": "int"}]}}, "already exists"),
    ({"add_column": {"table": "checks", "column": {"name": "x", "type": "int", "nullable": False}}},
     "neither \"default\" nor \"up\""),
    ({"drop_index": {"name": "nope"}}, 'index "nope" does not exist in schema "public"'),
    ({"drop_index": {"name": "checks_pkey"}}, 'primary key constraint "checks_pkey"'),
]


@pytest.mark.parametrize("op,expected", LIVE_CASES, ids=[str(i) for i in range(len(LIVE_CASES))])
def test_live_validation_changes_nothing(db, op, expected):
    load_legacy(db, 50)
    sql(db, "CREATE TABLE nokey (a text)")
    before = shape(db)
    path = write_migration({"name": "bad", "parent": None,
                            "operations": [{"create_index": {"table": "checks", "name": "ix_env",
                                                             "columns": ["env"]}}, op]})
    r = migrate(db, "start", path)
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr
    assert "operations[1]" in r.stderr
    assert sql(db, "SELECT to_regclass('checks') IS NOT NULL") == [(True,)]
    after = shape(db)
    assert after == before
    # refused while reading the file (no state table yet) or against the catalog
    if sql(db, "SELECT to_regclass('pgtandem.migrations') IS NOT NULL") == [(True,)]:
        assert sql(db, "SELECT count(*) FROM pgtandem.migrations") == [(0,)]


# ---- lint --db: what the live catalog refuses, as findings -------------------

from test_schema_fidelity import CASES, run_script  # noqa: E402

REFUSED_CASES = ["retype_column_in_policy_refused", "retype_identity_column_refused",
                 "drop_column_named_by_triggers", "drop_column_read_by_generated_column",
                 "retype_view_refused", "table_without_primary_key", "drop_table_referenced_refused",
                 "drop_index_primary_key_refused", "parted_retype_partition_key_refused"]


def catalog_state(db):
    return shape(db), sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem%'")


@pytest.mark.parametrize("case", REFUSED_CASES)
def test_lint_db_reports_what_start_refuses(db, case):
    c = CASES[case]
    run_script(db, c["base"])
    before = catalog_state(db)
    path = write_migration({"name": "lint_" + case[:30], "parent": None, "operations": c["ops"]})
    r = migrate(db, "lint", path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[catalog-refuses]" in r.stdout and ("%s:" % path) in r.stdout, r.stdout
    for want in c["refused"]:
        assert want in r.stdout, (want, r.stdout)
    assert "migration(s) OK" not in r.stdout
    j = migrate(db, "lint", path, "--format", "json")
    assert j.returncode == 2, j.stderr
    findings = [f for f in json.loads(j.stdout)["findings"] if f["rule"] == "catalog-refuses"]
    assert len(findings) == 1, j.stdout
    f = findings[0]
    # the finding points at the operation in the file, and says what start says
    with open(path) as fh:
        line = fh.read().splitlines()[f["line"] - 1]
    assert line[f["column"] - 1:].startswith('"%s"' % list(c["ops"][0])[0]), (line, f)
    assert f["statement"].startswith("operations[0].")
    assert f["blocking"] and f["online_alternative"]
    assert catalog_state(db) == before
    s = migrate(db, "start", path)
    assert s.returncode == 2 and f["why"] in s.stderr, (f["why"], s.stderr)
    assert shape(db) == before[0]


def test_lint_db_passes_a_carried_migration(db):
    c = CASES["identity_column_renamed"]
    run_script(db, c["base"])
    before = catalog_state(db)
    path = write_migration({"name": "lint_ok", "parent": None, "operations": c["ops"]})
    r = migrate(db, "lint", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"lint_ok" passes the live catalog\'s validation' in r.stdout, r.stdout
    assert "1 migration(s) OK" in r.stdout
    assert catalog_state(db) == before


def test_lint_db_checks_the_next_migration_of_a_chain(db):
    """Applied migrations are history; the first one not applied is checked
    against the catalog; the ones after it wait for it."""
    run_script(db, CASES["retype_column_in_policy_refused"]["base"])
    d = tempfile.mkdtemp()
    first = {"name": "0001_idx", "parent": None,
             "operations": [{"create_index": {"table": "checks", "name": "ix_env", "columns": ["env"]}}]}
    second = {"name": "0002_price", "parent": "0001_idx",
              "operations": [{"create_index": {"table": "checks", "name": "ix_status", "columns": ["status"]}},
                             CASES["retype_column_in_policy_refused"]["ops"][0]]}
    third = {"name": "0003_more", "parent": "0002_price",
             "operations": [{"drop_index": {"name": "ix_status"}}]}
    for n, m in (("0001.json", first), ("0002.json", second), ("0003.json", third)):
        with open(os.path.join(d, n), "w") as f:
            json.dump(m, f, indent=2)
    assert migrate(db, "start", os.path.join(d, "0001.json")).returncode == 0
    assert migrate(db, "complete").returncode == 0
    before = catalog_state(db)
    r = migrate(db, "lint", d)
    assert r.returncode == 2, r.stdout + r.stderr
    m = re.search(re.escape(os.path.join(d, "0002.json")) + r":(\d+):(\d+): error \[catalog-refuses\]", r.stdout)
    assert m, r.stdout + r.stderr
    with open(os.path.join(d, "0002.json")) as f:
        line = f.read().splitlines()[int(m.group(1)) - 1]
    assert line[int(m.group(2)) - 1:].startswith('"alter_column"'), line
    assert "[catalog-refuses] operations[1].alter_column" in r.stdout and "policy checks_visible" in r.stdout
    assert '1 later migration(s) are checked against the catalog once "0002_price" is applied' in r.stdout
    assert catalog_state(db) == before


def test_lint_db_sql_file(db):
    """A .sql file is converted as start would convert it, then checked: the
    SQL rule and the catalog's refusal both show."""
    run_script(db, CASES["retype_column_in_policy_refused"]["base"])
    before = catalog_state(db)
    d = tempfile.mkdtemp()
    path = os.path.join(d, "0002_price.sql")
    with open(path, "w") as f:
        f.write("ALTER TABLE checks ALTER COLUMN price TYPE numeric USING price::numeric;\n")
    r = migrate(db, "lint", path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[alter-column-type]" in r.stdout, r.stdout
    assert path + ": error [catalog-refuses] operations[0].alter_column" in r.stdout, r.stdout
    assert "policy checks_visible" in r.stdout
    assert catalog_state(db) == before
    r = run_pgtandem(["migrate", "lint", path])   # without --db: the SQL rules only
    assert r.returncode == 2 and "catalog-refuses" not in r.stdout, r.stdout


# ---- Alembic versions/ directories: the migration policy's chain rules ----

alembic_missing = pytest.mark.skipif(shutil.which("alembic") is None, reason="alembic is not installed (make deps)")


def alembic(project, *args):
    r = subprocess.run(["alembic"] + list(args), cwd=project, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def alembic_file(versions, rev):
    return os.path.join(versions, next(f for f in os.listdir(versions) if f.startswith(rev + "_")))


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text, (path, old)
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def line_of(path, text):
    with open(path) as f:
        return next(i for i, line in enumerate(f, 1) if line.startswith(text))


def alembic_project():
    """`alembic init` and a chain a1 -> b2 written by `alembic revision`."""
    project = tempfile.mkdtemp(prefix="alembic-chain-")
    alembic(project, "init", "-t", "generic", "migrations")
    edit(os.path.join(project, "alembic.ini"), "sqlalchemy.url = driver://user:pass@localhost/dbname",
         "sqlalchemy.url = postgresql://localhost/app")
    alembic(project, "revision", "-m", "first", "--rev-id", "a1")
    alembic(project, "revision", "-m", "second", "--rev-id", "b2")
    return project, os.path.join(project, "migrations", "versions")


@alembic_missing
def test_alembic_two_heads_fail_and_a_merge_fixes_them():
    project, versions = alembic_project()
    try:
        r = run_pgtandem(["migrate", "lint", versions])
        assert r.returncode == 0 and "lint: 2 Alembic revision(s) OK, head b2" in r.stdout, r.stdout + r.stderr
        # a second branch off a1: two heads, as `alembic heads` shows
        alembic(project, "revision", "-m", "branch", "--rev-id", "c3", "--head", "a1", "--splice")
        assert sorted(alembic(project, "heads").split()) == ["(head)", "(head)", "b2", "c3"]
        r = run_pgtandem(["migrate", "lint", versions])
        assert r.returncode == 2, r.stdout + r.stderr
        assert "multiple heads" in r.stderr and "alembic merge" in r.stderr
        assert alembic_file(versions, "c3") + ":" in r.stderr and alembic_file(versions, "b2") + ":" in r.stderr
        # `alembic merge heads` writes down_revision = ('b2', 'c3') and an empty upgrade()
        alembic(project, "merge", "-m", "merge heads", "--rev-id", "m4", "heads")
        r = run_pgtandem(["migrate", "lint", versions])
        assert r.returncode == 0 and "lint: 4 Alembic revision(s) OK, head m4" in r.stdout, r.stdout + r.stderr
        # a merge that changes the schema breaks the policy
        merge = alembic_file(versions, "m4")
        edit(merge, "def upgrade() -> None:\n    pass",
             "def upgrade() -> None:\n    \"\"\"Join.\"\"\"\n    op.add_column('t', sa.Column('x', sa.Integer()))")
        r = run_pgtandem(["migrate", "lint", versions])
        where = "%s:%d: " % (merge, line_of(merge, "    op.add_column"))
        assert r.returncode == 2 and where + "\"m4\" is a merge" in r.stderr, r.stderr
        # a deleted file
        edit(merge, "    op.add_column('t', sa.Column('x', sa.Integer()))", "    pass")
        assert run_pgtandem(["migrate", "lint", versions]).returncode == 0
        second = alembic_file(versions, "b2")
        with open(second) as f:
            kept = f.read()
        os.unlink(second)
        r = run_pgtandem(["migrate", "lint", versions])
        assert r.returncode == 2 and "%s:%d: down_revision \"b2\" of \"m4\" is not in the directory" % (
            merge, line_of(merge, "down_revision")) in r.stderr, r.stderr
        with open(second, "w") as f:
            f.write(kept)
        # a cycle: a1 rewritten to follow m4
        edit(alembic_file(versions, "a1"), "down_revision = None", "down_revision = 'm4'")
        r = run_pgtandem(["migrate", "lint", versions])
        assert r.returncode == 2 and "(a cycle)" in r.stderr, r.stderr
    finally:
        shutil.rmtree(project, ignore_errors=True)


@alembic_missing
def test_alembic_applied_history_is_checked_against_the_database(db):
    """b2 applied through pgtandem from `alembic upgrade a1:b2 --sql`, then
    the policy's violations: b2's down_revision rewritten onto a revision
    slipped in before it, and a file the database is at deleted."""
    project, versions = alembic_project()
    try:
        edit(alembic_file(versions, "b2"), "def upgrade() -> None:\n    pass",
             "def upgrade() -> None:\n    op.add_column('t', sa.Column('note', sa.Text()))")
        sql(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        sql(db, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                "INSERT INTO alembic_version VALUES ('a1')")
        path = os.path.join(project, "b2.sql")
        with open(path, "w") as f:
            f.write(alembic(project, "upgrade", "a1:b2", "--sql"))
        assert migrate(db, "start", path).returncode == 0
        assert migrate(db, "complete").returncode == 0
        assert sql(db, "SELECT version_num FROM alembic_version") == [("b2",)]
        r = migrate(db, "lint", versions)
        assert r.returncode == 0 and "head b2" in r.stdout, r.stdout + r.stderr
        # history rewritten: a new revision a1 -> a9 and b2 moved onto it
        alembic(project, "revision", "-m", "slipped in", "--rev-id", "a9", "--head", "a1", "--splice")
        second = alembic_file(versions, "b2")
        edit(second, "down_revision = 'a1'", "down_revision = 'a9'")
        assert run_pgtandem(["migrate", "lint", versions]).returncode == 0    # the files alone are a chain
        r = migrate(db, "lint", versions)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "%s:%d: revision \"b2\" was applied (completed) after \"a1\" but its down_revision is now " \
            "\"a9\"" % (second, line_of(second, "down_revision")) in r.stderr, r.stderr
        edit(second, "down_revision = 'a9'", "down_revision = 'a1'")
        os.unlink(alembic_file(versions, "a9"))
        # the database is at a revision no file defines
        sql(db, "UPDATE alembic_version SET version_num = 'zz'")
        r = migrate(db, "lint", versions)
        assert r.returncode == 2 and "the database is at revision \"zz\" (alembic_version) but no file" in r.stderr
    finally:
        shutil.rmtree(project, ignore_errors=True)


def test_lint_findings_as_github_annotations_and_a_sarif_log(tmp_path):
    """--format github: one workflow command a finding, on its file and
    line, its message escaped as GitHub's toolkit escapes it; --format
    sarif: a SARIF 2.1.0 log whose results point at the same lines. Both
    exit 2 on a blocking finding, as the text form does."""
    path = tmp_path / "0002_index.sql"
    path.write_text("-- pgtandem lint, a comment first\nCREATE INDEX ix_env ON checks (env);\n"
                    "ALTER TABLE checks ADD COLUMN z text NOT NULL;\n")
    r = run_pgtandem(["migrate", "lint", str(path), "--format", "github"])
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout
    assert lines[0].startswith("::error file=%s,line=2,col=1,title=create-index-not-concurrently::" % path), lines[0]
    assert lines[1].startswith("::error file=%s,line=3,col=1,title=add-column-not-null-without-default::" % path)
    assert "\n" not in lines[0] and "%0AOnline: CREATE INDEX CONCURRENTLY" in lines[0], lines[0]

    r = run_pgtandem(["migrate", "lint", str(path), "--format", "sarif"])
    assert r.returncode == 2, r.stdout + r.stderr
    log = json.loads(r.stdout)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "pgtandem"
    rules = [x["id"] for x in run["tool"]["driver"]["rules"]]
    got = [(x["ruleId"], rules[x["ruleIndex"]], x["level"],
            x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            x["locations"][0]["physicalLocation"]["region"]["startLine"]) for x in run["results"]]
    assert got == [("create-index-not-concurrently", "create-index-not-concurrently", "error", str(path), 2),
                   ("add-column-not-null-without-default", "add-column-not-null-without-default", "error",
                    str(path), 3)], got

    clean = tmp_path / "0003_clean.sql"
    clean.write_text("CREATE INDEX CONCURRENTLY ix_env2 ON checks (env);\n")
    r = run_pgtandem(["migrate", "lint", str(clean), "--format", "github"])
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
