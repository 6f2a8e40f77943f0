"""Bad input: the corpus in tests/migrations/bad (each *.json with the error
it must produce in *.expect), directory chains, files changed after being
applied, validation against the live catalog, and Alembic versions/
directories made by Debian's alembic held to the same chain rules — all
exit 2 and change nothing."""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import TOP, run_pgtandem
from test_migrate_util import db, load_legacy, migrate, shape, sql, write_migration  # noqa: F401

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
                        "up": "1); DROP TABLE checks; SELECT (1", "down": "c::text"}}, '"up" expression'),
    ({"rename_column": {"table": "nokey", "from": "a", "to": "b"}}, "has no primary key"),
    ({"rename_column": {"table": "checks", "from": "id", "to": "check_id"}}, "part of the key"),
    ({"create_table": {"table": "checks", "columns": [{"name": "id", "type": "int"}]}}, "already exists"),
    ({"add_column": {"table": "checks", "column": {"name": "x", "type": "int", "nullable": False}}},
     "neither \"default\" nor \"up\""),
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
    assert sql(db, "SELECT count(*) FROM pgtandem.migrations") == [(0,)]


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
