/* Unit tests of a migration planned on the shape of one in flight below it
 * (plan_on_shape.c), against a catalog written by hand: users after p1's
 * expand (name renamed to full_name in p1's views, email retyped into a
 * second column) with p1's view read back as the shape. The views of a
 * migration built on it show p1's names and hide what p1 hides; its
 * triggers read no column p1's contract renames or drops; naming such a
 * column, reading the whole row, or changing the table otherwise than by
 * its columns is refused; a change of a column p1's triggers read gets
 * its trigger run twice, around p1's; and
 * the rule between two migrations in flight on one table
 * (mig_flight_unbuildable_table) leaves the columns to the plan when a
 * shape is read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_catalog.h"
#include "migration_dependents.h"
#include "migration_flight.h"
#include "migration_names.h"
#include "migration_plan.h"
#include "unit.h"
#include "unit_steps.h"

static char shadow[80];
static char *pk_cols[] = {"id"};
static char *pk_types[] = {"bigint"};
static struct mig_cat_column cols[] = {
    {.name = "id", .type = "bigint", .notnull = 1, .stattarget = -1},
    {.name = "name", .type = "text", .notnull = 1, .stattarget = -1},
    {.name = "email", .type = "text", .stattarget = -1},
    {.name = shadow, .type = "character varying(320)", .stattarget = -1},
};
static struct mig_cat_index keyed[] = {{.name = "users_pkey", .method = "btree", .constraint = "users_pkey",
                                        .unique = 1, .primary = 1, .simple = 1}};
static struct mig_cat_shape_col shape[] = {{"id", "id"}, {"name", "full_name"}, {shadow, "email"}};

static int build(const char *ops, struct mig_cat_shape_col *sh, size_t nsh, struct migration *m,
                 struct mig_plan *p, char *err, size_t errlen)
{
    char text[4096];
    snprintf(text, sizeof text, "{\"name\": \"p2\", \"parent\": \"p1\", \"operations\": [%s]}", ops);
    if (mig_parse(text, strlen(text), "p2.json", m, err, errlen) != 0) {
        printf("  parse: %s\n", err);
        return -2;
    }
    struct mig_cat_table t = {.schema = "public", .name = "users", .exists = 1, .relkind = 'r', .cols = cols,
                              .ncols = 4, .pk = pk_cols, .pk_types = pk_types, .npk = 1, .idx = keyed, .nidx = 1, .trigger_rank = 1,
                              .shape_of = sh ? "p1" : NULL, .shape = sh, .nshape = nsh};
    struct mig_catalog cat = {.tables = &t, .n = 1};
    int rc = mig_plan_build(m, &cat, p, err, errlen);
    if (rc != 0)
        mig_free(m);
    return rc;
}

static void test_views_and_triggers(void)
{
    struct migration m;
    struct mig_plan p;
    char err[1024] = "", want[256];
    const char *ops = "{\"add_column\": {\"table\": \"users\", \"up\": \"(id % 3)::int\","
                      " \"column\": {\"name\": \"tier\", \"type\": \"int\", \"nullable\": false, \"default\": \"0\"}}},"
                      "{\"create_index\": {\"table\": \"users\", \"name\": \"users_tier_idx\", \"columns\": [\"tier\"]}}";
    if (build(ops, shape, 3, &m, &p, err, sizeof err) != 0) {
        CHECK("on a shape: an add plans", 0);
        printf("  %s\n", err);
        return;
    }
    snprintf(want, sizeof want, "AS SELECT \"id\", \"name\" AS \"full_name\", \"%s\" AS \"email\" FROM", shadow);
    CHECK("old shape: p1's new shape, p1's names, without what p1 hides", steps_contain(&p.expand, want));
    snprintf(want, sizeof want, "AS SELECT \"id\", \"name\" AS \"full_name\", \"%s\" AS \"email\", \"tier\" FROM",
             shadow);
    CHECK("new shape: p1's with the column p2 adds", steps_contain(&p.expand, want));
    CHECK("the trigger reads the columns p1 keeps", steps_contain(&p.expand, "\"id\" bigint := NEW.\"id\""));
    CHECK("and none p1's contract renames", !steps_contain(&p.expand, "NEW.\"name\""));
    snprintf(want, sizeof want, "NEW.\"%s\"", shadow);
    CHECK("or drops and renames (p1's second column, p1's old email)",
          !steps_contain(&p.expand, want) && !steps_contain(&p.expand, "NEW.\"email\""));
    CHECK("the index on the table as it is", steps_contain(&p.expand, "ON \"public\".\"users\""));
    mig_plan_free(&p);
    mig_free(&m);

    /* the shape of a migration below that only adds is the table: nothing changes */
    static struct mig_cat_shape_col same[] = {{"id", "id"}, {"name", "name"}, {"email", "email"}, {shadow, shadow}};
    if (build(ops, same, 4, &m, &p, err, sizeof err) != 0) {
        CHECK("on the table's own shape: an add plans", 0);
        printf("  %s\n", err);
        return;
    }
    CHECK("the table's own shape: the trigger binds the column its up reads, no other",
          steps_contain(&p.expand, "\"id\" bigint := NEW.\"id\"") && !steps_contain(&p.expand, "NEW.\"name\""));
    snprintf(want, sizeof want, "AS SELECT \"id\", \"name\", \"email\", \"%s\" FROM", shadow);
    CHECK("the table's own shape: the old view is the table", steps_contain(&p.expand, want));
    mig_plan_free(&p);
    mig_free(&m);
}

