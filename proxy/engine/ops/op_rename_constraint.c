/* rename_constraint: the old release keeps the name it knows until the
 * contract, which renames it: a change of the catalog alone. Postgres
 * renames the index behind a unique, primary key or exclusion constraint
 * with it, as offline.
 *
 * Refused before any DDL, as the offline ALTER TABLE ... RENAME CONSTRAINT
 * would be at the contract: a constraint that does not exist, one a
 * partition inherits from its parent, a new name another constraint of the
 * table has (42710), and, for a constraint with an index, a new name a
 * relation of the schema has (the index could not take it). */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <stdlib.h>
#include <string.h>

static int refuse_from(struct plan_ctx *c, const struct mig_op *op, const struct constraint_now *k)
{
    if (k->gone_by)
        return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" is gone by then: operations[%d].%s takes it "
                        "away first", op->from, op->schema, op->table, k->gone_by->index,
                        mig_op_name(k->gone_by->kind));
    if (!k->exists)
        return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" does not exist, and Postgres would refuse "
                        "the RENAME CONSTRAINT (42704) at the contract; check its name (pg_constraint lists them)",
                        op->from, op->schema, op->table);
    if (k->cat && k->cat->inherited)
        return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" is inherited from its parent table, and "
                        "Postgres refuses to rename it on one partition or child (cannot rename inherited "
                        "constraint); rename it on the parent table", op->from, op->schema, op->table);
    return 0;
}

static int has_index(const struct constraint_now *k)
{
    return k->contype == 'p' || k->contype == 'u' || k->contype == 'x';
}

static int refuse_to(struct plan_ctx *c, const struct mig_op *op, const struct constraint_now *from)
{
    struct constraint_now k;
    constraint_now(c, op, op->table, op->to, &k);
    if (k.exists)
        return op_error(c, op, "constraint \"%s\" for relation \"%s\" already exists, and Postgres would refuse "
                        "the rename (42710) at the contract; pick another name, or drop that constraint earlier "
                        "in this migration", op->to, op->table);
    if (has_index(from) && k.cat && k.cat->relation_taken && !k.gone_by)
        return op_error(c, op, "relation \"%s\" already exists in schema \"%s\": Postgres renames the index of %s "
                        "constraint \"%s\" with it, and would refuse (42P07) at the contract; pick another name",
                        op->to, op->schema, constraint_kind_name(from->contype), op->from);
    return 0;
}

static int plan_rename_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    if (c->cat) {
        struct constraint_now from;
        constraint_now(c, op, op->table, op->from, &from);
        if (refuse_from(c, op, &from) || refuse_to(c, op, &from))
            return -1;
    }
    struct mig_str s = {0};
    mig_str_add(&s, " TO ");
    mig_str_ident(&s, op->to);
    char *tail = mig_str_take(&s);
    add_alter(&c->p->contract, op, op->table, "RENAME CONSTRAINT", op->from, tail ? tail : "");
    free(tail);
    return 0;
}

const struct mig_op_def op_rename_constraint = {
    .kind = MIG_RENAME_CONSTRAINT, .plan = plan_rename_constraint, .changes_columns = 0,
};
