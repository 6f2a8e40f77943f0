/* drop_table: both releases keep the table while the migration runs; the
 * contract drops it. A foreign key of another table referencing it would
 * make Postgres refuse that DROP TABLE (2BP01) at the contract, after the
 * new release is out: refused before any DDL instead, unless an earlier
 * operation of the migration takes the key away (drops it, its table, or
 * one of its columns). */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>

static int refuse_referenced(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    for (size_t i = 0; t && i < t->nrefs; i++) {
        const struct mig_cat_ref *f = &t->refs[i];
        if (removes_fkey(c, op, f, 0))
            continue;
        struct mig_str s = {0};
        mig_str_add(&s, "ALTER TABLE ");
        mig_str_qname(&s, f->schema, f->table);
        mig_str_add(&s, " DROP CONSTRAINT ");
        mig_str_ident(&s, f->name);
        char *fix = mig_str_take(&s);
        op_error(c, op, "cannot drop table \"%s.%s\" because other objects depend on it: constraint \"%s\" on "
                 "table \"%s.%s\" is a foreign key referencing it, and Postgres refuses the DROP TABLE (2BP01) "
                 "at the contract, after the new release is out. Drop that constraint in an earlier migration "
                 "(an \"sql\" operation: %s), or drop table \"%s.%s\" too, earlier in this migration",
                 op->schema, op->table, f->name, f->schema, f->table, fix ? fix : "ALTER TABLE ... DROP CONSTRAINT",
                 f->schema, f->table);
        free(fix);
        return -1;
    }
    return 0;
}

static int plan_drop_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || refuse_referenced(c, op))
        return -1;
    struct mig_str s = {0};
    mig_str_add(&s, "DROP TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, mig_str_take(&s));
    return 0;
}

const struct mig_op_def op_drop_table = {
    .kind = MIG_DROP_TABLE, .plan = plan_drop_table, .changes_columns = 0,
};
