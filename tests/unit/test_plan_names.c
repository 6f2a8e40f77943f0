/* Unit tests of the names a plan gives the constraints a migration leaves
 * unnamed, against a catalog written by hand: Postgres's names for the
 * offline statement (t_c_check, t_c_key, t_c_fkey, t_pkey), the next free
 * one when a name is taken in the schema or by an earlier operation, and
 * the 63-byte truncation of the longer part; and the steps of a primary
 * key built online (index CONCURRENTLY, NOT NULL proven by a check,
 * attached at contract) and its refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_catalog.h"
#include "migration_plan.h"
#include "unit.h"
#include "unit_steps.h"

static char *rels[] = {"items", "items_a_key", "items_pkey_x"};
static char *cons[] = {"items_a_check", "items_a_check1", "items_a_key"};
static char *pk_cols[] = {"id"};
static struct mig_cat_column cols[] = {
    {.name = "id", .type = "bigint", .notnull = 1, .stattarget = -1},
    {.name = "a", .type = "integer", .stattarget = -1},
    {.name = "b", .type = "integer", .stattarget = -1},
};
static struct mig_cat_index keyed[] = {{.name = "items_pkey", .method = "btree", .constraint = "items_pkey",
                                        .unique = 1, .primary = 1, .simple = 1}};

static void catalog(struct mig_catalog *cat, struct mig_cat_table *t, struct mig_cat_names *nm, int with_pk,
                    char relkind)
{
    memset(cat, 0, sizeof *cat);
    memset(t, 0, sizeof *t);
    *nm = (struct mig_cat_names){.schema = "public", .rels = rels, .nrels = 3, .cons = cons, .ncons = 3};
    *t = (struct mig_cat_table){.schema = "public", .name = "items", .exists = 1, .relkind = relkind,
                                .cols = cols, .ncols = 3};
    if (with_pk) {
        t->pk = pk_cols;
        t->npk = 1;
        t->idx = keyed;
        t->nidx = 1;
    }
    cat->tables = t;
    cat->n = 1;
    cat->names = nm;
    cat->nnames = 1;
}

static int build(const char *ops, int with_pk, char relkind, struct migration *m, struct mig_plan *p, char *err,
                 size_t errlen)
{
    char text[4096];
    snprintf(text, sizeof text, "{\"name\": \"names\", \"operations\": [%s]}", ops);
    if (mig_parse(text, strlen(text), "t.json", m, err, errlen) != 0) {
        printf("  parse: %s\n", err);
        return -2;
    }
    struct mig_catalog cat;
    struct mig_cat_table t;
    struct mig_cat_names nm;
    catalog(&cat, &t, &nm, with_pk, relkind);
    int rc = mig_plan_build(m, &cat, p, err, errlen);
    if (rc != 0)
        mig_free(m);
    return rc;
}

static void test_names_as_offline(void)
{
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    const char *ops =
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"check\", \"check\": \"a > 0\"}},"
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"check\", \"check\": \"a < b\"}},"
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"unique\", \"columns\": [\"a\"]}},"
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"unique\", \"columns\": [\"a\", \"b\"]}},"
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"foreign_key\", \"columns\": [\"b\"],"
        "  \"references\": {\"table\": \"items\", \"columns\": [\"id\"]}}},"
        "{\"add_column\": {\"table\": \"items\", \"column\": {\"name\": \"c\", \"type\": \"int\", \"check\": \"c > 0\","
        "  \"unique\": true, \"references\": \"items(id)\"}}},"
        "{\"create_constraint\": {\"table\": \"items\", \"type\": \"check\", \"check\": \"a > 1\"}}";
    if (build(ops, 1, 'r', &m, &p, err, sizeof err) != 0) {
        CHECK("names: plan builds", 0);
        printf("  %s\n", err);
        return;
    }
    CHECK("check: the next free number after the taken ones",
          steps_contain(&p.expand, "ADD CONSTRAINT \"items_a_check2\" CHECK (a > 0) NOT VALID"));
    CHECK("check of two columns: after the table alone", steps_contain(&p.expand, "\"items_check\" CHECK (a < b)"));
    CHECK("unique: a relation or constraint of the name is skipped",
          steps_contain(&p.contract, "ADD CONSTRAINT \"items_a_key1\" UNIQUE USING INDEX \"pgtandem_uq002_names\""));
    CHECK("unique of two columns", steps_contain(&p.contract, "\"items_a_b_key\" UNIQUE USING INDEX"));
    CHECK("unique index built CONCURRENTLY under its temporary name",
          steps_contain(&p.expand, "CREATE UNIQUE INDEX CONCURRENTLY \"pgtandem_uq002_names\""));
    CHECK("foreign key", steps_contain(&p.expand, "ADD CONSTRAINT \"items_b_fkey\" FOREIGN KEY (\"b\")"));
    CHECK("add_column check", steps_contain(&p.expand, "ADD CONSTRAINT \"items_c_check\" CHECK (c > 0) NOT VALID"));
    CHECK("add_column foreign key", steps_contain(&p.expand, "ADD CONSTRAINT \"items_c_fkey\" FOREIGN KEY (\"c\")"));
    CHECK("add_column unique", steps_contain(&p.contract, "ADD CONSTRAINT \"items_c_key\" UNIQUE USING INDEX "
                                                          "\"pgtandem_uq005_names\""));
    CHECK("a name an earlier operation chose is skipped", steps_contain(&p.expand, "\"items_a_check3\" CHECK (a > 1)"));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_long_names(void)
{
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    /* 40 + 40 bytes: the longer part is cut first, then both alike, to 63 bytes with "_key" */
    const char *ops =
        "{\"create_table\": {\"table\": \"tttttttttttttttttttttttttttttttttttttttt\", \"columns\": ["
        "  {\"name\": \"cccccccccccccccccccccccccccccccccccccccc\", \"type\": \"int\"}]}},"
        "{\"create_constraint\": {\"table\": \"tttttttttttttttttttttttttttttttttttttttt\", \"type\": \"unique\","
        "  \"columns\": [\"cccccccccccccccccccccccccccccccccccccccc\"]}},"
        "{\"create_constraint\": {\"table\": \"tttttttttttttttttttttttttttttttttttttttt\", \"type\": \"unique\","
        "  \"columns\": [\"cccccccccccccccccccccccccccccccccccccccc\"]}}";
    if (build(ops, 1, 'r', &m, &p, err, sizeof err) != 0) {
        CHECK("long: plan builds", 0);
        printf("  %s\n", err);
        return;
    }
    CHECK("truncated to 63 bytes", steps_contain(&p.contract, "ADD CONSTRAINT \"ttttttttttttttttttttttttttttt_"
                                                 "ccccccccccccccccccccccccccccc_key\" UNIQUE"));
    CHECK("the second gets key1, truncated again", steps_contain(&p.contract, "ADD CONSTRAINT \"ttttttttttttttttttttttttttttt_"
                                                                         "cccccccccccccccccccccccccccc_key1\""));
    mig_plan_free(&p);
    mig_free(&m);
}

