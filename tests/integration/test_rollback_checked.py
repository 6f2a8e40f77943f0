"""A rollback says the shape is restored only after checking it: the start
records every table its operations name (columns, indexes, constraints,
triggers) and each enum type an add_enum_value names (its values, less the
ones the migration adds, which a rollback keeps), and the rollback
compares. A statement run as written with no way back (a `sql` operation
without `down`) leaves something behind: the rollback then fails, naming
what differs, instead of saying "restored".
And the table renamed after other changes to it, then its indexes renamed
(Prisma's way), rolls back to exactly the start's dump."""
import json
import os
import tempfile

from support import migrate, schema_dump, sql

BASE = """
CREATE TABLE projects (id int PRIMARY KEY);
CREATE TABLE "TokenProject" (id int PRIMARY KEY, "projectId" int REFERENCES projects (id), "accountId" int);
CREATE INDEX "TokenProject_accountId_idx" ON "TokenProject" ("accountId");
INSERT INTO projects SELECT g FROM generate_series(1, 20) g;
INSERT INTO "TokenProject" SELECT g, g, g FROM generate_series(1, 20) g;
"""


def write(name, text):
    d = tempfile.mkdtemp(prefix="rbc-")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_a_rollback_that_leaves_something_says_what_instead_of_restored(cluster, db):
    sql(db, BASE)
    path = write("rbc_leaves.json", json.dumps({"name": "rbc_leaves", "operations": [
        {"add_column": {"table": "TokenProject", "column": {"name": "note", "type": "text"}}},
        {"sql": {"up": 'ALTER INDEX "TokenProject_accountId_idx" RENAME TO tp_account'}}]}))
    r = migrate(db, "start", path)
    assert r.returncode == 0, r.stderr
    rb = migrate(db, "rollback")
    assert rb.returncode == 1, (rb.stdout, rb.stderr)
    assert "restored" not in rb.stdout
    assert "not as its start found it" in rb.stderr, rb.stderr
    assert '- "public"."TokenProject": index CREATE INDEX "TokenProject_accountId_idx"' in rb.stderr, rb.stderr
    assert "+ \"public\".\"TokenProject\": index CREATE INDEX tp_account" in rb.stderr, rb.stderr
    # the difference is recorded with the migration, which is rolled back
    assert sql(db, "SELECT status, error LIKE '%tp_account%' FROM pgtandem.migrations WHERE name = 'rbc_leaves'") \
        == [("rolled_back", True)]


def test_a_table_renamed_after_changes_then_its_indexes_rolls_back_exactly(cluster, db):
    sql(db, BASE)
    start = schema_dump(cluster, db)
    path = write("rbc_rename.sql", """
ALTER TABLE "TokenProject" DROP CONSTRAINT IF EXISTS "TokenProject_projectId_fkey";
ALTER TABLE "TokenProject" DROP COLUMN IF EXISTS "projectId";
ALTER TABLE "TokenProject" RENAME TO "TokenAccount";
ALTER INDEX "TokenProject_pkey" RENAME TO "TokenAccount_pkey";
ALTER INDEX "TokenProject_accountId_idx" RENAME TO "TokenAccount_accountId_idx";
""")
    for _ in range(2):  # a second start of the same file after its rollback works too
        r = migrate(db, "start", path)
        assert r.returncode == 0, r.stderr
        rb = migrate(db, "rollback")
        assert rb.returncode == 0, rb.stderr
        assert "restored (checked against the record its start took)" in rb.stdout, rb.stdout
        assert schema_dump(cluster, db) == start
    r = migrate(db, "start", path)
    assert r.returncode == 0, r.stderr
    done = migrate(db, "complete")
    assert done.returncode == 0, done.stderr
    assert sql(db, "SELECT count(*) FROM \"TokenAccount\"") == [(20,)]
    assert sql(db, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = '\"TokenAccount\"'::regclass"
                   " ORDER BY 1") == [('"TokenAccount_accountId_idx"',), ('"TokenAccount_pkey"',)]


def test_a_rollback_is_not_compared_when_another_migration_changed_the_schema_since(cluster, db):
    """Another migration started after this one (beside it, on another
    table) and completed: the record is not this rollback's to judge, and
    the message says so instead of "restored"."""
    sql(db, BASE + "CREATE TABLE other (id int PRIMARY KEY, v text);")
    a = write("rbc_a.json", json.dumps({"name": "rbc_a", "operations": [
        {"add_column": {"table": "TokenProject", "column": {"name": "note", "type": "text"}}}]}))
    b = write("rbc_b.json", json.dumps({"name": "rbc_b", "operations": [
        {"add_column": {"table": "other", "column": {"name": "w", "type": "text"}}}]}))
    assert migrate(db, "start", a).returncode == 0
    r = migrate(db, "start", b)
    assert r.returncode == 0, r.stderr
    rb = migrate(db, "rollback", "rbc_a")
    assert rb.returncode == 0, rb.stderr
    assert "not compared with the record its start took: rbc_b changed the schema since" in rb.stdout, rb.stdout


def test_an_enum_type_the_migration_adds_to_is_in_the_record_less_the_values_it_adds(cluster, db):
    """The value add_enum_value adds stays after a rollback (Postgres cannot
    remove one) and the rollback says restored all the same; any other
    change to the type (a label renamed with no way back) is a difference
    it names."""
    sql(db, BASE + "CREATE TYPE rbc_mood AS ENUM ('open', 'closed');")
    kept = write("rbc_kept.json", json.dumps({"name": "rbc_kept", "operations": [
        {"add_enum_value": {"type": "rbc_mood", "value": "held", "before": "closed"}}]}))
    assert migrate(db, "start", kept).returncode == 0
    rb = migrate(db, "rollback")
    assert rb.returncode == 0, (rb.stdout, rb.stderr)
    assert "restored" in rb.stdout, rb.stdout
    assert sql(db, "SELECT enum_range(NULL::rbc_mood)::text") == [("{open,held,closed}",)]
    path = write("rbc_enum.json", json.dumps({"name": "rbc_enum", "operations": [
        {"add_enum_value": {"type": "rbc_mood", "value": "done"}},
        {"sql": {"up": "ALTER TYPE rbc_mood RENAME VALUE 'closed' TO 'shut'"}}]}))
    assert migrate(db, "start", path).returncode == 0
    rb = migrate(db, "rollback")
    assert rb.returncode == 1, (rb.stdout, rb.stderr)
    assert "restored" not in rb.stdout
    assert "- \"public\".\"rbc_mood\": enum 'open', 'held', 'closed'" in rb.stderr, rb.stderr
    assert "+ \"public\".\"rbc_mood\": enum 'open', 'held', 'shut'" in rb.stderr, rb.stderr
