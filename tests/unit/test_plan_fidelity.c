/* Unit tests of the contract each rename chooses: a rename that keeps the
 * type keeps the original column (drops the copy, renames the original, so
 * every dependent follows); a rename that a later operation builds on, or
 * that changes the type, takes the second column; "default" is accepted by
 * rename_column; an index created after an alter_column of its column is
 * built on the column that survives the contract; a change of type carries
 * the CHECK constraints, rich indexes and views the catalog's rehearsal
 * could write over the second column, and refuses, before any DDL, the one
 * Postgres refused on the new type, and identity and generated columns; the
 * version view shows a kept original under its new name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"
#include "unit.h"
#include "unit_steps.h"

static int build(const char *text, struct migration *m, struct mig_plan *p)
{
    char err[512] = "";
    if (mig_parse(text, strlen(text), "t.json", m, err, sizeof err) != 0) {
        printf("FAIL parse (%s)\n", err);
        return -1;
    }
    if (mig_plan_build(m, NULL, p, err, sizeof err) != 0) {
        printf("FAIL plan (%s)\n", err);
        mig_free(m);
        return -1;
    }
    return 0;
}

static void test_rename_keeps_original(void)
{
    static const char *text =
        "{\"name\": \"keep\", \"operations\": ["
        " {\"rename_column\": {\"table\": \"checks\", \"from\": \"claim_text\", \"to\": \"claim\"}}]}";
    struct migration m;
    struct mig_plan p;
    if (build(text, &m, &p) != 0) {
        CHECK("keep: plan builds", 0);
        return;
    }
    CHECK("keep: expand adds no column", !steps_contain(&p.expand, "ADD COLUMN"));
    CHECK("keep: no trigger", !steps_contain(&p.expand, "CREATE TRIGGER"));
    CHECK("keep: nothing to backfill", p.nbf == 0);
    CHECK("keep: contract renames the original",
          steps_contain(&p.contract, "RENAME COLUMN \"claim_text\" TO \"claim\""));
    CHECK("keep: the original is never dropped", !steps_contain(&p.contract, "DROP COLUMN \"claim_text\""));
    CHECK("keep: rollback drops no column", !steps_contain(&p.rollback, "DROP COLUMN"));
    CHECK("keep: plan says so", p.ncarried == 1 && strstr(p.carried[0], "moving no data"));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_rename_with_copy(void)
{
    static const char *text =
        "{\"name\": \"keep\", \"operations\": ["
        " {\"rename_column\": {\"table\": \"checks\", \"from\": \"claim_text\", \"to\": \"claim\","
        "  \"copy\": true}}]}";
    struct migration m;
    struct mig_plan p;
    if (build(text, &m, &p) != 0) {
        CHECK("copy: plan builds", 0);
        return;
    }
    CHECK("copy: expand adds the copy", steps_contain(&p.expand, "ADD COLUMN \"claim\""));
    CHECK("copy: contract drops the copy", steps_contain(&p.contract, "DROP COLUMN \"claim\""));
    CHECK("copy: contract renames the original",
          steps_contain(&p.contract, "RENAME COLUMN \"claim_text\" TO \"claim\""));
    CHECK("copy: the original is never dropped", !steps_contain(&p.contract, "DROP COLUMN \"claim_text\""));
    CHECK("copy: nothing is copied onto the copy",
          !steps_contain(&p.expand, "SET DEFAULT") && !steps_contain(&p.expand, "COMMENT ON") &&
          !steps_contain(&p.expand, "NOT VALID"));
    CHECK("copy: rollback drops the copy", steps_contain(&p.rollback, "DROP COLUMN IF EXISTS \"claim\""));
    CHECK("copy: plan says so", p.ncarried == 1 && strstr(p.carried[0], "a copy column under the new name"));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_later_index_takes_the_copy(void)
{
    static const char *text =
        "{\"name\": \"copy\", \"operations\": ["
        " {\"rename_column\": {\"table\": \"checks\", \"from\": \"claim_text\", \"to\": \"claim\"}},"
        " {\"create_index\": {\"table\": \"checks\", \"name\": \"ix_claim\", \"columns\": [\"claim\"]}}]}";
    struct migration m;
    struct mig_plan p;
    if (build(text, &m, &p) != 0) {
        CHECK("copy: plan builds", 0);
        return;
    }
    CHECK("copy: the index on the new name survives: the original is dropped",
          steps_contain(&p.contract, "DROP COLUMN \"claim_text\"") &&
          !steps_contain(&p.contract, "RENAME COLUMN \"claim_text\""));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_rename_default(void)
{
    static const char *text =
        "{\"name\": \"retype\", \"operations\": ["
        " {\"rename_column\": {\"table\": \"checks\", \"from\": \"aggregation\", \"to\": \"config_json\","
        "  \"type\": \"jsonb\", \"up\": \"aggregation::jsonb\", \"down\": \"config_json::text\","
        "  \"default\": \"'{}'::jsonb\"}}]}";
    struct migration m;
    struct mig_plan p;
    if (build(text, &m, &p) != 0) {
        CHECK("default: plan builds", 0);
        return;
    }
    CHECK("default: rename_column takes \"default\"", m.ops[0].has_default && m.ops[0].default_expr);
    CHECK("default: set on the new column at expand",
          steps_contain(&p.expand, "ALTER COLUMN \"config_json\" SET DEFAULT '{}'::jsonb"));
    CHECK("default: the new column takes the name", steps_contain(&p.contract, "DROP COLUMN \"aggregation\""));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_index_after_alter_column(void)
{
    static const char *text =
        "{\"name\": \"ix\", \"operations\": ["
        " {\"alter_column\": {\"table\": \"checks\", \"column\": \"price\", \"type\": \"numeric\","
        "  \"up\": \"price::numeric\", \"down\": \"price::text\"}},"
        " {\"create_index\": {\"table\": \"checks\", \"name\": \"ix_env_price\", \"columns\": [\"env\", \"price\"]}}]}";
    struct migration m;
    struct mig_plan p;
    if (build(text, &m, &p) != 0) {
        CHECK("index: plan builds", 0);
        return;
    }
    CHECK("index: built on the column that survives the contract",
          steps_contain(&p.expand, "\"ix_env_price\" ON \"public\".\"checks\" USING \"btree\" (\"env\", "
                                   "\"_pgtandem_price\")"));
    mig_plan_free(&p);
    mig_free(&m);
}

/* A catalog as the rehearsal leaves it (migration_dependents.c): price has
 * a CHECK, a partial index and a view that Postgres could write over the
 * second column. */
