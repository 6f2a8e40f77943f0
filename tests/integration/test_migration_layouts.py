"""`migrate start|plan|lint DIR` on the directories migration tools write,
each read in its tool's layout and order, each migration named whole by
its file or directory: drizzle-kit's and Alembic's from the tools
themselves (npm, Debian), Prisma's, Flyway's, golang-migrate's and
numbered files from tests/migrations/layouts, written as those tools lay
them out. Before, DIR meant its *.sql files in name order (V10 before V2,
golang-migrate's .down.sql files run with the up ones, Prisma's
directories not seen) and a name was cut to 40 characters, which a
release had to declare as pgtandem.version."""
import os
import shutil
import subprocess

import psycopg
import pytest

from support import TOP, columns, migrate, pmigrate, proxy_uri, run_pgtandem, sql

LAYOUTS = os.path.join(TOP, "tests", "migrations", "layouts")
NODE_DIR = os.path.join(TOP, "tests", "node")
DRIZZLE_KIT = os.path.join(NODE_DIR, "node_modules", ".bin", "drizzle-kit")
LONG = "20240516030441_add_more_timestamp_columns_for_background_jobs"


def recorded(db):
    """pgtandem.migrations as (name, parent) in the order they ran."""
    return sql(db, "WITH RECURSIVE c AS (SELECT name, parent, 1 AS n FROM pgtandem.migrations WHERE parent IS NULL"
                   " UNION ALL SELECT m.name, m.parent, c.n + 1 FROM pgtandem.migrations m JOIN c ON m.parent = c.name)"
                   " SELECT name, parent FROM c ORDER BY n")


def layout_copy(tmp_path, layout, leave_out=()):
    dest = tmp_path / layout
    shutil.copytree(os.path.join(LAYOUTS, layout), dest,
                    ignore=lambda d, names: [n for n in names if n in leave_out])
    return dest


