"""A start that fails leaves exactly what was there. An ORM's .sql
migration (Prisma's and drizzle-kit's way of changing a foreign key, a
CHECK and an index: dropped and made again under the same name, and a
column dropped) ends with a statement that fails late in the expand. After
the failed start, and after the rollback that follows it, `pg_dump
--schema-only` must equal the dump taken before the start, constraints
included: the expand's undo and the rollback drop only what the expand
made. Before, the new foreign key was added under the name the old one
still had, the expand failed (42710), and its undo dropped the old one.

The same file without its failing statement then runs online and ends
where the offline DDL ends, run directly and through a proxy."""
import threading

import psycopg
import pytest

from support import migrate, pmigrate, post_in_background, sql, wait_for, wait_phase
from test_schema_fidelity import diff, run_script, schema_dump

SCHEMA = """
CREATE TABLE "Folder" (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "Document" (
    id int PRIMARY KEY,
    "folderId" int,
    title text NOT NULL,
    legacy text,
    CONSTRAINT "Document_folderId_fkey" FOREIGN KEY ("folderId") REFERENCES "Folder"(id)
        ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Document_title_check" CHECK (length(title) < 100),
    CONSTRAINT "Document_title_key" UNIQUE (title)
);
CREATE INDEX "Document_title_idx" ON "Document"(title);
INSERT INTO "Folder" SELECT g, 'f' || g FROM generate_series(1, 20) g;
INSERT INTO "Document" SELECT g, g % 20 + 1, 't' || g, 'l' || g FROM generate_series(1, 500) g;
"""

CHANGE = """ALTER TABLE "Document" DROP CONSTRAINT "Document_folderId_fkey";
ALTER TABLE "Document" ADD CONSTRAINT "Document_folderId_fkey" FOREIGN KEY ("folderId") REFERENCES "Folder"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "Document" DROP CONSTRAINT "Document_title_check";
ALTER TABLE "Document" ADD CONSTRAINT "Document_title_check" CHECK (length("title") < 200);
ALTER TABLE "Document" DROP CONSTRAINT "Document_title_key";
ALTER TABLE "Document" ADD CONSTRAINT "Document_title_key" UNIQUE ("title", "folderId");
DROP INDEX "Document_title_idx";
CREATE INDEX "Document_title_idx" ON "Document"("title", "id");
ALTER TABLE "Document" DROP COLUMN "legacy";
"""

# Fails on the first row the index build reads: late in the expand, after
# every other operation's objects are made.
FAILING = 'CREATE INDEX "Document_broken_idx" ON "Document"((1 / ("id" - "id")));\n'


def start_in(mode, proxy, db, path):
    return pmigrate(proxy, "start", path) if mode == "proxy" else migrate(db, "start", path)


def verb_in(mode, proxy, db, verb):
    return pmigrate(proxy, verb) if mode == "proxy" else migrate(db, verb)


