/* Unit tests of the migration parser, the plan generator (offline) and the
 * backfill's batch statement and batch-size adaptation. */
#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "backfill_pool.h"
#include "migration.h"
#include "migration_plan.h"
#include "migration_sql.h"
#include "unit.h"
#include "unit_steps.h"

static const char *GOOD =
    "{\"name\": \"0003_checks_unify\", \"parent\": \"0002\", \"operations\": [\n"
    " {\"rename_column\": {\"table\": \"checks\", \"from\": \"aggregation\", \"to\": \"config_json\",\n"
    "   \"type\": \"jsonb\", \"up\": \"aggregation::jsonb\", \"down\": \"config_json::text\"}},\n"
    " {\"create_index\": {\"table\": \"checks\", \"name\": \"ix\", \"columns\": [\"env\", \"anon_token\"]}},\n"
    " {\"sql\": {\"up\": \"UPDATE alembic_version SET version_num = 'b73c9aa4f0c3'\", \"on\": \"complete\"}}],\n"
    " \"backfill\": {\"target_ms\": 25, \"max_rows_per_sec\": 1000}}";

static int parse(const char *text, struct migration *m, char *err, size_t n)
{
    return mig_parse(text, strlen(text), "t.json", m, err, n);
}

static void test_backfill_budget_in_the_file(void)
{
    static const char *base = "{\"name\": \"b\", \"parent\": null, \"operations\": [{\"add_column\": "
                              "{\"table\": \"t\", \"column\": {\"name\": \"c\", \"type\": \"int\"}}}], "
                              "\"backfill\": {\"app_p99_budget\": %s}}";
    char text[512], err[512] = "";
    struct migration m;
    snprintf(text, sizeof text, base, "0");
    int ok = parse(text, &m, err, sizeof err) == 0;
    CHECK("app_p99_budget 0 in the file turns the budget off", ok && m.backfill.app_p99_budget == 0.0);
    if (ok)
        mig_free(&m);
    snprintf(text, sizeof text, base, "2.5");
    ok = parse(text, &m, err, sizeof err) == 0;
    CHECK("app_p99_budget 2.5 in the file", ok && m.backfill.app_p99_budget == 2.5);
    if (ok)
        mig_free(&m);
    snprintf(text, sizeof text, base, "101");
    ok = parse(text, &m, err, sizeof err) == 0;
    CHECK("app_p99_budget 101 refused, naming the key", !ok && strstr(err, "app_p99_budget"));
    if (ok)
        mig_free(&m);
}

static void test_parse_good(void)
{
    struct migration m;
    char err[512] = "";
    CHECK("parse good migration", parse(GOOD, &m, err, sizeof err) == 0);
    CHECK("name", m.name && strcmp(m.name, "0003_checks_unify") == 0);
    CHECK("three operations", m.nops == 3);
    CHECK("op kinds", m.ops[0].kind == MIG_RENAME_COLUMN && m.ops[2].kind == MIG_SQL);
    CHECK("sql on complete", m.ops[2].on == MIG_ON_COMPLETE);
    CHECK("backfill settings", m.backfill.target_ms == 25 && m.backfill.max_rows_per_sec == 1000);
    CHECK("the latency budget at the setting's default", m.backfill.app_p99_budget == 1.5);
    CHECK("default schema", strcmp(m.ops[0].schema, "public") == 0);
    CHECK("checksum is sha256 hex", strlen(m.checksum) == 64);
    mig_free(&m);
}

static void expect_error(const char *name, const char *text, const char *needle)
{
    struct migration m;
    char err[512] = "";
    int rc = parse(text, &m, err, sizeof err);
    CHECK(name, rc != 0 && strstr(err, needle) != NULL);
    if (rc == 0 || !strstr(err, needle))
        printf("  got: %s\n", err);
    mig_free(&m);
}