static int refused(const char *op, const char *said)
{
    struct migration m;
    struct mig_plan p;
    char err[1024] = "";
    if (build(op, shape, 3, &m, &p, err, sizeof err) == 0) {
        mig_plan_free(&p);
        mig_free(&m);
        printf("  planned: %s\n", op);
        return 0;
    }
    if (!strstr(err, said))
        printf("  said: %s\n", err);
    return strstr(err, said) != NULL;
}

static void test_refusals(void)
{
    CHECK("refused: an up reading the name p1 renames to",
          refused("{\"add_column\": {\"table\": \"users\", \"up\": \"upper(full_name)\", \"column\": {\"name\": \"s\","
                  " \"type\": \"text\"}}}", "names column \"full_name\" of \"users\", which migration p1, in flight"
                  " below p2, renames, retypes or drops"));
    CHECK("refused: an up reading the name p1 renames away",
          refused("{\"add_column\": {\"table\": \"users\", \"up\": \"name\", \"column\": {\"name\": \"s\","
                  " \"type\": \"text\"}}}", "names column \"name\""));
    CHECK("refused: an index of the column p1 retypes",
          refused("{\"create_index\": {\"table\": \"users\", \"name\": \"e\", \"columns\": [\"email\"]}}",
                  "names column \"email\""));
    CHECK("refused: an index whose predicate reads it",
          refused("{\"create_index\": {\"table\": \"users\", \"name\": \"e\", \"columns\": [\"id\"],"
                  " \"where\": \"full_name IS NOT NULL\"}}", "names column \"full_name\""));
    CHECK("refused: a column added under a name p1 shows",
          refused("{\"add_column\": {\"table\": \"users\", \"column\": {\"name\": \"full_name\", \"type\": \"text\"}}}",
                  "names column \"full_name\""));
    CHECK("refused: an up reading the whole row",
          refused("{\"add_column\": {\"table\": \"users\", \"up\": \"row_to_json(users)::text\", \"column\":"
                  " {\"name\": \"s\", \"type\": \"text\"}}}", "reads a whole row of \"users\""));
    CHECK("refused: a change of the table that is not of its columns",
          refused("{\"create_constraint\": {\"table\": \"users\", \"type\": \"check\", \"check\": \"id > 0\"}}",
                  "a migration built on it may only add, rename, retype or drop columns of that table"));
    CHECK("refused: a rename to a name p1 shows",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"id\", \"to\": \"full_name\"}}",
                  "names column \"full_name\""));
}

