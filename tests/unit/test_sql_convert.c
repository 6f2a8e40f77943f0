/* Unit tests for the SQL converter: Alembic and drizzle-kit output, merges of
 * consecutive statements on one column, statements passed through as `sql`,
 * and refusals that name the line, the column and the reason. */
#include <jansson.h>
#include <stdlib.h>

#include "migration.h"
#include "sql_convert.h"
#include "sql_script.h"
#include "unit.h"

static char err[2048];

/* A catalog stand-in: every column asked about is text. */
static int all_text(void *arg, const char *schema, const char *table, const char *column, char *type, size_t n)
{
    (void)arg; (void)schema; (void)table; (void)column;
    snprintf(type, n, "text");
    return 0;
}

static json_t *convert(const char *sql, int with_catalog)
{
    struct sqlc_options o = {.column_type = with_catalog ? all_text : NULL};
    json_t *m = NULL;
    err[0] = '\0';
    if (sqlc_convert("m.sql", sql, strlen(sql), &o, &m, err, sizeof err) != 0)
        return NULL;
    return m;
}

/* The operations as compact JSON, for exact comparisons. */
static char *ops_of(const char *sql, int with_catalog)
{
    json_t *m = convert(sql, with_catalog);
    char *s = m ? json_dumps(json_object_get(m, "operations"), JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(m);
    return s;
}

static int ops_equal(const char *sql, int with_catalog, const char *want)
{
    char *got = ops_of(sql, with_catalog);
    int ok = got && !strcmp(got, want);
    if (!ok)
        printf("  got:  %s\n  want: %s\n  err:  %s\n", got ? got : "(null)", want, err);
    free(got);
    return ok;
}

static int fails_with(const char *sql, const char *want)
{
    json_t *m = convert(sql, 1);
    int ok = !m && strstr(err, want) != NULL;
    if (!ok)
        printf("  err: %s\n  want: %s\n", err, want);
    json_decref(m);
    return ok;
}

/* The converted migration must be one the engine's parser takes. */
static int parses_as_migration(const char *sql)
{
    json_t *m = convert(sql, 1);
    char *text = m ? json_dumps(m, JSON_PRESERVE_ORDER) : NULL;
    struct migration mig;
    int ok = text && mig_parse(text, strlen(text), "m.sql", &mig, err, sizeof err) == 0;
    mig_free(&mig);
    free(text);
    json_decref(m);
    return ok;
}

static const char *ALEMBIC_SEED =
    "BEGIN;\n\n-- Running upgrade 9e15719c5c3c -> b73c9aa4f0c3\n\n"
    "ALTER TABLE checks RENAME claim_text TO claim;\n\n"
    "ALTER TABLE checks ALTER COLUMN aggregation TYPE JSONB USING aggregation::jsonb;\n\n"
    "ALTER TABLE checks RENAME aggregation TO config_json;\n\n"
    "CREATE TABLE anonymous_usage (\n    token TEXT NOT NULL,\n"
    "    checks_allowed INTEGER DEFAULT '3' NOT NULL,\n"
    "    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,\n    PRIMARY KEY (token)\n);\n\n"
    "CREATE INDEX ix_checks_env_anon_token ON checks (env, anon_token);\n\n"
    "UPDATE alembic_version SET version_num='b73c9aa4f0c3' WHERE alembic_version.version_num = '9e15719c5c3c';\n\n"
    "COMMIT;\n";

static void test_alembic_seed(void)
{
    json_t *m = convert(ALEMBIC_SEED, 1);
    CHECK("alembic: converts", m != NULL);
    CHECK("alembic: name is the revision set", !strcmp(json_string_value(json_object_get(m, "name")), "b73c9aa4f0c3"));
    CHECK("alembic: parent is the revision replaced",
          !strcmp(json_string_value(json_object_get(m, "parent")), "9e15719c5c3c"));
    json_decref(m);
    CHECK("alembic: operations", ops_equal(ALEMBIC_SEED, 1,
        "[{\"rename_column\":{\"table\":\"checks\",\"from\":\"claim_text\",\"to\":\"claim\"}},"
        "{\"rename_column\":{\"table\":\"checks\",\"from\":\"aggregation\",\"to\":\"config_json\",\"type\":\"JSONB\","
        "\"up\":\"aggregation::jsonb\",\"down\":\"config_json::text\"}},"
        "{\"create_table\":{\"table\":\"anonymous_usage\",\"columns\":["
        "{\"name\":\"token\",\"type\":\"TEXT\",\"nullable\":false,\"primary_key\":true},"
        "{\"name\":\"checks_allowed\",\"type\":\"INTEGER\",\"default\":\"'3'\",\"nullable\":false},"
        "{\"name\":\"created_at\",\"type\":\"TIMESTAMP WITH TIME ZONE\",\"default\":\"now()\",\"nullable\":false}]}},"
        "{\"create_index\":{\"table\":\"checks\",\"name\":\"ix_checks_env_anon_token\",\"columns\":[\"env\",\"anon_token\"]}},"
        "{\"sql\":{\"up\":\"UPDATE alembic_version SET version_num='b73c9aa4f0c3' WHERE "
        "alembic_version.version_num = '9e15719c5c3c'\",\"on\":\"complete\"}}]"));
    CHECK("alembic: engine parser accepts it", parses_as_migration(ALEMBIC_SEED));
}

static void test_down_needs_old_type(void)
{
    const char *sql = "ALTER TABLE checks ALTER COLUMN aggregation TYPE jsonb USING aggregation::jsonb;\n";
    json_t *m = convert(sql, 0);
    CHECK("down: unknown old type refused", m == NULL);
    CHECK("down: message names line and column", strstr(err, "m.sql:1:1: cannot derive \"down\"") != NULL);
    CHECK("down: message says how", strstr(err, "--db") && strstr(err, "pgtandem:down"));
    json_decref(m);
    CHECK("down: annotation gives it", ops_equal(
        "-- pgtandem:down aggregation::text\n" "ALTER TABLE checks ALTER COLUMN aggregation TYPE jsonb USING aggregation::jsonb;", 0,
        "[{\"alter_column\":{\"table\":\"checks\",\"column\":\"aggregation\",\"type\":\"jsonb\","
        "\"up\":\"aggregation::jsonb\",\"down\":\"aggregation::text\"}}]"));
    CHECK("down: a USING that is not a cast asks for it",
          fails_with("ALTER TABLE t ALTER COLUMN c TYPE integer USING length(c);",
                     "m.sql:1:1: cannot derive \"down\" (new -> old value) from the USING expression length(c)"));
    CHECK("down: to_jsonb's way back is #>> '{}', cast to the old type", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE jsonb USING to_jsonb(c);", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"jsonb\","
        "\"up\":\"to_jsonb(c)\",\"down\":\"(c #>> '{}')::text\"}}]"));
    CHECK("down: array_to_string of a column that was no array asks for it",
          fails_with("ALTER TABLE t ALTER COLUMN c TYPE text USING array_to_string(c, ',');",
                     "cannot derive \"down\" (new -> old value) from the USING expression"));
    CHECK("down: a cast through text casts back through text", ops_equal(
        "ALTER TABLE o ALTER COLUMN s TYPE \"S_new\" USING (s::text::\"S_new\");", 1,
        "[{\"alter_column\":{\"table\":\"o\",\"column\":\"s\",\"type\":\"\\\"S_new\\\"\","
        "\"up\":\"s::text::\\\"S_new\\\"\",\"down\":\"s::text::text\"}}]"));
    CHECK("down: a cast through text after a rename reads the old name up, the new one down", ops_equal(
        "ALTER TABLE o RENAME COLUMN s TO t;\nALTER TABLE o ALTER COLUMN t TYPE \"S_new\" USING t::text::\"S_new\";", 1,
        "[{\"rename_column\":{\"table\":\"o\",\"from\":\"s\",\"to\":\"t\",\"type\":\"\\\"S_new\\\"\","
        "\"up\":\"s::text::\\\"S_new\\\"\",\"down\":\"t::text::text\"}}]"));
    CHECK("down: a cast through text of an unknown old type asks for it",
          fails_with("ALTER TABLE o ALTER COLUMN s TYPE int USING s::varchar::int;",
                     "cannot derive \"down\" (new -> old value) from the USING expression"));
    CHECK("a table the file creates is altered as written; a change of type goes back to the type it was made with", ops_equal(
        "CREATE TABLE t (id bigint PRIMARY KEY, n varchar(20));\nALTER TABLE t ALTER COLUMN n TYPE text;", 0,
        "[{\"create_table\":{\"table\":\"t\",\"columns\":[{\"name\":\"id\",\"type\":\"bigint\",\"primary_key\":true},"
        "{\"name\":\"n\",\"type\":\"varchar(20)\"}]}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ALTER COLUMN n TYPE text\","
        "\"down\":\"ALTER TABLE IF EXISTS public.t ALTER COLUMN n TYPE varchar(20) USING n::text::varchar(20)\"}}]"));
}

static void test_drizzle(void)
{
    const char *sql =
        "ALTER TABLE \"usage_events\" RENAME COLUMN \"bucket\" TO \"Bucket Key\";--> statement-breakpoint\n"
        "ALTER TABLE \"usage_events\" ALTER COLUMN \"Bucket Key\" SET DATA TYPE integer;--> statement-breakpoint\n"
        "ALTER TABLE \"public\".\"usage_events\" ADD COLUMN \"window_start\" timestamp with time zone;--> statement-breakpoint\n"
        "CREATE INDEX IF NOT EXISTS \"usage_admin_bucket_idx\" ON \"usage_events\" USING btree (\"Bucket Key\",\"window_start\");";
    CHECK("drizzle: operations", ops_equal(sql, 1,
        "[{\"rename_column\":{\"table\":\"usage_events\",\"from\":\"bucket\",\"to\":\"Bucket Key\",\"type\":\"integer\","
        "\"up\":\"bucket::integer\",\"down\":\"\\\"Bucket Key\\\"::text\"}},"
        "{\"add_column\":{\"table\":\"usage_events\",\"column\":{\"name\":\"window_start\",\"type\":\"timestamp with time zone\"}}},"
        "{\"create_index\":{\"table\":\"usage_events\",\"name\":\"usage_admin_bucket_idx\",\"columns\":[\"Bucket Key\",\"window_start\"]}}]"));
    json_t *m = convert(sql, 1);
    CHECK("drizzle: name from the file", m && !strcmp(json_string_value(json_object_get(m, "name")), "m"));
    CHECK("drizzle: no parent", m && !json_object_get(m, "parent"));
    json_decref(m);
    CHECK("drizzle: a USING on the new name after the rename is refused",
          fails_with("ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t ALTER COLUMN b SET DATA TYPE int USING length(b);",
                     "m.sql:2:1: the type of \"b\" changes after its rename"));
}