static void test_parse_errors(void)
{
    expect_error("did you mean key", "{\"name\": \"x\", \"operations\": [{\"drop_table\": {\"tabel\": \"t\"}}]}",
                 "operations[0].drop_table: unknown key \"tabel\" (did you mean \"table\"?)");
    expect_error("did you mean op", "{\"name\": \"x\", \"operations\": [{\"add_colum\": {}}]}",
                 "did you mean \"add_column\"");
    expect_error("line and column", "{\"name\": \"x\",\n \"operations\": [{\"drop_table\": {\"tabel\": \"t\"}}]}",
                 "t.json:2:33:");
    expect_error("new_shape needs on complete",
                 "{\"name\": \"x\", \"operations\": [{\"sql\": {\"up\": \"CREATE VIEW v AS SELECT 1\", \"new_shape\": true}}]}",
                 "operations[0].sql: \"new_shape\" is for a statement that runs \"on\": \"complete\"");
    expect_error("deferrable is for unique and primary keys",
                 "{\"name\": \"x\", \"operations\": [{\"create_constraint\": {\"table\": \"t\", \"type\": \"check\", "
                 "\"check\": \"a > 0\", \"deferrable\": true}}]}", "\"deferrable\" is for a unique or primary_key");
    expect_error("initially_deferred needs deferrable",
                 "{\"name\": \"x\", \"operations\": [{\"create_constraint\": {\"table\": \"t\", \"type\": \"unique\", "
                 "\"columns\": [\"a\"], \"initially_deferred\": true}}]}", "needs \"deferrable\": true");
    expect_error("json syntax", "{\"name\": ", "invalid JSON");
    expect_error("duplicates", "{\"name\": \"a\", \"name\": \"b\"}", "duplicate");
    expect_error("nul byte", "{\"name\": \"a\\u0000b\", \"operations\": []}", "invalid JSON");
    expect_error("type injection",
                 "{\"name\": \"x\", \"operations\": [{\"rename_column\": {\"table\": \"t\", \"from\": \"a\","
                 " \"to\": \"b\", \"type\": \"int'--\"}}]}", "contains '''");
    expect_error("identity kind", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\": \"t\", \"columns\":"
                 " [{\"name\": \"a\", \"type\": \"int\", \"identity\": \"sometimes\"}]}}]}",
                 "\"identity\" must be \"always\" or \"by_default\"");
    expect_error("identity with default", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\": \"t\","
                 " \"columns\": [{\"name\": \"a\", \"type\": \"int\", \"identity\": \"always\", \"default\": \"1\"}]}}]}",
                 "an identity column cannot have a \"default\"");
    expect_error("generated is one expression", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\":"
                 " \"t\", \"columns\": [{\"name\": \"a\", \"type\": \"int\", \"generated\": \"1); DROP TABLE x; (\"}]}}]}",
                 "\"generated\" must be exactly one SQL expression");
    expect_error("add_column identity", "{\"name\": \"x\", \"operations\": [{\"add_column\": {\"table\": \"t\","
                 " \"column\": {\"name\": \"a\", \"type\": \"int\", \"identity\": \"always\"}}}]}",
                 "add_column cannot add an identity column");
    expect_error("table constraint kind", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\": \"t\","
                 " \"columns\": [{\"name\": \"a\", \"type\": \"int\"}], \"constraints\": [{\"type\": \"primary\"}]}}]}",
                 "constraints[0]: unknown constraint type \"primary\"");
    expect_error("table constraint needs columns", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\":"
                 " \"t\", \"columns\": [{\"name\": \"a\", \"type\": \"int\"}], \"constraints\": [{\"type\": \"unique\"}]}}]}",
                 "a unique constraint needs \"columns\"");
    expect_error("two primary keys", "{\"name\": \"x\", \"operations\": [{\"create_table\": {\"table\": \"t\","
                 " \"columns\": [{\"name\": \"a\", \"type\": \"int\", \"primary_key\": true}], \"constraints\":"
                 " [{\"type\": \"primary_key\", \"columns\": [\"a\"]}]}}]}", "a table has one primary key (2 given)");
    expect_error("references on a check", "{\"name\": \"x\", \"operations\": [{\"create_constraint\": {\"table\": \"t\","
                 " \"type\": \"check\", \"check\": \"a > 0\", \"references\": {\"table\": \"u\", \"columns\": [\"id\"]}}}]}",
                 "only a foreign_key constraint has \"references\"");
    expect_error("primary key needs columns", "{\"name\": \"x\", \"operations\": [{\"create_constraint\": {\"table\":"
                 " \"t\", \"type\": \"primary_key\"}}]}", "a primary_key constraint needs \"columns\"");
}

