"""drizzle-kit itself (npm, pinned in tests/node): schema files for successive
versions of the seeds' `checks` table, `drizzle-kit generate` (offline, no
database) writing drizzle/0000_*.sql, 0001_*.sql, ..., and each file run by
pgtandem as it is: `migrate start FILE.sql` -> concurrent old- and new-shape
writers -> `complete`, ending with the row-by-row comparison.

drizzle-kit asks on its terminal whether a new column is created or renamed
from a missing one; the test answers that menu through a pseudo-terminal, as
a person would (the arrow keys to the `~ old › new` line, then Enter)."""
import json
import os
import pty
import re
import select
import shutil
import tempfile
import threading
import time

import psycopg
import pytest

from support import columns, migrate, new_shape_options, sql, TOP

NODE_DIR = os.path.join(TOP, "tests", "node")
DRIZZLE_KIT = os.path.join(NODE_DIR, "node_modules", ".bin", "drizzle-kit")

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps installs it)")

CONFIG = """import { defineConfig } from "drizzle-kit";
export default defineConfig({ dialect: "postgresql", schema: "./schema.ts", out: "./drizzle" });
"""

IMPORTS = ('import { pgTable, bigserial, text, varchar, integer, boolean, jsonb, timestamp, index }'
           ' from "drizzle-orm/pg-core";\nimport { sql } from "drizzle-orm";\n')

# The seeds' legacy table (config/examples/checks_legacy.sql) as drizzle writes it.
V0 = IMPORTS + """
export const checks = pgTable("checks", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  claimText: text("claim_text").notNull(),
  aggregation: text("aggregation"),
  diagnostics: text("diagnostics"),
  env: text("env").notNull().default("prod"),
  anonToken: text("anon_token"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
"""

# The seeds' production migration, in drizzle's terms two files: drizzle-kit
# 0.31 drops the type change of a column it renames in the same generate (its
# SQL has the RENAME and no SET DATA TYPE), so the renames, the
# anonymous_usage table and the (env, anon_token) index come first (V1R) and
# the jsonb types next (V1).
V1 = IMPORTS + """
export const checks = pgTable("checks", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  claim: text("claim").notNull(),
  configJson: jsonb("config_json"),
  countsByTemplateJson: jsonb("counts_by_template_json"),
  env: text("env").notNull().default("prod"),
  anonToken: text("anon_token"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index("ix_checks_env_anon_token").on(t.env, t.anonToken)]);

export const anonymousUsage = pgTable("anonymous_usage", {
  token: text("token").primaryKey(),
  checksAllowed: integer("checks_allowed").notNull().default(3),
  checksUsed: integer("checks_used").notNull().default(0),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});
"""

V1R = V1.replace('jsonb("config_json")', 'text("config_json")').replace(
    'jsonb("counts_by_template_json")', 'text("counts_by_template_json")')

# The next release: a gate flag, env narrowed to varchar(16) (SET DATA TYPE),
# an index on created_at.
V2 = V1.replace('env: text("env").notNull().default("prod"),',
                'env: varchar("env", { length: 16 }).notNull().default("prod"),\n'
                '  gatePassed: boolean("gate_passed"),').replace(
    '(t) => [index("ix_checks_env_anon_token").on(t.env, t.anonToken)]',
    '(t) => [index("ix_checks_env_anon_token").on(t.env, t.anonToken),'
    ' index("ix_checks_created_at").on(t.createdAt)]')

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROMPT = re.compile(r"Is (\S+) column in (\S+) table created or renamed from another column\?")


def answer_rename_menu(screen, renames):
    """Keys for drizzle-kit's menu on screen: Down to the `~ old › new` line
    for the column it asks about (renames: {new: old}), then Enter."""
    m = list(PROMPT.finditer(screen))[-1]
    new = m.group(1)
    menu = [line.strip("❯ ").strip() for line in screen[m.end():].splitlines() if line.strip()]
    wanted = "~ %s › %s" % (renames[new], new) if new in renames else "+ %s" % new
    pos = next(i for i, line in enumerate(menu) if line.startswith(wanted))
    return b"\x1b[B" * pos + b"\r"