static char *pk[] = {"id"}, *pk_types[] = {"bigint"};
static struct mig_cat_column cols[] = {{.name = "id", .type = "bigint", .stattarget = -1},
                                       {.name = "price", .type = "text", .stattarget = -1}};
static struct mig_cat_index idx[] = {{.name = "checks_open_price", .method = "btree"}};

static void fill_catalog(struct mig_cat_dep *deps, struct mig_cat_table *t, struct mig_catalog *cat)
{
    deps[0] = (struct mig_cat_dep){.column = "price", .kind = MIG_DEP_CONSTRAINT, .name = "checks_price_pos",
                                   .describe = "constraint checks_price_pos on table checks", .contype = 'c',
                                   .deptype = 'a', .oid = 10, .validated = 1,
                                   .carry = "CHECK ((_pgtandem_price >= (0)::numeric))"};
    deps[1] = (struct mig_cat_dep){.column = "price", .kind = MIG_DEP_INDEX, .name = "checks_open_price",
                                   .describe = "index checks_open_price", .deptype = 'a', .oid = 11,
                                   .carry = "USING btree (_pgtandem_price) WHERE (status = 'open'::text)"};
    deps[2] = (struct mig_cat_dep){.column = "price", .kind = MIG_DEP_VIEW, .name = "prices",
                                   .describe = "view prices", .deptype = 'n', .oid = 12,
                                   .carry = "CREATE VIEW public.prices AS  SELECT checks.price FROM checks",
                                   .carry_drop = "DROP VIEW public.prices"};
    *t = (struct mig_cat_table){.schema = "public", .name = "checks", .exists = 1, .cols = cols, .ncols = 2,
                                .pk = pk, .pk_types = pk_types, .npk = 1, .idx = idx, .nidx = 1,
                                .deps = deps, .ndeps = 3};
    *cat = (struct mig_catalog){.tables = t, .n = 1};
}