/* p1's triggers read `id` (as a `down` of p1 that reads it would): p2 may
 * still retype it, with its trigger run twice, the `down` before p1's and
 * the `up` after; a column p1 neither changes nor reads, p2 retypes with
 * one trigger after p1's. */
static void test_changes_what_below_reads(void)
{
    struct migration m;
    struct mig_plan p;
    char err[1024] = "", text[512], want[256];
    char *reads[] = {"name", "full_name", "email", "id"};
    snprintf(text, sizeof text, "{\"name\": \"p2\", \"parent\": \"p1\", \"operations\": [{\"alter_column\":"
             " {\"table\": \"users\", \"column\": \"id\", \"type\": \"numeric\", \"up\": \"id::numeric\","
             " \"down\": \"id::bigint\"}}]}");
    if (mig_parse(text, strlen(text), "p2.json", &m, err, sizeof err) != 0) {
        CHECK("retype: parses", 0);
        return;
    }
    struct mig_cat_table t = {.schema = "public", .name = "users", .exists = 1, .relkind = 'r', .cols = cols,
                              .ncols = 4, .pk = pk_cols, .pk_types = pk_types, .npk = 1, .idx = keyed, .nidx = 1,
                              .shape_of = "p1", .shape = shape, .nshape = 3, .shape_reads = reads,
                              .nshape_reads = 4, .reads_of = "p1", .trigger_rank = 1};
    struct mig_catalog cat = {.tables = &t, .n = 1};
    int rc = mig_plan_build(&m, &cat, &p, err, sizeof err);
    if (rc != 0)
        printf("  %s\n", err);
    CHECK("a retype of a column p1's triggers read plans on p1's shape", rc == 0);
    CHECK("its `down` runs first, before p1's (tf... before tg...)",
          rc == 0 && steps_contain(&p.expand, "CREATE TRIGGER \"pgtandem_tfz000_p2\"") &&
              steps_contain(&p.expand, "EXECUTE FUNCTION \"pgtandem\".\"p2_0\"('down')"));
    CHECK("its `up` after p1's",
          rc == 0 && steps_contain(&p.expand, "CREATE TRIGGER \"pgtandem_tga000_p2\"") &&
              steps_contain(&p.expand, "EXECUTE FUNCTION \"pgtandem\".\"p2_0\"('up')"));
    CHECK("each returns on a writer of the other direction",
          rc == 0 && steps_contain(&p.expand, "IF (TG_ARGV[0] = 'down') IS DISTINCT FROM pgt_new_shape THEN"));
    CHECK("contract and rollback drop both",
          rc == 0 && steps_contain(&p.rollback, "DROP TRIGGER IF EXISTS \"pgtandem_tfz000_p2\"") &&
              steps_contain(&p.contract, "DROP TRIGGER IF EXISTS \"pgtandem_tfz000_p2\"") &&
              steps_contain(&p.contract, "DROP TRIGGER IF EXISTS \"pgtandem_tga000_p2\""));
    if (rc == 0)
        mig_plan_free(&p);
    /* a column p1 does not name: one trigger, after p1's */
    t.nshape_reads = 3;
    rc = mig_plan_build(&m, &cat, &p, err, sizeof err);
    CHECK("a retype of a column p1 keeps and does not read plans on p1's shape", rc == 0);
    CHECK("with one trigger after p1's, both directions",
          rc == 0 && !steps_contain(&p.expand, "pgtandem_tfz") && !steps_contain(&p.expand, "TG_ARGV") &&
              steps_contain(&p.expand, "EXECUTE FUNCTION \"pgtandem\".\"p2_0\"()"));
    if (rc == 0)
        mig_plan_free(&p);
    t.retyped_in_place = "email";
    rc = mig_plan_build(&m, &cat, &p, err, sizeof err);
    CHECK("refused: on a table p1 may retype in place at its complete",
          rc != 0 && strstr(err, "retypes column \"email\" of \"users\" without up or down"));
    t.retyped_in_place = NULL;
    rc = mig_plan_build(&m, &cat, &p, err, sizeof err);
    if (rc != 0)
        printf("  %s\n", err);
    snprintf(want, sizeof want, "\"name\" AS \"full_name\", \"%s\" AS \"email\"", shadow);
    CHECK("and its views show p1's names", rc == 0 && steps_contain(&p.expand, want));
    if (rc == 0)
        mig_plan_free(&p);
    mig_free(&m);
}