static void test_column_merges(void)
{
    CHECK("merge: consecutive changes of one column", ops_equal(
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\nALTER TABLE t ALTER COLUMN c SET DEFAULT 'x' || 'y';\n"
        "ALTER TABLE t ALTER COLUMN d DROP DEFAULT, ALTER COLUMN d DROP NOT NULL;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"nullable\":false,\"default\":\"'x' || 'y'\"}},"
        "{\"alter_column\":{\"table\":\"t\",\"column\":\"d\",\"default\":null,\"nullable\":true}}]"));
    CHECK("merge: NOT NULL set then dropped is what the last says (two operations each planned on the catalog "
          "before the file ended NOT NULL)", ops_equal(
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\nALTER TABLE t ALTER COLUMN c DROP NOT NULL;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"nullable\":true}}]"));
    CHECK("merge: a default set twice is the last one", ops_equal(
        "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;\nALTER TABLE t ALTER COLUMN c SET DEFAULT 2;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"default\":\"2\"}}]"));
    CHECK("merge: a parenthesised USING keeps its text", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE jsonb USING (c)::jsonb;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"jsonb\",\"up\":\"(c)::jsonb\",\"down\":\"c::text\"}}]"));
    CHECK("merge: keyword column names are quoted in derived SQL", ops_equal(
        "ALTER TABLE t ALTER COLUMN \"user\" TYPE jsonb;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"user\",\"type\":\"jsonb\",\"up\":\"\\\"user\\\"::jsonb\","
        "\"down\":\"\\\"user\\\"::text\"}}]"));
}

static void test_alter_passes(void)
{
    CHECK("one ALTER TABLE runs in Postgres's order: the column before the CHECK on it", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0), ADD COLUMN a integer DEFAULT 1;", 1,
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"a\",\"type\":\"integer\",\"default\":\"1\"}}},"
        "{\"create_constraint\":{\"table\":\"t\",\"name\":\"t_a_pos\",\"type\":\"check\",\"check\":\"a > 0\"}}]"));
}

static void test_required_column_fill(void)
{
    CHECK("fill: ADD COLUMN, UPDATE ... WHERE c IS NULL, SET NOT NULL is one add_column with its up", ops_equal(
        "ALTER TABLE \"apikey\" ADD COLUMN \"reference_id\" text;\n"
        "UPDATE \"apikey\" SET \"reference_id\" = \"user_id\" WHERE \"reference_id\" IS NULL;\n"
        "ALTER TABLE \"apikey\" ALTER COLUMN \"reference_id\" SET NOT NULL;", 1,
        "[{\"add_column\":{\"table\":\"apikey\",\"column\":{\"name\":\"reference_id\",\"type\":\"text\","
        "\"nullable\":false},\"up\":\"\\\"user_id\\\"\"}}]"));
    CHECK("fill: an UPDATE with a WHERE of its own wraps the one before", ops_equal(
        "ALTER TABLE t ADD COLUMN n integer;\nUPDATE t SET n = 5;\nUPDATE t SET n = 10 WHERE plan = 'pro';", 1,
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"n\",\"type\":\"integer\"},"
        "\"up\":\"CASE WHEN (plan = 'pro') THEN (10) ELSE 5 END\"}}]"));
    CHECK("fill: WHERE c IS NULL after another fills what it left", ops_equal(
        "ALTER TABLE t ADD COLUMN n integer;\nUPDATE t SET n = 1 WHERE k > 3;\nUPDATE t SET n = 2 WHERE n IS NULL;", 1,
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"n\",\"type\":\"integer\"},"
        "\"up\":\"COALESCE((CASE WHEN (k > 3) THEN (1) ELSE NULL END), (2))\"}}]"));
    CHECK("fill: a column added with a default: the rows before get the UPDATE's value, new rows the default",
          ops_equal("ALTER TABLE c ADD COLUMN v boolean DEFAULT false NOT NULL;\nUPDATE c SET v = true;", 1,
                    "[{\"add_column\":{\"table\":\"c\",\"column\":{\"name\":\"v\",\"type\":\"boolean\","
                    "\"default\":\"false\",\"nullable\":false},\"up\":\"true\"}}]"));
    CHECK("fill: with a default, a WHERE of its own leaves the other rows the default", ops_equal(
        "ALTER TABLE c ADD COLUMN v integer DEFAULT 0;\nUPDATE c SET v = 7 WHERE k > 3;", 1,
        "[{\"add_column\":{\"table\":\"c\",\"column\":{\"name\":\"v\",\"type\":\"integer\","
        "\"default\":\"0\"},\"up\":\"CASE WHEN (k > 3) THEN (7) ELSE 0 END\"}}]"));
    CHECK("fill: an UPDATE under an alias is folded with the alias written as the table's name",
          ops_equal("ALTER TABLE r ADD COLUMN p boolean NOT NULL DEFAULT false;\n"
                    "UPDATE r AS x SET p = true WHERE x.id > 3;", 1,
                    "[{\"add_column\":{\"table\":\"r\",\"column\":{\"name\":\"p\",\"type\":\"boolean\","
                    "\"nullable\":false,\"default\":\"false\"},"
                    "\"up\":\"CASE WHEN (r.id > 3) THEN (true) ELSE false END\"}}]"));
    CHECK("fill: a quoted alias in a subquery, written as the quoted table's name", ops_equal(
        "ALTER TABLE \"Poll\" ADD COLUMN n integer;\n"
        "UPDATE \"Poll\" \"P\" SET n = (SELECT count(*) FROM o WHERE o.pid = \"P\".id);", 1,
        "[{\"add_column\":{\"table\":\"Poll\",\"column\":{\"name\":\"n\",\"type\":\"integer\"},"
        "\"up\":\"(SELECT count(*) FROM o WHERE o.pid = \\\"Poll\\\".id)\"}}]"));
    CHECK("fill: an alias a subquery takes for another table is not folded (the row would be the other's)",
          fails_with("ALTER TABLE r ADD COLUMN p integer;\n"
                     "UPDATE r AS x SET p = (SELECT max(x.id) FROM s x);", "UPDATE of every row of \"r\""));
    CHECK("fill: beside a DROP NOT NULL of the column it copies, still the add_column's up", ops_equal(
        "ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nALTER TABLE a ADD COLUMN r text;\n"
        "UPDATE a SET r = u WHERE r IS NULL;\nALTER TABLE a ALTER COLUMN r SET NOT NULL;", 1,
        "[{\"alter_column\":{\"table\":\"a\",\"column\":\"u\",\"nullable\":true}},"
        "{\"add_column\":{\"table\":\"a\",\"column\":{\"name\":\"r\",\"type\":\"text\","
        "\"nullable\":false},\"up\":\"u\"}}]"));
    CHECK("fill: another table's column of the same name, qualified by its alias, is no read of ours", ops_equal(
        "ALTER TABLE a ADD COLUMN eid text;\nUPDATE a SET eid = (SELECT e.eid FROM env e WHERE e.pid = a.pid);\n"
        "ALTER TABLE a ALTER COLUMN eid SET NOT NULL;", 1,
        "[{\"add_column\":{\"table\":\"a\",\"column\":{\"name\":\"eid\",\"type\":\"text\","
        "\"nullable\":false},\"up\":\"(SELECT e.eid FROM env e WHERE e.pid = a.pid)\"}}]"));
    CHECK("fill: unqualified inside a subquery, or qualified by the table's name, it is",
          fails_with("ALTER TABLE a ADD COLUMN eid text;\nUPDATE a SET eid = (SELECT eid FROM env LIMIT 1);",
                     "UPDATE of every row") &&
              fails_with("ALTER TABLE a ADD COLUMN eid text;\nUPDATE a SET eid = coalesce(a.eid, 'x');",
                         "UPDATE of every row"));
    CHECK("fill: an UPDATE that reads the column itself is not folded",
          fails_with("ALTER TABLE t ADD COLUMN n integer;\nUPDATE t SET n = n + 1;", "UPDATE of every row"));
    CHECK("fill: SET NOT NULL with nothing to fill the column is refused",
          fails_with("ALTER TABLE t ADD COLUMN n integer;\nALTER TABLE t ALTER COLUMN n SET NOT NULL;",
                     "SET NOT NULL on \"n\", added above without a value"));
    CHECK("fill: SET NOT NULL of a column with a default is folded", ops_equal(
        "ALTER TABLE t ADD COLUMN n integer DEFAULT 0;\nALTER TABLE t ALTER COLUMN n SET NOT NULL;", 1,
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"n\",\"type\":\"integer\","
        "\"default\":\"0\",\"nullable\":false}}}]"));
}