static void test_primary_key(void)
{
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    const char *pk = "{\"create_constraint\": {\"table\": \"items\", \"type\": \"primary_key\", \"columns\": [\"a\", \"b\"]}}";
    if (build(pk, 0, 'r', &m, &p, err, sizeof err) != 0) {
        CHECK("pk: plan builds", 0);
        printf("  %s\n", err);
        return;
    }
    CHECK("pk: index built CONCURRENTLY", steps_contain(&p.expand, "CREATE UNIQUE INDEX CONCURRENTLY "
                                                                   "\"pgtandem_pk000_names\" ON \"public\".\"items\""));
    CHECK("pk: NOT NULL as a check on each column", steps_contain(&p.expand, "\"pgtandem_nn000_0_names\" CHECK (\"a\" "
                                                                             "IS NOT NULL) NOT VALID") &&
          steps_contain(&p.expand, "\"pgtandem_nn000_1_names\" CHECK (\"b\" IS NOT NULL) NOT VALID"));
    CHECK("pk: checks validated", steps_contain(&p.validate, "VALIDATE CONSTRAINT \"pgtandem_nn000_1_names\""));
    long setnn = step_at(&p.contract, "ALTER COLUMN \"b\" SET NOT NULL");
    long attach = step_at(&p.contract, "ADD CONSTRAINT \"items_pkey\" PRIMARY KEY USING INDEX \"pgtandem_pk000_names\"");
    CHECK("pk: SET NOT NULL, then the index attached as items_pkey", setnn >= 0 && attach > setnn);
    CHECK("pk: rollback drops index and checks", steps_contain(&p.rollback, "DROP INDEX CONCURRENTLY IF EXISTS "
                                                                            "\"public\".\"pgtandem_pk000_names\"") &&
          steps_contain(&p.rollback, "DROP CONSTRAINT IF EXISTS \"pgtandem_nn000_0_names\""));
    mig_plan_free(&p);
    mig_free(&m);

    CHECK("pk: refused on a table that has one", build(pk, 1, 'r', &m, &p, err, sizeof err) == -1 &&
          strstr(err, "already has a primary key (items_pkey)"));
    CHECK("pk: refused on a partitioned table", build(pk, 0, 'p', &m, &p, err, sizeof err) == -1 &&
          strstr(err, "is partitioned") && strstr(err, "CONCURRENTLY"));
    const char *missing = "{\"create_constraint\": {\"table\": \"items\", \"type\": \"primary_key\", \"columns\": [\"z\"]}}";
    CHECK("pk: refused on a missing column", build(missing, 0, 'r', &m, &p, err, sizeof err) == -1 &&
          strstr(err, "column \"z\" does not exist"));
    char twice[1024];
    snprintf(twice, sizeof twice, "%s, %s", pk, pk);
    CHECK("pk: refused twice in one migration", build(twice, 0, 'r', &m, &p, err, sizeof err) == -1 &&
          strstr(err, "operations[1].create_constraint: operations[0] already gives"));
}