static void test_edit_distance(void)
{
    CHECK("distance equal", mig_edit_distance("from", "from") == 0);
    CHECK("distance one", mig_edit_distance("fro", "from") == 1);
    CHECK("distance swap", mig_edit_distance("tabel", "table") == 2);
    CHECK("distance empty", mig_edit_distance("", "abc") == 3);
}

static void test_quoting(void)
{
    char *q = mig_quote_ident("we\"ird");
    CHECK("ident doubles quotes", q && strcmp(q, "\"we\"\"ird\"") == 0);
    free(q);
    struct mig_str s = {0};
    mig_str_literal(&s, "it's a \\ test");
    char *lit = mig_str_take(&s);
    CHECK("literal escapes", lit && strcmp(lit, "E'it''s a \\\\ test'") == 0);
    free(lit);
}

static void test_fk_action(void)
{
    CHECK("fk action a", !strcmp(mig_fk_action('a'), "NO ACTION"));
    CHECK("fk action r", !strcmp(mig_fk_action('r'), "RESTRICT"));
    CHECK("fk action c", !strcmp(mig_fk_action('c'), "CASCADE"));
    CHECK("fk action n", !strcmp(mig_fk_action('n'), "SET NULL"));
    CHECK("fk action d", !strcmp(mig_fk_action('d'), "SET DEFAULT"));
    CHECK("fk action unknown", !strcmp(mig_fk_action('\0'), "NO ACTION"));
}

static void test_plan_offline(void)
{
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    parse(GOOD, &m, err, sizeof err);
    CHECK("offline plan builds", mig_plan_build(&m, NULL, &p, err, sizeof err) == 0);
    CHECK("expand adds column", steps_contain(&p.expand, "ADD COLUMN \"config_json\" jsonb"));
    CHECK("expand trigger skips backfill", steps_contain(&p.expand, "current_setting('pgtandem.backfill', true)"));
    CHECK("index concurrently", steps_contain(&p.expand, "CREATE INDEX CONCURRENTLY \"ix\""));
    CHECK("version schema", steps_contain(&p.expand, "CREATE SCHEMA \"pgtandem_0003_checks_unify\""));
    CHECK("contract drops old column", steps_contain(&p.contract, "DROP COLUMN \"aggregation\""));
    CHECK("contract runs on-complete sql", steps_contain(&p.contract, "b73c9aa4f0c3"));
    CHECK("contract drops version schema first", p.contract.n > 0 && strstr(p.contract.v[0].sql, "DROP SCHEMA"));
    CHECK("rollback drops new column", steps_contain(&p.rollback, "DROP COLUMN IF EXISTS \"config_json\""));
    CHECK("one backfill table", p.nbf == 1 && strstr(p.bf[0].pending, "\"config_json\" IS NULL"));
    char *json = mig_plan_to_json(&p);
    struct mig_plan back;
    CHECK("plan json round trip", json && mig_plan_from_json(json, &back, err, sizeof err) == 0 &&
          back.contract.n == p.contract.n && back.nbf == 1 && !strcmp(back.bf[0].set_list, p.bf[0].set_list));
    free(json);
    mig_plan_free(&back);
    mig_plan_free(&p);
    mig_free(&m);
}

#define ONE_OP(op) "{\"name\": \"x\", \"operations\": [" op "]}"

/* drop_constraint, rename_constraint, set_replica_identity and the enum
 * operations: their keys, and where the offline plan puts their statements
 * (an enum value first at expand, alone; the rest at the contract). */
