"""The migration tool that wrote a directory stays in charge of its history
(issue 61). `migrate start|status DIR --db` read the tool's own table and
apply its rule for what is pending; files the tool applied are left to it
(not run again, not checked against the catalog). Each start writes the
tool's row as the tool writes it, complete marks it finished where the tool
has such a mark, rollback takes it away again.

drizzle-kit runs for real (npm, pinned in tests/node): it applies the first
file, pgtandem starts the next, drizzle-kit's own migrate runs while that
one is in flight and after it completes (exit 0, nothing changed), and
after a rollback it applies the file offline as it would have without
pgtandem. Prisma's, Flyway's, golang-migrate's and node-pg-migrate's
engines cannot be had here, so their tables are created with the DDL each
tool's source uses and the rows pgtandem writes are checked against the
tool's pending rule, as written in its source, by the small checkers below.

Before: start refused the first file ("relation already exists"), and the
tool's table never had a row of what pgtandem ran."""
import binascii
import hashlib
import json
import os
import re
import shutil
import subprocess

import psycopg
import pytest

from support import BIN, TOP, columns, migrate, poll, run_pgtandem, sql

NODE_DIR = os.path.join(TOP, "tests", "node")
DRIZZLE_KIT = os.path.join(NODE_DIR, "node_modules", ".bin", "drizzle-kit")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def flyway_checksum(raw):
    """Flyway's ChecksumCalculator: CRC32 over the lines (readLine drops
    \\n, \\r\\n, \\r), the first line's BOM removed, as a signed int."""
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    value = 0
    for line in re.split(r"\r\n|\r|\n", text):
        value = binascii.crc32(line.encode("utf-8"), value)
    return value - (1 << 32) if value >= (1 << 31) else value