static void test_buildable(void)
{
    static const char *const users[] = {"public.users"};
    static const char *const users_orders[] = {"public.orders", "public.users"};
    struct mig_flight p1 = {"p1", NULL, MIG_PH_ACTIVE, users, 1, 0, users, 1};
    struct mig_flight adds = {"p2", "p1", MIG_PH_IDLE, users, 1, 1, users, 1};
    struct mig_flight more = {"p2", "p1", MIG_PH_IDLE, users, 1, 0, users, 1};
    /* a retype of orders.user_id moves a key of users: its plan touches users, its operations do not */
    struct mig_flight carried = {"p2", "p1", MIG_PH_IDLE, users_orders, 2, 0, users_orders, 1};
    int any;
    CHECK("buildable: one that adds, on the shape of one that renames",
          mig_flight_unbuildable_table(&adds, &p1, 1, &any) == NULL);
    CHECK("not buildable: one that adds, where no shape is read (start DIR --each)",
          mig_flight_unbuildable_table(&adds, &p1, 0, &any) != NULL);
    CHECK("buildable: one that does more, on the shape of one that does more (the plan judges its columns)",
          mig_flight_unbuildable_table(&more, &p1, 1, &any) == NULL);
    CHECK("not buildable: one that does more, where no shape is read",
          mig_flight_unbuildable_table(&more, &p1, 0, &any) != NULL);
    const char *t = mig_flight_unbuildable_table(&carried, &p1, 1, &any);
    CHECK("not buildable: on a table only its plan's statements touch", t && !strcmp(t, "public.users"));
}

static int apart(const char *below_ops, const char *ops, char *why)
{
    char a[1024], b[1024], err[256];
    struct migration o, m;
    snprintf(a, sizeof a, "{\"name\": \"p1\", \"operations\": [%s]}", below_ops);
    snprintf(b, sizeof b, "{\"name\": \"p2\", \"parent\": \"p1\", \"operations\": [%s]}", ops);
    if (mig_parse(a, strlen(a), "p1.json", &o, err, sizeof err) != 0 ||
        mig_parse(b, strlen(b), "p2.json", &m, err, sizeof err) != 0) {
        printf("  parse: %s\n", err);
        return -1;
    }
    int rc = mig_flight_columns_apart(&m, &o, "public.users", why, 512);
    mig_free(&o);
    mig_free(&m);
    return rc;
}