static void test_constraint_and_enum_ops(void)
{
    expect_error("identity word", ONE_OP("{\"set_replica_identity\": {\"table\": \"t\", \"identity\": \"ful\"}}"),
                 "did you mean \"full\"");
    expect_error("identity object", ONE_OP("{\"set_replica_identity\": {\"table\": \"t\", \"identity\": {\"idx\": \"i\"}}}"),
                 "unknown key \"idx\" (did you mean \"index\"?)");
    expect_error("identity type", ONE_OP("{\"set_replica_identity\": {\"table\": \"t\", \"identity\": 1}}"),
                 "\"identity\" must be a string or an object");
    expect_error("before and after", ONE_OP("{\"add_enum_value\": {\"type\": \"m\", \"value\": \"v\", \"before\": \"a\","
                                            " \"after\": \"b\"}}"), "give \"before\" or \"after\", not both");
    expect_error("neighbour is the value", ONE_OP("{\"add_enum_value\": {\"type\": \"m\", \"value\": \"v\", \"after\": \"v\"}}"),
                 "\"v\" is the value being added");
    expect_error("rename constraint to itself", ONE_OP("{\"rename_constraint\": {\"table\": \"t\", \"from\": \"a\", \"to\": \"a\"}}"),
                 "\"from\" and \"to\" are both \"a\"");
    expect_error("drop constraint needs a name", ONE_OP("{\"drop_constraint\": {\"table\": \"t\"}}"),
                 "missing required key \"name\"");
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    const char *text = ONE_OP("{\"drop_constraint\": {\"table\": \"t\", \"name\": \"c\", \"if_exists\": true}},"
                              "{\"add_column\": {\"table\": \"t\", \"column\": {\"name\": \"s\", \"type\": \"mood\"}}},"
                              "{\"add_enum_value\": {\"schema\": \"app\", \"type\": \"mood\", \"value\": \"it's\", \"after\": \"a\"}},"
                              "{\"rename_constraint\": {\"table\": \"t\", \"from\": \"a\", \"to\": \"b\"}},"
                              "{\"set_replica_identity\": {\"table\": \"t\", \"identity\": {\"index\": \"t_k\"}}}");
    CHECK("constraint and enum ops parse", parse(text, &m, err, sizeof err) == 0 && m.ops[2].kind == MIG_ADD_ENUM_VALUE &&
          !strcmp(m.ops[2].name, "mood") && !m.ops[2].type && m.ops[0].if_exists == 1);
    CHECK("constraint and enum ops plan offline", mig_plan_build(&m, NULL, &p, err, sizeof err) == 0);
    CHECK("enum value first, alone", p.expand.n > 0 && p.expand.v[0].mode == MIG_STEP_ALONE &&
          !strcmp(p.expand.v[0].sql, "ALTER TYPE \"app\".\"mood\" ADD VALUE IF NOT EXISTS 'it''s' AFTER 'a'"));
    CHECK("drop at contract", steps_contain(&p.contract, "ALTER TABLE \"public\".\"t\" DROP CONSTRAINT IF EXISTS \"c\""));
    CHECK("rename at contract", steps_contain(&p.contract, "RENAME CONSTRAINT \"a\" TO \"b\""));
    CHECK("identity at contract", steps_contain(&p.contract, "REPLICA IDENTITY USING INDEX \"t_k\""));
    CHECK("nothing of them to roll back", !steps_contain(&p.rollback, "CONSTRAINT") &&
          !steps_contain(&p.rollback, "REPLICA") && !steps_contain(&p.rollback, "ALTER TYPE"));
    CHECK("the kept value is noted", p.nnotes == 1 && strstr(p.notes[0], "keeps value \"it's\""));
    mig_plan_free(&p);
    mig_free(&m);
    CHECK("rename enum value refused offline",
          parse(ONE_OP("{\"rename_enum_value\": {\"type\": \"m\", \"from\": \"a\", \"to\": \"b\"}}"), &m, err, sizeof err) == 0 &&
          mig_plan_build(&m, NULL, &p, err, sizeof err) != 0 && strstr(err, "cannot run online"));
    mig_free(&m);
}

