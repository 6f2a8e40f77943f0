/* create_table: the table, with its columns' constraints and comments, is
 * created at expand. The old release does not know it (its shape has no
 * view of it), the new release uses it; later operations of the migration
 * build on it (remember_table). The contract has nothing to do; the
 * rollback drops it. */
#include "op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

static int plan_create_table(struct plan_ctx *c, const struct mig_op *op)
{
    if (c->cat && table_exists(c, op->schema, op->table))
        return op_error(c, op, "table \"%s.%s\" already exists", op->schema, op->table);
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TABLE ");
    mig_str_qname(&s, op->schema, op->table);
    mig_str_add(&s, " (\n");
    for (size_t i = 0; i < op->ncols; i++) {
        const struct mig_column *col = &op->cols[i];
        mig_str_add(&s, "  ");
        column_definition(&s, col, 1);
        if (col->primary_key == 1)
            mig_str_add(&s, " PRIMARY KEY");
        if (col->nullable == 0 && col->primary_key != 1)
            mig_str_add(&s, " NOT NULL");
        if (col->unique == 1)
            mig_str_add(&s, " UNIQUE");
        if (col->check)
            mig_str_addf(&s, " CHECK (%s)", col->check);
        if (col->references)
            references_clause(&s, op->schema, col->references);
        mig_str_add(&s, i + 1 < op->ncols ? ",\n" : "\n");
    }
    mig_str_add(&s, ")");
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, mig_str_take(&s));
    for (size_t i = 0; i < op->ncols; i++)
        if (op->cols[i].comment)
            add_comment(c, op, op->table, op->cols[i].name, op->cols[i].comment);
    struct mig_str r = {0};
    mig_str_add(&r, "DROP TABLE IF EXISTS ");
    mig_str_qname(&r, op->schema, op->table);
    mig_steps_add(&c->p->rollback, op->index, MIG_STEP_TXN, mig_str_take(&r));
    remember_table(c, op);
    return 0;
}

const struct mig_op_def op_create_table = {
    .kind = MIG_CREATE_TABLE, .plan = plan_create_table, .changes_columns = 0,
};
