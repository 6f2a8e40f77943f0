/* rename_enum_value: refused. ALTER TYPE ... RENAME VALUE changes the label
 * for every session at once, so the old release would read and have to
 * write the new label the moment it runs, whenever it runs: there is no
 * moment at which each release sees the label it expects, and the value is
 * one catalog row shared by both (no second column can hold the other
 * name, as rename_column does for a column). What serves both releases is
 * a change of the data instead: add the new value (add_enum_value), move
 * the rows to it with alter_column and up / down mapping old to new and
 * back, and stop writing the old value; Postgres cannot remove a value, so
 * the old label stays unused. Refused in every plan, with or without a
 * catalog, before any DDL. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

static int plan_rename_enum_value(struct plan_ctx *c, const struct mig_op *op)
{
    return op_error(c, op, "renaming value \"%s\" of type \"%s.%s\" to \"%s\" cannot run online: the rename "
                    "reaches both releases at once, so the old release would read \"%s\" where it expects \"%s\" "
                    "(and fail writing \"%s\") from the start. Instead add the new value (add_enum_value \"%s\"), "
                    "move the rows with alter_column on each column of the type (\"up\": CASE col WHEN '%s' THEN "
                    "'%s' ELSE col END, \"down\" the reverse), and let the old value go unused (Postgres cannot "
                    "remove an enum value); or run the rename by hand in a maintenance window",
                    op->from, op->schema, op->name, op->to, op->to, op->from, op->from, op->to, op->from, op->to);
}

const struct mig_op_def op_rename_enum_value = {
    .kind = MIG_RENAME_ENUM_VALUE, .plan = plan_rename_enum_value, .changes_columns = 0,
};