static void test_backfill_sql(void)
{
    char *pk[1] = {"\"id\""}, *types[1] = {"bigint"};
    struct mig_bf_table t = {.schema = "public", .name = "checks", .qname = "\"public\".\"checks\"",
                             .pk = pk, .pk_types = types, .npk = 1, .set_list = "\"n\" = (\"o\")",
                             .pending = "(\"n\" IS NULL AND \"o\" IS NOT NULL)", .est_rows = 1000};
    struct mig_backfill_settings cfg = {.batch_rows = 1000, .min_rows = 100, .max_rows = 50000,
                                        .target_ms = 50, .lock_timeout_ms = 1000};
    struct backfill b;
    backfill_init(&b, &t, "m", &cfg);
    char *sql = backfill_batch_sql(&b);
    CHECK("first batch has no lower bound", sql && !strstr(sql, "$6"));
    CHECK("batch advances checkpoint in the same statement", sql && strstr(sql, "UPDATE pgtandem.backfill_progress"));
    CHECK("a batch says what it is in its first words (pg_stat_activity keeps 1 kB)",
          sql && !strncmp(sql, "/* pgtandem backfill batch */ WITH", 34));
    free(sql);
    b.have_last = 1;
    b.last_key[0] = strdup("41");
    sql = backfill_batch_sql(&b);
    CHECK("next batch starts after the checkpoint", sql && strstr(sql, "(\"id\") > ($6::bigint)"));
    CHECK("range update for a single key, the row under the table's own name",
          sql && strstr(sql, "UPDATE \"public\".\"checks\" AS \"checks\" SET") &&
              strstr(sql, "\"checks\".\"id\" <= (SELECT \"id\" FROM bounds)"));
    CHECK("the batch locks its rows NOWAIT before it writes any (a one-time filter on the count)",
          sql && strstr(sql, "lk AS MATERIALIZED (SELECT \"checks\".\"id\" FROM") &&
              strstr(sql, "FOR NO KEY UPDATE OF \"checks\" NOWAIT)") && strstr(sql, "AND (SELECT count(*) FROM lk) > 0") &&
              strstr(sql, "lk AS") < strstr(sql, "upd AS"));
    CHECK("the checkpoint is the range's", sql && strstr(sql, "AND range_no = $5::int"));
    const char *values[BACKFILL_MAX_PARAMS];
    char num[64];
    CHECK("params", backfill_batch_params(&b, values, num, sizeof num) == 6 && !strcmp(values[4], "0") &&
                        !strcmp(values[5], "41"));
    free(sql);
    /* a range of the key: (100, 200], its checkpoint at 141 */
    b.range_no = 3;
    b.range_lo = strdup("100");
    b.range_hi = strdup("200");
    sql = backfill_batch_sql(&b);
    CHECK("a range's batch stops at its upper bound", sql && strstr(sql, "(\"id\") > ($6::bigint) AND \"id\" <= $7::bigint"));
    CHECK("range params", backfill_batch_params(&b, values, num, sizeof num) == 7 && !strcmp(values[4], "3") &&
                              !strcmp(values[5], "41") && !strcmp(values[6], "200"));
    free(sql);
    free(b.last_key[0]);
    b.last_key[0] = NULL;
    b.have_last = 0;
    sql = backfill_batch_sql(&b);
    CHECK("a range's first batch starts after its lower bound", sql && strstr(sql, "\"id\" > $6::bigint AND \"id\" <= $7::bigint"));
    CHECK("first range params", backfill_batch_params(&b, values, num, sizeof num) == 7 && !strcmp(values[5], "100") &&
                                    !strcmp(values[6], "200"));
    free(sql);
    /* a batch that met a held row gave up at once: the pause before the
     * next grows while the row stays held, and ends with a batch that ran */
    b.cfg.lock_timeout_ms = 1000;
    b.last_ms = 0;
    backfill_lock_timeout(&b);
    long first = backfill_sleep_ms(&b);
    backfill_lock_timeout(&b);
    long second = backfill_sleep_ms(&b);
    for (int i = 0; i < 20; i++)
        backfill_lock_timeout(&b);
    CHECK("a held row: a pause that doubles up to lock_timeout_ms",
          first == 10 && second == 20 && backfill_sleep_ms(&b) == 1000 && !strcmp(b.throttle, "lock-wait"));
    backfill_free(&b);
}