static void test_columns_constraints_indexes(void)
{
    CHECK("add/drop column", ops_equal(
        "ALTER TABLE s.t ADD COLUMN n integer DEFAULT 0 NOT NULL CHECK (n >= 0) REFERENCES s.u (id), DROP COLUMN old;", 1,
        "[{\"drop_column\":{\"schema\":\"s\",\"table\":\"t\",\"column\":\"old\"}},"
        "{\"add_column\":{\"schema\":\"s\",\"table\":\"t\",\"column\":{\"name\":\"n\",\"type\":\"integer\",\"default\":\"0\","
        "\"nullable\":false,\"check\":\"n >= 0\",\"references\":\"u(id)\"}}}]"));
    CHECK("add constraint", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT pos CHECK ((n > 0));\n"
        "ALTER TABLE t ADD CONSTRAINT uq UNIQUE (a, b);\n"
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES \"public\".\"users\"(\"id\") ON DELETE no action;", 1,
        "[{\"create_constraint\":{\"table\":\"t\",\"name\":\"pos\",\"type\":\"check\",\"check\":\"n > 0\"}},"
        "{\"create_constraint\":{\"table\":\"t\",\"name\":\"uq\",\"type\":\"unique\",\"columns\":[\"a\",\"b\"]}},"
        "{\"create_constraint\":{\"table\":\"t\",\"name\":\"fk\",\"type\":\"foreign_key\",\"columns\":[\"u\"],"
        "\"references\":{\"table\":\"users\",\"columns\":[\"id\"]}}}]"));
    CHECK("NOT VALID and VALIDATE pass through", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT pos CHECK (n > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT pos;", 1,
        "[{\"sql\":{\"up\":\"ALTER TABLE t ADD CONSTRAINT pos CHECK (n > 0) NOT VALID\","
        "\"down\":\"ALTER TABLE t DROP CONSTRAINT IF EXISTS pos\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t VALIDATE CONSTRAINT pos\"}}]"));
    CHECK("NOT VALID last after ADD COLUMNs: its own ALTER TABLE after the columns", ops_equal(
        "ALTER TABLE s.t ADD COLUMN a text NULL, ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID;", 0,
        "[{\"add_column\":{\"schema\":\"s\",\"table\":\"t\",\"column\":{\"name\":\"a\",\"type\":\"text\","
        "\"nullable\":true}}},{\"sql\":{\"up\":\"ALTER TABLE s.t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) "
        "NOT VALID\",\"down\":\"ALTER TABLE s.t DROP CONSTRAINT IF EXISTS fk\"}}]"));
    CHECK("several NOT VALID constraints in one ALTER TABLE run as written, the rollback drops each", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT a FOREIGN KEY (x) REFERENCES u (id) NOT VALID, ADD CONSTRAINT b CHECK (y > 0) "
        "NOT VALID;", 0,
        "[{\"sql\":{\"up\":\"ALTER TABLE t ADD CONSTRAINT a FOREIGN KEY (x) REFERENCES u (id) NOT VALID, ADD "
        "CONSTRAINT b CHECK (y > 0) NOT VALID\",\"down\":\"ALTER TABLE t DROP CONSTRAINT IF EXISTS a, DROP CONSTRAINT "
        "IF EXISTS b\"}}]"));
    CHECK("a DEFERRABLE INITIALLY DEFERRED unique key: create_constraint with the words", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT k UNIQUE (a, b) DEFERRABLE INITIALLY DEFERRED;", 0,
        "[{\"create_constraint\":{\"table\":\"t\",\"name\":\"k\",\"type\":\"unique\",\"columns\":[\"a\",\"b\"],"
        "\"deferrable\":true,\"initially_deferred\":true}}]"));
    CHECK("refuse: a NOT VALID key on a column the same ALTER TABLE retypes (the contract would drop it)",
          fails_with("ALTER TABLE l ALTER COLUMN a TYPE character(26), ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES x "
                     "(id) NOT VALID;", "the constraint names \"a\", whose type or name this file changes"));
    CHECK("refuse: a NOT VALID check on a column an earlier statement renames", fails_with(
        "ALTER TABLE l RENAME COLUMN a TO b;\nALTER TABLE l ADD CONSTRAINT c CHECK (b > 0) NOT VALID;",
        "m.sql:2:1: the constraint names \"b\""));
    CHECK("refuse: NOT VALID before another subcommand", fails_with(
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID, ADD COLUMN b text;",
        "in its own ALTER TABLE, or last in this one"));
    CHECK("create index", ops_equal(
        "CREATE UNIQUE INDEX CONCURRENTLY ix ON t USING gin (a) WHERE b IS NULL AND c > 0;\n"
        "DROP INDEX CONCURRENTLY old_ix; DROP TABLE a, s.b;", 1,
        "[{\"create_index\":{\"table\":\"t\",\"name\":\"ix\",\"columns\":[\"a\"],\"unique\":true,\"method\":\"gin\","
        "\"where\":\"b IS NULL AND c > 0\"}},{\"drop_index\":{\"name\":\"old_ix\"}},"
        "{\"drop_table\":{\"table\":\"a\"}},{\"drop_table\":{\"schema\":\"s\",\"table\":\"b\"}}]"));
    CHECK("drop index if exists", ops_equal("DROP INDEX IF EXISTS maybe_ix;", 1,
                                           "[{\"drop_index\":{\"name\":\"maybe_ix\",\"if_exists\":true}}]"));
    CHECK("rename table", ops_equal("ALTER TABLE a RENAME TO b;", 1,
                                    "[{\"rename_table\":{\"from\":\"a\",\"to\":\"b\"}}]"));
    CHECK("create table with a composite key, identity and generated columns", ops_equal(
        "CREATE TABLE pair (a int GENERATED BY DEFAULT AS IDENTITY, b int, c int GENERATED ALWAYS AS (a + b) STORED,"
        " CONSTRAINT pair_pk PRIMARY KEY (a, b), UNIQUE (b, c), CHECK (a < b), CHECK (b > 0),"
        " FOREIGN KEY (b, c) REFERENCES other (x, y) ON DELETE CASCADE)", 1,
        "[{\"create_table\":{\"table\":\"pair\",\"columns\":[{\"name\":\"a\",\"type\":\"int\","
        "\"identity\":\"by_default\",\"check\":\"a < b\"},{\"name\":\"b\",\"type\":\"int\"},"
        "{\"name\":\"c\",\"type\":\"int\",\"generated\":\"a + b\"}],\"constraints\":["
        "{\"type\":\"primary_key\",\"name\":\"pair_pk\",\"columns\":[\"a\",\"b\"]},"
        "{\"type\":\"unique\",\"columns\":[\"b\",\"c\"]},{\"type\":\"check\",\"check\":\"b > 0\"},"
        "{\"type\":\"foreign_key\",\"columns\":[\"b\",\"c\"],\"references\":{\"table\":\"other\","
        "\"columns\":[\"x\",\"y\"],\"on_delete\":\"CASCADE\"}}]}}]"));
    CHECK("a table a create_table cannot say passes through with a rollback", ops_equal(
        "CREATE TABLE pair (a int, b int, EXCLUDE USING btree (a WITH =))", 1,
        "[{\"sql\":{\"up\":\"CREATE TABLE pair (a int, b int, EXCLUDE USING btree (a WITH =))\","
        "\"down\":\"DROP TABLE IF EXISTS public.pair\"}}]"));
    CHECK("primary keys and unnamed constraints", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY (id);\nALTER TABLE u ADD PRIMARY KEY (a, b);\n"
        "ALTER TABLE t ADD CHECK (n > 0);\nALTER TABLE t ADD UNIQUE (a);", 1,
        "[{\"create_constraint\":{\"table\":\"t\",\"name\":\"t_pk\",\"type\":\"primary_key\",\"columns\":[\"id\"]}},"
        "{\"create_constraint\":{\"table\":\"u\",\"type\":\"primary_key\",\"columns\":[\"a\",\"b\"]}},"
        "{\"create_constraint\":{\"table\":\"t\",\"type\":\"check\",\"check\":\"n > 0\"}},"
        "{\"create_constraint\":{\"table\":\"t\",\"type\":\"unique\",\"columns\":[\"a\"]}}]"));
    CHECK("function definitions pass through", ops_equal(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\nCOMMENT ON TABLE t IS 'x';", 1,
        "[{\"sql\":{\"up\":\"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$\","
        "\"down\":\"DROP FUNCTION IF EXISTS f()\"}},"
        "{\"sql\":{\"up\":\"COMMENT ON TABLE t IS 'x'\"}}]"));
    CHECK("a trailing line comment cannot swallow what follows", ops_equal(
        "UPDATE t SET a = 1 FROM u WHERE t.id = u.id -- fix one row", 1,
        "[{\"sql\":{\"up\":\"UPDATE t SET a = 1 FROM u WHERE t.id = u.id -- fix one row\\n\"}}]"));
}

/* Index keys beyond plain columns are written from the parse tree: the
 * expression as the author wrote it, in parentheses, then COLLATE, the
 * operator class and the order; INCLUDE and WITH (...) as their own fields. */
static void test_constraints_identity_enums(void)
{
    CHECK("drop, rename constraint, replica identity", ops_equal(
        "ALTER TABLE s.t DROP CONSTRAINT c;\nALTER TABLE t RENAME CONSTRAINT a TO b;\n"
        "ALTER TABLE t REPLICA IDENTITY USING INDEX t_k;\nALTER TABLE t REPLICA IDENTITY NOTHING;", 1,
        "[{\"drop_constraint\":{\"schema\":\"s\",\"table\":\"t\",\"name\":\"c\"}},"
        "{\"rename_constraint\":{\"table\":\"t\",\"from\":\"a\",\"to\":\"b\"}},"
        "{\"set_replica_identity\":{\"table\":\"t\",\"identity\":{\"index\":\"t_k\"}}},"
        "{\"set_replica_identity\":{\"table\":\"t\",\"identity\":\"nothing\"}}]"));
    CHECK("enum values", ops_equal(
        "ALTER TYPE app.mood ADD VALUE 'x';\nALTER TYPE mood RENAME VALUE 'a' TO 'b';", 1,
        "[{\"add_enum_value\":{\"schema\":\"app\",\"type\":\"mood\",\"value\":\"x\"}},"
        "{\"rename_enum_value\":{\"type\":\"mood\",\"from\":\"a\",\"to\":\"b\"}}]"));
    CHECK("they parse as a migration", parses_as_migration(
        "ALTER TABLE t DROP CONSTRAINT IF EXISTS c;\nALTER TYPE mood ADD VALUE IF NOT EXISTS 'x' BEFORE 'y';\n"
        "ALTER TABLE t REPLICA IDENTITY FULL;"));
    CHECK("refuse: removing an enum value", fails_with("DELETE FROM pg_enum WHERE enumlabel = 'x';",
                                                       "Postgres cannot remove a value from an enum"));
}

