/* rename_table: the table is renamed at expand and a view under the old
 * name keeps the old release working (simple views are updatable); the new
 * release uses the new name. The contract drops the view; the rollback
 * drops it and gives the table its old name back. Later operations of the
 * migration address the table by its new name (remember_table). */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static char *sqlf_table(const struct mig_op *op, const char *table, const char *fmt_after)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, fmt_after);
    return mig_str_take(&s);
}

static int plan_rename_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->from))
        return -1;
    if (c->cat && table_exists(c, op->schema, op->to))
        return op_error(c, op, "table \"%s.%s\" already exists", op->schema, op->to);
    struct mig_str r = {0};
    mig_str_add(&r, " RENAME TO ");
    mig_str_ident(&r, op->to);
    char *tail = mig_str_take(&r);
    char *sql = sqlf_table(op, op->from, tail ? tail : "");
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, sql);
    free(tail);
    struct mig_str v = {0};
    mig_str_add(&v, "CREATE VIEW ");
    mig_str_qname(&v, op->schema, op->from);
    mig_str_add(&v, " WITH (security_invoker = true) AS SELECT * FROM ");
    mig_str_qname(&v, op->schema, op->to);
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&v));
    struct mig_str d = {0};
    mig_str_add(&d, "DROP VIEW IF EXISTS ");
    mig_str_qname(&d, op->schema, op->from);
    char *drop_view = mig_str_take(&d);
    mig_steps_add(&c->p->contract, op->index, MIG_STEP_TXN, drop_view ? strdup(drop_view) : NULL);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, drop_view);
    struct mig_str b = {0};
    mig_str_add(&b, "ALTER TABLE IF EXISTS ");
    mig_str_qname(&b, op->schema, op->to);
    mig_str_add(&b, " RENAME TO ");
    mig_str_ident(&b, op->from);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, mig_str_take(&b));
    remember_table(c, op);
    return 0;
}

const struct mig_op_def op_rename_table = {
    .kind = MIG_RENAME_TABLE, .plan = plan_rename_table, .changes_columns = 0,
};