/* Which range a worker runs next and how many may run. */
static void test_backfill_pool(void)
{
    struct mig_bf_table t1 = {.qname = "a"}, t2 = {.qname = "b"};
    struct backfill v[5];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 5; i++)
        v[i].table = i < 3 ? &t1 : &t2;
    CHECK("a worker keeps its range", backfill_pick(v, 5, 1) == 1);
    v[1].busy = 1;
    CHECK("another takes the first free one", backfill_pick(v, 5, 5) == 0);
    v[0].busy = 1;
    CHECK("then the next", backfill_pick(v, 5, 0) == 2);
    v[2].busy = 1;
    CHECK("tables go one at a time", backfill_pick(v, 5, 5) == 5);
    v[0].done = v[1].done = v[2].done = 1;
    v[0].busy = v[1].busy = v[2].busy = 0;
    CHECK("the next table once the first is done", backfill_pick(v, 5, 2) == 3 && backfill_current(v, 5) == 3);
    struct backfill_gate g = {0};
    CHECK("all workers from the start", backfill_gate_update(&g, 4, 0, 0) == 4);
    CHECK("one while throttled", backfill_gate_update(&g, 4, 1, 100) == 1);
    CHECK("still one just after", backfill_gate_update(&g, 4, 0, 500) == 1);
    CHECK("one more a second later", backfill_gate_update(&g, 4, 0, 1100) == 2);
    CHECK("and one more", backfill_gate_update(&g, 4, 0, 2100) == 3 && backfill_gate_update(&g, 4, 0, 3100) == 4);
    CHECK("a lower setting at once", backfill_gate_update(&g, 2, 0, 3200) == 2);
    backfill_gate_update(&g, 2, 1, 4000);
    backfill_gate_update(&g, 2, 1, 9000);
    CHECK("throttled long, released a moment: still one", backfill_gate_update(&g, 2, 0, 9100) == 1);
    CHECK("a second after the last throttled look: two", backfill_gate_update(&g, 2, 0, 10000) == 2);
    v[3].rows_done = 10;
    v[3].est_total = 100;
    v[4].rows_done = 30;
    v[4].est_total = 20;
    v[4].done = 1;
    struct backfill sum;
    backfill_summary(v, 5, &t2, &v[4], &sum);
    CHECK("a table's ranges summed", sum.rows_done == 40 && sum.est_total == 130 && !sum.done);
}

/* A result shaped like the batch statement's: rows, last_key, rows_done,
 * rows_updated, done, paused. */
static PGresult *fake_result(long rows, long long done)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[6];
    const char *names[6] = {"rows", "last_key", "rows_done", "rows_updated", "done", "paused"};
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < 6; i++) {
        attrs[i].name = (char *)names[i];
        attrs[i].format = 0;
        attrs[i].typid = 25;
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    PQsetResultAttrs(r, 6, attrs);
    char a[32], c[32];
    snprintf(a, sizeof a, "%ld", rows);
    snprintf(c, sizeof c, "%lld", done);
    const char *vals[6] = {a, "{7}", c, c, "f", "f"};
    for (int i = 0; i < 6; i++)
        PQsetvalue(r, 0, i, (char *)vals[i], (int)strlen(vals[i]));
    return r;
}