def dir_status(db, path):
    r = migrate(db, "status", str(path), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def states(db, path):
    return {f["name"]: f["state"] for f in dir_status(db, path)["files"]}


# ---- drizzle-kit, for real ----------------------------------------------

JOURNAL_HEAD = {"version": "7", "dialect": "postgresql"}


def drizzle_files(project, files):
    """drizzle/<tag>.sql and the journal listing them, as drizzle-kit
    generate writes them; files: [(tag, when, sql)]."""
    out = os.path.join(project, "drizzle")
    os.makedirs(os.path.join(out, "meta"), exist_ok=True)
    entries = []
    for idx, (tag, when, text) in enumerate(files):
        with open(os.path.join(out, tag + ".sql"), "w") as f:
            f.write(text)
        entries.append({"idx": idx, "version": "7", "when": when, "tag": tag, "breakpoints": True})
    with open(os.path.join(out, "meta", "_journal.json"), "w") as f:
        json.dump(dict(JOURNAL_HEAD, entries=entries), f)
    return out


def drizzle_migrate(project):
    """`drizzle-kit migrate` in the project (its config names the database)."""
    return subprocess.run([DRIZZLE_KIT, "migrate", "--config", "drizzle.config.js"], cwd=project,
                          capture_output=True, text=True, timeout=180)


def drizzle_rows(db):
    return sql(db, "SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id")


F0 = ("0000_init", 1700000000000, 'CREATE TABLE "users" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"name" text NOT NULL\n);\n')
F1 = ("0001_email", 1700000100000, 'ALTER TABLE "users" ADD COLUMN "email" text;')
F2 = ("0002_nick", 1700000200000, 'ALTER TABLE "users" ADD COLUMN "nick" text;')
F3 = ("0003_age", 1700000300000, 'ALTER TABLE "users" ADD COLUMN "age" integer;')


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps installs it)")
def test_drizzle_kit_stays_in_charge(db, tmp_path):
    assert os.access(DRIZZLE_KIT, os.X_OK), "drizzle-kit is not installed: run make deps"
    project = str(tmp_path)
    os.symlink(os.path.join(NODE_DIR, "node_modules"), os.path.join(project, "node_modules"))
    node_uri = db.replace("sslmode=require", "sslmode=no-verify")
    with open(os.path.join(project, "drizzle.config.js"), "w") as f:
        f.write('module.exports = { dialect: "postgresql", out: "./drizzle", dbCredentials: { url: %s } };\n'
                % json.dumps(node_uri))

    # the team's drizzle-kit applies the first file
    out = drizzle_files(project, [F0])
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert drizzle_rows(db) == [(sha256_hex(F0[2].encode()), F0[1])]

    # pgtandem starts the next one; the first is drizzle's (not run again)
    drizzle_files(project, [F0, F1])
    r = migrate(db, "start", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "applied by drizzle-kit" in r.stderr
    assert drizzle_rows(db) == [(sha256_hex(F0[2].encode()), F0[1]), (sha256_hex(F1[2].encode()), F1[1])]
    assert states(db, out) == {"0000_init": "applied by the tool", "0001_email": "in flight in pgtandem (active)"}

    # drizzle-kit's migrate while it is in flight: exit 0, nothing changed
    before = (columns(db, "users"), drizzle_rows(db))
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (columns(db, "users"), drizzle_rows(db)) == before

    r = migrate(db, "complete", out)   # complete DIR: the files in flight, the tool's left alone
    assert r.returncode == 0, r.stdout + r.stderr
    st = dir_status(db, out)
    assert st["pending"] == 0 and st["in_flight"] == 0
    text = migrate(db, "status", out)
    assert text.returncode == 0 and "up to date" in text.stdout, text.stdout + text.stderr
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name", "email"] and len(drizzle_rows(db)) == 2

    # a rollback takes drizzle's row away: drizzle-kit then applies the file
    # offline, as it would have without pgtandem
    drizzle_files(project, [F0, F1, F2])
    assert migrate(db, "start", out).returncode == 0
    assert len(drizzle_rows(db)) == 3
    r = migrate(db, "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(drizzle_rows(db)) == 2
    assert states(db, out)["0002_nick"] == "pending"
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name", "email", "nick"]
    assert drizzle_rows(db)[-1] == (sha256_hex(F2[2].encode()), F2[1])
    assert states(db, out)["0002_nick"] == "applied by the tool"

    # pgtandem goes on after the file drizzle ran: its chain is its own
    drizzle_files(project, [F0, F1, F2, F3])
    r = migrate(db, "start", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT parent FROM pgtandem.migrations WHERE name = '0003_age'") == [("0001_email",)]
    assert migrate(db, "complete").returncode == 0
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name", "email", "nick", "age"] and len(drizzle_rows(db)) == 4


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps installs it)")
def test_drizzle_rows_of_files_pgtandem_completed_before(db, tmp_path):
    """The issue's second report: files pgtandem completed before it wrote
    drizzle's rows were run again by drizzle-kit migrate. The next start of
    the directory writes their rows, so drizzle-kit leaves them alone."""
    project = str(tmp_path)
    os.symlink(os.path.join(NODE_DIR, "node_modules"), os.path.join(project, "node_modules"))
    with open(os.path.join(project, "drizzle.config.js"), "w") as f:
        f.write('module.exports = { dialect: "postgresql", out: "./drizzle", dbCredentials: { url: %s } };\n'
                % json.dumps(db.replace("sslmode=require", "sslmode=no-verify")))
    out = drizzle_files(project, [F0])
    assert migrate(db, "start", out).returncode == 0
    assert migrate(db, "complete").returncode == 0
    # as a release without the tool's rows left it
    sql(db, "DROP SCHEMA drizzle CASCADE")
    sql(db, "DROP TABLE pgtandem.tool_rows")
    assert dir_status(db, out)["files"][0]["state"] == "applied (completed through pgtandem)"

    r = migrate(db, "start", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "written now" in r.stderr
    assert drizzle_rows(db) == [(sha256_hex(F0[2].encode()), F0[1])]
    r = drizzle_migrate(project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name"] and len(drizzle_rows(db)) == 1


# ---- Prisma ----------------------------------------------------------------

# prisma-engines flavour/postgres.rs, create_migrations_table
PRISMA_DDL = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)"""


def prisma_deploy_plan(db, names):
    """prisma migrate deploy's reading (apply_migrations.rs): failed rows
    stop it (P3009); otherwise the names without a row not rolled back."""
    rows = sql(db, "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL FROM _prisma_migrations")
    failed = [n for n, fin, rb in rows if not fin and not rb]
    applied = {n for n, fin, rb in rows if not rb}
    return failed, [n for n in names if n not in applied]


def test_prisma_rows_as_prisma_writes_them(db, tmp_path):
    assert sha256_hex(b"hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    d = tmp_path / "migrations"
    init, add = "20240101000000_init", "20240102000000_add_email"
    files = {init: b"CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n",
             add: b'ALTER TABLE "users" ADD COLUMN "email" TEXT;\n'}
    for name, text in files.items():
        (d / name).mkdir(parents=True)
        (d / name / "migration.sql").write_bytes(text)
    (d / "migration_lock.toml").write_text('provider = "postgresql"\n')
    # what prisma migrate deploy leaves after the first
    sql(db, PRISMA_DDL)
    sql(db, files[init].decode())
    sql(db, "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)"
            " VALUES (gen_random_uuid()::text, %s, now(), %s, now(), 1)", (sha256_hex(files[init]), init))

    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    row = sql(db, "SELECT id, checksum, finished_at, rolled_back_at, applied_steps_count, logs FROM _prisma_migrations"
                  " WHERE migration_name = %s", (add,))
    assert len(row) == 1
    rid, checksum, finished, rolled, steps, logs = row[0]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid)
    assert checksum == sha256_hex(files[add]) and finished is not None and rolled is None and steps == 0
    assert "pgtandem" in logs
    # in flight: deploy takes the file as applied, neither runs it again nor
    # stops at it (an unfinished row would be a failed migration, P3009)
    assert prisma_deploy_plan(db, [init, add]) == ([], [])
    assert states(db, d) == {init: "applied by the tool", add: "in flight in pgtandem (active)"}

    assert migrate(db, "complete").returncode == 0
    assert sql(db, "SELECT finished_at IS NOT NULL, applied_steps_count, logs FROM _prisma_migrations"
                   " WHERE migration_name = %s", (add,)) == [(True, 1, None)]
    assert prisma_deploy_plan(db, [init, add]) == ([], [])

    # a complete through a proxy commits without touching Prisma's table;
    # the next start DIR finishes the row first
    sql(db, "UPDATE _prisma_migrations SET applied_steps_count = 0, logs = 'pgtandem: in flight'"
            " WHERE migration_name = %s", (add,))
    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert prisma_deploy_plan(db, [init, add]) == ([], [])
    assert sql(db, "SELECT applied_steps_count, logs FROM _prisma_migrations WHERE migration_name = %s",
               (add,)) == [(1, None)]

    # a failed migration of Prisma's own is refused, as deploy refuses it
    sql(db, "UPDATE _prisma_migrations SET finished_at = NULL WHERE migration_name = %s", (init,))
    r = migrate(db, "start", str(d))
    assert r.returncode == 2 and "P3009" in r.stderr, r.stdout + r.stderr


def test_prisma_table_created_and_rollback_removes_the_row(db, tmp_path):
    d = tmp_path / "migrations"
    name = "20240101000000_init"
    (d / name).mkdir(parents=True)
    (d / name / "migration.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n")
    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    # created as Prisma creates it
    assert sql(db, "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
                   " WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position") == [
        ("id", "character varying", "NO", None), ("checksum", "character varying", "NO", None),
        ("finished_at", "timestamp with time zone", "YES", None), ("migration_name", "character varying", "NO", None),
        ("logs", "text", "YES", None), ("rolled_back_at", "timestamp with time zone", "YES", None),
        ("started_at", "timestamp with time zone", "NO", "now()"), ("applied_steps_count", "integer", "NO", "0")]
    assert prisma_deploy_plan(db, [name]) == ([], [])  # in flight: applied to deploy, which goes on
    assert migrate(db, "rollback").returncode == 0
    assert prisma_deploy_plan(db, [name]) == ([], [name])


# ---- golang-migrate ----------------------------------------------------------

def test_golang_migrate_version_as_it_sets_it(db, tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "000001_init.up.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n")
    (d / "000001_init.down.sql").write_text("DROP TABLE users;\n")
    (d / "000002_add_email.up.sql").write_text("ALTER TABLE users ADD COLUMN email text;\n")
    (d / "000002_add_email.down.sql").write_text("ALTER TABLE users DROP COLUMN email;\n")
    # what migrate up leaves after the first (postgres.go ensureVersionTable, SetVersion)
    sql(db, "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key, dirty boolean not null)")
    sql(db, "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)")
    sql(db, "INSERT INTO schema_migrations VALUES (1, false)")

    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    # migrate up runs the files above the one version: none now
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    assert states(db, d) == {"000001_init": "applied by the tool", "000002_add_email": "in flight in pgtandem (active)"}
    # a start stopped between its expand and the tool's row: the next start
    # of the directory writes it
    sql(db, "DELETE FROM pgtandem.tool_rows")
    sql(db, "UPDATE schema_migrations SET version = 1")
    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    assert migrate(db, "rollback").returncode == 0
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert "email" not in columns(db, "users")

    sql(db, "UPDATE schema_migrations SET dirty = true")
    r = migrate(db, "start", str(d))
    assert r.returncode == 2 and "dirty" in r.stderr, r.stdout + r.stderr


# ---- Flyway ------------------------------------------------------------------

# Flyway's createMetaDataTable.sql for PostgreSQL
FLYWAY_DDL = """CREATE TABLE flyway_schema_history (
    installed_rank INT NOT NULL, version VARCHAR(50), description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL,
    script VARCHAR(1000) NOT NULL, checksum INTEGER, installed_by VARCHAR(100) NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT now(), execution_time INTEGER NOT NULL, success BOOLEAN NOT NULL);
ALTER TABLE flyway_schema_history ADD CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank);
CREATE INDEX flyway_schema_history_s_idx ON flyway_schema_history (success)"""


def test_flyway_rows_and_checksums(db, tmp_path):
    lf = b"CREATE TABLE t (id int);\nSELECT 1;\n"
    assert flyway_checksum(lf) == flyway_checksum(lf.replace(b"\n", b"\r\n"))
    assert flyway_checksum(lf) == flyway_checksum(b"\xef\xbb\xbf" + lf.replace(b"\n", b"\r\n"))
    d = tmp_path / "sql"
    d.mkdir()
    v1 = b"\xef\xbb\xbfCREATE TABLE users (id serial PRIMARY KEY,\r\n  name text NOT NULL);\r\n"
    v2 = "-- the e-mail, café\r\nALTER TABLE users ADD COLUMN email text;\r\n".encode()
    (d / "V1__init.sql").write_bytes(v1)
    (d / "V1_1__add_email.sql").write_bytes(v2)
    for stmt in FLYWAY_DDL.split(";\n"):
        sql(db, stmt)
    sql(db, "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)")
    sql(db, "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,"
            " installed_by, execution_time, success) VALUES (1, '1', 'init', 'SQL', 'V1__init.sql', %s, current_user,"
            " 5, true)", (flyway_checksum(v1),))

    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT installed_rank, version, description, type, script, checksum, success FROM"
                   " flyway_schema_history ORDER BY installed_rank") == [
        (1, "1", "init", "SQL", "V1__init.sql", flyway_checksum(v1), True),
        (2, "1.1", "add email", "SQL", "V1_1__add_email.sql", flyway_checksum(v2), True)]
    assert flyway_checksum(v2) == flyway_checksum(v2.replace(b"\r\n", b"\n"))
    assert migrate(db, "complete").returncode == 0
    assert states(db, d) == {"V1__init": "applied by the tool", "V1_1__add_email": "applied (completed through pgtandem)"}

    # a file changed after it ran is refused, as flyway validate refuses it
    (d / "V1__init.sql").write_bytes(v1 + b"-- changed\n")
    r = migrate(db, "start", str(d))
    assert r.returncode == 2 and "changed after it ran" in r.stderr, r.stdout + r.stderr


# ---- node-pg-migrate, for real --------------------------------------------------

NODE_PG_MIGRATE = os.path.join(NODE_DIR, "node_modules", ".bin", "node-pg-migrate")


def node_pg_up(db, path):
    """`node-pg-migrate up -m DIR` (its SQL migrations), DATABASE_URL the database."""
    env = dict(os.environ, DATABASE_URL=db.replace("sslmode=require", "sslmode=no-verify"))
    return subprocess.run([NODE_PG_MIGRATE, "up", "-m", str(path)], capture_output=True, text=True, env=env,
                          timeout=180)


def node_pg_rows(db):
    return [r[0] for r in sql(db, "SELECT name FROM public.pgmigrations ORDER BY run_on, id")]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps installs it)")
def test_node_pg_migrate_stays_in_charge(db, tmp_path):
    assert os.access(NODE_PG_MIGRATE, os.X_OK), "node-pg-migrate is not installed: run make deps"
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "1700000000000_init.sql").write_text(
        "-- Up Migration\nCREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n")
    r = node_pg_up(db, d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert node_pg_rows(db) == ["1700000000000_init"]

    (d / "1700000100000_add-email.sql").write_text("-- Up Migration\nALTER TABLE users ADD COLUMN email text;\n")
    r = migrate(db, "start", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "applied by node-pg-migrate" in r.stderr
    assert node_pg_rows(db) == ["1700000000000_init", "1700000100000_add-email"]
    # its up while the file is in flight: nothing to run, nothing changed
    r = node_pg_up(db, d)
    assert r.returncode == 0 and "No migrations to run" in r.stdout, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name", "email"] and len(node_pg_rows(db)) == 2
    assert migrate(db, "complete").returncode == 0
    assert dir_status(db, d)["pending"] == 0

    # rolled back: the row goes, and node-pg-migrate runs the file itself
    (d / "1700000200000_add-nick.sql").write_text("-- Up Migration\nALTER TABLE users ADD COLUMN nick text;\n")
    assert migrate(db, "start", str(d)).returncode == 0
    assert migrate(db, "rollback").returncode == 0
    assert node_pg_rows(db) == ["1700000000000_init", "1700000100000_add-email"]
    assert "nick" not in columns(db, "users")
    r = node_pg_up(db, d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert columns(db, "users") == ["id", "name", "email", "nick"] and len(node_pg_rows(db)) == 3

    # a pending file with a Down Migration section is refused: its down
    # statements would run as part of the file
    (d / "1700000300000_add-age.sql").write_text(
        "-- Up Migration\nALTER TABLE users ADD COLUMN age int;\n-- Down Migration\nALTER TABLE users DROP COLUMN age;\n")
    r = migrate(db, "start", str(d))
    assert r.returncode == 2 and "Down Migration" in r.stderr, r.stdout + r.stderr
    assert "age" not in columns(db, "users")


def test_lint_dir_leaves_the_files_the_tool_applied(db, tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    # a type change that lint finds blocking, applied by golang-migrate long ago
    (d / "000001_narrow.up.sql").write_text("ALTER TABLE users ALTER COLUMN name TYPE varchar(20);\n")
    (d / "000002_add_email.up.sql").write_text("ALTER TABLE users ADD COLUMN email text;\n")
    sql(db, "CREATE TABLE users (id serial PRIMARY KEY, name varchar(20) NOT NULL)")
    sql(db, "CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)")
    sql(db, "INSERT INTO schema_migrations VALUES (1, false)")
    # without the database every file is linted; with it, the tool's are its history
    r = run_pgtandem(["migrate", "lint", str(d)])
    assert r.returncode == 2 and "000001_narrow" in r.stdout, r.stdout + r.stderr
    r = migrate(db, "lint", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "000001_narrow" not in r.stdout and "applied by golang-migrate" in r.stderr


def start_waits_for(db, path, lock_id):
    """start DIR while another session holds lock_id: the start waits for
    it before writing the tool's row, then goes on once it is let go."""
    with psycopg.connect(db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        p = subprocess.Popen([BIN, "migrate", "start", str(path), "--db", db], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        waited = poll(lambda: sql(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                      " AND objid = (%s::bigint & 4294967295)::oid", (lock_id,))[0][0],
                      5.0, give_up=lambda: p.poll() is not None)
        assert waited == 1, "the start did not wait for the tool's lock"
        holder.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
        out, errs = p.communicate(timeout=60)
    assert p.returncode == 0, out + errs


def test_golang_migrate_lock_is_waited_for(db, tmp_path):
    """golang-migrate's advisory lock (database/util.go GenerateAdvisoryLockId
    of the database, the schema and schema_migrations) held by a running
    `migrate up`."""
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "000001_init.up.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY);\n")
    dbname = sql(db, "SELECT current_database()")[0][0]
    start_waits_for(db, d, (binascii.crc32(("%s\0public\0schema_migrations" % dbname).encode()) * 1486364155)
                    & 0xffffffff)
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(1, False)]


def java_hash(text):
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xffffffff
    return h - (1 << 32) if h >= (1 << 31) else h


def test_flyway_lock_is_waited_for(db, tmp_path):
    """Flyway's advisory lock (PostgreSQLConnection.lock: 77431708279161 plus
    the hashCode of "schema"."flyway_schema_history") held by a running
    flyway migrate."""
    d = tmp_path / "sql"
    d.mkdir()
    (d / "V1__init.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY);\n")
    start_waits_for(db, d, 77431708279161 + java_hash('"public"."flyway_schema_history"'))
    assert sql(db, "SELECT version, script, success FROM flyway_schema_history") == [("1", "V1__init.sql", True)]


def test_golang_migrate_files_started_as_one(db, tmp_path):
    """start DIR --merge: the pending files run as one migration, named by
    the last; each file's version is set in turn, as migrate up would, and
    the rollback puts back the version before the first."""
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "1_init.up.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY);\n")
    (d / "2_a.up.sql").write_text("ALTER TABLE users ADD COLUMN a text;\n")
    (d / "3_b.up.sql").write_text("ALTER TABLE users ADD COLUMN b text;\n")
    sql(db, "CREATE TABLE users (id serial PRIMARY KEY)")
    sql(db, "CREATE TABLE schema_migrations (version bigint not null primary key, dirty boolean not null)")
    sql(db, "INSERT INTO schema_migrations VALUES (1, false)")
    r = migrate(db, "start", str(d), "--merge")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(3, False)]
    assert states(db, d) == {"1_init": "applied by the tool", "2_a": "in flight in pgtandem (active, merged into 3_b)",
                             "3_b": "in flight in pgtandem (active)"}
    assert migrate(db, "rollback").returncode == 0
    assert sql(db, "SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert states(db, d) == {"1_init": "applied by the tool", "2_a": "pending", "3_b": "pending"}


def test_prisma_and_node_pg_migrate_locks_are_waited_for(db, tmp_path):
    """Prisma's 72707369 (flavour/postgres.rs acquire_lock) and
    node-pg-migrate's 7241865325823964 (src/runner.ts PG_MIGRATE_LOCK_ID)."""
    p = tmp_path / "prisma"
    (p / "20240101000000_init").mkdir(parents=True)
    (p / "20240101000000_init" / "migration.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY);\n")
    start_waits_for(db, p, 72707369)
    assert sql(db, "SELECT migration_name FROM _prisma_migrations") == [("20240101000000_init",)]

    n = tmp_path / "node"
    n.mkdir()
    (n / "1700000000000_posts.sql").write_text("-- Up Migration\nCREATE TABLE posts (id serial PRIMARY KEY);\n")
    sql(db, "CREATE TABLE public.pgmigrations (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL,"
            " run_on timestamp NOT NULL)")
    start_waits_for(db, n, 7241865325823964)
    assert sql(db, "SELECT name FROM public.pgmigrations") == [("1700000000000_posts",)]
