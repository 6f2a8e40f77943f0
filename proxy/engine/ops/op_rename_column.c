/* rename_column: the column gets a new name, and may get a new type or new
 * values ("type", "up", "down").
 *
 * A rename that keeps the values (no up or down, the same type or none, and
 * no later operation of the migration building on the new name) moves no
 * data. Expand takes nothing but the shapes' views: the new release reads
 * and writes the column under its new name, the old release under its old
 * one. The contract renames it, which is exactly the offline RENAME COLUMN
 * (unless a migration built on this one has renamed it already, at its
 * own expand: plan_on_shape.c):
 * every index, constraint, foreign key in either direction, view, grant,
 * comment, default and statistics target follows, and the column keeps its
 * position and statistics. With "copy": true a plain copy column under the
 * new name is kept in step on the table too (a trigger, a backfill), for
 * writers that bypass both shapes' views; the contract drops it first.
 *
 * A rename that changes the values takes a second column under the new
 * name (plan_carry.c): expand adds it with the column's dependents, the
 * tandem rule's trigger gives an old-shape write the new column from `up`
 * and a new-shape write the old column from `down`, and the backfill fills
 * the rows written before expand. The contract drops the original, and the
 * views reading it are created again while the new column still wears the
 * old name, so that the rename after makes Postgres write `new AS old` as
 * an offline rename does. The rollback drops the second column. */
#include "ops/op.h"
#include "migration_flight.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static int retypes(const struct plan_ctx *c, const struct mig_op *op)
{
    const char *old_type = column_type(c, op->schema, op->table, op->from);
    return op->type && !(old_type && strcmp(old_type, op->type) == 0);
}

/* A rename that keeps the values moves no data: the new shape's view shows
 * the column under its new name (view_item), the old shape's under its
 * old one, and the contract renames it in the catalog, as an offline
 * RENAME COLUMN does, so every index, constraint, view, grant, comment,
 * default and statistics target follows it. With "copy": true, a second
 * column under the new name is also kept in step on the table itself (a
 * trigger and a backfill write every row once), for writers that use the
 * base table by the new name while bypassing both shapes' views; the
 * contract drops it and renames the original all the same. */
static int plan_rename_keeping_original(struct plan_ctx *c, const struct mig_op *op)
{
    if (op->copy) {
        struct shadow_spec sp = {op->table, op->from, op->to, NULL, NULL, NULL, 0, 0, 0, 0, 1};
        struct mig_steps deferred = {0};
        if (expand_second_column(c, op, &sp, &deferred) != 0)
            return -1;
        add_alter(&c->p->contract, op, op->table, "DROP COLUMN", op->to, "");
        append_steps(&c->p->contract, &deferred);
        add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", op->to, "");
    }
    if (retypes(c, op)) {
        struct mig_str t = {0};
        mig_str_addf(&t, " TYPE %s", op->type);
        char *tail = mig_str_take(&t);
        add_alter(&c->p->contract, op, op->table, "ALTER COLUMN", op->from, tail ? tail : "");
        free(tail);
    }
    if (mig_op_renames_plainly(op))
        add_rename_column_unless_done(&c->p->contract, op, op->table, op->from, op->to);
    else
        add_rename_column(&c->p->contract, op, op->table, op->from, op->to);
    if (op->has_default)
        add_set_default(&c->p->contract, op, op->table, op->to, op->default_expr);
    char how[256];
    snprintf(how, sizeof how, "renames column \"%.60s\" to \"%.60s\" at contract%s%s", op->from, op->to,
             retypes(c, op) ? " and changes its type in the catalog" : "",
             op->copy ? " (a copy column under the new name until then)" : ", moving no data");
    carried(c, op, "%s: its indexes, constraints, views, grants, comment, default and statistics follow it",
            how, "");
    return 0;
}

static void rename_column_twice(struct plan_ctx *c, const struct mig_op *op, const char *name,
                                const char *meanwhile, struct mig_steps *between)
{
    add_rename_column(&c->p->contract, op, op->table, name, meanwhile);
    append_steps(&c->p->contract, between);
    add_rename_column(&c->p->contract, op, op->table, meanwhile, name);
}

/* An earlier rename of this migration that gave `col` of the table its
 * name with a second column (one a later operation builds on), or NULL. */
static const struct mig_op *second_column_rename(const struct plan_ctx *c, const struct mig_op *op,
                                                 const char *col)
{
    for (size_t i = (size_t)op->index; i-- > 0;) {
        const struct mig_op *o = &c->m->ops[i];
        if (o->kind == MIG_RENAME_COLUMN && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) &&
            !strcmp(o->to, col))
            return rename_keeps_original(c, o) && !o->copy ? NULL : o;
    }
    return NULL;
}

static int plan_rename_column(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table) || require_column(c, op, op->table, op->from) ||
        require_no_column(c, op, op->table, op->to))
        return -1;
    /* Moving no data, it needs no key to walk and may rename a key column. */
    if (rename_keeps_original(c, op) && !op->copy)
        return plan_rename_keeping_original(c, op);
    if (require_key(c, op, op->table))
        return -1;
    if (key_uses(c, op, op->table, op->from))
        return op_error(c, op, "\"%s\" is part of the key of \"%s\"; renaming a key column while changing "
                        "its values (a type, up/down, \"copy\") is not supported; rename it on its own",
                        op->from, op->table);
    if (rename_keeps_original(c, op))
        return plan_rename_keeping_original(c, op);
    /* A second column filled from another: one backfill UPDATE reads the
     * first as it was before the statement (still empty), and the catalog's
     * dependents of the original are carried to the first only. Two plain
     * renames with nothing between them join (migration_renames_joined.c);
     * these do not. */
    const struct mig_op *before = second_column_rename(c, op, op->from);
    if (before)
        return op_error(c, op, "renames \"%s\", which operations[%d] renamed \"%s\" to, and operations "
                        "build on both names: online each name would be a second column filled from the one "
                        "before it, which the backfill has not filled yet; rename \"%s\" once, to \"%s\", and "
                        "name it so in the operations between",
                        op->from, before->index, before->from, before->from, op->to);
    if (refuse_uncarried_dependents(c, op, op->table, op->from, 0))
        return -1;
    struct shadow_spec sp = {op->table, op->from, op->to, op->type, op->up, op->down, !op->has_default, 1, 1, 1, 0};
    struct mig_steps deferred = {0};
    if (expand_second_column(c, op, &sp, &deferred) != 0)
        return -1;
    set_new_default(c, op, op->to);
    struct mig_steps views = {0};
    if (contract_second_column(c, op, op->from, &deferred, &views) != 0)
        return -1;
    if (views.n > 0) {
        /* The views are created while the new column wears the old name, so
         * the rename after makes Postgres write `new AS old` in them, as an
         * offline RENAME COLUMN does. */
        rename_column_twice(c, op, op->to, op->from, &views);
    }
    add_alter(&c->p->rollback, op, op->table, "DROP COLUMN IF EXISTS", op->to, "");
    return 0;
}

const struct mig_op_def op_rename_column = {
    .kind = MIG_RENAME_COLUMN, .plan = plan_rename_column, .changes_columns = 1,
};