static void test_index_keys_and_fk_actions(void)
{
    CHECK("expression, opclass, order, include, storage parameters", ops_equal(
        "CREATE INDEX ix ON t USING btree (lower(\"Claim\"::text), b text_pattern_ops, \"C\" COLLATE \"C\" DESC NULLS "
        "LAST, d ASC) INCLUDE (e, \"F\") WITH (fillfactor = 70, deduplicate_items = off) WHERE e > 0;", 1,
        "[{\"create_index\":{\"table\":\"t\",\"name\":\"ix\",\"keys\":[\"(lower(\\\"Claim\\\"::text))\","
        "\"b text_pattern_ops\",\"\\\"C\\\" COLLATE \\\"C\\\" DESC NULLS LAST\",\"d ASC\"],"
        "\"include\":[\"e\",\"F\"],\"storage_parameters\":\"fillfactor = 70, deduplicate_items = 'off'\","
        "\"where\":\"e > 0\"}}]"));
    CHECK("plain keys stay columns", ops_equal("CREATE INDEX ix ON t (a, b) INCLUDE (c);", 1,
        "[{\"create_index\":{\"table\":\"t\",\"name\":\"ix\",\"columns\":[\"a\",\"b\"],\"include\":[\"c\"]}}]"));
    CHECK("fk actions", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) ON DELETE CASCADE ON UPDATE SET NULL;", 1,
        "[{\"create_constraint\":{\"table\":\"t\",\"name\":\"fk\",\"type\":\"foreign_key\",\"columns\":[\"u\"],"
        "\"references\":{\"table\":\"users\",\"columns\":[\"id\"],\"on_delete\":\"CASCADE\","
        "\"on_update\":\"SET NULL\"}}}]"));
    /* what the converter writes, the migration parser takes back */
    const char *sql = "CREATE INDEX ix ON t ((a + 1) DESC, lower(b) COLLATE \"C\") WITH (fillfactor = 0);\n"
                      "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) ON DELETE RESTRICT;";
    json_t *m = convert(sql, 1);
    char *text = m ? json_dumps(m, 0) : NULL;
    struct migration parsed;
    int ok = text && mig_parse(text, strlen(text), "m.json", &parsed, err, sizeof err) == 0;
    CHECK("converted keys parse back", ok && parsed.ops[0].nkeys == 2 && !strcmp(parsed.ops[0].keys[0], "(a + 1) DESC")
          && !strcmp(parsed.ops[0].storage_parameters, "fillfactor = 0") && !strcmp(parsed.ops[1].on_delete, "RESTRICT"));
    if (ok)
        mig_free(&parsed);
    free(text);
    json_decref(m);
}

/* A statement reads what the statements above it left: a constraint
 * renamed twice is one rename, after the rename of its table. */
static void test_earlier_statements(void)
{
    CHECK("a constraint renamed, its table renamed, renamed again: one rename after the table's", ops_equal(
        "ALTER TABLE \"Item\" RENAME CONSTRAINT \"Item_owner_fkey\" TO \"Item_ownerId_fkey\";\n"
        "ALTER TABLE \"Item\" RENAME TO \"Thing\";\n"
        "ALTER TABLE \"Thing\" RENAME CONSTRAINT \"Item_ownerId_fkey\" TO \"Thing_ownerId_fkey\";\n", 1,
        "[{\"rename_table\":{\"from\":\"Item\",\"to\":\"Thing\"}},"
        "{\"rename_constraint\":{\"table\":\"Thing\",\"from\":\"Item_owner_fkey\",\"to\":\"Thing_ownerId_fkey\"}}]"));
    CHECK("a table renamed after changes of its columns: the rename first, the changes on the new name", ops_equal(
        "ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE u ADD CONSTRAINT u_fk FOREIGN KEY (x) REFERENCES t (id);\n"
        "ALTER TABLE t ADD COLUMN c int;\nALTER TABLE t RENAME TO v;", 1,
        "[{\"rename_table\":{\"from\":\"t\",\"to\":\"v\"}},"
        "{\"rename_column\":{\"table\":\"v\",\"from\":\"a\",\"to\":\"b\"}},"
        "{\"create_constraint\":{\"table\":\"u\",\"name\":\"u_fk\",\"type\":\"foreign_key\",\"columns\":[\"x\"],"
        "\"references\":{\"table\":\"v\",\"columns\":[\"id\"]}}},"
        "{\"add_column\":{\"table\":\"v\",\"column\":{\"name\":\"c\",\"type\":\"int\"}}}]"));
    CHECK("... but not above a statement run as written", ops_equal(
        "ALTER TABLE t ADD COLUMN c int;\nCOMMENT ON COLUMN t.c IS 'x';\nALTER TABLE t ADD COLUMN d int;\n"
        "ALTER TABLE t RENAME TO v;", 1,
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"c\",\"type\":\"int\"}}},"
        "{\"sql\":{\"up\":\"COMMENT ON COLUMN t.c IS 'x'\"}},"
        "{\"rename_table\":{\"from\":\"t\",\"to\":\"v\"}},"
        "{\"add_column\":{\"table\":\"v\",\"column\":{\"name\":\"d\",\"type\":\"int\"}}}]"));
    CHECK("a constraint renamed and back: no rename", ops_equal(
        "ALTER TABLE t RENAME CONSTRAINT a TO b;\nALTER TABLE t RENAME CONSTRAINT b TO a;\n"
        "ALTER TABLE t RENAME CONSTRAINT c TO d;\n", 1,
        "[{\"rename_constraint\":{\"table\":\"t\",\"from\":\"c\",\"to\":\"d\"}}]"));
    CHECK("a column renamed then its name added: a rename and an add_column (the plan adds it apart)", ops_equal(
        "ALTER TABLE t RENAME COLUMN kind TO old_kind;\nALTER TABLE t ADD COLUMN kind text;", 1,
        "[{\"rename_column\":{\"table\":\"t\",\"from\":\"kind\",\"to\":\"old_kind\"}},"
        "{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"kind\",\"type\":\"text\"}}}]"));
    CHECK("a column retyped and renamed, then its name added: the plan adds it apart too (73143-88-d)", ops_equal(
        "ALTER TABLE t ALTER COLUMN kind TYPE int USING kind::int;\nALTER TABLE t RENAME COLUMN kind TO k;\n"
        "ALTER TABLE t ADD COLUMN kind text;", 1,
        "[{\"rename_column\":{\"table\":\"t\",\"from\":\"kind\",\"to\":\"k\",\"type\":\"int\",\"up\":\"kind::int\","
        "\"down\":\"k::text\"}},{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"kind\",\"type\":\"text\"}}}]"));
    CHECK("a column renamed after its table: the table's new name is checked",
          fails_with("ALTER TABLE t RENAME COLUMN kind TO k2;\nALTER TABLE t RENAME TO u;\n"
                     "ALTER TABLE u RENAME COLUMN id TO kind;",
                     "m.sql:3:1: column \"kind\" of \"u\" is renamed to \"k2\" above, and this RENAME COLUMN"));
    CHECK("a column dropped then another renamed to its name: refused",
          fails_with("ALTER TABLE t DROP COLUMN kind;\nALTER TABLE t RENAME COLUMN id TO kind;",
                     "column \"kind\" of \"t\" is dropped above"));
    CHECK("a column renamed and back: no rename", ops_equal(
        "ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t RENAME COLUMN b TO a;\nALTER TABLE t RENAME COLUMN c TO d;", 1,
        "[{\"rename_column\":{\"table\":\"t\",\"from\":\"c\",\"to\":\"d\"}}]"));
    CHECK("a column renamed twice: two renames, as before", ops_equal(
        "ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE t RENAME COLUMN b TO c;", 1,
        "[{\"rename_column\":{\"table\":\"t\",\"from\":\"a\",\"to\":\"b\"}},"
        "{\"rename_column\":{\"table\":\"t\",\"from\":\"b\",\"to\":\"c\"}}]"));
    CHECK("a table renamed then made again under its name: refused",
          fails_with("ALTER TABLE t RENAME TO u;\nCREATE TABLE t (id int);",
                     "m.sql:2:1: table \"t\" is renamed to \"u\" above, and this statement makes a new table"));
    CHECK("a table dropped then made again under its name: refused",
          fails_with("DROP TABLE t;\nCREATE TABLE t (id int);", "table \"t\" is dropped above"));
    CHECK("a column retyped twice with nothing between seeing it: one change, the ups and downs composed "
          "(86348-12)", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE int USING c::int;\nALTER TABLE u ADD COLUMN x int;\n"
        "ALTER TABLE t ALTER COLUMN d TYPE int USING d::int;\nALTER TABLE t ALTER COLUMN c TYPE bigint;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"bigint\",\"up\":\"(c::int)::bigint\","
        "\"down\":\"(c::int)::text\"}},{\"add_column\":{\"table\":\"u\",\"column\":{\"name\":\"x\",\"type\":\"int\"}}},"
        "{\"alter_column\":{\"table\":\"t\",\"column\":\"d\",\"type\":\"int\",\"up\":\"d::int\",\"down\":\"d::text\"}}]"));
    CHECK("... a known inverse composed too, the second's down inside the first's", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE jsonb USING to_jsonb(c);\nALTER TABLE t ALTER COLUMN c TYPE text;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"text\",\"up\":\"(to_jsonb(c))::text\","
        "\"down\":\"((c::jsonb) #>> '{}')::text\"}}]"));
    CHECK("... but not with a data statement of the table between, which reads the first type", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE int USING c::int;\nDELETE FROM t WHERE id = 1;\n"
        "ALTER TABLE t ALTER COLUMN c TYPE bigint;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"int\",\"up\":\"c::int\",\"down\":\"c::text\"}},"
        "{\"sql\":{\"up\":\"DELETE FROM t WHERE id = 1\"}},"
        "{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"bigint\",\"up\":\"c::bigint\",\"down\":\"c::text\"}}]"));
    CHECK("... nor with a USING that reads another column", ops_equal(
        "ALTER TABLE t ALTER COLUMN c TYPE int USING c::int;\n-- pgtandem:down c::int\n"
        "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c + d;\n", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"int\",\"up\":\"c::int\",\"down\":\"c::text\"}},"
        "{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"bigint\",\"up\":\"c + d\",\"down\":\"c::int\"}}]"));
    CHECK("an UPDATE of a column added under a freed name, by the table's name after its rename (40427-212)",
          ops_equal("ALTER TABLE t RENAME COLUMN k TO k2;\nALTER TABLE t ADD COLUMN k text;\nCOMMENT ON TABLE t IS 'x';\n"
                    "ALTER TABLE t RENAME TO u;\nUPDATE u SET k = 'v' WHERE id = 1;", 1,
                    "[{\"rename_column\":{\"table\":\"t\",\"from\":\"k\",\"to\":\"k2\"}},"
                    "{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"k\",\"type\":\"text\"}}},"
                    "{\"sql\":{\"up\":\"COMMENT ON TABLE t IS 'x'\"}},{\"rename_table\":{\"from\":\"t\",\"to\":\"u\"}},"
                    "{\"sql\":{\"up\":\"UPDATE u SET _pgtandem_k = 'v' WHERE id = 1\"}}]"));
    CHECK("a DROP COLUMN takes its down from the annotation above it", ops_equal(
        "-- pgtandem:down 0\nALTER TABLE t DROP COLUMN a;\nALTER TABLE t DROP COLUMN b;", 1,
        "[{\"drop_column\":{\"table\":\"t\",\"column\":\"a\",\"down\":\"0\"}},"
        "{\"drop_column\":{\"table\":\"t\",\"column\":\"b\"}}]"));
    CHECK("a foreign key made then renamed: the rename stays as written (a partitioned table's keys keep the first "
          "name, 52911-104)", ops_equal(
        "ALTER TABLE t ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES u (id);\nALTER TABLE t RENAME CONSTRAINT k TO k2;", 1,
        "[{\"create_constraint\":{\"table\":\"t\",\"name\":\"k\",\"type\":\"foreign_key\",\"columns\":[\"a\"],"
        "\"references\":{\"table\":\"u\",\"columns\":[\"id\"]}}},"
        "{\"rename_constraint\":{\"table\":\"t\",\"from\":\"k\",\"to\":\"k2\"}}]"));
    CHECK("a constraint of another table of that name is not chained", ops_equal(
        "ALTER TABLE t RENAME CONSTRAINT a TO b;\nALTER TABLE u RENAME CONSTRAINT b TO c;\n", 1,
        "[{\"rename_constraint\":{\"table\":\"t\",\"from\":\"a\",\"to\":\"b\"}},"
        "{\"rename_constraint\":{\"table\":\"u\",\"from\":\"b\",\"to\":\"c\"}}]"));
}

