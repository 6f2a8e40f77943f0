/* Unit tests of the contract each rename chooses: a rename that keeps the
 * type keeps the original column (drops the copy, renames the original, so
 * every dependent follows); a rename that a later operation builds on, or
 * that changes the type, takes the second column; "default" is accepted by
 * rename_column; an index created after an alter_column of its column is
 * built on the column that survives the contract; a change of type refuses
 * identity and generated columns; the version view shows a kept original
 * under its new name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"
#include "unit.h"

static int steps_contain(const struct mig_steps *l, const char *needle)
{
    for (size_t i = 0; i < l->n; i++)
        if (strstr(l->v[i].sql, needle))
            return 1;
    return 0;
}

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
    CHECK("keep: contract drops the copy", steps_contain(&p.contract, "DROP COLUMN \"claim\""));
    CHECK("keep: contract renames the original",
          steps_contain(&p.contract, "RENAME COLUMN \"claim_text\" TO \"claim\""));
    CHECK("keep: the original is never dropped", !steps_contain(&p.contract, "DROP COLUMN \"claim_text\""));
    CHECK("keep: nothing is copied onto the copy",
          !steps_contain(&p.expand, "SET DEFAULT") && !steps_contain(&p.expand, "COMMENT ON") &&
          !steps_contain(&p.expand, "NOT VALID"));
    CHECK("keep: rollback drops the copy", steps_contain(&p.rollback, "DROP COLUMN IF EXISTS \"claim\""));
    CHECK("keep: plan says so", p.ncarried == 1 && strstr(p.carried[0], "keeps column \"claim_text\""));
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

int main(void)
{
    test_rename_keeps_original();
    test_later_index_takes_the_copy();
    test_rename_default();
    test_index_after_alter_column();
    test_retype_refuses_identity_and_generated();
    test_version_view_shows_the_kept_original();
    return UNIT_RESULT();
}