static const char *RETYPE_PRICE =
    "{\"name\": \"rt\", \"operations\": ["
    " {\"alter_column\": {\"table\": \"checks\", \"column\": \"price\", \"type\": \"numeric\","
    "  \"up\": \"price::numeric\", \"down\": \"price::text\"}}]}";

static void test_retype_carries_rehearsed(void)
{
    struct mig_cat_dep deps[3];
    struct mig_cat_table t;
    struct mig_catalog cat;
    fill_catalog(deps, &t, &cat);
    struct migration m;
    struct mig_plan p;
    char err[1024] = "";
    if (mig_parse(RETYPE_PRICE, strlen(RETYPE_PRICE), "t.json", &m, err, sizeof err) != 0 ||
        mig_plan_build(&m, &cat, &p, err, sizeof err) != 0) {
        printf("FAIL retype plan (%s)\n", err);
        CHECK("retype: plan builds", 0);
        return;
    }
    CHECK("retype: CHECK added NOT VALID over the second column under a temporary name",
          steps_contain(&p.expand, "ADD CONSTRAINT \"pgtandem_cc000_0_rt\" CHECK ((_pgtandem_price >= (0)::numeric)) "
                                   "NOT VALID"));
    CHECK("retype: CHECK validated after the backfill",
          steps_contain(&p.validate, "VALIDATE CONSTRAINT \"pgtandem_cc000_0_rt\""));
    CHECK("retype: CHECK given its name after the old column is dropped",
          step_at(&p.contract, "RENAME CONSTRAINT \"pgtandem_cc000_0_rt\" TO \"checks_price_pos\"") >
          step_at(&p.contract, "DROP COLUMN \"price\""));
    long ix = step_at(&p.expand, "CREATE INDEX CONCURRENTLY \"pgtandem_ix000_0_rt\" ON \"public\".\"checks\" "
                                 "USING btree (_pgtandem_price) WHERE");
    CHECK("retype: partial index built CONCURRENTLY outside a transaction",
          ix >= 0 && p.expand.v[ix].mode == MIG_STEP_ALONE && p.expand.v[ix].cleanup);
    CHECK("retype: index renamed at contract",
          steps_contain(&p.contract, "ALTER INDEX \"public\".\"pgtandem_ix000_0_rt\" RENAME TO \"checks_open_price\""));
    long drop_view = step_at(&p.contract, "DROP VIEW public.prices");
    long drop_col = step_at(&p.contract, "DROP COLUMN \"price\"");
    long rename = step_at(&p.contract, "RENAME COLUMN \"_pgtandem_price\" TO \"price\"");
    long create_view = step_at(&p.contract, "CREATE VIEW public.prices");
    CHECK("retype: view dropped before the column, created again after the rename",
          drop_view >= 0 && drop_view < drop_col && drop_col < rename && rename < create_view);
    CHECK("retype: rollback leaves views alone", step_at(&p.rollback, "VIEW") < 0);
    size_t listed = 0;
    for (size_t i = 0; i < p.ncarried; i++)
        listed += strstr(p.carried[i], "checks_price_pos") || strstr(p.carried[i], "checks_open_price") ||
                  strstr(p.carried[i], "view prices: dropped at contract");
    CHECK("retype: plan lists the three carried dependents", listed == 3);
    mig_plan_free(&p);
    mig_free(&m);
}

/* A catalog for "checks": key id, claim_text, an identity column and a
 * generated one. */
static struct mig_cat_column CAT_COLS[] = {
    {.name = "id", .type = "bigint", .notnull = 1, .stattarget = -1},
    {.name = "claim_text", .type = "text", .stattarget = -1},
    {.name = "seq_no", .type = "bigint", .notnull = 1, .stattarget = -1, .identity = 'd'},
    {.name = "price_len", .type = "integer", .default_expr = "length(price)", .stattarget = -1, .generated = 's'},
};
static char *CAT_PK[] = {"id"}, *CAT_PK_TYPES[] = {"bigint"};
static struct mig_cat_table CAT_TABLE = {.schema = "public", .name = "checks", .exists = 1, .cols = CAT_COLS,
                                         .ncols = 4, .pk = CAT_PK, .pk_types = CAT_PK_TYPES, .npk = 1};
static const struct mig_catalog CAT = {.tables = &CAT_TABLE, .n = 1};