static void test_refusals(void)
{
    CHECK("refuse: VACUUM FULL", fails_with("BEGIN;\n  VACUUM FULL checks;", "m.sql:2:3: cannot run online: VACUUM FULL"));
    CHECK("refuse: DELETE of every row of a table the file changes",
          fails_with("ALTER TABLE checks ADD COLUMN n int;\nDELETE FROM checks;",
                     "m.sql:2:1: DELETE of every row of \"checks\""));
    CHECK("data: a DELETE runs in batches", ops_equal(
        "DELETE FROM \"Session\" WHERE expires < now();\nDELETE FROM logs;", 1,
        "[{\"delete_rows\":{\"table\":\"Session\",\"where\":\"expires < now()\"}},"
        "{\"delete_rows\":{\"table\":\"logs\"}}]"));
    CHECK("data: an UPDATE of every row runs in batches, a column each", ops_equal(
        "UPDATE checks SET claim = claim_text, env = 'x' WHERE id > 3;", 1,
        "[{\"update_rows\":{\"table\":\"checks\",\"column\":\"claim\",\"up\":\"claim_text\",\"where\":\"id > 3\"}},"
        "{\"update_rows\":{\"table\":\"checks\",\"column\":\"env\",\"up\":\"'x'\",\"where\":\"id > 3\"}}]"));
    CHECK("data: an UPDATE reading its own table in a subquery runs as written (each batch would see the last)",
          ops_equal("UPDATE t SET n = (SELECT max(n) FROM t) + 1 WHERE id > 3;", 1,
                    "[{\"sql\":{\"up\":\"UPDATE t SET n = (SELECT max(n) FROM t) + 1 WHERE id > 3\"}}]"));
    CHECK("data: a DELETE before an INSERT ... SELECT of its table runs as written, in the file's order",
          ops_equal("DELETE FROM t WHERE id % 7 = 3;\nINSERT INTO t (n) SELECT n FROM t WHERE id < 3;", 1,
                    "[{\"sql\":{\"up\":\"DELETE FROM t WHERE id % 7 = 3\"}},"
                    "{\"sql\":{\"up\":\"INSERT INTO t (n) SELECT n FROM t WHERE id < 3\"}}]"));
    CHECK("data: an UPDATE before rows added to a table it reads runs as written",
          ops_equal("UPDATE t SET n = 0 WHERE n > (SELECT count(*) FROM u);\nINSERT INTO u (id) VALUES (1);", 1,
                    "[{\"sql\":{\"up\":\"UPDATE t SET n = 0 WHERE n > (SELECT count(*) FROM u)\"}},"
                    "{\"sql\":{\"up\":\"INSERT INTO u (id) VALUES (1)\"}}]"));
    CHECK("data: a DELETE before a view and a plain index of its table still runs in batches", ops_equal(
        "DELETE FROM t WHERE id % 7 = 3;\nCREATE VIEW v AS SELECT * FROM t;\nCREATE INDEX CONCURRENTLY ix ON t (n);", 1,
        "[{\"delete_rows\":{\"table\":\"t\",\"where\":\"id % 7 = 3\"}},"
        "{\"sql\":{\"up\":\"CREATE VIEW v AS SELECT * FROM t\",\"down\":\"DROP VIEW IF EXISTS v\"}},"
        "{\"create_index\":{\"table\":\"t\",\"name\":\"ix\",\"columns\":[\"n\"]}}]"));
    CHECK("data: a DELETE before rows added to its table runs as written (the batches would meet them)",
          ops_equal("DELETE FROM t WHERE n > 3;\nINSERT INTO t (n) VALUES (5);", 1,
                    "[{\"sql\":{\"up\":\"DELETE FROM t WHERE n > 3\"}},"
                    "{\"sql\":{\"up\":\"INSERT INTO t (n) VALUES (5)\"}}]"));
    CHECK("an index renamed (twice) and then dropped: the drop takes it under its first name", ops_equal(
        "ALTER INDEX a RENAME TO b;\nALTER INDEX b RENAME TO c;\nDROP INDEX CONCURRENTLY c;", 1,
        "[{\"drop_index\":{\"name\":\"a\"}}]"));
    CHECK("an index renamed, named, then dropped: all as written", ops_equal(
        "ALTER INDEX a RENAME TO b;\nCOMMENT ON INDEX b IS 'x';\nDROP INDEX b;", 1,
        "[{\"sql\":{\"up\":\"ALTER INDEX a RENAME TO b\",\"down\":\"ALTER INDEX IF EXISTS b RENAME TO a\"}},"
        "{\"sql\":{\"up\":\"COMMENT ON INDEX b IS 'x'\"}},{\"drop_index\":{\"name\":\"b\"}}]"));
    CHECK("a retype of a column renamed above with another statement between: refused", fails_with(
        "ALTER TABLE t RENAME COLUMN a TO b;\nALTER TABLE u ADD COLUMN z int;\nALTER TABLE t ALTER COLUMN b TYPE bigint;",
        "m.sql:3:1: the type of \"b\" changes after a RENAME COLUMN above gave it that name (it was \"a\")"));
    CHECK("data: a whole-table DELETE before a fill from its table: refused",
          fails_with("DELETE FROM t;\nINSERT INTO u (n) SELECT n FROM t;", "DELETE of every row of \"t\""));
    CHECK("data: an UPDATE of a table the file changes the columns of keeps its own rules",
          fails_with("ALTER TABLE checks RENAME COLUMN env TO area;\nUPDATE checks SET status = 'x';",
                     "UPDATE of every row of \"checks\""));
    CHECK("refuse: DO block", fails_with("DO $$ BEGIN PERFORM 1; END $$;",
                                         "m.sql:1:1: cannot read this DO block before it runs: PERFORM (line 1)"));
    CHECK("refuse: LOCK TABLE", fails_with("\n\nLOCK TABLE t;", "m.sql:3:1: cannot run online: LOCK TABLE"));
    CHECK("refuse: CLUSTER", fails_with("CLUSTER t USING ix;", "CLUSTER rewrites"));
    CHECK("refuse: REINDEX", fails_with("REINDEX INDEX ix;", "REINDEX blocks writes"));
    CHECK("refuse: TRUNCATE", fails_with("TRUNCATE t;", "TRUNCATE"));
    CHECK("refuse: ADD COLUMN identity", fails_with("ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY;",
                                                    "writes every row under ACCESS EXCLUSIVE"));
    CHECK("refuse: unnamed index", fails_with("CREATE INDEX ON t (a);", "name the index"));
    CHECK("refuse: operator class options", fails_with(
        "CREATE INDEX ix ON t USING gist (a gist_trgm_ops (siglen = 32));", "operator class options are not carried"));
    CHECK("refuse: MATCH FULL", fails_with(
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) MATCH FULL;", "a MATCH type"));
    CHECK("refuse: ON DELETE SET NULL (columns)", fails_with(
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u, v) REFERENCES users (id, w) ON DELETE SET NULL (u);",
        "has options"));
    CHECK("refuse: CASCADE", fails_with("ALTER TABLE t DROP COLUMN a CASCADE;", "CASCADE"));
    CHECK("refuse: ROLLBACK", fails_with("BEGIN; ROLLBACK;", "m.sql:1:8: cannot run online: only BEGIN and COMMIT"));
    CHECK("refuse: drop of a materialized view", fails_with("DROP MATERIALIZED VIEW v;", "DROP MATVIEW"));
    CHECK("refuse: a type dropped at complete created again", fails_with(
        "ALTER TABLE t ALTER COLUMN s SET DATA TYPE text;\nDROP TYPE \"S\";\nCREATE TYPE \"S\" AS ENUM ('a');",
        "m.sql:3:1: \"S\" is dropped above at complete"));
    CHECK("refuse: a view dropped at complete made again by its qualified name", fails_with(
        "DROP VIEW IF EXISTS public.v;\nCREATE VIEW public.v AS SELECT 1 AS a;", "m.sql:2:1: view public.v is dropped"));
    CHECK("refuse: empty", fails_with("BEGIN;\n-- nothing\nCOMMIT;", "no statement to convert"));
    CHECK("refuse: syntax error with line and column",
          fails_with("ALTER TABLE t ADD COLUMN a int;\n  ALTER TABLEE t;", "m.sql:2:9: syntax error at or near \"TABLEE\""));
    CHECK("refuse: syntax error after multibyte text counts characters",
          fails_with("COMMENT ON TABLE t IS 'été'; SELEC 1;", "m.sql:1:30: syntax error at or near \"SELEC\""));
    json_t *m = NULL;
    int rc = sqlc_convert("m.sql", "COMMENT ON TABLE t IS 'x';\0", 27, NULL, &m, err, sizeof err);
    CHECK("refuse: NUL byte", rc != 0 && !m && strstr(err, "m.sql:1:27: the file contains a NUL byte"));
}

