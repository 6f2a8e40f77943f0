/* delete_rows: a data migration's DELETE of existing rows (those "where"
 * picks; every row without it), run by the backfill after expand in keyset
 * batches, throttled, resumable and under the latency budget: never one
 * statement that holds every row it deletes until the whole table is
 * done. Both releases see the rows go as the batches pass; a rollback does
 * not bring them back (data is not part of the shape it restores).
 *
 * A batch deletes or updates, not both: an operation of the migration that
 * fills or updates the same table (a backfill, update_rows), or changes its
 * columns, is refused beside it. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"


static int changes_the_table(const struct mig_op *o, const struct mig_op *op)
{
    (void)op;
    return o->kind == MIG_RENAME_COLUMN || o->kind == MIG_ALTER_COLUMN || o->kind == MIG_DROP_COLUMN ||
           o->kind == MIG_RENAME_TABLE || o->kind == MIG_DROP_TABLE || o->kind == MIG_ADD_COLUMN ||
           o->kind == MIG_UPDATE_ROWS || o->kind == MIG_DELETE_ROWS;
}

static int refuse_other_batches(struct plan_ctx *c, const struct mig_op *op)
{
    size_t i;
    const struct mig_op *o = other_op_on_table(c, op, changes_the_table, &i);
    if (o)
        return op_error(c, op, "operations[%zu].%s also changes \"%s.%s\", whose rows this one deletes in "
                        "batches: put the delete in a migration of its own, before or after this one", (size_t)o->index,
                        mig_op_name(o->kind), op->schema, op->table);
    return 0;
}

/* A foreign key referencing the table that an operation before this one
 * drops: offline it is gone when the DELETE runs; online it stays until
 * the contract (the old release relies on it), so the batches would meet
 * its ON DELETE action (SET NULL, CASCADE: rows the offline DELETE leaves
 * as they are) or its refusal (after the expand). Refused before any DDL. */
static int refuse_key_dropped_before(struct plan_ctx *c, const struct mig_op *op)
{
    const struct mig_cat_table *t = table_of(c, op->schema, op->table);
    for (size_t i = 0; t && i < t->nrefs; i++) {
        const struct mig_op *o = removes_fkey(c, op, &t->refs[i], 0);
        if (o && o->kind == MIG_DROP_CONSTRAINT)
            return op_error(c, op, "operations[%d].drop_constraint drops the foreign key \"%s\" of \"%s.%s\" "
                            "referencing this table before this DELETE, as offline; online the key stays until the "
                            "contract, and the batches would meet its ON DELETE action or refusal where the offline "
                            "DELETE does not. Put the DELETE in a migration after this one", o->index,
                            t->refs[i].name, t->refs[i].schema, t->refs[i].table);
    }
    return 0;
}

static int plan_delete_rows(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_key(c, op, op->table) || refuse_other_batches(c, op) ||
        refuse_key_dropped_before(c, op))
        return -1;
    if (made_by(c, op->schema, op->table))
        return op_error(c, op, "table \"%s.%s\" is created by this migration: its rows are this migration's own; "
                        "write the DELETE as an \"sql\" operation", op->schema, op->table);
    add_data_delete(c, op, op->table, op->where);
    return 0;
}

const struct mig_op_def op_delete_rows = {
    .kind = MIG_DELETE_ROWS, .plan = plan_delete_rows, .changes_columns = 0,
};