def drizzle_generate(project, name, renames):
    """`drizzle-kit generate --name NAME` on a pseudo-terminal; returns the
    path of the SQL file it wrote."""
    before = set(os.listdir(os.path.join(project, "drizzle"))) if os.path.isdir(os.path.join(project, "drizzle")) else set()
    pid, fd = pty.fork()
    if pid == 0:  # the child: drizzle-kit with the project as cwd, offline
        try:
            os.chdir(project)
            os.environ["NO_COLOR"] = "1"
            os.execv(DRIZZLE_KIT, [DRIZZLE_KIT, "generate", "--name", name])
        finally:
            os._exit(127)   # never back into pytest in the child
    out, answered, deadline = "", 0, time.time() + 120
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += ANSI.sub("", chunk.decode(errors="replace"))
        if PROMPT.search(out[answered:]) and "rename column" in out[answered:]:
            time.sleep(0.3)  # the menu is drawn in pieces; let it finish
            try:
                more = os.read(fd, 65536) if select.select([fd], [], [], 0.2)[0] else b""
            except OSError:
                more = b""
            out += ANSI.sub("", more.decode(errors="replace"))
            os.write(fd, answer_rename_menu(out[answered:], renames))
            answered = len(out)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    made = sorted(set(os.listdir(os.path.join(project, "drizzle"))) - before)
    sqls = [f for f in made if f.endswith(".sql")]
    assert len(sqls) == 1, (made, out)
    return os.path.join(project, "drizzle", sqls[0])


def drizzle_project():
    assert os.access(DRIZZLE_KIT, os.X_OK), "drizzle-kit is not installed: run sh tests/deps.sh"
    d = tempfile.mkdtemp(prefix="drizzle-")
    os.symlink(os.path.join(NODE_DIR, "node_modules"), os.path.join(d, "node_modules"))
    with open(os.path.join(d, "drizzle.config.ts"), "w") as f:
        f.write(CONFIG)
    return d


def write_schema(project, text):
    with open(os.path.join(project, "schema.ts"), "w") as f:
        f.write(text)


def fill(db, n):
    sql(db, "INSERT INTO checks (claim_text, aggregation, diagnostics, env, anon_token)"
            " SELECT 'claim ' || g, json_build_object('k', g %% 7)::text,"
            "        CASE WHEN g %% 10 = 0 THEN NULL ELSE json_build_object('t', g %% 13)::text END,"
            "        CASE WHEN g %% 3 = 0 THEN 'dev' ELSE 'prod' END, md5(g::text)"
            "   FROM generate_series(1, %s) g", (n,))


def run_writers(db, name, old_write, new_write, n=30):
    """An old-release and a new-release writer at the same time."""
    errors = []

    def loop(options, write):
        try:
            with psycopg.connect(db, autocommit=True, options=options) as c:
                for i in range(n):
                    write(c, i)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=loop, args=("", old_write)),
               threading.Thread(target=loop, args=(new_shape_options(name), new_write))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def start_writers_complete(db, path, parent, old_write, new_write, old_select, new_select):
    """convert (the name), start, writers, snapshot the old shape, complete,
    then the new shape row by row against that snapshot."""
    conv = migrate(db, "convert", path, "--parent", parent)
    assert conv.returncode == 0, conv.stderr
    m = json.loads(conv.stdout)
    r = migrate(db, "start", path, "--parent", parent)
    assert r.returncode == 0, r.stderr
    run_writers(db, m["name"], old_write, new_write)
    v = migrate(db, "verify")
    # a migration of renames alone has nothing to backfill, so nothing to disagree
    assert v.returncode == 0 and ("0 where the new shape disagrees" in v.stdout or
                                  "OK, both shapes agree" in v.stdout), v.stdout + v.stderr
    expected = sql(db, old_select)
    c = migrate(db, "complete")
    assert c.returncode == 0, c.stderr
    got = sql(db, new_select)
    assert len(got) == len(expected) > 0
    bad = [(e, g) for e, g in zip(expected, got) if e != g]
    assert not bad, "rows differ, e.g. %r" % (bad[0],)
    st = json.loads(migrate(db, "status", "--json").stdout)
    assert st["status"] == "completed" and st["migration"] == m["name"]
    return m


def old_rename_write(c, i):
    rid = c.execute("INSERT INTO checks (claim_text, aggregation, diagnostics) VALUES (%s, %s, %s) RETURNING id",
                    ("old %d" % i, json.dumps({"o": i}), json.dumps({"d": i}))).fetchone()[0]
    c.execute("UPDATE checks SET aggregation = %s WHERE id = %s", (json.dumps({"o2": i}), rid))
    c.execute("UPDATE checks SET claim_text = claim_text || '!' WHERE id = %s", (i + 1,))


def new_rename_write(c, i):
    rid = c.execute("INSERT INTO checks (claim, config_json, counts_by_template_json) VALUES (%s, %s, %s)"
                    " RETURNING id", ("new %d" % i, json.dumps({"n": i}), json.dumps({"c": i}))).fetchone()[0]
    c.execute("UPDATE checks SET counts_by_template_json = %s WHERE id = %s", (json.dumps({"c2": i}), rid))
    c.execute("UPDATE checks SET config_json = '{\"touched\": true}' WHERE id = %s", (500 + i,))
    c.execute("INSERT INTO anonymous_usage (token) VALUES (%s)", ("t%d" % i,))


