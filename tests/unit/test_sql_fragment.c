/* Unit tests of the SQL fragment checks a migration file's defaults,
 * expressions and types go through, the dollar-quote tag of trigger bodies
 * and the search_path option of routed sessions. */
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"
#include "migration_sql.h"
#include "sql_fragment.h"
#include "sql_script.h"
#include "unit.h"
#include "unit_steps.h"

static void test_expressions(void)
{
    static const char *const good[] = {
        "1", "'x'", "now()", "'{}'::jsonb", "(1 + 2) * 3", "true AND NOT false", "a IS NULL",
        "x BETWEEN 1 AND 2", "c IN (1, 2)", "ARRAY['a', 'b;c']::text[]", "$$it's; fine$$",
        "$q$ ) ; DROP TABLE t; $q$", "CASE WHEN a THEN 1 ELSE 2 END", "-1", "'a' || 'b'",
        "lower(title) /* a comment ) */", "(SELECT 1)", "nextval('s'::regclass)", "aggregation::jsonb",
        "current_timestamp", "x\n  + 1",
    };
    static const char *const bad[] = {
        "", "'x'; DROP TABLE canary; SELECT 'y'", "1) ; DROP TABLE t ; SELECT (1", "1) OR (2",
        "1), (2", "1, 2", "1 x", "1 AS x", "1 -- trailing", "1 /* open", "SELECT 1", "*",
        "1) FROM t WHERE (true", "'a' UNION SELECT 'b'", "1 ORDER BY 1", "1)", "(1", ")",
        "1); DROP TABLE t; --", "true) IS NULL OR (true", "'unterminated", "1 LIMIT 1",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int ok = sql_fragment_expr(good[i]) == SQL_FRAGMENT_OK;
        CHECK("expression accepted", ok);
        if (!ok)
            printf("  refused: %s\n", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int refused = sql_fragment_expr(bad[i]) == SQL_FRAGMENT_BAD;
        CHECK("non-expression refused", refused);
        if (!refused)
            printf("  accepted: %s\n", bad[i]);
    }
    CHECK("NULL refused", sql_fragment_expr(NULL) == SQL_FRAGMENT_BAD);
}

/* A default the converter casts to the type it was set on (a literal only). */
static void test_string_literals(void)
{
    static const char *const literals[] = {"'x'", "'{\"k\": 2}'", "E'a\\nb'", "$$it's$$", "''", "( 'x' )"};
    static const char *const others[] = {"1", "'x'::text", "'a' || 'b'", "now()", "NULL", "'x'; SELECT 1", "x",
                                         "ARRAY['a']", ""};
    for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
        int ok = sql_fragment_string_literal(literals[i]) == SQL_FRAGMENT_OK;
        CHECK("string literal recognised", ok);
        if (!ok)
            printf("  not one: %s\n", literals[i]);
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        int no = sql_fragment_string_literal(others[i]) == SQL_FRAGMENT_BAD;
        CHECK("other expression is no string literal", no);
        if (!no)
            printf("  taken for one: %s\n", others[i]);
    }
    CHECK("NULL is none", sql_fragment_string_literal(NULL) == SQL_FRAGMENT_BAD);
}

/* CONCURRENTLY taken out of a CREATE INDEX by the parser's word, never a
 * name or a string that spells it */