@pytest.mark.parametrize("mode", ["direct", "proxy"])
def test_failed_start_and_its_rollback_leave_the_schema_as_it_was(cluster, db, proxy_factory, tmp_path, mode):
    run_script(db, SCHEMA)
    before = schema_dump(cluster, db)
    assert '"Document_folderId_fkey"' in before
    proxy = proxy_factory(extra_args=["--engine-db", db]) if mode == "proxy" else None
    failing = tmp_path / "20260101_change.sql"
    failing.write_text(CHANGE + FAILING)

    r = start_in(mode, proxy, db, str(failing))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "division by zero" in r.stderr, r.stderr
    after = schema_dump(cluster, db)
    assert after == before, diff(before, after)

    rb = verb_in(mode, proxy, db, "rollback")
    # the CLI's own engine finds nothing in progress after a failed start
    # (its expand undid itself); the proxy rolls the failed one back again
    if mode == "direct":
        assert rb.returncode == 2 and "no migration is in progress" in rb.stderr, rb.stdout + rb.stderr
    else:
        assert rb.returncode == 0, rb.stdout + rb.stderr + proxy.log()[-3000:]
        assert "rolled back" in rb.stdout, rb.stdout
        # "restored" is the proxy's to say, once it compared the record its start took
        assert "the tables it touched match the record taken at start" in proxy.log(), proxy.log()[-3000:]
    after = schema_dump(cluster, db)
    assert after == before, diff(before, after)
    assert sql(db, 'SELECT count(*) FROM "Document"') == [(500,)]

    # without its failing statement it runs online, and ends where the
    # offline DDL ends
    good = tmp_path / "20260102_change.sql"
    good.write_text(CHANGE)
    r = start_in(mode, proxy, db, str(good))
    assert r.returncode == 0, r.stdout + r.stderr + (proxy.log()[-3000:] if proxy else "")
    # both keys hold until the contract: the old RESTRICT still refuses the delete
    with pytest.raises(Exception, match="violates foreign key constraint"):
        sql(db, 'DELETE FROM "Folder" WHERE id = 1')
    done = verb_in(mode, proxy, db, "complete")
    assert done.returncode == 0, done.stdout + done.stderr
    twin = db.replace("/mig_", "/twin_")
    cluster.psql("CREATE DATABASE %s" % twin.rsplit("/", 1)[1].split("?")[0])
    try:
        run_script(twin, SCHEMA)
        run_script(twin, CHANGE)
        want, got = schema_dump(cluster, twin), schema_dump(cluster, db)
        assert got == want, diff(want, got)
    finally:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % twin.rsplit("/", 1)[1].split("?")[0], check=False)
    # the new key's cascade, after the contract
    sql(db, 'DELETE FROM "Folder" WHERE id = 1')
    assert sql(db, 'SELECT count(*) FROM "Document" WHERE "folderId" = 1') == [(0,)]


def waiting_on_lock(db, query_start):
    """Backends of the proxy's engine waiting for a lock in a statement that
    begins with query_start."""
    return sql(db, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
                   " AND datname = current_database()", (query_start + "%",))


def test_a_state_read_answered_during_the_rollback_does_not_fail_it(cluster, db, proxy_factory, tmp_path):
    """A rollback asked for right after a failed start, while the proxy's
    read of the state row (the fleet's news that the table says failed) is
    still unanswered: that answer comes during rolling_back, whose step owns
    the row. Before, it moved the runner rolling_back -> failed (logged as
    a BUG) and the rollback was answered HTTP 500 though it went on."""
    run_script(db, SCHEMA)
    before = schema_dump(cluster, db)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    failing = tmp_path / "20260101_change.sql"
    failing.write_text(CHANGE + FAILING)
    table = psycopg.connect(db)
    progress = psycopg.connect(db)
    try:
        # the expand waits on the table (its probes read it) until the
        # checkpoints are locked too
        table.execute('LOCK TABLE "Document" IN ROW EXCLUSIVE MODE')
        started = {}
        th = threading.Thread(target=lambda: started.update(r=pmigrate(proxy, "start", str(failing))))
        th.start()
        # (its first statement takes the tables' locks: expand_locks.c)
        wait_for(lambda: waiting_on_lock(db, "DO $pgtandem_locks$") or waiting_on_lock(db, "ALTER TABLE"), timeout=30, what="the expand waiting on the table", detail=lambda: sql(db, "SELECT application_name, state, wait_event_type, left(query, 120) FROM pg_stat_activity WHERE datname = current_database()"))
        progress.execute("LOCK TABLE pgtandem.backfill_progress IN ACCESS EXCLUSIVE MODE")
        table.rollback()
        th.join(60)
        assert started["r"].returncode == 1 and "division by zero" in started["r"].stderr, started["r"].stderr
        # the fleet's news (the table says failed) makes the proxy read the
        # state row, which waits on the checkpoints' lock
        wait_for(lambda: waiting_on_lock(db, "SELECT plan, status"), timeout=30, what="the state read waiting")
        answer = post_in_background(proxy, "/migrations/current/rollback")
        wait_phase(proxy, "rolling_back")
    finally:
        progress.rollback()
        table.close()
        progress.close()
    code, body = answer()
    assert code == 200, (code, body, proxy.log()[-3000:])
    assert wait_phase(proxy, "rolled_back")["name"] == "20260101_change"
    assert "BUG" not in proxy.log(), proxy.log()[-3000:]
    after = schema_dump(cluster, db)
    assert after == before, diff(before, after)