/* The same rule read from two files, before either starts (start DIR --each). */
static void test_columns_apart(void)
{
    static const char *const p1 = "{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\"}},"
                                  "{\"alter_column\": {\"table\": \"users\", \"column\": \"email\", \"type\": \"text\","
                                  " \"up\": \"lower(email || note)\", \"down\": \"email\"}}";
    char why[512] = "";
    CHECK("apart: other columns retyped, renamed, added",
          apart(p1, "{\"alter_column\": {\"table\": \"users\", \"column\": \"score\", \"type\": \"bigint\"}},"
                    "{\"rename_column\": {\"table\": \"users\", \"from\": \"id\", \"to\": \"uid\"}},"
                    "{\"add_column\": {\"table\": \"users\", \"column\": {\"name\": \"t\", \"type\": \"int\"}}}",
                why) == 0);
    CHECK("apart: the name p1 renames to plainly, p1's trigger reading other columns (the rename moves to p2's"
          " expand)", apart(p1, "{\"drop_column\": {\"table\": \"users\", \"column\": \"full_name\"}}", why) == 0);
    CHECK("apart: the name a plain rename renames to, beside an index (the rename moves to p2's expand)",
          apart("{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\"}},"
                "{\"create_index\": {\"table\": \"users\", \"name\": \"e\", \"columns\": [\"email\"]}}",
                "{\"drop_column\": {\"table\": \"users\", \"column\": \"full_name\"}}", why) == 0);
    CHECK("apart: a plain rename of the column p1 retypes into a second column",
          apart("{\"alter_column\": {\"table\": \"users\", \"column\": \"email\", \"type\": \"varchar(320)\","
                " \"up\": \"email\", \"down\": \"email\"}}",
                "{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\"}}", why) == 0);
    CHECK("not apart: that rename beside an up reading the new name",
          apart("{\"alter_column\": {\"table\": \"users\", \"column\": \"email\", \"type\": \"varchar(320)\","
                " \"up\": \"email\", \"down\": \"email\"}}",
                "{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\"}},"
                "{\"add_column\": {\"table\": \"users\", \"up\": \"lower(contact)\", \"column\": {\"name\":"
                " \"e2\", \"type\": \"text\"}}}", why) == 1 && strstr(why, "names column \"email\""));
    CHECK("not apart: the name p1 renames away",
          apart(p1, "{\"drop_column\": {\"table\": \"users\", \"column\": \"name\"}}", why) == 1 &&
              strstr(why, "operations[0].drop_column of p2 names column \"name\" of public.users, which p1"
                          " renames, retypes or drops"));
    CHECK("not apart: the new name of a rename that changes the values",
          apart("{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\","
                " \"type\": \"varchar(80)\", \"up\": \"left(name, 80)\", \"down\": \"full_name\"}}",
                "{\"drop_column\": {\"table\": \"users\", \"column\": \"full_name\"}}", why) == 1 &&
              strstr(why, "names column \"full_name\""));
    CHECK("not apart: the new name of a plain rename whose old name p1's trigger reads",
          apart("{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\"}},"
                "{\"add_column\": {\"table\": \"users\", \"up\": \"upper(name)\", \"column\": {\"name\":"
                " \"shout\", \"type\": \"text\"}}}",
                "{\"drop_column\": {\"table\": \"users\", \"column\": \"full_name\"}}", why) == 1 &&
              strstr(why, "names column \"full_name\""));
    CHECK("not apart: the column p1 retypes, read by an up",
          apart(p1, "{\"add_column\": {\"table\": \"users\", \"up\": \"email\", \"column\": {\"name\": \"t\","
                    " \"type\": \"text\"}}}", why) == 1 && strstr(why, "names column \"email\""));
    CHECK("apart: a column p1's up reads, renamed (p2's triggers run around p1's)",
          apart(p1, "{\"rename_column\": {\"table\": \"users\", \"from\": \"note\", \"to\": \"remark\"}}", why) == 0);
    CHECK("not apart: more than column changes",
          apart(p1, "{\"create_constraint\": {\"table\": \"users\", \"type\": \"check\", \"check\": \"id > 0\"}}",
                why) == 1 && strstr(why, "otherwise than by its columns"));
    CHECK("not apart: p1 retypes a column without up or down (in place, under the views built on it)",
          apart("{\"alter_column\": {\"table\": \"users\", \"column\": \"email\", \"type\": \"varchar(400)\"}}",
                "{\"add_column\": {\"table\": \"users\", \"column\": {\"name\": \"t\", \"type\": \"int\"}}}",
                why) == 1 && strstr(why, "p1 retypes column \"email\" of public.users without up or down"));
    CHECK("not apart: a whole row, where p1 changes columns",
          apart(p1, "{\"add_column\": {\"table\": \"users\", \"up\": \"row_to_json(users)::text\", \"column\":"
                    " {\"name\": \"t\", \"type\": \"text\"}}}", why) == 1 && strstr(why, "reads a whole row"));
}