def old_jsonb_write(c, i):
    c.execute("INSERT INTO checks (claim, config_json) VALUES (%s, %s)", ("oldj %d" % i, json.dumps({"oj": i})))
    c.execute("UPDATE checks SET counts_by_template_json = %s WHERE id = %s", (json.dumps({"u": i}), 600 + i))


def new_jsonb_write(c, i):
    rid = c.execute("INSERT INTO checks (claim, config_json) VALUES (%s, %s) RETURNING id",
                    ("newj %d" % i, json.dumps({"nj": i}))).fetchone()[0]
    c.execute("UPDATE checks SET config_json = config_json || '{\"more\": 1}' WHERE id = %s", (rid,))
    c.execute("UPDATE checks SET counts_by_template_json = %s WHERE id = %s", (json.dumps({"v": i}), 650 + i))


def old_gate_write(c, i):
    c.execute("INSERT INTO checks (claim, env) VALUES (%s, 'staging')", ("old2 %d" % i,))
    c.execute("UPDATE checks SET env = 'dev' WHERE id = %s", (i + 1,))


def new_gate_write(c, i):
    rid = c.execute("INSERT INTO checks (claim, env, gate_passed) VALUES (%s, 'canary', true) RETURNING id",
                    ("new2 %d" % i,)).fetchone()[0]
    c.execute("UPDATE checks SET gate_passed = false, env = 'prod' WHERE id = %s", (rid,))
    c.execute("UPDATE checks SET env = 'eu' WHERE id = %s", (700 + i,))


def test_drizzle_kit_migrations_run_start_to_complete(db):
    project = drizzle_project()
    try:
        write_schema(project, V0)
        first = drizzle_generate(project, "legacy", {})
        write_schema(project, V1R)
        second = drizzle_generate(project, "unify", {"claim": "claim_text", "config_json": "aggregation",
                                                     "counts_by_template_json": "diagnostics"})
        write_schema(project, V1)
        third = drizzle_generate(project, "jsonb", {})
        write_schema(project, V2)
        fourth = drizzle_generate(project, "gate", {})
        # what drizzle-kit wrote, run as it is: renames, SET DATA TYPE without USING
        for path, wanted in ((second, 'RENAME COLUMN "claim_text" TO "claim"'),
                             (third, 'ALTER COLUMN "config_json" SET DATA TYPE jsonb'),
                             (fourth, 'SET DATA TYPE varchar(16)')):
            with open(path) as f:
                assert wanted in f.read(), (path, wanted)

        # 0000 creates the table; pgtandem runs it too, then the table fills
        r = migrate(db, "start", first)
        assert r.returncode == 0, r.stderr
        assert migrate(db, "complete").returncode == 0
        name0 = os.path.basename(first)[:-4]
        fill(db, 2000)

        m1 = start_writers_complete(
            db, second, name0, old_rename_write, new_rename_write,
            "SELECT id, claim_text, aggregation, diagnostics FROM checks ORDER BY id",
            "SELECT id, claim, config_json, counts_by_template_json FROM checks ORDER BY id")
        assert columns(db, "checks") == ["id", "claim", "config_json", "counts_by_template_json", "env",
                                         "anon_token", "created_at"]
        assert sql(db, "SELECT count(*) FROM anonymous_usage") == [(30,)]
        assert sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_checks_env_anon_token'::regclass"
                   ) == [(True,)]

        m2 = start_writers_complete(
            db, third, m1["name"], old_jsonb_write, new_jsonb_write,
            "SELECT id, claim, config_json::jsonb, counts_by_template_json::jsonb FROM checks ORDER BY id",
            "SELECT id, claim, config_json, counts_by_template_json FROM checks ORDER BY id")
        assert sql(db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'checks'"
                       " AND data_type = 'jsonb'") == [(2,)]

        start_writers_complete(
            db, fourth, m2["name"], old_gate_write, new_gate_write,
            "SELECT id, claim, env::varchar(16) FROM checks ORDER BY id",
            "SELECT id, claim, env FROM checks ORDER BY id")
        assert sql(db, "SELECT data_type, character_maximum_length FROM information_schema.columns"
                       " WHERE table_name = 'checks' AND column_name = 'env'") == [("character varying", 16)]
        assert sql(db, "SELECT count(*) FILTER (WHERE gate_passed IS NOT NULL), count(*) FILTER (WHERE env = 'canary')"
                       " FROM checks") == [(30, 0)]
        assert sql(db, "SELECT count(*) FROM checks WHERE env = 'eu'") == [(30,)]
        assert sql(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
        # the directory drizzle-kit wrote lints clean only where nothing blocks:
        # 0001's renames and type changes are findings when run as written
        lint = migrate(db, "lint", os.path.join(project, "drizzle"))
        assert lint.returncode == 2 and "[rename-column]" in lint.stdout, lint.stdout + lint.stderr
    finally:
        shutil.rmtree(project, ignore_errors=True)
