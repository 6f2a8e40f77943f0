/* update_rows: a data migration's UPDATE of existing rows ("column" = "up"
 * on the rows "where" picks), run by the backfill in keyset batches after
 * expand, throttled and resumable like it, under the latency budget:
 * never as one statement that locks every row it touches for as long as
 * the whole table takes. One operation per column an UPDATE sets; those of
 * one UPDATE run in the same batches, so a row gets them together.
 *
 * The column is the table's own, the same in both shapes: an operation of
 * the migration that changes the table's columns (a rename, a type, a
 * drop, an add with its own fill) is refused beside it, since a batch
 * would write under the tandem triggers of a shape it was not written
 * for. Both releases see the rows change as the batches go. A rollback
 * keeps what the batches changed: data is not part of the shape it
 * restores. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

/* What a batch of this update cannot share the table with: a change of
 * its columns, a delete, or another update of the same column (a batch is
 * one UPDATE: it sets a column once; an update of another column joins
 * the same batches). */
static int changes_columns_or_rows(const struct mig_op *o, const struct mig_op *op)
{
    (void)op;
    return o->kind == MIG_RENAME_COLUMN || o->kind == MIG_ALTER_COLUMN || o->kind == MIG_DROP_COLUMN ||
           o->kind == MIG_RENAME_TABLE || o->kind == MIG_DROP_TABLE || (o->kind == MIG_ADD_COLUMN && o->up) ||
           o->kind == MIG_DELETE_ROWS;
}

static int updates_the_same_column(const struct mig_op *o, const struct mig_op *op)
{
    return o->kind == MIG_UPDATE_ROWS && o < op && !strcmp(o->column, op->column);
}

static int refuse_sharing(struct plan_ctx *c, const struct mig_op *op)
{
    size_t i;
    const struct mig_op *o = other_op_on_table(c, op, changes_columns_or_rows, &i);
    if (o)
        return op_error(c, op, "operations[%zu].%s changes the columns or rows of \"%s.%s\", which this "
                        "update writes in batches: put the update in a migration of its own, before or after "
                        "this one", (size_t)o->index, mig_op_name(o->kind), op->schema, op->table);
    if ((o = other_op_on_table(c, op, updates_the_same_column, &i)))
        return op_error(c, op, "operations[%zu].update_rows already sets \"%s\": a column is updated once per "
                        "migration; fold the two into one expression (CASE WHEN ...) or put the second in a "
                        "migration of its own", (size_t)o->index, op->column);
    return 0;
}

static int plan_update_rows(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column) ||
        require_key(c, op, op->table) || refuse_sharing(c, op))
        return -1;
    if (made_by(c, op->schema, op->table))
        return op_error(c, op, "table \"%s.%s\" is created by this migration: its rows are this migration's own; "
                        "write the UPDATE as an \"sql\" operation", op->schema, op->table);
    if (key_uses(c, op, op->table, op->column))
        return op_error(c, op, "\"%s\" is part of the key the batches walk \"%s.%s\" by; update it in an \"sql\" "
                        "operation of a migration of its own", op->column, op->schema, op->table);
    add_data_update(c, op, op->table, op->column, column_type(c, op->schema, op->table, op->column), op->up,
                    op->where);
    return 0;
}

const struct mig_op_def op_update_rows = {
    .kind = MIG_UPDATE_ROWS, .plan = plan_update_rows, .changes_columns = 0,
};
