/* drop_table: both releases keep the table while the migration runs; the
 * contract drops it. */
#include "op.h"
#include "plan_ctx.h"

static int plan_drop_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
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
