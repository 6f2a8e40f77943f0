/* sql: the author's statements, run as written: with "on": "start" in the
 * expand (and its "down" in the rollback), with "on": "complete" inside the
 * contract's transaction. With "new_shape" too, a statement that runs at
 * complete also runs at start with the new version's schema first on the
 * search_path: what it creates by an unqualified name lands in that
 * schema, where only the new release looks, and reads the tables through
 * the new shape's views. That is how a view dropped and made again in one
 * migration gives each release its own (the old one keeps the old view
 * until the contract drops it and makes the new one where everyone
 * looks); the rollback drops the version schema, and the view with it. */
#include "ops/op.h"
#include "migration_plan.h"
#include "migration_names.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

/* The statement with the version schema first on the search_path, which
 * is put back as it was for the steps after it in the same transaction. */
static char *in_new_shape(const struct plan_ctx *c, const char *stmt)
{
    char schema[80];
    mig_version_schema(c->m->name, schema, sizeof schema);
    char *q = mig_quote_ident(schema);
    if (!q)
        return NULL; /* the plan's oom flag is set by mig_steps_add */
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT set_config('pgtandem.path_before', current_setting('search_path'), true),"
                    " set_config('search_path', '");
    for (const char *p = q; *p; p++) /* the quoted name as a string literal's text */
        mig_str_add(&s, *p == '\'' ? "''" : (char[]){*p, '\0'});
    mig_str_addf(&s, ", ' || current_setting('search_path'), true);\n%s;\n"
                     "SELECT set_config('search_path', current_setting('pgtandem.path_before'), true)", stmt);
    free(q);
    return mig_str_take(&s);
}

static int plan_sql(struct plan_ctx *c, const struct mig_op *op)
{
    struct mig_steps *l = op->on == MIG_ON_START ? &c->p->expand : &c->p->contract;
    mig_steps_add(l, op->index, MIG_STEP_TXN, strdup(op->up));
    if (op->down && op->on == MIG_ON_START)
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, strdup(op->down));
    if (op->new_shape && op->on == MIG_ON_COMPLETE)
        mig_steps_add(&c->new_shape_sql, op->index, MIG_STEP_TXN, in_new_shape(c, op->up));
    return 0;
}

const struct mig_op_def op_sql = {
    .kind = MIG_SQL, .plan = plan_sql, .changes_columns = 0,
};
