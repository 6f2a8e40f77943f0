"""Bad input: the corpus in tests/migrations/bad (each *.json with the error
it must produce in *.expect), directory chains, files changed after being
applied, and validation against the live catalog — all exit 2 and change
nothing."""
import glob
import os
import shutil
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