static void test_expression_text(void)
{
    struct sql_script s;
    const char *sql = "ALTER TABLE t ALTER COLUMN c SET DEFAULT now();";
    int rc = sql_script_parse(&s, "x.sql", sql, strlen(sql), err, sizeof err);
    CHECK("script: parses", rc == 0 && s.nstmts == 1);
    json_t *def = rc == 0 ? sql_get(json_array_get(json_object_get(s.stmts[0].body, "cmds"), 0), "AlterTableCmd.def") : NULL;
    char *text = def ? sql_expr_text(&s, &s.stmts[0], def) : NULL;
    CHECK("script: now() keeps its parentheses", text && !strcmp(text, "now()"));
    free(text);
    sql_script_free(&s);
    char *q = sql_ident("order");
    CHECK("ident: keyword quoted", q && !strcmp(q, "\"order\""));
    free(q);
    q = sql_ident("claim_text");
    CHECK("ident: plain name bare", q && !strcmp(q, "claim_text"));
    free(q);
    q = sql_ident("Mixed\"Case");
    CHECK("ident: quotes doubled", q && !strcmp(q, "\"Mixed\"\"Case\""));
    free(q);
}

/* What a file creates is undone by a rollback; drops and type renames wait
 * for complete; a table the file creates is changed as written. */