static void test_index_not_concurrently(void)
{
    static const char *const cases[][2] = {
        {"CREATE INDEX CONCURRENTLY ix ON t (a)", "CREATE INDEX ix ON t (a)"},
        {"create unique index concurrently if not exists \"concurrently\" on t (a) where b = 'concurrently'",
         "create unique index if not exists \"concurrently\" on t (a) where b = 'concurrently'"},
        {"CREATE INDEX\nCONCURRENTLY\n\"x\" ON \"T\"(\"a\")", "CREATE INDEX\n\"x\" ON \"T\"(\"a\")"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = sql_index_not_concurrently(cases[i][0]);
        int ok = got && !strcmp(got, cases[i][1]);
        CHECK("CONCURRENTLY left out", ok);
        if (!ok)
            printf("  %s -> %s\n", cases[i][0], got ? got : "(null)");
        free(got);
    }
    CHECK("no CONCURRENTLY: none to leave out", sql_index_not_concurrently("CREATE INDEX ix ON t (a)") == NULL);
    CHECK("not an index", sql_index_not_concurrently("REINDEX INDEX CONCURRENTLY ix") == NULL);
}

/* a column read as the value an earlier SET of the batch gives it */
static void test_substitute_columns(void)
{
    static const char *const from[] = {"a", "Note"};
    static const char *const exprs[] = {"CASE WHEN a IS NULL THEN 'x' ELSE a END", "1 + 2"};
    static const char *const cases[][2] = {
        {"a::integer", "(CASE WHEN a IS NULL THEN 'x' ELSE a END)::integer"},
        {"\"Note\" * 2 + b", "(1 + 2) * 2 + b"},
        {"'a' || a || 'a'", "'a' || (CASE WHEN a IS NULL THEN 'x' ELSE a END) || 'a'"},
        {"b", "b"},
        {"t.a || x.a || t . \"Note\"", "(CASE WHEN a IS NULL THEN 'x' ELSE a END) || x.a || (1 + 2)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = sql_fragment_substitute_columns(cases[i][0], "t", from, exprs, 2);
        int ok = got && !strcmp(got, cases[i][1]);
        CHECK("column read as the earlier value", ok);
        if (!ok)
            printf("  %s -> %s\n", cases[i][0], got ? got : "(null)");
        free(got);
    }
    char *q = sql_fragment_substitute_columns("public.t.a + 1", "t", from, exprs, 2);
    CHECK("a reference qualified by a schema is another's", q && !strcmp(q, "public.t.a + 1"));
    free(q);
}

static void test_types(void)
{
    static const char *const good[] = {
        "int", "text", "jsonb", "numeric(10,2)", "timestamp with time zone", "text[]", "int[][]",
        "public.\"MyType\"", "double precision", "varchar(20)", "bigserial", "interval", "bit varying(5)",
        "character varying", "int ARRAY",
    };
    static const char *const bad[] = {
        "", "int) ; DROP TABLE t ; SELECT (1", "SETOF text", "int, x", "int) FROM t WHERE CAST(NULL AS int",
        "numeric(pg_sleep(1))", "text --", "int) + CAST(NULL AS int", "int)::text || (NULL",
        "varchar(10) COLLATE \"C\"", "x.y%TYPE",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int ok = sql_fragment_type(good[i]) == SQL_FRAGMENT_OK;
        CHECK("type accepted", ok);
        if (!ok)
            printf("  refused: %s\n", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int refused = sql_fragment_type(bad[i]) == SQL_FRAGMENT_BAD;
        CHECK("non-type refused", refused);
        if (!refused)
            printf("  accepted: %s\n", bad[i]);
    }
}

static void expect_refused(const char *name, const char *ops, const char *needle)
{
    char text[2048];
    snprintf(text, sizeof text, "{\"name\": \"0001_x\", \"operations\": [%s]}", ops);
    struct migration m;
    char err[512] = "";
    int rc = mig_parse(text, strlen(text), "t.json", &m, err, sizeof err);
    CHECK(name, rc != 0 && strstr(err, needle) != NULL);
    if (rc == 0 || !strstr(err, needle))
        printf("  got: %s\n", rc ? err : "(parsed)");
    mig_free(&m);
}

static void test_file_fields(void)
{
    expect_refused("add_column default",
                   "{\"add_column\": {\"table\": \"t\", \"column\": {\"name\": \"c\", \"type\": \"text\","
                   " \"default\": \"'x'; DROP TABLE canary; SELECT 'y'\"}}}",
                   "operations[0].add_column: \"default\" must be exactly one SQL expression");
    expect_refused("alter_column default",
                   "{\"alter_column\": {\"table\": \"t\", \"column\": \"c\", \"default\": \"1); SELECT (1\"}}",
                   "t.json:1:93: operations[0].alter_column: \"default\"");
    expect_refused("rename_column default",
                   "{\"rename_column\": {\"table\": \"t\", \"from\": \"a\", \"to\": \"b\", \"default\": \"1 -- x\"}}",
                   "\"default\" must be exactly one");
    expect_refused("create_table column default",
                   "{\"create_table\": {\"table\": \"t\", \"columns\": [{\"name\": \"c\", \"type\": \"int\","
                   " \"default\": \"1)\"}]}}", "operations[0].create_table.columns[0]: \"default\"");
    expect_refused("up", "{\"drop_column\": {\"table\": \"t\", \"column\": \"c\", \"down\": \"1, 2\"}}",
                   "\"down\" must be exactly one");
    expect_refused("where", "{\"create_index\": {\"table\": \"t\", \"name\": \"i\", \"columns\": [\"c\"],"
                   " \"where\": \"true) WITH (fillfactor=1\"}}", "\"where\" must be exactly one");
    expect_refused("constraint check", "{\"create_constraint\": {\"table\": \"t\", \"name\": \"k\","
                   " \"type\": \"check\", \"check\": \"c > 0) NOT VALID; DROP TABLE t; --\"}}",
                   "\"check\" must be exactly one");
    expect_refused("type", "{\"alter_column\": {\"table\": \"t\", \"column\": \"c\", \"type\": \"SETOF int\","
                   " \"up\": \"c\", \"down\": \"c\"}}", "\"type\": \"SETOF int\" is not one type name");
    expect_refused("references", "{\"add_column\": {\"table\": \"t\", \"column\": {\"name\": \"c\","
                   " \"type\": \"int\", \"references\": \"u(id) ON DELETE CASCADE\"}}}",
                   "\"references\" must be \"table\" or \"table(column)\"");
    expect_refused("points at the fragment, not the first key of its name",
                   "{\"alter_column\": {\"table\": \"t\", \"column\": \"c\", \"default\": \"1\"}},\n"
                   "{\"alter_column\": {\"table\": \"t\", \"column\": \"d\", \"default\": \"1 x\"}}",
                   "t.json:2:59: operations[1].alter_column: \"default\"");
    struct migration m;
    char err[512] = "";
    const char *sql_op = "{\"name\": \"0001_x\", \"operations\": [{\"sql\": {\"up\": \"CREATE TABLE a (x int);"
                         " CREATE TABLE b (y int)\"}}]}";
    CHECK("an sql operation's up is statements", mig_parse(sql_op, strlen(sql_op), "t.json", &m, err, sizeof err) == 0);
    mig_free(&m);
    const char *refs = "{\"name\": \"0001_x\", \"operations\": [{\"create_table\": {\"table\": \"t\", \"columns\": ["
                       "{\"name\": \"a\", \"type\": \"int\", \"references\": \"u(id)\"},"
                       "{\"name\": \"b\", \"type\": \"int\", \"references\": \"u\"}]}}]}";
    CHECK("references table(column) and table", mig_parse(refs, strlen(refs), "t.json", &m, err, sizeof err) == 0);
    mig_free(&m);
}

static void test_dollar_tag(void)
{
    const char *text = "{\"name\": \"0001_x\", \"operations\": [{\"rename_column\": {\"table\": \"t\","
                       " \"from\": \"a$pgtandem$b\", \"to\": \"c\", \"type\": \"text\","
                       " \"up\": \"'$pgtandem1$'\", \"down\": \"c\"}}]}";
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    if (mig_parse(text, strlen(text), "t.json", &m, err, sizeof err) != 0 ||
        mig_plan_build(&m, NULL, &p, err, sizeof err) != 0) {
        CHECK("dollar tag: plan builds", 0);
        printf("  got: %s\n", err);
        return;
    }
    CHECK("dollar tag: absent from the body", steps_contain(&p.expand, "LANGUAGE plpgsql AS $pgtandem2$\n"));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_search_path_option(void)
{
    char out[128];
    CHECK("search_path quoted", mig_search_path_option(out, sizeof out, "pgtandem_0003_Checks_Unify", NULL) == 0 &&
          strcmp(out, " -c search_path=\"pgtandem_0003_Checks_Unify\",public") == 0);
    CHECK("hyphen kept", mig_search_path_option(out, sizeof out, "pgtandem_a-b", NULL) == 0 &&
          strcmp(out, " -c search_path=\"pgtandem_a-b\",public") == 0);
    CHECK("space and backslash escaped", mig_search_path_option(out, sizeof out, "a b\\\"c", NULL) == 0 &&
          strcmp(out, " -c search_path=\"a\\ b\\\\\"\"c\",public") == 0);
    CHECK("too long refused", mig_search_path_option(out, 10, "pgtandem_x", NULL) == -1);
    CHECK("the client's own path after the route's schema",
          mig_search_path_option(out, sizeof out, "pgtandem_x", "app, \"My S\"") == 0 &&
              strcmp(out, " -c search_path=\"pgtandem_x\",app,\\ \"My\\ S\"") == 0);
    char *sql = mig_search_path_set_config("pgtandem_x", "app'; DROP TABLE t; --");
    CHECK("set_config takes any path as one literal",
          sql && !strcmp(sql, "SELECT pg_catalog.set_config('search_path', '\"pgtandem_x\",app''; DROP TABLE t; --', "
                              "false)"));
    free(sql);
}

/* The names Postgres gives index keys when it names an index after them
 * (a partition's index: plan_partitions.c). */
static void test_index_key_column(void)
{
    static const struct { const char *key, *want; } cases[] = {
        {"note", "note"}, {"note DESC NULLS LAST", "note"}, {"(note)", "note"}, {"lower(note)", "lower"},
        {"public.f(a, b)", "f"}, {"(a::text)", "a"}, {"((a + b)::numeric)", "numeric"}, {"(a + b)", NULL},
        {"(coalesce(a, b))", "coalesce"}, {"(CASE WHEN a THEN 1 END)", "case"}, {"((a).b)", "b"},
        {"x COLLATE \"C\"", "x"}, {"(nullif(a, b))", "nullif"}, {"(greatest(a, b))", "greatest"},
        {"(least(a, b))", "least"}, {"(ROW(a, b))", "row"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *col = NULL;
        int ok = sql_fragment_index_key_column(cases[i].key, &col) == SQL_FRAGMENT_OK &&
                 (cases[i].want ? col && strcmp(col, cases[i].want) == 0 : col == NULL);
        if (!ok)
            printf("  key %s: got %s\n", cases[i].key, col ? col : "(none)");
        CHECK("index key column name", ok);
        free(col);
    }
    char *col = NULL;
    CHECK("two keys refused", sql_fragment_index_key_column("a, b", &col) == SQL_FRAGMENT_BAD && !col);
}

static void test_rename_columns(void)
{
    static const char *const from[] = {"payload", "Amount"};
    static const char *const to[] = {"_pgtandem_payload", "_pgtandem_Amount"};
    static const struct { const char *expr, *want; } cases[] = {
        {"length(payload) < 100", "length(\"_pgtandem_payload\") < 100"},
        {"\"payload\" IS NOT NULL OR true", "\"_pgtandem_payload\" IS NOT NULL OR true"},
        {"PAYLOAD <> 'payload' AND \"Amount\" >= 0",
         "\"_pgtandem_payload\" <> 'payload' AND \"_pgtandem_Amount\" >= 0"},
        {"amount >= 0", "amount >= 0"},     /* another column: "Amount" is not amount */
        {"coalesce(payload, payload || 'x') = ''", "coalesce(\"_pgtandem_payload\", \"_pgtandem_payload\" || 'x') = ''"},
        {"t.payload IS NULL", NULL},         /* qualified: not rewritten */
        {"payload) OR (true", NULL},         /* no one expression */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = sql_fragment_rename_columns(cases[i].expr, from, to, 2);
        int ok = cases[i].want ? got && !strcmp(got, cases[i].want) : got == NULL;
        if (!ok)
            printf("  %s: got %s\n", cases[i].expr, got ? got : "(none)");
        CHECK("column references renamed, and only those", ok);
        free(got);
    }
}

int main(void)
{
    test_rename_columns();
    test_index_key_column();
    test_expressions();
    test_string_literals();
    test_types();
    test_index_not_concurrently();
    test_substitute_columns();
    test_file_fields();
    test_dollar_tag();
    test_search_path_option();
    return UNIT_RESULT();
}