/* m planned on users as the table is (cols), no migration below. */
static int build_on_table(const struct migration *m, struct mig_plan *p, char *err)
{
    struct mig_cat_table t = {.schema = "public", .name = "users", .exists = 1, .relkind = 'r', .cols = cols,
                              .ncols = 3, .pk = pk_cols, .pk_types = pk_types, .npk = 1, .idx = keyed, .nidx = 1};
    struct mig_catalog cat = {.tables = &t, .n = 1};
    int rc = mig_plan_build(m, &cat, p, err, 1024);
    if (rc != 0)
        mig_free((struct migration *)m);
    return rc;
}

/* p1's rename of name to full_name (with `more` in the operation), planned
 * on the table: its contract's rename step, or NULL. Caller frees. */
static char *contract_rename(const char *more)
{
    char text[512], err[1024] = "";
    snprintf(text, sizeof text, "{\"name\": \"p1\", \"operations\": [{\"rename_column\": {\"table\": \"users\","
             " \"from\": \"name\", \"to\": \"full_name\"%s}}]}", more);
    struct migration m;
    struct mig_plan p;
    if (mig_parse(text, strlen(text), "p1.json", &m, err, sizeof err) != 0 || build_on_table(&m, &p, err) != 0) {
        printf("  %s\n", err);
        return NULL;
    }
    long r = step_at(&p.contract, "RENAME COLUMN \"name\" TO \"full_name\"");
    char *step = r >= 0 ? strdup(p.contract.v[r].sql) : NULL;
    mig_plan_free(&p);
    mig_free(&m);
    return step;
}

/* p1 renamed name to full_name plainly; p2 retypes full_name: the catalog
 * as the loader leaves it, the rename brought forward (the column already
 * under its new name, `forward` saying it is so from p2's expand on). */
static void test_forward_rename(void)
{
    static struct mig_cat_column fcols[] = {
        {.name = "id", .type = "bigint", .notnull = 1, .stattarget = -1},
        {.name = "full_name", .type = "text", .notnull = 1, .stattarget = -1},
    };
    static struct mig_cat_shape_col fshape[] = {{"id", "id"}, {"full_name", "full_name"}};
    static struct mig_cat_forward fwd[] = {{"name", "full_name", "p1"}};
    const char *text = "{\"name\": \"p2\", \"parent\": \"p1\", \"operations\": [{\"alter_column\": {\"table\":"
                       " \"users\", \"column\": \"full_name\", \"type\": \"varchar(80)\", \"up\": \"upper(full_name)\","
                       " \"down\": \"lower(full_name)\"}}]}";
    struct migration m;
    struct mig_plan p;
    char err[1024] = "";
    if (mig_parse(text, strlen(text), "p2.json", &m, err, sizeof err) != 0) {
        CHECK("forward: parses", 0);
        return;
    }
    struct mig_cat_table t = {.schema = "public", .name = "users", .exists = 1, .relkind = 'r', .cols = fcols,
                              .ncols = 2, .pk = pk_cols, .pk_types = pk_types, .npk = 1, .idx = keyed, .nidx = 1,
                              .trigger_rank = 1, .shape_of = "p1", .shape = fshape, .nshape = 2, .forward = fwd,
                              .nforward = 1};
    struct mig_catalog cat = {.tables = &t, .n = 1};
    if (mig_plan_build(&m, &cat, &p, err, sizeof err) != 0) {
        CHECK("forward: a retype of the name p1 renames to plans", 0);
        printf("  %s\n", err);
        mig_free(&m);
        return;
    }
    long renamed = step_at(&p.expand, "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"name\" TO \"full_name\"");
    CHECK("forward: the expand renames the column first", renamed == 0);
    CHECK("forward: before the old shape's view, which reads the new name",
          step_at(&p.expand, "AS SELECT \"id\", \"full_name\" FROM") > renamed);
    CHECK("forward: the trigger reads the new name", steps_contain(&p.expand, "NEW.\"full_name\""));
    long back = step_at(&p.rollback, "RENAME COLUMN \"full_name\" TO \"name\"");
    CHECK("forward: the rollback renames it back last, unless p1 completed",
          back == (long)p.rollback.n - 1 && strstr(p.rollback.v[back].sql, "name = 'p1' AND status = 'completed'") &&
              strstr(p.rollback.v[back].sql, "attname = 'full_name'"));
    CHECK("forward: the contract drops the column and gives its name to the second one",
          steps_contain(&p.contract, "DROP COLUMN \"full_name\"") &&
              steps_contain(&p.contract, "TO \"full_name\""));
    mig_plan_free(&p);
    mig_free(&m);

    /* p1's own plan: its plain rename's contract finds it done */
    char *step = contract_rename("");
    CHECK("plain rename: the contract renames unless the column is renamed already",
          step && strstr(step, "DO $pgtandem$ BEGIN IF NOT (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE"
                               " attrelid = '\"public\".\"users\"'::regclass AND attname = 'name'"));
    free(step);
    step = contract_rename(", \"type\": \"text\"");
    CHECK("a rename with a type: never brought forward, renamed as it is", step && !strstr(step, "DO $pgtandem$"));
    free(step);
}

