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

static int refuse_column_changes(struct plan_ctx *c, const struct mig_op *op)
{
    for (size_t i = 0; i < c->m->nops; i++) {
        const struct mig_op *o = &c->m->ops[i];
        const char *table = o->kind == MIG_RENAME_TABLE ? o->from : o->table;
        int changes = o->kind == MIG_RENAME_COLUMN || o->kind == MIG_ALTER_COLUMN || o->kind == MIG_DROP_COLUMN ||
                      o->kind == MIG_RENAME_TABLE || o->kind == MIG_DROP_TABLE ||
                      (o->kind == MIG_ADD_COLUMN && o->up) || o->kind == MIG_DELETE_ROWS;
        if (changes && table && !strcmp(table, op->table) && !strcmp(o->schema, op->schema))
            return op_error(c, op, "operations[%zu].%s changes the columns or rows of \"%s.%s\", which this "
                            "update writes in batches: put the update in a migration of its own, before or after "
                            "this one", i, mig_op_name(o->kind), op->schema, op->table);
    }
    return 0;
}

/* A batch is one UPDATE: it can set a column once. */
static int refuse_second_update(struct plan_ctx *c, const struct mig_op *op)
{
    for (size_t i = 0; i < c->m->nops && &c->m->ops[i] != op; i++) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_UPDATE_ROWS && !strcmp(o->table, op->table) && !strcmp(o->schema, op->schema) &&
            !strcmp(o->column, op->column))
            return op_error(c, op, "operations[%zu].update_rows already sets \"%s\": a column is updated once per "
                            "migration; fold the two into one expression (CASE WHEN ...) or put the second in a "
                            "migration of its own", i, op->column);
    }
    return 0;
}

static int plan_update_rows(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->column) ||
        require_key(c, op, op->table) || refuse_column_changes(c, op) || refuse_second_update(c, op))
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
