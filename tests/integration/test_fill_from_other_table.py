"""A required column filled from another table, as drizzle-kit projects
write it (Dokploy's 0094):

    ALTER TABLE "git_provider" ADD COLUMN "userId" text;
    UPDATE "git_provider" SET "userId" = (
        SELECT o."owner_id" FROM "organization" o WHERE o.id = "git_provider"."organizationId");
    ALTER TABLE "git_provider" ALTER COLUMN "userId" SET NOT NULL;

The UPDATE's value becomes the column's "up", and it names the updated
table's column by the table's name, inside a subquery. The backfill's
batches (an UPDATE with the table under an alias) and the tandem trigger
(whose columns are its local names) used to fail on that name ("missing
FROM-clause entry for table git_provider"): the start failed after DDL
and every insert of the old release failed. Now both read the table's
name as the row they write; every row is checked against the offline
value and every old-release insert is counted.

When the other table's column has the name of the one added (Dokploy's
0107: `SET "environmentId" = (SELECT e."environmentId" FROM "environment" e
WHERE ...)`), the fill was taken for one that reads the column it writes,
not folded, and refused as an UPDATE of every row; a column qualified by
another table's alias is that table's."""
import threading

import psycopg
import pytest

from support import pmigrate, proxy_start, proxy_uri, sql, wait_for

NAME = "0094_git_provider_user"
BASE = """
CREATE TABLE organization (id text PRIMARY KEY, owner_id text NOT NULL, name text);
CREATE TABLE git_provider (id bigint PRIMARY KEY, "organizationId" text NOT NULL REFERENCES organization (id),
                           name text);
INSERT INTO organization SELECT 'org' || g, 'owner' || g, 'name ' || g FROM generate_series(1, 50) g;
INSERT INTO git_provider SELECT g, 'org' || (g % 50 + 1), 'gp ' || g FROM generate_series(1, 3000) g;
"""
FILL = """ALTER TABLE "git_provider" ADD COLUMN "userId" text;
UPDATE "git_provider"
SET "userId" = (
    SELECT o."owner_id"
    FROM "organization" o
    WHERE o.id = "git_provider"."organizationId"
);
ALTER TABLE "git_provider" ALTER COLUMN "userId" SET NOT NULL;
"""
FILL_SAME_NAME = """ALTER TABLE "git_provider" ADD COLUMN "owner_id" text;
UPDATE "git_provider"
SET "owner_id" = (
    SELECT o."owner_id"
    FROM "organization" o
    WHERE o.id = "git_provider"."organizationId"
    LIMIT 1
);
ALTER TABLE "git_provider" ALTER COLUMN "owner_id" SET NOT NULL;
"""
# the other table made by the same file, as Dokploy's 0107 makes "environment":
# the check that tries the up before any DDL met `relation "environment" does not exist`
FILL_FROM_NEW_TABLE = """CREATE TABLE "environment" (id text PRIMARY KEY, "projectId" text NOT NULL, name text NOT NULL);
INSERT INTO "environment" (id, "projectId", name) SELECT 'env_' || id, id, 'production' FROM organization;
ALTER TABLE "git_provider" ADD COLUMN "environmentId" text;
UPDATE "git_provider"
SET "environmentId" = (
    SELECT e.id FROM "environment" e
    WHERE e."projectId" = "git_provider"."organizationId" AND e.name = 'production'
    LIMIT 1
);
ALTER TABLE "git_provider" ALTER COLUMN "environmentId" SET NOT NULL;
"""


@pytest.mark.parametrize("fill,column,expected", [(FILL, "userId", "o.owner_id"),
                                                   (FILL_SAME_NAME, "owner_id", "o.owner_id"),
                                                   (FILL_FROM_NEW_TABLE, "environmentId", "'env_' || o.id")],
                         ids=["other-name", "same-name", "table-made-by-the-file"])
def test_a_value_from_another_table_fills_the_rows_and_the_old_releases_inserts(db, proxy_factory, tmp_path, fill,
                                                                                 column, expected):
    sql(db, "DROP TABLE IF EXISTS environment")
    sql(db, BASE)
    path = tmp_path / (NAME + ".sql")
    path.write_text(fill)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    through = proxy_uri(proxy, db)
    stop, written, errors = threading.Event(), [], []

    def old_release():
        try:
            with psycopg.connect(through, autocommit=True) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    c.execute("INSERT INTO git_provider (id, \"organizationId\", name) VALUES (%s, %s, 'old')",
                              (100000 + i, "org%d" % (i % 50 + 1)))
                    written.append(100000 + i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    writer = threading.Thread(target=old_release)
    writer.start()
    try:
        wait_for(lambda: len(written) > 20, 30, "the old release's first inserts")
        proxy_start(proxy, str(path))
        n = len(written)
        wait_for(lambda: len(written) > n + 20 or errors, 30, "the old release's inserts during the migration")
    finally:
        stop.set()      # the old release retires: after complete it would have no value to give
        writer.join(30)
    assert not errors, errors
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    # every row, the old release's included, has the owner of its organization, as offline
    wrong = sql(db, 'SELECT count(*) FROM git_provider g JOIN organization o ON o.id = g."organizationId"'
                    ' WHERE g."%s" IS DISTINCT FROM %s' % (column, expected))[0][0]
    assert wrong == 0
    assert sql(db, "SELECT count(*) FROM git_provider WHERE id >= 100000")[0][0] == len(written)
    assert sql(db, "SELECT count(*) FROM git_provider")[0][0] == 3000 + len(written)
    assert sql(db, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'git_provider'"
                   " AND column_name = %s", (column,))[0][0] == "NO"


def test_a_data_update_from_another_table_runs_in_batches(db, proxy_factory, tmp_path):
    """The same value as a data statement of its own (update_rows): the
    batches name the row by the table's name too."""
    sql(db, BASE)
    sql(db, 'ALTER TABLE git_provider ADD COLUMN "userId" text')
    path = tmp_path / "0095_fill_user.sql"
    path.write_text('UPDATE "git_provider" SET "userId" = (SELECT o."owner_id" FROM "organization" o'
                    ' WHERE o.id = "git_provider"."organizationId") WHERE "userId" IS NULL;\n')
    proxy = proxy_factory(extra_args=["--engine-db", db])
    proxy_start(proxy, str(path))
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, 'SELECT count(*) FROM git_provider g JOIN organization o ON o.id = g."organizationId"'
                   ' WHERE g."userId" IS DISTINCT FROM o.owner_id')[0][0] == 0