/* A plain rename of the column p1 retypes into a second column: in p2's
 * contract alone, after p1's has given the second column the name. */
static void test_rename_in_contract_only(void)
{
    struct migration m;
    struct mig_plan p;
    char err[1024] = "", want[256];
    if (build("{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\"}}", shape, 3, &m,
              &p, err, sizeof err) != 0) {
        CHECK("a plain rename of the column p1 retypes plans", 0);
        printf("  %s\n", err);
        return;
    }
    snprintf(want, sizeof want, "AS SELECT \"id\", \"name\" AS \"full_name\", \"%s\" AS \"contact\" FROM", shadow);
    CHECK("its new shape: p1's second column under the new name", steps_contain(&p.expand, want));
    snprintf(want, sizeof want, "AS SELECT \"id\", \"name\" AS \"full_name\", \"%s\" AS \"email\" FROM", shadow);
    CHECK("its old shape: p1's new shape", steps_contain(&p.expand, want));
    CHECK("its contract renames the name p1's contract gives the column",
          steps_contain(&p.contract, "RENAME COLUMN \"email\" TO \"contact\""));
    snprintf(want, sizeof want, "\"%s\" TO", shadow);
    CHECK("never p1's second column, which p1's contract renames", !steps_contain(&p.contract, want) &&
              !steps_contain(&p.expand, "RENAME COLUMN"));
    CHECK("no trigger of its own", !steps_contain(&p.expand, "CREATE TRIGGER"));
    mig_plan_free(&p);
    mig_free(&m);
    CHECK("refused: the same rename with a type",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\","
                  " \"type\": \"text\", \"up\": \"email\", \"down\": \"contact\"}}", "names column \"email\""));
    CHECK("refused: the rename beside an up reading the new name",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\"}},"
                  "{\"add_column\": {\"table\": \"users\", \"up\": \"lower(contact)\", \"column\": {\"name\":"
                  " \"e2\", \"type\": \"text\"}}}", "names column \"email\""));
    CHECK("refused: the rename beside an index of the column",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"email\", \"to\": \"contact\"}},"
                  "{\"create_index\": {\"table\": \"users\", \"name\": \"e\", \"columns\": [\"email\"]}}",
                  "names column \"email\""));
    CHECK("refused: a rename of a column p1 hides",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"n2\"}}",
                  "names column \"name\""));
    CHECK("refused: a plain rename of the name p1 renames to, its rename not brought forward",
          refused("{\"rename_column\": {\"table\": \"users\", \"from\": \"full_name\", \"to\": \"display\"}}",
                  "names column \"full_name\""));
}

int main(void)
{
    mig_shadow_name(shadow, sizeof shadow, "email");
    test_views_and_triggers();
    test_refusals();
    test_changes_what_below_reads();
    test_buildable();
    test_columns_apart();
    test_forward_rename();
    test_rename_in_contract_only();
    return UNIT_RESULT();
}