/* A table renamed twice is the catalog's table under
 * the name the first rename took it from: a later operation finds its
 * columns under its last name. */
static void test_renamed_twice(void)
{
    struct migration m;
    struct mig_plan p;
    char err[512] = "";
    const char *twice =
        "{\"rename_table\": {\"from\": \"items\", \"to\": \"goods\"}},"
        "{\"rename_table\": {\"from\": \"goods\", \"to\": \"wares\"}},"
        "{\"rename_column\": {\"table\": \"wares\", \"from\": \"a\", \"to\": \"qty\"}}";
    int rc = build(twice, 1, 'r', &m, &p, err, sizeof err);
    CHECK("renamed twice: its columns found under the last name", rc == 0);
    if (rc == 0) {
        mig_plan_free(&p);
        mig_free(&m);
    } else {
        printf("  err: %s\n", err);
    }
    const char *missing =
        "{\"rename_table\": {\"from\": \"items\", \"to\": \"goods\"}},"
        "{\"rename_table\": {\"from\": \"goods\", \"to\": \"wares\"}},"
        "{\"rename_column\": {\"table\": \"wares\", \"from\": \"z\", \"to\": \"qty\"}}";
    CHECK("renamed twice: a column it does not have is still refused",
          build(missing, 1, 'r', &m, &p, err, sizeof err) == -1 &&
          strstr(err, "column \"z\" does not exist in table \"public.wares\""));
}

int main(void)
{
    test_renamed_twice();
    test_names_as_offline();
    test_long_names();
    test_primary_key();
    return UNIT_RESULT();
}
