/* drop_index: both releases keep the index while the migration runs. It
 * goes once the contract has committed, CONCURRENTLY: a plain DROP INDEX
 * takes ACCESS EXCLUSIVE on its table, and inside the contract it would
 * wait there, holding the cutover, for every query using it. */
#include "op.h"
#include "plan_ctx.h"

static int plan_drop_index(struct plan_ctx *c, const struct mig_op *op)
{
    mig_steps_add(&c->p->post, op->index, MIG_STEP_ALONE, drop_index_sql(op->schema, op->name, 1));
    return 0;
}

const struct mig_op_def op_drop_index = {
    .kind = MIG_DROP_INDEX, .plan = plan_drop_index, .changes_columns = 0,
};