static int refusal(const char *ops, char *err, size_t errlen)
{
    char text[1024];
    snprintf(text, sizeof text, "{\"name\": \"r\", \"operations\": [%s]}", ops);
    struct migration m;
    struct mig_plan p;
    int rc = mig_parse(text, strlen(text), "t.json", &m, err, errlen);
    if (rc == 0)
        rc = mig_plan_build(&m, &CAT, &p, err, errlen);
    if (rc == 0)
        mig_plan_free(&p);
    mig_free(&m);
    return rc;
}

static void test_retype_refuses_identity_and_generated(void)
{
    char err[1024];
    int rc = refusal("{\"alter_column\": {\"table\": \"checks\", \"column\": \"seq_no\", \"type\": \"numeric\","
                     " \"up\": \"seq_no::numeric\", \"down\": \"seq_no::bigint\"}}", err, sizeof err);
    CHECK("identity: a change of type is refused, naming the column and why",
          rc != 0 && strstr(err, "operations[0].alter_column") && strstr(err, "\"seq_no\"") &&
          strstr(err, "identity column (GENERATED BY DEFAULT AS IDENTITY)"));
    rc = refusal("{\"rename_column\": {\"table\": \"checks\", \"from\": \"price_len\", \"to\": \"n\","
                 " \"type\": \"bigint\", \"up\": \"price_len::bigint\", \"down\": \"n::int\"}}", err, sizeof err);
    CHECK("generated: a change of type is refused, with its expression and what to do",
          rc != 0 && strstr(err, "generated column (GENERATED ALWAYS AS (length(price)) STORED)") &&
          strstr(err, "drop_column"));
    rc = refusal("{\"rename_column\": {\"table\": \"checks\", \"from\": \"seq_no\", \"to\": \"ordinal\"}}",
                 err, sizeof err);
    CHECK("identity: a rename that keeps the type is carried", rc == 0);
}

static void test_version_view_shows_the_kept_original(void)
{
    static const char *text =
        "{\"name\": \"vv\", \"operations\": ["
        " {\"rename_column\": {\"table\": \"checks\", \"from\": \"claim_text\", \"to\": \"claim\"}}]}";
    char err[512];
    struct migration m;
    struct mig_plan p;
    if (mig_parse(text, strlen(text), "t.json", &m, err, sizeof err) != 0 ||
        mig_plan_build(&m, &CAT, &p, err, sizeof err) != 0) {
        printf("FAIL plan (%s)\n", err);
        CHECK("view: plan builds", 0);
        mig_free(&m);
        return;
    }
    CHECK("view: the new name is the original column, so writes reach it (UPDATE OF triggers fire)",
          steps_contain(&p.expand, "SELECT \"id\", \"claim_text\" AS \"claim\", \"seq_no\", \"price_len\" FROM"));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_retype_refuses_what_postgres_refused(void)
{
    struct mig_cat_dep deps[3];
    struct mig_cat_table t;
    struct mig_catalog cat;
    fill_catalog(deps, &t, &cat);
    deps[0].carry = NULL;
    deps[0].refusal = "on the new type numeric Postgres refuses it (function length(numeric) does not exist); "
                      "drop it ... create_constraint";
    struct migration m;
    struct mig_plan p;
    char err[1024] = "";
    if (mig_parse(RETYPE_PRICE, strlen(RETYPE_PRICE), "t.json", &m, err, sizeof err) != 0) {
        CHECK("refuse: parses", 0);
        return;
    }
    int rc = mig_plan_build(&m, &cat, &p, err, sizeof err);
    CHECK("refuse: the plan is refused", rc != 0);
    CHECK("refuse: the message names the operation, the constraint and Postgres's reason",
          strstr(err, "operations[0].alter_column") && strstr(err, "checks_price_pos") &&
          strstr(err, "length(numeric) does not exist"));
    if (rc == 0)
        mig_plan_free(&p);
    mig_free(&m);
}

int main(void)
{
    test_retype_carries_rehearsed();
    test_retype_refuses_what_postgres_refused();
    test_rename_keeps_original();
    test_rename_with_copy();
    test_later_index_takes_the_copy();
    test_rename_default();
    test_index_after_alter_column();
    test_retype_refuses_identity_and_generated();
    test_version_view_shows_the_kept_original();
    return UNIT_RESULT();
}