static void test_backfill_adapts(void)
{
    char *pk[1] = {"\"id\""}, *types[1] = {"bigint"};
    struct mig_bf_table t = {.schema = "public", .name = "t", .qname = "t", .pk = pk, .pk_types = types,
                             .npk = 1, .set_list = "x", .pending = "y"};
    struct mig_backfill_settings cfg = {.batch_rows = 1000, .min_rows = 100, .max_rows = 50000,
                                        .target_ms = 50, .max_rows_per_sec = 0, .lock_timeout_ms = 1000};
    struct backfill b;
    backfill_init(&b, &t, "m", &cfg);
    /* The server does 100 rows/ms: from 1000 rows the size doubles, then
     * settles where a batch takes target_ms (5000 rows). */
    for (int i = 0; i < 10; i++) {
        PGresult *r = fake_result(b.batch_rows, b.rows_done + b.batch_rows);
        char err[128];
        backfill_apply_result(&b, r, (double)b.batch_rows / 100.0, err, sizeof err);
        PQclear(r);
    }
    CHECK("converges to target", b.batch_rows == 5000);
    backfill_lock_timeout(&b);
    CHECK("lock timeout halves", b.batch_rows == 2500 && !strcmp(b.throttle, "lock-wait"));
    b.cfg.max_rows_per_sec = 1000;
    b.last_ms = 100;
    long sleep = backfill_sleep_ms(&b);
    CHECK("max rows/s throttles", sleep == 2400 && !strcmp(b.throttle, "max-rows"));
    b.cfg.max_rows_per_sec = 0;
    b.cfg.sleep_ratio = 0.5;
    CHECK("sleep ratio", backfill_sleep_ms(&b) == 50 && !strcmp(b.throttle, "sleep-ratio"));
    b.paused = 1;
    CHECK("paused", backfill_sleep_ms(&b) == 1000 && !strcmp(b.throttle, "paused"));
    backfill_free(&b);
}

/* A batch slower than the ones before sizes the next by its own pace. */
static void test_backfill_shrinks_at_once(void)
{
    char *pk[1] = {"\"id\""}, *types[1] = {"bigint"};
    struct mig_bf_table t = {.schema = "public", .name = "t", .qname = "t", .pk = pk, .pk_types = types,
                             .npk = 1, .set_list = "x", .pending = "y"};
    struct mig_backfill_settings cfg = {.batch_rows = 1000, .min_rows = 100, .max_rows = 50000,
                                        .target_ms = 50, .max_rows_per_sec = 0, .lock_timeout_ms = 1000};
    struct backfill b;
    backfill_init(&b, &t, "m", &cfg);
    for (int i = 0; i < 10; i++) {
        PGresult *r = fake_result(b.batch_rows, b.rows_done + b.batch_rows);
        char err[128];
        backfill_apply_result(&b, r, (double)b.batch_rows / 100.0, err, sizeof err);
        PQclear(r);
    }
    /* one batch at a quarter of the pace: the next is sized by it at once,
     * not by the average that still remembers the fast ones */
    PGresult *slow = fake_result(b.batch_rows, b.rows_done + b.batch_rows);
    char slow_err[128];
    backfill_apply_result(&b, slow, (double)b.batch_rows / 25.0, slow_err, sizeof slow_err);
    PQclear(slow);
    CHECK("a slow batch shrinks the next to the target at its pace", b.batch_rows == 1250 && b.rate > 25.0);
    for (int i = 0; i < 20; i++) {
        PGresult *r = fake_result(b.batch_rows, b.rows_done + b.batch_rows);
        char err[128];
        backfill_apply_result(&b, r, (double)b.batch_rows / 100.0, err, sizeof err);
        PQclear(r);
    }
    CHECK("and grows back once the pace returns", b.batch_rows >= 4900 && b.batch_rows <= 5000);
    backfill_free(&b);
}

int main(void)
{
    test_parse_good();
    test_backfill_budget_in_the_file();
    test_parse_errors();
    test_edit_distance();
    test_quoting();
    test_fk_action();
    test_plan_offline();
    test_backfill_sql();
    test_backfill_adapts();
    test_backfill_shrinks_at_once();
    test_backfill_pool();
    test_constraint_and_enum_ops();
    return UNIT_RESULT();
}
