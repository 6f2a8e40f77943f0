/* sql: the author's statements, run as written: with "on": "start" in the
 * expand (and its "down" in the rollback), with "on": "complete" inside the
 * contract's transaction. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

static int plan_sql(struct plan_ctx *c, const struct mig_op *op)
{
    struct mig_steps *l = op->on == MIG_ON_START ? &c->p->expand : &c->p->contract;
    mig_steps_add(l, op->index, MIG_STEP_TXN, strdup(op->up));
    if (op->down && op->on == MIG_ON_START)
        mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, strdup(op->down));
    return 0;
}

const struct mig_op_def op_sql = {
    .kind = MIG_SQL, .plan = plan_sql, .changes_columns = 0,
};