def start_complete(db, path):
    r = migrate(db, "start", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    r = migrate(db, "complete", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


ITEMS_CHAINS = {
    "flyway": ["V1__create_items", "V2__add_note", "V10__rename_note_to_remark"],
    "golang_migrate": ["1_create_items", "2_add_note", "10_rename_note_to_remark"],
    "plain": ["1_create_items", "2_add_note", "10_rename_note_to_remark"],
}


@pytest.mark.parametrize("layout", sorted(ITEMS_CHAINS))
def test_flat_layouts_run_in_their_tools_order(db, tmp_path, layout):
    """V1, V2, V10 by version (not V1, V10, V2), Flyway's undo and
    golang-migrate's down files left out: the note column is added before
    it is renamed, and the table is there at the end."""
    names = ITEMS_CHAINS[layout]
    # the table first (`plan DIR` plans the pending ones as one, and one that
    # creates a table cannot also change it), then the rest of the directory
    path = layout_copy(tmp_path, layout)
    first = tmp_path / "first"
    first.mkdir()
    for f in os.listdir(path):
        if f.startswith(("V1__", "1_")):
            shutil.copy(path / f, first / f)
    start_complete(db, first)
    plan = migrate(db, "plan", str(path))
    assert plan.returncode == 0 and "migration %s (parent %s)" % (names[-1], names[0]) in plan.stdout, \
        plan.stdout + plan.stderr
    start_complete(db, path)
    assert columns(db, "items") == ["id", "title", "remark"]
    assert recorded(db) == list(zip(names, [None] + names[:-1]))
    lint = run_pgtandem(["migrate", "lint", str(path)])
    assert ".down.sql" not in lint.stdout and "U2__" not in lint.stdout, lint.stdout
    assert "10_rename_note_to_remark" in lint.stdout or "V10__" in lint.stdout, lint.stdout


def test_flyway_repeatable_is_refused_saying_why(tmp_path):
    path = layout_copy(tmp_path, "flyway")
    (path / "R__items_view.sql").write_text("CREATE OR REPLACE VIEW items_v AS SELECT * FROM items;\n")
    for cmd in ("start", "plan", "lint"):
        r = run_pgtandem(["migrate", cmd, str(path)])
        assert r.returncode == 2 and "R__items_view.sql: a Flyway repeatable migration" in r.stderr, r.stderr


def test_a_file_out_of_the_layout_is_refused(tmp_path):
    path = layout_copy(tmp_path, "golang_migrate")
    (path / "seed.sql").write_text("INSERT INTO items VALUES (1, 'x');\n")
    r = run_pgtandem(["migrate", "start", str(path)])
    assert r.returncode == 2 and "seed.sql: not a golang-migrate migration name" in r.stderr, r.stderr


def test_a_name_too_long_for_pgtandem_version_is_refused(tmp_path):
    (tmp_path / ("1_" + "x" * 130 + ".sql")).write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
    r = run_pgtandem(["migrate", "plan", str(tmp_path)])
    assert r.returncode == 2 and '"name" must be 1 to 127 characters' in r.stderr, r.stderr


def test_prisma_directories_and_a_long_name_declared_whole(db, proxy_factory, tmp_path):
    """Prisma's <timestamp>_<name>/migration.sql, named by the directory:
    the second's name has 60 characters; the new release declares it whole
    as pgtandem.version through the proxy and gets the new shape, status
    says it whole, and the next migration's parent is it, whole."""
    path = layout_copy(tmp_path, "prisma", leave_out=(LONG,))
    start_complete(db, path)
    sql(db, "INSERT INTO background_jobs (kind) SELECT 'k' || g FROM generate_series(1, 100) g")
    shutil.copytree(os.path.join(LAYOUTS, "prisma", LONG), path / LONG)
    lint = run_pgtandem(["migrate", "lint", str(path)])
    assert lint.returncode == 0 and "2 SQL file(s)" in lint.stdout, lint.stdout + lint.stderr

    proxy = proxy_factory(extra_args=["--engine-db", db])
    r = pmigrate(proxy, "start", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    code, cur = proxy.admin("GET", "/migrations/current")
    assert code == 200 and cur["phase"] == "active" and cur["name"] == LONG, cur
    through = proxy_uri(proxy, db)
    with psycopg.connect(through, autocommit=True, options="-c pgtandem.version=" + LONG) as c:
        c.execute("INSERT INTO background_jobs (kind, started_at) VALUES ('new', now())")
        assert c.execute("SELECT count(started_at) FROM background_jobs").fetchone() == (1,)
    with psycopg.connect(through, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c.execute("SELECT started_at FROM background_jobs")
    st = pmigrate(proxy, "status")
    assert LONG in st.stdout, st.stdout + st.stderr
    r = pmigrate(proxy, "complete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert recorded(db) == [("20240501120000_init", None), (LONG, "20240501120000_init")]
    assert columns(db, "background_jobs") == ["id", "kind", "created_at", "finished_at", "started_at"]
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgtandem\\_2024%'") == [(0,)]
    # a migration after it names it whole as its parent
    nxt = tmp_path / "next.sql"
    nxt.write_text('ALTER TABLE "background_jobs" ADD COLUMN "attempts" INTEGER;\n')
    start_complete_parent = migrate(db, "start", str(nxt), "--parent", LONG)
    assert start_complete_parent.returncode == 0, start_complete_parent.stderr
    done = migrate(db, "complete")
    assert done.returncode == 0, start_complete_parent.stdout + start_complete_parent.stderr + done.stderr + proxy.log()[-3000:]
    assert recorded(db)[-1] == ("next", LONG)


# ---- the tools themselves ----

SCHEMA = """import { pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";
export const backgroundJobs = pgTable("background_jobs", {
  id: serial("id").primaryKey(),
  kind: text("kind").notNull(),
%s});
"""
MORE = '  startedAt: timestamp("started_at"),\n  finishedAt: timestamp("finished_at"),\n'


def kit_generate(project, name):
    r = subprocess.run([DRIZZLE_KIT, "generate", "--name", name], cwd=project, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, NO_COLOR="1"), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps installs it)")
def test_drizzle_kit_journal_order_and_whole_tags(db, tmp_path):
    assert os.access(DRIZZLE_KIT, os.X_OK), "drizzle-kit is not installed: run sh tests/deps.sh"
    project = tmp_path / "app"
    project.mkdir()
    os.symlink(os.path.join(NODE_DIR, "node_modules"), project / "node_modules")
    (project / "drizzle.config.ts").write_text(
        'import { defineConfig } from "drizzle-kit";\n'
        'export default defineConfig({ dialect: "postgresql", schema: "./schema.ts", out: "./drizzle" });\n')
    (project / "schema.ts").write_text(SCHEMA % "")
    kit_generate(project, "init")
    out = project / "drizzle"
    start_complete(db, out)
    (project / "schema.ts").write_text(SCHEMA % MORE)
    kit_generate(project, "add_more_timestamp_columns_for_background_jobs")
    tags = ["0000_init", "0001_add_more_timestamp_columns_for_background_jobs"]
    assert sorted(f[:-4] for f in os.listdir(out) if f.endswith(".sql")) == tags
    start_complete(db, out)
    assert recorded(db) == [(tags[0], None), (tags[1], tags[0])]
    assert columns(db, "background_jobs") == ["id", "kind", "started_at", "finished_at"]
    # a file the journal does not list is not drizzle-kit's to run
    (out / "0002_by_hand.sql").write_text('ALTER TABLE "background_jobs" ADD COLUMN "x" integer;\n')
    r = migrate(db, "start", str(out))
    assert r.returncode == 2 and "0002_by_hand.sql: not in meta/_journal.json" in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("alembic") is None, reason="alembic is not installed (make deps)")
def test_alembic_versions_directory_says_how_its_sql_is_had(db, tmp_path):
    """Alembic's revisions are Python: start DIR says to start the SQL
    `alembic upgrade --sql` writes (lint DIR checks the chain)."""
    project = tmp_path / "app"
    project.mkdir()
    for args in (["init", "-t", "generic", "migrations"], ["revision", "-m", "first", "--rev-id", "a1"]):
        r = subprocess.run(["alembic"] + args, cwd=project, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    versions = project / "migrations" / "versions"
    for cmd in ("start", "plan"):
        r = migrate(db, cmd, str(versions))
        assert r.returncode == 2 and "an Alembic versions/ directory" in r.stderr and "--sql" in r.stderr, r.stderr
    r = run_pgtandem(["migrate", "lint", str(versions)])
    assert r.returncode == 0 and "1 Alembic revision(s) OK, head a1" in r.stdout, r.stdout + r.stderr