static void test_created_objects(void)
{
    CHECK("enum: dropped by a rollback", ops_equal(
        "CREATE TYPE \"JobStatus\" AS ENUM ('PENDING', 'DONE');", 0,
        "[{\"sql\":{\"up\":\"CREATE TYPE \\\"JobStatus\\\" AS ENUM ('PENDING', 'DONE')\","
        "\"down\":\"DROP TYPE IF EXISTS \\\"JobStatus\\\"\"}}]"));
    CHECK("extension: no catalog, maybe there before: nothing undoes it", ops_equal(
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;", 0,
        "[{\"sql\":{\"up\":\"CREATE EXTENSION IF NOT EXISTS pg_trgm\"}}]"));
    CHECK("extension without IF NOT EXISTS: dropped by a rollback", ops_equal(
        "CREATE EXTENSION pg_trgm;", 0,
        "[{\"sql\":{\"up\":\"CREATE EXTENSION pg_trgm\",\"down\":\"DROP EXTENSION IF EXISTS pg_trgm\"}}]"));
    CHECK("function: its input types only", ops_equal(
        "CREATE FUNCTION s.f(a int, OUT b text, VARIADIC c int[]) AS $$ SELECT 'x' $$ LANGUAGE sql;", 0,
        "[{\"sql\":{\"up\":\"CREATE FUNCTION s.f(a int, OUT b text, VARIADIC c int[]) AS $$ SELECT 'x' $$ "
        "LANGUAGE sql\",\"down\":\"DROP FUNCTION IF EXISTS s.f(int, VARIADIC int[])\"}}]"));
    CHECK("sequence, domain, composite type", ops_equal(
        "CREATE SEQUENCE s.q; CREATE DOMAIN d AS int; CREATE TYPE c AS (a int);", 0,
        "[{\"sql\":{\"up\":\"CREATE SEQUENCE s.q\",\"down\":\"DROP SEQUENCE IF EXISTS s.q\"}},"
        "{\"sql\":{\"up\":\"CREATE DOMAIN d AS int\",\"down\":\"DROP DOMAIN IF EXISTS d\"}},"
        "{\"sql\":{\"up\":\"CREATE TYPE c AS (a int)\",\"down\":\"DROP TYPE IF EXISTS c\"}}]"));
    CHECK("a view dropped and made again: at complete after the drop, and at start in the new shape", ops_equal(
        "DROP VIEW IF EXISTS \"v\"; CREATE VIEW \"v\" AS SELECT 1 AS a;", 0,
        "[{\"sql\":{\"up\":\"DROP VIEW IF EXISTS \\\"v\\\"\",\"on\":\"complete\"}},"
        "{\"sql\":{\"up\":\"CREATE VIEW \\\"v\\\" AS SELECT 1 AS a\",\"on\":\"complete\",\"new_shape\":true}}]"));
    CHECK("a data statement naming renamed columns runs on their names at expand", ops_equal(
        "ALTER TABLE e RENAME COLUMN a TO b; ALTER TABLE e RENAME COLUMN b TO \"C\";\n"
        "UPDATE e SET \"C\" = e.\"C\" || x WHERE \"C\" IS NULL AND e . \"C\" <> 'C';", 0,
        "[{\"rename_column\":{\"table\":\"e\",\"from\":\"a\",\"to\":\"b\"}},"
        "{\"rename_column\":{\"table\":\"e\",\"from\":\"b\",\"to\":\"C\"}},"
        "{\"sql\":{\"up\":\"UPDATE e SET a = e.a || x WHERE a IS NULL AND e . a <> 'C'\"}}]"));
    CHECK("refuse: a renamed column named beside a subquery", fails_with(
        "ALTER TABLE e RENAME COLUMN a TO b;\nUPDATE e SET b = 1 WHERE x IN (SELECT b FROM f);",
        "m.sql:2:1: names \"b\", a column a RENAME COLUMN above renames, in a statement with a subquery"));
    CHECK("drops and a type's rename wait for complete", ops_equal(
        "DROP FUNCTION f(int); DROP SEQUENCE q; DROP TYPE \"S_old\"; ALTER TYPE \"A\" RENAME TO \"B\";", 0,
        "[{\"sql\":{\"up\":\"DROP FUNCTION f(int)\",\"on\":\"complete\"}},"
        "{\"sql\":{\"up\":\"DROP SEQUENCE q\",\"on\":\"complete\"}},"
        "{\"sql\":{\"up\":\"DROP TYPE \\\"S_old\\\"\",\"on\":\"complete\"}},"
        "{\"sql\":{\"up\":\"ALTER TYPE \\\"A\\\" RENAME TO \\\"B\\\"\",\"on\":\"complete\"}}]"));
    CHECK("refuse: DROP TYPE ... CASCADE", fails_with("DROP TYPE s CASCADE;", "CASCADE"));
    CHECK("a table the file creates: later statements as written, its rename undone", ops_equal(
        "CREATE TABLE t (id int PRIMARY KEY, c text);\nALTER TABLE t ADD COLUMN e int NOT NULL;\n"
        "ALTER TABLE t RENAME TO u;\nCREATE INDEX u_e ON u (e);\nUPDATE u SET e = 1;", 0,
        "[{\"create_table\":{\"table\":\"t\",\"columns\":[{\"name\":\"id\",\"type\":\"int\",\"primary_key\":true},"
        "{\"name\":\"c\",\"type\":\"text\"}]}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ADD COLUMN e int NOT NULL\","
        "\"down\":\"ALTER TABLE IF EXISTS public.t DROP COLUMN IF EXISTS e\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t RENAME TO u\",\"down\":\"ALTER TABLE IF EXISTS public.u RENAME TO t\"}},"
        "{\"sql\":{\"up\":\"CREATE INDEX u_e ON u (e)\",\"down\":\"DROP INDEX IF EXISTS public.u_e\"}},"
        "{\"sql\":{\"up\":\"UPDATE u SET e = 1\"}}]"));
    /* the rollback undoes last-first: what the table was made to use after it was made (a type, a function,
     * another table) is dropped before the table; each such statement undoes itself first */
    CHECK("on a table the file creates: each statement that makes it use something undoes itself", ops_equal(
        "CREATE TABLE t (id int PRIMARY KEY, c text, d int);\n"
        "ALTER TABLE t ADD COLUMN p \"Plan\"[], ADD CONSTRAINT t_d_fkey FOREIGN KEY (d) REFERENCES r (id);\n"
        "ALTER TABLE t ALTER COLUMN d SET DEFAULT nextval('q'), ALTER COLUMN c SET DEFAULT 'x', "
        "ALTER COLUMN c SET NOT NULL;\nALTER TABLE t ALTER COLUMN c DROP DEFAULT;", 0,
        "[{\"create_table\":{\"table\":\"t\",\"columns\":[{\"name\":\"id\",\"type\":\"int\",\"primary_key\":true},"
        "{\"name\":\"c\",\"type\":\"text\"},{\"name\":\"d\",\"type\":\"int\"}]}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ADD COLUMN p \\\"Plan\\\"[], ADD CONSTRAINT t_d_fkey FOREIGN KEY (d) REFERENCES r (id)\","
        "\"down\":\"ALTER TABLE IF EXISTS public.t DROP CONSTRAINT IF EXISTS t_d_fkey, DROP COLUMN IF EXISTS p\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ALTER COLUMN d SET DEFAULT nextval('q'), ALTER COLUMN c SET DEFAULT 'x', "
        "ALTER COLUMN c SET NOT NULL\",\"down\":\"ALTER TABLE IF EXISTS public.t ALTER COLUMN d DROP DEFAULT\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ALTER COLUMN c DROP DEFAULT\"}}]"));
    CHECK("... and the table's drop stands in where the statement cannot say its inverse", ops_equal(
        "CREATE TABLE t (id int PRIMARY KEY, d int);\nALTER TABLE t ADD FOREIGN KEY (d) REFERENCES r (id);\n"
        "ALTER TABLE t ALTER COLUMN d SET DEFAULT f();\nALTER TABLE t ALTER COLUMN d TYPE bigint;\n"
        "ALTER TABLE t DROP COLUMN d;\nCREATE INDEX ON t (id);\nALTER TABLE t ADD UNIQUE (id);", 0,
        "[{\"create_table\":{\"table\":\"t\",\"columns\":[{\"name\":\"id\",\"type\":\"int\",\"primary_key\":true},"
        "{\"name\":\"d\",\"type\":\"int\"}]}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ADD FOREIGN KEY (d) REFERENCES r (id)\",\"down\":\"DROP TABLE IF EXISTS public.t\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ALTER COLUMN d SET DEFAULT f()\",\"down\":\"DROP TABLE IF EXISTS public.t\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ALTER COLUMN d TYPE bigint\",\"down\":\"DROP TABLE IF EXISTS public.t\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t DROP COLUMN d\"}},"
        "{\"sql\":{\"up\":\"CREATE INDEX ON t (id)\",\"down\":\"DROP TABLE IF EXISTS public.t\"}},"
        "{\"sql\":{\"up\":\"ALTER TABLE t ADD UNIQUE (id)\"}}]"));
    CHECK("an index on a table the file creates, unchanged: create_index", ops_equal(
        "CREATE TABLE t (id int PRIMARY KEY);\nCREATE INDEX t_id ON t (id);", 0,
        "[{\"create_table\":{\"table\":\"t\",\"columns\":[{\"name\":\"id\",\"type\":\"int\",\"primary_key\":true}]}},"
        "{\"create_index\":{\"table\":\"t\",\"name\":\"t_id\",\"columns\":[\"id\"]}}]"));
    CHECK("rows written after a DROP NOT NULL: in the contract, after it", ops_equal(
        "ALTER TABLE n ALTER COLUMN b DROP NOT NULL;\nINSERT INTO n (id, b) SELECT id + 100, NULL FROM n;", 0,
        "[{\"alter_column\":{\"table\":\"n\",\"column\":\"b\",\"nullable\":true}},"
        "{\"sql\":{\"up\":\"INSERT INTO n (id, b) SELECT id + 100, NULL FROM n\",\"on\":\"complete\"}}]"));
    CHECK("a fill of another column beside a DROP NOT NULL keeps its place, before the SET NOT NULL it fills for",
          ops_equal("ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nUPDATE a SET m = 'x' WHERE m IS NULL;\n"
                    "ALTER TABLE a ALTER COLUMN m SET NOT NULL;", 0,
                    "[{\"alter_column\":{\"table\":\"a\",\"column\":\"u\",\"nullable\":true}},"
                    "{\"sql\":{\"up\":\"UPDATE a SET m = 'x' WHERE m IS NULL\"}},"
                    "{\"alter_column\":{\"table\":\"a\",\"column\":\"m\",\"nullable\":false}}]"));
    CHECK("a DELETE or an UPDATE reading the column beside a DROP NOT NULL runs where it is written", ops_equal(
        "ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nUPDATE a SET m = u WHERE id = 1;\nDELETE FROM a WHERE u = 'z';", 0,
        "[{\"alter_column\":{\"table\":\"a\",\"column\":\"u\",\"nullable\":true}},"
        "{\"sql\":{\"up\":\"UPDATE a SET m = u WHERE id = 1\"}},{\"sql\":{\"up\":\"DELETE FROM a WHERE u = 'z'\"}}]"));
    CHECK("the data statements of a table after one put off to the contract follow it there, in order", ops_equal(
        "ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nUPDATE a SET u = NULL WHERE id = 1;\n"
        "UPDATE a SET m = 'x' WHERE u IS NULL;", 0,
        "[{\"alter_column\":{\"table\":\"a\",\"column\":\"u\",\"nullable\":true}},"
        "{\"sql\":{\"up\":\"UPDATE a SET u = NULL WHERE id = 1\",\"on\":\"complete\"}},"
        "{\"sql\":{\"up\":\"UPDATE a SET m = 'x' WHERE u IS NULL\",\"on\":\"complete\"}}]"));
    CHECK("a write put off to the contract for a DROP NOT NULL, then a SET NOT NULL on its rows: refused before DDL",
          fails_with("ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nUPDATE a SET u = NULL, m = 'x' WHERE m IS NULL;\n"
                     "ALTER TABLE a ALTER COLUMN m SET NOT NULL;", "NOT NULL of \"u\" is dropped above") &&
          fails_with("ALTER TABLE a ALTER COLUMN u DROP NOT NULL;\nINSERT INTO a (id) VALUES (7);\n"
                     "ALTER TABLE a ADD CONSTRAINT a_m_key UNIQUE (m);", "a later statement of the file (line 3)"));
    CHECK("a column dropped and added again: one alter_column marked recreate, carrying nothing", ops_equal(
        "ALTER TABLE t DROP COLUMN c;\nALTER TABLE t ADD COLUMN c int DEFAULT 3;", 1,
        "[{\"alter_column\":{\"table\":\"t\",\"column\":\"c\",\"type\":\"int\",\"up\":\"(3)::int\","
        "\"down\":\"NULL\",\"default\":\"3\",\"recreate\":true}}]"));
    /* a default the table keeps for the old release until the contract */
    CHECK("rows written after a DROP DEFAULT, leaving the column out: in the contract, after it", ops_equal(
        "ALTER TABLE n ALTER COLUMN b DROP DEFAULT;\nINSERT INTO n (id) SELECT id + 100 FROM n WHERE id < 3;", 0,
        "[{\"alter_column\":{\"table\":\"n\",\"column\":\"b\",\"default\":null}},"
        "{\"sql\":{\"up\":\"INSERT INTO n (id) SELECT id + 100 FROM n WHERE id < 3\",\"on\":\"complete\"}}]"));
    CHECK("SET c = DEFAULT after a SET DEFAULT: in the contract", ops_equal(
        "ALTER TABLE n ALTER COLUMN b SET DEFAULT 'x';\nUPDATE n SET b = DEFAULT WHERE id < 3;", 0,
        "[{\"alter_column\":{\"table\":\"n\",\"column\":\"b\",\"default\":\"'x'\"}},"
        "{\"sql\":{\"up\":\"UPDATE n SET b = DEFAULT WHERE id < 3\",\"on\":\"complete\"}}]"));
    CHECK("an INSERT that gives the column its value does not wait for the new default", ops_equal(
        "ALTER TABLE n ALTER COLUMN b SET DEFAULT 'x';\nINSERT INTO n (id, b) VALUES (100, 'y');", 0,
        "[{\"alter_column\":{\"table\":\"n\",\"column\":\"b\",\"default\":\"'x'\"}},"
        "{\"sql\":{\"up\":\"INSERT INTO n (id, b) VALUES (100, 'y')\"}}]"));
    CHECK("an INSERT after a DROP COLUMN: in the contract, after it (the column's NOT NULL holds until then)",
          ops_equal("ALTER TABLE n DROP COLUMN b;\nINSERT INTO n (id) VALUES (100);", 0,
                    "[{\"drop_column\":{\"table\":\"n\",\"column\":\"b\"}},"
                    "{\"sql\":{\"up\":\"INSERT INTO n (id) VALUES (100)\",\"on\":\"complete\"}}]"));
    CHECK("refuse: a waiting INSERT before a unique index of its table", fails_with(
        "ALTER TABLE n ALTER COLUMN b DROP DEFAULT;\nINSERT INTO n (id) VALUES (100);\n"
        "CREATE UNIQUE INDEX n_b ON n (b);", "m.sql:2:1: on \"n\", the default of \"b\" changes above"));
    CHECK("a waiting INSERT before a plain index of its table: the index is kept up by it", ops_equal(
        "ALTER TABLE n ALTER COLUMN b DROP DEFAULT;\nINSERT INTO n (id) VALUES (100);\nCREATE INDEX n_b ON n (b);", 0,
        "[{\"alter_column\":{\"table\":\"n\",\"column\":\"b\",\"default\":null}},"
        "{\"sql\":{\"up\":\"INSERT INTO n (id) VALUES (100)\",\"on\":\"complete\"}},"
        "{\"create_index\":{\"table\":\"n\",\"name\":\"n_b\",\"columns\":[\"b\"]}}]"));
}

/* A live catalog stand-in for DO blocks: a query naming "there" finds it;
 * the check that a condition reads catalog relations only passes. */
static int asked;
static int catalog_says(void *arg, const char *select_sql, int *out, char *why, size_t n)
{
    (void)arg; (void)why; (void)n;
    asked++;
    int there = strstr(select_sql, "there") != NULL;
    *out = strstr(select_sql, "< 16384") || (strstr(select_sql, "NOT EXISTS") ? !there : there);
    return 0;
}

static json_t *convert_do(const char *sql, int with_db)
{
    struct sqlc_options o = {.column_type = all_text, .catalog_bool = with_db ? catalog_says : NULL};
    json_t *m = NULL;
    err[0] = '\0';
    if (sqlc_convert("m.sql", sql, strlen(sql), &o, &m, err, sizeof err) != 0)
        return NULL;
    return m;
}

