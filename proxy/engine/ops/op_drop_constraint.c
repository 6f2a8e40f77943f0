/* drop_constraint: both releases keep the constraint while the migration
 * runs (the old release may rely on it: an ON CONFLICT on a unique key, a
 * foreign key's cascade); the contract drops it, a change of the catalog
 * alone (the index behind a unique or primary key goes with it). Rows the
 * new release writes before complete are still checked by it.
 *
 * What the offline ALTER TABLE ... DROP CONSTRAINT would refuse is refused
 * before any DDL: a constraint that does not exist (unless "if_exists"),
 * one a partition inherits from its parent, and a unique or primary key
 * that foreign keys look rows up through (2BP01), naming each. A NOT NULL
 * is no named constraint before Postgres 18: alter_column drops it. */
#include "ops/op.h"
#include "migration_plan.h"
#include "plan_ctx.h"

#include <string.h>

static int refuse_missing(struct plan_ctx *c, const struct mig_op *op, const struct constraint_now *k)
{
    if (k->gone_by)
        return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" is already gone: operations[%d].%s takes it "
                        "away first; leave out one of them", op->name, op->schema, op->table, k->gone_by->index,
                        mig_op_name(k->gone_by->kind));
    size_t n = strlen(op->name);
    int not_null = n > 9 && strcmp(op->name + n - 9, "_not_null") == 0;
    return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" does not exist, and Postgres would refuse the "
                    "DROP CONSTRAINT (42704) at the contract. %s", op->name, op->schema, op->table,
                    not_null ? "A NOT NULL is not a named constraint in Postgres before 18: drop it with "
                               "alter_column and \"nullable\": true"
                             : "Check its name (pg_constraint lists them), or set \"if_exists\": true");
}

/* An earlier operation of the migration drops the foreign key f (with its
 * table or column, or by name): the contract drops it before this one. */
static int dropped_earlier(const struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_ref *f)
{
    if (removes_fkey(c, op, f, 0))
        return 1;
    for (int i = 0; i < op->index; i++) {
        const struct mig_op *o = &c->m->ops[i];
        const struct mig_cat_table *t = o->kind == MIG_DROP_CONSTRAINT ? table_of(c, o->schema, o->table) : NULL;
        if (t && !strcmp(t->schema, f->schema) && !strcmp(t->name, f->table) && !strcmp(o->name, f->name))
            return 1;
    }
    return 0;
}

static int refuse_fkey_users(struct plan_ctx *c, const struct mig_op *op, const struct mig_cat_constraint *k)
{
    for (size_t i = 0; k && i < k->nfkeys; i++) {
        const struct mig_cat_ref *f = &k->fkeys[i];
        if (dropped_earlier(c, op, f))
            continue;
        return op_error(c, op, "cannot drop %s constraint \"%s\" on table \"%s.%s\" because other objects depend on "
                        "it: constraint \"%s\" on table \"%s.%s\" is a foreign key that looks referenced rows up "
                        "through its index, and Postgres refuses the DROP CONSTRAINT (2BP01) at the contract. Drop "
                        "that foreign key first: a drop_constraint of it earlier in this migration, or in an "
                        "earlier migration", constraint_kind_name(k->contype), op->name, op->schema, op->table,
                        f->name, f->schema, f->table);
    }
    return 0;
}

static int refuse_drop(struct plan_ctx *c, const struct mig_op *op)
{
    struct constraint_now k;
    constraint_now(c, op, op->table, op->name, &k);
    if (!k.exists)
        return op->if_exists ? 0 : refuse_missing(c, op, &k);
    if (k.cat && k.cat->inherited)
        return op_error(c, op, "constraint \"%s\" of table \"%s.%s\" is inherited from its parent table, and "
                        "Postgres refuses to drop it on one partition or child (cannot drop inherited constraint); "
                        "drop it on the parent table, which drops it on every partition", op->name, op->schema,
                        op->table);
    return refuse_fkey_users(c, op, k.cat);
}

static int plan_drop_constraint(struct plan_ctx *c, const struct mig_op *op)
{
    if (require_table(c, op, op->table))
        return -1;
    if (c->cat && refuse_drop(c, op))
        return -1;
    add_alter(&c->p->contract, op, op->table, op->if_exists ? "DROP CONSTRAINT IF EXISTS" : "DROP CONSTRAINT",
              op->name, "");
    return 0;
}

const struct mig_op_def op_drop_constraint = {
    .kind = MIG_DROP_CONSTRAINT, .plan = plan_drop_constraint, .changes_columns = 0,
};