static int do_ops(const char *sql, const char *want)
{
    json_t *m = convert_do(sql, 1);
    char *got = m ? json_dumps(json_object_get(m, "operations"), JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int ok = got && !strcmp(got, want);
    if (!ok)
        printf("  got:  %s\n  want: %s\n  err:  %s\n", got ? got : "(null)", want, err);
    free(got);
    json_decref(m);
    return ok;
}

static int do_fails(const char *sql, int with_db, const char *want)
{
    json_t *m = convert_do(sql, with_db);
    int ok = !m && strstr(err, want) != NULL;
    if (!ok)
        printf("  err: %s\n  want: %s\n", err, want);
    json_decref(m);
    return ok;
}

#define FK_IF(cond) "DO $$ BEGIN\n  IF " cond " (SELECT 1 FROM pg_constraint WHERE conname = 'x_fkey') THEN\n" \
                    "    ALTER TABLE t ADD CONSTRAINT x_fkey FOREIGN KEY (u) REFERENCES users (id);\n" \
                    "  ELSE\n    CREATE INDEX t_u ON t (u);\n  END IF;\nEND $$;"
#define FK_OP "{\"create_constraint\":{\"table\":\"t\",\"name\":\"x_fkey\",\"type\":\"foreign_key\"," \
              "\"columns\":[\"u\"],\"references\":{\"table\":\"users\",\"columns\":[\"id\"]}}}"
#define INDEX_OP "{\"create_index\":{\"table\":\"t\",\"name\":\"t_u\",\"columns\":[\"u\"]}}"

static void test_do_blocks(void)
{
    CHECK("do: IF NOT EXISTS, absent: THEN", do_ops(FK_IF("NOT EXISTS"), "[" FK_OP "]"));
    CHECK("do: IF EXISTS, absent: ELSE", do_ops(FK_IF("EXISTS"), "[" INDEX_OP "]"));
    CHECK("do: ELSIF picks the first true condition", do_ops(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'nope') THEN CREATE INDEX a ON t (u);\n"
        "ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'there') THEN CREATE INDEX t_u ON t (u);\n"
        "ELSE CREATE INDEX c ON t (u); END IF; END $$;", "[" INDEX_OP "]"));
    CHECK("do: several statements unrolled in order, the file's around them", do_ops(
        "ALTER TABLE t ADD COLUMN a int;\nDO $$ BEGIN\n  ALTER TABLE t ADD COLUMN b int;\n"
        "  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c')"
        " THEN\n    ALTER TABLE t ADD COLUMN c int;\n    CREATE INDEX t_u ON t (u);\n  END IF;\nEND $$;\n"
        "ALTER TABLE t ADD COLUMN d int;",
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"a\",\"type\":\"int\"}}},"
        "{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"b\",\"type\":\"int\"}}},"
        "{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"c\",\"type\":\"int\"}}}," INDEX_OP ","
        "{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"d\",\"type\":\"int\"}}}]"));
    CHECK("do: duplicate_object, absent: kept", do_ops(
        "DO $$ BEGIN\n CREATE TYPE \"public\".\"role\" AS ENUM('admin', 'user');\nEXCEPTION\n"
        " WHEN duplicate_object THEN null;\nEND $$;",
        "[{\"sql\":{\"up\":\"CREATE TYPE \\\"public\\\".\\\"role\\\" AS ENUM('admin', 'user')\","
        "\"down\":\"DROP TYPE IF EXISTS public.role\"}}]"));
    CHECK("do: duplicate_object, there: the whole block skipped", do_ops(
        "DO $$ BEGIN\n ALTER TABLE t ADD CONSTRAINT x_fkey FOREIGN KEY (u) REFERENCES users (id);\n"
        " CREATE TYPE there AS ENUM ('a');\nEXCEPTION WHEN duplicate_object THEN NULL; END $$;\n"
        "CREATE INDEX t_u ON t (u);", "[" INDEX_OP "]"));
    CHECK("do: duplicate_object around ADD VALUE, absent: kept", do_ops(
        "DO $$ BEGIN ALTER TYPE \"Role\" ADD VALUE 'guest'; EXCEPTION WHEN duplicate_object THEN null; END $$;",
        "[{\"add_enum_value\":{\"type\":\"Role\",\"value\":\"guest\"}}]"));
    CHECK("do: duplicate_object around ADD VALUE, there: skipped", do_ops(
        "DO $$ BEGIN ALTER TYPE \"Role\" ADD VALUE 'there'; EXCEPTION WHEN duplicate_object THEN null; END $$;\n"
        "CREATE INDEX t_u ON t (u);", "[" INDEX_OP "]"));
    CHECK("do: a statement of the block refused at its own line and column", do_fails(
        "ALTER TABLE t ADD COLUMN a int;\nDO $$ BEGIN IF EXISTS (SELECT FROM pg_class WHERE relname = 'there') THEN\n"
        "    LOCK TABLE t; END IF; END $$;", 1,
        "m.sql:3:5: cannot run online: LOCK TABLE"));
    CHECK("do: without a database, said", do_fails(FK_IF("NOT EXISTS"), 0,
                                                  "m.sql:1:1: this DO block runs its statements by what the live "
                                                  "catalog holds (its condition, line 2), and there is no database "
                                                  "to read it: give --db URI"));
    asked = 0;
    CHECK("do: a loop refused, in any branch, before the catalog is asked", do_fails(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_class) THEN NULL;\nELSE\n  LOOP EXIT; END LOOP;\nEND IF; END $$;", 1,
        "m.sql:1:1: cannot read this DO block before it runs: a LOOP (line 3)") && asked == 0);
    CHECK("do: EXECUTE refused", do_fails("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$;", 1,
                                          "EXECUTE of a built string (line 1)"));
    CHECK("do: variables refused", do_fails("DO $$ DECLARE n int := 1; BEGIN ALTER TABLE t ADD COLUMN a int; END $$;",
                                            1, "variable \"n\""));
    CHECK("do: RAISE refused", do_fails("DO $$ BEGIN RAISE NOTICE 'x'; END $$;", 1, "RAISE (line 1)"));
    CHECK("do: a handler that does something refused", do_fails(
        "DO $$ BEGIN CREATE TYPE r AS ENUM ('a'); EXCEPTION WHEN duplicate_object THEN RAISE NOTICE 'x'; END $$;", 1,
        "an EXCEPTION handler that does something"));
    CHECK("do: another exception refused", do_fails(
        "DO $$ BEGIN CREATE TYPE r AS ENUM ('a'); EXCEPTION WHEN others THEN NULL; END $$;", 1,
        "other than WHEN duplicate_object"));
    CHECK("do: duplicate_object around a statement it cannot tell refused", do_fails(
        "DO $$ BEGIN ALTER TABLE t ADD CONSTRAINT k UNIQUE (u); EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        1, "AlterTableStmt inside BEGIN ... EXCEPTION WHEN duplicate_object"));
    CHECK("do: a condition reading a table refused", do_fails(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM users) THEN ALTER TABLE t ADD COLUMN a int; END IF; END $$;", 1,
        "reads \"users\", which is not a catalog relation"));
    CHECK("do: a condition calling a function of another schema refused", do_fails(
        "DO $$ BEGIN IF app.ready() THEN ALTER TABLE t ADD COLUMN a int; END IF; END $$;", 1,
        "calls a function of schema \"app\""));
    CHECK("do: a condition on a name a statement above changes refused", do_fails(
        "ALTER TABLE t ADD CONSTRAINT x_fkey FOREIGN KEY (u) REFERENCES users (id);\n" FK_IF("NOT EXISTS"), 1,
        "m.sql:2:1: this DO block reads \"x_fkey\" on the catalog as it is before the file runs (line 3), and the "
        "statement at line 1 above changes it"));
    CHECK("do: a condition on a column of a table a statement above changes is read", do_ops(
        "ALTER TABLE t ADD COLUMN a int;\nDO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns WHERE "
        "table_name = 't' AND column_name = 'c') THEN\n  CREATE INDEX t_u ON t (u);\nEND IF; END $$;",
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"a\",\"type\":\"int\"}}}," INDEX_OP "]"));
    CHECK("do: ... the schema it is in aside", do_ops(
        "ALTER TABLE public.t ADD COLUMN a int;\nDROP TABLE public.old;\nDO $$ BEGIN IF NOT EXISTS (SELECT FROM "
        "information_schema.columns WHERE table_schema = 'public' AND table_name = 't' AND column_name = 'c') THEN\n"
        "  CREATE INDEX t_u ON t (u);\nEND IF; END $$;",
        "[{\"add_column\":{\"table\":\"t\",\"column\":{\"name\":\"a\",\"type\":\"int\"}}},"
        "{\"drop_table\":{\"table\":\"old\"}}," INDEX_OP "]"));
    CHECK("do: a literal compared to nothing known counts as the object", do_fails(
        "ALTER TABLE t ADD COLUMN a int;\nDO $$ BEGIN IF pg_catalog.to_regclass('t') IS NULL THEN\n"
        "  CREATE INDEX t_u ON t (u);\nEND IF; END $$;", 1, "reads \"t\" on the catalog"));
    CHECK("do: ... not when it adds that column", do_fails(
        "ALTER TABLE t ADD COLUMN c int;\nDO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns WHERE "
        "table_name = 't' AND column_name = 'c') THEN\n  CREATE INDEX t_u ON t (u);\nEND IF; END $$;", 1,
        "the statement at line 1 above changes it"));
    CHECK("do: ... nor when it drops the table", do_fails(
        "DROP TABLE t;\nDO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns WHERE "
        "table_name = 't' AND column_name = 'c') THEN\n  CREATE INDEX t_u ON t (u);\nEND IF; END $$;", 1,
        "reads \"t\" on the catalog"));
    CHECK("do: another language refused", do_fails("DO LANGUAGE plperl $$ 1 $$;", 1, "in language plperl"));
    CHECK("do: everything skipped said", do_fails(
        "DO $$ BEGIN CREATE TYPE there AS ENUM ('a'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;", 1,
        "nothing to run on this database"));
}

int main(void)
{
    test_do_blocks();
    test_constraints_identity_enums();
    test_alembic_seed();
    test_down_needs_old_type();
    test_drizzle();
    test_column_merges();
    test_required_column_fill();
    test_alter_passes();
    test_columns_constraints_indexes();
    test_index_keys_and_fk_actions();
    test_refusals();
    test_earlier_statements();
    test_expression_text();
    test_created_objects();
    return UNIT_RESULT();
}
